"""Per-output event filters, compiled once so the drain loop pays a few dict lookups per event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from outputs.base import FilterConfig

# Ordered scale of the canonical severity enumeration (agent.event.Severity).
SEVERITY_RANK = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


def compile_filter(cfg: FilterConfig) -> Callable[[dict[str, Any]], bool] | None:
    """Return a predicate over canonical events (True: the output receives the event), or None when the
    filter accepts everything, so the drain need not even decode events for it."""
    min_rank = SEVERITY_RANK[cfg.min_severity]
    types = frozenset(cfg.event_types)
    excluded = frozenset(cfg.exclude_event_types)
    guards = frozenset(cfg.guards)
    actions = frozenset(cfg.actions)
    agents = frozenset(cfg.agents)
    denied_only = cfg.denied_only
    if not (min_rank or types or excluded or guards or actions or agents or denied_only):
        return None

    def accept(ev: dict[str, Any]) -> bool:
        decision = ev.get("decision") or {}
        if SEVERITY_RANK.get(decision.get("severity", "info"), 0) < min_rank:
            return False
        et = ev.get("event_type")
        if (types and et not in types) or et in excluded:
            return False
        if guards and decision.get("guard") not in guards:
            return False
        if actions and ev.get("action") not in actions:
            return False
        if agents and (ev.get("agent") or {}).get("id") not in agents:
            return False
        return not (denied_only and decision.get("allowed", True))

    return accept
