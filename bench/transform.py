"""Transform throughput on one core, per format, on the real sample events. Prints figures; asserts nothing.

    .venv/bin/python bench/transform.py [--events 200000] [--repeat 5] [--profile FORMAT]

Each format renders events exactly as an output's pipeline does (``transforms.pipeline.build_pipeline``:
format function + orjson with sorted keys, or the CEF line as UTF-8), cycling through the 23 real hushd
0.1.0 audit events of ``agent/data/sample-audit-forward.jsonl`` mapped with the default ``[privacy]``
and ``[enrichment]`` (so the events carry ``mitre``). ``cef+syslog`` adds the RFC 5424 header and RFC
6587 octet counting of the syslog output. The best of ``--repeat`` interleaved runs is reported (the
machine's other load only ever slows a run down).

The ``render_items es ...`` lines measure the whole delivery render loop of an Elasticsearch output with
``format = "ecs"`` (``outputs.render.Renderer.render_items``: orjson decode of the spool body, pipeline
render, ``_bulk`` action line), on spool-like rows (seq, 16 raw UUID bytes, canonical body): once with
the default data stream and once with a dated index (``%Y.%m.%d``, an action line per event's day).

The ingest lines measure what ``[privacy]`` and ``[enrichment]`` add to ``agent.mapping.parse_line`` on
the hot path (hushd audit lines), with and without each.

``--profile FORMAT`` runs that format once under cProfile and prints the top 20 functions by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import pstats
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.event import encode_event  # noqa: E402
from agent.mapping import MappingContext, parse_line  # noqa: E402
from outputs.elasticsearch import ElasticsearchOutput, ElasticsearchOutputConfig  # noqa: E402
from outputs.render import Renderer  # noqa: E402
from transforms.config import EnrichmentConfig, PrivacyConfig, TransformConfig  # noqa: E402
from transforms.pipeline import build_pipeline, compile_ingest  # noqa: E402
from transforms.syslog import frame_rfc5424, octet_count, severity_to_syslog  # noqa: E402

SAMPLE = ROOT / "agent" / "data" / "sample-audit-forward.jsonl"
TARGET = 50_000


def sample_lines() -> list[bytes]:
    return [line for line in SAMPLE.read_bytes().splitlines() if line.strip()]


def context(privacy: bool, enrichment: bool) -> MappingContext:
    post = compile_ingest(PrivacyConfig() if privacy else PrivacyConfig(builtin=[]),
                          EnrichmentConfig(mitre=enrichment))
    return MappingContext(labels={"team": "security"}, environment="production", tenant_id="acme",
                          host_name="dev-laptop", postprocess=post)


def renderers() -> dict[str, Callable[[dict, bytes], bytes]]:
    out = {fmt: build_pipeline(TransformConfig(format=fmt)).render
           for fmt in ("canonical", "ecs", "ocsf", "cef")}
    cef = out["cef"]

    def cef_syslog(event: dict, body: bytes) -> bytes:
        line = cef(event, body).decode("utf-8")
        severity = severity_to_syslog(event["decision"]["severity"])
        frame = frame_rfc5424(line, timestamp=event["timestamp"], hostname="dev-laptop",
                              app_name="clawd-agent", severity=severity)
        return octet_count(frame)

    out["cef+syslog"] = cef_syslog
    return out


def best_rates(runs: dict[str, Callable[[], None]], n: int, repeat: int) -> dict[str, float]:
    """Events/s of each run, best of ``repeat``. The runs are interleaved (a, b, c, a, b, c, ...) so a
    burst of load from elsewhere on the machine slows all of them alike instead of one."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: n / t for name, t in best.items()}


def format_runs(formats: dict[str, Callable[[dict, bytes], bytes]], items: list[tuple[dict, bytes]],
                n: int) -> dict[str, Callable[[], None]]:
    work = list(itertools.islice(itertools.cycle(items), n))

    def runner(render: Callable[[dict, bytes], bytes]) -> Callable[[], None]:
        def run() -> None:
            for event, body in work:
                render(event, body)
        return run

    return {name: runner(render) for name, render in formats.items()}


def es_renderer(index: str = "") -> Renderer:
    """The drain's renderer for an Elasticsearch output (no filter, no routes), built as the agent does
    (``Renderer.from_config``: build_output + build_output_pipeline) without a whole agent config."""
    cfg = ElasticsearchOutputConfig(hosts=["http://127.0.0.1:9200"], index=index)
    cfg.validate()
    output = ElasticsearchOutput("es", cfg)
    output.pipeline = build_pipeline(cfg.transform_config())
    return Renderer(output, None)


