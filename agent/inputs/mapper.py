"""Where tailed lines are mapped: in the agent's own loop, or in a helper process on another core.

Why a process: mapping a line to its canonical event (JSON parse, normalisation, ingest transform,
encoding) costs ~15 µs of pure Python per event, and the agent's single gevent loop also runs the
drains' transforms and HTTP. Python threads share one interpreter lock, so the only way to use the
machine's second core is a second interpreter. The helper runs exactly the agent's mapping code with
the agent's own config (``AgentConfig.mapping_context()``), so the bytes in the spool are identical
either way; a test checks that.

Protocol on the helper's stdin/stdout: frames of a 4-byte big-endian length and a pickle (protocol 5)
of plain tuples; requests are answered in order. Request ``(req_id, source, kind, max_line_bytes,
[(start, end, data, overlong, length), ...])``; answer ``(req_id, [(event_id, ts_ms, body), ...],
[(source, offset, reason, excerpt), ...])``. Both ends are this module; pickle never crosses a trust
boundary (a child process of the agent, on its own pipes).

If the helper dies, every request it had not answered is mapped inline instead (nothing is lost and
nothing is mapped twice into the spool, because a tail only commits answered chunks), and a new
helper is started for later chunks, with a back-off after repeated failures.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import struct
import sys
import time
from collections import deque
from typing import Any

import gevent
import gevent.event
import gevent.lock

from agent.inputs.base import Line, map_lines
from agent.mapping import MappingContext
from spool.types import EncodedEvent, QuarantineRecord

log = logging.getLogger("clawd_agent.mapper")

_LEN = struct.Struct(">I")
RESTART_BACKOFF_S = (0.5, 2.0, 10.0, 30.0)

Mapped = tuple[list[EncodedEvent], list[QuarantineRecord]]


class _Done:
    """An already-computed mapping (the inline mapper's result)."""

    __slots__ = ("value",)

    def __init__(self, value: Mapped):
        self.value = value

    def get(self) -> Mapped:
        return self.value


class InlineMapper:
    """Maps in the calling greenlet: the default, and the fallback when no helper can run."""

    #: Chunks a tail may have mapping ahead of the one committing (0: map, then commit, in turn).
    depth = 0

    def __init__(self, context: MappingContext):
        self.context = context

    def submit(self, lines: list[Line], *, source: str, kind: str | None, max_line_bytes: int) -> Any:
        return _Done(map_lines(lines, source=source, context=self.context, kind=kind,
                               max_line_bytes=max_line_bytes))

    def close(self) -> None:
        pass


class _Pending:
    __slots__ = ("args", "lines", "result")

    def __init__(self, lines: list[Line], args: tuple[str, str | None, int]):
        self.lines = lines
        self.args = args
        self.result: gevent.event.AsyncResult = gevent.event.AsyncResult()


class ProcessMapper:
    """Maps in one helper process (``python -m agent.inputs.mapper --config PATH``)."""

    depth = 2

    def __init__(self, config_path: str, context: MappingContext):
        self.config_path = config_path
        self.inline = InlineMapper(context)
        self._proc: Any = None
        self._pending: deque[_Pending] = deque()
        self._write_lock = gevent.lock.Semaphore()
        self._next_id = 0
        self._failures = 0
        self._retry_at = 0.0
        self._closed = False
        self.restarts = 0

    # -- helper lifecycle -------------------------------------------------------------------------
    def _ensure_started(self) -> bool:
        if self._proc is not None:
            return True
        if self._closed or time.monotonic() < self._retry_at:
            return False
        import gevent.subprocess

        try:
            self._proc = gevent.subprocess.Popen(
                [sys.executable, "-m", "agent.inputs.mapper", "--config", self.config_path],
                stdin=gevent.subprocess.PIPE, stdout=gevent.subprocess.PIPE, close_fds=True)
        except OSError as exc:
            self._note_failure(f"cannot start: {exc.strerror}")
            return False
        gevent.spawn(self._read_answers, self._proc)
        return True

    def _note_failure(self, why: str) -> None:
        delay = RESTART_BACKOFF_S[min(self._failures, len(RESTART_BACKOFF_S) - 1)]
        self._failures += 1
        self._retry_at = time.monotonic() + delay
        log.error("mapping helper failed (%s); mapping in the agent meanwhile, next try in %.1fs", why, delay)

    def _lost(self, proc: Any, why: str) -> None:
        """The helper is gone: everything it had not answered is mapped inline, in order."""
        if self._proc is proc:
            self._proc = None
            self.restarts += 1
            if not self._closed:
                self._note_failure(why)
        with contextlib.suppress(Exception):
            proc.kill()
        while self._pending:
            p = self._pending.popleft()
            source, kind, max_line_bytes = p.args
            p.result.set(self.inline.submit(p.lines, source=source, kind=kind,
                                            max_line_bytes=max_line_bytes).get())

    def _read_answers(self, proc: Any) -> None:
        out = proc.stdout
        try:
            while True:
                head = out.read(4)
                if len(head) < 4:
                    raise EOFError("helper exited")
                (n,) = _LEN.unpack(head)
                payload = out.read(n)
                if len(payload) < n:
                    raise EOFError("helper exited mid-answer")
                _req_id, events, quarantine = pickle.loads(payload)
                p = self._pending.popleft()
                # (event_id, ts_ms, body) tuples as they are: the spool indexes them like an
                # EncodedEvent, and building 100k named tuples would cost this loop ~2 µs each.
                p.result.set((events, [QuarantineRecord(*q) for q in quarantine]))
                self._failures = 0
        except Exception as exc:  # EOF, a broken pipe, a bad frame: all mean "helper lost"
            self._lost(proc, type(exc).__name__ if not isinstance(exc, EOFError) else str(exc))

    # -- mapping ----------------------------------------------------------------------------------
    def submit(self, lines: list[Line], *, source: str, kind: str | None, max_line_bytes: int) -> Any:
        if not self._ensure_started():
            return self.inline.submit(lines, source=source, kind=kind, max_line_bytes=max_line_bytes)
        proc = self._proc
        p = _Pending(lines, (source, kind, max_line_bytes))
        self._next_id += 1
        payload = pickle.dumps((self._next_id, source, kind, max_line_bytes,
                                [(ln.start, ln.end, ln.data, ln.overlong, ln.length) for ln in lines]),
                               protocol=5)
        self._pending.append(p)
        try:
            with self._write_lock:
                proc.stdin.write(_LEN.pack(len(payload)) + payload)
                proc.stdin.flush()
        except OSError:
            self._lost(proc, "broken pipe")
        return p.result

    def close(self) -> None:
        self._closed = True
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
            proc.wait(timeout=5)
        except Exception:
            proc.kill()
        while self._pending:  # answered inline if the helper left without answering
            p = self._pending.popleft()
            source, kind, max_line_bytes = p.args
            p.result.set(self.inline.submit(p.lines, source=source, kind=kind,
                                            max_line_bytes=max_line_bytes).get())


def build_mapper(workers: int, config_source: str, context: MappingContext) -> InlineMapper | ProcessMapper:
    """A process mapper when asked for and the config is a real file the helper can load."""
    from pathlib import Path

    if workers > 0 and Path(config_source).is_file():
        return ProcessMapper(str(Path(config_source).resolve()), context)
    return InlineMapper(context)


# -- the helper process ---------------------------------------------------------------------------
def _serve(config_path: str) -> int:
    from agent.config import load_config

    context = load_config(config_path).mapping_context()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = stdin.read(4)
        if len(head) < 4:
            return 0
        (n,) = _LEN.unpack(head)
        req_id, source, kind, max_line_bytes, raw = pickle.loads(stdin.read(n))
        lines = [Line(s, e, d, o, ln) for s, e, d, o, ln in raw]
        events, quarantine = map_lines(lines, source=source, context=context, kind=kind,
                                       max_line_bytes=max_line_bytes)
        payload = pickle.dumps((req_id, [tuple(e) for e in events], [tuple(q) for q in quarantine]),
                               protocol=5)
        stdout.write(_LEN.pack(len(payload)) + payload)
        stdout.flush()


if __name__ == "__main__":
    import argparse
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the agent decides when this helper stops
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    sys.exit(_serve(ap.parse_args().config))
