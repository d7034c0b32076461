"""``Spool``: the durable SQLite store (events, cursors, offsets, quarantine, DLQ, status).

One write connection per ``Spool``, used by one thread at a time: every write runs under a gevent lock,
either inline or (``offload=True``) in gevent's threadpool so the hub keeps running while SQLite fsyncs.
Readers (``Spool.reader()``) have their own read-only connections and never block the writer (WAL).
See docs/spool.md for durability, retention, size limits and the rationale of each PRAGMA.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, TypeVar

import gevent
import gevent.lock
import orjson

from . import schema
from .recent import RecentRows
from .types import (
    EXCERPT_MAX,
    REASON_MAX,
    AppendResult,
    Cursor,
    CursorInfo,
    DlqEntry,
    IngestBatch,
    InputOffset,
    OutputState,
    QuarantineEntry,
    RewindError,
    SchemaError,
    SpoolError,
    SpoolFull,
    SpoolRow,
)

log = logging.getLogger("clawd.spool")

T = TypeVar("T")

DURABILITY = {"off": 0, "normal": 1, "full": 2, "extra": 3}
ON_FULL = ("block", "drop_oldest")
#: Default replay window kept after every enabled output delivered an event (see docs/spool.md).
DEFAULT_RETENTION_S = 3600
DEFAULT_BUSY_TIMEOUT_MS = 5000
PAGE_SIZE = 16384
AUTO_VACUUM = "INCREMENTAL"  # lets vacuum() return free pages; see docs/spool.md
WAL_AUTOCHECKPOINT_PAGES = 1000  # 16 MiB of WAL between automatic checkpoints
#: With the threadpool (the agent), the WAL is checkpointed beside the appends once it holds the
#: checkpoint size above (``Spool._start_checkpoint``); the appends' own connection checkpoints, inside
#: its COMMIT, only past this many times that size: when the background checkpoint fell behind.
FALLBACK_CHECKPOINT_FACTOR = 2
#: ... where the larger WAL this allows is at most 1/this of ``max_bytes`` (it counts towards
#: it): 1 GiB and up with the default checkpoint size (the default is 2 GiB). A smaller spool
#: checkpoints in its COMMIT.
BACKGROUND_CHECKPOINT_MIN_SPOOL = 32
#: How long a background checkpoint's second step waits for the append in progress.
RESTART_WAIT_MS = 20
#: WAL bytes an event body costs (its row's share of table and index pages): ~1.3 measured with 1 KB
#: events in the file -> Elasticsearch benchmark.
WAL_BYTES_PER_BODY_BYTE = 1.3
JOURNAL_SIZE_LIMIT = 32 * 1024 * 1024  # the WAL file is truncated back to this after a checkpoint
CACHE_KIB = 4 * 1024  # resident memory; the hot tail fits (docs/spool.md)
#: The drains' read connections' page cache. SQLite empties a connection's cache whenever another
#: connection committed (the WAL changed), and the appends commit many times a second, so a drain's
#: cache holds at most the pages of the reads since the last append: SQLite's default 2 MB filled up
#: only when a drain caught up from SQLite after an output stall, beside ingest's own buffers (the
#: 3,000,000-event benchmark's peak; 512 KiB: 95.9-98.2 MiB against 98.1-99.1). The B-tree's interior
#: pages, the ones every read needs again, fit many times over.
READER_CACHE_KIB = 512
PRUNE_CHUNK_ROWS = 5000
VACUUM_KEEP_BYTES = 16 * 1024 * 1024  # free pages kept for reuse after a prune; the rest is returned
VACUUM_CHUNK_PAGES = 2048
DROP_CHUNK_ROWS = 1000
EVICTION_LOG_INTERVAL_S = 60.0
SQLITE_FULL = 13
SQLITE_BUSY = 5

#: Rows per multi-row INSERT, largest first (3 parameters a row and 2 shared: 770 at most, where
#: SQLite allows 32,766 since 3.32 and 999 before).
#: A batch is cut greedily into these sizes, so at most nine distinct statements exist and all stay
#: in the sqlite3 module's statement cache (one per batch size would fill it with large statements).
INSERT_ROWS = (256, 128, 64, 32, 16, 8, 4, 2, 1)
#: ``?1`` is the ingest time and ``?2`` the input, shared by every row; then each event's id, time, body.
_INSERT_ROWS_SQL = {
    n: "INSERT OR IGNORE INTO events(event_id, ts_ms, ingested_ms, input, body) VALUES "
       + ",".join(f"(?{3 * i + 3}, ?{3 * i + 4}, ?1, ?2, ?{3 * i + 5})" for i in range(n))
    for n in INSERT_ROWS
}


def _insert_events(conn: sqlite3.Connection, events: Sequence[tuple[bytes, int, bytes]], ingested_ms: int,
                   input_name: str) -> int:
    """Insert ``events`` ((event_id, ts_ms, body) each) with one statement per up to 256 of them,
    not one per row (executemany): the sqlite3 module gives up the GIL around each statement step and
    must take it back after, and in the agent the loop thread holds it most of the time, so each
    per-row hand-off could wait for it. The parameters are the events' own fields laid end to end (no
    row tuple built per event). Returns the number inserted (duplicates ignored)."""
    flat = itertools.chain.from_iterable
    inserted = i = 0
    total = len(events)
    for n in INSERT_ROWS:
        while total - i >= n:
            params = [ingested_ms, input_name, *flat(events[i:i + n])]
            if len(params) != 2 + 3 * n:  # each event must be exactly (event_id, ts_ms, body)
                raise ValueError("events must be (event_id, ts_ms, body) triples")
            inserted += conn.execute(_INSERT_ROWS_SQL[n], params).rowcount
            i += n
    return inserted


_UPSERT_OFFSET = (
    'INSERT INTO input_offsets(input, file_key, path, "offset", marker, marker_len, updated_ms) '
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(input, file_key) DO UPDATE SET path = excluded.path, "
    '"offset" = excluded."offset", marker = excluded.marker, marker_len = excluded.marker_len, '
    "updated_ms = excluded.updated_ms"
)
_INSERT_QUARANTINE = (
    'INSERT INTO quarantine(input, source, "offset", reason, excerpt, created_ms) VALUES (?, ?, ?, ?, ?, ?)'
)
_DLQ_COLS = "id, output, seq, event_id, body, reason, response_excerpt, attempts, created_ms"
_Q_COLS = 'id, input, source, "offset", reason, excerpt, created_ms'


#: agent_state key: the highest DLQ id ever handed out (``Spool.dlq_add`` never reuses one).
DLQ_LAST_ID = "dlq_last_id"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def wal_limits(max_bytes: int | None, page_size: int) -> tuple[int, int]:
    """(wal_autocheckpoint pages, journal_size_limit bytes). The WAL file counts towards ``max_bytes``,
    so a small spool gets a proportionally small WAL (at most an eighth / a quarter of the limit)."""
    if max_bytes is None:
        return WAL_AUTOCHECKPOINT_PAGES, JOURNAL_SIZE_LIMIT
    pages = max(16, min(WAL_AUTOCHECKPOINT_PAGES, max_bytes // 8 // page_size))
    return pages, max(pages * page_size, min(JOURNAL_SIZE_LIMIT, max_bytes // 4))


def _sqlite_error(exc: BaseException, primary_code: int) -> bool:
    """``exc`` is SQLite's error with this primary result code (the low byte of an extended one)."""
    return (
        isinstance(exc, sqlite3.OperationalError)
        and (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == primary_code
    )


def _is_disk_full(exc: BaseException) -> bool:
    return _sqlite_error(exc, SQLITE_FULL)


def is_locked(exc: BaseException) -> bool:
    """``exc`` says another connection held the database past the busy timeout (SQLITE_BUSY, or
    SQLITE_LOCKED): nothing of the statement was written."""
    return _sqlite_error(exc, SQLITE_BUSY) or _sqlite_error(exc, sqlite3.SQLITE_LOCKED)


#: Primary result codes of a file SQLite could not open or read, as opposed to one it read and
#: found to be no database (SQLITE_NOTADB) or no spool: a side file it may not create
#: (SQLITE_READONLY_DIRECTORY, _CANTINIT), a file it may not open, an I/O error.
_OPEN_ERRORS = (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_IOERR)


def _is_open_error(exc: BaseException) -> bool:
    return any(_sqlite_error(exc, code) for code in _OPEN_ERRORS)


def _ro_uri(path: str) -> str:
    return "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"


def _cut(data: bytes | str | None, limit: int = EXCERPT_MAX) -> bytes:
    if data is None:
        return b""
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    return bytes(data[:limit])


def _reason(text: str | None) -> str:
    return (text or "")[:REASON_MAX]


def _capture(fn: Callable[..., T], args: tuple[Any, ...]) -> tuple[bool, Any]:
    try:
        return True, fn(*args)
    except Exception as exc:  # handed back to the calling greenlet (the hub would print it otherwise)
        return False, exc


def run_in_pool(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` in gevent's threadpool (the hub goes on meanwhile: an fsync, a blocked pipe); never
    return (even when killed) while the thread still runs, because the caller's lock protects a
    connection (a descriptor) that the thread is using."""
    res = gevent.get_hub().threadpool.spawn(_capture, fn, args)
    try:
        ok, value = res.get()
    except BaseException:
        while not res.ready():
            # A second kill must not release the connection while the thread still uses it.
            with contextlib.suppress(BaseException):
                res.wait()
        raise
    if not ok:
        raise value
    return value


class RoomMade(NamedTuple):
    """What an append deleted to fit ``max_bytes``: delivered events (``evicted``, before their
    retention), undelivered ones (``dropped``, ``on_full = "drop_oldest"`` only), and the highest seq
    deleted (every retained one below it is gone too)."""

    evicted: int
    dropped: int
    upto: int


class SpoolReader:
    """A read-only connection of its own, for one output's drain greenlet (or the CLI)."""

    def __init__(self, path: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
                 recent: RecentRows | None = None):
        if not os.path.exists(path):
            raise SpoolError(f"no spool at {path}")
        self.path = path
        #: The appending ``Spool``'s latest committed rows (spool.recent), read before SQLite.
        self.recent = recent
        self._conn = sqlite3.connect(
            _ro_uri(path),
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=busy_timeout_ms / 1000,
        )
        self._conn.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")

    def read_after(self, seq: int, limit: int) -> list[SpoolRow]:
        """Up to ``limit`` events with ``seq`` greater than the given one, in ``seq`` order: from the
        rows this process appended last when they start there (spool.recent), else from SQLite."""
        if self.recent is not None:
            rows = self.recent.after(seq, limit, self)
            if rows is not None:
                return rows
        cur = self._conn.execute(
            "SELECT seq, event_id, ts_ms, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        )
        return list(map(SpoolRow._make, cur))

    def last_seq(self) -> int:
        return _last_seq(self._conn)

    def first_seq(self) -> int | None:
        return _first_seq(self._conn)

    def get_cursor(self, output: str) -> Cursor | None:
        """``Spool.get_cursor`` on this connection: a WAL reader never waits for the writer, while
        ``Spool``'s own connection is behind the lock an append transaction holds."""
        return _get_cursor(self._conn, output)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SpoolReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _last_seq(conn: sqlite3.Connection) -> int:
    """Highest seq ever allocated (stays put when rows are pruned); 0 for an empty spool."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return int(row[0]) if row else 0


def _first_seq(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT min(seq) FROM events").fetchone()
    return row[0]


def _close_seq_gaps(conn: sqlite3.Connection, boundary: int, inserted: int) -> None:
    """Renumber the events of the append transaction in progress to ``boundary + 1`` .. ``boundary
    + inserted`` when ignored duplicates left gaps: AUTOINCREMENT uses up a seq for every row an
    INSERT OR IGNORE skips. Without gaps ``stats`` counts rows and lag by subtraction, not by scanning the
    backlog. Safe: the rows are uncommitted, so no cursor, DLQ entry or reader has seen their seqs.
    Each row moves down to a seq that is free by then (ascending order)."""
    if _last_seq(conn) == boundary + inserted:
        return
    seqs = [r[0] for r in conn.execute("SELECT seq FROM events WHERE seq > ? ORDER BY seq", (boundary,))]
    moves = [(new, old) for new, old in zip(itertools.count(boundary + 1), seqs) if new != old]
    conn.executemany("UPDATE events SET seq = ? WHERE seq = ?", moves)
    conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'events'", (boundary + inserted,))


def _gapped_below(conn: sqlite3.Connection, last: int) -> int:
    """``schema.GAPPED_BELOW``: retained events below it may have gaps. A spool not migrated yet (read
    by `status` before the agent restarted on this version) may have them anywhere."""
    row = conn.execute("SELECT value FROM agent_state WHERE key = ?", (schema.GAPPED_BELOW,)).fetchone()
    return int(row[0]) if row else last + 1


def _count_after(conn: sqlite3.Connection, seq: int, first: int | None, last: int, gapped_below: int) -> int:
    """Retained events with a seq above ``seq``, in O(log n): from ``gapped_below`` on every seq up to
    ``last`` is held (retention and drop_oldest delete only the oldest, appends leave no gap), so
    those are a subtraction; only older events of a spool written before that are counted."""
    if first is None:
        return 0
    lo = max(seq, first - 1)
    n = max(0, last - max(lo, gapped_below - 1))
    if lo < gapped_below - 1:
        n += conn.execute(
            "SELECT count(*) FROM events WHERE seq > ? AND seq < ?", (lo, gapped_below)
        ).fetchone()[0]
    return n


def _oldest_ingested_after(conn: sqlite3.Connection, seq: int) -> int | None:
    """``ingested_ms`` of the first retained event after ``seq`` (one index lookup)."""
    row = conn.execute(
        "SELECT ingested_ms FROM events WHERE seq > ? ORDER BY seq LIMIT 1", (seq,)
    ).fetchone()
    return row[0] if row else None


class Spool:
    """The spool file. All methods are synchronous; writes are short transactions.

    :param durability: ``off|normal|full|extra`` = ``PRAGMA synchronous`` (docs/spool.md says exactly
      what each survives). Default ``full``: a commit returned means it survives power loss.
    :param max_bytes: size limit (used pages + WAL file); ``None`` = no limit (disk full still handled).
    :param on_full: ``block`` (append raises ``SpoolFull``, nothing dropped) or ``drop_oldest``.
    :param offload: run writes in gevent's threadpool so the hub is not blocked during fsync.
    :param readonly: open an existing spool read-only (never creates, migrates or writes); see
      ``open_readonly``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: str = "full",
        max_bytes: int | None = None,
        on_full: str = "block",
        offload: bool = True,
        readonly: bool = False,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    ):
        if durability not in DURABILITY:
            raise ValueError(f"durability must be one of {', '.join(DURABILITY)}, not {durability!r}")
        if on_full not in ON_FULL:
            raise ValueError(f"on_full must be one of {', '.join(ON_FULL)}, not {on_full!r}")
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError("max_bytes must be positive (or None for no limit)")
        self.path = os.fspath(path)
        self.durability = durability
        self.max_bytes = max_bytes
        self.on_full = on_full
        #: The outputs whose cursors say what is delivered when a full spool makes room (the enabled,
        #: configured ones: ``set_retention_outputs``); ``None`` = every enabled cursor row, as ``prune``.
        self.retention_outputs: list[str] | None = None
        #: Delivered events deleted before their retention to make room, since this object opened.
        self.evicted_early = 0
        self._evicted_unlogged = 0
        self._evicted_logged_at: float | None = None
        self.readonly = readonly
        #: The rows of the latest appends, for this process's drains (spool.recent).
        self.recent: RecentRows | None = None
        self.busy_timeout_ms = busy_timeout_ms
        self._offload = offload and not readonly
        self._lock = gevent.lock.RLock()
        #: Number of write transactions that committed events (observable group commit).
        self.append_commits = 0
        self._closed = False
        #: Second writable connection for cursor commits, run in the caller (``_quick_write``).
        self._quick: sqlite3.Connection | None = None
        #: Cursor commits that found another process writing and went through the threadpool.
        self.quick_busy = 0
        #: WAL bytes from which a background checkpoint starts (None: SQLite's own, in the COMMIT), and
        #: an estimate of those written since the last one started.
        self._checkpoint_bytes: int | None = None
        self._wal_since_checkpoint = 0
        #: The file's page size, once read (``_sizes``).
        self._page_size: int | None = None
        #: ``journal_size_limit``: the WAL file is cut back to this when SQLite restarts it.
        self._wal_limit: int | None = None
        #: The background checkpoint's connection, and the checkpoint running now (at most one).
        self._ckpt_conn: sqlite3.Connection | None = None
        self._ckpt_pending: Any = None
        #: Background checkpoints finished (and the last one's error, if it failed).
        self.background_checkpoints = 0
        self.checkpoint_error = ""
        #: ``stats(offload=True)``'s read-only connection, used by one thread at a time under its lock.
        self._stats_conn: sqlite3.Connection | None = None
        self._stats_lock = gevent.lock.Semaphore()
        if readonly:
            self._conn = self._open_readonly()
        else:
            self._conn = self._open_writable()
            self.recent = RecentRows(committed=_last_seq(self._conn))

    @classmethod
    def open_readonly(cls, path: str | os.PathLike[str]) -> Spool:
        """Open for ``status``: works whether the agent runs or not; never creates or migrates a file."""
        return cls(path, readonly=True)

    # -- opening -------------------------------------------------------------------------------

    def _open_readonly(self) -> sqlite3.Connection:
        if not os.path.exists(self.path):
            raise SpoolError(f"no spool at {self.path}")
        try:
            conn = sqlite3.connect(
                _ro_uri(self.path),
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=self.busy_timeout_ms / 1000,
            )
        except sqlite3.OperationalError as exc:
            raise self._cannot_open(exc) from exc
        try:
            names = schema.applied_names(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if is_locked(exc):
                raise
            if _is_open_error(exc):
                raise self._cannot_open(exc) from exc
            raise SchemaError(f"{self.path} is not a spool: {exc}") from exc
        if not names:
            conn.close()
            raise SchemaError(f"{self.path} is not a spool (no schema)")
        schema.check_known(names, self.path)
        self.schema_version = len(names)
        return conn

    def _cannot_open(self, exc: sqlite3.Error) -> SpoolError:
        """A spool SQLite could not open or read (permissions, most often), which is no proof that
        the file is not a spool: with the packaged 0750 state directory, a group member reading it
        while the agent is stopped cannot create ``-shm`` (SQLITE_READONLY_DIRECTORY)."""
        return SpoolError(
            f"cannot open {self.path} read-only: {exc}; check permissions on the directory and its "
            "-wal/-shm files, or run as root or the clawd-agent user"
        )

    def _open_writable(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout_ms / 1000
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
                # Only possible before the first table exists, and before WAL mode.
                conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
                conn.execute(f"PRAGMA auto_vacuum = {AUTO_VACUUM}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise SpoolError(f"{self.path}: cannot enable WAL mode (journal_mode={mode})")
            conn.execute(f"PRAGMA synchronous = {DURABILITY[self.durability]}")
            page_size = self._page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            ckpt_pages, wal_limit = wal_limits(self.max_bytes, page_size)
            if self._offload and (self.max_bytes is None or self.max_bytes >= BACKGROUND_CHECKPOINT_MIN_SPOOL
                                  * FALLBACK_CHECKPOINT_FACTOR * ckpt_pages * page_size):
                self._checkpoint_bytes = ckpt_pages * page_size
                ckpt_pages *= FALLBACK_CHECKPOINT_FACTOR
            conn.execute(f"PRAGMA wal_autocheckpoint = {ckpt_pages}")
            conn.execute(f"PRAGMA journal_size_limit = {wal_limit}")
            self._wal_limit = wal_limit
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            conn.execute("PRAGMA temp_store = MEMORY")
            self.schema_version = schema.migrate(conn, self.path)
        except BaseException:
            conn.close()
            raise
        return conn

    def record_config(self) -> None:
        """Record this spool's durability, max_bytes and on_full as the running agent's: what
        ``stats()`` reports on a read-only spool (`status`). Only the agent calls it; a CLI command
        that opens the spool writable runs with its own config file's settings, maybe edited since."""
        blob = orjson.dumps(
            {"durability": self.durability, "max_bytes": self.max_bytes, "on_full": self.on_full}
        ).decode()
        self._write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO agent_state(key, value) VALUES ('spool_config', ?)", (blob,)
            )
        )

    def reader(self) -> SpoolReader:
        """A new read-only connection for one drain greenlet (close it when done)."""
        return SpoolReader(self.path, busy_timeout_ms=self.busy_timeout_ms, recent=self.recent)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._ckpt_pending is not None:  # its thread uses the file: let it finish
                    with contextlib.suppress(Exception):
                        self._ckpt_pending.get()
                if self._ckpt_conn is not None:
                    self._ckpt_conn.close()
                if self._quick is not None:
                    self._quick.close()
                with self._stats_lock:  # a stats thread in progress finishes first
                    if self._stats_conn is not None:
                        self._stats_conn.close()
                self._conn.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any, write: bool = True) -> T:
        if self._closed:
            raise SpoolError("spool is closed")
        if write and self.readonly:
            raise SpoolError(f"{self.path} is open read-only")
        with self._lock:
            if self._offload and write:
                return run_in_pool(fn, *args)
            return fn(*args)

    def _tx(self, body: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection | None = None) -> T:
        """Run ``body`` in one ``BEGIN IMMEDIATE`` transaction (on ``conn``, by default the spool's
        connection); roll back on any error. A full disk (SQLITE_FULL) becomes ``SpoolFull``."""
        conn = conn or self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if _is_disk_full(exc):
                raise SpoolFull(
                    f"{self.path}: disk full ({exc}); nothing of this transaction was written"
                ) from exc
            raise
        return result

    def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        return self._call(self._tx, body)

    def _write_unsynced(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """``_write`` for state whose loss on power failure only means repeated work, never lost
        events: cursor positions (the events after an older cursor are sent again: at-least-once).
        Committed with ``synchronous = NORMAL``: in WAL mode that skips this commit's fsync, and the
        next event append's fsync covers its frames (the WAL is written in order). A drain commits
        its cursor after every batch, so at 2,000 events/s these fsyncs were most of the spool's, and
        event appends queued behind them."""
        level = DURABILITY[self.durability]
        if level <= DURABILITY["normal"]:
            return self._write(body)

        def tx(b: Callable[[sqlite3.Connection], T]) -> T:
            conn = self._conn
            conn.execute("PRAGMA synchronous = NORMAL")
            try:
                return self._tx(b)
            finally:
                conn.execute(f"PRAGMA synchronous = {level}")

        return self._call(tx, body)

    def _quick_write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """``_write_unsynced`` for a transaction of a few rows, run right here instead of in the
        threadpool. A drain commits its cursor after every batch: at 2,000 events/s to two outputs that
        was ~100 transactions a second, each holding the spool's lock ~2.7 ms (p99 10 ms) for two
        thread hand-offs and five statements that each gave up and took back the interpreter lock, so
        event appends queued behind them. On a connection of its own this costs ~0.1 ms of the loop:
        ``synchronous = NORMAL`` (no fsync: the next append's fsync covers its WAL frames, as before)
        and ``wal_autocheckpoint = 0`` (a checkpoint never runs here: the appends' connection runs
        them, in the threadpool). It never waits either: when another process (the CLI) holds
        SQLite's write lock it answers busy at once, and the transaction goes the threadpool way."""
        if not self._offload:
            return self._write_unsynced(body)
        with self._lock:
            if self._closed:
                raise SpoolError("spool is closed")
            try:
                return self._tx(body, self._quick or self._open_quick())
            except sqlite3.OperationalError as exc:  # rolled back: nothing of it was written
                if not _sqlite_error(exc, SQLITE_BUSY):
                    raise
            self.quick_busy += 1
            return self._write_unsynced(body)

    def _open_quick(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute(f"PRAGMA synchronous = {min(DURABILITY[self.durability], DURABILITY['normal'])}")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("PRAGMA cache_size = -64")  # KiB: it only ever touches the cursors table
        self._quick = conn
        return conn

    def _read(self, body: Callable[[sqlite3.Connection], T]) -> T:
        return self._call(body, self._conn, write=False)

    # -- append --------------------------------------------------------------------------------

    def append(self, batch: IngestBatch) -> AppendResult:
        """Insert the batch's events (duplicates by ``event_id`` ignored), upsert its offsets and insert
        its quarantine records, all in one transaction. Raises ``SpoolFull``."""
        return self.append_many([batch])[0]

    def append_many(self, batches: Sequence[IngestBatch]) -> list[AppendResult]:
        """``append`` for several batches in ONE transaction (group commit): all commit, or none."""
        recent = self.recent
        if recent is not None:
            recent.appending += 1
        try:
            try:
                results, dropped, fresh, last = self._call(
                    self._tx, lambda conn: self._append_tx(conn, batches))
            except SpoolFull:
                if self._wal_limit is not None and self._wal_file_bytes() > self._wal_limit:
                    self._truncate_wal()
                raise
            if recent is not None:
                if dropped:
                    recent.forget_upto(dropped.upto)
                if fresh is not None:
                    recent.add(*fresh)  # committed: the drains may read these rows from memory
                recent.committed_to(last)
        finally:
            if recent is not None:
                recent.appending -= 1
        self.append_commits += 1
        if self._checkpoint_bytes is not None:
            # What the WAL grew by, about: the bodies, plus the pages every transaction rewrites (the
            # sequence, offsets, index). The file's size says nothing: it stays at its largest.
            body_bytes = sum(len(e[2]) for b in batches for e in b.events)
            self._wal_since_checkpoint += body_bytes * WAL_BYTES_PER_BODY_BYTE + 4 * (self._page_size or 0)
            if self._wal_since_checkpoint >= self._checkpoint_bytes:
                self._start_checkpoint()
        if dropped:
            self._log_room_made(dropped)
        return results

    def _log_room_made(self, made: RoomMade) -> None:
        if made.evicted:
            self.evicted_early += made.evicted
            self._evicted_unlogged += made.evicted
            # A spool that stays full makes room every few appends: one line a minute says it.
            now = time.monotonic()
            if self._evicted_logged_at is None or now - self._evicted_logged_at >= EVICTION_LOG_INTERVAL_S:
                log.warning(
                    "spool %s reached max_bytes=%d: deleted %d delivered events before their retention "
                    "to make room (the replay window shrinks; nothing undelivered is lost)",
                    self.path,
                    self.max_bytes,
                    self._evicted_unlogged,
                )
                self._evicted_logged_at = now
                self._evicted_unlogged = 0
        if made.dropped:
            log.warning(
                "spool %s over max_bytes=%d: dropped the %d oldest undelivered events",
                self.path,
                self.max_bytes,
                made.dropped,
            )

    def _append_tx(
        self, conn: sqlite3.Connection, batches: Sequence[IngestBatch]
    ) -> tuple[list[AppendResult], RoomMade | None, tuple[int, list[SpoolRow]] | None, int]:
        """The append transaction's body. Returns each batch's result, the events deleted to make
        room (None: none), and (first seq, rows) of the events
        inserted when their sequence numbers are known for sure (every event inserted, and the
        sequence moved by exactly their number), else None."""
        now = now_ms()
        recent = self.recent
        boundary = _last_seq(conn)  # size enforcement and the in-memory rows both start from it
        results = []
        duplicates = 0
        total = 0
        for b in batches:
            events = b.events
            inserted = 0
            if events:
                inp = b.input
                inserted = _insert_events(conn, events, now, inp)
                duplicates += len(events) - inserted
                total += inserted
            if b.offsets:
                conn.executemany(
                    _UPSERT_OFFSET,
                    [(b.input, o.file_key, o.path, o.offset, o.marker, o.marker_len, now) for o in b.offsets],
                )
            if b.quarantine:
                conn.executemany(
                    _INSERT_QUARANTINE,
                    [
                        (b.input, q.source, q.offset, _reason(q.reason), _cut(q.excerpt), now)
                        for q in b.quarantine
                    ],
                )
            results.append(AppendResult(inserted, len(events) - inserted))
        if duplicates:
            conn.execute(
                "UPDATE counters SET value = value + ? WHERE name = 'duplicates_total'", (duplicates,)
            )
            _close_seq_gaps(conn, boundary, total)
        dropped = self._enforce_size(conn, boundary) if self.max_bytes is not None else None
        fresh = None
        last = _last_seq(conn)
        if recent is not None and total and not duplicates and last == boundary + total:
            make = SpoolRow._make
            appended = itertools.chain.from_iterable(b.events for b in batches)
            fresh = (boundary + 1, [make((seq, e[0], e[1], e[2]))
                                    for seq, e in zip(itertools.count(boundary + 1), appended)])
        return results, dropped, fresh, last

    def _sizes(self, conn: sqlite3.Connection) -> tuple[int, int]:
        """(bytes of used database pages, bytes of the WAL file). Runs in every append transaction
        with a ``max_bytes``: the page size, fixed once the file exists, is read when a writable spool
        opens, and on a read-only one's first call (each statement gives SQLite's thread's interpreter
        lock up and takes it back)."""
        if self._page_size is None:
            self._page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self._page_size, self._wal_file_bytes()

    def _wal_file_bytes(self) -> int:
        try:
            return os.path.getsize(self.path + "-wal")
        except OSError:
            return 0

    def _start_checkpoint(self) -> None:
        """Checkpoint the WAL in a thread of its own (gevent's threadpool), beside the appends: done in
        the appends' COMMIT, copying 16 MiB of WAL into the database and syncing it stalled every
        tailed file for 40-70 ms, ~15 times per 200,000 events. At most one at a time."""
        if self._ckpt_pending is not None or self._closed:
            return
        self._wal_since_checkpoint = 0
        pending = gevent.get_hub().threadpool.spawn(self._checkpoint)
        self._ckpt_pending = pending
        pending.rawlink(self._checkpoint_done)

    def _checkpoint(self) -> Any:
        conn = self._ckpt_conn
        if conn is None:
            conn = self._ckpt_conn = sqlite3.connect(self.path, isolation_level=None,
                                                     check_same_thread=False, timeout=0)
        # What the WAL holds, copied while the appends go on ...
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        # ... then the few frames they added meanwhile, and the WAL restarted from its start: without
        # this the appends could not restart it (frames not copied yet), and it grew until their own
        # fallback checkpoint. RESTART holds appends back while it runs; it waits at most
        # RESTART_WAIT_MS for the one in progress (busy: the next checkpoint tries again).
        conn.execute(f"PRAGMA busy_timeout = {RESTART_WAIT_MS}")
        return conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()

    def _checkpoint_done(self, pending: Any) -> None:
        self._ckpt_pending = None
        if pending.successful():
            self.background_checkpoints += 1
            self.checkpoint_error = ""
        else:  # the appends' connection checkpoints past FALLBACK_CHECKPOINT_FACTOR: nothing is lost
            exc = pending.exception
            self.checkpoint_error = f"{type(exc).__name__}: {exc}"
            log.warning("spool %s: background checkpoint failed: %s", self.path, self.checkpoint_error)

    def _enforce_size(self, conn: sqlite3.Connection, boundary: int) -> RoomMade | None:
        """Called inside the append transaction. ``boundary``: last seq before this transaction.
        Returns the events deleted to make room, or None when nothing was.

        Delivered events go first, whatever ``on_full`` says: retention keeps them for replay, and a
        replay window is no reason to stop ingest. Before, a spool filled with delivered events refused
        every append until they aged past ``retention`` (24 h by default; at 2,000 events/s the default
        2 GiB fills in ~17 minutes), while every output was caught up.

        The WAL file is measured once, before any deletion: deleting writes pages to the WAL too (all
        the freed ones where SQLite zeroes deleted content, Debian's default), so a loop that measured
        it again after each chunk never got below the limit, deleted every event it was allowed to,
        and left a WAL of the spool's size (the 3,000,000-event benchmark run: 2 GiB, then every
        append refused)."""
        assert self.max_bytes is not None
        used, wal = self._sizes(conn)
        if used + wal <= self.max_bytes:
            return None
        evicted, upto, used = self._delete_oldest(conn, min(boundary, self._evictable(conn)), used, wal)
        if evicted:
            conn.execute("UPDATE counters SET value = value + ? WHERE name = 'pruned_total'", (evicted,))
            self._deleting_upto(upto)
        if used + wal <= self.max_bytes:
            return RoomMade(evicted, 0, upto)
        if self.on_full == "block":
            raise SpoolFull(
                f"spool {self.path} is full: {used + wal} bytes (db {used} + wal {wal}) > max_bytes "
                f"{self.max_bytes}; batch refused, nothing dropped"
            )
        # Only rows committed before this transaction; never the batch being appended.
        dropped, upto_dropped, used = self._delete_oldest(conn, boundary, used, wal)
        if used + wal > self.max_bytes:
            raise SpoolFull(
                f"spool {self.path} is full: {used + wal} bytes > max_bytes {self.max_bytes} even after "
                f"dropping every older event; batch refused"
            )
        conn.execute("UPDATE counters SET value = value + ? WHERE name = 'dropped_oldest_total'", (dropped,))
        self._deleting_upto(upto_dropped)
        return RoomMade(evicted, dropped, max(upto, upto_dropped))

    def _evictable(self, conn: sqlite3.Connection) -> int:
        """The highest seq every output delivered, for making room: 0 (nothing) when no output is
        enabled, where ``prune`` counts every event as delivered (they wait there for an output that
        is enabled later; retention deletes them, a full spool does not)."""
        names = self.retention_outputs
        if names is None:
            if conn.execute("SELECT 1 FROM cursors WHERE enabled LIMIT 1").fetchone() is None:
                return 0
        elif not names:
            return 0
        return self._delivered_limit(conn, names)

    def _delete_oldest(
        self, conn: sqlite3.Connection, limit: int, used: int, wal: int
    ) -> tuple[int, int, int]:
        """Delete the oldest events with ``seq <= limit``, ``DROP_CHUNK_ROWS`` at a time, until the used
        pages and ``wal`` (the WAL file before the deletions) fit ``max_bytes``, or none is left.
        Returns (deleted, highest seq deleted, used bytes)."""
        assert self.max_bytes is not None
        deleted = upto = 0
        while used + wal > self.max_bytes:
            hi = conn.execute(
                "SELECT max(seq) FROM (SELECT seq FROM events WHERE seq <= ? ORDER BY seq LIMIT ?)",
                (limit, DROP_CHUNK_ROWS),
            ).fetchone()[0]
            n = 0 if hi is None else conn.execute("DELETE FROM events WHERE seq <= ?", (hi,)).rowcount
            if n == 0:
                break
            deleted += n
            upto = hi
            used = self._sizes(conn)[0]
        return deleted, upto, used

    def _truncate_wal(self) -> None:
        """A refused append found the WAL file over ``journal_size_limit`` (a large transaction, or a
        checkpoint held back by a reader): copy it into the database and truncate it to zero bytes.
        SQLite cuts the file back only when a write restarts the log, and a spool full because of its
        WAL refuses every write, so without this nothing ever did. Waits for readers at most
        ``RESTART_WAIT_MS``; the inputs retry either way."""
        def checkpoint(conn: sqlite3.Connection) -> None:
            conn.execute(f"PRAGMA busy_timeout = {RESTART_WAIT_MS}")
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")

        try:
            self._call(checkpoint, self._conn)
        except sqlite3.Error as exc:
            log.warning("spool %s: checkpoint of an oversized WAL failed: %s", self.path, exc)

    def set_retention_outputs(self, names: Iterable[str] | None) -> None:
        """The enabled, configured outputs (as ``prune``'s ``enabled_outputs``): a full spool deletes
        only what all of them delivered before it refuses or drops anything."""
        self.retention_outputs = None if names is None else sorted(set(names))

    # -- reading -------------------------------------------------------------------------------

    def read_after(self, seq: int, limit: int) -> list[SpoolRow]:
        """Up to ``limit`` events after ``seq`` on the spool's own connection (drains use ``reader()``)."""
        return self._read(
            lambda c: list(
                map(
                    SpoolRow._make,
                    c.execute(
                        "SELECT seq, event_id, ts_ms, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                        (seq, limit),
                    ),
                )
            )
        )

    def last_seq(self) -> int:
        """Highest seq ever allocated; 0 when nothing was ever appended."""
        return self._read(_last_seq)

    def first_seq(self) -> int | None:
        """Oldest retained seq, or ``None`` when no event is retained."""
        return self._read(_first_seq)

    def get_offsets(self, input: str) -> dict[str, InputOffset]:
        """Stored offsets of one input, by ``file_key``."""
        rows = self._read(
            lambda c: c.execute(
                'SELECT file_key, path, "offset", marker, marker_len FROM input_offsets WHERE input = ?',
                (input,),
            ).fetchall()
        )
        return {r[0]: InputOffset(*r) for r in rows}

    def delete_offsets(self, input: str, file_keys: Iterable[str]) -> int:
        keys = [(input, k) for k in file_keys]
        return self._write(
            lambda c: (
                c.executemany("DELETE FROM input_offsets WHERE input = ? AND file_key = ?", keys).rowcount
            )
        )

    # -- cursors -------------------------------------------------------------------------------

    def get_cursor(self, output: str) -> Cursor | None:
        return self._read(lambda c: _get_cursor(c, output))

    def ensure_cursor(self, output: str, start: str = "beginning", not_after: int | None = None) -> Cursor:
        """Create the output's cursor if missing: ``beginning`` = before the oldest retained event,
        ``end`` = after the last one, or at ``not_after`` if that is lower. An existing cursor is
        returned unchanged."""
        if start not in ("beginning", "end"):
            raise ValueError(f"start must be 'beginning' or 'end', not {start!r}")

        def body(c: sqlite3.Connection) -> Cursor:
            cur = _get_cursor(c, output)
            if cur is not None:
                return cur
            last = _last_seq(c)
            first = _first_seq(c)
            seq = last if start == "end" or first is None else first - 1
            if start == "end" and not_after is not None:
                seq = min(seq, not_after)
            c.execute(
                "INSERT INTO cursors(output, seq, generation, updated_ms, enabled) VALUES (?, ?, 0, ?, 1)",
                (output, seq, now_ms()),
            )
            return Cursor(seq, 0)

        return self._write(body)

    def commit_cursor(
        self, output: str, seq: int, generation: int, done: Sequence[tuple[int, int]] | None = None
    ) -> bool:
        """Advance the cursor to ``seq`` if its generation is still ``generation`` (compare-and-set).
        ``False`` means it was rewound meanwhile: re-read it with ``get_cursor``.

        ``done``: seq ranges ``(lo, hi)`` above ``seq`` the output already finished (pipelined
        batches that completed before an earlier one); stored with the cursor so a restart does not
        send them again. ``None`` leaves the stored ranges as they are; ``[]`` clears them."""
        if done is None:
            sql = "UPDATE cursors SET seq = ?, updated_ms = ? WHERE output = ? AND generation = ?"
            args: tuple[Any, ...] = (seq, now_ms(), output, generation)
        else:
            blob = orjson.dumps([[int(lo), int(hi)] for lo, hi in done if hi > seq]).decode() if done else ""
            sql = "UPDATE cursors SET seq = ?, done = ?, updated_ms = ? WHERE output = ? AND generation = ?"
            args = (seq, blob, now_ms(), output, generation)
        return self._quick_write(lambda c: c.execute(sql, args).rowcount == 1)

    def get_cursor_done(self, output: str) -> tuple[Cursor, list[tuple[int, int]]] | None:
        """The cursor and the finished ranges above it (see ``commit_cursor``), or None."""
        row = self._read(
            lambda c: c.execute(
                "SELECT seq, generation, done FROM cursors WHERE output = ?", (output,)
            ).fetchone()
        )
        if row is None:
            return None
        ranges = [(int(lo), int(hi)) for lo, hi in orjson.loads(row[2])] if row[2] else []
        return Cursor(row[0], row[1]), [r for r in ranges if r[1] > row[0]]

    def rewind(
        self,
        output: str,
        *,
        seq: int | None = None,
        since_ms: int | None = None,
        event_id: bytes | None = None,
        count: int | None = None,
    ) -> tuple[Cursor, Cursor]:
        """Move an output's cursor so events are sent again; bumps its generation. Returns ``(before,
        after)``, both read in the rewind's transaction: a cursor read in another one may be stale by
        then (the running drain commits meanwhile), and a summary built on it misstates the move.

        Exactly one of: ``seq`` (cursor = seq: events after it are re-sent; the one way to move it
        forward, skipping), ``since_ms`` (from the first event whose event time is >= since_ms),
        ``event_id`` (from that event), ``count`` (the last ``count`` delivered events). The last three
        never move the cursor forward: on an output still behind the requested point it stays where it
        is, since jumping there would skip its backlog (nothing delivered, nothing in the DLQ). Raises
        ``RewindError`` if the target lies below the oldest retained event (the message names it), or
        the output or event is unknown.
        """
        given = [x for x in (seq, since_ms, event_id, count) if x is not None]
        if len(given) != 1:
            raise ValueError("rewind takes exactly one of seq, since_ms, event_id, count")
        return self._write(lambda c: self._rewind_tx(c, output, seq, since_ms, event_id, count))

    def _rewind_tx(
        self,
        c: sqlite3.Connection,
        output: str,
        seq: int | None,
        since_ms: int | None,
        event_id: bytes | None,
        count: int | None,
    ) -> tuple[Cursor, Cursor]:
        cur = _get_cursor(c, output)
        if cur is None:
            known = [r[0] for r in c.execute("SELECT output FROM cursors ORDER BY output")]
            raise RewindError(f"no cursor for output {output!r} (known: {', '.join(known) or 'none'})")
        last = _last_seq(c)
        first = _first_seq(c)
        deleted = c.execute(
            "SELECT sum(value) FROM counters WHERE name IN ('pruned_total', 'dropped_oldest_total')"
        ).fetchone()[0]
        pruned = bool(deleted)
        floor = (last if first is None else first - 1) if pruned else 0

        def oldest() -> str:
            if first is None:
                return f"no event is retained (everything up to seq {last} was pruned)"
            ts, ing = c.execute("SELECT ts_ms, ingested_ms FROM events WHERE seq = ?", (first,)).fetchone()
            return f"oldest retained event is seq {first} (event time {ts} ms, ingested {ing} ms)"

        if seq is not None:
            target = int(seq)
            if target < 0 or target > last:
                raise RewindError(f"seq {target} is outside 0..{last}")
        elif since_ms is not None:
            row = c.execute("SELECT min(seq) FROM events WHERE ts_ms >= ?", (since_ms,)).fetchone()
            if row[0] is None:
                target = last
            else:
                target = row[0] - 1
                if pruned and target == floor:
                    oldest_ts = c.execute("SELECT min(ts_ms) FROM events").fetchone()[0]
                    if since_ms < oldest_ts:
                        raise RewindError(
                            f"cannot rewind {output!r} to event time {since_ms} ms: "
                            "older events were pruned; "
                            f"{oldest()}"
                        )
        elif event_id is not None:
            row = c.execute("SELECT seq FROM events WHERE event_id = ?", (bytes(event_id),)).fetchone()
            if row is None:
                raise RewindError(
                    f"event {bytes(event_id).hex()} is not in the spool (never ingested, or pruned); "
                    f"{oldest()}"
                )
            target = row[0] - 1
        else:
            assert count is not None
            if count <= 0:
                raise RewindError("count must be positive")
            row = c.execute(
                "SELECT seq FROM events WHERE seq <= ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
                (cur.seq, count - 1),
            ).fetchone()
            if row is not None:
                target = row[0] - 1
            elif pruned:
                have = c.execute("SELECT count(*) FROM events WHERE seq <= ?", (cur.seq,)).fetchone()[0]
                raise RewindError(
                    f"cannot rewind {output!r} by {count} events: only {have} delivered events are retained; "
                    f"{oldest()}"
                )
            else:
                target = 0
        if seq is None and target > cur.seq:
            target = cur.seq  # behind the requested point already: everything from it will be sent
        elif target < floor:
            raise RewindError(f"cannot rewind {output!r} to seq {target}: {oldest()} (the lowest seq it "
                              f"can rewind to is {floor})")
        gen = cur.generation + 1
        c.execute(
            "UPDATE cursors SET seq = ?, generation = ?, done = '', updated_ms = ? WHERE output = ?",
            (target, gen, now_ms(), output),
        )
        return cur, Cursor(target, gen)

    def set_enabled(self, output: str, enabled: bool) -> bool:
        """Enable or disable a cursor; a disabled one does not hold back retention. ``False`` if unknown."""
        return self._write(
            lambda c: (
                c.execute(
                    "UPDATE cursors SET enabled = ?, updated_ms = ? WHERE output = ?",
                    (int(enabled), now_ms(), output),
                ).rowcount
                == 1
            )
        )

    def delete_cursor(self, output: str) -> bool:
        return self._write(
            lambda c: c.execute("DELETE FROM cursors WHERE output = ?", (output,)).rowcount == 1
        )

    def list_cursors(self) -> list[CursorInfo]:
        rows = self._read(
            lambda c: c.execute(
                "SELECT output, seq, generation, enabled, updated_ms FROM cursors ORDER BY output"
            ).fetchall()
        )
        return [CursorInfo(o, s, g, bool(e), u) for o, s, g, e, u in rows]

    # -- retention -----------------------------------------------------------------------------

    def prune(
        self,
        retention_s: float = DEFAULT_RETENTION_S,
        enabled_outputs: Iterable[str] | None = None,
        *,
        chunk_rows: int = PRUNE_CHUNK_ROWS,
        now: int | None = None,
    ) -> int:
        """Delete the oldest events that every enabled output has delivered and that were ingested more
        than ``retention_s`` ago. ``enabled_outputs``: the configured outputs (a configured output without
        a cursor holds back everything; cursors of unconfigured or disabled outputs hold back nothing);
        ``None`` = every enabled cursor row. Deletes ``chunk_rows`` per transaction, yielding between
        chunks, then returns free pages beyond ``VACUUM_KEEP_BYTES`` to the file system."""
        configured = None if enabled_outputs is None else sorted(set(enabled_outputs))
        cutoff = (now_ms() if now is None else now) - int(retention_s * 1000)
        total = 0
        while True:
            n, upto = self._write(lambda c: self._prune_chunk(c, configured, cutoff, chunk_rows))
            if n and self.recent is not None:  # committed: readers behind it read SQLite now
                self.recent.forget_upto(upto)
            total += n
            if n < chunk_rows:
                break
            gevent.sleep(0)
        self.vacuum()
        return total

    def _delivered_limit(self, c: sqlite3.Connection, configured: list[str] | None) -> int:
        rows = {o: (s, bool(e)) for o, s, e in c.execute("SELECT output, seq, enabled FROM cursors")}
        names = rows if configured is None else configured
        limit = _last_seq(c)
        for name in names:
            if name not in rows:
                return 0
            seq, enabled = rows[name]
            if enabled:
                limit = min(limit, seq)
        return limit

    def _prune_chunk(
        self, c: sqlite3.Connection, configured: list[str] | None, cutoff: int, chunk: int
    ) -> tuple[int, int]:
        """One chunk of retention: (events deleted, the highest seq deleted; every one below is gone)."""
        limit = self._delivered_limit(c, configured)
        rows = c.execute(
            "SELECT seq, ingested_ms FROM events WHERE seq <= ? ORDER BY seq LIMIT ?", (limit, chunk)
        ).fetchall()
        upto = None
        for seq, ingested in rows:  # a prefix only: retained events are always a contiguous tail
            if ingested >= cutoff:
                break
            upto = seq
        if upto is None:
            return 0, 0
        n = c.execute("DELETE FROM events WHERE seq <= ?", (upto,)).rowcount
        c.execute("UPDATE counters SET value = value + ? WHERE name = 'pruned_total'", (n,))
        self._deleting_upto(upto)
        return n, upto

    def _deleting_upto(self, seq: int) -> None:
        """Called in a deleting transaction (in SQLite's thread with ``offload``), before its COMMIT:
        from now on no drain read is answered from memory with rows up to ``seq`` (spool.recent).
        ``forget_upto``, back in the loop once the commit returned, comes too late for a drain that
        reads meanwhile: it would get events the file no longer has."""
        recent = self.recent
        if recent is not None and seq > recent.deleted_upto:
            recent.deleted_upto = seq

    def vacuum(self, keep_bytes: int = VACUUM_KEEP_BYTES) -> int:
        """Return free pages beyond ``keep_bytes`` to the file system (incremental vacuum, at most
        ``VACUUM_CHUNK_PAGES`` per transaction). Returns the number of pages released."""
        released = 0
        while True:
            n = self._call(self._vacuum_step, keep_bytes)
            released += n
            if n < VACUUM_CHUNK_PAGES:
                return released
            gevent.sleep(0)

    def _vacuum_step(self, keep_bytes: int) -> int:
        c = self._conn
        page_size = c.execute("PRAGMA page_size").fetchone()[0]
        free = c.execute("PRAGMA freelist_count").fetchone()[0]
        n = min(free - keep_bytes // page_size, VACUUM_CHUNK_PAGES)
        if n <= 0:
            return 0
        # executescript steps the pragma to completion (execute() frees one page per step); it runs
        # as its own autocommit transaction.
        c.executescript(f"PRAGMA incremental_vacuum({int(n)})")
        return free - c.execute("PRAGMA freelist_count").fetchone()[0]

    # -- quarantine ----------------------------------------------------------------------------

    def quarantine_list(self, limit: int = 100, input: str | None = None) -> list[QuarantineEntry]:
        """Newest first."""
        sql = f"SELECT {_Q_COLS} FROM quarantine"
        args: tuple[Any, ...] = ()
        if input is not None:
            sql += " WHERE input = ?"
            args = (input,)
        rows = self._read(lambda c: c.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall())
        return [QuarantineEntry(*r) for r in rows]

    def quarantine_get(self, id: int) -> QuarantineEntry | None:
        row = self._read(
            lambda c: c.execute(f"SELECT {_Q_COLS} FROM quarantine WHERE id = ?", (id,)).fetchone()
        )
        return QuarantineEntry(*row) if row else None

    def quarantine_purge(self, older_than_ms: int | None = None, input: str | None = None) -> int:
        """Delete quarantine records created before ``older_than_ms`` (epoch ms; ``None`` = all), of one
        input or all. Returns the number deleted."""
        where, args = _where(("created_ms < ?", older_than_ms), ("input = ?", input))
        return self._write(lambda c: c.execute("DELETE FROM quarantine" + where, args).rowcount)

    def quarantine_counts(self) -> dict[str, int]:
        return dict(
            self._read(
                lambda c: c.execute(
                    "SELECT input, count(*) FROM quarantine GROUP BY input ORDER BY input"
                ).fetchall()
            )
        )

    # -- DLQ -----------------------------------------------------------------------------------

    def dlq_add(
        self,
        output: str,
        rows: Sequence[SpoolRow],
        reason: str,
        response_excerpt: bytes | str | None = None,
        attempts: int = 1,
    ) -> int:
        """Store permanently failed events of ``output`` (a copy of their bodies), counted in its
        ``output_state.dlq_total``. Returns the number stored. A row given with an empty body takes
        it from ``events`` (outputs that send only encoded bytes keep no canonical copy in flight); if
        that row is gone too (``on_full = "drop_oldest"`` dropped it), the entry keeps an empty body
        and says so in its reason."""
        now = now_ms()
        reason = _reason(reason)
        excerpt = _cut(response_excerpt)

        def body(c: sqlite3.Connection) -> int:
            missing = [r.seq for r in rows if not r.body]
            found: dict[int, bytes] = {}
            for i in range(0, len(missing), 500):
                part = missing[i:i + 500]
                found.update(c.execute(
                    f"SELECT seq, body FROM events WHERE seq IN ({','.join('?' * len(part))})", part))
            # Ids are never handed out again (as AUTOINCREMENT would, which the table lacks): a drain
            # replaying an entry the operator purged meanwhile deletes (dlq_done) or rewrites
            # (dlq_requeue) it by id when the replay ends, and must not hit a newer entry.
            last = c.execute(
                "SELECT max(coalesce((SELECT max(id) FROM dlq), 0), "
                "coalesce((SELECT value FROM agent_state WHERE key = ?), 0))", (DLQ_LAST_ID,)
            ).fetchone()[0]
            params = []
            for k, r in enumerate(rows, start=last + 1):
                data, why = r.body, reason
                if not data:
                    data = found.get(r.seq, b"")
                    if not data:
                        why = _reason(f"{reason} (event body no longer in the spool)")
                params.append((k, output, r.seq, r.event_id, data, why, excerpt, attempts, now, now))
            c.executemany(
                "INSERT INTO dlq(id, output, seq, event_id, body, reason, response_excerpt, attempts, "
                "created_ms, updated_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )
            c.execute("INSERT OR REPLACE INTO agent_state(key, value) VALUES (?, ?)",
                      (DLQ_LAST_ID, last + len(params)))
            _upsert_output_state(c, output, now, dlq=len(params), error_ms=now, error=reason)
            return len(params)

        return self._write(body) if rows else 0

    def dlq_list(self, output: str | None = None, limit: int = 100) -> list[DlqEntry]:
        """Oldest first."""
        where, args = _where(("output = ?", output))
        rows = self._read(
            lambda c: c.execute(
                f"SELECT {_DLQ_COLS} FROM dlq{where} ORDER BY id LIMIT ?", (*args, limit)
            ).fetchall()
        )
        return [DlqEntry(*r) for r in rows]

    def dlq_outputs(self) -> set[str]:
        """The outputs that have DLQ entries, without loading any entry (bodies can be large)."""
        return {r[0] for r in self._read(lambda c: c.execute("SELECT DISTINCT output FROM dlq").fetchall())}

    def dlq_get(self, id: int) -> DlqEntry | None:
        row = self._read(lambda c: c.execute(f"SELECT {_DLQ_COLS} FROM dlq WHERE id = ?", (id,)).fetchone())
        return DlqEntry(*row) if row else None

    def dlq_take(self, output: str, ids: Sequence[int] | None = None, limit: int = 1000) -> list[DlqEntry]:
        """Entries of ``output`` to replay (``ids``, or the oldest ``limit`` when ``None``). They stay in
        the DLQ until ``dlq_done(ids)`` after the replay succeeded, so a crash mid-replay loses nothing."""
        if ids is None:
            return self.dlq_list(output, limit)
        id_list = [int(i) for i in ids]
        if not id_list:
            return []
        marks = ",".join("?" * len(id_list))
        rows = self._read(
            lambda c: c.execute(
                f"SELECT {_DLQ_COLS} FROM dlq WHERE output = ? AND id IN ({marks}) ORDER BY id",
                (output, *id_list),
            ).fetchall()
        )
        return [DlqEntry(*r) for r in rows]

    def dlq_done(self, ids: Iterable[int]) -> int:
        """Delete replayed DLQ entries. Returns the number deleted."""
        params = [(int(i),) for i in ids]
        return self._write(lambda c: c.executemany("DELETE FROM dlq WHERE id = ?", params).rowcount)

    def dlq_purge(
        self, output: str | None = None, older_than_ms: int | None = None, ids: Sequence[int] | None = None
    ) -> int:
        """Delete DLQ entries that last failed before ``older_than_ms`` (epoch ms; ``None`` = all), of
        one output or all, only ``ids`` when given. Returns the number deleted.

        Age is from the latest failure, as Logstash's DLQ ages a replay that failed again from its new
        write: an entry whose replay an operator saw refused an hour ago is not a week old, and was
        purged with the entries nobody had looked at (``updated_ms`` is NULL on entries stored before
        migration 0003: they failed at ``created_ms``)."""
        clause = _where_ids(_where(("output = ?", output),
                                   ("coalesce(updated_ms, created_ms) < ?", older_than_ms)), ids)
        if clause is None:
            return 0
        where, args = clause
        return self._write(lambda c: c.execute("DELETE FROM dlq" + where, args).rowcount)

    def dlq_request_replay(self, output: str | None = None, ids: Sequence[int] | None = None) -> int:
        """Mark entries (of ``output``, only ``ids`` when given) for replay: the output's drain, in
        the running agent or the next one to start, re-sends them (``dlq_replay_pending``). Returns
        the number of entries marked."""
        clause = _where_ids(_where(("output = ?", output)), ids)
        if clause is None:
            return 0
        where, args = clause
        return self._write(
            lambda c: c.execute("UPDATE dlq SET replay_ms = ?" + where, (now_ms(), *args)).rowcount
        )

    def dlq_replay_pending(self, output: str, limit: int = 1000, after_id: int = 0) -> list[DlqEntry]:
        """Entries of ``output`` marked for replay, oldest first, with ``id > after_id``."""
        rows = self._read(
            lambda c: c.execute(
                f"SELECT {_DLQ_COLS} FROM dlq WHERE output = ? AND replay_ms IS NOT NULL AND id > ? "
                "ORDER BY id LIMIT ?",
                (output, after_id, limit),
            ).fetchall()
        )
        return [DlqEntry(*r) for r in rows]

    def dlq_replay_ids(self, output: str | None = None) -> set[int]:
        """Ids of the entries waiting for a replay (for `dlq list`). Empty on a read-only spool of an
        agent older than migration 0002 (no ``replay_ms``: nothing could be marked)."""
        where, args = _where(("output = ?", output))
        where += (" AND " if where else " WHERE ") + "replay_ms IS NOT NULL"

        def body(c: sqlite3.Connection) -> list[Any]:
            if not _has_column(c, "dlq", "replay_ms"):
                return []
            return c.execute("SELECT id FROM dlq" + where, args).fetchall()

        return {r[0] for r in self._read(body)}

    def dlq_requeue(
        self, ids: Iterable[int], reason: str, response_excerpt: bytes | str | None = None
    ) -> int:
        """A replay failed permanently again: keep the entries with the new reason and excerpt, one
        more attempt counted, no longer marked for replay, failed now (``updated_ms``: `status`'s last
        reason). Returns the number updated."""
        now = now_ms()
        params = [(_reason(reason), _cut(response_excerpt), now, int(i)) for i in ids]
        return self._write(
            lambda c: c.executemany(
                "UPDATE dlq SET reason = ?, response_excerpt = ?, updated_ms = ?, attempts = attempts + 1, "
                "replay_ms = NULL WHERE id = ?",
                params,
            ).rowcount
        )

    def dlq_counts(self) -> dict[str, dict[str, Any]]:
        """Per output: ``count``, ``replay_pending``, and of the entry that failed last (stored, or
        its replay refused again): ``last_reason``, ``last_failed_ms``, ``last_created_ms``."""

        def body(c: sqlite3.Connection) -> list[Any]:
            c.execute("BEGIN")  # one consistent snapshot
            try:
                # updated_ms is NULL on entries stored before migration 0003: they failed at
                # created_ms, before any entry stored since (NULL sorts lowest). Without the column (a
                # read-only spool of an older agent, not migrated yet): the newest entry's.
                if _has_column(c, "dlq", "updated_ms"):
                    failed, order = "coalesce(updated_ms, created_ms)", "updated_ms DESC, id DESC"
                else:
                    failed, order = "created_ms", "id DESC"
                # replay_ms came with migration 0002: before it no entry could be marked.
                pending = "count(replay_ms)" if _has_column(c, "dlq", "replay_ms") else "0"
                return c.execute(
                    f"SELECT g.output, n, reason, {failed}, created_ms, p FROM (SELECT output, "
                    f"count(*) AS n, {pending} AS p FROM dlq GROUP BY output) AS g "
                    "JOIN dlq AS d ON d.id = (SELECT id FROM dlq WHERE output = g.output "
                    f"ORDER BY {order} LIMIT 1) ORDER BY g.output"
                ).fetchall()
            finally:
                c.execute("COMMIT")

        return {
            o: {"count": n, "last_reason": r, "last_failed_ms": f, "last_created_ms": t, "replay_pending": p}
            for o, n, r, f, t, p in self._read(body)
        }

    # -- output and agent state ----------------------------------------------------------------

    def record_output_state(
        self,
        output: str,
        *,
        success_ms: int | None = None,
        error_ms: int | None = None,
        error: str | None = None,
        delivered: int = 0,
        failed: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Add to an output's persisted totals and set its last success / error (``None`` = unchanged).
        ``extra`` replaces the stored extra JSON when given. The DLQ total is not among them: ``dlq_add``
        counts the rows it stores, in their own transaction."""
        self._write(
            lambda c: _upsert_output_state(
                c,
                output,
                now_ms(),
                success_ms=success_ms,
                error_ms=error_ms,
                error=error,
                delivered=delivered,
                failed=failed,
                extra=extra,
            )
        )

    def read_output_states(self) -> dict[str, OutputState]:
        rows = self._read(
            lambda c: c.execute(
                "SELECT output, last_success_ms, last_error_ms, last_error, delivered_total, failed_total, "
                "dlq_total, extra, updated_ms FROM output_state ORDER BY output"
            ).fetchall()
        )
        return {r[0]: OutputState(*r[:7], orjson.loads(r[7]), r[8]) for r in rows}

    def set_agent_state(self, pid: int, started_ms: int, heartbeat_ms: int) -> None:
        self._write(
            lambda c: c.executemany(
                "INSERT OR REPLACE INTO agent_state(key, value) VALUES (?, ?)",
                [("pid", pid), ("started_ms", started_ms), ("heartbeat_ms", heartbeat_ms)],
            )
        )

    def set_input_stats(self, stats: dict[str, Any]) -> None:
        """The running agent's per-input counters, for `status` when it cannot ask the process."""
        blob = orjson.dumps(stats, default=str)
        self._write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO agent_state(key, value) VALUES ('input_stats', ?)", (blob,)
            )
        )

    def get_input_stats(self) -> dict[str, Any]:
        row = self._read(
            lambda c: c.execute("SELECT value FROM agent_state WHERE key = 'input_stats'").fetchone()
        )
        return orjson.loads(row[0]) if row else {}

    def clear_agent_state(self) -> None:
        """On clean shutdown: no running agent."""
        self._write(
            lambda c: c.execute("DELETE FROM agent_state WHERE key IN ('pid', 'started_ms', 'heartbeat_ms')")
        )

    def get_agent_state(self) -> dict[str, int] | None:
        """``{"pid", "started_ms", "heartbeat_ms"}`` of the last agent that ran, or ``None``."""
        rows = dict(
            self._read(
                lambda c: c.execute(
                    "SELECT key, value FROM agent_state WHERE key IN ('pid', 'started_ms', 'heartbeat_ms')"
                ).fetchall()
            )
        )
        return rows or None

    def counters(self) -> dict[str, int]:
        return dict(self._read(lambda c: c.execute("SELECT name, value FROM counters").fetchall()))

    # -- status --------------------------------------------------------------------------------

    def stats(
        self, configured_outputs: Iterable[str] | None = None, *, now: int | None = None,
        offload: bool = False,
    ) -> dict[str, Any]:
        """Everything ``status`` shows. ``configured_outputs``: when given, cursors not in it are
        flagged ``configured: False`` (they do not hold back retention). ``offload``: read on a
        connection of its own in gevent's threadpool (the agent's /health and /metrics), so neither
        the hub nor the spool's lock waits for it: rows and lag are O(log n), but the DLQ and
        quarantine counts grow with those tables."""
        configured = None if configured_outputs is None else set(configured_outputs)
        t = now_ms() if now is None else now
        if offload:
            return self._stats_in_pool(configured, t)
        return self._read(lambda c: self._stats(c, configured, t))

    def _stats_in_pool(self, configured: set[str] | None, t: int) -> dict[str, Any]:
        with self._stats_lock:  # one thread at a time on the connection
            if self._closed:
                raise SpoolError("spool is closed")
            if self._stats_conn is None:
                self._stats_conn = sqlite3.connect(
                    _ro_uri(self.path), uri=True, isolation_level=None, check_same_thread=False,
                    timeout=self.busy_timeout_ms / 1000,
                )
            return run_in_pool(self._stats, self._stats_conn, configured, t)

    def _stats(self, c: sqlite3.Connection, configured: set[str] | None, t: int) -> dict[str, Any]:
        c.execute("BEGIN")  # one consistent snapshot
        try:
            used, wal = self._sizes(c)
            first, last = _first_seq(c), _last_seq(c)
            gapped_below = _gapped_below(c, last)
            rows = _count_after(c, 0, first, last, gapped_below)
            counters = dict(c.execute("SELECT name, value FROM counters").fetchall())
            cfg_row = c.execute("SELECT value FROM agent_state WHERE key = 'spool_config'").fetchone()
            cfg = orjson.loads(cfg_row[0]) if cfg_row else {}
            cursors = {}
            for output, seq, gen, enabled, updated in c.execute(
                "SELECT output, seq, generation, enabled, updated_ms FROM cursors ORDER BY output"
            ).fetchall():
                lag_events = _count_after(c, seq, first, last, gapped_below)
                oldest_ing = _oldest_ingested_after(c, seq) if lag_events else None
                cursors[output] = {
                    "seq": seq,
                    "generation": gen,
                    "enabled": bool(enabled),
                    "updated_ms": updated,
                    "lag_events": lag_events,
                    "lag_seconds": max(0.0, (t - oldest_ing) / 1000) if oldest_ing is not None else 0.0,
                    "configured": True if configured is None else output in configured,
                }
            quarantine = dict(c.execute("SELECT input, count(*) FROM quarantine GROUP BY input").fetchall())
            dlq = dict(c.execute("SELECT output, count(*) FROM dlq GROUP BY output").fetchall())
            offsets = [
                {"input": i, "file_key": k, "path": p, "offset": o, "updated_ms": u}
                for i, k, p, o, u in c.execute(
                    'SELECT input, file_key, path, "offset", updated_ms FROM input_offsets '
                    "ORDER BY input, file_key"
                )
            ]
        finally:
            c.execute("COMMIT")
        return {
            "path": self.path,
            "schema_version": schema.schema_version(c),
            "rows": rows,
            "first_seq": first,
            "last_seq": last,
            "bytes": used + wal,
            "db_bytes": used,
            "wal_bytes": wal,
            "max_bytes": self.max_bytes if not self.readonly else cfg.get("max_bytes"),
            "on_full": self.on_full if not self.readonly else cfg.get("on_full"),
            "durability": self.durability if not self.readonly else cfg.get("durability"),
            "dropped_oldest_total": counters.get("dropped_oldest_total", 0),
            "duplicates_total": counters.get("duplicates_total", 0),
            "pruned_total": counters.get("pruned_total", 0),
            "cursors": cursors,
            "quarantine_total": sum(quarantine.values()),
            "quarantine": quarantine,
            "dlq": dlq,
            "input_offsets": offsets,
        }


def _has_column(c: sqlite3.Connection, table: str, column: str) -> bool:
    row = c.execute("SELECT 1 FROM pragma_table_info(?) WHERE name = ?", (table, column)).fetchone()
    return row is not None


def _get_cursor(c: sqlite3.Connection, output: str) -> Cursor | None:
    row = c.execute("SELECT seq, generation FROM cursors WHERE output = ?", (output,)).fetchone()
    return Cursor(*row) if row else None


def _where(*conds: tuple[str, Any]) -> tuple[str, tuple[Any, ...]]:
    used = [(sql, v) for sql, v in conds if v is not None]
    if not used:
        return "", ()
    return " WHERE " + " AND ".join(sql for sql, _ in used), tuple(v for _, v in used)


def _where_ids(clause: tuple[str, tuple], ids: Sequence[int] | None) -> tuple[str, tuple] | None:
    """``clause`` narrowed to ``ids`` when given; None when ``ids`` is given but empty (match nothing)."""
    where, args = clause
    if ids is None:
        return where, args
    id_list = [int(i) for i in ids]
    if not id_list:
        return None
    where += (" AND " if where else " WHERE ") + f"id IN ({','.join('?' * len(id_list))})"
    return where, (*args, *id_list)


def _upsert_output_state(
    c: sqlite3.Connection,
    output: str,
    now: int,
    *,
    success_ms: int | None = None,
    error_ms: int | None = None,
    error: str | None = None,
    delivered: int = 0,
    failed: int = 0,
    dlq: int = 0,
    extra: dict[str, Any] | None = None,
) -> None:
    c.execute(
        "INSERT INTO output_state(output, last_success_ms, last_error_ms, last_error, delivered_total, "
        "failed_total, dlq_total, extra, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, coalesce(?, '{}'), ?) "
        "ON CONFLICT(output) DO UPDATE SET "
        "last_success_ms = coalesce(excluded.last_success_ms, last_success_ms), "
        "last_error_ms = coalesce(excluded.last_error_ms, last_error_ms), "
        "last_error = coalesce(excluded.last_error, last_error), "
        "delivered_total = delivered_total + excluded.delivered_total, "
        "failed_total = failed_total + excluded.failed_total, "
        "dlq_total = dlq_total + excluded.dlq_total, "
        "extra = CASE WHEN ? IS NULL THEN extra ELSE excluded.extra END, "
        "updated_ms = excluded.updated_ms",
        (
            output,
            success_ms,
            error_ms,
            None if error is None else _reason(error),
            delivered,
            failed,
            dlq,
            None if extra is None else orjson.dumps(extra).decode(),
            now,
            None if extra is None else 1,
        ),
    )
