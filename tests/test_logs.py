"""The log formatters mask every credential value the process holds (agent/logs.py), whatever the
message quoted: the last line of defence behind callers that never log one."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from agent.config_types import Secret
from agent.logs import JsonFormatter, TextFormatter

FORMATTERS = [JsonFormatter(), TextFormatter()]


def record(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise RuntimeError(f"boom: {msg}")
        except RuntimeError:
            info = sys.exc_info()
    r = logging.LogRecord("clawd_agent.test", logging.WARNING, __file__, 1, msg, args, info)
    r.__dict__.update(extra)
    return r


@pytest.mark.parametrize("fmt", FORMATTERS, ids=["json", "text"])
def test_every_form_of_a_held_secret_is_masked_in_message_extras_and_traceback(fmt: logging.Formatter
                                                                              ) -> None:
    token = 'k9"Zx/q+tok=42'
    held = Secret.parse("Bearer ${T}", {"T": token})
    proxy = Secret.parse("http://shipper:pw%40Proxy77@proxy:3128", {})
    forms = [token, json.dumps(token)[1:-1], "k9%22Zx%2Fq%2Btok%3D42", token.upper(), "pw@Proxy77"]
    for form in forms:
        line = fmt.format(record(f"answer echoed {form} here", exc=True, detail=f"x {form} y"))
        assert "here" in line and "***" in line
        assert all(f not in line for f in forms), (form, line)
    assert held.reveal() and proxy.reveal()  # alive until here


def test_a_rotated_file_secrets_previous_value_stays_masked_and_no_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first-token-111\n")
    secret = Secret.parse(f"file:{path}")
    path.write_text("second-token-222-longer\n")  # size changed: the next reveal reads it
    assert secret.reveal() == "second-token-222-longer"
    path.unlink()  # formatting never reads the file: the values it holds are enough
    line = JsonFormatter().format(record("carried first-token-111, then second-token-222-longer"))
    assert "first-token-111" not in line and "second-token-222-longer" not in line
    assert line.count("***") == 2


def test_short_values_and_text_without_secrets_are_left_alone() -> None:
    keep = Secret.parse("abc", {})
    line = TextFormatter().format(record("abc is not masked: too short to tell from text"))
    assert line.endswith("abc is not masked: too short to tell from text")
    assert keep.reveal() == "abc"
