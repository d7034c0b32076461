"""Agent-like harness: monkey-patch first (as agent/cli.py does), then tail into a real spool.

Usage: python -m tests.inputs.harness_tail <spool> <glob> <scan_interval_s> <watch 0|1|observer>
       <stop-file> <out.json>
``observer`` watches through watchdog's Observer threads instead of the loop's own inotify reader.
Stops when <stop-file> exists, then writes its status (and watch facts) to <out.json>.
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402

import gevent  # noqa: E402

from agent.inputs.tail import TailInput  # noqa: E402
from spool.store import Spool  # noqa: E402
from spool.writer import SpoolWriter  # noqa: E402


def main() -> None:
    spool_path, pattern, scan, watch, stop_file, out = sys.argv[1:7]
    spool = Spool(spool_path, durability="normal")
    writer = SpoolWriter(spool).start()
    if watch == "observer":
        from agent.inputs import watch as w

        w.INOTIFY = False
    tail = TailInput("tail", {"paths": [pattern], "scan_interval": float(scan), "watch": watch != "0"},
                     writer, spool)
    tail.start()
    ticks = [0]

    def ticker() -> None:  # proves the loop keeps running while watchdog threads block in inotify
        while True:
            ticks[0] += 1
            gevent.sleep(0.01)

    gevent.spawn(ticker)
    while not os.path.exists(stop_file):
        gevent.sleep(0.05)
    facts = {"status": tail.status(), "scans": tail.scans, "ticks": ticks[0]}
    if tail._watcher is not None:
        from agent.inputs import watch as w

        facts.update(wakeups=tail._watcher.wakeups, events_seen=tail._watcher.events_seen,
                     backend=tail._watcher.backend, main_native_id=threading.get_native_id(),
                     observer_created=w._shared is not None)
        obs = w._shared.observer if w._shared is not None else None
        if obs is not None:
            facts["observer_native_id"] = obs.native_id
    tail.stop()
    # counters move just after the commit the parent already saw: read them once readers have stopped
    facts["status"]["stats"] = tail.status()["stats"]
    writer.stop()
    spool.close()
    with open(out, "w") as fh:
        json.dump(facts, fh)


if __name__ == "__main__":
    main()
