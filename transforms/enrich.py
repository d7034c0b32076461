"""MITRE ATT&CK / ATLAS enrichment: the canonical event's ``mitre`` field, from a rule table.

Rules come from three places, tried in this order, first match wins: ``[enrichment] rules`` inline in
agent.toml, the file named by ``[enrichment] table``, then the shipped ``transforms/data/mitre.toml``
(unless ``defaults = false``). Each rule is a ``transforms.config.MitreRule``; the table file holds
``[[rule]]`` tables with the same keys, so one loader checks both and errors name the file and rule.

Environment, tenant, host and labels are not added here: ``agent.mapping.MappingContext`` already puts
``[agent]`` environment/tenant_id/host_name/labels on every event.

Hot path: an event whose decision state no rule wants (plain allows, most of the traffic) costs one
dict lookup; a flagged event is matched once per distinct (guard, action, type, category, resource,
decision) key, and per target only when a path or name rule could apply; results are cached. The
input event is never mutated: a match returns a shallow copy with ``mitre`` added.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.config_loader import ConfigError, load_section
from agent.event import MITRE_TACTIC_PATTERN, MITRE_TECHNIQUE_PATTERN
from transforms.config import EnrichmentConfig, MitreRule

DEFAULT_TABLE = Path(__file__).resolve().parent / "data" / "mitre.toml"

_TACTIC = {"attack": re.compile(r"^TA[0-9]{4}$"), "atlas": re.compile(r"^AML\.TA[0-9]{4}$")}
_TECHNIQUE = {"attack": re.compile(r"^T[0-9]{4}(\.[0-9]{3})?$"),
              "atlas": re.compile(r"^AML\.T[0-9]{4}(\.[0-9]{3})?$")}
assert all(re.match(MITRE_TACTIC_PATTERN, x) for x in ("TA0006", "AML.TA0005"))
assert all(re.match(MITRE_TECHNIQUE_PATTERN, x) for x in ("T1552.004", "AML.T0051"))

_CACHE_MAX = 4096


def check_mitre_ids(framework: str, tactic_id: str, technique_id: str) -> None:
    """Raise ValueError unless both ids have the framework's shape (TA0006 / T1552.004 for ATT&CK,
    AML.TA0005 / AML.T0051 for ATLAS): a typo in a user table must not reach a SIEM."""
    if framework not in _TACTIC:
        raise ValueError(f"framework: expected 'attack' or 'atlas', got {framework!r}")
    if not _TACTIC[framework].match(tactic_id):
        shape = "TAxxxx" if framework == "attack" else "AML.TAxxxx"
        raise ValueError(f"tactic.id: expected a MITRE {framework} tactic id ({shape}), got {tactic_id!r}")
    if not _TECHNIQUE[framework].match(technique_id):
        shape = "Txxxx or Txxxx.yyy" if framework == "attack" else "AML.Txxxx or AML.Txxxx.yyy"
        raise ValueError(f"technique.id: expected a MITRE {framework} technique id ({shape}), "
                         f"got {technique_id!r}")


def load_table(path: str | Path) -> list[MitreRule]:
    """The ``[[rule]]`` tables of a TOML file, each checked like agent.toml (unknown keys are errors)."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    unknown = set(doc) - {"rule", "version"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {sorted(unknown)[0]!r} (known: rule, version)")
    rules = doc.get("rule", [])
    if not isinstance(rules, list):
        raise ConfigError(f"{path}: 'rule' must be an array of tables ([[rule]])")
    out = []
    for i, table in enumerate(rules):
        name = table.get("name", "") if isinstance(table, dict) else ""
        out.append(load_section(MitreRule, table, f"{path}: rule[{i}]{f' ({name})' if name else ''}", {}))
    return out


