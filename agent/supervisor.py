"""The running agent: owns every greenlet, starts them in order and stops them in reverse.

Start: spool → group-commit writer → drains (one per output) → inputs → metrics/health server →
heartbeat and retention loops. Stop (SIGTERM/SIGINT or ``shutdown()``): inputs stop reading and their
current batch commits; the writer flushes; drains finish the request in flight (a drain sleeping in
backoff stops at once; the spool keeps its batch); state is recorded; the spool closes.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.pool

from agent.config import AgentConfig
from agent.gc_tuning import settle_collector
from agent.gil_tuning import shorten_switch_interval
from agent.listen import AgentWSGIServer
from agent.metrics import AgentMetrics, health_document, output_extra
from agent.offload import IDLE_RETIRE_S, STUCK_S
from outputs.drain import Drain
from outputs.registry import build_output
from outputs.render import build_output_pipeline
from outputs.routing import compile_selector

log = logging.getLogger("clawd_agent.supervisor")


class DataSignal:
    """Wakes every drain as soon as the writer committed new events (no polling latency)."""

    def __init__(self) -> None:
        self._events: list[gevent.event.Event] = []

    def subscribe(self) -> gevent.event.Event:
        ev = gevent.event.Event()
        self._events.append(ev)
        return ev

    def notify(self) -> None:
        for ev in self._events:
            ev.set()


def ensure_cursors(spool: Any, outputs: dict[str, Any]) -> None:
    """Create the cursor of each output that has none, where its ``start_at`` says; but a new
    ``start_at = "end"`` output that other outputs' rules redirect to starts no later than their
    cursors: they skip the events their rules send it from their backlog (those are its events), so
    starting after that backlog would leave those events delivered by nobody, not even DLQ'd."""
    from outputs.routing import redirect_order, redirect_sources

    for name in redirect_order(outputs):
        sources = [spool.get_cursor(s) for s in redirect_sources(name, outputs)]
        seqs = [c.seq for c in sources if c is not None]
        spool.ensure_cursor(name, start=outputs[name].start_at, not_after=min(seqs) if seqs else None)


