"""Elasticsearch's ``filter_path`` response filtering, for the Elasticsearch mock.

The contract ("Response Filtering" in Elasticsearch's API common options,
elastic.co/docs/reference/elasticsearch/rest-apis/common-options):

- every REST API accepts ``filter_path``: a comma-separated list of filters in dot notation
  (``took,hits.hits._id``);
- ``*`` in a segment matches any field name or part of one (``nodes.*.host*``); ``**`` matches any
  number of levels (``indices.**.version``);
- a filter starting with ``-`` excludes; inclusive and exclusive filters may be combined, and the
  exclusive ones apply first;
- arrays are transparent: a filter applies to each element; objects and arrays that no filter leaves
  anything in are dropped, and a response with nothing left is ``{}``.

Only successful responses are filtered: Elasticsearch renders an error response outside the filtered
builder (Logstash, which always sends ``filter_path=errors,items.*.error,items.*.status``, logs the
whole error body of a failed ``_bulk``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

#: What a filter leaves of a value it removes entirely (distinct from ``None``, a JSON null).
EMPTY: Any = type("Empty", (), {"__repr__": lambda self: "EMPTY"})()

#: A filter segment: a field name, a compiled pattern for one with ``*``, ``*`` itself or ``**``.
Segment = str | re.Pattern[str]
Filter = tuple[Segment, ...]
Filters = tuple[Filter, ...]
_ANY_NAME = "*"
_ANY_DEPTH = "**"


def _segment(text: str) -> Segment:
    if text in (_ANY_NAME, _ANY_DEPTH) or "*" not in text:
        return text
    return re.compile(".*".join(re.escape(part) for part in text.split("*")), re.DOTALL)


def parse(value: str) -> tuple[Filters, Filters]:
    """(inclusive, exclusive) filters of a ``filter_path`` value; empty entries are ignored."""
    include: list[Filter] = []
    exclude: list[Filter] = []
    for raw in value.split(","):
        raw = raw.strip()
        negative = raw.startswith("-")
        raw = raw[1:] if negative else raw
        if not raw:
            continue
        (exclude if negative else include).append(tuple(_segment(s) for s in raw.split(".")))
    return tuple(dict.fromkeys(include)), tuple(dict.fromkeys(exclude))


def _advance(f: Filter, key: str) -> list[Filter]:
    """What is left of filter ``f`` below ``key``: nothing (no match), ``()`` (``key`` matched the
    whole filter), or the remaining segments (``**`` may also stay, or match no level at all)."""
    if not f:
        return [()]
    head = f[0]
    if head == _ANY_DEPTH:
        return [f, *_advance(f[1:], key)]
    plain = type(head) is str
    matched = head in (_ANY_NAME, key) if plain else head.fullmatch(key) is not None
    return [f[1:]] if matched else []


# The walk's decisions depend only on the filters left and a key, and a response repeats both (every
# item of a _bulk answer): they are computed once. Bounded: keys can be data (node ids, index names).
@functools.lru_cache(maxsize=4096)
def _below(filters: Filters, key: str) -> Filters:
    return tuple(dict.fromkeys(rest for f in filters for rest in _advance(f, key)))


def _identity(node: Any) -> Any:
    return node


def _nothing(node: Any) -> Any:
    return EMPTY


@functools.lru_cache(maxsize=1024)
def _include_fn(filters: Filters) -> Callable[[Any], Any]:
    """``node -> what the inclusive filters keep of it`` (or EMPTY), built once per set of filters
    left, with the functions of the levels below bound in: a _bulk answer walks the same few for each
    of its items."""
    if not filters:
        return _nothing
    if () in filters:
        return _identity
    heads = [f[0] for f in filters]
    names = tuple(dict.fromkeys(h for h in heads if type(h) is str))
    if all(type(h) is str and h not in (_ANY_NAME, _ANY_DEPTH) for h in heads):
        if all(len(f) == 1 for f in filters):  # e.g. items.*.status at the item: a lookup per name

            def on_dict(node: dict) -> Any:
                return {k: node[k] for k in names if k in node} or EMPTY
        else:
            below = {k: _include_fn(_below(filters, k)) for k in names}

            def on_dict(node: dict) -> Any:
                out = {}
                for k, child in below.items():
                    if k in node:
                        kept = child(node[k])
                        if kept is not EMPTY:
                            out[k] = kept
                return out or EMPTY
    elif all(h == _ANY_NAME for h in heads):  # e.g. a _bulk item's action name: the same below any key
        rest = tuple(dict.fromkeys(f[1:] for f in filters))
        child = _include_fn(rest)
        # ... and below it only names (items.*.status): looked up here, a call less per level
        leaf_names = (tuple(dict.fromkeys(f[0] for f in rest)) if all(
            len(f) == 1 and type(f[0]) is str and f[0] not in (_ANY_NAME, _ANY_DEPTH) for f in rest)
            else None)

        def on_dict(node: dict) -> Any:
            out = {}
            for k, v in node.items():
                if leaf_names is not None and type(v) is dict:
                    kept = {n: v[n] for n in leaf_names if n in v} or EMPTY
                else:
                    kept = child(v)
                if kept is not EMPTY:
                    out[k] = kept
            return out or EMPTY
    else:

        def on_dict(node: dict) -> Any:
            out = {}
            for k, v in node.items():
                kept = _include_fn(_below(filters, k))(v)
                if kept is not EMPTY:
                    out[k] = kept
            return out or EMPTY

    def include(node: Any) -> Any:
        if type(node) is dict:
            return on_dict(node)
        if type(node) is list:
            return _each(include, node)
        return EMPTY  # a value where the filter goes deeper

    return include


def _each(fn: Callable[[Any], Any], node: list[Any]) -> Any:
    """``fn`` over a list's elements, EMPTY ones dropped. An element that is the same object as the
    one before it takes that one's result (``fn`` is a pure function of the element): the
    Elasticsearch mock's lean ``_bulk`` answer repeats one item object for every like result."""
    out = []
    last: Any = _each  # no element is this function
    kept: Any = EMPTY
    for x in node:
        if x is not last:
            last, kept = x, fn(x)
        if kept is not EMPTY:
            out.append(kept)
    return out or EMPTY


def _exclude(node: Any, filters: Filters) -> Any:
    if () in filters:
        return EMPTY
    if type(node) is dict:
        out = {}
        for key, value in node.items():
            below = _below(filters, key)
            kept = _exclude(value, below) if below else value
            if kept is not EMPTY:
                out[key] = kept
        return out or EMPTY
    if type(node) is list:
        kept_items = [k for k in (_exclude(x, filters) for x in node) if k is not EMPTY]
        return kept_items or EMPTY
    return node


@functools.lru_cache(maxsize=64)
def compile_filter(value: str) -> Callable[[Any], Any]:
    """``filter(response_object) -> filtered object`` for one ``filter_path`` value (``{}`` when
    nothing is left, as Elasticsearch answers)."""
    include, exclude = parse(value)

    def apply(doc: Any) -> Any:
        if exclude:
            doc = _exclude(doc, exclude)
        if include and doc is not EMPTY:
            doc = _include_fn(include)(doc)
        return {} if doc is EMPTY else doc

    return apply
