"""A spool the CLI cannot use is the operator's problem, not a bug: a clear error, no traceback."""

from __future__ import annotations

import sqlite3

import pytest
from click.testing import CliRunner

from agent.cli import cli
from spool.store import Spool
from tests.cli_spool import spool_with_events

WRITES = [("dlq", "purge", "--yes"), ("dlq", "replay", "--all"), ("quarantine", "purge", "--yes"),
          ("cursor", "rewind", "a", "--count", "1")]


@pytest.fixture
def spool_setup(tmp_path):
    cfg, spool = spool_with_events(tmp_path, ["a"], range(1_000, 1_003))
    spool.ensure_cursor("a", "end")
    spool.dlq_add("a", spool.read_after(0, 1), "HTTP 400")
    yield cfg, spool
    spool.close()


@pytest.mark.parametrize("args", WRITES, ids=lambda a: " ".join(a[:2]))
def test_a_spool_locked_by_the_running_agent_is_a_clear_error(spool_setup, monkeypatch, args):
    cfg, spool = spool_setup
    monkeypatch.setitem(Spool.__init__.__kwdefaults__, "busy_timeout_ms", 50)  # not 5 s per test
    holder = sqlite3.connect(spool.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # what the agent does while it writes
    try:
        r = CliRunner().invoke(cli, [*args, "-c", cfg])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.exception
    assert "locked by another process" in r.output and "nothing was changed" in r.output
    assert len(spool.dlq_list()) == 1 and spool.dlq_replay_ids() == set()


@pytest.mark.parametrize("args", [("status",), ("dlq", "list"), ("cursor", "show"), *WRITES],
                         ids=lambda a: " ".join(a[:2]))
def test_a_file_that_is_not_a_spool_is_a_clear_error(tmp_path, args):
    cfg, spool = spool_with_events(tmp_path, ["a"], [])
    spool.close()
    for side in ("", "-wal", "-shm"):
        (tmp_path / "state" / f"spool.db{side}").unlink(missing_ok=True)
    (tmp_path / "state" / "spool.db").write_bytes(b"not a database " * 100)
    r = CliRunner().invoke(cli, [*args, "-c", cfg])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.exception
    assert "Error:" in r.output and "spool.db" in r.output and "not a" in r.output


@pytest.mark.parametrize("args", [("dlq", "show", "9" * 20), ("quarantine", "show", "9" * 20),
                                  ("dlq", "purge", "--id", "9" * 20, "--yes"),
                                  ("dlq", "replay", "--id", "9" * 20),
                                  ("dlq", "list", "--limit", "9" * 20),
                                  ("dlq", "purge", "--older-than", "9" * 20 + "d", "--yes"),
                                  ("cursor", "rewind", "a", "--count", "9" * 20),
                                  ("cursor", "rewind", "a", "--since", "9" * 20 + "d")],
                         ids=lambda a: " ".join(a[:3]))
def test_a_number_beyond_what_the_spool_stores_is_a_usage_error(spool_setup, args):
    cfg, _ = spool_setup
    r = CliRunner().invoke(cli, [*args, "-c", cfg])
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), r.exception
    assert "Error: Invalid value" in r.output


def test_a_programming_error_is_not_blamed_on_the_spool(spool_setup, monkeypatch):
    """sqlite3.ProgrammingError is a DatabaseError too, but it is our bug (a wrong binding, a closed
    connection), not a file that is no spool: it must not read "not a usable spool" with exit 1."""
    cfg, _ = spool_setup

    def broken(*_args, **_kwargs):
        raise sqlite3.ProgrammingError("Incorrect number of bindings supplied")

    monkeypatch.setattr(Spool, "dlq_purge", broken)
    r = CliRunner().invoke(cli, ["dlq", "purge", "--yes", "-c", cfg])
    assert isinstance(r.exception, sqlite3.ProgrammingError), r.output
    assert "not a usable spool" not in r.output
