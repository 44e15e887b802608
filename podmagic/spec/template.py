"""`{name}` templates with `{{` / `}}` escapes.

`{identifier}` is replaced by the variable's value; `{{` and `}}` stand for
literal braces, so bash `${X}` is written `${{X}}`. Any other brace (JSON
such as `{"a": 1}`) passes through. An unknown name is an error that says
how to escape it and which known name it resembles.

In shell text (commands, the run body) a value must not change the script's
meaning: inside '...' or "..." it is escaped for that quoting, so it arrives
literally; unquoted, a value holding shell-active characters is refused
(`ShellValueError`), while plain words and spaces pass, so fragments such as
`--fp16 --bs 8` still split into arguments as they did in runpod-deploy.
"""

from __future__ import annotations

import difflib
import re
from typing import Mapping

from podmagic.errors import PodmagicError

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TemplateError(PodmagicError, KeyError):
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


SHELL_ACTIVE = set("`$;&|<>()'\"\\\n\r{}")


class ShellValueError(PodmagicError, ValueError):
    def __init__(self, name: str, value_chars: str, offset: int):
        self.name, self.offset = name, offset
        super().__init__(
            f"variable {{{name}}} is pasted unquoted into shell text and its value holds shell characters "
            f"({value_chars}); quote it in the script ('{{{name}}}' or \"{{{name}}}\") so it arrives literally"
        )


def render(text: str, variables: Mapping[str, str], *, shell: bool = False) -> str:
    out: list[str] = []
    state: str | None = None  # None, "'" or '"': the shell quoting at this point of the text
    pos = 0
    for match in _TOKEN.finditer(text):
        literal = text[pos : match.start()]
        out.append(literal)
        state = _quote_state(literal, state) if shell else state
        pos = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            out.append(token[0])
            state = _quote_state(token[0], state) if shell else state
            continue
        name = match.group(1)
        if name not in variables:
            raise TemplateError(name, variables, match.start())
        out.append(_for_shell(name, variables[name], state, match.start()) if shell else variables[name])
    out.append(text[pos:])
    return "".join(out)


def _quote_state(segment: str, state: str | None) -> str | None:
    i = 0
    while i < len(segment):
        c = segment[i]
        if state == "'":
            state = None if c == "'" else state
        elif c == "\\":
            i += 1
        elif state == '"':
            state = None if c == '"' else state
        elif c in "'\"":
            state = c
        elif c == "#" and (i == 0 or segment[i - 1] in " \t\n;"):
            newline = segment.find("\n", i)
            i = len(segment) if newline == -1 else newline
        i += 1
    return state


def _for_shell(name: str, value: str, state: str | None, offset: int) -> str:
    if state == "'":
        return value.replace("'", "'\\''")
    if state == '"':
        return re.sub(r'([\\"$`])', r"\\\1", value)
    bad = sorted(set(value) & SHELL_ACTIVE)
    if bad:
        raise ShellValueError(name, " ".join(repr(c) for c in bad), offset)
    return value


def names(text: str) -> list[str]:
    """The variable names a template refers to (escapes excluded)."""
    return [m.group(1) for m in _TOKEN.finditer(text) if m.group(1)]
