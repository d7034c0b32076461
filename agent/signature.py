"""HMAC verification of hushd certification webhooks (``violation.detected``).

hushd signs the exact request body: ``x-clawdstrike-signature: sha256=<hex HMAC-SHA256(secret, body)>``.
The timestamp is not covered by the signature (replays are possible upstream); de-duplication of replays
is done by the spool through the body-derived event id.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SIGNATURE_HEADER", "SignatureError", "verify_certification_signature"]

SIGNATURE_HEADER = "x-clawdstrike-signature"
_PREFIX = "sha256="
_HEX = frozenset("0123456789abcdefABCDEF")


class SignatureError(ValueError):
    """The signature is missing, malformed or does not match. Messages never contain the secret or the
    expected digest."""


def verify_certification_signature(body: bytes, header: str | None, secret: bytes) -> None:
    """Raise ``SignatureError`` unless ``header`` is ``sha256=<hex>`` and equals HMAC-SHA256(secret, body).

    The comparison is constant-time (``hmac.compare_digest``). Hex digits are accepted in either case.
    """
    if not secret:
        raise SignatureError("no webhook secret configured")
    if header is None or not header.strip():
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    value = header.strip()
    if not value.lower().startswith(_PREFIX):
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header: expected 'sha256=<64 hex digits>'")
    given = value[len(_PREFIX):]
    if len(given) != 64 or not _HEX.issuperset(given):
        raise SignatureError(
            f"malformed {SIGNATURE_HEADER} header: expected 64 hex digits after 'sha256=', got {len(given)} "
            "characters"
        )
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match the body (wrong secret or altered body)")
