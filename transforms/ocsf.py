"""Canonical SecurityEvent -> OCSF 1.8.0 event (a plain dict, ready for orjson with OPT_SORT_KEYS).

Why the shape is what it is (guidance: ../shared/reference/schemas.md §3; table: docs/formats/ocsf.md):

* Denials, warnings, prompt-security detections and sanitised outputs are always a **Detection Finding**
  (2004, activity Create) with the artifact in ``evidences[]``/``resources[]``: one alert stream for SIEMs.
* ``allowed_as_activity=False`` (default): every other event is a Detection Finding too, with
  action/disposition ``Allowed`` (or ``Observed``/``Logged`` when the source carried no decision) and
  ``is_alert: false``. One class per output keeps consumers' parsers simple.
* ``allowed_as_activity=True``: those other events become the matching activity class (File System
  1001, Process 1007, Network 4001, API 6003, Application Lifecycle 6002, Authentication 3002, Entity
  Management 3004).
* Class/activity captions and profile gating below are hard-coded (the agent does not ship the OCSF data);
  tests/validators/ocsf.py checks every emitted document against the official 1.8.0 data.
* Deterministic: no clock, no random id; unknown values are omitted (no JSON null). Built with literals and
  table lookups because this runs once per exported event (issue 3 target: >= 50,000 events/s per core).
"""

from __future__ import annotations

from typing import Any

import orjson

from agent.event import timestamp_to_ms
from transforms.ecs import metadata_json

OCSF_VERSION = "1.8.0"
VENDOR_NAME = "Backbay Labs"
PRODUCT_NAME = "Clawdstrike"
UNKNOWN = "unknown"  # for attributes an activity class requires when the source does not name them

# class_uid -> (class caption, category_uid, category caption)
_CLASSES: dict[int, tuple[str, int, str]] = {
    2004: ("Detection Finding", 2, "Findings"),
    1001: ("File System Activity", 1, "System Activity"),
    1007: ("Process Activity", 1, "System Activity"),
    4001: ("Network Activity", 4, "Network Activity"),
    6002: ("Application Lifecycle", 6, "Application Activity"),
    6003: ("API Activity", 6, "Application Activity"),
    3002: ("Authentication", 3, "Identity & Access Management"),
    3004: ("Entity Management", 3, "Identity & Access Management"),
}

# Attributes that the 1.8.0 class gates behind the `host` profile (the rest we emit is base class or
# `security_control`, which every document uses through action_id/disposition_id).
_HOST_GATED: dict[int, tuple[str, ...]] = {
    2004: ("actor",), 1001: (), 1007: (), 4001: ("actor", "device"), 6002: ("actor", "device"),
    6003: ("device",), 3002: ("device",), 3004: ("device",),
}
_PROFILES_HOST = ("host", "security_control")
_PROFILES_SC = ("security_control",)

_SEVERITY: dict[str, tuple[int, str]] = {
    "info": (1, "Informational"), "low": (2, "Low"), "medium": (3, "Medium"), "high": (4, "High"),
    "critical": (5, "Critical"),
}

# Decision -> (action_id, action, disposition_id, disposition, is_alert, is_finding)
_DENY = (2, "Denied", 2, "Blocked", True, True)
_WARN = (3, "Observed", 19, "Alert", True, True)
_DETECT = (3, "Observed", 15, "Detected", True, True)
_SANITIZE = (4, "Modified", 11, "Corrected", False, True)
_ALLOW = (1, "Allowed", 1, "Allowed", False, False)
_LOG = (3, "Observed", 17, "Logged", False, False)  # no decision in the source (tool_call, adapter sessions)
_BY_EVENT_TYPE = {"guard_warn": _WARN, "detection": _DETECT, "output_sanitized": _SANITIZE}

_ACTIVITY_STATUS = {"success": (1, "Success"), "failure": (2, "Failure"), "unknown": (0, "Unknown")}

