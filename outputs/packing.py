"""A batch in flight keeps its request body, compressed, instead of its items' encoded bytes.

Why: an Elasticsearch ``_bulk`` or Splunk HEC request is its items' ``data`` joined in order, up to
5 MiB, and a batch keeps its items until it is finished (a per-item retry, a split and the DLQ work
on items). With 4 batches in flight, and HEC batches waiting for their indexer ack, a backlog drain
held ~20 MiB of encoded events that were already on the wire as ~3% of that in gzip. So for an output
with a ``packer`` the drain builds the body once, as it dispatches the batch, and drops the items'
bytes (``pack``); ``Batch.packed`` holds it:

- every attempt of the whole batch (a retry after a timeout, a 5xx, a 429, an ack timeout) sends
  that same body: no joining or compressing again;
- before an attempt of a part of it (a per-item retry, a bisection), ``unpack`` puts each item's
  bytes back, cut from the decompressed body: the same bytes, without rendering again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from outputs.base import DeliveryItem
from outputs.http import Payload


@dataclass(slots=True)
class Packed:
    payload: Payload
    lengths: list[int]


def pack(items: list[DeliveryItem], make_payload: Callable[[list[bytes]], Payload]) -> Packed:
    """The request body of ``items`` (``make_payload`` of their data, in order); their data is dropped."""
    datas = [item.data for item in items]
    payload = make_payload(datas)
    lengths = [len(d) for d in datas]
    for item in items:
        item.data = b""
    return Packed(payload, lengths)


def unpack(packed: Packed, items: list[DeliveryItem]) -> None:
    """Give ``items`` (the list ``pack`` took, in the same order) their data back."""
    raw = packed.payload.raw()
    pos = 0
    for item, n in zip(items, packed.lengths, strict=True):
        item.data = raw[pos:pos + n]
        pos += n
