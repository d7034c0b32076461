"""Health checks (greenlet, timeout, aggregate /health) and the per-output Prometheus metrics, read back
from the registry the agent serves."""

from __future__ import annotations

import gevent
import pytest

from agent.metrics import AgentMetrics, health_document, output_extra
from outputs.base import Outcome
from outputs.breaker import Breaker
from outputs.drain import Drain
from outputs.health import HealthMonitor
from outputs.stats import OutputStats
from spool.store import Spool
from tests.outputs.drain_kit import Fake, caught_up, cfg, fill, run_until, start, stop, wait_until


@pytest.fixture
def spool(tmp_path):
    s = Spool(str(tmp_path / "spool.db"))
    yield s
    s.close()


def test_a_failing_health_check_makes_the_output_and_health_degraded(spool):
    out = Fake("hec", cfg(healthcheck_interval=0.02, healthcheck_timeout=1))
    out.health = (False, "HEC unhealthy: queues full")
    ok_out = Fake("file", cfg(healthcheck_interval=0.02))
    drains = {"hec": Drain(out, spool, spool.reader()), "file": Drain(ok_out, spool, spool.reader())}
    gs = {n: start(d) for n, d in drains.items()}
    wait_until(lambda: drains["hec"].stats.health_ok is False and drains["file"].stats.health_ok is True)
    code, doc = health_document(drains, {}, {"dlq": {"hec": 3}}, 0)
    assert code == 200 and doc["status"] == "degraded"
    assert doc["outputs"]["hec"]["healthy"] is False
    assert doc["outputs"]["hec"]["health_check"] == {"ok": False, "reason": "HEC unhealthy: queues full"}
    assert doc["outputs"]["hec"]["dlq"] == 3
    assert doc["outputs"]["file"]["healthy"] is True
    out.health = (True, "ok")
    wait_until(lambda: drains["hec"].stats.health_ok is True)
    assert health_document(drains, {}, {}, 0)[1]["status"] == "ok"
    for n, d in drains.items():
        stop(d, gs[n])


def test_a_slow_or_raising_health_check_counts_as_failed():
    class Slow(Fake):
        def healthcheck(self):
            gevent.sleep(5)
            return True, "ok"

    class Raises(Fake):
        def healthcheck(self):
            raise ConnectionRefusedError(111, "Connection refused")

    stop_ev = gevent.event.Event()
    st = OutputStats()
    assert HealthMonitor(Slow("s", cfg()), st, interval=1, timeout=0.05, stop=stop_ev).check_once() is False
    assert st.health_reason == "health check timed out after 0.05s"
    HealthMonitor(Raises("r", cfg()), st, interval=1, timeout=1, stop=stop_ev).check_once()
    assert st.health_ok is False and st.health_reason == "health check failed: Connection refused"


def test_an_open_breaker_makes_the_output_unhealthy(spool):
    drain = Drain(Fake("f", cfg()), spool, spool.reader())
    drain.breaker = Breaker(1, 60, 60)
    drain.breaker.failure("HTTP 401", auth=True)
    code, doc = health_document({"f": drain}, {}, {}, 0)
    assert doc["outputs"]["f"]["healthy"] is False and doc["outputs"]["f"]["breaker"] == "open"
    assert code == 503 and doc["status"] == "failing"  # no output healthy
    extra = output_extra(drain)
    assert extra["breaker"] == "open" and extra["breaker_reason"] == "HTTP 401" and extra["healthy"] is False


class HttpLike(Fake):
    """Reports each send to ``on_response`` as the HttpClient does."""

    def send(self, batch):
        outcome = super().send(batch)
        self.on_response("retry" if outcome.status.value == "retry" else "ok", 0.02)
        return outcome


def test_metrics_expose_every_per_output_figure(spool):
    fill(spool, 12)
    out = HttpLike("es", cfg(batch_max_events=5, rate_limit_requests=50, breaker_failures=0),
                   script=[lambda b: Outcome.retry("HTTP 503"), lambda b: Outcome.permanent("HTTP 400")],
                   size=10)
    drain = Drain(out, spool, spool.reader())
    metrics = AgentMetrics(lambda: {}, lambda: {"es": drain}, lambda: spool.stats())
    drain._on_batch = metrics.observe_batch
    run_until(drain, caught_up(spool, "es"))

    def value(name, **labels):
        return metrics.registry.get_sample_value(name, {"output": "es", **labels})

    # attempts: [0-4] 503, [0-4] 400 -> DLQ, [5-9] ok, [10-11] ok
    assert value("clawd_agent_output_events_delivered_total") == 7
    assert value("clawd_agent_output_events_dlq_total") == 5
    assert value("clawd_agent_output_retries_total") == 1
    assert value("clawd_agent_output_requests_total", status="retry") == 1
    assert value("clawd_agent_output_requests_total", status="ok") == 3
    assert value("clawd_agent_output_request_duration_seconds_count") == 4
    assert value("clawd_agent_output_request_duration_seconds_bucket", le="0.025") == 4
    assert value("clawd_agent_output_batch_bytes_count") == 4
    assert value("clawd_agent_output_batch_bytes_sum") == 10 * (5 + 5 + 5 + 2)
    assert value("clawd_agent_output_batch_duration_seconds_count", result="permanent") == 1
    assert value("clawd_agent_output_in_flight_batches") == 0
    assert value("clawd_agent_output_in_flight_events") == 0
    assert value("clawd_agent_output_breaker_state") == 0
    assert value("clawd_agent_output_rate_limit_requests_per_second") == 50
    assert value("clawd_agent_output_rate_limit_events_per_second") == 0
    assert value("clawd_agent_dlq_events") == 5
    assert value("clawd_agent_output_healthy") == 1



def test_lag_is_exported_only_for_outputs_that_deliver(spool):
    """A removed (or disabled) output's cursor stays in the spool: its lag grew for ever and kept a
    lag alert firing for an output nobody runs."""
    fill(spool, 6)
    spool.ensure_cursor("es", "beginning")
    spool.ensure_cursor("renamed_away", "beginning")
    out = Fake("es", cfg(batch_max_events=10))
    drain = Drain(out, spool, spool.reader())
    metrics = AgentMetrics(lambda: {}, lambda: {"es": drain}, lambda: spool.stats())
    run_until(drain, caught_up(spool, "es"))
    lag = metrics.registry.get_sample_value
    assert lag("clawd_agent_output_lag_events", {"output": "es"}) == 0
    assert lag("clawd_agent_output_lag_events", {"output": "renamed_away"}) is None
    assert lag("clawd_agent_output_lag_seconds", {"output": "renamed_away"}) is None

def test_the_delivery_rate_counts_every_batch_of_the_window(monkeypatch):
    """`status` shows ``rate()``: 100 events/s in batches of one (batch_max_wait is 10 ms, so a
    moderate stream closes a batch per event or two) must read 100/s, not what the last 120 batches
    held spread over the whole minute."""
    clock = [1_000.0]
    monkeypatch.setattr("outputs.stats.time.time", lambda: clock[0])
    st = OutputStats()
    for _ in range(6_000):
        clock[0] += 0.01
        st.note_delivered(1)
    assert st.rate() == pytest.approx(100, rel=0.03)
    clock[0] += 120
    assert st.rate() == 0
