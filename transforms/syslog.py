"""RFC 5424 syslog framing and RFC 6587 octet counting for CEF (or any text) messages.

Sources (text read from the RFCs; ABNF from RFC 5424 §6):

- RFC 5424 §6: ``SYSLOG-MSG = HEADER SP STRUCTURED-DATA [SP MSG]``;
  ``HEADER = PRI VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID``; ``PRIVAL`` 0..191 =
  facility * 8 + severity (§6.2.1); ``VERSION`` 1; HOSTNAME 1*255, APP-NAME 1*48, PROCID 1*128, MSGID 1*32
  PRINTUSASCII (%d33-126), or the NILVALUE ``-``.
- RFC 5424 §6.2.3: TIMESTAMP is RFC 3339 with upper-case ``T`` and ``Z``, ``TIME-SECFRAC = "." 1*6DIGIT``,
  and "Leap seconds MUST NOT be used".
- RFC 5424 §6.3: ``SD-ELEMENT = "[" SD-ID *(SP SD-PARAM) "]"``, ``SD-NAME = 1*32PRINTUSASCII`` except ``=``,
  SP, ``]``, ``"``; inside PARAM-VALUE ``"``, ``\\`` and ``]`` MUST be escaped with a backslash; §6.3.2:
  "The same SD-ID MUST NOT exist more than once in a message."
- RFC 5424 §6.4: ``MSG = MSG-ANY / MSG-UTF8``, ``MSG-UTF8 = BOM UTF-8-STRING``. We send MSG-ANY, without
  the BOM, on purpose: CEF consumers (ArcSight's syslog connector, liblognorm/rsyslog, syslog-ng) look for
  ``CEF:`` right after the header, and the CEF standard already fixes the encoding as UTF-8; a BOM in front
  of ``CEF:`` makes such parsers miss the event (liblognorm 2.0.6's ``cef`` parser rejects it).
- RFC 6587 §3.4.1 (octet counting): ``SYSLOG-FRAME = MSG-LEN SP SYSLOG-MSG``, ``MSG-LEN = NONZERO-DIGIT
  *DIGIT`` = the number of octets of SYSLOG-MSG. RFC 5425 §4.3 makes the same framing mandatory on TLS.

Header fields the caller passes (host name, app name...) are made valid rather than refused: characters
outside printable US-ASCII become ``_`` and the value is cut to its limit, an empty value becomes ``-``.
A transport must never drop an event because the host is called ``café``.
"""

from __future__ import annotations

import re
from datetime import date

from agent.caches import put_bounded

__all__ = [
    "FACILITY_LOG_AUDIT",
    "SEVERITY_TO_SYSLOG",
    "format_sd_element",
    "frame_rfc5424",
    "octet_count",
    "severity_to_syslog",
]

FACILITY_LOG_AUDIT = 13

# Clawdstrike severity -> syslog severity (RFC 5424 Table 2): crit 2, err 3, warning 4, notice 5, info 6.
SEVERITY_TO_SYSLOG: dict[str, int] = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
_UNKNOWN_SEVERITY = 4  # an unknown severity counts as at least medium (event-model compatibility policy)

HOSTNAME_MAX, APP_NAME_MAX, PROCID_MAX, MSGID_MAX = 255, 48, 128, 32


def severity_to_syslog(canonical_severity: str) -> int:
    """Syslog severity (0-7) of a canonical severity; unknown values map to 4 (warning)."""
    return SEVERITY_TO_SYSLOG.get(canonical_severity, _UNKNOWN_SEVERITY)


_PRINTUSASCII = frozenset(chr(c) for c in range(33, 127))
_FIELD_CACHE: dict[tuple[str, int], str] = {}


def _header_field(value: str, limit: int) -> str:
    """A valid HEADER field: printable US-ASCII only (others -> ``_``), at most ``limit``, ``-`` if empty."""
    key = (value, limit)
    hit = _FIELD_CACHE.get(key)
    if hit is not None:
        return hit
    text = value if set(value) <= _PRINTUSASCII else "".join(c if c in _PRINTUSASCII else "_" for c in value)
    text = text[:limit] or "-"
    if len(_FIELD_CACHE) > 1024:
        _FIELD_CACHE.clear()
    _FIELD_CACHE[key] = text
    return text


