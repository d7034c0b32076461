"""MITRE enrichment: the shipped table on real captures and every AI shape, overrides, table checks."""

from __future__ import annotations

import copy
import re

import orjson
import pytest

from agent.config_loader import ConfigError
from agent.event import validate_event
from agent.mapping import MappingContext, map_record, parse_line
from tests.shared_paths import FIXTURES
from transforms.config import EnrichmentConfig, MitreRef, MitreRule
from transforms.enrich import DEFAULT_TABLE, Enricher, compile_enricher, load_table

CTX = MappingContext()
LINES = (FIXTURES / "audit-forward.jsonl").read_bytes().splitlines()
ENRICHER = compile_enricher(EnrichmentConfig())


def technique(ev: dict) -> str | None:
    before = copy.deepcopy(ev)
    out = ENRICHER(ev)
    assert ev == before, "the input event was mutated"
    validate_event(out)
    return (out.get("mitre") or {}).get("technique", {}).get("id")


# Expected technique per line of the real hushd 0.1.0 capture (checks/NN-*.json in the fixture README).
CAPTURE_TECHNIQUES = [
    None,  # session_start
    None,  # allowed read of project source
    "T1552.004", "T1552.004",  # ~/.ssh/id_rsa, both spellings
    "T1552.001",  # ~/.aws/credentials
    "T1003.008",  # /etc/shadow
    "T1552.001",  # .env
    None,  # allowed write
    "T1552.001",  # secret_leak on a file write
    None, None, None,  # allowed write and egress
    "T1041", "T1041",  # blocked egress to a domain and a raw IP
    None, None,  # shell: hushd has no shell guard, both allowed (even the exfil pipeline)
    None,  # allowed MCP tool
    "AML.T0053", "AML.T0053",  # MCP tool blocked, and one that requires confirmation (warned)
    "T1552.001",  # secret_leak in a patch
    "T1565.001",  # patch_integrity
    None, None,  # policy reloads
]


def test_the_real_captures():
    assert len(LINES) == len(CAPTURE_TECHNIQUES)
    got = [technique(parse_line(line, context=CTX)) for line in LINES]
    assert got == CAPTURE_TECHNIQUES


def test_the_full_mitre_value_and_sub_technique_naming():
    out = ENRICHER(parse_line(LINES[2], context=CTX))
    assert out["mitre"] == {"framework": "attack",
                            "tactic": {"id": "TA0006", "name": "Credential Access"},
                            "technique": {"id": "T1552.004", "name": "Unsecured Credentials: Private Keys"}}


def test_plain_allows_are_returned_as_the_same_object():
    ev = parse_line(LINES[1], context=CTX)
    assert ENRICHER(ev) is ev


def hushd(**kw: object) -> dict:
    rec = {"id": "0194e1a2-7c3d-7b11-9f00-3c1d2e4f5a01", "timestamp": "2026-02-07T09:30:12.481Z",
           "event_type": "violation", "action_type": "file_access", "target": "/x", "decision": "blocked"}
    rec.update(kw)
    return map_record(rec, context=CTX)


@pytest.mark.parametrize(("record", "expected"), [
    ({"action_type": "custom", "target": "untrusted_text", "guard": "prompt_injection",
      "severity": "Critical"}, ("atlas", "AML.TA0005", "AML.T0051")),
    ({"action_type": "custom", "target": "user_input", "guard": "jailbreak_detection"},
     ("atlas", "AML.TA0012", "AML.T0054")),
    ({"action_type": "egress", "target": "c2.example.net:443", "guard": "threat_intel"},
     ("attack", "TA0011", "T1071")),
    ({"action_type": "shell", "target": "rm -rf /", "guard": "posture"}, ("attack", "TA0002", "T1059.004")),
    ({"action_type": "file_write", "target": "/home/a/.ssh/authorized_keys", "guard": "forbidden_path"},
     ("attack", "TA0003", "T1098.004")),
    ({"action_type": "file_write", "target": "/home/a/.bashrc", "guard": "path_allowlist"},
     ("attack", "TA0003", "T1546.004")),
    ({"action_type": "patch", "target": "/etc/cron.d/job", "guard": "forbidden_path"},
     ("attack", "TA0003", "T1053.003")),
    ({"action_type": "file_access", "target": "/home/a/.bash_history", "guard": "forbidden_path"},
     ("attack", "TA0006", "T1552.003")),
    ({"action_type": "file_access", "target": "/srv/data.csv", "guard": "path_allowlist"},
     ("attack", "TA0009", "T1005")),
    ({"action_type": "file_write", "target": "/srv/app.py", "guard": "forbidden_path"},
     ("attack", "TA0040", "T1565.001")),
    ({"action_type": "egress", "target": "paste.example:443", "guard": "egress_allowlist",
      "decision": "allowed", "severity": "Warning"}, ("attack", "TA0010", "T1041")),  # a logged egress
])
def test_hushd_guards(record, expected):
    out = ENRICHER(hushd(**record))
    validate_event(out)
    m = out["mitre"]
    assert (m["framework"], m["tactic"]["id"], m["technique"]["id"]) == expected


