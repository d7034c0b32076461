"""Deterministic mapping of every Clawdstrike record shape to the canonical SecurityEvent 2.0.0.

Kinds (``agent.event.SourceKind``):

- ``hushd_audit``: hushd ``AuditEvent`` (audit_forward file_jsonl / webhook, ``GET /api/v1/audit``);
- ``hushd_security_event``: hushd SIEM ``SecurityEvent`` 1.0.0, re-normalised with its defects fixed;
- ``hushd_certification_webhook``: ``{event:"violation.detected", timestamp, data:{...}}``;
- ``adapter_audit``: clawdstrike-adapter-core ``AuditEvent`` (``{id, type, timestamp, contextId, ...}``);
- ``openclaw_audit``: the OpenClaw plugin's ``.hush/audit.jsonl`` lines.

The per-shape tables are in docs/event-model.md. Every function here is pure: same record (and raw
bytes, and context) -> same event -> same encoded bytes. No clock, no randomness.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from agent.caches import put_bounded
from agent.event import (
    SCHEMA_VERSION,
    TIMESTAMP_PATTERN,
    EventValidationError,
    SourceKind,
    encode_event,
    timestamp_to_ms,
    validate_event,
)

__all__ = [
    "EVENT_ID_NAMESPACE",
    "MappingContext",
    "MappingError",
    "derive_event_id",
    "detect_kind",
    "encode_line",
    "map_record",
    "normalize_severity",
    "normalize_timestamp",
    "parse_egress_target",
    "parse_line",
]

# Fixed namespace for UUIDv5 event ids of non-UUID sources. NEVER change it: ids would change and
# downstream de-duplication (spool UNIQUE, SIEM _id) would break. = uuid5(NAMESPACE_URL,
# "https://clawd-agent.invalid/ns/security-event-id").
EVENT_ID_NAMESPACE = uuid.UUID("380d7db2-4311-57e3-bd56-0bb5bf19a3fb")


class MappingError(ValueError):
    """A record cannot be mapped; ``reason`` is one line naming the field (the input quarantines it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class MappingContext:
    """Per-agent context from ``[agent]`` in agent.toml.

    ``postprocess`` is the ingest transform (``transforms.pipeline.compile_ingest``: ``[enrichment]`` then
    ``[privacy]``), applied to every mapped event before it is returned, so what reaches the spool is
    already enriched and redacted. ``AgentConfig.mapping_context()`` builds the whole context.
    """

    labels: dict[str, str] = field(default_factory=dict)
    environment: str | None = None
    tenant_id: str | None = None
    host_name: str | None = None
    postprocess: Callable[[dict], dict] | None = field(default=None, compare=False, repr=False)
    # Derived once (hot path): the session fields and the hushd observer this context contributes.
    _session_base: dict[str, str] = field(init=False, repr=False, compare=False)
    _hushd_observer: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        base: dict[str, str] = {}
        if self.tenant_id:
            base["tenant_id"] = self.tenant_id
        if self.environment:
            base["environment"] = self.environment
        object.__setattr__(self, "_session_base", base)
        obs = {"product": "hushd"}
        if self.host_name:
            obs["host_name"] = self.host_name
        object.__setattr__(self, "_hushd_observer", obs)


# --------------------------------------------------------------------------------------------------
# Small normalisers
# --------------------------------------------------------------------------------------------------

_SEVERITY = {
    "info": "info",
    "low": "low",
    "warning": "medium",
    "warn": "medium",
    "medium": "medium",
    "error": "high",
    "high": "high",
    "critical": "critical",
}
# Exact spellings first (the common case needs no .lower()).
_SEVERITY_EXACT = {**_SEVERITY, "Info": "info", "Warning": "medium", "Error": "high", "Critical": "critical",
                   "Low": "low", "Medium": "medium", "High": "high"}


def normalize_severity(value: Any, *, field_name: str = "severity") -> str:
    """Map every Clawdstrike severity spelling to info|low|medium|high|critical.

    ``Info``/``info`` -> info; ``Warning``/``warning``/``warn``/``medium`` -> medium; ``Error``/``error``/
    ``high`` -> high; ``Critical``/``critical`` -> critical; ``low`` -> low (case-insensitive). Anything
    else raises ``MappingError`` naming the value (hushd silently made it info).
    """
    s = _SEVERITY_EXACT.get(value) if type(value) is str else None
    if s is not None:
        return s
    if type(value) is str:
        s = _SEVERITY.get(value.strip().lower())
        if s is not None:
            return s
    raise MappingError(
        f"{field_name}: unrecognised severity {value!r} (expected info, low, warning/medium, error/high "
        "or critical)"
    )


_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_UUID_MATCH = _UUID_RE.match
# hushd writes its ids in lowercase: one that already is needs no .lower() copy (a str allocation)
_LOWER_UUID_MATCH = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$").match


def derive_event_id(kind: str, source_id: str) -> str:
    """The source id when it is a UUID (lowercased), else UUIDv5(EVENT_ID_NAMESPACE, f"{kind}:{id}")."""
    if len(source_id) == 36 and _UUID_RE.match(source_id):
        return source_id.lower()
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{kind}:{source_id}"))


# re.ASCII: ``\d`` would match any Unicode decimal digit (fullwidth, Arabic-Indic...), which int() reads
# but the canonical text (kept as given for UTC) must not hold.
_RFC3339_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):?(\d{2}))$",
    re.ASCII,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc_text(dt: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` with a 4-digit year (``strftime("%Y")`` writes year 999 as "999")."""
    return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"

# fullmatch: the pattern's ``$`` would also accept a trailing newline, which the general parser drops;
# with match() a "...Z\n" value came back with or without its newline depending on the date cache.
_TS_CANONICAL = re.compile(TIMESTAMP_PATTERN).fullmatch
_VALID_DATES: dict[str, bool] = {}  # "YYYY-MM-DD" prefixes already proven valid by datetime()
# "YYYY-MM-DDTHH:MM:SS" prefixes of timestamps that matched TIMESTAMP_PATTERN on a valid date: with one
# of them, a value is canonical exactly when the rest is ``Z`` or ``.`` + 1..9 ASCII digits + ``Z`` (the
# pattern's fixed-width head is that prefix), which costs a set lookup and a few character tests instead
# of the pattern. Events arrive in time order, so consecutive ones mostly share the second. The value is
# the second's epoch milliseconds (``timestamp_to_ms``), so the ingest path gets an event's ``ts_ms``
# from the same lookup plus its first three fraction digits (``_MILLIS``).
_CANON_SECONDS: dict[str, int] = {}
#: The first 1..3 fraction digits -> ms ("5" -> 500, "05" -> 50, "042" -> 42): a lookup costs ~2/3 of
#: int() on a slice, and needs no padding of a short fraction.
_MILLIS = {f"{i:0{w}d}": i * 10 ** (3 - w) for w in (1, 2, 3) for i in range(10**w)}


def _known_canonical_ms(value: str) -> int | None:
    """Epoch ms of a timestamp already canonical (``Z``, no fraction or 1..9 ASCII digits) in a second
    seen canonical before, or None when that is not known (``normalize_timestamp`` decides then). The
    hot path of both ``normalize_timestamp`` and the hushd mapper, which also keeps the ms for the
    spool's ``ts_ms`` (``timestamp_to_ms`` cost ~6,600 instructions a line on its own)."""
    second = _CANON_SECONDS.get(value[:19])
    if second is None:
        return None
    n = len(value)
    if n == 20:
        return second if value[19] == "Z" else None
    if 21 < n < 31 and value[19] == "." and value[-1] == "Z":
        frac = value[20:-1]
        if frac.isdigit() and frac.isascii():
            return second + _MILLIS[frac[:3]]
    return None


def normalize_timestamp(value: Any, *, field_name: str = "timestamp") -> str:
    """RFC 3339 UTC with ``Z``, keeping the sub-second digits (truncated beyond 9).

    Accepts RFC 3339 strings with ``Z`` or an offset (converted to UTC), and integer epoch milliseconds
    (-> 3 fractional digits).
    """
    if type(value) is str:
        if _known_canonical_ms(value) is not None:  # the hot path: a second already seen canonical
            return value
        if _TS_CANONICAL(value) is not None and value[:10] in _VALID_DATES:
            head = value[:19]
            put_bounded(_CANON_SECONDS, head, timestamp_to_ms(head + "Z"), 4097)
            return value  # already canonical UTC ``Z`` with <= 9 digits, on a known-valid date
        m = _RFC3339_RE.match(value)
        if m is None:
            raise MappingError(f"{field_name}: expected an RFC 3339 timestamp, got {value!r}")
        y, mo, d, h, mi, s, frac, z, sign, oh, om = m.groups()
        if s > "60":  # two ASCII digits: 60 is a leap second, 61..99 no time at all
            raise MappingError(f"{field_name}: invalid date/time {value!r}: second must be in 0..60")
        if z is None and (oh > "23" or om > "59"):
            raise MappingError(f"{field_name}: invalid date/time {value!r}: offset must be within 23:59")
        try:
            dt = datetime(int(y), int(mo), int(d), int(h), int(mi), min(int(s), 59))
            if z is None:
                off = timedelta(hours=int(oh), minutes=int(om))
                dt = dt - off if sign == "+" else dt + off
        except (ValueError, OverflowError) as exc:
            raise MappingError(f"{field_name}: invalid date/time {value!r}: {exc}") from None
        # Already UTC: keep the text (uppercase T/Z, a leap second :60 as given, at most 9 digits), exactly
        # as the canonical fast path above would, so the result never depends on the date cache.
        base = f"{y}-{mo}-{d}T{h}:{mi}:{s}" if z is not None else _utc_text(dt)
        put_bounded(_VALID_DATES, f"{y}-{mo}-{d}", True, 4097)  # the datetime() above accepted this date
        if frac:
            return f"{base}.{frac[:9]}Z"
        return base + "Z"
    if type(value) is int:
        try:
            dt = _EPOCH + timedelta(milliseconds=value)
        except OverflowError:
            raise MappingError(f"{field_name}: epoch milliseconds out of range: {value}") from None
        return f"{_utc_text(dt)}.{value % 1000:03d}Z"
    if type(value) is float and value.is_integer():
        return normalize_timestamp(int(value), field_name=field_name)
    if value is None:
        raise MappingError(f"missing field {field_name!r}")
    raise MappingError(f"{field_name}: expected an RFC 3339 string or epoch milliseconds, got {value!r}")


_HEX64_RE = re.compile(r"^(?:sha256:)?([0-9a-fA-F]{64})$")


_POLICY_HASHES: dict[str, str] = {}  # raw -> normalised; policy hashes repeat on every event


def _policy_hash(value: Any) -> str | None:
    """``sha256:<64 lowercase hex>`` from a bare or ``sha256:``-prefixed hash; None for anything else
    (hushd 1.0.0's daemon-default ``0x<hex>`` included)."""
    if type(value) is not str:
        return None
    hit = _POLICY_HASHES.get(value)
    if hit is not None:
        return hit
    if len(value) in (64, 71):
        m = _HEX64_RE.match(value)
        if m is not None:
            if len(_POLICY_HASHES) > 1024:
                _POLICY_HASHES.clear()
            hit = _POLICY_HASHES[value] = "sha256:" + m.group(1).lower()
            return hit
    return None


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if ":" in host or (host[:1].isdigit() and host[-1:].isdigit()):
        try:
            return ipaddress.ip_address(host)
        except ValueError:
            return None
    return None


def _is_port(text: str) -> bool:
    """1-5 ASCII digits up to 65535 (``isdigit`` alone also accepts "²", which int() refuses, and
    other scripts' digits, which are no port in a host:port target)."""
    return text.isascii() and text.isdigit() and int(text) <= 65535


def parse_egress_target(target: str) -> tuple[str, int | None]:
    """Split an egress target into (host, port): ``host``, ``host:port``, ``[v6]:port``, ``[v6]``, bare
    IPv6 and IPv4. Brackets are stripped; a port that is not 0..65535 digits is not a port."""
    t = target.strip()
    if t.startswith("["):
        end = t.find("]")
        if end > 0:
            host = t[1:end]
            rest = t[end + 1:]
            if rest.startswith(":") and _is_port(rest[1:]):
                return host, int(rest[1:])
            return host, None
        return t, None
    colons = t.count(":")
    if colons == 1:
        host, _, port = t.partition(":")
        if _is_port(port) and host:
            return host, int(port)
        return t, None
    return t, None  # bare host, IPv4, or bare IPv6 (2+ colons: no port can be told apart)


# --------------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------------

_FILE_ACTIONS = frozenset(("file_access", "file_write", "patch"))
_AI_GUARDS = frozenset(("prompt_injection", "jailbreak_detection", "jailbreak"))

_CATEGORY_FOR_RESOURCE = {
    "file": "file",
    "network": "network",
    "process": "process",
    "tool": "tool",
    "configuration": "configuration",
    "session": "session",
    "identity": "authorization",
    "prompt": "ai",
    "output": "ai",
}


def _resource(action: str, target: Any, metadata: dict) -> tuple[dict, dict | None]:
    """(resource, threat indicator-if-blocked) for a request action, per the table in event-model.md."""
    tgt = target if type(target) is str and target else None
    if action == "egress":
        host: str | None = None
        port: int | None = None
        if tgt is not None:
            host, port = parse_egress_target(tgt)
        if not host:
            mh = metadata.get("host")
            host = mh if type(mh) is str and mh else None
        mp = metadata.get("port")
        if type(mp) is int and 0 <= mp <= 65535:
            port = mp
        if host is None:
            return {"type": "network", "name": tgt or "egress"}, None
        res: dict[str, Any] = {"type": "network", "name": host, "host": host}
        ip = _ip(host)
        if ip is not None:
            res["ip"] = str(ip)
            indicator = {"type": "ipv4-addr" if ip.version == 4 else "ipv6-addr", "value": str(ip)}
        else:
            indicator = {"type": "domain-name", "value": host}
        if port is not None:
            res["port"] = port
        return res, indicator
    if action in _FILE_ACTIONS:
        if tgt is None:
            return {"type": "file", "name": action}, None
        return {"type": "file", "name": tgt, "path": tgt}, {"type": "file", "value": tgt}
    if action == "shell":
        return {"type": "process", "name": tgt or action}, None
    if action == "mcp_tool":
        return {"type": "tool", "name": tgt or action}, None
    res = {"type": "configuration", "name": action}
    if tgt is not None:
        res["path"] = tgt
    return res, None


def _blocked_event_type(guard: str | None, action: str) -> str:
    """hushd's derivation for a blocked decision (kept: it is sound)."""
    if guard == "secret_leak":
        return "secret_detected"
    if action == "egress":
        return "egress_blocked"
    if guard == "forbidden_path":
        return "forbidden_path"
    if action == "patch" or guard == "patch_integrity":
        return "patch_rejected"
    return "guard_block"


def _str(v: Any) -> str | None:
    return v if type(v) is str and v else None


def _user_id(metadata: dict) -> str | None:
    """``metadata.principal``: hushd's IdentityPrincipal (``id`` = OIDC ``sub``). Defensive: any of id,
    user_id, sub, subject, as a non-empty string; a bare string principal is taken as the id."""
    p = metadata.get("principal")
    if p is None:
        return None
    if type(p) is str:
        return p or None
    if type(p) is dict:
        for k in ("id", "user_id", "sub", "subject"):
            v = p.get(k)
            if type(v) is str and v:
                return v
            if type(v) is int and not isinstance(v, bool):
                return str(v)
    return None


def _session(ctx: MappingContext, sid: str | None, user_id: str | None, run_id: str | None = None,
             fallback: dict | None = None) -> dict | None:
    s: dict[str, str] = {}
    if sid:
        s["id"] = sid
    if user_id:
        s["user_id"] = user_id
    if run_id:
        s["run_id"] = run_id
    tenant = ctx.tenant_id or (fallback and _str(fallback.get("tenant_id")))
    env = ctx.environment or (fallback and _str(fallback.get("environment")))
    if tenant:
        s["tenant_id"] = tenant
    if env:
        s["environment"] = env
    return s or None


def _observer(product: str, ctx: MappingContext, version: str | None = None,
              instance_id: str | None = None) -> dict:
    o = {"product": product}
    if version:
        o["version"] = version
    if ctx.host_name:
        o["host_name"] = ctx.host_name
    if instance_id:
        o["instance_id"] = instance_id
    return o


def _require(record: dict, name: str) -> Any:
    v = record.get(name)
    if v is None:
        raise MappingError(f"missing field {name!r}")
    return v


def _require_str(record: dict, name: str, where: str = "") -> str:
    v = record.get(name)
    if v is None:
        raise MappingError(f"missing field {where + name!r}")
    if type(v) is not str or not v:
        raise MappingError(f"{where}{name}: expected a non-empty string, got {v!r}")
    return v


def _finish(ev: dict, allowed: bool | None, indicator: dict | None) -> dict:
    if allowed is False and indicator is not None:
        ev["threat"] = {"indicator": indicator}
    return ev


# --------------------------------------------------------------------------------------------------
# hushd AuditEvent
# --------------------------------------------------------------------------------------------------

_DECISIONS = {"allowed": True, "allow": True, "blocked": False, "denied": False, "deny": False}

# Admin/daemon records: (event_type, category, resource type, session id is the daemon instance id).
_HUSHD_ADMIN: dict[str, tuple[str, str, str, bool]] = {
    "policy_reload": ("policy_change", "configuration", "configuration", True),
    "policy_reloaded": ("policy_change", "configuration", "configuration", True),
    "policy_updated": ("policy_change", "configuration", "configuration", True),
    "policy_bundle_update": ("policy_change", "configuration", "configuration", True),
    "scoped_policy_created": ("policy_change", "configuration", "configuration", True),
    "scoped_policy_updated": ("policy_change", "configuration", "configuration", True),
    "scoped_policy_deleted": ("policy_change", "configuration", "configuration", True),
    "policy_assignment_created": ("policy_change", "configuration", "configuration", True),
    "policy_assignment_deleted": ("policy_change", "configuration", "configuration", True),
    "rbac_role_created": ("admin_change", "authorization", "identity", True),
    "rbac_role_updated": ("admin_change", "authorization", "identity", True),
    "rbac_role_deleted": ("admin_change", "authorization", "identity", True),
    "rbac_role_assigned": ("admin_change", "authorization", "identity", True),
    "rbac_role_unassigned": ("admin_change", "authorization", "identity", True),
    "user_session_created": ("user_session_start", "authentication", "identity", False),
    "user_session_terminated": ("user_session_end", "authentication", "identity", False),
    "saml_session_created": ("user_session_start", "authentication", "identity", False),
    "webhook_okta": ("idp_webhook", "authentication", "identity", True),
    "webhook_auth0": ("idp_webhook", "authentication", "identity", True),
    "session_posture_transition": ("posture_transition", "authorization", "session", False),
}


# How _map_hushd_audit builds the resource and the session/instance ids, per classification.
_REQUEST, _SESSION, _ADMIN, _ADMIN_DAEMON = 0, 1, 2, 3


def _allowed(dec: Any) -> bool:
    """The ``decision`` field as a bool; raises ``MappingError`` naming it when missing or unknown."""
    allowed = _DECISIONS.get(dec) if type(dec) is str else None
    if allowed is None:
        if dec is None:
            raise MappingError("missing field 'decision'")
        raise MappingError(f"decision: expected 'allowed' or 'blocked', got {dec!r}")
    return allowed


def _classify_hushd(src_type: str, action: str, dec: Any, sev_raw: Any, guard: Any
                    ) -> tuple[bool, str, str | None, str, str, int, str]:
    """(allowed, severity, guard, event_type, category, mode, resource type) of a hushd AuditEvent;
    for a request record the category is "" unless an AI guard decided, and the resource type is
    "": both follow the resource that ``_resource`` builds from the record.

    Depends only on these five record values, so ``_map_hushd_audit`` caches it per combination (a
    stream has a few dozen). Raises ``MappingError`` on a bad decision or severity; callers check the
    decision, then the metadata, then the severity, so the first bad field is the one named.
    """
    allowed = _allowed(dec)
    if sev_raw is None:
        severity = "info" if allowed else "high"
    else:
        severity = _SEVERITY_EXACT.get(sev_raw) if type(sev_raw) is str else None
        if severity is None:
            severity = normalize_severity(sev_raw)
    if type(guard) is not str or not guard:
        guard = None
    if src_type == "session_start" or src_type == "session_end":
        return allowed, severity, None if allowed else guard, src_type, "session", _SESSION, "session"
    admin = _HUSHD_ADMIN.get(src_type)
    if admin is not None:
        event_type, category, rtype, daemon_sid = admin
        return (allowed, severity, None if allowed else guard, event_type, category,
                _ADMIN_DAEMON if daemon_sid else _ADMIN, rtype)
    # check / violation (and any future request record): derive from the decision.
    if not allowed:
        event_type = _blocked_event_type(guard, action)
    elif severity == "medium":
        event_type = "guard_warn"
    else:
        event_type = "policy_allow"
        guard = None  # C5: the first applicable guard's allow is not a decision
    # The category follows the resource _resource() builds, unless an AI guard decided ("" = that).
    return allowed, severity, guard, event_type, "ai" if guard in _AI_GUARDS else "", _REQUEST, ""


_HUSHD_CLASSES: dict[tuple[Any, ...], tuple[bool, str, str | None, str, str, int, str]] = {}


def _map_hushd_audit(r: dict, ctx: MappingContext, kind: str = "hushd_audit") -> dict:
    return _map_hushd(r, ctx, kind)[0]


def _map_hushd(r: dict, ctx: MappingContext, kind: str = "hushd_audit") -> tuple[dict, int | None]:
    """(event, its timestamp's epoch ms or None when not known yet) of a hushd AuditEvent.

    The ingest hot path: helpers are inlined on purpose, and everything that depends only on the
    record's type, action, decision, severity and guard comes from one cached classification.
    """
    rid = r.get("id")
    if type(rid) is not str or not rid:
        _require_str(r, "id")
    # normalize_timestamp's hot path, with the event's epoch ms (the spool's ts_ms) kept; anything else
    # takes normalize_timestamp, and the ms are left to timestamp_to_ms after the ingest transform.
    ts = r.get("timestamp")
    ms = _known_canonical_ms(ts) if type(ts) is str else None
    if ms is None:
        ts = normalize_timestamp(ts)
    src_type = r.get("event_type")
    if type(src_type) is not str or not src_type:
        _require_str(r, "event_type")
    action = r.get("action_type")
    if type(action) is not str or not action:
        _require_str(r, "action_type")
    dec = r.get("decision")
    sev_raw = r.get("severity")
    guard = r.get("guard")
    key = (src_type, action, dec, sev_raw, guard)
    try:
        cls = _HUSHD_CLASSES.get(key)
    except TypeError:  # an unhashable decision/severity/guard (a list, an object): classify uncached
        cls = key = None
    if cls is None:  # the checks in the order the fields are named: decision, metadata, severity
        _allowed(dec)  # raises on a bad decision
    metadata = r.get("metadata")
    if metadata is None:
        metadata = {}
    elif type(metadata) is not dict:
        raise MappingError(f"metadata: expected an object, got {type(metadata).__name__}")
    if cls is None:
        cls = _classify_hushd(src_type, action, dec, sev_raw, guard)
        if key is not None:
            put_bounded(_HUSHD_CLASSES, key, cls, 1024)
    allowed, severity, guard, event_type, category, mode, rtype = cls
    target = r.get("target")
    sid = r.get("session_id")
    if type(sid) is not str or not sid:
        sid = None
    instance_id = None
    indicator = None
    if mode == _REQUEST:
        if action in _FILE_ACTIONS and type(target) is str and target:
            # _resource's file branch, inlined: most hushd records are file checks (a call less), and
            # the indicator is only built for the blocked ones, the only ones that carry it
            resource = {"type": "file", "name": target, "path": target}
            if allowed is False:
                indicator = {"type": "file", "value": target}
            if not category:
                category = "file"
        else:
            resource, indicator = _resource(action, target, metadata)
            if not category:
                category = _CATEGORY_FOR_RESOURCE[resource["type"]]
    elif mode == _SESSION:
        resource = {"type": "session", "name": "hushd"}
        instance_id = sid  # the daemon's own session: it is both
    else:
        resource = {"type": rtype, "name": target if type(target) is str and target else src_type}
        if mode == _ADMIN_DAEMON:
            instance_id, sid = sid, None

    decision: dict[str, Any] = {"allowed": allowed, "severity": severity}
    if guard is not None:
        decision["guard"] = guard
    msg = r.get("message")
    if type(msg) is str and msg:
        decision["reason"] = msg
    ph = metadata.get("policy_hash")
    if type(ph) is str:  # anything else is dropped (_policy_hash), and may not even be hashable
        ph = _POLICY_HASHES.get(ph) or _policy_hash(ph)
        if ph is not None:
            decision["policy_hash"] = ph

    if len(rid) == 36 and _LOWER_UUID_MATCH(rid):
        event_id = rid
    else:
        event_id = rid.lower() if len(rid) == 36 and _UUID_MATCH(rid) else derive_event_id(kind, rid)
    ev: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id,
        "event_type": event_type,
        "event_category": category,
        "timestamp": ts,
        "outcome": "success" if allowed else "failure",
        "action": action,
        "observer": ctx._hushd_observer.copy(),
        "decision": decision,
        "resource": resource,
        "metadata": metadata,
        "labels": ctx.labels.copy(),
        "source": {"kind": kind, "id": rid, "type": src_type},
    }
    if instance_id is not None:
        ev["observer"]["instance_id"] = instance_id
    agent_id = r.get("agent_id")
    if type(agent_id) is str and agent_id:
        ev["agent"] = {"id": agent_id}
    user_id = _user_id(metadata) if "principal" in metadata else None
    if sid is None and user_id is None:
        if ctx._session_base:
            ev["session"] = ctx._session_base.copy()
    else:
        ev["session"] = _session(ctx, sid, user_id)
    if allowed is False and indicator is not None:
        ev["threat"] = {"indicator": indicator}
    return ev, ms


# --------------------------------------------------------------------------------------------------
# hushd SecurityEvent 1.0.0
# --------------------------------------------------------------------------------------------------

_V1_EVENT_TYPES = frozenset((
    "policy_violation", "policy_allow", "guard_block", "guard_warn", "secret_detected", "egress_blocked",
    "forbidden_path", "patch_rejected", "session_start", "session_end",
))
_V1_CATEGORIES = frozenset((
    "authentication", "authorization", "file", "network", "process", "tool", "configuration", "session",
))


def _looks_like_daemon_id(sid: str, metadata: dict) -> bool:
    """1.0.0 put hushd's daemon instance id (a UUIDv4) into session.id for sessionless checks. A real
    control-plane session leaves ``metadata.user_session_id``; without it, a UUIDv4 is the daemon's."""
    if "user_session_id" in metadata or len(sid) != 36 or not _UUID_RE.match(sid):
        return False
    return sid[14] == "4"


def _map_security_event_v1(r: dict, ctx: MappingContext) -> dict:
    kind = "hushd_security_event"
    sv = r.get("schema_version")
    if type(sv) is not str or not sv.startswith("1."):
        raise MappingError(f"schema_version: expected a 1.x SecurityEvent, got {sv!r}")
    rid = _require_str(r, "event_id")
    ts = normalize_timestamp(r.get("timestamp"))
    src_type = _require_str(r, "event_type")
    if src_type not in _V1_EVENT_TYPES:
        raise MappingError(f"event_type: unknown SecurityEvent 1.0.0 type {src_type!r}")
    category = _require_str(r, "event_category")
    if category not in _V1_CATEGORIES:
        raise MappingError(f"event_category: unknown SecurityEvent 1.0.0 category {category!r}")
    action = _require_str(r, "action")
    dec = r.get("decision")
    if type(dec) is not dict:
        raise MappingError("missing field 'decision'" if dec is None else "decision: expected an object")
    allowed = dec.get("allowed")
    if type(allowed) is not bool:
        raise MappingError(f"decision.allowed: expected a boolean, got {allowed!r}")
    sev_raw = dec.get("severity")
    severity = ("info" if allowed else "high") if sev_raw is None else normalize_severity(
        sev_raw, field_name="decision.severity")
    metadata = r.get("metadata")
    if metadata is None:
        metadata = {}
    elif type(metadata) is not dict:
        raise MappingError(f"metadata: expected an object, got {type(metadata).__name__}")
    res_in = r.get("resource")
    if type(res_in) is not dict:
        raise MappingError("missing field 'resource'" if res_in is None else "resource: expected an object")
    rname = _str(res_in.get("name"))

    is_session = src_type in ("session_start", "session_end")
    indicator = None
    if is_session:
        resource: dict = {"type": "session", "name": "hushd"}
    elif action == "egress":
        host = _str(res_in.get("host")) or rname
        # 1.0.0 defaulted the port to 443: only metadata.port is trusted.
        resource, indicator = _resource("egress", host, metadata)
    elif action in _FILE_ACTIONS or action in ("shell", "mcp_tool"):
        resource, indicator = _resource(action, _str(res_in.get("path")) or rname, metadata)
    else:
        rtype = res_in.get("type")
        if type(rtype) is not str or rtype not in _CATEGORY_FOR_RESOURCE:  # a list is not even hashable
            rtype = "configuration"
        resource = {"type": rtype, "name": rname or action}
        if _str(res_in.get("path")):
            resource["path"] = res_in["path"]

    guard = _str(dec.get("guard"))
    if allowed and src_type != "guard_warn":
        guard = None  # C5
    if guard == "engine" and allowed:
        guard = None
    if guard in _AI_GUARDS:
        category = "ai"

    decision: dict[str, Any] = {"allowed": allowed, "severity": severity}
    if guard is not None:
        decision["guard"] = guard
    if _str(dec.get("reason")):
        decision["reason"] = dec["reason"]
    ph = _policy_hash(metadata.get("policy_hash")) or _policy_hash(dec.get("policy_hash"))
    if ph is not None:
        decision["policy_hash"] = ph
    if _str(dec.get("ruleset")):
        decision["ruleset"] = dec["ruleset"]

    agent_in = r.get("agent") if type(r.get("agent")) is dict else {}
    sess_in = r.get("session") if type(r.get("session")) is dict else {}
    sid = _str(sess_in.get("id"))
    instance_id = None
    if is_session:
        instance_id = sid
    elif sid is not None and _looks_like_daemon_id(sid, metadata):
        instance_id, sid = sid, None

    labels: dict[str, str] = {}
    lab_in = r.get("labels")
    if type(lab_in) is dict:
        labels = {k: v for k, v in lab_in.items() if type(v) is str}
    labels.update(ctx.labels)

    ev: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": derive_event_id(kind, rid),
        "event_type": src_type,
        "event_category": category,
        "timestamp": ts,
        "outcome": "success" if allowed else "failure",
        "action": action,
        "observer": _observer("hushd", ctx, _str(agent_in.get("version")), instance_id),
        "decision": decision,
        "resource": resource,
        "metadata": metadata,
        "labels": labels,
        "source": {"kind": kind, "id": rid, "type": src_type},
    }
    agent_id = _str(agent_in.get("id"))
    if agent_id is not None and agent_id != "hushd":  # "hushd" was 1.0.0's fallback, not an agent
        ev["agent"] = {"id": agent_id}
    user_id = _str(sess_in.get("user_id")) or _user_id(metadata)
    session = _session(ctx, sid, user_id, None, sess_in)
    if session is not None:
        ev["session"] = session
    return _finish(ev, allowed, indicator)


# --------------------------------------------------------------------------------------------------
# hushd certification webhook (violation.detected)
# --------------------------------------------------------------------------------------------------


def _map_certification(r: dict, ctx: MappingContext, raw: bytes | None) -> dict:
    kind = "hushd_certification_webhook"
    ev_name = r.get("event")
    if ev_name != "violation.detected":
        raise MappingError(f"event: expected 'violation.detected', got {ev_name!r}")
    ts = normalize_timestamp(r.get("timestamp"))
    data = r.get("data")
    if type(data) is not dict:
        raise MappingError("missing field 'data'" if data is None else "data: expected an object")
    action = _require_str(data, "actionType", "data.")
    guard = _str(data.get("guard"))
    sev_raw = data.get("severity")
    severity = "high" if sev_raw is None else normalize_severity(sev_raw, field_name="data.severity")
    body = raw.strip() if raw is not None else orjson.dumps(r, option=orjson.OPT_SORT_KEYS)
    import hashlib  # here: it loads OpenSSL (~3.3 MiB resident), which the lean helper otherwise never needs

    digest = hashlib.sha256(body).hexdigest()
    resource, indicator = _resource(action, data.get("target"), {})
    category = _CATEGORY_FOR_RESOURCE[resource["type"]]
    if guard in _AI_GUARDS:
        category = "ai"
    decision: dict[str, Any] = {"allowed": False, "severity": severity}
    if guard is not None:
        decision["guard"] = guard
    ph = _policy_hash(data.get("policyHash"))
    if ph is not None:
        decision["policy_hash"] = ph
    ev: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": derive_event_id(kind, digest),
        "event_type": _blocked_event_type(guard, action),
        "event_category": category,
        "timestamp": ts,
        "outcome": "failure",
        "action": action,
        "observer": _observer("hushd", ctx),
        "decision": decision,
        "resource": resource,
        "metadata": {},
        "labels": dict(ctx.labels),
        "source": {"kind": kind, "type": ev_name},
    }
    agent_id = _str(data.get("agentId"))
    if agent_id is not None:
        ev["agent"] = {"id": agent_id}
    session = _session(ctx, _str(data.get("sessionId")), None)
    if session is not None:
        ev["session"] = session
    return _finish(ev, False, indicator)


# --------------------------------------------------------------------------------------------------
# clawdstrike-adapter-core AuditEvent
# --------------------------------------------------------------------------------------------------


def _adapter_decision(d: Any) -> tuple[bool | None, bool, dict]:
    """(allowed, warn, decision object) from adapter-core's ``Decision``: ``{allowed, denied, warn,
    reason?, guard?, severity?, message?}``; a ``status: allow|warn|deny`` variant is accepted too."""
    if d is None:
        return None, False, {}
    if type(d) is not dict:
        raise MappingError(f"decision: expected an object, got {d!r}")
    status = d.get("status")
    if type(status) is str:
        st = status.lower()
        if st in ("deny", "denied", "block", "blocked"):
            return False, False, d
        if st in ("warn", "warning"):
            return True, True, d
        if st in ("allow", "allowed"):
            return True, False, d
        raise MappingError(f"decision.status: expected allow, warn or deny, got {status!r}")
    if d.get("denied") is True or d.get("allowed") is False:
        return False, False, d
    if d.get("warn") is True:
        return True, True, d
    if d.get("allowed") is True:
        return True, False, d
    raise MappingError("decision: has none of allowed, denied, warn, status")


def _map_adapter(r: dict, ctx: MappingContext) -> dict:
    kind = "adapter_audit"
    rid = _require_str(r, "id")
    src_type = _require_str(r, "type")
    ts = normalize_timestamp(r.get("timestamp"))
    allowed, warn, d = _adapter_decision(r.get("decision"))
    details = r.get("details")
    metadata = details if type(details) is dict else {}
    guard = _str(d.get("guard"))
    sev_raw = d.get("severity")
    if sev_raw is not None:
        severity = normalize_severity(sev_raw, field_name="decision.severity")
    elif allowed is False:
        severity = "high"
    elif warn:
        severity = "medium"
    else:
        severity = "info"
    tool = _str(r.get("toolName"))
    outcome = "unknown" if allowed is None else ("success" if allowed else "failure")

    if src_type.startswith("tool_call_"):
        action, category = "tool_call", "tool"
        resource: dict = {"type": "tool", "name": tool or "tool"}
        if allowed is False:
            event_type = _blocked_event_type(guard, action)
        elif src_type == "tool_call_warning" or warn:
            event_type = "guard_warn"
        elif src_type == "tool_call_allowed":
            event_type = "policy_allow"
        else:  # start / end / error: activity, not a decision
            event_type = "tool_call"
            if allowed is None:
                outcome = {"tool_call_end": "success", "tool_call_error": "failure"}.get(src_type, "unknown")
    elif src_type in ("output_sanitized", "prompt_security_output_sanitized"):
        action = "output_sanitize"
        category = "ai" if src_type.startswith("prompt_security_") else "tool"
        resource = {"type": "output", "name": tool or "output"}
        if allowed is False:
            event_type = "secret_detected"
        elif warn:
            event_type = "guard_warn"
        else:
            event_type = "output_sanitized"
    elif src_type.startswith("prompt_security_"):
        action, category = "prompt_security", "ai"
        resource = {"type": "prompt", "name": src_type[len("prompt_security_"):] or "prompt"}
        if allowed is False:
            event_type = "guard_block"
        elif warn:
            event_type = "guard_warn"
        elif allowed is None:
            event_type = "detection"
        else:
            event_type = "policy_allow"
    elif src_type in ("session_start", "session_end"):
        action, category, event_type = "session", "session", src_type
        resource = {"type": "session", "name": "adapter"}
        if allowed is None:
            outcome = "success"
    else:
        raise MappingError(f"type: unknown adapter audit event type {src_type!r}")
    if guard in _AI_GUARDS:
        category = "ai"
    if allowed is True and not warn:
        guard = None

    decision: dict[str, Any] = {"severity": severity}
    if allowed is not None:
        decision["allowed"] = allowed
    if guard is not None:
        decision["guard"] = guard
    reason = _str(d.get("message")) or _str(d.get("reason"))
    if reason is not None:
        decision["reason"] = reason
    ev: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": derive_event_id(kind, rid),
        "event_type": event_type,
        "event_category": category,
        "timestamp": ts,
        "outcome": outcome if allowed is None else ("success" if allowed else "failure"),
        "action": action,
        "observer": _observer("clawdstrike-adapter", ctx),
        "decision": decision,
        "resource": resource,
        "metadata": metadata,
        "labels": dict(ctx.labels),
        "source": {"kind": kind, "id": rid, "type": src_type},
    }
    session = _session(ctx, _str(r.get("sessionId")), _user_id(metadata), _str(r.get("contextId")))
    if session is not None:
        ev["session"] = session
    return ev


# --------------------------------------------------------------------------------------------------
# OpenClaw plugin audit store
# --------------------------------------------------------------------------------------------------

# OpenClaw `type` (PolicyEvent types, or hushd action names) -> hushd action vocabulary.
_OPENCLAW_ACTIONS = {
    "file_read": "file_access",
    "file_access": "file_access",
    "file_write": "file_write",
    "network_egress": "egress",
    "network": "egress",
    "egress": "egress",
    "command_exec": "shell",
    "shell": "shell",
    "tool_call": "mcp_tool",
    "mcp_tool": "mcp_tool",
    "patch_apply": "patch",
    "patch": "patch",
}


def _map_openclaw(r: dict, ctx: MappingContext) -> dict:
    kind = "openclaw_audit"
    rid = _require_str(r, "id")
    src_type = _require_str(r, "type")
    ts = normalize_timestamp(r.get("timestamp"))
    dec = r.get("decision")
    if dec == "allowed":
        allowed = True
    elif dec == "denied":
        allowed = False
    elif dec is None:
        raise MappingError("missing field 'decision'")
    else:
        raise MappingError(f"decision: expected 'allowed' or 'denied', got {dec!r}")
    action = _OPENCLAW_ACTIONS.get(src_type, src_type)
    resource, indicator = _resource(action, r.get("resource"), {})
    guard = _str(r.get("guard")) if not allowed else None
    category = _CATEGORY_FOR_RESOURCE[resource["type"]]
    if guard in _AI_GUARDS:
        category = "ai"
    decision: dict[str, Any] = {"allowed": allowed, "severity": "info" if allowed else "high"}
    if guard is not None:
        decision["guard"] = guard
    if _str(r.get("reason")):
        decision["reason"] = r["reason"]
    ev: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_id": derive_event_id(kind, rid),
        "event_type": "policy_allow" if allowed else _blocked_event_type(guard, action),
        "event_category": category,
        "timestamp": ts,
        "outcome": "success" if allowed else "failure",
        "action": action,
        "observer": _observer("openclaw", ctx),
        "decision": decision,
        "resource": resource,
        "metadata": {},
        "labels": dict(ctx.labels),
        "source": {"kind": kind, "id": rid, "type": src_type},
    }
    session = _session(ctx, None, None, _str(r.get("runId")))
    if session is not None:
        ev["session"] = session
    return _finish(ev, allowed, indicator)


# --------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------


def detect_kind(record: dict) -> str:
    """Which Clawdstrike record shape ``record`` is (a ``SourceKind`` value); ``MappingError`` if none."""
    if "action_type" in record and "event_type" in record:
        return "hushd_audit"
    if "schema_version" in record and "event_id" in record:
        return "hushd_security_event"
    if "event" in record and type(record.get("data")) is dict:
        return "hushd_certification_webhook"
    if "contextId" in record or ("sessionId" in record and "type" in record):
        return "adapter_audit"
    if "type" in record and record.get("decision") in ("allowed", "denied"):
        return "openclaw_audit"
    keys = sorted(k if k.isprintable() else repr(k)[1:-1] for k in map(str, record))  # one line
    shown = ", ".join(keys[:12]) + (", ..." if len(keys) > 12 else "")
    raise MappingError(f"unknown record shape (keys: {shown})")


_MAPPERS = {
    "hushd_audit": lambda r, raw, ctx: _map_hushd_audit(r, ctx),
    "hushd_security_event": lambda r, raw, ctx: _map_security_event_v1(r, ctx),
    "hushd_certification_webhook": lambda r, raw, ctx: _map_certification(r, ctx, raw),
    "adapter_audit": lambda r, raw, ctx: _map_adapter(r, ctx),
    "openclaw_audit": lambda r, raw, ctx: _map_openclaw(r, ctx),
}
assert set(_MAPPERS) == {k.value for k in SourceKind}


def map_record(record: dict, *, raw: bytes | None = None, kind: str | None = None,
               context: MappingContext) -> dict:
    """Map one Clawdstrike record to a canonical SecurityEvent 2.0.0 dict.

    ``kind`` is detected when not given. ``raw`` is the record's exact bytes when known (it only matters
    for the id of records without one: certification webhooks). Raises ``MappingError``.
    """
    ev = _map_record(record, raw, kind, context)
    post = context.postprocess
    return ev if post is None else post(ev)


def _map_record(record: dict, raw: bytes | None, kind: str | None, context: MappingContext) -> dict:
    if type(record) is not dict:
        raise MappingError("not a JSON object")
    if kind is None:
        kind = detect_kind(record)
    if kind == "hushd_audit":  # the hot path: skip the dispatch table
        return _map_hushd_audit(record, context)
    mapper = _MAPPERS.get(kind)
    if mapper is None:
        raise MappingError(f"unknown kind {kind!r}")
    ev = mapper(record, raw, context)
    # The rarer shapes carry more free-form input (1.0.0 events, adapter records): check the result
    # against the schema so a surprising record is quarantined with the field named, never spooled.
    # The hushd AuditEvent path above builds only schema-valid events (tests check every shape).
    try:
        validate_event(ev)
    except EventValidationError as exc:
        raise MappingError(f"mapped event is invalid: {exc}") from None
    return ev


def _undecodable(line: bytes, exc: orjson.JSONDecodeError) -> MappingError:
    """The quarantine reason of a line orjson cannot decode: its first invalid UTF-8 byte, if any."""
    try:
        line.decode("utf-8") if isinstance(line, bytes | bytearray) else None
    except UnicodeDecodeError as ue:
        return MappingError(f"invalid UTF-8 at byte {ue.start}")
    return MappingError(f"invalid JSON: {exc}")


def parse_line(line: bytes, *, context: MappingContext, kind: str | None = None) -> dict:
    """Decode one JSON line (strict UTF-8, one JSON object) and map it. Raises ``MappingError`` with
    ``invalid UTF-8 at byte N``, ``invalid JSON: ...``, ``not a JSON object``, ``unknown record shape
    (keys: ...)`` or a field reason."""
    return _parse(line, context, kind)[0]


def _parse(line: bytes, context: MappingContext, kind: str | None) -> tuple[dict, dict, int | None]:
    """(event after the ingest transform, event before it, epoch ms of the latter's timestamp or None
    when the mapper did not work them out): ``parse_line``'s work, and what ``encode_line`` reuses."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise _undecodable(line, exc) from None
    if type(record) is not dict:
        raise MappingError("not a JSON object")
    if (kind is None and "action_type" in record and "event_type" in record) or kind == "hushd_audit":
        ev, ms = _map_hushd(record, context)  # what detect_kind / _map_record would pick, directly
    else:
        ev, ms = _map_record(record, line, kind, context), None
    post = context.postprocess
    return (ev if post is None else post(ev)), ev, ms


_fromhex = bytes.fromhex


def encode_line(line: bytes, context: MappingContext, kind: str | None) -> tuple[bytes, int, bytes]:
    """``parse_line``, then what the spool stores of the event: (16-byte id, epoch ms, ``encode_event``
    body), computed from the transformed event in that order. Raises what they raise.

    The ingest hot path (``agent.inputs.base.map_lines``): one call per line instead of four, and the
    ms of a hushd record's timestamp come from the mapper's timestamp check (``_map_hushd``) when the
    transform kept that very string (a transform that copies the event keeps its values; identity,
    not equality, so a changed timestamp is always converted again).
    """
    out, ev, ms = _parse(line, context, kind)
    raw = _fromhex(out["event_id"].replace("-", ""))  # first, as before: it may raise first
    ts = out["timestamp"]
    if ms is None or ts is not ev["timestamp"]:
        ms = timestamp_to_ms(ts)
    return raw, ms, encode_record_event(out)


def encode_record_event(ev: dict) -> bytes:
    """``encode_event`` of a mapped event, or ``MappingError``: orjson decodes objects nested up to
    1,024 levels but encodes only 254, so a record's deep metadata maps and then cannot be encoded."""
    try:
        return encode_event(ev)
    except TypeError as exc:  # orjson.JSONEncodeError
        raise MappingError(f"metadata: the event cannot be encoded: {exc}") from None
