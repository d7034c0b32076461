"""Property-based tests of ingest enrichment (transforms/enrich.py) and the ingest transform
(transforms/pipeline.py ``compile_ingest``), against docs/transforms.md "Enrichment: MITRE ATT&CK and
ATLAS" and "Privacy: redaction".

``[enrichment]`` only adds ``mitre`` (environment, tenant, host and labels come from ``[agent]``), so
the properties are about that contract:

1. globs: ``_Globs.match`` (the generated ``<transforms.enrich glob match>`` with its set / startswith /
   endswith / ``in`` shortcuts) answers exactly what ``fnmatch.fnmatchcase`` answers for any of its
   patterns ("``*`` also matching ``/``", case-sensitive), for random patterns and texts with hostile
   characters (``[``, ``]``, ``!``, ``?``, ``\\``, newlines, non-ASCII);
2. rule order, against an independent model: a ``RuleBasedStateMachine`` feeds events from small
   domains (so cache keys repeat and gated plans are built) to one long-lived ``Enricher`` and checks
   every answer against a first-match-wins model of the documented conditions ("each a list, any of;
   an absent one matches anything", decision states blocked / warned / allowed / none). The input is
   never mutated, a non-match returns the same object, an existing ``mitre`` is kept, and a warm
   cache answers byte-for-byte what a cold enricher answers;
3. schema and protected fields: on events mapped from hushd records, enrichment only adds ``mitre``
   (event_id, timestamp, decision untouched) and the result passes ``validate_event``;
4. enrichment then privacy (``compile_ingest``): a path rule sees the real path even when
   ``[privacy]`` masks it afterwards, the ``mitre`` value is never masked (it is PROTECTED) even when
   its names look like credentials, the secret is gone from the rest of the event, and the rule's
   shared ``mitre`` dict is not mutated by redaction; no ``[privacy]`` or per-output rule with a
   wildcard path (``*``, ``**``, ``mitre.*``...), whatever its style, changes or removes ``mitre``;
5. the table file: random valid rule lists written as ``[[rule]]`` TOML load as the same rules; any
   file content (random bytes, mutated valid tables) either loads or is refused with a ``ConfigError``
   naming the file ("a bad table is a check-config error naming the file and rule"); MITRE ids are
   accepted exactly when they have the documented shape;
6. in-agent vs helper: ``agent.offload.config_frame`` (which inlines the table file's rules for the
   offload helper) gives a config whose ingest transform produces the same bytes as the agent's.

At the end: minimal reproductions of the defects found (each fails until its fix,
/tmp/helpers/enrich/BUGS.md).
"""

from __future__ import annotations

import copy
import fnmatch
import pickle
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from agent.config import parse_config
from agent.config_loader import ConfigError
from agent.event import encode_event, validate_event
from agent.mapping import MappingContext, map_record
from transforms.config import EnrichmentConfig, MitreRef, MitreRule, PrivacyConfig
from transforms.enrich import Enricher, _Globs, check_mitre_ids, compile_enricher, load_table
from transforms.pipeline import compile_ingest

SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture],
)

CTX = MappingContext()

# --------------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------------
#: Pieces of paths and names: the shapes the shortcuts look for, glob metacharacters as literal text,
#: separators, a newline (fnmatch.translate's ``(?s:...)\Z``), non-ASCII and case variants.
PIECES = ["/", ".ssh", "id_rsa", ".pem", ".", "a", "A", "b", "ab", "etc", "cron.d", "*", "?", "[", "]",
          "!", "-", "\\", "\n", "é", "x y", "~"]
#: Pattern pieces: the same plus the metacharacters in their glob roles.
PATTERN_PIECES = [*PIECES, "*", "**", "?", "[ab]", "[!a]", "[a-c]", "[]]", "[!]", "[*]", "[?]", "[/]"]

