"""The mock-server base: dispatch, gzip, limits, scheduled faults, control endpoints, TLS and mTLS."""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import trustme

from outputs.mocks.server import Fault, FaultSchedule, MockApp, MockRequest, MockResponse, MockServer


class EchoApp(MockApp):
    """Answers every request with what it saw."""

    max_body = 1000

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[MockRequest] = []

    def handle(self, req: MockRequest) -> MockResponse:
        self.seen.append(req)
        return MockResponse.json(200, {"method": req.method, "path": req.path, "query": req.query,
                                       "body": req.body.decode(), "raw_length": req.raw_length,
                                       "x": req.headers.get("x-test", ""),
                                       "decode_error": req.decode_error})

    def stats(self) -> dict[str, int]:
        return {"seen": len(self.seen)}

    def reset(self) -> None:
        self.seen.clear()


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer(EchoApp()) as s:
        yield s


def test_dispatch_query_and_case_insensitive_headers(server: MockServer) -> None:
    r = requests.post(server.url + "/a/b?x=1&y=", data=b"hello", headers={"X-Test": "v"})
    assert r.status_code == 200
    assert r.json() == {"method": "POST", "path": "/a/b", "query": {"x": "1", "y": ""},
                        "body": "hello", "raw_length": 5, "x": "v", "decode_error": ""}


def test_gzip_body_is_decoded_and_raw_length_kept(server: MockServer) -> None:
    raw = gzip.compress(b"a" * 500)
    r = requests.post(server.url + "/", data=raw, headers={"Content-Encoding": "gzip"})
    assert r.json()["body"] == "a" * 500
    assert r.json()["raw_length"] == len(raw)


