"""Property tests of agent/signature.py ``verify_certification_signature`` and of its one caller.

hushd's scheme (../shared/reference/clawdstrike-events.md, certification webhooks): the header
``x-clawdstrike-signature: sha256=<hex HMAC-SHA256(secret, body)>`` over the exact body, no timestamp and
no nonce (replays are possible upstream; the spool de-duplicates them by the body-derived event id), one
signature per header. docs/internals.md §1: the function raises ``SignatureError`` with a clear reason.
Properties:

- A correctly signed body always verifies, for any body and any non-empty secret, with the hex digits in
  either case and optional whitespace around the value (the docstring's contract); verification is pure,
  so the same request verifies again (the scheme has no replay window to test).
- Any change to the body (one flipped bit, a changed ``timestamp`` field, a byte added or cut), to the
  secret, or to one hex digit of the signature raises ``SignatureError`` "does not match".
- Malformed headers (empty, blank, no or another prefix, inner spaces, wrong length, non-hex, Unicode
  digits, several signatures, arbitrary text) raise ``SignatureError`` and nothing else, with a reason of
  the documented kind, and no reason ever contains the secret or the expected digest.
- Every well-formed header is compared with ``hmac.compare_digest`` exactly once, against the expected
  digest (constant time, and no short-cut before it).
- The caller (agent/inputs/http_listener.py): with a secret set, a certification webhook without a
  signature is refused (docs/inputs.md: 401 "with a secret, a missing or wrong signature on a
  certification webhook") however the body carries it: alone, in a JSON array or as an NDJSON line.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agent.inputs.http_listener import HttpInput
from agent.signature import SIGNATURE_HEADER, SignatureError, verify_certification_signature
from tests.inputs.helpers import AUDIT_LINES, event_ids, http_post, open_spool
from tests.inputs.test_unix_http import _cert_body

SETTINGS = settings(max_examples=200, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

REASONS = (r"^(missing x-clawdstrike-signature header|malformed x-clawdstrike-signature header: .+"
           r"|x-clawdstrike-signature does not match the body \(wrong secret or altered body\)"
           r"|no webhook secret configured)$")

bodies = st.binary(max_size=300) | st.builds(
    lambda ts, target: orjson.dumps({"event": "violation.detected", "timestamp": ts,
                                     "data": {"actionType": "egress", "target": target}}),
    st.text(max_size=30), st.text(max_size=30))
secrets = st.binary(min_size=1, max_size=80)
ows = st.text(st.sampled_from(" \t"), max_size=3)


def hexdigest(body: bytes, secret: bytes) -> str:
    """The digest hushd sends, computed here independently of the module."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def mixed_case(digest: str, mask: int) -> str:
    """``digest`` with the letters whose bit is set in ``mask`` upper-cased."""
    return "".join(c.upper() if mask >> i & 1 else c for i, c in enumerate(digest))


@SETTINGS
@given(bodies, secrets, st.integers(0, 2 ** 64 - 1), st.sampled_from(["sha256=", "SHA256=", "Sha256="]),
       ows, ows)
def test_correctly_signed_bodies_always_verify(body: bytes, secret: bytes, mask: int, prefix: str,
                                               lead: str, trail: str) -> None:
    """hushd's header verifies, hex in any case, with spaces or tabs around it; and again (no state)."""
    header = f"{lead}{prefix}{mixed_case(hexdigest(body, secret), mask)}{trail}"
    assert verify_certification_signature(body, header, secret) is None
    assert verify_certification_signature(body, header, secret) is None


@SETTINGS
@given(bodies, secrets, st.data())
def test_any_change_to_the_body_is_refused(body: bytes, secret: bytes, data: st.DataObject) -> None:
    """A flipped bit anywhere, a byte added or removed: "does not match"."""
    header = "sha256=" + hexdigest(body, secret)
    how = data.draw(st.sampled_from(["flip", "append", "cut"] if body else ["append"]))
    if how == "flip":
        i = data.draw(st.integers(0, len(body) - 1))
        changed = body[:i] + bytes([body[i] ^ (1 << data.draw(st.integers(0, 7)))]) + body[i + 1:]
    elif how == "append":
        changed = body + data.draw(st.binary(min_size=1, max_size=4))
    else:
        changed = body[:data.draw(st.integers(0, len(body) - 1))]
    with pytest.raises(SignatureError, match=r"does not match the body"):
        verify_certification_signature(changed, header, secret)


