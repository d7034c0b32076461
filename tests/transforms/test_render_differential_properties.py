"""Differential properties of rendering: every fast, cached or second path gives the bytes of the general,
cold path (docs/transforms.md "The per-output pipeline": "Both are deterministic: same record and config,
same bytes"; transforms/ecs.py: templates "cannot change a byte").

Events come from ``tests.transforms.test_properties.events`` (every enumeration, hostile strings), and
from them, variants that share a template key but differ in every hole (id, timestamp, reason, path,
source, metadata, indicator value) and variants whose shape differs only by a missing optional field, a
null, an empty string, list or object, or the key order. Properties:

1. pipeline vs cold reference: for every format (canonical, ecs, ocsf, ocsf with allowed-as-activity,
   cef) and a random option set of ``TransformConfig`` (per-output redaction with every style, field
   rename/set/include/exclude, include_raw, CEF header identity), a long-lived ``Pipeline`` (warm ECS
   templates, warm redactor clean-value caches, warm OCSF/CEF caches), rendering a stream of those events
   interleaved three times, gives for each event exactly the bytes of a reference built cold: a fresh
   redactor, a private copy of the format module with every memo cache emptied, the plain ``to_*``
   document, field overrides applied by a small independent model on a private copy, the raw copy,
   orjson with sorted keys. Raises where the reference raises (same exception type);
2. body vs dict: ``render(event, body)`` == ``render({}, body)`` == ``render(loads(body), body)``;
3. ECS alone, junk shapes included: ``ecs_json`` (template path) equals the cold general document for
   shape variants that are not valid events (nulls, empties), interleaved so a template made for one
   shape is offered the next; and three deterministic reproductions of defects found with a cold
   reference (1 == 1.0 == True sharing one ``_SESSION_CACHE`` / ``_OBSERVER_CACHE`` block; the
   template's ``id`` hole encoded without sorted keys), fixed in transforms/ecs.py;
4. outputs (outputs/render.py) and the offload helper: for an agent config with ES (ECS, raw copy,
   fields, hash redaction), HEC (OCSF activity), a CEF file output with fields and a canonical output
   with redaction, the drain's ``Renderer`` (warm), a fresh one, and the helper's own job handler
   (``agent.offload._Jobs`` fed the pickled ``config_frame``, in-process) give the same answer, and each
   accepted item's data is ``output.encode`` of the event as the original dict.

Syslog framing (transforms/syslog.py) is used by no output yet (outputs/ has no syslog type), so there
is no second path of it to compare. Derandomized, database off.
"""

from __future__ import annotations

import copy
import importlib.util
import pickle
import textwrap
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import load_config
from agent.config_types import Secret
from agent.event import encode_event
from agent.offload import _LEN, _Jobs, config_frame
from outputs.base import DeliveryItem
from outputs.render import Renderer
from tests.transforms.test_properties import events
from transforms import ecs as ecs_mod
from transforms.config import CefConfig, FieldsConfig, RedactConfig, RedactRule, TransformConfig
from transforms.ecs import ecs_json
from transforms.pipeline import Pipeline, _compile_cef_fields, build_pipeline
from transforms.redact import compile_redactor

SORT = orjson.OPT_SORT_KEYS
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
SETTINGS = settings(max_examples=100, derandomize=True, deadline=None, database=None,
                    suppress_health_check=_HEALTH)


# --------------------------------------------------------------------------------------------------
# The cold reference: private copies of the format modules, every memo cache emptied before each use
# --------------------------------------------------------------------------------------------------
_CACHES = {
    "transforms.ecs": ("_ARGS_CACHE", "_MITRE_CACHE", "_CATEGORIZE_CACHE", "_OBSERVER_CACHE", "_RULE_CACHE",
                       "_SESSION_CACHE", "_LABELS_CACHE", "_TEMPLATES", "_SEEN", "_META_HOLES"),
    "transforms.ocsf": ("_HEADS",),
    "transforms.cef": ("_PREFIX_CACHE", "_CLASS_CACHE", "_IP_CACHE"),
}


