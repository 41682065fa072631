"""Declared request shapes: what each HTTP body, query string and viewer message
may hold, as one object that both checks a request and describes it.

A `Shape` names its fields and their kinds (a string of so many characters, an
integer in a range, a list, a nested object, one of several variants). `read`
checks a parsed body with the same functions every handler used before
(server/core/protocol.py `get_str`, `get_int`, ...), so the error a client gets
is unchanged; `json_schema` gives the JSON Schema (draft 2020-12, the dialect of
OpenAPI 3.1) of exactly what `read` accepts. The web layer validates each body
and query with its route's shape before the handler sees it, and the OpenAPI
document (server/web/openapi.py) is built from the same shapes: the document
cannot promise a field the server refuses, nor omit one it takes.

What a schema cannot say (a field required only when another has some value,
a bound that depends on another field) stays in the feature's parser, and each
such rule is named in the shape's `rules` so the document says it in words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from server.core.errors import BadRequest
from server.core.protocol import (
    ID_PATTERN,
    get_bool,
    get_float,
    get_int,
    get_str,
    query_int,
    reject_unknown,
)

JSON = dict[str, Any]


class Kind(Protocol):
    """One field's type: checks `d[key]` (present, not null) and describes it."""

    def read(self, d: Mapping[str, Any], key: str) -> Any: ...

    def schema(self) -> JSON: ...


@dataclass(frozen=True, slots=True)
class Str:
    max_len: int
    min_len: int = 1
    pattern: re.Pattern[str] | None = None
    # Surrounding space is trimmed before the length is checked.
    strip: bool = False
    choices: tuple[str, ...] = ()
    fmt: str | None = None  # a JSON Schema `format`, such as "uri"
    # What the error says when the pattern does not match (else a generic reason).
    says: str = ""

    def read(self, d: Mapping[str, Any], key: str) -> str:
        value = get_str(d, key, max_len=self.max_len, min_len=self.min_len,
                        pattern=None if self.says else self.pattern, strip=self.strip)
        if self.says and self.pattern is not None and not self.pattern.fullmatch(value):
            raise BadRequest(f"{key}: {self.says}", details={"field": key})
        if self.choices and value not in self.choices:
            quoted = [f"'{c}'" for c in self.choices]
            said = (" or ".join(quoted) if len(quoted) == 2
                    else "one of " + ", ".join(quoted))
            raise BadRequest(f"{key}: must be {said}", details={"field": key})
        return value

    def schema(self) -> JSON:
        if self.choices:
            return {"type": "string", "enum": list(self.choices)}
        out: JSON = {"type": "string", "maxLength": self.max_len}
        if self.min_len and not self.strip:
            out["minLength"] = self.min_len
        if self.pattern is not None:
            out["pattern"] = self.pattern.pattern
        elif self.min_len and self.strip:
            # Counted after trimming: at least one character that is not space; and
            # never a NUL (get_str refuses one anywhere).
            # (\u001c-\u001f and \u0085 are space to Python's strip and \s, not to
            # ECMAScript's \s, which OpenAPI tools use: named, both read it alike.)
            out["pattern"] = r"^[^\u0000]*[^\s\u0000\u001c-\u001f\u0085][^\u0000]*$"
        else:
            out["pattern"] = r"^[^\u0000]*$"
        if self.fmt is not None:
            out["format"] = self.fmt
        return out


# An id as the server makes them and takes them: 1-64 of A-Z a-z 0-9 _ -.
ID: Final = Str(64, pattern=ID_PATTERN)


@dataclass(frozen=True, slots=True)
class Int:
    lo: int
    hi: int

    def read(self, d: Mapping[str, Any], key: str) -> int:
        return get_int(d, key, lo=self.lo, hi=self.hi)

    def schema(self) -> JSON:
        return {"type": "integer", "minimum": self.lo, "maximum": self.hi}


@dataclass(frozen=True, slots=True)
class Num:
    lo: float
    hi: float

    def read(self, d: Mapping[str, Any], key: str) -> float:
        return get_float(d, key, lo=self.lo, hi=self.hi)

    def schema(self) -> JSON:
        return {"type": "number", "minimum": self.lo, "maximum": self.hi}


@dataclass(frozen=True, slots=True)
class Bool:
    def read(self, d: Mapping[str, Any], key: str) -> bool:
        return get_bool(d, key, default=False)

    def schema(self) -> JSON:
        return {"type": "boolean"}