def test_bad_gzip_is_reported_not_crashed(server: MockServer) -> None:
    r = requests.post(server.url + "/", data=b"not gzip", headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200
    assert "invalid gzip" in r.json()["decode_error"]


def test_body_over_max_is_413_on_wire_and_decoded(server: MockServer) -> None:
    assert requests.post(server.url + "/", data=b"x" * 1001).status_code == 413
    bomb = gzip.compress(b"x" * 5000)  # small on the wire, over the limit decoded
    assert len(bomb) < 1000
    r = requests.post(server.url + "/", data=bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413
    assert requests.post(server.url + "/", data=b"x" * 1000).status_code == 200


@pytest.mark.parametrize("framing", [b"Content-Length: -5\r\n", b"Content-Length: 1x\r\n",
                                     b"Transfer-Encoding: chunked\r\n\r\nzz\r\nab"])
def test_invalid_framing_is_400_and_closed_not_hung(server: MockServer, framing: bytes) -> None:
    """A negative or non-numeric Content-Length, or a chunk size that is not hex, is a framing error
    (RFC 9112 §6.3): 400 and the connection closed, never a read until the client hangs up."""
    host, port = server.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = b"POST /x HTTP/1.1\r\nHost: x\r\n" + framing
        sock.sendall(head if b"chunked" in framing else head + b"\r\nabc")
        answer = b""
        while chunk := sock.recv(4096):  # the server closes: recv returns b"" (never a timeout)
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert server.app.seen == []


def test_status_fault_with_retry_after_then_normal(server: MockServer) -> None:
    server.faults.add(Fault("status", status=429, retry_after=7, count=2))
    first = requests.get(server.url + "/x")
    assert (first.status_code, first.headers["Retry-After"]) == (429, "7")
    assert requests.get(server.url + "/x").status_code == 429
    assert requests.get(server.url + "/x").status_code == 200
    stats = requests.get(server.url + "/_mock/stats").json()
    assert stats["requests_by_status"] == {"429": 2, "200": 1}
    assert stats["seen"] == 1


def test_fault_path_prefix_and_after(server: MockServer) -> None:
    server.faults.add(Fault("status", status=503, path="/services/", after=1))
    assert requests.get(server.url + "/other").status_code == 200  # path does not match
    assert requests.get(server.url + "/services/a").status_code == 200  # skipped by after=1
    assert requests.get(server.url + "/services/a").status_code == 503
    assert requests.get(server.url + "/services/a").status_code == 200  # count used up


def test_fault_until_cleared_and_duration() -> None:
    sched = FaultSchedule()
    sched.add(Fault("status", count=-1))
    assert all(sched.take("/") is not None for _ in range(5))
    sched.clear()
    assert sched.take("/") is None
    sched.add(Fault("status", duration=0.05, count=1))
    assert sched.take("/") is not None and sched.take("/") is not None  # duration ignores count
    time.sleep(0.06)
    assert sched.take("/") is None


def test_ack_delay_is_left_to_the_app() -> None:
    sched = FaultSchedule()
    sched.add(Fault("ack_delay", delay=1.0))
    assert sched.take("/services/collector/event") is None
    f = sched.take("/services/collector/event", kinds=("ack_delay",))
    assert f is not None and f.delay == 1.0


def test_reset_fault_closes_without_answer(server: MockServer) -> None:
    server.faults.add(Fault("reset"))
    with pytest.raises(requests.ConnectionError):
        requests.post(server.url + "/x", data=b"abc")
    assert requests.post(server.url + "/x", data=b"abc").status_code == 200
    assert server.stats()["requests_by_status"]["reset"] == 1


def test_slow_fault_delays_then_answers(server: MockServer) -> None:
    server.faults.add(Fault("slow", delay=0.3))
    with pytest.raises(requests.Timeout):
        requests.get(server.url + "/x", timeout=0.1)
    assert requests.get(server.url + "/x").status_code == 200


def test_control_endpoints(server: MockServer) -> None:
    r = requests.post(server.url + "/_mock/faults",
                      json=[{"kind": "status", "status": 500, "count": 1}])
    assert r.status_code == 200 and r.json()["faults"][0]["status"] == 500
    assert requests.post(server.url + "/_mock/faults", json={"kind": "nope"}).status_code == 400
    assert requests.post(server.url + "/_mock/faults", json={"kind": "slow", "x": 1}).status_code == 400
    assert requests.delete(server.url + "/_mock/faults").json() == {"faults": []}
    assert requests.get(server.url + "/y").status_code == 200
    assert requests.get(server.url + "/_mock/stats").json()["seen"] == 1
    assert requests.post(server.url + "/_mock/reset").status_code == 200
    assert requests.get(server.url + "/_mock/stats").json() == {"seen": 0, "requests_by_status": {}}


def test_keep_alive_connection_reused(server: MockServer) -> None:
    with requests.Session() as s:
        for _ in range(3):
            assert s.post(server.url + "/k", data=b"x").status_code == 200
    assert server.stats()["seen"] == 3


def test_connections_send_without_nagle_delay(server: MockServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """TCP_NODELAY on every accepted connection, as Elasticsearch sets it: with Nagle's algorithm, a
    small answer's body (written after its headers) waited for the client's delayed ACK, ~40 ms."""
    from outputs.mocks import server as mock_server

    flags: list[int] = []
    setup = mock_server._Handler.setup

    def recording_setup(self: mock_server._Handler) -> None:
        setup(self)
        flags.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    monkeypatch.setattr(mock_server._Handler, "setup", recording_setup)
    with requests.Session() as s:
        assert s.post(server.url + "/small", data=b"x").status_code == 200
    assert flags and all(flags)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client_cert = ca.issue_cert("client@example.test")
    paths = {"ca": d / "ca.pem", "server": d / "server.pem", "client": d / "client.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(paths["server"]))
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))
    return {k: str(v) for k, v in paths.items()}


def test_tls_with_custom_ca(pki: dict[str, str]) -> None:
    with MockServer(EchoApp(), certfile=pki["server"]) as s:
        assert s.url.startswith("https://")
        assert requests.get(s.url + "/t", verify=pki["ca"]).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(s.url + "/t")  # system store does not know the test CA


def test_mtls_requires_client_certificate(pki: dict[str, str]) -> None:
    with MockServer(EchoApp(), certfile=pki["server"], client_ca=pki["ca"]) as s:
        ok = requests.get(s.url + "/t", verify=pki["ca"], cert=pki["client"])
        assert ok.status_code == 200
        with pytest.raises((requests.exceptions.SSLError, requests.ConnectionError)):
            requests.get(s.url + "/t", verify=pki["ca"])
        assert requests.get(s.url + "/t", verify=pki["ca"], cert=pki["client"]).status_code == 200


def test_tls_fault_reset(pki: dict[str, str]) -> None:
    with MockServer(EchoApp(), certfile=pki["server"]) as s:
        s.faults.add(Fault("reset"))
        with pytest.raises(requests.ConnectionError):
            requests.get(s.url + "/t", verify=pki["ca"])
        assert requests.get(s.url + "/t", verify=pki["ca"]).status_code == 200


def test_client_ca_without_cert_is_refused() -> None:
    with pytest.raises(ValueError):
        MockServer(EchoApp(), client_ca="ca.pem")


@pytest.mark.integration
def test_runner_prints_listening_line(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "outputs.mocks", "splunk_hec", "--token", "t0k3n-abc"],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("listening http://127.0.0.1:")
        url = line.split(" ", 1)[1]
        r = requests.get(url + "/services/collector/health")
        assert r.status_code == 200
        assert json.loads(r.content)["code"] == 17
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_an_app_that_wraps_a_mock_app_without_being_one_is_served() -> None:
    """The server takes any object with a MockApp's shape: bench/delivery.py serves its ``Recorder``
    around a vendor mock. Reading a MockApp-only attribute (the credential echo's switch) off it
    dropped every connection without an answer."""
    inner = EchoApp()

    class Wrapper:
        max_body = inner.max_body
        max_decoded_body = inner.max_decoded_body
        faults = inner.faults

        def handle(self, req: MockRequest) -> MockResponse:
            return inner.handle(req)

        def stats(self) -> dict[str, int]:
            return inner.stats()

        def reset(self) -> None:
            inner.reset()

    with MockServer(Wrapper()) as srv:  # type: ignore[arg-type]
        assert requests.post(f"{srv.url}/x", data=b"{}", timeout=5).status_code == 200
