"""Which events an output delivers, and with which route values: its filter, its routing rules, and
the rules of other outputs that send events to it.

Rules of output A (``[[outputs.A.routes]]``) apply to the events A's filter accepts, in order; the
first rule whose ``when`` matches wins:

- ``set = {index = "alerts"}`` and no ``to``: A delivers the event with ``item.route = {"index":
  "alerts"}`` (HEC and Elasticsearch read it to pick the index, sourcetype, ...);
- ``to = "B"``: A does not deliver the event; B does, whatever B's own filter says, with the rule's
  ``set`` as its route. B's own rules do not apply to it (no chains): with A -> B and B -> C, an
  event both rules match is delivered by B, not C; an event only B's rule matches goes to C.

Each output has its own drain and cursor, so "goes to B instead" is evaluated by B's drain too: the
selector of B evaluates, for each event, the rules of every output that can redirect to B (directly
or through others), upstream first, skipping the rules of an output the event was already
redirected to. An event redirected to B by A and also accepted by B itself is delivered to B once,
with the redirecting rule's values; redirected to B by two outputs, it gets the values of the one
evaluated first (upstream first, then in the order of agent.toml).

Rules are checked at load (``check_routes``): a rule's ``set`` must suit the output that receives
its events (``OutputConfig.check_route``: e.g. an index name Elasticsearch accepts), a ``to`` must
name another, enabled output (events sent to a disabled one would be delivered by nobody and never
reach the DLQ), and rules may not form a loop (A -> B -> A, directly or through other outputs, even
when their ``when``s differ), because "B's rules do not apply to what A sent it" has no consistent
meaning around a loop. Rules of a disabled output still redirect (disabling A stops A's deliveries,
not its routing decisions).
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
    """Raise ``ValueError("[outputs.A] routes[i].to: ...")`` for a rule that points nowhere, at a
    disabled output, or closes a loop."""
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
            if not outputs[rule.to].enabled:
                raise ValueError(f"{where}: output {rule.to!r} is disabled, so the events this rule "
                                 f"sends there would be delivered by nobody (enable it or remove "
                                 f"the rule)")
    for name, cfg in outputs.items():
        for i, rule in enumerate(cfg.routes):
            _check_set(name, i, rule.set, outputs[rule.to or name])
    redirect_order(outputs)


def _check_set(name: str, i: int, values: dict[str, str], receiver: OutputConfig) -> None:
    """The output that delivers a rule's events (``to``, else the rule's own) judges its ``set``."""
    if not values:
        return
    try:
        receiver.check_route(values)
    except ValueError as exc:
        raise ValueError(f"[outputs.{name}] routes[{i}].set: {exc}") from None


def _targets(cfg: OutputConfig, outputs: Mapping[str, OutputConfig]) -> list[str]:
    return list(dict.fromkeys(r.to for r in cfg.routes if r.to and r.to in outputs))


def redirect_sources(name: str, outputs: Mapping[str, OutputConfig]) -> list[str]:
    """The outputs whose rules can redirect events to ``name``."""
    return [n for n, cfg in outputs.items() if n != name and name in _targets(cfg, outputs)]


def redirect_order(outputs: Mapping[str, OutputConfig]) -> list[str]:
    """The outputs, each after every output whose rules can redirect to it (otherwise in the order
    of agent.toml); ``ValueError`` naming the rule that closes a loop."""
    preds = {n: set(redirect_sources(n, outputs)) for n in outputs}
    order: list[str] = []
    left = dict.fromkeys(outputs)
    while left:
        ready = next((n for n in left if not preds[n] & left.keys()), None)
        if ready is None:
            raise ValueError(_loop_error(outputs, set(left)))
        order.append(ready)
        del left[ready]
    return order


def _loop_error(outputs: Mapping[str, OutputConfig], stuck: set[str]) -> str:
    """Name a loop among ``stuck`` (outputs that each have a redirecting output among them): walk
    back through those until one repeats, then name the loop from its first output in agent.toml."""
    def pred(name: str) -> str:
        return next(o for o in redirect_sources(name, outputs) if o in stuck)

    back = [next(n for n in outputs if n in stuck)]
    while (p := pred(back[-1])) not in back:
        back.append(p)
    loop = back[back.index(p):][::-1]  # forward order: each output redirects to the next
    first = min(range(len(loop)), key=lambda k: list(outputs).index(loop[k]))
    loop = loop[first:] + loop[:first]
    nxt = loop[1 % len(loop)]
    i = next(i for i, r in enumerate(outputs[loop[0]].routes) if r.to == nxt)
    return (f"[outputs.{loop[0]}] routes[{i}].to: routing rules form a loop "
            f"({' -> '.join([*loop, loop[0]])}); an event redirected to an output is not redirected "
            f"again, so a loop has no consistent meaning (remove one of its rules)")


def _rules(cfg: OutputConfig) -> list[_Rule]:
    return [(compile_filter(r.when), dict(r.set) or None, r.to) for r in cfg.routes]


def _first_rule(rules: list[_Rule], ev: Event) -> _Rule | None:
    for rule in rules:
        match = rule[0]
        if match is None or match(ev):
            return rule
    return None


def _upstream(name: str, outputs: Mapping[str, OutputConfig]) -> set[str]:
    """The outputs whose rules can redirect events to ``name``, directly or through others."""
    found: set[str] = set()
    todo = [name]
    while todo:
        for other in redirect_sources(todo.pop(), outputs):
            if other != name and other not in found:
                found.add(other)
                todo.append(other)
    return found


def compile_selector(name: str, outputs: Mapping[str, OutputConfig]) -> Selector | None:
    """``selector(event) -> route dict | None | NOT_HERE`` for output ``name``, or None when the
    output takes every event as it is (then the drain need not decode events at all)."""
    cfg = outputs[name]
    accept = compile_filter(cfg.filter)
    own = _rules(cfg)
    upstream = _upstream(name, outputs)
    if accept is None and not own and not upstream:
        return None
    # Upstream first, so by the time an output's rules are evaluated, whether the event was
    # redirected to it (and so its rules do not apply) is known.
    sources = [(compile_filter(outputs[o].filter), _rules(outputs[o]), o)
               for o in redirect_order(outputs) if o in upstream]

    def select(ev: Event) -> Any:
        if sources:
            redirected: dict[str, Any] = {}  # output -> route of the first rule that sent ev there
            for src_accept, rules, src in sources:
                if src in redirected or (src_accept is not None and not src_accept(ev)):
                    continue
                rule = _first_rule(rules, ev)
                if rule is not None and rule[2] and rule[2] not in redirected:
                    redirected[rule[2]] = rule[1]
            if name in redirected:
                return redirected[name]
        if accept is not None and not accept(ev):
            return NOT_HERE
        if own:
            rule = _first_rule(own, ev)
            if rule is not None:
                return NOT_HERE if rule[2] else rule[1]
        return None

    return select
