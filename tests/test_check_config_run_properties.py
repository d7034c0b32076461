"""``clawd-agent check-config`` against ``clawd-agent run``: the same configs must pass both.

The packaged unit runs check-config as ``ExecStartPre`` before ``run`` (packaging/systemd), and
operators run it in CI or a package's postinst before a restart: a config it accepts that then fails
at start, or one it refuses that would run, is an outage. Configs are derived from the three documents
tests/test_config_properties.py starts from (its rich document with every input and output type,
packaging/agent.toml and docs/examples/agent.toml; its generators are imported, not copied), moved
into a temporary directory and onto loopback, then mutated to valid-but-unusual values. For each:

1. differential: ``check-config`` (CliRunner) exits 0 iff the agent starts the way ``run`` starts it
   (``Supervisor(load_config(path)).start()``, then ``shutdown()``); when check-config refuses, ``run``
   refuses at load with the same message (so it names the same key). Mutations that only the host's
   state at start can refuse (a ``data_dir`` that is a file, a port another process holds) are
   outside check-config's documented scope (docs/configuration.md: it "validates a file"; the CLI
   help: unknown keys, wrong types, unset ${ENV}, unreadable ``file:`` secrets): for those only the
   start is checked to refuse, so the model stays honest. Failures documented to
   happen when an output opens (a missing ``ca_file``, a proxy URL without a scheme:
   docs/outputs/http.md) let the start succeed, and check-config accept, by design.
2. check-config has no side effect: no file or directory under the example's directory is created,
   removed or modified (spool, ``data_dir``, sockets, output files), no socket is created while it
   runs, and every TCP port of the config can be bound right after it.

At the end: minimal reproductions of the disagreements found and fixed (each failed before): listener
settings that no host can start (an empty or over-long Unix socket path, two Unix inputs on one path,
two TCP listeners on one address, a wildcard one included) and a Unix socket ``group`` the host lacks
passed check-config and killed ``run`` at start with a traceback naming no key. The group is now
resolved at load, like a ``file:`` secret.

``[agent] offload`` is forced off: the helper process it starts costs ~1 s per example and no config
key of this module decides whether it starts.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.cli import cli
from agent.config import load_config
from agent.config_loader import ConfigError
from agent.supervisor import Supervisor
from tests.test_config_properties import ENV, base_documents, render, write_secret_files

SETTINGS = settings(max_examples=80, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
HTTP_OUTPUTS = ("splunk_hec", "elasticsearch")
#: Longest AF_UNIX path on Linux (sun_path is 108 bytes with its NUL).
SUN_PATH_MAX = 107

#: The base documents (filled once per module by ``_bases``; a global so Hypothesis does not print them).
BASES: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module", autouse=True)
def _bases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The three base documents, with their secret files in a module-wide directory."""
    secrets = tmp_path_factory.mktemp("secrets")
    write_secret_files(secrets)
    BASES.update(base_documents(secrets))
    yield
    BASES.clear()


# -------------------------------------------------------------------------------- the example's world


def free_port() -> int:
    """A loopback TCP port nobody listens on (the kernel's pick, released at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class World:
    """One example's directory, the sockets the test holds, and what its mutations expect."""

    root: Path
    held: list[socket.socket] = field(default_factory=list)
    #: Mutations whose refusal depends on the host's state at start, not on the file.
    host: list[str] = field(default_factory=list)
    closed_port: int = 0

    def close(self) -> None:
        for s in self.held:
            s.close()


def localize(doc: dict[str, Any], world: World) -> dict[str, Any]:
    """``doc`` with every path under the example's directory, every listener on a free loopback port,
    every destination a closed loopback port (health checks off: nothing is sent), offload off."""
    doc = copy.deepcopy(doc)
    root = world.root
    doc.setdefault("agent", {}).update(data_dir=str(root / "data"), offload=False)
    doc.setdefault("spool", {})["path"] = ""
    doc.setdefault("metrics", {})["listen"] = f"127.0.0.1:{free_port()}"
    for name, inp in doc["inputs"].items():
        if inp["type"] == "file":
            inp["paths"] = [str(root / "in" / name / "*.jsonl")]
        elif inp["type"] == "unix":
            inp["path"] = str(root / "run" / f"{name}.sock")
            inp.pop("group", None)  # "clawd" exists on no test host; the group is a mutation below
        else:
            inp["listen"] = f"127.0.0.1:{free_port()}"
    dest = f"http://127.0.0.1:{world.closed_port}"
    for name, out in doc["outputs"].items():
        if out["type"] == "file":
            out["path"] = str(root / "out" / f"{name}.jsonl")
        elif out["type"] == "splunk_hec":
            out["endpoint"] = dest
        elif out["type"] == "elasticsearch":
            out.pop("cloud_id", None)
            out["hosts"] = [dest]
        if out["type"] in HTTP_OUTPUTS:
            out["healthcheck_interval"] = 0
            if "proxy" in out:
                out["proxy"] = f"http://shipper:${{PROXY_PASS}}@127.0.0.1:{world.closed_port}"
    return doc


