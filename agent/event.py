"""The canonical SecurityEvent 2.1.0: enumerations, the field table, validation and encoding.

An event is a plain ``dict`` (no object per event: this is the ingest hot path). ``FIELDS`` below is the
single source of truth for its shape: ``validate_event`` walks it, and ``agent.schema_export`` turns it
into the checked-in JSON Schema (``artifacts/schema/security-event.schema.json``). See docs/event-model.md.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from agent.caches import put_bounded

SCHEMA_VERSION = "2.1.0"


class EventType(StrEnum):
    """What happened. The first ten values are hushd SecurityEvent 1.0.0's; the rest are additions."""

    POLICY_VIOLATION = "policy_violation"
    POLICY_ALLOW = "policy_allow"
    GUARD_BLOCK = "guard_block"
    GUARD_WARN = "guard_warn"
    SECRET_DETECTED = "secret_detected"
    EGRESS_BLOCKED = "egress_blocked"
    FORBIDDEN_PATH = "forbidden_path"
    PATCH_REJECTED = "patch_rejected"
    SESSION_START = "session_start"
    SESSION_END = "session_end"
    # 2.0.0 additions
    POLICY_CHANGE = "policy_change"
    ADMIN_CHANGE = "admin_change"
    USER_SESSION_START = "user_session_start"
    USER_SESSION_END = "user_session_end"
    POSTURE_TRANSITION = "posture_transition"
    IDP_WEBHOOK = "idp_webhook"
    TOOL_CALL = "tool_call"
    OUTPUT_SANITIZED = "output_sanitized"
    DETECTION = "detection"


