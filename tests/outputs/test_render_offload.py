"""Rendering in the offload helper: the very bytes the drain would render itself, and a drain that
uses it writes exactly what it writes without it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import gevent
import pytest

from agent.config import load_config
from agent.inputs.base import encode
from agent.mapping import parse_line
from agent.offload import OffloadHelper
from outputs.drain import Drain
from outputs.registry import build_output
from outputs.render import Renderer, build_output_pipeline
from outputs.routing import compile_selector
from spool.store import Spool
from spool.types import IngestBatch
from tests.inputs.helpers import AUDIT_LINES

CONFIG = """
[inputs.t]
type = "file"
paths = ["/nonexistent/*.jsonl"]

[outputs.es]
type = "elasticsearch"
hosts = ["http://127.0.0.1:9"]
format = "ecs"
[[outputs.es.routes]]
when = {{min_severity = "high"}}
set = {{index = "clawd-high"}}

[outputs.hec]
type = "splunk_hec"
endpoint = "http://127.0.0.1:9"
token = "t"
host = "agent-host"
format = "ocsf"

[outputs.arch]
type = "file"
path = "{out}"
format = "ocsf"
fsync = false
batch_max_wait = 0
filter = {{denied_only = true}}
"""


@pytest.fixture
def setup(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(textwrap.dedent(CONFIG.format(out=tmp_path / "arch.jsonl")))
    cfg = load_config(str(path))
    spool = Spool(str(tmp_path / "spool.db"), durability="off")
    context = cfg.mapping_context()
    spool.append(IngestBatch("t", [encode(parse_line(line, context=context)) for line in AUDIT_LINES]))
    helper = OffloadHelper(str(path))
    assert helper.start(timeout=60)
    yield cfg, spool, helper, tmp_path
    helper.close()
    spool.close()


def rows_of(spool: Spool) -> list[tuple[int, bytes, bytes]]:
    return [(r.seq, r.event_id, r.body) for r in spool.read_after(0, 10_000)]


@pytest.mark.parametrize("name", ["es", "hec", "arch"])
def test_helper_renders_the_drains_bytes(setup, name):
    cfg, spool, helper, _ = setup
    rows = rows_of(spool)
    here = Renderer.from_config(name, cfg).render(rows)
    there = helper.submit("render", (name, rows), lambda: pytest.fail("helper did not answer")).get(
        timeout=60)
    assert there == here
    accepted, filtered, rejected = there
    assert rejected == [] and len(accepted) + filtered == len(rows)
    if name == "arch":
        assert 0 < filtered < len(rows)  # only denials
    elif name == "hec":
        assert all(b'"event":{' in a[3] and b'"class_uid":' in a[3] for a in accepted)
    else:
        routes = [a[4] for a in accepted]
        assert {"index": "clawd-high"} in routes and None in routes
        assert all(a[3].startswith(b'{"create":') for a in accepted)


def run_drain(cfg, spool, offload) -> bytes:
    out_cfg = cfg.outputs["arch"]
    drain = Drain(build_output("arch", out_cfg), spool, spool.reader(),
                  selector=compile_selector("arch", cfg.outputs), pipeline_factory=build_output_pipeline,
                  offload=offload)
    g = gevent.spawn(drain.run)
    last = spool.last_seq()
    with gevent.Timeout(60):
        while (spool.get_cursor("arch") or (0,))[0] < last:
            gevent.sleep(0.02)
    assert drain._use_offload is (offload is not None)
    drain.stop()
    g.join(timeout=10)
    path = Path(out_cfg.path)
    data = path.read_bytes()
    path.unlink()
    return data


def test_a_drain_through_the_helper_writes_the_same_file(setup, monkeypatch):
    monkeypatch.setattr("outputs.drain.OFFLOAD_MIN_ROWS", 2)  # the sample is small: split it anyway
    cfg, spool, helper, _ = setup
    with_helper = run_drain(cfg, spool, helper)
    assert helper.jobs_done >= 1
    spool.rewind("arch", seq=0)
    without = run_drain(cfg, spool, None)
    assert with_helper == without and with_helper.count(b"\n") > 0


def test_concurrent_jobs_each_get_their_own_answer(setup):
    """Greenlets submitting at once (lock contention while big requests are written) never receive
    each other's answers: mapping and every output's rendering share the one helper."""
    cfg, spool, helper, _ = setup
    rows = rows_of(spool) * 40  # big enough that writing a request yields to the other greenlets
    expected = {name: Renderer.from_config(name, cfg).render(rows) for name in ("es", "hec", "arch")}

    def one(name: str) -> bool:
        got = helper.submit("render", (name, rows), lambda: pytest.fail("helper did not answer"))
        return got.get(timeout=120) == expected[name]

    jobs = [gevent.spawn(one, ("es", "hec", "arch")[i % 3]) for i in range(24)]
    gevent.joinall(jobs, timeout=180)
    assert [j.value for j in jobs] == [True] * 24
    assert helper.restarts == 0


def test_a_busy_helper_is_not_given_render_jobs(setup, monkeypatch):
    """Behind queued ingest chunks a render job would leave the drain idle: it renders here instead."""
    monkeypatch.setattr("outputs.drain.OFFLOAD_MIN_ROWS", 2)
    cfg, spool, _helper, _ = setup

    class BusyHelper:
        queued = 2  # OFFLOAD_MAX_QUEUED jobs already waiting
        submitted = 0

        def submit(self, *a, **kw):
            BusyHelper.submitted += 1
            raise AssertionError("render job sent to a busy helper")

    without = run_drain(cfg, spool, None)
    spool.rewind("arch", seq=0)
    assert run_drain(cfg, spool, BusyHelper()) == without
    assert BusyHelper.submitted == 0


#: What the agent needs to send and store, and its helper never: importing them cost the helper
#: ~18 MiB of its memory (requests alone pulls urllib3, ssl, idna, charset_normalizer and certifi);
#: _hashlib loads OpenSSL's libcrypto (~3.3 MiB resident) for TLS, and the helper runs none.
AGENT_ONLY_MODULES = ("requests", "urllib3", "ssl", "_hashlib", "gevent", "sqlite3", "sqlite_utils", "click",
                      "prometheus_client", "outputs.drain", "spool.store")


def test_the_helper_maps_and_renders_without_the_agents_sending_and_storing_modules(tmp_path):
    """The helper's whole job (warm-up, a map job, a render job for every output) in a fresh
    interpreter, as agent.offload runs it: none of the agent-only packages gets imported."""
    import subprocess
    import sys

    path = tmp_path / "agent.toml"
    path.write_text(textwrap.dedent(CONFIG.format(out=tmp_path / "arch.jsonl")))
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(b"".join(AUDIT_LINES))
    script = textwrap.dedent(f"""
        import sys
        from agent.offload import _Jobs
        jobs = _Jobs({str(path)!r})
        jobs.warm_up()
        import gc
        assert gc.get_freeze_count() > 0, "start-up objects are not frozen out of the collector"
        from agent.gc_tuning import GEN0_THRESHOLD
        assert gc.get_threshold()[0] == GEN0_THRESHOLD, gc.get_threshold()
        lines, pos = [], 0
        for raw in open({str(audit)!r}, "rb").read().splitlines(keepends=True):
            lines.append((pos, pos + len(raw), raw.rstrip(b"\\n"), False, len(raw)))
            pos += len(raw)
        events, quarantine = jobs.map(("audit.jsonl", None, 1 << 20, lines))
        assert len(events) == {len(AUDIT_LINES)} and not quarantine, (len(events), quarantine)
        rows = [(i + 1, e[0], e[2]) for i, e in enumerate(events)]
        for name in ("es", "hec", "arch"):
            jobs.render((name, rows))
        print(",".join(m for m in {AGENT_ONLY_MODULES!r} if m in sys.modules))
    """)
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_the_helper_keeps_taking_jobs_while_its_answers_wait_unread(tmp_path):
    """The agent reads answers only when its loop gets to them. An answer that does not fit in the
    pipe meanwhile must not stop the helper: it goes on reading and computing the jobs sent after
    it (its answers are written by a thread of their own), and every answer then comes, in order."""
    import pickle
    import subprocess
    import sys
    import threading

    from agent.offload import _HELLO, _LEN

    path = tmp_path / "agent.toml"
    path.write_text(textwrap.dedent(CONFIG.format(out=tmp_path / "arch.jsonl")))
    context = load_config(str(path)).mapping_context()
    events = [encode(parse_line(line, context=context)) for line in AUDIT_LINES]
    rows = [(seq, e.event_id, e.body) for seq, e in enumerate(events * (400 // len(events) + 1), 1)][:400]
    jobs = [pickle.dumps((i, "render", ("hec", rows)), protocol=5) for i in range(1, 9)]
    proc = subprocess.Popen([sys.executable, "-m", "agent.offload", "--config", str(path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=Path(__file__).parents[2])

    def frame() -> tuple:
        (n,) = _LEN.unpack(proc.stdout.read(4))
        return pickle.loads(proc.stdout.read(n))

    try:
        assert frame() == _HELLO

        def send() -> None:
            for job in jobs:
                proc.stdin.write(_LEN.pack(len(job)) + job)
            proc.stdin.flush()

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        # Nothing is read meanwhile: eight jobs of ~0.4 MiB each pass through a 64 KiB pipe only if
        # the helper keeps reading them while its first answers (~0.5 MiB each) wait in its queue.
        # The timeout only tells a deadlock from a slow machine.
        sender.join(timeout=120)
        assert not sender.is_alive(), "the helper stopped taking jobs while an answer waited unread"
        answers = [frame() for _ in jobs]
        assert [(job_id, ok) for job_id, ok, _ in answers] == [(i, True) for i in range(1, 9)]
        assert all(len(answer[0]) == len(rows) for _, _, answer in answers)
        assert len(pickle.dumps(answers[0], protocol=5)) > 256 * 1024  # larger than any pipe's default
    finally:
        proc.kill()  # a helper stuck writing (the failure above) never reads the end of its input
        proc.wait(timeout=30)


def test_answers_go_out_whole_and_in_order_when_the_pipe_takes_them_in_pieces(monkeypatch):
    """The helper writes each answer as (length, pickle) with gathering writes and no joined copy; a
    write the pipe cut short (as a signal can) goes on from the byte where it stopped."""
    import os
    import queue
    import threading

    from agent import offload

    real_writev = os.writev
    calls = []

    def short_writev(fd, views):  # at most 1,000 bytes a call, often mid-part
        taken, budget = [], 1000
        for v in views:
            if budget <= 0:
                break
            taken.append(bytes(v[:budget]))
            budget -= len(taken[-1])
        calls.append(len(taken))
        return real_writev(fd, taken)

    monkeypatch.setattr(offload.os, "writev", short_writev)
    frames = [(offload._LEN.pack(n), bytes([i]) * n) for i, n in enumerate((0, 1, 999, 1000, 1001, 70_000))]
    answers: queue.SimpleQueue = queue.SimpleQueue()
    for frame in frames:
        answers.put(frame)
    answers.put(None)
    r, w = os.pipe()
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.extend(iter(lambda: os.read(r, 65536), b"")))
    reader.start()
    offload._write_answers(answers, w)
    os.close(w)
    reader.join(timeout=10)
    os.close(r)
    assert b"".join(got) == b"".join(h + d for h, d in frames)
    assert len(calls) > 70 and max(calls) == 2  # cut short many times, parts gathered across a cut


def test_a_frame_pickled_in_parts_is_the_pickle_of_one_buffer():
    """``pickle_parts`` gives the very bytes ``pickle.dumps`` gives, in pieces; a large bytes object
    (a map job's block of lines) is one of them as it is, not copied."""
    import os
    import pickle

    from agent.offload import pickle_parts

    block = os.urandom(256 * 1024)
    cases = [
        (7, True, ([(os.urandom(16), 1_700_000_000_000 + i, os.urandom(1100)) for i in range(360)], [])),
        (8, True, ([(i, os.urandom(16), b"", os.urandom(1500), None) for i in range(750)], 0, [])),
        (9, "map", ("/var/log/a.jsonl", None, 65536, (0, block))),
        (0, True, "ready"),
    ]
    for obj in cases:
        size, parts = pickle_parts(obj)
        assert b"".join(parts) == pickle.dumps(obj, protocol=5) and size == sum(map(len, parts))
        assert pickle.loads(b"".join(parts)) == obj
    assert any(part is block for part in pickle_parts(cases[2])[1])


def test_a_frame_of_more_parts_than_one_writev_takes_goes_out_whole():
    """Linux takes at most 1,024 buffers in one ``writev``: more parts go out in several."""
    import os
    import threading

    from agent import offload

    parts = tuple(bytes([i % 251]) * (1 + i % 7) for i in range(3000))
    r, w = os.pipe()
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.extend(iter(lambda: os.read(r, 65536), b"")), daemon=True)
    reader.start()
    try:
        offload._write_all(w, parts)
    finally:
        os.close(w)
        reader.join(timeout=10)
        os.close(r)
    assert b"".join(got) == b"".join(parts)
