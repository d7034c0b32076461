"""Strict CEF parser and validator for tests, against the official key dictionary read in place.

``parse_cef`` is escape-aware and refuses anything a strict consumer (liblognorm's ``cef`` parser, the
CEF v27 "Character Encoding" rules) would refuse or misread: an invalid escape (header: only ``\\\\`` and
``\\|``; extension: only ``\\\\``, ``\\=``, ``\\n``, ``\\r``), a raw line break or other control character,
a header with fewer than 7 fields or a raw pipe inside one (seen as a broken extension start or severity),
an unescaped ``=`` inside a value, a key not in ../shared/schemas/cef/extension-keys.csv, a repeated key.

``validate_cef`` parses and then checks what the dictionary says: producer keys only, CEF 1.2 keys only
with ``CEF:1``, data types (integer/long ranges, ports 0-65535, IPv4-only keys, IPv6, MAC, timestamps as
epoch ms or the CEF date formats, doubles), string max lengths, every custom value paired with its label,
header field lengths and the severity range.
"""

from __future__ import annotations

import csv
import functools
import ipaddress
import math
import re
from dataclasses import dataclass

from tests.shared_paths import SCHEMAS

CEF_DIR = SCHEMAS / "cef"

_HEADER_ESCAPES = {"\\": "\\", "|": "|"}
_EXT_ESCAPES = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}
# Raw characters that may not appear anywhere in a line: C0 (incl. CR/LF), DEL, C1 (incl. NEL), U+2028/9.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
SEVERITY_WORDS = frozenset(("Unknown", "Low", "Medium", "High", "Very-High"))


@dataclass(frozen=True)
class KeyDef:
    key: str
    data_type: str
    max_length: int | None  # characters, for strings
    size: str  # the CSV's max_length text ("64-bit" marks 64-bit integers)
    audience: str
    since: str


@functools.cache
def dictionary() -> dict[str, KeyDef]:
    """extension-keys.csv, keyed by CEF key."""
    out: dict[str, KeyDef] = {}
    with (CEF_DIR / "extension-keys.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            ml = row["max_length"]
            out[row["key"]] = KeyDef(row["key"], row["data_type"], int(ml) if ml.isdigit() else None, ml,
                                     row["audience"], row["since"])
    return out


@functools.cache
def header_limits() -> list[int | None]:
    """Max length of header fields 0..6 from header-fields.csv (None where the CSV has none)."""
    with (CEF_DIR / "header-fields.csv").open(newline="", encoding="utf-8") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["position"]))
    return [int(r["max_length"]) if r["max_length"].isdigit() else None for r in rows[:7]]


def _split_header(line: str) -> tuple[list[str], int]:
    """The 7 unescaped header fields and the offset where the extension starts."""
    fields: list[str] = []
    buf: list[str] = []
    i, n = 0, len(line)
    while i < n and len(fields) < 7:
        c = line[i]
        if c == "\\":
            if i + 1 >= n or line[i + 1] not in _HEADER_ESCAPES:
                nxt = line[i + 1] if i + 1 < n else "end of line"
                raise ValueError(f"invalid escape '\\{nxt}' in header field {len(fields)} at offset {i}")
            buf.append(line[i + 1])
            i += 2
            continue
        if c == "|":
            fields.append("".join(buf))
            buf = []
        else:
            buf.append(c)
        i += 1
    if len(fields) < 7:
        raise ValueError(f"header has {len(fields)} pipe-terminated fields, CEF needs 7")
    return fields, i


def _parse_extension(ext: str, offset: int) -> dict[str, str]:
    known = dictionary()
    # Positions of unescaped '=' (and escape validation) in one pass.
    eqs: list[int] = []
    i, n = 0, len(ext)
    while i < n:
        c = ext[i]
        if c == "\\":
            if i + 1 >= n or ext[i + 1] not in _EXT_ESCAPES:
                nxt = ext[i + 1] if i + 1 < n else "end of line"
                raise ValueError(f"invalid escape '\\{nxt}' in extension at offset {offset + i}")
            i += 2
            continue
        if c == "=":
            eqs.append(i)
        i += 1
    if not ext:
        return {}
    if not eqs:
        raise ValueError("extension has no key=value pair")
    # Each unescaped '=' must close a key that starts the extension or follows one space.
    starts: list[int] = []
    for p in eqs:
        s = p
        while s > 0 and ext[s - 1] in _KEY_CHARS:
            s -= 1
        if not starts and s != 0:
            raise ValueError(f"extension does not start with a key: {ext[:40]!r} (a raw pipe in the header?)")
        if s == p:
            raise ValueError(f"unescaped '=' without a key at offset {offset + p}")
        if s != 0 and ext[s - 1] != " ":
            raise ValueError(f"unescaped '=' inside a value at offset {offset + p} "
                             f"(after {ext[max(0, s - 20):p]!r})")
        starts.append(s)
    out: dict[str, str] = {}
    for j, (s, p) in enumerate(zip(starts, eqs, strict=True)):
        key = ext[s:p]
        if key not in known:
            raise ValueError(f"unknown extension key {key!r} (not in extension-keys.csv)")
        if key in out:
            raise ValueError(f"extension key {key!r} repeated")
        end = starts[j + 1] - 1 if j + 1 < len(starts) else n  # the single space before the next key
        raw = ext[p + 1:end]
        out[key] = _unescape_ext(raw) if "\\" in raw else raw
    return out


