"""Canonical SecurityEvent -> Elastic Common Schema (ECS) 9.4.0 document.

Why this shape: ../shared/reference/schemas.md §2 (mapping guidance and pitfalls, checked against the
official ``ecs_flat.yml`` of ECS v9.4.0); the implemented table is docs/formats/ecs.md. Every field is an
ECS 9.4.0 field except those under ``clawdstrike.*``; unknown values are omitted (never ``null``/``""``).

Deterministic: no clock, no randomness, no dependence on dict order (the pipeline encodes with orjson
OPT_SORT_KEYS). Cheap: the document is built with dict literals; categorisation, observer, rule, MITRE
blocks and shell splits are memoised in small bounded caches keyed by the few strings that decide them.
The pipeline uses ``ecs_document``, which shares those cached blocks between documents (it only
encodes them); ``to_ecs`` returns a private deep copy for every other caller.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import orjson

from agent import __version__ as AGENT_VERSION
from agent.caches import put_bounded

__all__ = ["ECS_VERSION", "ecs_document", "ecs_json", "to_ecs"]

ECS_VERSION = "9.4.0"

# ECS keyword fields carry ignore_above 1024 (ecs_flat.json): longer strings are kept in _source but not
# indexed, so a hostile 1 MB path would be invisible to searches. We cut at the limit instead.
KEYWORD_LIMIT = 1024
MAX_ARGS = 256  # process.args is cut to this many elements; process.args_count keeps the real count
_SHLEX_LIMIT = 65536  # longer command lines are split on whitespace (shlex is ~1 µs/char)
_CACHE_MAX = 4096

_SEVERITY_NUMBER = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
# Elastic detection-rule convention (schemas.md §2.4); info has no risk score.
_RISK_SCORE = {"low": 21.0, "medium": 47.0, "high": 73.0, "critical": 99.0}

_VENDOR = "Backbay Labs"
_OBSERVER_TYPE = "agent-guard"
_AGENT = {"type": "clawd-agent", "name": "clawd-agent", "version": AGENT_VERSION}

_FRAMEWORK = {"attack": "MITRE ATT&CK", "atlas": "MITRE ATLAS"}
_REFERENCE_BASE = {"attack": "https://attack.mitre.org/", "atlas": "https://atlas.mitre.org/"}

# Guard id -> (rule.name, rule.category). Unknown guards keep their id as name and get no category.
_RULES: dict[str, tuple[str, str]] = {
    "forbidden_path": ("Forbidden path", "filesystem"),
    "path_allowlist": ("Path allowlist", "filesystem"),
    "egress_allowlist": ("Egress allowlist", "network"),
    "secret_leak": ("Secret leak", "secrets"),
    "patch_integrity": ("Patch integrity", "filesystem"),
    "mcp_tool": ("MCP tool", "tool"),
    "prompt_injection": ("Prompt injection", "ai"),
    "jailbreak_detection": ("Jailbreak detection", "ai"),
    "jailbreak": ("Jailbreak detection", "ai"),
    "posture": ("Posture", "posture"),
    "posture_budget": ("Posture budget", "posture"),
    "threat_intel": ("Threat intelligence", "threat_intel"),
}

_TAGS = {
    "deny": ("clawdstrike", "guard-deny"),
    "warn": ("clawdstrike", "guard-warn"),
    "allow": ("clawdstrike", "allow"),
    "none": ("clawdstrike",),
}

# --------------------------------------------------------------------------------------------------
# event.category / event.type
# --------------------------------------------------------------------------------------------------

# Resource type -> (ECS category, activity event.type or None). The activity type must be one the
# category expects (schemas.md §2.2); None means "the decision alone is the type".
_RESOURCE_BASE: dict[str, tuple[str, str | None]] = {
    "file": ("file", "access"),
    "network": ("network", "connection"),
    "process": ("process", "start"),
    "tool": ("api", None),
    "configuration": ("configuration", "info"),
    "session": ("session", "info"),
    "identity": ("iam", "info"),
    "prompt": ("intrusion_detection", None),
    "output": ("intrusion_detection", None),
}
_FILE_ACTIVITY = {"file_access": "access", "file_write": "change", "patch": "change"}
# event_type decides the base for non-request events.
_EVENT_TYPE_BASE: dict[str, tuple[str, str | None]] = {
    "session_start": ("session", "start"),
    "session_end": ("session", "end"),
    "user_session_start": ("authentication", "start"),
    "user_session_end": ("authentication", "end"),
    "idp_webhook": ("authentication", "info"),
    "policy_change": ("configuration", "change"),
    "posture_transition": ("session", "info"),
}
_ADMIN_ACTIVITY = {"created": "creation", "deleted": "deletion"}  # updated/assigned/unassigned -> change
_TOOL_CALL_ACTIVITY = {"tool_call_start": "start", "tool_call_end": "end", "tool_call_error": "end"}
_ALLOWED_CATEGORIES = frozenset(("api", "network", "intrusion_detection"))  # categories expecting "allowed"
_SOURCE_TYPE_MATTERS = frozenset(("admin_change", "tool_call"))

def _categorize(rtype: str, action: str, etype: str, stype: str | None, ai: bool,
                verdict: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(event.category, event.type): every type is expected by at least one category (§2.2 table).

    Alerts (deny, warn, detection) always carry ``intrusion_detection``, which expects allowed/denied/info.
    """
    base = _EVENT_TYPE_BASE.get(etype)
    if base is None:
        if etype == "admin_change":
            suffix = (stype or "").rsplit("_", 1)[-1]
            base = ("iam", _ADMIN_ACTIVITY.get(suffix, "change"))
        elif etype == "tool_call":
            base = ("api", _TOOL_CALL_ACTIVITY.get(stype or ""))
        elif rtype == "file":
            base = ("file", _FILE_ACTIVITY.get(action, "access"))
        else:
            base = _RESOURCE_BASE.get(rtype, ("configuration", "info"))
    category, activity = base
    cats = [category]
    types = [activity] if activity else []
    alert = verdict == "deny" or verdict == "warn" or etype == "detection"
    if (alert or ai) and category != "intrusion_detection":
        cats.append("intrusion_detection")
    if verdict == "deny":
        types.append("denied")
    elif verdict == "warn" or (verdict == "allow" and (category in _ALLOWED_CATEGORIES or ai)):
        types.append("allowed")
    if not types:
        types.append("info")
    return tuple(cats), tuple(types)


