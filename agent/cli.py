"""The `clawd-agent` command line: run, status, cursor, quarantine, dlq, check-config, demo.

Every read command calls the same spool functions the running agent and its metrics use, and works
whether the agent runs or not (SQLite WAL lets a second process read and move cursors safely).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import orjson

from agent.config import DEFAULT_CONFIG_PATH, AgentConfig, load_config
from agent.config_loader import ConfigError

#: SQLite's largest integer: a bigger id, count, seq or time cannot be looked up (the driver raises
#: OverflowError), so it is a usage error.
SQLITE_INT_MAX = 2**63 - 1

CONFIG_OPTION = click.option(
    "-c", "--config", "config_path", envvar="CLAWD_AGENT_CONFIG", default=DEFAULT_CONFIG_PATH,
    show_default=True, type=click.Path(dir_okay=False), help="agent.toml to use ($CLAWD_AGENT_CONFIG).")


def _load(config_path: str) -> AgentConfig:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _open_spool(cfg: AgentConfig, readonly: bool = False) -> Any:
    from spool.store import Spool

    if not os.path.exists(cfg.spool_path):
        raise click.ClickException(f"spool {cfg.spool_path} does not exist (has the agent run?)")
    if readonly:
        return Spool.open_readonly(cfg.spool_path)
    return Spool(cfg.spool_path, durability=cfg.spool.durability, max_bytes=cfg.spool.max_bytes or None,
                 on_full=cfg.spool.on_full)


@contextmanager
def _spool(cfg: AgentConfig, readonly: bool = False) -> Iterator[Any]:
    """The spool for one command, closed after it, with its errors made clear (``_spool_errors``)."""
    with _spool_errors(cfg.spool_path):
        spool = _open_spool(cfg, readonly)
        try:
            yield spool
        finally:
            spool.close()


@contextmanager
def _spool_errors(path: str) -> Iterator[None]:
    """A spool the command cannot use is the operator's problem, not a bug: a file that is no spool
    (or of a newer agent), one we may not write, or one whose write lock another process (the running
    agent, while it writes) held past the busy timeout ends the command with an error, not a traceback.
    Each command writes in one transaction, so a refused one changed nothing."""
    from spool.store import is_locked
    from spool.types import SpoolError

    try:
        yield
    except SpoolError as exc:
        raise click.ClickException(str(exc)) from None
    except sqlite3.OperationalError as exc:
        if not is_locked(exc):
            raise click.ClickException(f"cannot use the spool {path}: {exc}") from None
        raise click.ClickException(f"the spool {path} is locked by another process (the running agent "
                                   "is writing); nothing was changed, try again") from None
    except sqlite3.ProgrammingError:  # a DatabaseError too, but our misuse of the API: a bug
        raise
    except sqlite3.DatabaseError as exc:
        raise click.ClickException(f"{path} is not a usable spool: {exc}") from None
    except UnicodeDecodeError as exc:
        # SQLite refused a corrupt schema ("malformed database schema ...") in a message quoting the
        # corrupt bytes, which CPython's sqlite3 cannot decode: the DatabaseError arrives as this.
        # (The spool decodes nothing itself: a column it cannot decode is an OperationalError.)
        detail = exc.object.decode("utf-8", "backslashreplace") if isinstance(exc.object, bytes) else exc
        raise click.ClickException(f"{path} is not a usable spool: {detail}") from None
    except OverflowError:  # only the driver binds our numbers: an id, --limit, --count or --seq
        raise click.BadParameter(f"a number above {SQLITE_INT_MAX}, the largest the spool holds") from None


def _echo_json(obj: Any) -> None:
    click.echo(orjson.dumps(obj, option=orjson.OPT_INDENT_2, default=str).decode())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="clawd-agent")
def cli() -> None:
    """Ship Clawdstrike security telemetry from this host to the SOC."""


@cli.command()
@CONFIG_OPTION
def run(config_path: str) -> None:
    """Run the agent in the foreground until SIGTERM or SIGINT.

    Example: clawd-agent run -c /etc/clawd-agent/agent.toml
    """
    from agent.logs import setup_logging
    from agent.malloc_tuning import pin_arena_max, pin_mmap_threshold
    from agent.supervisor import Supervisor

    cfg = _load(config_path)
    setup_logging(cfg.agent.log_level, cfg.agent.log_format)
    pin_mmap_threshold()
    pin_arena_max()
    sup = Supervisor(cfg)
    sys.exit(sup.run_forever())


@cli.command()
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(config_path: str, as_json: bool) -> None:
    """Inputs, outputs (cursor, lag, last success and error, rate, DLQ), spool size and health.

    rate/s is an output's delivered events per second over the last 60 s, as of the agent's last
    heartbeat (0 when it is not running). dlq is the entries stored now, with the last reason;
    entries of outputs no longer configured are listed too (orphan_dlq in --json) until purged.

    Works whether the agent runs or not. Exit code 0 when healthy, 1 when degraded, failing or stopped.

    Example: clawd-agent status --json
    """
    from agent.status import collect_status, render_status

    cfg = _load(config_path)
    with _spool_errors(cfg.spool_path):
        st = collect_status(cfg)
    if as_json:
        _echo_json(st)
    else:
        click.echo(render_status(st), nl=False)
    sys.exit(0 if st["health"] == "ok" else 1)


@cli.command("check-config")
@CONFIG_OPTION
def check_config(config_path: str) -> None:
    """Validate agent.toml: unknown keys, wrong types, unset ${ENV} and unreadable file: secrets.

    Example: clawd-agent check-config -c ./agent.toml
    """
    cfg = _load(config_path)
    click.echo(f"{config_path}: ok ({len(cfg.inputs)} inputs: {', '.join(cfg.inputs)}; "
               f"{len(cfg.outputs)} outputs: {', '.join(cfg.outputs)}; spool {cfg.spool_path})")


# -- cursors ---------------------------------------------------------------------------------------
@cli.group()
def cursor() -> None:
    """Show, rewind (replay) or delete output cursors."""


@cursor.command("show")
@CONFIG_OPTION
@click.argument("output", required=False)
@click.option("--json", "as_json", is_flag=True)
def cursor_show(config_path: str, output: str | None, as_json: bool) -> None:
    """Each output's cursor, generation and lag.

    Example: clawd-agent cursor show archive
    """
    cfg = _load(config_path)
    with _spool(cfg, readonly=True) as spool:
        cursors = spool.stats().get("cursors", {})
    if output is not None:
        if output not in cursors:
            raise click.ClickException(f"no cursor for output {output!r} (known: {', '.join(cursors)})")
        cursors = {output: cursors[output]}
    if as_json:
        _echo_json(cursors)
        return
    for name, c in cursors.items():
        state = "" if c.get("enabled", True) else " (disabled)"
        click.echo(f"{name}{state}: seq {c['seq']}  generation {c['generation']}  "
                   f"lag {c.get('lag_events', 0)} events / {c.get('lag_seconds', 0):.1f} s")


def _parse_since(value: str) -> int:
    """An RFC 3339 time, or an age such as 30m, 2h, 1d; returns epoch ms."""
    from agent.config_types import Duration

    try:
        ms = (time.time() - Duration.parse(value)) * 1000
    except ValueError:
        pass
    else:
        if ms < -SQLITE_INT_MAX:
            raise click.BadParameter(f"{value!r} is too long ago")
        return int(ms)
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"expected an RFC 3339 time or an age like 2h, got {value!r}") from None
    if dt.tzinfo is None:
        raise click.BadParameter("the time needs a timezone, e.g. 2026-11-26T08:00:00Z")
    return int(dt.timestamp() * 1000)


def _time_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    """``--since``/``--older-than`` as epoch ms, parsed by click so an error names the option."""
    return None if value is None else _parse_since(value)


def _event_id_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> bytes | None:
    """``--event-id`` as the spool's 16 bytes, parsed by click so an error names the option."""
    return None if value is None else _event_id_bytes(value)


