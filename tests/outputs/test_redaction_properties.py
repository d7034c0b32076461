"""Property-based tests of the redaction of destination answers (outputs/http.py ``excerpt``).

Random secrets (printable, with characters that change under JSON escaping, percent-encoding and
base64) are configured as an output's credentials; random answers echo them back in random ways and
go through the output's real ``send`` with its HTTP request replaced by a fake (as
tests/outputs/test_answer_properties.py does). The Outcome's ``reason`` and ``excerpt`` (what status,
logs and the DLQ show) must never hold a secret in a form ``excerpt`` claims to mask
(``agent.secret_forms.forms``: as it is in any letter case, JSON-escaped with ``\\/`` and
``\\uXXXX``, percent-encoded, HTML-escaped), nor the start of one cut at the window's end.

The ``test_defect_*`` tests at the end pin the defects found here (each failed before its fix).
"""

from __future__ import annotations

import html
import json
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agent.config_loader import load_section
from agent.config_types import Secret
from outputs.base import Outcome, Status
from outputs.drain import Drain
from outputs.elasticsearch import ElasticsearchOutput
from outputs.http import EXCERPT_LIMIT, HttpResponse, excerpt
from outputs.splunk_hec import SplunkHecOutput, SplunkHecOutputConfig
from spool.store import Spool
from tests.outputs.drain_kit import caught_up, fill, run_until
from tests.outputs.test_answer_properties import NOWHERE, es_batch, hec_batch
from tests.outputs.test_elasticsearch import output as es_output

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture])
WINDOW = EXCERPT_LIMIT * 4  # bytes of the body excerpt() reads

# ------------------------------------------------------------------------------------ secrets

#: Characters that change under URL-encoding, JSON escaping or base64, and some non-ASCII (BMP).
SPECIAL = " \"'\\/+=%@:&?#<>é日ßÄ"
SECRET_CHARS = st.one_of(st.sampled_from("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ0123456789-_."),
                         st.sampled_from(SPECIAL))
#: 8-40 characters, not blank at either end (a ``file:`` secret is stripped; a header value too).
SECRETS = st.text(SECRET_CHARS, min_size=8, max_size=40).filter(lambda s: s == s.strip())


def claimed_forms(s: str) -> list[str]:
    """Every form of ``s`` that ``excerpt`` claims to mask (``agent.secret_forms.forms``)."""
    escaped = orjson.dumps(s).decode()[1:-1]
    forms = [s, s.upper(), s.lower(), escaped, escaped.replace("/", "\\/"), json.dumps(s)[1:-1],
             urllib.parse.quote(s, safe=""), urllib.parse.quote(s), urllib.parse.quote_plus(s),
             html.escape(s), html.escape(s).replace("&#x27;", "&#39;")]
    # A letter-case change that changes the length (ß -> SS) is no "letter case" a regex can fold.
    return [f for f in dict.fromkeys(forms) if len(f) >= 4 and not (f in (s.upper(), s.lower())
                                                                     and len(f) != len(s))]


def latin1(s: str) -> bool:
    """Whether ``s`` can be a header value: the config refuses others (http.client sends Latin-1)."""
    try:
        s.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def leaked(text: str, s: str) -> list[str]:
    return [f for f in claimed_forms(s) if f in text]


def encoded(draw: st.DrawFn, s: str) -> str:
    """``s`` as a destination may echo it (only the claimed forms)."""
    how = draw(st.sampled_from(["raw", "upper", "lower", "json", "json_ascii", "quote", "quote_plus",
                                "authorization", "repeated"]))
    if how == "upper" and len(s.upper()) == len(s):
        return s.upper()
    if how == "lower" and len(s.lower()) == len(s):
        return s.lower()
    if how == "json":
        return orjson.dumps(s).decode()[1:-1]
    if how == "json_ascii":
        return json.dumps(s)[1:-1]
    if how == "quote":
        return urllib.parse.quote(s, safe="")
    if how == "quote_plus":
        return urllib.parse.quote_plus(s)
    if how == "authorization":
        return f"Authorization: {draw(st.sampled_from(['Bearer', 'Splunk', 'ApiKey', 'Token']))} {s}"
    if how == "repeated":
        return " ".join([s] * draw(st.integers(2, 5)))
    return s


def wrap(draw: st.DrawFn, inner: str) -> str:
    return (draw(st.sampled_from(["", "failed to parse: ", "echo: ", "header value [", "x" * 280]))
            + inner + draw(st.sampled_from(["", "]", " rejected", " " * 5])))


# ------------------------------------------------------------------------------------ outputs


