"""Property-based tests of per-output filters and routing rules against an independent reference model.

The contract is docs/outputs.md §5 ("Filters and routing rules"), docs/configuration.md
(``[outputs.<name>.filter]``, ``[[outputs.<name>.routes]]``) and docs/event-model.md (the canonical
event: ``decision.severity``/``allowed``/``guard``, ``action``, ``agent.id``). ``model_accepts`` and
``model_deliveries`` below re-state it without reading outputs/filters.py or outputs/routing.py, and
the real code is compared with them on generated events (canonical and unknown severities, every
event type, guards, actions and agent ids in several cases and Unicode spellings, fields missing):

1. filter (``compile_filter``, built through the config loader): ``min_severity`` keeps events at or
   above it in info < low < medium < high < critical; ``event_types`` keeps only those and
   ``exclude_event_types`` removes those (both together: in the first and not in the second);
   ``guards``/``actions``/``agents`` keep events whose ``decision.guard``/``action``/``agent.id``
   is one of the values compared as written (case- and Unicode-sensitive, no normalisation), so an
   event without that field is not kept; ``denied_only`` keeps events with ``decision.allowed`` false
   only; the keys combine with "and". ``None`` (no decoding needed) exactly for the empty filter.
   Not documented, and taken as the code's choice: an unknown or missing severity ranks as ``info``.
2. routing (``compile_selector`` of every output, on random acyclic systems of 1-4 outputs, each with
   a filter and 0-3 rules, some disabled): an output's rules apply to what its filter accepts, the
   first matching rule wins; ``set`` becomes the route; ``to`` moves the event to the target, which
   delivers it whatever its filter and its own rules say (no chains), and the source does not
   deliver it; redirected by two outputs, the first evaluated wins (upstream first, then agent.toml
   order); a disabled output delivers nothing but its rules still redirect.
3. ``check_routes`` on arbitrary systems (unknown targets, self-targets, disabled targets, loops):
   an error exactly when the docs call the system invalid, naming an offending rule; a loop error
   names a real loop whose first rule is the one named.
4. the whole path the agent uses: agent.toml text with severity rules (``set`` index / sourcetype /
   source / host, or ``to`` another Splunk HEC output) through ``parse_config`` and
   ``Renderer.from_config``: the HEC envelope of each event each output renders names the index,
   sourcetype, source and host the model's route says, and the other events are skipped.
5. through real drains (tests/outputs/drain_kit.py, a real spool): every enabled output delivers
   exactly the model's events, once each, with the model's route, and nothing else; each cursor
   reaches the end of the spool although its tail may be filtered out or redirected (docs §2: a
   batch's range covers "the rows around them this output skips"); ``stats.filtered`` counts the
   skipped rows; with one output down (every attempt answered RETRY) while the others finish and
   the spool is pruned, its cursor stays before its first undelivered event and, once it is back,
   it delivers all of them: routing to an output that is down loses nothing.

At the end: a deterministic reproduction of the defect found (it fails until outputs/render.py sends a
row the selector cannot read to the DLQ instead of letting the exception kill the drain).
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gevent
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import parse_config
from agent.config_loader import load_section
from agent.event import EventType
from outputs.base import DeliveryItem, FilterConfig, Outcome, OutputConfig, RouteConfig
from outputs.drain import Drain
from outputs.filters import compile_filter
from outputs.render import Renderer
from outputs.routing import NOT_HERE, check_routes, compile_selector
from spool.store import Spool
from spool.types import EncodedEvent, IngestBatch
from tests.outputs.drain_kit import Fake, caught_up, fresh_spool, run_until, stop, wait_until

SETTINGS = dict(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ------------------------------------------------------------------------------------ the model

#: docs/event-model.md "Severity": info < low < medium < high < critical.
SEVERITY_ORDER = ("info", "low", "medium", "high", "critical")
TYPES = tuple(t.value for t in EventType)
#: Not canonical severities: other cases, a hushd spelling the mapper would normalise, empty, Unicode
#: (the last is a full-width "high").
UNKNOWN_SEVERITIES = ("Critical", "HIGH", "warning", "", "cr\u00edtico", "\uff48\uff49\uff47\uff48")
#: Guards, actions and agent ids as a filter or an event may write them: case variants, NFC and NFD
#: spellings of the same text, a ligature, an emoji and the empty string must all stay distinct.
WORDS = ("shell", "Shell", "egress", "secret_leak", "SECRET_LEAK", "forbidden_path", "a1", "A1",
         "stra\u00dfe", "STRASSE", "caf\u00e9", "cafe\u0301", "\ufb01le", "file", "\U0001f6e1", "")

_MISSING = object()


def _rank(severity: Any) -> int:
    """Position in the documented order; anything else ranks lowest (the code's undocumented choice)."""
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else 0


def model_accepts(f: Mapping[str, Any], ev: Mapping[str, Any]) -> bool:
    """Does the filter (a ``[outputs.<name>.filter]`` / ``when`` table) keep ``ev``? Keys absent from
    the table do not restrict; the keys present combine with "and"."""
    decision = ev.get("decision", {})
    if _rank(decision.get("severity", _MISSING)) < SEVERITY_ORDER.index(f.get("min_severity", "info")):
        return False
    event_type = ev.get("event_type", _MISSING)
    if f.get("event_types") and event_type not in f["event_types"]:
        return False
    if event_type in f.get("exclude_event_types", ()):
        return False
    for key, value in (("guards", decision.get("guard", _MISSING)), ("actions", ev.get("action", _MISSING)),
                       ("agents", ev.get("agent", {}).get("id", _MISSING))):
        if f.get(key) and not any(value is not _MISSING and value == w for w in f[key]):
            return False
    return not (f.get("denied_only") and decision.get("allowed", _MISSING) is not False)


def filter_is_empty(f: Mapping[str, Any]) -> bool:
    return (f.get("min_severity", "info") == "info" and not f.get("denied_only")
            and not any(f.get(k) for k in ("event_types", "exclude_event_types", "guards", "actions",
                                           "agents")))


@dataclass
class MOutput:
    """One output of the model: its filter table, its rules ``(when, set, to)`` and ``enabled``."""

    filter: dict[str, Any] = field(default_factory=dict)
    rules: list[tuple[dict[str, Any], dict[str, str], str]] = field(default_factory=list)
    enabled: bool = True


def evaluation_order(system: dict[str, MOutput]) -> list[str]:
    """Upstream first, otherwise agent.toml order: repeatedly the first output (in agent.toml order)
    that no output still unplaced redirects to."""
    placed: list[str] = []
    while len(placed) < len(system):
        for name in system:
            if name not in placed and not any(
                    to == name for src, o in system.items() if src not in placed and src != name
                    for _, _, to in o.rules):
                placed.append(name)
                break
        else:  # pragma: no cover - the generated systems are acyclic
            raise AssertionError("cycle")
    return placed


def model_deliveries(system: dict[str, MOutput], ev: Mapping[str, Any]) -> dict[str, dict[str, str] | None]:
    """Output name -> route (``None``: no values) for every enabled output that delivers ``ev``."""
    redirected: dict[str, dict[str, str] | None] = {}
    delivered: dict[str, dict[str, str] | None] = {}
    for name in evaluation_order(system):
        out = system[name]
        if name in redirected:  # bypasses its filter and its own rules
            delivered[name] = redirected[name]
            continue
        if not model_accepts(out.filter, ev):
            continue
        rule = next((r for r in out.rules if model_accepts(r[0], ev)), None)
        if rule is None:
            delivered[name] = None
        elif rule[2]:
            redirected.setdefault(rule[2], rule[1] or None)  # the first evaluated wins
        else:
            delivered[name] = rule[1] or None
    return {n: r for n, r in delivered.items() if system[n].enabled}


# ------------------------------------------------------------------------------------ the real code


@dataclass
class AnyRouteConfig(OutputConfig):
    """An output that reads any route key (the rules are under test, not a vendor's keys)."""

    def check_route(self, values: dict[str, str]) -> None:
        pass


def real_filter(table: dict[str, Any]) -> FilterConfig:
    return load_section(FilterConfig, table, "x")


def real_system(system: dict[str, MOutput], **kw: Any) -> dict[str, OutputConfig]:
    return {name: AnyRouteConfig(type="fake", enabled=o.enabled, filter=real_filter(o.filter),
                                 routes=[RouteConfig(when=real_filter(w), set=dict(s), to=t)
                                         for w, s, t in o.rules], **kw)
            for name, o in system.items()}


def real_deliveries(outs: dict[str, OutputConfig], evs: list[dict[str, Any]],
                    ) -> list[dict[str, dict[str, str] | None]]:
    """Per event, what the selector of each enabled output says (as ``model_deliveries`` does)."""
    selectors = {name: compile_selector(name, outs) for name, c in outs.items() if c.enabled}
    got: list[dict[str, dict[str, str] | None]] = []
    for ev in evs:
        routes = {name: None if select is None else select(ev) for name, select in selectors.items()}
        got.append({name: r or None for name, r in routes.items() if r is not NOT_HERE})
    return got


# ------------------------------------------------------------------------------------ strategies

severities = st.sampled_from(SEVERITY_ORDER) | st.sampled_from(UNKNOWN_SEVERITIES)
words = st.sampled_from(WORDS)


@st.composite
def events(draw: Any, n: int = 0) -> dict[str, Any]:
    """A canonical-shaped event (fields that may be absent sometimes are; severity sometimes unknown)."""
    ev: dict[str, Any] = {"event_id": str(uuid.UUID(int=n + 1)), "n": n,
                          "timestamp": f"2026-01-01T00:00:{n % 60:02d}.{n:03d}Z"}
    if draw(st.integers(0, 9)):
        ev["event_type"] = draw(st.sampled_from(TYPES))
    if draw(st.integers(0, 9)):
        decision: dict[str, Any] = {}
        if draw(st.integers(0, 9)):
            decision["severity"] = draw(severities)
        allowed = draw(st.sampled_from([True, False, _MISSING]))
        if allowed is not _MISSING:
            decision["allowed"] = allowed
        if draw(st.booleans()):
            decision["guard"] = draw(words)
        ev["decision"] = decision
    if draw(st.integers(0, 5)):
        ev["action"] = draw(words)
    if draw(st.booleans()):
        ev["agent"] = {"id": draw(words)}
    return ev


FILTER_KEYS = ("min_severity", "event_types", "exclude_event_types", "guards", "actions", "agents",
               "denied_only")


@st.composite
def filters(draw: Any, max_keys: int = 3) -> dict[str, Any]:
    """A filter table with up to ``max_keys`` keys (fewer keys: more events pass); a list is empty
    now and then (no restriction)."""
    keys = draw(st.lists(st.sampled_from(FILTER_KEYS), unique=True, max_size=max_keys))
    table: dict[str, Any] = {}
    for key in keys:
        size = draw(st.sampled_from([1, 1, 2, 3, 0]))
        if key == "min_severity":
            table[key] = draw(st.sampled_from(SEVERITY_ORDER))
        elif key in ("event_types", "exclude_event_types"):
            table[key] = draw(st.lists(st.sampled_from(TYPES), min_size=size, max_size=size))
        elif key == "denied_only":
            table[key] = draw(st.booleans())
        else:
            table[key] = draw(st.lists(words, min_size=size, max_size=size))
    return table


NAMES = ("siem", "pager", "archive", "sms")


@st.composite
def systems(draw: Any, max_outputs: int = 4, redirect: bool = False, fan_in: bool = False,
            keys: int = 2) -> dict[str, MOutput]:
    """Valid systems: acyclic (a rule only points later in a drawn rank), every target enabled, and the
    outputs listed in another drawn order (agent.toml order is not the redirect order). ``redirect``:
    at least two outputs, and the first in rank has a ``to`` rule; ``fan_in``: at least three, and
    the first two in rank have a rule to the last one (the two compete for its route values)."""
    k = draw(st.integers(3 if fan_in else 2 if redirect else 1, max(max_outputs, 3 if fan_in else 1)))
    rank = draw(st.permutations(NAMES[:k]))
    toml_order = draw(st.permutations(NAMES[:k]))
    system = {name: MOutput() for name in toml_order}
    for pos, name in enumerate(rank):
        out = system[name]
        out.filter = draw(filters(max_keys=keys))
        later = list(rank[pos + 1:])
        for i in range(draw(st.integers(0, 3))):
            when = draw(filters(max_keys=keys))
            values = draw(st.sampled_from([{}, {"rule": f"{name}#{i}"},
                                           {"rule": f"{name}#{i}", "index": "bl\u00f6cks"}]))
            to = draw(st.sampled_from(["", *later])) if later else ""
            out.rules.append((when, values, to))
        if redirect and pos == 0:
            to = draw(st.sampled_from(later))
            out.rules.insert(draw(st.integers(0, len(out.rules))),
                             (draw(filters(max_keys=1)), {"rule": f"{name}#to"}, to))
        if fan_in and pos < 2:
            out.rules.insert(draw(st.integers(0, len(out.rules))),
                             (draw(filters(max_keys=1)), {"rule": f"{name}#fan"}, rank[-1]))
        out.enabled = draw(st.integers(0, 4)) > 0
    for out in list(system.values()):
        for _, _, to in out.rules:
            if to:
                system[to].enabled = True
    return system


# ------------------------------------------------------------------------------------ 1. filters


@settings(max_examples=200, **SETTINGS)
@given(table=st.sampled_from([1, 1, 2, 3, 7]).flatmap(lambda k: filters(max_keys=k)),
       evs=st.lists(events(), min_size=1, max_size=8))
def test_filter_matches_the_documented_semantics(table: dict[str, Any], evs: list[dict[str, Any]]) -> None:
    accept = compile_filter(real_filter(table))
    assert (accept is None) == filter_is_empty(table)
    for ev in evs:
        assert (True if accept is None else accept(ev)) == model_accepts(table, ev), (table, ev)


def test_min_severity_and_denied_only_on_every_value() -> None:
    """Exhaustive over the values one key can meet: every threshold against every severity (canonical,
    unknown, missing, no decision), and ``denied_only`` against allowed true / false / missing."""
    for threshold in SEVERITY_ORDER:
        accept = compile_filter(real_filter({"min_severity": threshold}))
        for severity in (*SEVERITY_ORDER, *UNKNOWN_SEVERITIES, _MISSING):
            ev: dict[str, Any] = {"decision": {} if severity is _MISSING else {"severity": severity}}
            got = True if accept is None else accept(ev)
            assert got == model_accepts({"min_severity": threshold}, ev), (threshold, severity)
        assert (True if accept is None else accept({})) == (threshold == "info")
    denied = compile_filter(real_filter({"denied_only": True}))
    for decision in ({"allowed": False}, {"allowed": True}, {}, None):
        ev = {} if decision is None else {"decision": {"severity": "high", **decision}}
        assert denied(ev) == (decision == {"allowed": False})


@settings(max_examples=100, **SETTINGS)
@given(ev=events(), key=st.sampled_from(["guards", "actions", "agents"]), word=words)
def test_guards_actions_agents_compare_as_written(ev: dict[str, Any], key: str, word: str) -> None:
    """The value the event carries is kept by a list holding exactly it, and by no list of the other
    spellings (other case, NFC/NFD, ligature)."""
    field_of = {"guards": lambda e: e.get("decision", {}).get("guard"), "actions": lambda e: e.get("action"),
                "agents": lambda e: (e.get("agent") or {}).get("id")}
    value = field_of[key](ev)
    accept = compile_filter(real_filter({key: [word]}))
    assert accept(ev) == (value is not None and value == word)
    others = [w for w in WORDS if w != value]
    assert not compile_filter(real_filter({key: others}))(ev)


# ------------------------------------------------------------------------------------ 2. routing


@settings(max_examples=200, **SETTINGS)
@given(system=st.sampled_from([{}, {"redirect": True}, {"fan_in": True}]).flatmap(lambda kw: systems(**kw)),
       evs=st.lists(events(), min_size=1, max_size=10))
def test_selectors_deliver_what_the_rules_say(system: dict[str, MOutput], evs: list[dict[str, Any]]) -> None:
    outs = real_system(system)
    check_routes(outs)  # the generated systems are valid
    for ev, got in zip(evs, real_deliveries(outs, evs), strict=True):
        assert got == model_deliveries(system, ev), ev


# ------------------------------------------------------------------------------------ 3. check_routes


@st.composite
def any_systems(draw: Any) -> dict[str, MOutput]:
    """Anything a config may say: unknown, self and disabled targets, loops."""
    k = draw(st.integers(1, 4))
    system = {}
    for name in draw(st.permutations(NAMES[:k])):
        rules = [({}, {}, draw(st.sampled_from(["", "ghost", *NAMES[:k]])))
                 for _ in range(draw(st.integers(0, 2)))]
        system[name] = MOutput(rules=rules, enabled=draw(st.integers(0, 3)) > 0)
    return system


def model_route_errors(system: dict[str, MOutput]) -> list[str]:
    """The messages (up to the reason's first words) of the rules whose ``to`` is invalid."""
    errors = []
    for name, out in system.items():
        for i, (_, _, to) in enumerate(out.rules):
            where = f"[outputs.{name}] routes[{i}].to: "
            if to == name:
                errors.append(where + "an output cannot route to itself")
            elif to and to not in system:
                errors.append(where + f"unknown output {to!r}")
            elif to and not system[to].enabled:
                errors.append(where + f"output {to!r} is disabled")
    return errors


def model_edges(system: dict[str, MOutput]) -> set[tuple[str, str]]:
    return {(n, to) for n, o in system.items() for _, _, to in o.rules if to in system and to != n}


def has_cycle(edges: set[tuple[str, str]], nodes: list[str]) -> bool:
    state: dict[str, int] = {}

    def visit(n: str) -> bool:
        state[n] = 1
        for a, b in edges:
            if a == n and (state.get(b) == 1 or (b not in state and visit(b))):
                return True
        state[n] = 2
        return False

    return any(n not in state and visit(n) for n in nodes)


LOOP = re.compile(r"^\[outputs\.(\w+)\] routes\[(\d+)\]\.to: routing rules form a loop \(([\w >-]+)\)")


@settings(max_examples=200, **SETTINGS)
@given(system=any_systems())
def test_check_routes_refuses_exactly_the_invalid_systems(system: dict[str, MOutput]) -> None:
    errors = model_route_errors(system)
    edges = model_edges(system)
    loop = has_cycle(edges, list(system))
    try:
        check_routes(real_system(system))
    except ValueError as exc:
        msg = str(exc)
        if errors:
            assert any(msg.startswith(e) for e in errors), (msg, errors)
        else:
            assert loop, msg
            m = LOOP.match(msg)
            assert m, msg
            path = m.group(3).split(" -> ")
            assert path[0] == path[-1] == m.group(1) and len(path) >= 3, msg
            assert all((a, b) in edges for a, b in itertools.pairwise(path)), msg
            assert system[m.group(1)].rules[int(m.group(2))][2] == path[1], msg
    else:
        assert not errors and not loop, (errors, loop)


# ------------------------------------------------------------------------------------ 4. agent.toml + HEC

HEC_NAMES = ("splunk", "pagerduty", "soc")


@st.composite
def hec_systems(draw: Any) -> dict[str, MOutput]:
    """Splunk HEC outputs whose rules route by severity (and sometimes denial) to an index, a
    sourcetype, a source or a host, or to a later HEC output."""
    names = list(HEC_NAMES[:draw(st.integers(1, 3))])
    system = {}
    for pos, name in enumerate(names):
        rules = []
        for _ in range(draw(st.integers(0, 3))):
            when: dict[str, Any] = {"min_severity": draw(st.sampled_from(SEVERITY_ORDER))}
            if draw(st.booleans()):
                when["denied_only"] = True
            keys = draw(st.lists(st.sampled_from(["index", "sourcetype", "source", "host"]), unique=True))
            values = {k: draw(st.sampled_from([f"clawd_{k}", f"{k}-\u00e9\U0001f6e1", "alerts"]))
                      for k in keys}
            to = draw(st.sampled_from(["", *names[pos + 1:]]))
            rules.append((when, values, to))
        system[name] = MOutput(filter=draw(filters(max_keys=1)), rules=rules)
    return system


def toml_value(v: Any) -> str:
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v, ensure_ascii=False)


