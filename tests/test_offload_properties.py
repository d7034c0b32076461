"""Property-based tests of the offload helper (agent/offload.py, agent/inputs/mapper.py) against its
contract in docs/internals.md §4 and agent/offload.py's docstring: the helper's answers are the bytes
the agent would have computed itself, frames are a 4-byte length and a pickle answered in order, and a
helper that dies leaves no job lost or done twice.

1. equivalence of mapping: random streams of lines (the hushd audit capture in ../shared/fixtures and
   every tests/golden/*.input.jsonl record, as they are and mutated: a field set to a random JSON value
   with unicode, lone surrogates, JSON ``\\u`` escapes or raw surrogates (invalid UTF-8); lines that are
   JSON but not an object, invalid JSON, random bytes, blank lines, CRLF, leading blanks, lines longer
   than ``max_line_bytes`` and ~64 KiB ones), cut by ``LineSplitter.feed`` or ``feed_block`` at random
   offsets into chunks (``LineBlock`` or ``Line`` lists), under a random source name (surrogates
   included) and record kind, are mapped by the real helper process through ``ProcessMapper`` with
   several chunks in flight: events, event ids and quarantine records (offset, reason, excerpt) equal
   ``InlineMapper``'s, computed cold (every memo cache empty, a fresh context) and warm; the helper
   answered every chunk itself (no fallback, no restart). A config with labels, ``[privacy]`` builtin
   patterns and a hash rule, and ``[enrichment]``, so the ingest transform runs on both sides;
2. equivalence of rendering: random rows (mapped events and bodies that are not JSON) rendered by the
   helper for ES (routes), HEC (OCSF) and a filtered CEF file output equal ``Renderer.render``;
3. framing: ``pickle_parts`` gives ``pickle.dumps``'s bytes for objects whose sizes straddle pickle's
   64 KiB frames; the agent's reader (``OffloadHelper._read_answers``, on a real pipe written in pieces
   cut at random offsets by another thread) hands each job its own answer, computes a job the helper
   failed (``ok`` False) here, and on a stream cut short, a wrong job id or a frame that is not a
   pickle computes every job not yet answered here, in order, each exactly once; the helper's reader
   (the real process) takes jobs written to it in pieces cut at random offsets and answers each;
4. failure (a ``RuleBasedStateMachine``): map jobs submitted and awaited in random order while the
   helper is started, SIGKILLed, made to exit mid-stream (a job that unpickles to ``os._exit``),
   retired when idle and closed: every job's answer is the inline mapping, its fallback ran at most
   once, ``jobs_done`` plus fallbacks equals the jobs submitted (none answered twice), ``restarts``
   counts the deaths and ``retirements`` the retirements, and a retired helper exits by itself.

At the end: deterministic reproductions of the defects found on the way: a retired helper whose exit
is noticed late computed its successor's jobs here and got the healthy successor killed as failed; a
helper started after agent.toml (or a ``file:`` salt) changed mapped with the file's new content
instead of the config the agent runs with; and, in mapping itself (the same on both sides), a
``metadata.policy_hash`` that is a list or an object made its line an internal mapping error.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import orjson
import pytest
from gevent.fileobject import FileObjectPosix
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from agent import event as event_mod
from agent import mapping as mapping_mod
from agent.config import load_config
from agent.event import SourceKind
from agent.inputs.base import Line, LineBlock, LineSplitter, map_lines
from agent.inputs.mapper import InlineMapper, Mapped, ProcessMapper
from agent.offload import _HELLO, _LEN, OffloadHelper, _Job, pickle_parts
from outputs.render import Renderer
from tests.inputs.helpers import wait_until
from tests.shared_paths import FIXTURES, ROOT

SETTINGS = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
BIG = 1 << 20
FRAME = 64 * 1024  # pickle protocol 5's frame size target

CONFIG = """
[agent]
host_name = "offload-host"
environment = "test"
tenant_id = "acme"
labels = {{team = "soc", "équipe" = "sécurité"}}

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
format = "ocsf"

[outputs.arch]
type = "file"
path = "{out}"
format = "cef"
fsync = false
filter = {{denied_only = true}}

[privacy]
builtin = ["secrets", "email", "ipv4"]
rules = [{{path = "resource.name", style = "hash", hash_salt = "{salt}"}}]

[enrichment]
mitre = true
"""
OUTPUTS = ("es", "hec", "arch")
#: For the life-cycle tests, whose helpers start again and again: no output to warm up, no transform.
LIGHT_CONFIG = """
[agent]
host_name = "offload-host"
labels = {team = "soc"}

[inputs.t]
type = "file"
paths = ["/nonexistent/*.jsonl"]

[outputs.null]
type = "stdout"
enabled = false

[privacy]
builtin = []

