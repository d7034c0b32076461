"""Property tests of transforms/syslog.py against RFC 5424 §6 and RFC 6587 §3.4 (docs/formats/cef.md).

A second strict reader, written here from the RFC ABNF and independent of both transforms/syslog.py and
tests/transforms/test_syslog.py, works on octets (so a non-ASCII character in the header cannot slip
through a Unicode-aware ``\\d``), checks the calendar, and tokenizes STRUCTURED-DATA by hand so the
PARAM-VALUEs can be unescaped and compared. Properties:

- Any canonical event (the CEF test's event strategy and every real capture) with hostile header values
  (CR/LF, NUL, spaces, non-ASCII, 1,000 characters) yields exactly one frame that parses back: PRI =
  13 * 8 + the documented severity mapping, VERSION 1, the TIMESTAMP the docs promise, each header field
  equal to the documented clean-up (printable US-ASCII, ``_`` otherwise, cut to 255/48/128/32, ``-`` when
  empty), MSG equal to the CEF line, no BOM.
- Octet counting: a stream of frames reads back frame by frame and MSG-LEN is the number of octets.
- LF framing: the docs say CEF lines never contain a raw LF, so a framed CEF event has no CR or LF anywhere
  and an LF-joined stream splits back into one frame per event.
- PRI for every facility/severity pair; anything outside 0..23 / 0..7 (bools, floats, big ints) raises.
- TIMESTAMP: every valid RFC 3339 timestamp is cut to 6 fraction digits (leap second -> 59.999999) and
  event order is kept; any other string raises ``ValueError`` or still parses (never a broken header).
- STRUCTURED-DATA: ``format_sd_element`` escapes ``"``, ``\\`` and ``]`` so any value round-trips; the
  ``structured_data`` check accepts exactly what the strict reader accepts (a differential over a
  hostile alphabet).
- A message that cannot be encoded as UTF-8 (a lone surrogate, which JSON-decoded events cannot carry)
  raises ``ValueError`` rather than producing a frame.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.transforms.test_cef import FIXTURE_EVENTS, HOSTILE
from tests.transforms.test_cef import events as cef_events
from transforms.cef import to_cef
from transforms.syslog import format_sd_element, frame_rfc5424, octet_count, severity_to_syslog

SETTINGS = settings(max_examples=150, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Written from docs/formats/cef.md, not imported from the module under test.
DOC_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
DOC_UNKNOWN_SEVERITY = 4
LIMITS = {"hostname": 255, "app_name": 48, "procid": 128, "msgid": 32}
LOG_AUDIT = 13


# ---------------------------------------------------------------------------------------------------
# A strict, octet-level RFC 5424 reader
# ---------------------------------------------------------------------------------------------------

@dataclass
class Message:
    """One parsed SYSLOG-MSG."""

    pri: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    sd: list[tuple[str, list[tuple[str, str]]]] | None  # None is the NILVALUE
    sd_text: str
    msg: bytes | None


class Reject(ValueError):
    """The input is not an RFC 5424 message."""


def _printusascii(field: bytes, limit: int, what: str) -> str:
    if not 1 <= len(field) <= limit or any(not 33 <= b <= 126 for b in field):
        raise Reject(f"{what}: expected 1..{limit} PRINTUSASCII octets, got {field[:40]!r}")
    return field.decode("ascii")


def _ascii_digits(s: bytes) -> bool:
    return bool(s) and all(48 <= b <= 57 for b in s)


def _timestamp(ts: bytes) -> str:
    """TIMESTAMP = NILVALUE / FULL-DATE "T" FULL-TIME (RFC 5424 §6.2.3, RFC 3339 §5.6), ASCII digits only."""
    if ts == b"-":
        return "-"
    if len(ts) < 20 or ts[4:5] != b"-" or ts[7:8] != b"-" or ts[10:11] != b"T" or ts[13:14] != b":" \
            or ts[16:17] != b":":
        raise Reject(f"TIMESTAMP: bad shape {ts!r}")
    parts = [ts[0:4], ts[5:7], ts[8:10], ts[11:13], ts[14:16], ts[17:19]]
    if not all(_ascii_digits(p) for p in parts):
        raise Reject(f"TIMESTAMP: non-digit in {ts!r}")
    y, mo, d, h, mi, s = (int(p) for p in parts)
    if not (y >= 1 and 1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1]):
        raise Reject(f"TIMESTAMP: no such date {ts!r}")
    if not (h <= 23 and mi <= 59 and s <= 59):  # RFC 5424: leap seconds MUST NOT be used
        raise Reject(f"TIMESTAMP: no such time {ts!r}")
    rest = ts[19:]
    if rest.startswith(b"."):
        end = 1
        while end < len(rest) and 48 <= rest[end] <= 57:
            end += 1
        if not 2 <= end <= 7:  # TIME-SECFRAC = "." 1*6DIGIT
            raise Reject(f"TIMESTAMP: 1..6 fraction digits, got {ts!r}")
        rest = rest[end:]
    if rest != b"Z" and (len(rest) != 6 or rest[0:1] not in (b"+", b"-") or rest[3:4] != b":"
                         or not _ascii_digits(rest[1:3]) or not _ascii_digits(rest[4:6])
                         or int(rest[1:3]) > 23 or int(rest[4:6]) > 59):
        raise Reject(f"TIMESTAMP: bad TIME-OFFSET in {ts!r}")
    return ts.decode("ascii")


_SD_NAME_OCTETS = frozenset(range(33, 127)) - {ord("="), ord("]"), ord('"')}


def parse_sd(data: bytes, i: int) -> tuple[list[tuple[str, list[tuple[str, str]]]], int]:
    """1*SD-ELEMENT from ``data[i:]`` (RFC 5424 §6.3); returns the elements (values unescaped) and the end."""

    def name(j: int) -> tuple[str, int]:
        k = j
        while k < len(data) and data[k] in _SD_NAME_OCTETS:
            k += 1
        if not 1 <= k - j <= 32:
            raise Reject(f"SD-NAME: 1..32 octets expected at {j}")
        return data[j:k].decode("ascii"), k

    elements = []
    if i >= len(data) or data[i:i + 1] != b"[":
        raise Reject("STRUCTURED-DATA: '-' or '[' expected")
    while i < len(data) and data[i:i + 1] == b"[":
        sd_id, i = name(i + 1)
        params = []
        while data[i:i + 1] == b" ":
            pname, i = name(i + 1)
            if data[i:i + 2] != b'="':
                raise Reject("SD-PARAM: '=\"' expected")
            i += 2
            value = bytearray()
            while True:
                if i >= len(data):
                    raise Reject("PARAM-VALUE: unterminated")
                c = data[i]
                if c == ord("\\"):
                    if data[i + 1:i + 2] not in (b'"', b"\\", b"]"):
                        raise Reject("PARAM-VALUE: an unescaped backslash")
                    value.append(data[i + 1])
                    i += 2
                elif c == ord("]"):
                    raise Reject("PARAM-VALUE: an unescaped ']'")
                elif c == ord('"'):
                    i += 1
                    break
                else:
                    value.append(c)
                    i += 1
            try:
                params.append((pname, value.decode("utf-8")))
            except UnicodeDecodeError:
                raise Reject("PARAM-VALUE: not UTF-8") from None
        if data[i:i + 1] != b"]":
            raise Reject("SD-ELEMENT: ']' expected")
        if any(sd_id == seen for seen, _ in elements):
            raise Reject("SD-ID: the same SD-ID MUST NOT exist more than once in a message (§6.3.2)")
        elements.append((sd_id, params))
        i += 1
    return elements, i


def parse(data: bytes) -> Message:
    """One SYSLOG-MSG (RFC 5424 §6), strictly; ``Reject`` otherwise. MSG must be UTF-8 without a BOM."""
    m = re.match(rb"<(0|[1-9][0-9]{0,2})>1 ", data)
    if m is None or int(m[1]) > 191:
        raise Reject(f"PRI/VERSION: {data[:12]!r}")
    i = m.end()
    fields = []
    for limit, what in ((None, "TIMESTAMP"), (255, "HOSTNAME"), (48, "APP-NAME"), (128, "PROCID"),
                        (32, "MSGID")):
        sp = data.find(b" ", i)
        if sp < 0:
            raise Reject(f"{what}: no SP after it")
        raw = data[i:sp]
        fields.append(_timestamp(raw) if limit is None else _printusascii(raw, limit, what))
        i = sp + 1
    start = i
    if data[i:i + 1] == b"-":
        sd, i = None, i + 1
    else:
        sd, i = parse_sd(data, i)
    sd_text = data[start:i].decode("utf-8")
    msg = None
    if i < len(data):
        if data[i:i + 1] != b" ":
            raise Reject("SP expected after STRUCTURED-DATA")
        msg = data[i + 1:]
        if msg.startswith(b"\xef\xbb\xbf"):
            raise Reject("MSG starts with a BOM")
        msg.decode("utf-8")  # UnicodeDecodeError is a ValueError too
    return Message(int(m[1]), *fields, sd, sd_text, msg)


def read_octet_counted(stream: bytes) -> list[bytes]:
    """RFC 6587 §3.4.1: TCP-DATA = *SYSLOG-FRAME; SYSLOG-FRAME = MSG-LEN SP SYSLOG-MSG."""
    out, i = [], 0
    while i < len(stream):
        m = re.compile(rb"([1-9][0-9]*) ").match(stream, i)
        if m is None:
            raise Reject(f"MSG-LEN expected at {i}")
        end = m.end() + int(m[1])
        if end > len(stream):
            raise Reject("truncated frame")
        out.append(stream[m.end():end])
        i = end
    return out


def test_the_reader_rejects_what_the_rfc_forbids() -> None:
    """The reader's own check: each broken message is refused (so a passing property means something)."""
    good = b'<13>1 2026-01-01T00:00:00.123456+01:00 h a p m [x@1 k="v\\]"] msg'
    assert parse(good).sd == [("x@1", [("k", "v]")])]
    for bad in (b"<192>1 - h a p m -", b"<013>1 - h a p m -", b"<13>2 - h a p m -",
                b"<13>1 2026-02-29T00:00:00Z h a p m -", b"<13>1 2024-04-31T00:00:00Z h a p m -",
                b"<13>1 2026-01-01T00:00:60Z h a p m -", b"<13>1 2026-01-01T00:00:00.1234567Z h a p m -",
                b"<13>1 2026-01-01T00:00:00+24:00 h a p m -", b"<13>1 2026-01-01t00:00:00Z h a p m -",
                "<13>1 ٢٠٢٦-01-01T00:00:00Z h a p m -".encode(), b"<13>1 - h\xc3\xa9 a p m -",
                b"<13>1 - " + b"h" * 256 + b" a p m -", b"<13>1 - h " + b"a" * 49 + b" p m -",
                b"<13>1 - h a " + b"p" * 129 + b" m -", b"<13>1 - h a p " + b"m" * 33 + b" -",
                b"<13>1 - h a p m [x k=\"v]\"]", b"<13>1 - h a p m [x k=\"v\\n\"]",
                b"<13>1 - h a p m [x k=v]",
                b"<13>1 - h a p m [" + b"x" * 33 + b"]", b"<13>1 - h a p m [x k=\"v\"", b"<13>1 - h a p m -x",
                b"<13>1 - h a p m - \xef\xbb\xbfCEF:0", b"<13>1 - h a p m - \xff", b"<13>1 - h a p m"):
        with pytest.raises(ValueError):
            parse(bad)
    assert read_octet_counted(b"3 abc1 d") == [b"abc", b"d"]
    for bad_stream in (b"03 abc", b"4 abc", b"abc", b"3abc"):
        with pytest.raises(Reject):
            read_octet_counted(bad_stream)


