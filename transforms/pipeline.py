"""What one output sends for one event: per-output redaction, format, field overrides, raw copy, bytes.

``build_pipeline(TransformConfig) -> Pipeline``; ``Pipeline.render(event, body) -> bytes`` where ``body``
is the canonical bytes from the spool. Order (docs/transforms.md):

1. per-output redaction (``TransformConfig.redact``) of the canonical event;
2. the format function (``FORMATS``: canonical, ecs, ocsf, cef);
3. field overrides: rename, set, include, exclude (dotted paths on the document; for cef, extension keys);
4. include_raw (ECS ``event.original``, OCSF ``raw_data``: the canonical JSON after step 1);
5. serialization: orjson with sorted keys for the JSON formats, UTF-8 for cef.

The canonical format with no option is a passthrough (``Pipeline.passthrough``): ``render`` returns
``body`` itself, so an output that needs nothing else can skip decoding events altogether.

``compile_ingest`` is the ingest-time counterpart (global ``[enrichment]`` then ``[privacy]``), applied
by ``agent.mapping`` through ``MappingContext.postprocess`` before an event is encoded and spooled.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from agent.event import encode_event
from transforms.config import (
    CefConfig,
    EnrichmentConfig,
    FieldsConfig,
    PrivacyConfig,
    TransformConfig,
)
from transforms.enrich import compile_enricher
from transforms.redact import Redactor, compile_redactor

_SORT = orjson.OPT_SORT_KEYS

CONTENT_TYPES = {"canonical": "application/json", "ecs": "application/json", "ocsf": "application/json",
                 "cef": "text/plain"}


def _canonical(event: dict) -> dict:
    return event


class _Formats(Mapping[str, Callable[..., Any]]):
    """``name -> format function``. The format modules are imported on first use, so the ingest side
    (which never formats) does not load them."""

    _WHERE = {"ecs": ("transforms.ecs", "to_ecs"), "ocsf": ("transforms.ocsf", "to_ocsf"),
              "cef": ("transforms.cef", "to_cef")}

    def __getitem__(self, name: str) -> Callable[..., Any]:
        if name == "canonical":
            return _canonical
        module, attr = self._WHERE[name]
        return getattr(importlib.import_module(module), attr)

    def __iter__(self) -> Iterator[str]:
        return iter(("canonical", *self._WHERE))

    def __len__(self) -> int:
        return 1 + len(self._WHERE)


FORMATS: Mapping[str, Callable[..., Any]] = _Formats()


# --------------------------------------------------------------------------------------------------
# Field overrides on nested documents (copy-on-write: format functions may share cached sub-objects)
# --------------------------------------------------------------------------------------------------
def _split(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


#: A dotted path compiled once: its segments and, for each level, the rest of the path joined again
#: (the literal dotted key ``_locate`` also looks for).
_Path = tuple[tuple[str, ...], tuple[str, ...]]


def _compile_path(path: str) -> _Path:
    segs = _split(path)
    return segs, tuple(".".join(segs[i:]) for i in range(len(segs)))


def _locate(doc: dict, segs: tuple[str, ...], rests: tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
    """The key path of ``segs`` in ``doc``: nested keys, or at any level a literal dotted key
    (``{"gen_ai.agent.id": ...}``). Returns (keys, found). ``rests``: ``_compile_path``'s joins."""
    node: Any = doc
    keys: list[str] = []
    last = len(segs) - 1
    for i, seg in enumerate(segs):
        if type(node) is not dict:
            return segs, False
        if i < last and rests[i] in node:
            keys.append(rests[i])
            return tuple(keys), True
        if seg not in node:
            return segs, False
        keys.append(seg)
        node = node[seg]
    return tuple(keys), True


def _get(doc: dict, keys: tuple[str, ...]) -> Any:
    node: Any = doc
    for k in keys:
        node = node[k]
    return node


def _with(doc: dict, keys: tuple[str, ...], value: Any) -> dict:
    """``doc`` with ``value`` at ``keys`` (intermediate objects created or copied, never mutated)."""
    root = dict(doc)
    node = root
    for k in keys[:-1]:
        child = node.get(k)
        child = dict(child) if type(child) is dict else {}
        node[k] = child
        node = child
    node[keys[-1]] = value
    return root


def _without(doc: dict, keys: tuple[str, ...]) -> dict:
    root = dict(doc)
    node = root
    for k in keys[:-1]:
        child = dict(node[k])
        node[k] = child
        node = child
    node.pop(keys[-1], None)
    return root