def adapter(typ: str, decision: dict | None) -> dict:
    rec = {"id": "a-1", "type": typ, "timestamp": "2026-02-07T09:30:12.481Z", "contextId": "ctx-1",
           "sessionId": "s-1", "toolName": "bash"}
    if decision is not None:
        rec["decision"] = decision
    return map_record(rec, context=CTX)


@pytest.mark.parametrize(("typ", "decision", "expected"), [
    ("prompt_security_prompt_injection", {"denied": True, "guard": "prompt_injection"}, "AML.T0051"),
    ("prompt_security_injection", None, "AML.T0051"),  # a detection without a decision
    ("prompt_security_jailbreak", {"status": "warn"}, "AML.T0054"),
    ("prompt_security_jailbreak", None, "AML.T0054"),
    ("prompt_security_output_sanitized", {"denied": True}, "AML.T0057"),
    ("output_sanitized", {"denied": True, "guard": "secret_leak"}, "AML.T0057"),
    ("tool_call_blocked", {"denied": True, "guard": "mcp_tool"}, "AML.T0053"),
    ("tool_call_warning", {"warn": True, "allowed": True}, "AML.T0053"),
    ("tool_call_allowed", {"allowed": True}, None),
    ("tool_call_start", None, None),
    ("prompt_security_watermark", None, None),
])
def test_adapter_ai_detections(typ, decision, expected):
    assert technique(adapter(typ, decision)) == expected


def test_an_existing_mitre_value_is_kept():
    ev = hushd(guard="forbidden_path", target="/home/a/.ssh/id_rsa")
    ev["mitre"] = {"framework": "attack", "tactic": {"id": "TA0001", "name": "Initial Access"},
                   "technique": {"id": "T1078", "name": "Valid Accounts"}}
    assert ENRICHER(ev) is ev


def test_every_shipped_rule_is_reachable():
    """For each rule of the shipped table, an event built from its own conditions must be tagged by it:
    no rule is shadowed by an earlier, broader one."""
    enricher = compile_enricher(EnrichmentConfig())
    assert isinstance(enricher, Enricher)
    table = load_table(DEFAULT_TABLE)
    assert len(table) >= 15
    for rule in table:
        state = rule.decision[0]
        path = rule.path[0].replace("*", "x") if rule.path else "/srv/file.txt"
        name = rule.resource_name[0].replace("*", "") if rule.resource_name else path
        decision: dict = {"severity": "high"}
        if state != "none":
            decision["allowed"] = state != "blocked"
        if state in ("blocked", "warned") or rule.guard:
            decision["guard"] = rule.guard[0] if rule.guard else "some_guard"
        ev = {"action": rule.action[0] if rule.action else "custom",
              "event_type": rule.event_type[0] if rule.event_type else "guard_block",
              "event_category": rule.category[0] if rule.category else "file",
              "decision": decision,
              "resource": {"type": rule.resource_type[0] if rule.resource_type else "file",
                           "name": name, "path": path}}
        assert enricher.explain(ev) == rule.name, (rule.name, ev)
        # and the real (cached, planned) path picks the same rule's technique
        assert enricher(ev)["mitre"]["technique"]["id"] == rule.technique.id, (rule.name, ev)


def test_shipped_table_ids_and_names():
    for rule in load_table(DEFAULT_TABLE):
        assert rule.name and rule.tactic.name and rule.technique.name
        if "." in rule.technique.id and rule.framework == "attack":
            assert ": " in rule.technique.name, f"{rule.name}: a sub-technique is named 'Parent: Sub'"


def test_inline_rules_come_first_and_defaults_can_be_dropped(tmp_path):
    mine = MitreRule(name="mine", guard=["forbidden_path"], path=["*/.ssh/*"], framework="attack",
                     tactic=MitreRef("TA0009", "Collection"),
                     technique=MitreRef("T1005", "Data from Local System"))
    ev = parse_line(LINES[2], context=CTX)
    assert compile_enricher(EnrichmentConfig(rules=[mine]))(ev)["mitre"]["technique"]["id"] == "T1005"
    only_mine = compile_enricher(EnrichmentConfig(rules=[mine], defaults=False))
    assert only_mine(parse_line(LINES[5], context=CTX))["event_type"] == "forbidden_path"
    assert "mitre" not in only_mine(parse_line(LINES[5], context=CTX))  # /etc/shadow: no rule of mine
    assert compile_enricher(EnrichmentConfig(mitre=False)) is None
    assert compile_enricher(EnrichmentConfig(defaults=False)) is None