def _input(doc: dict[str, Any], kind: str, world: World, name: str) -> dict[str, Any]:
    """The first input of ``kind``, added (on loopback, under the example's directory) if none."""
    for inp in doc["inputs"].values():
        if inp["type"] == kind:
            return inp
    table: dict[str, Any] = {"type": kind}
    if kind == "http":
        table["listen"] = f"127.0.0.1:{free_port()}"
    elif kind == "unix":
        table["path"] = str(world.root / "run" / f"{name}.sock")
    doc["inputs"][name] = table
    return table


def _file_output(doc: dict[str, Any]) -> dict[str, Any]:
    return next(o for o in doc["outputs"].values() if o["type"] == "file")


def _http_output(doc: dict[str, Any], world: World) -> dict[str, Any]:
    for out in doc["outputs"].values():
        if out["type"] in HTTP_OUTPUTS:
            return out
    table = {"type": "splunk_hec", "endpoint": f"http://127.0.0.1:{world.closed_port}", "token": "t",
             "healthcheck_interval": 0}
    doc["outputs"]["hec"] = table
    return table


# -------------------------------------------------------------------------------- mutations
#
# Each returns the mutated document. "valid": both must take it; "load": both must refuse it (at
# load); "static": decided by the file alone, so the two must agree; "host": the host's state at
# start refuses it (outside check-config's documented scope).

Mutation = Callable[[dict[str, Any], World], None]
MUTATIONS: dict[str, tuple[str, Mutation]] = {}


def mutation(kind: str) -> Callable[[Mutation], Mutation]:
    def register(fn: Mutation) -> Mutation:
        MUTATIONS[fn.__name__] = (kind, fn)
        return fn
    return register


@mutation("valid")
def tail_paths_that_do_not_exist(doc: dict[str, Any], world: World) -> None:
    """A glob under directories not made yet: a scan picks them up later."""
    _input(doc, "file", world, "tailx")["paths"] = [str(world.root / "later" / "x" / "*" / "a.jsonl")]


@mutation("valid")
def tail_paths_overlapping_another_input(doc: dict[str, Any], world: World) -> None:
    first = _input(doc, "file", world, "tailx")
    doc["inputs"]["overlap"] = {"type": "file", "paths": [*first["paths"], str(world.root / "in" / "**")],
                                "exclude": ["*.gz", "*.[0-9]"], "start_at": "end"}


@mutation("valid")
def odd_globs(doc: dict[str, Any], world: World) -> None:
    _input(doc, "file", world, "tailx")["paths"] = [str(world.root / "in" / "[abc" / "*.json?"),
                                                    str(world.root / "in" / "[!x]*")]


@mutation("valid")
def output_in_a_deep_missing_directory(doc: dict[str, Any], world: World) -> None:
    _file_output(doc)["path"] = str(world.root / "o" / "p" / "q" / "events.jsonl")


@mutation("valid")
def state_in_missing_directories(doc: dict[str, Any], world: World) -> None:
    doc["agent"]["data_dir"] = str(world.root / "deep" / "state")
    doc["spool"]["path"] = str(world.root / "elsewhere" / "s.db")


@mutation("valid")
def ephemeral_ports(doc: dict[str, Any], world: World) -> None:
    """Port 0 twice is no conflict: each bind gets its own port."""
    doc["metrics"]["listen"] = "127.0.0.1:0"
    _input(doc, "http", world, "hookx")["listen"] = "127.0.0.1:0"


@mutation("valid")
def disabled_metrics_on_an_inputs_address(doc: dict[str, Any], world: World) -> None:
    """A disabled metrics server binds nothing: its listen may equal an input's."""
    doc["metrics"]["enabled"] = False
    doc["metrics"]["listen"] = _input(doc, "http", world, "hookx")["listen"]


@mutation("valid")
def unix_socket_in_a_missing_directory_near_the_length_limit(doc: dict[str, Any], world: World) -> None:
    """The longest path whose temporary name (``<path>.<pid>.tmp``, pid up to 7 digits) still fits."""
    directory = str(world.root / "sock" / "dir")
    limit = SUN_PATH_MAX - len(".4194304.tmp")
    _input(doc, "unix", world, "sockx")["path"] = directory + "/" + "s" * (limit - len(directory) - 1)