_FIXED_TITLES = {
    "secret_detected": "Secret leak blocked", "egress_blocked": "Network egress blocked",
    "forbidden_path": "Forbidden path access blocked", "patch_rejected": "Patch rejected",
    "detection": "Prompt security detection", "output_sanitized": "Output sanitized",
    "tool_call": "Tool call",
    "session_start": "Session started", "session_end": "Session ended", "policy_change": "Policy changed",
    "admin_change": "Access control changed", "user_session_start": "User session started",
    "user_session_end": "User session ended", "posture_transition": "Session posture changed",
    "idp_webhook": "Identity provider event",
}
_VERB = {
    "guard_block": "blocked", "policy_violation": "blocked", "guard_warn": "flagged",
    "policy_allow": "allowed",
}
_NOUN = {
    "file_access": "File access", "file_write": "File write", "egress": "Network egress",
    "shell": "Shell command", "mcp_tool": "MCP tool call", "patch": "Patch", "custom": "Custom action",
}

_FILE_ACTIVITY = {"file_access": (2, "Read"), "file_write": (3, "Update"), "patch": (3, "Update")}
# A written or patched target is a regular file; a read target may be a folder: Unknown.
_FILE_TYPE = {"file_write": (1, "Regular File"), "patch": (1, "Regular File")}
_FILE_TYPE_UNKNOWN = (0, "Unknown")

_SESSION_CLASSES = {
    "session_start": (6002, 3, "Start"), "session_end": (6002, 4, "Stop"),
    "user_session_start": (3002, 1, "Logon"), "user_session_end": (3002, 2, "Logoff"),
}
_ENTITY_EVENTS = frozenset(("policy_change", "admin_change", "posture_transition", "idp_webhook"))
_ENTITY_TYPES = {  # managed_entity type_id/type per event type (role, session, IdP have no id of their own)
    "policy_change": (5, "Policy"), "admin_change": (99, "Role"), "posture_transition": (99, "Session"),
    "idp_webhook": (99, "Identity Provider"),
}
_RESOURCE_CLASS = {"file": 1001, "process": 1007, "network": 4001}  # anything else: API Activity

_SORT = orjson.OPT_SORT_KEYS


def _title(etype: str, action: str) -> str:
    t = _FIXED_TITLES.get(etype)
    if t is None:
        t = f"{_NOUN.get(action, 'Action')} {_VERB.get(etype, 'evaluated')}"
    return t


def _attack(m: dict) -> dict:
    """The canonical ``mitre`` field as one OCSF attack object; sub-technique ids split off their parent."""
    out: dict[str, Any] = {}
    tac = m.get("tactic")
    if tac:
        t = {k2: tac[k1] for k1, k2 in (("id", "uid"), ("name", "name")) if tac.get(k1)}
        if t:
            out["tactic"] = t
    tech = m.get("technique")
    if tech and tech.get("id"):
        tid, tname = tech["id"], tech.get("name")
        parent, _, sub = tid.rpartition(".")
        if parent and sub.isdigit():  # T1552.001, AML.T0051.000: a sub-technique
            # ATT&CK and ATLAS name sub-techniques "Parent: Sub" (as transforms/ecs.py splits them).
            parent_name, colon, sub_name = (tname or "").partition(": ")
            tq = {"uid": parent}
            if colon and parent_name:
                tq["name"] = parent_name
            out["technique"] = tq
            st = {"uid": tid}
            sname = sub_name if colon else tname
            if sname:
                st["name"] = sname
            out["sub_technique"] = st
        else:
            out["technique"] = {"uid": tid, "name": tname} if tname else {"uid": tid}
    if m.get("version"):
        out["version"] = m["version"]
    return out


