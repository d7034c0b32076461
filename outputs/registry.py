"""The one table that maps an output ``type`` in agent.toml to its config class and output class."""

from __future__ import annotations

from outputs.base import Output, OutputConfig
from outputs.elasticsearch import ElasticsearchOutput, ElasticsearchOutputConfig
from outputs.file import FileOutput, FileOutputConfig
from outputs.splunk_hec import SplunkHecOutput, SplunkHecOutputConfig
from outputs.stdout import StdoutOutput, StdoutOutputConfig

OUTPUT_TYPES: dict[str, tuple[type[OutputConfig], type[Output]]] = {
    "elasticsearch": (ElasticsearchOutputConfig, ElasticsearchOutput),
    "file": (FileOutputConfig, FileOutput),
    "stdout": (StdoutOutputConfig, StdoutOutput),
    "splunk_hec": (SplunkHecOutputConfig, SplunkHecOutput),
}


def build_output(name: str, config: OutputConfig) -> Output:
    return OUTPUT_TYPES[config.type][1](name, config)