# ---------------------------------------------------------------------------------------------------
# Models written from the docs
# ---------------------------------------------------------------------------------------------------

def clean_field(value: str, limit: int) -> str:
    """docs/formats/cef.md: printable US-ASCII kept, others ``_``, cut to the limit, empty -> ``-``."""
    return "".join(c if 33 <= ord(c) <= 126 else "_" for c in value)[:limit] or "-"


def expected_timestamp(ts: str) -> str:
    """Fraction cut (not rounded) to 6 digits; a leap second ``:60`` becomes ``:59.999999``."""
    if ts == "-":
        return ts
    head, sec, rest = ts[:17], ts[17:19], ts[19:]
    frac = ""
    if rest.startswith("."):
        n = 1
        while rest[n].isdigit():
            n += 1
        frac, rest = rest[1:n], rest[n:]
    if sec == "60":
        return f"{head}59.999999{rest}"
    return f"{head}{sec}.{frac[:6]}{rest}" if frac else f"{head}{sec}{rest}"


def instant(ts: str) -> tuple:
    """A sortable value of a ``...Z`` timestamp (leap second :60 after :59.999...)."""
    frac = Fraction(0)
    if ts[19] == ".":
        digits = ts[20:-1]
        frac = Fraction(int(digits), 10 ** len(digits))
    return (ts[:17], int(ts[17:19]), frac)