class EventCategory(StrEnum):
    AUTHENTICATION = "authentication"
    AUTHORIZATION = "authorization"
    FILE = "file"
    NETWORK = "network"
    PROCESS = "process"
    TOOL = "tool"
    CONFIGURATION = "configuration"
    SESSION = "session"
    AI = "ai"  # 2.0.0: prompt-injection, jailbreak and prompt-security detections


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 (info) .. 4 (critical); use it to compare or threshold severities."""
        return SEVERITY_RANK[self.value]


SEVERITY_RANK: dict[str, int] = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


def severity_rank(severity: str) -> int:
    """Rank of a canonical severity string (info=0 .. critical=4). Raises ``KeyError`` if not canonical."""
    return SEVERITY_RANK[severity]


def severity_at_least(severity: str, threshold: str) -> bool:
    """True when ``severity`` is as severe as ``threshold`` or more."""
    return SEVERITY_RANK[severity] >= SEVERITY_RANK[threshold]


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    UNKNOWN = "unknown"


class ResourceType(StrEnum):
    FILE = "file"
    NETWORK = "network"
    PROCESS = "process"
    TOOL = "tool"
    CONFIGURATION = "configuration"
    SESSION = "session"  # 2.0.0
    IDENTITY = "identity"  # 2.0.0: roles, user sessions, IdP
    PROMPT = "prompt"  # 2.0.0: prompt text inspected by prompt security
    OUTPUT = "output"  # 2.0.0: model or tool output inspected by a sanitizer


class SourceKind(StrEnum):
    HUSHD_AUDIT = "hushd_audit"
    HUSHD_SECURITY_EVENT = "hushd_security_event"
    HUSHD_CERTIFICATION_WEBHOOK = "hushd_certification_webhook"
    ADAPTER_AUDIT = "adapter_audit"
    OPENCLAW_AUDIT = "openclaw_audit"


class ObserverProduct(StrEnum):
    HUSHD = "hushd"
    CLAWDSTRIKE_ADAPTER = "clawdstrike-adapter"
    OPENCLAW = "openclaw"


class IndicatorType(StrEnum):
    """ECS / STIX cyber-observable names (hushd 1.0.0 used the invalid ``domain`` and ``file_path``)."""

    DOMAIN_NAME = "domain-name"
    IPV4_ADDR = "ipv4-addr"
    IPV6_ADDR = "ipv6-addr"
    FILE = "file"


# --------------------------------------------------------------------------------------------------
# The field table: the single source of truth for validate_event and the JSON Schema.
# --------------------------------------------------------------------------------------------------

STRING = "string"  # non-empty string
ENUM = "enum"
BOOLEAN = "boolean"
INTEGER = "integer"
OBJECT = "object"  # a nested object described by `children`
LABELS = "labels"  # object of string -> string
ANY_OBJECT = "any_object"  # a JSON object of anything (metadata)

UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
TIMESTAMP_PATTERN = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)"
    r"(\.[0-9]{1,9})?Z$"
)
POLICY_HASH_PATTERN = r"^sha256:[0-9a-f]{64}$"
SCHEMA_VERSION_PATTERN = r"^2\.[0-9]+\.[0-9]+$"
MITRE_TACTIC_PATTERN = r"^(TA[0-9]{4}|AML\.TA[0-9]{4})$"
MITRE_TECHNIQUE_PATTERN = r"^(T[0-9]{4}(\.[0-9]{3})?|AML\.T[0-9]{4}(\.[0-9]{3})?)$"


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: str
    required: bool
    doc: str
    values: tuple[str, ...] = ()
    pattern: str | None = None
    expected: str | None = None  # human wording of the pattern for error messages
    minimum: int | None = None
    maximum: int | None = None
    children: tuple[Field, ...] = ()


def _enum(e: type[StrEnum]) -> tuple[str, ...]:
    return tuple(m.value for m in e)


FIELDS: tuple[Field, ...] = (
    Field("schema_version", STRING, True, "Version of this schema, `2.<minor>.<patch>`; this code writes "
          f"`{SCHEMA_VERSION}`.", pattern=SCHEMA_VERSION_PATTERN, expected="a 2.x.y version string"),
    Field("event_id", STRING, True, "Stable id: the source id when it is a UUID (lowercase), else "
          "UUIDv5(EVENT_ID_NAMESPACE, '<source.kind>:<source id>'). Same record -> same id.",
          pattern=UUID_PATTERN, expected="a lowercase canonical UUID"),
    Field("event_type", ENUM, True, "What happened (see EventType).", values=_enum(EventType)),
    Field("event_category", ENUM, True, "Broad class, mostly from the resource type (see EventCategory).",
          values=_enum(EventCategory)),
    Field("timestamp", STRING, True, "When the source recorded it: RFC 3339 UTC with `Z`, the source's "
          "sub-second precision (0-9 digits; epoch-ms sources give 3).", pattern=TIMESTAMP_PATTERN,
          expected="an RFC 3339 UTC timestamp ending in Z"),
    Field("outcome", ENUM, True, "success (allowed), failure (blocked) or unknown (no decision).",
          values=_enum(Outcome)),
    Field("action", STRING, True, "The action that was evaluated: hushd `action_type` (file_access, "
          "file_write, egress, shell, mcp_tool, patch, custom, session, policy, rbac, webhook), or the "
          "mapped equivalent for other sources."),
    Field("agent", OBJECT, False, "The AI agent that acted, when the source names it.", children=(
        Field("id", STRING, True, "The agent id from the record (client-asserted in hushd)."),
    )),
    Field("observer", OBJECT, True, "The product that reported the event (not the AI agent).", children=(
        Field("product", ENUM, True, "hushd, clawdstrike-adapter or openclaw.",
              values=_enum(ObserverProduct)),
        Field("version", STRING, False, "Product version, when the source states it."),
        Field("host_name", STRING, False, "Host the agent runs on (from the agent's config)."),
        Field("instance_id", STRING, False, "hushd daemon instance id, when a daemon-level record carries "
              "it (kept out of session.id)."),
    )),
    Field("session", OBJECT, False, "Session attribution; omitted when nothing is known.", children=(
        Field("id", STRING, False, "Session id carried by the source record (never hushd's daemon id "
              "for non-session events)."),
        Field("user_id", STRING, False, "Authenticated user: `metadata.principal.id`."),
        Field("run_id", STRING, False, "Adapter `contextId` / OpenClaw `runId`."),
        Field("tenant_id", STRING, False, "Tenant from the agent's config."),
        Field("environment", STRING, False, "Environment from the agent's config."),
    )),
    Field("threat", OBJECT, False, "Only on blocked, threat-relevant events (egress, file access/write, "
          "patch); omitted otherwise.", children=(
        Field("indicator", OBJECT, True, "The blocked observable.", children=(
            Field("type", ENUM, True, "ECS indicator type.", values=_enum(IndicatorType)),
            Field("value", STRING, True, "The domain, IP address or file path."),
        )),
    )),
    Field("decision", OBJECT, True, "The policy decision.", children=(
        Field("allowed", BOOLEAN, False, "Whether the action was allowed; omitted when the source record "
              "carries no decision (e.g. adapter tool_call_start)."),
        Field("guard", STRING, False, "The guard that blocked or warned; omitted on plain allows."),
        Field("severity", ENUM, True, "Normalised severity.", values=_enum(Severity)),
        Field("reason", STRING, False, "Human message from the guard or source."),
        Field("policy_hash", STRING, False, "Resolved per-request policy hash, `sha256:<64 hex>`.",
              pattern=POLICY_HASH_PATTERN, expected="sha256:<64 lowercase hex>"),
        Field("ruleset", STRING, False, "Ruleset name, when the source states it."),
    )),
    Field("resource", OBJECT, True, "What the action targeted.", children=(
        Field("type", ENUM, True, "Resource type.", values=_enum(ResourceType)),
        Field("name", STRING, True, "Path, host, command line, tool name or other name."),
        Field("path", STRING, False, "File path (file resources; target of configuration resources)."),
        Field("host", STRING, False, "Host name or IP (network), brackets stripped."),
        Field("ip", STRING, False, "The host when it is an IP address."),
        Field("port", INTEGER, False, "Port from metadata.port or the target; never guessed.",
              minimum=0, maximum=65535),
    )),
    Field("metadata", ANY_OBJECT, True, "The source record's metadata object verbatim (`{}` if none)."),
    Field("labels", LABELS, True, "String labels from the agent's config (and a 1.0.0 source's labels)."),
    Field("source", OBJECT, True, "Provenance of the record.", children=(
        Field("kind", ENUM, True, "Which record shape was mapped.", values=_enum(SourceKind)),
        Field("id", STRING, False, "The original id string, if the record had one."),
        Field("type", STRING, False, "The original event_type / type / event string."),
    )),
    # 2.1.0 addition: set at ingest by the enrichment table (transforms/enrich.py, docs/transforms.md).
    Field("mitre", OBJECT, False, "MITRE ATT&CK or ATLAS technique and tactic of a flagged event, from the "
          "enrichment table; omitted when no rule matches.", children=(
        Field("framework", ENUM, True, "attack (MITRE ATT&CK) or atlas (MITRE ATLAS).",
              values=("attack", "atlas")),
        Field("tactic", OBJECT, True, "The tactic.", children=(
            Field("id", STRING, True, "Tactic id: TAxxxx (ATT&CK) or AML.TAxxxx (ATLAS).",
                  pattern=MITRE_TACTIC_PATTERN, expected="a MITRE tactic id such as TA0006 or AML.TA0005"),
            Field("name", STRING, True, "Tactic name as MITRE publishes it."),
        )),
        Field("technique", OBJECT, True, "The technique or sub-technique.", children=(
            Field("id", STRING, True, "Technique id: Txxxx, Txxxx.yyy (sub-technique), AML.Txxxx or "
                  "AML.Txxxx.yyy.", pattern=MITRE_TECHNIQUE_PATTERN,
                  expected="a MITRE technique id such as T1552.004 or AML.T0051"),
            Field("name", STRING, True, "Technique name; a sub-technique is 'Parent: Sub-technique'."),
        )),
    )),
)

# Cross-field rules, enforced by validate_event and emitted into the schema as if/then clauses.
INVARIANTS: tuple[str, ...] = (
    "threat.indicator requires decision.allowed == false",
    "outcome is success when decision.allowed is true and failure when it is false",
)

EVENT_FIELD_NAMES: frozenset[str] = frozenset(f.name for f in FIELDS)


class EventValidationError(ValueError):
    """An event does not match the SecurityEvent 2.x field table; the message names the field path."""


_MISSING = object()
_COMPILED: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    p = _COMPILED.get(pattern)
    if p is None:
        p = _COMPILED[pattern] = re.compile(pattern)
    return p


def _shown(v: Any) -> str:
    if v is _MISSING:
        return "nothing (field missing)"
    r = repr(v)
    if len(r) > 80:
        r = r[:77] + "..."
    if isinstance(v, str):
        return r
    return f"{r} ({type(v).__name__})"


def _fail(path: str, expected: str, found: Any) -> None:
    raise EventValidationError(f"{path}: expected {expected}, got {_shown(found)}")


# Pre-compute per field the tuple the hot loop needs: (name, kind, required, path, extra...).
@dataclass(frozen=True, slots=True)
class _Check:
    name: str
    kind: str
    required: bool
    path: str
    values: frozenset[str]
    expected: str
    regex: re.Pattern[str] | None
    minimum: int | None
    maximum: int | None
    children: tuple[_Check, ...]


def _expected(f: Field) -> str:
    if f.kind == ENUM:
        return "one of " + "|".join(f.values)
    if f.kind == STRING:
        return f.expected or "a non-empty string"
    if f.kind == BOOLEAN:
        return "a boolean"
    if f.kind == INTEGER:
        return f"an integer {f.minimum}..{f.maximum}"
    if f.kind == LABELS:
        return "an object of string values"
    return "an object"


def _build(fields: tuple[Field, ...], prefix: str) -> tuple[_Check, ...]:
    out = []
    for f in fields:
        path = prefix + f.name
        out.append(_Check(
            f.name, f.kind, f.required, path, frozenset(f.values), _expected(f),
            _compiled(f.pattern) if f.pattern else None, f.minimum, f.maximum,
            _build(f.children, path + "."),
        ))
    return tuple(out)


_CHECKS = _build(FIELDS, "")


def _gen_object(lines: list[str], var: str, checks: tuple[_Check, ...], consts: dict[str, Any],
                depth: int, indent: int) -> None:
    """Emit straight-line checks for one object (``var`` is a dict) into ``lines``."""
    ind = "    " * indent
    for c in checks:
        i = len(consts)
        consts[f"P{i}"], consts[f"E{i}"] = c.path, c.expected
        v = f"v{depth}"
        lines.append(f"{ind}{v} = {var}.get({c.name!r}, M)")
        if c.required:  # F raises, so the checks below run only on a present value
            lines.append(f"{ind}if {v} is M: F(P{i}, E{i}, {v})")
            body_indent = indent
        else:
            lines.append(f"{ind}if {v} is not M:")
            body_indent = indent + 1
        body = "    " * body_indent
        kind = c.kind
        if kind == STRING:
            if c.regex is not None:
                consts[f"R{i}"] = c.regex.fullmatch  # not match: `$` matches before a final newline
                lines.append(f"{body}if not isinstance({v}, str) or R{i}({v}) is None: F(P{i}, E{i}, {v})")
            else:
                lines.append(f"{body}if type({v}) is not str or not {v}: F(P{i}, E{i}, {v})")
        elif kind == ENUM:
            consts[f"V{i}"] = c.values
            lines.append(f"{body}if not isinstance({v}, str) or {v} not in V{i}: F(P{i}, E{i}, {v})")
        elif kind == BOOLEAN:
            lines.append(f"{body}if type({v}) is not bool: F(P{i}, E{i}, {v})")
        elif kind == INTEGER:
            lines.append(f"{body}if type({v}) is not int or not ({c.minimum} <= {v} <= {c.maximum}): "
                         f"F(P{i}, E{i}, {v})")
        elif kind == OBJECT:
            lines.append(f"{body}if type({v}) is not dict: F(P{i}, E{i}, {v})")
            sub = f"o{depth + 1}"
            lines.append(f"{body}{sub} = {v}")
            _gen_object(lines, sub, c.children, consts, depth + 1, body_indent)
        elif kind == LABELS:
            lines.append(f"{body}if type({v}) is not dict: F(P{i}, E{i}, {v})")
            lines.append(f"{body}for k, lv in {v}.items():")
            lines.append(f"{body}    if type(lv) is not str: F(P{i} + '.' + str(k), 'a string', lv)")
        elif kind == ANY_OBJECT:
            lines.append(f"{body}if type({v}) is not dict: F(P{i}, E{i}, {v})")
        else:  # pragma: no cover - a new kind must be taught to the generator
            raise AssertionError(f"unknown field kind {kind!r}")


def _gen_fast(lines: list[str], var: str, checks: tuple[_Check, ...], consts: dict[str, Any],
              depth: int) -> None:
    """Emit the fast path: it only answers "valid or not" and leans on KeyError/TypeError, so valid
    events pay one lookup and one test per field. Any failure re-runs the precise checker for the message.
    """
    ind = "    " * depth
    for c in checks:
        i = len(consts)
        if c.required:
            get, body = f"{var}[{c.name!r}]", ind
        else:
            lines.append(f"{ind}if {c.name!r} in {var}:")
            get, body = f"{var}[{c.name!r}]", ind + "    "
        kind = c.kind
        if kind == STRING and c.regex is not None:
            consts[f"R{i}"] = c.regex.fullmatch  # not match: `$` matches before a final newline
            lines.append(f"{body}if R{i}({get}) is None: raise X")  # TypeError on non-str
        elif kind == STRING:
            lines.append(f"{body}v = {get}")
            lines.append(f"{body}if type(v) is not str or not v: raise X")
        elif kind == ENUM:
            consts[f"V{i}"] = c.values
            lines.append(f"{body}if {get} not in V{i}: raise X")  # only str members: non-str never matches
        elif kind == BOOLEAN:
            lines.append(f"{body}if type({get}) is not bool: raise X")
        elif kind == INTEGER:
            lines.append(f"{body}v = {get}")
            lines.append(f"{body}if type(v) is not int or not ({c.minimum} <= v <= {c.maximum}): raise X")
        elif kind == OBJECT:
            sub = f"o{i}"  # unique per object: a nested object never clobbers its parent's variable
            lines.append(f"{body}{sub} = {get}")
            lines.append(f"{body}if type({sub}) is not dict: raise X")
            _gen_fast(lines, sub, c.children, consts, depth + (0 if c.required else 1))
        elif kind == LABELS:
            lines.append(f"{body}v = {get}")
            lines.append(f"{body}if type(v) is not dict: raise X")
            lines.append(f"{body}for lv in v.values():")
            lines.append(f"{body}    if type(lv) is not str: raise X")
        elif kind == ANY_OBJECT:
            lines.append(f"{body}if type({get}) is not dict: raise X")
        else:  # pragma: no cover
            raise AssertionError(f"unknown field kind {kind!r}")


class _Invalid(Exception):
    pass


def _compile_validator() -> tuple[Any, Any, str]:
    """Compile the field table into two straight-line functions: the fast yes/no check and the precise
    checker that names the failing field (run only when the fast one says no)."""
    consts: dict[str, Any] = {"M": _MISSING, "F": _fail, "X": _Invalid}
    lines = ["def _check_fields(o0):"]
    _gen_object(lines, "o0", _CHECKS, consts, 1, 1)
    lines.append("def _fast_check(e):")
    _gen_fast(lines, "e", _CHECKS, consts, 1)
    src = "\n".join(lines) + "\n"
    namespace: dict[str, Any] = dict(consts)
    exec(compile(src, "<agent.event field table>", "exec"), namespace)  # generated from FIELDS only
    return namespace["_check_fields"], namespace["_fast_check"], src


_check_fields, _fast_check, _VALIDATOR_SOURCE = _compile_validator()
_OUTCOME_FOR_ALLOWED = {True: "success", False: "failure"}


def validate_event(ev: Any) -> None:
    """Check ``ev`` against the SecurityEvent 2.1.0 field table and invariants.

    Raises ``EventValidationError("<path>: expected <what>, got <found>")``. Unknown fields are accepted
    (the compatibility policy: consumers ignore fields they do not know).
    """
    try:
        _fast_check(ev)
    except (_Invalid, KeyError, TypeError, AttributeError):
        if type(ev) is not dict:
            _fail("(event)", "an object", ev)
        _check_fields(ev)  # raises the precise error
        raise EventValidationError("event: invalid (fast and precise checks disagree)") from None
    allowed = ev["decision"].get("allowed", _MISSING)
    if "threat" in ev and allowed is not False:
        _fail("decision.allowed", "false because threat.indicator is set", allowed)
    if allowed is not _MISSING and ev["outcome"] != _OUTCOME_FOR_ALLOWED[allowed]:
        _fail("outcome", f"{_OUTCOME_FOR_ALLOWED[allowed]!r} because decision.allowed is {allowed}",
              ev["outcome"])


_SORT = orjson.OPT_SORT_KEYS
_dumps = orjson.dumps
# b"".join of two parts allocates the exact total size and copies into it (~1,000 instructions);
# bytes(memoryview(b)) does the same through the buffer protocol (~2,000). With one part, join would
# hand the same object back, so the empty second part is what makes it a copy.
_join = b"".join


def encode_event(ev: dict) -> bytes:
    """Deterministic UTF-8 JSON: orjson with sorted keys, no trailing newline.

    The result is copied to an exact-size ``bytes``: orjson returns its whole working buffer (4 KiB or
    more for a 700-byte event), and ingest holds tens of thousands of bodies while a transaction
    commits, which made the buffers the largest part of the agent's peak RSS."""
    return _join((_dumps(ev, option=_SORT), b""))