def hec_toml(system: dict[str, MOutput]) -> str:
    lines = ['[agent]', 'data_dir = "/tmp/x"', '[inputs.i]', 'type = "file"', 'paths = ["/tmp/x/*.jsonl"]']
    for name, out in system.items():
        lines += [f"[outputs.{name}]", 'type = "splunk_hec"', 'endpoint = "http://127.0.0.1:8088"',
                  'token = "t"', 'index = "main"', 'host = "h0"', f"filter = {toml_value(out.filter)}"]
        for when, values, to in out.rules:
            lines += [f"[[outputs.{name}.routes]]", f"when = {toml_value(when)}",
                      f"set = {toml_value(values)}"]
            if to:
                lines.append(f"to = {toml_value(to)}")
    return "\n".join(lines) + "\n"


@settings(max_examples=40, **SETTINGS)
@given(system=hec_systems(), evs=st.lists(events(), min_size=1, max_size=8))
def test_agent_toml_severity_routes_reach_the_hec_envelope(system: dict[str, MOutput],
                                                           evs: list[dict[str, Any]]) -> None:
    config = parse_config(hec_toml(system), "agent.toml")
    rows = [(i + 1, uuid.UUID(int=i + 1).bytes, orjson.dumps({**ev, "n": i})) for i, ev in enumerate(evs)]
    for name in system:
        items, filtered, rejected = Renderer.from_config(name, config).render_items(rows)
        expected = {i: d[name] for i, ev in enumerate(evs) if name in (d := model_deliveries(system, ev))}
        assert not rejected
        envelopes = [orjson.loads(i.data) for i in items]
        assert [e["event"]["n"] for e in envelopes] == sorted(expected), name
        assert filtered == len(evs) - len(expected)
        for envelope in envelopes:
            route = expected[envelope["event"]["n"]] or {}
            assert envelope.get("index") == route.get("index", "main")
            assert envelope["sourcetype"] == route.get("sourcetype", "clawdstrike:security_event")
            assert envelope["source"] == route.get("source", "clawd-agent")
            assert envelope["host"] == route.get("host", "h0")


