"""The output contract: what one output module provides, and what the drain framework does for it.

An output module holds its config dataclass (extending ``OutputConfig``), an ``Output`` subclass whose
``send`` turns one batch into one delivery attempt and reports an ``Outcome``, and one registration in
``outputs.registry``. Reading the spool, filtering, retry with backoff, cursor commits, metrics and
health live once in ``outputs.drain``; an output never sleeps, loops or touches SQLite.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from agent.config_loader import doc
from agent.config_types import Duration, Secret, Size
from transforms.config import CefConfig, FieldsConfig, RedactConfig, TransformConfig


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

    def validate(self) -> None:
        """The mapper produces only the canonical event types (agent.event.EventType), so any other
        name is a typo that would match nothing: an `event_types` list would drop every event."""
        from agent.event import EventType

        known = [t.value for t in EventType]
        for key in ("event_types", "exclude_event_types"):
            for name in getattr(self, key):
                if name not in known:
                    raise ValueError(f"{key}: unknown event type {name!r} (known: {', '.join(known)})")


@dataclass
class RouteConfig:
    """One routing rule (`[[outputs.<name>.routes]]`), tried in order after the output's filter; the
    first rule whose `when` matches wins. `set` values reach the output as the event's route (e.g.
    `index`, `sourcetype`); with `to`, the event goes to that other output instead of this one."""

    when: FilterConfig = doc("Conditions (the filter keys); empty matches every event.",
                             default_factory=FilterConfig)
    set: dict[str, str] = doc("Route values for the receiving output (e.g. index, sourcetype).",
                              default_factory=dict)
    to: str = doc("Name of another, enabled output: matching events go there instead of here, "
                  "bypassing its filter and its own routing rules; empty keeps them here. Rules may "
                  "not form a loop.", default="")


@dataclass
class OutputConfig:
    """Settings every output has; each output type extends this with its own keys."""

    type: str = doc("Output type (file, stdout, ...).", default="")
    enabled: bool = doc("A disabled output keeps its cursor but receives nothing and holds back "
                        "no retention.", default=True)
    start_at: Literal["beginning", "end"] = doc(
        "Where a new output's cursor starts in the spool; 'end' is no later than the cursors of "
        "outputs whose routes redirect to this one (their backlog's redirected events are its own).",
        default="beginning")
    batch_max_events: int = doc("Events per delivery attempt.", default=500)
    batch_max_wait: Duration = doc(
        "How long a partial batch may wait for more events. Short by default for alerting latency; "
        "under load batches fill by count or bytes first, and while every request slot is busy "
        "they keep growing anyway.", default=Duration(0.01))
    retry_initial: Duration = doc("First retry delay (full jitter, doubled each time).",
                                  default=Duration(0.5))
    retry_max: Duration = doc("Longest retry delay.", default=Duration(60))
    batch_max_bytes: Size = doc("Largest request: the sum of the encoded events; 0 uses the output's "
                                "vendor default. A single larger event is sent alone.", default=Size(0))
    concurrency: int = doc("Batches in flight at once (the cursor still advances in order); 0 uses "
                           "the output's default (1 for file and stdout, 4 for HTTP outputs, 16 for "
                           "splunk_hec with acks).",
                           default=0)
    retry_after_max: Duration = doc("Longest wait honoured from a destination's Retry-After.",
                                    default=Duration(300))
    rate_limit_requests: float = doc("Requests per second at most; 0 means unlimited. Halved on "
                                     "each throttled answer (429), then recovered step by step; "
                                     "with both rates 0, halved from the rate observed, and "
                                     "unlimited again 10 s after the last 429.", default=0.0)
    rate_limit_events: float = doc("Events per second at most; 0 means unlimited. When set, it "
                                   "adapts like rate_limit_requests; 0 never adapts.", default=0.0)
    breaker_failures: int = doc("Consecutive failed attempts that open the circuit breaker (an "
                                "authentication failure opens it at once); 0 disables it.", default=5)
    breaker_cooldown: Duration = doc("How long an open breaker sends nothing before one probe batch.",
                                     default=Duration(30))
    breaker_cooldown_max: Duration = doc("Cap of the cooldown, doubled after each failed probe.",
                                         default=Duration(300))
    healthcheck_interval: Duration = doc("How often the destination's health check runs; 0 disables "
                                         "it.", default=Duration(30))
    healthcheck_timeout: Duration = doc("A health check slower than this counts as failed.",
                                        default=Duration(10))
    format: Literal["canonical", "ecs", "ocsf", "cef"] = doc(
        "Event format: canonical (the spool's bytes), ecs (ECS 9.4), ocsf (OCSF 1.8), cef (CEF 0); "
        "see docs/transforms.md.", default="canonical")
    include_raw: bool = doc("Add the canonical event as a string (ECS event.original, OCSF raw_data); "
                            "not with cef.", default=False)
    ocsf_allowed_as_activity: bool = doc("ocsf: allowed actions as their activity class instead of "
                                         "the default.", default=False)
    cef: CefConfig = doc("cef: header identity (device_vendor, device_product, device_version).",
                         default_factory=CefConfig)
    fields: FieldsConfig = doc("Field renames, constants, allow/deny lists on the rendered document.",
                               default_factory=FieldsConfig)
    redact: RedactConfig = doc("Redaction for this output only, on top of [privacy].",
                               default_factory=RedactConfig)
    filter: FilterConfig = doc("Which events this output receives.", default_factory=FilterConfig)
    routes: list[RouteConfig] = doc("Routing rules (`[[outputs.<name>.routes]]`): `when`, `set`, "
                                    "`to`; see docs/outputs.md.", default_factory=list)

    def validate(self) -> None:
        if self.batch_max_events < 1:
            raise ValueError("batch_max_events: expected at least 1")
        if self.concurrency < 0:
            raise ValueError("concurrency: expected 0 (the output's default) or more")
        if self.rate_limit_requests < 0 or self.rate_limit_events < 0:
            raise ValueError("rate_limit_requests/rate_limit_events: expected 0 (unlimited) or more")
        if self.breaker_failures < 0:
            raise ValueError("breaker_failures: expected 0 (disabled) or more")
        # A zero delay retries a failing destination in a tight loop, as fast as it answers.
        if self.retry_initial <= 0:
            raise ValueError("retry_initial: expected more than 0")
        if self.retry_max < self.retry_initial:
            raise ValueError("retry_max: expected at least retry_initial")
        if self.breaker_failures and self.breaker_cooldown <= 0:
            raise ValueError("breaker_cooldown: expected more than 0 (breaker_failures = 0 "
                             "disables the breaker)")
        if self.breaker_failures and self.breaker_cooldown_max < self.breaker_cooldown:
            raise ValueError("breaker_cooldown_max: expected at least breaker_cooldown")
        if self.healthcheck_interval and self.healthcheck_timeout <= 0:
            raise ValueError("healthcheck_timeout: expected more than 0")
        self.transform_config().validate()

    def check_route(self, values: dict[str, str]) -> None:
        """Raise ``ValueError`` for route values (a routing rule's ``set``, this output's own or one
        redirecting here) this output cannot deliver with, so the rule fails at load rather than each
        of its events at the destination. Here: keys this output does not read (an output that reads
        none, as file and stdout, refuses any: a `set` it would ignore is a mistake to name)."""
        check_route_keys(values, (), self.type or "this output")

    def transform_config(self) -> TransformConfig:
        """The transform keys of this output, as the pipeline builder takes them."""
        return TransformConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(TransformConfig)})


def check_route_keys(values: dict[str, str], known: tuple[str, ...], output_type: str) -> None:
    """An unknown key in a rule's ``set`` would be ignored without a word (e.g. ``idx``)."""
    for key in values:
        if key not in known:
            reads = f"reads: {', '.join(known)}" if known else "reads no route values"
            raise ValueError(f"unknown key {key!r} ({output_type} {reads})")


