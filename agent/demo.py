"""The README's first command: the agent's main job on an embedded default, no external service.

The bundled sample of real hushd audit events goes file -> spool -> four outputs: two files, and the
Splunk HEC (indexer acks on) and Elasticsearch (ECS) mocks of ``outputs.mocks``, served in this process
on loopback ephemeral ports. The demo waits until every output delivered every event, then prints what
each destination received and ``clawd-agent status``. Why mocks: the two SIEM outputs are the agent's
real job, and showing them needs no Splunk or Elasticsearch (tests use the same mocks).
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import click

DEMO_TIMEOUT_S = 60
#: Where the elasticsearch output writes by default (data_stream_name of its defaults).
ES_DATA_STREAM = "logs-clawdstrike.security-default"


@dataclass
class DemoMocks:
    """The two SIEM mocks the demo ships to, and the throwaway HEC token they share with the config."""

    hec: Any  # MockServer of a SplunkHecApp
    es: Any  # MockServer of an ElasticsearchMock

    @classmethod
    def start(cls, hec_token: str) -> DemoMocks:
        from outputs.mocks.elasticsearch import ElasticsearchMock
        from outputs.mocks.es_spec import default_spec_path
        from outputs.mocks.server import MockServer
        from outputs.mocks.splunk_hec import HecToken, SplunkHecApp

        hec = MockServer(SplunkHecApp([HecToken(hec_token, use_ack=True)])).start()
        # Check every _bulk exchange against Elasticsearch's own spec when ../shared has it.
        es = MockServer(ElasticsearchMock(check_spec=default_spec_path().exists())).start()
        return cls(hec, es)

    def stop(self) -> None:
        self.hec.stop()
        self.es.stop()

    def hec_events(self) -> list[dict[str, Any]]:
        return list(self.hec.app.events)

    def es_docs(self) -> dict[str, Any]:
        return self.es.app.docs(ES_DATA_STREAM)


def prepare(state_dir: Path, hec_url: str, es_url: str, hec_token: str) -> tuple[Path, Path, str]:
    """The state dir's files: the sample as the tailed file, the HEC token file (0600) and the config
    with the mocks' URLs; returns (input file, config path, config text)."""
    (state_dir / "input").mkdir(parents=True, exist_ok=True)
    token_file = state_dir / "hec.token"
    token_file.write_text(hec_token + "\n")
    token_file.chmod(0o600)
    sample = resources.files("agent") / "data" / "sample-audit-forward.jsonl"
    target = state_dir / "input" / "audit.jsonl"
    target.write_bytes(sample.read_bytes())
    text = ((resources.files("agent") / "data" / "demo.toml").read_text()
            .replace("{dir}", str(state_dir)).replace("{hec_url}", hec_url).replace("{es_url}", es_url))
    config_path = state_dir / "agent.toml"
    config_path.write_text(text)
    return target, config_path, text


def run_demo(state_dir: Path) -> int:
    import gevent

    from agent.config import parse_config
    from agent.logs import setup_logging
    from agent.status import collect_status, render_status
    from agent.supervisor import Supervisor

    state_dir = state_dir.resolve()
    if state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True)
    token = secrets.token_hex(16)  # a fresh throwaway value per run: no credential is embedded
    mocks = DemoMocks.start(token)
    try:
        target, config_path, text = prepare(state_dir, mocks.hec.url, mocks.es.url, token)
        cfg = parse_config(text, str(config_path))
        setup_logging(cfg.agent.log_level, cfg.agent.log_format)
        n_lines = sum(1 for line in target.read_bytes().splitlines() if line.strip())
        click.echo(f"demo: shipping {n_lines} real hushd audit events from {target}")
        click.echo(f"demo: Splunk HEC mock (indexer acks on) at {mocks.hec.url}, Elasticsearch mock at "
                   f"{mocks.es.url} (loopback, in this process)")
        sup = Supervisor(cfg)
        sup.start()
        deadline = time.monotonic() + DEMO_TIMEOUT_S
        while time.monotonic() < deadline:
            if sup.spool.last_seq() >= n_lines and sup.caught_up():
                break
            gevent.sleep(0.05)
        ok = sup.spool.last_seq() >= n_lines and sup.caught_up()
        sup.record_state()  # what the heartbeat would record next
        ok = report(cfg, mocks, n_lines) and ok
        click.echo("")
        click.echo(f"$ clawd-agent status -c {config_path}")
        click.echo(render_status(collect_status(cfg)), nl=False)
        sup.shutdown()
    finally:
        mocks.stop()
    if not ok:
        click.echo("demo: FAILED: not every event was delivered in time", err=True)
        return 1
    return 0


def report(cfg: Any, mocks: DemoMocks, n_lines: int) -> bool:
    """Print what each output delivered; True when both mocks hold every sample event exactly once."""
    for name, out in cfg.outputs.items():
        if out.type == "file":
            path = Path(out.path)
            count = len(path.read_bytes().splitlines()) if path.exists() else 0
            click.echo(f"demo: output {name!r} wrote {count} events to {path}")
    events = mocks.hec_events()
    ids = {e.get("event", {}).get("event_id") for e in events if isinstance(e.get("event"), dict)}
    hec_stats = mocks.hec.app.stats()
    sourcetypes = sorted({str(e.get("sourcetype")) for e in events})
    indexes = sorted({str(e.get("index")) for e in events})
    click.echo(f"demo: Splunk HEC mock received {len(events)} events ({len(ids)} distinct event ids), "
               f"acks pending {hec_stats['acks_pending']}, sourcetype {', '.join(sourcetypes) or '-'}, "
               f"index {', '.join(indexes) or '-'}")
    docs = mocks.es_docs()
    es_stats = mocks.es.app.stats()
    spec = (f"every _bulk request and response checked against Elasticsearch's spec, "
            f"{len(es_stats['spec_violations'])} violations") if es_stats["spec_checked"] else \
        "spec check off (../shared/vendor-specs not found)"
    click.echo(f"demo: Elasticsearch mock stored {len(docs)} documents in data stream {ES_DATA_STREAM} "
               f"({es_stats['bulk_requests']} _bulk requests; {spec})")
    example = next((e for e in events if _is_denied(e.get("event"))), events[0] if events else None)
    if example is not None:
        click.echo("\ndemo: one event as the Splunk HEC mock received it:")
        click.echo(json.dumps(example, indent=2))
    if docs:
        wanted = example.get("event", {}).get("event_id") if example is not None else None
        doc_id = wanted if wanted in docs else next(iter(docs))
        click.echo("\ndemo: the same event as the Elasticsearch mock stored it (_id = its event id):")
        click.echo(json.dumps({"_id": doc_id, "_source": docs[doc_id]}, indent=2))
    return len(events) == n_lines and len(ids) == n_lines and len(docs) == n_lines


def _is_denied(doc: Any) -> bool:
    """A blocked decision (canonical ``decision.allowed`` false)."""
    decision = doc.get("decision") if isinstance(doc, dict) else None
    return isinstance(decision, dict) and decision.get("allowed") is False
