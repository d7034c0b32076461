"""agent.gil_tuning: the agent and its offload helper both run with the shorter switch interval once
started (CPython's 5 ms default lets a busy loop keep SQLite's thread waiting for the lock)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from agent.gil_tuning import SWITCH_INTERVAL_S

ROOT = Path(__file__).resolve().parents[1]

#: In a fresh interpreter (the interval is process-wide): the interval before and after the start of
#: the agent's supervisor, or of the helper's job handlers.
PROBE = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()
    import sys
    from pathlib import Path
    from agent.config import load_config
    from tests.integration.harness import write_config
    cfg_path = write_config(Path(sys.argv[2]))
    before = sys.getswitchinterval()
    if sys.argv[1] == "agent":
        from agent.supervisor import Supervisor
        sup = Supervisor(load_config(cfg_path))
        sup.start()
        after = sys.getswitchinterval()
        sup.shutdown()
    else:
        from agent.offload import _Jobs
        _Jobs(str(cfg_path)).warm_up()
        after = sys.getswitchinterval()
    print(before, after)
""")


def _probe(which: str, tmp: Path) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, which, str(tmp)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after = out.stdout.split()[-2:]
    return float(before), float(after)


def test_the_agent_runs_with_the_short_switch_interval(tmp_path: Path) -> None:
    before, after = _probe("agent", tmp_path)
    assert before == 0.005 and after == SWITCH_INTERVAL_S < before


def test_the_offload_helper_runs_with_the_short_switch_interval(tmp_path: Path) -> None:
    before, after = _probe("helper", tmp_path)
    assert before == 0.005 and after == SWITCH_INTERVAL_S < before
