"""The forms in which a secret can be echoed back, and masking every one of them in a text.

One place for the two users: the excerpt of a destination's answer (``outputs.http.excerpt``) and
every log line (``agent.logs``, the last line of defence for a message that quoted a value). Light on
purpose (no requests, no OpenSSL): the mapping helper process logs too.
"""

from __future__ import annotations

import functools
import html
import json
import re
import urllib.parse
from collections.abc import Iterable

import orjson

#: Shorter known values are not masked: too likely to be a word of the text itself.
MIN_SECRET_CHARS = 4


@functools.lru_cache(maxsize=256)
def forms(secret: str) -> tuple[str, ...]:
    """The forms in which a service may echo ``secret`` back: as it is, JSON-escaped (``\\"``,
    ``\\/``, and ``\\uXXXX`` with surrogate pairs beyond the BMP, as JSON encoders write them) and
    percent-encoded (a query string, a form body, a path: ``/`` kept or not) and HTML-escaped (a
    proxy's or gateway's error page: ``&#x27;`` or ``&#39;``). Not base64 of the bare secret: a
    header value holding one (``Basic``, ``ApiKey``) is itself among an output's secrets."""
    escaped = orjson.dumps(secret).decode()[1:-1]
    ascii_escaped = json.dumps(secret)[1:-1]
    in_html = html.escape(secret)
    found = (secret, escaped, escaped.replace("/", "\\/"), ascii_escaped,
             ascii_escaped.replace("/", "\\/"), urllib.parse.quote(secret, safe=""),
             urllib.parse.quote(secret), urllib.parse.quote_plus(secret), in_html,
             in_html.replace("&#x27;", "&#39;"))
    # Letter case is matched ignoring it (``echoes``), one letter for one letter; a service that
    # upper- or lower-cases a secret can change its length ("ß" upper-cases to "SS", "İ" lower-cases
    # to two characters): those spellings are forms of their own.
    for cased in (secret.upper(), secret.lower()):
        if len(cased) != len(secret):
            found += forms(cased)
    return tuple(dict.fromkeys(found))


@functools.lru_cache(maxsize=64)
def echoes(secrets: tuple[str, ...]) -> re.Pattern[str]:
    """Every form (``forms``) of ``secrets``, any letter case. Longest first, so a secret
    containing another is masked whole."""
    found = {form: None for s in secrets for form in forms(s)}
    ordered = sorted(found, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, ordered)), re.IGNORECASE)


def known(secrets: Iterable[str]) -> tuple[str, ...]:
    """The values worth masking, longest first, as ``echoes`` caches them."""
    return tuple(sorted({s for s in secrets if s and len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True))


def mask_known(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of each of ``secrets`` (``known``) as ``***``."""
    values = known(secrets)
    return echoes(values).sub("***", text) if values else text
