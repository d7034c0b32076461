"""The Prometheus endpoint and /health of a running agent, scraped over loopback."""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest

from tests.integration.harness import Agent, audit_line, wait_for, write_config

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_and_health(tmp_path):
    port = free_port()
    broken = (f'\n[outputs.broken]\ntype = "file"\npath = "{tmp_path}/nodir-file/x"\n'
              'retry_initial = "50ms"\nretry_max = "100ms"\n')
    cfg = write_config(tmp_path, extra=broken)
    text = cfg.read_text().replace("[metrics]\nenabled = false", f'[metrics]\nlisten = "127.0.0.1:{port}"')
    cfg.write_text(text)
    (tmp_path / "nodir-file").write_text("a file where the output expects a directory")
    (tmp_path / "in" / "audit.jsonl").write_bytes(b"".join(audit_line(i) for i in range(50)) + b"garbage\n")
    agent = Agent(cfg, tmp_path / "agent.log").start()
    try:
        def delivered() -> float | None:
            try:
                return sample(scrape(port, "/metrics")[1], "clawd_agent_output_events_delivered_total",
                              output="archive")
            except OSError:
                return None

        wait_for(lambda: delivered() == 50, 30, "50 delivered in metrics")
        # spool gauges are read from the spool at most once a second: wait for the fresh reading
        wait_for(lambda: sample(scrape(port, "/metrics")[1], "clawd_agent_output_lag_events",
                                output="archive") == 0, 10, "spool gauges to catch up")
        _, body = scrape(port, "/metrics")
        assert sample(body, "clawd_agent_input_events_ingested_total", input="audit") == 50
        assert sample(body, "clawd_agent_input_events_quarantined_total", input="audit") == 1
        assert sample(body, "clawd_agent_spool_rows") == 50
        assert sample(body, "clawd_agent_spool_bytes") > 0
        assert sample(body, "clawd_agent_output_lag_events", output="archive") == 0
        assert sample(body, "clawd_agent_output_lag_events", output="broken") == 50
        assert sample(body, "clawd_agent_output_failures_total", output="broken") >= 1
        assert sample(body, "clawd_agent_output_batch_duration_seconds_count", output="archive",
                      result="delivered") >= 1
        code, health = scrape(port, "/health")
        doc = json.loads(health)
        assert code == 200 and doc["status"] == "degraded"
        assert doc["outputs"]["archive"]["healthy"] is True
        assert doc["outputs"]["broken"]["healthy"] is False
        assert doc["outputs"]["broken"]["last_error"].startswith("open failed")
    finally:
        assert agent.stop() == 0
