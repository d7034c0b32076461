"""Shared helpers of the input tests: a real spool + writer, polling waits, fixture lines."""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import gevent
from gevent import socket as gsocket

from spool.store import Spool
from spool.writer import SpoolWriter
from tests.shared_paths import FIXTURES

AUDIT_LINES = (FIXTURES / "audit-forward.jsonl").read_bytes().splitlines(keepends=True)


def open_spool(tmp_path: Path, **kw) -> tuple[Spool, SpoolWriter]:
    spool = Spool(str(tmp_path / "spool.db"), durability="normal", **kw)
    writer = SpoolWriter(spool).start()
    return spool, writer


@contextlib.contextmanager
def spooled(prefix: str = "spool-") -> Iterator[tuple[str, Spool, SpoolWriter]]:
    """A temporary directory with a real spool and its started writer, all gone afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        spool, writer = open_spool(Path(d))
        try:
            yield d, spool, writer
        finally:
            writer.stop()
            spool.close()


def wait_until(cond, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``cond`` against a deadline (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        gevent.sleep(0.02)


def event_ids(spool: Spool) -> list[str]:
    return [str(uuid.UUID(bytes=r.event_id)) for r in spool.read_after(0, 1_000_000)]


def source_ids(lines: list[bytes]) -> list[str]:
    return [json.loads(x)["id"] for x in lines]


def audit_line(i: int, **extra) -> bytes:
    """A valid hushd AuditEvent line with a fresh, deterministic id."""
    rec = {
        "id": str(uuid.UUID(int=(0x01A2 << 112) | (0x7 << 76) | (0x8 << 60) | i)),
        "timestamp": "2026-11-26T08:28:51.585857754Z",
        "event_type": "check",
        "action_type": "file_access",
        "target": f"/home/agent/file-{i}",
        "decision": "allowed",
        "guard": "forbidden_path",
        "severity": "Info",
        "message": "Allowed",
        "agent_id": "agent-007",
        **extra,
    }
    return json.dumps(rec, separators=(",", ":")).encode() + b"\n"


def line_id(line: bytes) -> str:
    return json.loads(line)["id"]


def http_post(addr, path: str, body: bytes, headers=None, *, content_length=True, chunked=False):
    """One POST on a new gevent connection (``Connection: close``): (status, lower-cased headers,
    the JSON answer or None)."""
    s = gsocket.create_connection(addr)
    hdrs = {"Host": "127.0.0.1", "Content-Type": "application/json", "Connection": "close", **(headers or {})}
    if chunked:
        hdrs["Transfer-Encoding"] = "chunked"
        payload = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 4096]), body[i:i + 4096])
                           for i in range(0, len(body), 4096)) + b"0\r\n\r\n"
    else:
        if content_length:
            hdrs["Content-Length"] = str(len(body))
        payload = body
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    s.sendall(head.encode() + payload)
    resp = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        resp += chunk
    s.close()
    head, _, rbody = resp.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    rh = {k.lower(): v for k, _, v in (x.partition(": ") for x in lines[1:])}
    return status, rh, (json.loads(rbody) if rbody else None)
