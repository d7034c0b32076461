"""Redaction: built-in patterns, path rules, masking styles, every copy of a value, schema validity."""

from __future__ import annotations

import copy
import re

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config_loader import ConfigError
from agent.config_types import Secret
from agent.event import encode_event, validate_event
from agent.mapping import MappingContext, parse_line
from tests.shared_paths import FIXTURES
from transforms.config import PrivacyConfig, RedactConfig, RedactRule
from transforms.redact import _SECRET_REGEXES, Redactor, _may_hold_secret, compile_redactor

CTX = MappingContext(labels={"team": "security"}, environment="production", tenant_id="acme",
                     host_name="dev-laptop")
LINES = (FIXTURES / "audit-forward.jsonl").read_bytes().splitlines()
SALT = Secret("pepper-for-tests")


def captured(i: int) -> dict:
    return parse_line(LINES[i], context=CTX)


def ssh_block() -> dict:
    ev = captured(2)  # forbidden_path on /home/agent/.ssh/id_rsa
    assert ev["resource"]["path"] == "/home/agent/.ssh/id_rsa"
    return ev


def event_with(**metadata: object) -> dict:
    ev = captured(1)  # an allowed file read
    ev["metadata"] = dict(metadata)
    return ev


def run(cfg: RedactConfig, ev: dict) -> dict:
    redactor = compile_redactor(cfg)
    assert redactor is not None
    before = copy.deepcopy(ev)
    out = redactor(ev)
    assert ev == before, "the input event was mutated"
    validate_event(out)
    return out


SECRETS = PrivacyConfig()


# ---------------------------------------------------------------------------------------------- basics

def test_nothing_to_do_compiles_to_none():
    assert compile_redactor(None) is None
    assert compile_redactor(RedactConfig()) is None
    assert compile_redactor(PrivacyConfig(builtin=[])) is None
    assert isinstance(compile_redactor(PrivacyConfig()), Redactor)


def test_real_captures_pass_the_default_privacy_untouched():
    redactor = compile_redactor(SECRETS)
    for line in LINES:
        ev = parse_line(line, context=CTX)
        assert redactor(ev) is ev, ev["event_type"]  # not even copied


def test_clean_events_come_back_as_the_same_object_and_dirty_ones_as_new():
    redactor = compile_redactor(SECRETS)
    clean = captured(1)
    assert redactor(clean) is clean
    dirty = event_with(note="password=hunter2")
    out = redactor(dirty)
    assert out is not dirty and out["metadata"]["note"] == "password=[REDACTED]"


# ------------------------------------------------------------------------------------ built-in secrets

@pytest.mark.parametrize(("text", "expected"), [
    ("AKIAIOSFODNN7EXAMPLE", "[REDACTED]"),
    ("key ASIAY34FZKBOKMUTVV7A in env", "key [REDACTED] in env"),
    ("ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", "[REDACTED]"),
    ("github_pat_11ABCDEFG0123456789abcdef_ghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOP", "[REDACTED]"),
    ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "[REDACTED]"),
    ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "[REDACTED]"),
    ("AIzaSyA-1234567890abcdefghijklmnopqrstu", "[REDACTED]"),
    ("sk-proj-abcdefghijklmnopqrstuvwxyz012345", "[REDACTED]"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
     "[REDACTED]"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "[REDACTED]"),
    ("password=hunter2", "password=[REDACTED]"),
    ("DB_PASSWORD: 's3cr3t!'", "DB_PASSWORD: '[REDACTED]'"),
    ('export API_KEY="abc123def"', 'export API_KEY="[REDACTED]"'),
    ("curl -H 'Authorization: Bearer abcdefgh12345678' x", "curl -H 'Authorization: Bearer [REDACTED]' x"),
    ("https://deploy:t0ps3cret@git.example.com/repo.git", "https://deploy:[REDACTED]@git.example.com/repo.git"),
])
def test_builtin_secret_formats_are_masked(text, expected):
    out = run(SECRETS, event_with(note=text))
    assert out["metadata"]["note"] == expected


def test_a_fine_grained_github_token_without_gh_in_its_body_is_masked():
    """``github_pat_`` holds no "gh": the prefilter must know it (this body has no other anchor)."""
    token = "github_pat_11ABCDEFG0123456789abcdef_ijklmnopqrstuvwxyz0123456789ABCDEFIJKLMNOP"
    assert run(SECRETS, event_with(note=f"t {token}"))["metadata"]["note"] == "t [REDACTED]"


