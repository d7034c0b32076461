"""Unix socket input (``type = "unix"``): newline-delimited JSON from local producers.

Each connection is read in chunks; the complete lines of one read become one ``IngestBatch`` written
through the ``SpoolWriter`` (so a client's data is durable before the next read). Bad lines are
quarantined with ``source = "unix:<path>"`` and the byte offset within the connection. A full spool
stops reading that connection (the kernel buffer then pushes back on the client); nothing is dropped.

The socket is bound under a temporary name, given its mode and group, then renamed over ``path``:
clients never see it with the wrong permissions. A stale socket file (nobody accepting) is replaced;
a live one, or a path that is not a socket, is an error.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket as _stdsocket
import stat
from typing import Any

from gevent import socket
from gevent.event import Event
from gevent.pool import Group
from gevent.server import StreamServer

from agent.inputs.base import (
    InputStats,
    LineSplitter,
    Stopped,
    kind_of,
    map_lines,
    now_ms,
    write_with_retry,
)
from agent.inputs.config import UnixInputConfig, input_config, unix_bind_name, unix_socket_gid
from agent.mapping import MappingContext
from spool.types import IngestBatch

log = logging.getLogger(__name__)


def _remove_stale(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise RuntimeError(f"{path} exists and is not a socket; refusing to replace it")
    probe = _stdsocket.socket(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            log.info("replacing stale socket %s", path)
            return  # renaming the new socket over it replaces it atomically
        raise
    else:
        raise RuntimeError(f"{path} is in use by another process (it accepts connections)")
    finally:
        probe.close()


def _end_reads(conn: socket.socket) -> None:
    """Shut down ``conn`` for reading so that its reader gets what the client had sent, then end of
    file. Not gevent's ``socket.shutdown``: that also cancels a ``recv`` waiting in another greenlet
    (it raises "File descriptor was closed in another greenlet"), and the bytes already in the
    kernel's buffer, which the client's writes had delivered, were never read. The shutdown is done
    on a duplicate of the descriptor (the same open socket), so the hub wakes the reader as readable."""
    with contextlib.suppress(OSError):
        dup = _stdsocket.socket(fileno=os.dup(conn.fileno()))
        try:
            dup.shutdown(_stdsocket.SHUT_RD)
        finally:
            dup.close()


class UnixSocketInput:
    """``UnixSocketInput(name, config, writer, spool=None, context=None)``; ``config`` is a
    ``UnixInputConfig`` (or a plain table with its keys)."""

    def __init__(self, name: str, config: Any, writer: Any, spool: Any = None,
                 context: MappingContext | None = None) -> None:
        self.name = name
        self.config: UnixInputConfig = input_config(UnixInputConfig, config, name)
        self.writer = writer
        self.context = context or MappingContext()
        self.kind = kind_of(self.config.format)
        self.stats = InputStats()
        self.source = f"unix:{self.config.path}"
        self.connections = 0
        self.connections_total = 0
        self._stop = Event()
        self._group = Group()
        self._conns: set[socket.socket] = set()  # open client connections, ended by stop()
        self._server: StreamServer | None = None
        self._listener: socket.socket | None = None

    def start(self) -> None:
        path = self.config.path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        _remove_stale(path)
        tmp = unix_bind_name(path, os.getpid())
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(tmp)
            os.chmod(tmp, self.config.mode_bits)
            if self.config.group is not None:
                os.chown(tmp, -1, unix_socket_gid(self.config.group))
            sock.listen(128)
            os.rename(tmp, path)
        except BaseException:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._listener = sock
        self._server = StreamServer(sock, self._handle, spawn=self._spawn)
        self._server.start()
        log.info("%s: listening on %s (mode %o)", self.name, path, self.config.mode_bits)

    def _spawn(self, fn: Any, *args: Any) -> Any:
        # gevent's StreamServer calls spawn(_handle_and_close_when_done, handle, close, (conn, address))
        if len(self._group) >= self.config.max_connections:
            log.warning("%s: %d connections open; refusing one more", self.name, len(self._group))
            args[-1][0].close()
            return None
        return self._group.spawn(fn, *args)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.stop(timeout=0)  # closes the listener; handlers go on below
        # A client that keeps its connection open (hushd streams into one) would hold the stop for
        # the whole timeout: its reads end now, and each handler commits what it had received.
        for conn in list(self._conns):
            _end_reads(conn)
        self._group.join(timeout)
        self._group.kill(block=True)
        with contextlib.suppress(OSError):
            st = os.lstat(self.config.path)
            if stat.S_ISSOCK(st.st_mode):
                os.unlink(self.config.path)

    def _handle(self, conn: socket.socket, _addr: Any) -> None:
        self.connections += 1
        self.connections_total += 1
        self._conns.add(conn)
        if self._stop.is_set():  # accepted before stop() but only running now: stop() did not see it
            _end_reads(conn)
        splitter = LineSplitter(self.config.max_line_bytes, 0)
        try:
            while True:  # until end of file: the client's close, or stop() ending the reads
                try:
                    data = conn.recv(self.config.read_chunk_bytes)
                except OSError as exc:
                    log.info("%s: connection error: %s", self.name, exc)
                    self.stats.errors += 1
                    data = b""
                lines = splitter.feed(data) if data else splitter.flush()
                if lines:
                    self._write(lines)
                if not data:
                    return
        except Stopped:
            return
        finally:
            self.connections -= 1
            self._conns.discard(conn)
            conn.close()

    def _write(self, lines: list) -> None:
        events, quarantine = map_lines(lines, source=self.source, context=self.context, kind=self.kind,
                                       max_line_bytes=self.config.max_line_bytes)
        if not events and not quarantine:
            return
        batch = IngestBatch(self.name, events, [], quarantine)
        result = write_with_retry(self.writer, batch, self.stats, self._stop, what=self.name)
        self.stats.account(result, len(events), len(quarantine), lines[-1].end - lines[0].start)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": "unix",
            "path": self.config.path,
            "connections": self.connections,
            "connections_total": self.connections_total,
            "stats": self.stats.as_dict(),
            "last_event_ms": self.stats.last_event_ms,
            "time_ms": now_ms(),
        }