def _artifact(res: dict, action: str, event_id: str) -> tuple[str, dict]:
    """(evidence key, object) for the resource: file, dst_endpoint, process, api, or data."""
    rtype = res["type"]
    name = res["name"]
    if rtype == "file":
        path = res.get("path") or name
        base = path.rstrip("/\\")
        cut = max(base.rfind("/"), base.rfind("\\"))
        tid, tcap = _FILE_TYPE.get(action, _FILE_TYPE_UNKNOWN)
        f = {"name": base[cut + 1:] or path, "path": path, "type_id": tid, "type": tcap}
        if cut > 0:
            f["parent_folder"] = base[:cut]
        return "file", f
    if rtype == "network":
        ip = res.get("ip")
        # ip_t allows 40 characters: a scoped IPv6 address with a long zone stays a host name
        ep: dict[str, Any] = {"ip": ip} if ip and len(ip) <= 40 else {"hostname": res.get("host") or name}
        port = res.get("port")
        if port is not None:
            ep["port"] = port
        return "dst_endpoint", ep
    if rtype == "process":
        p = {"uid": event_id, "cmd_line": name}  # a checked command never ran: no pid; the event id is unique
        first = name.split(None, 1)
        if first:
            exe = first[0]
            p["name"] = exe[max(exe.rfind("/"), exe.rfind("\\")) + 1:] or exe
        return "process", p
    if rtype == "tool":
        api: dict[str, Any] = {"operation": name}
        if action == "mcp_tool":
            api["service"] = {"name": "mcp"}
        return "api", api
    data = {"type": rtype, "name": name}
    if res.get("path"):
        data["path"] = res["path"]
    return "data", data


_OBSERVABLE = {  # evidence key -> (attribute, observable type_id, caption)
    "file": ("path", 45, "File Path"), "process": ("cmd_line", 13, "Command Line"),
}


def _observables(key: str, obj: dict, prefix: str) -> list[dict] | None:
    if key == "dst_endpoint":
        if "ip" in obj:
            return [{"name": prefix + "dst_endpoint.ip", "type_id": 2, "type": "IP Address",
                     "value": obj["ip"]}]
        return [{"name": prefix + "dst_endpoint.hostname", "type_id": 1, "type": "Hostname",
                 "value": obj["hostname"]}]
    o = _OBSERVABLE.get(key)
    if o is None:
        return None
    attr, tid, cap = o
    return [{"name": f"{prefix}{key}.{attr}", "type_id": tid, "type": cap, "value": obj[attr]}]


def _actor(ev: dict, sess: dict | None) -> dict:
    actor: dict[str, Any] = {}
    agent = ev.get("agent")
    if agent:
        actor["app_uid"] = agent["id"]
    if sess:
        if "id" in sess:
            actor["session"] = {"uid": sess["id"]}
        if "user_id" in sess:
            actor["user"] = {"uid": sess["user_id"]}
    return actor


def _activity(cls: int, ev: dict, etype: str, action: str) -> tuple[int, str]:
    if cls == 1001:
        return _FILE_ACTIVITY.get(action, (99, action))
    if cls == 1007:
        return 1, "Launch"
    if cls == 4001:
        return 1, "Open"
    if cls == 3004:
        src_type = ev["source"].get("type", etype)
        if etype == "idp_webhook":
            return 99, src_type
        if src_type.endswith("_created"):
            return 1, "Create"
        if src_type.endswith("_deleted"):
            return 4, "Delete"
        return 3, "Update"
    return 99, action  # 6003 API Activity: the guarded action is the source value of "Other"


_HEADS: dict[tuple, dict[str, Any]] = {}  # the per-(class, activity, decision, severity, status) attributes


