"""Output ``stdout``: one event per line, in the output's format, on the agent's standard output."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from agent.config_loader import doc
from outputs.base import DeliveryItem, Outcome, Output, OutputConfig


@dataclass
class StdoutOutputConfig(OutputConfig):
    type: str = doc("Output type.", default="stdout")


class StdoutOutput(Output):
    reads_events = False  # writes the canonical bytes as they are
    send_reads_events = False
    type_name = "stdout"

    def __init__(self, name: str, config: StdoutOutputConfig):
        super().__init__(name, config)
        #: the rest of a line a failed write stopped in: written first by the next attempt, so the
        #: torn line is completed (its event is in the retried batch again) instead of continued
        self._rest = b""

    def send(self, batch: list[DeliveryItem], packed: None = None) -> Outcome:
        """``packed`` is never given: this output has no ``packer()``, its items keep their bytes."""
        data = b"".join((item.data or item.body) + b"\n" for item in batch)
        todo = self._rest + data
        written = [0]

        def write() -> None:  # in a thread: a reader of stdout that stalls must not stop the loop
            fd = sys.stdout.fileno()
            sys.stdout.flush()
            view = memoryview(todo)
            while written[0] < len(todo):
                written[0] += os.write(fd, view[written[0]:])

        try:
            from spool.store import run_in_pool  # here: the mapping helper imports this module
            run_in_pool(write)
        except (OSError, ValueError) as exc:
            done = written[0]
            if done and todo[done - 1:done] != b"\n":
                self._rest = todo[done:todo.index(b"\n", done) + 1]
            elif done >= len(self._rest):
                self._rest = b""
            else:
                self._rest = self._rest[done:]
            return Outcome.retry(f"stdout write failed: {exc}")
        self._rest = b""
        return Outcome.delivered()
