"""Versioned schema of the spool, applied with ``sqlite_utils.Migrations``.

Each migration is recorded in ``_sqlite_migrations`` (set ``clawd-spool``) in the same transaction as its
changes, so re-opening a spool applies only what is missing. ``schema_version`` is the number of applied
migrations of this set. Never edit or reorder a released migration: add a new one at the end.

Page size and ``auto_vacuum`` are not migrations: they must be set before the first table exists, and are
set by ``spool.store`` when it creates the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

from .types import SchemaError

if TYPE_CHECKING:
    from sqlite_utils import Database, Migrations

MIGRATION_SET = "clawd-spool"
#: sqlite-utils' bookkeeping table (``Migrations.migrations_table``; a test keeps them equal). Named
#: here so that reading the applied names, which every start does, needs no sqlite-utils import: it
#: is imported only when a migration is due (~3 MiB of the agent's memory otherwise).
MIGRATIONS_TABLE = "_sqlite_migrations"
_MIGRATIONS: list[tuple[str, Callable[[Database], None]]] = []
#: ``agent_state`` key: retained events with a lower seq may have gaps (seqs no event holds; see
#: migration 0004); from it up to the last seq every seq is held. Absent before that migration.
GAPPED_BELOW = "seq_gapped_below"


def _migration(name: str) -> Callable[[Callable[[Database], None]], Callable[[Database], None]]:
    def register(fn: Callable[[Database], None]) -> Callable[[Database], None]:
        _MIGRATIONS.append((name, fn))
        return fn

    return register


def migrations() -> Migrations:
    """The migration set as ``sqlite_utils.Migrations`` (imported here, when one is due)."""
    from sqlite_utils import Migrations

    out = Migrations(MIGRATION_SET)
    for name, fn in _MIGRATIONS:
        out(name=name)(fn)
    return out


@_migration("0001_initial")
def _m0001_initial(db: Database) -> None:
    # AUTOINCREMENT: a seq is never reused, even after every row was pruned (cursors compare seqs).
    db.execute(
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id BLOB NOT NULL UNIQUE,
            ts_ms INTEGER NOT NULL,
            ingested_ms INTEGER NOT NULL,
            input TEXT NOT NULL,
            body BLOB NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE cursors (
            output TEXT PRIMARY KEY,
            seq INTEGER NOT NULL,
            generation INTEGER NOT NULL DEFAULT 0,
            updated_ms INTEGER NOT NULL,
            enabled INTEGER NOT NULL DEFAULT 1
        )"""
    )
    db.execute(
        """CREATE TABLE input_offsets (
            input TEXT NOT NULL,
            file_key TEXT NOT NULL,
            path TEXT NOT NULL,
            "offset" INTEGER NOT NULL,
            marker BLOB,
            marker_len INTEGER NOT NULL DEFAULT 0,
            updated_ms INTEGER NOT NULL,
            PRIMARY KEY (input, file_key)
        )"""
    )
    db.execute(
        """CREATE TABLE quarantine (
            id INTEGER PRIMARY KEY,
            input TEXT NOT NULL,
            source TEXT NOT NULL,
            "offset" INTEGER,
            reason TEXT NOT NULL,
            excerpt BLOB NOT NULL,
            created_ms INTEGER NOT NULL
        )"""
    )
    db.execute("CREATE INDEX quarantine_input ON quarantine(input, id)")
    db.execute(
        """CREATE TABLE dlq (
            id INTEGER PRIMARY KEY,
            output TEXT NOT NULL,
            seq INTEGER NOT NULL,
            event_id BLOB NOT NULL,
            body BLOB NOT NULL,
            reason TEXT NOT NULL,
            response_excerpt BLOB NOT NULL,
            attempts INTEGER NOT NULL,
            created_ms INTEGER NOT NULL
        )"""
    )
    db.execute("CREATE INDEX dlq_output ON dlq(output, id)")
    db.execute(
        """CREATE TABLE output_state (
            output TEXT PRIMARY KEY,
            last_success_ms INTEGER,
            last_error_ms INTEGER,
            last_error TEXT,
            delivered_total INTEGER NOT NULL DEFAULT 0,
            failed_total INTEGER NOT NULL DEFAULT 0,
            dlq_total INTEGER NOT NULL DEFAULT 0,
            extra TEXT NOT NULL DEFAULT '{}',
            updated_ms INTEGER NOT NULL
        )"""
    )
    db.execute("CREATE TABLE agent_state (key TEXT PRIMARY KEY, value) WITHOUT ROWID")
    db.execute("CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID")
    db.execute(
        "INSERT INTO counters(name, value) VALUES "
        "('dropped_oldest_total', 0), ('duplicates_total', 0), ('pruned_total', 0)"
    )