# ------------------------------------------------------------------------------------ 5. drains


def fill_events(spool: Spool, evs: list[dict[str, Any]]) -> None:
    spool.append(IngestBatch("t", [EncodedEvent(uuid.UUID(int=i + 1).bytes, 1_700_000_000_000 + i,
                                                orjson.dumps({**ev, "n": i})) for i, ev in enumerate(evs)]))


class Recorder(Fake):
    """Records ``(n, route)`` of each delivered event; answers RETRY to every attempt while ``down``."""

    def __init__(self, name: str, config: OutputConfig):
        super().__init__(name, config)
        self.down = False
        self.got: list[tuple[int, dict[str, str] | None]] = []

    def send(self, batch: list[DeliveryItem]) -> Outcome:
        self.sent.append([orjson.loads(i.body)["n"] for i in batch])
        if self.down:
            return Outcome.retry("destination down")
        self.got.extend((orjson.loads(i.body)["n"], i.route or None) for i in batch)
        return Outcome.delivered()


@st.composite
def drain_scenarios(draw: Any) -> tuple[dict[str, MOutput], list[dict[str, Any]], str | None, int, int]:
    system = draw(systems(max_outputs=3, redirect=draw(st.booleans()), keys=1))
    n = draw(st.integers(1, 30))
    evs = [draw(events(i)) for i in range(n)]
    enabled = [name for name, o in system.items() if o.enabled]
    targets = [to for o in system.values() for _, _, to in o.rules if to]
    down = draw(st.sampled_from([None, *enabled, *targets])) if enabled else None
    return system, evs, down, draw(st.integers(1, 6)), draw(st.integers(1, 2))


