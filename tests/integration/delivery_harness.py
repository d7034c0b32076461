"""Helpers for the delivery E2E tests: vendor mocks (in a thread or as a process), agent.toml with
Splunk HEC and Elasticsearch outputs, the agent's CLI views, and waiting for exact counts.

Why two ways to run a mock: in a thread, a test reads the mock's state directly (every HEC event
stored, every request's arrival time and ids through ``Recorder``); as a ``python -m outputs.mocks``
process it is exactly what the demo and an operator run, driven only through its ``/_mock/``
control endpoints. Either way the agent under test is a real ``python -m agent run`` process
(``tests.integration.harness``), so what is tested is the shipped delivery path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from outputs.mocks.elasticsearch import ElasticsearchMock
from outputs.mocks.server import Fault, FaultSchedule, MockApp, MockRequest, MockResponse, MockServer
from outputs.mocks.splunk_hec import HecToken, SplunkHecApp
from tests.certs import TlsFiles
from tests.integration.harness import ROOT, Agent, audit_line, line_id, wait_for

#: The data stream the Elasticsearch output writes to by default (logs-<dataset>-<namespace>).
ES_STREAM = "logs-clawdstrike.security-default"
BULK = "/_bulk"
HEC_EVENT = "/services/collector/event"
HEC_ACK = "/services/collector/ack"


# ---------------------------------------------------------------------------------------- mocks


@dataclass
class Arrival:
    """One request as the mock saw it (monotonic clock of the test process), recorded when it arrived
    and completed when it was answered."""

    at: float
    method: str
    path: str
    #: The status answered: 0 while the request is being answered, and for good when a server
    #: ``reset`` fault dropped it (no answer).
    status: int = 0
    ids: tuple[str, ...] = ()
    retry_after: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: The JSON answer (dict) as sent, the credential echo included, when the response was a JSON
    #: object of at most the recorder's ``answer_limit`` bytes.
    answer: dict[str, Any] = field(default_factory=dict)
    #: When the answer was ready, just before the server wrote it (0.0: not answered, or dropped).
    answered: float = 0.0
    #: The delay of the ``slow`` fault from ``app_faults`` that held the answer back (0.0: none).
    slowed: float = 0.0
    #: The ackIds a HEC ack query asked about.
    acks_asked: tuple[int, ...] = ()

    @property
    def channel(self) -> str:
        """The HEC channel the request named (its ``X-Splunk-Request-Channel`` header)."""
        return self.headers.get("x-splunk-request-channel", "")


class Recorder(MockApp):
    """Mixin for a vendor mock: records every request the app sees (``arrivals``: arrival and answer
    times, the event ids it carried, the status and answer sent), and answers ``status`` and ``slow``
    faults itself from ``app_faults``.

    Why its own fault schedule: the server's faults answer before the app sees the body, so a test
    could not tell which batch got the 429, nor which request a ``slow`` fault held back; faults
    taken here know the request. A server fault's request is recorded too (``check_faulted``): with
    the fault's status, or status 0 when a ``reset`` dropped it.

    ``answer_limit`` bounds the answers parsed (a bulk answer of thousands of items is skipped: the
    throughput tests need none); None parses every one.

    With ``keep_requests`` set, it also keeps every request whole (``seen``: method, path, query,
    headers, decoded body), those a server fault answered included, and every answer the credential
    echo changed (``echoed``: path, status, body as sent): for a test that searches all a client sent,
    and proves the mock did echo."""

    def __init__(self, *args: Any, answer_limit: int | None = 4096, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: list[Arrival] = []
        self.app_faults = FaultSchedule()
        self.answer_limit = answer_limit
        self._rec_lock = threading.Lock()
        self.keep_requests = False
        self.seen: list[MockRequest] = []
        self.echoed: list[tuple[str, int, bytes]] = []
        # per server thread: the request being answered and its record; the record of a request a
        # server fault took, until that fault's answer is made
        self._current = threading.local()

    def _keep(self, req: MockRequest) -> None:
        if self.keep_requests:
            with self._rec_lock:
                self.seen.append(req)

    def _arrive(self, req: MockRequest) -> Arrival:
        arrival = Arrival(time.monotonic(), req.method, req.path, ids=tuple(self.request_ids(req)),
                          headers={k.lower(): req.headers[k] for k in req.headers},
                          acks_asked=self.request_acks(req))
        with self._rec_lock:
            self.arrivals.append(arrival)
        self._current.req, self._current.arrival = req, arrival
        return arrival

    def _answered(self, arrival: Arrival, resp: MockResponse) -> None:
        arrival.status = resp.status
        arrival.retry_after = resp.headers.get("Retry-After")
        arrival.answer = self._parse(resp.body)
        arrival.answered = time.monotonic()

    def _parse(self, body: bytes) -> dict[str, Any]:
        if body[:1] == b"{" and (self.answer_limit is None or len(body) <= self.answer_limit):
            with contextlib.suppress(ValueError):
                return json.loads(body)
        return {}

    def check_faulted(self, req: MockRequest) -> None:
        """A request a server fault answers or drops never reaches ``handle``: recorded here (its
        answer by ``fault_response``; a reset makes none)."""
        self._keep(req)
        self._current.faulted = self._arrive(req)
        super().check_faulted(req)

    def fault_response(self, fault: Fault) -> MockResponse:
        resp = super().fault_response(fault)
        if fault.retry_after is not None:
            resp.headers["Retry-After"] = str(max(0, round(fault.retry_after)))  # as the server does
        faulted = getattr(self._current, "faulted", None)
        if faulted is not None:  # the server's fault answers the request check_faulted recorded
            self._current.faulted = None
            self._answered(faulted, resp)
        return resp

    def echo_response(self, req: MockRequest, resp: MockResponse) -> MockResponse:
        out = super().echo_response(req, resp)
        if out is not resp:
            if getattr(self._current, "req", None) is req:
                self._current.arrival.answer = self._parse(out.body)
            if self.keep_requests:
                with self._rec_lock:
                    self.echoed.append((req.path, out.status, out.body))
        return out

    def handle(self, req: MockRequest) -> MockResponse:
        self._keep(req)
        self._current.faulted = None
        arrival = self._arrive(req)
        fault = self.app_faults.take(req.path, kinds=("status", "slow"))
        if fault is not None and fault.kind == "slow":
            arrival.slowed = fault.delay
            time.sleep(fault.delay)
            fault = None
        if fault is not None:
            super().check_faulted(req)  # the vendor's spec check runs on a faulted request too
            resp = self.fault_response(fault)
        else:
            resp = super().handle(req)  # type: ignore[safe-super]
        self._answered(arrival, resp)
        return resp

    def request_ids(self, req: MockRequest) -> list[str]:
        """The event ids a request carries (vendor-specific; none by default)."""
        return []

    def request_acks(self, req: MockRequest) -> tuple[int, ...]:
        """The ackIds a request asks about (vendor-specific; none by default)."""
        return ()

    def requests(self, prefix: str = "") -> list[Arrival]:
        """The requests to a path starting with ``prefix`` (all by default) in arrival order, those
        being answered and those a server fault answered or dropped included."""
        with self._rec_lock:
            return sorted((a for a in self.arrivals if a.path.startswith(prefix)), key=lambda a: a.at)

    def requests_to(self, path: str) -> list[Arrival]:
        with self._rec_lock:
            return sorted((a for a in self.arrivals if a.path.endswith(path)), key=lambda a: a.at)

    def first_arrivals(self, path: str) -> dict[str, float]:
        """When each event id first arrived in a request to ``path`` (whatever the answer)."""
        first: dict[str, float] = {}
        for a in self.requests_to(path):
            for i in a.ids:
                first.setdefault(i, a.at)
        return first


class RecordingElasticsearch(Recorder, ElasticsearchMock):
    """The Elasticsearch mock, recording the ``_id`` of every bulk action."""

    def request_ids(self, req: MockRequest) -> list[str]:
        if not req.path.endswith(BULK):
            return []
        ids = []
        for line in req.body.split(b"\n")[0::2]:  # action lines; sources alternate with them
            try:
                action = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(action, dict) and action:
                meta = next(iter(action.values()))
                if isinstance(meta, dict) and "_id" in meta:
                    ids.append(str(meta["_id"]))
        return ids


class RecordingHec(Recorder, SplunkHecApp):
    """The Splunk HEC mock, recording the canonical ``event_id`` of every event sent and the ackIds
    of every ack query."""

    def request_ids(self, req: MockRequest) -> list[str]:
        if not req.path.startswith(HEC_EVENT):
            return []
        return [i for i in (_hec_event_id(e) for e in concatenated_json(req.body)) if i]

    def request_acks(self, req: MockRequest) -> tuple[int, ...]:
        if not req.path.startswith(HEC_ACK):
            return ()
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return tuple(json.loads(req.body)["acks"])
        return ()

    def event_ids(self) -> list[str]:
        """The event id of every stored (indexed) event, duplicates included."""
        with self._lock:
            events = list(self.events)
        return [i for i in (_hec_event_id(e) for e in events) if i]

    def unacked_posts(self) -> list[Arrival]:
        """Accepted event posts whose ackId was never reported true to an ack query (the client
        gave up on them, or the ack was lost)."""
        acked = {(a.channel, int(k))
                 for a in self.requests_to(HEC_ACK) if a.status == 200
                 for k, ok in (a.answer.get("acks") or {}).items() if ok is True}
        return [a for a in self.requests_to(HEC_EVENT) if a.status == 200
                and (a.channel, a.answer.get("ackId")) not in acked]


def concatenated_json(body: bytes) -> Iterable[Any]:
    """The JSON values of a HEC body of concatenated events, up to the first that does not parse."""
    decoder = json.JSONDecoder()
    text = body.decode("utf-8", "replace")
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            return
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return
        yield value


def _hec_event_id(envelope: Any) -> str:
    ev = envelope.get("event") if isinstance(envelope, dict) else None
    if isinstance(ev, dict):
        return str(ev.get("event_id") or (ev.get("event") or {}).get("id") or "")
    return ""


@dataclass
class Mock:
    """A running vendor mock: ``app`` and ``server`` when in a thread, ``proc`` when a process."""

    kind: str
    url: str
    app: Any = None
    server: MockServer | None = None
    proc: subprocess.Popen[str] | None = None
    tls: TlsFiles | None = None
    mtls: bool = False
    #: Whether the test's own control requests check the mock's host name (off for a mock serving
    #: a certificate made for another name on purpose; the chain is still verified).
    check_hostname: bool = True
    _stderr: list[str] = field(default_factory=list)

    # -- control endpoints (work for both kinds) -----------------------------------------------
    def control(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10, context=self._client_context()) as resp:
            return json.loads(resp.read() or b"null")

    def add_faults(self, *faults: Mapping[str, Any]) -> None:
        """Schedule server faults (``outputs.mocks.server.Fault`` dicts) via ``POST /_mock/faults``."""
        self.control("POST", "/_mock/faults", [dict(f) for f in faults])

    def clear_faults(self) -> None:
        self.control("DELETE", "/_mock/faults")

    def stats(self) -> dict[str, Any]:
        return self.control("GET", "/_mock/stats")

    def es_docs(self, index: str = ES_STREAM) -> dict[str, Any]:
        """Stored Elasticsearch documents by ``_id`` (``POST /_mock/docs``)."""
        return self.control("POST", "/_mock/docs", {"index": index})["docs"]

    def _client_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        ctx = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        ctx.check_hostname = self.check_hostname
        if self.mtls:
            ctx.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        return ctx

    # -- lifecycle ------------------------------------------------------------------------------
    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_thread_mock(app: MockApp, kind: str, *, tls: TlsFiles | None = None,
                      mtls: bool = False) -> Mock:
    """Serve ``app`` from a thread of the test process (HTTPS with ``tls``; mTLS with ``mtls``)."""
    server = MockServer(app, certfile=str(tls.server_cert) if tls else None,
                        keyfile=str(tls.server_key) if tls else None,
                        client_ca=str(tls.ca_cert) if tls and mtls else None).start()
    return Mock(kind, server.url, app=app, server=server, tls=tls, mtls=mtls)


def start_process_mock(kind: str, *, tls: TlsFiles | None = None, mtls: bool = False,
                       tokens: Iterable[str] = (), options: Mapping[str, str] | None = None,
                       timeout: float = 30) -> Mock:
    """Run ``python -m outputs.mocks <kind>`` and wait for its ``listening <url>`` line."""
    argv = [sys.executable, "-m", "outputs.mocks", kind]
    if tls is not None:
        argv += ["--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key)]
        if mtls:
            argv += ["--client-ca", str(tls.ca_cert)]
    for t in tokens:
        argv += ["--token", t]
    for k, v in (options or {}).items():
        argv += ["--option", f"{k}={v}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    mock = Mock(kind, "", proc=proc, tls=tls, mtls=mtls)
    assert proc.stdout is not None and proc.stderr is not None
    threading.Thread(target=lambda: mock._stderr.extend(proc.stderr), daemon=True).start()  # type: ignore[union-attr]
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not line or not line[0].startswith("listening "):
        mock.stop()
        raise AssertionError(f"mock {kind} did not start: {line!r} {''.join(mock._stderr)[-2000:]}")
    mock.url = line[0].split(" ", 1)[1].strip()
    return mock


def assert_es_spec_clean(es: Mock) -> None:
    """The Elasticsearch mock checked every ``_bulk`` exchange against the vendor spec (the check was
    on: ../shared/vendor-specs was found) and recorded no violation, faulted requests included."""
    st = es.app.stats() if es.app is not None else es.stats()
    assert st["spec_checked"] is True, "the Elasticsearch mock ran without its vendor-spec check"
    assert st["spec_violations"] == []


def hec_app(tokens: Iterable[str], *, ack: bool = False, **kwargs: Any) -> RecordingHec:
    return RecordingHec([HecToken(t, use_ack=ack) for t in tokens], **kwargs)


def es_app(**kwargs: Any) -> RecordingElasticsearch:
    return RecordingElasticsearch(**kwargs)


def fault(kind: str = "status", **kw: Any) -> dict[str, Any]:
    """A Fault dict, validated here so a typo fails in the test, not in the mock."""
    Fault.from_dict({"kind": kind, **kw})
    return {"kind": kind, **kw}


@dataclass
class HeldConnection:
    """One connection a ``HungPeer`` accepted: what the client sent; whether the client closed it;
    when (monotonic clock of the test process) its first bytes came, a whole request had arrived,
    and it was closed."""

    received: bytes = b""
    closed_by_client: bool = False
    first_at: float | None = None
    complete_at: float | None = None
    closed_at: float | None = None

    @property
    def complete(self) -> bool:
        """A whole request arrived (headers and the Content-Length body): the client now waits for
        the answer, it is not stuck sending."""
        head, sep, body = self.received.partition(b"\r\n\r\n")
        if not sep:
            return False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                return len(body) >= int(value.strip())
        return True

    def request_lines(self) -> list[str]:
        """The request lines (``POST /_bulk?... HTTP/1.1``) among the bytes received."""
        return [line.decode("latin-1") for line in self.received.split(b"\r\n")
                if line.split(b" ", 1)[0] in (b"GET", b"POST", b"PUT", b"HEAD", b"DELETE")
                and line.endswith((b" HTTP/1.1", b" HTTP/1.0"))]


class _LoopbackPeer:
    """A raw loopback listener whose accept thread hands each connection, with the time it came
    (monotonic clock of the test process), to ``_take``: the base of the misbehaving destinations."""

    def __init__(self, name: str) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name=name, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self._take(sock, time.monotonic())

    def _take(self, sock: socket.socket, at: float) -> None:
        raise NotImplementedError

    def _close_listener(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()


class HungPeer(_LoopbackPeer):
    """A destination that accepts connections and reads whatever is sent but never answers, holding
    every socket until ``stop``: a service hung after accepting (unlike a closed port, which is
    refused at once). ``snapshot()`` says what it holds."""

    def __init__(self) -> None:
        self._conns: list[tuple[socket.socket, HeldConnection]] = []
        self._stopping = False
        super().__init__("hung-peer")

    def _take(self, sock: socket.socket, at: float) -> None:
        held = HeldConnection()
        with self._lock:
            if self._stopping:
                sock.close()
                return
            self._conns.append((sock, held))
        threading.Thread(target=self._read, args=(sock, held), daemon=True).start()

    def _read(self, sock: socket.socket, held: HeldConnection) -> None:
        while True:
            try:
                data = sock.recv(65536)
            except OSError:  # reset: closed too
                data = b""
            now = time.monotonic()
            with self._lock:
                if not data:
                    held.closed_by_client = not self._stopping
                    held.closed_at = now
                    return
                held.received += data
                if held.first_at is None:
                    held.first_at = now
                if held.complete_at is None and held.complete:
                    held.complete_at = now

    def snapshot(self) -> list[HeldConnection]:
        with self._lock:
            return [dataclasses.replace(h) for _, h in self._conns]

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            conns = list(self._conns)
        self._close_listener()
        for sock, _ in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@dataclass(frozen=True)
class Attempt:
    """One connection a ``DeadPeer`` took: when it was accepted, and the request line read from it."""

    at: float
    request_line: str


class DeadPeer(_LoopbackPeer):
    """A destination that is down yet observable: it accepts each connection, notes when (monotonic
    clock of the test process) and the request line the client sent, and resets it (TCP RST) with
    no answer, so every attempt fails at once as against a crashed service. Unlike a closed port,
    ``attempts()`` says when each attempt came."""

    def __init__(self) -> None:
        self._attempts: list[Attempt] = []
        super().__init__("dead-peer")

    def _take(self, sock: socket.socket, at: float) -> None:
        threading.Thread(target=self._reset, args=(sock, at), daemon=True).start()

    def _reset(self, sock: socket.socket, at: float) -> None:
        head = b""
        with contextlib.suppress(OSError):
            sock.settimeout(10)
            while b"\r\n" not in head and len(head) < 65536:
                data = sock.recv(65536)
                if not data:
                    break
                head += data
        with self._lock:
            self._attempts.append(Attempt(at, head.split(b"\r\n", 1)[0].decode("latin-1")))
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def attempts(self, path: str = "") -> list[Attempt]:
        """The attempts so far (those whose request line names ``path``), in arrival order."""
        with self._lock:
            return sorted((a for a in self._attempts if not path or f" {path}" in a.request_line),
                          key=lambda a: a.at)

    def stop(self) -> None:
        self._close_listener()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): for a dead output, or a free
    port for the metrics listener."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------- config


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string is a JSON string for our values
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML for {type(v).__name__}")


def output_table(name: str, settings: Mapping[str, Any]) -> str:
    lines = [f"[outputs.{name}]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


def hec_output(mock: Mock | str, token: str, **extra: Any) -> dict[str, Any]:
    """Settings of a splunk_hec output pointed at ``mock`` (fast retries for tests)."""
    return {"type": "splunk_hec", "endpoint": mock if isinstance(mock, str) else mock.url,
            "token": token, "retry_initial": "100ms", "retry_max": "1s",
            "breaker_cooldown": "1s", "breaker_cooldown_max": "2s",
            "healthcheck_interval": "1s", **extra}


def es_output(mock: Mock | str, **extra: Any) -> dict[str, Any]:
    """Settings of an elasticsearch output (ECS documents) pointed at ``mock``."""
    return {"type": "elasticsearch", "hosts": [mock if isinstance(mock, str) else mock.url],
            "format": "ecs", "retry_initial": "100ms", "retry_max": "1s",
            "breaker_cooldown": "1s", "breaker_cooldown_max": "2s",
            "healthcheck_interval": "1s", **extra}


def write_agent_config(tmp: Path, outputs: Mapping[str, Mapping[str, Any]], *,
                       metrics_port: int | None = None) -> Path:
    """agent.toml: one tailed audit file (``tmp/in/audit.jsonl``), a durable spool, ``outputs``."""
    (tmp / "in").mkdir(exist_ok=True)
    metrics = (f'listen = "127.0.0.1:{metrics_port}"' if metrics_port else "enabled = false")
    text = f"""
