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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
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
        up = GaugeMetricFamily("clawd_agent_output_healthy",
                               "1 if the output is healthy: last attempt succeeded, breaker not open, "
                               "health check passing", labels=["output"])
        replayed = CounterMetricFamily("clawd_agent_output_events_replayed",
                                       "DLQ entries re-sent successfully", labels=["output"])
        batches_in_flight = GaugeMetricFamily("clawd_agent_output_in_flight_batches",
                                              "Batches being sent", labels=["output"])
        requests = CounterMetricFamily("clawd_agent_output_requests",
                                       "HTTP requests by status class (ok, retry, throttled, auth, "
                                       "split, permanent, error)", labels=["output", "status"])
        request_seconds = HistogramMetricFamily("clawd_agent_output_request_duration_seconds",
                                                "Time of one HTTP request", labels=["output"])
        batch_bytes = HistogramMetricFamily("clawd_agent_output_batch_bytes",
                                            "Encoded bytes of one delivery attempt", labels=["output"])
        breaker = GaugeMetricFamily("clawd_agent_output_breaker_state",
                                    "Circuit breaker: 0 closed, 1 half-open, 2 open", labels=["output"])
        rate_requests = GaugeMetricFamily("clawd_agent_output_rate_limit_requests_per_second",
                                          "Request rate limit in effect (0 = unlimited)",
                                          labels=["output"])
        rate_events = GaugeMetricFamily("clawd_agent_output_rate_limit_events_per_second",
                                        "Event rate limit in effect (0 = unlimited)", labels=["output"])
        health_ok = GaugeMetricFamily("clawd_agent_output_health_check_ok",
                                      "1 if the destination's last health check passed",
                                      labels=["output"])
        for name, drain in self._drains().items():
            st = drain.stats
            delivered.add_metric([name], st.delivered)
            filtered.add_metric([name], st.filtered)
            failures.add_metric([name], st.failed_attempts)
            retries.add_metric([name], st.retries)
            dlq.add_metric([name], st.dlq)
            in_flight.add_metric([name], st.in_flight)
            up.add_metric([name], 1 if output_healthy(drain) else 0)
            replayed.add_metric([name], st.replayed)
            batches_in_flight.add_metric([name], st.in_flight_batches)
            for status_class, n in sorted(st.requests.items()):
                requests.add_metric([name, status_class], n)
            request_seconds.add_metric([name], st.request_seconds.buckets(), st.request_seconds.sum)
            batch_bytes.add_metric([name], st.batch_bytes.buckets(), st.batch_bytes.sum)
            breaker.add_metric([name], drain.breaker.state)
            req_rate, ev_rate = drain.limiter.current()
            rate_requests.add_metric([name], req_rate)
            rate_events.add_metric([name], ev_rate)
            if st.health_ok is not None:
                health_ok.add_metric([name], 1 if st.health_ok else 0)
        yield from (delivered, filtered, failures, retries, dlq, in_flight, up, replayed,
                    batches_in_flight, requests, request_seconds, batch_bytes, breaker, rate_requests,
                    rate_events, health_ok)
        yield from _destination_counters(self._drains()).values()

        stats = self._spool_stats()
        yield GaugeMetricFamily("clawd_agent_spool_rows", "Events held in the spool",
                                value=stats.get("rows", 0))
        yield GaugeMetricFamily("clawd_agent_spool_bytes", "Spool size on disk (database + WAL)",
                                value=stats.get("bytes", 0))
        yield CounterMetricFamily("clawd_agent_spool_events_dropped",
                                  "Events not yet delivered that on_full = drop_oldest deleted at max_bytes "
                                  "(delivered ones make room first)",
                                  value=stats.get("dropped_oldest_total", 0))
        yield CounterMetricFamily("clawd_agent_spool_events_evicted",
                                  "Delivered events deleted before their retention to make room at "
                                  "max_bytes, since the agent started (the replay window shrank)",
                                  value=stats.get("evicted_early", 0))
        lag_events = GaugeMetricFamily("clawd_agent_output_lag_events",
                                       "Spooled events not yet delivered", labels=["output"])
        lag_seconds = GaugeMetricFamily("clawd_agent_output_lag_seconds",
                                        "Age of the oldest undelivered event", labels=["output"])
        # Only outputs that deliver (configured and enabled: those with a drain). A cursor stays in
        # the spool after its output is removed or disabled; its lag would grow for ever and keep a
        # lag alert firing for an output nobody runs (`clawd-agent cursor delete` removes one).
        delivering = set(self._drains())
        for name, cur in stats.get("cursors", {}).items():
            if name in delivering:
                lag_events.add_metric([name], cur.get("lag_events", 0))
                lag_seconds.add_metric([name], cur.get("lag_seconds", 0))
        dlq_stored = GaugeMetricFamily("clawd_agent_dlq_events", "Events stored in the DLQ",
                                       labels=["output"])
        for name, n in sorted(stats.get("dlq", {}).items()):
            dlq_stored.add_metric([name], n)
        yield from (lag_events, lag_seconds, dlq_stored)


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