texts = st.lists(st.sampled_from(PIECES), max_size=6).map("".join)
patterns = st.lists(st.sampled_from(PATTERN_PIECES), max_size=5).map("".join)
#: Rule patterns: the shortcut shapes (``*x*``, ``x*``, ``*x``, exact) often, so that rules match.
_short = st.lists(st.sampled_from(PIECES[:12]), min_size=1, max_size=2).map("".join)
rule_patterns = st.one_of(_short.map(lambda t: f"*{t}*"), _short.map(lambda t: f"{t}*"),
                          _short.map(lambda t: f"*{t}"), _short, patterns)


def _reference_glob(pats: list[str], text: str) -> bool:
    return any(fnmatch.fnmatchcase(text, p) for p in pats)


GUARDS = [None, "forbidden_path", "secret_leak", "egress_allowlist"]
ACTIONS = ["file_access", "file_write", "egress", "shell"]
EVENT_TYPES = ["guard_block", "guard_warn", "violation", "detection"]
CATEGORIES = ["file", "network", "process"]
RTYPES = ["file", "domain", "command"]
STATES = ["blocked", "warned", "allowed", "none"]


def _cond(values: list[Any]) -> st.SearchStrategy[list[Any]]:
    """A condition list: usually absent (matches anything), else one or two values."""
    return st.one_of(st.just([]), st.just([]), st.just([]),
                     st.lists(st.sampled_from(values), min_size=1, max_size=2, unique=True))


@st.composite
def mitre_rules(draw: st.DrawFn, i: int) -> MitreRule:
    """A valid rule with conditions from the small domains above; its technique id is unique (T1000+i)."""
    framework = draw(st.sampled_from(["attack", "atlas"]))
    pre = "" if framework == "attack" else "AML."
    return MitreRule(
        name=f"rule-{i}",
        guard=draw(_cond([g for g in GUARDS if g])),
        action=draw(_cond(ACTIONS)),
        event_type=draw(_cond(EVENT_TYPES)),
        category=draw(_cond(CATEGORIES)),
        resource_type=draw(_cond(RTYPES)),
        resource_name=draw(st.one_of(st.just([]), st.just([]), st.lists(rule_patterns, min_size=1,
                                                                        max_size=2))),
        path=draw(st.one_of(st.just([]), st.lists(rule_patterns, min_size=1, max_size=3))),
        decision=draw(st.one_of(st.just(["blocked", "warned"]), st.just(STATES),
                                st.lists(st.sampled_from(STATES), min_size=1, max_size=4, unique=True))),
        framework=framework,
        tactic=MitreRef(f"{pre}TA{draw(st.integers(0, 9999)):04d}", draw(st.text(min_size=1, max_size=8))),
        technique=MitreRef(f"{pre}T{1000 + i:04d}", draw(st.text(min_size=1, max_size=8))),
    )


@st.composite
def rule_lists(draw: st.DrawFn, max_size: int = 8) -> list[MitreRule]:
    """Rules in table order; often ending with a rule that does not look at the target (the fallback
    behind a gated plan), sometimes with only that rule's decision as a condition."""
    n = draw(st.integers(1, max_size))
    rules = [draw(mitre_rules(i)) for i in range(n)]
    if draw(st.booleans()):
        last = draw(mitre_rules(n))
        rules.append(MitreRule(**{**last.__dict__, "path": [], "resource_name": []}))
    return rules


@st.composite
def events(draw: st.DrawFn) -> dict:
    """The fields the enricher reads, from small domains (so cache keys repeat across events)."""
    allowed = draw(st.sampled_from([None, True, False]))
    guard = draw(st.sampled_from(GUARDS))
    decision: dict[str, Any] = {"severity": "high"}
    if allowed is not None:
        decision["allowed"] = allowed
    if guard is not None:
        decision["guard"] = guard
    resource: dict[str, Any] = {"type": draw(st.sampled_from(RTYPES)), "name": draw(texts)}
    path = draw(st.one_of(st.none(), texts))
    if path is not None:
        resource["path"] = path
    ev = {"event_id": "0194e1a2-7c3d-7b11-9f00-3c1d2e4f5a01",
          "event_type": draw(st.sampled_from(EVENT_TYPES)),
          "event_category": draw(st.sampled_from(CATEGORIES)), "action": draw(st.sampled_from(ACTIONS)),
          "decision": decision, "resource": resource}
    return ev