@settings(max_examples=25, **SETTINGS)
@given(sc=drain_scenarios())
def test_drains_deliver_each_routed_event_once_where_its_rule_says(sc: tuple) -> None:
    system, evs, down, batch, concurrency = sc
    outs = real_system(system, batch_max_events=batch, batch_max_wait=0, concurrency=concurrency,
                       retry_initial=0.001, retry_max=0.002, breaker_failures=0, healthcheck_interval=0)
    expected: dict[str, list[tuple[int, dict[str, str] | None]]] = {n: [] for n in system}
    for i, ev in enumerate(evs):
        for name, route in model_deliveries(system, ev).items():
            expected[name].append((i, route))
    enabled = [n for n, c in outs.items() if c.enabled]
    with fresh_spool() as spool:
        fill_events(spool, evs)
        fakes = {n: Recorder(n, outs[n]) for n in enabled}
        drains = {n: Drain(fakes[n], spool, spool.reader(), selector=compile_selector(n, outs))
                  for n in enabled}
        if down is not None:
            fakes[down].down = True
        greenlets = {n: gevent.spawn(d.run) for n, d in drains.items()}
        try:
            up = [n for n in enabled if n != down]
            wait_until(lambda: all(caught_up(spool, n)() for n in up) or any(
                g.dead for g in greenlets.values()))
            assert not any(g.dead for g in greenlets.values()), {n: g.exception for n, g in greenlets.items()}
            if down is not None and expected[down]:
                wait_until(lambda: len(fakes[down].sent) >= 2)  # refused, and retried
                first = expected[down][0][0] + 1  # seq of its first event
                assert spool.get_cursor(down).seq < first
                spool.prune(0, enabled)  # the others are done: only its cursor holds the rows back
                kept = {r.seq for r in spool.read_after(first - 1, len(evs) + 1)}
                assert {i + 1 for i, _ in expected[down]} <= kept  # still in the spool
                assert fakes[down].got == []
            if down is not None:
                fakes[down].down = False
            wait_until(lambda: all(caught_up(spool, n)() for n in enabled) or any(
                g.dead for g in greenlets.values()))
            assert not any(g.dead for g in greenlets.values()), {n: g.exception for n, g in greenlets.items()}
        finally:
            for n in enabled:
                stop(drains[n], greenlets[n])
    for n in enabled:
        got = fakes[n].got
        assert not [k for k, c in Counter(i for i, _ in got).items() if c > 1], (n, got)  # once each
        assert sorted(got, key=lambda x: x[0]) == expected[n], n
        assert drains[n].stats.filtered == len(evs) - len(expected[n]), n