def _compile_fields(f: FieldsConfig) -> Callable[[dict], dict]:
    """``doc -> doc`` with the overrides of ``f``: rename, set, include, exclude, in that order. The
    paths are split once here, not per event."""
    renames = [(_compile_path(old), _split(new)) for old, new in f.rename.items()]
    sets = [(_compile_path(path), value) for path, value in f.set.items()]
    includes = [_compile_path(path) for path in f.include]
    excludes = [_compile_path(path) for path in f.exclude]

    def apply(doc: dict) -> dict:
        for (segs, rests), new in renames:
            keys, found = _locate(doc, segs, rests)
            if found:
                value = _get(doc, keys)
                doc = _with(_without(doc, keys), new, value)
        for (segs, rests), value in sets:
            keys, found = _locate(doc, segs, rests)
            doc = _with(doc, keys if found else segs, value)
        if includes:
            kept: dict = {}
            for segs, rests in includes:
                keys, found = _locate(doc, segs, rests)
                if found:
                    kept = _with(kept, keys, _get(doc, keys))
            doc = kept
        for segs, rests in excludes:
            keys, found = _locate(doc, segs, rests)
            if found:
                doc = _without(doc, keys)
        return doc

    return apply


# --------------------------------------------------------------------------------------------------
# Field overrides on a CEF line (extension keys)
# --------------------------------------------------------------------------------------------------
# An extension key is a dictionary token right before an unescaped '=': producers escape '=' in values
# (OpenText CEF implementation standard v27, "Character encoding"), so every bare '=' starts a pair.
_CEF_KEY = re.compile(r"(?:^| )([A-Za-z0-9_.\[\]-]+)=")
_CEF_UNESCAPE = re.compile(r"\\([\\=nr])")
_CEF_UNESCAPED = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}


def _split_cef(line: str) -> tuple[str, list[tuple[str, str]]]:
    """(header up to and including the 7th unescaped '|', [(key, unescaped value), ...])."""
    pipes, i = 0, 0
    while pipes < 7:
        j = line.find("|", i)
        if j < 0:
            raise ValueError("not a CEF line: fewer than 8 header fields")
        backslashes = len(line[:j]) - len(line[:j].rstrip("\\"))
        if backslashes % 2 == 0:
            pipes += 1
        i = j + 1
    header, ext = line[:i], line[i:]
    pairs: list[tuple[str, str]] = []
    marks = list(_CEF_KEY.finditer(ext))
    for n, m in enumerate(marks):
        end = marks[n + 1].start() if n + 1 < len(marks) else len(ext)
        raw = ext[m.end():end]
        pairs.append((m.group(1), _CEF_UNESCAPE.sub(lambda x: _CEF_UNESCAPED[x.group(1)], raw)))
    return header, pairs


def _compile_cef_fields(f: FieldsConfig) -> Callable[[str], str]:
    """``line -> line`` with the overrides of ``f`` on the extension keys (key sets built once here).
    Values are escaped with the CEF transform's own extension table (other control characters become
    spaces); it is imported here, once per pipeline, since the format modules load on first use."""
    from transforms.cef import _EXT_TABLE

    renames = list(f.rename.items())
    sets = list(f.set.items())
    keep = set(f.include) | {k + "Label" for k in f.include} if f.include else None
    drop = set(f.exclude) | {k + "Label" for k in f.exclude} if f.exclude else None

    def apply(line: str) -> str:
        header, pairs = _split_cef(line)
        for old, new in renames:
            pairs = [(new if k == old else k, v) for k, v in pairs]
        for key, value in sets:
            if any(k == key for k, _ in pairs):
                pairs = [(k, value if k == key else v) for k, v in pairs]
            else:
                pairs.append((key, value))
        if keep is not None:
            pairs = [(k, v) for k, v in pairs if k in keep]
        if drop is not None:
            pairs = [(k, v) for k, v in pairs if k not in drop]
        return header + " ".join(f"{k}={v.translate(_EXT_TABLE)}" for k, v in pairs)

    return apply


# --------------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------------
_RAW_KEY = {"ecs": ("event", "original"), "ocsf": ("raw_data",)}


@dataclass
class Pipeline:
    """Renders events for one output. ``render(event, body) -> bytes``; ``event`` may be ``{}`` when
    the drain did not decode it (the body is decoded here when the pipeline needs the event)."""

    config: TransformConfig
    format: str
    passthrough: bool
    content_type: str
    render: Callable[[dict, bytes], bytes] = field(repr=False)


def _cef_options(cfg: CefConfig) -> Any:
    from transforms.cef import CefOptions

    given = (("device_vendor", cfg.device_vendor), ("device_product", cfg.device_product),
             ("device_version", cfg.device_version))
    overrides = {k: v for k, v in given if v}
    return CefOptions(**overrides) if overrides else None