@pytest.mark.parametrize("regex", _SECRET_REGEXES)
def test_the_secrets_prefilter_passes_every_string_a_secret_pattern_matches(regex):
    """``_may_hold_secret`` skips the regexes when it says no: it must never say no to a match."""
    compiled = re.compile(regex)

    @settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.from_regex(compiled))
    def check(text: str) -> None:
        if compiled.search(text):
            assert _may_hold_secret(text), text

    check()


@pytest.mark.parametrize("text", [
    "ghp_********************************6789",  # hushd already masked it
    "Potential secrets detected: github_token",  # names a detector, holds no secret
    "api_key:871d8af8-0c6a-4d0e-9a51-6f2d7c1e9b10",  # hushd policy actor: the key's id, not the key
    "the token budget is exhausted",
    "sk-short",
])
def test_look_alikes_are_left_alone(text):
    ev = event_with(note=text)
    assert compile_redactor(SECRETS)(ev) is ev


@pytest.mark.parametrize("value", [None, "", 0, True, ["x"], {"inner": "x"}])
def test_a_credential_named_key_without_a_string_to_mask_leaves_the_event_as_it_is(value):
    """Only a non-empty string under a credential-named key is masked, so any other value is no
    reason to copy the event (the hot path's promise: the same object when nothing changes)."""
    ev = event_with(api_key=value)
    assert compile_redactor(SECRETS)(ev) is ev


def test_values_of_credential_named_keys_are_masked():
    out = run(SECRETS, event_with(api_key="plain-value", headers={"Authorization": "Basic dXNlcjpwYXNz"},
                                  tokens_used="12"))
    assert out["metadata"]["api_key"] == "[REDACTED]"
    assert out["metadata"]["headers"]["Authorization"] == "[REDACTED]"
    assert out["metadata"]["tokens_used"] == "12"


def test_secrets_are_found_in_canonical_fields_and_lists_too():
    ev = ssh_block()
    ev["resource"]["name"] = ev["resource"]["path"] = "/tmp/AKIAIOSFODNN7EXAMPLE.txt"
    ev["threat"]["indicator"]["value"] = ev["resource"]["path"]
    ev["metadata"]["matches"] = [{"redacted": "sk_live_4eC39HqLyjWDarjtT1zdp7dc"}]
    out = run(SECRETS, ev)
    assert out["resource"]["path"] == out["resource"]["name"] == "/tmp/[REDACTED].txt"
    assert out["threat"]["indicator"]["value"] == "/tmp/[REDACTED].txt"
    assert out["metadata"]["matches"] == [{"redacted": "[REDACTED]"}]


def test_the_clean_cache_never_hides_a_new_secret():
    redactor = compile_redactor(SECRETS)
    for i in range(200):
        ev = event_with(note=f"harmless {i}")
        assert redactor(ev) is ev
    out = redactor(event_with(note="harmless 7", extra="ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"))
    assert out["metadata"] == {"note": "harmless 7", "extra": "[REDACTED]"}


def test_the_mitre_names_are_never_redacted():
    ev = ssh_block()
    ev["mitre"] = {"framework": "attack", "tactic": {"id": "TA0006", "name": "Credential Access"},
                   "technique": {"id": "T1552.001", "name": "Unsecured Credentials: Credentials In Files"}}
    cfg = PrivacyConfig(rules=[RedactRule(pattern="Credential")])
    out = run(cfg, ev)
    assert out["mitre"] == ev["mitre"]


def test_source_id_equal_to_the_event_id_is_left_whether_or_not_another_field_is_masked():
    """The fast check skips source.id when it is the event id; the slow path must leave it too, or a
    user pattern that matches ids masks it only in events where something else needed masking."""
    uuid_part = RedactRule(pattern=r"[0-9a-f]{8}-[0-9a-f]{4}-")
    clean, dirty = captured(1), event_with(detail="ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789")
    for ev in (clean, dirty):
        assert ev["source"]["id"] == ev["event_id"] and re.match(uuid_part.pattern, ev["event_id"])
        out = compile_redactor(PrivacyConfig(rules=[uuid_part]))(ev)
        assert out["source"]["id"] == ev["event_id"]
    assert run(PrivacyConfig(rules=[uuid_part]), dirty)["metadata"]["detail"] == "[REDACTED]"
    # a path rule that names it still masks it
    assert run(RedactConfig(rules=[RedactRule(path="source.id")]), clean)["source"]["id"] == "[REDACTED]"