def _cut(s: str) -> str:
    return s if len(s) <= KEYWORD_LIMIT else s[:KEYWORD_LIMIT]


# --------------------------------------------------------------------------------------------------
# Field groups (each only for the resource type that needs it)
# --------------------------------------------------------------------------------------------------


def _file(path: str) -> dict[str, str]:
    """file.path/name/directory/extension; POSIX separators, backslash only for a path without '/'.
    (rpartition, one call each, instead of rfind and slices: this runs for every file event.) The keys
    are inserted in sorted order, so a template's file part is encoded without OPT_SORT_KEYS (same
    bytes, ~800 instructions less per file event)."""
    if type(path) is not str:
        path[:KEYWORD_LIMIT], path.rfind("/")  # raise what a non-string path raised (DLQ reasons quote it)
    head, sep, name = path.rpartition("/")
    if not sep:
        head, sep, name = path.rpartition("\\")
    stem, _, ext = name.rpartition(".")
    f: dict[str, str] = {}
    if len(path) <= KEYWORD_LIMIT:  # so is every part: nothing to cut
        if head:
            f["directory"] = head
        elif sep:  # the root ("/x")
            f["directory"] = sep
        if name:
            if stem and ext:  # ".env" is a dotfile, not an extension
                f["extension"] = ext
            f["name"] = name
        f["path"] = path
        return f
    if head:
        f["directory"] = head[:KEYWORD_LIMIT]
    elif sep:
        f["directory"] = sep
    if name:
        if stem and ext:
            f["extension"] = ext[:KEYWORD_LIMIT]
        f["name"] = name[:KEYWORD_LIMIT]
    f["path"] = path[:KEYWORD_LIMIT]
    return f


_ARGS_CACHE: dict[str, tuple[tuple[str, ...], int]] = {}


def _split_args(command: str) -> tuple[tuple[str, ...], int]:
    """shlex (POSIX) split that never raises: unbalanced quotes or a huge line fall back to str.split.

    Returns (args cut to MAX_ARGS elements of at most KEYWORD_LIMIT chars, real argument count).
    """
    hit = _ARGS_CACHE.get(command)
    if hit is not None:
        return hit
    if len(command) <= _SHLEX_LIMIT:
        try:
            args = shlex.split(command)
        except ValueError:
            args = command.split()
    else:
        args = command.split()
    out = (tuple(a if len(a) <= KEYWORD_LIMIT else a[:KEYWORD_LIMIT] for a in args[:MAX_ARGS] if a),
           len(args))
    if len(command) <= 4096:
        put_bounded(_ARGS_CACHE, command, out, _CACHE_MAX)
    return out


def _process(command: str) -> dict[str, Any]:
    p: dict[str, Any] = {"command_line": command}  # wildcard: no ignore_above
    args, count = _split_args(command)
    if args:
        p["args"] = args  # the cached tuple: ecs_document's results are read-only
        p["args_count"] = count
        exe = args[0]
        name = exe[exe.rfind("/") + 1:]
        if name:
            p["name"] = name
        if exe[0] == "/":
            p["executable"] = exe
    return p