def build_pipeline(cfg: TransformConfig | None = None) -> Pipeline:
    """The renderer for ``cfg`` (``TransformConfig()``: canonical passthrough). Raises ValueError on a
    combination no format supports (include_raw with cef)."""
    cfg = cfg or TransformConfig()
    fmt = cfg.format
    if fmt not in CONTENT_TYPES:
        raise ValueError(f"format: expected one of {', '.join(CONTENT_TYPES)}, got {fmt!r}")
    if cfg.include_raw and fmt == "cef":
        raise ValueError("include_raw: not available with format 'cef' (no CEF producer key for a raw event)")
    redactor = compile_redactor(cfg.redact)
    fields = None if cfg.fields.empty else cfg.fields
    raw_key = _RAW_KEY.get(fmt) if cfg.include_raw else None
    passthrough = fmt == "canonical" and redactor is None and fields is None
    content_type = CONTENT_TYPES[fmt]

    if passthrough:
        def render(event: dict, body: bytes) -> bytes:
            return body
        return Pipeline(cfg, fmt, True, content_type, render)

    function: Callable[[dict], Any]
    if fmt == "ecs":
        # The read-only variant of FORMATS["ecs"] (same bytes): the pipeline only encodes documents,
        # and its field overrides and raw copy are copy-on-write, so cached blocks can be shared.
        from transforms.ecs import ecs_document as function
    elif fmt == "ocsf":
        function = functools.partial(FORMATS[fmt], allowed_as_activity=cfg.ocsf_allowed_as_activity)
    elif fmt == "cef":
        function = functools.partial(FORMATS[fmt], options=_cef_options(cfg.cef))
    else:
        function = FORMATS[fmt]
    loads, dumps = orjson.loads, orjson.dumps

    def canonical_event(event: dict, body: bytes) -> tuple[dict, bytes | None]:
        """The event after this output's redaction, and its canonical bytes when unchanged (None:
        encode them only where they are used, not for every redacted event)."""
        if not event:
            event = loads(body)
        if redactor is not None:
            redacted = redactor(event)
            if redacted is not event:
                return redacted, None
        return event, body

    if fmt == "cef":
        fix_line = _compile_cef_fields(fields) if fields is not None else None

        def render(event: dict, body: bytes) -> bytes:
            ev, _ = canonical_event(event, body)
            line = function(ev)
            if fix_line is not None:
                line = fix_line(line)
            return line.encode("utf-8")
        return Pipeline(cfg, fmt, False, content_type, render)

    fix = _compile_fields(fields) if fields is not None else None
    if fmt == "canonical":
        def render(event: dict, body: bytes) -> bytes:
            ev, same = canonical_event(event, body)
            if fix is None:
                return same if same is not None else encode_event(ev)
            return dumps(fix(ev), option=_SORT)
    elif fix is None and raw_key is None:
        # Only encoded: ECS has a direct encoder (same bytes, cached blocks already encoded).
        if fmt == "ecs":
            from transforms.ecs import ecs_json as encode
        else:
            def encode(ev: dict) -> bytes:
                return dumps(function(ev), option=_SORT)
        if redactor is None:
            def render(event: dict, body: bytes) -> bytes:  # the common case, kept to one line
                return encode(event or loads(body))
        else:
            def render(event: dict, body: bytes) -> bytes:
                return encode(canonical_event(event, body)[0])
    else:
        def render(event: dict, body: bytes) -> bytes:
            ev, same = canonical_event(event, body)
            doc = function(ev)
            if fix is not None:
                doc = fix(doc)
            if raw_key is not None:
                raw = same if same is not None else encode_event(ev)
                doc = _with(doc, raw_key, raw.decode("utf-8"))
            return dumps(doc, option=_SORT)

    return Pipeline(cfg, fmt, False, content_type, render)


class IngestTransform:
    """Global enrichment then global redaction, as one ``event -> event``.

    Enrichment runs first so its path rules see the real path; the ``mitre`` names it adds are never
    redacted (transforms.redact.PROTECTED). ``redact_bytes`` masks the value patterns in a raw line
    that could not be mapped, before its excerpt is quarantined in the spool.
    """

    __slots__ = ("enricher", "redactor")

    def __init__(self, redactor: Redactor | None, enricher: Callable[[dict], dict] | None) -> None:
        self.redactor = redactor
        self.enricher = enricher

    def __call__(self, event: dict) -> dict:
        if self.enricher is not None:
            event = self.enricher(event)
        if self.redactor is not None:
            event = self.redactor(event)
        return event

    def redact_text(self, text: str) -> str:
        return text if self.redactor is None else self.redactor.redact_text(text)

    def redact_bytes(self, data: bytes) -> bytes:
        if self.redactor is None:
            return data
        text = bytes(data).decode("utf-8", "surrogateescape")
        masked = self.redactor.redact_text(text)
        return data if masked == text else masked.encode("utf-8", "surrogateescape")


def compile_ingest(privacy: PrivacyConfig | None, enrichment: EnrichmentConfig | None
                   ) -> IngestTransform | None:
    """The ingest transform for ``[privacy]`` and ``[enrichment]``, or None if neither applies."""
    redactor = compile_redactor(privacy)
    enricher = compile_enricher(enrichment)
    if redactor is None and enricher is None:
        return None
    return IngestTransform(redactor, enricher)
