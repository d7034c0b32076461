"""Runs real `clawd-agent` processes for integration tests and generates hushd audit lines."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]


def audit_line(i: int, *, run: int = 0) -> bytes:
    """One hushd AuditEvent (file_jsonl shape) with a deterministic UUID id."""
    eid = uuid.UUID(int=(run << 64) | (i + 1), version=4)
    blocked = i % 3 == 0
    rec = {
        "id": str(eid),
        "timestamp": f"2026-11-26T08:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000:03d}000000Z",
        "event_type": "violation" if blocked else "check",
        "action_type": "file_access",
        "target": f"/home/agent/project/file-{i}.txt",
        "decision": "blocked" if blocked else "allowed",
        "guard": "forbidden_path",
        "severity": "Critical" if blocked else "Info",
        "message": "Access to forbidden path" if blocked else "Allowed",
        "agent_id": "agent-007",
        "metadata": {"contributing_policies": [], "policy_hash": "ab" * 32},
    }
    return orjson.dumps(rec) + b"\n"


def line_id(i: int, *, run: int = 0) -> str:
    return str(uuid.UUID(int=(run << 64) | (i + 1), version=4))


def write_config(tmp: Path, *, extra: str = "", output_extra: str = "", inputs: str | None = None) -> Path:
    (tmp / "in").mkdir(exist_ok=True)
    cfg = tmp / "agent.toml"
    inputs = inputs if inputs is not None else f"""
[inputs.audit]
type = "file"
paths = ["{tmp}/in/*.jsonl"]
scan_interval = "100ms"
rotate_wait = "1s"
"""
    cfg.write_text(f"""
[agent]
data_dir = "{tmp}/state"
log_format = "json"
heartbeat_interval = "200ms"
shutdown_timeout = "5s"

[spool]
durability = "full"
commit_max_delay = "5ms"

[metrics]
enabled = false
{inputs}
[outputs.archive]
type = "file"
path = "{tmp}/out/events.jsonl"
max_bytes = 0
batch_max_events = 200
batch_max_wait = 0
{output_extra}
{extra}
""")
    return cfg


class Agent:
    """A `clawd-agent run` child process."""

    def __init__(self, config: Path, log_path: Path):
        self.config = config
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Agent:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(self.config)],
                                     cwd=ROOT, env=env, stdout=self._log, stderr=self._log)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log.close()

    def stop(self, timeout: float = 20) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def cli(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "agent", *args, "-c", str(config)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def complete_lines(path: Path) -> list[bytes]:
    """The lines of a file output; a last line the agent is still writing is not counted yet."""
    if not path.exists():
        return []
    data = path.read_bytes()
    return [line for line in data[: data.rfind(b"\n") + 1].splitlines() if line]


def output_ids(path: Path) -> list[str]:
    """Source ids in a file output (complete lines only)."""
    return [orjson.loads(line)["source"]["id"] for line in complete_lines(path)]


def spool_ids(spool_path: Path) -> list[bytes]:
    con = sqlite3.connect(f"file:{spool_path}?mode=ro", uri=True)
    try:
        return [r[0] for r in con.execute("SELECT event_id FROM events ORDER BY seq")]
    finally:
        con.close()


def wait_for(cond, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
