"""The ingest hot path's fast paths give exactly what the general code gives, edge cases included.

Each fast path (canonical timestamps, timestamp -> ms through the day cache, map_lines' inlined
encode) is checked against the general path it short-cuts: the caches are cleared so the general
path runs, then warmed so the fast path runs, and both results (or errors) must be equal.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from agent import event as event_mod
from agent import mapping as mapping_mod
from agent.event import EventValidationError, encode_event, timestamp_to_ms
from agent.inputs.base import Line, encode, map_lines
from agent.mapping import MappingContext, MappingError, normalize_timestamp, parse_line
from tests.integration.harness import audit_line
from transforms.config import EnrichmentConfig, PrivacyConfig
from transforms.pipeline import compile_ingest

# Canonical and near-canonical shapes: each differs from hushd's one shape in one place.
TIMESTAMPS = [
    "2026-11-26T08:28:51.585857754Z", "2026-11-26T08:28:51Z", "2026-11-26T08:28:51.5Z",
    "2026-11-26T08:28:51.58Z", "2026-11-26T08:28:51.585Z", "2026-11-26T08:28:51.1234567891Z",
    "2026-11-26T08:28:51.Z", "2026-11-26T08:28:51.58585775aZ", "2026-11-26T08:28:51.٣٣٣Z",
    "2026-11-26T08:28:51.585857754z", "2026-11-26t08:28:51.585Z", "2026-11-26 08:28:51.585Z",
    "2026-11-26T08:28:51.585857754Z\n", "2026-11-26T08:28:51.585857754ZZ", "2026-11-26T08:28:51+00:00",
    "2026-11-26T08:28:51.585857754+02:00", "2026-11-26T08:28:60.5Z", "2026-02-30T08:28:51.5Z",
    "2024-02-29T00:00:00.000Z", "2026-11-26T24:00:00Z", "2026-11-26T08:28:51.²Z", "",
]


def _outcome(fn: Callable[[Any], Any], value: Any) -> Any:
    """The result, or the error's type and message."""
    try:
        return fn(value)
    except (MappingError, EventValidationError) as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("ts", TIMESTAMPS)
def test_normalize_timestamp_fast_path_matches_the_general_parser(ts: str) -> None:
    mapping_mod._CANON_SECONDS.clear()
    mapping_mod._VALID_DATES.clear()
    cold = _outcome(normalize_timestamp, ts)
    # warm: the second (and date) of the hushd shape are known, so the fast path decides
    for _ in range(2):
        _outcome(normalize_timestamp, ts[:19] + ".123456789Z")
    assert _outcome(normalize_timestamp, ts) == cold


def test_normalize_timestamp_fast_path_is_taken_for_the_hushd_shape() -> None:
    mapping_mod._CANON_SECONDS.clear()
    normalize_timestamp("2026-11-26T08:28:51.000000000Z")
    normalize_timestamp("2026-11-26T08:28:51.000000000Z")
    assert "2026-11-26T08:28:51" in mapping_mod._CANON_SECONDS
    value = "2026-11-26T08:28:51.585857754Z"
    assert normalize_timestamp(value) is value


@pytest.mark.parametrize("ts", TIMESTAMPS)
def test_timestamp_to_ms_fast_path_matches_the_regex(ts: str) -> None:
    event_mod._DAYS.clear()
    event_mod._MINUTES.clear()
    cold = _outcome(timestamp_to_ms, ts)
    if len(ts) >= 10:
        _outcome(timestamp_to_ms, ts[:10] + "T00:00:00Z")  # caches the day when it is one
    if len(ts) >= 16:
        _outcome(timestamp_to_ms, ts[:16] + ":00Z")  # and the minute
    assert _outcome(timestamp_to_ms, ts) == cold


def _reference_ms(ts: str) -> int:
    """The general path alone: the regex and calendar.timegm on all six fields."""
    import calendar

    m = event_mod._TS_RE.match(ts)
    assert m is not None
    y, mo, d, h, mi, s, frac = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), min(int(s), 59), 0, 0, 0))
    return secs * 1000 + int((frac or "0")[:3].ljust(3, "0"))


def test_timestamp_to_ms_day_tables_equal_timegm_on_every_minute_and_second() -> None:
    """The day cache + "HH:MM" / ":SS" tables against timegm: each minute of a day, each second
    (leap second :60 included), month and year ends, and hours the tables leave to the regex."""
    event_mod._DAYS.clear()
    event_mod._MINUTES.clear()
    days = ["2026-11-26", "2024-02-29", "1970-01-01", "1999-12-31", "2026-11-31"]
    stamps = [f"{d}T{h:02d}:{m:02d}:{(h + m) % 61:02d}.{m:03d}Z" for d in days for h in range(25)
              for m in range(60)]
    stamps += [f"2026-11-26T08:28:{s:02d}Z" for s in range(61)] + ["2026-11-26T99:99:99.5Z"]
    for ts in stamps:
        assert timestamp_to_ms(ts) == _reference_ms(ts), ts
    assert "2026-11-26" in event_mod._DAYS  # the fast path served the later ones
    assert "2026-11-26T08:28" in event_mod._MINUTES


