"""Typed values that agent.toml accepts beyond plain TOML: sizes, durations, secrets.

They live apart from the loader so output and input config dataclasses can import them without
pulling in the whole configuration machinery.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


class Size(int):
    """A byte count; TOML may say 1048576, "1MiB" or "1 MB"."""

    @classmethod
    def parse(cls, value: object) -> Size:
        if isinstance(value, bool):
            raise ValueError(f"expected a size like 1048576 or '1MiB', got {value!r}")
        if isinstance(value, int):
            if value < 0:
                raise ValueError(f"expected a non-negative size, got {value}")
            return cls(value)
        if isinstance(value, str):
            m = _SIZE_RE.match(value)
            if m and m.group(2).lower() in _SIZE_UNITS:
                return cls(int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]))
        raise ValueError(f"expected a size like 1048576 or '1MiB', got {value!r}")


class Duration(float):
    """Seconds; TOML may say 5, 0.25, "250ms", "5s", "10m", "1h" or "7d"."""

    @classmethod
    def parse(cls, value: object) -> Duration:
        if isinstance(value, bool):
            raise ValueError(f"expected a duration like 5 or '250ms', got {value!r}")
        if isinstance(value, int | float):
            if value < 0:
                raise ValueError(f"expected a non-negative duration, got {value}")
            return cls(float(value))
        if isinstance(value, str):
            m = _DURATION_RE.match(value)
            if m:
                return cls(float(m.group(1)) * _DURATION_UNITS[m.group(2)])
        raise ValueError(f"expected a duration like 5, '250ms', '10m' or '1h', got {value!r}")


class Secret:
    """A credential that never shows itself in repr, logs, status or errors.

    Written in agent.toml as a literal, as ``${ENV_VAR}`` or as ``file:/path``. A ``file:`` secret is
    re-read when the file's mtime or size changes (and on ``refresh()``, e.g. after a 401), so
    rotating a credential needs no restart.
    """

    __slots__ = ("_lock", "_path", "_stamp", "_value", "source")

    def __init__(self, value: str | None = None, *, path: str | None = None, source: str = "literal"):
        self._value = value
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self.source = source

    @classmethod
    def parse(cls, raw: str, env: dict[str, str] | None = None) -> Secret:
        env = os.environ if env is None else env
        if raw.startswith("file:"):
            path = raw[len("file:") :]
            if not path:
                raise ValueError("expected 'file:/path/to/secret', got an empty path")
            secret = cls(path=path, source=f"file:{path}")
            secret.reveal()  # fail at load time, not at first send
            return secret
        m = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", raw)
        if m:
            name = m.group(1)
            if name not in env:
                raise ValueError(f"environment variable {name} is not set")
            return cls(env[name], source=f"env:{name}")
        return cls(raw)

    def reveal(self) -> str:
        """The secret's current value: only for building a request, never for logging."""
        if self._path is None:
            return self._value or ""
        with self._lock:
            try:
                st = os.stat(self._path)
            except OSError as exc:
                raise ValueError(f"cannot read secret file {self._path}: {exc.strerror}") from None
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                self._value = Path(self._path).read_text(encoding="utf-8").strip()
                self._stamp = stamp
            return self._value or ""

    def refresh(self) -> None:
        """Force a re-read of a file: secret (after an authentication failure)."""
        with self._lock:
            self._stamp = None

    def __repr__(self) -> str:
        return f"Secret({self.source if self.source != 'literal' else '***'})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self.reveal() == other.reveal()

    def __hash__(self) -> int:
        return hash(self.source)


@dataclass(frozen=True)
class ListenAddress:
    """host:port for a loopback listener (metrics, HTTP input)."""

    host: str
    port: int

    @classmethod
    def parse(cls, value: object) -> ListenAddress:
        if isinstance(value, str):
            host, sep, port = value.rpartition(":")
            if sep and port.isdigit() and 0 <= int(port) < 65536:
                return cls(host.strip("[]") or "127.0.0.1", int(port))
        raise ValueError(f"expected 'host:port' such as '127.0.0.1:9464', got {value!r}")

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"