# re.ASCII: RFC 3339 DIGIT is %x30-39; a Unicode \d lets Arabic-Indic or full-width digits into the header.
_TS_RE = re.compile(
    r"(\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:)([0-5]\d|60)(?:\.(\d{1,9}))?"
    r"(Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)",
    re.ASCII,
)
_VALID_DAYS: dict[str, bool] = {}  # "YYYY-MM-DD" already checked against the calendar


def _timestamp(ts: str) -> str:
    """RFC 5424 TIMESTAMP from an RFC 3339 one: fraction truncated to 6 digits, leap second 60 clamped to
    59.999999 (§6.2.3 forbids leap seconds; clamping keeps the order of events)."""
    if ts == "-":
        return ts
    m = _TS_RE.fullmatch(ts)
    if m is None:
        raise ValueError(f"timestamp: expected an RFC 3339 timestamp (upper-case T and Z), got {ts!r}")
    day = ts[:10]
    if day not in _VALID_DAYS:
        try:  # RFC 3339 §5.7: the day must exist in that month and year (no Feb 30, no Feb 29 in 2025)
            date.fromisoformat(day)
        except ValueError:
            raise ValueError(f"timestamp: no such date {day!r} in {ts!r}") from None
        put_bounded(_VALID_DAYS, day, True, 4096)
    head, sec, frac, zone = m.groups()
    if sec == "60":
        return f"{head}59.999999{zone}"
    return f"{head}{sec}.{frac[:6]}{zone}" if frac else f"{head}{sec}{zone}"


_SD_NAME = r"[!#-<>-\\^-~]{1,32}"  # PRINTUSASCII except '=' (61), ']' (93), '"' (34); SP is not in it
_SD_ELEMENT = rf'\[({_SD_NAME})(?: {_SD_NAME}="(?:[^"\\\]]|\\["\\\]])*")*\]'
_SD_RE = re.compile(rf"(?:{_SD_ELEMENT})+", re.DOTALL)
_SD_ELEMENT_RE = re.compile(_SD_ELEMENT, re.DOTALL)


def _check_sd(sd: str) -> str:
    if sd == "-":
        return sd
    if _SD_RE.fullmatch(sd) is None:
        raise ValueError(f"structured_data: expected '-' or RFC 5424 SD-ELEMENTs, got {sd!r}")
    ids = _SD_ELEMENT_RE.findall(sd)
    if len(ids) != len(set(ids)):
        raise ValueError(f"structured_data: an SD-ID appears twice (RFC 5424 §6.3.2), got {sd!r}")
    return sd


_SD_VALUE_TABLE = str.maketrans({'"': '\\"', "\\": "\\\\", "]": "\\]"})


def format_sd_element(sd_id: str, params: list[tuple[str, str]]) -> str:
    """One SD-ELEMENT, ``[id name="value" ...]``, with PARAM-VALUE escaping (RFC 5424 §6.3.3)."""
    body = "".join(f' {name}="{value.translate(_SD_VALUE_TABLE)}"' for name, value in params)
    return _check_sd(f"[{sd_id}{body}]")


def frame_rfc5424(message: str, *, timestamp: str, hostname: str, app_name: str, procid: str = "-",
                  msgid: str = "-", facility: int = FACILITY_LOG_AUDIT, severity: int,
                  structured_data: str = "-") -> bytes:
    """One RFC 5424 message, UTF-8, no BOM, no trailer (frame it with ``octet_count`` for TCP/TLS)."""
    if type(facility) is not int or not 0 <= facility <= 23:
        raise ValueError(f"facility: expected 0..23, got {facility!r}")
    if type(severity) is not int or not 0 <= severity <= 7:
        raise ValueError(f"severity: expected 0..7, got {severity!r}")
    header = (f"<{facility * 8 + severity}>1 {_timestamp(timestamp)} {_header_field(hostname, HOSTNAME_MAX)} "
              f"{_header_field(app_name, APP_NAME_MAX)} {_header_field(procid, PROCID_MAX)} "
              f"{_header_field(msgid, MSGID_MAX)} {_check_sd(structured_data)}")
    return f"{header} {message}".encode() if message else header.encode()


def octet_count(frame: bytes) -> bytes:
    """RFC 6587 §3.4.1 octet-counting frame: ``b"<len> " + frame``, len = octets of ``frame``."""
    if not frame:
        raise ValueError("octet_count: an empty SYSLOG-MSG cannot be framed (MSG-LEN starts with 1-9)")
    return b"%d %s" % (len(frame), frame)
