"""Property-based tests of the operator commands (agent/cli.py, agent/status.py) on an installed agent's
spool: `dlq list|show|replay|purge`, `cursor show|rewind` and `status`, run with click's CliRunner
against a real spool in a temporary directory while the agent is stopped (docs/outputs.md §6,
docs/spool.md "Cursors", "Quarantine and DLQ", README "Operating it").

A RuleBasedStateMachine keeps a model of the spool's events, cursors, DLQ entries and tailed files.
The agent's side writes through the Spool API (DLQ entries of configured, disabled and removed outputs,
with reasons holding newlines, ANSI/OSC escapes, C1 controls, bidi overrides and text past REASON_MAX,
bodies of any bytes; replays refused again or delivered; drains committing; retention pruning; files
with hostile names tailed). The operator's side runs the commands, with random filters, ids (known,
unknown, of another output), ages and times (`7d`-style, RFC 3339 in any offset, malformed), rewinds by
seq, time, event id and count (past the end, before the start, of outputs without a cursor), some while
another process holds the spool's write lock. After each command:

1. agreement: `--json` output parses and equals the model (`dlq list`, `dlq show` with the event,
   `cursor show`, `status`'s DLQ counts, pending replays, last reasons, cursors, lag, orphans); the
   exit code and the one-line summary (`replay requested for N`, `purged N`, `cursor A -> B`, `stays
   at`, `moved FORWARD`) are the documented ones, and the spool changed exactly as the model did;
2. isolation: replay and purge touch only the entries they select (other outputs' entries untouched);
3. errors: an unknown id or output, an id of another output, a bad time or event id, a refused
   confirmation or a locked spool exit non-zero with one `Error:` line last, no traceback, and
   change nothing;
4. display: human output (as a terminal gets it: click strips nothing) has one line per DLQ entry,
   the documented number of `status` lines, and no raw control, line-separator or bidi-override
   character taken from the data (a reason or a file name written by whoever controls an event or a
   destination must not drive the operator's terminal);
5. secrets: no output reveals the configured HEC token or Elasticsearch password.

Deterministic tests at the end pin what the machine and a corruption sweep found, and the
missing-spool case for every command. Two of them fail today:
- property 4: reasons and file names reach the terminal as they are
  (test_a_dlq_reason_cannot_break_lines_or_drive_the_terminal and the two after it);
- a schema SQLite finds malformed, in a message quoting a byte that is not UTF-8, ends every command
  with a UnicodeDecodeError traceback (test_a_spool_whose_schema_sqlite_finds_malformed_is_a_clear_error).

The machine does not shrink (each step runs a command: shrinking took minutes); its printed steps
reproduce a failure.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import spool.store as store
from agent.cli import cli
from spool.store import Spool
from spool.types import EXCERPT_MAX, REASON_MAX, EncodedEvent, IngestBatch, InputOffset, SpoolRow

CANARY_TOKEN = "CanaryHecTok-5d1e9a77c0"
CANARY_PASSWORD = "CanaryEsPw-3b8f2c61aa"
CONFIGURED = ("es", "splunk", "arch")  # arch is disabled
ENABLED = ("es", "splunk")
ORPHAN = "gone"  # an output removed from the config: it has a cursor and DLQ entries
UNKNOWN = "nope"  # never configured, no cursor, no entries
TEN_MIN = 600_000
HOUR = 3_600_000
#: what a terminal must never get raw from the data: C0/C1 controls, line/paragraph separators and
#: bidi overrides (the set outputs.http.excerpt turns into spaces for the same reason)
RAW_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

HOSTILE = ["\n", "\r\n", "\r", "\x1b[2J\x1b[H", "\x1b]0;owned\x07", "\x1b[31mred\x1b[0m", "\x9b6n",
           "\u2028", "\u202eevil", "\x85", "\x7f", "\t", "\x08\x08", "\x00"]
reasons = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30),
    st.lists(st.one_of(st.sampled_from(HOSTILE), st.text("abc :-", max_size=6)), max_size=6).map("".join),
    st.sampled_from(["HTTP 400 mapper_parsing_exception", "HEC 6 invalid data format", "", "é ü"]),
    st.integers(REASON_MAX - 2, REASON_MAX + 40).map(lambda n: "L" * (n - 1) + "\n"),
)
bodies = st.one_of(st.binary(max_size=40), st.builds(orjson.dumps, st.dictionaries(
    st.text(max_size=4), st.one_of(st.integers(-(2**63), 2**64 - 1), st.text(max_size=6), st.none()),
    max_size=3)))
excerpts = st.one_of(st.none(), st.binary(max_size=20), st.just(b"e" * (EXCERPT_MAX + 9)))
file_names = st.lists(st.one_of(st.sampled_from([h for h in HOSTILE if h != "\x00"]),
                                st.text("abz-_.", min_size=1, max_size=5)), min_size=1, max_size=4
                      ).map(lambda parts: "/var/log/hushd/" + "".join(parts) + ".jsonl")


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


def _rfc3339(ms: int, offset_min: int) -> str:
    """``ms`` as RFC 3339 in the given UTC offset, exactly (no float on the way)."""
    dt = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).astimezone(
        timezone(timedelta(minutes=offset_min)))
    text = dt.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z") if offset_min == 0 else text


def _shown_event(body: bytes) -> Any:
    """What `dlq show` documents for the event: the JSON it holds, else its text."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "backslashreplace")