def _private_copy(name: str) -> types.ModuleType:
    """A second instance of module ``name`` (not in sys.modules): its caches are its own."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for cache in _CACHES[name]:  # a renamed cache must fail here, not make the reference warm
        assert type(getattr(module, cache)) in (dict, set), (name, cache)
    return module


COLD = {name: _private_copy(name) for name in _CACHES}


def _cold(name: str) -> types.ModuleType:
    module = COLD[name]
    for cache in _CACHES[name]:
        getattr(module, cache).clear()
    return module


# Field overrides, as docs/transforms.md states them, on a private (deep-copied) document.
def _find(doc: dict, segs: list[str]) -> list[str] | None:
    """The key path of a dotted path: nested keys, or at any level the rest as one literal dotted key."""
    node: Any = doc
    keys: list[str] = []
    for i, seg in enumerate(segs):
        if type(node) is not dict:
            return None
        rest = ".".join(segs[i:])
        if i < len(segs) - 1 and rest in node:
            return [*keys, rest]
        if seg not in node:
            return None
        keys.append(seg)
        node = node[seg]
    return keys


def _put(doc: dict, keys: list[str], value: Any) -> None:
    node = doc
    for k in keys[:-1]:
        if type(node.get(k)) is not dict:
            node[k] = {}
        node = node[k]
    node[keys[-1]] = value


def _pop(doc: dict, keys: list[str]) -> Any:
    node = doc
    for k in keys[:-1]:
        node = node[k]
    return node.pop(keys[-1])


def fields_model(doc: dict, f: FieldsConfig) -> dict:
    """rename, then set, then include, then exclude (mutates and returns ``doc``, a private copy)."""
    for old, new in f.rename.items():
        keys = _find(doc, old.split("."))
        if keys is not None:
            _put(doc, new.split("."), _pop(doc, keys))
    for path, value in f.set.items():
        _put(doc, _find(doc, path.split(".")) or path.split("."), value)
    if f.include:
        kept: dict = {}
        for path in f.include:
            keys = _find(doc, path.split("."))
            if keys is not None:
                node: Any = doc
                for k in keys:
                    node = node[k]
                _put(kept, keys, copy.deepcopy(node))
        doc = kept
    for path in f.exclude:
        keys = _find(doc, path.split("."))
        if keys is not None:
            _pop(doc, keys)
    return doc


_RAW_KEY = {"ecs": ["event", "original"], "ocsf": ["raw_data"]}


def reference(cfg: TransformConfig, ev: dict) -> bytes:
    """What ``build_pipeline(cfg).render`` must return for ``ev``, computed cold and on private copies."""
    ev = copy.deepcopy(ev)
    redactor = compile_redactor(cfg.redact)  # a new redactor: no value is known clean yet
    if redactor is not None:
        ev = redactor(ev)
    fields = None if cfg.fields.empty else cfg.fields
    if cfg.format == "cef":
        cef = _cold("transforms.cef")
        given_opts = {k: v for k, v in (("device_vendor", cfg.cef.device_vendor),
                                        ("device_product", cfg.cef.device_product),
                                        ("device_version", cfg.cef.device_version)) if v}
        line = cef.to_cef(ev, cef.CefOptions(**given_opts) if given_opts else None)
        if fields is not None:
            line = _compile_cef_fields(fields)(line)
        return line.encode("utf-8")
    if cfg.format == "canonical":
        doc = copy.deepcopy(ev)
    elif cfg.format == "ecs":
        doc = _cold("transforms.ecs").to_ecs(ev)
    else:
        doc = _cold("transforms.ocsf").to_ocsf(copy.deepcopy(ev),
                                               allowed_as_activity=cfg.ocsf_allowed_as_activity)
    if fields is not None:
        doc = fields_model(copy.deepcopy(doc), fields)
    if cfg.include_raw and cfg.format in _RAW_KEY:
        _put(doc, _RAW_KEY[cfg.format], encode_event(ev).decode("utf-8"))
    return orjson.dumps(doc, option=SORT)


def outcome(fn: Any, *args: Any) -> Any:
    """The result, or the type of what it raised (the fast paths must raise what the general one does)."""
    try:
        return fn(*args)
    except Exception as exc:
        return type(exc)


# --------------------------------------------------------------------------------------------------
# Option sets
# --------------------------------------------------------------------------------------------------
SALT = Secret("differential-pepper")
_RULES = [
    RedactRule(path="resource.path"),
    RedactRule(path="agent.id", style="drop"),
    RedactRule(path="metadata.*", style="keep", keep_first=2),
    RedactRule(path="**.email", style="hash"),
    RedactRule(path="session.user_id", style="hash"),
    RedactRule(path="labels.*", style="drop"),
    RedactRule(path="resource.name", pattern="email", style="keep", keep_last=3),
    RedactRule(pattern=r"ticket=(?P<secret>\w+)", style="keep", keep_last=2),
    RedactRule(pattern=r"[|=\\]", replacement="#"),
    RedactRule(path="decision.reason", style="drop"),
    RedactRule(path="threat.indicator.value", style="hash"),
]
redact_configs = st.builds(
    lambda builtin, rules: RedactConfig(builtin=builtin, rules=rules, hash_salt=SALT),
    st.lists(st.sampled_from(["secrets", "email", "ipv4", "ipv6"]), unique=True, max_size=4),
    st.lists(st.sampled_from(_RULES), max_size=3))

_PATHS = {
    "canonical": ["resource.path", "metadata.a", "labels.team", "decision.reason", "source", "source.id",
                  "event_id", "threat.indicator", "new.leaf", "observer.version"],
    "ecs": ["event.id", "labels.team", "clawdstrike.source", "gen_ai.agent.id", "threat.tactic.id",
            "observer.vendor", "file.path", "message", "@timestamp", "event", "rule", "x.y",
            "clawdstrike.session.id", "process.args"],
    "ocsf": ["metadata.product.name", "unmapped.clawdstrike.guard", "finding_info.title", "class_uid",
             "observables", "actor.session.uid", "metadata.tags", "evidences", "message", "x.y"],
    "cef": ["cs1", "msg", "act", "flexString1", "cs6", "filePath", "dvchost", "externalId", "nope"],
}


@st.composite
def transform_configs(draw: st.DrawFn, fmt: str | None = None) -> TransformConfig:
    """A random valid per-output option set (``TransformConfig.validate`` passes)."""
    fmt = fmt or draw(st.sampled_from(["canonical", "ecs", "ocsf", "cef"]))
    paths = st.sampled_from(_PATHS[fmt])
    fields = FieldsConfig()
    if draw(st.booleans()):
        fields = FieldsConfig(
            rename=draw(st.dictionaries(paths, paths, max_size=2)),
            set=draw(st.dictionaries(paths, st.sampled_from(["V", "a|b=c\\d", "é\n"]), max_size=2)),
            include=draw(st.lists(paths, max_size=3)) if draw(st.integers(0, 3)) == 0 else [],
            exclude=draw(st.lists(paths, max_size=2)))
    cef = CefConfig()
    if fmt == "cef" and draw(st.booleans()):
        cef = CefConfig(device_vendor=draw(st.sampled_from(["", "V|x\\y"])), device_product="P",
                        device_version=draw(st.sampled_from(["", "9.9"])))
    cfg = TransformConfig(format=fmt, include_raw=fmt != "cef" and draw(st.booleans()),
                          ocsf_allowed_as_activity=draw(st.booleans()), cef=cef, fields=fields,
                          redact=draw(redact_configs) if draw(st.booleans()) else RedactConfig())
    cfg.validate()
    cfg.fields.validate()
    return cfg


_PIPELINES: dict[str, Pipeline] = {}


def warm_pipeline(cfg: TransformConfig) -> Pipeline:
    """One long-lived pipeline per option set, as a drain keeps it: its redactor's caches stay warm."""
    key = repr(cfg)
    pipe = _PIPELINES.get(key)
    if pipe is None:
        pipe = _PIPELINES[key] = build_pipeline(cfg)
    return pipe


