"""`clawd-agent demo` (the README's `make demo`): the bundled sample reaches the two file outputs and
the in-process Splunk HEC and Elasticsearch mocks, every event exactly once, and the summary says so."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.demo import ES_DATA_STREAM, prepare
from tests.shared_paths import VENDOR_SPECS

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = [json.loads(line) for line in
          (resources.files("agent") / "data" / "sample-audit-forward.jsonl").read_bytes().splitlines()
          if line.strip()]
SAMPLE_IDS = {r["id"].lower() for r in SAMPLE}


def test_demo_config_wires_files_and_both_siem_outputs(tmp_path: Path) -> None:
    target, config_path, text = prepare(tmp_path, "http://127.0.0.1:18088", "http://127.0.0.1:19200",
                                        "demo-token")
    assert "{" + "dir}" not in text and "{hec_url}" not in text and "{es_url}" not in text
    assert len(target.read_bytes().splitlines()) == len(SAMPLE)
    assert oct((tmp_path / "hec.token").stat().st_mode & 0o777) == "0o600"
    assert "demo-token" not in text  # the token is referenced as file:, never written into the config
    cfg = parse_config(text, str(config_path))
    assert {n: o.type for n, o in cfg.outputs.items()} == {
        "archive": "file", "denials": "file", "splunk": "splunk_hec", "elastic": "elasticsearch"}
    splunk, elastic = cfg.outputs["splunk"], cfg.outputs["elastic"]
    assert splunk.endpoint == "http://127.0.0.1:18088" and splunk.ack is True
    assert splunk.token.reveal() == "demo-token" and splunk.token.source.startswith("file:")
    assert elastic.hosts == ["http://127.0.0.1:19200"] and elastic.format == "ecs"


def _block(out: str, header: str) -> dict:
    """The indented JSON document printed after ``header``."""
    start = out.index(header) + len(header)
    text = out[start:].lstrip("\n")
    end = re.search(r"^\}$", text, re.M)
    assert end is not None, f"no JSON after {header!r}"
    return json.loads(text[: end.end()])


@pytest.mark.integration
def test_demo_delivers_every_sample_event_to_every_output(tmp_path: Path) -> None:
    state = tmp_path / "demo-state"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "agent", "demo", "--dir", str(state)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, (out[-3000:], proc.stderr[-3000:])
    n = len(SAMPLE)
    assert f"demo: shipping {n} real hushd audit events" in out

    # the file outputs: everything, and the high-severity denials only
    archive = [json.loads(x) for x in (state / "out" / "all-events.jsonl").read_bytes().splitlines()]
    denied = [e for e in archive if e["decision"]["allowed"] is False
              and e["decision"]["severity"] in ("high", "critical")]
    assert {e["event_id"] for e in archive} == SAMPLE_IDS
    assert f"demo: output 'archive' wrote {n} events" in out
    assert 0 < len(denied) < n
    assert f"demo: output 'denials' wrote {len(denied)} events" in out

    # the mocks: every sample event exactly once, acknowledged, spec-clean
    assert f"demo: Splunk HEC mock received {n} events ({n} distinct event ids), acks pending 0" in out
    assert f"demo: Elasticsearch mock stored {n} documents in data stream {ES_DATA_STREAM}" in out
    # The spec is there (../shared/vendor-specs, as in CI): else the demo runs with the check off and
    # "0 violations" would not be printed, so the README path cannot pass unchecked.
    spec = VENDOR_SPECS / "elasticsearch" / "derived" / "bulk.serverless-9.4.openapi3.json"
    assert spec.is_file(), f"{spec} missing: the demo's Elasticsearch spec check would be off"
    assert "checked against Elasticsearch's spec, 0 violations" in out
    assert "spec check off" not in out

    hec = _block(out, "demo: one event as the Splunk HEC mock received it:")
    assert hec["sourcetype"] == "clawdstrike:security_event" and hec["source"] == "clawd-agent"
    assert hec["event"]["event_id"] in SAMPLE_IDS and hec["event"]["decision"]["allowed"] is False
    assert isinstance(hec["time"], int | float) and hec["fields"]["event_type"] == hec["event"]["event_type"]
    es = _block(out, "demo: the same event as the Elasticsearch mock stored it (_id = its event id):")
    assert es["_id"] == hec["event"]["event_id"]
    doc = es["_source"]
    assert doc["event"]["id"] == es["_id"] and doc["event"]["outcome"] == "failure"
    assert doc["ecs"]["version"] and doc["@timestamp"].startswith(hec["event"]["timestamp"][:19])

    # status as printed, and the cursors on disk: every output at the last event, nothing lagging
    assert f"$ clawd-agent status -c {state / 'agent.toml'}" in out
    for name in ("archive", "denials", "splunk", "elastic"):
        assert re.search(rf"^  {name}\s+\S+\s+{n}\s+0\s", out, re.M), f"status line of {name}"
    con = sqlite3.connect(state / "spool.db")
    try:
        cursors = dict(con.execute("SELECT output, seq FROM cursors"))
        dlq = con.execute("SELECT count(*) FROM dlq").fetchone()[0]
    finally:
        con.close()
    assert cursors == {"archive": n, "denials": n, "splunk": n, "elastic": n}
    assert dlq == 0
    assert "FAILED" not in proc.stderr