def _event_id_text(eid: bytes) -> str:
    return str(uuid.UUID(bytes=eid)) if len(eid) == 16 else eid.hex()


@contextmanager
def _clock(ms: int) -> Iterator[None]:
    """The spool's clock at ``ms`` for one agent-side write (entries of a chosen age)."""
    real = store.now_ms
    store.now_ms = lambda: ms
    try:
        yield
    finally:
        store.now_ms = real


@dataclass
class MEvent:
    seq: int
    event_id: bytes
    ts_ms: int
    body: bytes


@dataclass
class MCursor:
    seq: int
    gen: int = 0


@dataclass
class MEntry:
    id: int
    output: str
    seq: int
    event_id: bytes
    body: bytes
    reason: str
    excerpt: bytes
    attempts: int
    created_ms: int
    updated_ms: int
    replay: bool = False


def write_config(root: Path) -> str:
    cfg = root / "agent.toml"
    cfg.write_text(f"""[agent]
data_dir = "{root}/state"
[inputs.i]
type = "file"
paths = ["{root}/in/*.jsonl"]
[outputs.es]
type = "elasticsearch"
hosts = ["https://es.example:9200"]
username = "elastic"
password = "{CANARY_PASSWORD}"
[outputs.splunk]
type = "splunk_hec"
endpoint = "https://splunk.example:8088"
token = "{CANARY_TOKEN}"
[outputs.arch]
type = "stdout"
enabled = false
""")
    (root / "state").mkdir()
    return str(cfg)


