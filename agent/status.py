"""`clawd-agent status`: what the agent is doing, read from the spool, running or not.

The running agent records a heartbeat, its inputs' counters and each output's last success/error in
the spool every few seconds; everything else (cursors, lag, sizes) is read from the spool itself. So
the same command answers while the agent runs, after it stopped, and after it crashed.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from agent.config import AgentConfig
from agent.liveness import agent_running
from agent.metrics import aggregate_health

#: C0/C1 controls, line/paragraph separators and bidi overrides (the set outputs.http.excerpt turns
#: into spaces): what a DLQ reason, a destination's words or a tailed file's name may hold, and a
#: terminal must not get raw.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` for one line of a terminal: each of those characters as its escape (``\\n``,
    ``\\x1b``, ``\\u202e``), so data can neither break the line nor drive the terminal (clear the
    screen, set its title, reorder the text), and the operator still sees that it was there."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def collect_status(config: AgentConfig) -> dict[str, Any]:
    from spool.store import Spool

    path = config.spool_path
    if not os.path.exists(path):
        return {"agent": {"running": False}, "health": "stopped", "spool": {"path": path, "exists": False},
                "inputs": {}, "outputs": {}}
    spool = Spool.open_readonly(path)
    try:
        stats = spool.stats()
        agent_state = spool.get_agent_state() or {}
        spool_inputs = spool.get_input_stats()
        states = spool.read_output_states()
        dlq_info = spool.dlq_counts()
    finally:
        spool.close()
    now_ms = int(time.time() * 1000)
    pid = int(agent_state.get("pid") or 0)
    heartbeat_ms = int(agent_state.get("heartbeat_ms") or 0)
    running = agent_running(agent_state, config.agent.heartbeat_interval, now_ms)
    recorded_inputs = spool_inputs
    offsets_by_input: dict[str, list[dict[str, Any]]] = {}
    for off in stats.get("input_offsets", []):
        offsets_by_input.setdefault(off["input"], []).append(off)

    inputs = {}
    for name, in_cfg in config.inputs.items():
        rec = recorded_inputs.get(name, {})
        entry: dict[str, Any] = {"type": in_cfg.type}
        for key in ("ingested", "quarantined", "duplicates", "errors"):
            if key in rec:
                entry[key] = rec[key]
        entry["quarantined_stored"] = stats.get("quarantine", {}).get(name, 0)
        if in_cfg.type == "file":
            entry["files"] = [_file_lag(o) for o in offsets_by_input.get(name, [])]
        inputs[name] = entry

    outputs = {}
    cursors = stats.get("cursors", {})
    dlq_counts = stats.get("dlq", {})
    for name, out_cfg in config.outputs.items():
        cur = cursors.get(name, {})
        st = states.get(name)
        extra = st.extra if st else {}
        outputs[name] = {
            "type": out_cfg.type,
            "enabled": out_cfg.enabled,
            "cursor": cur.get("seq"),
            "lag_events": cur.get("lag_events", 0),
            "lag_seconds": cur.get("lag_seconds", 0),
            "delivered_total": st.delivered_total if st else 0,
            "rate_eps": extra.get("rate_eps", 0.0) if running else 0.0,
            "last_success": _iso(st.last_success_ms) if st else None,
            "last_error": st.last_error if st else None,
            "last_error_at": _iso(st.last_error_ms) if st else None,
            "healthy": extra.get("healthy", True),
            "dlq": dlq_counts.get(name, 0),
            "dlq_last_reason": dlq_info.get(name, {}).get("last_reason"),
            "dlq_replay_pending": dlq_info.get(name, {}).get("replay_pending", 0),
            "breaker": extra.get("breaker", "closed") if running else None,
            "breaker_reason": (extra.get("breaker_reason") or None) if running else None,
            "health_check": ({"ok": extra.get("health_ok"), "reason": extra.get("health_reason", "")}
                             if running else None),
            "in_flight_batches": extra.get("in_flight_batches", 0) if running else 0,
            # since the (last) agent's start, by label value: Output.destination_counters()
            "destination_counters": extra.get("destination") or {},
            "rate_limit": ({"requests_per_s": extra.get("rate_limit_requests", 0.0),
                            "events_per_s": extra.get("rate_limit_events", 0.0)} if running else None),
        }
    orphans = sorted(set(cursors) - set(config.outputs))
    # Entries of a removed output stay (the DLQ has no retention) and count in clawd_agent_dlq_events:
    # show them too, or the operator never learns they are there to purge.
    orphan_dlq = {name: {"count": d["count"], "last_reason": d["last_reason"]}
                  for name, d in dlq_info.items() if name not in config.outputs}

    health = aggregate_health([o["healthy"] for o in outputs.values() if o["enabled"]]) if running \
        else "stopped"
    return {
        "agent": {"running": running, "pid": pid if running else None,
                  "started": _iso(agent_state.get("started_ms")),
                  "last_heartbeat": _iso(heartbeat_ms or None)},
        "health": health,
        "spool": {
            "path": path, "rows": stats.get("rows", 0), "bytes": stats.get("bytes", 0),
            "max_bytes": stats.get("max_bytes"), "on_full": stats.get("on_full"),
            "durability": stats.get("durability"), "first_seq": stats.get("first_seq"),
            "last_seq": stats.get("last_seq"), "dropped_total": stats.get("dropped_oldest_total", 0),
            "quarantined": stats.get("quarantine_total", 0), "schema_version": stats.get("schema_version"),
        },
        "inputs": inputs,
        "outputs": outputs,
        "orphan_cursors": orphans,
        "orphan_dlq": orphan_dlq,
    }


def _output_notes(o: dict[str, Any]) -> list[str]:
    """The exceptional facts about one output, for the line under it (nothing when all is well)."""
    notes = []
    if o.get("breaker") and o["breaker"] != "closed":
        why = f" ({o['breaker_reason']})" if o.get("breaker_reason") else ""
        notes.append(f"breaker {o['breaker']}{why}")
    hc = o.get("health_check") or {}
    if hc.get("ok") is False:
        notes.append(f"health check failing: {hc.get('reason') or '-'}")
    rl = o.get("rate_limit") or {}
    if rl.get("requests_per_s") or rl.get("events_per_s"):
        notes.append(f"rate limit {rl.get('requests_per_s') or '-'} req/s, "
                     f"{rl.get('events_per_s') or '-'} ev/s")
    for counter, counts in (o.get("destination_counters") or {}).items():
        notes.append(f"{counter}: " + ", ".join(f"{label} {n}" for label, n in counts.items()))
    if o.get("dlq"):
        pending = f", {o['dlq_replay_pending']} waiting for replay" if o.get("dlq_replay_pending") else ""
        notes.append(f"DLQ {o['dlq']}{pending}, last reason: {o.get('dlq_last_reason') or '-'}")
    return notes


def _file_lag(off: dict[str, Any]) -> dict[str, Any]:
    try:
        size: int | None = os.stat(off["path"]).st_size
    except OSError:
        size = None
    return {"path": off["path"], "file_key": off.get("file_key"), "offset": off["offset"], "size": size,
            "lag_bytes": max(0, size - off["offset"]) if size is not None else None}


def _iso(ms: int | None) -> str | None:
    if not ms:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{int(ms) % 1000:03d}Z"


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def render_status(st: dict[str, Any]) -> str:
    """The human view: one screen, most important first; each line ``printable``."""
    a, sp = st["agent"], st["spool"]
    lines = []
    state = f"running (pid {a['pid']})" if a["running"] else "not running"
    lines.append(f"clawd-agent: {state}   health: {st['health']}")
    if a.get("last_heartbeat"):
        lines.append(f"  started {a.get('started') or '-'}   last heartbeat {a['last_heartbeat']}")
    if not sp.get("exists", True):
        lines.append(f"spool: {sp['path']} does not exist yet (the agent has not run)")
        return "".join(printable(line) + "\n" for line in lines)
    # Recorded by the agent when it opens the spool (Spool.record_config): unknown before one ran.
    recorded = sp.get("durability") is not None
    cap = _human_bytes(sp["max_bytes"]) if sp.get("max_bytes") else "unlimited" if recorded else "-"
    lines.append(f"spool: {sp['path']}  {sp['rows']} events  {_human_bytes(sp['bytes'])} of {cap}  "
                 f"durability={sp['durability'] or '-'}  on_full={sp['on_full'] or '-'}  "
                 f"dropped={sp['dropped_total']}  quarantined={sp['quarantined']}")
    lines.append("")
    lines.append("inputs:")
    for name, inp in st["inputs"].items():
        counts = "  ".join(f"{k}={inp[k]}" for k in ("ingested", "quarantined", "duplicates") if k in inp)
        lines.append(f"  {name} ({inp['type']})  {counts}".rstrip())
        for f in inp.get("files", []):
            lag = "-" if f["lag_bytes"] is None else _human_bytes(f["lag_bytes"])
            lines.append(f"    {f['path']}  offset {f['offset']}  lag {lag}")
    lines.append("")
    lines.append("outputs:")
    nw = max([16, *(len(n) + (0 if o["enabled"] else 11) for n, o in st["outputs"].items())])
    tw = max([8, *(len(o["type"]) for o in st["outputs"].values())])
    header = f"  {'name':<{nw}} {'type':<{tw}} {'cursor':>8} {'lag':>8} {'lag_s':>7} {'rate/s':>8} " \
             f"{'dlq':>5}  last success / last error"
    lines.append(header)
    for name, o in st["outputs"].items():
        flag = "" if o["enabled"] else " (disabled)"
        err = f"  error at {o['last_error_at']}: {o['last_error']}" if o.get("last_error") else ""
        cur = o["cursor"] if o["cursor"] is not None else "-"
        lines.append(f"  {name + flag:<{nw}} {o['type']:<{tw}} {cur:>8} "
                     f"{o['lag_events']:>8} {o['lag_seconds']:>7.1f} {o['rate_eps']:>8.1f} {o['dlq']:>5}  "
                     f"{o['last_success'] or 'never'}{err}")
        notes = _output_notes(o)
        if notes:
            lines.append(f"  {'':<{nw}} {'; '.join(notes)}")
    if st.get("orphan_cursors"):
        lines.append(f"  cursors of outputs no longer configured: {', '.join(st['orphan_cursors'])}")
    if st.get("orphan_dlq"):
        dlqs = ", ".join(f"{n} {d['count']} (last reason: {d['last_reason'] or '-'})"
                         for n, d in st["orphan_dlq"].items())
        lines.append(f"  DLQ entries of outputs no longer configured: {dlqs}; "
                     "`clawd-agent dlq purge --output NAME` removes them")
    return "".join(printable(line) + "\n" for line in lines)
