"""Property-based tests of the log formatters (agent/logs.py) and their secret masking
(agent/secret_forms.py ``forms`` / ``mask_known``, ``Secret.known_values``).

The design promises "structured logs that never contain secrets"; agent/logs.py promises one JSON
object per line with the ``extra`` fields of each call, and every form (``secret_forms.forms``: as it
is in any letter case, JSON-escaped with ``\\/`` and ``\\uXXXX``, percent-encoded, HTML-escaped) of
every credential value the process holds masked as ``***``. Tested:

1. JSON mode, any record: a message with %-arguments of any type, ``extra`` fields of any value a
   caller could pass (text with control characters, line breaks, non-ASCII and lone surrogates, as
   a file name with an undecodable byte gives; bytes; ints beyond 64 bits; nan and inf; dicts with
   non-str keys; sets; tuples; None; exceptions; objects whose ``__str__`` raises) and ``exc_info``:
   ``format`` never raises and returns exactly one line that parses (strict JSON) to an object with
   ts, level, logger, msg and every extra; values JSON can hold come back as they were. The text
   formatter never raises either. Why "never raises" matters for secrets: when ``format`` raises,
   logging's ``Handler.handleError`` prints the record's message and arguments to stderr as they
   are, unmasked; so the same is checked through the real handler ``setup_logging`` installs, on a
   captured stderr.
2. Masking: with random credentials alive (literals, ``Bearer ${T}``, ``http://u:${P}@proxy``) and
   any of their forms, in any letter case, echoed in the message, its arguments, extras (nested
   values and dict keys) and an exception's traceback: no form of any value
   ``Secret.known_values()`` returns is left, in JSON mode (every string of the parsed object, and
   the line still parses: masking must not corrupt the JSON) and in text mode (the line).
3. Levels: ``setup_logging(level)`` emits exactly the records at or above the level, for each level
   the configuration accepts (docs/configuration.md ``log_level``); an unknown name is a ValueError
   naming it.
4. Text mode, any record: one line (line breaks and other control characters in the message, its
   arguments or extras are escaped: a file name or a quoted answer cannot forge another record),
   followed by the traceback, if any, on indented lines only (it used to be dropped).

Each test swaps ``Secret._live`` for a fresh set (``only_secrets``): credentials other tests left
alive must not mask this file's random text.

At the end: deterministic reproductions of the defects found (each failed before its fix).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import re
import sys
import weakref
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agent.config_types import Secret
from agent.logs import JsonFormatter, TextFormatter, setup_logging
from agent.secret_forms import MIN_SECRET_CHARS, forms

SETTINGS = {"deadline": None, "database": None, "derandomize": True, "report_multiple_bugs": False,
            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
LOGGER = "clawd_agent.test_logs_properties"
#: The fields JsonFormatter writes itself (an extra of the same name goes in as "extra.<name>": test_logs.py).
OWN_FIELDS = {"ts", "level", "logger", "msg", "exc"}
STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
LEVELS = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]
CONFIG_LEVELS = ["debug", "info", "warning", "error"]  # agent.config AgentSection.log_level

ExcInfo = tuple[type[BaseException], BaseException, TracebackType]


# -- helpers -------------------------------------------------------------------------------------
@contextlib.contextmanager
def only_secrets() -> Iterator[None]:
    """Within: the process holds only the Secrets created inside (``Secret.known_values``)."""
    saved = Secret._live
    Secret._live = weakref.WeakSet()
    try:
        yield
    finally:
        Secret._live = saved


@contextlib.contextmanager
def logging_to(stream: io.StringIO, level: str = "debug", fmt: str = "json") -> Iterator[logging.Logger]:
    """``setup_logging`` with stderr as ``stream``; the root logger restored after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        with contextlib.redirect_stderr(stream):
            setup_logging(level, fmt)
            yield logging.getLogger(LOGGER)
    finally:
        root.handlers[:], root.level = saved[0], saved[1]


def exc_info_of(text: str) -> ExcInfo:
    """The ``exc_info`` of a RuntimeError(text) raised and caught here."""
    try:
        raise RuntimeError(text)
    except RuntimeError:
        info = sys.exc_info()
    assert info[0] is not None and info[1] is not None and info[2] is not None
    return info  # type: ignore[return-value]


def make_record(msg: str, args: tuple[Any, ...], extra: dict[str, Any], *, level: int = logging.WARNING,
                exc: ExcInfo | None = None) -> logging.LogRecord:
    """A record as ``logger.log(level, msg, *args, extra=extra, exc_info=exc)`` makes it."""
    return logging.getLogger(LOGGER).makeRecord(LOGGER, level, __file__, 1, msg, args, exc, extra=extra)


