"""agent.toml loading: defaults, precise errors naming file and key, ${ENV} and file: secrets."""

from __future__ import annotations

import grp
import logging
import os

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

OUT_P = "[outputs.p]\ntype = 'file'\npath = '/x'\n"


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("[spool]\ndurabilty = 'full'\n", "agent.toml: [spool]: unknown key 'durabilty'"),
        ("[spool]\ndurability = 'fast'\n", "[spool] durability: expected one of 'off', 'normal', 'full'"),
        ("[spool]\nmax_bytes = [1]\n", "[spool] max_bytes: expected a size"),
        ("[agent]\nlabels = 'x'\n", "[agent] labels: expected a table, got a string"),
        ("[outputs.p]\ntype = 'file'\npath = '/x'\nbatch_max_events = 'many'\n",
         "[outputs.p] batch_max_events: expected an integer, got a string"),
        (OUT_P + "retry_initial = '0s'\n", "retry_initial: expected more than 0"),
        (OUT_P + "retry_initial = '2m'\n", "retry_max: expected at least retry_initial"),
        (OUT_P + "breaker_cooldown = 0\n", "breaker_cooldown: expected more than 0"),
        (OUT_P + "breaker_cooldown_max = '10s'\n",
         "breaker_cooldown_max: expected at least breaker_cooldown"),
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



def test_file_secret_swapped_in_with_the_same_size_and_mtime_is_reread(tmp_path):
    """``cp -p`` / ``rsync -t`` / ``install -p`` keep the mtime; a same-size token then looked
    unchanged and the old one was sent until a 401 (which opens the breaker)."""
    import os

    path = tmp_path / "s"
    path.write_text("token-one")
    s = Secret.parse(f"file:{path}")
    assert s.reveal() == "token-one"
    st = os.stat(path)
    new = tmp_path / "s.new"
    new.write_text("token-two")
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(new, path)  # same size, same mtime: another inode
    assert s.reveal() == "token-two"

def test_missing_secret_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read secret file"):
        parse_config(MINIMAL + f"[inputs.h]\ntype = 'http'\nbearer_token = 'file:{tmp_path}/nope'\n")


def test_empty_secret_file_is_a_config_error(tmp_path):
    """An empty credential is never meant: it was sent as such, and every request failed with 401."""
    (tmp_path / "tok").write_text("\n")
    with pytest.raises(ConfigError, match=r"secret file .*tok is empty"):
        parse_config(MINIMAL + f"[inputs.h]\ntype = 'http'\nbearer_token = 'file:{tmp_path}/tok'\n")


def test_secret_file_that_exists_but_cannot_be_read_is_a_config_error(tmp_path):
    """stat() succeeds but the read fails (a directory here; a file of mode 0600 owned by another user
    alike): the same ValueError as a missing file, not a bare OSError with a traceback."""
    with pytest.raises(ConfigError, match="cannot read secret file"):
        parse_config(MINIMAL + f"[inputs.h]\ntype = 'http'\nbearer_token = 'file:{tmp_path}'\n")


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
    text = text.replace('group = "clawd"', f'group = "{grp.getgrgid(os.getgid()).gr_name}"')  # this host's
    cfg = parse_config(text, "docs/examples/agent.toml", env={"CLAWD_WEBHOOK_TOKEN": "t"})
    assert set(cfg.inputs) == {"hushd_audit", "openclaw", "hushd_webhook", "local"}
    assert cfg.outputs["denials"].filter.denied_only is True


HEC = """
[outputs.hec]
type = "splunk_hec"
endpoint = "https://splunk.example:8088"
token = "${HEC_TOKEN}"
proxy = "http://shipper:${PROXY_PASS}@proxy.example:3128"
headers = {Authorization2 = "Bearer ${API_TOKEN}", X-Static = "k-$${NOT_EXPANDED}"}
"""
HEC_ENV = {"HEC_TOKEN": "canary-hec-1", "PROXY_PASS": "canary-pw-2", "API_TOKEN": "canary-api-3"}


