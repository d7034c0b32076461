"""Certification webhook HMAC verification."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from agent.signature import SignatureError, verify_certification_signature

SECRET = b"s3cret-webhook-key"
BODY = b'{"event":"violation.detected","timestamp":"2026-02-07T09:30:12Z","data":{"actionType":"egress"}}'


def sign(body: bytes, secret: bytes = SECRET) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def test_valid_signature_passes():
    verify_certification_signature(BODY, sign(BODY), SECRET)
    verify_certification_signature(BODY, sign(BODY).upper().replace("SHA256=", "sha256="), SECRET)
    verify_certification_signature(BODY, "  " + sign(BODY) + " ", SECRET)


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header(header):
    with pytest.raises(SignatureError, match=r"^missing x-clawdstrike-signature header$"):
        verify_certification_signature(BODY, header, SECRET)


@pytest.mark.parametrize("header", ["sha1=abcd", "abcdef", "sha256:" + "a" * 64, "sha256=" + "a" * 63,
                                    "sha256=" + "g" * 64, "sha256=" + "a" * 65])
def test_malformed_header(header):
    with pytest.raises(SignatureError, match=r"^malformed x-clawdstrike-signature header"):
        verify_certification_signature(BODY, header, SECRET)


def test_mismatch_on_altered_body_or_wrong_secret():
    with pytest.raises(SignatureError, match=r"does not match the body"):
        verify_certification_signature(BODY + b" ", sign(BODY), SECRET)
    with pytest.raises(SignatureError, match=r"does not match the body"):
        verify_certification_signature(BODY, sign(BODY, b"other"), SECRET)


def test_errors_never_leak_secret_or_expected_digest():
    expected = hmac.new(SECRET, BODY, hashlib.sha256).hexdigest()
    for header in (None, "bogus", "sha256=" + "0" * 64, "sha256=" + "0" * 10):
        with pytest.raises(SignatureError) as exc:
            verify_certification_signature(BODY, header, SECRET)
        msg = str(exc.value)
        assert SECRET.decode() not in msg and expected not in msg and expected.upper() not in msg


def test_empty_secret_is_refused():
    with pytest.raises(SignatureError, match=r"^no webhook secret configured$"):
        verify_certification_signature(BODY, sign(BODY, b""), b"")


def test_uses_constant_time_compare(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("agent.signature.hmac.compare_digest", spy)
    verify_certification_signature(BODY, sign(BODY), SECRET)
    assert len(calls) == 1
