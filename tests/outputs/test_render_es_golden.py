"""The Elasticsearch render loop (``Renderer.render`` / ``render_items``: decode, route, ECS, action
line) gives exactly the bytes recorded in render-es.sha256 (beside this file), for a varied corpus: every
golden input and real hushd capture, generated hushd lines, each with optional fields removed, routed,
filtered, dated, and rows that fail (bad JSON, events the ECS transform cannot render).

The hot path caches by shape (``transforms.ecs`` templates are made on an event's second sighting,
the action prefixes per index and day), so every row is rendered three times, in two orders, and all
renders must agree with the first. The file holds a SHA-256 per rendered pair (the documents would
be megabytes); regenerate it only for a deliberate output change:

    .venv/bin/python tests/outputs/test_render_es_golden.py --write
"""

from __future__ import annotations

import copy
import hashlib
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.event import encode_event  # noqa: E402
from agent.mapping import MappingContext, parse_line  # noqa: E402
from outputs.elasticsearch import ElasticsearchOutput, ElasticsearchOutputConfig  # noqa: E402
from outputs.render import Renderer  # noqa: E402
from outputs.routing import NOT_HERE  # noqa: E402
from tests.golden.regen import CASES, CONTEXT  # noqa: E402
from tests.integration.harness import audit_line  # noqa: E402
from transforms.config import EnrichmentConfig, PrivacyConfig  # noqa: E402
from transforms.pipeline import build_pipeline, compile_ingest  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "render-es.sha256"

#: Fields an event may lack; each is removed in turn (nested ones as "parent.child").
OPTIONAL = ("metadata", "mitre", "labels", "session", "agent", "threat", "decision.reason",
            "decision.guard", "decision.ruleset", "decision.policy_hash", "resource.path",
            "observer.host_name", "observer.version")
#: Odd values the general path must handle (or reject) exactly as before.
ODD: tuple[tuple[str, Any], ...] = (
    ("timestamp", "2026-02-07T09:30:12Z"), ("timestamp", "2016-12-31T23:59:60.5Z"),
    ("timestamp", "2026-02-07T09:30:12.123456789Z"), ("decision.reason", "r" * 1100),
    ("decision.reason", "quote \" back \\ ctl \x01 \u2028 é"), ("resource.path", "C:\\w\\x.y"),
    ("resource.path", "/"), ("resource.path", "/d/.env"), ("resource.path", "/x/" + "l" * 1100),
    ("metadata", {"z": [1, None, 2.5], "a": "\x01", "n": {"b": 1, "a": 2}}), ("metadata", {}),
    ("labels", {"a.b": "x", "a_b": "y"}), ("labels", {"k": "v" * 1100}), ("source", {"b": 1, "a": None}),
    ("threat", {"indicator": {"type": "domain-name", "value": "evil.example"}}),
    ("threat", {"indicator": {"type": "ipv6-addr", "value": "::1"}}), ("event_id", ""),
    ("decision.severity", "nope"), ("resource", None), ("decision", "x"), ("timestamp", 5),
)


def _contexts() -> list[MappingContext]:
    post = compile_ingest(PrivacyConfig(), EnrichmentConfig())
    return [CONTEXT, MappingContext(postprocess=post),
            MappingContext(labels={"team": "security"}, environment="production", tenant_id="acme",
                           host_name="dev-laptop", postprocess=post)]


def _set(event: dict, path: str, value: Any, *, remove: bool = False) -> dict | None:
    event = copy.deepcopy(event)
    head, _, tail = path.partition(".")
    node = event
    if tail:
        node = event.get(head)
        if type(node) is not dict:
            return None
        head = tail
    if remove:
        if head not in node:
            return None
        del node[head]
    else:
        node[head] = value
    return event