@SETTINGS
@given(st.text(max_size=40), st.text(max_size=40), secrets)
def test_a_changed_timestamp_is_refused(ts: str, other: str, secret: bytes) -> None:
    """The timestamp travels in the signed body: a replay with another timestamp does not verify."""
    assume(ts != other)

    def body(t: str) -> bytes:
        return orjson.dumps({"event": "violation.detected", "timestamp": t, "data": {"actionType": "x"}})

    with pytest.raises(SignatureError, match=r"does not match the body"):
        verify_certification_signature(body(other), "sha256=" + hexdigest(body(ts), secret), secret)


@SETTINGS
@given(bodies, secrets, secrets)
def test_another_secret_is_refused(body: bytes, secret: bytes, other: bytes) -> None:
    """Signed with another key: "does not match" (HMAC pads keys, so compare digests, not keys)."""
    assume(hexdigest(body, secret) != hexdigest(body, other))
    with pytest.raises(SignatureError, match=r"does not match the body"):
        verify_certification_signature(body, "sha256=" + hexdigest(body, other), secret)


@SETTINGS
@given(bodies, secrets, st.integers(0, 63), st.integers(1, 15))
def test_one_wrong_hex_digit_is_refused(body: bytes, secret: bytes, i: int, delta: int) -> None:
    """Any single hex digit changed: "does not match"."""
    digest = hexdigest(body, secret)
    wrong = digest[:i] + format((int(digest[i], 16) + delta) % 16, "x") + digest[i + 1:]
    with pytest.raises(SignatureError, match=r"does not match the body"):
        verify_certification_signature(body, "sha256=" + wrong, secret)


@st.composite
def malformed_headers(draw: st.DrawFn) -> tuple[str, bytes]:
    """(header, body) pairs whose header is not ``sha256=<64 hex>`` with optional whitespace around."""
    body = draw(bodies)
    digest = hexdigest(body, b"k")
    kind = draw(st.sampled_from(["text", "blank", "prefix", "inner-space", "length", "non-hex",
                                 "unicode-hex", "several", "bare"]))
    if kind == "text":
        header = draw(st.text(max_size=90))
        assume(header.strip() != "sha256=" + digest)
    elif kind == "blank":
        header = draw(st.text(st.sampled_from(" \t\r\n"), max_size=4))
    elif kind == "prefix":
        header = draw(st.sampled_from(["sha1=", "sha512=", "sha256:", "sha256 =", "sha256==", "=", "sha-256=",
                                       "hmac-sha256=", "v1="])) + digest
    elif kind == "inner-space":
        i = draw(st.integers(7, 70))
        full = "sha256=" + digest
        header = full[:i] + draw(st.sampled_from([" ", "\t", "  "])) + full[i:]
    elif kind == "length":
        n = draw(st.integers(0, 130).filter(lambda n: n != 64))
        header = "sha256=" + (digest * 3)[:n]
    elif kind == "non-hex":
        i = draw(st.integers(0, 63))
        header = "sha256=" + digest[:i] + draw(st.sampled_from("gGzZ-_+/=x.")) + digest[i + 1:]
    elif kind == "unicode-hex":
        i = draw(st.integers(0, 63))
        header = "sha256=" + digest[:i] + draw(st.sampled_from("٣０ａＦ𝟎")) + digest[i + 1:]
    elif kind == "several":
        sep = draw(st.sampled_from([",", ", ", " ", ";"]))
        header = f"sha256={digest}{sep}sha256={digest}"
    else:
        header = digest
    return header, body


@SETTINGS
@given(malformed_headers() | st.tuples(st.none(), bodies))
def test_malformed_headers_only_ever_raise_signature_error(case: tuple[str | None, bytes]) -> None:
    """Never another exception type, never a pass, and a reason of the documented kind."""
    header, body = case
    with pytest.raises(SignatureError) as exc:
        verify_certification_signature(body, header, b"k")
    reason = str(exc.value)
    assert type(exc.value) is SignatureError
    assert re.fullmatch(REASONS, reason), reason
    assert "\n" not in reason and len(reason) < 200


@SETTINGS
@given(bodies, secrets, st.one_of(st.none(), st.text(max_size=80), st.builds(
    "sha256={}".format, st.text(st.sampled_from("0123456789abcdef"), min_size=64, max_size=64))))
