"""The README's first command: the agent's main job on an embedded default, no external service."""

from __future__ import annotations

import shutil
import time
from importlib import resources
from pathlib import Path

import click

DEMO_TIMEOUT_S = 60


def run_demo(state_dir: Path) -> int:
    from agent.config import parse_config
    from agent.status import collect_status, render_status
    from agent.supervisor import Supervisor

    state_dir = state_dir.resolve()
    if state_dir.exists():
        shutil.rmtree(state_dir)
    (state_dir / "input").mkdir(parents=True)
    sample = resources.files("agent") / "data" / "sample-audit-forward.jsonl"
    target = state_dir / "input" / "audit.jsonl"
    target.write_bytes(sample.read_bytes())
    text = (resources.files("agent") / "data" / "demo.toml").read_text().replace("{dir}", str(state_dir))
    config_path = state_dir / "agent.toml"
    config_path.write_text(text)
    cfg = parse_config(text, str(config_path))
    from agent.logs import setup_logging

    setup_logging(cfg.agent.log_level, cfg.agent.log_format)
    n_lines = sum(1 for line in target.read_bytes().splitlines() if line.strip())
    click.echo(f"demo: shipping {n_lines} real hushd audit events from {target}")
    sup = Supervisor(cfg)
    sup.start()
    deadline = time.monotonic() + DEMO_TIMEOUT_S
    import gevent

    while time.monotonic() < deadline:
        if sup.spool.last_seq() >= n_lines and sup.caught_up():
            break
        gevent.sleep(0.05)
    ok = sup.spool.last_seq() >= n_lines and sup.caught_up()
    for name, out in cfg.outputs.items():
        path = Path(out.path)  # type: ignore[attr-defined]
        count = len(path.read_bytes().splitlines()) if path.exists() else 0
        click.echo(f"demo: output {name!r} wrote {count} events to {path}")
    sup.record_state()  # what the heartbeat would record next
    click.echo("")
    click.echo(f"$ clawd-agent status -c {config_path}")
    click.echo(render_status(collect_status(cfg)), nl=False)
    sup.shutdown()
    if not ok:
        click.echo("demo: FAILED: not every event was delivered in time", err=True)
        return 1
    return 0