@cursor.command("rewind")
@CONFIG_OPTION
@click.argument("output")
@click.option("--since", "since_ms", callback=_time_option,
              help="Replay events whose time is at or after this (RFC 3339, or an age: 2h).")
@click.option("--event-id", callback=_event_id_option, help="Replay from this event (inclusive).")
@click.option("--count", type=click.IntRange(min=1),
              help="Move back over the last N events in the spool up to the cursor (events this "
                   "output's filter or rules skip count too, so fewer may be re-sent).")
@click.option("--seq", type=click.IntRange(min=0), help="Set the cursor to this sequence number.")
def cursor_rewind(config_path: str, output: str, since_ms: int | None, event_id: bytes | None,
                  count: int | None, seq: int | None) -> None:
    """Move an output's cursor back so its events are delivered again.

    Safe while the agent runs: the running output notices and re-sends from the new position.
    --since, --event-id and --count never move the cursor forward: an output still behind that
    point keeps its position (and its backlog). Only --seq can skip forward.

    Example: clawd-agent cursor rewind splunk --since 2026-11-26T08:00:00Z
    """
    chosen = {k: v for k, v in (("since_ms", since_ms), ("event_id", event_id), ("count", count),
                                ("seq", seq)) if v is not None}
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --since, --event-id, --count, --seq")
    cfg = _load(config_path)
    with _spool(cfg) as spool:  # a RewindError (unknown output, pruned target) is a clear error too
        # both from the rewind's transaction: a drain committing meanwhile cannot skew the summary
        before, after = spool.rewind(output, **chosen)
    click.echo(_rewind_summary(output, before.seq, after.seq, after.generation))