[enrichment]
mitre = false
"""


def _seed_lines() -> list[bytes]:
    """Every record of the hushd capture and of the golden inputs, without its newline."""
    files = [FIXTURES / "audit-forward.jsonl", *sorted((ROOT / "tests" / "golden").glob("*.input.jsonl"))]
    return [line for f in files for line in f.read_bytes().splitlines() if line.strip()]


SEEDS = _seed_lines()
RECORDS = [r for r in map(orjson.loads, SEEDS) if type(r) is dict]
KINDS = [None, *(k.value for k in SourceKind), "no_such_kind"]


@dataclass
class Env:
    """The module's agent: its config file, loaded config, mapping context and one ready helper; and
    a light config (file and context) for helpers started many times."""

    path: str
    cfg: Any
    context: Any
    helper: OffloadHelper
    light_path: str
    light_context: Any


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    d = tmp_path_factory.mktemp("offload")
    path = d / "agent.toml"
    path.write_text(textwrap.dedent(CONFIG.format(out=d / "arch.cef", salt="pepper")))
    cfg = load_config(str(path))
    light = d / "light.toml"
    light.write_text(LIGHT_CONFIG)
    helper = OffloadHelper(str(path))
    assert helper.start(timeout=60)
    yield Env(str(path), cfg, cfg.mapping_context(), helper, str(light), load_config(light).mapping_context())
    helper.close()


def _cold_caches() -> None:
    """Empty every memo cache of the mapping path, so the next mapping runs the general code."""
    for cache in (mapping_mod._CANON_SECONDS, mapping_mod._VALID_DATES, mapping_mod._POLICY_HASHES,
                  mapping_mod._HUSHD_CLASSES, event_mod._DAYS, event_mod._MINUTES):
        cache.clear()


class CountingInline(InlineMapper):
    """``ProcessMapper``'s inline mapper, counting the chunks it maps per source: a chunk the helper
    answered never comes here."""

    def __init__(self, context: Any):
        super().__init__(context)
        self.calls: Counter[str] = Counter()

    def submit(self, lines: Any, *, source: str, kind: str | None, max_line_bytes: int) -> Any:
        self.calls[source] += 1
        return super().submit(lines, source=source, kind=kind, max_line_bytes=max_line_bytes)


def _process_mapper(helper: OffloadHelper, context: Any) -> tuple[ProcessMapper, CountingInline]:
    """A ``ProcessMapper`` that sends every chunk to the helper (no size or rate threshold)."""
    pm = ProcessMapper(helper, context, inline_max_lines=0, start_lines=0)
    pm.inline = counting = CountingInline(context)
    return pm, counting


def _track_readers(monkeypatch: pytest.MonkeyPatch) -> defaultdict[int, Any]:
    """An event per helper pid, set when the agent's reader of that helper's answers has returned
    (after its ``_lost``): a condition to wait on instead of a guess at the loop's timing."""
    done: defaultdict[int, Any] = defaultdict(gevent.event.Event)
    real = OffloadHelper._read_answers

    def tracked(self: OffloadHelper, proc: Any) -> None:
        try:
            real(self, proc)
        finally:
            done[proc.pid].set()

    monkeypatch.setattr(OffloadHelper, "_read_answers", tracked)
    return done


def _inline(context: Any, chunk: Any, source: str, kind: str | None, max_line_bytes: int) -> Mapped:
    return InlineMapper(context).submit(chunk, source=source, kind=kind, max_line_bytes=max_line_bytes).get()


def _plain(mapped: Mapped) -> tuple[list[tuple], list[tuple]]:
    """Events and quarantine records as plain tuples (the helper's events are tuples, the agent's
    ``EncodedEvent``s): equal values, compared element by element."""
    events, quarantine = mapped
    return [tuple(e) for e in events], [tuple(q) for q in quarantine]


# ------------------------------------------------------------------------------------ strategies

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
texts = st.one_of(
    st.text(max_size=24),
    st.text(st.one_of(st.characters(), surrogates), max_size=8),
    st.sampled_from(["", "allowed", "blocked", "denied", "Info", "Warning", "high", "critical", "check",
                     "violation", "shell", "egress", "file_access", "mcp_tool", "session_start",
                     "2026-11-26T08:28:51.585857754Z", "2026-02-30T00:00:00Z", "1970-01-01T00:00:00+02:00",
                     "user@example.com", "10.1.2.3", "password=hunter2", "AKIAABCDEFGHIJKLMNOP",
                     "sha256:" + "A" * 64, "/etc/shadow", "api.example.com:443", "\u2028", "é\U0001f600"]),
)
json_leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), texts)
json_values = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(texts, inner, max_size=3), max_leaves=6)