# --------------------------------------------------------------------------------------------------
# Event variants
# --------------------------------------------------------------------------------------------------
def holes_changed(ev: dict, i: int) -> dict:
    """The same template key with every per-event value (the ECS template's holes) changed."""
    ev = copy.deepcopy(ev)
    ev["event_id"] = str(uuid.UUID(int=0x4000_8000_0000_0000_0000 + i, version=4))
    ev["timestamp"] = f"2031-0{i % 9 + 1}-1{i % 9}T0{i % 10}:1{i % 10}:2{i % 10}.{i:0{i % 9 + 1}d}Z"
    ev["source"] = {**ev["source"], "id": f"src-{i}"}
    if ev["decision"].get("reason"):
        ev["decision"]["reason"] = f"reason {i} é\u2028 password=hunter{i}" + "r" * (i * 400)
    res = ev["resource"]
    if res["type"] == "file" and res.get("path"):
        res["path"] = ["/p/dir/f.txt", "rel", "C:\\w\\x.y", "/", "/d/.env", "/x/" + "l" * 1100][i % 6]
    if ev.get("metadata"):
        ev["metadata"] = {"k": i, "z": [1, None], "a": "\x01", "email": f"u{i}@example.com"}
    ind = (ev.get("threat") or {}).get("indicator")
    if ind and ind["type"] in ("file", "domain-name"):
        ev["threat"] = {"indicator": {**ind, "value": f"v{i}.example" + "x" * (i * 300)}}
    return ev


