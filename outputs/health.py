"""The health-check greenlet of one output: ``Output.healthcheck()`` every ``healthcheck_interval``.

The result lands in the output's stats (``health_ok``, ``health_reason``), from where `status`,
``/health`` and the ``clawd_agent_output_health_ok`` gauge read it. A check that takes longer than
``healthcheck_timeout`` counts as failed; an exception counts as failed with its class as the reason.
The timeout interrupts cooperative I/O (requests under gevent), not a call that blocks the hub.
A check never delivers anything and never touches the cursor.
"""

from __future__ import annotations

import logging
import time

import gevent
import gevent.event

from outputs.base import Output
from outputs.stats import OutputStats, describe_error

log = logging.getLogger("clawd_agent.health")

REASON_MAX = 200


class _CheckTimeout(Exception):
    pass


class HealthMonitor:
    def __init__(self, output: Output, stats: OutputStats, *, interval: float, timeout: float,
                 stop: gevent.event.Event):
        self.output = output
        self.stats = stats
        self.interval = interval
        self.timeout = timeout
        self._stop = stop

    def run(self) -> None:
        while not self._stop.is_set():
            self.check_once()
            self._stop.wait(self.interval)

    def check_once(self) -> bool:
        """Run one check now and record it; returns the result."""
        try:
            with gevent.Timeout(self.timeout, _CheckTimeout):
                ok, reason = self.output.healthcheck()
        except _CheckTimeout:
            ok, reason = False, f"health check timed out after {self.timeout:g}s"
        except Exception as exc:
            ok, reason = False, f"health check failed: {describe_error(exc)}"
        ok = bool(ok)
        reason = str(reason)[:REASON_MAX]
        st = self.stats
        if st.health_ok is not ok:
            (log.info if ok else log.warning)(
                "output health changed", extra={"output": self.output.name, "ok": ok, "reason": reason})
        st.health_ok = ok
        st.health_reason = reason
        st.health_checked_ms = int(time.time() * 1000)
        return ok
