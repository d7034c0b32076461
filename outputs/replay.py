"""DLQ replay: entries marked by `clawd-agent dlq replay` go back through their output's drain.

The CLI only sets ``dlq.replay_ms`` (``Spool.dlq_request_replay``), so it works with the agent stopped;
each drain polls for its marked entries about once a second and sends them through the same path as
new events: batching, rate limit, breaker, retries with backoff, bisecting. They are not part of the
cursor's ordered commit (they are behind it already). The outcome per entry:

- delivered: the entry is deleted (``dlq_done``);
- refused for good again: the entry stays, with the new reason and excerpt, one more attempt
  counted, and no longer marked (``dlq_requeue``), so it is not retried in a loop;
- the agent stops first: the entry stays marked and the next run sends it (at-least-once).

Route values are recomputed from the current rules; an event the rules would no longer send to this
output is still sent (the operator asked for it), without route values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from outputs.base import DeliveryItem
from outputs.batcher import Batch
from outputs.routing import NOT_HERE
from spool.types import DlqEntry


def replay_batches(entries: Sequence[DlqEntry], *, decode: bool,
                   select: Callable[[dict[str, Any]], Any] | None, encode: Callable[[DeliveryItem], bytes],
                   max_events: int, max_bytes: int) -> tuple[list[Batch], dict[str, list[int]]]:
    """Encode DLQ entries into batches (``replay_ids`` maps each item to its entry). Returns the
    batches and, per reason, the ids of entries that cannot even be encoded."""
    batches: list[Batch] = []
    failed: dict[str, list[int]] = {}
    current: list[DeliveryItem] = []
    ids: dict[int, int] = {}
    nbytes = 0
    for e in entries:
        route = None
        event: dict[str, Any] = {}
        try:
            if decode:
                event = orjson.loads(e.body)
                if select is not None:
                    route = select(event)
                    if route is NOT_HERE:
                        route = None
            item = DeliveryItem(e.seq, event, e.body, e.event_id, b"", route)
            item.data = encode(item)
        except Exception as exc:
            failed.setdefault(f"replay: cannot encode: {type(exc).__name__}", []).append(e.id)
            continue
        size = len(item.data)
        if current and (len(current) >= max_events or nbytes + size > max_bytes):
            batches.append(Batch(current, 0, -1, nbytes, replay_ids=ids))
            current, ids, nbytes = [], {}, 0
        current.append(item)
        ids[id(item)] = e.id
        nbytes += size
    if current:
        batches.append(Batch(current, 0, -1, nbytes, replay_ids=ids))
    return batches, failed
