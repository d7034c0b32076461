"""agent.toml loading: defaults, precise errors naming file and key, ${ENV} and file: secrets."""

from __future__ import annotations

import logging

import pytest

from agent.config import parse_config
from agent.config_loader import ConfigError
from agent.config_types import Duration, Secret, Size

MINIMAL = """
[inputs.a]
type = "file"
paths = ["/tmp/x.jsonl"]

[outputs.o]
type = "file"
path = "/tmp/out.jsonl"
"""


def test_minimal_config_gets_documented_defaults():
    cfg = parse_config(MINIMAL)
    assert cfg.spool.durability == "full"
    assert cfg.spool.on_full == "block"
    assert cfg.metrics.listen.host == "127.0.0.1"
    assert cfg.spool_path == "/var/lib/clawd-agent/spool.db"
    assert cfg.outputs["o"].batch_max_events == 500
    assert cfg.inputs["a"].max_line_bytes == 1024 * 1024


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("[spool]\ndurabilty = 'full'\n", "agent.toml: [spool]: unknown key 'durabilty'"),
        ("[spool]\ndurability = 'fast'\n", "[spool] durability: expected one of 'off', 'normal', 'full'"),
        ("[spool]\nmax_bytes = [1]\n", "[spool] max_bytes: expected a size"),
        ("[agent]\nlabels = 'x'\n", "[agent] labels: expected a table, got a string"),
        ("[outputs.p]\ntype = 'file'\npath = '/x'\nbatch_max_events = 'many'\n",
         "[outputs.p] batch_max_events: expected an integer, got a string"),
        ("[outputs.p]\ntype = 'nope'\n", "[outputs.p]: unknown type 'nope'"),
        ("[outputs.p]\ntype = 'file'\n", "[outputs.p]: path: required"),
        ("[outputs.o.filter]\nmin_severity = 'Warning'\n", "min_severity: expected one of"),
        ("[bogus]\n", "unknown top-level key 'bogus'"),
    ],
)
def test_errors_name_the_file_and_the_key(snippet, message):
    with pytest.raises(ConfigError) as err:
        parse_config(MINIMAL + snippet)
    assert message in str(err.value)


def test_invalid_toml_is_reported_with_the_file():
    with pytest.raises(ConfigError, match=r"^my.toml: invalid TOML"):
        parse_config("[inputs\n", "my.toml")


def test_env_expansion_and_missing_env_var():
    cfg = parse_config(MINIMAL + "[agent]\nenvironment = '${ENVNAME}'\n", env={"ENVNAME": "prod"})
    assert cfg.agent.environment == "prod"
    with pytest.raises(ConfigError, match=r"\[agent\] environment: environment variable ENVNAME is not set"):
        parse_config(MINIMAL + "[agent]\nenvironment = '${ENVNAME}'\n", env={})


def test_secrets_from_env_and_file_never_show(tmp_path, caplog):
    token_file = tmp_path / "token"
    token_file.write_text("canary-file-secret-123\n")
    text = MINIMAL + (
        "[inputs.h]\ntype = 'http'\nbearer_token = '${TOK}'\n"
        f"certification_secret = 'file:{token_file}'\n"
    )
    cfg = parse_config(text, env={"TOK": "canary-env-secret-456"})
    h = cfg.inputs["h"]
    assert h.bearer_token.reveal() == "canary-env-secret-456"
    assert h.certification_secret.reveal() == "canary-file-secret-123"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("t").info("config %r %s", h, h.bearer_token)
    shown = repr(h) + str(h.bearer_token) + caplog.text
    assert "canary" not in shown
    assert "env:TOK" in repr(h.bearer_token)


def test_file_secret_is_reread_after_rotation(tmp_path):
    path = tmp_path / "s"
    path.write_text("one")
    s = Secret.parse(f"file:{path}")
    assert s.reveal() == "one"
    path.write_text("second-value")  # size changes, so the stamp changes even within one mtime tick
    assert s.reveal() == "second-value"


def test_missing_secret_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read secret file"):
        parse_config(MINIMAL + f"[inputs.h]\ntype = 'http'\nbearer_token = 'file:{tmp_path}/nope'\n")


@pytest.mark.parametrize(("raw", "value"), [(10, 10), ("1KiB", 1024), ("2 MB", 2_000_000), ("1GiB", 1024**3)])
def test_sizes(raw, value):
    assert Size.parse(raw) == value


@pytest.mark.parametrize(("raw", "value"), [(5, 5.0), ("250ms", 0.25), ("10m", 600.0), ("1d", 86400.0)])
def test_durations(raw, value):
    assert Duration.parse(raw) == value


def test_packaged_default_config_is_valid(monkeypatch):
    from pathlib import Path

    text = (Path(__file__).parent.parent / "packaging" / "agent.toml").read_text()
    cfg = parse_config(text, "packaging/agent.toml")
    assert "hushd_audit" in cfg.inputs and "archive" in cfg.outputs


def test_docs_example_config_is_valid(tmp_path):
    from pathlib import Path

    secret = tmp_path / "hmac"
    secret.write_text("s3cret")
    text = (Path(__file__).parent.parent / "docs" / "examples" / "agent.toml").read_text()
    text = text.replace("/etc/clawd-agent/secrets/certification-hmac", str(secret))
    cfg = parse_config(text, "docs/examples/agent.toml", env={"CLAWD_WEBHOOK_TOKEN": "t"})
    assert set(cfg.inputs) == {"hushd_audit", "openclaw", "hushd_webhook", "local"}
    assert cfg.outputs["denials"].filter.denied_only is True