def _dumps(value: Any, ascii_only: bool) -> bytes:
    """JSON as a producer may write it: ``\\u`` escapes (surrogate pairs, lone surrogates) or raw
    UTF-8 (a lone surrogate then is invalid UTF-8)."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    record = dict(draw(st.sampled_from(RECORDS)))
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.one_of(st.sampled_from(sorted(record) or ["id"]), texts))
        if draw(st.booleans()) and key in record:
            del record[key]
        else:
            record[key] = draw(json_values)
    return _dumps(record, draw(st.booleans()))


@st.composite
def long_line(draw: st.DrawFn) -> bytes:
    """A record with a long message: around ``max_line_bytes`` or pickle's 64 KiB frame."""
    n = draw(st.sampled_from([50, 600, 690, 700, 710, FRAME - 300, FRAME, FRAME + 100]))
    char = draw(st.sampled_from(["x", "é", "\U0001f600"]))
    record = {**draw(st.sampled_from(RECORDS)), "message": char * n}
    return _dumps(record, draw(st.booleans()))


def _cut(seed: bytes, at: int) -> bytes:
    return seed[: at % (len(seed) + 1)]


raw_lines = st.one_of(
    st.sampled_from(SEEDS),
    mutated(),
    mutated(),
    long_line(),
    st.builds(_dumps, json_values.filter(lambda v: type(v) is not dict), st.booleans()),  # not an object
    st.builds(_cut, st.sampled_from(SEEDS), st.integers(0, 10_000)),  # invalid JSON (mostly)
    st.binary(max_size=40),
    st.sampled_from([b"", b" ", b"\t \t", b"\r", b"\x0b\x0c", b"{}", b"[]", b"null", b"\xff\xfe"]),
)
line_forms = st.sampled_from(["as is", "as is", "crlf", "leading blank"])


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    out = []
    for raw in draw(st.lists(raw_lines, min_size=1, max_size=40)):
        form = draw(line_forms)
        out.append(raw + b"\r" if form == "crlf" else b" " + raw if form == "leading blank" else raw)
    return b"\n".join(out) + draw(st.sampled_from([b"\n", b"\n", b""]))


@dataclass
class MapCase:
    pieces: list[Any]  # what a tail hands its mapper: LineBlocks and lists of Lines
    source: str
    kind: str | None
    max_line_bytes: int


@st.composite
def map_cases(draw: st.DrawFn) -> MapCase:
    data = draw(streams())
    max_line_bytes = draw(st.sampled_from([64, 700, 70_000, BIG]))
    splitter = LineSplitter(max_line_bytes, draw(st.sampled_from([0, 1, 4096, 2**40])))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=5)))
    pieces: list[Any] = []
    for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
        got = splitter.feed_block(data[a:b]) if draw(st.booleans()) else splitter.feed(data[a:b])
        if got:
            pieces.append(got)
    if tail := splitter.flush():
        pieces.append(tail)
    # a path name with undecodable bytes is a str with lone surrogates (surrogateescape)
    names = st.text(st.one_of(st.characters(), surrogates), max_size=12)
    source = draw(st.one_of(st.just("/var/log/hushd/audit.jsonl"), names))
    return MapCase(pieces, source, draw(st.sampled_from(KINDS)), max_line_bytes)


# ------------------------------------------------------------------------ 1. mapping equivalence

@settings(max_examples=30, **SETTINGS)
@given(case=map_cases())
def test_the_helper_maps_every_chunk_to_what_the_agent_maps(env: Env, case: MapCase) -> None:
    helper = env.helper
    pm, counting = _process_mapper(helper, env.context)
    done, restarts = helper.jobs_done, helper.restarts
    pendings = [pm.submit(p, source=case.source, kind=case.kind, max_line_bytes=case.max_line_bytes)
                for p in case.pieces]  # all in flight at once: answered in order
    got = [_plain(p.get(timeout=60)) for p in pendings]
    assert counting.calls == Counter(), "a chunk was mapped in the agent, not by the helper"
    assert helper.jobs_done - done == len(case.pieces) and helper.restarts == restarts
    _cold_caches()
    cold_context = env.cfg.mapping_context()  # fresh enrichment and redaction caches too
    args = (case.source, case.kind, case.max_line_bytes)
    cold = [_plain(_inline(cold_context, p, *args)) for p in case.pieces]
    warm = [_plain(_inline(env.context, p, *args)) for p in case.pieces]
    assert got == cold
    assert got == warm
    # every line is accounted for: an event, a quarantine record, or blank
    lines = [ln for p in case.pieces for ln in (p.lines() if isinstance(p, LineBlock) else p)]
    blank = sum(1 for ln in lines if not ln.overlong and not ln.data.strip())
    assert sum(len(e) + len(q) for e, q in got) == len(lines) - blank


# ------------------------------------------------------------------------ 2. render equivalence