def _mitre_of(r: MitreRule) -> dict:
    return {"framework": r.framework, "tactic": {"id": r.tactic.id, "name": r.tactic.name},
            "technique": {"id": r.technique.id, "name": r.technique.name}}


def model_state(ev: dict) -> str:
    """docs/transforms.md: blocked (denied), warned (allowed with a guard, or a guard_warn event),
    allowed (plain allow), none (no decision, e.g. a detection)."""
    d = ev["decision"]
    if "allowed" not in d or d["allowed"] is None:
        return "none"
    if d["allowed"] is False:
        return "blocked"
    return "warned" if d.get("guard") is not None or ev["event_type"] == "guard_warn" else "allowed"


def model_rule(rules: list[MitreRule], ev: dict) -> MitreRule | None:
    """First rule whose every given condition holds ("each a list, any of; absent matches anything")."""
    res = ev["resource"]
    state = model_state(ev)
    for r in rules:
        if r.decision and state not in r.decision:
            continue
        if r.guard and ev["decision"].get("guard") not in r.guard:
            continue
        if r.action and ev["action"] not in r.action:
            continue
        if r.event_type and ev["event_type"] not in r.event_type:
            continue
        if r.category and ev["event_category"] not in r.category:
            continue
        if r.resource_type and res["type"] not in r.resource_type:
            continue
        if r.path and ("path" not in res or not _reference_glob(r.path, res["path"])):
            continue
        if r.resource_name and not _reference_glob(r.resource_name, res["name"]):
            continue
        return r
    return None


def model_enrich(rules: list[MitreRule], ev: dict) -> dict:
    if "mitre" in ev:
        return ev
    r = model_rule(rules, ev)
    return ev if r is None else {**ev, "mitre": _mitre_of(r)}


# --------------------------------------------------------------------------------------------------
# 1. globs
# --------------------------------------------------------------------------------------------------
@st.composite
def near(draw: st.DrawFn, pattern: str) -> str:
    """A text that ``pattern`` (read naively: ``*`` any pieces, ``?`` one character) matches or nearly
    matches: then perhaps one character swapped in case, dropped, or added at either end."""
    out = []
    for c in pattern:
        if c == "*":
            out.append(draw(texts))
        elif c == "?":
            out.append(draw(st.sampled_from(["a", "/", "\n", "]"])))
        else:
            out.append(c)
    text = "".join(out)
    how = draw(st.sampled_from(["keep", "keep", "case", "drop", "prefix", "suffix"]))
    if text and how in ("case", "drop"):
        i = draw(st.integers(0, len(text) - 1))
        text = text[:i] + (text[i].swapcase() if how == "case" else "") + text[i + 1:]
    elif how == "prefix":
        text = draw(st.sampled_from(PIECES)) + text
    elif how == "suffix":
        text += draw(st.sampled_from(PIECES))
    return text


@st.composite
def globs_and_texts(draw: st.DrawFn) -> tuple[list[str], str]:
    pats = draw(st.lists(st.one_of(rule_patterns, patterns), min_size=1, max_size=4))
    text = draw(st.one_of(texts, near(draw(st.sampled_from(pats)))))
    return pats, text


@settings(SETTINGS, max_examples=400)
@given(case=globs_and_texts())
def test_glob_match_is_fnmatchcase_of_any_pattern(case: tuple[list[str], str]) -> None:
    """The generated matcher, shortcuts and regex alike, agrees with fnmatchcase on every input."""
    pats, text = case
    assert _Globs(pats).match(text) == _reference_glob(pats, text), (pats, text)


@settings(SETTINGS, max_examples=300)
@given(pats=st.lists(st.text(min_size=0, max_size=6), min_size=1, max_size=3),
       text=st.text(max_size=10))
def test_glob_match_on_arbitrary_unicode(pats: list[str], text: str) -> None:
    """Also for any unicode pattern and text (surrogates, control characters, regex metacharacters)."""
    assert _Globs(pats).match(text) == _reference_glob(pats, text), (pats, text)


