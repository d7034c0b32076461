"""``ecs_json``'s templates (transforms.ecs._templated): an event whose shape was seen before is rendered
as constant byte segments joined with its own values, and must give exactly the bytes of the general
path (``to_ecs`` encoded with sorted keys) on its first, second (template made) and later renders, for
events that share a template but differ in every hole, and for inputs the fast path hands back."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import transforms.ecs as ecs_mod
from tests.transforms.test_ecs_fastpath import EVENTS, reference, variant
from transforms.ecs import ecs_json


def renders_like_reference(ev: dict, times: int = 3) -> None:
    want = reference(ev)
    for _ in range(times):
        assert ecs_json(ev) == want


def test_fixture_events_from_their_templates():
    for ev in EVENTS:
        renders_like_reference(ev)
    hits = sum(ecs_mod._templated(ev) is not None for ev in EVENTS)
    assert hits >= 20  # nearly every fixture event has a usable template by now (none contains null)
    assert all(ecs_mod._templated(ev) == reference(ev) for ev in EVENTS if ecs_mod._templated(ev))


def holes_changed(ev: dict, i: int) -> dict:
    """The same shape with every per-event value (the holes) changed."""
    ev = copy.deepcopy(ev)
    ev["event_id"] = f"00000000-0000-4000-8000-{i:012d}"
    ev["timestamp"] = f"2026-03-0{i % 9 + 1}T10:11:{i % 60:02d}.{i:09d}Z"
    ev["source"] = {**ev["source"], "id": f"src-{i}", "extra": {"n": i, "q": 'a"b\\c'}}
    if ev["decision"].get("reason"):
        ev["decision"]["reason"] = f"reason {i} \u00e9\u2028" + "r" * (i * 300)
    if ev["resource"]["type"] == "file" and ev["resource"].get("path"):
        paths = ["/p/dir/f.txt", "rel", "C:\\w\\x.y", "/", "/d/.env", "/x/" + "l" * 2000]
        ev["resource"]["path"] = paths[i % 6]
        ev["resource"]["name"] = f"name-{i}"
    if ev.get("metadata"):
        ev["metadata"] = {"k": i, "z": [1, None], "a": "\x01"}
    ind = (ev.get("threat") or {}).get("indicator")
    if ind and ind.get("value"):
        ev["threat"] = {"indicator": {**ind, "value": f"v{i}" + "x" * (i * 250)}}
    return ev


@pytest.mark.parametrize("index", range(len(EVENTS)))
def test_one_template_many_values(index):
    ev = EVENTS[index]
    renders_like_reference(ev)
    for i in range(8):
        renders_like_reference(holes_changed(ev, i), times=1)


@pytest.mark.parametrize("changes", [
    {"mitre": None},  # an absent optional field is keyed apart from an explicit null
    {"labels": {"team": None}},  # null in the key: general path
    {"labels": {"team": 1}}, {"labels": {"team": 1.0}}, {"labels": {"team": True}},
    {"session": {"id": 1}}, {"session": {"id": 1.0}}, {"session": {"id": True}},
    {"outcome": 1}, {"outcome": True},
    # absent and falsy differ for some fields (a guard of "" or 0 is "not None": a warn)
    {"decision__guard": None}, {"decision__guard": ""}, {"decision__guard": 0}, {"decision__guard": False},
    {"decision__allowed": None}, {"decision__allowed": 0}, {"decision__ruleset": 0},
    {"decision__reason": None}, {"decision__reason": ""}, {"decision__reason": 7},
    {"metadata": None}, {"metadata": {}},
    {"threat": {"indicator": {"type": "ipv4-addr", "value": "10.1.2.3"}}},
    {"threat": {"indicator": {"type": "file", "value": ""}}},
    {"threat": "junk"},
    {"source": [("type", "violation")]},
    {"timestamp": 17}, {"timestamp": "2016-12-31T23:59:60.5Z"},
    {"event_id": 2 ** 70}, {"event_id": True},
    {"resource": {"type": "file", "name": "n", "path": ["not", "str"]}},
    {"resource": {"type": "file", "path": "/no/name"}},
    {"resource": {"type": "file", "name": "no-path"}},
    {"resource": {"type": "process", "name": "/bin/sh -c 'ls -l'"}},
    {"observer__version": 1},
])
def test_edge_inputs_take_the_path_the_general_code_takes(changes):
    ev = variant(**changes)
    try:
        want: Any = reference(ev)
    except Exception as exc:  # the fast path must raise the same
        want = type(exc)
    for _ in range(3):
        try:
            got: Any = ecs_json(ev)
        except Exception as exc:
            got = type(exc)
        assert got == want


def test_numbers_of_equal_value_never_share_a_template():
    """True == 1 == 1.0 in Python, but not in the key (JSON bytes)."""
    outs = []
    for value in (1, True, 1.0):
        ev = variant(outcome=value)
        renders_like_reference(ev)
        outs.append(ecs_json(ev))
    assert len(set(outs)) == 3


def test_a_template_that_does_not_reproduce_its_event_is_never_used(monkeypatch):
    ev = variant(labels={"team": "template-check"})
    want = reference(ev)
    broken = (*ecs_mod._SENTINELS[:6], orjson.Fragment(b'"broken"'), ecs_mod._SENTINELS[7])
    monkeypatch.setattr(ecs_mod, "_SENTINELS", broken)  # the message hole is lost
    assert ecs_json(ev) == want  # seen once
    assert ecs_json(ev) == want  # template made, found wrong: general bytes
    assert False in ecs_mod._TEMPLATES.values()
    assert ecs_json(ev) == want and ecs_mod._templated(ev) is None


def test_caches_are_bounded(monkeypatch):
    monkeypatch.setattr(ecs_mod, "_TEMPLATE_MAX", 4)
    monkeypatch.setattr(ecs_mod, "_SEEN_MAX", 4)
    for i in range(12):
        renders_like_reference(variant(labels={"team": f"bounded-{i}"}))
    assert len(ecs_mod._TEMPLATES) <= 4 and len(ecs_mod._SEEN) <= 4


_text = st.text(min_size=0, max_size=30) | st.text(min_size=1020, max_size=1030)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reason=_text, path=_text, ts=st.sampled_from(["2026-02-07T09:30:12.481516234Z", "2026-02-07T09:30:12Z",
                                                     "2016-12-31T23:59:60.5Z", "x"]),
       meta=st.dictionaries(st.text(max_size=4), st.one_of(st.none(), st.integers(-9, 9), _text), max_size=3),
       value=_text, label=st.one_of(st.none(), _text))
def test_random_holes_encode_identically(reason, path, ts, meta, value, label):
    ev = variant(decision__reason=reason, timestamp=ts, metadata=meta, labels={"team": label})
    ev["resource"]["path"] = path
    ev["threat"]["indicator"]["value"] = value
    renders_like_reference(ev)


def file_reference(path: str) -> dict[str, str]:
    """``transforms.ecs._file`` as it was written with rfind and slices (before its rpartition form)."""
    limit = ecs_mod.KEYWORD_LIMIT
    f = {"path": path[:limit]}
    i = path.rfind("/")
    if i < 0:
        i = path.rfind("\\")
    name = path[i + 1:]
    if i > 0:
        f["directory"] = path[:i if i <= limit else limit]
    elif i == 0:
        f["directory"] = path[0]
    if name:
        f["name"] = name[:limit]
        j = name.rfind(".")
        if 0 < j < len(name) - 1:
            f["extension"] = name[j + 1:j + 1 + limit]
    return f


_path_chars = st.sampled_from("/\\.aé")


@settings(max_examples=500, deadline=None)
@given(path=st.text(_path_chars, max_size=12) | st.text(_path_chars, min_size=1015, max_size=1040))
def test_file_fields_match_the_rfind_version(path):
    assert ecs_mod._file(path) == file_reference(path)


@pytest.mark.parametrize("path", ["", "/", "\\", "//", "/a", "\\a", "a\\b/c", "/x/.env", "/x/y.", "a.b",
                                  "/" + "d" * 1030 + "/f.e", "/d/" + "f" * 1100 + "." + "e" * 1100])
def test_file_fields_edge_paths(path):
    assert ecs_mod._file(path) == file_reference(path)


@pytest.mark.parametrize("path", [["a", "list"], b"/bytes.b", 5, None])
def test_a_non_string_path_raises_what_it_raised(path):
    """A render failure's reason (DLQ) quotes the exception: same type, same message."""
    with pytest.raises(Exception) as want:
        file_reference(path)
    with pytest.raises(Exception) as got:
        ecs_mod._file(path)
    assert (type(got.value), str(got.value)) == (type(want.value), str(want.value))


@pytest.mark.parametrize("metadata", [
    {"contributing_policies": [], "policy_hash": "ab" * 32}, {"b": 1, "a": {"z": None, "y": "\u2028\""}},
    {1: "int key", "s": "str key"}, {"big": 2 ** 70}, {"x": float("nan")}])
def test_metadata_hole_is_the_encoded_metadata_string(metadata):
    for _ in range(2):  # the second from the cache
        assert ecs_mod._metadata_hole(metadata) == orjson.dumps(ecs_mod.metadata_json(metadata))


@pytest.mark.parametrize("path", ["/p/dir/f.txt", "rel", "C:\\w\\x.y", "/", "/d/.env", "/a/b.", "a.b/c",
                                  "/a/", "x\\", "\u00e9/\"q\".\\", "/x/" + "l" * 2000, "d/" + "n" * 1030])
def test_the_file_object_is_built_in_sorted_key_order(path):
    """A template's file part is encoded without sorting (transforms.ecs._templated)."""
    assert orjson.dumps(ecs_mod._file(path)) == orjson.dumps(ecs_mod._file(path), option=orjson.OPT_SORT_KEYS)
