"""Property-based tests of the per-output Prometheus metrics as they are served, against what the
destination itself recorded: a real agent config (agent.toml parsed by the config loader, canary
credentials in a literal or ``file:`` API key, a ``${ENV}`` header and a HEC token), a real spool,
the real drain and Elasticsearch / Splunk HEC outputs over loopback to the real vendor mocks
(outputs/mocks/, recording every request) with faults hypothesis draws, and the agent's own
registry (agent.metrics.AgentMetrics, whose text ``generate_latest`` renders is what /metrics
serves), parsed back with prometheus_client's text parser. Contract: docs/outputs.md §4 and §7.

tests/outputs/test_chaos_properties.py checks ``OutputStats`` against the mocks and
tests/test_status_health_properties.py checks the exposition against a model of stats driven by
hand; here the two meet: what a scrape shows after a real run under faults, and during it.

1. Exactness. Once the drain's cursor is at the last event, the scrape agrees with the mock's
   records and the spool:
   - ``requests_total{status}`` equals the mock's answers by status class (``error``: a reset, no
     answer), counting the delivery's requests only: Elasticsearch's health checks (drawn on or
     off) are not counted, HEC's ack queries are (§7);
   - ``request_duration_seconds`` counts every one of those requests, buckets cumulative, ``+Inf``
     equal to the count;
   - ``batch_bytes``: one observation per attempt (each attempt is one event POST to the mock), its
     sum the bytes of the event bodies the mock received, decompressed (the body is the items' data
     joined, docs/outputs.md §2 "Packed in flight");
   - ``batch_duration_seconds{result}``: one observation per attempt; for Elasticsearch ``split``
     as many as 413s, ``retry`` as many as answers retried whole, ``delivered`` as many as answers
     that took every event;
   - ``events_delivered_total`` the events the destination stored, ``events_dlq_total`` and
     ``clawd_agent_dlq_events`` the spool's DLQ rows for the output, ``events_filtered_total`` the
     events below the filter;
   - ``retries_total``: the docs give no formula; the code's (and this test's) definition is one per
     answer after which the client sends again some of the same events (the whole batch after a
     retried status or no answer; the per-item retries after a partial answer);
   - ``failures_total``: one per attempt retried whole or that put events in the DLQ;
   - in-flight gauges back to 0, breaker closed, lag 0, the rate-limit gauge within (0, configured];
   - no counter sample ever decreased or vanished across the scrapes taken during the run.
2. Consistency with `status`: after a heartbeat (``Supervisor.record_state``; a few more ran during
   the run) ``collect_status`` and the spool's ``output_state`` say what the scrape says.
3. Breaker gauge (§4: 0 closed, 1 half-open, 2 open): with one batch in flight at a time, a scrape
   at each attempt and after each retried answer follows a model of the documented transitions
   (open after ``breaker_failures`` consecutive failed attempts or one auth failure; 429 and
   per-event rejections are no failure; after the cooldown one probe: half-open; its success
   closes, its failure re-opens); no attempt is sent while the gauge says open. The healthy
   gauge follows §7 in the same scrapes: 0 after an attempt retried whole, throttled, or with
   events put in the DLQ, until the next success (not judged after a 413 bisection or a partial
   answer retrying unthrottled items, of which the docs say nothing).
4. Secrets: no scrape holds a canary credential (any letter case), whatever the faults, with the
   mocks echoing credentials into their error answers.
5. Label hygiene: the output's name, drawn from what the config accepts (Unicode letters and digits,
   ``_`` and ``-``), parses back from every per-output sample exactly.
6. DLQ replay (docs/outputs.md §6): after a run that put events in the DLQ, a restarted drain (same
   ``OutputStats``, as the supervisor hands them on) replays them. ``events_replayed_total`` counts
   the entries delivered and ``events_delivered_total`` grows by as many. ``clawd_agent_dlq_events``
   and `status` show what is left. ``events_dlq_total`` does not grow for an entry refused again.
7. In flight: in every scrape the gauges show at most ``concurrency`` batches (§2: "Up to
   ``concurrency`` batches are in flight at once"; help text "Batches being sent").

Not covered: several outputs in one registry (test_status_health_properties.py), routing rules,
TLS and proxies, answers slower than the client's timeout (their events are stored and then sent
again, so "delivered" no longer equals "stored"), and the breaker with several batches in flight
(an answer to a request sent before the breaker opened may come back at any time).

Defects found and fixed (outputs/drain.py; the tests at the end failed before):
- An attempt that put some of its events in the DLQ and delivered the rest left the output
  healthy: gauge 1, /health ok. The same event alone in its batch makes it unhealthy (§7: "one
  whose events went to the DLQ count as not succeeded until the next success").
- A throttled partial answer (Elasticsearch items refused 429) left the output healthy (§7: "A
  throttled (429) attempt ... count as not succeeded").
- A batch waiting for a free send slot already counted in ``in_flight_batches`` and
  ``in_flight_events``, so they read ``concurrency + 1`` batches whenever every slot was busy.
Property 3's test and property 7's test found them too. Those two tests run without shrinking:
shrinking one example of a real drain and mock took minutes.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import gevent.lock
import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.config import AgentConfig, parse_config
from agent.metrics import AgentMetrics, significant
from agent.status import collect_status
from agent.supervisor import Supervisor
from outputs.base import Outcome
from outputs.breaker import STATE_NAMES
from outputs.drain import Drain
from outputs.http import status_class
from outputs.mocks.elasticsearch import ItemFault
from outputs.mocks.server import Fault, MockServer
from outputs.mocks.splunk_hec import HecToken
from outputs.registry import build_output
from spool.types import EncodedEvent, IngestBatch
from tests.integration.delivery_harness import (
    BULK,
    HEC_ACK,
    HEC_EVENT,
    Arrival,
    RecordingElasticsearch,
    RecordingHec,
)
from tests.integration.delivery_harness import ES_STREAM as DS
from tests.outputs.drain_kit import Fake, Gate, cfg, fill, fresh_spool, start, stop, wait_until

pytestmark = pytest.mark.integration

SETTINGS = dict(deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
ES_HEALTH = "/_cluster/health"
ENV_NAME = "CLAWD_METRICS_TEST_CANARY"
RATE = 5000
#: Every Retry-After the mocks send (1 s) is capped to this.
RETRY_AFTER_MAX = 0.02
HEC_MAX_EVENT = 2000
POISON_PAD = 3000
COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

#: What agent.config accepts as an output name: letters, digits, '_' and '-', one letter or digit.
output_names = st.text(st.one_of(st.characters(categories=("Lu", "Ll", "Lt", "Lo", "Nd")),
                                 st.sampled_from("_-")), min_size=1, max_size=10).filter(
    lambda n: n.replace("_", "").replace("-", "").isalnum())


# ------------------------------------------------------------------------------ scraping


@dataclass
class Scrapes:
    """Every scrape of one run: the text served and its parsed samples, in order."""

    registry: Any
    texts: list[str] = field(default_factory=list)
    parsed: list[Samples] = field(default_factory=list)
    #: One scrape at a time, as one Prometheus server scrapes a target: a scrape yields to the hub
    #: (the spool's statistics are read in a thread), and two interleaved ones finish in any order.
    lock: gevent.lock.Semaphore = field(default_factory=gevent.lock.Semaphore)

    def take(self) -> Samples:
        """One scrape, as /metrics serves it (``generate_latest`` of the agent's registry)."""
        with self.lock:
            return self._take()

    def _take(self) -> Samples:
        text = generate_latest(self.registry).decode("utf-8")
        samples: Samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        self.texts.append(text)
        self.parsed.append(samples)
        return samples


def value(samples: Samples, name: str, output: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted({"output": output, **labels}.items()))))