#: Optional places whose shape may differ: (parent path, key).
_OPTIONAL = [((), "agent"), ((), "session"), ((), "labels"), ((), "metadata"), ((), "mitre"), ((), "threat"),
             (("decision",), "reason"), (("decision",), "guard"), (("decision",), "ruleset"),
             (("decision",), "policy_hash"), (("resource",), "path"), (("resource",), "host"),
             (("resource",), "port"), (("observer",), "version"), (("observer",), "host_name"),
             (("observer",), "instance_id"), (("source",), "type"), (("source",), "id"),
             (("session",), "id"), (("session",), "user_id"), (("labels",), "team")]
_ABSENT = object()
_SHAPES = [_ABSENT, None, "", [], {}]


def reshaped(ev: dict, where: int, shape: int, reorder: bool) -> dict:
    """``ev`` with one optional place missing, null, "", [] or {}; and/or its key order reversed."""
    ev = copy.deepcopy(ev)
    parents, key = _OPTIONAL[where % len(_OPTIONAL)]
    node: Any = ev
    for p in parents:
        node = node.get(p) if type(node) is dict else None
    if type(node) is dict:
        value = _SHAPES[shape % len(_SHAPES)]
        if value is _ABSENT:
            node.pop(key, None)
        else:
            node[key] = copy.deepcopy(value)
    if reorder:
        ev = _reversed_keys(ev)
    return ev


def _reversed_keys(node: Any) -> Any:
    if type(node) is dict:
        return {k: _reversed_keys(node[k]) for k in reversed(list(node))}
    if type(node) is list:
        return [_reversed_keys(v) for v in node]
    return node


@st.composite
def event_streams(draw: st.DrawFn, valid_only: bool) -> list[dict]:
    """A few base events, each with hole variants (one template, many values) and shape variants."""
    stream: list[dict] = []
    for base in draw(st.lists(events(), min_size=1, max_size=2)):
        stream.append(base)
        stream += [holes_changed(base, i) for i in draw(st.lists(st.integers(1, 9), max_size=2))]
        for where, shape, reorder in draw(st.lists(
                st.tuples(st.integers(0, len(_OPTIONAL) - 1), st.integers(0, len(_SHAPES) - 1),
                          st.booleans()), max_size=3)):
            variant = reshaped(base, where, 0 if valid_only else shape, reorder)
            if valid_only:
                from agent.event import EventValidationError, validate_event

                try:
                    validate_event(variant)
                except EventValidationError:
                    continue
            stream.append(variant)
    return stream


def interleaved(stream: list[dict], order: list[int]) -> Iterator[dict]:
    """Each event three times (seen, template made, template used), in an interleaved order."""
    n = len(stream)
    for i in order:
        yield stream[i % n]
    for ev in reversed(stream):
        yield ev
    for ev in stream:
        yield ev
    yield from stream


# --------------------------------------------------------------------------------------------------
# 1 and 2: the pipeline against the cold reference; body against dict
# --------------------------------------------------------------------------------------------------
@SETTINGS
@given(cfg=transform_configs(), stream=event_streams(valid_only=True),
       order=st.lists(st.integers(0, 50), max_size=6))
