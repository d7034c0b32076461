"""The agent.toml schema of each input type ([inputs.<name>] type = "file" | "unix" | "http")."""

from __future__ import annotations

import grp
import os
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from agent.config_loader import doc, load_section, secret_field
from agent.config_types import Duration, ListenAddress, Secret, Size, parse_file_mode

C = TypeVar("C")

#: The longest AF_UNIX socket path on Linux (sun_path is 108 bytes, its NUL included).
UNIX_PATH_MAX = 107
#: The largest pid Linux hands out (``pid_max`` is at most 2**22).
PID_MAX = 4194304


def unix_bind_name(path: str, pid: int) -> str:
    """The temporary name the Unix socket input binds before renaming it to ``path`` (so a client
    never finds the path bound but not yet listening, nor with the wrong mode or group)."""
    return f"{path}.{pid}.tmp"


def unix_socket_gid(group: str | int) -> int:
    """The gid of a Unix socket's ``group`` (a name or a number); KeyError for an unknown name."""
    if isinstance(group, int) or str(group).isdigit():
        return int(group)
    return grp.getgrnam(str(group)).gr_gid

RecordFormat = Literal[
    "auto", "hushd_audit", "hushd_security_event", "hushd_certification_webhook", "adapter_audit",
    "openclaw_audit",
]


@dataclass
class FileInputConfig:
    """Tail JSON-lines audit logs (hushd's file_jsonl sink, OpenClaw's .hush/audit.jsonl)."""

    type: Literal["file"] = doc("Input type.", default="file")
    paths: list[str] = doc("Files or globs to tail; symlinks are followed.", default_factory=list)
    exclude: list[str] = doc(
        "Globs of files not to tail although `paths` matches them, e.g. `[\"*.gz\", \"*.[0-9]\"]` "
        "when `paths` is a directory glob: a copytruncate rotation's copy is a new file and would be "
        "read again (its events are dropped as duplicates, its bad lines quarantined twice), and a "
        "compressed one quarantined line by line. A pattern without `/` matches the file's name, one "
        "with `/` its whole path; `*` does not cross `/` in either.", default_factory=list)
    format: RecordFormat = doc("Record shape; 'auto' detects it per line.", default="auto")
    start_at: Literal["beginning", "end"] = doc(
        "Where to start in a file never seen before that is there when the agent starts; 'end' "
        "skips its existing lines. A file that appears later (a rotation, a new match of the glob) "
        "is always read from its beginning, so no line written to it is lost.", default="beginning")
    max_line_bytes: Size = doc("Longer lines are quarantined.", default=Size(1024 * 1024))
    read_chunk_bytes: Size = doc(
        "Bytes read per system call; also the unit of mapping and of a spool transaction. 256 KiB "
        "(~350 hushd lines) measured fastest from file to Elasticsearch and used 50 MiB less memory "
        "than 1 MiB chunks (bench/delivery.py); 64 KiB chunks cost 30% of the throughput.",
        default=Size(256 * 1024))
    rotate_wait: Duration = doc("How long a rotated file is drained before it is closed.",
                                default=Duration(5))
    scan_interval: Duration = doc("Periodic stat scan (the truth; the watch only wakes sooner).",
                                  default=Duration(1))
    watch: bool = doc("Read sooner on file change events (inotify, read by the loop; watchdog's observer "
                      "where there is no inotify).", default=True)

    def validate(self) -> None:
        if not self.paths:
            raise ValueError("paths: at least one file or glob is required")
        if any(not p for p in self.exclude):
            raise ValueError("exclude: a pattern cannot be empty")
        if self.max_line_bytes < 1 or self.read_chunk_bytes < 1:
            raise ValueError("max_line_bytes and read_chunk_bytes must be at least 1")
        if self.scan_interval <= 0:
            raise ValueError("scan_interval: must be more than 0")


@dataclass
class UnixInputConfig:
    """Newline-delimited JSON on a local Unix stream socket."""

    type: Literal["unix"] = doc("Input type.", default="unix")
    path: str = doc("Socket path (at most 95 bytes; one path per input, as for every listener's "
                    "address).", default="/run/clawd-agent/events.sock")
    mode: str = doc("Socket file mode, octal.", default="0660")
    group: str | None = doc("Group owning the socket (name or gid; a name must exist on the host when "
                            "the config is loaded).", default=None)
    format: RecordFormat = doc("Record shape; 'auto' detects it per line.", default="auto")
    max_line_bytes: Size = doc("Longer lines are quarantined.", default=Size(1024 * 1024))
    max_connections: int = doc("Concurrent client connections accepted.", default=256)
    read_chunk_bytes: Size = doc("Bytes read per system call.", default=Size(64 * 1024))

    @property
    def mode_bits(self) -> int:
        return int(self.mode, 8)

    def validate(self) -> None:
        if not self.path:
            raise ValueError("path: required")
        # The socket is first bound under its temporary name: that must fit an AF_UNIX address.
        extra = len(unix_bind_name("", PID_MAX))
        if len(os.fsencode(self.path)) + extra > UNIX_PATH_MAX:
            raise ValueError(f"path: at most {UNIX_PATH_MAX - extra} bytes (the socket is bound under a "
                             f"temporary name {extra} bytes longer, and a Unix socket address holds "
                             f"{UNIX_PATH_MAX})")
        parse_file_mode(self.mode, "0660")
        if self.group is not None:
            try:  # the socket is chowned to it at start: an unknown name is refused here, by its key
                unix_socket_gid(self.group)
            except KeyError:
                raise ValueError(f"group: no group {self.group!r} on this host") from None
        if self.max_line_bytes < 1 or self.max_connections < 1 or self.read_chunk_bytes < 1:
            raise ValueError("max_line_bytes, max_connections and read_chunk_bytes must be at least 1")


@dataclass
class HttpInputConfig:
    """Loopback HTTP for hushd's audit_forward webhook sink and certification webhooks."""

    type: Literal["http"] = doc("Input type.", default="http")
    listen: ListenAddress = doc("Address to bind; keep it on loopback.",
                                default=ListenAddress("127.0.0.1", 8471))
    bearer_token: Secret | None = secret_field("Require 'Authorization: Bearer <token>' when set.")
    certification_secret: Secret | None = secret_field(
        "HMAC secret of hushd certification webhooks; when set, x-clawdstrike-signature is required.")
    require_signature: bool = doc(
        "With certification_secret: require a valid signature on every POST, not only on bodies "
        "shaped like certification webhooks (hushd never signs audit_forward posts).", default=False)
    paths: list[str] = doc("Accepted POST paths; empty accepts any path.", default_factory=list)
    max_body_bytes: Size = doc("Larger bodies get 413.", default=Size(1024 * 1024))
    retry_after: Duration = doc("Retry-After sent with 503 when the spool is full.", default=Duration(5))
    format: RecordFormat = doc("Record shape; 'auto' detects it per body.", default="auto")

    def validate(self) -> None:
        if self.max_body_bytes < 1:
            raise ValueError("max_body_bytes: must be at least 1")
        if self.require_signature and self.certification_secret is None:
            raise ValueError("require_signature: needs certification_secret")


INPUT_TYPES: dict[str, type] = {
    "file": FileInputConfig,
    "unix": UnixInputConfig,
    "http": HttpInputConfig,
}


def input_config(cls: type[C], config: C | dict[str, Any], name: str) -> C:
    """The input's config: the loaded dataclass as is, or a plain table (tests, embedding) validated by
    the same loader as agent.toml, so there is one schema and one set of error messages."""
    if isinstance(config, cls):
        return config
    return load_section(cls, dict(config), f"[inputs.{name}]")