def _unescape_ext(raw: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "\\":
            out.append(_EXT_ESCAPES[raw[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """Parse one CEF line (starting at ``CEF:``) into 7 unescaped header fields and the extension map.

    ``header[0]`` is the literal ``CEF:<version>``. Raises ``ValueError`` naming the first problem.
    """
    if not isinstance(line, str):
        raise ValueError(f"expected str, got {type(line).__name__}")
    bad = _FORBIDDEN.search(line)
    if bad:
        kind = "raw newline" if bad.group() in "\r\n" else "raw control character"
        raise ValueError(f"{kind} {bad.group()!r} at offset {bad.start()}")
    if not re.match(r"CEF:\d+\|", line):
        raise ValueError(f"line does not start with 'CEF:<version>|': {line[:20]!r}")
    header, at = _split_header(line)
    return header, _parse_extension(line[at:], at)


# ---------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_PORT_KEYS = frozenset(("spt", "dpt", "sourceTranslatedPort", "destinationTranslatedPort"))
_MAC = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}")
_MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
_CEF_DATE = re.compile(rf"(?:{_MONTHS}) (?:0[1-9]|[12]\d|3[01])(?: \d{{4}})? "
                       r"(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{3})?(?: [A-Za-z][A-Za-z0-9/_+-]*)?")
_CUSTOM = re.compile(r"(cs[1-6]|cn[1-3]|cfp[1-4]|c6a[1-4]|deviceCustomDate[12]|flexString[12]|flexDate1)"
                     r"(Label)?")


def _check_integer(key: str, value: str, bounds: tuple[int, int]) -> str | None:
    if not re.fullmatch(r"-?\d+", value):
        return f"{key}: expected an integer, got {value!r}"
    v = int(value)
    lo, hi = (0, 65535) if key in _PORT_KEYS else bounds
    if not lo <= v <= hi:
        return f"{key}: {v} outside {lo}..{hi}"
    return None


def _check_value(kd: KeyDef, value: str) -> str | None:
    t, key = kd.data_type, kd.key
    if t == "string":
        if kd.max_length is not None and len(value) > kd.max_length:
            return f"{key}: {len(value)} characters, max {kd.max_length}"
        return None
    if t == "integer":
        return _check_integer(key, value, _INT64 if "64" in kd.size else _INT32)
    if t == "long":
        return _check_integer(key, value, _INT64)
    if t == "double":
        try:
            ok = math.isfinite(float(value)) and re.fullmatch(r"-?\d+(\.\d+)?([eE][+-]?\d+)?", value)
        except ValueError:
            ok = False
        return None if ok else f"{key}: expected a number, got {value!r}"
    if t == "timestamp":
        if re.fullmatch(r"\d{1,15}", value) or _CEF_DATE.fullmatch(value):
            return None
        return f"{key}: expected epoch milliseconds or a CEF date (MMM dd [yyyy] HH:mm:ss), got {value!r}"
    if t in ("ipv4_address", "ipv6_address", "ip_address"):
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            return f"{key}: expected an IP address, got {value!r}"
        if t == "ipv4_address" and ip.version != 4:
            return f"{key}: IPv4 only per the dictionary, got {value!r} (IPv6 goes to c6a1..c6a4)"
        if t == "ipv6_address" and ip.version != 6:
            return f"{key}: expected an IPv6 address, got {value!r}"
        return None
    if t == "mac_address":
        return None if _MAC.fullmatch(value) else f"{key}: expected a MAC address, got {value!r}"
    return f"{key}: unknown data type {t!r} in the dictionary"


def validate_cef(line: str) -> list[str]:
    """Every problem of one CEF line, or ``[]``. A parse failure is the only problem reported."""
    try:
        header, ext = parse_cef(line)
    except ValueError as exc:
        return [f"parse: {exc}"]
    problems: list[str] = []
    version = header[0][4:]
    if version not in ("0", "1"):
        problems.append(f"header: version {header[0]!r}, expected CEF:0 or CEF:1")
    names = ["Version", "Device Vendor", "Device Product", "Device Version", "Device Event Class ID", "Name",
             "Severity"]
    for i, (field, limit) in enumerate(zip(header, header_limits(), strict=True)):
        if not field:
            problems.append(f"header: {names[i]} is empty")
        elif field != field.strip(" ") and i:
            problems.append(f"header: {names[i]} has leading/trailing spaces")
        if limit is not None and len(field) > limit:
            problems.append(f"header: {names[i]} is {len(field)} characters, max {limit}")
    sev = header[6]
    if sev not in SEVERITY_WORDS and not (sev.isdigit() and 0 <= int(sev) <= 10):
        problems.append(f"header: Severity {sev!r} is not 0-10 or Unknown/Low/Medium/High/Very-High")
    known = dictionary()
    for key, value in ext.items():
        kd = known[key]
        if kd.audience == "consumer":
            problems.append(f"{key}: consumer key (set by ArcSight), producers must not send it")
        if kd.since == "1.2" and version == "0":
            problems.append(f"{key}: CEF 1.2 key in a CEF:0 line")
        if not value:
            problems.append(f"{key}: empty value")
        elif value != value.strip(" "):
            problems.append(f"{key}: leading/trailing spaces are not preserved by CEF parsers")
        err = _check_value(kd, value)
        if err:
            problems.append(err)
    for key in ext:
        m = _CUSTOM.fullmatch(key)
        if m:
            other = m.group(1) if m.group(2) else f"{key}Label"
            if other not in ext:
                problems.append(f"{key}: present without {other}")
    return problems
