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


class _LogsInTheHelper:
    """Unpickles, in the offload helper, to a warning that quotes ``text``: a job's own log line."""

    def __init__(self, text: str):
        self.text = text

    def __reduce__(self) -> tuple:
        return (logging.warning, ("answer echoed %s", self.text))


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_the_offload_helper_logs_as_the_agent_does_masked(tmp_path: Path, fmt: str) -> None:
    """The helper's log lines share the agent's stderr: they were Python's bare last-resort text,
    unmasked; they are now the agent's format with its mask (the helper holds the config's secrets)."""
    import pickle
    import subprocess

    from agent.config import load_config
    from agent.offload import _HELLO, _LEN, config_frame
    from tests.shared_paths import ROOT

    token = "helper-canary-7f3a9"
    cfg_path = tmp_path / "agent.toml"
    cfg_path.write_text(f"""
[agent]
log_format = "{fmt}"
log_level = "info"

[inputs.t]
type = "file"
paths = ["/nonexistent/*.jsonl"]

[outputs.hec]
type = "splunk_hec"
endpoint = "http://127.0.0.1:9"
token = "{token}"
enabled = false
""")
    proc = subprocess.Popen([sys.executable, "-m", "agent.offload", "--config", str(cfg_path),
                             "--config-on-stdin"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdin.write(config_frame(load_config(str(cfg_path))))
    proc.stdin.flush()
    (n,) = _LEN.unpack(proc.stdout.read(4))
    assert pickle.loads(proc.stdout.read(n)) == _HELLO
    job = pickle.dumps((1, "map", _LogsInTheHelper(f"Splunk {token}")), protocol=5)
    proc.stdin.write(_LEN.pack(len(job)) + job)
    proc.stdin.close()  # the helper answers the job (a failure: no such payload), then exits
    (n,) = _LEN.unpack(proc.stdout.read(4))
    job_id, ok, _ = pickle.loads(proc.stdout.read(n))
    assert (job_id, ok) == (1, False)
    assert proc.wait(timeout=30) == 0
    err = proc.stderr.read().decode()
    assert token not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    if fmt == "json":
        entry = json.loads(lines[0])
        assert (entry["level"], entry["logger"]) == ("warning", "root")
        assert entry["msg"] == "answer echoed Splunk ***"
    else:
        assert lines[0] == "warning root: answer echoed Splunk ***"


def test_an_extra_named_as_a_field_of_the_line_never_replaces_it() -> None:
    """``extra={"level": ...}`` replaced the record's level in the JSON line (a SIEM reading the
    agent's logs would see an error as "debug"); it is kept beside it instead."""
    r = record("boom", exc=True, level="debug", ts="then", logger="other")
    r.__dict__["exc"] = "e"  # (record's own exc= is the traceback switch)
    entry = json.loads(JsonFormatter().format(r))
    assert (entry["level"], entry["logger"], entry["msg"]) == ("warning", "clawd_agent.test", "boom")
    assert entry["ts"] != "then" and "Traceback" in entry["exc"]
    assert (entry["extra.level"], entry["extra.ts"], entry["extra.logger"], entry["extra.exc"]) == (
        "debug", "then", "other", "e")
