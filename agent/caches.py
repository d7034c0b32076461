"""The one rule of the agent's small memo caches (timestamps, classifications, rendered blocks...)."""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def put_bounded(cache: dict[K, V], key: K, value: V, limit: int) -> V:
    """Store ``value`` under ``key`` and return it; a cache that holds ``limit`` entries is emptied
    first. Lookups stay a plain ``dict.get`` with no LRU bookkeeping on the hot path, and the keys that
    matter (a stream repeats a few dozen) are back a moment after a clear; memory stays bounded."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value