# --------------------------------------------------------------------------------------------------
# 2. rule order and the caches: a state machine against the first-match model
# --------------------------------------------------------------------------------------------------
class EnricherMachine(RuleBasedStateMachine):
    """One long-lived enricher (its plan cache warm), checked on every event against the model and,
    on replays, against a cold enricher of the same rules."""

    def __init__(self) -> None:
        super().__init__()
        self.rules: list[MitreRule] = []
        self.enricher: Enricher | None = None
        self.seen: list[dict] = []
        self.shared_before: list[dict] = []

    @initialize(rules=rule_lists())
    def build(self, rules: list[MitreRule]) -> None:
        self.rules = rules
        self.enricher = Enricher(rules)
        self.shared_before = [copy.deepcopy(r.mitre) for r in self.enricher.rules]

    def _check(self, ev: dict) -> dict:
        assert self.enricher is not None
        before = copy.deepcopy(ev)
        out = self.enricher(ev)
        assert ev == before, "the input event was mutated"
        expected = model_enrich(self.rules, ev)
        assert out == expected, (ev, self.enricher.explain(ev))
        if expected is ev:
            assert out is ev, "a non-match must return the input itself"
        else:
            # the mitre value is the matching rule's own (shared, read-only) dict
            want = model_rule(self.rules, ev)
            assert want is not None
            assert out["mitre"] is self.enricher.rules[self.rules.index(want)].mitre
            assert self.enricher.explain(ev) == want.name
        return out

    @rule(ev=events())
    def enrich(self, ev: dict) -> None:
        self._check(ev)
        self.seen.append(ev)

    @rule(ev=events(), n=st.integers(0, 4))
    def same_key_other_target(self, ev: dict, n: int) -> None:
        """An event sharing the cache key of a seen one but with another path / name."""
        if self.seen:
            base = self.seen[n % len(self.seen)]
            other = {**base, "resource": {**base["resource"], "name": ev["resource"]["name"]}}
            if "path" in ev["resource"]:
                other["resource"]["path"] = ev["resource"]["path"]
            else:
                other["resource"].pop("path", None)
            self._check(other)
            self.seen.append(other)

    @rule(n=st.integers(0, 50))
    def replay_warm_equals_cold(self, n: int) -> None:
        if self.seen:
            ev = self.seen[n % len(self.seen)]
            warm = self._check(ev)
            cold = Enricher(self.rules)(ev)
            assert orjson.dumps(warm) == orjson.dumps(cold)

    @rule(n=st.integers(0, 50), technique=st.sampled_from(["T1078", "AML.T0051"]))
    def an_existing_mitre_is_kept(self, n: int, technique: str) -> None:
        if self.seen:
            ev = {**self.seen[n % len(self.seen)],
                  "mitre": {"framework": "attack", "tactic": {"id": "TA0001", "name": "Initial Access"},
                            "technique": {"id": technique, "name": "Valid Accounts"}}}
            assert self._check(ev) is ev

    @invariant()
    def shared_mitre_values_unchanged(self) -> None:
        if self.enricher is not None:
            assert [r.mitre for r in self.enricher.rules] == self.shared_before


EnricherMachine.TestCase.settings = settings(SETTINGS, max_examples=60, stateful_step_count=30)
TestEnricherStateMachine = EnricherMachine.TestCase


# --------------------------------------------------------------------------------------------------
# 3. schema and protected fields, on mapped events, with the shipped table after the random rules
# --------------------------------------------------------------------------------------------------
@st.composite
def hushd_records(draw: st.DrawFn) -> dict:
    action = draw(st.sampled_from(["file_access", "file_write", "patch", "egress", "shell", "mcp_tool"]))
    target = draw(st.sampled_from(["/home/a/.ssh/id_rsa", "/etc/shadow", "/srv/app.py", "x.example:443",
                                   "rm -rf /", "/home/a/.aws/credentials", "/etc/cron.d/job"]))
    decision = draw(st.sampled_from(["blocked", "allowed"]))
    rec = {"id": "0194e1a2-7c3d-7b11-9f00-3c1d2e4f5a01", "timestamp": "2026-02-07T09:30:12.481Z",
           "event_type": draw(st.sampled_from(["violation", "check"])), "action_type": action,
           "target": target + draw(texts.filter(lambda t: "\n" not in t)), "decision": decision,
           "severity": "Error" if decision == "blocked" else draw(st.sampled_from(["Info", "Warning"]))}
    guard = draw(st.sampled_from(GUARDS))
    if guard is not None:
        rec["guard"] = guard
    return rec