@st.composite
def row_sets(draw: st.DrawFn, context: Any) -> list[tuple[int, bytes, bytes]]:
    lines = draw(st.lists(st.one_of(st.sampled_from(SEEDS), mutated()), min_size=1, max_size=30))
    events, _ = map_lines([Line(i, i + 1, d) for i, d in enumerate(lines)], source="s", context=context,
                          kind=None, max_line_bytes=BIG)
    bodies = [e.body for e in events]
    for _ in range(draw(st.integers(0, 3))):  # a corrupt spool row
        bodies.insert(draw(st.integers(0, len(bodies))), draw(st.binary(max_size=20).filter(_not_json)))
    seq = draw(st.integers(1, 2**40))
    return [(seq + i, os.urandom(16), body) for i, body in enumerate(bodies)]


def _not_json(b: bytes) -> bool:
    try:
        orjson.loads(b)
    except orjson.JSONDecodeError:
        return True
    return False


@settings(max_examples=12, **SETTINGS)
@given(data=st.data(), name=st.sampled_from(OUTPUTS))
def test_the_helper_renders_what_the_drain_renders(env: Env, data: st.DataObject, name: str) -> None:
    rows = data.draw(row_sets(env.context))
    helper = env.helper
    done = helper.jobs_done
    fallbacks: list[str] = []
    there = helper.submit("render", (name, rows), lambda: fallbacks.append(name)).get(timeout=60)
    assert fallbacks == [] and helper.jobs_done == done + 1
    here = Renderer.from_config(name, env.cfg).render(rows)
    assert there == here
    accepted, filtered, rejected = there
    assert len(accepted) + filtered + len(rejected) == len(rows)


# ------------------------------------------------------------------------------------ 3. framing

sizes = st.one_of(st.integers(0, 40), st.builds(lambda k, d: max(0, k * FRAME + d), st.integers(1, 3),
                                                  st.integers(-24, 24)))
payload_parts = st.one_of(
    st.builds(bytes, sizes),
    st.builds(lambda n, c: c * n, sizes, st.sampled_from(["a", "é", "\U0001f600", "\udc80"])),
    st.builds(lambda n: bytearray(b"\x01" * n), sizes),
    st.builds(lambda n, m: [(i, b"e" * m) for i in range(n)], st.integers(0, 600), st.integers(0, 300)),
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), texts),  # nan != nan
)
payloads = st.lists(payload_parts, max_size=4).map(tuple)


@settings(max_examples=50, **SETTINGS)
@given(job_id=st.integers(0, 2**40), ok=st.booleans(), payload=payloads)
def test_pickle_parts_is_pickle_dumps_in_pieces(job_id: int, ok: bool, payload: tuple) -> None:
    obj = (job_id, ok, payload)
    size, parts = pickle_parts(obj)
    assert all(type(p) is bytes for p in parts)
    assert b"".join(parts) == pickle.dumps(obj, protocol=5)
    assert size == sum(map(len, parts))
    assert pickle.loads(b"".join(parts)) == obj


class PipeProc:
    """Stands in for ``agent.spawn.SpawnedChild`` in ``_read_answers``: ``stdout`` is the read end of a
    real pipe as a gevent file (as ``spawn`` makes it); a thread writes the helper's side."""

    pid = None

    def __init__(self) -> None:
        r, self.w = os.pipe()
        self.stdout = FileObjectPosix(r, "rb")
        self.kills = 0

    def kill(self) -> None:
        self.kills += 1


def _frame(obj: Any) -> bytes:
    size, parts = pickle_parts(obj)
    return _LEN.pack(size) + b"".join(parts)


def _write_in_pieces(fd: int, data: bytes, cuts: list[int]) -> None:
    """``data`` to ``fd`` in the pieces ``cuts`` makes, each with its own ``os.write``s; then EOF.
    Stops when the reader is gone (it stops reading at a fault and closes its end)."""
    try:
        for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
            view = memoryview(data)[a:b]
            while view:
                view = view[os.write(fd, view):]
    except BrokenPipeError:
        pass
    finally:
        os.close(fd)


@st.composite
def answer_streams(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 6))
    answers = [(draw(st.booleans() | st.just(True)), draw(payloads)) for _ in range(n)]
    fault = draw(st.sampled_from(["none", "none", "cut", "wrong id", "not a pickle"]))
    return {"answers": answers, "fault": fault, "at": draw(st.integers(0, 2**31)),
            "cuts": draw(st.lists(st.integers(0, 2**31), max_size=12))}


