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

import sys
from collections.abc import Sequence

from outputs.batcher import Batch, Batcher
from outputs.render import Renderer
from spool.types import DlqEntry


def replay_batches(entries: Sequence[DlqEntry], *, renderer: Renderer, max_events: int,
                   max_bytes: int) -> tuple[list[Batch], dict[str, list[int]]]:
    """Render DLQ entries with the output's own render loop and cut them with its batching rule
    (``replay_ids`` maps each item to its entry). Returns the batches and, per reason, the ids of
    entries that cannot even be encoded."""
    ids_by_seq: dict[int, list[int]] = {}
    for e in entries:
        ids_by_seq.setdefault(e.seq, []).append(e.id)
    items, _, rejected = renderer.render_items([(e.seq, e.event_id, e.body) for e in entries],
                                               keep_unrouted=True)
    failed: dict[str, list[int]] = {}
    for item, reason in rejected:
        failed.setdefault(f"replay: {reason}", []).append(ids_by_seq[item.seq].pop(0))
    batcher = Batcher(max_events, max_bytes, 0)  # replayed batches own no cursor range
    closed: list[Batch] = []
    for item in items:
        closed.extend(batcher.add(item, len(item.data)) or ())
    if batcher.pending:
        closed.append(batcher.close(sys.maxsize))
    for batch in closed:
        batch.replay_ids = {id(item): ids_by_seq[item.seq].pop(0) for item in batch.items}
    return closed, failed
