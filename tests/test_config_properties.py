"""Property-based tests of loading agent.toml (agent/config.py, agent/config_loader.py,
agent/config_types.py and the config dataclasses of inputs, outputs and transforms) against
docs/configuration.md and the docs of each output.

Documents are generated from valid ones (a rich document with every input and output type, every
kind of secret and nested tables, arrays of tables included; packaging/agent.toml; and
docs/examples/agent.toml), rendered to TOML by a small writer here, and mutated:

1. total: whatever the mutation (any key set to a hostile value: a wrong type, a negative, zero, huge
   or non-finite number, a datetime, a nested list or table; keys deleted or added at any level),
   ``parse_config`` returns an ``AgentConfig`` or raises ``ConfigError``: never another exception (a
   TypeError, KeyError, AttributeError or OverflowError traceback reaching the operator); its message
   starts with the file it names;
2. precise: a value of the wrong type for its key, an unknown key (a typo) in any table, and a
   missing key the output needs are each an error that names the key and its table, as
   docs/configuration.md promises ("an error that names the file and the key");
3. durations and sizes: every documented spelling (numbers, ``"250ms"``, ``"10m"``, ``"100MiB"``,
   ``"1 MB"``, any case of a size unit, spaces) loads as the value it spells; other spellings, negative
   and non-finite numbers are errors; every loaded duration and number is finite (a NaN or an infinity
   that got in would hang or crash a loop of the running agent);
4. duplicated output names are an error, not a silent merge or overwrite;
5. secrets: ``${ENV}`` inside a credential with the variable set is its value, unset is an error naming
   the variable and the key; ``file:`` secrets that are missing, empty, blank, a directory or not
   UTF-8 are errors naming the key; and a canary put in every variable, secret file and literal
   credential never appears in an error message, in ``repr``/``str`` of the loaded config, or in the
   output of ``clawd-agent check-config`` and ``clawd-agent status``;
6. round trip: the project has no dump, so a loaded config is written back as TOML here (each value in
   the canonical form the loader reads: seconds, bytes, "host:port", revealed credentials, ``$${...}``
   for a literal ``${...}``) and loads as an equal config; generated strings with ``${NAME}`` in them
   survive the documented ``$${NAME}`` escape.

At the end: minimal reproductions of the defects found (each fails until its fix).
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
import functools
import grp
import itertools
import json
import math
import os
import re
import tempfile
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import AgentConfig, AgentSection, MetricsSection, SpoolSection, parse_config
from agent.config_loader import ConfigError
from agent.config_types import Duration, ListenAddress, Secret, Size
from agent.inputs.config import INPUT_TYPES
from outputs.registry import OUTPUT_TYPES
from transforms.config import EnrichmentConfig, PrivacyConfig

ROOT = Path(__file__).resolve().parent.parent
CANARY = "xyzzyCANARY"
#: A group this host has, for the unix sockets' `group` (resolved at load).
HOST_GROUP = grp.getgrgid(os.getgid()).gr_name
SETTINGS = settings(max_examples=30, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
ENV_VARS = ("WEBHOOK_TOKEN", "HEC_TOKEN", "PROXY_PASS", "API_TOKEN", "SALT", "ES_BEARER")
ENV = {v: f"{CANARY}-env-{v.lower()}" for v in ENV_VARS} | {"BENIGN": "benign-value"}
#: Where each variable is used: the key path an error about it must name.
ENV_WHERE = {
    "WEBHOOK_TOKEN": "[inputs.hook] bearer_token",
    "HEC_TOKEN": "[outputs.splunk] token",
    "PROXY_PASS": "[outputs.splunk] proxy",
    "API_TOKEN": "[outputs.splunk] headers.X-Api-Key",
    "SALT": "[outputs.splunk] redact rules[0] hash_salt",
    "ES_BEARER": "[outputs.es3] bearer_token",
}
FILE_SECRETS = {  # file name -> the key that reads it
    "hmac": "[inputs.hook] certification_secret",
    "apikey": "[outputs.pager] api_key",
    "salt": "[privacy] hash_salt",
}
SECTIONS: dict[str, type] = {"agent": AgentSection, "spool": SpoolSection, "metrics": MetricsSection,
                             "privacy": PrivacyConfig, "enrichment": EnrichmentConfig}

# -------------------------------------------------------------------------------- documents


def rich_doc(secrets: Path) -> dict[str, Any]:
    """A valid document with every input and output type, every kind of credential (``${ENV}`` alone,
    inside a string and in a URL's user info, ``file:``, literal), nested tables and arrays of tables.
    ``[enrichment] defaults`` is off only to keep each load fast (the shipped table is 300 rules)."""
    cloud_id = "lab:" + base64.b64encode(b"es.example.com:443$esuuid$kbuuid").decode()
    return {
        "agent": {"data_dir": "/var/lib/x", "host_name": "h1", "environment": "prod", "tenant_id": "t1",
                  "labels": {"team": "sec"}, "log_level": "info", "log_format": "json",
                  "heartbeat_interval": "2s", "shutdown_timeout": 10, "offload": True},
        "spool": {"path": "", "durability": "full", "max_bytes": "2GiB", "on_full": "block",
                  "retention": "24h", "commit_max_events": 10000, "commit_max_delay": "0ms",
                  "prune_interval": "1m"},
        "metrics": {"enabled": True, "listen": "127.0.0.1:9464"},
        "privacy": {"builtin": ["secrets", "email"], "hash_salt": f"file:{secrets}/salt",
                    "rules": [{"path": "metadata.principal.email", "style": "hash"},
                              {"pattern": r"ticket=(?P<secret>\w+)", "style": "keep", "keep_last": 4}]},
        "enrichment": {"mitre": True, "defaults": False, "rules": [
            {"name": "build-secrets", "guard": ["forbidden_path"], "path": ["/srv/ci/*"],
             "decision": ["blocked"], "tactic": {"id": "TA0009", "name": "Collection"},
             "technique": {"id": "T1005", "name": "Data from Local System"}}]},
        "inputs": {
            "tail": {"type": "file", "paths": ["/var/log/hushd/audit*.jsonl"], "format": "auto",
                     "start_at": "end", "max_line_bytes": "1MiB", "read_chunk_bytes": "256KiB",
                     "rotate_wait": "5s", "scan_interval": 1, "watch": True},
            "sock": {"type": "unix", "path": "/run/x.sock", "mode": "0660", "group": HOST_GROUP,
                     "max_connections": 256},
            "hook": {"type": "http", "listen": "127.0.0.1:8471", "bearer_token": "${WEBHOOK_TOKEN}",
                     "certification_secret": f"file:{secrets}/hmac", "require_signature": True,
                     "paths": ["/audit"], "max_body_bytes": "1MiB", "retry_after": "5s"},
        },
        "outputs": {
            "archive": {"type": "file", "path": "/tmp/x/events.jsonl", "max_bytes": "100MiB",
                        "max_files": 5, "fsync": True, "mode": "0640",
                        "filter": {"min_severity": "low", "exclude_event_types": ["session_start"]}},
            "console": {"type": "stdout", "format": "ecs",
                        "fields": {"rename": {"a.b": "c.d"}, "set": {"x.y": "z"}, "include": [],
                                   "exclude": ["observables"]}},
            "splunk": {"type": "splunk_hec", "endpoint": "https://splunk.example:8088",
                       "token": "${HEC_TOKEN}", "proxy": "http://shipper:${PROXY_PASS}@proxy.example:3128",
                       "headers": {"X-Api-Key": "Bearer ${API_TOKEN}"}, "index": "security",
                       "format": "cef", "cef": {"device_vendor": "Backbay Labs"},
                       "redact": {"builtin": ["email"], "hash_salt": f"{CANARY}-literal-salt",
                                  "rules": [{"path": "resource.path", "style": "hash",
                                             "hash_salt": "${SALT}"}]},
                       "routes": [{"when": {"min_severity": "critical", "denied_only": True}, "to": "pager"},
                                  {"when": {"denied_only": True},
                                   "set": {"index": "clawd_blocks", "sourcetype": "clawdstrike:block"}}],
                       "ack": True, "channels": 4, "ack_poll_interval": "250ms",
                       "ack_poll_max_interval": "10s", "ack_timeout": "5m", "compression": "gzip",
                       "compression_level": 1, "connect_timeout": "5s", "request_timeout": "30s"},
            "pager": {"type": "elasticsearch", "hosts": ["https://es1.example:9200"],
                      "api_key": f"file:{secrets}/apikey", "data_stream_namespace": "prod",
                      "ilm_delete_after": "30d", "host_down_for": "30s"},
            "es2": {"type": "elasticsearch", "hosts": ["http://es2.example:9200"], "username": "elastic",
                    "password": f"{CANARY}-literal-pw", "index": "clawd-%Y.%m.%d"},
            "es3": {"type": "elasticsearch", "cloud_id": cloud_id, "bearer_token": "${ES_BEARER}"},
        },
    }


def write_secret_files(directory: Path) -> None:
    """The secret files rich_doc names, each holding a canary."""
    for name in FILE_SECRETS:
        (directory / name).write_text(f"{CANARY}-file-{name}\n")


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of secret files for the whole module."""
    directory = tmp_path_factory.mktemp("secrets")
    write_secret_files(directory)
    return directory


#: The valid documents mutations start from, as plain dicts (filled by ``_bases``; a module global
#: rather than a fixture argument so that Hypothesis does not print them with every example).
BASES: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module", autouse=True)
def _bases(secrets_dir: Path) -> Iterator[None]:
    """Fill BASES for this module's tests."""
    BASES.update(base_documents(secrets_dir))
    yield
    BASES.clear()


def base_documents(secrets_dir: Path) -> dict[str, dict[str, Any]]:
    """The rich document, packaging/agent.toml and docs/examples/agent.toml (its secrets here)."""
    import tomllib

    (secrets_dir / "certification-hmac").write_text(f"{CANARY}-docs-hmac\n")
    example = (ROOT / "docs" / "examples" / "agent.toml").read_text()
    example = example.replace("/etc/clawd-agent/secrets/certification-hmac",
                              str(secrets_dir / "certification-hmac"))
    example = example.replace("${CLAWD_WEBHOOK_TOKEN}", "${WEBHOOK_TOKEN}")
    example = example.replace('group = "clawd"', f'group = "{HOST_GROUP}"')  # one this host has
    docs = {"packaging": tomllib.loads((ROOT / "packaging" / "agent.toml").read_text()),
            "example": tomllib.loads(example)}
    for doc in docs.values():  # as in rich_doc: the shipped MITRE table is loaded only when asked
        doc.setdefault("enrichment", {})["defaults"] = False
    return {"rich": rich_doc(secrets_dir), **docs}


# -------------------------------------------------------------------------------- a TOML writer


def toml_str(s: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, except that TOML also refuses a raw DEL."""
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(v: Any) -> str:
    """``v`` as a TOML value (inline tables and arrays, so any nesting fits on one line)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return toml_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(map(toml_value, v)) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_str(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    raise TypeError(f"no TOML for {v!r}")


def render(doc: dict[str, Any]) -> str:
    """The document with one inline table per top-level key (valid TOML for any nesting)."""
    return "".join(f"{toml_str(k)} = {toml_value(v)}\n" for k, v in doc.items())


def load(doc: dict[str, Any], env: dict[str, str] | None = None) -> AgentConfig:
    """Render ``doc`` and load it as agent.toml."""
    return parse_config(render(doc), "agent.toml", ENV if env is None else env)


def outcome(doc: dict[str, Any], env: dict[str, str] | None = None) -> AgentConfig | ConfigError:
    """The loaded config or its ConfigError; any other exception propagates and fails the test."""
    try:
        return load(doc, env)
    except ConfigError as exc:
        return exc


# -------------------------------------------------------------------------------- the schema


def _unwrap(hint: Any) -> Any:
    """``X`` for ``X | None``."""
    if get_origin(hint) in (typing.Union, __import__("types").UnionType):
        return next(a for a in get_args(hint) if a is not type(None))
    return hint


def _is_table_class(hint: Any) -> bool:
    """A dataclass the loader reads as a table (ListenAddress is one but is written as a string)."""
    return dataclasses.is_dataclass(hint) and hint is not ListenAddress


@dataclasses.dataclass(frozen=True)
class Key:
    """One key of a document: its path in the dict, its declared type, and how errors name its table."""

    path: tuple[Any, ...]
    hint: Any
    label: str  # e.g. "[outputs.splunk]": every message about a key under it contains this


def table_classes(doc: dict[str, Any]) -> Iterator[tuple[tuple[Any, ...], type, str]]:
    """(path, dataclass, label) of every table the loader reads with a dataclass, nested ones too
    (of a mutated document: tables whose ``type`` is missing or wrong are left out)."""
    for name, cls in SECTIONS.items():
        yield from _tables((name,), cls, doc.get(name, {}), f"[{name}]")
    for kind, types_ in (("inputs", INPUT_TYPES), ("outputs", {k: v[0] for k, v in OUTPUT_TYPES.items()})):
        named = doc.get(kind, {})
        for name, table in (named.items() if isinstance(named, dict) else ()):
            kind_type = table.get("type") if isinstance(table, dict) else None
            if isinstance(kind_type, str) and kind_type in types_:
                yield from _tables((kind, name), types_[kind_type], table, f"[{kind}.{name}]")


def _tables(path: tuple[Any, ...], cls: type, table: Any, label: str
            ) -> Iterator[tuple[tuple[Any, ...], type, str]]:
    """``cls``'s table at ``path`` and, recursively, its nested tables and arrays of tables."""
    yield path, cls, label
    hints = hints_of(cls)
    for f in dataclasses.fields(cls):
        hint = _unwrap(hints[f.name])
        sub = table.get(f.name) if isinstance(table, dict) else None
        if _is_table_class(hint):
            yield from _tables((*path, f.name), hint, sub if isinstance(sub, dict) else {}, label)
        elif get_origin(hint) is list and _is_table_class(get_args(hint)[0]) and isinstance(sub, list):
            for i, item in enumerate(sub):
                yield from _tables((*path, f.name, i), get_args(hint)[0], item, label)


@functools.cache
def hints_of(cls: type) -> dict[str, Any]:
    """The resolved annotations of ``cls`` (cached: they are asked for at every example)."""
    return typing.get_type_hints(cls)


def schema_keys(doc: dict[str, Any]) -> list[Key]:
    """Every key the schema declares in every table of ``doc`` (present in it or not)."""
    keys = []
    for path, cls, label in table_classes(doc):
        hints = hints_of(cls)
        for f in dataclasses.fields(cls):
            if f.init:
                keys.append(Key((*path, f.name), _unwrap(hints[f.name]), label))
    return keys


def get_at(doc: Any, path: tuple[Any, ...]) -> Any:
    """The value at ``path`` of a document, or of a loaded config (attributes, then dict keys)."""
    for k in path:
        doc = doc[k] if isinstance(doc, dict | list) else getattr(doc, k)
    return doc


def set_at(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    """Set ``path`` in ``doc``, making a table of whatever is on the way and is not one."""
    t: Any = doc
    for k, after in itertools.pairwise(path):
        there = t[k] if (k in t if isinstance(t, dict) else k < len(t)) else None
        if not (isinstance(there, dict)
                or (isinstance(there, list) and isinstance(after, int) and after < len(there))):
            there = t[k] = {}
        t = there
    t[path[-1]] = value


def doc_paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path present in ``doc`` (into arrays of tables too)."""
    for k, v in doc.items():
        yield (*prefix, k)
        if isinstance(v, dict):
            yield from doc_paths(v, (*prefix, k))
        elif isinstance(v, list):
            for i, item in enumerate(v):
                if isinstance(item, dict):
                    yield from doc_paths(item, (*prefix, k, i))


def wrong_values(hint: Any) -> list[Any]:
    """TOML values the declared type never accepts."""
    origin = get_origin(hint)
    table = {"zz": 1}
    if hint is Secret:
        return [True, 12345, 1.5, [f"{CANARY}-in-a-list"], {"k": CANARY}]
    if origin is Literal:
        return [True, 12345, 1.5, [1], table, "zz-not-an-option"]
    if origin is list:
        (item,) = get_args(hint)
        return [True, 12345, "x", table, [[[]]] if _is_table_class(item) else [table]]
    if origin is dict:
        return [True, 12345, "x", [1], {"k": [1]}]
    if hint is Size:
        return [True, 1.5, -1, [1], table, "12 parsecs", "-1KiB"]
    if hint is Duration:
        return [True, -1, -0.5, [1], table, "5 sec", "1h30m", "-5s", ""]
    if hint is ListenAddress:
        return [True, 12345, [1], table, "no-port", "h:99999", "h:-1"]
    if hint is bool:
        return [12345, 1.5, "true", [1], table]
    if hint is int:
        return [True, 1.5, "12", [1], table]
    if hint is float:
        return [True, "1.5", [1], table]
    if hint is str:
        return [True, 12345, 1.5, [1], table, dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)]
    if _is_table_class(hint):
        return [True, 12345, "x", [1]]
    raise AssertionError(f"no wrong values for {hint!r}")


# -------------------------------------------------------------------------------- strategies

names = st.sampled_from(["rich", "packaging", "example"])
hostile_strings = st.one_of(
    st.sampled_from([
        "", " ", "0", "-1", "1e400", "nan", "inf", "5 sec", "1h30m", "1.5.2MB", "12 parsecs",
        "9" * 400, "9" * 400 + "s", "9" * 400 + "GiB", "${UNSET_VARIABLE}", "${BENIGN}", "$${BENIGN}",
        "${", "file:", "file:/nonexistent/secret", "http://[::1", "http://h:99999", "http://u:p@h:1",
        "https://h/?token=x", "..", "a..b", "**", "(", "0o777", "rw", "777777", "TA0009", "T1005",
        "blocked", "ecs", "cef", "hash", "drop", "keep", "file", "stdout", "splunk_hec", "elasticsearch",
        "127.0.0.1:0", "[::1]:9464", ":9464", "archive", "pager", "splunk", "Archive",
    ]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
)
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**63, -(2**63), 10**400, -(10**400), 65536]),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_strings,
    st.sampled_from([dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), dt.date(2026, 1, 2)]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["type", "path", "when", "to", "zz", "k"]),
                                            inner, max_size=3)),
    max_leaves=6,
)


EDGES = [0, -1, 2**63, 10**400, -(10**400), math.nan, math.inf, -math.inf, "9" * 400,
         "9" * 400 + "s", "9" * 400 + "GiB", ["x"], {"zz": 1}]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[dict[str, Any], list[Any]]:
    """A base document with 1-3 random changes: a declared key set to any value (one of the wrong
    type for it, an edge, or anything), a key deleted, a key added to a table, an input or output's
    ``type`` changed."""
    doc = copy.deepcopy(BASES[draw(names)])
    done: list[Any] = []
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["set", "set", "set", "delete", "add", "type"]))
        if action == "set":
            key = draw(st.sampled_from(schema_keys(doc)))
            path = key.path
            set_at(doc, path, draw(st.one_of(values, st.sampled_from(wrong_values(key.hint) + EDGES))))
        elif action == "delete":
            path = draw(st.sampled_from(list(doc_paths(doc))))
            del get_at(doc, path[:-1])[path[-1]]
        elif action == "add":
            tables = [p for p, _, _ in table_classes(doc)] + [()]
            path = (*draw(st.sampled_from(tables)), draw(st.sampled_from(["zz", "typ", "Type", "pathz"])))
            set_at(doc, path, draw(values))
        else:
            named = [p[:2] for p, _, _ in table_classes(doc) if p[0] in ("inputs", "outputs")]
            if not named:
                continue
            path = (*draw(st.sampled_from(named)), "type")
            set_at(doc, path, draw(st.one_of(values, st.sampled_from(
                ["file", "http", "unix", "stdout", "splunk_hec", "elasticsearch", "File", ["file"]]))))
        done.append((action, path))
    return doc, done


def check_no_canary(*texts: str) -> None:
    """No text shows the canary put in every secret."""
    for text in texts:
        assert CANARY not in text, text


# -------------------------------------------------------------------------------- 0. the bases


def test_the_base_documents_are_valid() -> None:
    """The documents the mutations start from load (so each error below comes from its mutation)."""
    for doc in BASES.values():
        cfg = load(doc)
        check_no_canary(repr(cfg), str(cfg))
    rich = load(BASES["rich"])
    assert rich.outputs["splunk"].token.reveal() == ENV["HEC_TOKEN"]
    assert rich.outputs["pager"].api_key.reveal() == f"{CANARY}-file-apikey"
    assert rich.outputs["es2"].password.reveal() == f"{CANARY}-literal-pw"


# -------------------------------------------------------------------------------- 1. total


@SETTINGS
@given(data=st.data())
def test_any_mutation_loads_or_is_a_config_error(data: st.DataObject) -> None:
    """Property 1: a config or a ConfigError naming the file, never another exception or a secret."""
    doc, _done = data.draw(mutated())
    result = outcome(doc)
    if isinstance(result, ConfigError):
        assert str(result).startswith("agent.toml"), str(result)
        check_no_canary(str(result), repr(result))
    else:
        check_no_canary(repr(result), str(result))


# -------------------------------------------------------------------------------- 2. precise


@SETTINGS
@given(data=st.data())
def test_a_value_of_the_wrong_type_is_an_error_naming_its_key(data: st.DataObject) -> None:
    """Any declared key, nested ones too, given a TOML value its type never accepts."""
    doc = copy.deepcopy(BASES[data.draw(names)])
    key = data.draw(st.sampled_from(schema_keys(doc)))
    value = data.draw(st.sampled_from(wrong_values(key.hint)))
    set_at(doc, key.path, value)
    with pytest.raises(ConfigError) as err:
        load(doc)
    msg = str(err.value)
    assert key.label in msg and key.path[-1] in msg, (key, value, msg)
    check_no_canary(msg)


def typos(word: str) -> list[str]:
    """Keys one slip away from ``word``."""
    out = [word[:i] + word[i + 1:] for i in range(len(word))]
    out += [word[:i] + word[i + 1] + word[i] + word[i + 2:] for i in range(len(word) - 1)]
    out += [word[:i] + word[i] + word[i:] for i in range(len(word))]
    out += [word + "s", word.capitalize(), word.replace("_", "-"), word.upper()]
    return [t for t in out if t]


@SETTINGS
@given(data=st.data())
def test_an_unknown_key_at_any_level_is_an_error_naming_it(data: st.DataObject) -> None:
    """A typo of a known key (or any unknown name) in any table: the error names it and its table."""
    doc = copy.deepcopy(BASES[data.draw(names)])
    top = ((), None, "")
    path, cls, label = data.draw(st.sampled_from([top, *table_classes(doc)]))
    known = ({f.name for f in dataclasses.fields(cls)} if cls is not None
             else {"agent", "spool", "metrics", "inputs", "outputs", "privacy", "enrichment"})
    near = [t for k in sorted(known) for t in typos(k) if t not in known]
    typo = data.draw(st.one_of(st.sampled_from(near),
                               st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True).filter(
                                   lambda k: k not in known)))
    set_at(doc, (*path, typo), data.draw(st.sampled_from([1, "x", True, {"a": 1}])))
    with pytest.raises(ConfigError) as err:
        load(doc)
    msg = str(err.value)
    assert f"unknown {'top-level ' if cls is None else ''}key {typo!r}" in msg and label in msg, msg


def named(path: tuple[Any, ...], msg: str) -> bool:
    """The message names the key (or, for the last input or output, says none is left)."""
    if len(path) == 2 and path[0] in ("inputs", "outputs"):
        return str(path[-1]) in msg or f"no [{path[0]}.<name>] table" in msg
    return str(path[-1]) in msg


def test_a_missing_key_loads_with_its_default_or_is_an_error_naming_it() -> None:
    """Every key of the rich and the packaged document deleted in turn: the document still loads (the
    key has a default) or the error names the key (``token: required``, ``missing key 'type'``)."""
    unnamed = []
    for base in (BASES["rich"], BASES["packaging"]):
        for path in doc_paths(base):
            doc = copy.deepcopy(base)
            del get_at(doc, path[:-1])[path[-1]]
            result = outcome(doc)
            if isinstance(result, ConfigError) and not named(path, str(result)):
                unnamed.append((path, str(result)))
    assert not unnamed


# -------------------------------------------------------------------------------- 3. durations, sizes

DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2,
              "gib": 1024**3, "tib": 1024**4}
#: (path, label) of duration and size keys in the rich document that no other key constrains.
DURATION_KEYS = [("spool", "retention"), ("spool", "commit_max_delay"), ("agent", "shutdown_timeout"),
                 ("inputs", "tail", "rotate_wait"), ("outputs", "archive", "retry_after_max"),
                 ("outputs", "pager", "ilm_delete_after"), ("outputs", "pager", "host_down_for")]
SIZE_KEYS = [("spool", "max_bytes"), ("outputs", "archive", "max_bytes"),
             ("outputs", "splunk", "batch_max_bytes")]  # where 0 is allowed too
spaces = st.sampled_from(["", " ", "  "])
decimal = st.one_of(st.integers(0, 10**4).map(str),  # up to 10,000 days: 27 years
                    st.tuples(st.integers(0, 10**4), st.integers(0, 999)).map(lambda t: f"{t[0]}.{t[1]}"))


@st.composite
def duration_spelling(draw: st.DrawFn) -> tuple[Any, float]:
    """(TOML value, seconds) in a documented spelling."""
    kind = draw(st.sampled_from(["int", "float", "unit"]))
    if kind == "int":
        n = draw(st.integers(0, 10**9))  # 31 years
        return n, float(n)
    if kind == "float":
        x = draw(st.floats(0, 1e9, allow_nan=False))
        return x, x
    number, unit = draw(decimal), draw(st.sampled_from(sorted(DURATION_UNITS)))
    return f"{draw(spaces)}{number}{draw(spaces)}{unit}{draw(spaces)}", float(number) * DURATION_UNITS[unit]


@st.composite
def size_spelling(draw: st.DrawFn) -> tuple[Any, int]:
    """(TOML value, bytes) in a documented spelling; whole numbers, so the value is exact."""
    if draw(st.booleans()):
        n = draw(st.integers(0, 2**53))
        return n, n
    unit = draw(st.sampled_from(sorted(SIZE_UNITS)))
    n = draw(st.integers(0, 2**53 // SIZE_UNITS[unit]))
    cased = "".join(c.upper() if draw(st.booleans()) else c for c in unit)
    return f"{draw(spaces)}{n}{draw(spaces)}{cased}{draw(spaces)}", n * SIZE_UNITS[unit]


@SETTINGS
@given(data=st.data(), spelling=duration_spelling())
def test_durations_in_every_documented_spelling(data: st.DataObject,
                                                spelling: tuple[Any, float]) -> None:
    """Seconds as a number, or a number and a unit (ms, s, m, h, d) with optional spaces."""
    raw, seconds = spelling
    path = data.draw(st.sampled_from(DURATION_KEYS))
    doc = copy.deepcopy(BASES["rich"])
    set_at(doc, path, raw)
    got = get_at(load(doc), path)
    assert isinstance(got, Duration) and math.isclose(got, seconds, rel_tol=1e-12, abs_tol=1e-12), (raw, got)


@SETTINGS
@given(data=st.data(), spelling=size_spelling())
def test_sizes_in_every_documented_spelling(data: st.DataObject,
                                            spelling: tuple[Any, int]) -> None:
    """Bytes as an integer, or a number and a unit (b, kb, mb, gb, kib, mib, gib, tib, any case)."""
    raw, n = spelling
    path = data.draw(st.sampled_from(SIZE_KEYS))
    doc = copy.deepcopy(BASES["rich"])
    set_at(doc, path, raw)
    got = get_at(load(doc), path)
    assert isinstance(got, Size) and got == n, (raw, got)


BAD_DURATIONS = [True, -1, -0.001, -math.inf, math.nan, math.inf, "", "s", "5", "5 sec", "5seconds",
                 "1h30m", "-5s", "1e3s", "inf", "nan", "5 s s", "5 us", "9" * 400 + "s", 10**400,
                 [1], {"s": 5}]
BAD_SIZES = [True, 1.5, -1, -(10**400), 10**400, "", "MB", "1 KB/s", "1MiBs", "-1", "1e3", "1.5.2MB",
             "1 PB", "9" * 400, "9" * 400 + "GiB", "20000000 TiB", 2**64, [1], {"b": 1}]


@SETTINGS
@given(data=st.data())
def test_other_duration_and_size_spellings_are_errors(data: st.DataObject) -> None:
    """Negative, non-finite, unitless strings, unknown units: errors naming the key (a NaN sleep
    hangs the hub; an infinite retention overflows the prune loop; a 10**400 overflows float())."""
    doc = copy.deepcopy(BASES["rich"])
    if data.draw(st.booleans()):
        path, raw = data.draw(st.sampled_from(DURATION_KEYS)), data.draw(st.sampled_from(BAD_DURATIONS))
    else:
        path, raw = data.draw(st.sampled_from(SIZE_KEYS)), data.draw(st.sampled_from(BAD_SIZES))
    set_at(doc, path, raw)
    with pytest.raises(ConfigError) as err:
        load(doc)
    assert path[-1] in str(err.value), (raw, str(err.value))


@SETTINGS
@given(data=st.data())
def test_every_loaded_number_is_finite(data: st.DataObject) -> None:
    """A duration or float key given a NaN or an infinity (TOML has both) is an error or, if it
    loads, a finite number: every duration is a sleep, a deadline or a cutoff of some loop."""
    doc = copy.deepcopy(BASES["rich"])
    keys = [k for k in schema_keys(doc) if k.hint in (Duration, float)]
    key = data.draw(st.sampled_from(keys))
    set_at(doc, key.path, data.draw(st.sampled_from([math.nan, math.inf, "9" * 400 + "ms"])))
    result = outcome(doc)
    if isinstance(result, ConfigError):
        assert key.path[-1] in str(result)
    else:
        value = get_at(result, key.path)
        assert math.isfinite(value), (key.path, value)


# -------------------------------------------------------------------------------- 4. duplicated names


@SETTINGS
@given(name=st.sampled_from(["archive", "splunk", "a", "x-1", "out_2"]),
       form=st.sampled_from(["table", "dotted", "inline"]))
def test_a_duplicated_output_name_is_an_error(name: str, form: str) -> None:
    """A second [outputs.NAME] (a table header again, a dotted key before it, a key of [outputs])."""
    text = (ROOT / "packaging" / "agent.toml").read_text()
    text += f"\n[outputs.{name}]\ntype = 'file'\npath = '/tmp/{name}'\n\n"
    if form == "table":
        text += f"[outputs.{name}]\ntype = 'stdout'\n"
    elif form == "dotted":
        text = f"outputs.{name}.type = 'stdout'\n" + text
    else:
        text += f"[outputs]\n{name} = {{type = 'stdout'}}\n"
    with pytest.raises(ConfigError, match=r"^agent.toml: invalid TOML"):
        parse_config(text, "agent.toml", {})


# -------------------------------------------------------------------------------- 5. secrets


@SETTINGS
@given(states=st.fixed_dictionaries({v: st.sampled_from(["set", "set", "unset", "empty"]) for v in ENV_VARS}))
def test_env_in_a_secret_set_unset_or_empty(states: dict[str, str]) -> None:
    """Set: the secret is the value (in its place in the string). Unset: an error naming the variable
    and the key. Empty: a credential that is nothing but it is an error naming the key (docs); one
    with more around it (``Bearer ${API_TOKEN}``) loads."""
    env = {v: {"set": ENV[v], "empty": ""}[s] for v, s in states.items() if s != "unset"}
    result = outcome(BASES["rich"], env)
    unset = [v for v, s in states.items() if s == "unset"]
    empty = [v for v, s in states.items() if s == "empty"]
    if isinstance(result, ConfigError):
        msg = str(result)
        check_no_canary(msg)
        assert unset or empty, msg
        if "environment variable" in msg or not empty:
            assert any(f"{ENV_WHERE[v]}: environment variable {v} is not set" in msg for v in unset), msg
        else:
            assert any(ENV_WHERE[v].split()[0] in msg and ENV_WHERE[v].split()[-1] in msg
                       for v in empty), msg
        return
    assert not unset, states
    check_no_canary(repr(result), str(result))
    splunk = result.outputs["splunk"]
    assert splunk.token.reveal() == env["HEC_TOKEN"]
    assert splunk.headers["X-Api-Key"].reveal() == f"Bearer {env['API_TOKEN']}"
    assert splunk.proxy.reveal() == f"http://shipper:{env['PROXY_PASS']}@proxy.example:3128"
    assert result.inputs["hook"].bearer_token.reveal() == env["WEBHOOK_TOKEN"]
    assert repr(splunk.token) == "Secret(env:HEC_TOKEN)"


FILE_STATES = ["ok", "ok", "missing", "empty", "blank", "directory", "not_utf8"]


@SETTINGS
@given(states=st.fixed_dictionaries({n: st.sampled_from(FILE_STATES) for n in FILE_SECRETS}))
def test_file_secrets_missing_empty_or_unreadable_are_errors_naming_the_key(
        states: dict[str, str]) -> None:
    """Each file: secret readable, missing, empty, blank, a directory or not UTF-8."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        doc = rich_doc(directory)
        for name, state in states.items():
            path = directory / name
            if state == "ok":
                path.write_text(f"{CANARY}-file-{name}\n")
            elif state == "empty":
                path.write_text("")
            elif state == "blank":
                path.write_text(" \n\t\n")
            elif state == "directory":
                path.mkdir()
            elif state == "not_utf8":
                path.write_bytes(CANARY.encode() + b"\xff\xfe")
        result = outcome(doc)
        bad = [n for n, s in states.items() if s != "ok"]
        if not bad:
            assert isinstance(result, AgentConfig)
            check_no_canary(repr(result))
            return
        assert isinstance(result, ConfigError), states
        msg = str(result)
        assert any(FILE_SECRETS[n] in msg for n in bad), msg
        check_no_canary(msg)


def test_cli_check_config_and_status_never_show_a_secret() -> None:
    """What `clawd-agent check-config` and `status` print, on success and on errors."""
    from click.testing import CliRunner

    from agent.cli import cli

    runner = CliRunner()
    with tempfile.TemporaryDirectory() as tmp:
        doc = copy.deepcopy(BASES["rich"])
        doc["agent"]["data_dir"] = tmp
        path = Path(tmp) / "agent.toml"
        path.write_text(render(doc))
        env = dict(ENV)
        ok = runner.invoke(cli, ["check-config", "-c", str(path)], env=env)
        assert ok.exit_code == 0 and ": ok (" in ok.output, ok.output
        for args in (["status"], ["status", "--json"]):
            res = runner.invoke(cli, [*args, "-c", str(path)], env=env)
            assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
            check_no_canary(res.output)
        doc["outputs"]["splunk"]["compression_level"] = "max"
        path.write_text(render(doc))
        bad = runner.invoke(cli, ["check-config", "-c", str(path)], env=env)
        assert bad.exit_code != 0 and "[outputs.splunk] compression_level" in bad.output
        env.pop("API_TOKEN")
        unset = runner.invoke(cli, ["check-config", "-c", str(path)], env=env)
        assert unset.exit_code != 0
        check_no_canary(ok.output, bad.output, unset.output)


# -------------------------------------------------------------------------------- 6. round trip

_ENV_REF = re.compile(r"\$(?=\{[A-Za-z_][A-Za-z0-9_]*\})")


def escape(s: str) -> str:
    """``s`` as agent.toml must spell it to be read as it is: ``$${NAME}`` for each ``${NAME}``."""
    return _ENV_REF.sub("$$", s)


def dump_value(v: Any) -> Any:
    """A loaded value in a form the loader reads back to an equal value."""
    if isinstance(v, Secret):
        return escape(v.reveal())
    if isinstance(v, ListenAddress):
        return str(v)
    if isinstance(v, Duration):
        return float(v)
    if isinstance(v, Size):
        return int(v)
    if isinstance(v, str):
        return escape(v)
    if isinstance(v, list):
        return [dump_value(x) for x in v]
    if isinstance(v, dict):
        return {k: dump_value(x) for k, x in v.items()}
    if dataclasses.is_dataclass(v):
        return {f.name: dump_value(getattr(v, f.name)) for f in dataclasses.fields(v)
                if f.init and getattr(v, f.name) is not None}
    return v


def dump(cfg: AgentConfig) -> dict[str, Any]:
    """The config as a document the loader reads back (the project has no dump of its own)."""
    doc = {name: dump_value(getattr(cfg, name)) for name in SECTIONS}
    doc["inputs"] = {n: dump_value(c) for n, c in cfg.inputs.items()}
    doc["outputs"] = {n: dump_value(c) for n, c in cfg.outputs.items()}
    return doc


free_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=16)
with_refs = st.lists(st.one_of(free_text, st.sampled_from(["${HOME}", "$${X}", "$", "${", "}", "${1}",
                                                          "$$", "${HEC_TOKEN}"])),
                     max_size=4).map("".join)


@SETTINGS
@given(data=st.data())
def test_a_loaded_config_written_back_loads_equal(data: st.DataObject) -> None:
    """Property 6: load, write back in canonical form, load again: equal configs."""
    doc = copy.deepcopy(BASES[data.draw(names)])
    labels = host = None
    if data.draw(st.booleans()):
        labels = data.draw(st.dictionaries(free_text, with_refs, max_size=3))
        host = data.draw(with_refs)
        set_at(doc, ("agent", "labels"), {k: escape(v) for k, v in labels.items()})
        set_at(doc, ("agent", "host_name"), escape(host))
        set_at(doc, ("spool", "retention"), data.draw(duration_spelling())[0])
        set_at(doc, ("spool", "max_bytes"), data.draw(size_spelling())[0])
    cfg = load(doc)
    if labels is not None:
        assert (cfg.agent.labels, cfg.agent.host_name) == (labels, host)
    again = load(dump(cfg))
    assert again == cfg


@SETTINGS
@given(s=with_refs)
def test_a_literal_dollar_brace_survives_the_documented_escape(s: str) -> None:
    """Any string, written with ``$${NAME}`` for each ``${NAME}`` in it, is read as it is."""
    minimal = {"inputs": {"a": {"type": "file", "paths": ["/x"]}},
               "outputs": {"o": {"type": "stdout"}}, "agent": {"environment": escape(s)}}
    assert load(minimal, {}).agent.environment == s


# -------------------------------------------------------------------------------- defects found

MINIMAL = "[inputs.a]\ntype = 'file'\npaths = ['/x']\n[outputs.o]\ntype = 'stdout'\n"


@pytest.mark.parametrize("snippet", [
    "[spool]\nmax_bytes = '" + "9" * 400 + "'\n",
    "[spool]\nmax_bytes = '" + "9" * 400 + "GiB'\n",
    "[spool]\nretention = " + "9" * 400 + "\n",
])
def test_a_huge_size_or_duration_is_a_config_error_not_an_overflow(snippet: str) -> None:
    """Size.parse: int(float('9' * 400)) raises OverflowError; Duration.parse: float(10**400) too."""
    with pytest.raises(ConfigError, match=r"\[spool\] (max_bytes|retention)"):
        parse_config(MINIMAL + snippet, "agent.toml", {})


@pytest.mark.parametrize("size", ["'20000000 TiB'", str(2**64)])
def test_a_size_the_spool_cannot_record_is_a_config_error(size: str) -> None:
    """Spool.record_config (at agent start) writes max_bytes with orjson, which refuses an integer of
    more than 64 bits: check-config said ok and `run` died of "TypeError: Integer exceeds 64-bit
    range"."""
    with pytest.raises(ConfigError, match=r"\[spool\] max_bytes"):
        parse_config(MINIMAL + f"[spool]\nmax_bytes = {size}\n", "agent.toml", {})


@pytest.mark.parametrize("snippet", [
    "[spool]\nretention = nan\n",
    "[spool]\nretention = inf\n",
    "[spool]\nretention = '" + "9" * 400 + "s'\n",
    "[agent]\nheartbeat_interval = nan\n",
    "[outputs.o]\nretry_initial = nan\n",
    "[outputs.o]\nrate_limit_requests = nan\n",
])
def test_a_non_finite_duration_or_rate_is_a_config_error(snippet: str) -> None:
    """`nan` passes every ``< 0`` / ``<= 0`` check; gevent.sleep(nan) then blocks the whole hub, and
    an infinite retention raises OverflowError in Spool.prune (int(inf * 1000)) in the prune loop."""
    text = MINIMAL.replace("[outputs.o]\ntype = 'stdout'\n", "") + snippet
    if "[outputs.o]" in snippet:
        text = text.replace("[outputs.o]\n", "[outputs.o]\ntype = 'stdout'\n")
    else:
        text += "[outputs.o]\ntype = 'stdout'\n"
    with pytest.raises(ConfigError):
        parse_config(text, "agent.toml", {})


@pytest.mark.parametrize("value", ["['file']", "{a = 1}"])
def test_a_type_that_is_not_a_string_is_a_config_error(value: str) -> None:
    """``kind_type not in types`` hashes the value: TypeError for a list or a table."""
    with pytest.raises(ConfigError, match=r"\[inputs.b\]"):
        parse_config(MINIMAL + f"[inputs.b]\ntype = {value}\npaths = ['/y']\n", "agent.toml", {})


@pytest.mark.parametrize(("snippet", "key"), [
    ("[outputs.h]\ntype = 'splunk_hec'\nendpoint = 'https://[::1'\ntoken = 't'\n", "endpoint"),
    ("[outputs.h]\ntype = 'elasticsearch'\nhosts = ['https://[::1']\n", "hosts"),
])
def test_a_malformed_url_error_names_its_key(snippet: str, key: str) -> None:
    """urlsplit's ValueError ("Invalid IPv6 URL") reached the operator without the key's name."""
    with pytest.raises(ConfigError) as err:
        parse_config(MINIMAL + snippet, "agent.toml", {})
    assert key in str(err.value)


@pytest.mark.parametrize("snippet", [
    "[outputs.h]\ntype = 'splunk_hec'\nendpoint = 'https://splunk:99999'\ntoken = 't'\n",
    "[outputs.h]\ntype = 'splunk_hec'\nendpoint = 'https://splunk:http'\ntoken = 't'\n",
    "[outputs.h]\ntype = 'elasticsearch'\nhosts = ['https://es:99999']\n",
])
def test_a_url_with_an_impossible_port_is_a_config_error(snippet: str) -> None:
    """"expected http(s)://host[:port] URLs": a port out of range or not a number passed, and every
    request then failed (urllib3 refuses the URL), retried forever."""
    with pytest.raises(ConfigError, match=r"(endpoint|hosts)"):
        parse_config(MINIMAL + snippet, "agent.toml", {})


@pytest.mark.parametrize("mode", ["rw", "0999", "-1", "7777777"])
def test_a_file_output_mode_that_is_not_an_octal_file_mode_is_a_config_error(mode: str) -> None:
    """As for the unix input's mode: int(mode, 8) failed only in FileOutput.open, retried forever."""
    with pytest.raises(ConfigError, match=r"\[outputs.f\].*mode"):
        parse_config(MINIMAL + f"[outputs.f]\ntype = 'file'\npath = '/tmp/f'\nmode = '{mode}'\n",
                     "agent.toml", {})


@pytest.mark.parametrize("n", [0, -1])
def test_commit_max_events_below_one_is_a_config_error(n: int) -> None:
    """SpoolWriter refuses it ("max_events must be positive") when the agent starts: check-config
    said ok and `run` died with a traceback."""
    with pytest.raises(ConfigError, match=r"\[spool\].*commit_max_events"):
        parse_config(MINIMAL + f"[spool]\ncommit_max_events = {n}\n", "agent.toml", {})


@pytest.mark.parametrize(("rule", "env"), [
    ("{path = 'event_id', style = 'drop'}", {}),
    ("{path = 'resource.path', style = 'hash', hash_salt = '${SALT}'}", {"SALT": ""}),
])
def test_a_per_output_redact_rule_the_redaction_refuses_is_a_config_error(rule: str, env: dict[str, str]
                                                                         ) -> None:
    """docs/transforms.md: naming a fixed-format field in a rule "is a configuration error", and
    `hash` requires a key. In [privacy] both are (compiled at load); in [outputs.<name>.redact] they
    loaded, and the drain's pipeline factory raised at start (compile_redactor): the output loop
    crashed and was restarted, over and over. An empty ${SALT} is such a missing key."""
    with pytest.raises(ConfigError, match=r"\[outputs.o\]"):
        parse_config(MINIMAL + f"[outputs.o.redact]\nrules = [{rule}]\n", "agent.toml", env)


@pytest.mark.parametrize("table", ["/nonexistent/mitre-local.toml", "/"])
def test_an_unreadable_enrichment_table_error_names_agent_toml_and_the_key(table: str) -> None:
    """The table file's ConfigError was re-raised as it was: "/nonexistent/mitre-local.toml: cannot
    read: ...", naming neither the agent.toml that points there nor the key ([enrichment] table)."""
    with pytest.raises(ConfigError, match=r"^agent.toml: \[enrichment\] table"):
        parse_config(MINIMAL + f"[enrichment]\ntable = '{table}'\n", "agent.toml", {})


def test_a_secret_file_that_is_not_utf8_is_an_error_that_quotes_none_of_it(tmp_path: Path) -> None:
    """The codec's own message ("can't decode byte 0xe9 in position 6") quoted a byte of the secret
    and where it sits; the error now says only that the file is not UTF-8 text."""
    secret = tmp_path / "token"
    secret.write_bytes(b"s3cret\xe9tail")
    snippet = (f"[outputs.h]\ntype = 'splunk_hec'\nendpoint = 'https://splunk:8088'\n"
               f"token = 'file:{secret}'\n")
    with pytest.raises(ConfigError) as err:
        parse_config(MINIMAL + snippet, "agent.toml", {})
    msg = str(err.value)
    assert "token" in msg and "not UTF-8" in msg, msg
    assert "0xe9" not in msg and "position" not in msg, msg


@pytest.mark.parametrize(("header", "problem"), [
    ('{X-Tenant = "ok\\r\\nX-Injected: 1"}', "line break"),  # a TOML basic string: CR LF
    ("{X-Tenant = ' leading-space'}", "whitespace"),
    ("{X-Tenant = 'caf\u20ac'}", "Latin-1"),
    ("{'X Tenant:' = 'v'}", "header name"),
    ("{'X-T\u00e9nant' = 'v'}", "header name"),
])
def test_a_header_no_request_could_carry_is_a_config_error_that_hides_its_value(
        header: str, problem: str) -> None:
    """requests (a CR/LF, leading whitespace, a colon in the name) or http.client (a value beyond
    Latin-1, a name beyond ASCII) refused such a header on every request, retried forever, and
    requests' message quotes the value, a secret. Now a load error that names the header, not its
    value."""
    snippet = (f"[outputs.h]\ntype = 'splunk_hec'\nendpoint = 'https://splunk:8088'\ntoken = 't'\n"
               f"headers = {header}\n")
    with pytest.raises(ConfigError) as err:
        parse_config(MINIMAL + snippet, "agent.toml", {})
    msg = str(err.value)
    assert "[outputs.h]" in msg and "headers" in msg and problem in msg, msg
    for secret in ("X-Injected", "leading-space", "caf\u20ac"):
        assert secret not in msg, msg


@pytest.mark.parametrize(("snippet", "key"), [
    ("[outputs.h]\ntype = 'splunk_hec'\nendpoint = 'https://splunk:8088'\ntoken = '${T}'\n", "token"),
    ("[outputs.h]\ntype = 'splunk_hec'\nendpoint = 'https://splunk:8088'\ntoken = ''\n", "token"),
    ("[outputs.e]\ntype = 'elasticsearch'\nhosts = ['https://es:9200']\napi_key = '${T}'\n", "api_key"),
    ("[outputs.e]\ntype = 'elasticsearch'\nhosts = ['https://es:9200']\nusername = 'u'\n"
     "password = '${T}'\n", "password"),
    ("[inputs.hook]\ntype = 'http'\nlisten = '127.0.0.1:0'\nbearer_token = '${T}'\n", "bearer_token"),
    ("[inputs.hook]\ntype = 'http'\nlisten = '127.0.0.1:0'\ncertification_secret = '${T}${U}'\n",
     "certification_secret"),
])
def test_an_empty_credential_is_a_config_error(snippet: str, key: str) -> None:
    """As an empty ``file:`` secret already was. An empty one loaded as "set": the HTTP listener then
    took ``Authorization: Bearer `` with nothing after it, signatures were HMACs under an empty key
    anyone can compute, and a token earned a 401 on every request."""
    with pytest.raises(ConfigError) as err:
        parse_config(MINIMAL + snippet, "agent.toml", {"T": "", "U": ""})
    msg = str(err.value)
    assert f"] {key}: " in msg and "cannot be empty" in msg, msg
    if "${T}${U}" in snippet:
        assert "variables T,U are set but empty" in msg, msg
    elif "${T}" in snippet:
        assert "variable T is set but empty" in msg, msg


@pytest.mark.parametrize("snippet", ["[agent]\nheartbeat_interval = 0\n", "[spool]\nprune_interval = '0s'\n"])
def test_an_interval_of_a_periodic_loop_must_be_more_than_zero(snippet: str) -> None:
    """The heartbeat and retention loops sleep their interval between rounds: at 0 they ran back to
    back, the heartbeat writing the spool's agent state as fast as the loop could."""
    with pytest.raises(ConfigError, match=r"(heartbeat|prune)_interval: expected more than 0"):
        parse_config(MINIMAL + snippet, "agent.toml", {})