@settings(max_examples=40, **SETTINGS)
@given(case=answer_streams())
def test_the_agent_reads_each_answer_whole_and_computes_the_rest_itself(case: dict[str, Any]) -> None:
    """Answers come in pieces cut anywhere (the pipe holds 64 KiB; the writer blocks on it); each job
    gets its own answer, a failed job and every job after a fault get their fallback, once each."""
    answers: list[tuple[bool, tuple]] = case["answers"]
    n = len(answers)
    helper = OffloadHelper("/nonexistent/agent.toml")  # never spawns: the pipe is the helper
    proc = PipeProc()
    helper._proc = proc
    fallbacks: Counter[int] = Counter()

    def fallback(i: int) -> tuple:
        fallbacks[i] += 1
        return ("computed here", i)

    jobs = [_Job(i, (i, "map", ()), lambda i=i: fallback(i)) for i in range(1, n + 1)]
    helper._jobs.extend(jobs)
    frames = [_frame(_HELLO)] + [_frame((i, ok, payload)) for i, (ok, payload) in enumerate(answers, 1)]
    answered = n  # jobs whose answer frame arrives whole and right
    fault, at = case["fault"], case["at"]
    if fault == "wrong id":
        bad = at % n
        frames[1 + bad] = _frame((bad + 7, True, answers[bad][1]))
        answered = bad
    elif fault == "not a pickle":
        bad = at % n
        frames[1 + bad] = _LEN.pack(5) + b"\x80\x05junk"
        answered = bad
    data = b"".join(frames)
    if fault == "cut":
        keep = at % len(data)  # the helper dies after writing this many bytes
        data = data[:keep]
        ends = [sum(map(len, frames[: k + 1])) for k in range(len(frames))]
        answered = 0 if keep < ends[0] else sum(1 for e in ends[1:] if e <= keep)
    cuts = sorted({c % (len(data) + 1) for c in case["cuts"]})
    writer = threading.Thread(target=_write_in_pieces, args=(proc.w, data, cuts), daemon=True)
    writer.start()
    reader = gevent.spawn(helper._read_answers, proc)
    try:
        reader.join(timeout=60)
        assert reader.dead
        results = [job.result.get(timeout=0) for job in jobs]
    finally:
        proc.stdout.close()  # a writer still blocked on the full pipe (after a fault) gets EPIPE
        writer.join(timeout=60)
    for i, (job, (ok, payload)) in enumerate(zip(jobs, answers, strict=True)):
        by_helper = i < answered and ok
        assert results[i] == (payload if by_helper else ("computed here", job.id))
        assert fallbacks[job.id] == (0 if by_helper else 1)
    assert helper.queued == 0
    assert helper.jobs_done == answered  # counted once each, failed ones too
    # whatever ends the stream (here always an EOF at last), the helper is lost once: a restart
    assert helper.restarts == 1 and proc.kills >= 1 and not helper.running