def test_pipeline_renders_the_cold_general_bytes(cfg: TransformConfig, stream: list[dict],
                                                 order: list[int]) -> None:
    pipe = warm_pipeline(cfg)
    wants = {id(ev): outcome(reference, cfg, ev) for ev in stream}
    for ev in interleaved(stream, order):
        body = encode_event(ev)
        got = outcome(pipe.render, ev, body)
        assert got == wants[id(ev)], (cfg, ev)
        assert outcome(pipe.render, {}, body) == got
        assert outcome(pipe.render, orjson.loads(body), body) == got


@settings(max_examples=60, derandomize=True, deadline=None, database=None, suppress_health_check=_HEALTH)
@given(fmt=st.sampled_from(["ecs", "ocsf", "cef", "canonical"]), data=st.data())
def test_every_format_with_no_option_is_the_cold_general_path(fmt: str, data: st.DataObject) -> None:
    """The common case (a bare format: ECS's ``ecs_json`` fast path, canonical passthrough) on its own."""
    cfg = TransformConfig(format=fmt, ocsf_allowed_as_activity=data.draw(st.booleans()))
    pipe = warm_pipeline(cfg)
    stream = data.draw(event_streams(valid_only=True))
    wants = [reference(cfg, ev) for ev in stream]
    for _ in range(3):
        for ev, want in zip(stream, wants, strict=True):
            body = encode_event(ev)
            assert pipe.render(ev, body) == want
            assert pipe.render({}, body) == want


# --------------------------------------------------------------------------------------------------
# 3: ECS templates against junk shapes (not valid events: nulls, empties)
# --------------------------------------------------------------------------------------------------
def cold_ecs(ev: dict) -> Any:
    return orjson.dumps(_cold("transforms.ecs").to_ecs(copy.deepcopy(ev)), option=SORT)


@SETTINGS
@given(stream=event_streams(valid_only=False), order=st.lists(st.integers(0, 50), max_size=8))
def test_ecs_templates_never_leak_one_shape_into_another(stream: list[dict], order: list[int]) -> None:
    wants = {id(ev): outcome(cold_ecs, ev) for ev in stream}
    for ev in interleaved(stream, order):
        assert outcome(ecs_json, ev) == wants[id(ev)], ev
        assert outcome(lambda e: orjson.dumps(ecs_mod.ecs_document(e), option=SORT), ev) == wants[id(ev)]


@pytest.mark.parametrize(("first", "then"), [(1, True), (True, 1.0)])
def test_ecs_session_values_equal_in_python_are_not_one_cached_block(first: Any, then: Any) -> None:
    """BUG (transforms/ecs.py ``_SESSION_CACHE``): the block cache is keyed by the session values as a
    tuple, and 1 == 1.0 == True in Python, so {"id": True} rendered after {"id": 1} comes out as
    ``"id":1``: the document depends on what was rendered before. (test_ecs_template lists these inputs,
    but compares with ``to_ecs``, which reads the same cache.)"""
    base = next(ev for ev in ecs_mod_events() if ev.get("session"))
    ecs_mod._SESSION_CACHE.clear()  # what other tests rendered must not decide this one
    ecs_json(reshaped_session(base, first))
    ev = reshaped_session(base, then)
    assert ecs_json(ev) == cold_ecs(ev)
    assert orjson.dumps(ecs_mod.to_ecs(ev), option=SORT) == cold_ecs(ev)


@pytest.mark.parametrize(("first", "then"), [(1, True), (True, 1.0)])
def test_ecs_observer_products_equal_in_python_are_not_one_cached_block(first: Any, then: Any) -> None:
    """BUG (transforms/ecs.py ``_OBSERVER_CACHE``): the same collision for ``observer.product``, which
    the observer block holds as it is."""
    base = ecs_mod_events()[3]
    ecs_mod._OBSERVER_CACHE.clear()
    ecs_json({**base, "observer": {**base["observer"], "product": first}})
    ev = {**base, "observer": {**base["observer"], "product": then}}
    assert ecs_json(ev) == cold_ecs(ev)


def test_ecs_template_encodes_an_odd_event_id_as_the_general_path_does() -> None:
    """BUG (transforms/ecs.py ``_templated``): the ``id`` hole is encoded without OPT_SORT_KEYS, unlike
    every other hole and the general path. An id that is an object (junk, not a valid event) reaches a
    template made from events whose ids encode the same either way, and comes out unsorted."""
    base = ecs_mod_events()[5]
    for eid in ({"a": 1, "b": 2}, {"a": 3, "b": 4}, {"b": 5, "a": 6}):  # seen, template made, template
        ev = {**base, "event_id": eid, "labels": {"template": "odd-id"}}
        assert ecs_json(ev) == cold_ecs(ev)