def test_a_user_table_file(tmp_path):
    table = tmp_path / "mine.toml"
    table.write_text("""
version = 1
[[rule]]
name = "shadow-is-collection"
path = ["/etc/shadow"]
tactic = { id = "TA0009", name = "Collection" }
technique = { id = "T1005", name = "Data from Local System" }
""")
    enricher = compile_enricher(EnrichmentConfig(table=str(table)))
    assert enricher(parse_line(LINES[5], context=CTX))["mitre"]["technique"]["id"] == "T1005"
    assert enricher(parse_line(LINES[2], context=CTX))["mitre"]["technique"]["id"] == "T1552.004"  # default


def test_a_user_table_file_expands_the_environment_as_agent_toml_does(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAWD_TEST_SECRET_DIR", "/etc")
    table = tmp_path / "mine.toml"
    table.write_text("""
[[rule]]
path = ["${CLAWD_TEST_SECRET_DIR}/shadow"]
tactic = { id = "TA0009", name = "Collection" }
technique = { id = "T1005", name = "Data from Local System" }
""")
    (rule,) = load_table(table)
    assert rule.path == ["/etc/shadow"]
    monkeypatch.delenv("CLAWD_TEST_SECRET_DIR")
    with pytest.raises(ConfigError, match="CLAWD_TEST_SECRET_DIR"):
        load_table(table)


@pytest.mark.parametrize(("body", "message"), [
    ('[[rule]]\nname = "x"\ntactic = { id = "TA06", name = "t" }\ntechnique = { id = "T1005", name = "n" }',
     r"rule\[0\] \(x\).*tactic.id: expected a MITRE attack tactic id"),
    ('[[rule]]\nframework = "atlas"\ntactic = { id = "AML.TA0005", name = "t" }\n'
     'technique = { id = "T1059", name = "n" }', r"technique.id: expected a MITRE atlas technique id"),
    ('[[rule]]\ncolour = "red"', r"unknown key 'colour'"),
    ('[[rule]]\ntactic = { id = "TA0006" }\ntechnique = { id = "T1005", name = "n" }', r"id and name"),
    ('rules = []', r"unknown top-level key 'rules'"),
    ('[[rule]]\ndecision = []\ntactic = { id = "TA0006", name = "t" }\n'
     'technique = { id = "T1005", name = "n" }', r"decision: give at least one of"),
    ('[[rule', r"invalid TOML"),
])
def test_table_errors_name_the_file_and_rule(tmp_path, body, message):
    table = tmp_path / "bad.toml"
    table.write_text(body)
    with pytest.raises(ConfigError, match=message) as exc:
        compile_enricher(EnrichmentConfig(table=str(table), defaults=False))
    assert str(table) in str(exc.value)


def test_agent_toml_reports_a_bad_table_at_load(tmp_path):
    from agent.config import parse_config

    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read"):
        parse_config(f"""
[enrichment]
table = "{tmp_path / 'missing.toml'}"
[inputs.a]
type = "file"
paths = ["/tmp/x.jsonl"]
[outputs.o]
type = "stdout"
""")
    with pytest.raises(ConfigError, match=r"\[enrichment\] rules\[0\].*technique.id"):
        parse_config("""
[[enrichment.rules]]
guard = ["x"]
tactic = { id = "TA0006", name = "Credential Access" }
technique = { id = "1552", name = "Unsecured Credentials" }
[inputs.a]
type = "file"
paths = ["/tmp/x.jsonl"]
[outputs.o]
type = "stdout"
""")


def test_docs_list_every_shipped_rule():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "transforms.md").read_text()
    for rule in load_table(DEFAULT_TABLE):
        assert f"`{rule.name}`" in doc and rule.technique.id in doc, rule.name


def test_result_is_deterministic():
    a = [orjson.dumps(ENRICHER(parse_line(line, context=CTX))) for line in LINES]
    b = [orjson.dumps(compile_enricher(EnrichmentConfig())(parse_line(line, context=CTX))) for line in LINES]
    assert a == b
    assert all(re.match(rb"^\{", x) for x in a)


def test_glob_shortcuts_agree_with_fnmatch():
    import fnmatch

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from transforms.enrich import _Globs

    patterns = sorted({p for rule in load_table(DEFAULT_TABLE) for p in rule.path + rule.resource_name}
                      | {"a*b", "?x", "[ab]c", "*", "exact"})
    pieces = st.sampled_from(["/", ".ssh", "id_rsa", ".env", ".", "x", "etc", "cron.d", "shadow",
                              "authorized_keys", ".pem", "*", "a", "b", "ac", "credentials", "~"])

    @settings(max_examples=300, derandomize=True, deadline=None, database=None)
    @given(st.lists(pieces, max_size=6).map("".join))
    def agree(text: str) -> None:
        for p in patterns:
            assert _Globs([p]).match(text) == fnmatch.fnmatchcase(text, p), (p, text)

    agree()
    assert _Globs(["*/.ssh/*", "/etc/shadow"]).match("/home/a/.ssh/id")
    assert not _Globs(["*.pem"]).match("x.pem.bak")