def _destination_counters(drains: dict[str, Any]) -> dict[str, CounterMetricFamily]:
    """``Output.destination_counters()`` of every output, one family per counter name."""
    families: dict[str, CounterMetricFamily] = {}
    for name, drain in drains.items():
        for counter, (help_text, label, counts) in drain.output.destination_counters().items():
            family = families.get(counter)
            if family is None:
                family = families[counter] = CounterMetricFamily(
                    f"clawd_agent_output_{counter}", help_text, labels=["output", label])
            for value, n in sorted(counts.items()):
                family.add_metric([name, value], n)
    return families


def output_healthy(drain: Any) -> bool:
    """An output is healthy when its last attempt succeeded, its breaker is not open and its
    destination's health check (when it ran) passed."""
    st = drain.stats
    return bool(st.healthy and drain.breaker.state_name != "open" and st.health_ok is not False)


def significant(rate: float, digits: int = 4) -> float:
    """``rate`` to ``digits`` significant digits: a limit of 0.0002/s rounded to 3 decimals read as
    0, which `status` shows as unlimited."""
    return float(f"{rate:.{digits}g}")


def output_extra(drain: Any) -> dict[str, Any]:
    """What the running agent records per output for `status` (``output_state.extra``)."""
    st = drain.stats
    req_rate, ev_rate = drain.limiter.current()
    return {
        "rate_eps": round(st.rate(), 2), "healthy": output_healthy(drain),
        "filtered_total": st.filtered, "retries_total": st.retries, "replayed_total": st.replayed,
        "in_flight_batches": st.in_flight_batches, "in_flight_events": st.in_flight,
        "breaker": drain.breaker.state_name, "breaker_reason": drain.breaker.reason,
        "health_ok": st.health_ok, "health_reason": st.health_reason,
        "rate_limit_requests": significant(req_rate), "rate_limit_events": significant(ev_rate),
        "destination": {counter: counts for counter, (_help, _label, counts)
                        in drain.output.destination_counters().items() if counts},
    }


def aggregate_health(healthy: list[bool]) -> str:
    """``ok`` when every output's last attempt succeeded, ``failing`` when none did, else ``degraded``."""
    if all(healthy):
        return "ok"
    return "failing" if not any(healthy) else "degraded"


def health_document(drains: dict[str, Any], inputs: dict[str, Any], spool_stats: dict[str, Any],
                    started_ms: int) -> tuple[int, dict[str, Any]]:
    """Aggregate health: ``ok``, ``degraded`` (an output unhealthy: failing, breaker open, or its
    health check failing) or ``failing`` (no output healthy)."""
    outputs = {}
    for name, drain in drains.items():
        st = drain.stats
        outputs[name] = {"healthy": output_healthy(drain), "last_error": st.last_error,
                         "last_success_ms": st.last_success_ms, "breaker": drain.breaker.state_name,
                         "health_check": {"ok": st.health_ok, "reason": st.health_reason},
                         "in_flight_batches": st.in_flight_batches,
                         "dlq": spool_stats.get("dlq", {}).get(name, 0)}
    status = aggregate_health([o["healthy"] for o in outputs.values()])
    doc = {
        "status": status,
        "uptime_s": round(time.time() - started_ms / 1000, 1),
        "outputs": outputs,
        "inputs": sorted(inputs),
        "spool": {"rows": spool_stats.get("rows"), "bytes": spool_stats.get("bytes")},
    }
    return (503 if status == "failing" else 200), doc
