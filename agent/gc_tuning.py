"""The cyclic garbage collector's settings for the agent and its offload helper.

Both processes create and free tens of container objects per event (decoded events, rendered
documents, batch items). Almost all of them are freed by reference counting the moment they are done
with; the cyclic collector only has to find the few cycles (greenlets, tracebacks). With CPython's
default thresholds (700, 10, 10) it runs a young collection every 700 net container allocations, about
every 30 events here, and every object alive at that instant (a chunk being rendered, batches in
flight) is scanned and promoted, so it is scanned again by the older generations. Measured with
``gc.callbacks`` in bench/delivery.py's file -> Elasticsearch run (200,000 events): 728 young, 66
middle and 5 full collections took 0.15 s of the agent's loop and 0.05 s of its helper; with the
thresholds below, one collection in the whole run. Cyclic garbage (~1,300 objects in that run) now
waits longer to be freed: at most ``GEN0_THRESHOLD`` allocations' worth.
"""

from __future__ import annotations

import gc

#: Net container allocations between two young collections.
GEN0_THRESHOLD = 50_000
#: Young collections between two middle ones, and middle ones between two full ones.
GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 100


def settle_collector() -> None:
    """Call once start-up is done: what exists now (modules, config, caches, long-lived greenlets)
    lives as long as the process, so it is frozen out of every later collection; then the hot path's
    thresholds apply."""
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