def test_reasons_never_contain_the_secret_or_the_expected_digest(body: bytes, secret: bytes,
                                                                  header: str | None) -> None:
    """Whatever fails, the reason names the header, not the key or the right answer."""
    digest = hexdigest(body, secret)
    assume(header is None or digest not in header.lower())
    with pytest.raises(SignatureError) as exc:
        verify_certification_signature(body, header, secret)
    reason = str(exc.value)
    assert digest not in reason.lower()
    assert len(secret) < 4 or secret.decode("latin-1") not in reason


@SETTINGS
@given(bodies, st.text(max_size=80) | st.none())
def test_no_secret_is_always_refused(body: bytes, header: str | None) -> None:
    """An empty key never verifies anything (an HMAC under an empty key is forgeable by anyone)."""
    with pytest.raises(SignatureError, match=r"^no webhook secret configured$"):
        verify_certification_signature(body, header, b"")
    with pytest.raises(SignatureError, match=r"^no webhook secret configured$"):
        verify_certification_signature(body, "sha256=" + hexdigest(body, b""), b"")


@SETTINGS
@given(bodies, secrets, st.booleans(), st.integers(0, 2 ** 64 - 1))
def test_well_formed_headers_are_compared_in_constant_time(body: bytes, secret: bytes, right: bool,
                                                           mask: int) -> None:
    """Exactly one ``hmac.compare_digest`` per well-formed header, with the expected digest on one side."""
    digest = hexdigest(body, secret)
    given_hex = digest if right else hexdigest(body + b"x", secret)
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("agent.signature.hmac.compare_digest", spy)
        try:
            verify_certification_signature(body, "sha256=" + mixed_case(given_hex, mask), secret)
            outcome = True
        except SignatureError:
            outcome = False
    assert outcome is (right or given_hex == digest)
    assert len(calls) == 1 and digest in calls[0] and given_hex in calls[0]


# ---------------------------------------------------------------------------------------------------
# The caller: when does the HTTP input ask for a signature?
# ---------------------------------------------------------------------------------------------------

SECRET = "whsec"


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[HttpInput, object]]:
    """A loopback HTTP input with a certification secret, on a real spool."""
    spool, writer = open_spool(tmp_path)
    inp = HttpInput("http", {"listen": "127.0.0.1:0", "certification_secret": SECRET}, writer)
    inp.start()
    yield inp, spool
    inp.stop()
    writer.stop()
    spool.close()


CERT = _cert_body()
WRAPPINGS = {
    "alone": CERT,
    "json-array": b"[" + CERT + b"]",
    "json-array-after-an-audit-record": b"[" + AUDIT_LINES[0].strip() + b"," + CERT + b"]",
    "ndjson": CERT + b"\n",
    "ndjson-two-webhooks": CERT + b"\n" + CERT.replace(b"agent-007", b"agent-008") + b"\n",
    "ndjson-after-an-audit-line": AUDIT_LINES[0].strip() + b"\n" + CERT + b"\n",
}


@pytest.mark.parametrize("wrapping", sorted(WRAPPINGS))
def test_unsigned_certification_webhooks_are_refused_however_wrapped(
        listener: tuple[HttpInput, object], wrapping: str) -> None:
    """docs/inputs.md: with a secret, a certification webhook without a signature gets 401 and nothing
    reaches the spool. Fixed: ``_looks_certification`` looked only at a body that was one JSON object,
    so the same record in an array or an NDJSON body was taken unsigned; each record is now looked at."""
    inp, spool = listener
    status, _headers, answer = http_post(inp.address, "/cert", WRAPPINGS[wrapping])
    assert (status, answer.get("error", "")[:19]) == (401, "signature rejected:")
    assert event_ids(spool) == []  # type: ignore[arg-type]


def test_signed_certification_webhooks_and_unsigned_audit_posts_are_accepted(
        listener: tuple[HttpInput, object]) -> None:
    """The other side of the property above: hushd's signed webhook and its unsigned audit_forward."""
    inp, spool = listener
    sig = "sha256=" + hexdigest(CERT, SECRET.encode())
    assert http_post(inp.address, "/cert", CERT, {SIGNATURE_HEADER: sig})[0] == 200
    assert http_post(inp.address, "/audit", AUDIT_LINES[0])[0] == 200
    assert len(event_ids(spool)) == 2  # type: ignore[arg-type]
