"""Prometheus metrics and the health document, both read from live state at scrape time.

Counters live as plain numbers on each input's and output's stats object (cheap on the hot path);
this collector turns them into metric families when Prometheus scrapes, as client_python's custom
collectors do. Names follow ``clawd_agent_<subsystem>_<name>_<unit>``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class AgentCollector(Collector):
    """Reads inputs, drains and the spool when scraped."""

    def __init__(self, inputs: Callable[[], dict[str, Any]], drains: Callable[[], dict[str, Any]],
                 spool_stats: Callable[[], dict[str, Any]]):
        self._inputs = inputs
        self._drains = drains
        self._spool_stats = spool_stats

    def collect(self) -> Iterable[Any]:
        ingested = CounterMetricFamily("clawd_agent_input_events_ingested", "Events written to the spool",
                                       labels=["input"])
        quarantined = CounterMetricFamily("clawd_agent_input_events_quarantined",
                                          "Lines or bodies quarantined", labels=["input"])
        duplicates = CounterMetricFamily("clawd_agent_input_events_duplicate",
                                         "Events already in the spool (re-read or rewritten files)",
                                         labels=["input"])
        for name, inp in self._inputs().items():
            st = inp.stats
            ingested.add_metric([name], getattr(st, "ingested", 0))
            quarantined.add_metric([name], getattr(st, "quarantined", 0))
            duplicates.add_metric([name], getattr(st, "duplicates", 0))
        yield from (ingested, quarantined, duplicates)

        delivered = CounterMetricFamily("clawd_agent_output_events_delivered", "Events delivered",
                                        labels=["output"])
        filtered = CounterMetricFamily("clawd_agent_output_events_filtered",
                                       "Events skipped by the output's filter", labels=["output"])
        failures = CounterMetricFamily("clawd_agent_output_failures", "Failed delivery attempts",
                                       labels=["output"])
        retries = CounterMetricFamily("clawd_agent_output_retries", "Retried delivery attempts",
                                      labels=["output"])
        dlq = CounterMetricFamily("clawd_agent_output_events_dlq", "Events sent to the DLQ",
                                  labels=["output"])
        in_flight = GaugeMetricFamily("clawd_agent_output_in_flight_events", "Events being sent",
                                      labels=["output"])
        up = GaugeMetricFamily("clawd_agent_output_healthy", "1 if the last attempt succeeded",
                               labels=["output"])
        for name, drain in self._drains().items():
            st = drain.stats
            delivered.add_metric([name], st.delivered)
            filtered.add_metric([name], st.filtered)
            failures.add_metric([name], st.failed_attempts)
            retries.add_metric([name], st.retries)
            dlq.add_metric([name], st.dlq)
            in_flight.add_metric([name], st.in_flight)
            up.add_metric([name], 1 if st.healthy else 0)
        yield from (delivered, filtered, failures, retries, dlq, in_flight, up)

        stats = self._spool_stats()
        yield GaugeMetricFamily("clawd_agent_spool_rows", "Events held in the spool",
                                value=stats.get("rows", 0))
        yield GaugeMetricFamily("clawd_agent_spool_bytes", "Spool size on disk (database + WAL)",
                                value=stats.get("bytes", 0))
        yield CounterMetricFamily("clawd_agent_spool_events_dropped",
                                  "Undelivered events dropped by on_full = drop_oldest",
                                  value=stats.get("dropped_oldest_total", 0))
        lag_events = GaugeMetricFamily("clawd_agent_output_lag_events",
                                       "Spooled events not yet delivered", labels=["output"])
        lag_seconds = GaugeMetricFamily("clawd_agent_output_lag_seconds",
                                        "Age of the oldest undelivered event", labels=["output"])
        for name, cur in stats.get("cursors", {}).items():
            lag_events.add_metric([name], cur.get("lag_events", 0))
            lag_seconds.add_metric([name], cur.get("lag_seconds", 0))
        yield from (lag_events, lag_seconds)


class AgentMetrics:
    """The agent's registry: the scrape-time collector plus the batch latency histogram."""

    def __init__(self, inputs: Callable[[], dict[str, Any]], drains: Callable[[], dict[str, Any]],
                 spool_stats: Callable[[], dict[str, Any]]):
        self.registry = CollectorRegistry()
        self.registry.register(AgentCollector(inputs, drains, spool_stats))
        self.batch_latency = Histogram("clawd_agent_output_batch_duration_seconds",
                                       "Time to send one batch", ["output", "result"],
                                       buckets=BATCH_BUCKETS, registry=self.registry)

    def observe_batch(self, output: str, seconds: float, outcome: Any) -> None:
        self.batch_latency.labels(output, outcome.status.value).observe(seconds)


def aggregate_health(healthy: list[bool]) -> str:
    """``ok`` when every output's last attempt succeeded, ``failing`` when none did, else ``degraded``."""
    if all(healthy):
        return "ok"
    return "failing" if not any(healthy) else "degraded"


def health_document(drains: dict[str, Any], inputs: dict[str, Any], spool_stats: dict[str, Any],
                    started_ms: int) -> tuple[int, dict[str, Any]]:
    """Aggregate health: ``ok``, ``degraded`` (an output failing) or ``failing`` (none delivering)."""
    outputs = {}
    for name, drain in drains.items():
        st = drain.stats
        outputs[name] = {"healthy": st.healthy, "last_error": st.last_error,
                         "last_success_ms": st.last_success_ms}
    status = aggregate_health([o["healthy"] for o in outputs.values()])
    doc = {
        "status": status,
        "uptime_s": round(time.time() - started_ms / 1000, 1),
        "outputs": outputs,
        "inputs": sorted(inputs),
        "spool": {"rows": spool_stats.get("rows"), "bytes": spool_stats.get("bytes")},
    }
    return (503 if status == "failing" else 200), doc
