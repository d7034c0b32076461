"""Transform wiring: the output's format keys build ``output.pipeline`` before open(), the default
encode renders through it, and events are decoded only when something needs them."""

from __future__ import annotations

import uuid

import orjson
import pytest

from agent.config import parse_config
from agent.config_loader import ConfigError
from agent.event import encode_event
from agent.mapping import MappingContext, parse_line
from outputs.base import FilterConfig, OutputConfig
from outputs.drain import Drain
from outputs.file import FileOutput, FileOutputConfig
from outputs.render import Renderer, build_output_pipeline
from spool.store import Spool
from spool.types import EncodedEvent, IngestBatch
from tests.integration.harness import audit_line
from tests.outputs.drain_kit import caught_up, run_until
from transforms.config import TransformConfig


@pytest.fixture
def spool(tmp_path):
    s = Spool(str(tmp_path / "spool.db"))
    ctx = MappingContext(host_name="h1")
    events = [parse_line(audit_line(i), context=ctx) for i in range(6)]
    s.append(IngestBatch("t", [EncodedEvent(uuid.UUID(e["event_id"]).bytes, i, encode_event(e))
                               for i, e in enumerate(events)]))
    yield s
    s.close()


def file_output(tmp_path, **kw) -> FileOutput:
    return FileOutput("f", FileOutputConfig(path=str(tmp_path / "out.jsonl"), batch_max_wait=0,
                                            healthcheck_interval=0, **kw))


def test_every_transform_key_is_an_output_key():
    names = {f for f in TransformConfig.__dataclass_fields__}
    assert names <= set(OutputConfig.__dataclass_fields__)
    cfg = OutputConfig(type="x", format="ocsf", include_raw=True)
    assert cfg.transform_config().format == "ocsf" and cfg.transform_config().include_raw is True


def test_a_file_output_writes_ecs_documents(spool, tmp_path):
    out = file_output(tmp_path, format="ecs")
    drain = Drain(out, spool, spool.reader(), pipeline_factory=build_output_pipeline)
    run_until(drain, caught_up(spool, "f"))
    docs = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert len(docs) == 6
    assert all("@timestamp" in d and d["ecs"]["version"].startswith("9.") for d in docs)
    assert drain._decode is True and out.pipeline.format == "ecs"


def test_canonical_without_filter_or_routes_skips_decoding(spool, tmp_path):
    out = file_output(tmp_path)
    drain = Drain(out, spool, spool.reader(), pipeline_factory=build_output_pipeline)
    run_until(drain, caught_up(spool, "f"))
    assert out.pipeline.passthrough and drain._decode is False
    assert (tmp_path / "out.jsonl").read_bytes().splitlines() == [r.body for r in spool.read_after(0, 10)]
    filtered = file_output(tmp_path, filter=FilterConfig(min_severity="high"))
    filtered.pipeline = build_output_pipeline(filtered.config)
    drain = Drain(filtered, spool, spool.reader())
    assert Renderer(filtered, drain._select).decode is True  # the filter reads events


def test_include_raw_with_cef_is_refused_at_load():
    with pytest.raises(ConfigError, match=r"\[outputs.o\]: include_raw: not available with format 'cef'"):
        parse_config('[inputs.i]\ntype = "file"\npaths = ["/x/*"]\n'
                     '[outputs.o]\ntype = "stdout"\nformat = "cef"\ninclude_raw = true\n', "agent.toml")