[agent]
data_dir = "{tmp}/state"
log_format = "json"
heartbeat_interval = "200ms"
shutdown_timeout = "5s"

[spool]
durability = "full"
commit_max_delay = "5ms"

[metrics]
{metrics}

[inputs.audit]
type = "file"
paths = ["{tmp}/in/*.jsonl"]
scan_interval = "100ms"
rotate_wait = "1s"

""" + "\n".join(output_table(n, s) for n, s in outputs.items())
    cfg = tmp / "agent.toml"
    cfg.write_text(text)
    return cfg


# ---------------------------------------------------------------------------------------- agent


class DeliveryAgent(Agent):
    """A ``clawd-agent run`` process with extra environment (for ``${ENV}`` secrets)."""

    def __init__(self, config: Path, log_path: Path, env: Mapping[str, str] | None = None):
        super().__init__(config, log_path)
        self.env = dict(env or {})

    def start(self) -> DeliveryAgent:
        env = dict(os.environ, PYTHONPATH=str(ROOT), **self.env)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(self.config)],
                                     cwd=ROOT, env=env, stdout=self._log, stderr=self._log)
        return self

    def wait_running(self, timeout: float) -> DeliveryAgent:
        """Wait until ``status`` sees this agent running (its spool created, outputs started)."""
        wait_until(lambda: agent_running(self.config, self.env), timeout, "the agent to start")
        return self


#: Lists collecting every ``run_cli`` result while a ``recording_cli()`` block is open.
_cli_recorders: list[list[subprocess.CompletedProcess[str]]] = []


@contextlib.contextmanager
def recording_cli() -> Iterator[list[subprocess.CompletedProcess[str]]]:
    """Every CLI call made in the block (the helpers' ``status``/``dlq_list`` polls included), with
    its stdout and stderr: for a test that must search all the CLI printed."""
    calls: list[subprocess.CompletedProcess[str]] = []
    _cli_recorders.append(calls)
    try:
        yield calls
    finally:
        _cli_recorders.remove(calls)


def run_cli(*args: str, config: Path, env: Mapping[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """``clawd-agent <args> -c config`` (as harness.cli, with extra environment)."""
    full = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    res = subprocess.run([sys.executable, "-m", "agent", *args, "-c", str(config)], cwd=ROOT,
                         env=full, capture_output=True, text=True, timeout=60)
    for calls in _cli_recorders:
        calls.append(res)
    if check and res.returncode not in (0, 1):  # status exits 1 when not healthy
        raise AssertionError(f"clawd-agent {' '.join(args)} exited {res.returncode}: {res.stderr}")
    return res


def status(config: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``status --json``, parsed; an AssertionError with the command's stderr if it printed none."""
    res = run_cli("status", "--json", config=config, env=env, check=False)
    try:
        return json.loads(res.stdout)
    except ValueError:
        raise AssertionError(f"status --json exited {res.returncode} without JSON: "
                             f"{res.stderr[-1500:]}") from None


def agent_running(config: Path, env: Mapping[str, str] | None = None) -> bool:
    """Whether ``status`` sees the agent running (False while it is still creating its spool)."""
    try:
        return bool(status(config, env)["agent"]["running"])
    except AssertionError:
        return False


def output_status(config: Path, name: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    return status(config, env)["outputs"][name]


def dlq_list(config: Path, output: str | None = None,
             env: Mapping[str, str] | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """``dlq list --json`` (the CLI lists 100 entries unless ``limit`` says more)."""
    args = ["dlq", "list", "--json"] + (["--output", output] if output else [])
    args += ["--limit", str(limit)] if limit else []
    res = run_cli(*args, config=config, env=env)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def write_events(path: Path, start: int, stop: int, *, run: int = 0) -> list[str]:
    """Append audit lines ``start..stop-1`` to ``path``; their canonical event ids."""
    with open(path, "ab") as f:
        f.write(b"".join(audit_line(i, run=run) for i in range(start, stop)))
    return [line_id(i, run=run) for i in range(start, stop)]


def wait_until(cond: Callable[[], bool], timeout: float, what: str,
               detail: Callable[[], Any] | None = None) -> None:
    """``harness.wait_for`` with a slower poll (the conditions here call HTTP or the CLI); on timeout
    the message adds ``detail()``, the state that explains it."""
    try:
        wait_for(cond, timeout, what, interval=0.25)
    except AssertionError as exc:
        if detail is None:
            raise
        raise AssertionError(f"{exc}; state: {detail()}") from None


def scrape(port: int, path: str = "/metrics") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.read().decode()


def metric(text: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return None