@settings(SETTINGS, max_examples=80)
@given(rec=hushd_records(), rules=rule_lists(4), defaults=st.booleans())
def test_enrichment_only_adds_a_valid_mitre(rec: dict, rules: list[MitreRule], defaults: bool) -> None:
    ev = map_record(rec, context=CTX)
    enricher = compile_enricher(EnrichmentConfig(rules=rules, defaults=defaults))
    assert enricher is not None
    before = copy.deepcopy(ev)
    out = enricher(ev)
    assert ev == before
    validate_event(out)
    assert {k: v for k, v in out.items() if k != "mitre"} == ev  # event_id, timestamp, decision...
    if not defaults:
        assert out == model_enrich(rules, ev)


# --------------------------------------------------------------------------------------------------
# 4. enrichment, then privacy
# --------------------------------------------------------------------------------------------------
SECRETS = ["AKIAIOSFODNN7EXAMPLE", "ghp_" + "A1b2C3d4E5" * 3 + "F6g7H8",
           "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"]


@settings(SETTINGS, max_examples=60)
@given(secret=st.sampled_from(SECRETS), action=st.sampled_from(["file_access", "file_write"]),
       prefix=st.sampled_from(["/tmp/", "/home/a/.ssh/", "/srv/"]), name_secret=st.booleans())
def test_path_rules_see_the_real_path_and_mitre_is_never_masked(secret: str, action: str, prefix: str,
                                                                name_secret: bool) -> None:
    tactic_name = f"password={secret}" if name_secret else "Credential Access"
    mine = MitreRule(name="secret-path", path=[f"*{secret}*"], tactic=MitreRef("TA0006", tactic_name),
                     technique=MitreRef("T1552.001", f"token: {secret}" if name_secret else "Files"))
    ingest = compile_ingest(PrivacyConfig(), EnrichmentConfig(rules=[mine]))
    assert ingest is not None and ingest.enricher is not None
    shared = copy.deepcopy(ingest.enricher.rules[0].mitre)
    rec = {"id": "0194e1a2-7c3d-7b11-9f00-3c1d2e4f5a01", "timestamp": "2026-02-07T09:30:12.481Z",
           "event_type": "violation", "action_type": action, "target": f"{prefix}{secret}/x",
           "decision": "blocked", "guard": "forbidden_path", "severity": "Error"}
    ev = map_record(rec, context=CTX)
    out = ingest(ev)
    validate_event(out)
    assert out["mitre"] == _mitre_of(mine), "enrichment must see the path before [privacy] masks it"
    rest = orjson.dumps({k: v for k, v in out.items() if k != "mitre"})
    assert secret.encode() not in rest, "the secret must still be masked outside mitre"
    assert ingest.enricher.rules[0].mitre == shared, "redaction mutated the rule's shared mitre value"


#: Wildcard rule paths ("`*`/`**` skip them") that reach the mitre object or its parts, and a few that
#: reach only free-form fields.
WILDCARDS = ["*", "**", "mitre.*", "mitre.**", "*.tactic", "*.*", "*.*.name", "**.name", "**.id",
             "resource.*", "**.path"]
SALT = "0123456789abcdef0123"


@settings(SETTINGS, max_examples=60)
@given(paths=st.lists(st.sampled_from(WILDCARDS), min_size=1, max_size=3),
       style=st.sampled_from(["replace", "drop", "keep", "hash"]), per_output=st.booleans(),
       builtin=st.lists(st.sampled_from(["secrets", "email", "ipv4", "ipv6"]), unique=True))