@mutation("valid")
def proxy_and_tls_files_checked_when_the_output_opens(doc: dict[str, Any], world: World) -> None:
    """docs/outputs/http.md: a proxy without a scheme and missing TLS files are refused when the
    output opens (retried, shown in status), not at start."""
    out = _http_output(doc, world)
    out.update(proxy="proxy.corp:3128", ca_file=str(world.root / "missing-ca.pem"))


@mutation("load")
def unknown_output_type(doc: dict[str, Any], world: World) -> None:
    doc["outputs"]["kafka"] = {"type": "kafka"}


@mutation("load")
def route_to_a_missing_output(doc: dict[str, Any], world: World) -> None:
    _file_output(doc)["routes"] = [{"when": {"denied_only": True}, "to": "nowhere"}]


@mutation("load")
def privacy_regex_that_does_not_compile(doc: dict[str, Any], world: World) -> None:
    doc.setdefault("privacy", {})["rules"] = [{"pattern": "token=(", "style": "replace"}]


@mutation("load")
def unreadable_file_secret(doc: dict[str, Any], world: World) -> None:
    _input(doc, "http", world, "hookx")["bearer_token"] = f"file:{world.root / 'no-such-secret'}"


@mutation("static")
def unix_socket_path_empty(doc: dict[str, Any], world: World) -> None:
    _input(doc, "unix", world, "sockx")["path"] = ""


@mutation("static")
def unix_socket_path_too_long(doc: dict[str, Any], world: World) -> None:
    directory = str(world.root / "sock")
    _input(doc, "unix", world, "sockx")["path"] = directory + "/" + "s" * (SUN_PATH_MAX - len(directory))


@mutation("static")
def two_unix_inputs_on_one_path(doc: dict[str, Any], world: World) -> None:
    path = _input(doc, "unix", world, "sockx")["path"]
    doc["inputs"]["sock2"] = {"type": "unix", "path": path}


@mutation("static")
def http_input_on_the_metrics_address(doc: dict[str, Any], world: World) -> None:
    doc["metrics"]["enabled"] = True
    _input(doc, "http", world, "hookx")["listen"] = doc["metrics"]["listen"]


@mutation("static")
def two_http_inputs_on_one_address(doc: dict[str, Any], world: World) -> None:
    listen = _input(doc, "http", world, "hookx")["listen"]
    doc["inputs"]["hook2"] = {"type": "http", "listen": listen}


@mutation("host")
def data_dir_is_a_file(doc: dict[str, Any], world: World) -> None:
    (world.root / "state-file").write_text("not a directory\n")
    doc["agent"]["data_dir"] = str(world.root / "state-file")
    doc["spool"]["path"] = ""


@mutation("host")
def metrics_port_held_by_another_process(doc: dict[str, Any], world: World) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    world.held.append(holder)
    doc["metrics"].update(enabled=True, listen=f"127.0.0.1:{holder.getsockname()[1]}")


@mutation("static")
def unix_socket_group_the_host_lacks(doc: dict[str, Any], world: World) -> None:
    """Resolved at load, like a ``file:`` secret (the host's, but check-config runs on that host)."""
    _input(doc, "unix", world, "sockx")["group"] = "clawd-no-such-group"


@mutation("static")
def http_input_on_the_wildcard_of_the_metrics_port(doc: dict[str, Any], world: World) -> None:
    doc["metrics"]["enabled"] = True
    port = doc["metrics"]["listen"].rpartition(":")[2]
    _input(doc, "http", world, "hookx")["listen"] = f"0.0.0.0:{port}"


# -------------------------------------------------------------------------------- the two sides


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root`` with its mode, size and mtime (ns)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[p] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


class _NoSockets(Exception):
    """Raised when check-config creates a socket or resolves a name."""