def _rewind_summary(output: str, before: int, after: int, generation: int) -> str:
    """What a rewind did, in words: only ``--seq`` moves a cursor forward (skipping), and an output
    already behind the requested point is left where it is, which the operator should not mistake
    for "nothing happens"."""
    head = f"{output}: cursor {before} -> {after} (generation {generation})"
    if after < before:
        return f"{head}; {before - after} events or fewer will be delivered again"
    if after > before:
        return (f"{head}: moved FORWARD; the {after - before} events seq {before + 1}..{after} "
                "will not be delivered to this output")
    return (f"{output}: cursor stays at {before} (generation {generation}): it is already at or "
            "before the requested point, so the events from there on are still to be delivered; "
            "none is skipped")


def _event_id_bytes(value: str) -> bytes:
    import uuid

    try:
        return uuid.UUID(value).bytes
    except ValueError:
        raise click.BadParameter(f"expected a canonical event id (UUID), got {value!r}") from None


@cursor.command("delete")
@CONFIG_OPTION
@click.argument("output")
def cursor_delete(config_path: str, output: str) -> None:
    """Delete the cursor of an output removed from the config.

    Such a cursor holds back nothing, but it stays in the spool (and in `cursor show`, status and the
    lag metrics, growing) until deleted. The cursor of a configured output (enabled or not) is
    refused: its drain would recreate it from start_at (sending events again, or skipping them), and a
    disabled one would lose its position. So is one the running agent still delivers to (it started
    while the output was configured, and reads the config only at start): restart it first.

    Example: clawd-agent cursor delete old_splunk
    """
    cfg = _load(config_path)
    if output in cfg.outputs:
        raise click.ClickException(f"output {output!r} is configured in {config_path}: remove "
                                   f"[outputs.{output}] first (its drain would recreate the cursor)")
    with _spool(cfg) as spool:
        cur = spool.get_cursor(output)
        if cur is None:
            known = ", ".join(c.output for c in spool.list_cursors()) or "none"
            raise click.ClickException(f"no cursor for output {output!r} (known: {known})")
        if _drained_by_running_agent(spool, output, cfg):
            raise click.ClickException(f"the running agent still delivers to {output!r} (it started while "
                                       "the output was configured); restart it, then delete the cursor")
        spool.delete_cursor(output)
        dlq_left = output in spool.dlq_outputs()
    click.echo(f"{output}: cursor deleted (it was at seq {cur.seq}, generation {cur.generation}); "
               "its lag is no longer exported")
    if dlq_left:
        click.echo(f"note: its DLQ entries stay; `clawd-agent dlq purge --output {output}` removes them")


def _drained_by_running_agent(spool: Any, output: str, cfg: AgentConfig) -> bool:
    """The running agent may have started with a config that had ``output`` (the file changed since,
    and the agent reads it only at start): its heartbeat records each output it drains."""
    state = spool.get_agent_state()
    if not _agent_running(state, cfg):
        return False
    recorded = spool.read_output_states().get(output)
    return recorded is not None and recorded.updated_ms >= int((state or {}).get("started_ms") or 0)


# -- quarantine ------------------------------------------------------------------------------------
@cli.group()
def quarantine() -> None:
    """Inspect and purge input records that could not be read (with the reason)."""


