"""Cost of the delivery framework itself: spool -> Drain -> an output whose send() does nothing.
Prints figures; asserts nothing.

    .venv/bin/python bench/drain.py [--events 100000] [--concurrency 4] [--profile SCENARIO]

A spool in a temp dir is filled with N canonical events (real hushd audit lines mapped by
agent.mapping), then one drain per scenario delivers all of them, in this process, to a null output
(``send`` returns DELIVERED at once; the cursor commits are real, ``durability = "full"``):

- ``passthrough``: canonical format, no filter: no event is decoded;
- ``filter``: canonical with a filter (every event decoded, all pass);
- ``ecs``: the ECS transform through ``output.pipeline`` (file-output shape);
- ``es-encode``: the Elasticsearch output's own ``encode`` (ECS document + bulk action line), no HTTP.

So ``es-encode`` is the ceiling of the agent's delivery to Elasticsearch on one core before gzip and
the network; the difference between scenarios is what decoding and the transform cost, and
``passthrough`` is the framework's own per-event cost. Figures: events/s and CPU microseconds per
event (process CPU, so the spool's threadpool is included), batches and commits.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import gevent  # noqa: E402

from agent.event import encode_event  # noqa: E402
from agent.mapping import MappingContext, parse_line  # noqa: E402
from outputs.base import FilterConfig, Outcome, Output, OutputConfig  # noqa: E402
from outputs.drain import Drain, build_output_pipeline  # noqa: E402
from spool.store import Spool  # noqa: E402
from spool.types import EncodedEvent, IngestBatch  # noqa: E402
from tests.integration.harness import audit_line  # noqa: E402


class NullOutput(Output):
    type_name = "null"
    reads_events = False

    def send(self, batch: list[Any]) -> Outcome:
        return Outcome.delivered()


def null_es(name: str, concurrency: int) -> Output:
    from outputs.elasticsearch import ElasticsearchOutput, ElasticsearchOutputConfig

    class NullEs(ElasticsearchOutput):
        def open(self) -> None:
            pass

        def send(self, batch: list[Any]) -> Outcome:
            return Outcome.delivered()

        def close(self) -> None:
            pass

    return NullEs(name, ElasticsearchOutputConfig(hosts=["http://127.0.0.1:9"], concurrency=concurrency,
                                                  healthcheck_interval=0, batch_max_wait=0))


def fill(spool: Spool, n: int) -> None:
    ctx = MappingContext(host_name="bench-host", environment="bench")
    chunk: list[EncodedEvent] = []
    for i in range(n):
        ev = parse_line(audit_line(i), context=ctx)
        chunk.append(EncodedEvent(uuid.UUID(ev["event_id"]).bytes, i, encode_event(ev)))
        if len(chunk) == 10_000:
            spool.append(IngestBatch("bench", chunk))
            chunk = []
    if chunk:
        spool.append(IngestBatch("bench", chunk))


def scenario(name: str, concurrency: int) -> Output:
    common: dict[str, Any] = dict(type="null", concurrency=concurrency, healthcheck_interval=0,
                                  batch_max_wait=0)
    if name == "passthrough":
        return NullOutput(name, OutputConfig(**common))
    if name == "filter":
        return NullOutput(name, OutputConfig(filter=FilterConfig(min_severity="info",
                                                                 exclude_event_types=["none"]), **common))
    if name == "ecs":
        return NullOutput(name, OutputConfig(format="ecs", **common))
    if name == "es-encode":
        return null_es(name, concurrency)
    raise SystemExit(f"unknown scenario {name}")


def run(spool: Spool, output: Output, n: int) -> dict[str, float]:
    drain = Drain(output, spool, spool.reader(), pipeline_factory=build_output_pipeline)
    last = spool.last_seq()
    commits = 0
    orig = spool.commit_cursor

    def counting_commit(*a: Any, **kw: Any) -> bool:
        nonlocal commits
        commits += 1
        return orig(*a, **kw)

    spool.commit_cursor = counting_commit  # type: ignore[method-assign]
    cpu0, t0 = time.process_time(), time.perf_counter()
    g = gevent.spawn(drain.run)
    while (spool.get_cursor(output.name) or (0, 0))[0] < last:
        gevent.sleep(0.005)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    drain.stop()
    g.join()
    spool.commit_cursor = orig  # type: ignore[method-assign]
    return {"eps": n / elapsed, "us_cpu": cpu / n * 1e6, "batches": drain.stats.batches,
            "commits": commits, "seconds": elapsed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--scenarios", default="passthrough,filter,ecs,es-encode")
    ap.add_argument("--profile", metavar="SCENARIO", help="cProfile one scenario instead")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="clawd-drain-bench-") as tmp:
        spool = Spool(str(Path(tmp) / "spool.db"), durability="full")
        t = time.perf_counter()
        fill(spool, args.events)
        print(f"clawd-agent drain bench: {args.events:,} canonical events spooled in "
              f"{time.perf_counter() - t:.1f}s; null output, concurrency {args.concurrency}, "
              f"durability=full\n")
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            r = run(spool, scenario(args.profile, args.concurrency), args.events)
            prof.disable()
            print(f"{args.profile}: {r['eps']:,.0f} events/s under cProfile")
            pstats.Stats(prof).sort_stats("tottime").print_stats(20)
            return
        for name in args.scenarios.split(","):
            r = run(spool, scenario(name, args.concurrency), args.events)
            print(f"{name:<12}: {r['eps']:>9,.0f} events/s  {r['us_cpu']:>6.1f} CPU us/event  "
                  f"{r['batches']:>5} batches  {r['commits']:>5} cursor commits  ({r['seconds']:.2f}s)")
        spool.close()


if __name__ == "__main__":
    main()