def series(samples: Samples, name: str, output: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of ``name`` for ``output``, by their other labels."""
    return {tuple(kv for kv in labels if kv[0] != "output"): v for (n, labels), v in samples.items()
            if n == name and ("output", output) in labels}


def check_monotonic(scrapes: Scrapes) -> None:
    """Property 1, last point: no counter (or histogram bucket, count, sum) sample decreased or
    disappeared from one scrape to the next."""
    for before, after in itertools.pairwise(scrapes.parsed):
        for key, v in before.items():
            if key[0].endswith(COUNTER_SUFFIXES):
                assert key in after, f"{key} vanished from a later scrape"
                assert after[key] >= v, f"{key} went down from {v} to {after[key]}"


def check_names(scrapes: Scrapes, name: str) -> None:
    """Property 5: every per-output sample names exactly this output (escaped and parsed back)."""
    for samples in scrapes.parsed:
        outputs = {dict(labels)["output"] for (_n, labels) in samples if "output" in dict(labels)}
        assert outputs <= {name}, (outputs, name)
    assert value(scrapes.parsed[-1], "clawd_agent_output_events_delivered_total", name) is not None


def check_secrets(scrapes: Scrapes, canaries: list[str]) -> None:
    """Property 4."""
    for text in scrapes.texts:
        for canary in canaries:
            assert canary.lower() not in text.lower(), canary


def check_histogram(samples: Samples, name: str, output: str, count: int, **labels: str) -> None:
    """Cumulative buckets ending in ``+Inf`` == ``_count`` == ``count``."""
    buckets = sorted(((float(dict(k)["le"]), v) for k, v in series(samples, f"{name}_bucket", output).items()
                      if all(dict(k).get(a) == b for a, b in labels.items())))
    assert buckets and buckets[-1][0] == float("inf")
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(buckets)), buckets
    assert buckets[-1][1] == count
    assert value(samples, f"{name}_count", output, **labels) == count


# ------------------------------------------------------------------------------ the agent


@dataclass(frozen=True)
class Scenario:
    """One run: events (kept by the filter or not, poison or not), batching and the faults."""

    name: str
    kept: tuple[bool, ...]
    poison: frozenset[int]
    batch_max_events: int
    concurrency: int
    gzip: bool
    faults: tuple[Fault, ...]
    extra: tuple[Any, ...] = ()
    file_secret: bool = False
    healthcheck: bool = False
    breaker_failures: int = 3
    ack: bool = False
    canary: str = "cnryq"


def status_fault(path: str, statuses: list[int]) -> st.SearchStrategy[Fault]:
    status = st.builds(lambda s, ra, count, after: Fault("status", status=s, retry_after=ra, count=count,
                                                         after=after, path=path),
                       st.sampled_from(statuses), st.sampled_from([None, 1.0]), st.integers(1, 3),
                       st.integers(0, 6))
    reset = st.builds(lambda count, after: Fault("reset", count=count, after=after, path=path),
                      st.integers(1, 2), st.integers(0, 6))
    return st.one_of(status, reset)


@st.composite
def scenarios(draw: st.DrawFn, path: str, statuses: list[int], max_n: int = 40,
              concurrency: int | None = None) -> dict[str, Any]:
    n = draw(st.integers(4, max_n))
    kept = tuple(k or i % 3 == 0 for i, k in enumerate(draw(st.lists(st.booleans(), min_size=n, max_size=n))))
    return dict(name=draw(output_names), kept=kept,
                poison=frozenset(draw(st.lists(st.integers(0, n - 1), max_size=3))),
                batch_max_events=draw(st.integers(1, 10)),
                concurrency=concurrency or draw(st.integers(1, 4)), gzip=draw(st.booleans()),
                faults=tuple(draw(st.lists(status_fault(path, statuses), max_size=5))),
                file_secret=draw(st.booleans()), healthcheck=draw(st.booleans()),
                canary="cnry" + draw(st.text("abcdef0123456789", min_size=12, max_size=12)) + "q")


def make_event(i: int, sc: Scenario) -> bytes:
    ev: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=i + 1)), "event_type": "guard_block",
        "timestamp": f"2026-11-{i % 28 + 1:02d}T08:00:00.{i % 1000:03d}Z",
        "decision": {"severity": "critical" if sc.kept[i] else "info", "allowed": False}, "n": i}
    if i in sc.poison:
        ev["poison"] = True
        ev["pad"] = "p" * POISON_PAD
    return orjson.dumps(ev)


def output_toml(sc: Scenario, url: str, root: Path, kind: str) -> str:
    lines = [f'[outputs."{sc.name}"]', f'type = "{kind}"', f"batch_max_events = {sc.batch_max_events}",
             "batch_max_wait = 0", f"concurrency = {sc.concurrency}", "retry_initial = 0.001",
             "retry_max = 0.005", f"retry_after_max = {RETRY_AFTER_MAX}",
             f"breaker_failures = {sc.breaker_failures}", "breaker_cooldown = 0.002",
             "breaker_cooldown_max = 0.01", f"rate_limit_requests = {RATE}",
             f"healthcheck_interval = {0.01 if sc.healthcheck else 0}", "request_timeout = 5",
             f'compression = "{"gzip" if sc.gzip else "none"}"', 'format = "canonical"',
             f'headers = {{ "X-Relay" = "relay ${{{ENV_NAME}}}" }}']
    if kind == "elasticsearch":
        key = f"cnryid:{sc.canary}"
        if sc.file_secret:
            (root / "api_key").write_text(key + "\n")
            key = f"file:{root / 'api_key'}"
        lines += [f'hosts = ["{url}"]', f'api_key = "{key}"']
    else:
        token = sc.canary
        if sc.file_secret:
            (root / "token").write_text(token + "\n")
            token = f"file:{root / 'token'}"
        lines += [f'endpoint = "{url}"', f'token = "{token}"', f"ack = {str(sc.ack).lower()}",
                  "ack_poll_interval = 0.005", "ack_poll_max_interval = 0.02", "ack_timeout = 5"]
    lines += [f'[outputs."{sc.name}".filter]', 'min_severity = "high"']
    return "\n".join(lines) + "\n"


@dataclass
class Run:
    """What a run left behind for the checks."""

    sup: Supervisor
    config: AgentConfig
    drain: Drain
    scrapes: Scrapes
    final: Samples
    outcomes: list[Outcome]
    #: The scrape taken as each attempt returned (``on_batch``), before its outcome was acted on.
    at_attempt: list[Samples]


@contextmanager
def agent(sc: Scenario, url: str, kind: str) -> Iterator[tuple[Supervisor, AgentConfig, Drain]]:
    """A supervisor (not started: no inputs) with its spool holding ``sc``'s events, its metrics
    registry and one real drain (not running) for the output, built from agent.toml."""
    root = Path(tempfile.mkdtemp(prefix="metrics-props-"))
    (root / "state").mkdir()
    text = (f'[agent]\ndata_dir = "{root}/state"\n[metrics]\nlisten = "127.0.0.1:0"\n'
            f'[inputs.i]\ntype = "file"\npaths = ["{root}/in/*.jsonl"]\n' + output_toml(sc, url, root, kind))
    config = parse_config(text, "agent.toml", {ENV_NAME: sc.canary.upper()})
    sup = Supervisor(config)
    sup.spool = sup.open_spool()
    reader = sup.spool.reader()
    try:
        sup.spool.append(IngestBatch("t", [EncodedEvent(uuid.UUID(int=i + 1).bytes, 1_700_000_000_000 + i,
                                                        make_event(i, sc)) for i in range(len(sc.kept))]))
        sup.spool.ensure_cursor(sc.name)
        drain = Drain(build_output(sc.name, config.outputs[sc.name]), sup.spool, reader)
        sup.drains[sc.name] = drain
        # The supervisor's collector, with the spool read fresh: its own spool_stats() keeps a
        # snapshot for up to a second while no event is appended, so a scrape just after the run
        # could show the DLQ count and lag from before its last writes.
        sup.metrics = AgentMetrics(lambda: sup.inputs, lambda: sup.drains, lambda: sup.spool.stats())
        yield sup, config, drain
    finally:
        reader.close()
        sup.spool.close()
        shutil.rmtree(root, ignore_errors=True)


def run(sup: Supervisor, config: AgentConfig, drain: Drain, scrapes: Scrapes,
        until: Callable[[], bool] | None = None) -> Run:
    """Run the drain until its cursor is at the last event (or ``until()``), scraping meanwhile (and
    at each attempt) and recording the heartbeat now and then; then a final scrape and heartbeat."""
    assert sup.metrics is not None
    outcomes: list[Outcome] = []
    at_attempt: list[Samples] = []
    observe = sup.metrics.observe_batch

    def on_batch(name: str, seconds: float, outcome: Outcome) -> None:
        outcomes.append(outcome)
        observe(name, seconds, outcome)
        at_attempt.append(scrapes.take())

    drain._on_batch = on_batch
    name = drain.name
    last = sup.spool.last_seq()
    done = until or (lambda: (sup.spool.get_cursor(name) or (-1, 0))[0] == last)
    g = gevent.spawn(drain.run)

    def sampler() -> None:
        k = 0
        while True:
            scrapes.take()
            k += 1
            if k % 5 == 0:
                sup.record_state()
            gevent.sleep(0.003)

    side = gevent.spawn(sampler)
    try:
        wait_until(lambda: done() or g.dead, timeout=60)
        assert not g.dead, f"the drain died: {g.exception!r}"
    finally:
        side.kill()
        drain.stop()
        g.join(timeout=10)
    assert g.dead
    sup.record_state()
    final = scrapes.take()
    return Run(sup, config, drain, scrapes, final, outcomes, at_attempt)


# ------------------------------------------------------------------------------ common checks


def check_common(r: Run, sc: Scenario, delivered: int, dlq_rows: int, event_posts: list[Arrival],
                 delivery_requests: list[Arrival], body_bytes: int, canaries: list[str]) -> None:
    """Properties 1 (the parts both outputs share), 2, 4 and 5."""
    s, name = r.final, sc.name
    check_monotonic(r.scrapes)
    check_names(r.scrapes, name)
    check_secrets(r.scrapes, canaries)
    # 1. requests by status class: the mock's answers ("error": none)
    classes = Counter("error" if a.status == 0 else status_class(a.status) for a in delivery_requests)
    shown = {dict(k)["status"]: v for k, v in series(s, "clawd_agent_output_requests_total", name).items()}
    assert shown == dict(classes), (shown, classes)
    check_histogram(s, "clawd_agent_output_request_duration_seconds", name, len(delivery_requests))
    # attempts: one event POST each
    check_histogram(s, "clawd_agent_output_batch_bytes", name, len(event_posts))
    assert value(s, "clawd_agent_output_batch_bytes_sum", name) == body_bytes
    results = {dict(k)["result"]: v for k, v in
               series(s, "clawd_agent_output_batch_duration_seconds_count", name).items()}
    assert sum(results.values()) == len(event_posts), (results, len(event_posts))
    for result, n in results.items():
        check_histogram(s, "clawd_agent_output_batch_duration_seconds", name, int(n), result=result)
    # events
    kept = sum(sc.kept)
    assert value(s, "clawd_agent_output_events_delivered_total", name) == delivered
    assert value(s, "clawd_agent_output_events_dlq_total", name) == dlq_rows
    assert (value(s, "clawd_agent_dlq_events", name) or 0) == dlq_rows  # (absent: none stored)
    assert delivered + dlq_rows == kept
    assert value(s, "clawd_agent_output_events_filtered_total", name) == len(sc.kept) - kept
    # gauges at rest
    assert value(s, "clawd_agent_output_in_flight_events", name) == 0
    assert value(s, "clawd_agent_output_in_flight_batches", name) == 0
    assert value(s, "clawd_agent_output_breaker_state", name) == 0
    assert value(s, "clawd_agent_output_lag_events", name) == 0
    rate = value(s, "clawd_agent_output_rate_limit_requests_per_second", name)
    assert rate is not None and 0 < rate <= RATE
    if not sc.healthcheck:
        assert value(s, "clawd_agent_output_health_check_ok", name) is None
    check_status(r, sc)


def check_status(r: Run, sc: Scenario) -> None:
    """Property 2: `status` (after the last heartbeat) and ``output_state`` say what the scrape says."""
    s, name = r.final, sc.name
    got = collect_status(r.config)
    o = got["outputs"][name]
    assert got["agent"]["running"] is True
    assert o["delivered_total"] == value(s, "clawd_agent_output_events_delivered_total", name)
    assert o["dlq"] == (value(s, "clawd_agent_dlq_events", name) or 0)
    assert o["breaker"] == STATE_NAMES[int(value(s, "clawd_agent_output_breaker_state", name) or 0)]
    assert o["healthy"] is (value(s, "clawd_agent_output_healthy", name) == 1)
    assert o["in_flight_batches"] == value(s, "clawd_agent_output_in_flight_batches", name)
    assert o["lag_events"] == value(s, "clawd_agent_output_lag_events", name)
    assert o["rate_limit"]["requests_per_s"] == significant(
        value(s, "clawd_agent_output_rate_limit_requests_per_second", name) or 0)
    hc = value(s, "clawd_agent_output_health_check_ok", name)
    assert o["health_check"]["ok"] == (None if hc is None else hc == 1)
    state = r.sup.spool.read_output_states()[name]
    assert state.delivered_total == value(s, "clawd_agent_output_events_delivered_total", name)
    assert state.failed_total == value(s, "clawd_agent_output_failures_total", name)
    assert state.dlq_total == value(s, "clawd_agent_output_events_dlq_total", name)
    assert state.extra["retries_total"] == value(s, "clawd_agent_output_retries_total", name)
    assert state.extra["filtered_total"] == value(s, "clawd_agent_output_events_filtered_total", name)


def body_bytes(app: Any, prefix: str) -> int:
    """The decompressed bytes of every request to ``prefix`` the mock received."""
    return sum(len(req.body) for req in list(app.seen) if req.path.startswith(prefix))


# ------------------------------------------------------------------------------ Elasticsearch

#: Item statuses retried alone (docs/outputs/elasticsearch.md); other 4xx but 409 go to the DLQ.
ES_ITEM_RETRIED = (408, 429)


def es_items(a: Arrival) -> list[int]:
    if a.status != 200 or not a.answer.get("errors"):
        return []
    return [item["create"]["status"] for item in a.answer["items"]]


def es_retried_whole(a: Arrival) -> bool:
    return a.status == 0 or a.status in (401, 403, 408, 429) or a.status >= 500


def es_dlq_items(a: Arrival) -> bool:
    return any(400 <= x < 500 and x not in (403, 409, *ES_ITEM_RETRIED) for x in es_items(a)) or (
        a.status == 413 and len(a.ids) == 1)


def es_retried_items(a: Arrival) -> bool:
    return any(x in ES_ITEM_RETRIED or x >= 500 for x in es_items(a))


@st.composite
def es_scenarios(draw: st.DrawFn) -> Scenario:
    kw = draw(scenarios(BULK, [429, 503, 500, 413, 401]))
    item = st.builds(lambda s, count, after: ItemFault(status=s, type={
        429: "es_rejected_execution_exception", 503: "unavailable_shards_exception",
        408: "timeout_exception", 400: "document_parsing_exception", 404: "index_not_found_exception"}[s],
        count=count, after=after), st.sampled_from([429, 503, 408, 400, 404]), st.integers(1, 4),
        st.integers(0, 30))
    return Scenario(**kw, extra=tuple(draw(st.lists(item, max_size=3))))


@contextmanager
def es_scenario(sc: Scenario, app: RecordingElasticsearch) -> Iterator[tuple[Any, Any, Drain, Scrapes]]:
    """The Elasticsearch mock of ``sc`` (the poison field refused 400, ``sc.extra`` item faults,
    ``sc.faults``: resets by the server, the others by the app) served to a running agent."""
    app.add_item_fault(ItemFault(status=400, type="mapper_parsing_exception", field="poison", count=-1,
                                 reason="failed to parse field [poison]"))
    for f in sc.extra:
        app.add_item_fault(f)
    with MockServer(app) as server:
        for f in sc.faults:
            (server.faults if f.kind == "reset" else app.app_faults).add(f)
        with agent(sc, server.url, "elasticsearch") as (sup, config, drain):
            yield sup, config, drain, Scrapes(sup.metrics.registry)


def run_es(sc: Scenario) -> None:
    api_key = f"cnryid:{sc.canary}"
    app = RecordingElasticsearch(api_keys=[api_key], echo_headers=("Authorization", "X-Relay"),
                                 answer_limit=None)
    app.keep_requests = True
    with es_scenario(sc, app) as (sup, config, drain, scrapes):
        r = run(sup, config, drain, scrapes)
        bulks = app.requests(BULK)
        everything = app.requests("/")
        assert all(a.path.startswith((BULK, ES_HEALTH)) for a in everything), \
            {a.path for a in everything}
        dlq_rows = len(sup.spool.dlq_list(sc.name, limit=100_000))
        check_common(r, sc, len(set(app.docs(DS))), dlq_rows, bulks, bulks, body_bytes(app, BULK),
                     [sc.canary, api_key, sc.canary.upper()])
        s = r.final
        assert value(s, "clawd_agent_output_retries_total", sc.name) == sum(
            1 for a in bulks if es_retried_whole(a) or es_retried_items(a))
        assert value(s, "clawd_agent_output_failures_total", sc.name) == sum(
            1 for a in bulks if es_retried_whole(a) or es_dlq_items(a))
        results = series(s, "clawd_agent_output_batch_duration_seconds_count", sc.name)
        assert results.get((("result", "delivered"),), 0) == sum(
            1 for a in bulks if a.status == 200 and not a.answer.get("errors"))
        assert results.get((("result", "retry"),), 0) == sum(1 for a in bulks if es_retried_whole(a))
        assert results.get((("result", "split"),), 0) == sum(1 for a in bulks if a.status == 413)


@settings(max_examples=10, **SETTINGS)
@given(sc=es_scenarios())
def test_elasticsearch_metrics_agree_with_the_mock(sc: Scenario) -> None:
    """Properties 1, 2, 4, 5 (module docstring) through the Elasticsearch output and mock."""
    run_es(sc)


# ------------------------------------------------------------------------------ breaker and health


@dataclass
class Model:
    """docs/outputs.md §4 (breaker) and §7 (healthy) for one batch in flight at a time."""

    failures: int
    state: str = "closed"  # or "open" (half-open while its probe is out)
    consecutive: int = 0
    #: The last attempt succeeded (docs §7); None where the docs do not say (a 413 bisected, a
    #: partial answer retrying some events that were neither throttled nor put in the DLQ).
    last_ok: bool | None = True

    def answer(self, a: Arrival) -> None:
        """Apply the answer ``a`` (one attempt) to the model."""
        items = es_items(a)
        failed = a.status == 0 or a.status >= 500 or a.status in (401, 403, 408)
        if failed:
            self.consecutive += 1
            if self.failures and (self.state == "open" or a.status in (401, 403)
                                  or self.consecutive >= self.failures):
                self.state = "open"
        else:  # any answer (a 429, a 413, per-item results) shows the destination up
            self.consecutive = 0
            self.state = "closed"
        throttled = a.status == 429 or 429 in items
        if failed or throttled or es_dlq_items(a):
            self.last_ok = False  # "a throttled (429) attempt and one whose events went to the DLQ"
        elif a.status == 200 and not items:
            self.last_ok = True
        elif a.status == 413 or es_retried_items(a):
            self.last_ok = None
        else:
            self.last_ok = True


@st.composite
def breaker_scenarios(draw: st.DrawFn) -> Scenario:
    kw = draw(scenarios(BULK, [503, 500, 401, 403, 429, 413], max_n=24, concurrency=1))
    kw["healthcheck"] = False
    item = st.builds(lambda s, count, after: ItemFault(status=s, type={
        429: "es_rejected_execution_exception", 503: "unavailable_shards_exception",
        400: "document_parsing_exception"}[s], count=count, after=after),
        st.sampled_from([429, 503, 400]), st.integers(1, 3), st.integers(0, 20))
    return Scenario(**kw, extra=tuple(draw(st.lists(item, max_size=3))),
                    breaker_failures=draw(st.integers(0, 3)))


def run_breaker(sc: Scenario) -> None:
    """Property 3 and the healthy gauge, one attempt at a time (module docstring)."""
    app = RecordingElasticsearch(api_keys=[f"cnryid:{sc.canary}"], answer_limit=None)
    with es_scenario(sc, app) as (sup, config, drain, scrapes):
        after: dict[int, Samples] = {}  # attempt number -> scrape once its retried answer was acted on
        retry_wait = drain._retry_wait

        def scraped_retry_wait(batch: Any, attempt: int, outcome: Outcome, n: int) -> bool:
            after[drain.stats.batches - 1] = scrapes.take()
            return retry_wait(batch, attempt, outcome, n)

        drain._retry_wait = scraped_retry_wait  # type: ignore[method-assign]
        r = run(sup, config, drain, scrapes)
        bulks = app.requests(BULK)
        assert len(r.outcomes) == len(bulks)
        model = Model(sc.breaker_failures)
        name = sc.name
        for k, a in enumerate(bulks):
            pre = r.at_attempt[k]  # taken as attempt k returned, before its answer was acted on
            want = 0 if model.state == "closed" else 1
            assert value(pre, "clawd_agent_output_breaker_state", name) == want, (k, a.status, model)
            if model.last_ok is not None:
                assert value(pre, "clawd_agent_output_healthy", name) == int(model.last_ok), \
                    (k, bulks[k - 1].status, bulks[k - 1].answer, model)
            model.answer(a)
            if k in after:
                gauge = 2 if model.state == "open" else 0
                assert value(after[k], "clawd_agent_output_breaker_state", name) == gauge, (k, a.status)
                if model.last_ok is not None:
                    healthy = model.last_ok and model.state != "open"
                    assert value(after[k], "clawd_agent_output_healthy", name) == int(healthy), \
                        (k, a.status, a.answer, model)
        if model.last_ok is not None:
            assert value(r.final, "clawd_agent_output_healthy", name) == int(model.last_ok), \
                (bulks[-1].status, bulks[-1].answer)


# No shrinking: an example runs a real drain and mock, and shrinking one took minutes.
@settings(max_examples=10, phases=[Phase.explicit, Phase.reuse, Phase.generate], **SETTINGS)
@given(sc=breaker_scenarios())
def test_breaker_and_healthy_gauges_follow_the_documented_transitions(sc: Scenario) -> None:
    """Property 3 (module docstring), and §7's healthy gauge after each kind of answer."""
    run_breaker(sc)


# ------------------------------------------------------------------------------ Splunk HEC


@st.composite
def hec_scenarios(draw: st.DrawFn) -> Scenario:
    kw = draw(scenarios(HEC_EVENT, [429, 503, 500, 413, 401], max_n=30))
    ack = draw(st.booleans())
    codes = [8, 23, 24, 25, 26, 6, *([10, 11] if ack else [])]
    code = st.one_of(st.tuples(st.sampled_from(codes), st.integers(1, 2), st.just(0)),
                     st.tuples(st.just(9), st.integers(1, 2), st.integers(0, 4)))
    return Scenario(**kw, extra=tuple(draw(st.lists(code, max_size=3))), ack=ack)


def run_hec(sc: Scenario) -> None:
    app = RecordingHec([HecToken(sc.canary, use_ack=sc.ack)], echo_headers=("Authorization", "X-Relay"),
                       answer_limit=None)
    app.keep_requests = True
    app.max_event_size = HEC_MAX_EVENT
    for code, count, after_events in sc.extra:
        app.add_code_fault(code, count=count, after_events=after_events)
    with MockServer(app) as server:
        for f in sc.faults:
            (server.faults if f.kind == "reset" else app.app_faults).add(f)
        with agent(sc, server.url, "splunk_hec") as (sup, config, drain):
            r = run(sup, config, drain, Scrapes(sup.metrics.registry))
            posts = app.requests(HEC_EVENT)
            delivery = [a for a in app.requests("/") if a.path.startswith((HEC_EVENT, HEC_ACK))]
            assert sc.ack or not app.requests(HEC_ACK)
            in_dlq = {str(uuid.UUID(bytes=e.event_id)) for e in sup.spool.dlq_list(sc.name, limit=100_000)}
            check_common(r, sc, len(set(app.event_ids()) - in_dlq), len(in_dlq), posts, delivery,
                         body_bytes(app, HEC_EVENT), [sc.canary, sc.canary.upper()])
            retried = sum(1 for o in r.outcomes if o.status.value == "retry"
                          or (o.status.value == "partial" and o.retry_items))
            assert value(r.final, "clawd_agent_output_retries_total", sc.name) == retried


@settings(max_examples=8, **SETTINGS)
@given(sc=hec_scenarios())
def test_splunk_hec_metrics_agree_with_the_mock(sc: Scenario) -> None:
    """Properties 1, 2, 4, 5 (module docstring) through the Splunk HEC output and mock, with and
    without indexer acknowledgement (ack queries are delivery requests: counted)."""
    run_hec(sc)


# ------------------------------------------------------------------------------ in flight


def check_in_flight(scrapes: Scrapes, sc: Scenario) -> None:
    """docs/outputs.md §2: "Up to ``concurrency`` batches are in flight at once"; the gauges are
    "Batches being sent" and "Events being sent"."""
    for s in scrapes.parsed:
        batches = value(s, "clawd_agent_output_in_flight_batches", sc.name)
        events = value(s, "clawd_agent_output_in_flight_events", sc.name)
        assert batches is not None and 0 <= batches <= sc.concurrency, (batches, sc.concurrency)
        assert events is not None and 0 <= events <= sc.concurrency * sc.batch_max_events, events


# No shrinking: an example runs a real drain and mock, and shrinking one took minutes.
@settings(max_examples=5, phases=[Phase.explicit, Phase.reuse, Phase.generate], **SETTINGS)
@given(sc=es_scenarios())
def test_in_flight_gauges_stay_within_the_send_slots(sc: Scenario) -> None:
    """The in-flight gauges, in every scrape taken during a run under faults (module docstring's
    runs), never show more than ``concurrency`` batches of at most ``batch_max_events``."""
    app = RecordingElasticsearch(api_keys=[f"cnryid:{sc.canary}"], answer_limit=None)
    with es_scenario(sc, app) as (sup, config, drain, scrapes):
        r = run(sup, config, drain, scrapes)
    check_in_flight(r.scrapes, sc)


# ------------------------------------------------------------------------------ defects


def healthy_after(kept: tuple[bool, ...], poison: frozenset[int], batch: int,
                  item_faults: tuple[ItemFault, ...] = ()) -> list[tuple[str, float | None]]:
    """Run ``kept`` events (one batch in flight) to the Elasticsearch mock; per attempt, its
    outcome and the healthy gauge scraped once that outcome was acted on (at the next attempt, or
    at the end)."""
    sc = Scenario(name="es", kept=kept, poison=poison, batch_max_events=batch, concurrency=1, gzip=False,
                  faults=(), breaker_failures=0)
    app = RecordingElasticsearch(api_keys=[f"cnryid:{sc.canary}"], answer_limit=None)
    app.add_item_fault(ItemFault(status=400, type="mapper_parsing_exception", field="poison", count=-1))
    for f in item_faults:
        app.add_item_fault(f)
    with MockServer(app) as server, agent(sc, server.url, "elasticsearch") as (sup, config, drain):
        r = run(sup, config, drain, Scrapes(sup.metrics.registry))
    after = [*r.at_attempt[1:], r.final]
    return [(o.status.value, value(s, "clawd_agent_output_healthy", "es")) for o, s in zip(
        r.outcomes, after, strict=True)]


def test_defect_an_attempt_that_put_some_events_in_the_dlq_leaves_the_output_healthy() -> None:
    """docs/outputs.md §7: "one whose events went to the DLQ count as not succeeded until the next
    success". A batch of one refused event makes the output unhealthy (gauge 0, /health failing),
    but a batch of that event and a good one left it healthy: the drain counted the attempt a
    failure (``failures_total``) and then marked it succeeded for the event it delivered."""
    alone = healthy_after((True,), frozenset({0}), 1)
    assert alone == [("partial", 0)]
    with_a_good_one = healthy_after((True, True), frozenset({0}), 2)
    assert with_a_good_one == [("partial", 0)], with_a_good_one


def test_defect_a_throttled_partial_answer_leaves_the_output_healthy() -> None:
    """docs/outputs.md §7: "A throttled (429) attempt ... count[s] as not succeeded until the next
    success". An Elasticsearch bulk answer whose item is a 429 (es_rejected_execution_exception,
    the write queue full: the drain halves its rate for it) left the gauge at 1 until the retry;
    a 429 for the whole request sets it to 0."""
    full = ItemFault(status=429, type="es_rejected_execution_exception", count=1, after=0)
    got = healthy_after((True,), frozenset(), 1, (full,))
    assert got == [("partial", 0), ("delivered", 1)], got


# ------------------------------------------------------------------------------ DLQ replay


@settings(max_examples=6, **SETTINGS)
@given(sc=es_scenarios(), fixed=st.booleans(), data=st.data())
def test_replayed_dlq_entries_are_counted_once(sc: Scenario, fixed: bool, data: st.DataObject) -> None:
    """docs/outputs.md §6-§7 after a run that put events in the DLQ: `clawd-agent dlq replay` marks
    them and a restarted drain (the supervisor hands it the same ``OutputStats``) sends them
    again, to a destination that now takes them (``fixed``) or still refuses the poison ones. Then
    ``events_replayed_total`` counts the entries delivered and deleted. ``events_delivered_total``
    grows by as many. ``clawd_agent_dlq_events`` and `status` show the entries left.
    ``events_dlq_total`` counts events sent to the DLQ, and an entry refused again stays the same
    entry: it does not grow. No counter went down across both runs."""
    poison = frozenset({*sc.poison, data.draw(st.sampled_from([i for i, k in enumerate(sc.kept) if k]))})
    sc = Scenario(**{**sc.__dict__, "poison": poison, "extra": ()})
    app = RecordingElasticsearch(api_keys=[f"cnryid:{sc.canary}"], answer_limit=None)
    app.keep_requests = True
    app.add_item_fault(ItemFault(status=400, type="mapper_parsing_exception", field="poison", count=-1))
    with MockServer(app) as server:
        for f in sc.faults:
            (server.faults if f.kind == "reset" else app.app_faults).add(f)
        with agent(sc, server.url, "elasticsearch") as (sup, config, first):
            scrapes = Scrapes(sup.metrics.registry)
            before = run(sup, config, first, scrapes).final
            name, spool = sc.name, sup.spool
            entries = len(spool.dlq_list(name, limit=100_000))
            assert entries >= 1 and value(before, "clawd_agent_output_events_dlq_total", name) == entries
            delivered = value(before, "clawd_agent_output_events_delivered_total", name)
            # The replay meets no fault but the poison's mapping rejection, unless ``fixed``: the
            # entries left are the poison events' (a 413 alone may have put a good one there).
            app.app_faults.clear()
            server.faults.clear()
            if fixed:
                app.item_faults.clear()
            poisoned = sum(1 for e in spool.dlq_list(name, limit=100_000)
                           if orjson.loads(e.body).get("poison"))
            assert spool.dlq_request_replay(name) == entries
            reader = spool.reader()
            try:
                second = Drain(build_output(name, config.outputs[name]), spool, reader, stats=first.stats)
                sup.drains[name] = second
                r = run(sup, config, second, scrapes,
                        until=lambda: not spool.dlq_replay_ids(name) and second.stats.in_flight_batches == 0)
            finally:
                reader.close()
            left = len(spool.dlq_list(name, limit=100_000))
            assert left == (0 if fixed else poisoned)
            s = r.final
            check_monotonic(scrapes)
            assert value(s, "clawd_agent_output_events_replayed_total", name) == entries - left
            assert value(s, "clawd_agent_output_events_delivered_total", name) == delivered + entries - left
            assert value(s, "clawd_agent_output_events_dlq_total", name) == entries
            assert (value(s, "clawd_agent_dlq_events", name) or 0) == left
            assert value(s, "clawd_agent_output_in_flight_events", name) == 0
            assert value(s, "clawd_agent_output_in_flight_batches", name) == 0
            bulks = app.requests(BULK)
            classes = Counter("error" if a.status == 0 else status_class(a.status) for a in bulks)
            shown = {dict(k)["status"]: v
                     for k, v in series(s, "clawd_agent_output_requests_total", name).items()}
            assert shown == dict(classes)
            check_histogram(s, "clawd_agent_output_batch_bytes", name, len(bulks))
            assert value(s, "clawd_agent_output_batch_bytes_sum", name) == body_bytes(app, BULK)
            check_status(r, sc)


def test_defect_a_batch_waiting_for_a_send_slot_counts_as_in_flight() -> None:
    """With ``concurrency = 1`` and the one send slot busy, the reader registers the next batch and
    waits for the slot: the gauges counted that batch as in flight ("Batches being sent"), so they
    read ``concurrency + 1`` batches and their events whenever every slot was busy (docs/outputs.md
    §2: "Up to ``concurrency`` batches are in flight at once")."""
    with fresh_spool() as spool:
        fill(spool, 3)
        gate = Gate()
        drain = Drain(Fake("f", cfg(batch_max_events=1, concurrency=1), script=[gate]), spool, spool.reader())
        scrapes = Scrapes(AgentMetrics(lambda: {}, lambda: {"f": drain}, spool.stats).registry)
        g = start(drain)
        try:
            # the first batch is being sent (held at the gate), the second registered behind it
            wait_until(lambda: gate.waiting == 1 and len(drain._window) == 2)
            s = scrapes.take()
        finally:
            gate.open()
            stop(drain, g)
        assert value(s, "clawd_agent_output_in_flight_batches", "f") == 1
        assert value(s, "clawd_agent_output_in_flight_events", "f") == 1
