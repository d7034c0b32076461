"""The ECS hot path (``ecs_document``, ``ecs_json``: shared cached blocks, pre-encoded fragments) gives
exactly the bytes of the plain ``to_ecs`` document, including for the inputs its caches and inline
fast paths hand back to the general code (odd timestamps, dotted or unhashable labels, junk values)."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.event import encode_event
from agent.mapping import MappingContext, parse_line
from tests.shared_paths import FIXTURES
from transforms.config import EnrichmentConfig, FieldsConfig, PrivacyConfig, TransformConfig
from transforms.ecs import _timestamp_ms, ecs_document, ecs_json, to_ecs
from transforms.pipeline import build_pipeline, compile_ingest

SORT = orjson.OPT_SORT_KEYS
CTX = MappingContext(labels={"team": "security"}, environment="production", tenant_id="acme",
                     host_name="dev-laptop", postprocess=compile_ingest(PrivacyConfig(), EnrichmentConfig()))
EVENTS = [parse_line(line, context=CTX)
          for line in (FIXTURES / "audit-forward.jsonl").read_bytes().splitlines() if line.strip()]


def reference(ev: dict) -> bytes:
    """What the pipeline sent before the fast path: the private document, encoded with sorted keys."""
    return orjson.dumps(to_ecs(copy.deepcopy(ev)), option=SORT)


def assert_same(ev: dict) -> None:
    want = reference(ev)
    before = encode_event(ev)
    assert ecs_json(ev) == want
    assert ecs_json(ev) == want  # second call: from the caches
    assert orjson.dumps(ecs_document(ev), option=SORT) == want
    assert encode_event(ev) == before  # the event is not modified


def test_fixture_events_encode_identically():
    assert len(EVENTS) == 23
    for ev in EVENTS:
        assert_same(ev)


def variant(**changes: Any) -> dict:
    ev = copy.deepcopy(EVENTS[3])  # forbidden_path on ~/.ssh/id_rsa, with mitre, threat, labels, session
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = ev
        for p in parents:
            node = node[p]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return ev


@pytest.mark.parametrize("changes", [
    {"labels": {"a.b": "dotted", "a_b": "collides", "empty": "", "n": 1}},
    {"labels": {"long": "v" * 3000}},
    {"labels": {"x": ["unhashable"]}},
    {"labels": ["not", "a", "dict"]},
    {"labels": {}},
    {"session": {"id": "s", "run_id": "r", "environment": "e", "user_id": "u" * 2000, "tenant_id": "t"}},
    {"session": {"id": {"un": "hashable"}}},
    {"session": {"user_id": "only-user"}},
    {"observer__version": "v" * 2000, "observer__host_name": "h" * 2000},
    {"observer__version": ["junk"]},
    {"decision__ruleset": "r" * 2000},
    {"decision__ruleset": {"junk": 1}},
    {"decision__guard": None, "decision__ruleset": "only-ruleset"},
    {"mitre": None},
    {"mitre": {"framework": "atlas",
               "technique": {"id": "AML.T0051.000", "name": "LLM Prompt Injection: Direct"}}},
    {"mitre": None, "threat": {"indicator": {"type": "domain-name", "value": "evil.example"}}},
    {"threat": {"indicator": {"type": "unknown"}}},
    {"resource": {"type": "file", "name": "x", "path": "C:\\Users\\bob\\" + "s" * 2000 + ".txt"}},
    {"resource": {"type": "file", "name": "x", "path": "/" + "d" * 1500 + "/f." + "e" * 1500}},
    {"resource": {"type": "file", "name": "no-path"}},
    {"resource": {"type": "tool", "name": "t" * 2000}},
    {"resource": {"type": "network", "name": "n", "host": "2001:db8::1", "ip": "2001:db8::1", "port": 443}},
    {"agent": {"id": "a" * 2000}},
    {"source": {"type": "violation", "nested": {"z": 1, "a": [2, 3]}}},
])
def test_edge_cases_encode_identically(changes):
    assert_same(variant(**changes))


@pytest.mark.parametrize("ts", [
    "2026-02-07T09:30:12.481516234Z", "2026-02-07T09:30:12.481Z", "2026-02-07T09:30:12Z",
    "2026-02-07T09:30:12.4Z", "2026-02-07T09:30:12.1234Z", "2016-12-31T23:59:60Z",
    "2016-12-31T23:59:60.5Z", "2016-12-31T23:59:60.123Z", "2016-12-31T23:59:60.123456Z",
])
def test_inline_timestamp_matches_the_general_function(ts):
    ev = variant(timestamp=ts)
    assert ecs_json(ev) == reference(ev)
    assert orjson.loads(ecs_json(ev))["@timestamp"] == _timestamp_ms(ts)


@pytest.mark.parametrize(("encode", "team"), [
    (ecs_json, "red-1"), (lambda ev: orjson.dumps(ecs_document(ev), option=SORT), "red-2")])
def test_a_cached_block_never_holds_the_callers_objects(encode, team):
    ev = variant(labels={"team": team})
    first = encode(ev)  # the first to see these labels: a cache would keep ev's dict
    ev["labels"]["team"] = "blue"  # the caller reuses its dict
    fresh = variant(labels={"team": team})
    assert encode(fresh) == first == reference(fresh)
    assert orjson.loads(encode(ev))["labels"] == {"team": "blue"}


def test_to_ecs_is_private_even_though_ecs_document_shares():
    ev = EVENTS[3]
    shared_a, shared_b = ecs_document(ev), ecs_document(ev)
    assert shared_a["observer"] is shared_b["observer"]  # the point of the fast path
    doc = to_ecs(ev)
    doc["observer"]["product"] = "x"
    doc["clawdstrike"]["source"]["kind"] = "x"
    doc["labels"]["team"] = "x"
    doc["threat"]["tactic"]["id"].append("x")
    assert ev["source"]["kind"] == "hushd_audit" and ev["labels"]["team"] == "security"
    assert orjson.dumps(to_ecs(ev), option=SORT) == orjson.dumps(ecs_document(ev), option=SORT)
    assert b'"x"' not in ecs_json(ev)


def test_pipeline_paths_agree():
    """The plain path (ecs_json) and the override path (ecs_document, copy-on-write) give the bytes of
    the reference document with the same overrides applied by hand."""
    plain = build_pipeline(TransformConfig(format="ecs"))
    over = build_pipeline(TransformConfig(format="ecs", fields=FieldsConfig(
        set={"threat.tactic.id": "T", "observer.vendor": "V"}, exclude=["labels.team"])))
    for ev in EVENTS:
        body = encode_event(ev)
        assert plain.render({}, body) == plain.render(ev, body) == reference(ev)
        want = to_ecs(ev)
        if "threat" in want and "tactic" in want["threat"]:
            want["threat"]["tactic"]["id"] = "T"
        elif "threat" in want:
            want["threat"]["tactic"] = {"id": "T"}
        else:
            want["threat"] = {"tactic": {"id": "T"}}
        want["observer"]["vendor"] = "V"
        want["labels"].pop("team")
        assert over.render(ev, body) == orjson.dumps(want, option=SORT)
    assert all(ecs_json(ev) == reference(ev) for ev in EVENTS)  # the overrides edited no cache


_text = st.text(min_size=0, max_size=40) | st.text(min_size=1020, max_size=1030)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(labels=st.dictionaries(st.text(max_size=5), st.one_of(_text, st.integers(-2**63, 2**63 - 1)),
                              max_size=4),
       session=st.dictionaries(st.sampled_from(["id", "run_id", "environment", "user_id", "tenant_id"]),
                               _text, max_size=5),
       version=_text, host=_text, ruleset=_text, guard=st.one_of(st.none(), _text), path=_text,
       reason=_text)
def test_random_values_encode_identically(labels, session, version, host, ruleset, guard, path, reason):
    ev = variant(labels=labels, session=session, observer__version=version, observer__host_name=host,
                 decision__ruleset=ruleset, decision__guard=guard, decision__reason=reason)
    ev["resource"]["path"] = path
    assert_same(ev)