def test_no_privacy_rule_changes_or_removes_mitre(paths: list[str], style: str, per_output: bool,
                                                  builtin: list[str]) -> None:
    """docs/transforms.md: ``mitre`` is never masked, naming it is an error and ``*``/``**`` skip it;
    whatever the style (``drop`` included), at ingest or per output, it stays as enrichment set it."""
    from agent.config_types import Secret
    from transforms.config import RedactRule, TransformConfig
    from transforms.pipeline import build_pipeline

    mine = MitreRule(name="any-path", path=["*"], tactic=MitreRef("TA0006", "Credential Access"),
                     technique=MitreRef("T1552.001", "Unsecured Credentials: Credentials In Files"))
    rules = [RedactRule(path=p, style=style, keep_last=2, hash_salt=Secret.parse(SALT, {})) for p in paths]
    rec = {"id": "0194e1a2-7c3d-7b11-9f00-3c1d2e4f5a01", "timestamp": "2026-02-07T09:30:12.481Z",
           "event_type": "violation", "action_type": "file_access", "target": "/srv/Credential Access",
           "decision": "blocked", "guard": "forbidden_path", "severity": "Error"}
    privacy = PrivacyConfig(rules=rules, builtin=builtin)
    if per_output:
        ingest = compile_ingest(PrivacyConfig(builtin=[]), EnrichmentConfig(rules=[mine], defaults=False))
        assert ingest is not None
        spooled = ingest(map_record(rec, context=CTX))
        render = build_pipeline(TransformConfig(redact=privacy)).render
        out = orjson.loads(render(spooled, encode_event(spooled)))
    else:
        ingest = compile_ingest(privacy, EnrichmentConfig(rules=[mine], defaults=False))
        assert ingest is not None
        out = ingest(map_record(rec, context=CTX))
    validate_event(out)
    assert out.get("mitre") == _mitre_of(mine), (paths, style)


# --------------------------------------------------------------------------------------------------
# 5. the table file
# --------------------------------------------------------------------------------------------------
def _toml_str(s: str) -> str:
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _toml_list(xs: list[str]) -> str:
    return "[" + ", ".join(_toml_str(x) for x in xs) + "]"


def table_text(rules: list[MitreRule]) -> str:
    """``rules`` as a table file of ``[[rule]]`` tables (every key written)."""
    parts = ["version = 1"]
    for r in rules:
        parts.append("[[rule]]")
        parts.append(f"name = {_toml_str(r.name)}")
        for key in ("guard", "action", "event_type", "category", "resource_type", "resource_name", "path",
                    "decision"):
            parts.append(f"{key} = {_toml_list(getattr(r, key))}")
        parts.append(f"framework = {_toml_str(r.framework)}")
        parts.append(f"tactic = {{ id = {_toml_str(r.tactic.id)}, name = {_toml_str(r.tactic.name)} }}")
        parts.append(f"technique = {{ id = {_toml_str(r.technique.id)}, "
                     f"name = {_toml_str(r.technique.name)} }}")
    return "\n".join(parts) + "\n"


def _no_dollar(r: MitreRule) -> bool:
    # '${' is environment expansion in every config string (docs/configuration.md); kept out here.
    return "$" not in repr(r)


@settings(SETTINGS, max_examples=50)
@given(rules=rule_lists(5).filter(lambda rs: all(map(_no_dollar, rs))), evs=st.lists(events(), max_size=8))
def test_a_table_file_loads_as_the_rules_it_spells(tmp_path_factory: pytest.TempPathFactory,
                                                   rules: list[MitreRule], evs: list[dict]) -> None:
    path = tmp_path_factory.mktemp("table") / "mine.toml"
    path.write_text(table_text(rules), encoding="utf-8")
    assert load_table(path) == rules
    from_file = compile_enricher(EnrichmentConfig(table=str(path), defaults=False))
    inline = compile_enricher(EnrichmentConfig(rules=rules, defaults=False))
    assert from_file is not None and inline is not None
    for ev in evs:
        assert from_file(ev) == inline(ev) == model_enrich(rules, ev)