def es_with(mode: str, s: str) -> ElasticsearchOutput:
    """An Elasticsearch output holding ``s`` as its credential of ``mode`` (an ${ENV} part too)."""
    env = {"S": s}
    if mode == "api_key":
        if ":" not in s and not latin1(s):  # the config refuses a key no header can carry ('id:key'
            assume(False)  # is sent base64-encoded)
        return es_output(NOWHERE.url, api_key=Secret.parse("${S}", env))
    if mode == "basic":
        return es_output(NOWHERE.url, username="shipper", password=Secret.parse("${S}", env))
    if mode == "bearer":
        if not latin1(s):  # the config refuses a token no header can carry
            assume(False)
        return es_output(NOWHERE.url, bearer_token=Secret.parse("${S}", env))
    if mode == "header":
        assume(latin1(s))
        return es_output(NOWHERE.url, headers={"X-Api-Key": Secret.parse("${S}", env)})
    assert mode == "proxy"
    assume(latin1(s))  # the client refuses a proxy credential no Proxy-Authorization header can carry
    return es_output(NOWHERE.url, proxy=Secret.parse("http://shipper:${S}@proxy:3128", env))


def hec_with(mode: str, s: str) -> SplunkHecOutput:
    table: dict[str, Any] = {"type": "splunk_hec", "endpoint": NOWHERE.url, "token": "${S}"}
    if mode == "token" and not latin1(s):  # the config refuses a token no header can carry
        assume(False)
    if mode == "header":
        assume(latin1(s))
        table["headers"] = {"X-Custom": "${S}"}
        table["token"] = "canary-plain-hec-token"
    elif mode == "proxy":
        assume(latin1(s))  # the client refuses a proxy credential no Proxy-Authorization can carry
        table["proxy"] = "http://shipper:${S}@proxy:3128"
        table["token"] = "canary-plain-hec-token"
    cfg = load_section(SplunkHecOutputConfig, table, "test [outputs.hec]", env={"S": s})
    out = SplunkHecOutput("hec", cfg)
    out.open()
    return out


def es_send(out: ElasticsearchOutput, status: int, body: bytes, n: int = 2) -> Outcome:
    batch = es_batch(out, [False] * n)
    out._request = lambda *a, **kw: HttpResponse(status, {}, body, 0.001)  # type: ignore[method-assign]
    try:
        return out.send(batch)
    finally:
        out.close()


def hec_send(out: SplunkHecOutput, status: int, body: bytes, n: int = 2) -> Outcome:
    batch = hec_batch(out, [False] * n)
    out.request = lambda *a, **kw: HttpResponse(status, {}, body, 0.001)  # type: ignore[method-assign]
    try:
        return out.send(batch)
    finally:
        out.close()


def check(outcome: Outcome, s: str, extra: tuple[str, ...] = ()) -> None:
    for what, text in (("reason", outcome.reason), ("excerpt", outcome.excerpt)):
        for secret in (s, *extra):
            assert not leaked(text, secret), (what, text, secret)


ES_MODES = st.sampled_from(["api_key", "basic", "bearer", "header", "proxy"])
HEC_MODES = st.sampled_from(["token", "header", "proxy"])


# ------------------------------------------------------------------------------------ 1. answers


def plain_answer(draw: st.DrawFn, shape: str, text: str) -> tuple[int, bytes]:
    """An answer that is not the vendor's own: a text error ("text") or a proxy's 2xx page."""
    if shape == "text":
        return draw(st.sampled_from([400, 401, 502, 503])), text.encode()
    return draw(st.sampled_from([200, 202])), f"<html>{text}</html>".encode()


@st.composite
def es_answers(draw: st.DrawFn, s: str) -> tuple[int, bytes]:
    text = wrap(draw, encoded(draw, s))
    shape = draw(st.sampled_from(["request", "item", "text", "proxy2xx"]))
    if shape == "request":
        status = draw(st.sampled_from([400, 401, 403, 404, 407, 413, 429, 500, 503]))
        return status, orjson.dumps({"error": {"type": draw(st.sampled_from(["security_exception", text])),
                                               "reason": text}, "status": status})
    if shape == "item":
        status = draw(st.sampled_from([400, 404, 403, 409, 429, 500]))
        items = [{"create": {"status": 201}},
                 {"create": {"status": status, "error": {"type": "mapper_parsing_exception",
                                                         "reason": text}}}]
        return 200, orjson.dumps({"errors": True, "items": items})
    return plain_answer(draw, shape, text)


@SETTINGS
@given(s=SECRETS, mode=ES_MODES, data=st.data())
def test_es_answer_never_echoes_a_claimed_form(s: str, mode: str, data: st.DataObject) -> None:
    out = es_with(mode, s)
    status, body = data.draw(es_answers(s))
    extra = (f"shipper:{s}",) if mode in ("basic", "proxy") else ()
    check(es_send(out, status, body), s, extra)


