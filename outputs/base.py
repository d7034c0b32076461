"""The output contract: what one output module provides, and what the drain framework does for it.

An output module holds its config dataclass (extending ``OutputConfig``), an ``Output`` subclass whose
``send`` turns one batch into one delivery attempt and reports an ``Outcome``, and one registration in
``outputs.registry``. Reading the spool, filtering, retry with backoff, cursor commits, metrics and
health live once in ``outputs.drain``; an output never sleeps, loops or touches SQLite.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from agent.config_loader import doc
from agent.config_types import Duration


@dataclass
class FilterConfig:
    """Which events an output receives. Empty lists mean 'no restriction'."""

    min_severity: Literal["info", "low", "medium", "high", "critical"] = doc(
        "Drop events below this severity.", default="info")
    event_types: list[str] = doc("Only these event types.", default_factory=list)
    exclude_event_types: list[str] = doc("Never these event types.", default_factory=list)
    guards: list[str] = doc("Only events decided by these guards.", default_factory=list)
    actions: list[str] = doc("Only these actions (file_access, egress, shell, ...).", default_factory=list)
    agents: list[str] = doc("Only these agent ids.", default_factory=list)
    denied_only: bool = doc("Only blocked events.", default=False)


@dataclass
class OutputConfig:
    """Settings every output has; each output type extends this with its own keys."""

    type: str = doc("Output type (file, stdout, ...).", default="")
    enabled: bool = doc("A disabled output keeps its cursor but receives nothing and holds back "
                        "no retention.", default=True)
    start_at: Literal["beginning", "end"] = doc(
        "Where a new output's cursor starts in the spool.", default="beginning")
    batch_max_events: int = doc("Events per delivery attempt.", default=500)
    batch_max_wait: Duration = doc("How long a partial batch may wait for more events.",
                                   default=Duration(0.05))
    retry_initial: Duration = doc("First retry delay (full jitter, doubled each time).",
                                  default=Duration(0.5))
    retry_max: Duration = doc("Longest retry delay.", default=Duration(60))
    filter: FilterConfig = doc("Which events this output receives.", default_factory=FilterConfig)

    def validate(self) -> None:
        if self.batch_max_events < 1:
            raise ValueError("batch_max_events: expected at least 1")


@dataclass(frozen=True)
class DeliveryItem:
    """One spooled event handed to an output: its position, decoded event and canonical bytes."""

    seq: int
    event: dict[str, Any]
    body: bytes
    event_id: bytes = b""


class Status(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    PERMANENT = "permanent"


@dataclass
class Outcome:
    """What one delivery attempt achieved; the drain framework acts on it.

    ``RETRY`` keeps the batch (the spool holds it) and backs off, ``retry_after`` seconds at least when
    the destination said so. ``PERMANENT`` sends ``failed`` (or the whole batch) to the DLQ.
    ``reason`` must never contain a credential or a URL that may carry one.
    """

    status: Status
    reason: str = ""
    retry_after: float | None = None
    failed: list[DeliveryItem] = field(default_factory=list)

    @classmethod
    def delivered(cls) -> Outcome:
        return cls(Status.DELIVERED)

    @classmethod
    def retry(cls, reason: str, retry_after: float | None = None) -> Outcome:
        return cls(Status.RETRY, reason, retry_after)

    @classmethod
    def permanent(cls, reason: str, failed: list[DeliveryItem] | None = None) -> Outcome:
        return cls(Status.PERMANENT, reason, failed=list(failed or []))


class Output:
    """Base class of every output type. Subclasses set ``type_name`` and implement ``send``."""

    type_name: ClassVar[str] = ""
    #: False for outputs that only forward the canonical bytes (``DeliveryItem.body``): with no filter,
    #: the drain then skips decoding each event and ``DeliveryItem.event`` is an empty dict.
    reads_events: ClassVar[bool] = True

    def __init__(self, name: str, config: OutputConfig):
        self.name = name
        self.config = config

    def open(self) -> None:
        """Acquire resources (files, sessions). Called once before the first send."""

    def send(self, batch: list[DeliveryItem]) -> Outcome:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources; called once at shutdown after the last send returned."""

    def healthcheck(self) -> tuple[bool, str]:
        """Cheap liveness probe of the destination; never delivers or pages anything."""
        return True, "ok"
