"""Property-based tests of the configuration-to-request paths of the Elasticsearch and Splunk HEC
outputs that the other suites leave out, against the documented contract (docs/outputs/
elasticsearch.md, docs/outputs/splunk_hec.md, docs/configuration.md) and the two mocks.

1. Elastic Cloud ID (``cloud_id``; "an optional ``label:`` and then base64 of
   ``host[:port]$es_uuid$kibana_uuid``; Elasticsearch is ``https://<es_uuid>.<host>:<port, default
   443>``"): every well-formed ID, in either base64 alphabet, padded or not, with or without a label
   or ports, loads and gives exactly that URL; any other string is refused at load with a
   ``ConfigError`` that names ``cloud_id``, or gives a URL whose host is ``<es_uuid>.<host>`` of what
   it decodes to, with a port in range and nothing else in it (no user info, path or query): never
   another exception and never another host.
2. Data stream names (``logs-<dataset>-<namespace>``: dataset and namespace not empty, no ``-``, at
   most 100 characters; the whole name an index name Elasticsearch accepts: lowercase in any script,
   none of ``\\ / * ? " < > | , # :`` or space, at most 255 bytes, and its first backing index
   ``.ds-<name>-<yyyy.MM.dd>-000001`` too, as the mock checks it): a configured dataset/namespace
   loads exactly when the model says the name is valid; and the model is the mock's: with the
   config's checks bypassed, the mock creates the data stream and stores the event exactly when the
   model says the name is one Elasticsearch takes.
3. Routing rules of an Elasticsearch output (agent.toml through ``parse_config`` and the drain's
   ``Renderer``): a rule's ``index`` / ``dataset`` / ``namespace`` is refused at load exactly when the
   index or data stream it names is one Elasticsearch refuses or breaks the naming scheme ("checked
   at load like ``index``"; "for routes too"); otherwise every event's action line names the target
   of the first rule whose ``when`` matches (``%Y %m %d`` from the event's own timestamp), or the
   output's own, and the mock stores each event there.
4. Bootstrap (``bootstrap = true``) for data streams, rollover aliases and dated indices, with and
   without a 403 on the ILM policy's or the template's PUT and an administrator's policy already
   there: ``open`` never raises and delivery goes on; without faults nothing is warned and the mock
   holds exactly ``index_template_body`` / ``ilm_policy_body``; a template never names a policy that
   is not there (ILM would leave its indices in the ERROR step); running it again changes nothing;
   the template and policy are of the form Elasticsearch accepts, the template's pattern covers the
   output's own indices, and ILM can run the policy on the indices the events went to.
5. The HEC envelope (random events, timestamps from 1900 to 2200 with 0-9 fraction digits, config
   and route values): one JSON object with only HEC's keys; ``time`` is the event's timestamp in epoch
   seconds to the millisecond (sub-millisecond digits dropped), absent without a usable timestamp;
   ``host`` / ``source`` / ``sourcetype`` / ``index`` from the route, else the config, else the
   documented defaults; ``fields`` a flat object of strings (static fields plus the chosen event
   values that are present); ``event`` the document. The HEC mock accepts every batch and stores
   each envelope as sent.

The properties run without hypothesis's shrink phase (shrinking 100-character names took minutes
here): a failure prints the example as drawn. At the end: minimal reproductions of the defects these
properties found (they fail until the source is fixed).
"""

from __future__ import annotations

import base64
import datetime
import fnmatch
import json
import re
import socket
import string
import urllib.parse
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import orjson
import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from agent.config import parse_config
from agent.config_loader import ConfigError, load_section
from outputs.base import DeliveryItem, Status
from outputs.elasticsearch import (
    ElasticsearchOutput,
    ElasticsearchOutputConfig,
    ilm_policy_body,
    ilm_policy_name,
    index_template_body,
)
from outputs.mocks.elasticsearch import ElasticsearchMock
from outputs.mocks.server import Fault, MockServer
from outputs.mocks.splunk_hec import HecToken, SplunkHecApp
from outputs.render import Renderer
from outputs.routing import check_routes
from outputs.splunk_hec import EVENT_FIELDS, SOURCETYPES, SplunkHecOutput, SplunkHecOutputConfig

#: No shrink phase: shrinking the 100-character names and the HTTP round trips took minutes on this
#: machine; a failure prints the example as generated, and the end of the file has minimal ones.
SETTINGS: dict[str, Any] = dict(deadline=None, database=None, derandomize=True,
                                phases=(Phase.explicit, Phase.reuse, Phase.generate),
                                suppress_health_check=[HealthCheck.too_slow,
                                                       HealthCheck.data_too_large])
WHERE = "agent.toml: [outputs.es]"
TOKEN = "hec-token-esboot-0001"


@pytest.fixture(scope="module")
def es() -> Iterator[tuple[ElasticsearchMock, MockServer]]:
    app = ElasticsearchMock()
    with MockServer(app) as server:
        yield app, server


@pytest.fixture(scope="module")
def hec() -> Iterator[tuple[SplunkHecApp, MockServer]]:
    app = SplunkHecApp([HecToken(TOKEN)])  # no index allow list: any index name is taken
    with MockServer(app) as server:
        yield app, server


