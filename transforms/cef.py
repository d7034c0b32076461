"""Canonical SecurityEvent -> one ArcSight CEF line (CEF:0, no syslog header, no newline).

Standard: OpenText *ArcSight Common Event Format (CEF) Implementation Standard*, document version 27
(key dictionary in ../shared/schemas/cef/extension-keys.csv, header rules in header-fields.csv, guidance
and pitfalls in ../shared/reference/schemas.md §4). The mapping table and the escaping/truncation rules
are in docs/formats/cef.md; tests/transforms/test_cef.py checks them with a strict parser.

Why it is shaped like this:

- Only dictionary keys, only ``producer`` keys, only CEF 0.1 keys: ArcSight files vendor-defined keys
  under "Additional Data" (unusable in rules and reports), ``consumer`` keys (``eventId``, ``agt``...) are
  ArcSight's own, and 1.2 keys need ``CEF:1``, which liblognorm 2.0.6 (rsyslog) rejects. Clawdstrike-only
  values go to ``cs1..cs6`` / ``flexString1..2`` with fixed labels.
- Escaping per the standard's "Character Encoding" rules: header ``\\`` and ``|``; extension values
  ``\\``, ``=``, and line breaks as ``\\n`` / ``\\r``. A pipe is never escaped in a value, an equals
  sign never in the header (strict parsers reject both). Other control characters have no CEF escape and
  would corrupt line-oriented receivers, so they become a space (so do line breaks in the header).
- Values are truncated to the dictionary's ``max_length`` (characters) on the *unescaped* text, so an escape
  sequence is never cut in half; leading/trailing spaces are trimmed because CEF parsers do not keep them.
- The lengths are constants here (checked against the CSV by the tests): the product does not ship
  ../shared, and reading a CSV per process start for a dozen numbers buys nothing.
- Speed: the header prefix is built once per ``CefOptions``; a value is escaped with one C-level
  ``str.translate`` only when it holds a character that needs it (three C scans decide that).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from agent import __version__ as _AGENT_VERSION
from agent.caches import put_bounded
from agent.event import timestamp_to_ms

__all__ = ["CEF_VERSION", "SEVERITY_TO_CEF", "CefOptions", "to_cef"]

CEF_VERSION = 0

# Clawdstrike severity -> CEF header severity (0-10; 0-3 Low, 4-6 Medium, 7-8 High, 9-10 Very-High).
SEVERITY_TO_CEF: dict[str, int] = {"info": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}
# An unknown severity counts as at least medium (docs/event-model.md, compatibility policy).
_UNKNOWN_SEVERITY = "5"
_SEVERITY_TEXT = {k: str(v) for k, v in SEVERITY_TO_CEF.items()}

# Header field limits (header-fields.csv).
HEADER_MAX = {"vendor": 63, "product": 63, "version": 31, "signature_id": 1023, "name": 512}

# Extension limits (extension-keys.csv max_length) for every string key this module writes.
EXT_MAX: dict[str, int] = {
    "externalId": 40, "act": 63, "outcome": 63, "cat": 1023, "msg": 1023, "dvchost": 100,
    "deviceExternalId": 255, "deviceProcessName": 1023, "suid": 1023, "sproc": 1023, "dproc": 1023,
    "dhost": 1023, "request": 1023, "filePath": 1023, "fname": 1023, "flexString1": 1023,
    "flexString2": 1023, "cs1": 4000, "cs2": 4000, "cs3": 4000, "cs4": 4000, "cs5": 4000, "cs6": 4000,
}

# Fixed custom-field labels: same slot, same meaning, in every event (consumers map on them).
CUSTOM_LABELS: dict[str, str] = {
    "cs1": "guard", "cs2": "sessionId", "cs3": "policyHash", "cs4": "mitreTechnique", "cs5": "mitreTactic",
    "flexString1": "action", "flexString2": "tenantId", "c6a3": "Destination IPv6 Address",
}
# cs6 carries resource.name for the resource types no dictionary key fits; the label says which.
CS6_LABEL_FOR_RESOURCE: dict[str, str] = {
    "process": "commandLine", "tool": "toolName", "output": "toolName", "prompt": "detector",
    "configuration": "configurationItem", "identity": "identityTarget",
}
_CS6_LABEL_OTHER = "resourceName"
_CS6_SKIP = frozenset(("file", "network", "session"))  # carried by filePath / dhost..., or meaningless

# ---------------------------------------------------------------------------------------------------
# Escaping
# ---------------------------------------------------------------------------------------------------

# Control characters with no CEF escape (C0 except CR/LF, DEL, C1 incl. NEL, Unicode line/paragraph
# separators): a space, so no receiver ever sees a line break or a raw control byte.
_CONTROLS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]
_EXT_TABLE = {c: " " for c in _CONTROLS}
_EXT_TABLE.update({ord("\\"): "\\\\", ord("="): "\\=", ord("\n"): "\\n", ord("\r"): "\\r"})
_HDR_CLEAN_TABLE = {c: " " for c in _CONTROLS}  # CR/LF included: no line break is allowed in the header
_HDR_TABLE = {ord("\\"): "\\\\", ord("|"): "\\|"}
_SANITIZE_TABLE = {c: " " for c in _CONTROLS if c not in (0x0A, 0x0D)}  # the unescaped form of a value


def _clean(value: str, limit: int) -> str:
    """The unescaped text a value carries: controls -> space, trimmed, cut to ``limit`` characters."""
    if not value.isprintable():
        value = value.translate(_SANITIZE_TABLE)
    value = value.strip(" ")
    if len(value) > limit:
        value = value[:limit].rstrip(" ")
    return value


def _ext_text(value: str, limit: int) -> str:
    """The escaped text of one extension value ("" when nothing is left after cleaning).

    Fast path: a printable value within its limit and without edge spaces needs no cleaning (one C scan
    each), and no escaping unless it holds a backslash or an equals sign (line breaks are not printable).
    """
    if value.isprintable() and len(value) <= limit and value[0] != " " and value[-1] != " ":
        return value.translate(_EXT_TABLE) if "\\" in value or "=" in value else value
    return _clean(value, limit).translate(_EXT_TABLE)


def _esc_hdr(value: str, limit: int) -> str:
    """One header field: controls and line breaks -> space, trimmed, cut to ``limit``, then ``\\`` ``|``
    escaped (cut before escaping, so no escape is split)."""
    if not value.isprintable():
        value = value.translate(_HDR_CLEAN_TABLE)
    value = value.strip(" ")
    if len(value) > limit:
        value = value[:limit].rstrip(" ")
    if "\\" in value or "|" in value:
        return value.translate(_HDR_TABLE)
    return value


# ---------------------------------------------------------------------------------------------------
# Options and header
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CefOptions:
    """Header identity. Keep vendor/product fixed forever: SIEM parsers and categorisation key on them."""

    device_vendor: str = "Backbay Labs"
    device_product: str = "Clawdstrike"
    device_version: str = _AGENT_VERSION or "1"

    def __post_init__(self) -> None:
        for name, limit in (("device_vendor", 63), ("device_product", 63), ("device_version", 31)):
            v = getattr(self, name)
            if not isinstance(v, str) or not _esc_hdr(v, limit):
                raise ValueError(f"CefOptions.{name}: expected a non-empty string, got {v!r}")


_PREFIX_CACHE: dict[CefOptions, str] = {}


def _prefix(options: CefOptions) -> str:
    p = _PREFIX_CACHE.get(options)
    if p is None:
        p = (f"CEF:{CEF_VERSION}|{_esc_hdr(options.device_vendor, HEADER_MAX['vendor'])}"
             f"|{_esc_hdr(options.device_product, HEADER_MAX['product'])}"
             f"|{_esc_hdr(options.device_version, HEADER_MAX['version'])}|")
        put_bounded(_PREFIX_CACHE, options, p, 64)
    return p


_DEFAULT_OPTIONS = CefOptions()

# Device Event Class ID and Name. Guard decisions: guard.<guard>.deny / guard.<guard>.warn.
GUARD_NAMES: dict[str, tuple[str, str]] = {  # guard -> (deny name, warn name)
    "forbidden_path": ("Forbidden path access blocked", "Forbidden path access warning"),
    "path_allowlist": ("Path outside allowlist blocked", "Path outside allowlist warning"),
    "egress_allowlist": ("Network egress blocked", "Network egress warning"),
    "secret_leak": ("Secret leak blocked", "Potential secret leak"),
    "patch_integrity": ("Patch rejected", "Patch integrity warning"),
    "mcp_tool": ("MCP tool call blocked", "MCP tool call requires confirmation"),
    "prompt_injection": ("Prompt injection blocked", "Prompt injection warning"),
    "jailbreak_detection": ("Jailbreak attempt blocked", "Jailbreak attempt warning"),
    "jailbreak": ("Jailbreak attempt blocked", "Jailbreak attempt warning"),
    "posture": ("Action blocked by posture", "Posture warning"),
    "posture_budget": ("Posture budget exhausted", "Posture budget warning"),
    "threat_intel": ("Threat intelligence match blocked", "Threat intelligence match"),
}
_GUARD_DEFAULT_NAMES = ("Action blocked by guard", "Guard warning")
# Events that are not a guard decision: event_type -> (class id, name).
EVENT_CLASSES: dict[str, tuple[str, str]] = {
    "policy_allow": ("policy.allow", "Action allowed by policy"),
    "session_start": ("session.start", "Agent session started"),
    "session_end": ("session.end", "Agent session ended"),
    "policy_change": ("policy.change", "Policy changed"),
    "admin_change": ("admin.change", "Administrative change"),
    "user_session_start": ("user_session.start", "User session started"),
    "user_session_end": ("user_session.end", "User session ended"),
    "posture_transition": ("posture.transition", "Session posture changed"),
    "idp_webhook": ("idp.webhook", "Identity provider webhook received"),
    "tool_call": ("tool.call", "Tool call"),
    "output_sanitized": ("output.sanitized", "Output sanitized"),
    "detection": ("prompt_security.detection", "Prompt security detection"),
}
BLOCKED_WITHOUT_GUARD = ("policy.deny", "Action blocked by policy")
_OTHER_EVENT_NAME = "Clawdstrike event"
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


def _id_part(text: str) -> str:
    """A class-id segment: ``[a-z0-9_-]`` only (stable ids SIEM content can key on); cut to 200 chars."""
    low = text.lower()[:200]
    if not set(low) <= _ID_CHARS:
        low = "".join(c if c in _ID_CHARS else "_" for c in low)
    return low or "_"


_CLASS_CACHE: dict[tuple[str, str, bool | None], str] = {}


def _class_and_name(event_type: str, guard: str | None, allowed: bool | None) -> str:
    """``<escaped class id>|<escaped name>|`` for the header; memoised (few distinct combinations)."""
    key = (event_type, guard or "", allowed)
    hit = _CLASS_CACHE.get(key)
    if hit is not None:
        return hit
    if allowed is False:
        if guard:
            cid, name = f"guard.{_id_part(guard)}.deny", GUARD_NAMES.get(guard, _GUARD_DEFAULT_NAMES)[0]
        else:
            cid, name = BLOCKED_WITHOUT_GUARD
    elif allowed is True and guard:
        cid, name = f"guard.{_id_part(guard)}.warn", GUARD_NAMES.get(guard, _GUARD_DEFAULT_NAMES)[1]
    else:
        cid, name = EVENT_CLASSES.get(event_type) or (f"event.{_id_part(event_type)}", _OTHER_EVENT_NAME)
    hit = f"{_esc_hdr(cid, HEADER_MAX['signature_id'])}|{_esc_hdr(name, HEADER_MAX['name'])}|"
    return put_bounded(_CLASS_CACHE, key, hit, 4096)


# ---------------------------------------------------------------------------------------------------
# Extension helpers
# ---------------------------------------------------------------------------------------------------

_IP_CACHE: dict[str, int] = {}  # text -> 4, 6 or 0 (not an IP address)


def ip_version(text: str) -> int:
    """4 or 6 when ``text`` is an IP address (IPv4 dotted quad without leading zeros), else 0 (cached)."""
    v = _IP_CACHE.get(text)
    if v is None:
        try:  # a zone id ("fe80::1%eth0") is local to the sender and free text: not an address to send
            v = ipaddress.ip_address(text).version if "%" not in text else 0
        except ValueError:
            v = 0
        put_bounded(_IP_CACHE, text, v, 4096)
    return v


def _basename(path: str) -> str:
    cut = max(path.rfind("/"), path.rfind("\\"))
    return path[cut + 1:] if cut >= 0 else path


def _add(parts: list[str], key: str, value: object) -> None:
    """Append ``key=value`` for a non-empty string value, cleaned, truncated and escaped."""
    if type(value) is str and value:
        text = _ext_text(value, EXT_MAX[key])
        if text:
            parts.append(f"{key}={text}")


def _add_custom(parts: list[str], key: str, label: str, value: object) -> None:
    """Append ``<key>Label=<label> <key>=<value>`` (a custom field is meaningless without its label)."""
    if type(value) is str and value:
        text = _ext_text(value, EXT_MAX[key])
        if text:
            parts.append(f"{key}Label={label} {key}={text}")


def _mitre_text(item: object) -> str | None:
    """``"<id> <name>"`` (ids never contain a space, so the first space splits them back)."""
    if not isinstance(item, dict):
        return None
    mid, name = item.get("id"), item.get("name")
    if type(mid) is not str or not mid.strip(" "):
        return None
    mid = mid.strip(" ")
    return f"{mid} {name}" if type(name) is str and name.strip(" ") else mid


def _network(parts: list[str], res: dict) -> None:
    host = res.get("ip") or res.get("host") or res.get("name")
    if type(host) is not str or not host:
        return
    port = res.get("port")
    if "://" in host:  # an egress target that was a URL: request=URL, destination from its authority
        _add(parts, "request", host)
        try:
            split = urlsplit(host)
            url_host, url_port = split.hostname, split.port
        except ValueError:
            url_host, url_port = None, None
        if port is None:
            port = url_port
        host = url_host or ""
    version = ip_version(host) if host else 0
    if version == 4:
        parts.append(f"dst={host}")
    elif version == 6:
        parts.append(f"c6a3Label={CUSTOM_LABELS['c6a3']} c6a3={ipaddress.IPv6Address(host).compressed}")
    else:
        _add(parts, "dhost", host)
    if type(port) is int and 0 <= port <= 65535:
        parts.append(f"dpt={port}")


# ---------------------------------------------------------------------------------------------------
# The transform
# ---------------------------------------------------------------------------------------------------


def to_cef(event: dict, options: CefOptions | None = None) -> str:
    """One CEF line for one canonical SecurityEvent (no syslog header, no newline). Deterministic."""
    decision = event.get("decision") or {}
    guard = decision.get("guard")
    if type(guard) is not str:
        guard = None
    allowed = decision.get("allowed")
    if type(allowed) is not bool:
        allowed = None
    severity = _SEVERITY_TEXT.get(decision.get("severity"), _UNKNOWN_SEVERITY)
    head = (_PREFIX_CACHE.get(options or _DEFAULT_OPTIONS) or _prefix(options or _DEFAULT_OPTIONS))
    head += _class_and_name(str(event.get("event_type", "")), guard, allowed) + severity + "|"

    parts = [f"rt={timestamp_to_ms(event['timestamp'])}"]
    _add(parts, "externalId", event.get("event_id"))
    if allowed is False:
        parts.append("act=blocked")
    elif allowed is True and (guard or event.get("event_type") == "policy_allow"):
        parts.append("act=warned" if guard else "act=allowed")
    outcome = event.get("outcome")
    if outcome == "success" or outcome == "failure":
        parts.append(f"outcome={outcome}")
    category, event_type = event.get("event_category"), event.get("event_type")
    if type(category) is str and type(event_type) is str:
        _add(parts, "cat", f"/Clawdstrike/{category}/{event_type}")
    _add(parts, "msg", decision.get("reason"))

    observer = event.get("observer") or {}
    _add(parts, "dvchost", observer.get("host_name"))
    _add(parts, "deviceExternalId", observer.get("instance_id"))
    _add(parts, "deviceProcessName", observer.get("product"))
    session = event.get("session") or {}
    _add(parts, "suid", session.get("user_id"))
    agent = event.get("agent")
    if agent:
        _add(parts, "sproc", agent.get("id"))

    res = event.get("resource") or {}
    rtype = res.get("type")
    name = res.get("name")
    if rtype == "network":
        _network(parts, res)
    elif rtype == "process" and type(name) is str:
        exe = name.strip().split(None, 1)
        if exe:
            _add(parts, "dproc", exe[0])
    path = res.get("path")
    if path is None and rtype == "file":
        path = name
    if type(path) is str and path:
        _add(parts, "filePath", path)
        _add(parts, "fname", _basename(path.rstrip("/\\")))

    _add_custom(parts, "flexString1", "action", event.get("action"))
    _add_custom(parts, "flexString2", "tenantId", session.get("tenant_id"))
    _add_custom(parts, "cs1", "guard", guard)
    _add_custom(parts, "cs2", "sessionId", session.get("id"))
    _add_custom(parts, "cs3", "policyHash", decision.get("policy_hash"))
    mitre = event.get("mitre")
    if mitre and isinstance(mitre, dict):
        _add_custom(parts, "cs4", "mitreTechnique", _mitre_text(mitre.get("technique")))
        _add_custom(parts, "cs5", "mitreTactic", _mitre_text(mitre.get("tactic")))
    if rtype not in _CS6_SKIP:
        _add_custom(parts, "cs6", CS6_LABEL_FOR_RESOURCE.get(rtype, _CS6_LABEL_OTHER), name)
    return head + " ".join(parts)