_TS_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$")


# "YYYY-MM-DD" -> epoch seconds of that day's 00:00:00, filled by the regex path below, and
# "YYYY-MM-DDTHH:MM" -> epoch seconds of that minute, filled from a known day and the "HH:MM" table.
# A new second then costs a minute lookup and the ":SS" table instead of the regex, seven int() and
# calendar.timegm (~25,000 instructions: every event is a new second when they are sparser than 1/s).
_DAYS: dict[str, int] = {}
_MINUTES: dict[str, int] = {}
_HOUR_MINUTE = {f"{h:02d}:{m:02d}": h * 3600 + m * 60 for h in range(24) for m in range(60)}
_COLON_SECOND = {f":{s:02d}": min(s, 59) for s in range(61)}  # :60 (a leap second) counts as :59


def timestamp_to_ms(ts: str) -> int:
    """Epoch milliseconds of a canonical (``...Z``) timestamp; sub-millisecond digits are truncated.

    On the ingest hot path: a minute of a day already seen, plus an ASCII ``:SS``, is looked up in
    tables and only the fraction is parsed; anything else takes the regex (same arithmetic: timegm is
    linear in day, hour, minute and second). Every slice costs here: there are as few as possible.
    """
    base = _MINUTES.get(ts[:16])
    if base is None:
        base = _new_minute(ts)
    if base is not None and ts[-1] == "Z":
        sec = _COLON_SECOND.get(ts[16:19])
        if sec is not None:
            n = len(ts)
            if n == 20:
                return (base + sec) * 1000
            frac = ts[20:-1]
            # 1..9 fraction digits (isdecimal: what int() accepts); the first three are the milliseconds
            if ts[19] == "." and n < 31 and frac.isdecimal():
                return (base + sec) * 1000 + int(frac[:3] if n > 23 else frac.ljust(3, "0"))
    m = _TS_RE.fullmatch(ts)  # not match: `$` matches before a final newline
    if m is None:
        raise EventValidationError(f"timestamp: expected an RFC 3339 UTC timestamp ending in Z, got {ts!r}")
    y, mo, d, h, mi, s, frac = m.groups()
    day = calendar.timegm((int(y), int(mo), int(d), 0, 0, 0, 0, 0, 0))
    put_bounded(_DAYS, ts[:10], day, 4096)
    ms = int((frac or "0")[:3].ljust(3, "0"))
    return (day + int(h) * 3600 + int(mi) * 60 + min(int(s), 59)) * 1000 + ms


def _new_minute(ts: str) -> int | None:
    """Epoch seconds of ``ts``'s minute when its day is known and ``THH:MM`` is in the table (cached);
    None otherwise (the regex decides)."""
    day = _DAYS.get(ts[:10])
    if day is None or ts[10:11] != "T":
        return None
    hm = _HOUR_MINUTE.get(ts[11:16])
    if hm is None:
        return None
    return put_bounded(_MINUTES, ts[:16], day + hm, 4096)


def event_time_ms(ev: dict) -> int:
    """The event's ``timestamp`` as integer epoch milliseconds (for the spool's ``ts_ms`` column)."""
    return timestamp_to_ms(ev["timestamp"])
