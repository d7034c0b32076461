import os
import sqlite3

import pytest

from spool import SchemaError, Spool, SpoolError
from spool import schema as spool_schema


def test_migrations_from_empty_create_every_table(spool_path):
    with Spool(spool_path) as s:
        assert s.schema_version == spool_schema.LATEST_VERSION >= 2  # 2: DLQ replay columns
        tables = {r[0] for r in s._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {
        "events",
        "cursors",
        "input_offsets",
        "quarantine",
        "dlq",
        "output_state",
        "agent_state",
        "counters",
        "_sqlite_migrations",
    } <= tables


def test_reopen_is_idempotent_and_keeps_data(spool_path):
    from tests.spool.conftest import batch, events

    with Spool(spool_path) as s:
        s.append(batch(events(3)))
    with Spool(spool_path) as s:
        assert s.schema_version == spool_schema.LATEST_VERSION
        applied = s._conn.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0]
        assert applied == spool_schema.LATEST_VERSION  # each migration once, not again on reopen
        assert s.stats()["rows"] == 3
        assert s.stats()["schema_version"] == spool_schema.LATEST_VERSION


def test_the_bookkeeping_table_is_sqlite_utils_own():
    from sqlite_utils import Migrations

    assert Migrations.migrations_table == spool_schema.MIGRATIONS_TABLE
    assert [m.name for m in spool_schema.migrations()._migrations] == spool_schema._KNOWN


def test_opening_an_up_to_date_spool_does_not_import_sqlite_utils(spool_path):
    """sqlite-utils applies migrations; a spool that has them all opens without it (~3 MiB)."""
    import subprocess
    import sys
    from pathlib import Path

    Spool(spool_path).close()  # created and migrated here
    script = (f"import sys; from spool import Spool; Spool({str(spool_path)!r}).close(); "
              "print('sqlite_utils' in sys.modules)")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_file_settings_wal_page_size_autovacuum(spool_path):
    with Spool(spool_path) as s:
        c = s._conn
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA page_size").fetchone()[0] == 16384
        assert c.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        assert c.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


@pytest.mark.parametrize(("durability", "level"), [("off", 0), ("normal", 1), ("full", 2), ("extra", 3)])
def test_durability_sets_synchronous(spool_path, durability, level):
    with Spool(spool_path, durability=durability) as s:
        assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == level
        assert s.stats()["durability"] == durability


def test_bad_settings_are_refused(spool_path):
    with pytest.raises(ValueError, match="durability"):
        Spool(spool_path, durability="fast")
    with pytest.raises(ValueError, match="on_full"):
        Spool(spool_path, on_full="ignore")
    assert not os.path.exists(spool_path)


def test_newer_schema_is_refused(spool_path):
    Spool(spool_path).close()
    c = sqlite3.connect(spool_path)
    c.execute(
        "INSERT INTO _sqlite_migrations(migration_set, name, applied_at) VALUES ('clawd-spool', '0099_x', '')"
    )
    c.commit()
    c.close()
    with pytest.raises(SchemaError, match="0099_x"):
        Spool(spool_path)
    with pytest.raises(SchemaError, match="newer"):
        Spool.open_readonly(spool_path)


def test_readonly_never_creates_or_migrates(tmp_path):
    missing = os.path.join(tmp_path, "missing.db")
    with pytest.raises(SpoolError, match="no spool"):
        Spool.open_readonly(missing)
    assert os.listdir(tmp_path) == []
    plain = os.path.join(tmp_path, "plain.db")
    c = sqlite3.connect(plain)
    c.execute("CREATE TABLE t(x)")
    c.commit()
    c.close()
    with pytest.raises(SchemaError, match="not a spool"):
        Spool.open_readonly(plain)
    c = sqlite3.connect(plain)
    assert [r[0] for r in c.execute("SELECT name FROM sqlite_master")] == ["t"]
    c.close()


def test_readonly_refuses_writes(spool_path):
    Spool(spool_path).close()
    with Spool.open_readonly(spool_path) as ro:
        with pytest.raises(SpoolError, match="read-only"):
            ro.ensure_cursor("x")
        assert ro.stats()["rows"] == 0
