"""The per-output pipeline, the ingest transform and the `clawd-agent transform` command."""

from __future__ import annotations

import copy

import orjson
import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.config_types import Secret
from agent.event import encode_event, validate_event
from agent.mapping import MappingContext, parse_line
from tests.shared_paths import FIXTURES
from tests.validators.cef import parse_cef, validate_cef
from tests.validators.ecs import validate_ecs
from tests.validators.ocsf import validate_ocsf
from transforms.config import (
    CefConfig,
    EnrichmentConfig,
    FieldsConfig,
    PrivacyConfig,
    RedactConfig,
    RedactRule,
    TransformConfig,
)
from transforms.pipeline import FORMATS, IngestTransform, build_pipeline, compile_ingest

LINES = (FIXTURES / "audit-forward.jsonl").read_bytes().splitlines()
CTX = MappingContext(labels={"team": "security"}, host_name="dev-laptop",
                     postprocess=compile_ingest(PrivacyConfig(), EnrichmentConfig()))


def event(i: int = 2) -> tuple[dict, bytes]:
    ev = parse_line(LINES[i], context=CTX)  # 2: forbidden_path on ~/.ssh/id_rsa, with mitre
    return ev, encode_event(ev)


def render(cfg: TransformConfig, i: int = 2) -> bytes:
    ev, body = event(i)
    before = copy.deepcopy(ev)
    out = build_pipeline(cfg).render(ev, body)
    assert ev == before, "the pipeline mutated the event"
    return out


# ------------------------------------------------------------------------------------------ formats

def test_formats_registry():
    assert sorted(FORMATS) == ["canonical", "cef", "ecs", "ocsf"] and len(FORMATS) == 4
    from transforms.ecs import to_ecs

    assert FORMATS["ecs"] is to_ecs and FORMATS["canonical"]({"a": 1}) == {"a": 1}


def test_canonical_without_options_is_a_passthrough():
    _, body = event()
    p = build_pipeline(TransformConfig())
    assert p.passthrough and p.content_type == "application/json" and p.format == "canonical"
    assert p.render({}, body) is body


@pytest.mark.parametrize(("fmt", "content_type"), [("ecs", "application/json"), ("ocsf", "application/json"),
                                                    ("cef", "text/plain")])
def test_each_format_renders_valid_deterministic_bytes(fmt, content_type):
    p = build_pipeline(TransformConfig(format=fmt))
    assert not p.passthrough and p.content_type == content_type
    for i in range(len(LINES)):
        ev, body = event(i)
        out = p.render(ev, body)
        assert out == p.render(copy.deepcopy(ev), body)  # same event, same bytes
        assert p.render({}, body) == out  # an undecoded event is decoded from the body
        if fmt == "cef":
            assert b"\n" not in out and validate_cef(out.decode()) == []
        else:
            doc = orjson.loads(out)
            assert out == orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)  # sorted keys
            assert (validate_ecs if fmt == "ecs" else validate_ocsf)(doc) == []


def test_ocsf_allowed_as_activity_is_passed_on():
    allowed_read = 1
    default = orjson.loads(render(TransformConfig(format="ocsf"), allowed_read))
    activity_cfg = TransformConfig(format="ocsf", ocsf_allowed_as_activity=True)
    activity = orjson.loads(render(activity_cfg, allowed_read))
    assert activity["class_uid"] == 1001 and default["class_uid"] != 1001


def test_cef_header_identity_overrides():
    line = render(TransformConfig(format="cef", cef=CefConfig(device_vendor="ACME", device_product="Guard",
                                                                    device_version="9.9"))).decode()
    header, _ = parse_cef(line)
    assert header[1:4] == ["ACME", "Guard", "9.9"]
    default, _ = parse_cef(render(TransformConfig(format="cef")).decode())
    assert default[1:3] == ["Backbay Labs", "Clawdstrike"]


# ----------------------------------------------------------------------------------- field overrides

