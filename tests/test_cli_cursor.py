"""`clawd-agent cursor rewind` against a real spool (the agent is not running): what it does to the
cursor, and that what it prints says so (a lagging output is not moved forward; --seq may skip)."""

from __future__ import annotations

import uuid

import pytest
from click.testing import CliRunner

from agent.cli import cli
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