def es_rows(items: list[tuple[dict, bytes]]) -> list[tuple[int, bytes, bytes]]:
    """Spool rows as the reader hands them over: (seq, 16 raw UUID bytes, canonical body)."""
    return [(seq, uuid.UUID(ev["event_id"]).bytes, body) for seq, (ev, body) in enumerate(items, 1)]


def es_runs(items: list[tuple[dict, bytes]], n: int, chunk: int = 500) -> dict[str, Callable[[], None]]:
    rows = list(itertools.islice(itertools.cycle(es_rows(items)), n))
    chunks = [rows[i:i + chunk] for i in range(0, len(rows), chunk)]

    def runner(renderer: Renderer) -> Callable[[], None]:
        def run() -> None:
            for c in chunks:
                renderer.render_items(c)
        return run

    return {"es ecs": runner(es_renderer()), "es ecs dated": runner(es_renderer("clawd-%Y.%m.%d"))}


def ingest_runs(lines: list[bytes], n: int) -> dict[str, Callable[[], None]]:
    work = list(itertools.islice(itertools.cycle(lines), n))

    def runner(ctx: MappingContext) -> Callable[[], None]:
        def run() -> None:
            for line in work:
                encode_event(parse_line(line, context=ctx))
        return run

    return {label: runner(context(p, e)) for label, p, e in (
        ("plain", False, False), ("+privacy", True, False), ("+enrichment", False, True),
        ("+both (default)", True, True))}


def map_lines_runs(lines: list[bytes], n: int) -> dict[str, Callable[[], None]]:
    """``agent.inputs.base.map_lines`` (what the tail input's helper runs: parse_line, the default
    ``[privacy]`` and ``[enrichment]``, and the spool encoding) in batches of 1,000, on the sample
    lines cycled and on N distinct lines as bench/delivery.py writes them (``audit_line``: a new id,
    timestamp and target per event, so the per-string caches miss). A fresh context per run."""
    from agent.inputs.base import Line, map_lines
    from tests.integration.harness import audit_line

    corpora = {"sample lines": list(itertools.islice(itertools.cycle(lines), n)),
               "distinct lines": [audit_line(i).rstrip(b"\n") for i in range(n)]}

    def runner(datas: list[bytes]) -> Callable[[], None]:
        batches = [[Line(0, len(d) + 1, d) for d in datas[i:i + 1000]] for i in range(0, len(datas), 1000)]

        def run() -> None:
            ctx = context(True, True)
            for batch in batches:
                map_lines(batch, source="bench", context=ctx, kind=None, max_line_bytes=1 << 20)
        return run

    return {label: runner(datas) for label, datas in corpora.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--profile", metavar="FORMAT", help="cProfile one format (canonical, ecs, ocsf, cef, "
                    "cef+syslog, es ecs, es ecs dated) and print the top 20 functions")
    args = ap.parse_args(argv)

    lines = sample_lines()
    ctx = context(True, True)
    items = [(ev, encode_event(ev)) for ev in (parse_line(line, context=ctx) for line in lines)]
    formats = renderers()

    if args.profile:
        prof = cProfile.Profile()
        if args.profile.startswith("es "):
            run = es_runs(items, args.events)[args.profile]
            prof.enable()
            run()
        else:
            render = formats[args.profile]
            work = list(itertools.islice(itertools.cycle(items), args.events))
            prof.enable()
            for event, body in work:
                render(event, body)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)
        return 0

    print(f"clawd-agent transform bench: {args.events:,} events per run, best of {args.repeat} interleaved "
          f"runs, one core, python {sys.version.split()[0]}; {len(items)} real hushd events cycled")
    for name, rate in best_rates(format_runs(formats, items, args.events), args.events, args.repeat).items():
        mark = "" if rate >= TARGET else f"   below the {TARGET:,}/s target: see --profile {name}"
        print(f"  render {name:<11} {rate:>12,.0f} events/s  ({1e6 / rate:6.2f} us/event){mark}")
    for name, rate in best_rates(es_runs(items, args.events), args.events, args.repeat).items():
        print(f"  render_items {name:<12} {rate:>10,.0f} events/s  ({1e6 / rate:6.2f} us/event)")
    n = max(args.events // 2, 1000)
    base = None
    for label, rate in best_rates(ingest_runs(lines, n), n, args.repeat).items():
        us = 1e6 / rate
        extra = "" if base is None else f"  ({us - base:+.2f} us)"
        base = us if base is None else base
        print(f"  ingest parse_line+encode {label:<16} {rate:>10,.0f} events/s  ({us:6.2f} us/event){extra}")
    for label, rate in best_rates(map_lines_runs(lines, n), n, args.repeat).items():
        print(f"  ingest map_lines (default) {label:<14} {rate:>10,.0f} events/s  ({1e6 / rate:6.2f} us/ev)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
