"""A small GraphQL reader: enough to answer what the `runpod` SDK sends.

It parses one executable document (`query`/`mutation`, optional name,
selection sets, arguments with string/number/boolean/null/enum/list/object
values, aliases) into `Field` trees, and projects plain dict results onto a
selection set the way a GraphQL server shapes its answer. Fragments,
variables and directives are not supported and are reported as syntax errors.
The SDK builds its documents with f-strings and no escaping, so a `"` inside
a value yields a syntax error here exactly as it does on the real API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from podmagic.errors import PodmagicError

_TOKEN = re.compile(
    r"""
    (?P<ws>[\s,\ufeff]+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<punct>[{}()\[\]:!$=@])
    """,
    re.VERBOSE,
)
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class GraphQLSyntaxError(PodmagicError, ValueError):
    """The document is not GraphQL this reader understands."""


@dataclass(frozen=True)
class Field:
    """One selected field: its name, alias, arguments and sub-selection."""

    name: str
    alias: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    selection: tuple["Field", ...] = ()

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclass(frozen=True)
class Operation:
    """A parsed document: `query` or `mutation` and its root fields."""

    kind: str
    name: str | None
    fields: tuple[Field, ...]


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise GraphQLSyntaxError(f"Syntax Error: Unexpected character {text[pos]!r} at {pos}.")
        pos = match.end()
        if match.lastgroup != "ws":
            out.append((match.lastgroup, match.group()))
    return out


def _unquote(raw: str) -> str:
    body, out, i = raw[1:-1], [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
        elif body[i + 1] == "u":
            out.append(chr(int(body[i + 2:i + 6], 16)))
            i += 6
        else:
            out.append(_ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
    return "".join(out)


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        tok = self.peek()
        if tok is None:
            raise GraphQLSyntaxError("Syntax Error: Unexpected <EOF>.")
        if (value is not None and tok[1] != value) or (kind is not None and tok[0] != kind):
            raise GraphQLSyntaxError(f"Syntax Error: Expected {value or kind}, found {tok[1]!r}.")
        self.i += 1
        return tok[1]

    def at(self, value: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "punct" and tok[1] == value

    def document(self) -> Operation:
        kind, name = "query", None
        tok = self.peek()
        if tok and tok[0] == "name" and tok[1] in ("query", "mutation", "subscription"):
            kind = self.take()
            if self.peek() and self.peek()[0] == "name":
                name = self.take()
        fields = self.selection_set()
        if self.peek() is not None:
            raise GraphQLSyntaxError(f"Syntax Error: Unexpected {self.peek()[1]!r}.")
        return Operation(kind, name, fields)

    def selection_set(self) -> tuple[Field, ...]:
        self.take("{")
        fields = []
        while not self.at("}"):
            fields.append(self.field())
        self.take("}")
        if not fields:
            raise GraphQLSyntaxError("Syntax Error: Expected Name, found '}'.")
        return tuple(fields)

    def field(self) -> Field:
        name, alias = self.take(kind="name"), None
        if self.at(":"):
            self.take(":")
            alias, name = name, self.take(kind="name")
        args = self.arguments() if self.at("(") else {}
        selection = self.selection_set() if self.at("{") else ()
        return Field(name, alias, args, selection)

    def arguments(self) -> dict[str, Any]:
        self.take("(")
        args = {}
        while not self.at(")"):
            key = self.take(kind="name")
            self.take(":")
            args[key] = self.value()
        self.take(")")
        return args

    def value(self) -> Any:
        kind, text = self.peek() or ("eof", "")
        if kind == "string":
            self.i += 1
            return _unquote(text)
        if kind == "number":
            self.i += 1
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "name":
            self.i += 1
            return {"true": True, "false": False, "null": None}.get(text, Enum(text))
        if self.at("["):
            return self.list_value()
        if self.at("{"):
            return self.object_value()
        raise GraphQLSyntaxError(f"Syntax Error: Unexpected {text or '<EOF>'!r}.")

    def list_value(self) -> list[Any]:
        self.take("[")
        items = []
        while not self.at("]"):
            items.append(self.value())
        self.take("]")
        return items

    def object_value(self) -> dict[str, Any]:
        self.take("{")
        obj = {}
        while not self.at("}"):
            key = self.take(kind="name")
            self.take(":")
            obj[key] = self.value()
        self.take("}")
        return obj


class Enum(str):
    """An enum literal (`SECURE`), kept distinct from a quoted string."""


def parse(text: str) -> Operation:
    """Parse one GraphQL document, raising GraphQLSyntaxError when malformed."""
    return _Parser(text).document()


def project(value: Any, selection: tuple[Field, ...]) -> Any:
    """Shape a dict (or list of dicts) result to the fields a client selected."""
    if not selection or value is None:
        return value
    if isinstance(value, list):
        return [project(item, selection) for item in value]
    return {f.key: project(value.get(f.name), f.selection) for f in selection}
