"""Fixtures shared by the spool tests: temp spool files and event factories."""

from __future__ import annotations

import itertools
import os

import pytest

from spool import EncodedEvent, IngestBatch, InputOffset, Spool

_counter = itertools.count(1)


def event_id(n: int | None = None) -> bytes:
    """A UUIDv7-shaped 16-byte id; ``n`` makes it deterministic."""
    n = next(_counter) if n is None else n
    return (1_700_000_000_000).to_bytes(6, "big") + b"\x70\x00\x80" + n.to_bytes(7, "big")


def events(n: int, *, ts_ms: int = 1_000, start: int | None = None, size: int = 100) -> list[EncodedEvent]:
    first = next(_counter) * 1_000_000 if start is None else start
    return [EncodedEvent(event_id(first + i), ts_ms + i, b"e" * size) for i in range(n)]


def batch(
    evs: list[EncodedEvent], *, input: str = "in", offset: int | None = None, quarantine=()
) -> IngestBatch:
    offs = [] if offset is None else [InputOffset("k", "/var/log/x.jsonl", offset)]
    return IngestBatch(input, list(evs), offs, list(quarantine))


@pytest.fixture
def spool_path(tmp_path) -> str:
    return os.path.join(tmp_path, "spool.db")


@pytest.fixture(params=[False, True], ids=["inline", "offload"])
def spool(request, spool_path):
    s = Spool(spool_path, offload=request.param)
    yield s
    s.close()