@dataclass(slots=True)
class DeliveryItem:
    """One spooled event handed to an output.

    ``body`` is the canonical bytes from the spool; ``data`` is what the output sends for this event
    (``Output.encode``: the transformed document, a HEC envelope, an NDJSON action+source pair) and what
    byte-based batching measures; ``route`` holds the values a routing rule set (e.g. ``index``).
    """

    seq: int
    event: dict[str, Any]
    body: bytes
    event_id: bytes = b""
    data: bytes = b""
    route: dict[str, str] | None = None


class Status(enum.Enum):
    DELIVERED = "delivered"  # every item accepted
    RETRY = "retry"  # nothing accepted (or unknown): send the whole batch again later
    PERMANENT = "permanent"  # ``failed`` (or all) can never succeed: DLQ them, the rest were accepted
    PARTIAL = "partial"  # per-item result: ``failed`` to the DLQ, ``retry_items`` again, the rest accepted
    SPLIT = "split"  # too large, or one bad event poisons the request: bisect; a single item goes to the DLQ


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
    retry_items: list[DeliveryItem] = field(default_factory=list)
    #: 401/403: the framework re-reads ``file:`` credentials (``Output.refresh_credentials``) and opens
    #: the circuit breaker at once.
    auth_failure: bool = False
    #: 429 (or the vendor's equivalent): the framework halves this output's rate limit.
    throttled: bool = False
    #: A redacted excerpt of the destination's answer, kept with DLQ entries.
    excerpt: str = ""

    @classmethod
    def delivered(cls) -> Outcome:
        return cls(Status.DELIVERED)

    @classmethod
    def retry(cls, reason: str, retry_after: float | None = None, *, auth_failure: bool = False,
              throttled: bool = False, excerpt: str = "") -> Outcome:
        return cls(Status.RETRY, reason, retry_after, auth_failure=auth_failure, throttled=throttled,
                   excerpt=excerpt)

    @classmethod
    def permanent(cls, reason: str, failed: list[DeliveryItem] | None = None, *,
                  excerpt: str = "") -> Outcome:
        return cls(Status.PERMANENT, reason, failed=list(failed or []), excerpt=excerpt)

    @classmethod
    def partial(cls, reason: str, *, failed: list[DeliveryItem] | None = None,
                retry_items: list[DeliveryItem] | None = None, retry_after: float | None = None,
                throttled: bool = False, excerpt: str = "") -> Outcome:
        """Some items were accepted; ``failed`` go to the DLQ and ``retry_items`` are sent again."""
        return cls(Status.PARTIAL, reason, retry_after, failed=list(failed or []),
                   retry_items=list(retry_items or []), throttled=throttled, excerpt=excerpt)

    @classmethod
    def split(cls, reason: str, *, excerpt: str = "") -> Outcome:
        """The request was refused as a whole because of its size or one bad event (HTTP 413, HEC
        'invalid data format'): the framework bisects the batch; a single item goes to the DLQ."""
        return cls(Status.SPLIT, reason, excerpt=excerpt)