class Supervisor:
    def __init__(self, config: AgentConfig):
        self.config = config
        self.started_ms = int(time.time() * 1000)
        self.exit_code = 0
        self.spool: Any = None
        self.writer: Any = None
        self.inputs: dict[str, Any] = {}
        self.mapper: Any = None
        #: The offload helper process (agent.offload) shared by mapping and rendering, or None.
        self.offload: Any = None
        self.drains: dict[str, Drain] = {}
        self.metrics: AgentMetrics | None = None
        self.metrics_server: AgentWSGIServer | None = None
        self._drain_group = gevent.pool.Group()
        self._loops = gevent.pool.Group()
        self._stopped = gevent.event.Event()
        self._stopping = False
        #: Clear while ``start()`` runs: a shutdown meanwhile waits for it, then stops all it started.
        self._not_starting = gevent.event.Event()
        self._not_starting.set()
        self._signal = DataSignal()
        self._stats_cache: tuple[float, int, dict[str, Any]] = (-1e9, -1, {})
        self._stats_lock = gevent.lock.Semaphore()  # concurrent scrapes share one refresh
        self._recorded: dict[str, tuple[int, int]] = {}

    # -- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self._stopping:
            raise RuntimeError("the agent was shut down; it cannot start again")
        self._not_starting.clear()
        try:
            self._start()
        finally:
            self._not_starting.set()

    def _start(self) -> None:
        from spool.writer import SpoolWriter

        cfg = self.config
        self.spool = self.open_spool()
        self.writer = SpoolWriter(self.spool, max_events=cfg.spool.commit_max_events,
                                  max_delay_s=cfg.spool.commit_max_delay, on_commit=self._signal.notify)
        self.writer.start()
        from agent.offload import build_offload

        self.offload = build_offload(cfg.agent.offload, cfg.source, cfg)
        ensure_cursors(self.spool, cfg.outputs)
        for name, out_cfg in cfg.outputs.items():
            self.spool.set_enabled(name, out_cfg.enabled)
        self.spool.set_retention_outputs(self._enabled_outputs())
        self.metrics = AgentMetrics(lambda: self.inputs, lambda: self.drains, self.spool_stats)
        for name, out_cfg in cfg.outputs.items():
            if out_cfg.enabled:
                self._start_drain(name, out_cfg)
        from agent.inputs.factory import build_input
        from agent.inputs.mapper import build_mapper

        # [agent] identity and labels plus the ingest transform ([enrichment], [privacy]).
        context = cfg.mapping_context()
        self.mapper = build_mapper(self.offload, context)
        for name, in_cfg in cfg.inputs.items():
            inp = build_input(name, in_cfg, writer=self.writer, spool=self.spool, context=context,
                              mapper=self.mapper)
            inp.start()
            self.inputs[name] = inp
        if cfg.metrics.enabled:
            self._start_metrics_server()
        self._spawn_loop(self._heartbeat_loop)
        self._spawn_loop(self._prune_loop)
        self.record_state()
        settle_collector()  # start-up objects are frozen out of collections; hot-path thresholds
        shorten_switch_interval()  # SQLite's thread gets the interpreter lock back sooner
        log.info("agent started", extra={"inputs": sorted(self.inputs), "outputs": sorted(self.drains),
                                         "spool": cfg.spool_path, "pid": os.getpid()})

    def open_spool(self) -> Any:
        """The spool, with this agent's settings recorded as the running agent's for `status` (which
        a CLI command opening the spool writable must not do: it may run with an edited config)."""
        from spool.store import Spool

        cfg = self.config
        os.makedirs(os.path.dirname(os.path.abspath(cfg.spool_path)), exist_ok=True)
        spool = Spool(cfg.spool_path, durability=cfg.spool.durability,
                      max_bytes=cfg.spool.max_bytes or None, on_full=cfg.spool.on_full)
        try:
            spool.record_config()
        except BaseException:
            spool.close()
            raise
        return spool

    def _start_drain(self, name: str, out_cfg: Any, stats: Any = None) -> None:
        output = build_output(name, out_cfg)
        drain = Drain(output, self.spool, self.spool.reader(), new_data=self._signal.subscribe(),
                      on_batch=self.metrics.observe_batch if self.metrics else None,
                      selector=compile_selector(name, self.config.outputs), stats=stats,
                      pipeline_factory=build_output_pipeline, offload=self.offload)
        self.drains[name] = drain
        g = self._drain_group.spawn(drain.run)
        g.link_exception(lambda g, n=name, c=out_cfg: self._drain_crashed(n, c, g))

    def _drain_crashed(self, name: str, out_cfg: Any, g: gevent.Greenlet) -> None:
        log.critical("output loop crashed; restarting it", extra={"output": name,
                                                                  "error": repr(g.exception)})
        self.exit_code = 2
        old = self.drains.get(name)
        if old is not None:
            old.reader.close()  # its greenlet is dead; the restarted drain opens a connection of its own
        if not self._stopping:
            gevent.spawn_later(1.0, self._restart_drain, name, out_cfg, old.stats if old else None)

    def _restart_drain(self, name: str, out_cfg: Any, stats: Any) -> None:
        if self._stopping:
            return
        self._start_drain(name, out_cfg, stats)

    def _spawn_loop(self, fn: Callable[[], None]) -> None:
        g = self._loops.spawn(fn)
        g.link_exception(lambda g: self._loop_crashed(fn.__name__, g))

    def _loop_crashed(self, what: str, g: gevent.Greenlet) -> None:
        log.critical("background loop crashed", extra={"loop": what, "error": repr(g.exception)})
        self.exit_code = 2

    # -- metrics / health ----------------------------------------------------------------------
    def spool_stats(self) -> dict[str, Any]:
        """``Spool.stats()`` at most once a second, unless new events were spooled since: a scrape
        right after ingest must not read a snapshot from before it. Read in gevent's threadpool on a
        connection of its own (``offload=True``): the agent ingests and delivers meanwhile (its DLQ
        and quarantine counts grow with those tables; a scrape's SQLite work once froze the agent)."""
        with self._stats_lock:
            now = time.monotonic()
            taken, last_seq, stats = self._stats_cache
            seq = self.spool.last_seq()
            if now - taken > 1.0 or seq != last_seq:
                stats = self.spool.stats(offload=True)
                # This process's count, not the file's; only an append evicts, and it moves last_seq.
                stats["evicted_early"] = self.spool.evicted_early
                self._stats_cache = (now, seq, stats)
            return stats

    def _start_metrics_server(self) -> None:
        from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/metrics":
                assert self.metrics is not None
                body = generate_latest(self.metrics.registry)
                start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
                return [body]
            if path in ("/health", "/healthz"):
                import orjson

                code, doc = health_document(self.drains, self.inputs, self.spool_stats(),
                                            self.started_ms)
                start_response(f"{code} {'OK' if code == 200 else 'Service Unavailable'}",
                               [("Content-Type", "application/json")])
                return [orjson.dumps(doc)]
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]

        addr = self.config.metrics.listen
        self.metrics_server = AgentWSGIServer((addr.host, addr.port), app, log=None)
        self.metrics_server.start()

    # -- periodic loops ------------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        while not self._stopping:
            gevent.sleep(self.config.agent.heartbeat_interval)
            self._record_state_logged()
            if self.offload is not None:
                self.offload.retire_if_idle(IDLE_RETIRE_S)
                self.offload.kill_if_stuck(STUCK_S)

    def _record_state_logged(self) -> None:
        """``record_state``, logging a failure instead of raising: neither the heartbeat loop nor a
        shutdown may die of one (a shutdown that raised left the process running)."""
        try:
            self.record_state()
        except Exception:
            log.exception("recording the agent's state in the spool failed")

    def record_state(self) -> None:
        """Persist what `status` shows when it cannot ask this process: heartbeat, counters, errors."""
        now = int(time.time() * 1000)
        self.spool.set_agent_state(pid=os.getpid(), started_ms=self.started_ms, heartbeat_ms=now)
        self.spool.set_input_stats({n: _input_status(i) for n, i in self.inputs.items()})
        for name, drain in list(self.drains.items()):
            st = drain.stats
            last = self._recorded.get(name, (0, 0))
            # Snapshot first: the write yields to the hub, and the drain keeps counting meanwhile.
            # (DLQ'd events are counted by Spool.dlq_add as it stores them.)
            now_counts = (st.delivered, st.failed_attempts)
            self.spool.record_output_state(
                name, success_ms=st.last_success_ms, error_ms=st.last_error_ms, error=st.last_error,
                delivered=now_counts[0] - last[0], failed=now_counts[1] - last[1], extra=output_extra(drain))
            self._recorded[name] = now_counts

    def _enabled_outputs(self) -> list[str]:
        """What retention, and a full spool making room, count as delivered: what all of these have."""
        return [n for n, c in self.config.outputs.items() if c.enabled]

    def _prune_loop(self) -> None:
        while not self._stopping:
            gevent.sleep(self.config.spool.prune_interval)
            removed = self.spool.prune(self.config.spool.retention, self._enabled_outputs())
            if removed:
                log.info("retention pruned delivered events", extra={"rows": removed})

    # -- run / stop ----------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        gevent.signal_handler(signal.SIGTERM, self.request_shutdown)
        gevent.signal_handler(signal.SIGINT, self.request_shutdown)

    def request_shutdown(self) -> None:
        if not self._stopping:
            gevent.spawn(self.shutdown)

    def run_forever(self) -> int:
        self.start()
        self.install_signal_handlers()
        self._stopped.wait()
        return self.exit_code

    def caught_up(self) -> bool:
        """True when every enabled output has delivered everything spooled so far."""
        last = self.spool.last_seq()
        return all((self.spool.get_cursor(n) or (0, 0))[0] >= last for n in self.drains)

    def shutdown(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        log.info("agent stopping")
        try:
            self._shut_down()
        except Exception:  # the process must still exit (run_forever waits for _stopped)
            log.exception("shutdown failed; exiting anyway")
            self.exit_code = self.exit_code or 1
        finally:
            self._stopped.set()

    def _shut_down(self) -> None:
        self._not_starting.wait()  # a start in progress finishes first: then everything it started stops
        if self.spool is None:  # never started (or its spool did not open): nothing to stop
            return
        for inp in self.inputs.values():
            try:
                inp.stop()
            except Exception:
                log.exception("input stop failed")
        if self.writer is not None:
            self.writer.stop()
        for drain in self.drains.values():
            drain.stop()
        self._drain_group.join(timeout=self.config.agent.shutdown_timeout)
        self._drain_group.kill(block=True, timeout=2)
        for drain in self.drains.values():
            try:
                drain.reader.close()  # Spool.reader(): "close it when done"
            except Exception:
                log.exception("closing an output's spool reader failed")
        if self.offload is not None:
            self.offload.close()
        self._loops.kill(block=True, timeout=2)
        self._record_state_logged()
        try:
            self.spool.clear_agent_state()  # `status` then says no agent runs
        except Exception:
            log.exception("clearing the agent's state in the spool failed")
        if self.metrics_server is not None:
            self.metrics_server.stop_gracefully(1)
        self.spool.close()
        log.info("agent stopped", extra={"exit_code": self.exit_code})


def _input_status(inp: Any) -> dict[str, Any]:
    status = inp.status() if hasattr(inp, "status") else {}
    st = getattr(inp, "stats", None)
    if st is not None:
        for key in ("ingested", "quarantined", "duplicates", "errors", "last_event_ms"):
            if hasattr(st, key):
                status.setdefault(key, getattr(st, key))
    return status