# ---------------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------------

header_chars = st.characters(codec="utf-8", exclude_categories=("Cs",))
header_text = st.one_of(
    st.text(header_chars, max_size=40),
    st.text(st.sampled_from("ab-_.:@\r\n\x00\t é日\u2028\x7f\x85\ufeff"), max_size=300),
    st.integers(1, 700).map(lambda n: ("ab\né-" * 140)[:n]),  # lengths around every limit
    st.sampled_from([*HOSTILE, "", "-", " ", "h" * 1000, "café laptop", "a\nb", "x\r\n<13>1 - evil"]),
)


@st.composite
def rfc3339(draw: st.DrawFn, utc: bool = False) -> str:
    """A valid RFC 3339 timestamp as canonical events and hushd carry them (0..9 fraction digits)."""
    y = draw(st.integers(1, 9999))
    mo = draw(st.integers(1, 12))
    d = draw(st.integers(1, calendar.monthrange(y, mo)[1]))
    h, mi, s = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 60))
    frac = draw(st.none() | st.text(st.sampled_from("0123456789"), min_size=1, max_size=9))
    zone = "Z" if utc else draw(st.just("Z") | st.builds(
        "{}{:02d}:{:02d}".format, st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59)))
    return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}" + (f".{frac}" if frac else "") + zone


