"""Which events an output delivers, and with which route values: its filter, its routing rules, and
the rules of other outputs that send events to it.

Rules of output A (``[[outputs.A.routes]]``) apply to the events A's filter accepts, in order; the
first rule whose ``when`` matches wins:

- ``set = {index = "alerts"}`` and no ``to``: A delivers the event with ``item.route = {"index":
  "alerts"}`` (HEC and Elasticsearch read it to pick the index, sourcetype, ...);
- ``to = "B"``: A does not deliver the event; B does, whatever B's own filter says, with the rule's
  ``set`` as its route. B's own rules do not apply to it (no chains, no loops).

Each output has its own drain and cursor, so "goes to B instead" is evaluated by B's drain too: the
selector of B includes every rule that points at B. An event redirected to B by A and also accepted
by B itself is delivered to B once, with the redirecting rule's values. Rules of a disabled output
still redirect (disabling A stops A's deliveries, not its routing decisions).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from outputs.base import OutputConfig
from outputs.filters import compile_filter

#: Returned by a selector for an event this output does not deliver.
NOT_HERE: Any = object()

Event = dict[str, Any]
Selector = Callable[[Event], Any]
_Rule = tuple[Callable[[Event], bool] | None, dict[str, str] | None, str]


def check_routes(outputs: Mapping[str, OutputConfig]) -> None:
    """Raise ``ValueError("[outputs.A] routes[i].to: ...")`` for a rule that points nowhere."""
    for name, cfg in outputs.items():
        for i, rule in enumerate(cfg.routes):
            if not rule.to:
                continue
            where = f"[outputs.{name}] routes[{i}].to"
            if rule.to == name:
                raise ValueError(f"{where}: an output cannot route to itself (leave `to` empty)")
            if rule.to not in outputs:
                raise ValueError(f"{where}: unknown output {rule.to!r} "
                                 f"(known: {', '.join(sorted(outputs))})")


def _rules(cfg: OutputConfig) -> list[_Rule]:
    return [(compile_filter(r.when), dict(r.set) or None, r.to) for r in cfg.routes]


def _first_rule(rules: list[_Rule], ev: Event) -> _Rule | None:
    for rule in rules:
        match = rule[0]
        if match is None or match(ev):
            return rule
    return None


def compile_selector(name: str, outputs: Mapping[str, OutputConfig]) -> Selector | None:
    """``selector(event) -> route dict | None | NOT_HERE`` for output ``name``, or None when the
    output takes every event as it is (then the drain need not decode events at all)."""
    cfg = outputs[name]
    accept = compile_filter(cfg.filter)
    own = _rules(cfg)
    incoming: list[tuple[Callable[[Event], bool] | None, list[_Rule]]] = []
    for other, ocfg in outputs.items():
        if other != name and any(r.to == name for r in ocfg.routes):
            incoming.append((compile_filter(ocfg.filter), _rules(ocfg)))
    if accept is None and not own and not incoming:
        return None

    def select(ev: Event) -> Any:
        for src_accept, rules in incoming:
            if src_accept is None or src_accept(ev):
                rule = _first_rule(rules, ev)
                if rule is not None and rule[2] == name:
                    return rule[1]
        if accept is not None and not accept(ev):
            return NOT_HERE
        if own:
            rule = _first_rule(own, ev)
            if rule is not None:
                return NOT_HERE if rule[2] else rule[1]
        return None

    return select
