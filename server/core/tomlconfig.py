"""Typed TOML tables: the mechanics shared by the server's settings
(server/core/settings.py) and the load tester's scenario files (loadtest/scenario.py).

A document is a frozen dataclass whose fields are sections; a section is a
frozen dataclass whose fields are keys. A key's type is its default's type
(bool, int, float, str, or a tuple of strings); its `metadata` (`meta()`)
holds the range (`lo`, `hi`) and the allowed `choices`. Values from TOML (and,
for the settings, from `LIVESELL_*` environment variables, which are strings)
are checked key by key; a bad one raises the caller's error class with a
message that names where it came from and the key (`bad.toml: sale.units:
expected an integer, got 'lots'`). Pure: no file or environment access.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

MAX_STRING = 4096
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def meta(lo: float | None = None, hi: float | None = None,
         choices: tuple[str, ...] | None = None, doc: str = "") -> dict[str, Any]:
    """A key's field metadata: its range, its allowed values and a line of help."""
    return {"lo": lo, "hi": hi, "choices": choices, "doc": doc}


def section_table(document: type[Any], exclude: tuple[str, ...] = ()) -> dict[str, type[Any]]:
    """`{section name: section dataclass}` for the sections of a document dataclass."""
    return {f.name: f.default_factory  # type: ignore[misc]
            for f in dataclasses.fields(document) if f.name not in exclude}


def coerce(key: str, raw: Any, default: Any, metadata: Mapping[str, Any],
           error: type[Exception], *, from_env: bool = False) -> Any:
    """`raw` as the type of `default`, checked against the range and choices in
    `metadata`; `from_env`: `raw` may be the text of an environment variable."""
    value: Any
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        if from_env and isinstance(raw, str) and raw.lower() in _TRUE:
            return True
        if from_env and isinstance(raw, str) and raw.lower() in _FALSE:
            return False
        raise error(f"{key}: expected true or false, got {raw!r}")
    if isinstance(default, int):
        value = _number(key, raw, int, "an integer", error, from_env)
    elif isinstance(default, float):
        value = float(_number(key, raw, float, "a number", error, from_env))
        if value != value or value in (float("inf"), float("-inf")):
            raise error(f"{key}: expected a finite number, got {raw!r}")
    elif isinstance(default, tuple):
        return _strings(key, raw, metadata, error)
    else:
        if not isinstance(raw, str):
            raise error(f"{key}: expected a string, got {raw!r}")
        if len(raw) > MAX_STRING:
            raise error(f"{key}: string longer than {MAX_STRING} characters")
        choices = metadata.get("choices")
        if choices and raw not in choices:
            raise error(f"{key}: {raw!r} is not one of {', '.join(choices)}")
        return raw
    lo, hi = metadata.get("lo"), metadata.get("hi")
    if lo is not None and value < lo:
        raise error(f"{key}: {value!r} is below the minimum {lo}")
    if hi is not None and value > hi:
        raise error(f"{key}: {value!r} is above the maximum {hi}")
    return value


def _number(key: str, raw: Any, kind: type[int] | type[float], name: str,
            error: type[Exception], from_env: bool) -> int | float:
    if isinstance(raw, bool):
        raise error(f"{key}: expected {name}, got {raw!r}")
    if isinstance(raw, int) or (kind is float and isinstance(raw, float)):
        return raw
    if from_env and isinstance(raw, str):
        try:
            return kind(raw.strip())
        except ValueError:
            pass
    raise error(f"{key}: expected {name}, got {raw!r}")


def _strings(key: str, raw: Any, metadata: Mapping[str, Any],
             error: type[Exception]) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise error(f"{key}: expected an array of strings, got {raw!r}")
    choices = metadata.get("choices")
    if choices:
        bad = [v for v in raw if v not in choices]
        if bad:
            raise error(f"{key}: unknown value(s) {', '.join(map(repr, bad))}; "
                        f"choose from {', '.join(choices)}")
    if not raw:
        raise error(f"{key}: must not be empty")
    return tuple(raw)


def check_value(section_cls: type[Any], section: str, key: str, raw: Any, label: str,
                error: type[Exception], *, from_env: bool = False) -> Any:
    """One known key's value, checked; `label` names it in errors."""
    f = next(f for f in dataclasses.fields(section_cls) if f.name == key)
    return coerce(label, raw, getattr(section_cls(), key), f.metadata, error,
                  from_env=from_env)


def check_section(section_cls: type[Any], values: Any, where: str, section: str,
                  error: type[Exception], *, from_env: bool = False) -> dict[str, Any]:
    """The checked values of one `[section]` table from `where` (a file name,
    "environment", "command line"): an unknown key or a value that is not a
    table is refused naming the section, the key and `where`."""
    if not isinstance(values, Mapping):
        raise error(f"{where}: [{section}] must be a table, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(section_cls)}
    defaults = section_cls()
    out: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise error(f"{where}: unknown key {section}.{key} (known: {known})")
        out[key] = coerce(f"{where}: {section}.{key}", raw, getattr(defaults, key),
                          fields[key].metadata, error, from_env=from_env)
    return out