@quarantine.command("list")
@CONFIG_OPTION
@click.option("--input", "input_name", help="Only this input.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def quarantine_list(config_path: str, input_name: str | None, limit: int, as_json: bool) -> None:
    """Newest quarantined records first.

    Example: clawd-agent quarantine list --input hushd_audit
    """
    from agent.status import printable

    with _spool(_load(config_path), readonly=True) as spool:
        entries = spool.quarantine_list(limit=limit, input=input_name)
    if as_json:
        _echo_json([_q_dict(e) for e in entries])
        return
    if not entries:
        click.echo("quarantine is empty")
    for e in entries:
        where = f"{e.source}@{e.offset}" if e.offset is not None else e.source
        click.echo(printable(f"#{e.id}  {_iso_ms(e.created_ms)}  {e.input}  {where}  {e.reason}"))


@quarantine.command("show")
@CONFIG_OPTION
@click.argument("entry_id", type=int)
def quarantine_show(config_path: str, entry_id: int) -> None:
    """One quarantined record, with its excerpt.

    Example: clawd-agent quarantine show 12
    """
    with _spool(_load(config_path), readonly=True) as spool:
        e = spool.quarantine_get(entry_id)
    if e is None:
        raise click.ClickException(f"no quarantine entry #{entry_id}")
    _echo_json(_q_dict(e))


@quarantine.command("purge")
@CONFIG_OPTION
@click.option("--input", "input_name", help="Only this input.")
@click.option("--older-than", "older_ms", callback=_time_option,
              help="Only entries older than this age (e.g. 7d).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def quarantine_purge(config_path: str, input_name: str | None, older_ms: int | None, yes: bool) -> None:
    """Delete quarantined records.

    Example: clawd-agent quarantine purge --older-than 7d --yes
    """
    if not yes:
        click.confirm("Delete the matching quarantine entries?", abort=True)
    with _spool(_load(config_path)) as spool:
        n = spool.quarantine_purge(older_than_ms=older_ms, input=input_name)
    click.echo(f"purged {n} quarantine entries")


def _q_dict(e: Any) -> dict[str, Any]:
    return {"id": e.id, "input": e.input, "source": e.source, "offset": e.offset, "reason": e.reason,
            "created": _iso_ms(e.created_ms),
            "excerpt": e.excerpt.decode("utf-8", "backslashreplace")}


def _iso_ms(ms: int) -> str:
    from agent.status import _iso

    return _iso(ms) or "-"


# -- DLQ -------------------------------------------------------------------------------------------
@cli.group()
def dlq() -> None:
    """Inspect, replay and purge events an output refused for good (with the reason)."""


@dlq.command("list")
@CONFIG_OPTION
@click.option("--output", "output_name", help="Only this output.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def dlq_list(config_path: str, output_name: str | None, limit: int, as_json: bool) -> None:
    """Oldest entries first, with the reason; "replay requested" marks those waiting for a replay.

    Example: clawd-agent dlq list --output splunk
    """
    from agent.status import printable

    with _spool(_load(config_path), readonly=True) as spool:
        entries = spool.dlq_list(output_name, limit)
        pending = spool.dlq_replay_ids(output_name)
    if as_json:
        _echo_json([_dlq_dict(e, e.id in pending) for e in entries])
        return
    if not entries:
        click.echo("the DLQ is empty")
    for e in entries:
        mark = "  (replay requested)" if e.id in pending else ""
        click.echo(printable(f"#{e.id}  {_iso_ms(e.created_ms)}  {e.output}  seq {e.seq}  "
                             f"attempts {e.attempts}{mark}  {e.reason}"))


@dlq.command("show")
@CONFIG_OPTION
@click.argument("entry_id", type=int)
def dlq_show(config_path: str, entry_id: int) -> None:
    """One DLQ entry: the event, the reason and the destination's (redacted) answer.

    Example: clawd-agent dlq show 42
    """
    with _spool(_load(config_path), readonly=True) as spool:
        e = spool.dlq_get(entry_id)
        pending = spool.dlq_replay_ids(e.output) if e is not None else set()
    if e is None:
        raise click.ClickException(f"no DLQ entry #{entry_id}")
    doc = _dlq_dict(e, e.id in pending)
    try:
        doc["event"] = orjson.loads(e.body)
    except orjson.JSONDecodeError:
        doc["event"] = e.body.decode("utf-8", "backslashreplace")
    _echo_json(doc)


@dlq.command("replay")
@CONFIG_OPTION
@click.option("--output", "output_name", help="Only entries of this output.")
@click.option("--id", "ids", type=int, multiple=True, help="This entry (repeatable).")
@click.option("--all", "all_", is_flag=True, help="Every entry (of --output, if given).")
def dlq_replay(config_path: str, output_name: str | None, ids: tuple[int, ...], all_: bool) -> None:
    """Send DLQ entries again through their output (batching, retries and breaker as usual).

    This only records the request in the spool: the running agent picks it up within a second, or
    the next one to start does. A delivered entry leaves the DLQ; one refused for good again stays,
    with the new reason and one more attempt counted.

    Example: clawd-agent dlq replay --output splunk --all
    """
    if bool(ids) == all_:
        raise click.UsageError("give --id ID (repeatable) or --all")
    cfg = _load(config_path)
    if output_name is not None and output_name not in cfg.outputs:
        raise click.ClickException(f"output {output_name!r} is not configured (configured: "
                                   f"{', '.join(cfg.outputs)}); its entries cannot be replayed")
    with _spool(cfg) as spool:
        if ids:
            found = _entries_of(spool, ids, output_name)
            outputs = {e.output for e in found}
        else:  # the outputs only: loading every entry (bodies included) to learn them costs GBs
            outputs = spool.dlq_outputs()
            outputs = outputs if output_name is None else outputs & {output_name}
        unknown = sorted(o for o in outputs if o not in cfg.outputs)
        if unknown:
            raise click.ClickException(f"entries of outputs no longer configured ({', '.join(unknown)}) "
                                       "cannot be replayed; give --output or purge them")
        n = spool.dlq_request_replay(output_name, list(ids) if ids else None)
        running = _agent_running(spool.get_agent_state(), cfg)
    disabled = sorted(o for o in outputs if not cfg.outputs[o].enabled)
    when = "the running agent sends them now" if running else "they are sent when the agent starts"
    click.echo(f"replay requested for {n} DLQ entries; {when}")
    if disabled:
        click.echo(f"note: disabled outputs replay only once enabled: {', '.join(disabled)}")


@dlq.command("purge")
@CONFIG_OPTION
@click.option("--output", "output_name", help="Only entries of this output.")
@click.option("--older-than", "older_ms", callback=_time_option,
              help="Only entries whose latest failure (stored, or a replay refused again) is "
                   "older than this (an age: 7d, or an RFC 3339 time).")
@click.option("--id", "ids", type=int, multiple=True, help="Only this entry (repeatable).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def dlq_purge(config_path: str, output_name: str | None, older_ms: int | None, ids: tuple[int, ...],
              yes: bool) -> None:
    """Delete DLQ entries for good.

    Example: clawd-agent dlq purge --output splunk --older-than 7d --yes
    """
    with _spool(_load(config_path)) as spool:
        if ids:  # like replay: "purged 0" would hide an --id that is not there or not of --output
            _entries_of(spool, ids, output_name)
        if not yes:
            click.confirm("Delete the matching DLQ entries?", abort=True)
        n = spool.dlq_purge(output=output_name, older_than_ms=older_ms, ids=list(ids) if ids else None)
    click.echo(f"purged {n} DLQ entries")


def _entries_of(spool: Any, ids: tuple[int, ...], output_name: str | None) -> list[Any]:
    """The DLQ entries ``--id`` names; an error for one that is not there or not of ``--output``."""
    found = [e for e in map(spool.dlq_get, ids) if e is not None]
    missing = sorted(set(ids) - {e.id for e in found})
    if missing:
        raise click.ClickException(f"no DLQ entry #{', #'.join(map(str, missing))}")
    _check_entries_of(found, output_name)
    return found


def _check_entries_of(entries: list[Any], output: str | None) -> None:
    """``--id`` with ``--output``: an entry of another output would be skipped without a word (and
    "replay requested for 0 DLQ entries" read as done), so name the mismatch instead."""
    other = [e for e in entries if output is not None and e.output != output]
    if other:
        raise click.ClickException("; ".join(f"DLQ entry #{e.id} belongs to output {e.output!r}, not "
                                             f"{output!r}" for e in other))


def _dlq_dict(e: Any, replay_requested: bool) -> dict[str, Any]:
    import uuid

    event_id = str(uuid.UUID(bytes=e.event_id)) if len(e.event_id) == 16 else e.event_id.hex()
    return {"id": e.id, "output": e.output, "seq": e.seq, "event_id": event_id, "reason": e.reason,
            "attempts": e.attempts, "created": _iso_ms(e.created_ms), "replay_requested": replay_requested,
            "response_excerpt": e.response_excerpt.decode("utf-8", "backslashreplace")}


def _agent_running(agent_state: dict[str, int] | None, cfg: AgentConfig) -> bool:
    """The answer `status` gives (pid alive and heartbeat fresh), so the commands never disagree."""
    from agent.liveness import agent_running

    return agent_running(agent_state, cfg.agent.heartbeat_interval)


# -- transform -------------------------------------------------------------------------------------
@cli.command()
@click.option("--to", "to_format", type=click.Choice(["canonical", "ecs", "ocsf", "cef"]),
              help="Format to render (default: the --output's format, else canonical).")
@click.option("--output", "output_name", metavar="NAME",
              help="Render exactly as [outputs.NAME] would: its format, field overrides, raw copy, "
                   "redaction, and its filter and routing (events it would not deliver are skipped).")
@click.option("-c", "--config", "config_path", envvar="CLAWD_AGENT_CONFIG",
              type=click.Path(dir_okay=False),
              help="agent.toml whose [agent], [privacy] and [enrichment] apply ($CLAWD_AGENT_CONFIG); "
                   "without it the built-in defaults do (secrets masked, MITRE table).")
@click.argument("source", default="-", type=click.File("rb"))
def transform(to_format: str | None, output_name: str | None, config_path: str | None, source: Any) -> None:
    """Print the bytes an output would send for each record of SOURCE (a file, or - for stdin).

    SOURCE holds one Clawdstrike record per line, in any shape the agent reads (hushd audit events,
    SecurityEvent 1.0.0, certification webhooks, adapter and OpenClaw audit lines). Each is mapped as the
    agent maps it, including [privacy] redaction and [enrichment], then rendered; one output per line.
    A line that cannot be mapped is reported on stderr with its number; the others are still printed and
    the exit code is 1. Transport envelopes (HEC, bulk action lines, syslog framing) are not added.

    Example: clawd-agent transform --to ecs -c /etc/clawd-agent/agent.toml /var/log/hushd/audit.jsonl
    """
    import dataclasses

    from agent.event import encode_event
    from agent.mapping import MappingContext, MappingError, parse_line
    from transforms.config import EnrichmentConfig, PrivacyConfig, TransformConfig
    from transforms.pipeline import build_pipeline, compile_ingest

    cfg = _load(config_path) if config_path else None
    selector = None
    if output_name is not None:
        if cfg is None:
            raise click.UsageError("--output needs the agent.toml that defines it (-c/--config)")
        if output_name not in cfg.outputs:
            raise click.ClickException(f"no [outputs.{output_name}] in {config_path} "
                                       f"(outputs: {', '.join(cfg.outputs)})")
        from outputs.routing import NOT_HERE, compile_selector

        tcfg = cfg.outputs[output_name].transform_config()
        selector = compile_selector(output_name, cfg.outputs)
        if to_format is not None and to_format != tcfg.format:
            tcfg = dataclasses.replace(tcfg, format=to_format)
    else:
        tcfg = TransformConfig(format=to_format or "canonical")
    if cfg is not None:
        context = cfg.mapping_context()
    else:
        context = MappingContext(postprocess=compile_ingest(PrivacyConfig(), EnrichmentConfig()))
    try:
        pipeline = build_pipeline(tcfg)
    except (ValueError, ImportError) as exc:
        raise click.ClickException(f"cannot render {tcfg.format}: {exc}") from None
    out = sys.stdout.buffer
    failed = skipped = 0
    for number, line in enumerate(source, start=1):
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        try:
            event = parse_line(line, context=context)
        except MappingError as exc:
            failed += 1
            click.echo(f"line {number}: {exc.reason}", err=True)
            continue
        if selector is not None and selector(event) is NOT_HERE:
            skipped += 1
            continue
        try:
            data = pipeline.render(event, encode_event(event))
        except Exception as exc:  # a transform bug: name the line, keep going
            failed += 1
            click.echo(f"line {number}: cannot render as {tcfg.format}: {type(exc).__name__}: {exc}",
                       err=True)
            continue
        out.write(data + b"\n")
    out.flush()
    if skipped:
        click.echo(f"{skipped} record(s) not printed: [outputs.{output_name}] filter/routes would not "
                   "deliver them", err=True)
    if failed:
        sys.exit(1)


# -- demo ------------------------------------------------------------------------------------------
@cli.command()
@click.option("--dir", "state_dir", default="demo-state", show_default=True, type=click.Path(file_okay=False),
              help="Where the demo keeps its config, spool and output files (recreated each run).")
def demo(state_dir: str) -> None:
    """Ship the bundled sample of real hushd audit events through the spool to local outputs.

    No external service is needed. Shows `clawd-agent status` at the end.

    Example: clawd-agent demo
    """
    from agent.demo import run_demo
    from agent.malloc_tuning import pin_arena_max, pin_mmap_threshold

    pin_mmap_threshold()
    pin_arena_max()
    sys.exit(run_demo(Path(state_dir)))


def main() -> None:
    cli()
