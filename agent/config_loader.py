"""Turns a TOML table into a typed, validated dataclass, with errors that name the file and the key.

Every configurable section (agent, spool, each input and output type) is a dataclass whose fields carry
their default and a one-line doc in ``metadata={"doc": ...}``. This one loader checks them all, so an
unknown key or a wrong type is reported the same way everywhere (hushd silently ignores both, C19).
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from typing import Any, Literal, TypeVar, get_args, get_origin

from agent.config_types import Duration, ListenAddress, Secret, Size, expand_env

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem, already phrased for the operator: file, key, what was expected."""


def doc(text: str, **kw: Any) -> Any:
    """A dataclass field with a default and its documentation line."""
    if "default_factory" in kw:
        return dataclasses.field(default_factory=kw["default_factory"], metadata={"doc": text})
    return dataclasses.field(default=kw.get("default"), metadata={"doc": text})


def secret_field(text: str, *, read_once: bool = False) -> Any:
    """A credential field: literal (``${ENV}`` expanded anywhere in it) or ``file:/path``; never
    printed. A ``file:`` one is re-read when its file changes (a rotated credential needs no
    restart), unless ``read_once``: then the value read at load is kept for the whole run (a key
    every part of the run must share, such as a hash salt: ``Secret.frozen``)."""
    return dataclasses.field(default=None, metadata={"doc": text, "secret": True, "read_once": read_once})


def load_section(cls: type[T], table: Any, where: str, env: dict[str, str] | None = None) -> T:
    """Build ``cls`` from a TOML table; ``where`` is e.g. ``agent.toml: [outputs.archive]``."""
    env = os.environ if env is None else env
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {_tname(table)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(fields))})"
        )
    values: dict[str, Any] = {}
    for name, value in table.items():
        values[name] = _convert(hints[name], value, f"{where} {name}", env, fields[name])
    try:
        obj = cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    check = getattr(obj, "validate", None)
    if check is not None:
        try:
            check()
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return obj


def _convert(hint: Any, value: Any, where: str, env: dict[str, str], field: Any) -> Any:
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, where, env, field)
    if hint is Secret or (field is not None and field.metadata.get("secret")):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string (literal, '${{ENV}}' or 'file:/path'), "
                              f"got {_tname(value)}")
        try:
            secret = Secret.parse(value, env)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if field is not None and field.metadata.get("secret") and not secret.reveal():
            # As an empty file: secret is: no credential is empty, and one that is would still be
            # "set": a listener's bearer_token would take `Bearer ` with nothing after it, an HMAC
            # key would be known to all, a token would earn a 401 on every request.
            names = secret.source[len("env:"):]
            why = ("empty" if secret.source == "literal" else f"the variable {names} is set but empty"
                   if "," not in names else f"the variables {names} are set but empty")
            raise ConfigError(f"{where}: {why}: a credential cannot be empty (remove the key to "
                              "leave it unset)")
        return secret.frozen() if field is not None and field.metadata.get("read_once") else secret
    if isinstance(value, str):
        value = _expand_env(value, where, env)
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{where}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value
    if origin is list:
        (item,) = get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {_tname(value)}")
        return [_convert(item, v, f"{where}[{i}]", env, None) for i, v in enumerate(value)]
    if origin is dict:
        _, item = get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {_tname(value)}")
        return {str(k): _convert(item, v, f"{where}.{k}", env, None) for k, v in value.items()}
    if hint in (Size, Duration, ListenAddress):
        try:
            return hint.parse(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if dataclasses.is_dataclass(hint):
        return load_section(hint, value, where, env)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_tname(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_tname(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {_tname(value)}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_tname(value)}")
        return value
    if hint is Any:
        return value
    raise ConfigError(f"{where}: unsupported type {hint!r}")  # pragma: no cover - programming error


def _expand_env(value: str, where: str, env: dict[str, str]) -> str:
    try:
        return expand_env(value, env)[0]
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _tname(value: Any) -> str:
    return {
        bool: "a boolean", int: "an integer", float: "a number", str: "a string",
        list: "a list", dict: "a table",
    }.get(type(value), type(value).__name__)


def describe(cls: type) -> list[tuple[str, str, str, str]]:
    """(key, type, default, doc) rows for the generated configuration reference."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        rows.append((f.name, _type_name(hints[f.name]), _show_default(default), f.metadata.get("doc", "")))
    return rows


def _type_name(hint: Any) -> str:
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(hint) if a is not type(None)) + " (optional)"
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(hint))
    if origin is list:
        return f"list of {_type_name(get_args(hint)[0])}"
    if origin is dict:
        return f"table of {_type_name(get_args(hint)[1])}"
    return {Size: "size", Duration: "duration", ListenAddress: "host:port"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def _show_default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, ListenAddress):  # a dataclass, but written as a "host:port" string
        return repr(str(value))
    if dataclasses.is_dataclass(value):
        return "(table)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)
