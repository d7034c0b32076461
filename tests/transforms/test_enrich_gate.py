"""The enricher's gated plan (one union glob before the path-only rules) tags exactly what the rules
tried one by one tag: compared with ``Enricher.explain`` (no cache, no plan) on paths that hit each
shipped rule's patterns, near misses, and the plain paths the gate exists for."""

from __future__ import annotations

import itertools

from transforms.config import EnrichmentConfig
from transforms.enrich import Enricher, _Gated, compile_enricher


def _event(action: str, path: str | None, decision: str = "blocked") -> dict:
    resource = {"type": "file", "name": path or action}
    if path is not None:
        resource["path"] = path
    return {"event_type": "forbidden_path", "event_category": "file", "action": action,
            "decision": {"allowed": decision == "allowed", "severity": "high", "guard": "forbidden_path"},
            "resource": resource}


def _paths(enricher: Enricher) -> list[str | None]:
    out: list[str | None] = [None, "", "/home/agent/project/file-1.txt", "/etc/passwdx", "x/.ssh", "README"]
    for rule in enricher.rules:
        for p in (rule.path.patterns if rule.path is not None else ()):
            core = p.strip("*")
            out += [core, "/home/u/" + core.lstrip("/"), core + "/tail", "pre" + core, core[:-1],
                    core.upper()]
    return out


def test_gated_plans_are_used_for_file_rules() -> None:
    enricher = compile_enricher(EnrichmentConfig(mitre=True))
    assert isinstance(enricher, Enricher)
    enricher(_event("file_access", "/home/agent/project/a.txt"))
    assert any(type(v) is _Gated for v in enricher._cache.values())


def test_gated_enricher_tags_what_the_rules_tag_one_by_one() -> None:
    enricher = compile_enricher(EnrichmentConfig(mitre=True))
    assert isinstance(enricher, Enricher)
    by_name = {r.name: r.mitre for r in enricher.rules}
    checked = 0
    for action, path in itertools.product(("file_access", "file_write", "patch"), _paths(enricher)):
        ev = _event(action, path)
        expected = enricher.explain(ev)
        out = enricher(ev)
        for _ in range(2):  # cold, then from the cached plan
            out = enricher(ev)
            if expected is None:
                assert out is ev
            else:
                assert out["mitre"] is by_name[expected], (action, path, expected)
                assert {k: v for k, v in out.items() if k != "mitre"} == ev
        checked += 1
    assert checked > 300
