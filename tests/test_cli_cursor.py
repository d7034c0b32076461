"""`clawd-agent cursor rewind` against a real spool (the agent is not running): what it does to the
cursor, and that what it prints says so (a lagging output is not moved forward; --seq may skip)."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from click.testing import CliRunner

from agent.cli import cli
from agent.config import load_config
from spool.store import Spool
from tests.cli_spool import spool_with_events


@pytest.fixture
def setup(tmp_path):
    # seq 1..10, event time 1000..1009 s (1970-01-01T00:16:40Z..)
    cfg, spool = spool_with_events(tmp_path, ["es"], (1_000_000 + 1_000 * i for i in range(10)))
    spool.ensure_cursor("es")
    spool.commit_cursor("es", 2, 0)  # lagging: 3..10 not delivered yet
    yield cfg, spool
    spool.close()


def rewind(config: str, *args: str) -> str:
    result = CliRunner().invoke(cli, ["cursor", "rewind", "es", *args, "-c", config])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def test_rewind_since_on_a_lagging_output_keeps_its_backlog_and_says_so(setup):
    cfg, spool = setup
    said = rewind(cfg, "--since", "1970-01-01T00:16:45Z")  # from seq 6 on
    assert spool.get_cursor("es").seq == 2
    assert said == ("es: cursor stays at 2 (generation 1): it is already at or before the requested "
                    "point, so the events from there on are still to be delivered; none is skipped")


def test_rewind_since_later_than_every_event_does_not_skip_the_backlog(setup):
    cfg, spool = setup
    said = rewind(cfg, "--since", "1h")  # event times are in 1970: nothing is that recent
    assert spool.get_cursor("es").seq == 2 and said.startswith("es: cursor stays at 2 ")


def test_rewind_event_id_ahead_of_the_cursor_does_not_skip_the_backlog(setup):
    cfg, spool = setup
    said = rewind(cfg, "--event-id", str(uuid.UUID(int=8)))  # seq 8
    assert spool.get_cursor("es").seq == 2 and said.startswith("es: cursor stays at 2 ")


def test_rewind_back_counts_the_events_sent_again(setup):
    cfg, spool = setup
    spool.commit_cursor("es", 8, 0)
    said = rewind(cfg, "--event-id", str(uuid.UUID(int=5)))  # seq 5
    assert spool.get_cursor("es").seq == 4
    assert said == "es: cursor 8 -> 4 (generation 1); 4 events or fewer will be delivered again"


def test_an_explicit_seq_may_skip_forward_and_names_what_is_skipped(setup):
    cfg, spool = setup
    said = rewind(cfg, "--seq", "9")
    assert spool.get_cursor("es").seq == 9
    assert said == ("es: cursor 2 -> 9 (generation 1): moved FORWARD; the 7 events seq 3..9 will "
                    "not be delivered to this output")


def test_the_summary_compares_with_the_cursor_the_rewind_moved_not_a_stale_read(setup, monkeypatch):
    """The running drain commits between the CLI's start and its rewind: the summary must describe
    the move the rewind made (9 -> 8), not compare with the cursor as it was before (2 -> 8, "FORWARD,
    will not be delivered", which would send the operator after events that are not lost)."""
    cfg, spool = setup
    real_rewind = Spool.rewind

    def drain_commits_first(self, output, **kwargs):
        assert spool.commit_cursor("es", 9, 0)  # the agent's connection, just before the rewind's
        return real_rewind(self, output, **kwargs)

    monkeypatch.setattr(Spool, "rewind", drain_commits_first)
    said = rewind(cfg, "--count", "1")
    assert spool.get_cursor("es").seq == 8
    assert said == "es: cursor 9 -> 8 (generation 1); 1 events or fewer will be delivered again"


@pytest.mark.parametrize(("args", "option"), [(["--since", "yesterday"], "'--since'"),
                                              (["--event-id", "not-a-uuid"], "'--event-id'")])
def test_a_bad_since_or_event_id_names_the_option(setup, args, option):
    cfg, spool = setup
    r = CliRunner().invoke(cli, ["cursor", "rewind", "es", *args, "-c", cfg])
    assert r.exit_code == 2 and f"Invalid value for {option}:" in r.output, r.output
    assert spool.get_cursor("es").generation == 0  # nothing was rewound


def delete(config: str, output: str):
    return CliRunner().invoke(cli, ["cursor", "delete", output, "-c", config])


def test_delete_removes_the_cursor_of_an_output_no_longer_configured(setup):
    cfg, spool = setup
    spool.ensure_cursor("old")  # [outputs.old] was removed from the config
    spool.commit_cursor("old", 4, 0)
    spool.dlq_add("old", spool.read_after(0, 1), "HTTP 400")
    r = delete(cfg, "old")
    assert r.exit_code == 0, r.output
    assert spool.get_cursor("old") is None and spool.get_cursor("es") is not None
    assert r.output.splitlines() == [
        "old: cursor deleted (it was at seq 4, generation 0); its lag is no longer exported",
        "note: its DLQ entries stay; `clawd-agent dlq purge --output old` removes them"]
    assert "old" not in CliRunner().invoke(cli, ["cursor", "show", "-c", cfg]).output
    r = delete(cfg, "old")
    assert r.exit_code == 1 and "no cursor for output 'old' (known: es)" in r.output


@pytest.mark.parametrize("enabled", [True, False])
def test_delete_refuses_a_configured_output_enabled_or_not(setup, tmp_path, enabled):
    cfg, spool = setup
    if not enabled:
        toml = tmp_path / "agent.toml"
        toml.write_text(toml.read_text().replace('type = "stdout"\n', 'type = "stdout"\nenabled = false\n'))
    assert load_config(cfg).outputs["es"].enabled is enabled
    r = delete(cfg, "es")
    assert r.exit_code == 1, r.output
    assert "output 'es' is configured" in r.output and "remove [outputs.es] first" in r.output
    assert spool.get_cursor("es") == (2, 0)


def test_delete_refuses_an_output_the_running_agent_still_delivers_to(setup):
    """The agent reads its config only at start: one started before [outputs.old] was removed still
    drains it, and its drain would recreate the deleted cursor from start_at."""

    def agent_started(ago_ms: int) -> None:
        now = int(time.time() * 1000)
        spool.set_agent_state(pid=os.getpid(), started_ms=now - ago_ms, heartbeat_ms=now)  # running

    cfg, spool = setup
    spool.ensure_cursor("old")
    agent_started(ago_ms=1_000)
    spool.record_output_state("old", delivered=1)  # this agent's heartbeat: it drains "old"
    r = delete(cfg, "old")
    assert r.exit_code == 1 and "the running agent still delivers to 'old'" in r.output, r.output
    assert spool.get_cursor("old") is not None
    recorded = spool.read_output_states()["old"].updated_ms
    now = int(time.time() * 1000)
    spool.set_agent_state(pid=os.getpid(), started_ms=recorded + 1, heartbeat_ms=now)  # restarted
    # ("old" was recorded by the agent before only)
    r = delete(cfg, "old")
    assert r.exit_code == 0 and spool.get_cursor("old") is None, r.output