@contextlib.contextmanager
def no_network(calls: list[str]) -> Iterator[None]:
    """Every way this code base makes a socket or resolves a name, recorded and refused."""
    def refuse(what: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(what)
            raise _NoSockets(what)
        return call

    with contextlib.ExitStack() as stack:
        for target in ("socket.socket", "socket.create_connection", "socket.create_server",
                       "socket.getaddrinfo", "gevent.socket.socket", "gevent.socket.create_connection"):
            stack.enter_context(mock.patch(target, side_effect=refuse(target)))
        yield


def tcp_ports(doc: dict[str, Any]) -> list[int]:
    """The loopback ports the config listens on (non-zero ones)."""
    listens = [doc["metrics"]["listen"]]
    listens += [i["listen"] for i in doc["inputs"].values() if i["type"] == "http"]
    return [int(x.rpartition(":")[2]) for x in listens if not x.endswith(":0")]


def check_config(path: Path, world: World, doc: dict[str, Any]) -> tuple[int, str]:
    """Run check-config and verify property 2 on the way; its exit code and output."""
    before = snapshot(world.root)
    calls: list[str] = []
    with no_network(calls):
        res = CliRunner().invoke(cli, ["check-config", "-c", str(path)])
    assert not calls, f"check-config made a socket or resolved a name: {calls}"
    assert not isinstance(res.exception, _NoSockets), res.output
    assert snapshot(world.root) == before, "check-config created, removed or changed a file"
    held = {s.getsockname()[1] for s in world.held}
    for port in set(tcp_ports(doc)) - held:
        with socket.socket() as s:  # a listener check-config left open would refuse this bind
            s.bind(("127.0.0.1", port))
    assert res.exit_code in (0, 1), (res.exit_code, res.output, res.exception)
    return res.exit_code, res.output


def start_like_run(path: Path) -> str | None:
    """``run``'s start: load, Supervisor.start(), then shutdown. None when it started, else the error."""
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        return f"load: {exc}"
    sup = Supervisor(cfg)
    try:
        sup.start()
    except Exception as exc:
        return f"start: {type(exc).__name__}: {exc}"
    finally:
        sup.shutdown()
    return None


def compare(doc: dict[str, Any], world: World, host: bool) -> str:
    """Property 1 (and, via ``check_config``, property 2) for one rendered document; what happened."""
    path = world.root / "agent.toml"
    path.write_text(render(doc))
    with mock.patch.dict(os.environ, ENV):
        code, output = check_config(path, world, doc)
        refused = start_like_run(path)
    label = (f"check-config {'ok' if code == 0 else 'refused'}, run "
             f"{'started' if refused is None else refused.partition(':')[0] + ' refused'}")
    if host:
        assert refused is not None, "the host-state mutation did not refuse the start (test model)"
        return label + " (host state)"
    assert (code == 0) == (refused is None), (
        f"check-config exit {code} ({output.strip()}) but run's start "
        f"{'succeeded' if refused is None else 'failed: ' + refused}")
    if refused is not None:  # both refused: at load, with the message check-config printed
        assert refused.startswith("load: "), refused
        assert refused[len("load: "):] in output, (refused, output)
    return label


@contextlib.contextmanager
def new_world() -> Iterator[World]:
    with tempfile.TemporaryDirectory(prefix="ccr") as d:
        world = World(root=Path(d), closed_port=free_port())
        try:
            yield world
        finally:
            world.close()


# -------------------------------------------------------------------------------- properties


def test_the_localized_base_documents_pass_both() -> None:
    """The starting points: each base document, moved here, passes check-config and starts."""
    for name in sorted(BASES):
        with new_world() as world:
            compare(localize(BASES[name], world), world, host=False)


VALID = sorted(n for n, (kind, _) in MUTATIONS.items() if kind == "valid")
REFUSING = sorted(n for n, (kind, _) in MUTATIONS.items() if kind != "valid")


@SETTINGS
@given(base=st.sampled_from(["rich", "packaging", "example"]),
       valid=st.lists(st.sampled_from(VALID), max_size=3, unique=True),
       refusing=st.one_of(st.none(), st.sampled_from(REFUSING)))
def test_check_config_accepts_exactly_what_run_starts(base: str, valid: list[str], refusing: str | None
                                                      ) -> None:
    """Property 1 and 2 over mutated documents: valid-but-unusual values, and at most one mutation
    that should refuse the config (so about half the examples really start the agent)."""
    names = valid if refusing is None else [*valid, refusing]
    with new_world() as world:
        doc = localize(BASES[base], world)
        for name in sorted(names, key=lambda n: MUTATIONS[n][0] == "host"):  # last: none undoes them
            MUTATIONS[name][1](doc, world)
        event(compare(doc, world, host=any(MUTATIONS[n][0] == "host" for n in names)))


# -------------------------------------------------------------------------------- defects found

STATIC = sorted(n for n, (kind, _) in MUTATIONS.items() if kind == "static")


@pytest.mark.parametrize("name", STATIC)
def test_a_listener_no_host_can_start_is_refused_by_check_config(name: str) -> None:
    """Each passed check-config and killed ``run`` at start with a traceback naming no key:
    FileNotFoundError ('.<pid>.tmp' -> ''), OSError 'AF_UNIX path too long' (the socket is bound as
    ``<path>.<pid>.tmp``, 12 bytes longer at most), RuntimeError '... is in use by another process'
    (the agent's own first input), OSError 'Address already in use' (its own other listener)."""
    with new_world() as world:
        doc = localize(BASES["packaging"], world)
        MUTATIONS[name][1](doc, world)
        compare(doc, world, host=False)
        with mock.patch.dict(os.environ, ENV):
            res = CliRunner().invoke(cli, ["check-config", "-c", str(world.root / "agent.toml")])
    key = "listen" if "http" in name else "group" if "group" in name else "path"
    assert re.search(rf"\[inputs\.[\w-]+\]:? {key}:", res.output), res.output  # names the key
