"""`clawd-agent dlq list|show|replay|purge` against a real spool (the agent is not running), and the
DLQ count and last reason in `status`."""

from __future__ import annotations

import uuid

import orjson
import pytest
from click.testing import CliRunner

from agent.cli import cli
from spool.store import Spool
from tests.cli_spool import spool_with_events


@pytest.fixture
def setup(tmp_path):
    cfg, spool = spool_with_events(tmp_path, ["es", "splunk"], range(1_000, 1_005))
    rows = spool.read_after(0, 5)
    spool.dlq_add("es", rows[:3], "HTTP 400 mapper_parsing_exception", b'{"error":"bad field"}', attempts=2)
    spool.dlq_add("splunk", rows[3:], "HEC 6 invalid data format")
    yield cfg, spool
    spool.close()


def run(*args: str, config: str):
    result = CliRunner().invoke(cli, [*args, "-c", config])
    return result


def test_list_and_show(setup):
    cfg, _ = setup
    r = run("dlq", "list", "--output", "es", config=cfg)
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 3 and all("es  seq" in line and "HTTP 400 mapper_parsing_exception" in line
                                   for line in lines)
    r = run("dlq", "list", "--json", config=cfg)
    listed = orjson.loads(r.output)
    assert [e["output"] for e in listed] == ["es", "es", "es", "splunk", "splunk"]
    assert listed[0]["attempts"] == 2 and listed[0]["replay_requested"] is False
    assert listed[0]["event_id"] == str(uuid.UUID(int=1))
    r = run("dlq", "show", str(listed[0]["id"]), config=cfg)
    shown = orjson.loads(r.output)
    assert shown["event"] == {"n": 0} and shown["response_excerpt"] == '{"error":"bad field"}'
    assert run("dlq", "show", "999", config=cfg).exit_code == 1


def test_replay_only_records_the_request(setup):
    cfg, spool = setup
    r = run("dlq", "replay", config=cfg)
    assert r.exit_code == 2 and "--id ID (repeatable) or --all" in r.output
    r = run("dlq", "replay", "--output", "es", "--all", config=cfg)
    assert r.exit_code == 0, r.output
    assert "replay requested for 3 DLQ entries; they are sent when the agent starts" in r.output
    assert spool.dlq_replay_ids("es") == {e.id for e in spool.dlq_list("es")}
    assert spool.dlq_replay_ids("splunk") == set()
    first = spool.dlq_list("splunk")[0].id
    r = run("dlq", "replay", "--id", str(first), config=cfg)
    assert r.exit_code == 0 and spool.dlq_replay_ids("splunk") == {first}
    assert "(replay requested)" in run("dlq", "list", "--output", "splunk", config=cfg).output
    assert "no DLQ entry #777" in run("dlq", "replay", "--id", "777", config=cfg).output
    r = run("dlq", "replay", "--output", "kafka", "--all", config=cfg)
    assert r.exit_code == 1 and "output 'kafka' is not configured" in r.output
    assert len(spool.dlq_list()) == 5  # nothing was sent or deleted by the CLI


def test_purge_by_id_output_and_age(setup):
    cfg, spool = setup
    ids = [e.id for e in spool.dlq_list("es")]
    r = run("dlq", "purge", "--id", str(ids[0]), "--yes", config=cfg)
    assert r.exit_code == 0 and "purged 1 DLQ entries" in r.output
    r = run("dlq", "purge", "--output", "es", "--older-than", "7d", "--yes", config=cfg)
    assert "purged 0 DLQ entries" in r.output  # they are minutes old
    r = run("dlq", "purge", "--output", "es", "--yes", config=cfg)
    assert "purged 2 DLQ entries" in r.output
    assert [e.output for e in spool.dlq_list()] == ["splunk", "splunk"]
    r = CliRunner().invoke(cli, ["dlq", "purge", "-c", cfg], input="n\n")
    assert r.exit_code == 1 and len(spool.dlq_list()) == 2  # asked, and refused


def test_status_shows_dlq_count_and_last_reason(setup):
    cfg, spool = setup
    spool.dlq_request_replay("es")
    st = orjson.loads(run("status", "--json", config=cfg).output)
    es = st["outputs"]["es"]
    assert es["dlq"] == 3 and es["dlq_last_reason"] == "HTTP 400 mapper_parsing_exception"
    assert es["dlq_replay_pending"] == 3
    text = run("status", config=cfg).output
    assert "DLQ 3, 3 waiting for replay, last reason: HTTP 400 mapper_parsing_exception" in text
    assert "DLQ 2, last reason: HEC 6 invalid data format" in text


