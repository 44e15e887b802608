"""`{name}` templates with `{{` / `}}` escapes.

`{identifier}` is replaced by the variable's value; `{{` and `}}` stand for
literal braces, so bash `${X}` is written `${{X}}`. Any other brace (JSON
such as `{"a": 1}`) passes through. An unknown name is an error that says
how to escape it and which known name it resembles.
"""

from __future__ import annotations

import difflib
import re
from typing import Mapping

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TemplateError(KeyError):
    def __init__(self, name: str, known: Mapping[str, str], offset: int):
        self.name = name
        self.offset = offset
        close = difflib.get_close_matches(name, list(known), n=1)
        hint = f"did you mean {{{close[0]}}}? " if close else ""
        self.message = (
            f"unknown template variable {{{name}}}; {hint}define it under `variables:` or with "
            f"--var {name}=VALUE, or write {{{{{name}}}}} for a literal {{{name}}} (e.g. bash $"
            f"{{{{{name}}}}})"
        )
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def render(text: str, variables: Mapping[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = match.group(1)
        if name not in variables:
            raise TemplateError(name, variables, match.start())
        return variables[name]

    return _TOKEN.sub(substitute, text)


def names(text: str) -> list[str]:
    """The variable names a template refers to (escapes excluded)."""
    return [m.group(1) for m in _TOKEN.finditer(text) if m.group(1)]
