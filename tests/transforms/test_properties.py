"""Property test: any valid canonical event, hostile strings included, renders valid ECS, OCSF and CEF.

hypothesis builds SecurityEvent 2.1.0 dicts from every enumeration value and from strings made to break
formats (pipes, equals signs, backslashes, CR/LF, quotes, non-ASCII, NUL-free control characters, 5,000
character values). Each is rendered by the real pipelines (as an output would send it) and checked with
the strict validators of tests/validators; the CEF line must also parse back with ``parse_cef``. The
same events go through a per-output redaction first in a second test. Derandomized, so a run is
repeatable; 200 examples each keep it to a few seconds.
"""

from __future__ import annotations

import datetime as dt
import uuid

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.event import (
    EventCategory,
    EventType,
    ObserverProduct,
    Outcome,
    ResourceType,
    Severity,
    SourceKind,
    encode_event,
    timestamp_to_ms,
    validate_event,
)
from tests.validators.cef import parse_cef, validate_cef
from tests.validators.ecs import validate_ecs
from tests.validators.ocsf import validate_ocsf
from transforms.config import RedactConfig, RedactRule, TransformConfig
from transforms.pipeline import build_pipeline

SETTINGS = settings(max_examples=200, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

HOSTILE = ["a|b", "x=y", "back\\slash", "line\nbreak", "cr\rlf\r\n", 'quote"d', "tab\there", "é ü ß 漢字 🙂",
           "trailing ", " leading", "=|\\\n", "\\n literal", "%s %d {}", "<script>", "null", "-", "\u2028",
           "AKIAIOSFODNN7EXAMPLE", "password=hunter2", "a@b.example", "10.0.0.1", "::1"]
_chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
text = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(_chars, min_size=1, max_size=40),
    st.builds(lambda unit, n: (unit * n)[:5000], st.sampled_from([*HOSTILE, "x", "ab|="]),
              st.integers(1, 2500)),
)
ident = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30)


def _timestamp(moment: dt.datetime, digits: int) -> str:
    frac = f"{moment.microsecond:06d}{moment.microsecond % 1000:03d}"[:digits]
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if digits else "") + "Z"


_ACTIONS = ["file_access", "file_write", "egress", "shell", "mcp_tool", "patch", "custom", "session",
            "policy", "rbac", "webhook", "tool_call", "output_sanitize", "prompt_security"]
_GUARDS = ["forbidden_path", "path_allowlist", "egress_allowlist", "secret_leak", "patch_integrity",
           "mcp_tool", "prompt_injection", "jailbreak_detection", "posture", "threat_intel"]
_MITRE = [("attack", "TA0006", "Credential Access", "T1552.004", "Unsecured Credentials: Private Keys"),
          ("attack", "TA0010", "Exfiltration", "T1041", "Exfiltration Over C2 Channel"),
          ("atlas", "AML.TA0005", "Execution", "AML.T0051", "LLM Prompt Injection")]


_metadata_value = st.one_of(text, st.integers(-2**63, 2**63 - 1), st.booleans(), st.none(),
                            st.lists(text, max_size=3))  # 64-bit: what orjson reads back from the spool


def _optional(draw: st.DrawFn, target: dict, key: str, strategy: st.SearchStrategy) -> None:
    if draw(st.booleans()):
        target[key] = draw(strategy)


@st.composite
def events(draw: st.DrawFn) -> dict:
    allowed = draw(st.sampled_from([True, False, None]))
    outcome = ({True: "success", False: "failure"}.get(allowed)
               or draw(st.sampled_from([o.value for o in Outcome])))
    # From 2002: the OCSF validator takes epoch-ms values below 10^12 (before 2001-09-09) as seconds.
    moment = draw(st.datetimes(min_value=dt.datetime(2002, 1, 1), max_value=dt.datetime(2099, 12, 31)))
    decision: dict = {"severity": draw(st.sampled_from([s.value for s in Severity]))}
    if allowed is not None:
        decision["allowed"] = allowed
    _optional(draw, decision, "guard", st.one_of(st.sampled_from(_GUARDS), text))
    _optional(draw, decision, "reason", text)
    _optional(draw, decision, "ruleset", text)
    if draw(st.booleans()):
        decision["policy_hash"] = "sha256:" + draw(st.text("0123456789abcdef", min_size=64, max_size=64))
    rtype = draw(st.sampled_from([r.value for r in ResourceType]))
    resource: dict = {"type": rtype, "name": draw(text)}
    _optional(draw, resource, "path", text)
    _optional(draw, resource, "host", text)
    _optional(draw, resource, "ip", st.ip_addresses().map(str))
    _optional(draw, resource, "port", st.integers(0, 65535))
    observer: dict = {"product": draw(st.sampled_from([p.value for p in ObserverProduct]))}
    for key in ("version", "host_name", "instance_id"):
        _optional(draw, observer, key, text)
    source: dict = {"kind": draw(st.sampled_from([k.value for k in SourceKind]))}
    _optional(draw, source, "id", text)
    _optional(draw, source, "type", text)
    ev: dict = {
        "schema_version": "2.1.0",
        "event_id": str(draw(st.uuids())),
        "event_type": draw(st.sampled_from([t.value for t in EventType])),
        "event_category": draw(st.sampled_from([c.value for c in EventCategory])),
        "timestamp": _timestamp(moment, draw(st.integers(0, 9))),
        "outcome": outcome,
        "action": draw(st.one_of(st.sampled_from(_ACTIONS), text)),
        "observer": observer,
        "decision": decision,
        "resource": resource,
        "metadata": draw(st.dictionaries(ident, _metadata_value, max_size=4)),
        "labels": draw(st.dictionaries(ident, text, max_size=3)),
        "source": source,
    }
    if draw(st.booleans()):
        ev["agent"] = {"id": draw(text)}
    if draw(st.booleans()):
        session: dict = {}
        for key in ("id", "user_id", "run_id", "tenant_id", "environment"):
            _optional(draw, session, key, text)
        ev["session"] = session
    if allowed is False and draw(st.booleans()):
        kind = draw(st.sampled_from(["domain-name", "ipv4-addr", "ipv6-addr", "file"]))
        value = {"ipv4-addr": st.ip_addresses(v=4).map(str), "ipv6-addr": st.ip_addresses(v=6).map(str)}.get(
            kind, text)
        ev["threat"] = {"indicator": {"type": kind, "value": draw(value)}}
    if draw(st.booleans()):
        fw, ta, tan, te, ten = draw(st.sampled_from(_MITRE))
        ev["mitre"] = {"framework": fw, "tactic": {"id": ta, "name": tan},
                       "technique": {"id": te, "name": ten}}
    validate_event(ev)
    return ev


