"""RFC 5424 framing and RFC 6587 octet counting, checked by a strict parser written from the RFC ABNF.

The parser below is independent of transforms/syslog.py: it reads an octet-counted TCP stream back into
messages and rejects anything outside RFC 5424 §6 (PRI range, VERSION 1, TIMESTAMP with at most 6 fraction
digits and a real calendar date, field lengths and PRINTUSASCII, SD-ELEMENT syntax and escapes, MSG as
valid UTF-8 without a BOM)."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.transforms.test_cef import FIXTURE_EVENTS, HOSTILE, event
from tests.validators.cef import parse_cef, validate_cef
from transforms.cef import to_cef
from transforms.syslog import (
    SEVERITY_TO_SYSLOG,
    format_sd_element,
    frame_rfc5424,
    octet_count,
    severity_to_syslog,
)

# ---------------------------------------------------------------------------------------------------
# A strict RFC 5424 / RFC 6587 reader
# ---------------------------------------------------------------------------------------------------

PRINTUSASCII = "[\x21-\x7e]"
SD_NAME = r'[\x21\x23-\x3c\x3e-\x5c\x5e-\x7e]{1,32}'
SD_ELEMENT = rf'\[{SD_NAME}(?: {SD_NAME}="(?:[^"\\\]]|\\["\\\]])*")*\]'
HEADER_RE = re.compile(
    rb"<(?P<pri>0|[1-9]\d{0,2})>(?P<version>[1-9]\d{0,2}) "
    rb"(?P<ts>-|\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})) "
    + rf"(?P<host>-|{PRINTUSASCII}{{1,255}}) (?P<app>-|{PRINTUSASCII}{{1,48}}) "
      rf"(?P<procid>-|{PRINTUSASCII}{{1,128}}) (?P<msgid>-|{PRINTUSASCII}{{1,32}}) "
      rf"(?P<sd>-|(?:{SD_ELEMENT})+)(?: (?P<msg>.*))?".encode(),
    re.DOTALL,
)


@dataclass
class Syslog:
    facility: int
    severity: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    structured_data: str
    message: str


def parse_rfc5424(data: bytes) -> Syslog:
    m = HEADER_RE.fullmatch(data)
    if m is None:
        raise ValueError(f"not an RFC 5424 message: {data[:80]!r}")
    pri = int(m["pri"])
    if pri > 191:
        raise ValueError(f"PRIVAL {pri} > 191")
    if m["version"] != b"1":
        raise ValueError("VERSION must be 1")
    ts = m["ts"].decode()
    if ts != "-":
        y, mo, d, h, mi, s = int(ts[:4]), int(ts[5:7]), int(ts[8:10]), int(ts[11:13]), int(ts[14:16]), int(
            ts[17:19])
        valid_date = 1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1]
        if not (valid_date and h <= 23 and mi <= 59 and s <= 59):
            raise ValueError(f"TIMESTAMP {ts} is not a valid date-time (leap seconds are not allowed)")
    raw_msg = m["msg"] or b""
    if raw_msg.startswith(b"\xef\xbb\xbf"):
        raise ValueError("MSG starts with a BOM (CEF consumers expect 'CEF:' right after the header)")
    return Syslog(pri // 8, pri % 8, ts, m["host"].decode(), m["app"].decode(), m["procid"].decode(),
                  m["msgid"].decode(), m["sd"].decode(), raw_msg.decode("utf-8"))


def read_octet_counted(stream: bytes) -> list[bytes]:
    """RFC 6587 §3.4.1: TCP-DATA = *SYSLOG-FRAME; SYSLOG-FRAME = MSG-LEN SP SYSLOG-MSG."""
    frames, i = [], 0
    while i < len(stream):
        sp = stream.index(b" ", i)
        length = stream[i:sp]
        if not re.fullmatch(rb"[1-9]\d*", length):
            raise ValueError(f"bad MSG-LEN {length!r} at {i}")
        end = sp + 1 + int(length)
        if end > len(stream):
            raise ValueError("truncated frame")
        frames.append(stream[sp + 1:end])
        i = end
    return frames


def test_reader_rejects_broken_frames():
    good = frame_rfc5424("x", timestamp="-", hostname="h", app_name="a", severity=6)
    with pytest.raises(ValueError, match="MSG-LEN"):
        read_octet_counted(b"0" + good)
    with pytest.raises(ValueError, match="truncated"):
        read_octet_counted(b"%d %s" % (len(good) + 1, good))
    for bad in (b"<192>1 - - - - - -", b"<13>2 - - - - - -", b"<13>1 2026-02-30T00:00:00Z h a - - -",
                b"<13>1 2026-01-01T00:00:60Z h a - - -", b"<13>1 2026-01-01T00:00:00.1234567Z h a - - -",
                b"<13>1 - " + b"h" * 256 + b" a - - -", b"<13>1 - h " + b"a" * 49 + b" - - -",
                b"<13>1 - h a - " + b"m" * 33 + b" -", b"<13>1 - h a - - [x a=\"]\"]",
                b"<13>1 - h a - - - \xef\xbb\xbfx",
                b"<13>1 - h\xc3\xa9 a - - -"):
        with pytest.raises(ValueError):
            parse_rfc5424(bad)


# ---------------------------------------------------------------------------------------------------
# Framing
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ev", FIXTURE_EVENTS[:23], ids=lambda e: e["event_id"][-6:])
def test_fixture_events_frame_and_parse_back(ev):
    cef = to_cef(ev)
    sev = severity_to_syslog(ev["decision"]["severity"])
    frame = frame_rfc5424(cef, timestamp=ev["timestamp"], hostname="dev-laptop", app_name="clawdstrike",
                          procid="4242", msgid="guard", severity=sev)
    framed = octet_count(frame)
    assert framed == str(len(frame)).encode() + b" " + frame
    (back,) = read_octet_counted(framed)
    msg = parse_rfc5424(back)
    assert (msg.facility, msg.severity, msg.hostname, msg.app_name, msg.procid, msg.msgid, msg.structured_data
            ) == (13, sev, "dev-laptop", "clawdstrike", "4242", "guard", "-")
    assert msg.timestamp == ev["timestamp"][:26] + "Z"  # 9 hushd fraction digits -> 6
    assert msg.message == cef and validate_cef(msg.message) == []


def test_a_stream_of_frames_with_non_ascii_reads_back_in_order():
    lines = [to_cef(event(decision__reason=s)) for s in HOSTILE]
    frames = [frame_rfc5424(line, timestamp="2026-02-07T09:30:12Z", hostname="h", app_name="a", severity=3)
              for line in lines]
    stream = b"".join(octet_count(f) for f in frames)
    back = read_octet_counted(stream)
    assert back == frames
    assert [parse_cef(parse_rfc5424(b).message)[1]["msg"] for b in back] == [
        parse_cef(line)[1]["msg"] for line in lines]
    wide = frame_rfc5424("日本語", timestamp="-", hostname="h", app_name="a", severity=6)
    assert len(wide.decode()) == 22
    assert octet_count(wide) == b"28 " + wide  # octets, not characters


@pytest.mark.parametrize(("facility", "severity", "pri"), [(13, 2, 106), (0, 0, 0), (23, 7, 191), (10, 6, 86),
                                                           (16, 3, 131)])
def test_pri_is_facility_times_8_plus_severity(facility, severity, pri):
    frame = frame_rfc5424("m", timestamp="-", hostname="h", app_name="a", facility=facility,
                          severity=severity)
    assert frame.startswith(b"<%d>1 " % pri)
    assert (parse_rfc5424(frame).facility, parse_rfc5424(frame).severity) == (facility, severity)


@pytest.mark.parametrize(("kw", "message"), [({"facility": 24}, "facility"), ({"facility": -1}, "facility"),
                                             ({"severity": 8}, "severity"), ({"severity": True}, "severity"),
                                             ({"timestamp": "2026-02-07 09:30:12Z"}, "timestamp"),
                                             ({"timestamp": "2026-02-07t09:30:12z"}, "timestamp"),
                                             ({"structured_data": "[bad"}, "structured_data"),
                                             ({"structured_data": '[id a="x"y"]'}, "structured_data"),
                                             ({"structured_data": '[a x="1"][b][a y="2"]'}, "SD-ID appears")])
def test_invalid_arguments_raise(kw, message):
    args = {"timestamp": "-", "hostname": "h", "app_name": "a", "severity": 6, **kw}
    with pytest.raises(ValueError, match=message):
        frame_rfc5424("m", **args)


@pytest.mark.parametrize(("ts", "want"), [
    ("2026-11-26T08:28:48.548186700Z", "2026-11-26T08:28:48.548186Z"),
    ("2026-11-26T08:28:48Z", "2026-11-26T08:28:48Z"),
    ("2026-11-26T08:28:48.5Z", "2026-11-26T08:28:48.5Z"),
    ("2026-11-26T08:28:48.123456+02:00", "2026-11-26T08:28:48.123456+02:00"),
    ("2016-12-31T23:59:60.5Z", "2016-12-31T23:59:59.999999Z"),
    ("-", "-"),
])
def test_timestamp_is_rfc5424(ts, want):
    frame = frame_rfc5424("m", timestamp=ts, hostname="h", app_name="a", severity=6)
    assert parse_rfc5424(frame).timestamp == want


def test_header_fields_are_made_valid_not_refused():
    frame = frame_rfc5424("m", timestamp="-", hostname="café laptop", app_name="x" * 60, procid="",
                          msgid="m" * 40, severity=6)
    msg = parse_rfc5424(frame)
    assert (msg.hostname, msg.app_name, msg.procid, msg.msgid) == ("caf__laptop", "x" * 48, "-", "m" * 32)
    long = parse_rfc5424(frame_rfc5424("m", timestamp="-", hostname="h" * 300, app_name="a",
                                       procid="p" * 200, severity=6))
    assert (len(long.hostname), len(long.procid)) == (255, 128)


def test_no_bom_and_no_trailing_space_without_message():
    frame = frame_rfc5424("CEF:0|é|", timestamp="-", hostname="h", app_name="a", severity=6)
    assert frame.endswith(b" - CEF:0|\xc3\xa9|") and b"\xef\xbb\xbf" not in frame
    assert frame_rfc5424("", timestamp="-", hostname="h", app_name="a", severity=6) == b"<110>1 - h a - - -"
    with pytest.raises(ValueError):
        octet_count(b"")


def test_structured_data_element_escaping_round_trips():
    sd = format_sd_element("origin@32473", [("software", 'clawd"agent]\\x'), ("swVersion", "0.1.0")])
    assert sd == r'[origin@32473 software="clawd\"agent\]\\x" swVersion="0.1.0"]'
    frame = frame_rfc5424("m", timestamp="-", hostname="h", app_name="a", severity=6, structured_data=sd)
    assert parse_rfc5424(frame).structured_data == sd
    with pytest.raises(ValueError):
        format_sd_element("bad id", [])
    two = sd + format_sd_element("meta", [("sequenceId", "1")])  # distinct SD-IDs; a param name may repeat
    frame = frame_rfc5424("m", timestamp="-", hostname="h", app_name="a", severity=6,
                          structured_data=two + r'[x@1 a="\]" a="2"]')
    assert parse_rfc5424(frame).structured_data.startswith(two)


@pytest.mark.parametrize(("canonical", "syslog"), [("critical", 2), ("high", 3), ("medium", 4),
                                                   ("low", 5), ("info", 6), ("Severe", 4)])
def test_severity_to_syslog(canonical, syslog):
    assert severity_to_syslog(canonical) == syslog
    assert SEVERITY_TO_SYSLOG == {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300), st.text(max_size=80), st.integers(0, 23),
       st.integers(0, 7))
def test_property_any_input_frames_to_a_parseable_message(message, host, app, facility, severity):
    frame = frame_rfc5424(message.replace("\ufeff", ""), timestamp="2026-02-07T09:30:12.1234567Z",
                          hostname=host, app_name=app, facility=facility, severity=severity)
    (back,) = read_octet_counted(octet_count(frame))
    msg = parse_rfc5424(back)
    assert (msg.facility, msg.severity) == (facility, severity)
    assert msg.message == message.replace("\ufeff", "")