def _head(cls: int, act_id: int, act_name: str, d: tuple, severity: str, status: tuple[int, str]) -> dict:
    """The classification attributes shared by every event of one kind, computed once and cached."""
    cname, cat_uid, cat_name = _CLASSES[cls]
    sev_id, sev = _SEVERITY[severity]
    head = {
        "class_uid": cls, "class_name": cname, "category_uid": cat_uid, "category_name": cat_name,
        "activity_id": act_id, "activity_name": act_name, "type_uid": cls * 100 + act_id,
        "type_name": f"{cname}: {'Other' if act_id == 99 else act_name}",
        "severity_id": sev_id, "severity": sev, "status_id": status[0], "status": status[1],
        "action_id": d[0], "action": d[1], "disposition_id": d[2], "disposition": d[3], "is_alert": d[4],
    }
    if act_id != 99:  # "Other" carries a source value: caching it would let the cache grow without bound
        _HEADS[(cls, act_id, act_name, d, severity, status)] = head
    return head


def to_ocsf(event: dict, *, allowed_as_activity: bool = False) -> dict:
    """One OCSF 1.8.0 event for one canonical SecurityEvent (the class choice: module docstring)."""
    ev = event
    dec = ev["decision"]
    etype = ev["event_type"]
    action = ev["action"]
    res = ev["resource"]
    eid = ev["event_id"]
    obs = ev["observer"]
    src = ev["source"]
    sess = ev.get("session")
    allowed = dec.get("allowed")
    d = _DENY if allowed is False else _BY_EVENT_TYPE.get(etype) or (_ALLOW if allowed is True else _LOG)

    t = timestamp_to_ms(ev["timestamp"])
    guard = dec.get("guard")
    reason = dec.get("reason")
    title = _title(etype, action)
    key, artifact = _artifact(res, action, eid)
    host = obs.get("host_name")

    if d[5] or not allowed_as_activity:
        cls, act_id, act_name = 2004, 1, "Create"
        status = (1, "New")
    else:
        sc = _SESSION_CLASSES.get(etype)
        if sc is not None:
            cls, act_id, act_name = sc
        elif etype in _ENTITY_EVENTS:
            cls = 3004
            act_id, act_name = _activity(cls, ev, etype, action)
        else:
            cls = _RESOURCE_CLASS.get(res["type"], 6003)
            act_id, act_name = _activity(cls, ev, etype, action)
        status = _ACTIVITY_STATUS[ev["outcome"]]
    hkey = (cls, act_id, act_name, d, dec["severity"], status)
    head = _HEADS.get(hkey)
    if head is None:
        head = _head(*hkey)
    product: dict[str, Any] = {"name": PRODUCT_NAME, "vendor_name": VENDOR_NAME,
                               "feature": {"name": obs["product"]}}
    if "version" in obs:
        product["version"] = obs["version"]
    md: dict[str, Any] = {"version": OCSF_VERSION, "product": product, "uid": eid, "log_name": src["kind"],
                          "original_time": ev["timestamp"]}
    if "type" in src:
        md["event_code"] = src["type"]
    if "id" in src and src["id"] != eid:
        md["original_event_uid"] = src["id"]
    labels = ev["labels"]
    if labels:
        md["tags"] = [{"name": k, "value": labels[k]} for k in sorted(labels)]

    cs: dict[str, Any] = {"schema_version": ev["schema_version"], "event_type": etype,
                          "event_category": ev["event_category"], "action": action, "outcome": ev["outcome"]}
    if guard:
        cs["guard"] = guard
    if sess:
        if "tenant_id" in sess:
            md["tenant_uid"] = sess["tenant_id"]
        if "run_id" in sess:
            cs["run_id"] = sess["run_id"]
        if "environment" in sess:
            cs["environment"] = sess["environment"]
    if "instance_id" in obs:
        cs["observer_instance_id"] = obs["instance_id"]
    if ev["metadata"]:
        # A string: free-form source data may hold nulls and would explode a SIEM's field count.
        cs["metadata"] = metadata_json(ev["metadata"])  # the same string ECS carries

    doc: dict[str, Any] = head.copy()  # flat, immutable values: a shallow copy shares nothing mutable
    doc["time"] = t
    doc["message"] = reason or title
    doc["metadata"] = md
    doc["unmapped"] = {"clawdstrike": cs}
    if host:
        doc["device"] = {"type_id": 0, "type": "Unknown", "hostname": host}
    actor = _actor(ev, sess)
    if actor:
        doc["actor"] = actor
    policy = {}
    if "policy_hash" in dec:
        policy["uid"] = dec["policy_hash"]
    if "ruleset" in dec:
        policy["name"] = dec["ruleset"]
    if policy:
        doc["policy"] = policy
    mitre = ev.get("mitre")
    if mitre:
        attack = _attack(mitre)
        if attack:
            doc["attacks"] = [attack]
        if mitre.get("framework"):
            cs["mitre_framework"] = mitre["framework"]

    if cls == 2004:
        fi: dict[str, Any] = {"uid": eid, "title": title, "types": [etype], "created_time": t,
                              "data_sources": [src["kind"]]}
        if reason:
            fi["desc"] = reason
        if guard:
            fi["analytic"] = {"type_id": 1, "type": "Rule", "uid": guard, "name": guard}
        if "attacks" in doc:
            fi["attacks"] = [_attack(mitre)]  # the class asks for a duplicate; a separate copy, not shared
        doc["finding_info"] = fi
        doc["evidences"] = [{key: artifact}]
        doc["resources"] = [{"name": res["name"], "type": res["type"]}]
        obsv = _observables(key, artifact, "evidences[0].")
        if obsv:
            doc["observables"] = obsv
    else:
        _activity_body(doc, cls, key, artifact, res, ev, sess, host, action)

    gated = _HOST_GATED[cls]
    md["profiles"] = list(_PROFILES_HOST if any(a in doc for a in gated) else _PROFILES_SC)
    return doc


