"""The Elasticsearch action line's caches (a prefix per index, per day for a dated target) give the
bytes the uncached construction gives, for every route shape, odd timestamps and odd ids."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

from outputs.base import DeliveryItem
from outputs.elasticsearch import ElasticsearchOutput, ElasticsearchOutputConfig, doc_id

EVENT = {"event_id": "0194e1a2-7c3d-7b11-9f00-3c1d2e4f5a01", "timestamp": "2026-02-07T09:30:12.481Z"}


def output(**kw: Any) -> ElasticsearchOutput:
    cfg = ElasticsearchOutputConfig(hosts=["http://127.0.0.1:9200"], **kw)
    cfg.validate()
    return ElasticsearchOutput("es", cfg)


def uncached(out: ElasticsearchOutput, item: DeliveryItem) -> bytes:
    """``encode`` as it was written before the caches (the canonical body stands in for the document)."""
    doc_bytes = item.body
    if b'"@timestamp"' not in doc_bytes:
        doc_bytes = out._with_timestamp(item, doc_bytes)
    prefix = out._prefix
    if item.route or out._dated:
        prefix = out._action_prefix(out._route_index(item, item.route or {}))
    return prefix + orjson.dumps(doc_id(item)) + b"}}\n" + doc_bytes + b"\n"


ROUTES = [None, {}, {"index": "alerts"}, {"index": "a-%Y.%m.%d"}, {"dataset": "d"}, {"namespace": "n"},
          {"dataset": "d", "namespace": "n"}, {"other": "x"}]
TIMESTAMPS = ["2026-02-07T09:30:12.481Z", "2026-02-08T00:00:00Z", "2016-12-31T23:59:60.5Z", "2026-1", "",
              None, 12345]
IDS = ["0194e1a2-7c3d-7b11-9f00-3c1d2e4f5a01", 'quote"back\\slash', "ctl\x01\n", "ünï", "", None, 7]


@pytest.mark.parametrize("kw", [{}, {"index": "clawd-%Y.%m.%d"}, {"index": "idx", "ingest_pipeline": "p"},
                                {"index": "c-%Y-%m", "ingest_pipeline": 'p"2'}])
def test_cached_prefixes_give_the_uncached_bytes(kw):
    out = output(**kw)
    n = 0
    for _ in range(2):  # the second round is served from the caches
        for route in ROUTES:
            for ts in TIMESTAMPS:
                for eid in IDS:
                    event = {k: v for k, v in (("event_id", eid), ("timestamp", ts)) if v is not None}
                    body = orjson.dumps(event)
                    for ev in (event, {}):  # decoded, or left to the output to decode
                        for raw_id in (uuid.UUID(int=n).bytes, b"raw-id", b""):
                            n += 1
                            item = DeliveryItem(n, dict(ev), body, raw_id, b"", route)
                            assert out.encode(item) == uncached(out, item), (route, ts, eid, raw_id)


def test_prefix_caches_are_bounded_and_per_day():
    out = output(index="clawd-%Y.%m.%d")
    for day in range(1, 29):
        item = DeliveryItem(1, {**EVENT, "timestamp": f"2026-02-{day:02d}T00:00:00Z"}, b"{}", b"")
        assert out.encode(item).startswith(b'{"create":{"_index":"clawd-2026.02.%02d","_id":' % day)
    assert len(out._day_prefixes) == 28 and len(out._prefixes) == 28
    for i in range(3000):
        out.encode(DeliveryItem(1, dict(EVENT), b"{}", b"", b"", {"index": f"i{i}"}))
    assert len(out._prefixes) <= 1024
