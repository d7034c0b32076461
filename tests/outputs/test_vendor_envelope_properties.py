"""Property tests: what the Splunk HEC and Elasticsearch outputs put on the wire, judged by the VENDORS'
documented rules (restated here, independently of outputs/*.py and of our mocks), for every config the
loader accepts (agent.toml text through ``parse_config``, routing rules included) and every canonical
event (the ``events`` strategy of tests/transforms/test_properties.py: hostile strings, every enum).

Vendor rules used (sources):

- Elasticsearch index names, create-index API "Index names must meet the following criteria"
  (elastic.co/guide/en/elasticsearch/reference/current/indices-create-index.html): lowercase only; none
  of ``\\ / * ? " < > |``, space, ``,``, ``#`` (``:`` refused since 7.0); not starting with ``-``,
  ``_``, ``+``; not ``.`` or ``..``; at most 255 bytes (UTF-8). Data stream names: the same, and not
  starting with ``.ds-``; their backing indices are ``.ds-<name>-<yyyy.MM.dd>-<generation>`` and are
  index names too. Naming scheme ``<type>-<dataset>-<namespace>``: ECS 9.4 ``data_stream.dataset`` /
  ``data_stream.namespace`` "Must not contain `-`", "No longer than 100 characters", not empty.
- Elasticsearch ``_id``: "_id is limited to 512 bytes in size and larger values will be rejected"
  (mapping-id-field, elastic.co/docs/reference/elasticsearch/mapping-reference/mapping-id-field).
  Data streams: ``create`` only, and every document needs ``@timestamp`` (docs-bulk; data streams).
- The ``_bulk`` action lines: ``_global.bulk.OperationContainer`` of Elasticsearch's own OpenAPI
  document (../shared/vendor-specs/elasticsearch, checked with outputs/mocks/es_spec.BulkSpec, the
  vendor-specs README's "pattern B").
- Splunk HEC ``/services/collector/event`` ("Format events for HTTP Event Collector", help.splunk.com;
  its metadata table as quoted on npmjs.com/package/log2splunk): ``time`` a Number, epoch
  ``<sec>.<ms>``; ``host``, ``source``, ``sourcetype``, ``index`` Strings (``index`` "must be within
  the list of allowed indexes if the token has the indexes parameter set"); ``fields`` "Object<String,
  String | Array<String>>", explicit indexed fields ("Automate indexed field extractions with HTTP
  Event Collector"); ``event`` required and not blank (HEC codes 12 "Event field is required", 13
  "Event field cannot be blank"). HEC refuses an index the token may not write with code 7
  "Incorrect index" (delivery-peers.md §4.1).

Properties:

1. ES, config -> wire: for generated dataset / namespace / classic, dated (``%Y.%m.%d``) or rollover
   ``index`` / ``ingest_pipeline`` and routing rules setting ``index`` / ``dataset`` / ``namespace``
   per severity, the loader refuses the config with a ``ConfigError`` naming the output exactly when
   a name it could produce breaks the rules above (never a legal one); when it accepts, every action
   line is ``{"create": {"_index", "_id"[, "pipeline"]}}`` valid per the vendor spec, the ``_index``
   is the one the first matching rule (else the output's own target) names, the dated parts from the
   event's UTC timestamp, a legal index name (a legal data stream name when it is one), the ``_id``
   the event id (<= 512 bytes), and the document an object with a top-level ``@timestamp``.
2. ES, through the real output and the real mock over loopback (the mock enforces the index and
   data stream name rules and the bulk spec): every event of an accepted config is stored under its
   event id in the target the model names, in one attempt, with no spec violation.
3. HEC, config -> wire: every envelope is one JSON object with only the documented keys, ``time`` a
   number equal to the event's timestamp to the millisecond (at most 3 decimals on the wire),
   ``host`` / ``source`` / ``sourcetype`` / ``index`` strings with the values the first matching
   rule, the config or the documented fallbacks give, ``fields`` a flat object of strings (static
   ``indexed_fields`` plus the chosen ``event_fields``, absent values left out), ``event`` an object
   (JSON formats) or a non-blank string (cef).
4. HEC, an index the destination refuses (nothing at load checks HEC index names): driven through
   the real output and the HEC mock (its token allow list stands in for the indexes that exist),
   every event bound for a refused index goes to the DLQ with a reason naming code 7, every other
   one is stored once in its own index, in a bounded number of attempts: no whole batch failed, no
   retry loop, nothing sent elsewhere.

At the end: deterministic reproductions of the defects found and fixed (each failed before):

- a rollover alias (``index`` without ``%``, ``bootstrap = true``, an ILM policy) of 249-255 bytes is
  accepted at load, but its first index ``<index>-000001`` is longer than 255 bytes: the bootstrap's
  ``PUT`` is refused and events go to a plain index named like the alias, outside template and ILM;
- a data stream dataset / namespace holding ``%Y`` / ``%m`` / ``%d`` is checked at load as if the
  placeholders were expanded, yet the output's own data stream name is sent as written
  (``logs-clawdstrike.security-eu.%Y``: upper case, every event refused with a 400 into the DLQ)
  while a rule's is expanded per event (``logs-clawdstrike.security-eu.04``: a data stream the
  config never names). Data stream parts are now taken as written everywhere, and the generated
  configs include such parts.
"""

