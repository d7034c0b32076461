"""Structured logging: one JSON object per line on stderr, with the ``extra`` fields of each call.

Callers pass only names, counts and reasons: never a token, key, password, webhook URL or header.
And as the last line of defence (a message that quoted a value, a library's own log line), every
line is written with each form of every credential value the process holds masked as ``***``
(``Secret.known_values``, ``agent.secret_forms``).
"""

from __future__ import annotations

import logging
import sys
import time

import orjson

from agent.config_types import Secret
from agent.secret_forms import mask_known

_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return masked(orjson.dumps(entry, default=str).decode(), json_line=True)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in record.__dict__.items()
                          if k not in _STD and not k.startswith("_"))
        line = f"{record.levelname.lower():7} {record.name}: {record.getMessage()}"
        return masked(f"{line} {extras}".rstrip())


def masked(line: str, *, json_line: bool = False) -> str:
    """``line`` with every form of each credential value this process holds as ``***``. In a JSON
    line each form was JSON-escaped once more (a message quoting an answer's ``\"``), so the
    escaped values' forms are masked too."""
    values = Secret.known_values()
    if json_line and values:
        values += [orjson.dumps(v).decode()[1:-1] for v in values]
    return mask_known(line, values)


def setup_logging(level: str = "info", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