def _activity_body(doc: dict, cls: int, key: str, artifact: dict, res: dict, ev: dict, sess: dict | None,
                   host: str | None, action: str) -> None:
    """Fill the class-specific attributes of an activity event (required ones always present)."""
    if cls in (1001, 1007, 6003):
        if "actor" not in doc:
            doc["actor"] = {"app_name": UNKNOWN}
        if cls != 6003 and "device" not in doc:
            doc["device"] = {"type_id": 0, "type": "Unknown", "name": UNKNOWN}
    if cls == 1001 or cls == 1007:
        doc[key] = artifact
        obsv = _observables(key, artifact, "")
        if obsv:
            doc["observables"] = obsv
    elif cls == 4001:
        doc["dst_endpoint"] = artifact
        doc["connection_info"] = {"direction_id": 2, "direction": "Outbound"}
        doc["observables"] = _observables(key, artifact, "")
    elif cls == 6003:
        doc["api"] = artifact if key == "api" else {"operation": action}
        doc["src_endpoint"] = {"hostname": host} if host else {"name": UNKNOWN}
        doc["resources"] = [{"name": res["name"], "type": res["type"]}]
    elif cls == 6002:
        obs = ev["observer"]
        app = {"name": obs["product"], "vendor_name": VENDOR_NAME}
        if "version" in obs:
            app["version"] = obs["version"]
        doc["app"] = app
    elif cls == 3002:
        user_id = sess.get("user_id") if sess else None
        if user_id:
            doc["user"] = {"uid": user_id}
        elif res["name"] != ev["source"].get("type"):
            doc["user"] = {"name": res["name"]}
        else:
            doc["user"] = {"name": UNKNOWN}
        doc["service"] = {"name": ev["observer"]["product"]}
        if sess and "id" in sess:
            doc["session"] = {"uid": sess["id"]}
        doc.pop("actor", None)  # the subject is `user`; actor would repeat it
    else:  # 3004 Entity Management
        tid, tcap = _ENTITY_TYPES[ev["event_type"]]
        entity = {"name": res["name"], "type_id": tid, "type": tcap}
        if res.get("path"):
            entity["uid"] = res["path"]
        doc["entity"] = entity
