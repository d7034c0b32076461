"""Property-based tests of what the running agent says about its outputs: the /health document and
its HTTP status, the Prometheus exposition on /metrics, and `clawd-agent status` (agent/metrics.py,
agent/status.py, outputs/health.py, outputs/stats.py and the supervisor's wiring of them), against
docs/outputs.md §4 "Rate limit and circuit breaker" and §7 "Health and metrics", docs/spool.md
"Status from another process" and the `status` command's help.

tests/test_cli_properties.py checks `status` with the agent stopped (DLQ counts, last reasons,
cursors, lag, orphans, escaping); tests/outputs/test_batcher_breaker_properties.py checks the
breaker's transitions and its gauge on their own. Here the agent runs:

1. A RuleBasedStateMachine: a Supervisor (not started: no inputs, no network) with its real spool,
   metrics registry and WSGI app, and real outputs of every type built from an agent.toml whose
   output names are drawn from what the config accepts (any Unicode letters and digits, '_' and '-'),
   some disabled, with canary credentials in a password, a token, a header value (an ${ENV} part)
   and a proxy URL's user info. A real Drain per enabled output, its stats and breaker (fake clock)
   driven as the drain drives them (attempts that deliver, fail or fail authentication, the
   half-open probe and its answer, HTTP requests by class, batch sizes), its destination health
   check run by the real HealthMonitor (passing, failing with a hostile reason, raising with a
   credential in the message, timing out), DLQ entries of configured and removed outputs, cursors
   committed, Elasticsearch failure-store counts under hostile data stream names. A model keeps each
   output's last attempt, breaker state (the documented transitions), health check, counters, DLQ
   and lag. After every step:
   a. /health (the supervisor's own WSGI app, also as /healthz): ``ok`` when every delivering
      output is healthy (its last attempt succeeded, its breaker is not open, its health check
      passed or never ran), ``failing`` with 503 when none is, else ``degraded`` with 200; each
      output's fields are the model's;
   b. /metrics parses with prometheus_client's text parser; every per-output family is labelled with
      exactly the enabled outputs' names; the values are the model's (counters, breaker 0/1/2,
      healthy, health_check_ok only once a check ran, requests by class, histogram buckets with
      Prometheus ``le`` semantics, lag for the delivering outputs only, the DLQ entries stored for
      every output, removed ones included, failure-store counts by data stream); no counter goes
      down between scrapes;
   c. any other path answers 404;
   d. no canary credential appears in either body.
   On each heartbeat (``Supervisor.record_state``) `status` agrees, as ``collect_status`` and as
   `clawd-agent status [--json]`: the health /health gives, exit code 0 only for ``ok``, each
   configured output once with the model's breaker and its reason, health check, last error,
   delivered total, DLQ count and last reason, lag, rate limits and failure-store counts; the text
   view has one row per output plus one line of notes exactly when the documented exceptional facts
   hold, no raw control character and no canary.
2. The metrics server over a real socket: GET and HEAD of /metrics, /health and /healthz (HEAD: the
   GET's status and headers, no body), 503 while every output fails, 404 for any other path.
3. Every metric docs/outputs.md §7 lists is exposed under its documented name.
4. In-flight gauges return to 0: a drain whose loop crashed (the supervisor restarts it with the
   same OutputStats, so that counters survive) shows nothing in flight once the new drain caught up.

Property 4 failed before its fix (the drain takes back the counts of a batch whose greenlet was
killed before it ran): a batch greenlet spawned but not started yet when the drain's loop crashed
was killed before it ever ran, so the in-flight counts it was given were never taken back, and every
later scrape, /health and `status` showed those events in flight for ever
(test_in_flight_counts_return_to_zero_after_a_crash_and_a_restart and the minimal
test_defect_a_batch_killed_before_it_started_stays_in_flight_after_a_restart).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.socket
import orjson
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from prometheus_client.parser import text_string_to_metric_families

from agent.cli import cli
from agent.config import AgentConfig, parse_config
from agent.metrics import AgentMetrics, significant
from agent.status import collect_status, render_status
from agent.supervisor import Supervisor
from outputs.breaker import Breaker
from outputs.drain import Drain
from outputs.health import REASON_MAX as HEALTH_REASON_MAX
from outputs.health import HealthMonitor
from outputs.registry import build_output
from outputs.stats import BYTES_BUCKETS, LATENCY_BUCKETS
from spool.store import Spool
from spool.types import REASON_MAX, EncodedEvent, IngestBatch, SpoolRow
from tests.outputs.drain_kit import Fake, caught_up, cfg, fill, start, stop, wait_until

ROOT = Path(__file__).resolve().parents[1]

CANARY_PASSWORD = "CanaryEsPw-91c3e0d2"
CANARY_TOKEN = "CanaryHecTok-4e7a11b9"
CANARY_ENV = "CanaryEnvPart-0b6d5f38"  # an ${ENV} part of a header value
CANARY_PROXY = "CanaryProxyPw-7d2c9e41"  # a proxy URL's user info
CANARY_MESSAGE = "CanaryExcMsg-c5a0f7e3"  # in the message of an exception a health check raises
CANARIES = (CANARY_PASSWORD, CANARY_TOKEN, CANARY_ENV, CANARY_PROXY, CANARY_MESSAGE)
ENV_NAME = "CLAWD_TEST_HEALTH_CANARY"
ORPHAN = "removed-output"  # an output no longer configured: a cursor and maybe DLQ entries
#: what a terminal must never get raw from the data (agent.status.printable escapes these)
RAW_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
HOSTILE = ["\n", "\r", "\x1b[2J", "\x1b]0;owned\x07", "\x9b6n", "\u2028", "\u202eevil", "\x85", "\x00",
           "\t", '"', "\\", "{", "}", "=", ",", " ", "é", "日本"]
hostile_text = st.one_of(
    st.lists(st.one_of(st.sampled_from(HOSTILE), st.text("abc :-", max_size=5)), max_size=6).map("".join),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
    st.integers(HEALTH_REASON_MAX - 2, REASON_MAX + 30).map(lambda n: "L" * n),
)
#: names the config accepts (agent.config._named_tables): letters and digits of any script, '_', '-'
output_names = st.text(
    st.one_of(st.characters(categories=["Lu", "Ll", "Lo", "Nd", "Nl", "No"]), st.sampled_from("_-")),
    min_size=1, max_size=10,
).filter(lambda n: n.replace("_", "").replace("-", "").isalnum() and n != ORPHAN)
TYPES = ("stdout", "file", "elasticsearch", "splunk_hec")
RATES = (0.0, 0.0002, 12.5, 1000.0)
PER_OUTPUT = (
    "clawd_agent_output_events_delivered", "clawd_agent_output_events_filtered",
    "clawd_agent_output_failures", "clawd_agent_output_retries", "clawd_agent_output_events_dlq",
    "clawd_agent_output_in_flight_events", "clawd_agent_output_healthy",
    "clawd_agent_output_events_replayed", "clawd_agent_output_in_flight_batches",
    "clawd_agent_output_request_duration_seconds", "clawd_agent_output_batch_bytes",
    "clawd_agent_output_breaker_state", "clawd_agent_output_rate_limit_requests_per_second",
    "clawd_agent_output_rate_limit_events_per_second", "clawd_agent_output_lag_events",
    "clawd_agent_output_lag_seconds",
)
FAILURE_STORE = "clawd_agent_output_events_failure_store"


# -------------------------------------------------------------------------------- the config


@dataclass(frozen=True)
class OutSpec:
    name: str
    type: str
    enabled: bool
    breaker_failures: int
    rate_requests: float
    rate_events: float


def output_toml(spec: OutSpec, root: Path, i: int) -> str:
    """One [outputs."<name>"] table; the HTTP ones carry every kind of canary credential."""
    lines = [f'[outputs."{spec.name}"]', f'type = "{spec.type}"', f"enabled = {str(spec.enabled).lower()}",
             f"breaker_failures = {spec.breaker_failures}", 'breaker_cooldown = "10s"',
             'breaker_cooldown_max = "40s"', 'healthcheck_timeout = "20ms"',
             f"rate_limit_requests = {spec.rate_requests}", f"rate_limit_events = {spec.rate_events}"]
    if spec.type == "file":
        lines.append(f'path = "{root}/out/{i}.jsonl"')
    elif spec.type == "elasticsearch":
        lines += ['hosts = ["https://es.example:9200"]', 'username = "elastic"',
                  f'password = "{CANARY_PASSWORD}"',
                  f'proxy = "http://shipper:{CANARY_PROXY}@proxy.example:3128"',
                  f'headers = {{ "X-Api-Token" = "Bearer ${{{ENV_NAME}}}" }}']
    elif spec.type == "splunk_hec":
        lines += ['endpoint = "https://splunk.example:8088"', f'token = "{CANARY_TOKEN}"',
                  f'headers = {{ "X-Relay" = "relay ${{{ENV_NAME}}}" }}']
    return "\n".join(lines) + "\n"


def agent_toml(root: Path, specs: list[OutSpec]) -> str:
    return (f'[agent]\ndata_dir = "{root}/state"\n[metrics]\nlisten = "127.0.0.1:0"\n'
            f'[inputs.i]\ntype = "file"\npaths = ["{root}/in/*.jsonl"]\n'
            + "".join(output_toml(s, root, i) for i, s in enumerate(specs)))


@st.composite
def output_specs(draw: st.DrawFn) -> list[OutSpec]:
    names = draw(st.lists(output_names, min_size=1, max_size=4, unique=True))
    return [OutSpec(n, draw(st.sampled_from(TYPES)), draw(st.booleans()), draw(st.integers(0, 3)),
                    draw(st.sampled_from(RATES)), draw(st.sampled_from(RATES))) for n in names]


@contextmanager
def canary_env() -> Iterator[None]:
    old = os.environ.get(ENV_NAME)
    os.environ[ENV_NAME] = CANARY_ENV
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_NAME, None)
        else:
            os.environ[ENV_NAME] = old


# -------------------------------------------------------------------------------- the model


@dataclass
class MBreaker:
    """docs/outputs.md §4: opens after ``failures`` consecutive failed attempts or at once on an auth
    failure; after the cooldown one probe goes out; its success closes the breaker (cooldown back to
    its base), its failure re-opens it with the cooldown doubled up to the cap; 0 disables it."""

    failures: int
    base: float
    cap: float
    state: str = "closed"
    consecutive: int = 0
    cooldown: float = 0.0
    probe_out: bool = False
    reason: str = ""

    def __post_init__(self) -> None:
        self.cooldown = self.base

    def success(self) -> None:
        self.consecutive = 0
        self.probe_out = False
        if self.state != "closed":
            self.state, self.cooldown, self.reason = "closed", self.base, ""

    def failure(self, reason: str, auth: bool, probe: bool) -> None:
        self.consecutive += 1
        if not self.failures:
            return
        if self.state == "half-open" and probe:
            self._open(reason, min(self.cap, max(self.cooldown * 2, 0.001)))
        elif self.state == "closed" and (auth or self.consecutive >= self.failures):
            self._open(reason, self.base)

    def _open(self, reason: str, cooldown: float) -> None:
        self.state, self.cooldown, self.reason, self.probe_out = "open", cooldown, reason, False


@dataclass
class MOutput:
    spec: OutSpec
    breaker: MBreaker
    last_ok: bool = True  # "the last delivery attempt succeeded (or nothing failed yet)"
    last_error: str | None = None
    delivered: int = 0
    failed_attempts: int = 0
    retries: int = 0
    filtered: int = 0
    replayed: int = 0
    dlq_counter: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    request_seconds: list[float] = field(default_factory=list)
    batch_bytes: list[float] = field(default_factory=list)
    health_ok: bool | None = None
    health_reason: str = ""
    failure_store: dict[str, int] = field(default_factory=dict)

    def healthy(self) -> bool:
        """docs/outputs.md §7: its last attempt succeeded, its breaker is not open and its health
        check (if it ran) passed."""
        return self.last_ok and self.breaker.state != "open" and self.health_ok is not False


def aggregate(healthy: list[bool]) -> tuple[str, int]:
    """docs/outputs.md §7: ``degraded`` if one output is not healthy, ``failing`` (503) if none is."""
    if all(healthy):
        return "ok", 200
    if not any(healthy):
        return "failing", 503
    return "degraded", 200


def histogram_ok(samples: dict[tuple[str, str], float], values: list[float],
                 bounds: tuple[float, ...]) -> None:
    """Buckets with Prometheus ``le`` semantics (a value equal to a bound is in its bucket)."""
    for bound in bounds:
        le = next(k for (n, k) in samples if n == "bucket" and k != "+Inf" and float(k) == bound)
        assert samples["bucket", le] == sum(1 for v in values if v <= bound), (bound, values)
    assert samples["bucket", "+Inf"] == len(values) == samples["count", ""]
    assert math.isclose(samples["sum", ""], math.fsum(values), rel_tol=1e-9, abs_tol=1e-9)


# -------------------------------------------------------------------------------- the machine


class HealthMachine(RuleBasedStateMachine):
    """A running agent's outputs driven through their states; /health, /metrics and `status` read."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="health-sm-"))
        self.sup: Supervisor | None = None
        self.readers: list[Any] = []
        self._env = canary_env()
        self._env.__enter__()

    def teardown(self) -> None:
        try:
            sup = self.sup
            if sup is not None:
                if sup.metrics_server is not None:
                    sup.metrics_server.stop_gracefully(0.5)
                for r in self.readers:
                    r.close()
                sup.spool.close()
        finally:
            self._env.__exit__(None, None, None)
            shutil.rmtree(self.root, ignore_errors=True)

    @initialize(specs=output_specs(), events=st.integers(0, 6))
    def setup(self, specs: list[OutSpec], events: int) -> None:
        (self.root / "state").mkdir()
        self.cfg_path = self.root / "agent.toml"
        self.cfg_path.write_text(agent_toml(self.root, specs))
        self.config: AgentConfig = parse_config(self.cfg_path.read_text(), str(self.cfg_path),
                                                {ENV_NAME: CANARY_ENV})
        assert list(self.config.outputs) == [s.name for s in specs]  # the config takes every name
        sup = self.sup = Supervisor(self.config)
        sup.spool = sup.open_spool()
        self.clocks: dict[str, list[float]] = {}  # one fake monotonic clock per breaker
        self.model: dict[str, MOutput] = {}
        for s in specs:
            out_cfg = self.config.outputs[s.name]
            sup.spool.ensure_cursor(s.name, "beginning")
            self.model[s.name] = MOutput(s, MBreaker(s.breaker_failures, out_cfg.breaker_cooldown,
                                                     out_cfg.breaker_cooldown_max))
            if not s.enabled:
                continue
            reader = sup.spool.reader()
            self.readers.append(reader)
            drain = Drain(build_output(s.name, out_cfg), sup.spool, reader)
            # the breaker the drain built, on a clock this test moves
            clock = self.clocks[s.name] = [1000.0]
            drain.breaker = Breaker(out_cfg.breaker_failures, out_cfg.breaker_cooldown,
                                    out_cfg.breaker_cooldown_max, clock=lambda c=clock: c[0])
            sup.drains[s.name] = drain
        sup.spool.ensure_cursor(ORPHAN, "beginning")
        sup.metrics = AgentMetrics(lambda: sup.inputs, lambda: sup.drains, sup.spool_stats)
        sup._start_metrics_server()
        assert sup.metrics_server is not None
        self.app = sup.metrics_server.application
        self.events = 0
        self.cursors = {name: 0 for name in [*self.model, ORPHAN]}
        self.dlq: dict[str, list[str]] = {}  # output -> reasons as stored, oldest first
        #: output_state.last_error: the stats' last error at each heartbeat, or a DLQ write's reason
        self.recorded_error: dict[str, str] = {}
        self.scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.ingest(events)

    # -- helpers -----------------------------------------------------------------------------------

    def enabled(self) -> list[str]:
        return [n for n, m in self.model.items() if m.spec.enabled]

    def drain(self, name: str) -> Drain:
        assert self.sup is not None
        return self.sup.drains[name]

    def call(self, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        """One request to the supervisor's WSGI app, as the metrics server hands it over."""
        got: list[Any] = []
        body = b"".join(self.app({"PATH_INFO": path, "REQUEST_METHOD": method},
                                 lambda status, headers: got.append((status, headers))))
        return int(got[0][0].split()[0]), dict(got[0][1]), body

    # -- the agent's side --------------------------------------------------------------------------

    @rule(n=st.integers(1, 3))
    def ingest(self, n: int) -> None:
        """Events spooled (``/health`` and ``/metrics`` must see them at the next scrape)."""
        if not n:
            return
        assert self.sup is not None
        start = self.events
        self.sup.spool.append(IngestBatch("i", [EncodedEvent(uuid.UUID(int=start + k + 1).bytes, 1_000 + k,
                                                             orjson.dumps({"n": start + k + 1}))
                                                for k in range(n)]))
        self.events += n

    @precondition(lambda self: self.enabled())
    @rule(data=st.data(), n=st.integers(1, 10**9))
    def attempt_delivers(self, data: st.DataObject, n: int) -> None:
        name = data.draw(st.sampled_from(self.enabled()), label="output")
        d, m = self.drain(name), self.model[name]
        d.stats.note_delivered(n)
        d.breaker.success()
        m.delivered += n
        m.last_ok = True
        m.breaker.success()

    @precondition(lambda self: self.enabled())
    @rule(data=st.data(), reason=hostile_text, auth=st.booleans())
    def attempt_fails(self, data: st.DataObject, reason: str, auth: bool) -> None:
        """A failed attempt (transport error, 5xx, 401/403), possibly an answer to a batch sent before
        the breaker opened: not the probe's."""
        name = data.draw(st.sampled_from(self.enabled()), label="output")
        d, m = self.drain(name), self.model[name]
        d.stats.note_failure(reason)
        d.breaker.failure(reason, auth=auth)
        m.failed_attempts += 1
        m.last_ok, m.last_error = False, reason
        m.breaker.failure(reason, auth, probe=False)

    @precondition(lambda self: any(self.model[n].breaker.state == "open" for n in self.enabled()))
    @rule(data=st.data())
    def cooldown_passes_and_a_probe_goes_out(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from([n for n in self.enabled()
                                          if self.model[n].breaker.state == "open"]))
        d, m = self.drain(name), self.model[name]
        assert d.breaker.allow()[1] is False  # not before the cooldown passed
        self.clocks[name][0] += m.breaker.cooldown + 0.5
        wait, is_probe = d.breaker.allow()
        assert (wait, is_probe) == (0.0, True)
        m.breaker.state, m.breaker.probe_out = "half-open", True

    @precondition(lambda self: any(self.model[n].breaker.probe_out for n in self.enabled()))
    @rule(data=st.data(), outcome=st.sampled_from(["delivered", "failed", "abandoned"]), reason=hostile_text)
    def the_probe_answers(self, data: st.DataObject, outcome: str, reason: str) -> None:
        name = data.draw(st.sampled_from([n for n in self.enabled() if self.model[n].breaker.probe_out]))
        d, m = self.drain(name), self.model[name]
        probe = d.breaker.probe_id
        assert probe
        if outcome == "delivered":
            d.stats.note_delivered(1)
            d.breaker.success()
            m.delivered += 1
            m.last_ok = True
            m.breaker.success()
        elif outcome == "failed":
            d.stats.note_failure(reason)
            d.breaker.failure(reason, probe=probe)
            m.failed_attempts += 1
            m.last_ok, m.last_error = False, reason
            m.breaker.failure(reason, False, probe=True)
        else:  # its sender stopped before an answer: another may probe (still half-open)
            d.breaker.probe_abandoned(probe)
            m.breaker.probe_out = False

    @precondition(lambda self: self.enabled())
    @rule(data=st.data(), kind=st.sampled_from(["ok", "failing", "raises", "oserror", "slow"]),
          ok_value=st.sampled_from([True, 1, "yes"]), bad_value=st.sampled_from([False, 0, "", None]),
          reason=hostile_text)
    def health_check_runs(self, data: st.DataObject, kind: str, ok_value: Any, bad_value: Any,
                          reason: str) -> None:
        """The real HealthMonitor, with the destination's check scripted."""
        name = data.draw(st.sampled_from(self.enabled()), label="output")
        d, m = self.drain(name), self.model[name]
        never = gevent.event.Event()

        def check() -> tuple[Any, str]:
            if kind == "raises":
                raise RuntimeError(f"https://elastic:{CANARY_MESSAGE}@es.example:9200 refused")
            if kind == "oserror":
                raise ConnectionRefusedError(111, "Connection refused")
            if kind == "slow":
                never.wait()
            return (ok_value if kind == "ok" else bad_value), reason

        d.output.healthcheck = check  # type: ignore[method-assign]
        timeout = d.config.healthcheck_timeout
        monitor = HealthMonitor(d.output, d.stats, interval=1.0, timeout=timeout, stop=gevent.event.Event())
        assert monitor.check_once() is (kind == "ok")
        m.health_ok = kind == "ok"
        m.health_reason = {
            "raises": "health check failed: RuntimeError",
            "oserror": "health check failed: Connection refused",
            "slow": f"health check timed out after {timeout:g}s",
        }.get(kind, reason[:HEALTH_REASON_MAX])

    @precondition(lambda self: self.enabled())
    @rule(data=st.data(), classes=st.lists(st.sampled_from(["ok", "retry", "throttled", "auth", "split",
                                                             "permanent", "error"]), min_size=1, max_size=4),
          seconds=st.lists(st.one_of(st.sampled_from(LATENCY_BUCKETS), st.floats(0, 40)), min_size=4,
                           max_size=4),
          sizes=st.lists(st.one_of(st.sampled_from(BYTES_BUCKETS), st.integers(0, 2**27).map(float)),
                         max_size=3))
    def requests_answered(self, data: st.DataObject, classes: list[str], seconds: list[float],
                          sizes: list[float]) -> None:
        """HTTP requests by status class and their time (the HttpClient's ``on_response``), bodies of
        attempts (``batch_bytes``); a bound itself is in its own bucket."""
        name = data.draw(st.sampled_from(self.enabled()), label="output")
        d, m = self.drain(name), self.model[name]
        for cls, secs in zip(classes, seconds, strict=False):
            d.stats.note_response(cls, secs)  # the HttpClient's on_response, as the drain wires it
            m.requests[cls] = m.requests.get(cls, 0) + 1
            m.request_seconds.append(secs)
        for size in sizes:
            d.stats.batch_bytes.observe(size)
            m.batch_bytes.append(size)

    @precondition(lambda self: self.enabled())
    @rule(data=st.data(), filtered=st.integers(0, 10**12), retries=st.integers(0, 5),
          replayed=st.integers(0, 5))
    def drain_counts(self, data: st.DataObject, filtered: int, retries: int, replayed: int) -> None:
        name = data.draw(st.sampled_from(self.enabled()), label="output")
        d, m = self.drain(name), self.model[name]
        d.stats.filtered += filtered
        d.stats.retries += retries
        d.stats.replayed += replayed
        m.filtered += filtered
        m.retries += retries
        m.replayed += replayed

    @precondition(lambda self: self.events > 0)
    @rule(data=st.data(), reason=hostile_text, n=st.integers(1, 3))
    def dead_lettered(self, data: st.DataObject, reason: str, n: int) -> None:
        """Entries stored in the DLQ, for a configured output (enabled or not) or a removed one;
        then the agent ingests on (a scrape right after an ingest sees the spool as it is)."""
        assert self.sup is not None
        name = data.draw(st.sampled_from([*self.model, ORPHAN]), label="output")
        seqs = data.draw(st.lists(st.integers(1, self.events), min_size=n, max_size=n), label="seqs")
        rows = [SpoolRow(s, uuid.UUID(int=s).bytes, 0, orjson.dumps({"n": s})) for s in seqs]
        assert self.sup.spool.dlq_add(name, rows, reason, None, 1) == n
        if name in self.sup.drains:
            self.drain(name).stats.dlq += n
            self.model[name].dlq_counter += n
        self.dlq.setdefault(name, []).extend([reason[:REASON_MAX]] * n)
        self.recorded_error[name] = reason[:REASON_MAX]
        self.ingest(1)

    @precondition(lambda self: self.events > 0)
    @rule(data=st.data())
    def cursor_committed(self, data: st.DataObject) -> None:
        assert self.sup is not None
        name = data.draw(st.sampled_from([*self.model, ORPHAN]), label="output")
        seq = data.draw(st.integers(self.cursors[name], self.events), label="seq")
        assert self.sup.spool.commit_cursor(name, seq, 0)
        self.cursors[name] = seq
        self.ingest(1)

    @precondition(lambda self: any(self.model[n].spec.type == "elasticsearch" for n in self.enabled()))
    @rule(data=st.data(), streams=st.dictionaries(hostile_text.filter(bool), st.integers(1, 10**6),
                                                   min_size=1, max_size=3))
    def failure_store_used(self, data: st.DataObject, streams: dict[str, int]) -> None:
        """Elasticsearch kept events in a failure store; the data stream's name is the destination's."""
        name = data.draw(st.sampled_from([n for n in self.enabled()
                                          if self.model[n].spec.type == "elasticsearch"]))
        self.drain(name).output._note_failure_store(streams)  # type: ignore[attr-defined]
        fs = self.model[name].failure_store
        for stream, n in streams.items():
            fs[stream] = fs.get(stream, 0) + n

    # -- /health, /metrics -------------------------------------------------------------------------

    def expected_health(self) -> tuple[str, int]:
        return aggregate([self.model[n].healthy() for n in self.enabled()])

    @invariant()
    def health_is_the_documented_aggregate(self) -> None:
        if self.sup is None:
            return
        want_status, want_code = self.expected_health()
        for path in ("/health", "/healthz"):
            code, headers, body = self.call(path)
            assert headers["Content-Type"] == "application/json"
            text = body.decode()
            assert not any(c in text for c in CANARIES), text
            doc = orjson.loads(body)
            assert (doc["status"], code) == (want_status, want_code), doc
            assert list(doc["outputs"]) == self.enabled()
            for name, got in doc["outputs"].items():
                m = self.model[name]
                assert got["healthy"] is m.healthy()
                assert got["breaker"] == m.breaker.state
                assert got["health_check"] == {"ok": m.health_ok, "reason": m.health_reason}
                assert got["last_error"] == m.last_error
                assert (got["last_success_ms"] is None) is (m.delivered == 0)
                assert got["in_flight_batches"] == 0
                assert got["dlq"] == len(self.dlq.get(name, []))
            assert doc["spool"]["rows"] == self.events
            assert doc["inputs"] == []

    @invariant()
    def metrics_are_the_model_s(self) -> None:
        if self.sup is None:
            return
        code, headers, body = self.call("/metrics")
        assert code == 200 and headers["Content-Type"].startswith("text/plain")
        text = body.decode()
        assert not any(c in text for c in CANARIES), text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        enabled = self.enabled()
        for fam in PER_OUTPUT:
            labels = {s.labels["output"] for s in families[fam].samples}
            assert labels == set(enabled), (fam, labels)

        def value(sample: str, output: str) -> float:
            """The one sample ``sample{output=...}``."""
            fam = families[sample.removesuffix("_total")]
            got = [s.value for s in fam.samples if s.name == sample and s.labels == {"output": output}]
            assert len(got) == 1, (sample, output, got)
            return got[0]

        for name in enabled:
            m = self.model[name]
            for fam, want in (("clawd_agent_output_events_delivered", m.delivered),
                              ("clawd_agent_output_events_filtered", m.filtered),
                              ("clawd_agent_output_failures", m.failed_attempts),
                              ("clawd_agent_output_retries", m.retries),
                              ("clawd_agent_output_events_dlq", m.dlq_counter),
                              ("clawd_agent_output_events_replayed", m.replayed)):
                assert value(fam + "_total", name) == want, (fam, name)
            assert value("clawd_agent_output_in_flight_events", name) == 0
            assert value("clawd_agent_output_in_flight_batches", name) == 0
            assert value("clawd_agent_output_healthy", name) == m.healthy()
            assert value("clawd_agent_output_breaker_state", name) == \
                {"closed": 0, "half-open": 1, "open": 2}[m.breaker.state]
            assert value("clawd_agent_output_rate_limit_requests_per_second", name) == m.spec.rate_requests
            assert value("clawd_agent_output_rate_limit_events_per_second", name) == m.spec.rate_events
            assert value("clawd_agent_output_lag_events", name) == self.events - self.cursors[name]
            requests = {s.labels["status"]: s.value for s in families["clawd_agent_output_requests"].samples
                        if s.name.endswith("_total") and s.labels["output"] == name}
            assert requests == m.requests
            for fam, values, bounds in (("clawd_agent_output_request_duration_seconds", m.request_seconds,
                                         LATENCY_BUCKETS),
                                        ("clawd_agent_output_batch_bytes", m.batch_bytes, BYTES_BUCKETS)):
                samples = {(s.name[len(fam) + 1:], s.labels.get("le", "")): s.value
                           for s in families[fam].samples if s.labels["output"] == name}
                histogram_ok(samples, values, bounds)
        checked = {s.labels["output"]: s.value
                   for s in families["clawd_agent_output_health_check_ok"].samples}
        assert checked == {n: float(self.model[n].health_ok) for n in enabled
                           if self.model[n].health_ok is not None}
        stored = {s.labels["output"]: s.value for s in families["clawd_agent_dlq_events"].samples}
        assert stored == {n: len(r) for n, r in self.dlq.items()}
        fs = {(s.labels["output"], s.labels["data_stream"]): s.value
              for s in (families[FAILURE_STORE].samples if FAILURE_STORE in families else [])
              if s.name.endswith("_total")}
        assert fs == {(n, k): v for n in enabled for k, v in self.model[n].failure_store.items()}
        assert families["clawd_agent_spool_rows"].samples[0].value == self.events
        # counters never go down between scrapes
        for fam in families.values():
            if fam.type != "counter":
                continue
            for s in fam.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                assert s.value >= self.scraped.get(key, 0), (key, s.value, self.scraped.get(key))
                self.scraped[key] = s.value

    @invariant()
    def other_paths_are_not_found(self) -> None:
        if self.sup is None:
            return
        for path in ("/", "/metrics/", "/health/x", "/status", "/Health"):
            code, _, body = self.call(path)
            assert (code, body) == (404, b"not found\n"), path

    # -- status ------------------------------------------------------------------------------------

    @rule(via_cli=st.booleans(), as_json=st.booleans())
    def heartbeat_then_status(self, via_cli: bool, as_json: bool) -> None:
        """The agent records its state; `status` (in this process's eyes: pid alive, heartbeat
        fresh) says what /health says."""
        sup = self.sup
        assert sup is not None
        sup.record_state()
        for name in self.enabled():
            if self.model[name].last_error is not None:
                self.recorded_error[name] = self.model[name].last_error[:REASON_MAX]
        _, _, body = self.call("/health")
        health_doc = orjson.loads(body)["status"]
        want, _ = self.expected_health()
        st_ = collect_status(self.config)
        assert st_["health"] == health_doc == want
        assert st_["agent"]["running"] is True and st_["agent"]["pid"] == os.getpid()
        assert list(st_["outputs"]) == list(self.model)
        for name, o in st_["outputs"].items():
            m = self.model[name]
            assert o["enabled"] is m.spec.enabled
            assert o["cursor"] == self.cursors[name]
            assert o["lag_events"] == self.events - self.cursors[name]
            assert o["dlq"] == len(self.dlq.get(name, []))
            assert o["dlq_last_reason"] == (self.dlq[name][-1] if self.dlq.get(name) else None)
            assert o["last_error"] == self.recorded_error.get(name)
            if not m.spec.enabled:
                continue
            assert o["healthy"] is m.healthy()
            assert o["breaker"] == m.breaker.state
            assert o["breaker_reason"] == ((m.breaker.reason[:REASON_MAX] or None)
                                           if m.breaker.state != "closed" else None)
            assert o["health_check"] == {"ok": m.health_ok, "reason": m.health_reason}
            assert o["delivered_total"] == m.delivered
            assert o["in_flight_batches"] == 0
            assert o["rate_limit"] == {"requests_per_s": significant(m.spec.rate_requests),
                                       "events_per_s": significant(m.spec.rate_events)}
            assert o["destination_counters"] == (
                {"events_failure_store": m.failure_store} if m.failure_store else {})
        assert st_["orphan_cursors"] == [ORPHAN]
        assert st_["orphan_dlq"] == ({ORPHAN: {"count": len(self.dlq[ORPHAN]),
                                               "last_reason": self.dlq[ORPHAN][-1]}}
                                     if self.dlq.get(ORPHAN) else {})
        text = render_status(st_)
        self.check_text(text, want)
        if via_cli:
            args = ["status", *(["--json"] if as_json else []), "-c", str(self.cfg_path)]
            r = CliRunner().invoke(cli, args, color=True)  # as a terminal gets it: nothing stripped
            assert isinstance(r.exception, SystemExit | None), (r.output, r.exception)
            assert r.exit_code == (0 if want == "ok" else 1), r.output
            if as_json:
                assert not any(c in r.output for c in CANARIES), r.output
                got = orjson.loads(r.output)
                assert got["health"] == want
                assert {n: o["healthy"] for n, o in got["outputs"].items()} == \
                    {n: o["healthy"] for n, o in st_["outputs"].items()}
            else:
                self.check_text(r.output, want)

    def notes_expected(self, name: str) -> bool:
        """docs: the line under an output holds its exceptional facts: breaker not closed, health
        check failing, a rate limit, destination counters, DLQ entries."""
        m = self.model[name]
        if self.dlq.get(name):
            return True
        if not m.spec.enabled:
            return False
        return (m.breaker.state != "closed" or m.health_ok is False or bool(m.spec.rate_requests)
                or bool(m.spec.rate_events) or bool(m.failure_store))

    def check_text(self, text: str, health: str) -> None:
        assert not any(c in text for c in CANARIES), text
        assert not RAW_CONTROL.search(text.replace("\n", "")), text
        lines = text.split("\n")
        assert lines[-1] == ""
        lines = lines[:-1]
        assert lines[0] == f"clawd-agent: running (pid {os.getpid()})   health: {health}"
        header = next(i for i, line in enumerate(lines) if line.startswith("  name "))
        rows = lines[header + 1:]
        for name, m in self.model.items():
            row = f"  {name}{'' if m.spec.enabled else ' (disabled)'} "
            assert sum(1 for line in rows if line.startswith(row)) == 1, (name, rows)
        orphan_lines = 1 + bool(self.dlq.get(ORPHAN))
        assert len(rows) == len(self.model) + sum(map(self.notes_expected, self.model)) + orphan_lines, rows
        # 2 agent lines, spool, blank, "inputs:", the input, blank, "outputs:", the header
        assert header == 8, lines


HealthMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    database=None,  # nothing written into the repository
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestHealthStateMachine = HealthMachine.TestCase


# -------------------------------------------------------------------------------- 2. the HTTP server


@contextmanager
def serving(specs: list[OutSpec]) -> Iterator[Supervisor]:
    """A supervisor with its metrics server listening on a free loopback port, one drain per
    enabled output (not running)."""
    root = Path(tempfile.mkdtemp(prefix="health-http-"))
    (root / "state").mkdir()
    config = parse_config(agent_toml(root, specs), "agent.toml", {ENV_NAME: CANARY_ENV})
    sup = Supervisor(config)
    sup.spool = sup.open_spool()
    readers = []
    try:
        for s in specs:
            if s.enabled:
                readers.append(sup.spool.reader())
                output = build_output(s.name, config.outputs[s.name])
                sup.drains[s.name] = Drain(output, sup.spool, readers[-1])
        sup.metrics = AgentMetrics(lambda: sup.inputs, lambda: sup.drains, sup.spool_stats)
        sup._start_metrics_server()
        yield sup
    finally:
        if sup.metrics_server is not None:
            sup.metrics_server.stop_gracefully(0.5)
        for r in readers:
            r.close()
        sup.spool.close()
        shutil.rmtree(root, ignore_errors=True)


def http(port: int, method: str, target: str) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request on a connection of its own (gevent's socket: the server answers meanwhile)."""
    with gevent.socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


KNOWN_PATHS = ("/metrics", "/health", "/healthz")
paths = st.lists(st.sampled_from(["metrics", "health", "healthz", "status", "", "..", "%2e", "Metrics", "x"]),
                 min_size=0, max_size=3).map(lambda parts: "/" + "/".join(parts))


@settings(max_examples=15, deadline=None, database=None)
@given(specs=output_specs(), failing=st.booleans(), others=st.lists(paths, min_size=1, max_size=4),
       query=st.sampled_from(["", "?x=1", "?format=json"]))
def test_the_server_answers_health_and_metrics_and_404_for_anything_else(
        specs: list[OutSpec], failing: bool, others: list[str], query: str) -> None:
    """GET and HEAD of /metrics, /health and /healthz (a query string does not change the path);
    HEAD gets the status and headers a GET gets, no body (listen.py: RFC 9110 §9.3.2); /health is
    503 exactly when no output is healthy; any other path is 404."""
    with canary_env(), serving(specs) as sup:
        assert sup.metrics_server is not None
        port = sup.metrics_server.server_port
        if failing:
            for d in sup.drains.values():
                d.stats.note_failure("HTTP 503")
        want = 503 if sup.drains and failing else 200
        for path in KNOWN_PATHS:
            code, headers, body = http(port, "GET", path + query)
            assert code == (want if path != "/metrics" else 200), (path, code, body)
            assert not any(c.encode() in body for c in CANARIES)
            if path == "/metrics":
                assert headers["content-type"].startswith("text/plain")
                names = {f.name for f in text_string_to_metric_families(body.decode())}
                assert "clawd_agent_output_healthy" in names
            else:
                assert headers["content-type"] == "application/json"
                doc = orjson.loads(body)
                assert doc["status"] == ("failing" if want == 503 else "ok")
                assert list(doc["outputs"]) == [s.name for s in specs if s.enabled]
            head_code, head_headers, head_body = http(port, "HEAD", path + query)
            assert (head_code, head_body) == (code, b"")
            assert head_headers["content-type"] == headers["content-type"]
            if path == "/metrics":  # /health's uptime_s moves between the two requests
                assert int(head_headers["content-length"]) == len(body)
        for path in others:
            if path in KNOWN_PATHS:
                continue
            code, _, body = http(port, "GET", path + query)
            assert (code, body) == (404, b"not found\n"), path


# -------------------------------------------------------------------------------- 3. documented names


def documented_metrics() -> set[str]:
    """The metric names docs/outputs.md §7 lists (``..._x`` is ``clawd_agent_output_x``)."""
    doc = (ROOT / "docs" / "outputs.md").read_text()
    section = doc[doc.index("## 7. Health and metrics"):doc.index("## 8.")]
    names = set()
    for token in re.findall(r"`((?:clawd_agent_|\.\.\._)[a-z_]+)(?:\{[^`]*\})?`", section):
        names.add(token.replace("..._", "clawd_agent_output_"))
    return names


def test_every_documented_metric_is_exposed_under_its_name() -> None:
    specs = [OutSpec("es", "elasticsearch", True, 1, 0.0, 0.0)]
    with canary_env(), serving(specs) as sup:
        assert sup.metrics is not None
        from outputs.base import Outcome

        sup.metrics.observe_batch("es", 0.02, Outcome.delivered())
        drain = sup.drains["es"]
        drain.stats.health_ok = True
        drain.output._note_failure_store({"logs-x-default": 1})  # type: ignore[attr-defined]
        sup.spool.ensure_cursor("es", "beginning")
        sup.spool.append(IngestBatch("i", [EncodedEvent(bytes(16), 1, b"{}")]))
        sup.spool.dlq_add("es", sup.spool.read_after(0, 1), "HTTP 400")
        _, _, body = http(sup.metrics_server.server_port, "GET", "/metrics")  # type: ignore[union-attr]
    families = list(text_string_to_metric_families(body.decode()))
    exposed = {f.name for f in families} | {f.name + "_total" for f in families if f.type == "counter"}
    documented = documented_metrics()
    assert len(documented) >= 20, documented  # the list was found
    assert documented <= exposed, documented - exposed


# -------------------------------------------------------------------------------- 4. in flight


NAME = "crashy"


class CrashingReader:
    """The drain's read connection, failing as a disk I/O error does from its ``crash_at``-th read."""

    def __init__(self, inner: Any, crash_at: int) -> None:
        self.inner = inner
        self.crash_at = crash_at
        self.reads = 0

    def read_after(self, after: int, limit: int) -> Any:
        self.reads += 1
        if self.reads >= self.crash_at:
            raise sqlite3.OperationalError("disk I/O error")
        return self.inner.read_after(after, limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def crash_then_restart(n: int, batch: int, concurrency: int, crash_at: int) -> tuple[int, int]:
    """A drain whose loop dies at its ``crash_at``-th read, then a new one given the same stats (as
    ``Supervisor._drain_crashed`` / ``_restart_drain`` do) run until caught up and stopped: the
    in-flight counts then."""
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(str(Path(tmp) / "spool.db"))
        first_reader, second_reader = spool.reader(), spool.reader()
        try:
            fill(spool, n)
            conf = cfg(batch_max_events=batch, concurrency=concurrency)
            first = Drain(Fake(NAME, conf), spool, CrashingReader(first_reader, crash_at))
            g = start(first)
            g.join(timeout=10)
            assert g.dead and isinstance(g.exception, sqlite3.OperationalError), g.exception
            second = Drain(Fake(NAME, conf), spool, second_reader, stats=first.stats)
            g2 = start(second)
            try:
                wait_until(lambda: caught_up(spool, NAME)() or g2.dead)
                assert not g2.dead, g2.exception
            finally:
                stop(second, g2)
            return second.stats.in_flight, second.stats.in_flight_batches
        finally:
            first_reader.close()
            second_reader.close()
            spool.close()


@settings(max_examples=12, deadline=None, database=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking: each example runs drains
@given(n=st.integers(1, 30), batch=st.integers(1, 8), concurrency=st.integers(1, 4),
       crash_at=st.integers(1, 4))
def test_in_flight_counts_return_to_zero_after_a_crash_and_a_restart(
        n: int, batch: int, concurrency: int, crash_at: int) -> None:
    """docs/outputs.md §7 ``..._in_flight_batches``, ``..._in_flight_events``; outputs/stats.py: the
    counters survive a drain restart (the supervisor hands the old OutputStats to the new drain).
    Once the restarted drain caught up and stopped, nothing is in flight."""
    assert crash_then_restart(n, batch, concurrency, crash_at) == (0, 0)


def test_defect_a_batch_killed_before_it_started_stays_in_flight_after_a_restart() -> None:
    """Five events make one batch, spawned into the send pool during the first read; the second read
    fails before the hub ran that greenlet, so ``Drain.run`` kills it unstarted and its ``finally``
    (which takes the batch back out of the in-flight counts) never runs. The restarted drain
    delivers the five events again, and shows 5 events and 1 batch in flight for ever."""
    assert crash_then_restart(5, 5, 1, 2) == (0, 0)