@pytest.fixture(scope="module")
def raw_helper(env: Env) -> Iterator[subprocess.Popen]:
    """The helper process on plain pipes, as ``python -m agent.offload`` runs: the test is the agent."""
    proc = subprocess.Popen([sys.executable, "-m", "agent.offload", "--config", env.path],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    assert _read_frame(proc) == _HELLO
    proc.next_id = 1  # type: ignore[attr-defined]
    yield proc
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0  # its stdin closed: it exits, cleanly


def _read_frame(proc: subprocess.Popen) -> Any:
    (n,) = _LEN.unpack(proc.stdout.read(4))
    return pickle.loads(proc.stdout.read(n))


@st.composite
def block_jobs(draw: st.DrawFn) -> tuple[int, bytes, bool]:
    """(start, a block of complete lines of about a frame-boundary size, send as Line tuples?)."""
    target = draw(st.sampled_from([100, FRAME - 40, FRAME, FRAME + 40, 2 * FRAME + 3]))
    lines, size = [], 0
    while size < target - 200:
        line = draw(st.sampled_from(SEEDS)) + b"\n"
        lines.append(line)
        size += len(line)
    pad = max(0, target - size - len(b'{"pad":""}\n'))
    lines.append(b'{"pad":"' + b"p" * pad + b'"}\n')  # quarantined: an unknown record shape
    return draw(st.integers(0, 2**40)), b"".join(lines), draw(st.booleans())


@settings(max_examples=5, **SETTINGS)
@given(jobs=st.lists(block_jobs(), min_size=1, max_size=2),
       cuts=st.lists(st.integers(0, 2**31), max_size=10))
def test_the_helper_reads_jobs_written_in_pieces(env: Env, raw_helper: subprocess.Popen,
                                                  jobs: list[tuple[int, bytes, bool]],
                                                  cuts: list[int]) -> None:
    proc = raw_helper
    first = proc.next_id  # type: ignore[attr-defined]
    frames, want = [], []
    for k, (start, data, as_lines) in enumerate(jobs):
        lines = LineBlock(start, data).lines()
        raw: Any = ([(ln.start, ln.end, ln.data, ln.overlong, ln.length) for ln in lines] if as_lines
                    else (start, data))
        frames.append(_frame((first + k, "map", ("src", None, BIG, raw))))
        here = map_lines(lines, source="src", context=env.context, kind=None, max_line_bytes=BIG)
        want.append((first + k, True, _plain(here)))
    proc.next_id = first + len(jobs)  # type: ignore[attr-defined]
    data = b"".join(frames)
    for a, b in zip([0, *sorted(c % (len(data) + 1) for c in cuts)],
                    [*sorted(c % (len(data) + 1) for c in cuts), len(data)], strict=True):
        proc.stdin.write(data[a:b])
        proc.stdin.flush()
    got = [_read_frame(proc) for _ in jobs]
    assert [(i, ok, (list(ev), list(q))) for i, ok, (ev, q) in got] == want


# ------------------------------------------------------------------------------- 4. failure

class _Exit:
    """Unpickles, in the helper, to ``os._exit(0)``: the helper exits in the middle of the job stream."""

    def __reduce__(self) -> tuple:
        return (os._exit, (0,))


def _chunk_pool() -> list[Any]:
    """Chunks as a tail hands them over: blocks and line lists, good and bad lines, ~5-500 lines."""
    good = [s + b"\n" for s in SEEDS]
    bad = [b"{not json\n", b"[1, 2]\n", b"\n", b" \r\n", b'{"id": "x", "timestamp": "yesterday"}\n']
    pool: list[Any] = []
    for n in (5, 60, 500):
        data = b"".join(((good + bad) * (n // len(good + bad) + 1))[:n])
        pool.append(LineBlock(1000 * n, data))
        pool.append(LineSplitter(BIG, 7).feed(data))
    return pool


CHUNKS = _chunk_pool()


class Lifecycle(RuleBasedStateMachine):
    """One ``OffloadHelper`` driven through its life; the model: what each job must come back as,
    how many times the helper died, how many times it was retired."""

    env: Env  # set by the test below
    readers: defaultdict[int, Any]  # _track_readers's events

    def __init__(self) -> None:
        super().__init__()
        self.helper = OffloadHelper(self.env.light_path)
        self.context = self.env.light_context
        self.mapper, self.counting = _process_mapper(self.helper, self.context)
        self.pending: list[tuple[Any, Any]] = []  # (pending answer, expected answer)
        self.jobs = 0
        self.deaths = 0
        self.retired = 0
        self.exit_fallbacks = 0

    @rule(chunk=st.sampled_from(CHUNKS), n=st.integers(1, 3))
    def submit(self, chunk: Any, n: int) -> None:
        for _ in range(n):
            self.jobs += 1
            source = f"job-{self.jobs}"
            pending = self.mapper.submit(chunk, source=source, kind=None, max_line_bytes=BIG)
            self.pending.append((pending, _plain(_inline(self.context, chunk, source, None, BIG))))

    @precondition(lambda self: self.pending)
    @rule(k=st.integers(0, 3))
    def await_oldest(self, k: int) -> None:
        for _ in range(min(k + 1, len(self.pending))):
            pending, want = self.pending.pop(0)
            assert _plain(pending.get(timeout=60)) == want

    @rule()
    def start(self) -> None:
        assert self.helper.start(timeout=60)

    @precondition(lambda self: self.helper.running)
    @rule()
    def sigkill(self) -> None:
        os.kill(self.helper.pid, signal.SIGKILL)
        self.deaths += 1
        wait_until(lambda: not self.helper.running, 30, "the agent notices its helper died")

    @rule()
    def job_that_makes_the_helper_exit(self) -> None:
        def fallback() -> tuple:
            self.exit_fallbacks += 1
            return [], []

        answer = self.helper.submit("map", ("exit", None, BIG, _Exit()), fallback)
        if not answer.ready():  # sent to the helper (a helper still starting gets no job)
            self.deaths += 1
            wait_until(lambda: not self.helper.running, 30, "the agent notices its helper exited")
        self.pending.append((answer, ([], [])))

    @rule()
    def retire_when_idle(self) -> None:
        proc, idle = self.helper._proc, self.helper.running and self.helper.queued == 0
        assert self.helper.retire_if_idle(0) is idle
        if idle:
            self.retired += 1
            assert proc.wait(timeout=30) == 0  # its stdin closed: it exits by itself
            assert self.readers[proc.pid].wait(timeout=30)  # and the agent has seen it go

    @invariant()
    def counters(self) -> None:
        assert self.helper.restarts == self.deaths
        assert self.helper.retirements == self.retired
        assert max(self.counting.calls.values(), default=0) <= 1

    def teardown(self) -> None:
        self.helper.close()
        for pending, want in self.pending:
            assert _plain(pending.get(timeout=60)) == want
        assert not self.helper.running
        assert max(self.counting.calls.values(), default=0) <= 1
        # each map job answered once: by the helper or by its fallback, never both
        assert self.helper.jobs_done + sum(self.counting.calls.values()) == self.jobs


LIFECYCLE_SETTINGS = settings(max_examples=5, stateful_step_count=8, **SETTINGS)


def test_helper_lifecycle(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.offload.RESTART_BACKOFF_S", (0.0,))  # restart at once, not in 0.5-30 s
    Lifecycle.env = env
    Lifecycle.readers = _track_readers(monkeypatch)
    run_state_machine_as_test(Lifecycle, settings=LIFECYCLE_SETTINGS)


# ----------------------------------------------------------- defects found, reproduced deterministically

def test_a_retired_helper_exiting_late_leaves_its_successors_jobs_alone(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """``retire_if_idle`` stops the helper by closing its stdin; the next job starts a successor. If the
    retired one's exit is noticed after the successor took jobs (a loaded host, a helper slow to tear
    down: here SIGSTOP holds it), ``_lost`` of the *retired* helper computed the successor's jobs here,
    then the successor's answers met an empty queue: the healthy successor was killed and counted as a
    failure (``restarts``, back-off). A retirement is "not a failure (no back-off, not counted as a
    restart)" (``retire_if_idle``)."""
    readers = _track_readers(monkeypatch)
    helper = OffloadHelper(env.light_path)
    pm, counting = _process_mapper(helper, env.light_context)
    try:
        assert helper.start(timeout=60)
        old = helper._proc
        os.kill(old.pid, signal.SIGSTOP)  # slow to exit
        assert helper.retire_if_idle(0)
        assert helper.start(timeout=60)
        new = helper._proc
        os.kill(new.pid, signal.SIGSTOP)  # its answers come after the old helper's EOF
        chunk = CHUNKS[2]
        pendings = [pm.submit(chunk, source=f"s{i}", kind=None, max_line_bytes=BIG) for i in range(3)]
        os.kill(old.pid, signal.SIGCONT)
        assert old.wait(timeout=30) == 0
        assert readers[old.pid].wait(timeout=30)  # the agent has seen the old helper go
        os.kill(new.pid, signal.SIGCONT)
        got = [_plain(p.get(timeout=60)) for p in pendings]
        assert got == [_plain(_inline(env.light_context, chunk, f"s{i}", None, BIG)) for i in range(3)]
        wait_until(lambda: helper.jobs_done + sum(counting.calls.values()) >= 3, 30, "answers")
        assert counting.calls == Counter(), "the successor's jobs were computed in the agent"
        assert helper.restarts == 0 and helper.retirements == 1
        assert helper._proc is new and new.returncode is None, "the healthy successor was killed"
    finally:
        for p in (helper._proc, locals().get("old"), locals().get("new")):
            if p is not None and p.returncode is None:
                os.kill(p.pid, signal.SIGCONT)
        helper.close()


@pytest.mark.parametrize("edit", ["agent.toml", "file: salt"])
def test_a_helper_started_after_the_config_changed_maps_as_the_running_agent(tmp_path: Path,
                                                                             edit: str) -> None:
    """The agent reads agent.toml once (no reload); its helper is started later, on the first big chunk,
    and again after each retirement (30 s idle) or crash, and loaded the file as it was *then*. An
    edit meant for the next restart (labels here), or a rotated ``file:`` hash salt (docs: a ``file:``
    secret is re-read on change, "so rotating a credential needs no restart"; the agent's redactor
    keeps the salt it compiled), made big chunks map differently from small ones and from the
    agent's own fallback: the spool held two labellings, two pseudonyms of one path. Driven through
    the ``Supervisor``, which builds the helper and the mapper as ``clawd-agent run`` does."""
    from agent.supervisor import Supervisor
    from tests.integration.harness import write_config

    salt = tmp_path / "salt"
    salt.write_text("pepper")
    path = write_config(tmp_path, extra=f"""
[agent.labels]
team = "soc"

[privacy]
rules = [{{path = "resource.name", style = "hash", hash_salt = "file:{salt}"}}]
""")
    # no heartbeat meanwhile: it would retire a helper no job has used yet (retire_if_idle)
    path.write_text(path.read_text().replace('heartbeat_interval = "200ms"', 'heartbeat_interval = "1h"'))
    sup = Supervisor(load_config(str(path)))
    sup.start()
    try:
        if edit == "agent.toml":
            path.write_text(path.read_text().replace('team = "soc"', 'team = "edited-for-next-restart"'))
        else:
            salt.write_text("rotated")
        assert sup.offload is not None and sup.offload.start(timeout=60)
        chunk = CHUNKS[4]  # 500 lines: the helper's work
        got = _plain(sup.mapper.submit(chunk, source="a", kind=None, max_line_bytes=BIG).get(timeout=60))
        assert sup.offload.jobs_done == 1  # mapped by the helper
        assert got == _plain(sup.mapper.inline.submit(chunk, source="a", kind=None, max_line_bytes=BIG).get())
    finally:
        sup.shutdown()


@pytest.mark.parametrize("value", [[1], {"sha256": "a" * 64}])
def test_a_policy_hash_that_is_not_a_string_is_ignored_not_an_internal_error(value: Any) -> None:
    """Found by the mutated records of property 1 (the same on both sides, so not an offload defect):
    ``_policy_hash`` drops anything but a string (a number is ignored and the record maps), but
    ``_map_hushd`` first looked an unhashable value up in its memo dict: TypeError, so the line was
    quarantined as an "internal mapping error" (the catch-all for mapping bugs) with a traceback
    logged for each such line."""
    record = {"id": "a1", "timestamp": "2026-11-26T08:28:51Z", "event_type": "check", "action_type": "shell",
              "decision": "allowed", "severity": "Info", "metadata": {"policy_hash": value}}
    events, quarantine = map_lines([Line(0, 1, orjson.dumps(record))], source="s",
                                   context=mapping_mod.MappingContext(), kind=None, max_line_bytes=BIG)
    assert quarantine == []
    assert len(events) == 1 and "policy_hash" not in orjson.loads(events[0].body)["decision"]


def test_a_hung_helper_is_killed_and_its_jobs_computed_in_the_agent(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A helper alive but hung (SIGSTOP here; a deadlock alike) answered nothing, and every input that
    had handed it a chunk waited for that chunk forever (a tail's ``pending.get()`` has no timeout).
    ``kill_if_stuck`` (the supervisor's heartbeat) kills it once jobs have waited ``STUCK_S`` without an
    answer, and the jobs are computed here, each once. The clock is the module's, moved by hand."""
    now = [1000.0]
    monkeypatch.setattr("agent.offload.time.monotonic", lambda: now[0])
    helper = OffloadHelper(env.light_path)
    pm, counting = _process_mapper(helper, env.light_context)
    try:
        assert helper.start(timeout=60)
        proc = helper._proc
        assert not helper.kill_if_stuck(30), "no job waits: nothing is stuck"
        os.kill(proc.pid, signal.SIGSTOP)
        chunk = CHUNKS[2]
        pendings = [pm.submit(chunk, source=f"s{i}", kind=None, max_line_bytes=BIG) for i in range(2)]
        now[0] += 29.0
        assert not helper.kill_if_stuck(30) and proc.returncode is None, "killed before STUCK_S"
        now[0] += 2.0
        assert helper.kill_if_stuck(30)
        got = [_plain(p.get(timeout=60)) for p in pendings]
        assert got == [_plain(_inline(env.light_context, chunk, f"s{i}", None, BIG)) for i in range(2)]
        assert sum(counting.calls.values()) == 2 and max(counting.calls.values()) == 1
        assert proc.wait(timeout=30) == -signal.SIGKILL
        assert helper.restarts == 1 and not helper.running
    finally:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGCONT)
        helper.close()


class _HoldUntil:
    """Unpickles, in the helper, to a wait for ``path`` to exist: the helper is busy with this job
    until the test lets it go (its answer is then an error, and the job is computed in the agent)."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self) -> tuple:
        import subprocess

        return (subprocess.call, (["sh", "-c", f'while [ ! -e "{self.path}" ]; do sleep 0.02; done'],))


def test_a_helper_that_keeps_answering_is_not_stuck(env: Env, monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    """The wait is counted from the helper's last answer (or from a job that found none waiting), not
    from the oldest job: a helper that answered 20 s ago and is on its next job is not killed at 45 s
    after that job was sent, and is once 30 s pass with no answer."""
    now = [1000.0]
    monkeypatch.setattr("agent.offload.time.monotonic", lambda: now[0])
    helper = OffloadHelper(env.light_path)
    fallbacks: list[str] = []
    try:
        assert helper.start(timeout=60)
        proc = helper._proc
        first, second = (helper.submit("map", ("hold", None, BIG, _HoldUntil(tmp_path / name)),
                                       lambda name=name: fallbacks.append(name) or ([], []))
                         for name in ("first", "second"))
        now[0] += 25.0
        (tmp_path / "first").touch()
        first.get(timeout=60)  # answered at t+25; the second job is still held
        assert fallbacks == ["first"] and helper.queued == 1
        now[0] += 20.0  # t+45: the second job was sent 45 s ago, the last answer came 20 s ago
        assert not helper.kill_if_stuck(30) and proc.returncode is None
        now[0] += 10.0  # t+55: 30 s without an answer
        assert helper.kill_if_stuck(30)
        assert second.get(timeout=60) == ([], []) and fallbacks == ["first", "second"]
        assert proc.wait(timeout=30) == -signal.SIGKILL and helper.restarts == 1
    finally:
        (tmp_path / "first").touch()
        (tmp_path / "second").touch()
        helper.close()
