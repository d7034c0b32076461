"""What the supervisor records in the spool: the output totals of its heartbeat, and where a new
output's cursor starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from agent.config import load_config
from agent.supervisor import Supervisor
from tests.integration.harness import write_config


def test_recorded_state_counts_each_dlq_event_once(tmp_path: Path) -> None:
    """``Spool.dlq_add`` counts the rows it stores in ``output_state.dlq_total`` in the same transaction;
    the heartbeat's counters must not add the drain's DLQ count a second time."""
    from spool.store import Spool
    from spool.types import SpoolRow

    sup = Supervisor(load_config(write_config(tmp_path)))
    sup.spool = Spool(str(tmp_path / "spool.db"))
    try:
        rows = [SpoolRow(i, bytes(16), 0, b"{}") for i in (1, 2, 3)]
        sup.spool.dlq_add("archive", rows, "HTTP 400: mapper_parsing_exception")
        drain = mock.MagicMock()
        drain.stats.delivered, drain.stats.failed_attempts, drain.stats.dlq = 0, 1, 3
        drain.stats.last_success_ms = drain.stats.last_error_ms = None
        drain.stats.last_error = ""
        sup.drains = {"archive": drain}
        with mock.patch("agent.supervisor.output_extra", return_value={}):
            sup.record_state()
            sup.record_state()  # a second heartbeat adds nothing either
        assert sup.spool.read_output_states()["archive"].dlq_total == 3
    finally:
        sup.spool.close()


def _routed_config(tmp_path: Path, b_start: str) -> Any:
    return load_config(write_config(tmp_path, extra=f"""
[[outputs.archive.routes]]
when = {{ denied_only = true }}
to = "alerts"

[outputs.alerts]
type = "file"
path = "{tmp_path}/out/alerts.jsonl"
start_at = "{b_start}"
"""))


@pytest.mark.parametrize("b_start, expected", [("end", 3), ("beginning", 0)])
def test_a_new_redirect_target_starting_at_the_end_starts_no_later_than_its_sources(
        tmp_path: Path, b_start: str, expected: int) -> None:
    """archive is 7 events behind and redirects its denials to a new alerts output: archive skips
    those (they are alerts' events), so alerts must not start after them."""
    from agent.supervisor import ensure_cursors
    from spool.store import Spool
    from spool.types import EncodedEvent, IngestBatch

    cfg = _routed_config(tmp_path, b_start)
    with Spool(str(tmp_path / "spool.db")) as spool:
        spool.append(IngestBatch("in", [EncodedEvent(i.to_bytes(16, "big"), i, b"{}") for i in range(1, 11)]))
        spool.ensure_cursor("archive")
        spool.commit_cursor("archive", 3, 0)
        ensure_cursors(spool, cfg.outputs)
        assert spool.get_cursor("alerts").seq == expected
        assert spool.get_cursor("archive").seq == 3  # an existing cursor stays where it is


def test_a_start_at_end_output_nobody_redirects_to_starts_at_the_end(tmp_path: Path) -> None:
    from agent.supervisor import ensure_cursors
    from spool.store import Spool
    from spool.types import EncodedEvent, IngestBatch

    cfg = load_config(write_config(tmp_path, output_extra='start_at = "end"'))
    with Spool(str(tmp_path / "spool.db")) as spool:
        spool.append(IngestBatch("in", [EncodedEvent(i.to_bytes(16, "big"), i, b"{}") for i in range(1, 6)]))
        ensure_cursors(spool, cfg.outputs)
        assert spool.get_cursor("archive").seq == 5
