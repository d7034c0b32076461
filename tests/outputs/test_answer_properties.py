"""Property-based tests of how the Elasticsearch and Splunk HEC outputs classify a destination's answers.

Arbitrary answers (any HTTP status, JSON of the wrong shape, truncated or non-JSON bodies, missing,
extra and mistyped fields, ack answers naming unknown ids) go through the output's real ``send``
with the HTTP layer replaced by a fake that returns them. For every answer:

1. classification never raises;
2. nothing is reported delivered that the answer does not confirm (Elasticsearch: an item of the
   ``create`` with a 2xx status or a 409, or the bulk answer's own ``"errors":false``; HEC: HTTP 200
   with code 0, 24 or 25 and, with acks, a ``true`` for that request's ackId; the prefix before a
   bad event or a busy server's ``invalid-event-number`` as the module docstring documents);
3. conservation: each event ends exactly once as delivered, retried or dead-lettered, as the drain
   applies the Outcome (outputs/drain.py ``_deliver_items``);
4. the DLQ only for what the vendor contract calls permanent (an Elasticsearch item's 4xx, a
   request-level 3xx/4xx, HEC's bad-event codes), never for a 2xx, 5xx, 408 or 429.

The tests at the end pin the defects these properties found (each failed before its fix): an
Elasticsearch item without a readable ``create`` status raised or went to the DLQ, another action's
result confirmed a ``create``; a HEC bad-event or busy code was acted on under a 2xx, 5xx, 408 or
429; an ack key of non-ASCII digits dropped every ``true`` of its answer.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outputs.base import DeliveryItem, Outcome, Status
from outputs.elasticsearch import ElasticsearchOutput
from outputs.http import HttpResponse
from outputs.splunk_hec import BAD_EVENT_CODES, HEC_TEXT, SUCCESS_CODES, SplunkHecOutput
from tests.outputs.test_elasticsearch import make_items
from tests.outputs.test_elasticsearch import output as es_output
from tests.outputs.test_splunk_hec import ACK_TOKEN, make_output
from tests.outputs.test_splunk_hec import items as hec_items

SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
#: ``make_output`` reads only ``server.url``; nothing listens there, the fake answers instead.
NOWHERE = SimpleNamespace(url="http://127.0.0.1:9")


# ------------------------------------------------------------------------------------ fates


def fates(outcome: Outcome, batch: list[DeliveryItem]) -> dict[str, set[int]]:
    """Each event's fate (its position in the batch) as the drain applies ``outcome``: DELIVERED all
    accepted; RETRY all again; PERMANENT ``failed`` (or all) to the DLQ, the rest accepted; PARTIAL
    ``failed`` to the DLQ, ``retry_items`` again, the rest accepted; SPLIT bisected (again), a single
    event to the DLQ. Checks that the outcome's lists name only events of the batch, each once."""
    where = {id(it): i for i, it in enumerate(batch)}

    def positions(listed: list[DeliveryItem], what: str) -> set[int]:
        found = [where.get(id(it)) for it in listed]
        assert None not in found, f"{what} names an event that is not in the batch: {outcome}"
        assert len(set(found)) == len(found), f"{what} names an event twice: {outcome}"
        return {i for i in found if i is not None}

    every = set(range(len(batch)))
    failed = positions(outcome.failed, "failed")
    again = positions(outcome.retry_items, "retry_items")
    status = outcome.status
    if status in (Status.DELIVERED, Status.RETRY, Status.SPLIT):
        assert not failed and not again, f"{status} with per-event lists the drain ignores: {outcome}"
    if status is Status.DELIVERED:
        result = {"delivered": every, "retried": set(), "dlq": set()}
    elif status is Status.RETRY:
        result = {"delivered": set(), "retried": every, "dlq": set()}
    elif status is Status.SPLIT:
        single = len(batch) == 1
        result = {"delivered": set(), "retried": set() if single else every,
                  "dlq": every if single else set()}
    elif status is Status.PERMANENT:
        assert not again, f"PERMANENT with retry_items the drain ignores: {outcome}"
        dlq = failed or every
        result = {"delivered": every - dlq, "retried": set(), "dlq": dlq}
    else:
        assert status is Status.PARTIAL
        assert not failed & again, f"an event both dead-lettered and retried: {outcome}"
        result = {"delivered": every - failed - again, "retried": again, "dlq": failed}
    # Conservation: the three sets cover the batch and never overlap.
    assert result["delivered"] | result["retried"] | result["dlq"] == every
    assert sum(len(s) for s in result.values()) == len(batch)
    return result