@st.composite
def hec_answers(draw: st.DrawFn, s: str) -> tuple[int, bytes]:
    text = wrap(draw, encoded(draw, s))
    shape = draw(st.sampled_from(["hec", "text", "proxy2xx"]))
    if shape == "hec":
        code = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 9, 10, 12, 13, 14, 16]))
        status = draw(st.sampled_from([400, 401, 403, 500, 503]))
        answer: dict[str, Any] = {"text": text, "code": code}
        if draw(st.booleans()):
            answer["invalid-event-number"] = draw(st.integers(0, 1))
        return status, orjson.dumps(answer)
    return plain_answer(draw, shape, text)


@SETTINGS
@given(s=SECRETS, mode=HEC_MODES, data=st.data())
def test_hec_answer_never_echoes_a_claimed_form(s: str, mode: str, data: st.DataObject) -> None:
    out = hec_with(mode, s)
    status, body = data.draw(hec_answers(s))
    extra = (f"shipper:{s}",) if mode == "proxy" else ()
    check(hec_send(out, status, body), s, extra)


# ------------------------------------------------------------------------------------ 2. the cut


@SETTINGS
@given(s=st.text(SECRET_CHARS, min_size=8, max_size=40).filter(lambda s: s == s.strip() and
                                                                 s.isascii()), data=st.data())
def test_a_secret_cut_by_the_window_leaves_no_prefix(s: str, data: st.DataObject) -> None:
    """The window (``limit * 4`` bytes) cuts the token; spaces before it collapse, so its end is in
    the excerpt. A bearer token (``Bearer <s>`` is among the secrets too: its 'B' once masked alone,
    test_defect_cut_prefix_masked_only_by_the_first_secret); a cut inside a multi-byte character
    is test_defect_cut_inside_a_multibyte_character's."""
    keep = data.draw(st.integers(1, len(s) - 1))
    body = b" " * (WINDOW - keep) + s.encode() + b" trailer"
    outcome = es_send(es_with("bearer", s), 502, body)
    assert outcome.excerpt.endswith("***"), outcome.excerpt
    assert s[:keep] not in outcome.excerpt or keep < 2


@SETTINGS
@given(s=SECRETS, data=st.data())
def test_the_limit_cut_leaves_no_prefix(s: str, data: st.DataObject) -> None:
    """The output cut at ``EXCERPT_LIMIT`` characters comes after masking: a secret across it is
    masked whole, so no start of it is left before the '...'."""
    at = data.draw(st.integers(0, EXCERPT_LIMIT + 5))
    body = ("x" * at + s + "y" * 400).encode()
    outcome = hec_send(hec_with("token", s), 400, body)
    head = outcome.excerpt.removesuffix("...")
    assert not any(head.endswith(s[:k]) for k in range(4, len(s) + 1)), outcome.excerpt


# ------------------------------------------------------------------------------------ 3. the DLQ


def dlq_of(out: Any, tmp_path: Any, n: int = 2) -> list[Any]:
    """The DLQ entries a drain stores for ``out``'s answers, on a spool of its own under
    ``tmp_path`` (one per example: hypothesis may draw the same values again)."""
    spool = Spool(str(Path(tempfile.mkdtemp(dir=tmp_path)) / "spool.db"))
    try:
        fill(spool, n)
        spool.ensure_cursor(out.name)
        run_until(Drain(out, spool, spool.reader()), caught_up(spool, out.name))
        return spool.dlq_list(out.name)
    finally:
        spool.close()


def assert_dlq_clean(entries: list[Any], s: str) -> None:
    assert entries, "nothing was dead-lettered"
    for e in entries:
        assert not leaked(e.reason, s), e.reason
        assert not leaked(bytes(e.response_excerpt or b"").decode("utf-8", "replace"), s), e.response_excerpt


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(s=SECRETS, mode=ES_MODES, data=st.data())
def test_es_dlq_entry_holds_no_secret(tmp_path: Any, s: str, mode: str, data: st.DataObject) -> None:
    out = es_with(mode, s)
    out.config.batch_max_wait = 0  # type: ignore[assignment]
    reason = wrap(data.draw, encoded(data.draw, s))

    def answer(*a: Any, **kw: Any) -> HttpResponse:
        n = a[2].raw().count(b"\n") // 2 if len(a) > 2 else 2
        items = [{"create": {"status": 400, "error": {"type": "mapper_parsing_exception",
                                                      "reason": reason}}}] * n
        return HttpResponse(200, {}, orjson.dumps({"errors": True, "items": items}), 0.001)

    out._request = answer  # type: ignore[method-assign]
    try:
        assert_dlq_clean(dlq_of(out, tmp_path), s)
    finally:
        out.close()


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(s=SECRETS, data=st.data())
def test_hec_dlq_entry_holds_no_secret(tmp_path: Any, s: str, data: st.DataObject) -> None:
    out = hec_with("token", s)
    out.config.batch_max_wait = 0  # type: ignore[assignment]
    text = wrap(data.draw, encoded(data.draw, s))
    body = orjson.dumps({"text": text, "code": 6, "invalid-event-number": 0})
    out.request = lambda *a, **kw: HttpResponse(400, {}, body, 0.001)  # type: ignore[method-assign]
    try:
        assert_dlq_clean(dlq_of(out, tmp_path, n=1), s)
    finally:
        out.close()


