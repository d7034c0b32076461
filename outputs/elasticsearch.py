"""Output ``elasticsearch``: the ``_bulk`` API with ``create`` and a deterministic ``_id``.

Why ``create`` + ``_id = event_id``: a retry after a lost response must never index an event twice.
Elasticsearch answers a second ``create`` of the same ``_id`` with a per-item 409
``version_conflict_engine_exception``, which this output counts as delivered ("already indexed").
Data streams accept only ``create`` anyway (``op_type`` must be ``create``; docs-bulk.html, and the
``_bulk`` operation description in ../shared/vendor-specs/elasticsearch). Caveat: ``_id`` uniqueness
holds per backing index, so a retry that straddles a rollover can still duplicate one event.

Per-item classification (a 200 response may carry failed items; ../shared/reference/delivery-peers.md
§4.2 and §5, Logstash's documented policy): 2xx and 409 delivered; 408, 429 and 5xx retried item by
item, and so is a 403 whose ``error.type`` is ``cluster_block_exception`` (an index write or read-only
block, ``FORBIDDEN/8/index write (api)``, which an operator lifts; the flood-stage disk block
``read_only_allow_delete`` answers 429 ``cluster_block_exception`` since Elasticsearch 7.7, "we changed
the status code to today's 429 from the previous 403", elastic/elasticsearch#58410 on #50166); 400,
404 and any other 4xx, a 403 ``security_exception`` included (the credential may not write to that one
index, e.g. a routed one: retrying cannot change that), go to the DLQ with Elasticsearch's
``error.type`` and ``error.reason``. The whole-request status goes through
``http.outcome_for_status``: 413 (``http.max_content_length``, 100 MB by default) splits the batch,
429 throttles with ``Retry-After``, 401/403 are authentication failures; but a 2xx other than 200 is
retried (``_bulk`` answers 200 only: another 2xx is a proxy's or a gateway's and confirms nothing).

Batch size: Elastic's guidance is to size bulk requests in bytes, "a good bulk size to start playing
with is around 5-15MB in size" (Elasticsearch: The Definitive Guide, "Indexing Performance Tips",
elastic.co/guide/en/elasticsearch/guide/current/indexing-performance.html) and to "avoid going beyond a
couple tens of megabytes per request" (elastic.co/guide/en/elasticsearch/reference/current/
tune-for-indexing-speed.html); hence a 5 MiB default.

Failure store (elastic.co/docs/manage-data/data-store/data-streams/failure-store, generally available
since Elasticsearch 9.1): when a data stream's failure store is enabled, a document that fails its
ingest pipeline or conflicts with the mappings is stored in the failure store instead, and "clients
receive a successful response with a flag indicating the failure was redirected": a 2xx item with
``failure_store: used`` (elastic/elasticsearch#112816), so the answer says ``errors: false``. Such an
event is delivered (the cluster holds it; resending it would fail the same way), but it is not in the
data stream: ``send`` looks for the flag with one byte search before its fast path, and a batch with
any counts them per data stream (``failure_store_events``), names them in the outcome's reason, and
logs a warning. Rejected items of a data stream without one say ``failure_store: not_enabled``; they
go to the DLQ like any other rejection.

Response filtering: every ``_bulk`` asks for ``filter_path=errors,items.*.error,items.*.status,
items.*.failure_store`` ("Response Filtering", elastic.co/docs/reference/elasticsearch/rest-apis/
common-options), all the classification reads. Logstash's default ``bulk_path`` and Beats' bulk client
send the first three, the OpenTelemetry exporter all four. A success answer shrinks from ~230 to ~27
bytes an item (~230 KB to ~27 KB for 1,000 events); an error answer is never filtered.

Auth headers (elastic.co/docs/api/doc/elasticsearch/authentication): ``ApiKey <base64(id:api_key)>``,
``Basic <base64(user:password)>``, ``Bearer <token>``. Elastic Cloud ID (elastic.co/guide/en/beats/
<beat>/current/configure-cloud-id.html; logstash-core/lib/logstash/util/cloud_setting_id.rb): an
optional ``label:`` then base64 of ``host[:port]$es_uuid$kibana_uuid``; Elasticsearch is at
``https://<es_uuid>.<host>:<port or 443>``.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import orjson

from agent.caches import put_bounded
from agent.config_loader import doc, secret_field
from agent.config_types import Duration, Secret
from outputs.base import DeliveryItem, Outcome, Status, check_route_keys
from outputs.http import (
    HttpOutput,
    HttpOutputConfig,
    HttpResponse,
    Payload,
    TransportError,
    check_credential,
    excerpt,
    outcome_for_status,
    outcome_for_transport,
    split_http_url,
)

log = logging.getLogger("clawd_agent.outputs.elasticsearch")

NDJSON = "application/x-ndjson"
#: The ``_bulk`` request path: the answer filtered to what ``classify_items`` reads (module docstring).
BULK_PATH = "/_bulk?filter_path=errors,items.*.error,items.*.status,items.*.failure_store"
#: Above the built-in ``logs-*-*`` template (100) and Elastic's advice for overlapping patterns
#: ("assign ... a priority higher than 500", elastic.co/docs/manage-data/data-store/templates).
TEMPLATE_PRIORITY = 501
DEFAULT_ILM_POLICY = "clawdstrike-security"
#: The policy a dated index gets when ``ilm_policy`` is left at its default: one without rollover,
#: under its own name so it never replaces the rollover policy that data streams and rollover
#: aliases of other outputs (or the same cluster's other agents) share (``ilm_policy_body``).
DATED_ILM_POLICY = "clawdstrike-security-dated"
_PREFIX_CACHE_MAX = 1024
_INDEX_NAME_FORBIDDEN = re.compile(r'[\\/*?"<>| ,#:]')  # upper case: check_index_name
#: What the host and the Elasticsearch id of a Cloud ID may hold: dot-separated host name labels.
_CLOUD_HOST = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\Z")
#: A data stream's backing indices are named ``.ds-<name>-<yyyy.MM.dd>-<generation>``
#: (DataStream.getDefaultBackingIndexName), and must be index names of at most 255 bytes too.
_BACKING_INDEX_EXTRA = len(".ds-") + len("-2026.01.01-000001")
#: Characters the bootstrap's template and policy names must not hold: Elasticsearch's (no space,
#: ',', '#', '*'...) and what would change the request's URL path ('/', '?', '#', '%').
_RESOURCE_NAME_FORBIDDEN = re.compile(r'[\\/*?"<>| ,#%\x00-\x1f\x7f]')
#: The route values ``encode`` reads (``_route_index``).
ROUTE_KEYS = ("index", "dataset", "namespace")


@dataclass
class ElasticsearchOutputConfig(HttpOutputConfig):
    type: str = doc("Output type.", default="elasticsearch")
    hosts: list[str] = doc("Base URLs of Elasticsearch nodes (https://es1:9200, ...); requests go round "
                           "robin and fail over to the next node on a connection error.",
                           default_factory=list)
    cloud_id: str = doc("Elastic Cloud ID instead of hosts ('label:base64...').", default="")
    api_key: Secret | None = secret_field("API key: the encoded value Kibana shows, or 'id:api_key'.")
    username: str = doc("Basic auth user (with password).", default="")
    password: Secret | None = secret_field("Basic auth password.")
    bearer_token: Secret | None = secret_field("OAuth2 / token-service bearer token.")
    format: Literal["ecs", "ocsf", "canonical"] = doc(
        "Document format (JSON documents only; the other transform keys are every output's).",
        default="ecs")
    data_stream_dataset: str = doc("Data stream dataset: documents go to "
                                   "logs-<dataset>-<namespace>.", default="clawdstrike.security")
    data_stream_namespace: str = doc("Data stream namespace.", default="default")
    index: str = doc("Classic index or ILM rollover write alias instead of a data stream; %Y %m %d "
                     "expand from the event's own timestamp (UTC), so a retry hits the same index.",
                     default="")
    ingest_pipeline: str = doc("Ingest pipeline to run (the 'pipeline' of each action).", default="")
    bootstrap: bool = doc("At start, PUT the index template and ILM policy (idempotent; missing "
                          "privileges only warn).", default=False)
    template_name: str = doc("Name of the bootstrapped index template.", default="clawdstrike-security")
    template_priority: int = doc(
        "Priority of the bootstrapped index template: above the built-in logs template's 100 and, as "
        "Elastic advises for overlapping patterns, above 500. Elasticsearch refuses two templates of "
        "the same priority whose patterns overlap: give each output's template its own.",
        default=TEMPLATE_PRIORITY)
    #: A dated index gets DATED_ILM_POLICY while this is left at its default (ilm_policy_name).
    ilm_policy: str = doc("Name of the bootstrapped ILM policy ('' = no policy). A dated `index` "
                          "(with `%Y`...) gets a policy without rollover, named "
                          f"'{DATED_ILM_POLICY}' while this is left at its default.",
                          default=DEFAULT_ILM_POLICY)
    ilm_delete_after: Duration | None = doc("Delete phase of the ILM policy (unset keeps data).",
                                            default=None)
    host_down_for: Duration = doc("After a connection error, skip that node for this long (unless "
                                  "every node is down).", default=Duration(30))
    batch_max_events: int = doc("Events per bulk request (bytes usually bind first).", default=5000)

    def validate(self) -> None:
        super().validate()
        if bool(self.hosts) == bool(self.cloud_id):
            raise ValueError("set exactly one of hosts or cloud_id")
        for h in self.hosts:
            u = split_http_url(h, "hosts: expected http(s)://host[:port] URLs")
            if u.username or u.password:
                raise ValueError("hosts: put credentials in username/password or api_key, not the URL")
        if self.cloud_id:
            decode_cloud_id(self.cloud_id)
        modes = [self.api_key is not None, self.password is not None or bool(self.username),
                 self.bearer_token is not None]
        if sum(modes) > 1:
            raise ValueError("set only one of api_key, username/password, bearer_token")
        if (self.password is None) != (not self.username):
            raise ValueError("username and password go together")
        if self.api_key is not None:
            check_credential("api_key", api_key_header(self.api_key.reveal()))
        if self.bearer_token is not None:
            check_credential("bearer_token", "Bearer " + self.bearer_token.reveal())
        if not self.index:
            check_data_stream_part("dataset", self.data_stream_dataset)
            check_data_stream_part("namespace", self.data_stream_namespace)
            check_data_stream_name(route_target(self, {})[0])
        check_index_name(*route_target(self, {}))
        if self.bootstrap and rollover_alias(self):
            try:  # the bootstrap creates the alias's first index: that name must be one too
                check_index_name(first_rollover_index(self.index), dated=False)
            except ValueError as exc:
                raise ValueError(f"index: as a rollover alias (bootstrap with an ILM policy) its first "
                                 f"index cannot be created: {exc}") from None
        if self.bootstrap:
            check_resource_name("template_name", self.template_name)
            if self.ilm_policy:
                check_resource_name("ilm_policy", self.ilm_policy)

    def check_route(self, values: dict[str, str]) -> None:
        """The index a rule's values name (as ``ElasticsearchOutput._route_index`` builds it) must be
        one Elasticsearch accepts: otherwise every event of the rule is refused with a 400."""
        check_route_keys(values, ROUTE_KEYS, "elasticsearch")
        if not values.get("index") and (values.get("dataset") or values.get("namespace")):
            # The part the rule leaves out is the output's own, unchecked when it writes to an index.
            check_data_stream_part("dataset", values.get("dataset") or self.data_stream_dataset)
            check_data_stream_part("namespace", values.get("namespace") or self.data_stream_namespace)
            check_data_stream_name(route_target(self, values)[0])
        check_index_name(*route_target(self, values))


def route_target(config: ElasticsearchOutputConfig, route: dict[str, str]) -> tuple[str, bool]:
    """The index or data stream an event with these route values goes to, and whether it is an
    index: the route's ``index``, else a data stream named from its ``dataset``/``namespace`` (the
    config's for the one not set), else the output's own target. Only an index name expands
    ``%Y %m %d``; a data stream's is taken as written."""
    if route.get("index"):
        return route["index"], True
    if route.get("dataset") or route.get("namespace"):
        return data_stream_name(route.get("dataset") or config.data_stream_dataset,
                                route.get("namespace") or config.data_stream_namespace), False
    if config.index:
        return config.index, True
    return data_stream_name(config.data_stream_dataset, config.data_stream_namespace), False


