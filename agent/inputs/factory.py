"""Builds the input object for one [inputs.<name>] table."""

from __future__ import annotations

from typing import Any

from agent.mapping import MappingContext


def build_input(name: str, config: Any, *, writer: Any, spool: Any, context: MappingContext,
                mapper: Any = None) -> Any:
    """``mapper`` (agent.inputs.mapper) maps tailed files' chunks; low-volume inputs map inline."""
    if config.type == "file":
        from agent.inputs.tail import TailInput

        return TailInput(name, config, writer, spool, context, mapper=mapper)
    if config.type == "unix":
        from agent.inputs.unix_socket import UnixSocketInput

        return UnixSocketInput(name, config, writer, spool, context)
    if config.type == "http":
        from agent.inputs.http_listener import HttpInput

        return HttpInput(name, config, writer, spool, context)
    raise ValueError(f"unknown input type {config.type!r}")