# --------------------------------------------------------------------------------- every copy, styles

def test_a_path_rule_masks_every_copy_of_the_value():
    out = run(RedactConfig(rules=[RedactRule(path="resource.path")]), ssh_block())
    assert out["resource"]["path"] == "[REDACTED]"
    assert out["resource"]["name"] == "[REDACTED]"  # equal copy
    assert out["threat"]["indicator"]["value"] == "[REDACTED]"  # equal copy (hushd missed this one)
    assert out["metadata"]["path"] == "[REDACTED]"
    assert out["decision"]["reason"] == "Access to forbidden path: [REDACTED]"  # inside text
    assert b"id_rsa" not in encode_event(out)


def test_hash_is_a_stable_keyed_pseudonym_used_for_every_copy():
    cfg = RedactConfig(rules=[RedactRule(path="agent.id", style="hash", hash_salt=SALT)])
    ev = ssh_block()
    ev["metadata"]["by"] = "agent-007"
    a = run(cfg, ev)
    b = run(cfg, copy.deepcopy(ev))
    token = a["agent"]["id"]
    assert token.startswith("hmac-sha256:") and len(token) == len("hmac-sha256:") + 16
    assert a == b and a["metadata"]["by"] == token
    other = run(RedactConfig(rules=[RedactRule(path="agent.id", style="hash", hash_salt=Secret("x"))]), ev)
    assert other["agent"]["id"] != token  # the key matters: not a plain, brute-forceable hash


def test_hash_without_a_key_is_refused():
    with pytest.raises(ValueError, match="hash_salt"):
        RedactConfig(rules=[RedactRule(path="agent.id", style="hash")]).validate()
    with pytest.raises(ValueError, match="hash_salt"):
        compile_redactor(RedactConfig(rules=[RedactRule(path="agent.id", style="hash")]))
    section_salt = RedactConfig(rules=[RedactRule(path="agent.id", style="hash")], hash_salt=SALT)
    section_salt.validate()
    assert run(section_salt, ssh_block())["agent"]["id"].startswith("hmac-sha256:")


def test_keep_first_and_last():
    cfg = RedactConfig(rules=[RedactRule(path="metadata.*", style="keep", keep_first=4, keep_last=2,
                                         replacement="****")])
    out = run(cfg, event_with(card="4111111111111111", short="abc"))
    assert out["metadata"] == {"card": "4111****11", "short": "****"}  # never the whole short value
    only_last = RedactConfig(rules=[RedactRule(path="metadata.card", style="keep", keep_last=4)])
    assert run(only_last, event_with(card="4111111111111111"))["metadata"]["card"] == "[REDACTED]1111"


def test_drop_keeps_the_event_valid():
    ev = ssh_block()
    assert "agent" not in run(RedactConfig(rules=[RedactRule(path="agent.id", style="drop")]), ev)
    out = run(RedactConfig(rules=[RedactRule(path="resource.path", style="drop")]), ev)
    assert "path" not in out["resource"] and "threat" not in out  # the copy in threat goes with it
    assert out["resource"]["name"] == "[REDACTED]"  # required: keeps a mask
    assert "path" not in out["metadata"]
    assert out["decision"]["reason"] == "Access to forbidden path: [REDACTED]"
    assert run(RedactConfig(rules=[RedactRule(path="metadata", style="drop")]), ev)["metadata"] == {}
    out = run(RedactConfig(rules=[RedactRule(path="decision", style="drop")]), ev)
    assert out["decision"] == {"allowed": False, "severity": "critical",
                               "policy_hash": ev["decision"]["policy_hash"]}
    out = run(RedactConfig(rules=[RedactRule(path="resource.port", style="replace")]), captured(12))
    assert "port" not in out["resource"]  # a number field cannot hold a mask


def test_wildcards_and_deep_paths():
    ev = event_with(principal={"id": "alice", "email": "alice@example.com", "roles": ["admin"]},
                    nested={"deep": {"email": "bob@example.com"}})
    out = run(RedactConfig(rules=[RedactRule(path="**.email")]), ev)
    assert out["metadata"]["principal"]["email"] == "[REDACTED]"
    assert out["metadata"]["nested"]["deep"]["email"] == "[REDACTED]"
    assert out["metadata"]["principal"]["id"] == "alice"
    out = run(RedactConfig(rules=[RedactRule(path="metadata.principal")]), ev)
    assert out["metadata"]["principal"] == {"id": "[REDACTED]", "email": "[REDACTED]",
                                            "roles": ["[REDACTED]"]}
    dropped = run(RedactConfig(rules=[RedactRule(path="metadata.principal", style="drop")]), ev)
    assert "principal" not in dropped["metadata"]


