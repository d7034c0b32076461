"""Redaction of canonical events: by field path and by value pattern, with every copy of a value masked.

``compile_redactor(cfg)`` returns ``None`` when there is nothing to do (the hot path pays nothing), else
a ``Redactor``: ``redactor(event) -> event``. The input is never mutated; when nothing matched, the very
same dict comes back (no copy).

Order inside one call: path rules, then value patterns (built-in and user), then **every copy**: each
original value a rule masked is also masked wherever else it occurs in the event, as a whole field
(``resource.path`` == ``threat.indicator.value``) or inside a longer string (``decision.reason``,
metadata text). hushd's own privacy transform missed exactly that (reference clawdstrike-events.md
§1.6: "Redacting resource.path does not redact the identical threat.indicator.value").

The result stays a valid SecurityEvent: fields whose shape is fixed (ids, timestamps, enums, policy
hash, booleans) are never touched, a masked value is a non-empty string, ``drop`` on a field the schema
requires removes its closest optional parent object instead (``agent.id`` -> ``agent``,
``threat.indicator.value`` -> ``threat``) or, with none, replaces the value, and IP-typed copies
(``resource.ip``, an IP ``threat.indicator``) that were masked are removed because a mask is not an IP.

Speed: events are checked first, without copying, against a cache of strings already known clean, so
a stream whose strings repeat costs one dict lookup per string; only a string not seen before is run
through the patterns. See docs/transforms.md for the built-in patterns and their sources.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from agent.event import ANY_OBJECT, BOOLEAN, ENUM, FIELDS, INTEGER, LABELS, OBJECT, STRING, Field
from transforms.config import RedactConfig, RedactRule

# --------------------------------------------------------------------------------------------------
# Built-in value patterns
# --------------------------------------------------------------------------------------------------
# Token formats as their issuers document them: AWS access key ids (AKIA long-term / ASIA temporary,
# 20 chars), GitHub tokens (ghp_/gho_/ghu_/ghs_/ghr_ + 36, fine-grained github_pat_), Slack
# (xoxb-/xoxp-/xoxa-/xoxr-), Stripe secret and restricted keys (sk_/rk_ live and test), Google API keys
# (AIza + 35), OpenAI/Anthropic style sk-..., JWTs (three base64url parts, header and payload starting
# "eyJ" = '{"'), PEM private key blocks, URL userinfo passwords, and key=value / key: value assignments
# whose key names a credential (only the value is masked).
_CREDENTIAL_WORD = (r"(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|"
                    r"private[_-]?key|client[_-]?secret|auth[_-]?token|authorization|credentials?)")
_SECRET_REGEXES: tuple[str, ...] = (
    r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])",
    r"(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36,255}(?![A-Za-z0-9_])",
    r"(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{22,255}",
    r"(?<![A-Za-z0-9])xox[abpr]-[A-Za-z0-9-]{10,}",
    r"(?<![A-Za-z0-9])[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",
    r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_\-]{35}(?![0-9A-Za-z_\-])",
    r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{20,}",
    r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}",
    r"-----BEGIN[A-Z ]{0,40} PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END[A-Z ]{0,40} PRIVATE KEY"
    r"(?: BLOCK)?-----|\Z)",
    r"[A-Za-z][A-Za-z0-9+.\-]{0,30}://[^/\s:@]{1,256}:(?P<secret>[^/\s@]{1,256})@",
    r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9\-._~+/]{8,}=*)",
    # A UUID after the key is an identifier (hushd's policy actor "api_key:<key id>"), not the secret.
    # The quotes may be JSON-escaped (\"key\": \"value\"): a JSON document in a string, as the raw line of a
    # quarantined record holds it; the value then ends before the escaped quote.
    r"(?i)" + _CREDENTIAL_WORD + r"(?:\\?[\"'])?\s{0,8}[:=]\s{0,8}(?:\\?[\"'])?"
    r"(?:(?:bearer|basic|token|digest)\s+)?"
    r"(?![0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![0-9a-z]))"
    r"(?P<secret>(?:[^\s\"',;&\\]|\\(?![\"']))+)",
)
#: A metadata key naming a credential: its whole (string) value is masked by the ``secrets`` pattern.
CREDENTIAL_KEY = re.compile(r"(?i)" + _CREDENTIAL_WORD + r"$")

_EMAIL = (r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63})*"
          r"\.[A-Za-z]{2,63}")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = r"(?<![0-9.])" + _OCTET + r"(?:\." + _OCTET + r"){3}(?![0-9])(?!\.[0-9])"
# Candidates only; each is confirmed with ipaddress (times such as 08:28:51 are not addresses).
_IPV6 = (r"(?<![0-9A-Fa-f:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|" + _OCTET + r"(?:\." + _OCTET
         + r"){3})?(?![0-9A-Fa-f:])")


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    confirm: Callable[[str], bool] | None = None  # extra check of a whole match (ipv6)

    def has_match(self, s: str) -> bool:
        if self.confirm is None:
            return self.regex.search(s) is not None
        return any(self.confirm(m.group(0)) for m in self.regex.finditer(s))


BUILTIN_PATTERNS: dict[str, tuple[_Pattern, ...]] = {
    "secrets": tuple(_Pattern(re.compile(r)) for r in _SECRET_REGEXES),
    "email": (_Pattern(re.compile(_EMAIL)),),
    "ipv4": (_Pattern(re.compile(_IPV4)),),
    "ipv6": (_Pattern(re.compile(_IPV6), _is_ipv6),),
}

# Substrings one of which every match of a built-in set contains (in the lowercased string): a string
# with none of them cannot match, and a few ``in`` tests cost far less than the regexes (Python's re
# tries a many-branch alternation at every position, ~10 us for a 36-character UUID).
_SECRET_ANCHORS = ("akia", "asia", "gh", "github_pat_", "xox", "_live_", "_test_", "aiza", "sk-", "eyj",
                   "private", "://", "bearer", "pass", "pwd", "secret", "token", "key", "auth", "credential")


_HEX_ID = "0123456789abcdefABCDEF-"  # UUIDs, hashes: no secret pattern matches these characters alone


def _compile_may_hold_secret() -> Callable[[str], bool]:
    """``_may_hold_secret(s)``: False when ``s`` is only hex/dashes or holds none of _SECRET_ANCHORS.

    Generated as one ``or`` chain of ``in`` tests: half the cost of a loop over the anchors (no
    iterator, no per-anchor store/load), and it is on the hot path for every string not seen before.
    """
    tests = " or ".join(f"{a!r} in low" for a in _SECRET_ANCHORS)
    source = ("def _may_hold_secret(s):\n    if not s.strip(HEX):\n        return False\n"
              f"    low = s.lower()\n    return {tests}\n")
    namespace: dict[str, Any] = {"HEX": _HEX_ID}
    exec(compile(source, "<transforms.redact secrets prefilter>", "exec"), namespace)
    return namespace["_may_hold_secret"]


_may_hold_secret = _compile_may_hold_secret()

# Every IPv4 match holds an octet's last digit, a dot and the next octet's first digit (ASCII digits:
# the pattern's [0-9]): one scan for that skips the full pattern (a lookbehind and a four-branch
# alternation tried at every position, ~2 us on a file path) on paths and texts with dots but no IP.
_DIGIT_DOT_DIGIT = re.compile(r"[0-9]\.[0-9]").search


def _may_hold_ipv4(s: str) -> bool:
    return "." in s and _DIGIT_DOT_DIGIT(s) is not None


BUILTIN_PREFILTERS: dict[str, Callable[[str], bool]] = {
    "secrets": _may_hold_secret,
    "email": lambda s: "@" in s,
    "ipv4": _may_hold_ipv4,
    "ipv6": lambda s: ":" in s,
}

# --------------------------------------------------------------------------------------------------
# What the schema allows: built once from agent.event.FIELDS
# --------------------------------------------------------------------------------------------------
Path = tuple[str, ...]


def _index(fields: tuple[Field, ...], prefix: Path, out: dict[Path, Field]) -> dict[Path, Field]:
    for f in fields:
        out[(*prefix, f.name)] = f
        _index(f.children, (*prefix, f.name), out)
    return out


SCHEMA: dict[Path, Field] = _index(FIELDS, (), {})
#: Fixed-shape fields: never masked (ids, timestamps, enums, booleans, the policy hash), and the
#: ``mitre`` object, which comes from our own table, not from the source ("Unsecured Credentials:
#: Credentials In Files" must not read as a credential assignment).
PROTECTED: frozenset[Path] = frozenset(
    p for p, f in SCHEMA.items()
    if f.kind in (ENUM, BOOLEAN) or (f.kind == STRING and f.pattern) or p[0] == "mitre")
_FREE_FORM = frozenset(p for p, f in SCHEMA.items() if f.kind in (ANY_OBJECT, LABELS))
_SKIP_TOP = frozenset(p[0] for p in PROTECTED if len(p) == 1)  # event_id, timestamp, enums
_IP_TYPES = frozenset(("ipv4-addr", "ipv6-addr"))
#: ``source.id`` equal to ``event_id`` (hushd's own UUID) is a copy of a fixed-format field: value
#: patterns and copies leave it, as they leave ``event_id`` (masking one copy of a visible id hides
#: nothing and breaks the SIEM's link to the source record). A path rule naming it still masks it.
_SOURCE_ID = ("source", "id")
MIN_COPY_LENGTH = 4  # shorter masked values are masked where they are whole fields, not inside text


def _schema_field(path: Path) -> Field | None:
    """The field table entry of a canonical path; None inside metadata/labels or for unknown fields."""
    for i in range(1, len(path)):
        if path[:i] in _FREE_FORM:
            return None
    return SCHEMA.get(path)


def _compile_fast_check() -> Callable[..., Callable[[dict], bool]]:
    """Generate the hot-path check from the field table (cf. agent.event's generated validator).

    Each canonical object whose children are all scalars (observer, decision, resource, source, agent,
    session, threat.indicator, labels) is tested with one C-level ``clean.issuperset(values)``: a value
    seen before (an enum, a guard name, a host, an agent id...) is a set hit, and only an object with a
    new value is examined (``S``). ``source.id`` equal to ``event_id`` (a hushd UUID, new in every event)
    is skipped: the slow path leaves that copy of the id too (``_SOURCE_ID``). Metadata is looked up
    here by its JSON in ``CO``, the cache of whole free-form objects known clean that ``D`` fills: a hit
    costs one ``dumps`` and a set lookup instead of a method call (~2,000 instructions); a miss, or an
    object orjson cannot encode, goes to ``D``, which walks it. Objects with keys this version does not
    know are walked.
    """
    lines = ["def make(C, M, D, S, CK, CO):", " def fast_check(e):"]
    for f in FIELDS:
        if f.name == "mitre" or f.kind in (ENUM, BOOLEAN, INTEGER) or (f.kind == STRING and f.pattern):
            continue
        get = f"e[{f.name!r}]" if f.required else f"e.get({f.name!r})"
        if f.kind == STRING:
            lines += [f"    v = {get}", "    if v is not None and v not in C and M(v): return True"]
        elif f.name == "source":
            lines += ["    v = e['source']", "    i = v.get('id')",
                      "    if i is not None and i != e['event_id'] and i not in C and M(i): return True",
                      "    if not (len(v) <= 3 and C.issuperset((v['kind'], v.get('type', '')))) and S(v): "
                      "return True"]
        elif f.kind == OBJECT and all(c.kind != OBJECT for c in f.children):
            lines += [f"    v = {get}", f"    if {'v is not None and ' if not f.required else ''}"
                      "not C.issuperset(v.values()) and S(v): return True"]
        elif f.kind == OBJECT and len(f.children) == 1 and f.children[0].kind == OBJECT:  # threat.indicator
            child = f.children[0].name
            lines += [f"    v = {get}", "    if v is not None:",
                      f"        i = v.get({child!r})",
                      "        if len(v) > 1 or type(i) is not dict:",
                      "            if D(v): return True",
                      "        elif not C.issuperset(i.values()) and S(i): return True"]
        elif f.kind == LABELS:
            lines += [f"    v = {get}",
                      "    if v and not (C.issuperset(v.values()) and CK.issuperset(v)) and D(v): "
                      "return True"]
        else:
            lines += [f"    v = e.get({f.name!r})", "    if v:",
                      "        try:", "            hit = dumps(v) in CO",
                      "        except TypeError:", "            hit = False",
                      "        if not hit and D(v): return True"]
    lines += ["    if not K.issuperset(e):",  # fields this version does not know: walk them
              "        for k in e.keys() - K:",
              "            if D(e[k]): return True",
              "    return False",
              " return fast_check"]
    namespace: dict[str, Any] = {"K": frozenset(f.name for f in FIELDS), "dumps": orjson.dumps}
    source = "\n".join(lines) + "\n"
    exec(compile(source, "<transforms.redact fast check>", "exec"), namespace)
    namespace["make"].source = source
    return namespace["make"]


_MAKE_FAST_CHECK = _compile_fast_check()  # (clean, matches, dirty, dirty_values, keys, objects) -> check


class _AnyKey:
    """Stands for the clean-key set when no rule looks at key names: every key set is a subset."""

    @staticmethod
    def issuperset(_keys: Any) -> bool:
        return True


_ANY_KEY = _AnyKey()

# --------------------------------------------------------------------------------------------------
# Masking
# --------------------------------------------------------------------------------------------------
class _Masker:
    """How one rule masks a value (or a part of one)."""

    __slots__ = ("_digest", "drop", "keep_first", "keep_last", "key", "replacement", "style")

    def __init__(self, rule: RedactRule, default_salt: Any) -> None:
        self.style = rule.style
        self.drop = rule.style == "drop"
        self.replacement = rule.replacement or "[REDACTED]"
        self.keep_first, self.keep_last = rule.keep_first, rule.keep_last
        salt = rule.hash_salt or default_salt
        self.key = salt.reveal().encode() if (salt is not None and rule.style == "hash") else b""
        self._digest: Callable[[bytes], str] | None = None
        if rule.style == "hash":
            # hmac loads OpenSSL's libcrypto (~3.3 MiB resident): only a rule that hashes pays for it,
            # so the offload helper, which runs no TLS, stays without it under the default [privacy].
            import hashlib
            import hmac

            key = self.key
            self._digest = lambda data: hmac.new(key, data, hashlib.sha256).hexdigest()

    def mask(self, s: str) -> str:
        if self._digest is not None:
            return "hmac-sha256:" + self._digest(s.encode("utf-8", "surrogatepass"))[:16]
        if self.style == "keep":
            f, la = self.keep_first, self.keep_last
            if len(s) <= f + la:
                return self.replacement  # never reveal the whole value
            return s[:f] + self.replacement + (s[len(s) - la:] if la else "")
        return self.replacement


@dataclass(frozen=True)
class _PathRule:
    segs: tuple[str, ...]
    masker: _Masker


@dataclass(frozen=True)
class _ValueRule:
    patterns: tuple[_Pattern, ...]
    masker: _Masker
    within: tuple[str, ...] | None  # only under this path
    credential_keys: bool  # the `secrets` pattern also masks values of credential-named keys
    maybe: Callable[[str], bool] | None = None  # cheap necessary condition (built-in patterns)


def _match(segs: tuple[str, ...], path: Path, i: int = 0, j: int = 0) -> bool:
    """Does the dotted rule path ``segs`` match ``path`` exactly? ``*`` = one segment, ``**`` = any."""
    while i < len(segs):
        s = segs[i]
        if s == "**":
            return any(_match(segs, path, i + 1, k) for k in range(j, len(path) + 1))
        if j >= len(path) or (s != "*" and s != path[j]):
            return False
        i += 1
        j += 1
    return j == len(path)


def _under(segs: tuple[str, ...], path: Path) -> bool:
    """Is ``path`` at or below a node that ``segs`` matches?"""
    return any(_match(segs, path[:n]) for n in range(1, len(path) + 1))


def _nodes(node: Any, path: Path) -> Iterator[tuple[Any, Any, Path, Any]]:
    """(container, key, path, value) of every value below ``node``; list items share the list's path."""
    if type(node) is dict:
        for k, v in node.items():
            p = (*path, k)
            yield node, k, p, v
            if type(v) in (dict, list):
                yield from _nodes(v, p)
    elif type(node) is list:
        for i, v in enumerate(node):
            if type(v) in (dict, list):
                yield from _nodes(v, path)
            else:
                yield node, i, path, v


def _exists(node: Any, segs: tuple[str, ...], i: int) -> bool:
    """Does anything below ``node`` sit at ``segs[i:]``? (The same matching as ``_match`` over
    ``_nodes``, following only the named keys.)"""
    if i == len(segs):
        return True
    t = type(node)
    if t is list:
        return any(_exists(x, segs, i) for x in node if type(x) in (dict, list))
    if t is not dict:
        return False
    s = segs[i]
    if s == "**":
        return _exists(node, segs, i + 1) or any(_exists(v, segs, i) for v in node.values())
    if s == "*":
        return any(_exists(v, segs, i + 1) for v in node.values())
    return s in node and _exists(node[s], segs, i + 1)


def _leaves(node: Any, path: Path) -> list[tuple[Any, Any, Path, Any]]:
    return [t for t in _nodes(node, path) if type(t[3]) not in (dict, list)]


def _copy(o: Any) -> Any:
    t = type(o)
    if t is dict:
        return {k: _copy(v) for k, v in o.items()}
    if t is list:
        return [_copy(v) for v in o]
    return o


def _strings(node: Any) -> Iterator[str]:
    if type(node) is str:
        yield node
    elif type(node) is dict:
        for v in node.values():
            yield from _strings(v)
    elif type(node) is list:
        for v in node:
            yield from _strings(v)


# --------------------------------------------------------------------------------------------------
# The redactor
# --------------------------------------------------------------------------------------------------
class Redactor:
    """Callable ``event -> event``; build it with ``compile_redactor``."""

    #: Values known clean, per cache: a clear-all when full keeps the frequent ones a moment later.
    #: 4,096 costs no more instructions than 32,768 on 20,000 distinct audit lines (callgrind:
    #: 4,384M vs 4,391M) and holds ~0.5 MiB instead of ~4.2 MiB of strings in each process that maps.
    CACHE_MAX = 4096

    def __init__(self, path_rules: list[_PathRule], value_rules: list[_ValueRule]) -> None:
        self._path_rules = path_rules
        self._value_rules = value_rules
        self._global = [r for r in value_rules if r.within is None]
        self._scoped = [r for r in value_rules if r.within is not None]
        self._keys = any(r.credential_keys for r in self._global)
        # (prefilter, patterns) of the global rules: what _matches runs on a string not seen before
        self._global_tests = tuple((r.maybe, r.patterns) for r in self._global)
        self._clean: set[Any] = {"", True, False, None}  # values no global pattern matches
        self._clean_keys: set[str] = set()  # dict keys that do not name a credential
        self._clean_objects: set[bytes] = set()  # encoded free-form objects (metadata) known clean
        self._fast = _MAKE_FAST_CHECK(self._clean, self._matches, self._dirty, self._dirty_values,
                                      self._clean_keys if self._keys else _ANY_KEY, self._clean_objects)
        if self._global and not self._path_rules and not self._scoped:
            self._check: Callable[[dict], bool] = self._fast
        else:
            self._check = self._needed

    # -- fast check: does this event need the slow path at all? --------------------------------------
    def __call__(self, event: dict) -> dict:
        try:
            needed = self._check(event)
        except (TypeError, AttributeError, KeyError):  # not the canonical shape: walk it all
            needed = self._needed(event, generic=True)
        return self.redact(event) if needed else event

    def _needed(self, ev: dict, generic: bool = False) -> bool:
        for rule in self._path_rules:
            if self._exists(ev, rule.segs):
                return True
        for rule in self._scoped:
            if self._exists(ev, rule.within):  # type: ignore[arg-type]
                return True
        if self._global:
            if generic:
                return any(k not in _SKIP_TOP and self._dirty(v) for k, v in ev.items())
            return self._fast(ev)
        return False

    def _dirty(self, v: Any) -> bool:
        """Could a global pattern (or a credential-named key) match anything in ``v``? Known-clean
        strings, key sets and whole free-form objects are cached, so a repeated one costs a lookup."""
        t = type(v)
        if t is str:
            return v not in self._clean and self._matches(v)
        if t is dict:
            if not v:
                return False
            try:
                key = orjson.dumps(v)
            except TypeError:  # not JSON (cannot come from the spool): walk it without the cache
                key = None
            if key is not None and key in self._clean_objects:
                return False
            if self._keys and not (v.keys() <= self._clean_keys):
                for k in v:
                    # only a non-empty string under a credential-named key is masked (the value
                    # rules): {"api_key": null} needs no copy of the event
                    if k not in self._clean_keys and self._credential_key(k) and type(v[k]) is str and v[k]:
                        return True
            for x in v.values():
                tx = type(x)
                if tx is str:
                    if x not in self._clean and self._matches(x):
                        return True
                elif (tx is dict or tx is list) and self._dirty(x):
                    return True
            if key is not None:
                if len(self._clean_objects) >= self.CACHE_MAX:
                    self._clean_objects.clear()
                self._clean_objects.add(key)
            return False
        if t is list:
            return any(self._dirty(x) for x in v)
        return False

    def _dirty_values(self, o: dict) -> bool:
        """The values of one canonical object, after ``clean.issuperset`` said one is new. Numbers,
        booleans and None can match no pattern: they join the clean set so the next check is a hit."""
        clean = self._clean
        for v in o.values():
            t = type(v)
            if t is str:
                if v not in clean and self._matches(v):
                    return True
            elif t is dict or t is list:
                if self._dirty(v):
                    return True
            else:
                clean.add(v)
        return False

    def _matches(self, s: str) -> bool:
        for maybe, patterns in self._global_tests:
            if maybe is not None and not maybe(s):
                continue
            for p in patterns:
                if p.has_match(s):
                    return True
        clean = self._clean
        if len(clean) >= self.CACHE_MAX:
            clean.clear()
            clean.update(("", True, False, None))
        clean.add(s)
        return False

    def _credential_key(self, k: str) -> bool:
        if CREDENTIAL_KEY.search(k) is not None:
            return True
        if len(self._clean_keys) >= self.CACHE_MAX:
            self._clean_keys.clear()
        self._clean_keys.add(k)
        return False

    @staticmethod
    def _exists(ev: dict, segs: tuple[str, ...]) -> bool:
        return _exists(ev, segs, 0)

    def redact_text(self, text: str) -> str:
        """The value patterns applied to free text (a quarantined line that could not be mapped, so
        field paths mean nothing); a JSON ``"password": "x"`` is caught by the assignment pattern."""
        copies: dict[str, tuple[str, bool]] = {}
        for rule in self._global:
            text, _ = _substitute(text, rule, copies)
        return text

    # -- slow path -----------------------------------------------------------------------------------
    def redact(self, event: dict) -> dict:
        """Redact unconditionally (tests and the CLI may call it directly); returns a new dict."""
        out = _copy(event)
        copies: dict[str, tuple[str, bool]] = {}  # original value -> (masked text, whole field dropped)
        for rule in self._path_rules:
            self._apply_path_rule(out, rule, copies)
        self._apply_value_rules(out, copies)
        if copies:
            self._propagate(out, copies)
        _fix_typed(out, event)
        return out

    def _apply_path_rule(self, out: dict, rule: _PathRule, copies: dict[str, tuple[str, bool]]) -> None:
        targets = []
        skip: list[Path] = []
        for container, key, path, value in _nodes(out, ()):
            if any(path[:len(s)] == s for s in skip):
                continue  # inside a node this rule already took as a whole
            if path in PROTECTED:
                continue  # `*`/`**` skip fixed-format fields: a drop must not take `mitre` as a whole
            if _match(rule.segs, path):
                targets.append((container, key, path, value))
                if type(value) in (dict, list):
                    skip.append(path)
        m = rule.masker
        for container, key, path, value in reversed(targets):
            if type(value) in (dict, list):
                if m.drop:
                    for s in _strings(value):
                        copies.setdefault(s, (m.replacement, True))
                    _drop(out, container, key, path, m.replacement)
                else:
                    for c, k, p, v in reversed(_leaves(value, path)):
                        _mask_leaf(out, c, k, p, v, m, copies)
            else:
                _mask_leaf(out, container, key, path, value, m, copies)

    def _apply_value_rules(self, out: dict, copies: dict[str, tuple[str, bool]]) -> None:
        for container, key, path, value in reversed(_leaves(out, ())):
            if _left_by_values(out, path, value):
                continue
            if type(value) is not str:
                continue
            new, dropped = value, False
            for rule in self._value_rules:
                if rule.within is not None and not _under(rule.within, path):
                    continue
                if (rule.credential_keys and type(key) is str and _schema_field(path) is None
                        and CREDENTIAL_KEY.search(key) is not None and new):
                    masked = rule.masker.mask(new)
                    copies.setdefault(new, (masked, rule.masker.drop))
                    if rule.masker.drop:
                        dropped = True
                        break
                    new = masked
                    continue
                if rule.maybe is not None and not rule.maybe(new):
                    continue
                new, whole = _substitute(new, rule, copies)
                if whole and rule.masker.drop:
                    dropped = True
                    break
            if dropped:
                _drop(out, container, key, path, rule.masker.replacement)  # the rule that dropped it
            elif new != value:
                container[key] = new

    def _propagate(self, out: dict, copies: dict[str, tuple[str, bool]]) -> None:
        masked_values = {m for m, _ in copies.values()}
        inner = sorted(((o, m) for o, (m, _) in copies.items() if len(o) >= MIN_COPY_LENGTH),
                       key=lambda t: -len(t[0]))
        for container, key, path, value in reversed(_leaves(out, ())):
            if type(value) is not str or value in masked_values or _left_by_values(out, path, value):
                continue
            hit = copies.get(value)
            if hit is not None:
                masked, drop = hit
                if drop:
                    _drop(out, container, key, path, masked)
                else:
                    container[key] = masked
                continue
            new = value
            for original, masked in inner:
                if original in new:
                    new = new.replace(original, masked)
            if new != value:
                container[key] = new


def _left_by_values(out: dict, path: Path, value: Any) -> bool:
    """Value patterns and copies leave this leaf: a fixed-format field, or ``source.id`` holding the
    event id (the fast check skips it too; a path rule naming it still masks it, ``_mask_leaf``)."""
    return (path in PROTECTED or (len(path) == 1 and path[0] in _SKIP_TOP)
            or (path == _SOURCE_ID and value == out["event_id"]))


def _substitute(s: str, rule: _ValueRule, copies: dict[str, tuple[str, bool]]) -> tuple[str, bool]:
    """Mask every match of the rule's patterns in ``s``; (new string, whether one match was all of s)."""
    whole = False
    m = rule.masker
    for p in rule.patterns:
        has_group = "secret" in p.regex.groupindex

        def repl(match: re.Match[str], p: _Pattern = p, has_group: bool = has_group, n: int = len(s)) -> str:
            nonlocal whole
            text = match.group(0)
            if p.confirm is not None and not p.confirm(text):
                return text
            if has_group and match.group("secret") is not None:
                secret = match.group("secret")
                masked = m.mask(secret)
                copies.setdefault(secret, (masked, False))
                a, b = match.start("secret") - match.start(), match.end("secret") - match.start()
                return text[:a] + masked + text[b:]
            masked = m.mask(text)
            copies.setdefault(text, (masked, False))
            if match.start() == 0 and match.end() == n:
                whole = True
            return masked

        s = p.regex.sub(repl, s)
    return s, whole


def _mask_leaf(out: dict, container: Any, key: Any, path: Path, value: Any, m: _Masker,
               copies: dict[str, tuple[str, bool]]) -> None:
    if path in PROTECTED or (len(path) == 1 and path[0] in _SKIP_TOP):
        return
    f = _schema_field(path)
    if type(value) is str:
        if m.drop:
            copies.setdefault(value, (m.replacement, True))
            _drop(out, container, key, path, m.replacement)
        else:
            masked = m.mask(value)
            copies.setdefault(value, (masked, False))
            container[key] = masked
    elif f is not None and f.kind == INTEGER:
        _drop(out, container, key, path, m.replacement)  # a number field cannot hold a mask
    elif m.drop:
        _drop(out, container, key, path, m.replacement)
    else:
        container[key] = m.mask(_scalar_text(value))


def _scalar_text(v: Any) -> str:
    if v is None:
        return "null"
    if type(v) is bool:
        return "true" if v else "false"
    return str(v)


def _drop(out: dict, container: Any, key: Any, path: Path, replacement: str) -> None:
    """Remove a value so that the event stays valid (see the module docstring)."""
    f = _schema_field(path)
    if f is None or not f.required:
        if type(container) is list:
            if 0 <= key < len(container):
                del container[key]
        else:
            container.pop(key, None)
        return
    if f.kind in (ANY_OBJECT, LABELS):
        container[key] = {}
        return
    for i in range(len(path) - 1, 0, -1):
        ancestor = SCHEMA.get(path[:i])
        if ancestor is not None and not ancestor.required:
            parent = out
            for seg in path[:i - 1]:
                parent = parent.get(seg) if type(parent) is dict else None
            if type(parent) is dict:
                parent.pop(path[i - 1], None)
            return
    if f.kind == OBJECT:
        node = container.get(key)
        if type(node) is dict:
            for k in list(node):
                if (*path, k) not in PROTECTED:
                    _drop(out, node, k, (*path, k), replacement)
        return
    if f.kind == STRING and type(container.get(key)) is str:
        container[key] = replacement  # a required string cannot go: it keeps the mask


def _fix_typed(out: dict, original: dict) -> None:
    """A masked copy in an IP-typed place is no IP: remove it (the mask stays in name/host)."""
    res, orig_res = out.get("resource"), original.get("resource")
    if type(res) is dict and type(orig_res) is dict and "ip" in res and res["ip"] != orig_res.get("ip"):
        del res["ip"]
    threat = out.get("threat")
    if type(threat) is dict:
        ind = threat.get("indicator")
        orig = (original.get("threat") or {}).get("indicator") or {}
        if type(ind) is dict and ind.get("type") in _IP_TYPES and ind.get("value") != orig.get("value"):
            del out["threat"]


# --------------------------------------------------------------------------------------------------
# Compilation
# --------------------------------------------------------------------------------------------------
def _segs(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def compile_redactor(cfg: RedactConfig | None) -> Redactor | None:
    """The redactor for ``cfg``, or None when it has nothing to do."""
    if cfg is None or cfg.empty:
        return None
    path_rules: list[_PathRule] = []
    value_rules: list[_ValueRule] = []
    for name in cfg.builtin:
        rule = RedactRule(pattern=name)
        value_rules.append(_ValueRule(BUILTIN_PATTERNS[name], _Masker(rule, None), None, name == "secrets",
                                      BUILTIN_PREFILTERS[name]))
    for rule in cfg.rules:
        masker = _Masker(rule, cfg.hash_salt)
        if rule.style == "hash" and not masker.key:
            raise ValueError("redact rule with style 'hash' needs hash_salt")
        if rule.pattern:
            patterns = BUILTIN_PATTERNS.get(rule.pattern) or (_Pattern(re.compile(rule.pattern)),)
            within = _segs(rule.path) if rule.path else None
            value_rules.append(_ValueRule(patterns, masker, within, rule.pattern == "secrets",
                                          BUILTIN_PREFILTERS.get(rule.pattern)))
        else:
            segs = _segs(rule.path)
            for p in SCHEMA:
                if p in PROTECTED and _match(segs, p) and "*" not in rule.path:
                    raise ValueError(f"redact path {rule.path!r}: {'.'.join(p)} has a fixed format "
                                     "(id, time, enum, hash) and cannot be redacted")
            path_rules.append(_PathRule(segs, masker))
    return Redactor(path_rules, value_rules)
