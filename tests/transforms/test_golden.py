"""Golden vectors: every case and variant in tests/golden/ is reproduced byte for byte.

A failure is a change a SIEM parser will see. If it is deliberate, run
``.venv/bin/python tests/golden/regen.py`` and review the diff of tests/golden/ like code.
"""

from __future__ import annotations

import difflib

import orjson
import pytest

from agent.event import (
    EventCategory,
    EventType,
    IndicatorType,
    Outcome,
    ResourceType,
    Severity,
    SourceKind,
    validate_event,
)
from tests.golden.regen import CASES, expected_path, render
from tests.validators import cef as cef_validator
from tests.validators.ecs import validate_ecs
from tests.validators.ocsf import validate_ocsf

RENDERED = {case.name: render(case) for case in CASES}
PARAMS = [(case, variant) for case in CASES for variant in case.variants]


@pytest.mark.parametrize(("case", "variant"), PARAMS, ids=[f"{c.name}:{v}" for c, v in PARAMS])
def test_golden_bytes(case, variant):
    path = expected_path(case, variant)
    assert path.exists(), f"{path.name} missing: run tests/golden/regen.py"
    expected, got = path.read_bytes(), RENDERED[case.name][variant]
    if got != expected:
        diff = "\n".join(difflib.unified_diff(expected.decode().splitlines(), got.decode().splitlines(),
                                              "expected", "rendered now", lineterm="", n=0))
        pytest.fail(f"{path.name} drifted from {case.source} (run tests/golden/regen.py if deliberate):\n"
                    f"{diff[:4000]}")


def test_one_output_line_per_input_line():
    for case in CASES:
        n = len(case.read())
        for variant, data in RENDERED[case.name].items():
            assert data.count(b"\n") == n, (case.name, variant)


def test_no_stray_golden_files():
    from tests.golden.regen import GOLDEN

    known = {expected_path(c, v).name for c, v in PARAMS} | {f"{c.name}.input.jsonl" for c in CASES}
    known |= {"regen.py", "__init__.py", "__pycache__"}
    assert sorted(p.name for p in GOLDEN.iterdir() if p.name not in known) == []


def _canonical() -> list[dict]:
    return [orjson.loads(line) for case in CASES for line in RENDERED[case.name]["canonical"].splitlines()]


def test_the_vectors_cover_every_shape_enum_guard_and_action():
    events = _canonical()
    for ev in events:
        validate_event(ev)

    def seen(get):
        return {get(ev) for ev in events} - {None}

    assert seen(lambda e: e["source"]["kind"]) == {k.value for k in SourceKind}
    assert seen(lambda e: e["event_type"]) == {t.value for t in EventType}
    assert seen(lambda e: e["event_category"]) == {c.value for c in EventCategory}
    assert seen(lambda e: e["decision"]["severity"]) == {s.value for s in Severity}
    assert seen(lambda e: e["outcome"]) == {o.value for o in Outcome}
    assert seen(lambda e: e["resource"]["type"]) == {r.value for r in ResourceType}
    assert seen(lambda e: (e.get("threat") or {}).get("indicator", {}).get("type")) == {
        i.value for i in IndicatorType}
    hushd_guards = {"forbidden_path", "path_allowlist", "egress_allowlist", "secret_leak", "patch_integrity",
                    "mcp_tool", "prompt_injection", "jailbreak_detection", "posture", "posture_budget",
                    "threat_intel", "clawdstrike-virustotal"}
    assert hushd_guards <= seen(lambda e: e["decision"].get("guard"))
    actions = {"file_access", "file_write", "egress", "shell", "mcp_tool", "patch", "custom", "session",
               "policy", "rbac", "webhook", "tool_call", "output_sanitize", "prompt_security"}
    assert actions <= seen(lambda e: e["action"])
    assert seen(lambda e: (e.get("mitre") or {}).get("framework")) == {"attack", "atlas"}


def test_every_variant_is_valid_in_its_format():
    for case in CASES:
        for variant, data in RENDERED[case.name].items():
            for number, line in enumerate(data.splitlines(), start=1):
                where = f"{case.name}.{variant} line {number}"
                if variant.startswith("ecs"):
                    assert validate_ecs(orjson.loads(line)) == [], where
                elif variant.startswith("ocsf"):
                    assert validate_ocsf(orjson.loads(line)) == [], where
                elif variant.startswith("cef"):
                    text = line.decode("utf-8")
                    if variant == "cef":  # the options variant sets a custom key on purpose
                        assert cef_validator.validate_cef(text) == [], where
                    cef_validator.parse_cef(text)


def test_rendering_is_deterministic():
    for case in CASES[:3]:
        assert render(case) == RENDERED[case.name]


def test_secrets_never_reach_a_golden_file():
    from tests.golden.regen import GOLDEN

    for path in GOLDEN.iterdir():
        if path.name.endswith(".input.jsonl") or path.suffix not in (".jsonl", ".txt"):
            continue
        data = path.read_bytes()
        for secret in (b"abcdefghijklmnop1234", b"hunter2", b"t0ps3cret", b"AKIAIOSFODNN7EXAMPLE",
                       b"plain-value"):
            assert secret not in data, (path.name, secret)