def test_everything_redacted_still_validates_and_keeps_fixed_fields():
    for style in ("replace", "drop", "keep", "hash"):
        cfg = RedactConfig(rules=[RedactRule(path="**", style=style, keep_first=1, hash_salt=SALT)])
        for line in LINES:
            ev = parse_line(line, context=CTX)
            out = run(cfg, ev)
            for key in ("event_id", "timestamp", "event_type", "event_category", "outcome", "schema_version"):
                assert out[key] == ev[key]
            assert out["decision"]["severity"] == ev["decision"]["severity"]


def test_fixed_format_fields_cannot_be_named():
    for path in ("event_id", "timestamp", "decision.severity", "decision.policy_hash", "source.kind"):
        with pytest.raises(ValueError, match="fixed format"):
            compile_redactor(RedactConfig(rules=[RedactRule(path=path)]))


def test_ip_typed_copies_are_removed_when_masked():
    ev = captured(13)  # egress to 203.0.113.7:8080, blocked
    assert ev["resource"]["ip"] == "203.0.113.7" and ev["threat"]["indicator"]["type"] == "ipv4-addr"
    out = run(PrivacyConfig(builtin=["ipv4"]), ev)
    assert out["resource"]["host"] == out["resource"]["name"] == "[REDACTED]"
    assert "ip" not in out["resource"] and "threat" not in out
    assert "203.0.113.7" not in encode_event(out).decode()


def test_email_and_ipv6_patterns():
    ev = event_with(who="mail alice.smith+x@corp.example.org now", v6="from 2001:db8::1 at 08:28:51")
    out = run(PrivacyConfig(builtin=["email", "ipv6"]), ev)
    assert out["metadata"] == {"who": "mail [REDACTED] now", "v6": "from [REDACTED] at 08:28:51"}


def test_a_scoped_pattern_masks_inside_its_path_and_its_copies_elsewhere():
    ev = event_with(cmd="deploy --ticket OPS-1234", other="see OPS-1234")
    ev["decision"]["reason"] = "ticket OPS-1234 pending"
    cfg = RedactConfig(rules=[RedactRule(path="metadata.cmd", pattern=r"OPS-\d+")])
    out = run(cfg, ev)
    assert out["metadata"]["cmd"] == "deploy --ticket [REDACTED]"
    assert out["metadata"]["other"] == "see [REDACTED]"
    assert out["decision"]["reason"] == "ticket [REDACTED] pending"


def test_user_regex_with_a_secret_group_masks_only_the_group():
    cfg = RedactConfig(rules=[RedactRule(pattern=r"session=(?P<secret>\w+)")])
    assert run(cfg, event_with(q="a=1&session=abc123&b=2"))["metadata"]["q"] == "a=1&session=[REDACTED]&b=2"


def test_non_string_metadata_values():
    ev = event_with(count=42, flag=True, nothing=None)
    out = run(RedactConfig(rules=[RedactRule(path="metadata.*")]), ev)
    assert out["metadata"] == {"count": "[REDACTED]", "flag": "[REDACTED]", "nothing": "[REDACTED]"}
    assert run(RedactConfig(rules=[RedactRule(path="metadata.count", style="drop")]), ev)["metadata"] == {
        "flag": True, "nothing": None}


def test_same_input_same_bytes():
    cfg = PrivacyConfig(builtin=["secrets", "email"],
                        rules=[RedactRule(path="agent.id", style="hash", hash_salt=SALT)])
    ev = event_with(note="password=x user=alice@example.com")
    assert encode_event(run(cfg, ev)) == encode_event(run(cfg, copy.deepcopy(ev)))


# --------------------------------------------------------------------------------------------- config

