"""Turning spool rows into what one output sends: decode, select (filter + routes), encode.

This is the per-event hot loop of delivery, kept in one place so the drain runs it in the agent and
the offload helper (agent.offload) runs the very same code in a second process for outputs whose
``send`` needs only the encoded bytes (``Output.send_reads_events = False``): rendering ECS and an
Elasticsearch action line is most of delivery's CPU, and the helper moves it to another core.
"""

from __future__ import annotations

from typing import Any

import orjson

from outputs.base import DeliveryItem, Output
from outputs.routing import NOT_HERE, Selector

#: (seq, event_id, body) in; accepted items (seq, event_id, body, data, route), the number filtered
#: out, and rejected rows (seq, event_id, body, reason) out.
Row = tuple[int, bytes, bytes]
Rendered = tuple[list[tuple[int, bytes, bytes, bytes, Any]], int, list[tuple[int, bytes, bytes, str]]]


def needs_events(output: Output, select: Selector | None) -> bool:
    """Decode events only for a filter, routes, an output that reads them, or a format that renders
    them; forwarding canonical bytes to everyone needs none."""
    if select is not None or output.reads_events:
        return True
    pipeline = output.pipeline
    return pipeline is not None and not getattr(pipeline, "passthrough", False)


def build_output_pipeline(config: Any) -> Any:
    """The transform pipeline an output's config asks for (format, fields, redact, ...)."""
    from transforms.pipeline import build_pipeline

    return build_pipeline(config.transform_config())


class Renderer:
    """``render_items(rows)`` for the drain, ``render(rows)`` (plain tuples) for the helper."""

    def __init__(self, output: Output, select: Selector | None):
        self.output = output
        self.select = select
        self.decode = needs_events(output, select)
        self.release = self.decode and not output.send_reads_events

    @classmethod
    def from_config(cls, name: str, config: Any) -> Renderer:
        """The renderer the agent's drain for output ``name`` uses, built from the agent's config."""
        from outputs.registry import build_output
        from outputs.routing import compile_selector

        out_cfg = config.outputs[name]
        output = build_output(name, out_cfg)
        output.pipeline = build_output_pipeline(out_cfg)
        return cls(output, compile_selector(name, config.outputs))

    def render_items(self, rows: list[Any], *, keep_unrouted: bool = False,
                     ) -> tuple[list[DeliveryItem], int, list[tuple[DeliveryItem, str]]]:
        """The hot loop: keep it to a few operations per event. ``keep_unrouted`` (DLQ replay: the
        operator asked for these events) sends events the rules would not, without route values."""
        decode, release, select = self.decode, self.release, self.select
        encode = self.output.encode
        loads = orjson.loads
        not_here = NOT_HERE
        filtered = 0
        items: list[DeliveryItem] = []
        rejected: list[tuple[DeliveryItem, str]] = []
        accept = items.append
        for row in rows:
            seq, event_id, body = row[0], row[1], row[-1]
            route = None
            if decode:
                try:
                    event = loads(body)
                except orjson.JSONDecodeError:
                    rejected.append((DeliveryItem(seq, {}, body, event_id), "spool row is not valid JSON"))
                    continue
                if select is not None:
                    try:
                        route = select(event)
                    except Exception as exc:  # JSON, but not an event the filter can read
                        rejected.append((DeliveryItem(seq, {}, body, event_id),
                                         f"spool row is not a valid event: {type(exc).__name__}: "
                                         f"{str(exc)[:200]}"))
                        continue
                    if route is not_here:
                        if not keep_unrouted:
                            filtered += 1
                            continue
                        route = None
            else:
                event = {}
            item = DeliveryItem(seq, event, body, event_id, b"", route)
            try:
                item.data = encode(item)
            except Exception as exc:  # a transform that cannot render this one event
                rejected.append((item, f"encode failed: {type(exc).__name__}: {str(exc)[:200]}"))
                continue
            if release:
                # Encoded: batches in flight keep the bytes sent, not the decoded dict nor the
                # canonical copy (~1 KB an event; the DLQ takes that from the spool: Spool.dlq_add).
                item.event = {}
                if item.data:
                    item.body = b""
            accept(item)
        return items, filtered, rejected

    def render(self, rows: list[Row]) -> Rendered:
        items, filtered, rejected = self.render_items(rows)
        return ([(i.seq, i.event_id, i.body, i.data, i.route) for i in items], filtered,
                [(i.seq, i.event_id, i.body, reason) for i, reason in rejected])


def items_of(rendered: Rendered) -> tuple[list[DeliveryItem], int, list[tuple[DeliveryItem, str]]]:
    """The drain's view of a helper's answer (events are not carried back: the output does not need
    them once encoded; nor are canonical bodies of encoded events, see ``render_items``)."""
    accepted, filtered, rejected = rendered
    return ([DeliveryItem(seq, {}, body, eid, data, route) for seq, eid, body, data, route in accepted],
            filtered, [(DeliveryItem(seq, {}, body, eid), reason) for seq, eid, body, reason in rejected])
