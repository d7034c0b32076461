"""Configuration of the transforms: redaction, MITRE enrichment, and each output's format options.

Plain dataclasses declared with ``agent.config_loader.doc`` like every other agent.toml section, so the
one loader checks keys and types and ``docs/configuration.md`` is generated from them. Global privacy
(``[privacy]``) and enrichment (``[enrichment]``) run at ingest, before the spool; ``TransformConfig``
(and its ``redact``) runs per output, when the drain renders an event. See docs/transforms.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from agent.config_loader import doc, secret_field
from agent.config_types import Secret

#: Value patterns shipped with the agent (``transforms.redact.BUILTIN_PATTERNS``).
BUILTIN_PATTERN_NAMES: tuple[str, ...] = ("secrets", "email", "ipv4", "ipv6")

RedactStyle = Literal["drop", "replace", "hash", "keep"]

_PATH_SEGMENT = re.compile(r"^(\*\*?|[^.*]+)$")


def check_dotted_path(path: str, what: str) -> None:
    """A dotted field path: non-empty segments; ``*`` (one segment) and ``**`` (any depth) allowed."""
    if not path or any(_PATH_SEGMENT.match(seg) is None for seg in path.split(".")):
        raise ValueError(f"{what}: expected a dotted field path such as 'metadata.principal.email' "
                         f"('*' = one segment, '**' = any depth), got {path!r}")


@dataclass
class RedactRule:
    """One redaction rule: a field path, a value pattern, or both (the pattern only inside that path)."""

    path: str = doc("Dotted canonical field path (`metadata.principal.email`, `labels.*`, `**.email`); "
                    "`*` matches one segment, `**` any depth; lists are transparent.", default="")
    pattern: str = doc("A regular expression, or a built-in name: `secrets`, `email`, `ipv4`, `ipv6`. "
                       "Only the match is masked (or its `secret` named group when it has one).",
                       default="")
    style: RedactStyle = doc("`replace` with `replacement`; `hash` = HMAC-SHA256 (stable pseudonym); "
                             "`keep` the first/last N characters around `replacement`; `drop` the field.",
                             default="replace")
    replacement: str = doc("Text that replaces a masked value.", default="[REDACTED]")
    keep_first: int = doc("style `keep`: characters kept at the start.", default=0)
    keep_last: int = doc("style `keep`: characters kept at the end.", default=0)
    hash_salt: Secret | None = secret_field(
        "style `hash`: HMAC key (*secret*, read once at start); falls back to the section's `hash_salt`. "
        "Without a key a hash of a short value (an e-mail, an IP) could be brute-forced, so `hash` "
        "requires one.", read_once=True)

    def validate(self) -> None:
        if not self.path and not self.pattern:
            raise ValueError("a rule needs a path, a pattern, or both")
        if self.path:
            check_dotted_path(self.path, "path")
        if self.pattern and self.pattern not in BUILTIN_PATTERN_NAMES:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern: invalid regular expression: {exc}") from None
        if self.keep_first < 0 or self.keep_last < 0:
            raise ValueError("keep_first/keep_last: expected 0 or more")
        if not self.replacement and self.style != "hash":
            raise ValueError("replacement: must not be empty (a masked field must stay non-empty)")


@dataclass
class RedactConfig:
    """Redaction of one output's events (per output: `[outputs.<name>.redact]`)."""

    builtin: list[str] = doc("Built-in value patterns applied everywhere with style `replace`: "
                             "`secrets`, `email`, `ipv4`, `ipv6`.", default_factory=list)
    rules: list[RedactRule] = doc("Rules (`[[...rules]]` tables), applied in order after `builtin`.",
                                  default_factory=list)
    hash_salt: Secret | None = secret_field(
        "Default HMAC key for rules with style `hash` (*secret*; read once, at start: one pseudonym per "
        "value for the whole run). A redactor built later in the run (a restarted drain, the offload "
        "helper's renderers) then keys its pseudonyms as the others do.", read_once=True)

    def validate(self) -> None:
        for name in self.builtin:
            if name not in BUILTIN_PATTERN_NAMES:
                raise ValueError(f"builtin: unknown pattern {name!r} (known: "
                                 f"{', '.join(BUILTIN_PATTERN_NAMES)})")
        for i, rule in enumerate(self.rules):
            if rule.style == "hash" and rule.hash_salt is None and self.hash_salt is None:
                raise ValueError(f"rules[{i}]: style 'hash' needs hash_salt (in the rule or the section)")

    @property
    def empty(self) -> bool:
        return not self.builtin and not self.rules


@dataclass
class PrivacyConfig(RedactConfig):
    """Redaction at ingest, before the spool: what it removes is never written to disk or sent anywhere.

    Secrets (API keys, tokens, private keys, `password=` values) are masked by default.
    """

    builtin: list[str] = doc("Built-in value patterns applied everywhere with style `replace`: "
                             "`secrets`, `email`, `ipv4`, `ipv6`. `[]` turns the default off.",
                             default_factory=lambda: ["secrets"])


@dataclass
class MitreRef:
    """A MITRE tactic or technique: id and name exactly as MITRE publishes them."""

    id: str = doc("`TA0006`, `T1552.004`, `AML.TA0005`, `AML.T0051`.", default="")
    name: str = doc("The MITRE name, e.g. `Credential Access`.", default="")

    def validate(self) -> None:
        if not self.id or not self.name:
            raise ValueError("id and name: both required")


