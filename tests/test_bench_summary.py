"""bench/delivery.py --repeat: the summary states the median and how many runs met the target."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_delivery", ROOT / "bench" / "delivery.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_summary_gives_the_median_range_and_runs_at_target():
    bench = _bench()
    figures = ((38_000, 4.4, 91.0), (41_000, 4.1, 92.5), (35_000, 4.7, 90.2), (40_000, 4.2, 91.1))
    runs = [bench.Throughput("es", 200_000, rate_first=r, cpu_per_100k=c, rss_mib=m) for r, c, m in figures]
    line = bench.summary_line("es", runs)
    assert "median 39,000 events/s, 35,000-41,000" in line
    assert "agent CPU 4.10-4.70 s per 100k; peak RSS up to 92.5 MiB" in line
    assert line.endswith("2 of 4 at >= 40,000/s")
    odd = bench.summary_line("hec", runs[:3])
    assert "median 38,000 events/s" in odd and "at >=" not in odd