def rollover_alias(config: ElasticsearchOutputConfig) -> bool:
    """Whether ``index`` is an ILM rollover write alias (not dated, with a policy): the bootstrap
    creates its first index, ``first_rollover_index``."""
    return bool(config.index) and bool(config.ilm_policy) and not _dated(config)


def first_rollover_index(alias: str) -> str:
    return f"{alias}-000001"


def check_index_name(target: str, dated: bool = True) -> None:
    """``ValueError`` for an index name Elasticsearch refuses (``%Y %m %d`` expanded first when
    ``dated``: only an index name takes them; a data stream name is checked as written). The
    create-index API's rules (elastic.co/guide/en/elasticsearch/reference/current/
    indices-create-index.html, "Index names must meet the following criteria"): lowercase only; none
    of ``\\ / * ? " < > |``, space, comma, ``#`` (nor ``:``, deprecated since 7.0); not starting
    with ``-``, ``_`` or ``+``; not ``.`` or ``..``; at most 255 bytes."""
    probe = target.replace("%Y", "2026").replace("%m", "01").replace("%d", "01") if dated else target
    if probe != probe.lower():
        raise ValueError(f"invalid index name {target!r}: must be lowercase")
    if _INDEX_NAME_FORBIDDEN.search(probe) or probe.startswith(("-", "_", "+")) or probe in (".", ".."):
        raise ValueError(f"invalid index name {target!r} (no spaces or \\/*?\"<>|,#:, not starting "
                         "with -_+, not . or ..)")
    if len(probe.encode("utf-8")) > 255:
        raise ValueError(f"invalid index name {target[:40]!r}...: longer than 255 bytes")


