"""Where tailed lines are mapped: in the agent's own loop, or in the offload helper on another core.

Mapping a line to its canonical event (JSON parse, normalisation, ingest transform, encoding) is the
costliest step of ingest. With the offload helper (agent.offload) it runs in a second interpreter
with the agent's own config, so the bytes in the spool are identical either way (a test checks it);
a tail keeps ``depth`` chunks mapping ahead of the one committing, and commits strictly in file order.
A chunk the helper could not answer is mapped here instead: nothing is lost or mapped twice.
"""

from __future__ import annotations

import time
from typing import Any

from agent.inputs.base import Line, LineBlock, map_lines
from agent.mapping import MappingContext
from agent.offload import OffloadHelper
from spool.types import EncodedEvent, QuarantineRecord

Mapped = tuple[list[EncodedEvent], list[QuarantineRecord]]


class _Done:
    """An already-computed mapping (the inline mapper's result)."""

    __slots__ = ("value",)

    def __init__(self, value: Mapped):
        self.value = value

    def get(self, timeout: float | None = None) -> Mapped:
        return self.value

    def ready(self) -> bool:
        return True


class InlineMapper:
    """Maps in the calling greenlet: the default, and the fallback when no helper can run."""

    #: Chunks a tail may have mapping ahead of the one committing (0: map, then commit, in turn).
    depth = 0

    def __init__(self, context: MappingContext):
        self.context = context

    def submit(self, lines: list[Line] | LineBlock, *, source: str, kind: str | None,
               max_line_bytes: int) -> Any:
        if isinstance(lines, LineBlock):
            lines = lines.lines()
        return _Done(map_lines(lines, source=source, context=self.context, kind=kind,
                               max_line_bytes=max_line_bytes))

    def close(self) -> None:
        pass


class _Answer:
    """The helper's answer to one chunk, as the tail uses it (quarantine records rebuilt)."""

    __slots__ = ("pending",)

    def __init__(self, pending: Any):
        self.pending = pending

    def ready(self) -> bool:
        return self.pending.ready()

    def get(self, timeout: float | None = None) -> Mapped:
        events, quarantine = self.pending.get(timeout=timeout)
        # (event_id, ts_ms, body) tuples stay as they are: the spool indexes them like an
        # EncodedEvent, and building 100k named tuples would cost this loop ~2 µs each.
        return events, [QuarantineRecord(*q) for q in quarantine]


#: Chunks of fewer lines are mapped inline even with a helper. A round trip to the helper costs the
#: agent's loop ~0.2-0.4 ms (pickling, two pipe writes, two wake-ups) whatever the chunk's size, and
#: mapping a line here ~15 us: under ~64 lines inline is cheaper *and* sooner. A steady trickle
#: (thousands of lines a second arrive a few at a time) then never needs the helper at all, so it is
#: never started (agent.offload starts it on first use), which saves its memory too.
INLINE_MAX_LINES = 64
#: ... and the helper is started only when this many lines came within a second (a sustained rate, or a
#: backlog): a short burst of a few hundred lines maps here in milliseconds, while starting the helper
#: costs ~0.5 s of CPU on the other core, which a latency-bound host should not pay for a blip.
HELPER_START_LINES = 5000


class ProcessMapper:
    """Maps in the agent's offload helper process (agent.offload), inline when it is unavailable or
    the chunk is small."""

    depth = 2

    def __init__(self, helper: OffloadHelper, context: MappingContext,
                 inline_max_lines: int = INLINE_MAX_LINES, start_lines: int = HELPER_START_LINES):
        self.helper = helper
        self.inline = InlineMapper(context)
        self.inline_max_lines = inline_max_lines
        self.start_lines = start_lines
        self._second = 0.0
        self._lines_this_second = 0

    def _demand(self, n: int) -> int:
        """Lines submitted within the current one-second window, ``n`` included."""
        now = time.monotonic()
        if now - self._second >= 1.0:
            self._second, self._lines_this_second = now, 0
        self._lines_this_second += n
        return self._lines_this_second

    def submit(self, lines: list[Line] | LineBlock, *, source: str, kind: str | None,
               max_line_bytes: int) -> Any:
        n = len(lines)
        demand = self._demand(n)
        if n < self.inline_max_lines or (not self.helper.running and demand < self.start_lines):
            return self.inline.submit(lines, source=source, kind=kind, max_line_bytes=max_line_bytes)
        # A block travels as its bytes (the helper cuts it); lines as plain tuples.
        raw: Any = ((lines.start, lines.data) if isinstance(lines, LineBlock)
                    else [(ln.start, ln.end, ln.data, ln.overlong, ln.length) for ln in lines])

        def fallback() -> Mapped:
            return self.inline.submit(lines, source=source, kind=kind, max_line_bytes=max_line_bytes).get()

        return _Answer(self.helper.submit("map", (source, kind, max_line_bytes, raw), fallback))

    def close(self) -> None:
        """The helper belongs to the supervisor, which closes it."""


def build_mapper(helper: OffloadHelper | None, context: MappingContext) -> InlineMapper | ProcessMapper:
    return ProcessMapper(helper, context) if helper is not None else InlineMapper(context)
