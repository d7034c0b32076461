"""Append throughput of the spool through SpoolWriter (group commit), and how responsive the gevent
loop stays meanwhile. Prints figures; asserts nothing.

    .venv/bin/python bench/spool_append.py [--events 300000] [--inputs 4] [--batch 500]

Each configuration: ``--inputs`` greenlets each write batches of ``--batch`` events (~400-byte bodies,
UUIDv7 ids as 16-byte BLOBs) until ``--events`` are spooled. "max stall" is the longest gap seen by a
greenlet that wakes every 1 ms: how long the hub was blocked (by SQLite work done inline).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gevent

from spool import EncodedEvent, IngestBatch, InputOffset, Spool, SpoolWriter


def uuid7(ms: int) -> bytes:
    rand = bytearray(os.urandom(10))
    rand[0] = 0x70 | (rand[0] & 0x0F)  # version 7
    rand[2] = 0x80 | (rand[2] & 0x3F)  # variant
    return ms.to_bytes(6, "big") + bytes(rand)


def make_batches(n_inputs: int, per_input: int, batch: int) -> list[list[IngestBatch]]:
    body = (b'{"kind":"audit","msg":"' + b"x" * 360 + b'"}')[:400]
    now = time.time_ns() // 1_000_000
    out = []
    for i in range(n_inputs):
        batches = []
        offset = 0
        for _ in range(per_input // batch):
            events = [EncodedEvent(uuid7(now), now, body) for _ in range(batch)]
            offset += batch * 401
            batches.append(IngestBatch(f"in{i}", events, [InputOffset("file", f"/var/log/in{i}", offset)]))
        out.append(batches)
    return out


def run(durability: str, offload: bool, args: argparse.Namespace) -> dict[str, float]:
    d = tempfile.mkdtemp(prefix="spoolbench")
    try:
        spool = Spool(os.path.join(d, "spool.db"), durability=durability, offload=offload)
        writer = SpoolWriter(spool, max_events=args.max_events, max_delay_s=args.max_delay).start()
        per_input = args.events // args.inputs
        work = make_batches(args.inputs, per_input, args.batch)
        stall = [0.0]
        running = [True]

        def ticker() -> None:
            last = time.perf_counter()
            while running[0]:
                gevent.sleep(0.001)
                t = time.perf_counter()
                stall[0] = max(stall[0], t - last)
                last = t

        def feed(batches: list[IngestBatch]) -> None:
            for b in batches:
                writer.write(b)

        tick = gevent.spawn(ticker)
        t0 = time.perf_counter()
        gevent.joinall([gevent.spawn(feed, w) for w in work], raise_error=True)
        elapsed = time.perf_counter() - t0
        running[0] = False
        tick.join()
        writer.stop()
        total = writer.events_committed
        res = {
            "events": total,
            "seconds": elapsed,
            "eps": total / elapsed,
            "commits": writer.commits,
            "events_per_commit": total / max(1, writer.commits),
            "max_stall_ms": stall[0] * 1000,
        }
        spool.close()
        return res
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--inputs", type=int, default=4)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--max-events", type=int, default=20_000)
    p.add_argument("--max-delay", type=float, default=0.0)
    p.add_argument("--durability", nargs="*", default=["full", "normal"])
    p.add_argument("--offload", nargs="*", default=["yes", "no"])
    args = p.parse_args()
    print(
        f"events={args.events} inputs={args.inputs} batch={args.batch} events/batch "
        f"writer max_events={args.max_events} max_delay_s={args.max_delay} body=400 B id=16 B (UUIDv7)"
    )
    for durability in args.durability:
        for off in args.offload:
            r = run(durability, off == "yes", args)
            print(
                f"durability={durability:<6} offload={off:<3} {r['eps']:>9,.0f} events/s  "
                f"({r['events']:,} in {r['seconds']:.2f} s, {r['commits']} commits, "
                f"{r['events_per_commit']:.0f} events/commit, max loop stall {r['max_stall_ms']:.1f} ms)"
            )


if __name__ == "__main__":
    main()
