"""Property-based tests of the local socket inputs (agent/inputs/unix_socket.py,
agent/inputs/http_listener.py, agent/listen.py, agent/inputs/base.py) against docs/inputs.md and the
modules' docstrings.

Real sockets (a temporary unix socket path, TCP on loopback), gevent as the agent runs them, and a real
spool in a temporary directory per test. Every client writes its bytes in random pieces, yielding to the
server between pieces, over one or several connections at once.

1. Unix socket, any stream (``test_unix_streams_in_any_split``): lines of every kind (hushd audit
   records with LF or CRLF, non-JSON, invalid UTF-8, JSON of an unknown shape, JSON that is not an
   object, blank and whitespace-only lines, lines of exactly ``max_line_bytes`` and longer, a final
   line without its newline), any ``read_chunk_bytes`` from 1 byte, 1-3 connections at once:
   - while a connection is still open, every complete line it sent is committed (the spool holds its
     event, or the quarantine its record) and nothing of its unfinished last line is;
   - once closed, the unfinished line is taken as a line ("a final unterminated line at EOF is taken
     as a line");
   - the spool then holds exactly the events of the valid lines, once each, in each connection's order;
     the quarantine exactly one record per bad line, with source ``unix:<path>``, the line's byte offset
     in its connection, its excerpt (a prefix of the line, the whole line when short) and a reason that
     says what is wrong (the exact ``exceeds max_line_bytes`` text for a long line);
   - blank lines are skipped; the counters agree (``ingested``, ``quarantined``, ``errors`` 0).
2. Unix socket stop (``test_unix_stop_keeps_every_byte_a_client_wrote``): clients stream while the
   input stops; every byte the kernel accepted from them before their write failed with EPIPE is
   committed: the complete lines as above, the unfinished one quarantined ("what each had sent is
   committed, and a line it had not finished is quarantined with its offset").
3. HTTP, any sequence of requests (``test_http_requests_in_any_split``): POST bodies of one record, a
   JSON array (empty included) or NDJSON (LF or CRLF, blank lines, good and bad lines mixed), empty or
   whitespace bodies, bodies of exactly ``max_body_bytes`` and one byte more, Content-Length or chunked
   framing (random chunk sizes), ``Expect: 100-continue``, pipelined keep-alive requests or one at a
   time, GET/HEAD ``/healthz``, wrong methods, paths outside ``paths``, missing or wrong bearer tokens,
   retried records (duplicate ids), and clients that close in the middle of a request:
   - every answer has the documented code and body: 200 ``{"accepted","duplicates","quarantined"}``
     (``accepted + duplicates`` = the records mapped), 400 ``{"error"}`` when no record maps (the first
     record's reason), 401 (with ``WWW-Authenticate``), 404, 405 (with ``Allow: POST``), 413 (by
     Content-Length and while reading, with ``Connection: close``), 200 for ``/healthz``;
   - the events of a 200 are in the spool when the answer arrives, and at the end the spool holds
     exactly the events of the 200 answers, each id once (the ``accepted`` counts add up to them):
     nothing of a refused or unfinished request;
   - every bad record of an answered POST is in the quarantine once, with source ``http:<path>``, its
     byte offset in the body and its excerpt; an empty body as ``empty body``;
   - the listener goes on serving: a new client gets its ``/healthz`` after every example.

At the end, deterministic reproductions of the defects found (each fails until it is fixed; see the
tests' docstrings): an empty JSON array answered 500; a HEAD answered with a body, which desynchronises
the keep-alive connection; a malformed chunked body answered 500 and the connection kept; one connection
over ``max_connections`` raising in the unix server's accept loop; an overlong line's excerpt running
into the next line; a stop that dropped what a unix client had delivered but the input had not read
yet; and a unix connection accepted just before a stop held the stop for its whole timeout and lost
its unfinished line.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import gevent
import orjson
import pytest
from gevent import socket
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from agent.inputs.http_listener import HttpInput
from agent.inputs.unix_socket import UnixSocketInput
from spool.store import Spool
from spool.types import EXCERPT_MAX
from spool.writer import SpoolWriter
from tests.inputs.helpers import audit_line, spooled, wait_until

# No shrinking: an example costs real sockets and spool commits, and shrinking one failure ran for
# minutes (past pytest's timeout); a failure is reported as found, and the deterministic tests at the
# end are the minimal reproductions of what was found.
SETTINGS = settings(deadline=None, database=None, derandomize=True,
                    phases=(Phase.explicit, Phase.reuse, Phase.generate),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HANG_S = 30.0  # only a hang reaches it
_ids = itertools.count(1_000_000)  # fresh record ids across every example of the run


# ----------------------------------------------------------------------------------------- fixtures

Env = tuple[str, Spool, SpoolWriter]


@pytest.fixture(scope="module")
def shared() -> Iterator[Env]:
    """One spool for all the examples of the property tests (a new one costs ~0.1 s): each example
    looks only at what it added (``Mark``)."""
    with spooled("listen-") as env:
        yield env


@dataclass
class Mark:
    """Where the spool stood before an example: its last event seq and quarantine id."""

    seq: int
    qid: int


def mark(spool: Spool) -> Mark:
    q = spool.quarantine_list(limit=1)
    return Mark(spool.last_seq(), q[0].id if q else 0)


def new_events(spool: Spool, m: Mark) -> list[str]:
    """Event ids appended since ``m``, in seq order."""
    return [str(uuid.UUID(bytes=r.event_id)) for r in spool.read_after(m.seq, 1_000_000)]


def new_quarantine(spool: Spool, m: Mark) -> list[Any]:
    return [e for e in spool.quarantine_list(limit=1_000_000) if e.id > m.qid]


# -------------------------------------------------------------------------------------- records

#: reason prefixes of a bad record, by kind (agent.mapping's words)
REASON = {
    "bad": "invalid JSON",
    "utf8": "invalid UTF-8",
    "shape": "unknown record shape",
    "scalar": "not a JSON object",
}
PREFIXES = ("invalid JSON", "invalid UTF-8", "unknown record shape", "not a JSON object", "empty body",
            "line of ")


def reason_class(reason: str) -> str:
    """The prefix a stored reason starts with ("?" when none: a reason nobody documented). A line of an
    HTTP NDJSON body that is not UTF-8 gets orjson's "invalid JSON: str is not valid UTF-8: ..." where
    the rest of the agent says "invalid UTF-8 at byte N": both name the fault, and count as UTF-8."""
    if reason.startswith("invalid JSON: str is not valid UTF-8"):
        return "invalid UTF-8"
    return next((p for p in PREFIXES if reason.startswith(p)), "?")


OK: dict[bytes, str] = {}  # every valid record made, by its bytes -> its id


def fresh_ok() -> tuple[str, bytes]:
    """A valid hushd audit line (without its newline) and its id."""
    raw = audit_line(next(_ids)).rstrip(b"\n")
    OK[raw] = json.loads(raw)["id"]
    return OK[raw], raw


def classify(piece: bytes, max_line: int) -> str | None:
    """What a unix line (without its newline) must become, decided without the agent's code:
    ``"ok:<id>"``, a reason class, or None for a blank line (skipped)."""
    if len(piece) > max_line:
        return "line of "
    if not piece.strip():
        return None
    if piece.rstrip(b"\r") in OK:
        return "ok:" + OK[piece.rstrip(b"\r")]
    try:
        text = piece.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid UTF-8"
    try:
        value = json.loads(text)
    except ValueError:
        return "invalid JSON"
    return "unknown record shape" if isinstance(value, dict) else "not a JSON object"


def bad_record(kind: str, n: int, variant: int) -> bytes:
    """One line of a bad kind (never containing a newline); ``n`` (a fresh number, always of 7 digits:
    the strategies' draws must not depend on it) makes it unique."""
    if kind == "bad":
        return b"not json #%d {" % n
    if kind == "utf8":
        return b'{"id":"\xff\xfe#%d"}' % n
    if kind == "shape":
        return b'{"hello":"world %d"}' % n
    if kind == "scalar":
        return [b"%d" % n, b'"str %d"' % n, b"null", b"true"][variant]
    raise AssertionError(kind)


# ------------------------------------------------------------------------------------ unix socket

LINE_KINDS = ("ok", "ok", "ok", "ok", "bad", "utf8", "shape", "scalar", "blank", "space", "max", "long")


@st.composite
def unix_stream(draw: Any, max_line: int) -> tuple[bytes, list[tuple[str, int, bytes]]]:
    """A connection's bytes and its lines as (kind, start offset, bytes without the newline)."""
    kinds = draw(st.lists(st.sampled_from(LINE_KINDS), min_size=1, max_size=6))
    tail = draw(st.sampled_from(["none", "none", "ok", "bad", "space", "long", "half"]))
    out = bytearray()
    lines: list[tuple[str, int, bytes]] = []
    for i, kind in enumerate([*kinds, tail]):
        last = i == len(kinds)
        if last and kind == "none":
            break
        n = next(_ids)
        if kind == "ok":
            _id, body = fresh_ok()
        elif kind == "half":  # the start of a record whose rest never comes
            body = fresh_ok()[1][:draw(st.integers(1, 60))]
        elif kind == "blank":
            body = b""
        elif kind == "space":
            body = draw(st.sampled_from([b" ", b"\t \t", b"\x0b\x0c", b"  "]))
        elif kind == "max":  # exactly max_line_bytes: a line, not an overlong one
            body = b"#" * max_line
        elif kind == "long":
            body = b"#" * (max_line + draw(st.sampled_from([1, 2, 700, 3 * EXCERPT_MAX])))
        else:
            body = bad_record(kind, n, draw(st.integers(0, 3)))
        crlf = kind not in ("max", "long") and draw(st.booleans())
        if crlf:
            body += b"\r"
        lines.append((kind, len(out), body))
        out += body
        if not last:
            out += b"\n"
    return bytes(out), lines


def expected_unix(lines: list[tuple[str, int, bytes]], max_line: int, source: str
                  ) -> tuple[list[str], Counter]:
    """Event ids in order, and Counter of (source, offset, reason class) of the quarantine."""
    ids: list[str] = []
    q: Counter = Counter()
    for kind, start, body in lines:
        if len(body) > max_line:
            q[(source, start, "line of ")] += 1
        elif not body.strip():
            continue
        elif kind == "ok":
            ids.append(json.loads(body)["id"])
        elif kind in ("half", "max", "cut"):  # "cut": what a stop left of a line
            what = classify(body, max_line)
            if what is None:
                continue
            if what.startswith("ok:"):
                ids.append(what[3:])
            else:
                q[(source, start, what)] += 1
        else:
            q[(source, start, REASON[kind])] += 1
    return ids, q


def check_unix_quarantine(entries: list[Any], lines_by_start: dict[tuple[int, int], bytes],
                          max_line: int) -> Counter:
    """Each entry's excerpt is a prefix of one of its offset's lines (the whole line when short); an
    overlong line's reason is exact. Returns the entries as a Counter like ``expected_unix``'s."""
    got: Counter = Counter()
    for e in entries:
        bodies = [b for (start, _), b in lines_by_start.items() if start == e.offset]
        assert bodies, f"quarantined at an offset where no line starts: {e}"
        assert len(e.excerpt) <= EXCERPT_MAX
        cls = reason_class(e.reason)
        if cls == "line of ":
            assert any(e.reason == f"line of {len(b)} bytes exceeds max_line_bytes ({max_line})"
                       and b.startswith(e.excerpt) and len(e.excerpt) >= min(EXCERPT_MAX, max_line + 1)
                       for b in bodies), e
        else:
            assert any(e.excerpt == b[:EXCERPT_MAX] for b in bodies), e
        got[(e.source, e.offset, cls)] += 1
    return got


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given positions (in any order, duplicates ignored)."""
    at = sorted({c for c in cuts if 0 < c < len(data)})
    return [data[a:b] for a, b in zip([0, *at], [*at, len(data)], strict=True)]


@st.composite
def split(draw: Any, data: bytes) -> list[bytes]:
    """``data`` in random pieces: a few random cuts, often around every newline."""
    cuts = draw(st.lists(st.integers(0, max(0, len(data))), max_size=8))
    newlines = [i for i, b in enumerate(data) if b == 0x0A]
    if newlines and draw(st.booleans()):  # just before or just after some newlines
        around = st.tuples(st.sampled_from(newlines), st.sampled_from([0, 1]))
        cuts += [i + d for i, d in draw(st.lists(around, max_size=8))]
    return pieces(data, cuts)


def unix_client(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


@settings(SETTINGS, max_examples=40)
@given(data=st.data(), max_line=st.sampled_from([400, 1024]),
       chunk=st.sampled_from([1, 7, 64, 500, 65536]), n_conns=st.integers(1, 3))
def test_unix_streams_in_any_split(shared: Env, data: st.DataObject, max_line: int, chunk: int,
                                   n_conns: int) -> None:
    """Property 1 (module docstring)."""
    d, spool, writer = shared
    path = os.path.join(d, "ev.sock")
    source = f"unix:{path}"
    inp = UnixSocketInput("unix", {"path": path, "max_line_bytes": max_line,
                                   "read_chunk_bytes": chunk}, writer)
    streams = [data.draw(unix_stream(max_line)) for _ in range(n_conns)]
    splits = [data.draw(split(s)) for s, _ in streams]
    m = mark(spool)
    inp.start()
    try:
        clients = [unix_client(path) for _ in streams]

        def send(k: int) -> None:
            for piece in splits[k]:
                clients[k].sendall(piece)
                gevent.sleep(0)

        gevent.joinall([gevent.spawn(send, k) for k in range(n_conns)], raise_error=True)
        # still open: every complete line is committed, no piece of an unfinished one
        complete = [[ln for ln in lines if ln[1] + len(ln[2]) < len(s)] for s, lines in streams]
        want_open = [expected_unix(c, max_line, source) for c in complete]
        n_ev = sum(len(ids) for ids, _ in want_open)
        n_q = sum(sum(q.values()) for _, q in want_open)
        wait_until(lambda: len(new_events(spool, m)) >= n_ev and len(new_quarantine(spool, m)) >= n_q,
                   HANG_S, "the complete lines committed")
        by_start = {(ln[1], k): ln[2] for k, (_, ls) in enumerate(streams) for ln in ls}
        assert sorted(new_events(spool, m)) == sorted(i for ids, _ in want_open for i in ids)
        q_open = check_unix_quarantine(new_quarantine(spool, m), by_start, max_line)
        assert q_open == sum((q for _, q in want_open), Counter())
        for c in clients:
            c.close()
        wait_until(lambda: inp.connections_total == n_conns and inp.connections == 0, HANG_S,
                   "every connection read to its end")
        want = [expected_unix(lines, max_line, source) for _, lines in streams]
        events = new_events(spool, m)
        assert sorted(events) == sorted(i for ids, _ in want for i in ids)
        assert len(events) == len(set(events))
        for ids, _ in want:  # each connection's events in its order
            assert [e for e in events if e in set(ids)] == ids
        q_all = check_unix_quarantine(new_quarantine(spool, m), by_start, max_line)
        assert q_all == sum((q for _, q in want), Counter())
        st_ = inp.stats
        assert (st_.ingested, st_.quarantined, st_.duplicates, st_.errors) == (
            len(events), sum(q_all.values()), 0, 0)
    finally:
        inp.stop()


@settings(SETTINGS, max_examples=20)
@given(data=st.data(), chunk=st.sampled_from([1, 64, 65536]), n_conns=st.integers(1, 2))
def test_unix_stop_keeps_every_byte_a_client_wrote(shared: Env, data: st.DataObject, chunk: int,
                                                   n_conns: int) -> None:
    """Property 2 (module docstring): a stop in the middle of the clients' streams."""
    max_line = 1024
    d, spool, writer = shared
    path = os.path.join(d, "ev.sock")
    source = f"unix:{path}"
    inp = UnixSocketInput("unix", {"path": path, "max_line_bytes": max_line,
                                   "read_chunk_bytes": chunk}, writer)
    streams = [data.draw(unix_stream(max_line)) for _ in range(n_conns)]
    splits = [data.draw(split(s)) for s, _ in streams]
    before_stop = [data.draw(st.integers(0, len(p))) for p in splits]
    m = mark(spool)
    inp.start()
    stopper = None
    try:
        clients = [unix_client(path) for _ in streams]
        wait_until(lambda: inp.connections == n_conns, HANG_S, "every connection accepted")
        sent = [0] * n_conns
        failed = [False] * n_conns

        def send(k: int, todo: list[bytes]) -> None:
            for piece in todo:
                view = memoryview(piece)
                while view:
                    try:
                        n = clients[k].send(view)
                    except OSError as exc:
                        assert exc.errno in (errno.EPIPE, errno.ECONNRESET), exc
                        failed[k] = True
                        return
                    sent[k] += n
                    view = view[n:]
                gevent.sleep(0)

        gevent.joinall([gevent.spawn(send, k, splits[k][:before_stop[k]]) for k in range(n_conns)],
                       raise_error=True)
        stopper = gevent.spawn(inp.stop, HANG_S)
        gevent.joinall([gevent.spawn(send, k, splits[k][before_stop[k]:]) for k in range(n_conns)],
                       raise_error=True)
        stopper.join()
        assert stopper.successful()
        # what each client got into the kernel, cut at its last accepted byte
        want = []
        by_start: dict[tuple[int, int], bytes] = {}
        for k, (s, lines) in enumerate(streams):
            got = s[:sent[k]]
            kept = []
            for kind, start, body in lines:
                if start >= len(got):  # nothing of it was sent
                    break
                piece = got[start:start + len(body)]
                kept.append((kind if piece == body else "cut", start, piece))
                by_start[(start, k)] = piece
            want.append(expected_unix(kept, max_line, source))
        events = new_events(spool, m)
        assert sorted(events) == sorted(i for ids, _ in want for i in ids)
        got_q = check_unix_quarantine(new_quarantine(spool, m), by_start, max_line)
        assert got_q == sum((q for _, q in want), Counter())
        assert inp.stats.errors == 0  # a stop is no connection error
    finally:
        if stopper is None:
            inp.stop()


# ------------------------------------------------------------------------------------------- HTTP

@dataclass
class Req:
    """One request as sent, and what the contract says about it."""

    method: str
    target: str                    # path and query as sent
    headers: dict[str, str]
    framing: str                   # "length", "chunked" or "none"
    body: bytes
    chunk_sizes: list[int] = field(default_factory=list)
    abort_at: int | None = None    # the client closes after this many bytes of the request
    # expectations
    status: int = 0
    events: list[str] = field(default_factory=list)          # ids of the records that map, in order
    quarantine: list[tuple[str, int, bytes, str]] = field(default_factory=list)  # source, offset, ...
    error: str | None = None       # the prefix of a 400's error

    def raw(self) -> bytes:
        hdrs = dict(self.headers)
        if self.framing == "length":
            hdrs["Content-Length"] = str(len(self.body))
            payload = self.body
        elif self.framing == "chunked":
            hdrs["Transfer-Encoding"] = "chunked"
            parts, pos = [], 0
            for size in self.chunk_sizes:
                if pos >= len(self.body):
                    break
                part = self.body[pos:pos + size]
                parts.append(b"%x\r\n%s\r\n" % (len(part), part))
                pos += len(part)
            if pos < len(self.body):
                rest = self.body[pos:]
                parts.append(b"%x\r\n%s\r\n" % (len(rest), rest))
            payload = b"".join(parts) + b"0\r\n\r\n"
        else:
            payload = b""
        head = f"{self.method} {self.target} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        return head.encode() + payload


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


RECORD_KINDS = ("ok", "ok", "ok", "dup", "bad", "utf8", "shape", "scalar")


@st.composite
def http_body(draw: Any, seen: list[tuple[str, bytes]]) -> tuple[bytes, list[tuple[int, bytes, str]]]:
    """A POST body and its records as (offset, excerpt, "ok:<id>" or a reason prefix)."""
    shape = draw(st.sampled_from(["single", "single", "array", "ndjson", "ndjson", "ndjson", "empty"]))
    if shape == "empty":
        return draw(st.sampled_from([b"", b" ", b"\r\n", b"\n \t\n"])), []

    def record(kinds: tuple[str, ...]) -> tuple[str, bytes]:
        kind = draw(st.sampled_from(kinds))
        if kind == "dup" and seen:
            rid, raw = draw(st.sampled_from(seen))
            return "ok:" + rid, raw
        if kind in ("ok", "dup"):
            rid, raw = fresh_ok()
            seen.append((rid, raw))
            return "ok:" + rid, raw
        return REASON[kind], bad_record(kind, next(_ids), draw(st.integers(0, 3)))

    if shape == "single":
        what, raw = record(RECORD_KINDS)
        pad = draw(st.sampled_from([b"", b"", b"\n", b"\r\n", b"  \n\n"]))
        lead = draw(st.sampled_from([b"", b"", b" ", b"\n"]))
        body = lead + raw + pad
        return body, [(0, body, what)]
    if shape == "array":
        recs = [record(("ok", "ok", "dup", "shape", "scalar"))
                for _ in range(draw(st.integers(0, 4)))]
        values = [orjson.loads(raw) for _, raw in recs]
        body = orjson.dumps(values) if draw(st.booleans()) else json.dumps(values, indent=1).encode()
        if not values:  # no record: the body itself is quarantined, with a reason of its own ("?")
            return body, [(0, body, "?")]
        return body, [(0, orjson.dumps(v), what) for (what, _), v in zip(recs, values, strict=True)]
    nl = draw(st.sampled_from([b"\n", b"\r\n"]))
    recs = [record(RECORD_KINDS) for _ in range(draw(st.integers(2, 5)))]
    body = bytearray()
    out = []
    for what, raw in recs:
        for _ in range(draw(st.sampled_from([0, 0, 0, 1]))):
            body += draw(st.sampled_from([b"", b" ", b"\t"])) + nl
        out.append((len(body), raw + (b"\r" if nl == b"\r\n" else b""), what))
        body += raw + nl
    if draw(st.booleans()):
        del body[-len(nl):]  # no newline after the last record
        off, _ex, what = out[-1]
        out[-1] = (off, recs[-1][1], what)
    return bytes(body), out


@st.composite
def http_requests(draw: Any, limit: int, token: str | None, paths: list[str],
                  seen: list[tuple[str, bytes]]) -> list[Req]:
    """A client's requests, each with the answer docs/inputs.md promises for it; ``seen``: the records
    sent so far (by any client), which a later request may send again."""
    reqs = []
    for _ in range(draw(st.integers(1, 6))):
        method = draw(st.sampled_from(["POST"] * 8 + ["GET", "HEAD", "PUT", "DELETE"]))
        target = draw(st.sampled_from(["/hook", "/hook", "/audit?x=1", "/other", "/healthz"]))
        path = target.partition("?")[0]
        headers = {"Host": "127.0.0.1",
                   "Content-Type": draw(st.sampled_from(["application/json", "application/x-ndjson",
                                                         "text/plain"]))}
        auth = draw(st.sampled_from(["right", "right", "wrong", "none"])) if token else "none"
        if auth == "right":
            headers["Authorization"] = f"Bearer {token}"
        elif auth == "wrong":
            headers["Authorization"] = draw(st.sampled_from([f"Bearer {token}x", "Basic abc", "Bearer"]))
        req = Req(method, target, headers, "none", b"")
        if method in ("POST", "PUT"):
            req.body, records = draw(http_body(seen))
            size = draw(st.sampled_from([None, None, None, "at", "over"]))
            want = limit + (size == "over")
            if size is not None and len(req.body) <= want < 10_000:  # exactly the limit, or 1 byte more
                unpadded = req.body
                req.body += b"\n" * (want - len(req.body))  # blank lines: the records stay the same
                if len(records) == 1 and records[0][0] == 0 and (
                        records[0][1] == unpadded or not req.body.lstrip().startswith(b"[")):
                    # one record whose raw bytes are the body (a single value, or an empty JSON array
                    # quarantined whole): they are the padded body now
                    records = [(0, req.body, records[0][2])]
            req.framing = ("length" if not req.body else
                           draw(st.sampled_from(["length", "length", "chunked"])))
            if not req.body and draw(st.booleans()):
                req.framing = "none"
            req.chunk_sizes = draw(st.lists(st.integers(1, 300), min_size=1, max_size=6))
            if req.framing == "length" and draw(st.integers(0, 5)) == 0:
                req.headers["Expect"] = "100-continue"
        else:
            records = []
        if path == "/healthz" and method in ("GET", "HEAD"):
            req.status = 200
        elif method != "POST":
            req.status = 405
        elif paths and path not in paths:
            req.status = 404
        elif token and auth != "right":
            req.status = 401
        elif len(req.body) > limit:
            req.status = 413
        elif not req.body.strip():
            req.status = 400
            req.error = "empty body"
            req.quarantine = [(f"http:{path}", 0, b"", "empty body")]
        else:
            for offset, ex, what in records:
                if what.startswith("ok:"):
                    req.events.append(what[3:])
                else:
                    req.quarantine.append((f"http:{path}", offset, ex[:EXCERPT_MAX], what))
            req.status = 200 if req.events else 400
            if not req.events:
                req.error = req.quarantine[0][3]
        reqs.append(req)
        if req.status == 413:
            break  # its answer closes the connection
    if (not reqs or reqs[-1].status != 413) and draw(st.integers(0, 4)) == 0:
        # a client that goes away in the middle of a request
        _rid, raw = fresh_ok()
        req = Req("POST", "/hook", {"Host": "127.0.0.1"}, draw(st.sampled_from(["length", "chunked"])),
                  raw + b"\n", chunk_sizes=[50, 50, 50])
        whole = req.raw()
        end = len(whole) - (len(b"0\r\n\r\n") if req.framing == "chunked" else 0)
        # inside the body: pywsgi takes a header block cut by the end of file as complete (a POST
        # without a body: "empty body" in the quarantine), which is its parser's choice, not the input's
        req.abort_at = draw(st.integers(whole.index(b"\r\n\r\n") + 4, end - 1))
        reqs.append(req)
    return reqs


def read_answer(sock: socket.socket, buf: bytearray, head_only: bool) -> Answer | None:
    """One answer from ``sock`` (interim 1xx answers skipped); None at end of file."""
    while True:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                assert not buf, f"connection closed in the middle of an answer: {bytes(buf)!r}"
                return None
            buf += chunk
        head, _, _rest = bytes(buf).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, code, *_ = lines[0].split(" ")
        assert version == "HTTP/1.1" and code.isdigit() and len(code) == 3, f"not an answer: {head!r}"
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
        del buf[:len(head) + 4]
        if code.startswith("1"):
            continue
        length = 0 if head_only else int(headers.get("content-length", "0"))
        while len(buf) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed in the middle of a body"
            buf += chunk
        body = bytes(buf[:length])
        del buf[:length]
        return Answer(int(code), headers, json.loads(body) if body else None)


@settings(SETTINGS, max_examples=40)
@given(data=st.data(), limit=st.sampled_from([700, 3000, 1024 * 1024]),
       token=st.sampled_from([None, "s3cret"]), paths=st.sampled_from([[], ["/hook", "/audit"]]),
       n_conns=st.integers(1, 3))
def test_http_requests_in_any_split(shared: Env, data: st.DataObject, limit: int, token: str | None,
                                    paths: list[str], n_conns: int) -> None:
    """Property 3 (module docstring)."""
    _d, spool, writer = shared
    cfg: dict[str, Any] = {"listen": "127.0.0.1:0", "max_body_bytes": limit, "paths": paths}
    if token:
        cfg["bearer_token"] = token
    inp = HttpInput("http", cfg, writer)
    seen: list[tuple[str, bytes]] = []
    conns = [data.draw(http_requests(limit, token, paths, seen)) for _ in range(n_conns)]
    plans = []
    for reqs in conns:
        pipelined = data.draw(st.booleans())
        raws = [r.raw()[:r.abort_at] for r in reqs]
        plans.append((pipelined, raws, [data.draw(split(x)) for x in raws]))
    m = mark(spool)
    inp.start()
    answers: list[list[Answer]] = [[] for _ in conns]
    missing: list[list[str]] = [[] for _ in conns]
    try:
        def client(k: int) -> None:
            reqs = conns[k]
            pipelined, _raws, cut = plans[k]
            sock = socket.create_connection(inp.address)
            buf = bytearray()
            try:
                def send(i: int) -> None:
                    for piece in cut[i]:
                        sock.sendall(piece)
                        gevent.sleep(0)

                def receive(i: int) -> None:
                    ans = read_answer(sock, buf, reqs[i].method == "HEAD")
                    assert ans is not None, f"no answer to {reqs[i].method} {reqs[i].target}"
                    if ans.status == 200 and reqs[i].events:  # committed before the answer
                        have = set(new_events(spool, m))
                        missing[k] += [e for e in reqs[i].events if e not in have]
                    answers[k].append(ans)

                answered = [i for i, r in enumerate(reqs) if r.abort_at is None]
                if pipelined:
                    for i in range(len(reqs)):
                        send(i)
                    for i in answered:
                        receive(i)
                else:
                    for i in range(len(reqs)):
                        send(i)
                        if i in answered:
                            receive(i)
            finally:
                sock.close()

        gevent.joinall([gevent.spawn(client, k) for k in range(n_conns)], raise_error=True)
        aborted = any(r.abort_at is not None for reqs in conns for r in reqs)
        answered = [(r, a) for k, reqs in enumerate(conns)
                    for r, a in zip([r for r in reqs if r.abort_at is None], answers[k], strict=True)]
        for r, a in answered:
            what = f"{r.method} {r.target} {r.body[:80]!r}: {a}"
            assert a.status == r.status, what
            if r.status == 200 and r.method == "POST":
                assert set(a.body) == {"accepted", "duplicates", "quarantined"}, what
                assert a.body["accepted"] + a.body["duplicates"] == len(r.events), what
                assert a.body["quarantined"] == len(r.quarantine), what
            elif r.status == 200 and r.method == "GET":
                assert a.body == {"status": "ok"}
            elif r.status == 400:
                assert isinstance(a.body["error"], str) and a.body["error"], what
                assert r.error in ("?", reason_class(a.body["error"])), what
                if r.error != "empty body":
                    assert a.body["quarantined"] == len(r.quarantine), what
            elif r.status == 401:
                assert a.headers.get("www-authenticate", "").startswith("Bearer"), what
            elif r.status == 405:
                assert a.headers.get("allow") == "POST", what
            elif r.status == 413:
                assert a.headers.get("connection") == "close", what
                assert "max_body_bytes" in a.body["error"], what
        assert missing == [[] for _ in conns], "answered 200 before the commit"
        events = new_events(spool, m)
        accepted = {e for r, a in answered if a.status == 200 for e in r.events}
        assert sorted(events) == sorted(accepted)  # each once, nothing of a refused request
        assert sum(a.body["accepted"] for r, a in answered if a.status == 200 and r.method == "POST") \
            == len(accepted)
        want_q = Counter((src, off, ex, why) for r, a in answered for src, off, ex, why in r.quarantine)
        got_q = Counter((e.source, e.offset, e.excerpt, reason_class(e.reason))
                        for e in new_quarantine(spool, m))
        assert got_q == want_q
        if not aborted:
            assert inp.stats.errors == 0
            assert inp.responses == dict(Counter(a.status for _, a in answered))
        # the listener goes on serving
        sock = socket.create_connection(inp.address)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        ans = read_answer(sock, bytearray(), False)
        sock.close()
        assert ans is not None and ans.status == 200
    finally:
        inp.stop()


# ------------------------------------------------------------------------------- defects found

@pytest.fixture
def env() -> Iterator[Env]:
    with spooled("listen-") as x:
        yield x


def _exchange(addr: tuple[str, int], raw: bytes, answers: int, head_first: bool = False) -> list[Answer]:
    """Send ``raw`` on one connection and read up to ``answers`` answers (fewer if it closes)."""
    sock = socket.create_connection(addr)
    sock.settimeout(HANG_S)
    buf = bytearray()
    out = []
    try:
        sock.sendall(raw)
        for i in range(answers):
            a = read_answer(sock, buf, head_first and i == 0)
            if a is None:
                break
            out.append(a)
        if len(out) == answers:
            assert not buf, f"bytes after the last answer: {bytes(buf)!r}"
    finally:
        sock.close()
    return out


def test_http_empty_json_array_is_a_400_and_quarantined(env: Env) -> None:
    """``[]`` is a body in which no record maps: docs/inputs.md answers 400 and quarantines the body.
    It was answered 500 ``internal error`` (``quarantine[0]`` of an empty list in ``_ingest``), counted
    in ``errors``, and nothing was quarantined."""
    _d, spool, writer = env
    inp = HttpInput("http", {"listen": "127.0.0.1:0"}, writer)
    inp.start()
    try:
        (a,) = _exchange(inp.address, b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[]", 1)
        assert a.status == 400
        (q,) = spool.quarantine_list()
        assert (q.source, q.offset) == ("http:/hook", 0)
        assert inp.stats.errors == 0
    finally:
        inp.stop()


def test_http_head_answer_has_no_body(env: Env) -> None:
    """``HEAD /healthz`` (answered by the input) must not carry a body (RFC 9110 §9.3.2): a client
    reads none, so the body's bytes were taken as the start of the next answer on the keep-alive
    connection. pywsgi sends whatever the application returns, HEAD or not."""
    _d, _spool, writer = env
    inp = HttpInput("http", {"listen": "127.0.0.1:0"}, writer)
    inp.start()
    try:
        answers = _exchange(inp.address, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                                         b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 2, head_first=True)
        assert [a.status for a in answers] == [200, 200]
        assert answers[1].body == {"status": "ok"}
    finally:
        inp.stop()


def test_http_malformed_chunked_body_is_a_400_and_ends_the_connection(
        env: Env) -> None:
    """A chunked body whose framing is broken (a chunk size that is not hex) is the client's error:
    pywsgi's own answer is 400 and a closed connection, since where the next request starts is
    unknown. The input's catch-all answered 500 ``internal error`` (logged as an error, counted in
    ``errors``) and kept the connection, whose next bytes, the rest of the broken body, were parsed as
    requests: here a complete POST smuggled inside the body was ingested."""
    _d, spool, writer = env
    inp = HttpInput("http", {"listen": "127.0.0.1:0"}, writer)
    inp.start()
    try:
        rid, raw = fresh_ok()
        smuggled = (b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(raw), raw))
        answers = _exchange(inp.address, b"POST /hook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                                         b"\r\n\r\nz\r\n" + smuggled, 2)
        assert [a.status for a in answers] == [400]
        assert answers[0].headers.get("connection") == "close"
        assert rid not in new_events(spool, Mark(0, 0))
        assert inp.stats.errors == 0
    finally:
        inp.stop()


def test_unix_overlong_line_excerpt_is_only_that_line(env: Env) -> None:
    """A line longer than ``max_line_bytes`` is quarantined with an excerpt of it. When the line and
    its newline came in one read, ``LineSplitter.feed`` cut the excerpt as ``EXCERPT_MAX`` bytes from
    the line's start, past its end: with ``max_line_bytes`` under 512 the excerpt held the newline and
    the next line (an event spooled on its own)."""
    d, spool, writer = env
    path = os.path.join(d, "ev.sock")
    inp = UnixSocketInput("unix", {"path": path, "max_line_bytes": 400}, writer)
    inp.start()
    try:
        rid, raw = fresh_ok()
        long = b"#" * 401
        c = unix_client(path)
        c.sendall(long + b"\n" + raw + b"\n")
        c.close()
        wait_until(lambda: inp.connections_total == 1 and inp.connections == 0, HANG_S, "the line read")
        assert new_events(spool, Mark(0, 0)) == [rid]
        (q,) = spool.quarantine_list()
        assert q.reason == "line of 401 bytes exceeds max_line_bytes (400)"
        assert q.excerpt == long
    finally:
        inp.stop()


def test_unix_connection_over_max_connections_is_closed_without_an_error(
        env: Env) -> None:
    """One connection more than ``max_connections`` is refused by closing it. ``_spawn`` closed
    ``args[0]``, which is gevent's handler function, not the socket: ``AttributeError`` in the
    server's accept loop (a traceback through the hub's error handler for every refused client, and
    accepting paused after each)."""
    d, spool, writer = env
    path = os.path.join(d, "ev.sock")
    inp = UnixSocketInput("unix", {"path": path, "max_connections": 1}, writer)
    hub = gevent.get_hub()
    errors: list[Any] = []
    real = hub.handle_error

    def record(context: Any, kind: Any, value: Any, tb: Any) -> None:
        errors.append(value)
        real(context, kind, value, tb)

    hub.handle_error = record
    inp.start()
    try:
        held = unix_client(path)
        wait_until(lambda: inp.connections == 1, HANG_S, "the first connection accepted")
        extra = unix_client(path)
        extra.settimeout(HANG_S)
        assert extra.recv(1) == b""  # closed, never read
        extra.close()
        held.close()
        wait_until(lambda: inp.connections == 0, HANG_S, "the first connection done")
        rid, raw = fresh_ok()
        c = unix_client(path)
        c.sendall(raw + b"\n")
        c.close()
        wait_until(lambda: rid in new_events(spool, Mark(0, 0)), HANG_S, "the next client served")
        assert errors == []
    finally:
        hub.handle_error = real
        inp.stop()


def test_unix_stop_reads_what_a_waiting_connection_had_received(
        env: Env) -> None:
    """On stop "what each had sent is committed" (docs/inputs.md). ``stop()`` ended the reads with
    gevent's ``socket.shutdown(SHUT_RD)``, which also cancels a ``recv`` waiting in another greenlet: a
    handler waiting for data (every idle connection) got "File descriptor was closed in another
    greenlet" instead of the bytes already in the kernel's buffer, counted it in ``errors``, and
    flushed only what it had read before. Here the client's line and the start of the next reached
    the socket before the stop, and the handler had not been woken for them yet: the event was lost."""
    d, spool, writer = env
    path = os.path.join(d, "ev.sock")
    inp = UnixSocketInput("unix", {"path": path}, writer)
    inp.start()
    rid, raw = fresh_ok()
    client = unix_client(path)
    wait_until(lambda: inp.connections == 1, HANG_S, "the connection accepted")  # its handler waits
    client.sendall(raw + b"\n" + b'{"partial": ')  # delivered: the send succeeded
    inp.stop(timeout=HANG_S)
    assert new_events(spool, Mark(0, 0)) == [rid]
    q = spool.quarantine_list()
    assert [(e.offset, reason_class(e.reason)) for e in q] == [(len(raw) + 1, "invalid JSON")]
    assert inp.stats.errors == 0
    client.close()


def test_unix_stop_reads_a_connection_accepted_just_before_it(env: Env) -> None:
    """A stop ends the reads of open connections (docs/inputs.md): it shuts down those in ``_conns``.
    A connection accepted, its handler spawned but not yet run when ``stop()`` starts (the hub ran
    the accept and the stopping greenlet before the handler) is not there yet: its handler then read
    on until the client closed or the stop's timeout killed it, and its unfinished line was dropped.
    The hub's order is played here by running the server's accept callback, then ``stop()``, before
    anything else can run."""
    d, spool, writer = env
    path = os.path.join(d, "ev.sock")
    inp = UnixSocketInput("unix", {"path": path}, writer)
    inp.start()
    rid, raw = fresh_ok()
    client = unix_client(path)
    client.sendall(raw + b"\n" + b'{"partial": ')
    assert inp._server is not None
    inp._server._do_read()  # what the hub does when the listener is readable: accept, spawn the handler
    inp.stop(timeout=5.0)  # at its timeout, the handler is killed: no flush of the partial line
    assert new_events(spool, Mark(0, 0)) == [rid]
    q = spool.quarantine_list()
    assert [(e.offset, reason_class(e.reason)) for e in q] == [(len(raw) + 1, "invalid JSON")]
    client.close()
