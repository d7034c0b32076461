"""Real second processes: a read-only ``status`` while the agent holds a write transaction, and SIGKILL."""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

from spool import Spool
from tests.spool.conftest import batch, events

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

STATUS = textwrap.dedent(
    """
    import json, sys
    from spool import Spool
    with Spool.open_readonly(sys.argv[1]) as ro:
        st = ro.stats()
        print(json.dumps({"rows": st["rows"], "cursors": sorted(st["cursors"])}))
    """
)


def run_py(code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_readonly_status_while_writer_holds_a_transaction(spool_path):
    with Spool(spool_path) as agent:
        agent.append(batch(events(7)))
        agent.ensure_cursor("o")
        conn = agent._conn
        conn.execute("BEGIN IMMEDIATE")  # the agent is mid-transaction (holds the write lock)
        try:
            conn.execute(
                "INSERT INTO events(event_id, ts_ms, ingested_ms, input, body) VALUES (?, 1, 1, 'x', x'00')",
                (b"\xff" * 16,),
            )
            r = run_py(STATUS, spool_path)
        finally:
            conn.execute("ROLLBACK")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"rows": 7, "cursors": ["o"]}  # committed state only, no waiting


def test_cli_rewind_from_another_process_while_agent_runs(spool_path):
    with Spool(spool_path) as agent:
        agent.append(batch(events(5)))
        agent.ensure_cursor("o")
        agent.commit_cursor("o", 5, 0)
        code = "import sys; from spool import Spool; print(Spool(sys.argv[1]).rewind('o', count=2)[1].seq)"
        r = run_py(code, spool_path)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "3"
        assert agent.commit_cursor("o", 5, 0) is False


WRITER = textwrap.dedent(
    """
    import sys
    from spool import EncodedEvent, IngestBatch, InputOffset, Spool
    path, start = sys.argv[1], int(sys.argv[2])
    s = Spool(path, durability="full")
    n = start
    print("ready", flush=True)
    while True:
        size = 1 + (n * 7919) % 97   # varying batch sizes
        evs = [EncodedEvent((n + i).to_bytes(16, "big"), n + i, b"b" * 300) for i in range(size)]
        n += size
        # offset = number of events appended so far, committed with the events
        s.append(IngestBatch("crash", evs, [InputOffset("f", "/f", n)], []))
    """
)


def test_sigkill_at_random_points_never_loses_or_duplicates(spool_path):
    rnd = random.Random(1234)
    start = prev = 0
    for _round in range(6):
        p = subprocess.Popen(
            [sys.executable, "-c", WRITER, spool_path, str(start)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert p.stdout.readline().strip() == "ready"
        time.sleep(rnd.uniform(0.05, 0.6))
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()
        conn = sqlite3.connect(spool_path)
        ids = [int.from_bytes(r[0], "big") for r in conn.execute("SELECT event_id FROM events ORDER BY seq")]
        row = conn.execute('SELECT "offset" FROM input_offsets WHERE input = ?', ("crash",)).fetchone()
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
        offset = row[0] if row else 0
        # exactly the events 0..offset-1, each once, in order: the offset matches the events present
        assert ids == list(range(offset)), f"round {_round}"
        assert offset >= prev  # committed work is never rolled back
        prev = offset
        # the next run resumes a little before the stored offset: a re-read must not duplicate
        start = max(0, offset - rnd.randint(0, 50))
    assert prev > 0