# ------------------------------------------------------------------------------------ defects found


@pytest.mark.parametrize("body", [b"null", b"[1, 2]", b'"x"', b'{"decision": "high"}',
                                  b'{"agent": "a1", "decision": {"severity": "high"}}'])
def test_a_row_that_is_json_but_not_an_event_does_not_kill_a_filtering_drain(body: bytes) -> None:
    """A spool row the filter cannot read (valid JSON, but not an object, or ``decision``/``agent``
    not objects) raised AttributeError in the filter and killed the drain, which the supervisor
    restarts onto the same row forever: the output was wedged. Without a filter the same row is
    forwarded, and a row that is not JSON at all goes to the DLQ (docs §3): so must this one, and
    the events after it must still be delivered."""
    with fresh_spool() as spool:
        spool.append(IngestBatch("t", [
            EncodedEvent(uuid.UUID(int=1).bytes, 1, body),
            EncodedEvent(uuid.UUID(int=2).bytes, 2, orjson.dumps(
                {"event_id": str(uuid.UUID(int=2)), "n": 1, "agent": {"id": "a1"},
                 "decision": {"severity": "high", "allowed": False}}))]))
        out = Recorder("f", AnyRouteConfig(type="fake", batch_max_wait=0, retry_initial=0.001,
                                           retry_max=0.002, healthcheck_interval=0,
                                           filter=FilterConfig(min_severity="high", agents=["a1"])))
        run_until(Drain(out, spool, spool.reader()), caught_up(spool, "f"))
        assert out.got == [(1, None)]
        assert [e.seq for e in spool.dlq_list("f")] == [1]