#: key -> (threat dict, the same as one Fragment, the same with its tactic/technique as Fragments), or None
_MITRE_CACHE: dict[tuple, tuple[dict[str, Any], Any, dict[str, Any]] | None] = {}


def _sub_technique_parent(tid: str) -> str | None:
    """"T1552.001" -> "T1552"; "AML.T0051.000" -> "AML.T0051"; "AML.T0051" / "T1552" -> None."""
    head, sep, tail = tid.rpartition(".")
    if sep and tail.isdigit() and head.rpartition(".")[2][:1] == "T":
        return head
    return None


def _reference(fw: str | None, kind: str, tid: str) -> str | None:
    base = _REFERENCE_BASE.get(fw or "")
    if base is None:
        return None
    if fw == "attack":
        return f"{base}{kind}/{tid.replace('.', '/')}/"
    return f"{base}{kind}/{tid}"


def _threat_forms(mitre: Any) -> tuple[dict[str, Any], Any, dict[str, Any]] | None:
    """ECS threat.* from the canonical ``mitre`` field (malformed parts are skipped, never raised on)
    and its pre-encoded forms (see ``_FRAGMENTS``), cached."""
    if type(mitre) is not dict:
        return None
    fw = mitre.get("framework")
    tactic = mitre.get("tactic")
    tech = mitre.get("technique")
    t_id = tactic.get("id") if type(tactic) is dict else None
    t_name = tactic.get("name") if type(tactic) is dict else None
    q_id = tech.get("id") if type(tech) is dict else None
    q_name = tech.get("name") if type(tech) is dict else None
    key = (fw, t_id, t_name, q_id, q_name)
    try:
        return _MITRE_CACHE[key]
    except KeyError:
        pass
    except TypeError:  # unhashable junk
        return None
    threat = _threat(fw, t_id, t_name, q_id, q_name)
    result = None if threat is None else (
        threat, _fragment(threat), {k: _fragment(v) if type(v) is dict else v for k, v in threat.items()})
    return put_bounded(_MITRE_CACHE, key, result, _CACHE_MAX)


def _threat(fw: Any, t_id: Any, t_name: Any, q_id: Any, q_name: Any) -> dict[str, Any] | None:
    threat: dict[str, Any] = {}
    framework = _FRAMEWORK.get(fw) if type(fw) is str else None
    if framework:
        threat["framework"] = framework
    fwk = fw if framework else None
    if type(t_id) is str and t_id:
        tac: dict[str, list[str]] = {"id": [_cut(t_id)]}
        ref = _reference(fwk, "tactics", t_id)
        if ref:
            tac["reference"] = [_cut(ref)]
        if type(t_name) is str and t_name:
            tac["name"] = [_cut(t_name)]
        threat["tactic"] = tac
    if type(q_id) is str and q_id:
        name = q_name if type(q_name) is str and q_name else None
        parent = _sub_technique_parent(q_id)
        if parent is None:
            technique: dict[str, Any] = {"id": [_cut(q_id)]}
            if name:
                technique["name"] = [_cut(name)]
            ref = _reference(fwk, "techniques", q_id)
        else:
            # ATT&CK/ATLAS name sub-techniques "Parent: Sub".
            parent_name, colon, sub_name = (name or "").partition(": ")
            technique = {"id": [_cut(parent)]}
            if colon and parent_name:
                technique["name"] = [_cut(parent_name)]
            sub: dict[str, list[str]] = {"id": [_cut(q_id)]}
            sname = sub_name if colon else name
            if sname:
                sub["name"] = [_cut(sname)]
            sref = _reference(fwk, "techniques", q_id)
            if sref:
                sub["reference"] = [_cut(sref)]
            technique["subtechnique"] = sub
            ref = _reference(fwk, "techniques", parent)
        if ref:
            technique["reference"] = [_cut(ref)]
        threat["technique"] = technique
    return threat or None


def _indicator(ind: Any) -> dict[str, str] | None:
    """ECS threat.indicator.* from the canonical {type, value} (ECS has no ``value`` field)."""
    if type(ind) is not dict:
        return None
    itype = ind.get("type")
    value = ind.get("value")
    if type(itype) is not str or type(value) is not str or not itype or not value:
        return None
    v = value[:KEYWORD_LIMIT]
    out: dict[str, Any] = {"type": itype, "name": v}
    if itype == "file":
        out["file"] = {"path": v}
    elif itype == "domain-name":
        out["url"] = {"domain": v}
    elif itype == "ipv4-addr" or itype == "ipv6-addr":
        out["ip"] = value
    return out