def _globs(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


class _Rule:
    """A MitreRule compiled for matching, with the ``mitre`` value it adds."""

    __slots__ = ("action", "category", "decision", "event_type", "guard", "mitre", "name", "path",
                 "resource_name", "resource_type")

    def __init__(self, r: MitreRule) -> None:
        self.name = r.name
        self.guard = frozenset(r.guard) or None
        self.action = frozenset(r.action) or None
        self.event_type = frozenset(r.event_type) or None
        self.category = frozenset(r.category) or None
        self.resource_type = frozenset(r.resource_type) or None
        self.decision = frozenset(r.decision) or None
        self.path = _globs(r.path)
        self.resource_name = _globs(r.resource_name)
        self.mitre = {"framework": r.framework,
                      "tactic": {"id": r.tactic.id, "name": r.tactic.name},
                      "technique": {"id": r.technique.id, "name": r.technique.name}}

    def matches(self, key: tuple[Any, ...], path: str | None, name: str) -> bool:
        if not self.matches_without_target(key):
            return False
        if self.path is not None and (path is None or self.path.match(path) is None):
            return False
        return self.resource_name is None or self.resource_name.match(name) is not None

    def matches_without_target(self, key: tuple[Any, ...]) -> bool:
        guard, action, event_type, category, rtype, state = key
        if self.decision is not None and state not in self.decision:
            return False
        if self.guard is not None and guard not in self.guard:
            return False
        if self.action is not None and action not in self.action:
            return False
        if self.event_type is not None and event_type not in self.event_type:
            return False
        if self.category is not None and category not in self.category:
            return False
        return self.resource_type is None or rtype in self.resource_type


def _state(allowed: bool | None, guard: str | None, event_type: str) -> str:
    """blocked, warned (allowed but flagged: a guard warned, or the source said warn without naming
    the guard), allowed, or none (no decision: detections, tool activity)."""
    if allowed is None:
        return "none"
    if allowed is False:
        return "blocked"
    return "warned" if guard is not None or event_type == "guard_warn" else "allowed"


class Enricher:
    """Callable ``event -> event`` adding ``mitre``; build it with ``compile_enricher``.

    The ``mitre`` value is one shared dict per rule: treat it as read-only (redaction copies events
    before changing them, formats only read them).
    """

    _TARGET = object()  # cache marker: the result depends on resource.path / resource.name

    def __init__(self, rules: list[MitreRule]) -> None:
        self.rules = [_Rule(r) for r in rules]
        self._states = frozenset().union(*(r.decision or {"blocked", "warned", "allowed", "none"}
                                           for r in self.rules))
        self._cache: dict[tuple[Any, ...], Any] = {}  # (guard, action, type, category, rtype, state)
        self._target_cache: dict[tuple[Any, ...], dict | None] = {}  # the same + (path, name)

    def __call__(self, event: dict) -> dict:
        if "mitre" in event:
            return event  # set by the source or an earlier pass: keep it
        d = event["decision"]
        allowed = d.get("allowed")
        guard = d.get("guard")
        event_type = event["event_type"]
        if allowed is None:
            state = "none"
        elif allowed is False:
            state = "blocked"
        else:
            state = "warned" if guard is not None or event_type == "guard_warn" else "allowed"
        if state not in self._states:
            return event
        res = event["resource"]
        key = (guard, event["action"], event_type, event["event_category"], res["type"], state)
        mitre = self._cache.get(key, self)
        if mitre is self:
            mitre = self._cache[key] = self._first(key)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
        if mitre is self._TARGET:
            path, name = res.get("path"), res["name"]
            full = (*key, path, name)
            mitre = self._target_cache.get(full, self)
            if mitre is self:
                mitre = self._target_cache[full] = self._match(key, path, name)
                if len(self._target_cache) >= _CACHE_MAX:
                    self._target_cache.clear()
        if mitre is None:
            return event
        out = dict(event)
        out["mitre"] = mitre
        return out

    def _first(self, key: tuple[Any, ...]) -> Any:
        """The result for ``key`` when it does not depend on the target, else the _TARGET marker."""
        for rule in self.rules:
            if rule.path is None and rule.resource_name is None:
                if rule.matches(key, None, ""):
                    return rule.mitre
            elif rule.matches_without_target(key):
                return self._TARGET
        return None

    def _match(self, key: tuple[Any, ...], path: str | None, name: str) -> dict | None:
        for rule in self.rules:
            if rule.matches(key, path, name):
                return rule.mitre
        return None

    def explain(self, event: dict) -> str | None:
        """The name of the rule that tags ``event`` (for tests and troubleshooting)."""
        guard = event["decision"].get("guard")
        state = _state(event["decision"].get("allowed"), guard, event["event_type"])
        res = event["resource"]
        key = (guard, event["action"], event["event_type"], event["event_category"], res["type"], state)
        for rule in self.rules:
            if rule.matches(key, res.get("path"), res["name"]):
                return rule.name
        return None


def rules_of(cfg: EnrichmentConfig) -> list[MitreRule]:
    """Inline rules, then the user's table, then the shipped table: the order they are tried in."""
    rules = list(cfg.rules)
    if cfg.table:
        rules += load_table(cfg.table)
    if cfg.defaults:
        rules += load_table(DEFAULT_TABLE)
    return rules


def compile_enricher(cfg: EnrichmentConfig | None) -> Callable[[dict], dict] | None:
    """The enricher for ``cfg``, or None when enrichment is off or has no rule."""
    if cfg is None or not cfg.mitre:
        return None
    rules = rules_of(cfg)
    if not rules:
        return None
    return Enricher(rules)