ECS = build_pipeline(TransformConfig(format="ecs"))
OCSF = build_pipeline(TransformConfig(format="ocsf"))
OCSF_ACTIVITY = build_pipeline(TransformConfig(format="ocsf", ocsf_allowed_as_activity=True))
CEF = build_pipeline(TransformConfig(format="cef"))
_REDACT = RedactConfig(builtin=["secrets", "email", "ipv4", "ipv6"],
                       rules=[RedactRule(path="resource.path"), RedactRule(path="agent.id", style="drop"),
                              RedactRule(path="metadata.*", style="keep", keep_first=2)])
REDACTED = {fmt: build_pipeline(TransformConfig(format=fmt, redact=_REDACT))
            for fmt in ("ecs", "ocsf", "cef")}


def _check_all(ev: dict, pipelines: dict) -> None:
    body = encode_event(ev)
    for name in ("ecs",):
        doc = orjson.loads(pipelines[name].render(ev, body))
        assert validate_ecs(doc) == [], (name, validate_ecs(doc))
    for name in ("ocsf", "ocsf-activity"):
        if name in pipelines:
            doc = orjson.loads(pipelines[name].render(ev, body))
            assert validate_ocsf(doc) == [], (name, validate_ocsf(doc))
    line = pipelines["cef"].render(ev, body).decode("utf-8")
    assert validate_cef(line) == [], validate_cef(line)
    header, ext = parse_cef(line)
    assert header[0] == "CEF:0" and header[1] == "Backbay Labs" and header[2] == "Clawdstrike"
    assert ext["externalId"] == ev["event_id"]
    assert int(ext["rt"]) == timestamp_to_ms(ev["timestamp"])


@SETTINGS
@given(events())
def test_any_valid_event_renders_valid_ecs_ocsf_and_cef(ev):
    _check_all(ev, {"ecs": ECS, "ocsf": OCSF, "ocsf-activity": OCSF_ACTIVITY, "cef": CEF})


@SETTINGS
@given(events())
def test_redacted_events_stay_valid_in_every_format(ev):
    from transforms.redact import compile_redactor

    redacted = compile_redactor(_REDACT)(ev)
    validate_event(redacted)
    _check_all(ev, REDACTED)


def test_the_generator_reaches_hostile_values():
    """The strategies above are not vacuous: hostile strings and every enum actually occur."""
    seen: list[dict] = []

    @settings(max_examples=200, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(events())
    def collect(ev: dict) -> None:
        seen.append(ev)

    collect()
    blob = b"\n".join(orjson.dumps(e) for e in seen)
    for needle in (b"|", b"=", b"\\\\", b"\\n", "漢".encode()):
        assert needle in blob, needle
    assert len({e["event_type"] for e in seen}) >= 10
    assert {e["decision"]["severity"] for e in seen} == {s.value for s in Severity}
    assert {e["decision"].get("allowed") for e in seen} == {True, False, None}
    assert any("threat" in e for e in seen) and any("mitre" in e for e in seen)
    assert any(len(e["resource"]["name"]) > 1000 for e in seen)
    assert uuid.UUID(seen[0]["event_id"])


INGEST_REDACTOR = None


@SETTINGS
@given(events(), st.data())
def test_a_secret_anywhere_in_an_event_never_survives_the_default_privacy(ev, data):
    """The hot-path check caches what it saw clean; a secret placed in any string field of any event
    (canonical or metadata, after many clean events) must still be found and masked."""
    global INGEST_REDACTOR
    from transforms.config import PrivacyConfig
    from transforms.redact import PROTECTED, _leaves, compile_redactor

    if INGEST_REDACTOR is None:
        INGEST_REDACTOR = compile_redactor(PrivacyConfig())
    assert INGEST_REDACTOR(ev) is ev or b"[REDACTED]" in encode_event(INGEST_REDACTOR(ev))
    slots = [(c, k, p) for c, k, p, v in _leaves(ev, ()) if type(v) is str and p not in PROTECTED
             and not (len(p) == 1 and p[0] in ("event_id", "timestamp", "schema_version"))
             and not (p[0] == "resource" and p[-1] == "ip")
             and not (p[0] == "threat" and ev["threat"]["indicator"]["type"] in ("ipv4-addr", "ipv6-addr"))]
    if not slots:
        return
    container, key, path = data.draw(st.sampled_from(slots))
    container[key] = "x ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789 y"
    out = INGEST_REDACTOR(ev)
    validate_event(out)
    assert b"ghp_aBcDeF" not in encode_event(out), path