def _labels(labels: Any) -> dict[str, str] | None:
    """String map only; dots in keys would become nested objects in Elasticsearch, so they become '_'."""
    if not labels or type(labels) is not dict:
        return None
    for k, v in labels.items():  # the usual case: already clean, use it as it is
        if not (type(k) is str and k and "." not in k and type(v) is str and v and len(v) <= KEYWORD_LIMIT):
            break
    else:
        return labels
    items = labels.items()
    if any(type(k) is str and "." in k for k in labels):
        items = sorted(items)  # "a.b" and "a_b" collide: the result must not depend on insertion order
    out = {}
    for k, v in items:
        if type(k) is str and k and type(v) is str and v:
            out[k.replace(".", "_") if "." in k else k] = _cut(v)
    return out or None


def metadata_json(metadata: dict) -> str:
    """``clawdstrike.metadata`` as one sorted-key JSON string: free-form objects cannot explode the
    index's field count, and the same metadata always gives the same string."""
    try:
        return orjson.dumps(metadata, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # integers beyond 64 bits, exotic objects in a hand-built event
        return json.dumps(metadata, sort_keys=True, ensure_ascii=False, default=str)


def _timestamp_ms(ts: str) -> str:
    """RFC 3339 with exactly 3 fraction digits (Elasticsearch ``date`` keeps ms); a leap second 60 is
    clamped to 59.999 because Elasticsearch rejects it."""
    n = len(ts)
    if n == 24:
        out = ts
    elif n > 24:
        out = ts[:23] + "Z"
    elif n == 20:
        out = ts[:19] + ".000Z"
    else:
        out = ts[:-1].ljust(23, "0") + "Z"
    if out[17:19] == "60":
        out = out[:17] + "59.999Z"
    return out


# --------------------------------------------------------------------------------------------------
# The transform
# --------------------------------------------------------------------------------------------------


def to_ecs(event: dict) -> dict:
    """One canonical SecurityEvent (a dict that passes ``agent.event.validate_event``) -> a nested ECS
    9.4.0 document. Pure: same event, same document; the caller owns every container in it."""
    return _fresh(_document(event, _DICTS))


def ecs_document(event: dict) -> dict:
    """``to_ecs`` for a caller that only serialises the document (the pipeline's field overrides and raw
    copy, which are copy-on-write). Same bytes once encoded, but built for the hot path: sub-objects
    that depend on a few strings (categories, tags, observer, rule, session, labels, MITRE blocks) come
    from small caches and are *shared* between documents, ``clawdstrike.source`` is the event's own
    object, and lists may be tuples. Never mutate the result: use ``to_ecs`` for a private copy."""
    return _document(event, _DICTS)


def ecs_json(event: dict) -> bytes:
    """The ECS document of ``event`` encoded as the pipeline does (orjson, sorted keys): the same bytes
    as ``orjson.dumps(to_ecs(event), option=OPT_SORT_KEYS)``. An event whose shape was seen before is
    rendered from its compiled template (``_templated``); otherwise the document is built with the
    cached blocks pasted in already encoded (``_FRAGMENTS``)."""
    out = _templated(event)
    return out if out is not None else _dumps(_document(event, _FRAGMENTS), option=_SORT)


def _fresh(node: Any) -> Any:
    """A deep copy of the dicts, lists and tuples (as lists) of a document: no container is shared with
    the caches or with the event."""
    t = type(node)
    if t is dict:
        return {k: _fresh(v) for k, v in node.items()}
    if t is list or t is tuple:
        return [_fresh(v) for v in node]
    return node


# Every cached block exists in two forms: the plain objects (index _DICTS) and ``orjson.Fragment``s of
# their sorted-key encoding (index _FRAGMENTS). A Fragment is pasted into the output verbatim, so a
# document with fragments encodes to exactly the bytes of the same document with the objects.
_DICTS = 0
_FRAGMENTS = 1
_SORT = orjson.OPT_SORT_KEYS
_dumps = orjson.dumps


def _fragment(obj: Any) -> Any:
    return orjson.Fragment(_dumps(obj, option=_SORT))


def _both(obj: Any) -> tuple[Any, Any]:
    return obj, _fragment(obj)


def _document(event: dict, form: int) -> dict:
    """The ECS document, with the cached blocks in ``form`` (``_DICTS`` or ``_FRAGMENTS``)."""
    decision = event["decision"]
    resource = event["resource"]
    allowed = decision.get("allowed")
    guard = decision.get("guard")
    etype = event["event_type"]
    action = event["action"]
    rtype = resource["type"]
    source = event["source"]
    category = event["event_category"]
    if allowed is False:
        verdict = "deny"
    elif allowed is True:
        verdict = "warn" if guard is not None or etype == "guard_warn" else "allow"
    else:
        verdict = "none"
    ckey = (rtype, action, etype, source.get("type") if etype in _SOURCE_TYPE_MATTERS else None,
            category == "ai", verdict)
    try:
        kind, cats, types, tags = _CATEGORIZE_CACHE[ckey][form]
    except KeyError:
        kind, cats, types, tags = _categorized(ckey)[form]
    severity = decision["severity"]
    observer = event["observer"]
    product = observer["product"]
    okey = (product, observer.get("version"), observer.get("host_name"))
    try:
        obs, host = _OBSERVER_CACHE[okey][form]
    except KeyError:
        obs, host = _observer_cached(okey)[form]
    except TypeError:  # unhashable junk in a hand-built event
        obs, host = _observer(*okey)

    ev: dict[str, Any] = {
        "id": event["event_id"],
        "kind": kind,
        "category": cats,
        "type": types,
        "outcome": event["outcome"],
        "action": action if len(action) <= KEYWORD_LIMIT else action[:KEYWORD_LIMIT],
        "code": etype,
        "severity": _SEVERITY_NUMBER[severity],
        "module": "clawdstrike",
        "dataset": "clawdstrike.security",
        "provider": product,
    }
    risk = _RISK_SCORE.get(severity)
    if risk is not None:
        ev["risk_score"] = risk
    reason = decision.get("reason")
    if reason:
        ev["reason"] = reason if len(reason) <= KEYWORD_LIMIT else reason[:KEYWORD_LIMIT]
        message = reason
    else:
        message = f"{etype}: {resource['name']}"

    name = resource["name"]
    if type(source) is not dict:
        source = dict(source)
    cs_resource: dict[str, Any] = {"type": rtype}
    cs: dict[str, Any] = {
        "schema_version": event["schema_version"],
        "event_category": category,
        "severity": severity,
        "resource": cs_resource,
        "source": source,
    }
    doc: dict[str, Any] = {
        "@timestamp": _timestamp_ms(event["timestamp"]),
        "ecs": _ECS[form],
        "message": message,
        "event": ev,
        "observer": obs,
        "agent": _AGENT_FORMS[form],
        "tags": tags,
        "clawdstrike": cs,
    }
    if host is not None:
        doc["host"] = host

    # The resource: one ECS home per type, else clawdstrike.resource.
    if rtype == "file":
        path = resource.get("path")
        if path:
            doc["file"] = _file(path)
        else:
            cs_resource["name"] = name
    elif rtype == "network" and resource.get("host"):
        _network(doc, resource)
    elif rtype == "process":
        doc["process"] = _process(name)
    elif rtype == "tool":
        doc["gen_ai"] = {"operation": _EXECUTE_TOOL[form],
                         "tool": {"name": name if len(name) <= KEYWORD_LIMIT else name[:KEYWORD_LIMIT]}}
    else:
        cs_resource["name"] = name
        path = resource.get("path")
        if path:
            cs_resource["path"] = path

    agent = event.get("agent")
    if agent:
        aid = agent["id"]
        a = {"id": aid if len(aid) <= KEYWORD_LIMIT else aid[:KEYWORD_LIMIT]}
        gen_ai = doc.get("gen_ai")
        if gen_ai is None:
            doc["gen_ai"] = {"agent": a}
        else:
            gen_ai["agent"] = a

    ruleset = decision.get("ruleset")
    if guard or ruleset:
        rkey = (guard or None, ruleset or None)
        try:
            doc["rule"] = _RULE_CACHE[rkey][form]
        except KeyError:
            doc["rule"] = _rule_cached(rkey)[form]
        except TypeError:  # unhashable junk in a hand-built event
            doc["rule"] = _rule(*rkey)
        if guard:
            cs["guard"] = guard

    if verdict != "none":
        cs["decision"] = _DECISIONS[verdict][form]
    policy_hash = decision.get("policy_hash")
    if policy_hash:
        cs["policy"] = {"hash": policy_hash}
    instance_id = observer.get("instance_id")
    if instance_id:
        cs["observer"] = {"instance_id": instance_id}

    session = event.get("session")
    if session:
        skey = (session.get("id"), session.get("run_id"), session.get("environment"),
                session.get("user_id"), session.get("tenant_id"))
        try:
            cs_session, user, org = _SESSION_CACHE[skey][form]
        except KeyError:
            cs_session, user, org = _session_cached(skey)[form]
        except TypeError:  # unhashable junk in a hand-built event
            cs_session, user, org = _session(*skey)
        if cs_session is not None:
            cs["session"] = cs_session
        if user is not None:
            doc["user"] = user
        if org is not None:
            doc["organization"] = org

    mitre = event.get("mitre")
    threat = _threat_forms(mitre) if mitre else None
    canon_threat = event.get("threat")
    indicator = _indicator(canon_threat.get("indicator")) if canon_threat else None
    if indicator is not None:
        doc["threat"] = ({**threat[form * 2], "indicator": indicator} if threat is not None
                         else {"indicator": indicator})
    elif threat is not None:
        doc["threat"] = threat[form]

    labels = event.get("labels")
    if labels and type(labels) is dict:
        try:
            labels = _LABELS_CACHE[tuple(labels.items())][form]
        except KeyError:
            labels = _labels_cached(labels)[form]
        except TypeError:  # unhashable values
            labels = _labels(labels)
        if labels is not None:
            doc["labels"] = labels
    metadata = event.get("metadata")
    if metadata:
        cs["metadata"] = metadata_json(metadata)
    return doc


# --------------------------------------------------------------------------------------------------
# Small parts of the document (cached ones are keyed by the few strings that decide them; each cache
# holds the block in both forms, see _FRAGMENTS)
# --------------------------------------------------------------------------------------------------

_ECS = _both({"version": ECS_VERSION})
_AGENT_FORMS = _both(_AGENT)
_EXECUTE_TOOL = _both({"name": "execute_tool"})
_DECISIONS = {"deny": _both({"allowed": False, "verdict": "deny"}),
              "warn": _both({"allowed": True, "verdict": "warn"}),
              "allow": _both({"allowed": True, "verdict": "allow"})}
_Categorized = tuple[str, Any, Any, Any]
_CATEGORIZE_CACHE: dict[tuple, tuple[_Categorized, _Categorized]] = {}
_OBSERVER_CACHE: dict[tuple, tuple[tuple[Any, Any], tuple[Any, Any]]] = {}
_RULE_CACHE: dict[tuple, tuple[Any, Any]] = {}
_SESSION_CACHE: dict[tuple, tuple[tuple[Any, Any, Any], tuple[Any, Any, Any]]] = {}
_LABELS_CACHE: dict[tuple, tuple[Any, Any]] = {}


def _frag_or_none(obj: Any) -> Any:
    return None if obj is None else _fragment(obj)


def _categorized(key: tuple) -> tuple[_Categorized, _Categorized]:
    """(event.kind, event.category, event.type, tags) for a ``_CATEGORIZE_CACHE`` key, cached."""
    rtype, action, etype, stype, ai, verdict = key
    cats, types = _categorize(rtype, action, etype, stype, ai, verdict)
    kind = "alert" if verdict == "deny" or verdict == "warn" or etype == "detection" else "event"
    tags = _TAGS[verdict]
    return put_bounded(_CATEGORIZE_CACHE, key, ((kind, cats, types, tags),
                                                (kind, _fragment(cats), _fragment(types), _fragment(tags))),
                       _CACHE_MAX)


def _observer(product: Any, version: Any, host_name: Any) -> tuple[dict[str, str], dict[str, str] | None]:
    """(observer, host) blocks."""
    obs: dict[str, str] = {"vendor": _VENDOR, "product": product, "type": _OBSERVER_TYPE}
    if version:
        obs["version"] = _cut(version)
    host = None
    if host_name:
        host = {"name": _cut(host_name)}
        obs["hostname"] = _cut(host_name)
    return obs, host


def _cacheable(key: tuple) -> bool:
    """Only strings and None key a block cache: 1, 1.0 and True are one dict key in Python, but the
    values the block holds encode differently ("id":1 / 1.0 / true)."""
    return all(v is None or type(v) is str for v in key)


def _observer_cached(key: tuple) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    obs, host = _observer(*key)
    forms = ((obs, host), (_fragment(obs), _frag_or_none(host)))
    return put_bounded(_OBSERVER_CACHE, key, forms, _CACHE_MAX) if _cacheable(key) else forms


def _rule(guard: Any, ruleset: Any) -> dict[str, str]:
    """ECS rule.*: the guard (with its name and category) and the ruleset, whichever are set."""
    rule: dict[str, str] = {}
    if guard:
        rule_name, rule_category = _RULES.get(guard, (guard, None))
        rule["id"] = _cut(guard)
        rule["name"] = _cut(rule_name)
        if rule_category:
            rule["category"] = rule_category
    if ruleset:
        rule["ruleset"] = _cut(ruleset)
    return rule


def _rule_cached(key: tuple) -> tuple[Any, Any]:
    return put_bounded(_RULE_CACHE, key, _both(_rule(*key)), _CACHE_MAX)


def _session(sid: Any, run_id: Any, environment: Any, user_id: Any, tenant: Any
             ) -> tuple[dict | None, dict | None, dict | None]:
    """(clawdstrike.session, user, organization), None where empty."""
    cs_session = {}
    for k, sv in (("id", sid), ("run_id", run_id), ("environment", environment)):
        if sv:
            cs_session[k] = sv
    user = {"id": _cut(user_id)} if user_id else None
    org = {"id": _cut(tenant)} if tenant else None
    return cs_session or None, user, org


def _session_cached(key: tuple) -> tuple[tuple[Any, Any, Any], tuple[Any, Any, Any]]:
    parts = _session(*key)
    forms = (parts, tuple(_frag_or_none(p) for p in parts))
    return put_bounded(_SESSION_CACHE, key, forms, _CACHE_MAX) if _cacheable(key) else forms


def _labels_cached(labels: dict) -> tuple[Any, Any]:
    out = _labels(labels)
    if out is labels:
        out = dict(labels)  # never keep a caller's object: it could change after this event
    return put_bounded(_LABELS_CACHE, tuple(labels.items()), (out, _frag_or_none(out)), _CACHE_MAX)


def _network(doc: dict[str, Any], resource: dict) -> None:
    """destination.*, url.* and network.direction of a network resource with a host."""
    host = resource["host"]
    ip = resource.get("ip")
    port = resource.get("port")
    dest: dict[str, Any] = {"address": _cut(host)}
    url: dict[str, Any] = {"domain": _cut(f"[{host}]" if ip and ":" in ip else host)}
    if ip:
        dest["ip"] = ip
    else:
        dest["domain"] = _cut(host)
    if port is not None:
        dest["port"] = port
        url["port"] = port
    doc["destination"] = dest
    doc["url"] = url
    doc["network"] = {"direction": "egress"}


# --------------------------------------------------------------------------------------------------
# Templates: the bytes of a document with holes for the few values that differ from event to event
# --------------------------------------------------------------------------------------------------
# Events of one source mostly differ in their id, timestamp, reason/message, file path, source object,
# metadata and threat indicator; everything else (categories, observer, rule, session, labels, MITRE,
# ...) repeats. ``_templated`` keys an event by the JSON bytes of all it holds *except* those values
# (replaced by what decides the document's shape, e.g. "has a reason"), and renders it as the template
# of that key: constant byte segments joined with the holes, each hole encoded on its own by orjson
# (a nested value encodes to the same bytes as the value alone: same options, sorted keys).
#
# Why this cannot change a byte: (1) the key holds every input ``_document`` reads besides the holes
# (the same fields, whole: decision, resource, observer, session, labels, mitre, agent, ...), as JSON,
# so equal keys mean equal inputs (True/1/1.0 encode differently; a key holding null is never used,
# since NaN also encodes as null; datetimes and str subclasses raise and are not keyed); (2) a template
# is cut from the general path's own document, with sentinel Fragments (NUL bytes, which orjson never
# emits itself) where the holes go; (3) on creation it must reproduce the general bytes of its event,
# or the key is marked general-only. Anything odd (a non-str timestamp, reason or path, a non-dict
# source or threat, a missing field) goes to the general path, which also raises what it raises.

_TEMPLATE_MAX = 1024  # ~1.5 KB each
_SEEN_MAX = 2048
_KEY_OPTS = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
             | orjson.OPT_PASSTHROUGH_SUBCLASS)
