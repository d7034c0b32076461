"""The real agent process: rotation kinds, quarantine beside good lines, status, and replay by rewind."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.integration.harness import Agent, audit_line, cli, line_id, output_ids, wait_for, write_config

pytestmark = pytest.mark.integration


def _delivered(tmp):
    return output_ids(tmp / "out" / "events.jsonl")


def test_rotations_quarantine_status_and_rewind(tmp_path):
    cfg = write_config(tmp_path)
    log = tmp_path / "in" / "audit.jsonl"
    agent = Agent(cfg, tmp_path / "agent.log").start()
    try:
        # 1. plain appends, with one bad line among good ones
        with open(log, "ab") as f:
            f.write(b"".join(audit_line(i) for i in range(0, 100)))
            f.write(b'{"not": "a clawdstrike record"}\n{broken json\n')
            f.write(b"".join(audit_line(i) for i in range(100, 200)))
        wait_for(lambda: len(set(_delivered(tmp_path))) >= 200, 30, "first 200 events")

        # 2. rename rotation (logrotate's default): old file renamed, more lines land in it, new file
        os.rename(log, tmp_path / "in" / "audit.jsonl.1")
        with open(tmp_path / "in" / "audit.jsonl.1", "ab") as f:
            f.write(b"".join(audit_line(i) for i in range(200, 250)))
        with open(log, "ab") as f:
            f.write(b"".join(audit_line(i) for i in range(250, 300)))
        wait_for(lambda: len(set(_delivered(tmp_path))) >= 300, 30, "events across a rename rotation")

        # 3. copytruncate: copy away, truncate in place, keep writing
        shutil.copy(log, tmp_path / "rotated-copy")
        with open(log, "r+b") as f:
            f.truncate(0)
        with open(log, "ab") as f:
            f.write(b"".join(audit_line(i) for i in range(300, 400)))
        wait_for(lambda: len(set(_delivered(tmp_path))) >= 400, 30, "events after copytruncate")

        # 4. status while running, as an operator would call it
        st = cli("status", "--json", config=cfg)
        doc = json.loads(st.stdout)
        assert doc["agent"]["running"] is True
        assert doc["inputs"]["audit"]["quarantined_stored"] == 2
        wait_for(lambda: json.loads(cli("status", "--json", config=cfg).stdout)["outputs"]["archive"]
                 ["lag_events"] == 0, 20, "lag to reach 0")

        q = cli("quarantine", "list", "--json", config=cfg)
        entries = json.loads(q.stdout)
        reasons = sorted(e["reason"] for e in entries)
        assert len(entries) == 2
        assert any("invalid JSON" in r for r in reasons), reasons
        assert any("unknown record shape" in r for r in reasons), reasons

        # 5. replay: rewind the output by 50 events while it runs
        before = len(_delivered(tmp_path))
        rw = cli("cursor", "rewind", "archive", "--count", "50", config=cfg)
        assert rw.returncode == 0, rw.stderr
        wait_for(lambda: len(_delivered(tmp_path)) >= before + 50, 30, "the rewound events to be re-sent")
        assert _delivered(tmp_path)[before:before + 50] == [line_id(i) for i in range(350, 400)]
    finally:
        if agent.alive():
            assert agent.stop() == 0
    ids = _delivered(tmp_path)
    assert set(ids) == {line_id(i) for i in range(400)}

    st = cli("status", "--json", config=cfg)
    assert json.loads(st.stdout)["agent"]["running"] is False
    assert st.returncode == 1  # stopped is not healthy


def test_check_config_names_the_key(tmp_path):
    cfg = write_config(tmp_path, output_extra="fsync = 'yes'")
    res = cli("check-config", config=cfg)
    assert res.returncode != 0
    assert "[outputs.archive] fsync: expected true or false, got a string" in res.stderr


def test_http_input_agent_heartbeats_and_stops_after_serving(tmp_path):
    """Through the real process: after the http input answered requests, the heartbeat still records
    the agent's state and SIGTERM stops it cleanly. The input counted answers by integer status,
    which the state's JSON refused: every heartbeat raised, and so did the shutdown, which left the
    process running."""
    import contextlib
    import socket
    import sqlite3

    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = write_config(tmp_path, inputs=f"""
[inputs.hook]
type = "http"
listen = "127.0.0.1:{port}"
""")
    agent = Agent(cfg, tmp_path / "agent.log").start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(url + "/healthz"), 20, "the http input to listen")
        with requests.Session() as session:
            for i in range(3):
                r = session.post(url + "/audit-webhook", data=audit_line(i), timeout=10,
                                 headers={"Content-Type": "application/json"})
                assert r.status_code == 200
        wait_for(lambda: _delivered(tmp_path) == [line_id(i) for i in range(3)], 20, "delivery")

        def recorded() -> dict:
            with contextlib.closing(sqlite3.connect(tmp_path / "state" / "spool.db")) as db:
                row = db.execute("SELECT value FROM agent_state WHERE key = 'input_stats'").fetchone()
            return json.loads(row[0])["hook"] if row else {}

        wait_for(lambda: recorded().get("responses", {}).get("200", 0) >= 3, 20,
                 "a heartbeat with the answers")
    finally:
        code = agent.stop(timeout=20) if agent.alive() else agent.proc.returncode
    log = (tmp_path / "agent.log").read_text()
    assert code == 0, log[-2000:]
    assert "Traceback" not in log and "failed with" not in log


def _answers(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False