def test_replay_of_an_id_of_another_output_says_so(setup):
    cfg, spool = setup
    es_id = spool.dlq_list("es")[0].id
    r = run("dlq", "replay", "--output", "splunk", "--id", str(es_id), config=cfg)
    assert r.exit_code == 1, r.output
    assert f"DLQ entry #{es_id} belongs to output 'es', not 'splunk'" in r.output
    assert spool.dlq_replay_ids() == set()


def test_status_shows_the_dlq_of_an_output_no_longer_configured(setup, tmp_path):
    cfg, _ = setup
    text = (tmp_path / "agent.toml").read_text()
    (tmp_path / "agent.toml").write_text(text.replace('[outputs.es]\ntype = "stdout"\n', ""))
    st = orjson.loads(run("status", "--json", config=cfg).output)
    assert "es" not in st["outputs"]
    assert st["orphan_dlq"] == {"es": {"count": 3, "last_reason": "HTTP 400 mapper_parsing_exception"}}
    text = run("status", config=cfg).output
    assert ("DLQ entries of outputs no longer configured: es 3 (last reason: HTTP 400 "
            "mapper_parsing_exception)") in text


def test_status_shows_destination_counters_the_agent_recorded(setup):
    """What only one kind of destination reports (Elasticsearch's failure store) reaches `status`
    under the counter's name, as the heartbeat records it (agent.metrics.output_extra)."""
    from types import SimpleNamespace

    from agent.metrics import output_extra

    cfg, spool = setup
    output = SimpleNamespace(destination_counters=lambda: {"events_failure_store": (
        "help", "data_stream", {"logs-clawdstrike.security-default": 4})})
    drain = mock_drain(output)
    spool.record_output_state("es", extra=output_extra(drain))
    st = orjson.loads(run("status", "--json", config=cfg).output)
    assert st["outputs"]["es"]["destination_counters"] == {
        "events_failure_store": {"logs-clawdstrike.security-default": 4}}
    assert "events_failure_store: logs-clawdstrike.security-default 4" in run("status", config=cfg).output


def mock_drain(output):
    from unittest import mock

    from outputs.stats import OutputStats

    drain = mock.MagicMock()
    drain.stats = OutputStats()
    drain.limiter.current.return_value = (0.0, 0.0)
    drain.breaker.state_name, drain.breaker.reason = "closed", ""
    drain.output = output
    return drain


def test_replay_all_learns_the_outputs_without_loading_the_entries(setup, tmp_path, monkeypatch):
    """Entry bodies can add up to GBs: `replay --all` needs only the outputs that have entries (to
    refuse those no longer configured), and must see all of them however many entries there are."""
    cfg, spool = setup
    assert spool.dlq_outputs() == {"es", "splunk"}

    def no_listing(*_args, **_kwargs):
        raise AssertionError("dlq replay --all loaded the DLQ entries")

    monkeypatch.setattr(Spool, "dlq_list", no_listing)
    r = run("dlq", "replay", "--all", config=cfg)
    assert r.exit_code == 0 and "replay requested for 5 DLQ entries" in r.output, r.output
    toml = tmp_path / "agent.toml"
    toml.write_text(toml.read_text().replace('[outputs.es]\ntype = "stdout"\n', ""))
    r = run("dlq", "replay", "--all", config=cfg)
    assert r.exit_code == 1 and "entries of outputs no longer configured (es)" in r.output, r.output
    r = run("dlq", "replay", "--output", "splunk", "--all", config=cfg)
    assert r.exit_code == 0 and "replay requested for 2 DLQ entries" in r.output, r.output


def test_purge_of_an_id_of_another_output_says_so(setup):
    cfg, spool = setup
    es_id = spool.dlq_list("es")[0].id
    r = run("dlq", "purge", "--output", "splunk", "--id", str(es_id), "--yes", config=cfg)
    assert r.exit_code == 1, r.output
    assert f"DLQ entry #{es_id} belongs to output 'es', not 'splunk'" in r.output
    assert len(spool.dlq_list()) == 5


def test_purge_of_an_id_that_is_not_there_says_so_and_purges_nothing(setup):
    """As replay does: "purged 0" and exit 0 hid a mistyped --id."""
    cfg, spool = setup
    real = spool.dlq_list()[0].id
    r = run("dlq", "purge", "--id", str(real), "--id", "999999", "--yes", config=cfg)
    assert r.exit_code == 1 and "no DLQ entry #999999" in r.output, r.output
    assert len(spool.dlq_list()) == 5


def test_a_bad_older_than_names_the_option(setup):
    cfg, spool = setup
    r = run("dlq", "purge", "--older-than", "last week", "--yes", config=cfg)
    assert r.exit_code == 2 and "Invalid value for '--older-than':" in r.output, r.output
    assert len(spool.dlq_list()) == 5