class Output:
    """Base class of every output type. Subclasses set ``type_name`` and implement ``send``."""

    type_name: ClassVar[str] = ""
    #: Default largest request body (sum of ``DeliveryItem.data``) when the config does not set one:
    #: the vendor's documented limit with headroom.
    default_batch_max_bytes: ClassVar[int] = 4 * 1024 * 1024
    #: False for outputs that only forward the canonical bytes (``DeliveryItem.body``): with no filter,
    #: the drain then skips decoding each event and ``DeliveryItem.event`` is an empty dict.
    reads_events: ClassVar[bool] = True
    #: Batches in flight at once when the config says ``concurrency = 0``: 1 for local outputs, more
    #: for network outputs whose latency would otherwise cap throughput (HTTP outputs use 4).
    default_concurrency: ClassVar[int] = 1
    #: False for outputs that read ``item.event`` only in ``encode``: the drain then drops each
    #: decoded event once encoded (``item.event`` is ``{}`` in ``send``), so the batches in flight
    #: hold bytes rather than dicts (several MiB per batch).
    send_reads_events: ClassVar[bool] = True

    #: Set by the drain before ``open()``: the output's transform pipeline
    #: (``transforms.pipeline.Pipeline``: ``render(event, body) -> bytes``, ``passthrough``,
    #: ``content_type``), built from the output's transform keys. None outside the drain.
    pipeline: Any = None
    #: Set by the drain before ``open()``: pass it to ``HttpClient(on_response=...)`` so requests by
    #: status class and request latency reach this output's metrics.
    on_response: Callable[[str, float], None] | None = None

    def __init__(self, name: str, config: OutputConfig):
        self.name = name
        self.config = config

    @property
    def send_slots(self) -> int:
        """Batches in flight at once: the config's ``concurrency``, or this output's default for 0
        (the drain's pool; an HTTP output's connection pool is sized from it)."""
        return self.config.concurrency or self.default_concurrency

    def open(self) -> None:
        """Acquire resources (files, sessions). Called once before the first send."""

    def encode(self, item: DeliveryItem) -> bytes:
        """The bytes this output sends for one event; batching by size measures them. The default is
        the event rendered by the output's transform pipeline (the canonical bytes when it has none);
        outputs override it to add their envelope around that document."""
        pipeline = self.pipeline
        if pipeline is None or pipeline.passthrough:
            return item.body
        return pipeline.render(item.event, item.body)

    def packer(self) -> Callable[[list[bytes]], Any] | None:
        """For an output whose request body is its items' ``data`` joined in order (compressed when
        its config says so): the function that makes that body from the list of their data
        (``HttpClient.payload``). The drain then builds the body as it dispatches a batch and keeps
        only it while the batch is in flight (outputs.packing), and ``send`` gets it as ``packed``
        with items whose ``data`` is empty. None (the default): ``send`` always gets items with their
        data."""
        return None

    def pack_stream(self) -> Any:
        """For an output with a ``packer`` whose body can be built as a batch fills: a new
        outputs.packing.PackStream for one batch (the drain's batcher feeds it each item as it
        comes), or None (the default): the drain packs each batch as it dispatches it."""
        return None

    def request_body(self, batch: list[DeliveryItem], packed: Any = None) -> Any:
        """For an output with a ``packer``: the body of one attempt, ``packed`` as the drain gave it,
        else made from the items' data (encoding an item that has none)."""
        if packed is not None:
            return packed
        make_payload = self.packer()
        assert make_payload is not None, "request_body() is for outputs with a packer()"
        return make_payload([item.data or self.encode(item) for item in batch])

    def send(self, batch: list[DeliveryItem], packed: Any = None) -> Outcome:
        """One delivery attempt of ``batch`` (each item's ``data`` already encoded, unless ``packed``
        is given: then the request body, made by ``packer()``, and ``batch`` the items it was made
        of, in order). Called from several greenlets at once when the output's concurrency is above
        1."""
        raise NotImplementedError

    def refresh_credentials(self) -> None:
        """Re-read ``file:`` secrets now (after a 401/403), so a rotated credential is picked up:
        every Secret of the config, including those in tables such as HTTP ``headers``."""
        for f in dataclasses.fields(self.config):
            value = getattr(self.config, f.name)
            values = value.values() if isinstance(value, dict) else (value,)
            for v in values:
                if isinstance(v, Secret):
                    v.refresh()

    def close(self) -> None:
        """Release resources; called once at shutdown after the last send returned."""

    def healthcheck(self) -> tuple[bool, str]:
        """Cheap liveness probe of the destination; never delivers or pages anything."""
        return True, "ok"

    def destination_counters(self) -> dict[str, tuple[str, str, dict[str, int]]]:
        """What only this kind of destination reports, for metrics and ``status``: ``{name: (help,
        label, {label value: count})}``, exported as ``clawd_agent_output_<name>{output, <label>}``
        (e.g. Elasticsearch's events stored in a data stream's failure store, by data stream).
        Counts since start; none by default."""
        return {}
