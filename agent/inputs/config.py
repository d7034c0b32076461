"""The agent.toml schema of each input type ([inputs.<name>] type = "file" | "unix" | "http")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agent.config_loader import doc, secret_field
from agent.config_types import Duration, ListenAddress, Secret, Size

RecordFormat = Literal[
    "auto", "hushd_audit", "hushd_security_event", "hushd_certification_webhook", "adapter_audit",
    "openclaw_audit",
]


@dataclass
class FileInputConfig:
    """Tail JSON-lines audit logs (hushd's file_jsonl sink, OpenClaw's .hush/audit.jsonl)."""

    type: Literal["file"] = doc("Input type.", default="file")
    paths: list[str] = doc("Files or globs to tail; symlinks are followed.", default_factory=list)
    format: RecordFormat = doc("Record shape; 'auto' detects it per line.", default="auto")
    start_at: Literal["beginning", "end"] = doc(
        "Where to start in a file never seen before.", default="beginning")
    max_line_bytes: Size = doc("Longer lines are quarantined.", default=Size(1024 * 1024))
    read_chunk_bytes: Size = doc("Bytes read per system call.", default=Size(1024 * 1024))
    rotate_wait: Duration = doc("How long a rotated file is drained before it is closed.",
                                default=Duration(5))
    scan_interval: Duration = doc("Periodic stat scan (the truth; watchdog only wakes sooner).",
                                  default=Duration(1))
    watch: bool = doc("Use watchdog (inotify) change events to read sooner.", default=True)

    def validate(self) -> None:
        if not self.paths:
            raise ValueError("paths: at least one file or glob is required")


@dataclass
class UnixInputConfig:
    """Newline-delimited JSON on a local Unix stream socket."""

    type: Literal["unix"] = doc("Input type.", default="unix")
    path: str = doc("Socket path.", default="/run/clawd-agent/events.sock")
    mode: str = doc("Socket file mode, octal.", default="0660")
    group: str | None = doc("Group owning the socket (name or gid).", default=None)
    format: RecordFormat = doc("Record shape; 'auto' detects it per line.", default="auto")
    max_line_bytes: Size = doc("Longer lines are quarantined.", default=Size(1024 * 1024))

    def validate(self) -> None:
        try:
            int(self.mode, 8)
        except ValueError:
            raise ValueError(f"mode: expected an octal string such as '0660', got {self.mode!r}") from None


@dataclass
class HttpInputConfig:
    """Loopback HTTP for hushd's audit_forward webhook sink and certification webhooks."""

    type: Literal["http"] = doc("Input type.", default="http")
    listen: ListenAddress = doc("Address to bind; keep it on loopback.",
                                default=ListenAddress("127.0.0.1", 8471))
    bearer_token: Secret | None = secret_field("Require 'Authorization: Bearer <token>' when set.")
    certification_secret: Secret | None = secret_field(
        "HMAC secret of hushd certification webhooks; when set, x-clawdstrike-signature is required.")
    max_body_bytes: Size = doc("Larger bodies get 413.", default=Size(1024 * 1024))
    format: RecordFormat = doc("Record shape; 'auto' detects it per body.", default="auto")


INPUT_TYPES: dict[str, type] = {
    "file": FileInputConfig,
    "unix": UnixInputConfig,
    "http": HttpInputConfig,
}