def es_reset(app: ElasticsearchMock, server: MockServer) -> None:
    app.reset()
    server.faults.clear()


def chars(alphabet: str, min_size: int = 0, max_size: int = 10) -> st.SearchStrategy[str]:
    """Strings of ``alphabet`` (lists of its characters: hypothesis 6.155's shrinker fails on
    ``one_of`` of ``text`` strategies with different alphabets)."""
    return st.lists(st.sampled_from(alphabet), min_size=min_size, max_size=max_size).map("".join)



# ============================================================================ 1. Elastic Cloud ID

DNS_LABEL = st.tuples(chars(string.ascii_lowercase + string.digits, 1, 1),
                      chars(string.ascii_lowercase + string.digits + "-", 0, 8),
                      chars(string.ascii_lowercase + string.digits, 0, 1)).map("".join)
CLOUD_HOST = st.lists(DNS_LABEL, min_size=1, max_size=4).map(".".join)
UUIDISH = chars("0123456789abcdef", 6, 32)
PORT = st.integers(1, 65535)
LABEL = chars(string.ascii_letters + string.digits + "-_.: ", max_size=12)


def b64(raw: bytes, alphabet: str, pad: bool) -> str:
    text = (base64.urlsafe_b64encode(raw) if alphabet == "url" else base64.b64encode(raw)).decode()
    return text if pad else text.rstrip("=")


@st.composite
def cloud_ids(draw: Any) -> tuple[str, str]:
    """A well-formed Cloud ID and the URL the docs say it names."""
    host, es_id, kb = draw(CLOUD_HOST), draw(UUIDISH), draw(UUIDISH)
    host_port, es_port = draw(st.none() | PORT), draw(st.none() | PORT)
    text = (host + (f":{host_port}" if host_port else "") + "$" + es_id
            + (f":{es_port}" if es_port else "") + "$" + kb)
    encoded = b64(text.encode(), draw(st.sampled_from(["std", "url"])), draw(st.booleans()))
    label = draw(st.none() | LABEL)
    cid = encoded if label is None else f"{label}:{encoded}"
    return cid, f"https://{es_id}.{host}:{es_port or host_port or 443}"


def load_es(**table: Any) -> ElasticsearchOutputConfig:
    return load_section(ElasticsearchOutputConfig, {"type": "elasticsearch", **table}, WHERE)


@settings(max_examples=60, **SETTINGS)
@given(case=cloud_ids())
def test_a_well_formed_cloud_id_gives_the_documented_url(case: tuple[str, str]) -> None:
    cid, url = case
    cfg = load_es(cloud_id=cid)
    assert ElasticsearchOutput("es", cfg).hosts == [url]


#: Pieces of a decoded Cloud ID: DNS characters, and what a URL reads as something else.
ODD_PIECE = chars("ab.-_:@/ ?#09\u0663\u00e9%")


@st.composite
def odd_cloud_ids(draw: Any) -> tuple[str, str | None]:
    """Any string, or base64 of any text of ``$``-separated pieces (returned too, to judge the URL)."""
    if draw(st.booleans()):
        return draw(st.text(max_size=40)), None
    text = "$".join(draw(st.lists(ODD_PIECE, min_size=1, max_size=4)))
    encoded = b64(text.encode(), draw(st.sampled_from(["std", "url"])), draw(st.booleans()))
    return draw(st.sampled_from(["", "label:", "a:b:"])) + encoded, text


_HOSTNAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")


def check_cloud_url(url: str, text: str | None) -> None:
    """The URL of an accepted Cloud ID names one host and port and nothing else; when the decoded
    text is known, the host is its ``<es_uuid>.<host>`` and the port its own (es, then host, then 443)."""
    u = urllib.parse.urlsplit(url)
    assert u.scheme == "https", url
    assert u.username is None and u.password is None, f"user info in {url!r}"
    assert (u.path, u.query, u.fragment) == ("", "", ""), f"more than a host and port in {url!r}"
    try:
        port = u.port
    except ValueError:
        raise AssertionError(f"no valid port in {url!r}") from None
    assert port is not None and 1 <= port <= 65535, url
    assert u.hostname and _HOSTNAME.match(u.hostname), f"not a host name in {url!r}"
    if text is not None:
        parts = text.split("$")
        host, _, host_port = parts[0].partition(":")
        es_id, _, es_port = parts[1].partition(":")
        assert u.hostname == f"{es_id}.{host}".lower(), (url, text)
        assert port == int(es_port or host_port or "443"), (url, text)


@settings(max_examples=120, **SETTINGS)
@given(case=odd_cloud_ids())
def test_any_cloud_id_is_refused_naming_it_or_names_its_own_host(case: tuple[str, str | None]) -> None:
    cid, text = case
    try:
        cfg = load_es(cloud_id=cid)
    except ConfigError as exc:
        assert "cloud_id" in str(exc), f"refused without saying why: {exc}"
        return
    (url,) = ElasticsearchOutput("es", cfg).hosts
    check_cloud_url(url, text)


# ============================================================================ 2. data stream names