# ------------------------------------------------------------------------------------ defects


def test_defect_json_ascii_escape_of_a_non_bmp_secret() -> None:
    s = "tok\U0001f600en-secret-42"
    # A basic-auth password: sent base64-encoded (UTF-8), it may hold any character (a proxy's
    # Proxy-Authorization is encoded as Latin-1 by requests, so the client refuses one outside it).
    outcome = es_send(es_with("basic", s), 403, json.dumps({"error": f"bad {s}", "status": 403}).encode())
    assert "\\ud83d\\ude00en-secret-42" not in outcome.excerpt, outcome.excerpt


def test_defect_cut_prefix_masked_only_by_the_first_secret() -> None:
    s = "a1b2c3d4e5f6g7h8i9jS-rest-of-the-token"
    body = b" " * (WINDOW - 20) + s.encode()
    outcome = hec_send(hec_with("token", s), 400, body)
    assert s[:19] not in outcome.excerpt, outcome.excerpt


def test_defect_cut_prefix_in_another_letter_case() -> None:
    s = "abcdefghijklmnopqrstuvwxyz0123"
    body = b" " * (WINDOW - 20) + s.upper().encode()
    outcome = es_send(es_with("bearer", s), 502, body)
    assert s[:20].upper() not in outcome.excerpt, outcome.excerpt


def test_defect_cut_inside_a_multibyte_character() -> None:
    s = "pässwörd-secret-1234"
    body = b" " * (WINDOW - 7) + s.encode()  # 'pässw' + the first byte of 'ö'
    outcome = es_send(es_with("bearer", s), 502, body)
    assert "pässw" not in outcome.excerpt, outcome.excerpt


@pytest.mark.parametrize("form", ["quote", "json"])
def test_defect_cut_prefix_of_an_encoded_form(form: str) -> None:
    s = 'a/b"c/d"e/f"g/h"i/j"k/l"m/n'
    enc = urllib.parse.quote(s, safe="") if form == "quote" else orjson.dumps(s).decode()[1:-1]
    body = b" " * (WINDOW - 20) + enc.encode()
    outcome = es_send(es_with("bearer", s), 502, body)
    assert enc[:20] not in outcome.excerpt, outcome.excerpt


def test_defect_es_reason_object_formatted_with_repr() -> None:
    s = "q'x\"y-secret-1234"
    items = [{"create": {"status": 400, "error": {"type": "mapper_parsing_exception",
                                                  "reason": {"caused_by": s}}}}]
    outcome = es_send(es_with("bearer", s), 200, orjson.dumps({"errors": True, "items": items}), n=1)
    assert outcome.status is Status.PARTIAL
    assert "x\"y-secret-1234" not in outcome.reason, outcome.reason


def test_defect_non_ascii_api_key_makes_send_raise() -> None:
    outcome = es_send(es_with("api_key", "key-é-without-colon"), 400, b'{"error":"bad"}')
    assert outcome.status is Status.PERMANENT


# ---------------------------------------------------------------- once gaps, now masked


@pytest.mark.parametrize("how", ["quote_keep_slash", "html_hex", "html_decimal"])
def test_a_path_encoded_or_html_escaped_echo_is_masked(how: str) -> None:
    """Once gaps (a path keeps '/' unencoded; a gateway's HTML error page escapes quotes); base64 of
    the bare secret and upper-case-then-encoded echoes are still not claimed (docs/outputs.md §6)."""
    s = "Pä/ss+w=rd'x-secret-42"
    forms = {"quote_keep_slash": urllib.parse.quote(s),
             "html_hex": s.replace("'", "&#x27;"),
             "html_decimal": s.replace("'", "&#39;")}
    outcome = hec_send(hec_with("token", s), 400, f"echo {forms[how]} end".encode())
    assert forms[how] not in outcome.excerpt, outcome.excerpt
    assert "x-secret-42" not in outcome.excerpt, outcome.excerpt


def test_excerpt_helper_masks_claimed_forms_directly() -> None:
    """A sanity anchor for ``claimed_forms``: excerpt() itself masks each of them."""
    s = "a/b c\"d\\e+f=g%h@i:jé日"
    for f in claimed_forms(s):
        assert f not in excerpt(f"x {f} y".encode(), [s]), f