def test_env_is_expanded_anywhere_in_a_secret_and_stays_secret(caplog):
    """A ${ENV} inside a secret value (a header, a proxy URL) is expanded like in any other string;
    before, only a whole-value ${NAME} was, and "Bearer ${API_TOKEN}" went out literally."""
    hec = parse_config(MINIMAL + HEC, env=HEC_ENV).outputs["hec"]
    assert hec.token.reveal() == "canary-hec-1"
    assert hec.proxy.reveal() == "http://shipper:canary-pw-2@proxy.example:3128"
    assert hec.headers["Authorization2"].reveal() == "Bearer canary-api-3"
    assert hec.headers["X-Static"].reveal() == "k-${NOT_EXPANDED}"  # $${ is the literal escape
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("t").info("config %r %s %s", hec, hec.proxy, hec.headers)
    shown = repr(hec) + str(hec.proxy) + str(hec.headers) + caplog.text
    assert "canary" not in shown
    assert "env:PROXY_PASS" in repr(hec.proxy)


def test_env_expanded_into_a_secret_is_masked_in_excerpts():
    """The piece a variable put into a secret is masked on its own too, where a service echoes only
    it (here a header whose value is not 'scheme credential')."""
    from outputs.http import HttpClient, excerpt

    hec = parse_config(MINIMAL + HEC.replace("X-Static = \"k-$${NOT_EXPANDED}\"",
                                             "X-Key = \"k=${KEY_PART}\""),
                       env={**HEC_ENV, "KEY_PART": "canary-part-4"}).outputs["hec"]
    client = HttpClient(hec, pool_size=1)
    try:
        shown = excerpt(b"rejected key canary-part-4 (pw canary-pw-2)", client.secrets())
    finally:
        client.close()
    assert "canary" not in shown, shown


@pytest.mark.parametrize("where", ["token", "proxy", "headers"])
def test_unset_env_inside_a_secret_is_a_config_error_naming_the_variable(where):
    env = {**HEC_ENV}
    del env[{"token": "HEC_TOKEN", "proxy": "PROXY_PASS", "headers": "API_TOKEN"}[where]]
    with pytest.raises(ConfigError) as err:
        parse_config(MINIMAL + HEC, env=env)
    msg = str(err.value)
    assert f"[outputs.hec] {where}" in msg
    assert "environment variable" in msg and "is not set" in msg
    assert "canary" not in msg


def test_check_config_fails_on_an_unset_env_inside_a_secret(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from agent.cli import cli

    cfg = tmp_path / "agent.toml"
    cfg.write_text(MINIMAL + HEC)
    for k, v in HEC_ENV.items():
        monkeypatch.setenv(k, v)
    assert CliRunner().invoke(cli, ["check-config", "-c", str(cfg)]).exit_code == 0
    monkeypatch.delenv("API_TOKEN")
    res = CliRunner().invoke(cli, ["check-config", "-c", str(cfg)])
    assert res.exit_code != 0
    assert "[outputs.hec] headers.Authorization2: environment variable API_TOKEN is not set" in res.output
    assert "canary" not in res.output


def test_dollar_dollar_brace_is_a_literal_in_plain_strings_too():
    cfg = parse_config(MINIMAL + "[agent]\nenvironment = 'a-$${HOME}-${E}'\n", env={"E": "x"})
    assert cfg.agent.environment == "a-${HOME}-x"


def test_file_secret_path_may_use_env(tmp_path):
    (tmp_path / "tok").write_text("from-file\n")
    s = Secret.parse("file:${SECRETS_DIR}/tok", {"SECRETS_DIR": str(tmp_path)})
    assert s.reveal() == "from-file"


def test_env_in_a_urls_user_info_is_percent_encoded_and_only_there():
    """A generated proxy password may hold '@', '/', '?', '#' or ':': put into the URL as it is, the
    rest of it became the proxy host (resolved, connected to) and the password was cut short."""
    import urllib.parse

    from requests.utils import get_auth_from_url

    password = "s3cr3t@Pa55/x?y#z:w%"
    env = {"PROXY_PASS": password, "USER": "ship per", "T": "a/b@c", "URL": "http://u:p@q:1"}
    url = Secret.parse("http://${USER}:${PROXY_PASS}@proxy.internal:3128", env).reveal()
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname == "proxy.internal" and parts.port == 3128
    assert get_auth_from_url(url) == ("ship per", password)  # what requests sends to the proxy
    # elsewhere a value is put in as it is: a header, a URL path, a whole URL from the environment
    assert Secret.parse("Bearer ${T}", env).reveal() == "Bearer a/b@c"
    assert Secret.parse("https://hooks.example/services/${T}", env).reveal() == \
        "https://hooks.example/services/a/b@c"
    assert Secret.parse("${URL}", env).reveal() == "http://u:p@q:1"
