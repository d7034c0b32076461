"""agent.toml: the whole configuration, loaded and validated in one place.

Unknown keys and wrong types are errors that name the file and the key; ``${ENV}`` is expanded in any
string and credentials may be ``file:/path`` references (see ``agent.config_types.Secret``).
"""

from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.config_loader import ConfigError, doc, load_section
from agent.config_types import Duration, ListenAddress, Size
from agent.inputs.config import INPUT_TYPES
from outputs.base import OutputConfig
from outputs.registry import OUTPUT_TYPES
from outputs.routing import check_routes
from transforms.config import EnrichmentConfig, PrivacyConfig

DEFAULT_CONFIG_PATH = "/etc/clawd-agent/agent.toml"


@dataclass
class AgentSection:
    """Identity and logging of this agent."""

    data_dir: str = doc("State directory; the spool lives here unless [spool] path says otherwise.",
                        default="/var/lib/clawd-agent")
    host_name: str = doc("Host name put on every event; empty means the system host name.", default="")
    environment: str | None = doc("Environment name (production, staging, ...).", default=None)
    tenant_id: str | None = doc("Tenant or organisation id put on every event.", default=None)
    labels: dict[str, str] = doc("Labels put on every event.", default_factory=dict)
    log_level: Literal["debug", "info", "warning", "error"] = doc("Log level.", default="info")
    log_format: Literal["json", "text"] = doc(
        "Structured JSON logs (an object per line) or plain text (a line per record, line breaks escaped; "
        "a traceback follows on indented lines). Credentials are masked in both.", default="json")
    heartbeat_interval: Duration = doc("How often the agent records its state for `status` (more than 0).",
                                       default=Duration(2))
    shutdown_timeout: Duration = doc("How long shutdown waits for in-flight deliveries.",
                                     default=Duration(10))
    offload: bool = doc("Run the CPU-heavy steps (mapping tailed lines, rendering events for outputs "
                        "that send only encoded bytes) in one helper process, on a second core. "
                        "Off: everything runs in the agent's own loop.", default=True)

    def validate(self) -> None:
        if self.heartbeat_interval <= 0:  # the heartbeat loop would write the spool back to back
            raise ValueError("heartbeat_interval: expected more than 0")

    def resolved_host_name(self) -> str:
        return self.host_name or socket.gethostname()


@dataclass
class SpoolSection:
    """The durable SQLite spool between inputs and outputs."""

    path: str = doc("Spool file; default <data_dir>/spool.db.", default="")
    durability: Literal["off", "normal", "full", "extra"] = doc(
        "SQLite synchronous level. 'full' survives a process crash and a power loss; 'normal' "
        "survives a process crash but may lose the last commits on power loss.", default="full")
    max_bytes: Size = doc("Largest spool size; 0 means unlimited.", default=Size(2 * 1024**3))
    on_full: Literal["block", "drop_oldest"] = doc(
        "'block' pauses inputs (they keep their offsets); 'drop_oldest' deletes the oldest events, "
        "counted and logged.", default="block")
    retention: Duration = doc(
        "Delivered events are kept this long for replay (cursor rewind), or until the spool reaches "
        "max_bytes: then the oldest delivered ones make room for new events.", default=Duration(24 * 3600))
    commit_max_events: int = doc("Group commit: most events per transaction.", default=10000)
    commit_max_delay: Duration = doc(
        "Group commit: longest wait to fill a transaction. 0 commits at once; groups still form from "
        "what arrives while the previous commit runs (its fsync), so a linger only adds latency: "
        "20 ms of it cost ~55 ms at the median from line to spool at 2,000 events/s.",
        default=Duration(0))
    prune_interval: Duration = doc("How often retention runs (more than 0).", default=Duration(60))

    def validate(self) -> None:
        if self.commit_max_events < 1:  # spool.writer.SpoolWriter refuses it when the agent starts
            raise ValueError("commit_max_events: expected at least 1")
        if self.prune_interval <= 0:  # the retention loop would run back to back
            raise ValueError("prune_interval: expected more than 0")


@dataclass
class MetricsSection:
    """Prometheus metrics and the health endpoint."""

    enabled: bool = doc("Serve /metrics and /health.", default=True)
    listen: ListenAddress = doc("Address to bind; keep it on loopback.",
                                default=ListenAddress("127.0.0.1", 9464))


@dataclass
class AgentConfig:
    source: str
    agent: AgentSection = field(default_factory=AgentSection)
    spool: SpoolSection = field(default_factory=SpoolSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, OutputConfig] = field(default_factory=dict)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    enrichment: EnrichmentConfig = field(default_factory=EnrichmentConfig)

    @property
    def spool_path(self) -> str:
        return self.spool.path or str(Path(self.agent.data_dir) / "spool.db")

    def mapping_context(self) -> Any:
        """The ``agent.mapping.MappingContext`` every input maps with: ``[agent]`` identity and labels,
        plus the ingest transform (``[enrichment]``, then ``[privacy]`` redaction) so the spool only ever
        holds enriched, redacted events."""
        from agent.mapping import MappingContext
        from transforms.pipeline import compile_ingest

        return MappingContext(labels=dict(self.agent.labels), environment=self.agent.environment,
                              tenant_id=self.agent.tenant_id, host_name=self.agent.resolved_host_name(),
                              postprocess=compile_ingest(self.privacy, self.enrichment))