def corpus() -> list[bytes]:
    """Canonical bodies: mapped records, then variants without each optional field and with odd values."""
    lines = [line for case in CASES for line in case.read()]
    lines += [audit_line(i).rstrip(b"\n") for i in range(12)]
    events = []
    for ctx in _contexts():
        for line in lines:
            try:
                events.append(parse_line(line, context=ctx))
            except Exception:  # the captures hold lines no context maps; the mapping tests own them
                continue
    bodies = [encode_event(ev) for ev in events]
    base = events[:: max(1, len(events) // 24)]
    for ev in base:
        for path in OPTIONAL:
            changed = _set(ev, path, None, remove=True)
            if changed is not None:
                bodies.append(encode_event(changed))
        for path, value in ODD:
            changed = _set(ev, path, value)
            if changed is not None:
                bodies.append(orjson.dumps(changed, option=orjson.OPT_SORT_KEYS))
    bodies += [b"{not json", b"[]", b'{"event_id":"x"}', b"{}"]
    return list(dict.fromkeys(bodies))


def _select(event: dict) -> Any:
    """Routes by event type: some events elsewhere, alerts to their own index, the rest unrouted."""
    etype = event.get("event_type") if type(event) is dict else None
    if etype in ("policy_allow", "session_start"):
        return NOT_HERE
    if etype in ("forbidden_path", "egress_blocked", "secret_detected"):
        return {"index": "alerts-%Y.%m"}
    if etype == "guard_warn":
        return {"dataset": "warn", "namespace": "team"}
    return None


def renderers() -> dict[str, Renderer]:
    out = {}
    for name, index, select in (("stream", "", None), ("dated", "clawd-%Y.%m.%d", None),
                                ("routed", "", _select), ("routed-dated", "clawd-%Y.%m.%d", _select)):
        cfg = ElasticsearchOutputConfig(hosts=["http://127.0.0.1:9200"], index=index,
                                        ingest_pipeline="p" if "routed" in name else "")
        cfg.validate()
        output = ElasticsearchOutput("es", cfg)
        output.pipeline = build_pipeline(cfg.transform_config())
        out[name] = Renderer(output, select)
    return out


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def render_all() -> list[str]:
    """One line per (renderer, row): what it became (accepted data's digest and route, filtered, or the
    rejection reason). Each row is rendered three times, forwards and backwards; all must agree."""
    bodies = corpus()
    rows = [(seq, uuid.UUID(int=seq).bytes, body) for seq, body in enumerate(bodies, 1)]
    lines = []
    for name, renderer in renderers().items():
        seen: dict[int, str] = {}
        for attempt, chunk in enumerate((rows, rows[::-1], rows)):
            accepted, filtered, rejected = renderer.render(chunk)
            if attempt == 2:  # the same again through the drain's own entry point
                items, filtered, bad = renderer.render_items(chunk)
                accepted = [(i.seq, i.event_id, i.body, i.data, i.route) for i in items]
                rejected = [(i.seq, i.event_id, i.body, reason) for i, reason in bad]
            got: dict[int, str] = {}
            for seq, eid, body, data, route in accepted:
                assert eid == rows[seq - 1][1]
                got[seq] = f"ok {_digest(data)} body={int(bool(body))} route={orjson.dumps(route).decode()}"
            for seq, _eid, body, reason in rejected:
                assert body == rows[seq - 1][2]
                got[seq] = f"rejected {reason}"
            for seq, *_ in rows:
                got.setdefault(seq, "filtered")
            assert filtered == sum(v == "filtered" for v in got.values())
            for seq, what in got.items():
                assert seen.setdefault(seq, what) == what, (name, seq, attempt, what, seen[seq])
        lines += [f"{name} {seq} {what}" for seq, what in sorted(seen.items())]
    return lines


def test_render_es_matches_golden():
    want = GOLDEN.read_text().splitlines()
    got = render_all()
    assert len(got) == len(want), "corpus changed: regenerate with --write if deliberate"
    diff = [(w, g) for w, g in zip(want, got, strict=True) if w != g]
    assert not diff, f"{len(diff)} renders differ, first: {diff[:3]}"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        GOLDEN.write_text("\n".join(render_all()) + "\n")
        print(f"wrote {GOLDEN.relative_to(ROOT)}")