def strings_in(value: Any) -> Iterator[str]:
    """Every string in a parsed JSON value, dict keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings_in(v)


def strict_json(line: str) -> Any:
    """``line`` parsed as strict JSON (NaN and Infinity refused)."""
    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")
    return json.loads(line, parse_constant=refuse)


def leaked(text: str) -> list[tuple[str, str]]:
    """(value, form) for each form of each held credential value found in ``text``, any case."""
    found = []
    for value in Secret.known_values():
        if len(value) < MIN_SECRET_CHARS:
            continue
        for form in forms(value):
            if re.search(re.escape(form), text, re.IGNORECASE):
                found.append((value, form))
    return found


def has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


class Unprintable:
    """An object whose ``__str__`` raises (its repr works, for hypothesis' reports)."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        return "Unprintable()"


_MISSING = object()


def as_json(value: Any) -> Any:
    """What JSON gives back for ``value``, or ``_MISSING`` if JSON cannot hold it as it is."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else _MISSING
    if isinstance(value, float):
        return value if math.isfinite(value) else _MISSING
    if isinstance(value, str):
        return _MISSING if has_surrogate(value) else value
    if isinstance(value, list | tuple):
        items = [as_json(v) for v in value]
        return _MISSING if any(i is _MISSING for i in items) else items
    if isinstance(value, dict):
        if not all(isinstance(k, str) and not has_surrogate(k) for k in value):
            return _MISSING
        items = {k: as_json(v) for k, v in value.items()}
        return _MISSING if any(i is _MISSING for i in items.values()) else items
    return _MISSING


# -- strategies ----------------------------------------------------------------------------------
ODD_CHARS = ["\n", "\r", "\x00", "\x1b", "\t", "\u2028", "\x85", '"', "\\", "/", "%", "é", "😀",
             "\udcff", "\ud800", "\ude00"]
texts = st.text(st.one_of(st.characters(), st.sampled_from(ODD_CHARS)), max_size=12)
scalars = st.one_of(
    st.none(), st.booleans(), texts, st.binary(max_size=6),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    texts.map(RuntimeError), texts.map(lambda t: KeyError(t)), st.builds(Unprintable),
)
keys = st.one_of(texts, st.integers(), st.none(), st.booleans(), st.tuples(st.integers()))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.tuples(inner, inner),
        st.dictionaries(texts, inner, max_size=3), st.dictionaries(keys, inner, max_size=3),
        st.frozensets(st.one_of(texts, st.integers()), max_size=3),
    ),
    max_leaves=8,
)
extra_names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(
    lambda k: k not in STD_ATTRS and k not in OWN_FIELDS)
extras = st.dictionaries(extra_names, values, max_size=4)

SECRET_CHARS = st.sampled_from([*"aBzQ09/+=%&<>'\":@#?-_.~ \\", "é", "ß", "€", "😀"])
tokens = st.text(SECRET_CHARS, min_size=MIN_SECRET_CHARS, max_size=10).filter(lambda t: t.strip() == t)


@st.composite
def held_secrets(draw: st.DrawFn) -> list[Secret]:
    """1-3 credentials as agent.toml writes them (call inside ``only_secrets``)."""
    held = []
    for token in draw(st.lists(tokens, min_size=1, max_size=3)):
        how = draw(st.sampled_from(["literal", "bearer", "url"]))
        if how == "literal":
            held.append(Secret.parse(token, {}))
        elif how == "bearer":
            held.append(Secret.parse("Bearer ${T}", {"T": token}))
        else:
            held.append(Secret.parse("http://shipper:${P}@proxy:3128", {"P": token}))
    return held


def echo(draw: st.DrawFn) -> str:
    """One form of one held value, in some letter case."""
    worth = [v for v in Secret.known_values() if len(v) >= MIN_SECRET_CHARS]
    value = draw(st.sampled_from(worth))
    form = draw(st.sampled_from(forms(value)))
    return draw(st.sampled_from([form, form.upper(), form.lower()]))


# -- 1. any record is one JSON line; formatters never raise --------------------------------------
@settings(max_examples=150, **SETTINGS)
@given(msg=texts, args=st.lists(values, max_size=3), extra=extras, exc=st.none() | texts,
       level=st.sampled_from(LEVELS))
def test_any_record_is_one_json_line_with_every_field(msg: str, args: list[Any], extra: dict[str, Any],
                                                     exc: str | None, level: int) -> None:
    """JSON mode never raises; one line, strict JSON, own fields and every extra present."""
    fmt = msg.replace("%", "%%") + " %s" * len(args)
    record = make_record(fmt, tuple(args), extra, level=level,
                         exc=None if exc is None else exc_info_of(exc))
    with only_secrets():
        line = JsonFormatter().format(record)
        text = TextFormatter().format(record)  # never raises either
    assert isinstance(text, str) and LOGGER in text
    assert "\n" not in line and "\r" not in line, line
    entry = strict_json(line)
    assert isinstance(entry, dict)
    assert entry["logger"] == LOGGER and entry["level"] == logging.getLevelName(level).lower()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"]), entry["ts"]
    assert isinstance(entry["msg"], str)
    printable = all(not isinstance(a, Unprintable) for a in args)
    if printable:
        expected = fmt % tuple(args) if args else fmt  # logging formats only with arguments
        if not has_surrogate(expected):
            assert entry["msg"] == expected
    for key, value in extra.items():
        assert key in entry, (key, line)
        plain = as_json(value)
        if plain is not _MISSING:
            assert entry[key] == plain, (key, value, line)
    if exc is not None:
        assert "RuntimeError" in entry["exc"] and "Traceback" in entry["exc"]


@settings(max_examples=60, **SETTINGS)
@given(data=st.data(), extra=extras, unprintable_arg=st.booleans())
def test_stderr_through_setup_logging_is_one_masked_json_line_per_record(
        data: st.DataObject, extra: dict[str, Any], unprintable_arg: bool) -> None:
    """Through the real handler: one JSON line per record on stderr, nothing else (no "Logging
    error" report, which would print the message and arguments unmasked), no form of a credential."""
    stream = io.StringIO()
    with only_secrets():
        held = data.draw(held_secrets())
        args: tuple[Any, ...] = (data.draw(st.composite(echo)()),)
        if unprintable_arg:
            args += (Unprintable(),)
        with logging_to(stream) as log:
            log.error("answer echoed" + " %s" * len(args), *args, extra=extra)
        output = stream.getvalue()
        assert "Logging error" not in output, output
        assert output.endswith("\n") and output.count("\n") == 1, output
        entry = strict_json(output)
        assert entry["level"] == "error" and entry["msg"].startswith("answer echoed")
        for s in strings_in(entry):  # strings: digits of a number or an escape are not a leak
            assert not leaked(s), (leaked(s), s, output)
        assert all(h.reveal() is not None for h in held)  # alive until here


# -- 2. masking: every form of every held value, everywhere, both modes --------------------------
PLACES = ["msg", "arg", "extra", "nested", "key", "exc"]


@settings(max_examples=250, **SETTINGS)
@given(data=st.data(), filler=st.text(st.characters(codec="utf-8", exclude_characters="*%"), max_size=8))
def test_no_form_of_a_held_credential_is_left_in_either_mode(data: st.DataObject, filler: str) -> None:
    """Each echo placed in the message, an argument, an extra, a nested value, a nested dict key or
    an exception: no form of any known value survives, and the JSON line still parses."""
    with only_secrets():
        held = data.draw(held_secrets())
        msg, args, extra, exc = filler, [], {}, None
        nested: dict[str, Any] = {}
        for place in data.draw(st.lists(st.sampled_from(PLACES), min_size=1, max_size=4)):
            said = data.draw(st.composite(echo)())
            if place == "msg":
                msg += f" {said.replace('%', '%%')} {filler}"
            elif place == "arg":
                msg += " %s"
                args.append(f"<{said}>")
            elif place == "extra":
                extra[f"x{len(extra)}"] = f"{filler}{said}"
            elif place == "nested":
                nested.setdefault("items", []).append({"reason": said, "n": 1})
            elif place == "key":
                nested[said] = len(nested)
            else:
                exc = exc_info_of(f"{filler}{said}")
        if nested:
            extra["detail"] = nested
        record = make_record(msg, tuple(args), extra, exc=exc)
        line = JsonFormatter().format(record)
        text = TextFormatter().format(record)
        entry = strict_json(line)  # masking never corrupts the line
        for s in strings_in(entry):
            assert not leaked(s), (leaked(s), s, line)
        assert not leaked(text), (leaked(text), text)
        assert all(s.reveal() is not None for s in held)


# -- 4. text mode: one line per record, then the traceback's indented lines ---------------------
#: Where str.splitlines() breaks a line besides "\n".
LINE_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


@settings(max_examples=150, **SETTINGS)
@given(msg=texts, args=st.lists(values, max_size=3), extra=extras, exc=st.none() | texts,
       level=st.sampled_from(LEVELS))
def test_a_text_record_is_one_line_then_its_traceback_indented(msg: str, args: list[Any],
                                                              extra: dict[str, Any], exc: str | None,
                                                              level: int) -> None:
    fmt = msg.replace("%", "%%") + " %s" * len(args)
    record = make_record(fmt, tuple(args), extra, level=level,
                         exc=None if exc is None else exc_info_of(exc))
    with only_secrets():
        text = TextFormatter().format(record)
    first, *rest = text.split("\n")
    assert f"{first} ".startswith(f"{logging.getLevelName(level).lower():7} {LOGGER}: "), text
    assert not any(ch in first for ch in LINE_BREAKS), first
    assert len(first.splitlines()) == 1
    if exc is None:
        assert rest == [], text
    else:
        assert rest and all(line.startswith("    ") for line in rest), text
        assert rest[0] == "    Traceback (most recent call last):"
        assert any("RuntimeError" in ln for ln in rest)
        assert all(len(line.splitlines()) <= 1 for line in rest)


# -- 3. levels -----------------------------------------------------------------------------------
@settings(max_examples=40, **SETTINGS)
@given(level=st.sampled_from(CONFIG_LEVELS), fmt=st.sampled_from(["json", "text"]),
       emitted=st.lists(st.sampled_from(LEVELS), max_size=8))
def test_setup_logging_emits_exactly_the_records_at_or_above_its_level(level: str, fmt: str,
                                                                       emitted: list[int]) -> None:
    stream = io.StringIO()
    with only_secrets(), logging_to(stream, level, fmt) as log:
        for i, n in enumerate(emitted):
            log.log(n, "record %d", i)
    threshold = logging.getLevelName(level.upper())
    expected = [i for i, n in enumerate(emitted) if n >= threshold]
    lines = stream.getvalue().splitlines()
    got = [int(re.search(r"record (\d+)", ln).group(1)) for ln in lines]  # type: ignore[union-attr]
    assert got == expected


@settings(max_examples=40, **SETTINGS)
@given(name=st.text(max_size=10))
def test_an_unknown_level_name_is_a_value_error_naming_it(name: str) -> None:
    assume(not isinstance(logging.getLevelName(name.upper()), int))
    stream = io.StringIO()
    try:
        with logging_to(stream, name):
            raise AssertionError(f"level {name!r} accepted")
    except ValueError as exc:
        assert repr(name.upper()) in str(exc)


# -- defects found here (each failed before agent/logs.py was fixed) ----------------------------
def test_defect_a_path_with_an_undecodable_byte_is_logged_not_lost() -> None:
    """glob and listdir give a file name's undecodable byte as a lone surrogate (\\udcff); the tail
    logs the path (agent/inputs/tail.py "reading %s"): orjson refused the string and the line was lost
    ("--- Logging error ---" on stderr instead)."""
    stream = io.StringIO()
    with only_secrets(), logging_to(stream, "info") as log:
        log.info("%s: reading %s (%s) from offset %d", "tail", "/var/log/hush/\udcff.jsonl", "1:2", 0)
    assert "Logging error" not in stream.getvalue()
    entry = strict_json(stream.getvalue())
    assert entry["msg"].startswith("tail: reading /var/log/hush/") and entry["msg"].endswith(".jsonl (1:2) "
                                                                                             "from offset 0")


def test_defect_a_formatter_error_does_not_print_the_arguments_unmasked() -> None:
    """An extra orjson refuses (an int beyond 64 bits) made format() raise, and logging's
    handleError printed "Arguments: ('tok/en12',)": the held credential in clear on stderr."""
    stream = io.StringIO()
    with only_secrets():
        held = Secret.parse("tok/en12", {})
        with logging_to(stream) as log:
            log.error("answer echoed %s", "tok/en12", extra={"seq": 2**64})
        assert "tok/en12" not in stream.getvalue(), stream.getvalue()
        assert strict_json(stream.getvalue())["msg"] == "answer echoed ***"
        assert held.reveal() == "tok/en12"


def test_defect_a_quoted_answers_escaped_forms_are_masked_in_json_as_in_text() -> None:
    """A message quoting a JSON answer that wrote the credential with ``\\/`` (PHP) or ``\\u00e9``
    (Python's json): text mode masked it, JSON mode escaped the backslash once more and left it."""
    with only_secrets():
        held = [Secret.parse("tok/en12", {}), Secret.parse("pässwort", {})]
        for quoted in ['{"token":"tok\\/en12"}', '{"password":"p\\u00e4sswort"}']:
            record = make_record("answer: %s", (quoted,), {})
            assert "***" in TextFormatter().format(record)
            msg = strict_json(JsonFormatter().format(record))["msg"]
            assert not leaked(msg), msg
        assert all(s.reveal() for s in held)


def test_defect_masking_never_cuts_a_json_escape() -> None:
    """Masking the encoded line could replace a match that starts inside an escape sequence (the
    ``\\/`` form of ``/abcdef`` quoted: ``\\\\/abcdef`` in the line) and leave ``\\***``: not JSON."""
    with only_secrets():
        held = Secret.parse("/abcdef", {})
        line = JsonFormatter().format(make_record("answer: x \\/abcdef", (), {}))
        assert strict_json(line)["msg"] == "answer: x ***"
        assert held.reveal() == "/abcdef"