def load_config(path: str | Path, env: dict[str, str] | None = None) -> AgentConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(text, str(path), env)


def parse_config(text: str, source: str = "agent.toml", env: dict[str, str] | None = None) -> AgentConfig:
    try:
        doc_ = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    known = {"agent", "spool", "metrics", "inputs", "outputs", "privacy", "enrichment"}
    for key in doc_:
        if key not in known:
            raise ConfigError(f"{source}: unknown top-level key {key!r} (known: {', '.join(sorted(known))})")
    cfg = AgentConfig(source=source)
    cfg.agent = load_section(AgentSection, doc_.get("agent", {}), f"{source}: [agent]", env)
    cfg.spool = load_section(SpoolSection, doc_.get("spool", {}), f"{source}: [spool]", env)
    cfg.metrics = load_section(MetricsSection, doc_.get("metrics", {}), f"{source}: [metrics]", env)
    cfg.privacy = load_section(PrivacyConfig, doc_.get("privacy", {}), f"{source}: [privacy]", env)
    cfg.enrichment = load_section(EnrichmentConfig, doc_.get("enrichment", {}), f"{source}: [enrichment]",
                                  env)
    _check_transforms(cfg, source)
    cfg.inputs = _named_tables(doc_.get("inputs", {}), "inputs", source, INPUT_TYPES, env)
    cfg.outputs = _named_tables(doc_.get("outputs", {}), "outputs", source,
                                {k: v[0] for k, v in OUTPUT_TYPES.items()}, env)
    if not cfg.inputs:
        raise ConfigError(f"{source}: no [inputs.<name>] table: the agent would have nothing to read")
    if not cfg.outputs:
        raise ConfigError(f"{source}: no [outputs.<name>] table: the agent would deliver nowhere")
    try:
        check_routes(cfg.outputs)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    _check_listeners(cfg, source)
    return cfg


_WILDCARD = {"0.0.0.0", "::", ""}


def _check_listeners(cfg: AgentConfig, source: str) -> None:
    """Two listeners of this agent on one address: the second bind fails when the agent starts (a
    Unix socket path a first input already accepts on, a TCP address already bound), so `run` died
    of a traceback that check-config had not announced. Port 0 picks a free port for each bind, and
    a disabled metrics server binds nothing."""
    unix: dict[str, str] = {}
    tcp: list[tuple[str, int, str]] = []
    if cfg.metrics.enabled and cfg.metrics.listen.port:
        tcp.append((cfg.metrics.listen.host, cfg.metrics.listen.port, "[metrics] listen"))
    for name, inp in cfg.inputs.items():
        where = f"[inputs.{name}] " + ("path" if inp.type == "unix" else "listen")
        if inp.type == "unix":
            other = unix.setdefault(os.path.normpath(os.path.abspath(inp.path)), where)
        elif inp.type == "http" and inp.listen.port:
            host, port = inp.listen.host, inp.listen.port
            # a wildcard address takes the port on every address: binding it and a specific one fails
            other = next((w for h, p, w in tcp if p == port and (h == host or _WILDCARD & {h, host})), where)
            tcp.append((host, port, where))
        else:
            continue
        if other != where:
            raise ConfigError(f"{source}: {where}: the same address as {other}; two listeners cannot "
                              "share one")


def _check_transforms(cfg: AgentConfig, source: str) -> None:
    """Compile [privacy] and [enrichment] once now, so check-config reports a bad MITRE table file or
    redaction pattern instead of the first ingested event."""
    from transforms.pipeline import compile_ingest

    try:
        compile_ingest(cfg.privacy, cfg.enrichment)
    except ConfigError as exc:  # the [enrichment] table file's own error, which names that file
        raise ConfigError(f"{source}: [enrichment] table: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{source}: [privacy]/[enrichment]: {exc}") from None


def _named_tables(tables: Any, kind: str, source: str, types: dict[str, type],
                  env: dict[str, str] | None) -> dict[str, Any]:
    if not isinstance(tables, dict):
        raise ConfigError(f"{source}: [{kind}] must be a table of named {kind}")
    result = {}
    for name, table in tables.items():
        where = f"{source}: [{kind}.{name}]"
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"{where}: names may use letters, digits, '_' and '-' only, with at "
                              "least one letter or digit")
        if not isinstance(table, dict) or "type" not in table:
            raise ConfigError(f"{where}: missing key 'type' (one of: {', '.join(sorted(types))})")
        kind_type = table["type"]
        if not isinstance(kind_type, str) or kind_type not in types:
            raise ConfigError(f"{where}: unknown type {kind_type!r} (one of: {', '.join(sorted(types))})")
        result[name] = load_section(types[kind_type], table, where, env)
    return result
