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

    def send(self, batch: list[DeliveryItem], packed: None = None) -> Outcome:
        """``packed`` is never given: this output has no ``packer()``, its items keep their bytes."""
        data = b"".join((item.data or item.body) + b"\n" for item in batch)
        try:
            fd = sys.stdout.fileno()
            sys.stdout.flush()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except (OSError, ValueError) as exc:
            return Outcome.retry(f"stdout write failed: {exc}")
        return Outcome.delivered()