def _number(value: Any) -> float | None:
    """A JSON number (an int or an integral float: JSON does not tell 201 from 201.0), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return value


def _parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8)
RETRY_AFTER = st.none() | st.sampled_from(["5", "0", "-1", "1.5", "abc", "9" * 40,
                                           "Wed, 21 Oct 2015 07:28:00 GMT"]) | st.text(max_size=12)


def _headers(retry_after: str | None) -> dict[str, str]:
    return {} if retry_after is None else {"Retry-After": retry_after}


# ------------------------------------------------------------------------------------ Elasticsearch

REQUEST_STATUSES = st.one_of(
    st.just(200), st.just(200), st.just(200),
    st.sampled_from([201, 202, 204, 207, 301, 302, 400, 401, 403, 404, 407, 408, 409, 413, 429, 500,
                     502, 503, 504]),
    st.integers(200, 599))
#: Item statuses: 1xx-9xx, as ints or integral floats (JSON does not tell 201 from 201.0).
_ES_INTS = st.one_of(st.sampled_from([100, 200, 201, 299, 301, 400, 403, 404, 408, 409, 413, 429, 499,
                                      500, 503, 599, 600, 999]),
                     st.integers(200, 299), st.integers(100, 999))
ES_ITEM_STATUSES = _ES_INTS | _ES_INTS.map(float)
ES_ERROR_TYPES = st.sampled_from(["cluster_block_exception", "security_exception",
                                  "mapper_parsing_exception", "version_conflict_engine_exception",
                                  "es_rejected_execution_exception"])
ES_OPS = st.fixed_dictionaries(
    {"status": ES_ITEM_STATUSES},
    optional={"error": st.fixed_dictionaries({}, optional={"type": ES_ERROR_TYPES | JSON,
                                                           "reason": st.text(max_size=20) | JSON})
                       | JSON,
              "failure_store": st.sampled_from(["used", "not_enabled", "failed"]) | JSON,
              "_index": st.text(max_size=8)})
ES_ITEMS = ES_OPS.map(lambda op: {"create": op})
#: Items that are no ``create`` result: no status, a status that is no number, another action's key,
#: not an object at all.
MALFORMED_ES_ITEMS = st.one_of(
    st.sampled_from([{"create": {}}, {"create": {"status": "201"}}, {"create": {"status": None}},
                     {"create": {"status": True}}, {"create": {"status": [201]}}, {"create": 5},
                     {"create": None}, {}, 5, None, {"index": {"status": 409}},
                     {"delete": {"status": 200}}, {"create": {"status": 201}, "index": {"status": 201}}]),
    JSON)
NOT_A_LIST = JSON.filter(lambda v: not isinstance(v, list))


@st.composite
def es_answers(draw: st.DrawFn, n: int) -> tuple[int, bytes, str | None]:
    """(HTTP status, body, Retry-After) of one ``_bulk`` answer for ``n`` actions."""
    status = draw(REQUEST_STATUSES)
    shape = draw(st.sampled_from(["bulk", "bulk", "bulk", "json", "bytes", "truncated"]))
    if shape == "json":
        body = orjson.dumps(draw(JSON.filter(lambda v: not (isinstance(v, dict) and "items" in v))))
    elif shape == "bytes":
        body = draw(st.sampled_from([b"", b"<html>502 Bad Gateway</html>", b"null", b"{", b"\xff\xfe"])
                    | st.binary(max_size=40))
    else:
        answer: dict[str, Any] = {}
        if draw(st.integers(0, 9)):  # mostly present
            answer["errors"] = draw(st.booleans() | JSON)
        count = draw(st.sampled_from([n, n, n, n, n - 1, n + 1, 0]))
        if draw(st.integers(0, 9)):  # mostly present, sometimes not a list
            answer["items"] = draw(st.lists(ES_ITEMS | MALFORMED_ES_ITEMS, min_size=count, max_size=count)
                                   if draw(st.integers(0, 5)) else NOT_A_LIST)
        answer.update(draw(st.dictionaries(st.sampled_from(["took", "ingest_took", "x"]), JSON, max_size=2)))
        body = orjson.dumps(answer)
        if shape == "truncated":
            body = body[:draw(st.integers(0, max(len(body) - 1, 0)))]
    return status, body, draw(RETRY_AFTER)


def _es_trusts_errors_false(body: bytes) -> bool:
    """The documented fast path (outputs/elasticsearch.py, module docstring and ``send``): the bulk
    answer's own ``"errors":false`` says every action succeeded. Parsed, a top-level ``false``; a
    body that does not parse is judged by its head alone, as the fast path reads it."""
    parsed = _parse(body)
    if isinstance(parsed, dict):
        return parsed.get("errors") is False
    return b'"errors":false' in body[:80].replace(b" ", b"")


def _es_items(status: int, body: bytes, n: int) -> list[dict[str, Any]] | None:
    """The per-item results when the answer is a bulk answer with one item per action (also with
    ``errors: false``: the items then still speak for their events)."""
    if status != 200:
        return None
    parsed = _parse(body)
    items = parsed.get("items") if isinstance(parsed, dict) and "errors" in parsed else None
    return items if isinstance(items, list) and len(items) == n else None


def _create_result(result: Any) -> Any:
    """The result of our ``create``: an item whose one key is ``create`` (the _bulk spec's
    ``ResponseItem`` under its operation's name), else None."""
    if isinstance(result, dict) and len(result) == 1:
        return result.get("create")
    return None


def es_confirmed(status: int, body: bytes, batch: list[DeliveryItem]) -> set[int]:
    """Events the answer confirms: an item of the ``create`` with a 2xx status or a 409."""
    if status == 200 and _es_trusts_errors_false(body):
        return set(range(len(batch)))
    confirmed = set()
    for i, result in enumerate(_es_items(status, body, len(batch)) or []):
        op = _create_result(result)
        code = _number(op.get("status")) if isinstance(op, dict) else None
        if code is not None and (200 <= code < 300 or code == 409):
            confirmed.add(i)
    return confirmed


def es_may_dlq(status: int, body: bytes, batch: list[DeliveryItem]) -> set[int]:
    """Events the answer allows to the DLQ: all of them for a request-level 3xx or 4xx that is not
    an auth failure, a 408 or a 429 (a 413 bisects down to one event, which then goes); an item's
    4xx other than 408 and 429 and other than a 403 ``cluster_block_exception`` (retried) or a 403
    on an unrouted event (an auth failure of the whole batch)."""
    every = set(range(len(batch)))
    if status != 200:
        if 300 <= status < 500 and status not in (401, 403, 407, 408, 429):
            return every
        return set()
    allowed = set()
    for i, result in enumerate(_es_items(status, body, len(batch)) or []):
        op = _create_result(result)
        code = _number(op.get("status")) if isinstance(op, dict) else None
        if code is None or not 400 <= code < 500 or code in (408, 429):
            continue
        error = op.get("error") if isinstance(op, dict) else None
        kind = error.get("type") if isinstance(error, dict) else None
        if code == 403 and (kind == "cluster_block_exception" or not batch[i].route):
            continue
        allowed.add(i)
    return allowed


def es_batch(out: ElasticsearchOutput, routed: list[bool]) -> list[DeliveryItem]:
    batch = make_items(len(routed), out=out)
    for item, route in zip(batch, routed, strict=True):
        if route:
            item.route = {"index": "alerts"}
            item.data = out.encode(item)
    return batch


def es_send(batch_routes: list[bool], status: int, body: bytes, retry_after: str | None
            ) -> tuple[list[DeliveryItem], Outcome]:
    out = es_output("http://127.0.0.1:9")
    batch = es_batch(out, batch_routes)
    out._request = lambda *a, **kw: HttpResponse(status, _headers(retry_after), body, 0.001)  # type: ignore[method-assign]
    try:
        return batch, out.send(batch)
    finally:
        out.close()


@SETTINGS
@given(data=st.data(), routed=st.lists(st.booleans(), min_size=1, max_size=6))
def test_es_answers_are_classified_soundly(data: st.DataObject, routed: list[bool]) -> None:
    status, body, retry_after = data.draw(es_answers(len(routed)))
    batch, outcome = es_send(routed, status, body, retry_after)  # 1. never raises
    fate = fates(outcome, batch)  # 3. conservation
    assert fate["delivered"] <= es_confirmed(status, body, batch), (outcome, body)  # 2.
    assert fate["dlq"] <= es_may_dlq(status, body, batch), (outcome, body)  # 4.


@SETTINGS
@given(routed=st.lists(st.booleans(), min_size=1, max_size=6), data=st.data())
def test_es_per_item_answers_classify_each_event(routed: list[bool], data: st.DataObject) -> None:
    """A 200 with ``errors: true`` and one item per action: each event exactly as its item says."""
    results = data.draw(st.lists(ES_ITEMS, min_size=len(routed), max_size=len(routed)))
    body = orjson.dumps({"errors": True, "items": results})
    batch, outcome = es_send(routed, 200, body, None)
    fate = fates(outcome, batch)
    confirmed = es_confirmed(200, body, batch)
    assert fate["delivered"] <= confirmed
    assert fate["dlq"] <= es_may_dlq(200, body, batch)
    if outcome.status is not Status.RETRY:  # no whole-batch auth failure: per item, exactly
        assert fate["delivered"] == confirmed
        for i, result in enumerate(results):
            code = _number(result["create"]["status"])
            assert code is not None
            if code >= 500 or code in (408, 429):
                assert i in fate["retried"], (i, result)


# ------------------------------------------------------------------------------------ Splunk HEC

HEC_STATUSES = st.one_of(
    st.just(200), st.just(200), st.just(200),
    st.sampled_from([201, 202, 204, 301, 400, 401, 403, 404, 408, 413, 429, 500, 502, 503]),
    st.integers(200, 599))
HEC_CODE_VALUES = st.one_of(st.sampled_from(sorted(HEC_TEXT)), st.sampled_from([0, 6, 7, 9]),
                            st.integers(-3, 40), st.sampled_from(["0", "6", True, False, 0.0, 6.0, None]))
EVENT_NUMBERS = st.one_of(st.integers(-3, 9), st.sampled_from([True, False, 2.0, "2", None, 2**63, -(2**63)]))
ACK_IDS = st.one_of(st.integers(0, 5), st.sampled_from([-1, 2**63, True, 1.0, "1", None]))


@st.composite
def hec_answers(draw: st.DrawFn, ack_ids: st.SearchStrategy[Any] = ACK_IDS
                ) -> tuple[int, bytes, str | None]:
    """(HTTP status, body, Retry-After) of one answer of the event endpoint."""
    status = draw(HEC_STATUSES)
    shape = draw(st.sampled_from(["success", "success", "refusal", "refusal", "hec", "hec", "json",
                                  "bytes", "truncated"]))
    if shape == "refusal":  # a bad event or a busy server, with its number (or a wrong one)
        status = draw(st.sampled_from([400, 400, 503, 503, 404, 413, 500]) | HEC_STATUSES)
        answer = {"text": "x", "code": draw(st.sampled_from(sorted(BAD_EVENT_CODES | {9})))}
        if draw(st.integers(0, 4)):
            answer["invalid-event-number"] = draw(st.integers(-1, 7) | EVENT_NUMBERS)
        body = orjson.dumps(answer)
    elif shape == "success":  # HEC's own acceptance, with or without an ackId
        answer = {"text": "Success", "code": draw(st.sampled_from(sorted(SUCCESS_CODES)))}
        if draw(st.booleans()):
            answer["ackId"] = draw(ack_ids)
        body = orjson.dumps(answer)
    elif shape == "json":
        body = orjson.dumps(draw(JSON))
    elif shape == "bytes":
        body = draw(st.sampled_from([b"", b"<html>Please log in</html>", b"null", b"{", b"\xff"])
                    | st.binary(max_size=30))
    else:
        answer = draw(st.fixed_dictionaries(
            {}, optional={"text": st.text(max_size=10), "code": HEC_CODE_VALUES,
                          "invalid-event-number": EVENT_NUMBERS, "ackId": ack_ids}))
        answer.update(draw(st.dictionaries(st.sampled_from(["extra", "acks", "status"]), JSON, max_size=2)))
        body = orjson.dumps(answer)
        if shape == "truncated":
            body = body[:draw(st.integers(0, max(len(body) - 1, 0)))]
    return status, body, draw(RETRY_AFTER)


def _hec_answer(body: bytes) -> tuple[int | None, Any, Any]:
    """(HEC code as HEC documents it, invalid-event-number, ackId) of a body."""
    parsed = _parse(body)
    if not isinstance(parsed, dict):
        return None, None, None
    code = parsed.get("code")
    if isinstance(code, bool) or not isinstance(code, int) or code not in HEC_TEXT:
        code = None
    return code, parsed.get("invalid-event-number"), parsed.get("ackId")


def _index(n: Any, size: int, low: int) -> int | None:
    """``invalid-event-number`` when it is an int in ``low..size-1`` (an int, not a bool)."""
    if isinstance(n, bool) or not isinstance(n, int) or not low <= n < size:
        return None
    return n


def _final(status: int) -> bool:
    """A status the contract reads as final for the events (a 3xx or a 4xx other than 408 and
    429); never a 2xx (only 200 with code 0/24/25 speaks for HEC, and it is a success) nor a 5xx."""
    return 300 <= status < 500 and status not in (408, 429)


def hec_confirmed(status: int, body: bytes, batch: list[DeliveryItem], acks: bool) -> set[int]:
    """Events a POST's answer confirms (without acks): all for HTTP 200 with code 0, 24 or 25; the
    prefix HEC indexed before a bad event (codes 6, 7, 12, 13, 15 with ``invalid-event-number``
    n: events 0..n-1), or before a busy server stopped (code 9 with n: events 0..n-2, one re-sent
    as the sources count one lower). With acks, nothing: only the ack query confirms."""
    if acks:
        return set()
    code, number, _ = _hec_answer(body)
    every = set(range(len(batch)))
    if status == 200 and code in SUCCESS_CODES:
        return every
    if 200 <= status < 300:
        return set()
    if code in BAD_EVENT_CODES and (n := _index(number, len(batch), 0)) is not None:
        return set(range(n))
    if code == 9 and (n := _index(number, len(batch) + 1, 2)) is not None:
        return set(range(n - 1))
    return set()


def hec_may_dlq(status: int, body: bytes, batch: list[DeliveryItem], index_of: Any) -> set[int]:
    """Events a POST's answer allows to the DLQ: only under a final status; for a bad-event code
    with its number under a 4xx (HEC's refusal), that event (and for code 7, every later one bound
    for the same index). A 3xx is no HEC answer whatever its body says: the generic mapping's."""
    if not _final(status):
        return set()
    code, number, _ = _hec_answer(body)
    every = set(range(len(batch)))
    if status >= 400 and code in BAD_EVENT_CODES and (n := _index(number, len(batch), 0)) is not None:
        bad = {n}
        if code == 7:
            bad |= {j for j in range(n + 1, len(batch)) if index_of(batch[j]) == index_of(batch[n])}
        return bad
    return every


def hec_batch(out: SplunkHecOutput, routed: list[bool]) -> list[DeliveryItem]:
    batch = hec_items(out, len(routed))
    for item, route in zip(batch, routed, strict=True):
        if route:
            item.route = {"index": "security"}
            item.data = out.encode(item)
    return batch


@SETTINGS
@given(routed=st.lists(st.booleans(), min_size=1, max_size=6),
       answer=hec_answers())
def test_hec_answers_are_classified_soundly(routed: list[bool], answer: tuple[int, bytes, str | None]
                                            ) -> None:
    status, body, retry_after = answer
    out = make_output(NOWHERE)
    try:
        batch = hec_batch(out, routed)
        out.request = lambda *a, **kw: HttpResponse(status, _headers(retry_after), body, 0.001)  # type: ignore[method-assign]
        outcome = out.send(batch)  # 1. never raises
        fate = fates(outcome, batch)  # 3.
        assert fate["delivered"] <= hec_confirmed(status, body, batch, acks=False), (outcome, body)  # 2.
        assert fate["dlq"] <= hec_may_dlq(status, body, batch, out.index_of), (outcome, body)  # 4.
    finally:
        out.close()


#: Keys as HEC writes them, and others: "²" and other scripts' digits pass str.isdigit.
ACK_KEYS = st.one_of(st.integers(-2, 7).map(str),
                     st.sampled_from(["07", "1.0", "", " 1", "true", "\u00b2", "\u0663", "\uff17"]),
                     st.text(max_size=4))
ACK_VALUES = st.one_of(st.just(True), st.just(True), st.sampled_from([False, 1, "true", None, 1.0]), JSON)


@st.composite
def ack_answers(draw: st.DrawFn, ack_id: int) -> tuple[int, bytes]:
    """(HTTP status, body) of an ack query's answer; ``ack_id`` (the request's) is often among the
    keys, with ``true`` or another value."""
    status = draw(st.one_of(st.just(200), st.just(200), st.just(200),
                            st.sampled_from([400, 401, 403, 404, 405, 429, 500, 503])))
    shape = draw(st.sampled_from(["confirm", "confirm", "confirm", "acks", "acks", "code", "json", "bytes"]))
    if shape == "confirm":  # the request's own ackId, among others, mostly true
        value = True if draw(st.integers(0, 3)) else draw(st.sampled_from([False, 1, "true", None, 1.0]))
        acks: Any = {str(ack_id): value}
        acks.update(draw(st.dictionaries(ACK_KEYS.filter(lambda k: k != str(ack_id)), ACK_VALUES,
                                         max_size=3)))
        body = orjson.dumps({"acks": dict(sorted(acks.items()))})
    elif shape == "acks":
        acks = draw(st.dictionaries(ACK_KEYS, ACK_VALUES, max_size=4) | JSON)
        body = orjson.dumps({"acks": acks})
    elif shape == "code":
        body = orjson.dumps({"text": "x", "code": draw(HEC_CODE_VALUES)})
    elif shape == "json":
        body = orjson.dumps(draw(JSON))
    else:
        body = draw(st.sampled_from([b"", b"<html>nope</html>", b"{"]))
    return status, body


def ack_confirmed(post: tuple[int, bytes], ack: tuple[int, bytes], n: int) -> set[int]:
    """With acks, the events confirmed: all when HEC took the request (200, code 0/24/25, an int
    ackId) and an ack query answered 200 with ``true`` for that ackId (its decimal key)."""
    code, _, ack_id = _hec_answer(post[1])
    if post[0] != 200 or code not in SUCCESS_CODES or isinstance(ack_id, bool) or not isinstance(ack_id, int):
        return set()
    parsed = _parse(ack[1])
    acks = parsed.get("acks") if isinstance(parsed, dict) else None
    if ack[0] != 200 or not isinstance(acks, dict):
        return set()
    hit = any(v is True and k.isascii() and k.isdigit() and int(k) == ack_id for k, v in acks.items())
    return set(range(n)) if hit else set()


def ack_may_dlq(post: tuple[int, bytes], ack: tuple[int, bytes], batch: list[DeliveryItem],
                index_of: Any) -> set[int]:
    """With acks: the POST's own final refusals, and every event of a request HEC took when the
    ack query says 400 code 14 "ACK is disabled" (documented: the DLQ with a clear reason, as
    they were accepted and a replay may duplicate)."""
    code, _, ack_id = _hec_answer(post[1])
    if post[0] == 200 and code in SUCCESS_CODES and isinstance(ack_id, int) and not isinstance(ack_id, bool):
        ack_code, _, _ = _hec_answer(ack[1])
        return set(range(len(batch))) if ack[0] == 400 and ack_code == 14 else set()
    return hec_may_dlq(post[0], post[1], batch, index_of)


#: HEC's acceptance with an ackId: the start of every acked delivery.
ACCEPTED = st.tuples(st.just(200), st.builds(
    lambda code, ack_id: orjson.dumps({"text": "Success", "code": code, "ackId": ack_id}),
    st.sampled_from(sorted(SUCCESS_CODES)), st.integers(0, 5)), RETRY_AFTER)


@settings(SETTINGS, max_examples=80)
@given(routed=st.lists(st.booleans(), min_size=1, max_size=4),
       accepted=st.integers(0, 3), data=st.data())
def test_hec_acked_answers_are_classified_soundly(routed: list[bool], accepted: int,
                                                  data: st.DataObject) -> None:
    """With ack = true: delivered only on an ack query's ``true`` for this request's ackId (never on
    unknown ids, ids not asked, or values that are not ``true``); the rest times out and is re-sent."""
    post = data.draw(ACCEPTED if accepted else hec_answers())
    _, _, ack_id = _hec_answer(post[1])
    ack = data.draw(ack_answers(ack_id if type(ack_id) is int else 0))
    out = make_output(NOWHERE, token=ACK_TOKEN, ack=True, ack_poll_interval="1ms",
                      ack_poll_max_interval="2ms", ack_timeout="20ms")
    try:
        batch = hec_batch(out, routed)

        def answer(method: str, url: str, *a: Any, **kw: Any) -> HttpResponse:
            if url == out.event_url:
                return HttpResponse(post[0], _headers(post[2]), post[1], 0.001)
            return HttpResponse(ack[0], {}, ack[1], 0.001)

        out.request = answer  # type: ignore[method-assign]
        outcome = out.send(batch)
        fate = fates(outcome, batch)
        assert fate["delivered"] <= ack_confirmed(post[:2], ack, len(batch)), (outcome, post, ack)
        assert fate["dlq"] <= ack_may_dlq(post[:2], ack, batch, out.index_of), (outcome, post, ack)
    finally:
        out.close()


# ------------------------------------------------- defects the properties found (fixed)


def es_fates_for(results: list[Any], routed: bool = False) -> dict[str, set[int]]:
    body = orjson.dumps({"errors": True, "items": results})
    batch, outcome = es_send([routed] * len(results), 200, body, None)
    return fates(outcome, batch)


@pytest.mark.parametrize("result", [
    {"create": {"status": "201"}},
    {"create": {"status": None}},
    {"create": {"status": [201]}},
    {"create": 5},
    {"create": None},
])
def test_es_item_with_an_unreadable_status_is_retried_not_raised(result: Any) -> None:
    fate = es_fates_for([{"create": {"status": 201}}, result])
    assert fate["retried"] >= {1} and 1 not in fate["dlq"] | fate["delivered"]


@pytest.mark.parametrize("result", [
    {"create": {}},
    {"create": {"error": {"type": "x", "reason": "y"}}},
    {},
    5,
    None,
    {"create": {"status": True}},
])
def test_es_item_without_a_4xx_status_is_not_dead_lettered(result: Any) -> None:
    fate = es_fates_for([{"create": {"status": 201}}, result], routed=True)
    assert 1 not in fate["dlq"] and 1 not in fate["delivered"]


@pytest.mark.parametrize("result", [{"index": {"status": 409}}, {"delete": {"status": 200}}])
def test_es_answer_for_another_operation_confirms_nothing(result: Any) -> None:
    fate = es_fates_for([result])
    assert fate["delivered"] == set()


def hec_send(status: int, answer: dict[str, Any], n: int) -> dict[str, set[int]]:
    out = make_output(NOWHERE)
    try:
        batch = hec_batch(out, [False] * n)
        out.request = lambda *a, **kw: HttpResponse(status, {}, orjson.dumps(answer), 0.001)  # type: ignore[method-assign]
        return fates(out.send(batch), batch)
    finally:
        out.close()


@pytest.mark.parametrize(("status", "answer", "n"), [
    (200, {"text": "Invalid data format", "code": 6, "invalid-event-number": 1}, 3),
    (202, {"text": "Incorrect index", "code": 7, "invalid-event-number": 1}, 3),
    (503, {"text": "Invalid data format", "code": 6, "invalid-event-number": 1}, 3),
    (429, {"text": "Event field is required", "code": 12, "invalid-event-number": 0}, 2),
    (500, {"text": "Event field cannot be blank", "code": 13}, 1),  # SPLIT of one event: the DLQ
    (200, {"text": "Invalid data format", "code": 6}, 1),
])
def test_hec_bad_event_code_under_a_status_that_is_not_final(status: int, answer: dict[str, Any],
                                                              n: int) -> None:
    fate = hec_send(status, answer, n)
    assert fate["dlq"] == set() and fate["delivered"] == set()


def test_hec_200_with_busy_code_and_a_number_confirms_nothing() -> None:
    fate = hec_send(200, {"text": "Server is busy", "code": 9, "invalid-event-number": 3}, 4)
    assert fate["delivered"] == set()


def test_hec_ack_answer_with_a_non_ascii_digit_key_still_confirms_the_batch() -> None:
    out = make_output(NOWHERE, token=ACK_TOKEN, ack=True, ack_poll_interval="1ms",
                      ack_poll_max_interval="2ms", ack_timeout="50ms")
    try:
        batch = hec_batch(out, [False, False])

        def answer(method: str, url: str, *a: Any, **kw: Any) -> HttpResponse:
            if url == out.event_url:
                return HttpResponse(200, {}, b'{"text":"Success","code":0,"ackId":7}', 0.001)
            return HttpResponse(200, {}, orjson.dumps({"acks": {"\u00b2": True, "7": True}}), 0.001)

        out.request = answer  # type: ignore[method-assign]
        assert out.send(batch).status is Status.DELIVERED
    finally:
        out.close()