def ecs_mod_events() -> list[dict]:
    from tests.transforms.test_ecs_fastpath import EVENTS

    return EVENTS


def reshaped_session(ev: dict, value: Any) -> dict:
    ev = copy.deepcopy(ev)
    ev["session"] = {**ev["session"], "id": value}
    return ev


# --------------------------------------------------------------------------------------------------
# 4: the outputs' renderer, a cold one, and the offload helper's job handler
# --------------------------------------------------------------------------------------------------
CONFIG = """
[agent]
host_name = "render-host"
labels = {{team = "soc"}}

[inputs.t]
type = "file"
paths = ["/nonexistent/*.jsonl"]

[outputs.es]
type = "elasticsearch"
hosts = ["http://127.0.0.1:9"]
format = "ecs"
include_raw = true
[outputs.es.fields]
set = {{"observer.vendor" = "V", "gen_ai.agent.id" = "a"}}
exclude = ["labels.team"]
[outputs.es.redact]
hash_salt = "pepper"
builtin = ["email"]
rules = [{{path = "resource.path", style = "hash"}}]

[outputs.hec]
type = "splunk_hec"
endpoint = "http://127.0.0.1:9"
token = "t"
format = "ocsf"
ocsf_allowed_as_activity = true
[outputs.hec.redact]
builtin = ["ipv4", "secrets"]

[outputs.cef]
type = "file"
path = "{out}/cef.log"
format = "cef"
fsync = false
[outputs.cef.cef]
device_vendor = "V|x"
[outputs.cef.fields]
rename = {{cs1 = "cs2"}}
exclude = ["msg"]

[outputs.canon]
type = "file"
path = "{out}/canon.jsonl"
fsync = false
[outputs.canon.redact]
rules = [{{path = "metadata.*", style = "keep", keep_first = 1}}]

[privacy]
builtin = []
"""
NAMES = ("es", "hec", "cef", "canon")


@pytest.fixture(scope="module")
def agent_config(tmp_path_factory: pytest.TempPathFactory) -> Any:
    d: Path = tmp_path_factory.mktemp("render-diff")
    path = d / "agent.toml"
    path.write_text(textwrap.dedent(CONFIG.format(out=d)))
    return load_config(str(path))


@pytest.fixture(scope="module")
def renderers(agent_config: Any) -> dict[str, tuple[Renderer, Any]]:
    """The drain's renderer for each output, and the helper's job handler for the same config."""
    frame = config_frame(agent_config)
    (length,) = _LEN.unpack(frame[:4])
    jobs = _Jobs(pickle.loads(frame[4:4 + length]))
    return {name: (Renderer.from_config(name, agent_config), jobs) for name in NAMES}


@settings(max_examples=25, derandomize=True, deadline=None, database=None, suppress_health_check=_HEALTH)
@given(stream=event_streams(valid_only=True), name=st.sampled_from(NAMES))
def test_outputs_render_the_same_in_the_drain_cold_and_in_the_helper(
        agent_config: Any, renderers: dict[str, tuple[Renderer, Any]], stream: list[dict], name: str) -> None:
    drain, jobs = renderers[name]
    rows = [(i + 1, uuid.UUID(ev["event_id"]).bytes, encode_event(ev)) for i, ev in enumerate(stream)]
    for _ in range(2):
        here = drain.render(rows)
        assert jobs.render((name, rows)) == here
        assert Renderer.from_config(name, agent_config).render(rows) == here
        accepted, filtered, rejected = here
        assert filtered == 0 and rejected == []
        output = drain.output
        for (seq, eid, _released, data, _route), ev, row in zip(accepted, stream, rows, strict=True):
            body = row[2]  # the accepted item's body is released once encoded (outputs.render)
            assert (seq, eid) == row[:2]
            assert data == output.encode(DeliveryItem(seq, copy.deepcopy(ev), body, eid))
            if name == "canon":
                assert data == reference(output.pipeline.config, ev)