from __future__ import annotations

import json
import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import parse_config
from agent.config_loader import ConfigError
from agent.event import timestamp_to_ms
from outputs.base import DeliveryItem, Outcome, Status
from outputs.mocks.elasticsearch import ElasticsearchMock
from outputs.mocks.es_spec import load_cached
from outputs.mocks.server import MockServer
from outputs.mocks.splunk_hec import HecToken, SplunkHecApp
from outputs.registry import build_output
from outputs.render import Renderer
from tests.transforms.test_properties import events

SETTINGS = dict(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

SEVERITIES = ("info", "low", "medium", "high", "critical")
TOKEN = "vendorenv-hec-token"

# ------------------------------------------------------------------------ the vendors' rules

_ES_FORBIDDEN = set('\\/*?"<>| ,#:')


def es_index_name_problem(name: str) -> str | None:
    """Why Elasticsearch refuses ``name`` as an index (or alias) name, or None."""
    if not name:
        return "empty"
    if name != name.lower():
        return "not lowercase"
    if set(name) & _ES_FORBIDDEN:
        return "forbidden character"
    if name[0] in "-_+":
        return "starts with -, _ or +"
    if name in (".", ".."):
        return ". or .."
    if len(name.encode("utf-8")) > 255:
        return "longer than 255 bytes"
    return None


def es_data_stream_problem(dataset: str, namespace: str) -> str | None:
    """Why ``logs-<dataset>-<namespace>`` is not a data stream name Elasticsearch and the naming
    scheme accept (its first backing index included), or None."""
    for part in (dataset, namespace):
        if not part or "-" in part or len(part) > 100:
            return f"dataset/namespace {part!r}: empty, '-' or over 100 characters"
    name = f"logs-{dataset}-{namespace}"
    return es_index_name_problem(name) or es_index_name_problem(f".ds-{name}-2026.01.01-000001")


def expand_dated(name: str, timestamp: str) -> str:
    """``%Y %m %d`` from a canonical (UTC, ``Z``) timestamp."""
    return name.replace("%Y", timestamp[0:4]).replace("%m", timestamp[5:7]).replace("%d", timestamp[8:10])


# ------------------------------------------------------------------------ generated configs


def toml_str(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's; DEL must be escaped too)."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


_word = st.text("abcdefghijklmnopqrstuvwxyz0123456789_.", min_size=1, max_size=12)
_bad_char = st.sampled_from([*'\\/*?"<>| ,#:', "A", "Z", "\u00c4", "\u00e9", "\u6f22", "%", "-"])


@st.composite
def names(draw: st.DrawFn) -> str:
    """Mostly plausible names, sometimes broken in one of the ways the rules list."""
    base = draw(_word)
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return base
    if kind == 1:
        i = draw(st.integers(0, len(base)))
        return base[:i] + draw(_bad_char) + base[i:]
    if kind == 2:
        return draw(st.sampled_from("-_+.")) + base
    if kind == 3:
        return draw(st.sampled_from([".", "..", ""]))
    if kind == 4:  # around the byte limits (100 characters, 233 and 255 bytes)
        unit = draw(st.sampled_from(["a", "\u00e9", "\u6f22"]))
        return (unit * draw(st.integers(30, 260)))[: draw(st.integers(90, 260))]
    if kind == 5:
        return f"{base}-%Y.%m.%d"
    if kind == 6:
        return f"{base}-{draw(_word)}"
    if kind == 7:
        return f"{base}.%Y"
    return base


#: Dataset / namespace parts near the limits: 100 characters each, and together (in UTF-8) around
#: the 233 bytes a data stream name may take so that its backing index fits in 255.
_long_parts = st.builds(lambda unit, n: unit * n, st.sampled_from(["a", "\u00e9", "\u6f22"]),
                        st.integers(40, 101))


#: A dataset or namespace holding ``%Y``/``%m``/``%d``: taken as written, for the output's own data
#: stream and a rule's alike (only ``index`` expands them); ``%Y`` makes it upper case, refused at load.
_placeholder_parts = st.builds(lambda word, p: f"{word}.{p}", _word, st.sampled_from(["%Y", "%m", "%d"]))
_parts = st.one_of(names(), _long_parts, _placeholder_parts)


@dataclass
class EsConfig:
    dataset: str
    namespace: str
    index: str
    pipeline: str
    format: str
    rules: list[tuple[str, dict[str, str]]]  # (min_severity, set)


@st.composite
def es_configs(draw: st.DrawFn) -> EsConfig:
    rules = []
    for _ in range(draw(st.integers(0, 3))):
        keys = draw(st.sets(st.sampled_from(["index", "dataset", "namespace"]), min_size=1))
        rules.append((draw(st.sampled_from(SEVERITIES)),
                      {k: draw(names() if k == "index" else _parts) for k in sorted(keys)}))
    return EsConfig(
        dataset=draw(st.one_of(st.just("clawdstrike.security"), _parts)),
        namespace=draw(st.one_of(st.just("default"), _parts)),
        index=draw(st.one_of(st.just(""), names())),
        pipeline=draw(st.sampled_from(["", "clawd-pipeline"])),
        format=draw(st.sampled_from(["ecs", "ocsf", "canonical"])),
        rules=rules)


def es_toml(c: EsConfig, url: str = "http://127.0.0.1:9200") -> str:
    lines = ["[agent]", 'data_dir = "/tmp/x"', "[inputs.i]", 'type = "file"', 'paths = ["/tmp/x/*.jsonl"]',
             "[outputs.es]", 'type = "elasticsearch"', f"hosts = [{toml_str(url)}]",
             f"format = {toml_str(c.format)}", f"data_stream_dataset = {toml_str(c.dataset)}",
             f"data_stream_namespace = {toml_str(c.namespace)}", f"index = {toml_str(c.index)}",
             f"ingest_pipeline = {toml_str(c.pipeline)}"]
    for sev, values in c.rules:
        body = ", ".join(f"{k} = {toml_str(v)}" for k, v in values.items())
        lines += ["[[outputs.es.routes]]", f'when = {{ min_severity = "{sev}" }}', f"set = {{ {body} }}"]
    return "\n".join(lines) + "\n"


def es_target(c: EsConfig, values: dict[str, str]) -> tuple[str, tuple[str, str] | None]:
    """The target the docs give (docs/outputs/elasticsearch.md: a rule's ``index``, else a data
    stream from its ``dataset``/``namespace`` with the output's for the one left out, else the output's
    ``index`` or data stream), unexpanded, and (dataset, namespace) when it is a data stream."""
    if values.get("index"):
        return values["index"], None
    if values.get("dataset") or values.get("namespace"):
        ds, ns = values.get("dataset") or c.dataset, values.get("namespace") or c.namespace
        return f"logs-{ds}-{ns}", (ds, ns)
    if c.index:
        return c.index, None
    return f"logs-{c.dataset}-{c.namespace}", (c.dataset, c.namespace)


def es_config_problem(c: EsConfig) -> str | None:
    """Why some event of this config would go to a name Elasticsearch refuses, or None."""
    for values in [{}] + [v for _, v in c.rules]:
        name, stream = es_target(c, values)
        problem = es_data_stream_problem(*stream) if stream else \
            es_index_name_problem(expand_dated(name, "2026-01-01T"))
        if problem:
            return f"{name!r}: {problem}"
    return None


def first_rule(rules: list[tuple[str, dict[str, str]]], ev: dict[str, Any]) -> dict[str, str]:
    """docs/outputs.md §5: the first rule whose ``when`` matches wins (here: ``min_severity``)."""
    rank = SEVERITIES.index(ev["decision"]["severity"])
    for sev, values in rules:
        if rank >= SEVERITIES.index(sev):
            return values
    return {}


def rows_of(evs: list[dict[str, Any]]) -> list[tuple[int, bytes, bytes]]:
    return [(i + 1, uuid.UUID(ev["event_id"]).bytes, orjson.dumps(ev)) for i, ev in enumerate(evs)]


def unique_ids(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**ev, "event_id": str(uuid.UUID(int=i + 1))} for i, ev in enumerate(evs)]


def render(toml: str, name: str, evs: list[dict[str, Any]]) -> list[DeliveryItem]:
    config = parse_config(toml, "agent.toml")
    items, filtered, rejected = Renderer.from_config(name, config).render_items(rows_of(evs))
    assert not rejected and not filtered
    return items


# ------------------------------------------------------------------------ 1. ES: config -> wire


@settings(max_examples=150, **SETTINGS)
@given(c=es_configs(), evs=st.lists(events(), min_size=1, max_size=4))
def test_es_loader_refuses_exactly_the_illegal_names_and_action_lines_obey_the_bulk_spec(
        c: EsConfig, evs: list[dict[str, Any]]) -> None:
    """Property 1 (module docstring)."""
    problem = es_config_problem(c)
    try:
        items = render(es_toml(c), "es", evs)
    except ConfigError as exc:
        assert problem is not None, f"a legal config was refused: {exc}"
        assert "[outputs.es]" in str(exc)
        return
    assert problem is None, f"accepted, yet it sends events to an illegal name: {problem}"
    spec = load_cached()
    assert spec is not None
    by_id = {ev["event_id"]: ev for ev in evs}
    for item in items:
        assert item.data.endswith(b"\n") and item.data.count(b"\n") == 2
        action_line, doc_line, _ = item.data.split(b"\n")
        action = orjson.loads(action_line)
        assert spec.check_action(action) == [] and spec.check_ndjson(item.data) == []
        assert list(action) == ["create"]
        meta = action["create"]
        assert set(meta) == {"_index", "_id"} | ({"pipeline"} if c.pipeline else set())
        ev = by_id[meta["_id"]]  # the _id is the event's own id
        assert 0 < len(meta["_id"].encode()) <= 512
        name, stream = es_target(c, first_rule(c.rules, ev))
        # Only an index name's %Y %m %d expand (docs: `index`); a data stream is logs-<dataset>-<namespace>.
        assert meta["_index"] == (name if stream else expand_dated(name, ev["timestamp"]))
        assert es_index_name_problem(meta["_index"]) is None
        if stream is not None:  # the name as sent, and its first backing index
            assert es_data_stream_problem(*stream) is None
            assert es_index_name_problem(f".ds-{meta['_index']}-2026.01.01-000001") is None
        doc = orjson.loads(doc_line)
        assert isinstance(doc, dict) and isinstance(doc.get("@timestamp"), str)
        if c.pipeline:
            assert meta["pipeline"] == c.pipeline


# ------------------------------------------------------------------------ 2. ES: through the mock


@pytest.fixture(scope="module")
def es_mock() -> Iterator[tuple[ElasticsearchMock, MockServer]]:
    app = ElasticsearchMock(check_mappings=False)  # names and the spec are what is judged here
    assert app.stats()["spec_checked"]
    with MockServer(app) as server:
        yield app, server


@settings(max_examples=30, **SETTINGS)
@given(c=es_configs(), evs=st.lists(events(), min_size=1, max_size=6))
def test_es_every_accepted_name_is_accepted_by_the_destination(
        es_mock: tuple[ElasticsearchMock, MockServer], c: EsConfig, evs: list[dict[str, Any]]) -> None:
    """Property 2 (module docstring)."""
    app, server = es_mock
    c.format = "ecs"
    evs = unique_ids(evs)
    try:
        config = parse_config(es_toml(c, server.url), "agent.toml")
    except ConfigError:
        return
    app.reset()
    items, _, _ = Renderer.from_config("es", config).render_items(rows_of(evs))
    out = build_output("es", config.outputs["es"])
    out.open()
    try:
        outcome = out.send(items)
    finally:
        out.close()
    assert outcome.status is Status.DELIVERED, outcome.reason
    assert app.stats()["spec_violations"] == []
    for ev in evs:
        name, stream = es_target(c, first_rule(c.rules, ev))
        target = name if stream else expand_dated(name, ev["timestamp"])
        assert ev["event_id"] in app.docs(target), (target, app.stats()["indices"])


# ------------------------------------------------------------------------ 3. HEC: config -> wire

_hec_text = st.one_of(
    st.sampled_from(["security", "alerts", "sec-ops_2"]),
    st.from_regex(r"[a-z0-9][a-z0-9_-]{0,10}", fullmatch=True),
    st.sampled_from(["", "Security Alerts", "clawd:alert", "-x", "_y", "\u00e9t\u00e9"]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\x7f"), max_size=20))
_EVENT_FIELDS = ["severity", "guard", "event_type", "outcome", "action", "agent_id"]


@dataclass
class HecConfig:
    index: str
    source: str
    sourcetype: str
    host: str
    format: str
    indexed_fields: dict[str, str]
    event_fields: list[str]
    rules: list[tuple[str, dict[str, str]]]


@st.composite
def hec_configs(draw: st.DrawFn) -> HecConfig:
    rules = []
    for _ in range(draw(st.integers(0, 3))):
        keys = draw(st.sets(st.sampled_from(["index", "sourcetype", "source", "host"]), min_size=1))
        rules.append((draw(st.sampled_from(SEVERITIES)), {k: draw(_hec_text) for k in sorted(keys)}))
    return HecConfig(
        index=draw(_hec_text), source=draw(_hec_text), sourcetype=draw(_hec_text), host=draw(_hec_text),
        format=draw(st.sampled_from(["canonical", "ecs", "ocsf", "cef"])),
        indexed_fields=draw(st.dictionaries(_hec_text, _hec_text, max_size=3)),
        event_fields=draw(st.lists(st.sampled_from(_EVENT_FIELDS), unique=True, max_size=6)),
        rules=rules)


def hec_toml(c: HecConfig, url: str = "http://127.0.0.1:8088") -> str:
    fields = ", ".join(f"{toml_str(k)} = {toml_str(v)}" for k, v in c.indexed_fields.items())
    lines = ["[agent]", 'data_dir = "/tmp/x"', "[inputs.i]", 'type = "file"', 'paths = ["/tmp/x/*.jsonl"]',
             "[outputs.hec]", 'type = "splunk_hec"', f"endpoint = {toml_str(url)}",
             f"token = {toml_str(TOKEN)}",
             f"index = {toml_str(c.index)}", f"source = {toml_str(c.source)}",
             f"sourcetype = {toml_str(c.sourcetype)}", f"host = {toml_str(c.host)}",
             f"format = {toml_str(c.format)}", f"indexed_fields = {{ {fields} }}",
             f"event_fields = [{', '.join(toml_str(f) for f in c.event_fields)}]"]
    for sev, values in c.rules:
        body = ", ".join(f"{k} = {toml_str(v)}" for k, v in values.items())
        lines += ["[[outputs.hec.routes]]", f'when = {{ min_severity = "{sev}" }}', f"set = {{ {body} }}"]
    return "\n".join(lines) + "\n"


_SOURCETYPES = {"canonical": "clawdstrike:security_event", "ecs": "clawdstrike:ecs",
                "ocsf": "clawdstrike:ocsf", "cef": "cef"}


def hec_model_meta(c: HecConfig, ev: dict[str, Any]) -> dict[str, str]:
    """docs/outputs/splunk_hec.md: a rule's value, else the config's, else the documented fallback
    (``host``: the event's ``observer.host_name``, else this machine's name; ``sourcetype``: one per
    format); an empty ``index`` is left out."""
    route = first_rule(c.rules, ev)
    observer_host = ev.get("observer", {}).get("host_name")
    meta = {"host": route.get("host") or c.host or observer_host or socket.gethostname(),
            "source": route.get("source") or c.source,
            "sourcetype": route.get("sourcetype") or c.sourcetype or _SOURCETYPES[c.format]}
    index = route.get("index") or c.index
    if index:
        meta["index"] = index
    return meta


def hec_model_fields(c: HecConfig, ev: dict[str, Any]) -> dict[str, str]:
    values = {"severity": ev["decision"].get("severity"), "guard": ev["decision"].get("guard"),
              "event_type": ev.get("event_type"), "outcome": ev.get("outcome"),
              "action": ev.get("action"), "agent_id": ev.get("agent", {}).get("id")}
    fields = dict(c.indexed_fields)
    for name in c.event_fields:
        if values[name] not in (None, ""):
            fields[name] = str(values[name])
    return fields


_HEC_KEYS = {"time", "host", "source", "sourcetype", "index", "fields", "event"}
_TIME = re.compile(rb'^\{"time":(-?[0-9]+(?:\.[0-9]{1,3})?),')


@settings(max_examples=150, **SETTINGS)
@given(c=hec_configs(), evs=st.lists(events(), min_size=1, max_size=4))
def test_every_hec_envelope_obeys_the_hec_event_contract(c: HecConfig, evs: list[dict[str, Any]]) -> None:
    """Property 3 (module docstring)."""
    evs = unique_ids(evs)
    try:
        items = render(hec_toml(c), "hec", evs)
    except ConfigError as exc:
        # Only values this output cannot hold may be refused: none of these is (no event_fields
        # typo, no unknown route key), so a refusal would be a regression of the loader.
        pytest.fail(f"refused: {exc}")
    assert len(items) == len(evs)
    for item, ev in zip(items, evs, strict=True):
        envelope = orjson.loads(item.data)
        assert isinstance(envelope, dict) and set(envelope) <= _HEC_KEYS
        t = _TIME.match(item.data)
        assert t is not None, item.data[:60]  # a JSON number, <sec>.<ms> at most
        assert isinstance(envelope["time"], int | float) and not isinstance(envelope["time"], bool)
        assert round(envelope["time"] * 1000) == timestamp_to_ms(ev["timestamp"])
        for key in ("host", "source", "sourcetype", "index"):
            assert key not in envelope or isinstance(envelope[key], str)
        assert {k: envelope[k] for k in ("host", "source", "sourcetype", "index") if k in envelope} == \
            hec_model_meta(c, ev)
        assert envelope["sourcetype"] and envelope["host"]
        fields = envelope.get("fields", {})
        assert isinstance(fields, dict)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
        assert fields == hec_model_fields(c, ev)
        assert "fields" in envelope or not fields  # never an empty object on the wire either way
        doc = envelope["event"]
        if c.format == "cef":
            assert isinstance(doc, str) and doc.strip()
        else:
            assert isinstance(doc, dict) and doc


# ------------------------------------------------------------------------ 4. HEC: refused index

#: What Splunk's own rule allows for an index name (Splunk "Create custom indexes": lowercase
#: letters, digits, '_' and '-', not starting with '_' or '-'; not read in this repo's corpora, so
#: used only to pick which generated indexes "exist" on the mock, never to judge the output).
_SPLUNK_INDEX = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")


@pytest.fixture(scope="module")
def hec_mock() -> Iterator[tuple[SplunkHecApp, MockServer]]:
    app = SplunkHecApp([HecToken(TOKEN)], indexes={"main"})
    with MockServer(app) as server:
        yield app, server


def drive(out: Any, items: list[DeliveryItem], limit: int) -> tuple[list[DeliveryItem],
                                                                 dict[int, str], int]:
    """docs/outputs.md §3 for one output, without backoff: delivered items, DLQ (seq -> reason) and
    the attempts made. A RETRY is a failure here: every answer of this setup is final."""
    queue, delivered, dlq, attempts = [items], [], {}, 0
    while queue:
        batch = queue.pop(0)
        attempts += 1
        assert attempts <= limit, "no end in sight: retried or split forever"
        o: Outcome = out.send(batch)
        assert o.status is not Status.RETRY, o.reason
        if o.status is Status.SPLIT:
            if len(batch) == 1:
                dlq[batch[0].seq] = o.reason
            else:
                queue += [batch[: len(batch) // 2], batch[len(batch) // 2:]]
            continue
        failed = o.failed or (batch if o.status is Status.PERMANENT else [])
        gone = {id(i) for i in failed} | {id(i) for i in o.retry_items}
        delivered += [i for i in batch if id(i) not in gone]
        dlq.update((i.seq, o.reason) for i in failed)
        if o.retry_items:
            queue.append(o.retry_items)
    return delivered, dlq, attempts


@settings(max_examples=40, **SETTINGS)
@given(c=hec_configs(), evs=st.lists(events(), min_size=1, max_size=8))
def test_hec_events_for_a_refused_index_go_to_the_dlq_and_nowhere_else(
        hec_mock: tuple[SplunkHecApp, MockServer], c: HecConfig, evs: list[dict[str, Any]]) -> None:
    """Property 4 (module docstring)."""
    app, server = hec_mock
    c.format = "canonical"
    evs = unique_ids(evs)
    config = parse_config(hec_toml(c, server.url), "agent.toml")
    wanted = {ev["event_id"]: hec_model_meta(c, ev).get("index", "main") for ev in evs}
    existing = {"main"} | {i for i in wanted.values() if _SPLUNK_INDEX.match(i)}
    app.reset()
    app.indexes = existing
    items, _, _ = Renderer.from_config("hec", config).render_items(rows_of(evs))
    out = build_output("hec", config.outputs["hec"])
    out.open()
    try:
        # Each answer delivers the batch or dead-letters at least one event: at most one attempt each.
        delivered, dlq, _ = drive(out, items, limit=len(items))
    finally:
        out.close()
    stored = [(e["event"]["event_id"], e["index"]) for e in app.events]
    assert len(stored) == len({s[0] for s in stored}), "an event was indexed twice"
    by_seq = {item.seq: ev["event_id"] for item, ev in zip(items, evs, strict=True)}
    for item in delivered:
        eid = by_seq[item.seq]
        assert (eid, wanted[eid]) in stored
    for seq, reason in dlq.items():
        assert wanted[by_seq[seq]] not in existing
        assert "code 7" in reason, reason
    assert len(delivered) + len(dlq) == len(items)
    assert {by_seq[i.seq] for i in delivered} == {e for e, i in wanted.items() if i in existing}
    assert len(stored) == len(delivered)  # nothing stored anywhere else


# ------------------------------------------------------------------------ the defect found


def test_a_rollover_alias_the_bootstrap_cannot_create_a_first_index_for_is_refused_at_load(
        es_mock: tuple[ElasticsearchMock, MockServer]) -> None:
    """``index`` + ``bootstrap`` + an ILM policy makes ``index`` a rollover write alias whose first
    index the bootstrap creates as ``<index>-000001`` (docs/outputs/elasticsearch.md, "Bootstrap" 3).
    For a name of 249-255 bytes that index name is over Elasticsearch's 255 bytes: the load accepts
    it, the bootstrap's PUT answers 400 ``invalid_index_name_exception`` (a warning only), and the
    events then go to a plain index named like the alias, outside the template and its ILM policy.
    Data streams get the same check for their backing index (``check_data_stream_name``)."""
    app, server = es_mock
    app.reset()
    c = EsConfig(dataset="clawdstrike.security", namespace="default", index="a" * 249, pipeline="",
                 format="ecs", rules=[])
    toml = es_toml(c, server.url) + "bootstrap = true\n"
    try:
        config = parse_config(toml, "agent.toml")
    except ConfigError as exc:
        assert "255" in str(exc)
        return
    out = build_output("es", config.outputs["es"])
    out.open()
    out.close()
    assert out.bootstrap_warnings == []


def one_event(**extra: Any) -> dict[str, Any]:
    return {"schema_version": "2.1.0", "event_id": str(uuid.UUID(int=1)), "event_type": "policy_violation",
            "event_category": "authentication", "timestamp": "2026-03-04T05:06:07.089Z",
            "outcome": "success", "action": "shell", "observer": {"product": "hushd"},
            "decision": {"severity": "info", "allowed": True}, "resource": {"type": "file", "name": "x"},
            "metadata": {}, "labels": {}, "source": {"kind": "hushd_audit"}, **extra}


def send_one(server: MockServer, c: EsConfig) -> tuple[str, Outcome]:
    """The ``_index`` the output names for one event, and the mock's verdict on it."""
    items = render(es_toml(c, server.url), "es", [one_event()])
    config = parse_config(es_toml(c, server.url), "agent.toml")
    out = build_output("es", config.outputs["es"])
    out.open()
    try:
        outcome = out.send(items)
    finally:
        out.close()
    return orjson.loads(items[0].data.split(b"\n")[0])["create"]["_index"], outcome


def test_a_namespace_with_percent_y_is_refused_at_load_not_by_every_event(
        es_mock: tuple[ElasticsearchMock, MockServer]) -> None:
    """``data_stream_namespace = "eu.%Y"``: the load checks the name with ``%Y`` expanded (as if it
    were a dated index) and accepts it, but a data stream name is sent as written, and
    ``logs-clawdstrike.security-eu.%Y`` holds an upper-case letter: Elasticsearch refuses every event
    with a per-item 400 (``data_stream [...] must be lowercase``), so all of them go to the DLQ."""
    app, server = es_mock
    app.reset()
    c = EsConfig("clawdstrike.security", "eu.%Y", "", "", "ecs", [])
    try:
        parse_config(es_toml(c, server.url), "agent.toml")
    except ConfigError as exc:
        assert "lowercase" in str(exc)
        return
    index, outcome = send_one(server, c)
    assert outcome.status is Status.DELIVERED, (index, outcome.reason)


def test_a_routed_namespace_is_taken_as_written_like_the_outputs_own(
        es_mock: tuple[ElasticsearchMock, MockServer]) -> None:
    """A rule's ``set = {namespace = "eu.%d"}`` must name ``logs-<dataset>-eu.%d`` (docs: documents
    go to ``logs-<dataset>-<namespace>``; only ``index`` expands ``%Y %m %d``), as the same value as
    the output's own namespace does; instead each event goes to a data stream per day of month
    (``logs-clawdstrike.security-eu.04``), one the config never names."""
    app, server = es_mock
    app.reset()
    own, _ = send_one(server, EsConfig("clawdstrike.security", "eu.%d", "", "", "ecs", []))
    routed, outcome = send_one(server, EsConfig("clawdstrike.security", "default", "", "", "ecs",
                                                [("info", {"namespace": "eu.%d"})]))
    assert own == "logs-clawdstrike.security-eu.%d"
    assert outcome.status is Status.DELIVERED
    assert routed == own