@_migration("0002_delivery_state")
def _m0002_delivery_state(db: Database) -> None:
    # cursors.done: JSON [[lo, hi], ...] of seq ranges above the cursor that the output already
    # finished (pipelined batches finish out of order); a restart skips them. Cleared by a rewind.
    db.execute("ALTER TABLE cursors ADD COLUMN done TEXT NOT NULL DEFAULT ''")
    # dlq.replay_ms: set by `clawd-agent dlq replay` (when requested); the output's drain re-sends
    # such entries, deletes them on success, and clears it on a new permanent failure.
    db.execute("ALTER TABLE dlq ADD COLUMN replay_ms INTEGER")
    db.execute("CREATE INDEX dlq_replay ON dlq(output, id) WHERE replay_ms IS NOT NULL")


@_migration("0003_dlq_updated_ms")
def _m0003_dlq_updated_ms(db: Database) -> None:
    # dlq.updated_ms: when the entry last failed (stored, or its replay refused again:
    # Spool.dlq_requeue), so `status` shows the latest reason, not the newest entry's. The index
    # finds each output's latest in O(log n). NULL on the entries stored before: failed last at
    # created_ms. Setting that here would rewrite every entry (490,000 of 900 bytes: 4.7 s and
    # ~450 MiB of WAL); NULL sorts lowest, and they all failed before any entry stored since.
    db.execute("ALTER TABLE dlq ADD COLUMN updated_ms INTEGER")
    db.execute("CREATE INDEX dlq_updated ON dlq(output, updated_ms, id)")


@_migration("0004_seq_gapped_below")
def _m0004_seq_gapped_below(db: Database) -> None:
    # Appends now leave no gap in the event sequence (spool.store._close_seq_gaps), so `stats` counts
    # rows and lag by subtraction. Before, each ignored event (a duplicate) used up a seq: record the
    # seq below which a spool written then may have gaps (0: none), counted exactly until pruned.
    # Only a spool that ever ignored one is counted here (once: 2M events, seconds when not cached).
    below = 0
    if db.execute("SELECT value FROM counters WHERE name = 'duplicates_total'").fetchone()[0]:
        n, first = db.execute("SELECT count(*), min(seq) FROM events").fetchone()
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        last = row[0] if row else 0
        below = 0 if n == 0 or n == last - first + 1 else last + 1
    db.execute("INSERT OR REPLACE INTO agent_state(key, value) VALUES (?, ?)", (GAPPED_BELOW, below))


#: The schema version this code writes: the number of migrations in the set.
LATEST_VERSION = len(_MIGRATIONS)
_KNOWN = [name for name, _ in _MIGRATIONS]


def applied_names(conn: sqlite3.Connection) -> list[str]:
    """Names of the migrations of our set applied to ``conn``'s database (read-only)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (MIGRATIONS_TABLE,)
    ).fetchone()
    if not exists:
        return []
    rows = conn.execute(
        f"SELECT name FROM {MIGRATIONS_TABLE} WHERE migration_set = ? ORDER BY rowid",
        (MIGRATION_SET,),
    ).fetchall()
    return [r[0] for r in rows]


def schema_version(conn: sqlite3.Connection) -> int:
    return len(applied_names(conn))


def check_known(names: list[str], path: str) -> None:
    unknown = [n for n in names if n not in _KNOWN]
    if unknown:
        raise SchemaError(
            f"{path}: spool schema has migrations this version does not know ({', '.join(unknown)}); "
            "it was written by a newer clawd-agent"
        )


def migrate(conn: sqlite3.Connection, path: str) -> int:
    """Apply pending migrations inside one ``BEGIN IMMEDIATE`` (so two processes never race), return
    the schema version. ``conn`` must be in autocommit mode (``isolation_level=None``)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        names = applied_names(conn)
        check_known(names, path)
        if len(names) < LATEST_VERSION:
            from sqlite_utils import Database

            # Inside our transaction, Database.atomic() nests as savepoints: all or nothing.
            migrations().apply(Database(conn))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return schema_version(conn)
