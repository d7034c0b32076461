"""A fixed glibc mmap threshold for the long-running agent, so big transient buffers go back to the OS.

The agent allocates buffers of 128 KiB to a few MiB for a moment and frees them: helper frames (~0.5 MiB
of pickled events), joined bulk bodies before gzip, spool read chunks. glibc serves a block of at least
``M_MMAP_THRESHOLD`` with its own mmap, unmapped on free, but by default it raises that threshold to the
size of each such block freed ("dynamic mmap threshold"), after which those buffers come from the
heap, which can only shrink from its top: the heap's high-water mark stays resident. Setting the
parameter turns the adjustment off (glibc manual, "Malloc Tunable Parameters":
https://www.gnu.org/software/libc/manual/html_node/Malloc-Tunable-Parameters.html; the same value can
be given at start-up as the environment variable ``MALLOC_MMAP_THRESHOLD_``). In bench/delivery.py's
throughput run this lowered the agent's peak RSS by ~3.5 MiB and its helper's by ~1.5 MiB.

The value is 1 MiB, not glibc's initial 128 KiB: a fresh mapping costs a page fault and a zeroed page
for every 4 KiB touched, and the buffers of 128 KiB to 1 MiB come several times per chunk of events
(256 KiB reads and helper jobs, ~0.7 MiB helper answers). With 128 KiB the kernel's share of the
machine's CPU in the file -> Elasticsearch run was 19-20% (perf, system-wide); with these buffers
served from the heap, where they are reused, ~1.5-3 points less, and eight interleaved runs gave
+4.5% events/s on average (5 of 8 faster) for +1 MiB of peak RSS. Bulk bodies (~2 MiB) are still
mapped and unmapped.
"""

from __future__ import annotations

import os

#: Blocks of this size or more are mapped for themselves and unmapped when freed.
MMAP_THRESHOLD = 1024 * 1024
#: Read by glibc when a process starts, so the offload helper and hooks the agent starts inherit it.
ENV_VAR = "MALLOC_MMAP_THRESHOLD_"
_M_MMAP_THRESHOLD = -3  # <malloc.h>


def glibc_version() -> str | None:
    """``"glibc 2.36"`` on glibc; None elsewhere (musl, other systems), where nothing is tuned."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") or None
    except (ValueError, OSError):
        return None


def pin_mmap_threshold() -> bool:
    """Fix the threshold in this process and, through the environment, in the processes it starts.
    An operator's own ``MALLOC_MMAP_THRESHOLD_`` (applied by glibc at start-up) is left as it is.
    True when the threshold is fixed."""
    return _pin(_M_MMAP_THRESHOLD, MMAP_THRESHOLD, ENV_VAR)


def _pin(param: int, value: int, env_var: str) -> bool:
    """``mallopt(param, value)`` here and ``env_var`` for child processes (glibc reads it at their
    start), unless the operator set ``env_var`` (then glibc applied it here already)."""
    if glibc_version() is None:
        return False
    if env_var in os.environ:
        return True
    import ctypes

    if ctypes.CDLL(None).mallopt(param, value) != 1:
        return False
    os.environ[env_var] = str(value)
    return True


#: One malloc arena for all of a process's threads. glibc gives each thread that allocates an arena of
#: its own (up to 8 per core), and each keeps its own freed memory: the agent's SQLite thread (inserts,
#: page cache, the rows kept for the drains) and the helper's answer writer each held a few MiB apart
#: from the main thread's heap. In bench/delivery.py's HEC-with-acks run (the agent's largest peak),
#: one arena lowered the peak RSS in 6 of 6 interleaved pairs, by 1.5-7.2 MiB (94.7-96.1 MiB against
#: 96.9-102.7); file -> ES speed was unchanged within the host's noise. The threads hardly allocate
#: at once: Python's allocations run under the interpreter lock.
ARENA_MAX = 1
ARENA_ENV_VAR = "MALLOC_ARENA_MAX"
_M_ARENA_MAX = -8  # <malloc.h>


def pin_arena_max() -> bool:
    """``ARENA_MAX`` in this process (call it before starting threads) and, through the environment,
    in the processes it starts. An operator's own ``MALLOC_ARENA_MAX`` is left as it is. True when set."""
    return _pin(_M_ARENA_MAX, ARENA_MAX, ARENA_ENV_VAR)