def check_data_stream_part(what: str, value: str) -> None:
    """``ValueError`` for a dataset or namespace the data stream naming scheme refuses. Beyond the
    index name rules, ECS 9.4 ``data_stream.dataset`` / ``data_stream.namespace``: "Must not contain
    `-`", "No longer than 100 characters" (the ``-`` separates ``<type>-<dataset>-<namespace>``)."""
    if not value:
        raise ValueError(f"data stream {what} must not be empty")
    if "-" in value:
        raise ValueError(f"data stream {what} {value!r} must not contain '-' (it separates "
                         "logs-<dataset>-<namespace>)")
    if len(value) > 100:
        raise ValueError(f"data stream {what} {value[:40]!r}... is longer than 100 characters")


def check_data_stream_name(name: str) -> None:
    """``ValueError`` for a data stream name whose backing indices Elasticsearch cannot create: the
    first is ``.ds-<name>-<yyyy.MM.dd>-000001``, an index name of at most 255 bytes like any other."""
    check_index_name(name, dated=False)
    limit = 255 - _BACKING_INDEX_EXTRA
    if len(name.encode("utf-8")) > limit:
        raise ValueError(f"invalid data stream name {name[:40]!r}...: longer than {limit} bytes (its "
                         "backing indices, .ds-<name>-<date>-000001, must fit in 255)")


def check_resource_name(what: str, name: str) -> None:
    """``ValueError`` for a bootstrapped template or ILM policy name that Elasticsearch refuses or that
    would not reach it as written: it goes into the request's path unescaped, where ``#`` starts a
    fragment (never sent) and ``?`` a query, so ``PUT _ilm/policy/pol#1`` put ``pol`` while the
    template named ``pol#1``, a policy that does not exist (ILM's ERROR step)."""
    if not name or _RESOURCE_NAME_FORBIDDEN.search(name) or name.startswith("_") or name in (".", ".."):
        raise ValueError(f"{what}: invalid name {name!r} (not empty; no spaces or \\/*?\"<>|,#%; not "
                         "starting with _, not . or ..)")


def data_stream_name(dataset: str, namespace: str) -> str:
    """Elastic's data stream naming scheme: ``<type>-<dataset>-<namespace>`` with type ``logs``."""
    return f"logs-{dataset}-{namespace}"


def decode_cloud_id(cloud_id: str) -> str:
    """The Elasticsearch base URL of an Elastic Cloud ID (see the module docstring for the format)."""
    _label, _, encoded = cloud_id.rpartition(":")
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=False)
        text = decoded.decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, and b64decode's own for a non-ASCII str
        raise ValueError("cloud_id: not a valid Elastic Cloud ID (base64 did not decode)") from None
    parts = text.split("$")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError("cloud_id: not a valid Elastic Cloud ID (expected host$es_uuid$kibana_uuid)")
    host, es_uuid = parts[0], parts[1]
    port = "443"
    if ":" in host:
        host, _, port = host.partition(":")
    if ":" in es_uuid:  # some IDs carry the port on the component instead
        es_uuid, _, port = es_uuid.partition(":")
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError("cloud_id: not a valid Elastic Cloud ID (bad port)")
    # Both become the URL's host: anything but host name labels (a '@', '/', '?', an empty label)
    # would name another host, or none.
    if not _CLOUD_HOST.match(host) or not _CLOUD_HOST.match(es_uuid):
        raise ValueError("cloud_id: not a valid Elastic Cloud ID (expected a host name and an "
                         "Elasticsearch id in host$es_uuid$kibana_uuid)")
    return f"https://{es_uuid}.{host}:{port}"


def api_key_header(value: str) -> str:
    """``ApiKey <encoded>``; 'id:api_key' is encoded here (the base64 alphabet has no ':')."""
    value = value.strip()
    if ":" in value:
        value = base64.b64encode(value.encode()).decode()
    return f"ApiKey {value}"