def test_fields_on_a_json_document():
    cfg = TransformConfig(format="ecs", fields=FieldsConfig(
        rename={"event.code": "rule.code", "clawdstrike.guard": "labels.guard"},
        set={"labels.site": "eu-1", "organization.name": "ACME"},
        exclude=["gen_ai", "clawdstrike.metadata"]))
    doc = orjson.loads(render(cfg))
    plain = orjson.loads(render(TransformConfig(format="ecs")))
    assert "code" not in doc["event"] and doc["rule"]["code"] == plain["event"]["code"]
    assert doc["labels"]["guard"] == "forbidden_path" and "guard" not in doc["clawdstrike"]
    assert doc["labels"]["site"] == "eu-1" and doc["labels"]["team"] == "security"
    assert doc["organization"] == {"name": "ACME"}
    assert "gen_ai" not in doc and "metadata" not in doc["clawdstrike"]
    assert orjson.loads(render(TransformConfig(format="ecs"))) == plain  # cached parts were not changed


def test_include_keeps_only_the_listed_prefixes():
    cfg = TransformConfig(format="ocsf", fields=FieldsConfig(include=["class_uid", "time", "metadata.version",
                                                                      "finding_info.attacks"]))
    doc = orjson.loads(render(cfg))
    assert set(doc) == {"class_uid", "time", "metadata", "finding_info"}
    assert doc["metadata"] == {"version": "1.8.0"}
    assert doc["finding_info"]["attacks"][0]["technique"]["uid"] == "T1552"


def test_literal_dotted_keys_are_found():
    from transforms.pipeline import _compile_fields

    doc = {"a": {"b.c": 1, "d": 2}, "x.y": 3}
    out = _compile_fields(FieldsConfig(rename={"a.b.c": "a.e"}, exclude=["x.y"]))(doc)
    assert out == {"a": {"d": 2, "e": 1}} and doc == {"a": {"b.c": 1, "d": 2}, "x.y": 3}


def test_fields_on_cef_extension_keys():
    cfg = TransformConfig(format="cef", fields=FieldsConfig(
        rename={"msg": "reason"}, set={"cs6Label": "site", "cs6": "a=b|c\\d\nline"},
        exclude=["cs1", "flexString1"]))
    line = render(cfg).decode()
    _, ext = parse_cef(line)
    _, plain = parse_cef(render(TransformConfig(format="cef")).decode())
    assert "reason" not in plain and ext["reason"] == plain["msg"] and "msg" not in ext
    assert ext["cs6"] == "a=b|c\\d\nline" and ext["cs6Label"] == "site"  # escaped on the way out
    assert "cs1" not in ext and "cs1Label" not in ext and "flexString1Label" not in ext
    assert ext["act"] == plain["act"] and validate_cef(line) == []
    only = TransformConfig(format="cef", fields=FieldsConfig(include=["rt", "cs4"]))
    assert set(parse_cef(render(only).decode())[1]) == {"rt", "cs4", "cs4Label"}


# -------------------------------------------------------------------------------------- raw, redact

def test_include_raw():
    ev, body = event()
    ecs = orjson.loads(build_pipeline(TransformConfig(format="ecs", include_raw=True)).render(ev, body))
    assert ecs["event"]["original"] == body.decode() and validate_ecs(ecs) == []
    ocsf = orjson.loads(build_pipeline(TransformConfig(format="ocsf", include_raw=True)).render(ev, body))
    assert ocsf["raw_data"] == body.decode() and validate_ocsf(ocsf) == []
    with pytest.raises(ValueError, match="include_raw"):
        build_pipeline(TransformConfig(format="cef", include_raw=True))
    with pytest.raises(ValueError, match="include_raw"):
        TransformConfig(format="cef", include_raw=True).validate()


def test_per_output_redaction_reaches_the_document_and_the_raw_copy():
    cfg = TransformConfig(format="ecs", include_raw=True,
                          redact=RedactConfig(rules=[RedactRule(path="resource.path", style="hash",
                                                                hash_salt=Secret("k"))]))
    out = render(cfg)
    assert b"id_rsa" not in out and b"hmac-sha256:" in out
    doc = orjson.loads(out)
    assert validate_ecs(doc) == []
    validate_event(orjson.loads(doc["event"]["original"]))
    canonical = build_pipeline(TransformConfig(redact=RedactConfig(builtin=["secrets"],
                                                                   rules=[RedactRule(path="agent.id")])))
    assert not canonical.passthrough
    ev, body = event()
    assert orjson.loads(canonical.render(ev, body))["agent"] == {"id": "[REDACTED]"}
    clean = build_pipeline(TransformConfig(redact=RedactConfig(builtin=["secrets"])))
    assert clean.render(ev, body) is body  # nothing to mask: the spool's bytes as they are