@dataclass
class MitreRule:
    """When an event matches every condition given (each a list: any of), it gets this technique.

    Conditions left empty match anything. Rules are tried in order; the first match wins.
    """

    name: str = doc("A label for the rule (shown in errors and docs).", default="")
    guard: list[str] = doc("decision.guard values.", default_factory=list)
    action: list[str] = doc("action values (file_access, egress, shell, ...).", default_factory=list)
    event_type: list[str] = doc("event_type values.", default_factory=list)
    category: list[str] = doc("event_category values.", default_factory=list)
    resource_type: list[str] = doc("resource.type values.", default_factory=list)
    resource_name: list[str] = doc("Glob patterns (`*` also matches `/`) on resource.name.",
                                   default_factory=list)
    path: list[str] = doc("Glob patterns (`*` also matches `/`) on resource.path.",
                          default_factory=list)
    decision: list[Literal["blocked", "warned", "allowed", "none"]] = doc(
        "blocked (denied), warned (allowed with a guard), allowed (plain allow), none (no decision, "
        "e.g. a detection).", default_factory=lambda: ["blocked", "warned"])
    framework: Literal["attack", "atlas"] = doc("MITRE ATT&CK or MITRE ATLAS.", default="attack")
    tactic: MitreRef = doc("The tactic.", default_factory=MitreRef)
    technique: MitreRef = doc("The technique or sub-technique.", default_factory=MitreRef)

    def validate(self) -> None:
        from transforms.enrich import check_mitre_ids

        if not self.decision:  # it matched every state, plain allows included: not what [] reads as
            raise ValueError("decision: give at least one of blocked, warned, allowed, none "
                             "(leave it out for blocked and warned)")
        check_mitre_ids(self.framework, self.tactic.id, self.technique.id)


@dataclass
class EnrichmentConfig:
    """MITRE ATT&CK / ATLAS technique and tactic added at ingest (the event's `mitre` field).

    Environment, tenant, host and labels come from `[agent]`; this section only adds MITRE.
    """

    mitre: bool = doc("Add `mitre` to events that match a rule.", default=True)
    table: str = doc("Path to a TOML file of `[[rule]]` tables (same keys as `rules`), tried after "
                     "the inline `rules` and before the shipped table.", default="")
    defaults: bool = doc("Also use the shipped table (transforms/data/mitre.toml), last.", default=True)
    rules: list[MitreRule] = doc("Inline rules (`[[enrichment.rules]]`), tried first.",
                                 default_factory=list)


@dataclass
class CefConfig:
    """CEF header identity; empty values keep the transform's defaults."""

    device_vendor: str = doc("CEF Device Vendor (keep it fixed: parsers key on it).", default="")
    device_product: str = doc("CEF Device Product.", default="")
    device_version: str = doc("CEF Device Version.", default="")


@dataclass
class FieldsConfig:
    """Field overrides on the output document (dotted paths; for cef, extension keys)."""

    rename: dict[str, str] = doc("Old dotted path -> new dotted path.", default_factory=dict)
    set: dict[str, str] = doc("Dotted path -> constant string added to every document.",
                              default_factory=dict)
    include: list[str] = doc("Allowlist of dotted prefixes; empty keeps everything. List the fields "
                             "your SIEM requires (e.g. `@timestamp`, `class_uid`).",
                             default_factory=list)
    exclude: list[str] = doc("Denylist of dotted prefixes.", default_factory=list)

    def validate(self) -> None:
        for what, paths in (("rename", list(self.rename) + list(self.rename.values())),
                            ("set", list(self.set)), ("include", self.include), ("exclude", self.exclude)):
            for p in paths:
                if not p or any(not seg for seg in p.split(".")):
                    raise ValueError(f"{what}: expected a dotted path, got {p!r}")

    @property
    def empty(self) -> bool:
        return not (self.rename or self.set or self.include or self.exclude)


@dataclass
class TransformConfig:
    """How one output renders events: format, overrides, raw copy and per-output redaction."""

    format: Literal["canonical", "ecs", "ocsf", "cef"] = doc(
        "canonical (the spool's bytes), ecs (ECS 9.4), ocsf (OCSF 1.8) or cef (CEF 0).",
        default="canonical")
    include_raw: bool = doc("Add the canonical event as a string: ECS `event.original`, OCSF "
                            "`raw_data`. Not available for cef (no producer key fits).", default=False)
    ocsf_allowed_as_activity: bool = doc(
        "ocsf: allowed actions as their activity class (File System, Network, Process, API Activity) "
        "instead of the default.", default=False)
    cef: CefConfig = doc("cef: header identity.", default_factory=CefConfig)
    fields: FieldsConfig = doc("Renames, constants, allow/deny lists.", default_factory=FieldsConfig)
    redact: RedactConfig = doc("Redaction for this output only, on top of `[privacy]`.",
                               default_factory=RedactConfig)

    def validate(self) -> None:
        from transforms.redact import compile_redactor

        if self.include_raw and self.format == "cef":
            raise ValueError("include_raw: not available with format 'cef' (CEF has no producer key for "
                             "a raw event; rawEvent is set by ArcSight itself)")
        try:  # as [privacy] is at load: a rule naming a fixed-format field fails the drain at start
            compile_redactor(self.redact)
        except ValueError as exc:
            raise ValueError(f"redact: {exc}") from None
