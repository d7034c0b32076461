"""The cyclic garbage collector's settings for the agent and its offload helper.

Both processes create and free tens of container objects per event (decoded events, rendered
documents, batch items). Almost all of them are freed by reference counting the moment they are done
with; the cyclic collector only has to find the few cycles (greenlets, tracebacks). With CPython's
default thresholds (700, 10, 10) it runs a young collection every 700 net container allocations, and
every object alive at that instant (a chunk being rendered, batches in flight) is scanned and
promoted, so it is scanned again by the older generations. Measured with ``gc.callbacks`` in
bench/delivery.py's file -> Elasticsearch run (200,000 events): 728 young, 66 middle and 5 full
collections took 0.15 s of the agent's loop and 0.05 s of its helper; with the thresholds below, 98
young and 9 middle ones took 0.018 s of the loop and 0.007 s of the helper. Cyclic garbage (~1,300
objects in that run) waits longer to be freed: at most ``GEN0_THRESHOLD`` net allocations' worth.
"""

from __future__ import annotations

import gc

#: Net container allocations (allocations minus frees) between two young collections.
GEN0_THRESHOLD = 50_000
#: Young collections between two middle ones, and middle ones between two full ones: CPython's own.
#: Raising only the first is what removes the hot path's collections (few net allocations last); a
#: middle and a full collection still follow every 10 and 100 young ones, so cyclic garbage that
#: outlived two collections is not kept for hours on a quiet host.
GEN1_THRESHOLD = 10
GEN2_THRESHOLD = 10


def settle_collector() -> None:
    """Call once start-up is done: what exists now (modules, config, caches, long-lived greenlets)
    lives as long as the process, so it is frozen out of every later collection; then the hot path's
    thresholds apply."""
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
