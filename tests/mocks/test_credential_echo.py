"""The mocks' opt-in credential echo (``echo_headers``, outputs.mocks.server "Credential echo"): error
answers repeat the request's credentials, decoded as the vendor decodes them, so leak tests exercise
the agent's redaction; success answers never carry them, and without ``echo_headers`` nothing does."""

from __future__ import annotations

import base64
import json
from typing import Any

from outputs.mocks.elasticsearch import ElasticsearchMock
from outputs.mocks.server import Headers, MockApp, MockRequest
from outputs.mocks.splunk_hec import HecToken, SplunkHecApp

USER, PASSWORD = "shipper", "CANARY-pw-3f1a"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
WRONG = "Basic " + base64.b64encode(f"{USER}:CANARY-wrong".encode()).decode()
TOKEN = "CANARY-0000-4000-8000-00000000beef"
BULK = (b'{"create":{"_index":"logs-app-default","_id":"1"}}\n'
        b'{"@timestamp":"2026-11-26T08:00:00Z","x":1}\n')


def answer(app: MockApp, method: str, path: str, body: bytes, auth: str) -> tuple[int, Any]:
    """``app``'s answer as the server sends it (the echo applied where it is switched on)."""
    kind = "application/x-ndjson" if path.endswith("_bulk") else "application/json"
    req = MockRequest(method, path, {}, Headers([("Content-Type", kind), ("Authorization", auth)]),
                      body, len(body))
    resp = app.handle(req)
    if app.echo_headers:
        resp = app.echo_response(req, resp)
    return resp.status, json.loads(resp.body) if resp.body else None


def test_elasticsearch_echoes_the_decoded_credential_into_request_and_item_errors() -> None:
    app = ElasticsearchMock(users={USER: PASSWORD}, echo_headers=["Authorization"])
    status, body = answer(app, "POST", "/_bulk", BULK, WRONG)
    assert status == 401 and f"echo[{USER}:CANARY-wrong]" in body["error"]["reason"]
    bad = BULK.replace(b'"@timestamp":"2026-11-26T08:00:00Z",', b"")  # refused: no @timestamp
    status, body = answer(app, "POST", "/_bulk", bad, BASIC)
    err = body["items"][0]["create"]["error"]
    assert status == 200 and f"echo[{USER}:{PASSWORD}]" in err["reason"]
    assert f"echo[{USER}:{PASSWORD}]" in err["type"]  # so a client matching types exactly misses it
    status, body = answer(app, "POST", "/_bulk", BULK, BASIC)
    assert status == 200 and PASSWORD not in json.dumps(body)  # a success carries no echo


def test_hec_echoes_the_token_into_error_texts_only() -> None:
    app = SplunkHecApp([HecToken(TOKEN)], echo_headers=["Authorization"])
    event = b'{"event":{"a":1}}'
    status, body = answer(app, "POST", "/services/collector/event", event, "Splunk CANARY-wrong")
    assert status == 403 and "echo[Splunk CANARY-wrong]" in body["text"]
    status, body = answer(app, "POST", "/services/collector/event", b'{"event":""}', f"Splunk {TOKEN}")
    assert status == 400 and f"echo[{TOKEN}]" in body["text"]
    status, body = answer(app, "POST", "/services/collector/event", event, f"Splunk {TOKEN}")
    assert status == 200 and body["code"] == 0 and TOKEN not in json.dumps(body)


def test_without_echo_headers_no_answer_repeats_a_credential() -> None:
    es = ElasticsearchMock(users={USER: PASSWORD})
    hec = SplunkHecApp([HecToken(TOKEN)])
    assert es.echo_headers == () and hec.echo_headers == ()
    for app, path, body, auth in ((es, "/_bulk", BULK, WRONG),
                                  (hec, "/services/collector/event", b'{"event":""}', f"Splunk {TOKEN}")):
        status, answered = answer(app, "POST", path, body, auth)
        assert status >= 400 and "echo[" not in json.dumps(answered)