#: Elasticsearch's index name rules (create index API, "Index names must meet the following criteria").
FORBIDDEN = frozenset('\\/*?"<>| ,#:')
#: ``.ds-`` and ``-yyyy.MM.dd-000001`` around a data stream's name make its first backing index.
BACKING_EXTRA = len(".ds-") + len("-2026.01.01-000001")

#: Index name characters: valid ones (1-3 bytes in UTF-8), upper case, and each one Elasticsearch refuses.
NAME_CHARS = "abcxyz0189._-AZ\u00e9\u00c9\u0436\u5b57 *#:,\\/\"?<|+"
PART = st.one_of(
    chars("abcdefxyz0123456789._", 1, 16),
    chars(NAME_CHARS),
    # long parts of 1-3 byte characters: near the 100-character and 255-byte limits
    chars("a\u00e9\u0436\u5b57", 50, 104),
)


@st.composite
def near_limit_parts(draw: Any) -> tuple[str, str]:
    """A dataset and namespace whose data stream name is 225-262 bytes long: around the 255 bytes of
    an index name and the 233 its first backing index leaves."""
    dataset = draw(chars("a\u00e9\u0436\u5b57", 40, 100))
    room = draw(st.integers(225, 262)) - len(f"logs-{dataset}-".encode())
    if room < 1:
        return dataset, "a"
    wide = min(draw(st.integers(0, room // 2)), 100)
    return dataset, ("\u00e9" * wide + "a" * (room - 2 * wide))[:101]


def model_part_ok(part: str) -> bool:
    """ECS ``data_stream.dataset`` / ``namespace``: not empty, no ``-``, at most 100 characters."""
    return bool(part) and "-" not in part and len(part) <= 100


def model_index_ok(name: str, *, stream: bool = False) -> bool:
    """An index (or, ``stream``, a data stream) name Elasticsearch creates; ``%Y %m %d`` count as
    the digits they become."""
    probe = name.replace("%Y", "2026").replace("%m", "01").replace("%d", "01")
    size = len(probe.encode())
    return (bool(probe) and probe == probe.lower() and FORBIDDEN.isdisjoint(probe)
            and probe[0] not in "-_+" and probe not in (".", "..") and size <= 255
            and (not stream or size + BACKING_EXTRA <= 255))


def model_stream_ok(dataset: str, namespace: str) -> bool:
    return (model_part_ok(dataset) and model_part_ok(namespace)
            and model_index_ok(f"logs-{dataset}-{namespace}", stream=True))


def canonical_event(i: int, severity: str = "high", day: int = 1) -> dict[str, Any]:
    return {"schema_version": "2.0.0", "event_id": str(uuid.UUID(int=i + 1)), "event_type": "guard_block",
            "event_category": "file", "timestamp": f"2026-03-{day:02d}T08:00:00.123Z",
            "outcome": "failure", "action": "file_access",
            "decision": {"allowed": False, "severity": severity, "guard": "forbidden_path"}, "n": i}


def es_item(out: ElasticsearchOutput, i: int, route: dict[str, str] | None = None) -> DeliveryItem:
    ev = canonical_event(i)
    item = DeliveryItem(i, ev, orjson.dumps(ev), uuid.UUID(ev["event_id"]).bytes, route=route)
    item.data = out.encode(item)
    return item


def action_index(data: bytes) -> str:
    return str(orjson.loads(data.split(b"\n", 1)[0])["create"]["_index"])


@settings(max_examples=80, **SETTINGS)
@given(parts=st.tuples(PART, PART) | near_limit_parts())
def test_a_dataset_and_namespace_load_exactly_when_their_data_stream_name_is_valid(
        parts: tuple[str, str]) -> None:
    dataset, namespace = parts
    ok = model_stream_ok(dataset, namespace)
    try:
        load_es(hosts=["http://127.0.0.1:9"], data_stream_dataset=dataset, data_stream_namespace=namespace)
    except ConfigError as exc:
        assert not ok, f"a valid data stream name was refused: {exc}"
        assert "data stream" in str(exc) or "index name" in str(exc), str(exc)
        return
    assert ok, f"accepted, but Elasticsearch refuses logs-{dataset}-{namespace} or the scheme breaks"


@settings(max_examples=40, **SETTINGS)
@given(parts=st.tuples(PART, PART) | near_limit_parts())
def test_the_mock_creates_exactly_the_data_streams_the_model_calls_valid(
        es: tuple[ElasticsearchMock, MockServer], parts: tuple[str, str]) -> None:
    """The model above against the mock (the config's own checks bypassed): Elasticsearch's rules are
    the name's (the ``logs-<dataset>-<namespace>`` scheme is ECS's, which Elasticsearch does not
    enforce), and the stream is created and holds the event exactly when the model says it can."""
    dataset, namespace = parts
    app, server = es
    es_reset(app, server)
    name = f"logs-{dataset}-{namespace}"
    cfg = ElasticsearchOutputConfig(hosts=[server.url], format="canonical", data_stream_dataset=dataset,
                                    data_stream_namespace=namespace)
    out = ElasticsearchOutput("es", cfg)
    out.open()
    try:
        batch = [es_item(out, 0)]
        assert action_index(batch[0].data) == name
        outcome = out.send(batch)
    finally:
        out.close()
    if model_index_ok(name, stream=True):
        assert outcome.status is Status.DELIVERED, outcome.reason
        assert name in app.data_streams and str(uuid.UUID(int=1)) in app.docs(name)
    else:
        assert outcome.status is Status.PARTIAL and outcome.failed == batch, outcome.reason
        assert name not in app.data_streams


# ============================================================================ 3. routing rules

SEVERITIES = ("info", "low", "medium", "high", "critical")
ROUTE_INDEX = st.one_of(
    st.sampled_from(["clawd-alerts", "clawd-%Y.%m.%d", "alerts-%Y%m%d", "Clawd", "-x", "a b", ".."]),
    chars(NAME_CHARS, 1),
).filter(lambda s: not s.startswith("logs-"))  # those are data streams by the built-in template


ROUTE_PART = st.one_of(st.sampled_from(["prod", "eu_1", "team-b", "", "Prod"]), PART)


@st.composite
def es_systems(draw: Any) -> dict[str, Any]:
    """An Elasticsearch output (data stream, rollover alias or dated index) with 1-3 rules routing by
    severity to an index, a dataset and/or a namespace."""
    target = draw(st.sampled_from(["stream", "alias", "dated"]))
    table: dict[str, Any] = {}
    if target != "stream":
        table["index"] = "clawd-events" if target == "alias" else "clawd-%Y.%m.%d"
    for key in ("data_stream_dataset", "data_stream_namespace"):
        # with an index these are not the output's target: not checked, but a rule may use them
        if target != "stream" or draw(st.booleans()):
            table[key] = draw(st.sampled_from(["app", "team-a", ""]) if target != "stream"
                              else st.sampled_from(["app", "prod", "x.y"]))
    rules = []
    for _ in range(draw(st.integers(1, 3))):
        keys = draw(st.sampled_from([(), ("index",), ("dataset",), ("namespace",), ("namespace",),
                                     ("dataset", "namespace"), ("index", "namespace")]))
        values = {k: draw(ROUTE_INDEX if k == "index" else ROUTE_PART) for k in keys}
        rules.append((draw(st.sampled_from(SEVERITIES)), values))
    return {"table": table, "rules": rules}


def toml_str(v: str) -> str:
    return json.dumps(v, ensure_ascii=False)


def es_toml(url: str, table: dict[str, Any], rules: list[tuple[str, dict[str, str]]]) -> str:
    lines = ["[agent]", 'data_dir = "/tmp/x"', "[inputs.i]", 'type = "file"',
             'paths = ["/tmp/x/*.jsonl"]', "[outputs.es]", 'type = "elasticsearch"',
             f"hosts = [{toml_str(url)}]", 'format = "canonical"']
    lines += [f"{k} = {toml_str(v)}" for k, v in table.items()]
    for sev, values in rules:
        body = ", ".join(f"{k} = {toml_str(v)}" for k, v in values.items())
        lines += ["[[outputs.es.routes]]", f'when = {{ min_severity = "{sev}" }}', f"set = {{ {body} }}"]
    return "\n".join(lines) + "\n"


def model_target(table: dict[str, Any], route: dict[str, str]) -> tuple[str, bool]:
    """(index or data stream the event goes to before ``%Y %m %d``, whether it is a data stream)."""
    dataset = table.get("data_stream_dataset", "clawdstrike.security")
    namespace = table.get("data_stream_namespace", "default")
    if route.get("index"):
        return route["index"], False
    if route.get("dataset") or route.get("namespace"):
        return f"logs-{route.get('dataset') or dataset}-{route.get('namespace') or namespace}", True
    if table.get("index"):
        return table["index"], False
    return f"logs-{dataset}-{namespace}", True


def model_route_ok(table: dict[str, Any], route: dict[str, str]) -> bool:
    target, stream = model_target(table, route)
    if not stream:
        return model_index_ok(target)
    parts = ((route.get("dataset") or table.get("data_stream_dataset", "clawdstrike.security")),
             (route.get("namespace") or table.get("data_stream_namespace", "default")))
    return all(model_part_ok(p) for p in parts) and model_index_ok(target, stream=True)


@settings(max_examples=120, **SETTINGS)
@given(system=es_systems())
def test_route_values_load_exactly_when_every_target_is_valid(system: dict[str, Any]) -> None:
    """As agent.toml's loading checks them (``parse_config``: the section, then ``check_routes``,
    which asks the receiving output's ``check_route``; the whole of ``parse_config`` is exercised in
    the next test, it costs ~50 ms an example here)."""
    table, rules = system["table"], system["rules"]
    ok = model_route_ok(table, {}) and all(model_route_ok(table, values) for _, values in rules)
    routes = [{"when": {"min_severity": sev}, "set": values} for sev, values in rules]
    try:
        cfg = load_es(hosts=["http://127.0.0.1:9"], format="canonical", **table, routes=routes)
        check_routes({"es": cfg})
    except ValueError as exc:  # ConfigError from the section, ValueError from check_routes
        assert not ok, f"valid route values were refused: {exc}"
        return
    assert ok, f"accepted, but a target is one Elasticsearch refuses or breaks the scheme: {table} {rules}"


@settings(max_examples=25, **SETTINGS)
@given(system=es_systems().filter(
           lambda s: model_route_ok(s["table"], {})
           and all(model_route_ok(s["table"], v) for _, v in s["rules"])),
       severities=st.lists(st.sampled_from(SEVERITIES), min_size=1, max_size=6))
def test_each_event_lands_where_the_first_matching_rule_says(
        es: tuple[ElasticsearchMock, MockServer], system: dict[str, Any], severities: list[str]) -> None:
    app, server = es
    es_reset(app, server)
    table, rules = system["table"], system["rules"]
    config = parse_config(es_toml(server.url, table, rules), "agent.toml")
    renderer = Renderer.from_config("es", config)
    evs = [canonical_event(i, sev, day=1 + i) for i, sev in enumerate(severities)]
    rows = [(i + 1, uuid.UUID(ev["event_id"]).bytes, orjson.dumps(ev)) for i, ev in enumerate(evs)]
    items, filtered, rejected = renderer.render_items(rows)
    assert (len(items), filtered, rejected) == (len(evs), 0, [])
    expected = []
    for ev, item in zip(evs, items, strict=True):
        rank = SEVERITIES.index(ev["decision"]["severity"])
        route = next((v for sev, v in rules if SEVERITIES.index(sev) <= rank), {})
        target, _ = model_target(table, route)
        ts = ev["timestamp"]
        target = target.replace("%Y", ts[0:4]).replace("%m", ts[5:7]).replace("%d", ts[8:10])
        assert action_index(item.data) == target, (ev["decision"], rules)
        expected.append((target, ev["event_id"]))
    out = renderer.output
    assert isinstance(out, ElasticsearchOutput)
    out.open()
    try:
        outcome = out.send(items)
        assert outcome.status is Status.DELIVERED, outcome.reason
    finally:
        out.close()
    for target, event_id in expected:
        assert event_id in app.docs(target), target


# ============================================================================ 4. bootstrap

POLICY_NAME = st.one_of(st.sampled_from(["", "clawdstrike-security", "clawd_logs"]),
                        chars("abz09._-#/", 1, 8).filter(lambda s: not s.startswith((".", "_"))))
#: ``ilm_policy`` when set: often "" (no policy; a classic index is then no rollover alias).
POLICY_SETTING = st.one_of(st.just(""), POLICY_NAME)
TEMPLATE_NAME = st.one_of(st.sampled_from(["clawdstrike-security", "clawd-t"]),
                          chars("abz09-#", 1, 8))
PATTERN_FORBIDDEN = FORBIDDEN - {"*"}


@st.composite
def bootstrap_cases(draw: Any) -> dict[str, Any]:
    target = draw(st.sampled_from(["stream", "alias", "dated"]))
    table: dict[str, Any] = {"bootstrap": True, "format": "canonical"}
    if target == "alias":
        table["index"] = draw(st.sampled_from(["clawd-events", "clawd"]))
    elif target == "dated":
        table["index"] = draw(st.sampled_from(["clawd-%Y.%m.%d", "ev-%Y%m%d"]))
    else:
        table["data_stream_dataset"] = draw(st.sampled_from(["clawdstrike.security", "app"]))
    if draw(st.booleans()):
        table["ilm_policy"] = draw(POLICY_SETTING)
    if draw(st.booleans()):
        table["template_name"] = draw(TEMPLATE_NAME)
    if draw(st.booleans()):
        table["template_priority"] = draw(st.sampled_from([100, 101, 501, 1000]))
    if draw(st.booleans()):
        table["ilm_delete_after"] = draw(st.sampled_from(["1d", "30d", "90m"]))
    # each run of the bootstrap: (403 on the policy's PUT, 403 on the template's PUT)
    runs = draw(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=3))
    return {"table": table, "admin_policy": draw(st.booleans()), "runs": [*runs, (False, False),
                                                                          (False, False)]}


def cluster_state(app: ElasticsearchMock) -> str:
    return json.dumps([app.templates, app.ilm_policies, app.aliases, sorted(app.indices),
                       {k: v.settings for k, v in app.indices.items()}], sort_keys=True, default=str)


def check_template_form(body: dict[str, Any]) -> None:
    """What Elasticsearch's put-index-template checks: patterns are lowercase index names with ``*``
    wildcards, not starting with ``_``; a non-negative priority."""
    patterns = body["index_patterns"]
    assert isinstance(patterns, list) and patterns
    for p in patterns:
        assert p == p.lower() and PATTERN_FORBIDDEN.isdisjoint(p) and not p.startswith("_"), p
    assert isinstance(body["priority"], int) and body["priority"] >= 0


def check_policy_form(policy: dict[str, Any], dated: bool) -> None:
    """ILM: known phases with a ``min_age`` in a time unit; rollover only where it can run."""
    phases = policy["phases"]
    assert set(phases) <= {"hot", "warm", "cold", "frozen", "delete"}
    for phase in phases.values():
        assert re.fullmatch(r"\d+(d|h|m|s|ms|micros|nanos)", phase.get("min_age", "0ms"))
    assert ("rollover" in phases["hot"]["actions"]) is not dated


@settings(max_examples=40, **SETTINGS)
@given(case=bootstrap_cases())
def test_bootstrap_is_idempotent_never_stops_delivery_and_never_names_a_missing_policy(
        es: tuple[ElasticsearchMock, MockServer], case: dict[str, Any]) -> None:
    app, server = es
    es_reset(app, server)
    try:
        cfg = load_es(hosts=[server.url], **case["table"])
    except ConfigError:
        return  # a name refused at load (not exercised here beyond that)
    dated = "%" in cfg.index
    policy = ilm_policy_name(cfg)
    if case["admin_policy"] and policy:
        app.ilm_policies[policy] = {"phases": {"hot": {"actions": {}}}}
    clean = True  # no fault and no warning in any run so far
    faulted_before = True
    for n, (deny_policy, deny_template) in enumerate(case["runs"]):
        faulted = (deny_policy and bool(policy)) or deny_template
        if deny_policy and policy:
            server.faults.add(Fault("status", status=403, path=f"/_ilm/policy/{policy}", count=1))
        if deny_template:
            server.faults.add(Fault("status", status=403, path="/_index_template/", count=1))
        before = cluster_state(app)
        out = ElasticsearchOutput("es", cfg)
        out.open()  # never raises, whatever the cluster answers
        warnings = list(out.bootstrap_warnings)
        server.faults.clear()
        clean = clean and not faulted and not warnings
        for name, template in app.templates.items():
            named = template["template"]["settings"].get("index.lifecycle.name")
            assert named is None or named in app.ilm_policies, f"template {name} names missing {named}"
        if not warnings:
            assert app.templates.get(cfg.template_name) == index_template_body(cfg)
            if policy:
                assert app.ilm_policies.get(policy) == ilm_policy_body(cfg)["policy"]
        if not faulted and not faulted_before:  # the same bootstrap again, against what it left
            assert cluster_state(app) == before, f"run {n} of the bootstrap changed the cluster"
        faulted_before = faulted
        batch = [es_item(out, 10 * n + i) for i in range(2)]
        outcome = out.send(batch)  # delivery goes on whatever the bootstrap did
        assert outcome.status is Status.DELIVERED, outcome.reason
        out.close()
    body = index_template_body(cfg)
    check_template_form(body)
    check_policy_form(ilm_policy_body(cfg)["policy"], dated)
    target = action_index(batch[0].data)
    own = target if target.startswith("logs-") else app.aliases.get(target, target)
    assert any(fnmatch.fnmatchcase(own, p) for p in body["index_patterns"]), \
        f"the template ({body['index_patterns']}) does not apply to the output's own index {own}"
    if clean and policy:  # every index was created under the bootstrapped template
        states = requests.get(f"{server.url}/{target}/_ilm/explain", timeout=10).json()["indices"]
        for index, state in states.items():
            assert state.get("step") != "ERROR", (index, state.get("step_info"))
            assert state.get("policy") == policy, (index, state)


# ============================================================================ 5. the HEC envelope

SHORT_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
#: 1900-01-01 to 2199-12-31, in seconds.
SECONDS = st.integers(-2_208_988_800, 7_258_118_399)


@st.composite
def timestamps(draw: Any) -> tuple[Any, int | None]:
    """(the event's ``timestamp``, its epoch milliseconds or None when HEC should get no time)."""
    kind = draw(st.sampled_from(["canonical"] * 6 + ["missing", "number", "junk"]))
    if kind == "missing":
        return None, None
    if kind == "number":
        return draw(st.integers(0, 2**40)), None
    if kind == "junk":
        return draw(st.sampled_from(["", "yesterday", "2026-01-02 03:04:05Z",
                                     "2026-01-02T03:04:05+01:00"])), None
    sec = draw(SECONDS)
    digits = draw(st.text(alphabet="0123456789", max_size=9))
    when = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(seconds=sec)
    ts = when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{digits}" if digits else "") + "Z"
    return ts, sec * 1000 + int((digits + "000")[:3])


def field_value() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.just(""), SHORT_TEXT, st.integers(-5, 5))


@st.composite
def hec_events(draw: Any, i: int) -> tuple[dict[str, Any], int | None]:
    ts, ms = draw(timestamps())
    ev: dict[str, Any] = {"event_id": str(uuid.UUID(int=i + 1)), "n": i}
    if ts is not None:
        ev["timestamp"] = ts
    decision = {k: v for k in ("severity", "guard") if (v := draw(field_value())) is not None}
    if draw(st.booleans()):
        ev["decision"] = decision
    for key in ("event_type", "outcome", "action"):
        if (v := draw(field_value())) is not None:
            ev[key] = v
    if draw(st.booleans()):
        ev["agent"] = {"id": draw(field_value())}
    if draw(st.booleans()):
        ev["observer"] = {"host_name": draw(st.one_of(SHORT_TEXT, st.integers(-9, 9)))}
    return ev, ms


@st.composite
def hec_cases(draw: Any) -> dict[str, Any]:
    table: dict[str, Any] = {"type": "splunk_hec", "token": TOKEN, "compression": "gzip"}
    for key in ("index", "source", "sourcetype", "host"):
        if draw(st.booleans()):
            table[key] = draw(SHORT_TEXT)
    if draw(st.booleans()):
        table["indexed_fields"] = draw(st.dictionaries(SHORT_TEXT, SHORT_TEXT, max_size=3))
    if draw(st.booleans()):
        table["event_fields"] = draw(st.lists(st.sampled_from(sorted(EVENT_FIELDS)), unique=True))
    n = draw(st.integers(1, 6))
    events = [draw(hec_events(i)) for i in range(n)]
    routes = [draw(st.none() | st.dictionaries(st.sampled_from(["index", "sourcetype", "source", "host"]),
                                               SHORT_TEXT, max_size=4)) for _ in range(n)]
    return {"table": table, "events": events, "routes": routes}


def model_fields(cfg: SplunkHecOutputConfig, ev: dict[str, Any]) -> dict[str, str]:
    """Static indexed fields, then each chosen event value that is present (docs: "Values that are
    absent are left out"), as strings."""
    paths = {"severity": ("decision", "severity"), "guard": ("decision", "guard"),
             "event_type": ("event_type",), "outcome": ("outcome",), "action": ("action",),
             "agent_id": ("agent", "id")}
    out = dict(cfg.indexed_fields)
    for name in cfg.event_fields:
        value: Any = ev
        for key in paths[name]:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None and value != "":
            out[name] = str(value)
    return out


@settings(max_examples=50, **SETTINGS)
@given(case=hec_cases())
def test_every_hec_envelope_is_valid_and_says_what_the_event_and_config_say(
        hec: tuple[SplunkHecApp, MockServer], case: dict[str, Any]) -> None:
    app, server = hec
    app.reset()
    table = {**case["table"], "endpoint": server.url}
    cfg = load_section(SplunkHecOutputConfig, table, "agent.toml: [outputs.hec]")
    out = SplunkHecOutput("hec", cfg)
    out.open()
    batch, envelopes = [], []
    try:
        for (ev, ms), route in zip(case["events"], case["routes"], strict=True):
            item = DeliveryItem(ev["n"], ev, orjson.dumps(ev), route=route)
            item.data = out.encode(item)
            batch.append(item)
            env = json.loads(item.data, parse_float=Decimal)
            envelopes.append(json.loads(item.data))
            assert isinstance(env, dict)
            assert set(env) <= {"time", "host", "source", "sourcetype", "index", "event", "fields"}
            if ms is None:
                assert "time" not in env, ev.get("timestamp")
            else:
                assert Decimal(env["time"]) * 1000 == ms, (ev["timestamp"], env["time"])
            r = route or {}
            observer = ev.get("observer", {}).get("host_name")
            default_host = observer if isinstance(observer, str) and observer else socket.gethostname()
            assert env["host"] == (r.get("host") or cfg.host or default_host)
            assert env["source"] == (r.get("source") or cfg.source)
            assert env["sourcetype"] == (r.get("sourcetype") or cfg.sourcetype or SOURCETYPES[cfg.format])
            assert env.get("index", "") == (r.get("index") or cfg.index)
            fields = env.get("fields", {})
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
            assert fields == model_fields(cfg, ev)
            assert "fields" in env or not fields
            assert env["event"] == json.loads(orjson.dumps(ev), parse_float=Decimal)
        outcome = out.send(batch)
        assert outcome.status is Status.DELIVERED, outcome.reason
    finally:
        out.close()
    assert len(app.events) == len(envelopes)
    for stored, sent in zip(app.events, envelopes, strict=True):
        assert stored == {**sent, "index": sent.get("index", "main")}  # the token's default index


# ============================================================================ the defects found


@pytest.mark.parametrize("decoded", [
    "a@evil.example$es$kb",  # "https://es.a@evil.example:443": the request goes to evil.example
    "host$es@evil.example$kb",
    "host.example:99999$es$kb",  # a port out of range, refused only when a request is made
    "host.example:\u0663\u0664\u0665$es$kb",  # Arabic-Indic digits pass str.isdigit()
    ":9243$es$kb",  # an empty host once the port is cut off: "https://es.:9243"
    "host.example$:9243$kb",  # an empty es_uuid: "https://.host.example:9243"
    "host.example/x$es$kb",  # a path in the "host"
])
def test_a_cloud_id_that_decodes_to_no_single_host_is_refused_at_load(decoded: str) -> None:
    """``decode_cloud_id`` checked only that the first two pieces were not empty and that the port
    was ``str.isdigit()``, then pasted them into ``https://<es>.<host>:<port>``: user info, a path,
    an empty label or a bad port made a URL naming another host, or none, accepted at load."""
    cid = "label:" + base64.b64encode(decoded.encode()).decode()
    try:
        cfg = load_es(cloud_id=cid)
    except ConfigError as exc:
        assert "cloud_id" in str(exc)
        return
    check_cloud_url(ElasticsearchOutput("es", cfg).hosts[0], decoded)


def test_a_cloud_id_with_a_character_outside_ascii_is_refused_naming_cloud_id() -> None:
    """``base64.b64decode`` raises a plain ``ValueError`` ("string argument should contain only ASCII
    characters") for a non-ASCII str, which the except clause (binascii.Error) let through: the
    operator read "[outputs.es]: string argument should contain only ASCII characters"."""
    cid = "label:\u00e9" + base64.b64encode(b"host.example$es$kb").decode()
    with pytest.raises(ConfigError, match="cloud_id"):
        load_es(cloud_id=cid)


def test_a_data_stream_whose_first_backing_index_name_is_too_long_is_refused_at_load() -> None:
    """``logs-<100 x e-acute>-<20 x e-acute>`` is 246 bytes: under 255, so it loaded, but its first
    backing index ``.ds-...-2026.01.01-000001`` is 268 bytes and Elasticsearch (and the mock,
    tests/mocks/test_es_mock_rules.py) refuses to create it: every event of the output is refused."""
    with pytest.raises(ConfigError, match=r"data stream|too long|255"):
        load_es(hosts=["http://127.0.0.1:9"], data_stream_dataset="\u00e9" * 100,
                data_stream_namespace="\u00e9" * 20)


def test_a_route_namespace_with_an_unchecked_dataset_is_refused_at_load() -> None:
    """With ``index`` set the output's own ``data_stream_dataset`` is not its target, so it is not
    checked; a rule that sets only ``namespace`` then builds ``logs-<that dataset>-<namespace>`` from
    it unchecked: ``logs-team-a-prod``, whose ``-`` breaks the naming scheme the docs promise to check
    "for routes too" (dataset ``team``, namespace ``a-prod`` to anything that reads the name)."""
    cfg = load_es(hosts=["http://127.0.0.1:9"], index="clawd-events", data_stream_dataset="team-a")
    with pytest.raises(ValueError, match="dataset"):
        cfg.check_route({"namespace": "prod"})


def test_an_ilm_policy_name_holding_a_hash_is_refused_or_bootstrapped_under_that_name(
        es: tuple[ElasticsearchMock, MockServer]) -> None:
    """The bootstrap pastes ``ilm_policy`` into the URL path unescaped: ``pol#1`` is sent as
    ``PUT /_ilm/policy/pol`` (``#1`` is a fragment, never sent), which succeeds, so no warning; the
    template names ``pol#1``, which does not exist, and ILM leaves every index in the ERROR step,
    exactly what the bootstrap promises never to do (docs/outputs/elasticsearch.md)."""
    app, server = es
    es_reset(app, server)
    try:
        cfg = load_es(hosts=[server.url], bootstrap=True, format="canonical", ilm_policy="pol#1")
    except ConfigError:
        return
    out = ElasticsearchOutput("es", cfg)
    out.open()
    try:
        assert out.bootstrap_warnings or "pol#1" in app.ilm_policies, list(app.ilm_policies)
    finally:
        out.close()


def test_the_template_of_a_classic_index_without_ilm_policy_applies_to_that_index(
        es: tuple[ElasticsearchMock, MockServer]) -> None:
    """With ``ilm_policy = ""`` an undated ``index`` is no rollover alias: nothing makes
    ``<index>-000001``, and the first event creates the plain index ``<index>``. The bootstrapped
    template's pattern was ``<index>-*`` (a rollover alias's), which does not match it, so none of
    its ECS mappings applied: an ``ip`` field took any string, ``@timestamp`` was whatever the first
    document made it (docs/outputs/elasticsearch.md: "the pattern of its own indices")."""
    app, server = es
    es_reset(app, server)
    cfg = load_es(hosts=[server.url], bootstrap=True, format="canonical", index="clawd-events",
                  ilm_policy="")
    out = ElasticsearchOutput("es", cfg)
    out.open()
    try:
        assert out.bootstrap_warnings == []
        assert out.send([es_item(out, 0)]).status is Status.DELIVERED
        mapping = app.indices["clawd-events"].mapping
    finally:
        out.close()
    assert mapping.get("destination.ip") == "ip", "the bootstrapped template did not apply"


@pytest.mark.parametrize(("timestamp", "seconds"), [
    ("1969-12-31T23:59:59.100Z", "-0.900"),
    ("1969-12-31T23:59:59.999Z", "-0.001"),
    ("1969-07-20T20:17:40.5Z", "-14182939.500"),
])
def test_hec_time_before_1970_is_the_events_time(timestamp: str, seconds: str) -> None:
    """``b"%d.%03d" % divmod(ms, 1000)`` floors: -900 ms became "-1.100" (-1.1 s) and -1 ms "-1.999".
    Canonical events may be that old (``normalize_timestamp`` takes negative epoch milliseconds)."""
    cfg = load_section(SplunkHecOutputConfig, {"type": "splunk_hec", "endpoint": "http://127.0.0.1:9",
                                               "token": TOKEN}, "agent.toml: [outputs.hec]")
    ev = {"event_id": str(uuid.UUID(int=1)), "timestamp": timestamp}
    data = SplunkHecOutput("hec", cfg).encode(DeliveryItem(1, ev, orjson.dumps(ev)))
    assert json.loads(data, parse_float=Decimal)["time"] == Decimal(seconds)
