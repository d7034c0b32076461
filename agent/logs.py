"""Structured logging: one JSON object per line on stderr, with the ``extra`` fields of each call.

Callers pass only names, counts and reasons: never a token, key, password, webhook URL or header.
And as the last line of defence (a message that quoted a value, a library's own log line), every
line is written with each form of every credential value the process holds masked as ``***``
(``Secret.known_values``, ``agent.secret_forms``).

A formatter never raises: logging's ``Handler.handleError`` would print the record's message and
arguments to stderr as they are, unmasked, and the line would be lost. Whatever a caller passes (a
path with a lone surrogate, an int beyond 64 bits, a dict with int keys, an object whose ``__str__``
raises) is written as text.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from agent.config_types import Secret
from agent.secret_forms import echoes, known

_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
#: The fields JsonFormatter writes itself.
_OWN = frozenset({"ts", "level", "logger", "msg", "exc"})
#: orjson writes ints in [-2**63, 2**64) only; nesting deeper than this is written as text.
_INT_MIN, _INT_END, _MAX_DEPTH = -(2**63), 2**64, 32


def _text(value: Any) -> str:
    """``str(value)``, or its repr, or its type: for any object, whatever its ``__str__`` does."""
    for show in (str, repr):
        try:
            text = show(value)
            if isinstance(text, str):
                return text
        except Exception:
            continue
    return f"<unprintable {type(value).__name__}>"


def _valid(text: str) -> str:
    """``text`` with any lone surrogate (a file name's undecodable byte) as ``\\udcff``: JSON holds
    Unicode text only."""
    try:
        text.encode()
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()


def _message(record: logging.LogRecord) -> str:
    """``record.getMessage()``, or, when the arguments do not fit the format, both as text."""
    try:
        return record.getMessage()
    except Exception:
        return f"{_text(record.msg)} (arguments: {_text(record.args)})"


def _masker() -> Callable[[str], str]:
    values = known(Secret.known_values())
    if not values:
        return _valid
    pattern: re.Pattern[str] = echoes(values)
    return lambda text: pattern.sub("***", _valid(text))


def _plain(value: Any, mask: Callable[[str], str], depth: int = 0) -> Any:
    """``value`` as orjson writes it without fail, every string in it (dict keys too) masked."""
    if value is None or type(value) in (bool, float):  # nan and inf: null (a float subclass: text)
        return value
    if isinstance(value, int):
        return value if _INT_MIN <= value < _INT_END else mask(_text(value))
    if isinstance(value, str):
        return mask(value)
    if depth < _MAX_DEPTH and isinstance(value, dict):
        return {mask(k if isinstance(k, str) else _text(k)): _plain(v, mask, depth + 1)
                for k, v in value.items()}
    if depth < _MAX_DEPTH and isinstance(value, list | tuple):
        return [_plain(v, mask, depth + 1) for v in value]
    return mask(_text(value))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # Masked before encoding, not in the encoded line: a form the line escapes once more
        # (``\/``, ``\uXXXX`` in a quoted answer) is still found, and ``***`` never cuts an escape.
        mask = _masker()
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _message(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        for key, value in record.__dict__.items():
            if key not in _STD and not key.startswith("_"):
                # An extra named as a field of the line's own (``level``, ``ts``...) never replaces it.
                entry[f"extra.{key}" if key in _OWN else key] = value
        return orjson.dumps(_plain(entry, mask)).decode()


#: Line breaks and the other control characters (a tab aside) as escapes: a text line is one record,
#: so a message or a value (a file name, a quoted answer) cannot forge another record's line.
_ONE_LINE = {c: f"\\x{c:02x}" for c in (*range(32), 127, 0x85) if c != 9} | {
    10: "\\n", 13: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"}


class TextFormatter(logging.Formatter):
    """``level logger: message key=value ...`` on one line, then an exception's traceback, if any,
    on indented lines of its own (the JSON formatter's ``exc``)."""

    def format(self, record: logging.LogRecord) -> str:
        mask = _masker()
        extras = " ".join(f"{k}={_text(v)}" for k, v in record.__dict__.items()
                          if k not in _STD and not k.startswith("_"))
        line = f"{record.levelname.lower():7} {record.name}: {_message(record)}"
        out = mask(f"{line} {extras}".rstrip()).translate(_ONE_LINE)
        if record.exc_info:
            trace = mask(self.formatException(record.exc_info)).translate(_ONE_LINE | {10: "\n    "})
            out += "\n    " + trace
        return out


def setup_logging(level: str = "info", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