def _mutations() -> st.SearchStrategy[bytes]:
    valid = table_text([MitreRule(name="x", guard=["g"], path=["/etc/*"], tactic=MitreRef("TA0006", "C"),
                                  technique=MitreRef("T1005", "D"))]).encode()
    cut = st.integers(0, len(valid))
    # UTF-8 only: a file that is not UTF-8 is test_bug_a_non_utf8_table_file_is_a_config_error_naming_the_file
    return st.one_of(
        st.binary(max_size=64),
        st.text(max_size=64).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.tuples(cut, cut, st.binary(max_size=8)).map(lambda t: valid[:t[0]] + t[2] + valid[t[1]:]),
    ).map(lambda b: b.decode("utf-8", "replace").encode("utf-8"))


@settings(SETTINGS, max_examples=200)
@given(body=_mutations())
def test_any_table_file_loads_or_is_refused_naming_the_file(tmp_path_factory: pytest.TempPathFactory,
                                                             body: bytes) -> None:
    """Never another exception (UnicodeDecodeError, TypeError...): check-config must name the file."""
    path = tmp_path_factory.mktemp("table") / "bad.toml"
    path.write_bytes(body)
    try:
        rules = load_table(path)
    except ConfigError as exc:
        assert str(exc).startswith(str(path)), exc
    else:
        assert all(isinstance(r, MitreRule) for r in rules)


_SHAPES = {("attack", "tactic"): r"TA[0-9]{4}", ("attack", "technique"): r"T[0-9]{4}(\.[0-9]{3})?",
           ("atlas", "tactic"): r"AML\.TA[0-9]{4}", ("atlas", "technique"): r"AML\.T[0-9]{4}(\.[0-9]{3})?"}
#: \u0661 is an Arabic-Indic digit one: a digit to ``\d``, not to ``[0-9]``.
_ID_PIECES = ["T", "A", "TA", "AML.", "0", "1", "5", "9", ".", "\n", " ", "x", "\u0661"]


_GOOD = {("attack", "tactic"): ["TA0006"], ("attack", "technique"): ["T1552", "T1552.004"],
         ("atlas", "tactic"): ["AML.TA0005"], ("atlas", "technique"): ["AML.T0051", "AML.T0051.001"]}


@st.composite
def id_cases(draw: st.DrawFn) -> tuple[str, str, str]:
    """(framework, tactic or technique, a value): random pieces, or a well-formed id of that kind
    (or of another kind) with a few pieces added before or after it."""
    framework = draw(st.sampled_from(["attack", "atlas"]))
    which = draw(st.sampled_from(["tactic", "technique"]))
    if draw(st.booleans()):
        return framework, which, "".join(draw(st.lists(st.sampled_from(_ID_PIECES), max_size=8)))
    pieces = st.one_of(st.sampled_from(["", "", "\n", "\r\n", " ", "0", ".0"]),
                       st.lists(st.sampled_from(_ID_PIECES), max_size=2).map("".join))
    own = _GOOD[framework, which]
    shape = draw(st.sampled_from(own if draw(st.booleans()) else [x for v in _GOOD.values() for x in v]))
    return framework, which, draw(pieces) + shape + draw(pieces)


@settings(SETTINGS, max_examples=250)
@given(case=id_cases())
def test_mitre_ids_are_accepted_exactly_when_they_have_the_documented_shape(case: tuple[str, str, str]
                                                                            ) -> None:
    """Each id on its own (the other one well-formed): accepted iff it is the whole of its shape."""
    framework, which, value = case
    good = re.fullmatch(_SHAPES[framework, which], value, re.ASCII) is not None
    tactic = value if which == "tactic" else _GOOD[framework, "tactic"][0]
    technique = value if which == "technique" else _GOOD[framework, "technique"][0]
    try:
        check_mitre_ids(framework, tactic, technique)
    except ValueError as exc:
        assert not good, (which, value)
        assert f"{which}.id" in str(exc)
    else:
        assert good, (which, value)