def test_an_output_config_carries_its_transform_keys():
    from outputs.base import OutputConfig

    flat = OutputConfig(type="x", format="cef", fields=FieldsConfig(exclude=["cs1"])).transform_config()
    assert flat.format == "cef" and flat.fields.exclude == ["cs1"] and flat.redact.empty
    assert OutputConfig(type="x", format="ocsf").transform_config().format == "ocsf"
    assert OutputConfig(type="x").transform_config() == TransformConfig()


def test_ingest_transform_enriches_before_redacting():
    post = compile_ingest(PrivacyConfig(rules=[RedactRule(path="resource.path", style="drop")]),
                          EnrichmentConfig())
    assert isinstance(post, IngestTransform)
    ev = parse_line(LINES[2], context=MappingContext(postprocess=post))
    validate_event(ev)
    assert ev["mitre"]["technique"]["id"] == "T1552.004"  # found on the path before it was removed
    assert "path" not in ev["resource"] and b"id_rsa" not in encode_event(ev)
    assert compile_ingest(PrivacyConfig(builtin=[]), EnrichmentConfig(mitre=False)) is None
    assert post.redact_bytes(b"x password=hunter2 \xff") == b"x password=[REDACTED] \xff"


# ---------------------------------------------------------------------------------------------- CLI

def run_cli(args: list[str], stdin: bytes = b"") -> tuple[int, bytes, str]:
    result = CliRunner().invoke(cli, ["transform", *args], input=stdin)
    return result.exit_code, result.stdout_bytes, result.stderr


def test_cli_prints_one_rendering_per_record():
    data = b"\n".join(LINES) + b"\n"
    for fmt in ("canonical", "ecs", "ocsf", "cef"):
        code, out, err = run_cli(["--to", fmt, "-"], data)
        assert code == 0 and err == "", (fmt, err)
        rendered = out.splitlines()
        assert len(rendered) == len(LINES)
        ctx = MappingContext(postprocess=compile_ingest(PrivacyConfig(), EnrichmentConfig()))
        ev = parse_line(LINES[2], context=ctx)
        assert rendered[2] == build_pipeline(TransformConfig(format=fmt)).render(ev, encode_event(ev))


def test_cli_reports_bad_lines_and_goes_on():
    data = LINES[0] + b"\nnot json\n\n" + LINES[2] + b'\n{"only": "keys"}\n'
    code, out, err = run_cli(["--to", "cef"], data)
    assert code == 1
    assert len(out.splitlines()) == 2
    assert "line 2: invalid JSON" in err and "line 5: unknown record shape (keys: only)" in err
    assert [x.split(":")[0] for x in err.splitlines()] == ["line 2", "line 5"]


def test_cli_renders_as_a_configured_output(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(LINES) + b"\n")
    config = tmp_path / "agent.toml"
    config.write_text(f"""
[agent]
host_name = "cli-host"
[privacy]
rules = [{{ path = "agent.id", replacement = "[agent]" }}]
[inputs.audit]
type = "file"
paths = ["{tmp_path}/in.jsonl"]
[outputs.siem]
type = "splunk_hec"
endpoint = "https://127.0.0.1:8088"
token = "00000000-0000-0000-0000-000000000000"
format = "cef"
filter = {{ min_severity = "high" }}
""")
    code, out, err = run_cli(["-c", str(config), "--output", "siem", str(src)])
    assert code == 0, err
    lines = out.decode().splitlines()
    blocked = [e for e in (parse_line(x, context=MappingContext()) for x in LINES)
               if e["decision"]["severity"] in ("high", "critical")]
    assert len(lines) == len(blocked) > 0
    assert all(line.startswith("CEF:0|") and "dvchost=cli-host" in line for line in lines)
    assert "agent-007" not in out.decode() and "sproc=[agent]" in lines[0]
    assert f"{len(LINES) - len(blocked)} record(s) not printed" in err
    code, out, _ = run_cli(["-c", str(config), "--output", "siem", "--to", "ecs", str(src)])
    assert code == 0 and orjson.loads(out.splitlines()[0])["host"]["name"] == "cli-host"
    code, _, err = run_cli(["-c", str(config), "--output", "nope", str(src)])
    assert code == 1 and "no [outputs.nope]" in err
    code, _, err = run_cli(["--output", "siem", str(src)])
    assert code == 2 and "--config" in err