_TEMPLATES: dict[bytes, Any] = {}  # key -> render(holes...) -> bytes, or False: general path only
_SEEN: set[bytes] = set()  # keys met once: a template is made on the second event of a shape
#: The holes, in the order of the template function's parameters.
_HOLES = ("ts", "metadata", "source", "id", "reason", "file", "message", "indicator")
_SENTINELS = tuple(orjson.Fragment(b"\x00%d\x00" % i) for i in range(len(_HOLES)))
_SPLIT = re.compile(rb"\x00(\d)\x00")
_ABSENT = orjson.Fragment(b"\x00")
_META_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS  # metadata_json's
_META_HOLES: dict[bytes, bytes] = {}  # metadata_json's bytes -> the same as a JSON string
_META_MAX = 1024


def _templated(event: dict) -> bytes | None:
    """``ecs_json(event)`` from the template of its key, or None: use the general path."""
    try:
        decision = event["decision"]
        resource = event["resource"]
        source = event["source"]
        ts = event["timestamp"]
        etype = event["event_type"]
        name = resource["name"]
        reason = decision.get("reason")
        metadata = event.get("metadata")
        canon_threat = event.get("threat")
        if (type(ts) is not str or type(source) is not dict or (reason and type(reason) is not str)
                or (canon_threat and type(canon_threat) is not dict)):
            return None
        path = resource.get("path")
        rtype = resource["type"]
        if rtype == "file" and path:
            if type(path) is not str:
                return None
            shape_resource = rtype  # the file branch reads nothing else: path and name are holes
        else:
            path = None
            shape_resource = resource
        indicator = _indicator(canon_threat.get("indicator")) if canon_threat else None
        absent = _ABSENT
        get = event.get
        dget = decision.get
        # Every field _document reads, holes replaced by what decides the shape (reason, metadata:
        # present or not; the indicator: its type). A missing field is keyed as a NUL byte, which no
        # JSON value encodes to.
        key = _dumps((event["action"], get("agent", absent), dget("allowed", absent), dget("guard", absent),
                      decision["severity"], dget("ruleset", absent), dget("policy_hash", absent),
                      bool(reason), event["event_category"], etype, get("labels", absent),
                      get("mitre", absent), event["observer"], event["outcome"], shape_resource,
                      event["schema_version"], get("session", absent),
                      source.get("type", absent) if etype in _SOURCE_TYPE_MATTERS else 0,
                      0 if indicator is None else indicator["type"], bool(metadata)),
                     option=_KEY_OPTS)
    except (KeyError, TypeError, AttributeError):
        return None
    render = _TEMPLATES.get(key)
    if render is False:
        return None
    # A key holding null is never given a template (it is checked here, on a miss, and not on every
    # hit: ~2,000 instructions of scanning an event whose template exists, which cannot hold null).
    # Not "in": bytes.__contains__ first tries the needle as an int (and formats a TypeError).
    if render is None and key.find(b"null") >= 0:
        return None
    if render is None and key not in _SEEN:
        if len(_SEEN) >= _SEEN_MAX:
            _SEEN.clear()
        _SEEN.add(key)
        return None
    try:
        h_reason = None
        if reason:
            h_reason = _dumps(reason if len(reason) <= KEYWORD_LIMIT else reason[:KEYWORD_LIMIT])
            h_message = h_reason if len(reason) <= KEYWORD_LIMIT else _dumps(reason)
        else:
            h_message = _dumps(f"{etype}: {name}")
        holes = (_dumps(_timestamp_ms(ts)),
                 _metadata_hole(metadata) if metadata else None,
                 _dumps(source, option=_SORT),
                 _dumps(event["event_id"], option=_SORT),  # sorted as the general path: an odd id
                 h_reason,
                 _dumps(_file(path)) if path is not None else None,  # in sorted order
                 h_message,
                 None if indicator is None else _dumps(indicator, option=_SORT))
    except (TypeError, ValueError):  # e.g. an id orjson cannot encode: the general path raises it
        return None
    if render is None:
        return _compile_template(key, event, holes)
    return render(*holes)


