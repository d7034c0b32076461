"""Unix socket and loopback HTTP inputs against the real spool and mapping."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import uuid

import gevent
import gevent.event
import orjson
import pytest
from gevent import socket

from agent.inputs.http_listener import HttpInput
from agent.inputs.unix_socket import UnixSocketInput
from agent.mapping import MappingContext, parse_line
from spool.types import SpoolFull
from tests.inputs.helpers import (
    AUDIT_LINES,
    FIXTURES,
    audit_line,
    event_ids,
    http_post,
    line_id,
    open_spool,
    source_ids,
    wait_until,
)


@pytest.fixture
def env(tmp_path):
    spool, writer = open_spool(tmp_path)
    started = []

    def add(inp):
        started.append(inp)
        inp.start()
        return inp

    yield tmp_path, spool, writer, add
    for inp in started:
        inp.stop()
    writer.stop()
    spool.close()


# -- unix socket ---------------------------------------------------------------------------------

def _send(path, data: bytes) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(path))
    s.sendall(data)
    s.close()


def test_unix_mode_group_and_stale_socket(env):
    d, spool, writer, add = env
    path = d / "ev.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a socket file nobody accepts on
    gid = os.getgid()
    inp = add(UnixSocketInput("unix", {"path": str(path), "mode": "0640", "group": str(gid)}, writer))
    st = os.lstat(path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640 and st.st_gid == gid
    _send(path, AUDIT_LINES[0] + AUDIT_LINES[1])
    # the rows are visible once committed, the counter once the writer's answer reached the handler
    wait_until(lambda: len(event_ids(spool)) == 2 and inp.status()["stats"]["ingested"] >= 2)
    assert inp.status()["stats"]["ingested"] == 2
    with pytest.raises(RuntimeError, match="in use"):
        UnixSocketInput("unix2", {"path": str(path)}, writer).start()
    (d / "plain").write_text("x")
    with pytest.raises(RuntimeError, match="not a socket"):
        UnixSocketInput("unix3", {"path": str(d / "plain")}, writer).start()


def test_unix_bad_lines_quarantined_with_connection_offset(env):
    d, spool, writer, add = env
    path = d / "ev.sock"
    add(UnixSocketInput("unix", {"path": str(path), "max_line_bytes": 2000}, writer))
    bad = b"not json\n"
    long = b'{"a":"' + b"x" * 5000 + b'"}\n'
    data = AUDIT_LINES[0] + bad + long + AUDIT_LINES[1]
    _send(path, data)
    wait_until(lambda: len(event_ids(spool)) == 2 and len(spool.quarantine_list()) == 2)
    q = sorted(spool.quarantine_list(), key=lambda e: e.offset)
    assert [e.offset for e in q] == [len(AUDIT_LINES[0]), len(AUDIT_LINES[0]) + len(bad)]
    assert q[0].source == f"unix:{path}" and q[0].reason.startswith("invalid JSON")
    assert "exceeds max_line_bytes (2000)" in q[1].reason


def test_unix_stop_ends_open_connections_and_keeps_what_they_sent(env):
    """A client keeping its connection open (hushd streams into one) no longer holds the stop for its
    whole timeout: its reads end, its complete lines are in the spool, and the line it had not
    finished is quarantined (with its offset) rather than dropped."""
    d, spool, writer, add = env
    path = d / "ev.sock"
    inp = add(UnixSocketInput("unix", {"path": str(path)}, writer))
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(path))
    client.sendall(AUDIT_LINES[0] + b'{"partial": ')
    wait_until(lambda: len(event_ids(spool)) == 1)
    stopper = gevent.spawn(inp.stop, 60.0)
    stopper.join(timeout=20)
    assert stopper.dead and stopper.successful()  # not after its 60 s
    assert event_ids(spool) == [line_id(AUDIT_LINES[0])]
    q = spool.quarantine_list()
    assert [(e.offset, e.reason.startswith("invalid JSON")) for e in q] == [(len(AUDIT_LINES[0]), True)]
    client.close()


def test_unix_many_concurrent_clients(env):
    d, spool, writer, add = env
    path = d / "ev.sock"
    add(UnixSocketInput("unix", {"path": str(path)}, writer))
    lines = [audit_line(i) for i in range(400)]

    def client(k):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(path))
        for x in lines[k::20]:
            s.sendall(x[:10])
            gevent.sleep(0)
            s.sendall(x[10:])
        s.close()

    gevent.joinall([gevent.spawn(client, k) for k in range(20)], raise_error=True)
    wait_until(lambda: len(event_ids(spool)) == 400)
    assert sorted(event_ids(spool)) == sorted(str(uuid.UUID(line_id(x))) for x in lines)


# -- HTTP ----------------------------------------------------------------------------------------

def _get(addr, path):
    s = socket.create_connection(addr)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    resp = b""
    while chunk := s.recv(65536):
        resp += chunk
    s.close()
    return int(resp.split()[1])


def http(add, writer, **cfg):
    return add(HttpInput("http", {"listen": "127.0.0.1:0", **cfg}, writer))


def test_http_200_only_after_commit(env):
    _d, spool, writer, add = env
    inp = http(add, writer)
    assert inp.address[0] == "127.0.0.1"
    seen = {}
    real = writer.write

    def write(batch):
        res = real(batch)
        seen["after_commit"] = len(event_ids(spool))
        return res

    writer.write = write
    status, _h, body = http_post(inp.address, "/audit-webhook", AUDIT_LINES[0].strip())
    # the row is in the spool by the time the response arrives
    assert status == 200 and body == {"accepted": 1, "duplicates": 0, "quarantined": 0}
    assert event_ids(spool) == [line_id(AUDIT_LINES[0])] and seen["after_commit"] == 1
    assert _get(inp.address, "/healthz") == 200


def test_http_connections_answer_without_nagle_delay(env, monkeypatch):
    """Accepted connections have TCP_NODELAY (agent.listen): pywsgi sends headers and body apart, and
    with Nagle's algorithm the body waited ~40 ms for the client's delayed ACK on every keep-alive
    request, which capped a sink posting one request at a time at ~22 a second."""
    from gevent import pywsgi

    _d, _spool, writer, add = env
    inp = http(add, writer)
    flags = []
    handle = pywsgi.WSGIHandler.handle

    def recording_handle(self):
        flags.append(self.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        return handle(self)

    monkeypatch.setattr(pywsgi.WSGIHandler, "handle", recording_handle)
    status, _h, _body = http_post(inp.address, "/audit-webhook", AUDIT_LINES[0].strip())
    assert status == 200
    assert flags and all(flags)


def test_http_status_is_stored_as_json_after_requests(env):
    """The input's status (answers counted by HTTP status) goes into the spool as JSON on every
    heartbeat and at shutdown: integer keys made both raise, so the agent could not stop."""
    _d, spool, writer, add = env
    inp = http(add, writer)
    assert http_post(inp.address, "/audit-webhook", AUDIT_LINES[0].strip())[0] == 200
    assert http_post(inp.address, "/audit-webhook", b"not json")[0] == 400
    spool.set_input_stats({"http": inp.status()})
    assert spool.get_input_stats()["http"]["responses"] == {"200": 1, "400": 1}


def _read_response(sock) -> bytes:
    """One whole HTTP/1.1 answer (with Content-Length) from a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(v for k, _, v in (h.partition(b": ") for h in head.split(b"\r\n")[1:])
                      if k.lower() == b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_http_stop_closes_idle_keepalive_connections_and_finishes_requests(env):
    """A client keeping its connection open (hushd's sink) no longer holds the stop for its whole
    timeout: the idle connection closes at once, while a request in progress still gets its answer
    after its commit."""
    import select

    _d, spool, writer, add = env
    inp = http(add, writer)
    release = gevent.event.Event()
    real_write = writer.write

    def slow_write(batch):
        release.wait()
        return real_write(batch)

    writer.write = slow_write
    idle = socket.create_connection(inp.address)
    idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _read_response(idle).startswith(b"HTTP/1.1 200")  # kept alive, now waiting
    busy = socket.create_connection(inp.address)
    body = AUDIT_LINES[0].strip()
    busy.sendall(b"POST /audit-webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    gevent.sleep(0.2)  # the busy request reaches the blocked commit
    stopper = gevent.spawn(inp.stop, 60.0)
    idle.settimeout(10)
    assert idle.recv(1) == b""  # closed by the stop, not after its 60 s
    assert select.select([busy], [], [], 0)[0] == []  # the request in progress has no answer yet
    release.set()
    assert _read_response(busy).startswith(b"HTTP/1.1 200")
    stopper.join(timeout=30)
    assert stopper.successful()
    assert event_ids(spool) == [line_id(AUDIT_LINES[0])]
    idle.close()
    busy.close()


def test_http_ndjson_body(env):
    _d, spool, writer, add = env
    inp = http(add, writer)
    status, _h, body = http_post(inp.address, "/x", b"".join(AUDIT_LINES[:3]))
    assert status == 200 and body["accepted"] == 3
    assert event_ids(spool) == source_ids(AUDIT_LINES[:3])


def test_http_bearer_token(env):
    _d, spool, writer, add = env
    inp = http(add, writer, bearer_token="s3cret-token")
    assert http_post(inp.address, "/a", AUDIT_LINES[0])[0] == 401
    assert http_post(inp.address, "/a", AUDIT_LINES[0], {"Authorization": "Bearer wrong"})[0] == 401
    assert event_ids(spool) == []
    assert http_post(inp.address, "/a", AUDIT_LINES[0], {"Authorization": "Bearer s3cret-token"})[0] == 200
    assert len(event_ids(spool)) == 1


def test_http_413_by_content_length_and_by_streamed_body(env):
    _d, spool, writer, add = env
    inp = http(add, writer, max_body_bytes=1000)
    big = b'{"x":"' + b"a" * 5000 + b'"}'
    status, _h, body = http_post(inp.address, "/a", big)
    assert status == 413 and "max_body_bytes" in body["error"]
    # no Content-Length: the limit is enforced while reading
    status, _h, body = http_post(inp.address, "/a", big, chunked=True)
    assert status == 413
    assert event_ids(spool) == []
    assert http_post(inp.address, "/a", AUDIT_LINES[0], chunked=True)[0] == 200


def test_http_400_invalid_body_is_quarantined(env):
    _d, spool, writer, add = env
    inp = http(add, writer)
    status, _h, body = http_post(inp.address, "/hook", b"{not json")
    assert status == 400 and body["error"].startswith("invalid JSON")
    status, _h, body = http_post(inp.address, "/hook", b'{"hello": 1}')
    assert status == 400 and "unknown record shape" in body["error"]
    q = spool.quarantine_list()
    assert len(q) == 2 and {e.source for e in q} == {"http:/hook"}
    assert event_ids(spool) == []


def test_http_quarantine_excerpt_is_masked_by_privacy(env):
    """[privacy] runs on what the spool keeps of a refused body too: never a secret in quarantine."""
    from agent.config import parse_config

    _d, spool, writer, add = env
    context = parse_config('[inputs.h]\ntype = "http"\n[outputs.o]\ntype = "stdout"\n').mapping_context()
    inp = add(HttpInput("http", {"listen": "127.0.0.1:0"}, writer, None, context))
    secret = "AKIA" + "Z7Q3R5T1W9Y2U4I6"
    status, _h, _b = http_post(inp.address, "/hook", b'{"hello": "' + secret.encode() + b'"}')
    assert status == 400
    (q,) = spool.quarantine_list()
    assert secret.encode() not in q.excerpt and secret not in q.reason
    assert b"hello" in q.excerpt  # the rest of the record is kept for the operator


def _cert_body():
    return orjson.dumps({"event": "violation.detected", "timestamp": "2026-11-26T08:28:51.639Z",
                         "data": {"actionType": "file_access", "target": "/etc/shadow",
                                  "guard": "forbidden_path", "severity": "critical", "policyHash": None,
                                  "sessionId": None, "agentId": "agent-007"}})


def test_http_certification_signature_ok_missing_bad(env):
    _d, spool, writer, add = env
    inp = http(add, writer, certification_secret="whsec")
    body = _cert_body()
    sig = "sha256=" + hmac.new(b"whsec", body, hashlib.sha256).hexdigest()
    status, _h, rbody = http_post(inp.address, "/cert", body)
    assert status == 401 and "signature" in rbody["error"]
    wrong = {"x-clawdstrike-signature": "sha256=" + "0" * 64}
    status, _h, rbody = http_post(inp.address, "/cert", body, wrong)
    assert status == 401
    assert event_ids(spool) == [] and len(spool.quarantine_list()) == 2
    assert all(e.reason.startswith("signature rejected") for e in spool.quarantine_list())
    status, _h, rbody = http_post(inp.address, "/cert", body, {"x-clawdstrike-signature": sig})
    assert status == 200 and rbody["accepted"] == 1
    # an unsigned audit_forward POST is still accepted: hushd never signs those
    assert http_post(inp.address, "/audit", AUDIT_LINES[0])[0] == 200


def test_http_503_when_spool_full(env):
    _d, _spool, writer, add = env
    inp = http(add, writer, retry_after=7)

    def full(batch):
        raise SpoolFull("test")

    writer.write = full
    status, headers, body = http_post(inp.address, "/a", AUDIT_LINES[0])
    assert status == 503 and headers["retry-after"] == "7" and "spool full" in body["error"]


def test_http_replay_of_captured_hushd_webhooks_matches_file_ids(env):
    _d, spool, writer, add = env
    inp = http(add, writer)
    reqs = json.loads((FIXTURES / "audit-forward-webhook.requests.json").read_text())
    for r in reqs:
        body = json.dumps(r["body"], separators=(",", ":")).encode()
        headers = {k: v for k, v in r["headers"].items() if k not in ("host", "content-length")}
        status, _h, rbody = http_post(inp.address, r["path"], body, headers)
        assert status == 200, rbody
    file_ids = [parse_line(x, context=MappingContext())["event_id"] for x in AUDIT_LINES]
    assert event_ids(spool) == file_ids
    assert len(reqs) == len(AUDIT_LINES)