def frame_of(message: str, **kw: object) -> bytes:
    """frame_rfc5424 with harmless defaults."""
    args = {"timestamp": "-", "hostname": "h", "app_name": "a", "severity": 6, **kw}
    return frame_rfc5424(message, **args)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------

def check_event_frame(ev: dict, hostname: str, app_name: str, procid: str, msgid: str) -> bytes:
    """Frame a canonical event as docs/formats/cef.md shows and check every field against the docs."""
    line = to_cef(ev)
    sev = severity_to_syslog(ev["decision"]["severity"])
    frame = frame_rfc5424(line, timestamp=ev["timestamp"], hostname=hostname, app_name=app_name,
                          procid=procid, msgid=msgid, severity=sev)
    msg = parse(frame)
    want_sev = DOC_SEVERITY.get(ev["decision"]["severity"], DOC_UNKNOWN_SEVERITY)
    assert msg.pri == LOG_AUDIT * 8 + want_sev
    assert msg.timestamp == expected_timestamp(ev["timestamp"])
    assert (msg.hostname, msg.app_name, msg.procid, msg.msgid) == (
        clean_field(hostname, 255), clean_field(app_name, 48), clean_field(procid, 128),
        clean_field(msgid, 32))
    assert msg.sd is None and msg.msg == line.encode("utf-8")
    assert b"\n" not in frame and b"\r" not in frame  # LF framing stays one frame per event
    return frame


@SETTINGS
@given(cef_events(), header_text, header_text, header_text, header_text)
def test_any_canonical_event_frames_to_one_valid_message(ev: dict, hostname: str, app_name: str,
                                                         procid: str, msgid: str) -> None:
    """Hostile events and header values: the frame parses and every field is the documented one."""
    check_event_frame(ev, hostname, app_name, procid, msgid)


@pytest.mark.parametrize("ev", FIXTURE_EVENTS, ids=lambda e: e["event_id"][-8:])
def test_every_capture_frames_to_one_valid_message(ev: dict) -> None:
    """Every real capture, with a hostile host name."""
    check_event_frame(ev, "dev laptop\névil", "clawdstrike", "4242", "guard")


