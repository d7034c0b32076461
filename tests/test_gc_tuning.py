"""agent.gc_tuning: after start-up, keeping a chunk's worth of event dicts alive costs no collection."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from agent.gc_tuning import GEN0_THRESHOLD

ROOT = Path(__file__).resolve().parents[1]

#: In a fresh interpreter (collector settings are process-wide): build 2,000 event-like dicts and keep
#: them, as a drain rendering a chunk does, and count the collections that ran meanwhile.
PROBE = textwrap.dedent("""
    import gc, sys
    from agent.gc_tuning import settle_collector
    if sys.argv[1] == "settle":
        settle_collector()
    runs = []
    gc.callbacks.append(lambda phase, info: phase == "start" and runs.append(info["generation"]))
    kept = [{"decision": {"allowed": True}, "resource": {"name": str(i)}, "source": {}} for i in range(2000)]
    print(len(runs), gc.get_freeze_count() > 0, gc.get_threshold()[0])
""")


def _probe(mode: str) -> tuple[int, bool, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]), out[1] == "True", int(out[2])


def test_settled_collector_freezes_start_up_objects_and_skips_young_collections_of_a_chunk():
    default_runs, default_frozen, _ = _probe("default")
    runs, frozen, gen0 = _probe("settle")
    assert default_runs > 0, "the probe must make CPython's default thresholds collect"
    assert not default_frozen
    assert (runs, frozen, gen0) == (0, True, GEN0_THRESHOLD)