class ElasticsearchOutput(HttpOutput):
    type_name = "elasticsearch"
    send_reads_events = False  # item.event is read only by encode()
    default_batch_max_bytes: ClassVar[int] = 5 * 1024 * 1024
    default_concurrency: ClassVar[int] = 4
    config: ElasticsearchOutputConfig

    def __init__(self, name: str, config: ElasticsearchOutputConfig):
        super().__init__(name, config)
        self.hosts = [h.rstrip("/") for h in config.hosts] or [decode_cloud_id(config.cloud_id)]
        self._down_until = [0.0] * len(self.hosts)
        self._rr = itertools.count()
        self._lock = threading.Lock()
        target = route_target(config, {})[0]
        self._target = target
        self._dated = _dated(config)
        self._prefix = self._action_prefix(target)
        self._prefixes: dict[str, bytes] = {}  # index -> action prefix, for routed and dated events
        self._day_prefixes: dict[str, bytes] = {}  # "YYYY-MM-DD" -> action prefix (dated, unrouted)
        self.bootstrap_warnings: list[str] = []
        #: Events Elasticsearch stored in a data stream's failure store instead of the data stream
        #: (delivered, but not searchable where expected), by data stream, since start.
        self.failure_store_events: dict[str, int] = {}
        self._failure_store_logged: dict[str, tuple[float, int]] = {}  # stream -> (last log, count then)

    # ---------------------------------------------------------------------------- encoding

    def _action_prefix(self, index: str) -> bytes:
        meta: dict[str, str] = {"_index": index}
        if self.config.ingest_pipeline:
            meta["pipeline"] = self.config.ingest_pipeline
        raw = orjson.dumps({"create": meta})
        return raw[:-2] + b',"_id":'  # '{"create":{..."_index":"x"' + ',"_id":' + id + '}}'

    def encode(self, item: DeliveryItem) -> bytes:
        """Two NDJSON lines: ``{"create":{"_index":..,"_id":<event_id>}}`` and the document."""
        event = item.event
        pipeline = self.pipeline
        doc_bytes = pipeline.render(event, item.body) if pipeline is not None else item.body
        if not doc_bytes.startswith(b'{"@timestamp":') and not _top_level_timestamp(doc_bytes):
            doc_bytes = self._with_timestamp(item, doc_bytes)
        route = item.route
        prefix = self._route_prefix(item, route) if route or self._dated else self._prefix
        eid = event.get("event_id") if event else None
        if type(eid) is not str or not eid:
            eid = doc_id(item)
        return b"".join((prefix, orjson.dumps(eid), b"}}\n", doc_bytes, b"\n"))

    def _route_prefix(self, item: DeliveryItem, route: dict[str, str] | None) -> bytes:
        """The action prefix for a routed or dated event, built once per index (a dated index changes
        once a day, a routed one is one of a few values; both caches are bounded anyway). An unrouted
        event of a dated target is looked up by its day alone: the index depends on nothing else."""
        event = item.event
        ts = event.get("timestamp") if event and not route else None
        day = ts[:10] if type(ts) is str and ts else None
        if day is not None:
            prefix = self._day_prefixes.get(day)
            if prefix is not None:
                return prefix
        index = self._route_index(item, route or {})
        prefix = self._prefixes.get(index)
        if prefix is None:
            prefix = put_bounded(self._prefixes, index, self._action_prefix(index), _PREFIX_CACHE_MAX)
        if day is not None:
            put_bounded(self._day_prefixes, day, prefix, _PREFIX_CACHE_MAX)
        return prefix

    def _route_index(self, item: DeliveryItem, route: dict[str, str]) -> str:
        index, is_index = route_target(self.config, route)
        if "%" in index and is_index:
            ts = str(_event_of(item).get("timestamp", "")) or time.strftime("%Y-%m-%dT",
                                                                                time.gmtime())
            index = index.replace("%Y", ts[0:4]).replace("%m", ts[5:7]).replace("%d", ts[8:10])
        return index

    def _with_timestamp(self, item: DeliveryItem, doc_bytes: bytes) -> bytes:
        """Data streams refuse documents without ``@timestamp``; the canonical event has
        ``timestamp``, so copy it (the ECS transform already sets ``@timestamp``)."""
        ts = _event_of(item).get("timestamp")
        if not ts or not doc_bytes.startswith(b"{"):
            return doc_bytes
        sep = b"" if doc_bytes[1:].lstrip().startswith(b"}") else b","
        return b'{"@timestamp":' + orjson.dumps(ts) + sep + doc_bytes[1:]

    # ---------------------------------------------------------------------------- transport

    def open(self) -> None:
        self.client()
        if self.config.bootstrap:
            self.bootstrap_warnings = self._bootstrap()

    def host_count(self) -> int:
        return len(self.hosts)

    def client_auth(self) -> dict[str, str]:
        c = self.config
        if c.api_key is not None:
            return {"Authorization": api_key_header(c.api_key.reveal())}
        if c.password is not None:
            raw = f"{c.username}:{c.password.reveal()}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        if c.bearer_token is not None:
            return {"Authorization": "Bearer " + c.bearer_token.reveal()}
        return {}

    def secrets(self) -> list[str]:
        """Every form a credential of this output can take on the wire, for redaction."""
        # The headers, the proxy and our Authorization header, each with its credential part.
        out = self.client().secrets()
        for s in (self.config.api_key, self.config.password, self.config.bearer_token):
            if s is not None:
                held = s.held()  # the value, and a rotated file:'s earlier ones (an answer in flight)
                out += held
                out += s.parts  # each ${ENV} value in it: echoed alone, it is still a secret
                if s is self.config.api_key:  # an earlier key's header, for its secret half below
                    out += [api_key_header(v) for v in held[1:]]
        for v in list(out):  # and the secret half of a base64 'id:key' / 'user:password'
            scheme, _, cred = v.partition(" ")
            if scheme in ("ApiKey", "Basic"):
                # ValueError: binascii.Error, UnicodeDecodeError, and the non-ASCII str b64decode
                # refuses (an api_key that is neither base64 nor 'id:key' raised out of send()).
                with contextlib.suppress(ValueError):
                    out.append(base64.b64decode(cred).decode().partition(":")[2])
        return [s for s in out if s]

    def _order(self) -> list[int]:
        """Host indexes to try: the nodes not marked down in round robin, then those marked down
        (in round robin too). The rotation runs over the live nodes themselves: rotating over every
        node and moving the ones marked down to the back gave a down node's turns to the live node
        after it (with one of three nodes down, one survivor took 2/3 of the requests)."""
        n = len(self.hosts)
        with self._lock:
            turn = next(self._rr)
        now = time.monotonic()
        live = [i for i in range(n) if self._down_until[i] <= now]
        down = [i for i in range(n) if self._down_until[i] > now]
        return [*_rotated(live, turn), *_rotated(down, turn)]

    def _request(self, method: str, path: str, body: bytes | Payload | None = None,
                 headers: dict[str, str] | None = None, *, compress: bool | None = None,
                 fail_over: bool = True, report: bool = True) -> HttpResponse:
        """One request to the first node that answers; ``TransportError`` if none does. A failed
        node is marked down; re-sending to the next node is safe because every write is a
        ``create`` with a fixed ``_id``."""
        client = self.client()
        order = self._order() if fail_over else self._order()[:1]
        errors: list[str] = []
        auth_failure = False
        for i in order:
            try:
                resp = client.request(method, self.hosts[i] + path, body, headers,
                                      compress=compress, report=report)
            except TransportError as exc:
                if exc.before_sending:  # (a credential that cannot be read): no node failed
                    raise
                self._down_until[i] = time.monotonic() + float(self.config.host_down_for)
                errors.append(f"node {i + 1}/{len(self.hosts)}: {exc}")
                auth_failure = auth_failure or exc.auth_failure
                continue
            self._down_until[i] = 0.0
            return resp
        raise TransportError("; ".join(errors), auth_failure=auth_failure)

    # ---------------------------------------------------------------------------- delivery

    def send(self, batch: list[DeliveryItem], packed: Payload | None = None) -> Outcome:
        body = self.request_body(batch, packed)
        try:
            resp = self._request("POST", BULK_PATH, body, {"Content-Type": NDJSON})
        except TransportError as exc:
            return outcome_for_transport(exc, "bulk")
        if resp.status != 200:
            if 200 <= resp.status < 300:
                # `_bulk` answers 200 and only 200 (the vendor spec defines no other success): a 202,
                # 204 or 207 comes from something else in front (a gateway, a proxy) and says
                # nothing about any document.
                return Outcome.retry(f"bulk: HTTP {resp.status} is not Elasticsearch's bulk answer "
                                     "(a proxy or gateway?): nothing confirms the events were "
                                     "indexed; retrying", excerpt=excerpt(resp.body, self.secrets()))
            return self._request_failure(resp)
        head = resp.body[:80].replace(b" ", b"")
        # Fast path: nothing failed and nothing went to a failure store (a redirected document is a
        # success item with "failure_store":"used", so errors is false: module docstring). One byte
        # search of the filtered answer (~27 bytes an item), no walk of the items.
        stored = resp.body.find(b'"failure_store"') >= 0
        if b'"errors":false' in head and not stored:
            return Outcome.delivered()
        try:
            parsed = orjson.loads(resp.body)
            items = parsed["items"]
            errors = parsed["errors"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return Outcome.retry("bulk: HTTP 200 without a bulk response body",
                                 excerpt=excerpt(resp.body, self.secrets()))
        counted = isinstance(items, list) and len(items) == len(batch)
        if errors is False and not (stored and counted):
            return Outcome.delivered()
        if not counted:
            return Outcome.retry(f"bulk: {len(items) if isinstance(items, list) else 'no'} results "
                                 f"for {len(batch)} actions", excerpt=excerpt(resp.body, self.secrets()))
        outcome, redirected = _classify(batch, items, self.secrets(), self._index_of(batch, body))
        if redirected:
            self._note_failure_store(redirected)
        return outcome

    def destination_counters(self) -> dict[str, tuple[str, str, dict[str, int]]]:
        return {"events_failure_store": (
            "Events Elasticsearch stored in a data stream's failure store instead of the data stream",
            "data_stream", dict(self.failure_store_events))}

    def _index_of(self, batch: list[DeliveryItem], body: Payload) -> Callable[[int], str]:
        """The target of the batch's i-th action, for the few items that went to a failure store:
        the output's own target for an unrouted, undated event, else its action line (the item's
        data, or the i-th pair of lines of the body: Elasticsearch answered one item per action, so
        the body is exactly two lines per ``create``)."""
        lines: list[bytes] = []

        def index_of(i: int) -> str:
            item = batch[i]
            if not item.route and not self._dated:
                return self._target
            data = item.data
            if not data:
                if not lines:
                    lines.extend(body.raw().split(b"\n"))
                data = lines[2 * i]
            try:
                return str(orjson.loads(data.split(b"\n", 1)[0])["create"]["_index"])
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                return "?"

        return index_of

    def _note_failure_store(self, redirected: dict[str, int]) -> None:
        """Count events Elasticsearch put in a failure store, and say so in a warning: at once for a
        data stream the first time, then at most once a minute per data stream, with the events
        since the last line (the reason of a delivered batch is not logged by the drain)."""
        now = time.monotonic()
        with self._lock:
            for stream, n in redirected.items():
                total = self.failure_store_events[stream] = self.failure_store_events.get(stream, 0) + n
                last, then = self._failure_store_logged.get(stream, (None, 0))
                if last is not None and now - last < 60.0:
                    continue
                self._failure_store_logged[stream] = (now, total)
                n = total - then
                log.warning("output %s: %d event%s went to the failure store of %s (stored as failed "
                            "documents, not in the data stream; %d since start; search "
                            "%s::failures for Elasticsearch's reasons)", self.name, n,
                            "s" if n != 1 else "", stream, total, stream)

    def _request_failure(self, resp: HttpResponse) -> Outcome:
        outcome = outcome_for_status(resp, "bulk", self.secrets())
        err = _error_cause(resp.body, self.secrets())
        if err:
            outcome.reason += f" ({err})"
        return outcome

    def healthcheck(self) -> tuple[bool, str]:
        """``GET /_cluster/health``: green and yellow are healthy (yellow = replicas unassigned, still
        writable), red is not. Without the ``monitor`` privilege (403) health is unknown but the
        node answers, so it does not fail the output."""
        try:
            resp = self._request("GET", "/_cluster/health", fail_over=False, report=False)
        except TransportError as exc:
            return False, f"cluster health: {exc}"
        if resp.status == 403:
            return True, "reachable; cluster health needs the monitor privilege (HTTP 403)"
        if resp.status != 200:
            return False, f"cluster health: HTTP {resp.status}"
        try:
            status = resp.json().get("status")
        except (orjson.JSONDecodeError, AttributeError):
            return False, "cluster health: unreadable answer"
        return (status in ("green", "yellow")), f"cluster status {status}"

    # ---------------------------------------------------------------------------- bootstrap

    def _bootstrap(self) -> list[str]:
        """PUT the ILM policy and the index template (and, for a rollover alias, its first index).
        Each step is idempotent. Failures, 403 for missing ``manage_ilm`` /
        ``manage_index_templates`` privileges included, only warn: delivery goes on."""
        warnings: list[str] = []
        policy = ilm_policy_name(self.config)
        policy_ok = True
        if policy:
            w = self._put("ILM policy", f"/_ilm/policy/{policy}", ilm_policy_body(self.config))
            if w:
                warnings.append(w)
                policy_ok = self._policy_exists(policy)
        if policy_ok:
            w = self._put("index template", f"/_index_template/{self.config.template_name}",
                          index_template_body(self.config))
            if w:
                warnings.append(w)
        else:
            # A template naming a policy that does not exist is accepted, and its indices then sit
            # in ILM's ERROR step ("policy [x] does not exist", elastic/elasticsearch#33074): never
            # rolled over nor deleted. Ranked above the built-in logs template (priority 100), it
            # would also take away the lifecycle those indices get without the bootstrap.
            warnings.append(f"index template not put: its ILM policy {policy!r} could not be put "
                            "nor found, and indices would sit in ILM's ERROR step under it; the "
                            "cluster's own templates and lifecycle apply")
        if rollover_alias(self.config):
            w = self._bootstrap_write_alias()
            if w:
                warnings.append(w)
        for w in warnings:
            log.warning("output %s: bootstrap: %s; delivery continues", self.name, w)
        return warnings

    def _put(self, what: str, path: str, body: dict[str, Any]) -> str:
        try:
            resp = self._request("PUT", path, orjson.dumps(body), {"Content-Type": "application/json"},
                                 report=False)
        except TransportError as exc:
            return f"{what}: {exc}"
        if resp.status == 200:
            return ""
        hint = " (missing privilege: manage_ilm / manage_index_templates)" if resp.status == 403 else ""
        err = _error_cause(resp.body, self.secrets())
        return f"{what}: HTTP {resp.status}{hint}" + (f" ({err})" if err else "")

    def _policy_exists(self, policy: str) -> bool:
        """Whether the ILM policy is there already (an operator's, or put before), after our PUT of it
        failed (e.g. 403: the credential may manage templates but not ILM)."""
        try:
            return self._request("GET", f"/_ilm/policy/{policy}", report=False).status == 200
        except TransportError:
            return False

    def _bootstrap_write_alias(self) -> str:
        alias = self.config.index
        try:
            resp = self._request("GET", f"/_alias/{alias}", report=False)
            if resp.status == 200:
                return ""
            if resp.status != 404:
                return f"write alias check: HTTP {resp.status}"
        except TransportError as exc:
            return f"write alias check: {exc}"
        return self._put("first rollover index", f"/{first_rollover_index(alias)}",
                         {"aliases": {alias: {"is_write_index": True}}})


def _rotated(nodes: list[int], turn: int) -> list[int]:
    """``nodes`` starting at the ``turn``-th (modulo their number)."""
    if not nodes:
        return nodes
    k = turn % len(nodes)
    return nodes[k:] + nodes[:k]


def _event_of(item: DeliveryItem) -> dict[str, Any]:
    if item.event:
        return item.event
    try:
        ev = orjson.loads(item.body)
    except orjson.JSONDecodeError:
        return {}
    return ev if isinstance(ev, dict) else {}


def _top_level_timestamp(doc_bytes: bytes) -> bool:
    """Whether a document has a top-level ``@timestamp`` (what a data stream requires), for one that
    does not start with it (ECS documents do: their keys are sorted and ``@`` sorts first). Nearly
    always one byte search: a canonical document has no ``@timestamp`` anywhere. Only a document that
    holds the key somewhere else, e.g. in its verbatim ``metadata``, is parsed to tell where."""
    # find(), not 'in': bytes 'in' first tries the needle as an int (and discards a TypeError)
    if doc_bytes.find(b'"@timestamp"') < 0:
        return False
    try:
        doc = orjson.loads(doc_bytes)
    except orjson.JSONDecodeError:
        return True  # not ours to fix: Elasticsearch will say what is wrong with it
    return not isinstance(doc, dict) or "@timestamp" in doc


def doc_id(item: DeliveryItem) -> str:
    """The item's ``_id``: the canonical ``event_id`` string (the spool's ``event_id`` is its 16 raw
    UUID bytes). A filtered bulk answer does not repeat it: the item's position says which it is."""
    eid = item.event.get("event_id") if item.event else None
    if isinstance(eid, str) and eid:
        return eid
    if len(item.event_id) == 16:
        return str(uuid.UUID(bytes=item.event_id))
    if item.event_id:
        return item.event_id.decode("utf-8", "replace")
    return str(_event_of(item).get("event_id", ""))


def classify_items(batch: list[DeliveryItem], items: list[Any], secrets: list[str],
                   index_of: Callable[[int], str] | None = None) -> Outcome:
    """Turn the per-item results of a bulk response into one Outcome, counting exactly: delivered
    (2xx, 409 on create), ``retry_items`` (408, 429, 5xx, 403 ``cluster_block_exception``, and a
    result that is not our ``create``'s with a number: it says nothing about the event) and
    ``failed`` (400, 404, any other 4xx, a 403 of another type such as ``security_exception`` on a
    routed event's index) with Elasticsearch's reason (module docstring). A 403 of another type on an
    event the output sends to its own target (no route) means the credential may not write where
    the output writes: the whole batch is retried as an authentication failure (credentials re-read,
    breaker opened, nothing to the DLQ), as a request-level 403 is. Items stored in a failure store (2xx with
    ``failure_store: used``) are delivered, and the reason says how many went to which data
    stream's failure store (``index_of(i)`` names the i-th action's target), even when nothing else
    happened."""
    return _classify(batch, items, secrets, index_of)[0]


def _classify(batch: list[DeliveryItem], items: list[Any], secrets: list[str],
              index_of: Callable[[int], str] | None) -> tuple[Outcome, dict[str, int]]:
    """``classify_items``, and the events stored in a failure store by data stream."""
    failed: list[DeliveryItem] = []
    retry: list[DeliveryItem] = []
    ok = dup = 0
    redirected: dict[str, int] = {}
    throttled = False
    reasons: dict[str, int] = {}
    samples: list[dict[str, Any]] = []
    forbidden: tuple[int, dict[str, Any]] | None = None  # first 403 on the output's own target
    for i, (item, result) in enumerate(zip(batch, items, strict=True)):
        # Only the result of our own action confirms anything: {"create": {"status": <int>, ...}}.
        # Another shape (no status, a status that is no number, another action's key: not
        # Elasticsearch's answer) says nothing about the event, so it is sent again, never
        # dead-lettered nor counted delivered; before, a missing status read as 0 (the DLQ) and a
        # string raised out of send().
        op = result.get("create") if isinstance(result, dict) and len(result) == 1 else None
        status = op.get("status") if isinstance(op, dict) else None
        if isinstance(status, float) and status.is_integer():  # JSON does not tell 201 from 201.0
            status = int(status)
        if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status < 600:
            retry.append(item)
            reasons["unreadable result"] = reasons.get("unreadable result", 0) + 1
            continue
        assert op is not None
        if 200 <= status < 300:
            if op.get("failure_store") == "used":
                stream = index_of(i) if index_of is not None else "its data stream"
                redirected[stream] = redirected.get(stream, 0) + 1
            else:
                ok += 1
            continue
        if status == 409:
            dup += 1
            continue
        err = op.get("error") if isinstance(op.get("error"), dict) else {}
        label = f"{status} {_text(err.get('type', 'error'))}"
        if status == 429 or status >= 500 or status == 408 or status < 400 or (
                status == 403 and err.get("type") == "cluster_block_exception"):
            retry.append(item)  # (a 3xx for one item is no Elasticsearch answer either)
            throttled = throttled or status == 429
        elif status == 403 and not item.route:
            retry.append(item)
            if forbidden is None:
                forbidden = (i, err)
        else:
            failed.append(item)
            if len(samples) < 3:
                samples.append({"_id": doc_id(item), "status": status, "type": err.get("type"),
                                "reason": err.get("reason")})
        reasons[label] = reasons.get(label, 0) + 1
    stored = "; ".join(f"{n} event{'s' if n != 1 else ''} went to the failure store of {stream}"
                       for stream, n in sorted(redirected.items()))
    if forbidden is not None:
        i, err = forbidden
        target = index_of(i) if index_of is not None else "the output's target"
        cause = excerpt(f"{_text(err.get('type', 'error'))}: {_text(err.get('reason', ''))}".encode(),
                        secrets, limit=200)
        return Outcome.retry(f"bulk: 403 on the output's own target {target}: the credentials may not "
                             f"write there; retrying as an authentication failure ({cause})",
                             auth_failure=True), redirected
    if not failed and not retry:
        if not redirected:
            return Outcome.delivered(), redirected
        return Outcome(Status.DELIVERED, f"bulk: {ok} indexed, {dup} already indexed; {stored} "
                                         "(stored as failed documents, not in the data stream)"), redirected
    # The labels hold each error's `type`, the destination's words like `reason`: redacted alike.
    summary = excerpt(", ".join(f"{n} x {label}" for label, n in sorted(reasons.items())).encode(),
                      secrets, limit=400)
    reason = (f"bulk: {ok} indexed, {dup} already indexed, {len(failed)} rejected, "
              f"{len(retry)} to retry ({summary})")
    if redirected:
        reason += f"; {stored}"
    if samples:
        first = samples[0]
        reason += "; first rejection: " + excerpt(
            f"{_text(first['type'])}: {_text(first['reason'])}".encode(), secrets, limit=200)
    ex = excerpt(orjson.dumps(samples), secrets) if samples else ""
    return (Outcome.partial(reason, failed=failed, retry_items=retry, throttled=throttled, excerpt=ex),
            redirected)


def _error_cause(body: bytes, secrets: list[str]) -> str:
    """``type: reason`` of an Elasticsearch error body (``_types.ErrorResponseBase``), redacted,
    or ''."""
    try:
        err = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    if isinstance(err, dict):
        return excerpt(f"{_text(err.get('type', ''))}: {_text(err.get('reason', ''))}".encode(),
                       secrets, limit=200)
    return excerpt(_text(err).encode(), secrets, limit=200) if err else ""


def _text(value: Any) -> str:
    """A value of Elasticsearch's answer for a reason: a string as it is, anything else as JSON,
    whose escaping the redaction knows (Python's repr escapes quotes its own way, and a secret in
    a non-string ``reason`` went through unmasked)."""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return type(value).__name__


# ------------------------------------------------------------------------------ bootstrap bodies

#: Fields the ECS transform emits (transforms/ecs.py, docs/formats/ecs.md) with their ECS 9.4 types
#: (ecs_flat.yml); a test checks each against ../shared/schemas/ecs/9.4.0 and indexes the transform's
#: documents for every fixture event through this template into the mock without a mapping conflict.
ECS_FIELDS: dict[str, str] = {
    "@timestamp": "date", "ecs.version": "keyword", "message": "match_only_text", "tags": "keyword",
    **{f"event.{k}": "keyword" for k in ("id", "kind", "category", "type", "outcome", "action",
                                         "code", "reason", "dataset", "module", "provider")},
    "event.severity": "long", "event.risk_score": "float", "event.created": "date",
    **{f"rule.{k}": "keyword" for k in ("id", "name", "ruleset", "version", "category",
                                        "description")},
    "threat.framework": "keyword",
    **{f"threat.{p}.{k}": "keyword" for p in ("tactic", "technique", "technique.subtechnique")
       for k in ("id", "name", "reference")},
    "threat.indicator.type": "keyword", "threat.indicator.name": "keyword",
    "threat.indicator.ip": "ip", "threat.indicator.file.path": "keyword",
    "threat.indicator.url.domain": "keyword",
    **{f"file.{k}": "keyword" for k in ("path", "name", "directory", "extension")},
    "destination.domain": "keyword", "destination.address": "keyword", "destination.ip": "ip",
    "destination.port": "long", "url.full": "wildcard", "url.domain": "keyword", "url.scheme": "keyword",
    "url.path": "wildcard", "url.port": "long", "network.direction": "keyword",
    "network.transport": "keyword", "network.protocol": "keyword", "http.request.method": "keyword",
    "process.command_line": "wildcard", "process.args": "keyword", "process.args_count": "long",
    "process.executable": "keyword", "process.name": "keyword", "process.working_directory": "keyword",
    "host.name": "keyword", "host.hostname": "keyword", "host.id": "keyword", "host.os.type": "keyword",
    "user.id": "keyword", "user.name": "keyword", "organization.id": "keyword",
    **{f"observer.{k}": "keyword" for k in ("vendor", "product", "version", "type", "hostname")},
    **{f"agent.{k}": "keyword" for k in ("type", "name", "id", "version")},
    "gen_ai.agent.id": "keyword", "gen_ai.agent.name": "keyword", "gen_ai.tool.name": "keyword",
    "gen_ai.tool.call.id": "keyword", "gen_ai.operation.name": "keyword", "service.name": "keyword",
    "error.message": "match_only_text", "error.type": "keyword", "error.code": "keyword",
    "labels": "object",
    **{f"data_stream.{k}": "constant_keyword" for k in ("type", "dataset", "namespace")},
}
#: Our own namespace. ``clawdstrike.metadata`` is the free-form metadata as one JSON string (the ECS
#: transform serialises it so arbitrary keys cannot explode the field count): a keyword kept in
#: ``_source`` and indexed up to 8191 characters. Other ``clawdstrike.*`` strings map as keyword.
CLAWDSTRIKE_FIELDS: dict[str, str] = {
    "clawdstrike.schema_version": "keyword", "clawdstrike.event_category": "keyword",
    "clawdstrike.severity": "keyword", "clawdstrike.guard": "keyword",
    "clawdstrike.decision.allowed": "boolean", "clawdstrike.decision.verdict": "keyword",
    "clawdstrike.policy.hash": "keyword", "clawdstrike.observer.instance_id": "keyword",
    **{f"clawdstrike.session.{k}": "keyword" for k in ("id", "run_id", "environment")},
    **{f"clawdstrike.resource.{k}": "keyword" for k in ("type", "name", "path")},
    "clawdstrike.source": "object", "clawdstrike.metadata": "keyword",
}
_FIELD_OPTIONS: dict[str, dict[str, Any]] = {"clawdstrike.metadata": {"ignore_above": 8191}}


def _nested_properties(flat: dict[str, str]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for name, kind in sorted(flat.items()):
        node = root
        *parents, leaf = name.split(".")
        for p in parents:
            node = node.setdefault(p, {"properties": {}})["properties"]
        node.setdefault(leaf, {}).update({"type": kind, **_FIELD_OPTIONS.get(name, {})})
    return root


def index_template_body(config: ElasticsearchOutputConfig) -> dict[str, Any]:
    """A composable index template (ES 7.8+): strings default to keyword like ECS's own template,
    dates are not guessed, and the fields we emit get their ECS types."""
    settings: dict[str, Any] = {"index.mapping.total_fields.limit": 2000}
    if config.ilm_policy:
        settings["index.lifecycle.name"] = ilm_policy_name(config)
    body: dict[str, Any] = {
        "priority": config.template_priority,
        "_meta": {"managed_by": "clawd-agent", "description": "Clawdstrike security events (ECS)"},
        "template": {
            "settings": settings,
            "mappings": {
                "date_detection": False,
                "dynamic_templates": [{"strings_as_keyword": {
                    "match_mapping_type": "string",
                    "mapping": {"type": "keyword", "ignore_above": 1024}}}],
                "properties": _nested_properties({**ECS_FIELDS, **CLAWDSTRIKE_FIELDS}),
            },
        },
    }
    if config.index:
        body["index_patterns"] = [template_pattern(config.index)]
        if not config.ilm_policy and not _dated(config):
            # No rollover alias is made without a policy: the first event creates the plain index
            # <index>, which <index>-* does not match (an alias an administrator made still
            # writes to <index>-NNNNNN).
            body["index_patterns"].insert(0, config.index)
        if config.ilm_policy and not _dated(config):
            settings["index.lifecycle.rollover_alias"] = config.index
    else:
        body["index_patterns"] = [f"logs-{config.data_stream_dataset}-*"]
        body["data_stream"] = {}
    return body


def template_pattern(index: str) -> str:
    """The index pattern of a classic index's template: the indices it names and no wider. A rollover
    alias ``clawd`` writes to ``clawd-000001``...; a dated ``clawd-%Y.%m.%d`` to ``clawd-2026.11.01``.
    Cutting the separator too (``clawd*``) made it overlap another output's ``clawd-events*``, and
    Elasticsearch refuses a second template of the same priority whose patterns overlap."""
    if "%" in index:
        return re.sub(r"\*+", "*", re.sub(r"%[Ymd]", "*", index))
    return f"{index}-*"


def _dated(config: ElasticsearchOutputConfig) -> bool:
    """Whether events go to an index named by their day (``clawd-%Y.%m.%d``); a data stream's
    name has no such field."""
    return "%" in config.index


def ilm_policy_name(config: ElasticsearchOutputConfig) -> str:
    """The ILM policy this output bootstraps and names in its template: ``ilm_policy``, except that a
    dated index with the default name gets ``DATED_ILM_POLICY`` (its policy has no rollover, so it
    must not overwrite the shared rollover policy of that name)."""
    if config.ilm_policy == DEFAULT_ILM_POLICY and _dated(config):
        return DATED_ILM_POLICY
    return config.ilm_policy


def ilm_policy_body(config: ElasticsearchOutputConfig) -> dict[str, Any]:
    """Hot phase rolling over at Elastic's defaults for logs (50 GB primary shard or 30 days);
    a delete phase only when ``ilm_delete_after`` is set.

    A dated index (``clawd-%Y.%m.%d``) gets no rollover: the rollover action needs a data stream or an
    index whose ``index.lifecycle.rollover_alias`` names an alias it is the write index of ("The
    index.lifecycle.rollover_alias must be configured as the alias to roll over", ILM rollover action
    docs), and a dated index has neither, so ILM would stop in the hot phase with "setting
    [index.lifecycle.rollover_alias] for index [...] is empty or not defined" (ERROR step; the known
    failure of robcowart/elastiflow#558) and never reach the delete phase: retention silently not
    enforced. Its hot phase only sets the recovery priority Elastic's docs suggest for hot indices
    (``set_priority`` 100, ILM "Set priority" action), and without rollover ``min_age`` of the delete
    phase counts from the index's creation ("If you do not use rollover in the ILM policy, min_age is
    calculated relative to the creation_date of the original index", ILM troubleshooting, "How
    min_age is calculated")."""
    hot: dict[str, Any]
    if _dated(config):
        hot = {"set_priority": {"priority": 100}}
    else:
        hot = {"rollover": {"max_primary_shard_size": "50gb", "max_age": "30d"}}
    phases: dict[str, Any] = {"hot": {"actions": hot}}
    if config.ilm_delete_after is not None:
        phases["delete"] = {"min_age": f"{int(config.ilm_delete_after)}s", "actions": {"delete": {}}}
    return {"policy": {"_meta": {"managed_by": "clawd-agent"}, "phases": phases}}