@dataclass(frozen=True, slots=True)
class ListOf:
    """A list of `item`s, `min_items` to `max_items` long; `unique`: no repeats."""

    item: Kind
    min_items: int
    max_items: int
    unique: bool = False
    what: str = "values"  # how the error names an item ("strings", "bands")

    def read(self, d: Mapping[str, Any], key: str) -> list[Any]:
        raw = d[key]
        if not isinstance(raw, list) or not self.min_items <= len(raw) <= self.max_items:
            raise BadRequest(f"{key}: expected a list of {self.min_items} to "
                             f"{self.max_items} {self.what}", details={"field": key})
        values = [self.item.read({f"{key}[{i}]": v}, f"{key}[{i}]") for i, v in enumerate(raw)]
        if self.unique and len({repr(v) for v in values}) != len(values):
            raise BadRequest(f"{key}: must be distinct", details={"field": key})
        return values

    def schema(self) -> JSON:
        out: JSON = {"type": "array", "items": self.item.schema(),
                     "minItems": self.min_items, "maxItems": self.max_items}
        if self.unique:
            out["uniqueItems"] = True
        return out


@dataclass(frozen=True, slots=True)
class Field:
    kind: Kind
    required: bool = False
    # Filled in when the field is absent or null (None: left absent).
    default: Any = None
    doc: str = ""


def req(kind: Kind, doc: str = "") -> Field:
    return Field(kind, True, None, doc)


def opt(kind: Kind, default: Any = None, doc: str = "") -> Field:
    return Field(kind, False, default, doc)


@dataclass(frozen=True, slots=True)
class Shape:
    """A JSON object: its fields, how errors name it (`what`: "product",
    "reward.coupon"), and the rules between fields the parser keeps.

    `exclusive`: groups of fields of which at most one may be given;
    `one_required`: groups of which exactly one must be; `non_empty`: name at
    least one field (a PATCH)."""

    what: str
    fields: Mapping[str, Field]
    doc: str = ""
    exclusive: tuple[tuple[str, ...], ...] = ()
    one_required: tuple[tuple[str, ...], ...] = ()
    non_empty: str | None = None  # the error when it names no field
    rules: tuple[str, ...] = ()
    names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", frozenset(self.fields))

    def read(self, body: Any) -> dict[str, Any]:
        """The checked values of the fields given (null counts as not given),
        with defaults filled in. Raises BadRequest naming the first wrong field."""
        if not isinstance(body, dict):
            raise BadRequest(f"{self.what}: expected a JSON object", details={"field": self.what})
        reject_unknown(body, self.names, self.what)
        if self.non_empty is not None and not any(body.get(k) is not None for k in body):
            raise BadRequest(self.non_empty)
        for group in self.exclusive:
            given = [k for k in group if body.get(k) is not None]
            if len(given) > 1:
                raise BadRequest(f"{self.what}: give {' or '.join(group)}, not both")
        for group in self.one_required:
            given = [k for k in group if body.get(k) is not None]
            if len(given) != 1:
                raise BadRequest(f"{self.what}: give {' or '.join(group)}, one of the two")
        out: dict[str, Any] = {}
        for name, spec in self.fields.items():
            if body.get(name) is None:
                if spec.required:
                    hint = ", true or false" if isinstance(spec.kind, Bool) else ""
                    raise BadRequest(f"{name}: required{hint}", details={"field": name})
                if spec.default is not None:
                    # A fresh list for a tuple default: read again, it is still a list.
                    out[name] = list(spec.default) if isinstance(spec.default, tuple) \
                        else spec.default
                continue
            out[name] = spec.kind.read(body, name)
        return out

    def schema(self) -> JSON:
        props: JSON = {}
        for name, spec in self.fields.items():
            prop = spec.kind.schema()
            if not spec.required:
                # null is taken as "not given"
                prop = nullable(prop)
            if spec.default is not None:
                prop["default"] = list(spec.default) if isinstance(spec.default, tuple) \
                    else spec.default
            if spec.doc:
                prop["description"] = spec.doc
            props[name] = prop
        out: JSON = {"type": "object", "properties": props, "additionalProperties": False}
        required = [n for n, s in self.fields.items() if s.required]
        if required:
            out["required"] = required
        if self.non_empty is not None:
            out["minProperties"] = 1
        clauses: list[JSON] = [{"not": {"required": list(g)}} for g in self.exclusive
                               if len(g) == 2]
        clauses += [{"oneOf": [{"required": [k]} for k in g]} for g in self.one_required]
        if clauses:
            out["allOf"] = clauses
        described = " ".join(x for x in (self.doc, *self.rules) if x)
        if described:
            out["description"] = described
        return out


