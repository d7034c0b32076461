"""agent.malloc_tuning: after pinning, a big block freed no longer pulls later big blocks into the heap."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.malloc_tuning import ENV_VAR, MMAP_THRESHOLD, glibc_version

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(glibc_version() is None, reason="the tuning applies to glibc only")

#: In a fresh interpreter: free one 8 MiB block (mmapped, as every block >= 128 KiB is at first), then
#: allocate 1.5 MiB blocks and say whether they sit in the heap ([heap] in /proc/self/maps) and what
#: the environment a child process would get says.
PROBE = textwrap.dedent("""
    import ctypes, os, sys
    from agent.malloc_tuning import pin_mmap_threshold
    pinned = pin_mmap_threshold() if sys.argv[1] == "pin" else None
    big = bytearray(8 << 20)
    del big
    blocks = [bytearray(int(sys.argv[2]) * 1024) for _ in range(8)]
    heap = next(line.split()[0] for line in open("/proc/self/maps") if line.rstrip().endswith("[heap]"))
    lo, hi = (int(x, 16) for x in heap.split("-"))
    addresses = [ctypes.addressof((ctypes.c_char * len(b)).from_buffer(b)) for b in blocks]
    print(pinned, sum(lo <= a < hi for a in addresses), os.environ.get("MALLOC_MMAP_THRESHOLD_"))
""")


def probe(mode: str, env: dict[str, str] | None = None, kib: int = 1536) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    done = subprocess.run([sys.executable, "-c", PROBE, mode, str(kib)], cwd=ROOT, capture_output=True,
                          text=True, env={**base, **(env or {})}, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_without_pinning_glibc_moves_big_blocks_into_the_heap_after_one_is_freed():
    """The control: glibc's dynamic threshold, which is what pinning is for."""
    pinned, in_heap, env = probe("leave")
    assert pinned == "None"
    assert int(in_heap) == 8
    assert env == "None"


def test_pinned_big_blocks_stay_out_of_the_heap_and_child_processes_inherit_the_setting():
    pinned, in_heap, env = probe("pin")
    assert pinned == "True"
    assert int(in_heap) == 0
    assert env == str(MMAP_THRESHOLD)  # the offload helper starts with it


def test_buffers_below_the_threshold_reuse_the_heap():
    """A chunk's 256 KiB read and ~0.7 MiB helper answer are not a fresh mapping (page faults) each."""
    assert MMAP_THRESHOLD > 768 * 1024
    pinned, in_heap, _ = probe("pin", kib=768)
    assert pinned == "True"
    assert int(in_heap) == 8


def test_an_operators_own_setting_is_kept():
    pinned, in_heap, env = probe("pin", {ENV_VAR: "262144"})
    assert pinned == "True"
    assert env == "262144"
    assert int(in_heap) == 0  # glibc applied the operator's fixed value at start-up


ARENA_PROBE = textwrap.dedent("""
    import os
    from agent.malloc_tuning import pin_arena_max
    print(pin_arena_max(), os.environ.get("MALLOC_ARENA_MAX"))
""")


def _arena_probe(env: dict[str, str] | None = None) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run([sys.executable, "-c", ARENA_PROBE], cwd=ROOT, capture_output=True, text=True,
                          env={**base, **(env or {})}, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_one_arena_is_pinned_and_inherited_by_child_processes():
    from agent.malloc_tuning import ARENA_MAX

    assert _arena_probe() == ["True", str(ARENA_MAX)]


def test_an_operators_own_arena_setting_is_kept():
    assert _arena_probe({"MALLOC_ARENA_MAX": "4"}) == ["True", "4"]