class CliMachine(RuleBasedStateMachine):
    """The agent writes through the Spool API, the operator runs the commands; the model decides."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="cli-sm-"))
        self.cfg = write_config(self.root)
        self.spool = Spool(str(self.root / "state" / "spool.db"), offload=False)
        self._kwdefaults = dict(Spool.__init__.__kwdefaults__)
        Spool.__init__.__kwdefaults__["busy_timeout_ms"] = 50  # a locked spool answers fast
        self.now0 = int(time.time() * 1000)
        self.events: list[MEvent] = []  # retained, seq order
        self.last = 0
        self.pruned = False
        self.cursors: dict[str, MCursor] = {}
        self.dlq: dict[int, MEntry] = {}
        self.last_error: dict[str, str] = {}
        self.files: dict[str, tuple[str, int]] = {}  # file_key -> (path, offset)

    def teardown(self) -> None:
        try:
            self.spool.close()
        finally:
            Spool.__init__.__kwdefaults__.clear()
            Spool.__init__.__kwdefaults__.update(self._kwdefaults)
            shutil.rmtree(self.root, ignore_errors=True)

    # -- the agent's side ----------------------------------------------------------------------------

    def _append(self, ages: list[int]) -> None:
        new = [EncodedEvent(uuid.UUID(int=self.last + i + 1).bytes, self.now0 - k * TEN_MIN,
                            orjson.dumps({"n": self.last + i + 1})) for i, k in enumerate(ages)]
        self.spool.append(IngestBatch("i", new))
        for e in new:
            self.last += 1
            self.events.append(MEvent(self.last, e.event_id, e.ts_ms, e.body))

    @initialize(ages=st.lists(st.integers(0, 12), min_size=1, max_size=12),
                splunk_cursor=st.booleans(), data=st.data())
    def setup(self, ages: list[int], splunk_cursor: bool, data: st.DataObject) -> None:
        self._append(ages)
        for name in ("es", "arch", ORPHAN, *(("splunk",) if splunk_cursor else ())):
            self.spool.ensure_cursor(name)
            seq = data.draw(st.integers(0, self.last), label=f"{name} delivered up to")
            assert self.spool.commit_cursor(name, seq, 0)
            self.cursors[name] = MCursor(seq)

    @rule(ages=st.lists(st.integers(0, 12), min_size=1, max_size=4))
    def ingest(self, ages: list[int]) -> None:
        self._append(ages)

    @rule(data=st.data())
    def drain_commits(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.cursors)))
        cur = self.cursors[name]
        seq = data.draw(st.integers(cur.seq, self.last))
        assert self.spool.commit_cursor(name, seq, cur.gen)
        cur.seq = seq

    @rule()
    def retention(self) -> None:
        """Retention with no age limit: what every enabled configured output delivered goes."""
        limit = min((self.cursors[o].seq if o in self.cursors else 0) for o in ENABLED)
        n = self.spool.prune(retention_s=0, enabled_outputs=ENABLED, now=int(time.time() * 1000) + 1_000)
        gone = [e for e in self.events if e.seq <= limit]
        assert n == len(gone)
        self.events = [e for e in self.events if e.seq > limit]
        self.pruned = self.pruned or n > 0

    @rule(output=st.sampled_from([*CONFIGURED, ORPHAN]), data=st.data(), reason=reasons, excerpt=excerpts,
          attempts=st.integers(1, 5), age_h=st.integers(0, 72))
    def agent_dead_letters(self, output: str, data: st.DataObject, reason: str, excerpt: bytes | None,
                           attempts: int, age_h: int) -> None:
        seqs = data.draw(st.lists(st.integers(1, self.last), min_size=1, max_size=3))
        rows = []
        for seq in seqs:
            held = self.retained(seq)
            eid = held.event_id if held else data.draw(st.binary(min_size=0, max_size=20))
            rows.append(SpoolRow(seq, eid, 0, data.draw(st.one_of(st.just(b""), bodies))))
        at = self.now0 - age_h * HOUR
        with _clock(at):
            assert self.spool.dlq_add(output, rows, reason, excerpt, attempts) == len(rows)
        ids = sorted(e.id for e in self.spool.dlq_list(limit=10**6))[-len(rows):]
        for entry_id, r in zip(ids, rows, strict=True):
            body, why = r.body, reason[:REASON_MAX]
            if not body:
                held = self.retained(r.seq)
                body = held.body if held else b""
                if not body:
                    why = (reason[:REASON_MAX] + " (event body no longer in the spool)")[:REASON_MAX]
            self.dlq[entry_id] = MEntry(entry_id, output, r.seq, r.event_id, body, why,
                                        (excerpt or b"")[:EXCERPT_MAX], attempts, at, at)
        self.last_error[output] = reason[:REASON_MAX]

    @precondition(lambda self: any(e.replay for e in self.dlq.values()))
    @rule(data=st.data(), reason=reasons, excerpt=excerpts, age_h=st.integers(0, 72))
    def agent_replay_refused_again(self, data: st.DataObject, reason: str, excerpt: bytes | None,
                                   age_h: int) -> None:
        marked = sorted(i for i, e in self.dlq.items() if e.replay)
        ids = data.draw(st.lists(st.sampled_from(marked), min_size=1, unique=True))
        at = self.now0 - age_h * HOUR
        with _clock(at):
            assert self.spool.dlq_requeue(ids, reason, excerpt) == len(ids)
        for i in ids:
            e = self.dlq[i]
            e.reason, e.excerpt, e.updated_ms = reason[:REASON_MAX], (excerpt or b"")[:EXCERPT_MAX], at
            e.attempts += 1
            e.replay = False

    @precondition(lambda self: any(e.replay for e in self.dlq.values()))
    @rule(data=st.data())
    def agent_replay_delivered(self, data: st.DataObject) -> None:
        marked = sorted(i for i, e in self.dlq.items() if e.replay)
        ids = data.draw(st.lists(st.sampled_from(marked), min_size=1, unique=True))
        assert self.spool.dlq_done(ids) == len(ids)
        for i in ids:
            del self.dlq[i]

    @rule(key=st.sampled_from(["k1", "k2", "k3"]), path=file_names, offset=st.integers(0, 10**6))
    def agent_tails_a_file(self, key: str, path: str, offset: int) -> None:
        self.spool.append(IngestBatch("i", [], [InputOffset(key, path, offset)]))
        self.files[key] = (path, offset)

    # -- running the commands ---------------------------------------------------------------------

    def run(self, *args: str, input: str | None = None) -> Result:
        """One command as on a terminal (color=True: click strips no escape sequence)."""
        r = CliRunner().invoke(cli, [*args, "-c", self.cfg], input=input, color=True)
        assert CANARY_TOKEN not in r.output and CANARY_PASSWORD not in r.output, r.output
        assert isinstance(r.exception, SystemExit | None), (args, r.output, r.exception)
        assert "Traceback" not in r.output, r.output
        return r

    def ok(self, r: Result) -> list[str]:
        assert r.exit_code == 0, r.output
        return r.output.split("\n")[:-1]

    def error(self, r: Result, code: int, *expected: str) -> None:
        """Exit ``code``, one `Error:` line last naming the problem, nothing after it."""
        assert r.exit_code == code, (code, r.output)
        assert r.output.endswith("\n"), r.output
        last = r.output.split("\n")[-2]
        assert last.startswith("Error: "), r.output
        for text in expected:
            assert text in last, (text, r.output)

    def retained(self, seq: int) -> MEvent | None:
        return next((e for e in self.events if e.seq == seq), None)

    def entries(self, output: str | None = None) -> list[MEntry]:
        return [self.dlq[i] for i in sorted(self.dlq) if output is None or self.dlq[i].output == output]

    def entry_json(self, e: MEntry) -> dict[str, Any]:
        return {"id": e.id, "output": e.output, "seq": e.seq, "event_id": _event_id_text(e.event_id),
                "reason": e.reason, "attempts": e.attempts, "created": _iso(e.created_ms),
                "replay_requested": e.replay,
                "response_excerpt": e.excerpt.decode("utf-8", "backslashreplace")}

    @invariant()
    def spool_agrees_with_the_model(self) -> None:
        """What the commands wrote (or refused to) is what the model says: DLQ entries and marks,
        cursors and generations."""
        got = {e.id: (e.output, e.reason, e.attempts) for e in self.spool.dlq_list(limit=10**6)}
        assert got == {e.id: (e.output, e.reason, e.attempts) for e in self.dlq.values()}
        assert self.spool.dlq_replay_ids() == {i for i, e in self.dlq.items() if e.replay}
        assert {c.output: (c.seq, c.generation) for c in self.spool.list_cursors()} == {
            n: (c.seq, c.gen) for n, c in self.cursors.items()}

    # -- dlq list / show ----------------------------------------------------------------------------

    @rule(output=st.sampled_from([None, *CONFIGURED, ORPHAN, UNKNOWN]),
          limit=st.one_of(st.none(), st.integers(1, 4)), as_json=st.booleans())
    def dlq_list(self, output: str | None, limit: int | None, as_json: bool) -> None:
        args = ["dlq", "list", *(["--output", output] if output else []),
                *(["--limit", str(limit)] if limit else []), *(["--json"] if as_json else [])]
        lines = self.ok(self.run(*args))
        want = self.entries(output)[:limit or 100]
        if as_json:
            assert orjson.loads("\n".join(lines)) == [self.entry_json(e) for e in want]
            return
        if not want:
            assert lines == ["the DLQ is empty"]
            return
        assert len(lines) == len(want), lines  # one line per entry, whatever its reason holds
        for line, e in zip(lines, want, strict=True):
            mark = "  (replay requested)" if e.replay else ""
            head = f"#{e.id}  {_iso(e.created_ms)}  {e.output}  seq {e.seq}  attempts {e.attempts}{mark}  "
            assert line.startswith(head), (line, head)
            assert not RAW_CONTROL.search(line), line
            if not RAW_CONTROL.search(e.reason):
                assert line == head + e.reason

    @rule(data=st.data())
    def dlq_show(self, data: st.DataObject) -> None:
        entry_id = data.draw(st.one_of(st.sampled_from(sorted(self.dlq) or [1]), st.integers(0, 10**4)))
        r = self.run("dlq", "show", str(entry_id))
        e = self.dlq.get(entry_id)
        if e is None:
            self.error(r, 1, f"no DLQ entry #{entry_id}")
            return
        assert orjson.loads(r.output) == {**self.entry_json(e), "event": _shown_event(e.body)}

    # -- dlq replay ---------------------------------------------------------------------------------

    @rule(output=st.sampled_from([None, *CONFIGURED, ORPHAN, UNKNOWN]), data=st.data(),
          by_id=st.booleans())
    def dlq_replay(self, output: str | None, data: st.DataObject, by_id: bool) -> None:
        ids = data.draw(st.lists(st.one_of(st.sampled_from(sorted(self.dlq) or [1]), st.integers(1, 500)),
                                 min_size=1, max_size=3)) if by_id else []
        args = ["dlq", "replay", *(["--output", output] if output else []),
                *[a for i in ids for a in ("--id", str(i))], *([] if ids else ["--all"])]
        r = self.run(*args)
        if output is not None and output not in CONFIGURED:
            return self.error(r, 1, f"output {output!r} is not configured")
        if ids:
            missing = sorted(set(ids) - set(self.dlq))
            if missing:
                return self.error(r, 1, "no DLQ entry #" + ", #".join(map(str, missing)))
            other = [i for i in ids if output is not None and self.dlq[i].output != output]
            if other:
                return self.error(r, 1, f"DLQ entry #{other[0]} belongs to output "
                                        f"{self.dlq[other[0]].output!r}, not {output!r}")
            chosen = [self.dlq[i] for i in sorted(set(ids))]
            outputs = {e.output for e in chosen}
        else:
            chosen = self.entries(output)
            outputs = {e.output for e in chosen}
        if outputs - set(CONFIGURED):
            return self.error(r, 1, f"entries of outputs no longer configured ({ORPHAN})")
        lines = self.ok(r)
        assert lines[0] == (f"replay requested for {len(chosen)} DLQ entries; they are sent when the "
                            "agent starts")
        assert lines[1:] == (["note: disabled outputs replay only once enabled: arch"]
                             if "arch" in outputs else [])
        for e in chosen:
            e.replay = True

    # -- dlq purge ----------------------------------------------------------------------------------

    @rule(output=st.sampled_from([None, *CONFIGURED, ORPHAN, UNKNOWN]), data=st.data(),
          older=st.one_of(st.none(), st.integers(0, 80)), as_time=st.booleans(),
          offset_min=st.sampled_from([0, 330, -480, 60]),
          confirm=st.sampled_from(["--yes", "y\n", "n\n"]))
    def dlq_purge(self, output: str | None, data: st.DataObject, older: int | None, as_time: bool,
                  offset_min: int, confirm: str) -> None:
        ids = data.draw(st.one_of(st.just([]), st.lists(
            st.one_of(st.sampled_from(sorted(self.dlq) or [1]), st.integers(1, 500)), min_size=1,
            max_size=3)))
        age = None
        if older is not None:  # half an hour past a whole hour: no entry's age is near the cut
            age = (_rfc3339(int(time.time() * 1000) - older * HOUR - HOUR // 2, offset_min) if as_time
                   else f"{older}.5h")
        args = ["dlq", "purge", *(["--output", output] if output else []),
                *[a for i in ids for a in ("--id", str(i))], *(["--older-than", age] if age else []),
                *(["--yes"] if confirm == "--yes" else [])]
        r = self.run(*args, input=None if confirm == "--yes" else confirm)
        found = [self.dlq[i] for i in ids if i in self.dlq]
        missing = sorted({i for i in ids if i not in self.dlq})
        if missing:  # as replay: a mistyped --id is an error, not "purged 0"
            return self.error(r, 1, f"no DLQ entry #{', #'.join(map(str, missing))}")
        other = [e for e in found if output is not None and e.output != output]
        if other:
            return self.error(r, 1, f"DLQ entry #{other[0].id} belongs to output {other[0].output!r}")
        if confirm == "n\n":
            assert r.exit_code == 1 and r.output.endswith("Aborted!\n"), r.output
            return
        gone = [e for e in self.entries(output) if (not ids or e.id in ids)
                and (older is None or e.updated_ms < self.now0 - older * HOUR - HOUR // 2)]
        lines = self.ok(r)
        assert lines[-1] == f"purged {len(gone)} DLQ entries", lines
        for e in gone:
            del self.dlq[e.id]

    # -- cursors ------------------------------------------------------------------------------------

    def expected_rewind(self, output: str, mode: str, value: Any) -> tuple[int, int] | str:
        """(before, after) as docs/spool.md "Cursors" describes a rewind, or the error's words."""
        cur = self.cursors.get(output)
        if cur is None:
            return f"no cursor for output {output!r}"
        first = self.events[0].seq if self.events else None
        floor = (self.last if first is None else first - 1) if self.pruned else 0
        if mode == "seq":
            if value > self.last:
                return f"seq {value} is outside 0..{self.last}"
            target = value
        elif mode == "since":
            at = [e.seq for e in self.events if e.ts_ms >= value]
            target = min(at) - 1 if at else self.last
            if at and self.pruned and target == floor and value < min(e.ts_ms for e in self.events):
                return "older events were pruned"
        elif mode == "event_id":
            held = next((e for e in self.events if e.event_id == value), None)
            if held is None:
                return "is not in the spool"
            target = held.seq - 1
        else:
            delivered = [e.seq for e in self.events if e.seq <= cur.seq]
            if len(delivered) >= value:
                target = delivered[-value] - 1
            elif self.pruned:
                return f"only {len(delivered)} delivered events are retained"
            else:
                target = 0
        if mode != "seq" and target > cur.seq:
            target = cur.seq
        elif target < floor:
            return f"the lowest seq it can rewind to is {floor}"
        return cur.seq, target

    @rule(output=st.sampled_from([*CONFIGURED, ORPHAN, UNKNOWN]),
          mode=st.sampled_from(["seq", "since", "age", "event_id", "count"]), data=st.data())
    def cursor_rewind(self, output: str, mode: str, data: st.DataObject) -> None:
        if mode == "seq":
            value = data.draw(st.integers(0, self.last + 2))
            arg, key = ["--seq", str(value)], "seq"
        elif mode == "since":  # to the ms, around an event's time, in any offset
            value = (self.now0 - data.draw(st.integers(-1, 13)) * TEN_MIN
                     + data.draw(st.sampled_from([-1, 0, 1])))
            arg, key = ["--since", _rfc3339(value, data.draw(st.sampled_from([0, 330, -480, 60])))], "since"
        elif mode == "age":  # 5 minutes off any event's age: no event is near the cut
            m = data.draw(st.integers(0, 13))
            arg, key, value = ["--since", f"{10 * m + 5}m"], "since", self.now0 - m * TEN_MIN - TEN_MIN // 2
        elif mode == "event_id":
            n = data.draw(st.integers(1, self.last + 2))
            value = uuid.UUID(int=n).bytes
            text = data.draw(st.sampled_from([str(uuid.UUID(int=n)), uuid.UUID(int=n).hex.upper(),
                                              "{" + str(uuid.UUID(int=n)) + "}"]))
            arg, key = ["--event-id", text], "event_id"
        else:
            value = data.draw(st.integers(1, self.last + 2))
            arg, key = ["--count", str(value)], "count"
        r = self.run("cursor", "rewind", output, *arg)
        want = self.expected_rewind(output, key, value)
        if isinstance(want, str):
            return self.error(r, 1, want)
        (before, after), gen = want, self.cursors[output].gen + 1
        lines = self.ok(r)
        if after < before:
            said = f"{output}: cursor {before} -> {after} (generation {gen}); {before - after} events or " \
                   "fewer will be delivered again"
        elif after > before:
            said = f"{output}: cursor {before} -> {after} (generation {gen}): moved FORWARD; the " \
                   f"{after - before} events seq {before + 1}..{after} will not be delivered to this output"
        else:
            said = f"{output}: cursor stays at {before} (generation {gen}): it is already at or before the " \
                   "requested point, so the events from there on are still to be delivered; none is skipped"
        assert lines == [said]
        self.cursors[output] = MCursor(after, gen)

    @rule(args=st.sampled_from([["--count", "0"], ["--seq", "-1"], ["--since", "yesterday"],
                                ["--since", "2026-01-01T00:00:00"], ["--since", "-2h"], ["--since", ""],
                                ["--event-id", "not-a-uuid"], ["--count", "1", "--seq", "1"], []]),
          output=st.sampled_from(["es", UNKNOWN]))
    def cursor_rewind_refused(self, args: list[str], output: str) -> None:
        """Malformed or conflicting options: a usage error naming them, nothing moved."""
        r = self.run("cursor", "rewind", output, *args)
        self.error(r, 2)

    @rule(output=st.sampled_from([None, *CONFIGURED, ORPHAN, UNKNOWN]), as_json=st.booleans())
    def cursor_show(self, output: str | None, as_json: bool) -> None:
        r = self.run("cursor", "show", *([output] if output else []), *(["--json"] if as_json else []))
        if output is not None and output not in self.cursors:
            return self.error(r, 1, f"no cursor for output {output!r}")
        names = sorted(self.cursors) if output is None else [output]
        lines = self.ok(r)
        if as_json:
            got = orjson.loads(r.output)
            assert sorted(got) == names
            for n in names:
                assert (got[n]["seq"], got[n]["generation"], got[n]["lag_events"]) == (
                    self.cursors[n].seq, self.cursors[n].gen, self.lag(n))
        else:
            assert [line.split(":")[0].removesuffix(" (disabled)") for line in lines] == names

    def lag(self, output: str) -> int:
        return sum(1 for e in self.events if e.seq > self.cursors[output].seq)

    # -- status -------------------------------------------------------------------------------------

    def last_reason(self, output: str) -> str | None:
        es = self.entries(output)
        return max(es, key=lambda e: (e.updated_ms, e.id)).reason if es else None

    @rule(as_json=st.booleans())
    def status(self, as_json: bool) -> None:
        r = self.run("status", *(["--json"] if as_json else []))
        assert r.exit_code == 1, r.output  # the agent is not running: "stopped" exits 1
        counts = {o: len(self.entries(o)) for o in (*CONFIGURED, ORPHAN)}
        if not as_json:
            text = r.output
            assert not RAW_CONTROL.search(text.replace("\n", "")), text
            orphan_lines = 1 + (counts[ORPHAN] > 0)  # the orphan cursor always exists
            files = len(self.files)
            assert text.count("\n") == 8 + files + sum(1 + (counts[o] > 0) for o in CONFIGURED) \
                + orphan_lines, text
            return
        got = orjson.loads(r.output)
        assert got["health"] == "stopped" and got["agent"]["running"] is False
        assert got["spool"]["rows"] == len(self.events) and got["spool"]["last_seq"] == self.last
        for o in CONFIGURED:
            out = got["outputs"][o]
            assert out["dlq"] == counts[o]
            assert out["dlq_replay_pending"] == sum(e.replay for e in self.entries(o))
            assert out["dlq_last_reason"] == self.last_reason(o)
            assert out["last_error"] == self.last_error.get(o)
            assert out["cursor"] == (self.cursors[o].seq if o in self.cursors else None)
            assert out["lag_events"] == (self.lag(o) if o in self.cursors else 0)
            assert out["enabled"] is (o != "arch")
        assert got["orphan_cursors"] == [ORPHAN]
        orphan = {"count": counts[ORPHAN], "last_reason": self.last_reason(ORPHAN)}
        assert got["orphan_dlq"] == ({ORPHAN: orphan} if counts[ORPHAN] else {})
        files = got["inputs"]["i"]["files"]
        assert [(f["file_key"], f["path"], f["offset"]) for f in files] == [
            (k, *self.files[k]) for k in sorted(self.files)]

    # -- a locked spool -----------------------------------------------------------------------------

    @rule(args=st.sampled_from([("dlq", "purge", "--yes"), ("dlq", "replay", "--all"),
                                ("dlq", "replay", "--output", "es", "--all"),
                                ("cursor", "rewind", "es", "--seq", "0")]))
    def while_the_agent_writes(self, args: tuple[str, ...]) -> None:
        """Another process holds the write lock past the busy timeout: a clear error, nothing
        changed (the invariant checks the spool against the unchanged model)."""
        holder = sqlite3.connect(self.spool.path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            r = self.run(*args)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        self.error(r, 1, "is locked by another process", "nothing was changed")


CliMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    database=None,  # nothing written into the repository
    # No shrinking: every step runs a command (~20 ms), so shrinking a failure takes many minutes;
    # the printed steps reproduce it, and each defect found is pinned by a small test below.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestCliStateMachine = CliMachine.TestCase


# -- defects found by the machine (and by corrupting spools), reproduced deterministically -----------


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[tuple[str, Spool]]:
    """The machine's agent.toml and a spool with three events, cursors for es and the removed output."""
    cfg = write_config(tmp_path)
    spool = Spool(str(tmp_path / "state" / "spool.db"), offload=False)
    spool.append(IngestBatch("i", [EncodedEvent(uuid.UUID(int=n).bytes, 1_000 * n, orjson.dumps({"n": n}))
                                   for n in (1, 2, 3)]))
    for name in ("es", ORPHAN):
        spool.ensure_cursor(name)
    yield cfg, spool
    spool.close()


def terminal(cfg: str, *args: str) -> Result:
    """A command as a terminal gets it: click strips no escape sequence (``color=True``)."""
    return CliRunner().invoke(cli, [*args, "-c", cfg], color=True)


INJECTION = "bad value \x1b]0;owned\x07\x1b[2J\nERROR splunk: all good \u202edeifirev\x9b6n"


def test_a_dlq_reason_cannot_break_lines_or_drive_the_terminal(installed):
    """A reason holds words the agent did not choose: `encode failed: ValueError: <the event's value>`,
    `spool row is not a valid event: KeyError: <a key>` (outputs/render.py). `dlq list` printed it as
    it is: its newline forged a line of its own, its OSC and CSI sequences set the terminal's title
    and cleared the screen, and U+202E reversed what followed."""
    cfg, spool = installed
    spool.dlq_add("es", spool.read_after(0, 1), f"encode failed: ValueError: {INJECTION}")
    r = terminal(cfg, "dlq", "list")
    assert r.exit_code == 0, r.output
    lines = r.output.split("\n")[:-1]
    assert len(lines) == 1, lines  # one line per entry
    assert lines[0].startswith("#1  ") and not RAW_CONTROL.search(lines[0]), lines
    assert orjson.loads(terminal(cfg, "dlq", "list", "--json").output)[0]["reason"].endswith(INJECTION)


def test_status_shows_reasons_and_file_names_on_their_own_lines_without_control_characters(installed):
    """`status` prints an output's last error and its DLQ's last reason, and each tailed file's path:
    a file name may hold a newline or an escape sequence too (whoever may create files where the
    input's glob looks)."""
    cfg, spool = installed
    spool.dlq_add("es", spool.read_after(0, 1), INJECTION)
    spool.append(IngestBatch("i", [], [InputOffset("k", "/var/log/hushd/\x1b[8m\nx.jsonl", 7)]))
    r = terminal(cfg, "status")
    assert r.exit_code == 1, r.output  # stopped
    # 8 fixed lines, one file, 3 outputs, the DLQ note under es, the removed output's cursor
    assert r.output.count("\n") == 8 + 1 + 3 + 1 + 1, r.output
    assert not RAW_CONTROL.search(r.output.replace("\n", "")), r.output


def test_quarantine_list_shows_a_hostile_source_on_one_line(installed):
    """The same for `quarantine list`: the source is the tailed file's path."""
    from spool.types import QuarantineRecord

    cfg, spool = installed
    record = QuarantineRecord("/in/\x1b[2J\nfake.jsonl", 3, "bad \x1b[31m", b"x")
    spool.append(IngestBatch("i", [], [], [record]))
    r = terminal(cfg, "quarantine", "list")
    assert r.exit_code == 0, r.output
    lines = r.output.split("\n")[:-1]
    assert len(lines) == 1 and not RAW_CONTROL.search(lines[0]), lines


COMMANDS = [("status",), ("dlq", "list"), ("dlq", "show", "1"), ("cursor", "show"), ("dlq", "purge", "--yes"),
            ("dlq", "replay", "--all"), ("cursor", "rewind", "es", "--count", "1")]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_spool_whose_schema_sqlite_finds_malformed_is_a_clear_error(installed, args):
    """One corrupt byte in the schema's text: SQLite refuses the file ("malformed database schema
    (cursors) - near "DEF\\xefULT": syntax error"), but its message quotes that byte, CPython's
    sqlite3 cannot decode it and raises UnicodeDecodeError instead of the DatabaseError: every
    command ended with that traceback, not "is not a usable spool"."""
    cfg, spool = installed
    spool.close()
    db = Path(spool.path)
    for side in ("-wal", "-shm"):
        Path(str(db) + side).unlink(missing_ok=True)
    data = bytearray(db.read_bytes())
    at = data.find(b"DEFAULT")
    assert at > 0
    data[at + 3] = 0xEF
    db.write_bytes(bytes(data))
    r = CliRunner().invoke(cli, [*args, "-c", cfg])
    assert isinstance(r.exception, SystemExit) and r.exit_code == 1, repr(r.exception)
    assert r.output.startswith("Error: ") and r.output.count("\n") == 1, r.output
    assert "spool.db" in r.output and "malformed database schema" in r.output, r.output


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_missing_spool_is_a_clear_error_and_status_says_stopped(tmp_path, args):
    """Before the agent ever ran: `status` answers (stopped, exit 1); the others name the missing
    spool in one line and create nothing."""
    cfg = write_config(tmp_path)
    r = CliRunner().invoke(cli, [*args, "-c", cfg])
    assert isinstance(r.exception, SystemExit) and r.exit_code == 1, repr(r.exception)
    if args == ("status",):
        assert r.output.startswith("clawd-agent: not running   health: stopped\n"), r.output
        assert "does not exist yet" in r.output
    else:
        assert r.output == f"Error: spool {tmp_path}/state/spool.db does not exist (has the agent run?)\n"
    assert not (tmp_path / "state" / "spool.db").exists()
