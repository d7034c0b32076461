"""Whether the agent that last recorded itself in the spool still runs.

One answer for every command (`status`, `dlq replay`, `cursor delete`), so they never disagree: a pid
alone is not enough, since after a crash the pid may belong to another process, and a hung agent keeps
its pid but no longer records heartbeats.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

#: A heartbeat older than this many intervals (plus 1 s of slack) means the agent no longer runs.
STALE_HEARTBEAT_FACTOR = 3


def agent_running(agent_state: Mapping[str, Any] | None, heartbeat_interval_s: float,
                  now_ms: int | None = None) -> bool:
    """True if the recorded pid is alive and its heartbeat (``Spool.get_agent_state``) is fresh."""
    state = agent_state or {}
    pid = int(state.get("pid") or 0)
    heartbeat_ms = int(state.get("heartbeat_ms") or 0)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    fresh = now - heartbeat_ms <= STALE_HEARTBEAT_FACTOR * heartbeat_interval_s * 1000 + 1000
    return bool(pid) and pid_alive(pid) and fresh


def pid_alive(pid: int) -> bool:
    """A process with this pid exists (one we may not signal exists too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
