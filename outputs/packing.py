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

Where the output compresses in the caller (``Output.pack_stream``: gzip by ISA-L), the body is built
earlier still, while the batch fills (``PackStream``, fed by outputs.batcher.Batcher.add): a drain
catching up fills Elasticsearch's 5 MiB batches, and the open batch's events plus the chunk being
rendered were the largest thing the agent held (its peak RSS in bench/delivery.py's 3,000,000-event
run rose with each output stall the drain then caught up from). The open batch now holds ~3% of that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from outputs.base import DeliveryItem
from outputs.http import GzipStream, Payload


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


class PackStream:
    """A batch's ``Packed`` body built item by item as the batch fills: each item's data is compressed
    (in ``GzipStream``'s groups) and dropped from the item as it is added, so the result is what
    ``pack`` of the closed batch's items would give."""

    __slots__ = ("_gzip", "lengths")

    def __init__(self, gzip: GzipStream):
        self._gzip = gzip
        self.lengths: list[int] = []

    def add(self, item: DeliveryItem) -> None:
        data = item.data
        self._gzip.add(data)
        self.lengths.append(len(data))
        item.data = b""

    def finish(self) -> Packed:
        return Packed(Payload(self._gzip.finish(), True), self.lengths)
