"""Typed values that agent.toml accepts beyond plain TOML: sizes, durations, secrets.

They live apart from the loader so output and input config dataclasses can import them without
pulling in the whole configuration machinery.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
import urllib.parse
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import ClassVar

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
#: SQLite's largest integer; the spool records its max_bytes with orjson, which refuses more than 64 bits.
MAX_SIZE = 2**63 - 1
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
# ${NAME}, or $${NAME} for a literal "${NAME}".
_ENV_RE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _userinfo_span(value: str) -> tuple[int, int]:
    """Where the user info of a URL template lies (``scheme://USERINFO@host...``), or (0, 0)."""
    scheme_end = value.find("://")
    if scheme_end < 0:
        return 0, 0
    start = scheme_end + 3
    end = len(value)
    for delim in "/?#":
        j = value.find(delim, start)
        if j >= 0:
            end = min(end, j)
    at = value.rfind("@", start, end)
    return (start, at) if at >= 0 else (0, 0)


def expand_env(value: str, env: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """``value`` with every ``${NAME}`` replaced by that environment variable and every ``$${NAME}``
    by a literal ``${NAME}``, and the variables used (name -> value). The one implementation for
    every string of agent.toml, secrets included. An unset variable is a ``ValueError`` that names
    the variable (never a value).

    A variable in the user info of a URL (``http://shipper:${PROXY_PASS}@proxy:3128``) holds the
    password as it is and is percent-encoded there (RFC 3986 §3.2.1): a generated password with
    ``@``, ``/``, ``?`` or ``#`` would otherwise end the user info early, and part of the secret
    would become the host that is resolved and connected to."""
    used: dict[str, str] = {}
    userinfo = _userinfo_span(value)

    def sub(m: re.Match[str]) -> str:
        name = m.group(2)
        if m.group(1):
            return "${" + name + "}"
        if name not in env:
            raise ValueError(f"environment variable {name} is not set")
        used[name] = env[name]
        if userinfo[0] <= m.start() and m.end() <= userinfo[1]:
            return urllib.parse.quote(env[name], safe="")
        return env[name]

    if "${" not in value:
        return value, used
    return _ENV_RE.sub(sub, value), used


class Size(int):
    """A byte count; TOML may say 1048576, "1MiB" or "1 MB"."""

    @classmethod
    def parse(cls, value: object) -> Size:
        if isinstance(value, bool):
            raise ValueError(f"expected a size like 1048576 or '1MiB', got {value!r}")
        n: int | None = None
        if isinstance(value, int):
            if value < 0:
                raise ValueError(f"expected a non-negative size, got {value}")
            n = value
        elif isinstance(value, str):
            m = _SIZE_RE.match(value)
            if m and m.group(2).lower() in _SIZE_UNITS:
                # Fraction, not float: exact, and no OverflowError for a number of 400 digits.
                n = int(Fraction(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
        if n is not None:
            if n > MAX_SIZE:
                raise ValueError(f"expected a size of at most {MAX_SIZE} bytes, got {value!r}")
            return cls(n)
        raise ValueError(f"expected a size like 1048576 or '1MiB', got {value!r}")


class Duration(float):
    """Seconds; TOML may say 5, 0.25, "250ms", "5s", "10m", "1h" or "7d"."""

    @classmethod
    def parse(cls, value: object) -> Duration:
        if isinstance(value, bool):
            raise ValueError(f"expected a duration like 5 or '250ms', got {value!r}")
        seconds: float | None = None
        if isinstance(value, int | float):
            if value < 0:
                raise ValueError(f"expected a non-negative duration, got {value}")
            try:
                seconds = float(value)
            except OverflowError:  # an integer of more than 308 digits
                seconds = math.inf
        elif isinstance(value, str):
            m = _DURATION_RE.match(value)
            if m:
                seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        if seconds is not None:
            # Every duration is a sleep, a deadline or a cutoff: gevent.sleep(nan) blocks the hub for
            # good, and int(inf * 1000) (Spool.prune's cutoff) raises OverflowError.
            if not math.isfinite(seconds):
                raise ValueError(f"expected a finite duration, got {value!r}")
            return cls(seconds)
        raise ValueError(f"expected a duration like 5, '250ms', '10m' or '1h', got {value!r}")


def parse_file_mode(value: str, example: str) -> int:
    """An octal permission string (``'0640'``) as its bits; a ValueError naming ``mode`` otherwise
    (checked at load: ``os.open``/``chmod`` would refuse it at every attempt)."""
    try:
        bits = int(value, 8)
    except ValueError:
        raise ValueError(f"mode: expected an octal string such as '{example}', got {value!r}") from None
    if not 0 <= bits <= 0o777:
        raise ValueError(f"mode: out of range: {value}")
    return bits


class Secret:
    """A credential that never shows itself in repr, logs, status or errors.

    Written in agent.toml as a literal, as ``file:/path``, or with ``${ENV_VAR}`` anywhere in it
    (``"Bearer ${API_TOKEN}"``, ``"http://u:${PASS}@proxy:3128"``), expanded at load like any other
    string (``expand_env``). A ``file:`` secret is re-read when the file's mtime or size changes (and
    on ``refresh()``, e.g. after a 401), so rotating a credential needs no restart; the environment of
    a running process does not change, so an expanded value is final.

    ``parts`` are the values of the variables expanded into it: secrets as well, so redaction can
    mask each of them where a service echoes only that piece.
    """

    __slots__ = ("__weakref__", "_lock", "_path", "_seen", "_stamp", "_value", "parts", "source")

    #: Every Secret alive in this process, for ``known_values`` (the log mask).
    _live: ClassVar[weakref.WeakSet[Secret]] = weakref.WeakSet()

    def __init__(self, value: str | None = None, *, path: str | None = None, source: str = "literal",
                 parts: tuple[str, ...] = ()):
        self._value = value
        self._path = path
        self._stamp: tuple[int, int, int, int] | None = None
        self._lock = threading.Lock()
        self.source = source
        self.parts = parts
        #: Values a ``file:`` secret held before its latest rotation (newest first, a few).
        self._seen: tuple[str, ...] = ()
        Secret._live.add(self)

    @classmethod
    def parse(cls, raw: str, env: Mapping[str, str] | None = None) -> Secret:
        env = os.environ if env is None else env
        if raw.startswith("file:"):
            path, _ = expand_env(raw[len("file:") :], env)
            if not path:
                raise ValueError("expected 'file:/path/to/secret', got an empty path")
            secret = cls(path=path, source=f"file:{path}")
            secret.reveal()  # fail at load time, not at first send
            return secret
        value, used = expand_env(raw, env)
        if not used:
            return cls(value)
        return cls(value, source="env:" + ",".join(used), parts=tuple(used.values()))

    def reveal(self) -> str:
        """The secret's current value: only for building a request, never for logging."""
        if self._path is None:
            return self._value or ""
        with self._lock:
            try:
                st = os.stat(self._path)
            except OSError as exc:
                raise ValueError(f"cannot read secret file {self._path}: {exc.strerror}") from None
            # The inode and ctime too: a same-size file moved in with its mtime kept (cp -p, rsync
            # -t, install -p, Kubernetes' symlink swap of a secret volume) changes only those.
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns)
            if stamp != self._stamp:
                value = self._read()
                if self._value and value != self._value:
                    self._seen = (self._value, *self._seen)[:3]
                self._value = value
                self._stamp = stamp
            return self._value or ""

    def frozen(self) -> Secret:
        """A literal copy of the value held now, under the same source label: for a key that must stay
        the same while the process runs (a hash salt: one pseudonym per value for the whole run, in
        every redactor built from it, whenever it is built). Itself when it is no ``file:`` secret."""
        if self._path is None:
            return self
        return Secret(self.reveal(), source=self.source, parts=self.parts)

    def _read(self) -> str:
        """The file's text; a failed read (a directory, no permission, gone since the stat mid-rotation)
        is the same ValueError as a failed stat, which callers turn into a config or credential error.

        An empty file is one too: no credential is empty, and a file rewritten in place (``echo
        new > token`` truncates first) is empty for a moment. Sent, it was a 401 and an open
        breaker; refused, the send is retried, and the next ``reveal`` reads the file again."""
        assert self._path is not None
        try:
            text = Path(self._path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read secret file {self._path}: {exc.strerror}") from None
        except UnicodeDecodeError:  # its message quotes a byte of the secret
            raise ValueError(f"secret file {self._path} is not UTF-8 text") from None
        if not text:
            raise ValueError(f"secret file {self._path} is empty")
        return text

    def held(self) -> tuple[str, ...]:
        """The current value ("" while the file cannot be read) and the values a ``file:`` secret
        held before its latest rotations, newest first: what a destination may echo back (the answer
        to a request sent just before a rotation carries the old value), for redaction only."""
        try:
            current = self.reveal()
        except ValueError:
            current = ""
        return (current, *self._seen)

    @classmethod
    def known_values(cls) -> list[str]:
        """Every value a live Secret holds or held (a rotated file's last few), its ``${ENV}``
        parts, the credential after a scheme word (``Bearer x``) and a URL's password: what the log
        mask hides (``agent.logs``). No file is read: only values already revealed."""
        for _ in range(3):  # another thread may create a Secret while this one iterates
            try:
                secrets = list(cls._live)
                break
            except RuntimeError:
                continue
        else:
            return []
        out: list[str] = []
        for secret in secrets:
            for value in (secret._value, *secret._seen, *secret.parts):
                if not value:
                    continue
                out.append(value)
                scheme, _, credential = value.partition(" ")
                if credential and scheme.isalpha():
                    out.append(credential.strip())
                if "://" in value:
                    with contextlib.suppress(ValueError):
                        password = urllib.parse.urlsplit(value).password
                        if password:
                            out += [password, urllib.parse.unquote(password)]
        return out

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