def nullable(prop: JSON) -> JSON:
    """`prop` or null: a type list where it has one type, else anyOf."""
    kind = prop.get("type")
    if isinstance(kind, str) and "$ref" not in prop:
        prop = dict(prop)
        prop["type"] = [kind, "null"]
        if "enum" in prop:
            prop["enum"] = [*prop["enum"], None]
        return prop
    return {"anyOf": [prop, {"type": "null"}]}


@dataclass(frozen=True, slots=True)
class Obj:
    """A nested object of a given shape."""

    shape: Shape

    def read(self, d: Mapping[str, Any], key: str) -> dict[str, Any]:
        value = d[key]
        if not isinstance(value, dict):
            raise BadRequest(f"{key}: expected an object", details={"field": key})
        return self.shape.read(value)

    def schema(self) -> JSON:
        return self.shape.schema()


@dataclass(frozen=True, slots=True)
class Variants:
    """An object whose `tag` field picks its shape (each shape declares the tag
    itself as a one-choice Str)."""

    tag: str
    shapes: Mapping[str, Shape]

    def read(self, d: Mapping[str, Any], key: str) -> dict[str, Any]:
        value = d[key]
        if not isinstance(value, dict):
            raise BadRequest(f"{key}: expected an object", details={"field": key})
        tag = value.get(self.tag)
        shape = self.shapes.get(tag) if isinstance(tag, str) else None
        if shape is None:
            quoted = " or ".join(f"'{t}'" for t in self.shapes)
            raise BadRequest(f"{key}.{self.tag}: must be {quoted}",
                             details={"field": f"{key}.{self.tag}"})
        return shape.read(value)

    def schema(self) -> JSON:
        return {"oneOf": [s.schema() for s in self.shapes.values()],
                "discriminator": {"propertyName": self.tag}}


# ------------------------------------------------------------------ query strings


@dataclass(frozen=True, slots=True)
class QueryInt:
    default: int
    lo: int
    hi: int
    doc: str = ""

    def read(self, query: Mapping[str, str], name: str) -> int:
        return query_int(query, name, self.default, self.lo, self.hi)

    def schema(self) -> JSON:
        return {"type": "integer", "minimum": self.lo, "maximum": self.hi,
                "default": self.default}


@dataclass(frozen=True, slots=True)
class QueryStr:
    max_len: int
    required: bool = False
    doc: str = ""

    def read(self, query: Mapping[str, str], name: str) -> str | None:
        value = query.get(name)
        if value is None or value == "":
            if self.required:
                raise BadRequest(f"{name}: required, at most {self.max_len} characters",
                                 details={"field": name})
            return None
        if len(value) > self.max_len:
            raise BadRequest(f"{name}: must be at most {self.max_len} characters",
                             details={"field": name})
        return value

    def schema(self) -> JSON:
        return {"type": "string", "minLength": 1 if self.required else 0,
                "maxLength": self.max_len}


@dataclass(frozen=True, slots=True)
class Query:
    """A GET route's query parameters; `strict`: any other parameter is refused."""

    params: Mapping[str, QueryInt | QueryStr]
    strict: bool = False

    def read(self, query: Mapping[str, str]) -> dict[str, Any]:
        if self.strict:
            unknown = sorted(set(query) - set(self.params))
            if unknown:
                raise BadRequest(f"unknown query parameter(s) {', '.join(unknown)}; use "
                                 f"{' and '.join(self.params)}", details={"fields": unknown})
        return {name: p.read(query, name) for name, p in self.params.items()}

    def parameters(self) -> list[JSON]:
        out = []
        for name, p in self.params.items():
            param: JSON = {"name": name, "in": "query",
                           "required": isinstance(p, QueryStr) and p.required,
                           "schema": p.schema()}
            if p.doc:
                param["description"] = p.doc
            out.append(param)
        return out


def paged(default: int, hi: int) -> Query:
    """`limit` (and nothing else): the common page of a list."""
    return Query({"limit": QueryInt(default, 1, hi, "how many to return")})