# --------------------------------------------------------------------------------------------------
# 6. in-agent vs offload helper config
# --------------------------------------------------------------------------------------------------
_BASE = '[inputs.a]\ntype = "file"\npaths = ["/tmp/x.jsonl"]\n[outputs.o]\ntype = "stdout"\n'


@settings(SETTINGS, max_examples=15)
@given(inline=rule_lists(3).filter(lambda rs: all(map(_no_dollar, rs))),
       table=rule_lists(3).filter(lambda rs: all(map(_no_dollar, rs))), defaults=st.booleans(),
       recs=st.lists(hushd_records(), min_size=1, max_size=6))
def test_the_helper_config_enriches_like_the_agent(tmp_path_factory: pytest.TempPathFactory,
                                                   inline: list[MitreRule], table: list[MitreRule],
                                                   defaults: bool, recs: list[dict]) -> None:
    from agent.offload import _LEN, config_frame

    path = tmp_path_factory.mktemp("table") / "t.toml"
    path.write_text(table_text(table), encoding="utf-8")
    inline_toml = table_text(inline).replace("version = 1\n", "").replace("[[rule]]", "[[enrichment.rules]]")
    cfg = parse_config(f"[enrichment]\ntable = {_toml_str(str(path))}\ndefaults = {str(defaults).lower()}\n"
                       f"{_BASE}{inline_toml}")
    frame = config_frame(cfg)
    helper_cfg = pickle.loads(frame[_LEN.size:])
    assert _LEN.unpack(frame[:_LEN.size])[0] == len(frame) - _LEN.size
    agent_ctx, helper_ctx = cfg.mapping_context(), helper_cfg.mapping_context()
    for rec in recs:
        a = encode_event(map_record(rec, context=agent_ctx))
        b = encode_event(map_record(rec, context=helper_ctx))
        assert a == b


# --------------------------------------------------------------------------------------------------
# Minimal reproductions of the defects found (each fails until its fix; /tmp/helpers/enrich/BUGS.md)
# --------------------------------------------------------------------------------------------------
def test_bug_a_non_utf8_table_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    """load_table lets UnicodeDecodeError out; check-config then reports it without the file's name."""
    path = tmp_path / "latin1.toml"
    path.write_bytes('[[rule]]\nname = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_table(path)
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        parse_config(f'[enrichment]\ntable = "{path}"\n{_BASE}')


def test_bug_a_mitre_id_with_a_trailing_newline_is_refused() -> None:
    """``$`` also matches before a final newline: "TA0006\\n" passed the id check and reached events."""
    with pytest.raises(ValueError, match=r"tactic\.id"):
        check_mitre_ids("attack", "TA0006\n", "T1005")
    with pytest.raises(ValueError, match=r"technique\.id"):
        check_mitre_ids("atlas", "AML.TA0005", "AML.T0051\n")


def test_bug_a_wildcard_drop_rule_removes_mitre() -> None:
    """``[[privacy.rules]] path = "**", style = "drop"`` (or ``*``, ``mitre.*``) removed ``mitre``:
    the path rule drops a matched object without the PROTECTED check its leaves get."""
    from transforms.config import RedactRule

    mine = MitreRule(name="any-path", path=["*"], tactic=MitreRef("TA0006", "Credential Access"),
                     technique=MitreRef("T1005", "Data from Local System"))
    rec = {"id": "0194e1a2-7c3d-7b11-9f00-3c1d2e4f5a01", "timestamp": "2026-02-07T09:30:12.481Z",
           "event_type": "violation", "action_type": "file_access", "target": "/srv/x",
           "decision": "blocked", "guard": "forbidden_path", "severity": "Error"}
    for path in ("**", "*", "mitre.*"):
        ingest = compile_ingest(PrivacyConfig(rules=[RedactRule(path=path, style="drop")], builtin=[]),
                                EnrichmentConfig(rules=[mine], defaults=False))
        assert ingest is not None
        assert ingest(map_record(rec, context=CTX)).get("mitre") == _mitre_of(mine), path
