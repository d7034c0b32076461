"""`status` and the commands that act on "is the agent running?" (`dlq replay`, `cursor delete`) give
one answer: the recorded pid is alive *and* its heartbeat is fresh (agent.liveness). A live pid alone
is no proof: after a crash it may be another process's, and a hung agent keeps its pid."""

from __future__ import annotations

import os
import subprocess
import time

import orjson
import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.liveness import agent_running
from tests.cli_spool import spool_with_events

HOUR_MS = 3_600_000


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.mark.parametrize(("case", "running"), [("fresh heartbeat", True), ("crashed an hour ago", False),
                                               ("pid gone", False), ("never ran", False)])
def test_status_and_dlq_replay_agree_on_whether_the_agent_runs(tmp_path, case, running):
    cfg, spool = spool_with_events(tmp_path, ["es"], range(1_000, 1_003))
    spool.dlq_add("es", spool.read_after(0, 3), "HTTP 400 mapper_parsing_exception")
    now = now_ms()
    if case == "fresh heartbeat":
        spool.set_agent_state(pid=os.getpid(), started_ms=now - HOUR_MS, heartbeat_ms=now)
    elif case == "crashed an hour ago":  # its pid now belongs to a live process (here: this one)
        spool.set_agent_state(pid=os.getpid(), started_ms=now - 2 * HOUR_MS, heartbeat_ms=now - HOUR_MS)
    elif case == "pid gone":
        spool.set_agent_state(pid=dead_pid(), started_ms=now - HOUR_MS, heartbeat_ms=now)
    st = orjson.loads(CliRunner().invoke(cli, ["status", "--json", "-c", cfg]).output)
    r = CliRunner().invoke(cli, ["dlq", "replay", "--all", "-c", cfg])
    spool.close()
    assert r.exit_code == 0, r.output
    assert st["agent"]["running"] is running
    said = "the running agent sends them now" if running else "they are sent when the agent starts"
    assert r.output.strip() == f"replay requested for 3 DLQ entries; {said}"


def test_agent_running_needs_a_live_pid_and_a_heartbeat_within_three_intervals():
    now = now_ms()
    alive = {"pid": os.getpid(), "started_ms": now - HOUR_MS}
    assert agent_running({**alive, "heartbeat_ms": now - 6_900}, 2.0, now)  # 3 x 2 s + 1 s of slack
    assert not agent_running({**alive, "heartbeat_ms": now - 7_100}, 2.0, now)
    assert agent_running({**alive, "heartbeat_ms": now - 7_100}, 5.0, now)
    assert not agent_running({**alive, "pid": dead_pid(), "heartbeat_ms": now}, 2.0, now)
    assert not agent_running({"pid": 0, "heartbeat_ms": now}, 2.0, now)
    assert not agent_running(None, 2.0)
