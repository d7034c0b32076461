"""Routing and transforms through the real agent: a rule sends denials to another output (bypassing its
filter, in that output's format) and not to the first; `status --json` shows the framework's state."""

from __future__ import annotations

import json

import orjson
import pytest

from tests.integration.harness import (
    Agent,
    audit_line,
    cli,
    complete_lines,
    output_ids,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.integration


def test_a_route_moves_denials_to_another_output_in_its_format(tmp_path):
    extra = f"""
[[outputs.archive.routes]]
when = {{ denied_only = true }}
to = "alerts"

[outputs.alerts]
type = "file"
path = "{tmp_path}/out/alerts.jsonl"
format = "ecs"
batch_max_wait = 0
filter = {{ agents = ["no-agent-has-this-id"] }}
"""
    cfg = write_config(tmp_path, extra=extra)
    n = 30  # audit_line(i) is a blocked, critical event when i % 3 == 0
    (tmp_path / "in" / "audit.jsonl").write_bytes(b"".join(audit_line(i) for i in range(n)))
    agent = Agent(cfg, tmp_path / "agent.log").start()
    try:
        archive, alerts = tmp_path / "out" / "events.jsonl", tmp_path / "out" / "alerts.jsonl"
        wait_for(lambda: len(complete_lines(archive)) == 20 and len(complete_lines(alerts)) == 10, 30,
                 "both outputs to receive their share")
        st = json.loads(cli("status", "--json", config=cfg).stdout)
    finally:
        assert agent.stop() == 0
    docs = [orjson.loads(line) for line in complete_lines(alerts)]
    assert all("@timestamp" in d and d["event"]["kind"] for d in docs)  # ECS documents
    assert len(set(output_ids(archive))) == 20
    assert all(orjson.loads(line)["decision"]["allowed"] is True for line in complete_lines(archive))
    for name in ("archive", "alerts"):
        o = st["outputs"][name]
        assert o["lag_events"] == 0 and o["breaker"] == "closed" and o["dlq"] == 0
    assert st["outputs"]["archive"]["healthy"] is True