def test_config_errors_are_precise():
    from agent.config_loader import load_section

    with pytest.raises(ConfigError, match=r"\[privacy\] rules\[0\].*path, a pattern"):
        load_section(PrivacyConfig, {"rules": [{"style": "drop"}]}, "agent.toml: [privacy]")
    with pytest.raises(ConfigError, match="invalid regular expression"):
        load_section(PrivacyConfig, {"rules": [{"pattern": "(unclosed"}]}, "agent.toml: [privacy]")
    with pytest.raises(ConfigError, match="unknown pattern 'phone'"):
        load_section(PrivacyConfig, {"builtin": ["phone"]}, "agent.toml: [privacy]")
    with pytest.raises(ConfigError, match="dotted field path"):
        load_section(PrivacyConfig, {"rules": [{"path": "metadata..x"}]}, "agent.toml: [privacy]")
    cfg = load_section(PrivacyConfig, {"rules": [{"path": "agent.id", "style": "hash",
                                                   "hash_salt": "${SALT}"}]},
                       "agent.toml: [privacy]", {"SALT": "very-private-salt"})
    assert cfg.builtin == ["secrets"] and "very-private-salt" not in repr(cfg)


def test_ingest_through_the_agent_config(tmp_path):
    from agent.config import parse_config

    cfg = parse_config("""
[privacy]
rules = [{ path = "agent.id", style = "replace", replacement = "[agent]" }]
[inputs.a]
type = "file"
paths = ["/tmp/x.jsonl"]
[outputs.o]
type = "stdout"
""")
    ctx = cfg.mapping_context()
    ev = parse_line(LINES[2], context=ctx)
    assert ev["agent"]["id"] == "[agent]" and ev["mitre"]["technique"]["id"] == "T1552.004"
    line = orjson.loads(LINES[1])
    line["metadata"]["note"] = "password=hunter2"
    assert parse_line(orjson.dumps(line), context=ctx)["metadata"]["note"] == "password=[REDACTED]"


def test_quarantined_lines_and_reasons_are_masked_too():
    from agent.inputs.base import Line, map_lines
    from transforms.pipeline import compile_ingest

    ctx = MappingContext(postprocess=compile_ingest(PrivacyConfig(), None))
    not_a_record = b'{"password": "hunter2", "note": "x"}'
    bad_severity = orjson.dumps({**orjson.loads(LINES[2]), "severity": "token=abcdef123"})
    lines = [Line(0, 100, not_a_record), Line(100, 900, bad_severity)]
    events, quarantined = map_lines(lines, source="f", context=ctx, kind=None, max_line_bytes=10_000)
    assert not events and len(quarantined) == 2
    assert b"hunter2" not in quarantined[0].excerpt and b'"password": "[REDACTED]"' in quarantined[0].excerpt
    assert "abcdef123" not in quarantined[1].reason and "token=[REDACTED]" in quarantined[1].reason
    assert b"abcdef123" not in quarantined[1].excerpt
    plain = MappingContext()  # no [privacy]: the excerpt is the line as it was
    _, q = map_lines(lines[:1], source="f", context=plain, kind=None, max_line_bytes=10_000)
    assert q[0].excerpt == not_a_record


def test_a_file_hash_salt_is_read_once_so_pseudonyms_stay_one_per_value_for_the_run(tmp_path) -> None:
    """A ``file:`` secret is re-read when its file changes (credentials rotate without a restart),
    and a hash salt was one too: a redactor built after a rotation (an output's drain restarted after
    a crash, the helper's renderers) keyed its HMAC with the new salt while the others kept the one
    they had built with, so one output sent two pseudonyms of the same value in one run. A hash salt
    is read once, at load: the one the run started with, everywhere (docs/transforms.md)."""
    from agent.config import load_config
    from outputs.render import build_output_pipeline
    from tests.integration.harness import write_config

    salt = tmp_path / "salt"
    salt.write_text("pepper")
    path = write_config(tmp_path, extra=f"""
[privacy]
rules = [{{path = "agent.id", style = "hash", hash_salt = "file:{salt}"}}]
""", output_extra=f"""
[outputs.archive.redact]
hash_salt = "file:{salt}"
rules = [{{path = "resource.path", style = "hash"}}]
""")
    cfg = load_config(str(path))

    def pseudonyms() -> tuple[str, str]:
        ingested = cfg.mapping_context().postprocess(ssh_block())  # [privacy], as at ingest
        pipeline = build_output_pipeline(cfg.outputs["archive"])  # as a (re)started drain builds it
        sent = orjson.loads(pipeline.render(ssh_block(), encode_event(ssh_block())))
        return ingested["agent"]["id"], sent["resource"]["path"]

    before = pseudonyms()
    salt.write_text("rotated")
    assert pseudonyms() == before
    assert before[0].startswith("hmac-sha256:") and before[1].startswith("hmac-sha256:")
