"""A config with stdout outputs and a real spool holding events, for the CLI's offline commands
(`cursor`, `dlq`): they work on the spool while the agent is not running."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path

import orjson

from spool.store import Spool
from spool.types import EncodedEvent, IngestBatch


def spool_with_events(tmp_path: Path, outputs: Iterable[str], times_ms: Iterable[int]
                      ) -> tuple[str, Spool]:
    """(config path, spool): input ``i``, the named outputs (type stdout), and one event per time
    (event ids 1, 2, ... as UUIDs; bodies ``{"n": 0}``, ``{"n": 1}``...), spooled as seq 1, 2, ..."""
    cfg = tmp_path / "agent.toml"
    sections = "".join(f'[outputs.{name}]\ntype = "stdout"\n' for name in outputs)
    cfg.write_text(f'[agent]\ndata_dir = "{tmp_path}/state"\n[inputs.i]\ntype = "file"\n'
                   f'paths = ["{tmp_path}/in/*.jsonl"]\n{sections}')
    (tmp_path / "state").mkdir()
    spool = Spool(str(tmp_path / "state" / "spool.db"))
    events = [EncodedEvent(uuid.UUID(int=i + 1).bytes, t, orjson.dumps({"n": i}))
              for i, t in enumerate(times_ms)]
    spool.append(IngestBatch("i", events))
    return str(cfg), spool