def test_timestamp_to_ms_values() -> None:
    assert timestamp_to_ms("1970-01-01T00:00:01.999999999Z") == 1999
    assert timestamp_to_ms("1970-01-01T00:00:01.999999999Z") == 1999  # cached day
    assert timestamp_to_ms("1970-01-01T00:00:01.05Z") == 1050
    assert timestamp_to_ms("1970-01-01T00:00:01.0509Z") == 1050
    assert timestamp_to_ms("1970-01-01T00:00:01Z") == 1000


def _context() -> MappingContext:
    post = compile_ingest(PrivacyConfig(), EnrichmentConfig(mitre=True))
    return MappingContext(labels={"team": "security"}, environment="production", tenant_id="acme",
                          host_name="dev-laptop", postprocess=post)


def test_map_lines_inlined_encode_equals_parse_line_then_encode() -> None:
    ctx = _context()
    datas = [audit_line(i).rstrip(b"\n") for i in range(300)]
    datas += [b"", b"  ", b" \t", b' {"x": 1}', b"not json"]
    lines = [Line(i, i + 1, d) for i, d in enumerate(datas)]
    events, quarantine = map_lines(lines, source="s", context=ctx, kind=None, max_line_bytes=1 << 20)
    assert events == [encode(parse_line(d, context=ctx)) for d in datas[:300]]
    assert [e.body for e in events[:3]] == [encode_event(parse_line(d, context=ctx)) for d in datas[:3]]
    assert [q.offset for q in quarantine] == [303, 304]  # blank lines are skipped, not quarantined


def test_map_lines_same_on_repeated_lines() -> None:
    """Caches warm up on repeats: the second pass must give the bytes of the first."""
    ctx = _context()
    datas = list(itertools.islice(itertools.cycle(audit_line(i).rstrip(b"\n") for i in range(5)), 20))
    lines = [Line(i, i + 1, d) for i, d in enumerate(datas)]
    first, _ = map_lines(lines, source="s", context=ctx, kind=None, max_line_bytes=1 << 20)
    second, _ = map_lines(lines, source="s", context=ctx, kind=None, max_line_bytes=1 << 20)
    assert first == second
    assert first[:5] == first[5:10]


def test_request_category_follows_the_resource_built_cold_and_warm() -> None:
    """A request record's category is that of the resource _resource builds (the cached classification
    holds no guess of it), unless an AI guard decided; on a cache miss and on a hit alike."""
    ctx = MappingContext()
    for action in ("egress", "file_access", "file_write", "patch", "shell", "mcp_tool", "policy", "other"):
        for target in ("api.example.com:443", "/etc/passwd", None, ""):
            resource, _ = mapping_mod._resource(action, target, {})
            record = {"id": "a1", "timestamp": "2026-11-26T08:28:51Z", "event_type": "check",
                      "action_type": action, "decision": "allowed", "severity": "Info", "target": target}
            mapping_mod._HUSHD_CLASSES.clear()
            for _ in ("cold", "warm"):
                ev = mapping_mod._map_hushd_audit(record, ctx)
                assert ev["resource"]["type"] == resource["type"]
                assert ev["event_category"] == mapping_mod._CATEGORY_FOR_RESOURCE[resource["type"]]
    ai_guard = next(iter(mapping_mod._AI_GUARDS))
    blocked = {"id": "a1", "timestamp": "2026-11-26T08:28:51Z", "event_type": "violation",
               "action_type": "shell", "decision": "blocked", "guard": ai_guard, "target": "ls"}
    assert mapping_mod._map_hushd_audit(blocked, ctx)["event_category"] == "ai"


@pytest.mark.parametrize(("fields", "reason"), [
    ({"decision": "maybe", "metadata": "x", "severity": "bad"}, "decision: expected"),
    ({"decision": "allowed", "metadata": "x", "severity": "bad"}, "metadata: expected an object"),
    ({"decision": "allowed", "severity": "bad"}, "severity: unrecognised"),
    ({"metadata": "x"}, "metadata: expected an object"),  # warm: the classification is a cache hit
    ({"decision": ["allowed"]}, "decision: expected"),
    ({"decision": "allowed", "severity": ["Info"]}, "severity: unrecognised"),
])
def test_cached_classification_keeps_the_first_bad_field(fields: dict[str, Any], reason: str) -> None:
    """The classification cache must not change which field a quarantine reason names, cold or warm."""
    ctx = MappingContext()
    record = {"id": "a1", "timestamp": "2026-11-26T08:28:51Z", "event_type": "check", "action_type": "shell",
              "decision": "allowed", "severity": "Info", **fields}
    good = {**record, "decision": "allowed", "severity": "Info", "metadata": {}}
    for warm in (False, True):
        if not warm:
            mapping_mod._HUSHD_CLASSES.clear()
        else:
            mapping_mod._map_hushd_audit(good, ctx)
        with pytest.raises(MappingError, match=reason):
            mapping_mod._map_hushd_audit(record, ctx)


def test_classification_cache_hit_equals_miss() -> None:
    ctx = _context()
    datas = [audit_line(i).rstrip(b"\n") for i in range(12)]
    mapping_mod._HUSHD_CLASSES.clear()
    cold = [encode_event(parse_line(d, context=ctx)) for d in datas]
    assert mapping_mod._HUSHD_CLASSES  # the second pass is served from the cache
    assert [encode_event(parse_line(d, context=ctx)) for d in datas] == cold