@SETTINGS
@given(st.sampled_from(sorted(LIMITS)), st.integers(0, 300), st.sampled_from(["x", "é", "\n", "-"]))
def test_header_fields_are_cut_at_their_limits(field: str, n: int, filler: str) -> None:
    """Each field is cut to exactly its limit; non-ASCII becomes ``_`` before the cut (one octet each)."""
    value = ("a" + filler) * (n // 2) + "a" * (n % 2)
    msg = parse(frame_of("m", **{field: value}))
    assert getattr(msg, field) == clean_field(value, LIMITS[field])
    assert len(getattr(msg, field)) == min(max(n, 1), LIMITS[field])


@SETTINGS
@given(st.lists(st.tuples(cef_events(), header_text), min_size=1, max_size=6))
def test_streams_read_back_frame_by_frame(items: list[tuple[dict, str]]) -> None:
    """Octet counting: MSG-LEN is the octet count and a stream splits back exactly; LF framing too."""
    frames = [frame_rfc5424(to_cef(ev), timestamp=ev["timestamp"], hostname=host, app_name="clawdstrike",
                            severity=severity_to_syslog(ev["decision"]["severity"])) for ev, host in items]
    for f in frames:
        count, _, rest = octet_count(f).partition(b" ")
        assert count == str(len(f)).encode() and rest == f
    assert read_octet_counted(b"".join(octet_count(f) for f in frames)) == frames
    assert b"".join(f + b"\n" for f in frames).split(b"\n")[:-1] == frames


@SETTINGS
@given(st.text(header_chars, max_size=200), st.integers(0, 23), st.integers(0, 7))
def test_pri_is_facility_times_eight_plus_severity(message: str, facility: int, severity: int) -> None:
    """Every valid pair gives PRI = facility * 8 + severity; MSG is the message, no SP MSG when empty."""
    frame = frame_of(message, facility=facility, severity=severity)
    msg = parse(frame)
    assert msg.pri == facility * 8 + severity
    assert msg.msg == (message.encode() if message else None)


@SETTINGS
@given(st.one_of(st.integers(), st.booleans(), st.floats(allow_nan=False), st.none(), st.text(max_size=3)),
       st.sampled_from(["facility", "severity"]))
def test_out_of_range_facility_or_severity_raises(value: object, which: str) -> None:
    """Facility 0..23 and severity 0..7 (ints, not bools); anything else raises ValueError."""
    valid = type(value) is int and 0 <= value <= (23 if which == "facility" else 7)  # type: ignore[operator]
    assume(not valid)
    with pytest.raises(ValueError, match=which):
        frame_of("m", **{which: value})


@SETTINGS
@given(st.sampled_from(sorted(DOC_SEVERITY)) | st.text(max_size=12))
def test_severity_mapping_is_the_documented_one(severity: str) -> None:
    """critical 2, high 3, medium 4, low 5, info 6; anything else 4."""
    assert severity_to_syslog(severity) == DOC_SEVERITY.get(severity, DOC_UNKNOWN_SEVERITY)


@SETTINGS
@given(rfc3339())
def test_valid_timestamps_become_rfc5424_timestamps(ts: str) -> None:
    """Any RFC 3339 timestamp (≤ 9 digits, Z or offset): cut to 6 digits, leap second clamped, strict."""
    assert parse(frame_of("m", timestamp=ts)).timestamp == expected_timestamp(ts)


@SETTINGS
@given(rfc3339(utc=True), rfc3339(utc=True))
def test_timestamp_conversion_keeps_event_order(a: str, b: str) -> None:
    """Cutting the fraction and clamping the leap second never swap two events."""
    a, b = sorted((a, b), key=instant)
    ta, tb = (parse(frame_of("m", timestamp=t)).timestamp for t in (a, b))
    assert instant(ta) <= instant(tb)


# Non-ASCII decimal digits that Python's Unicode ``\d`` and ``int()`` accept.
UNICODE_DIGITS = "٠١٢٣٤٥٦٧٨٩۰۱۲۳०१२३০১২০１２３９𝟎𝟏"


@st.composite
def broken_timestamps(draw: st.DrawFn) -> str:
    """A valid timestamp with one ASCII digit swapped for a non-ASCII decimal digit, or an impossible
    day of the month (Feb 29 of a common year, Apr 31, Feb 30...), or arbitrary text."""
    kind = draw(st.sampled_from(["unicode-digit", "bad-day", "text"]))
    if kind == "text":
        return draw(st.text(st.sampled_from("0123456789-:T.Z+tz ٢１\n"), max_size=32))
    ts = draw(rfc3339())
    if kind == "unicode-digit":
        positions = [i for i, c in enumerate(ts) if c.isdigit()]
        i = draw(st.sampled_from(positions))
        return ts[:i] + draw(st.sampled_from(UNICODE_DIGITS)) + ts[i + 1:]
    y = int(ts[:4])
    mo = draw(st.sampled_from([2, 4, 6, 9, 11]))
    d = draw(st.integers(calendar.monthrange(y, mo)[1] + 1, 31))
    return f"{ts[:5]}{mo:02d}-{d:02d}{ts[10:]}"


@SETTINGS
@given(broken_timestamps())
def test_any_other_timestamp_is_refused_never_sent_broken(ts: str) -> None:
    """docs: "Anything else raises ValueError". Whatever the input, the TIMESTAMP sent is valid.

    Fixed: ``_TS_RE`` used a Unicode ``\\d`` (non-ASCII digits were copied into the header) and never
    checked the day against the month (Feb 30 was sent as it was)."""
    try:
        frame = frame_of("m", timestamp=ts)
    except ValueError:
        return
    parse(frame)


@pytest.mark.parametrize("ts", ["2026-02-30T09:30:12Z", "2025-02-29T00:00:00Z", "2026-04-31T23:59:59.5Z"])
def test_impossible_dates_are_refused(ts: str) -> None:
    """Minimal repro: a day the month does not have is not RFC 3339 (§5.7) and must raise, not be sent."""
    with pytest.raises(ValueError, match="timestamp"):
        frame_of("m", timestamp=ts)


@pytest.mark.parametrize("ts", ["\u0662\u0660\u0662\u0666-02-07T09:30:12Z", "2026-02-07T09:30:12.\uff11Z",
                                "2026-02-07T09:30:12+0\u0662:00"])
def test_non_ascii_digits_in_timestamps_are_refused(ts: str) -> None:
    """Minimal repro: RFC 3339 DIGIT is %x30-39; other Unicode digits must raise, not reach the header."""
    with pytest.raises(ValueError, match="timestamp"):
        frame_of("m", timestamp=ts)


sd_name = st.text(st.sampled_from(sorted(chr(b) for b in _SD_NAME_OCTETS)), min_size=1, max_size=32)
sd_value = st.text(header_chars, max_size=60) | st.text(st.sampled_from('"\\]=[ a\n\x00é'), max_size=30)


@SETTINGS
@given(st.lists(st.tuples(sd_name, st.lists(st.tuples(sd_name, sd_value), max_size=4)), min_size=1,
                max_size=3, unique_by=lambda element: element[0]))
def test_sd_elements_escape_and_round_trip(elements: list[tuple[str, list[tuple[str, str]]]]) -> None:
    """format_sd_element output is well-formed, the values come back unescaped, and frames carry it."""
    sd = "".join(format_sd_element(sd_id, params) for sd_id, params in elements)
    msg = parse(frame_of("CEF:0|x", structured_data=sd))
    assert msg.sd == elements and msg.sd_text == sd and msg.msg == b"CEF:0|x"


@SETTINGS
@given(sd_name | st.text(max_size=40), st.text(max_size=40))
def test_sd_element_with_invalid_names_raises(sd_id: str, param: str) -> None:
    """An SD-ID or PARAM-NAME outside 1..32 PRINTUSASCII minus ``= ] "`` and SP raises ValueError."""
    valid = all(re.fullmatch(r'[\x21-\x7e]{1,32}', n) and not set(n) & set('="]') for n in (sd_id, param))
    if valid:
        assert parse(frame_of("m", structured_data=format_sd_element(sd_id, [(param, "v")]))).sd == [
            (sd_id, [(param, "v")])]
    else:
        with pytest.raises(ValueError, match="structured_data"):
            format_sd_element(sd_id, [(param, "v")])


def _reader_accepts_sd(sd: str) -> bool:
    if sd == "-":
        return True
    data = sd.encode("utf-8")
    try:
        _elements, end = parse_sd(data, 0)
    except Reject:
        return False
    return end == len(data)


@SETTINGS
@given(st.text(st.sampled_from('[]"\\= ab@é\n'), max_size=24)
       | st.lists(st.sampled_from(["[a]", "[b]", '[a x="1"]', '[b x="]"]', "[a"]), min_size=1).map("".join)
       | st.builds("[{}]".format, st.text(st.sampled_from('"\\= ]ab[é'), max_size=20)))
def test_structured_data_check_matches_the_strict_reader(sd: str) -> None:
    """Differential: frame_rfc5424 accepts a structured_data string iff the strict reader does."""
    if _reader_accepts_sd(sd):
        assert parse(frame_of("m", structured_data=sd)).sd_text == sd
    else:
        with pytest.raises(ValueError, match="structured_data"):
            frame_of("m", structured_data=sd)


@pytest.mark.parametrize("where", ["message", "sd"])
def test_unencodable_text_raises_value_error(where: str) -> None:
    """A lone surrogate (not possible in a JSON-decoded event) raises ValueError, never a partial frame."""
    with pytest.raises(ValueError):
        if where == "message":
            frame_of("CEF:0|\ud800")
        else:
            frame_of("m", structured_data=format_sd_element("x", [("k", "\udfff")]))