def _compile_template(key: bytes, event: dict, holes: tuple) -> bytes:
    """``ecs_json(event)`` by the general path, and the template of ``event``'s key cut from the same
    document, kept in ``_TEMPLATES`` if it gives exactly those bytes with ``holes`` (else False: this
    key always takes the general path)."""
    doc = _document(event, _FRAGMENTS)
    want = _dumps(doc, option=_SORT)
    s = _SENTINELS
    doc["@timestamp"] = s[0]
    cs = doc["clawdstrike"]
    if "metadata" in cs:
        cs["metadata"] = s[1]
    cs["source"] = s[2]
    ev = doc["event"]
    ev["id"] = s[3]
    if "reason" in ev:
        ev["reason"] = s[4]
    if "file" in doc:
        doc["file"] = s[5]
    doc["message"] = s[6]
    threat = doc.get("threat")
    if type(threat) is dict and "indicator" in threat:
        threat["indicator"] = s[7]  # a fresh dict: {**cached threat, "indicator": ...}
    parts = _SPLIT.split(_dumps(doc, option=_SORT))
    segments, order = parts[0::2], [int(h) for h in parts[1::2]]
    render: Any = False
    if len(set(order)) == len(order):
        args = ", ".join(_HOLES)
        body = ", ".join(f"_s{i}, {_HOLES[h]}" for i, h in enumerate(order)) + f", _s{len(order)}"
        namespace = {f"_s{i}": seg for i, seg in enumerate(segments)}
        exec(f"def render({args}, _join=b''.join):\n    return _join(({body}))", namespace)
        render = namespace["render"]
        if render(*holes) != want:
            render = False
    put_bounded(_TEMPLATES, key, render, _TEMPLATE_MAX)
    return want


def _metadata_hole(metadata: Any) -> bytes:
    """``orjson.dumps(metadata_json(metadata))``: the JSON string of the metadata's JSON, escaped once
    per distinct metadata (checks repeat theirs: contributing policies and the policy hash)."""
    try:
        raw = _dumps(metadata, option=_META_OPTS)
    except TypeError:
        return _dumps(metadata_json(metadata))
    hole = _META_HOLES.get(raw)
    if hole is None:
        hole = put_bounded(_META_HOLES, raw, _dumps(raw.decode()), _META_MAX)
    return hole
