"""`{name}` templates with `{{` / `}}` escapes, and the shell rule for values.

`{identifier}` is replaced by the variable's value; `{{` and `}}` stand for
literal braces, so bash `${X}` is written `${{X}}`. Any other brace (JSON
such as `{"a": 1}`) passes through. An unknown name is an error that says
how to escape it and which known name it resembles.

In shell text (commands, the run body) a value reaches bash as data, never
as code (`render_shell`). A value of plain words (`PLAIN`: letters, digits,
`_ . / : = + , @ % ^ -`, spaces and tabs) is pasted as written, so
`python train.py {args}` with `args="--fp16 --bs 8"` splits into arguments.
Any other value is exported as `PODMAGIC_V_<name>` and the text gets a
reference that bash expands as data where the `{name}` stands: `"${P}"`
unquoted, `${P}` inside "..." and unquoted here-documents, `'"${P}"'` inside
'...', `'"${P}"$'` inside $'...'. The context is read from a real bash parser
(tree-sitter-bash), never from a quote tracker of our own. Where no reference
is data (a quoted here-document delimiter, arithmetic, a name, `${...}`,
arguments of commands that run their arguments as code) such a value is
refused with its position and the fix.

Imports only `podmagic.errors`; tree-sitter is imported on first use.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from podmagic.errors import PodmagicError, close_matches
from podmagic.records import record

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
PLAIN = re.compile(r"[A-Za-z0-9_./:=+,@%^ \t-]*\Z")
ENV_PREFIX = "PODMAGIC_V_"
PLAIN_CHARS = "letters, digits, _ . / : = + , @ % ^ - and spaces"


class TemplateError(PodmagicError, KeyError):
    def __init__(self, name: str, known: Mapping[str, str], offset: int):
        self.name = name
        self.offset = offset
        close = close_matches(name, list(known), n=1)
        hint = f"did you mean {{{close[0]}}}? " if close else ""
        self.message = (
            f"unknown template variable {{{name}}}; {hint}define it under `variables:` or with "
            f"--var {name}=VALUE, or write {{{{{name}}}}} for a literal {{{name}}} (e.g. bash $"
            f"{{{{{name}}}}})"
        )
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class ShellValueError(PodmagicError, ValueError):
    """A value that is not plain words stands where bash has no way to take it as data."""

    def __init__(self, name: str, offset: int, where: str, fix: str):
        self.name, self.offset = name, offset
        self.message = (f"variable {{{name}}} {where}, and its value is not plain words ({PLAIN_CHARS}), "
                        f"so it could run as code; {fix}")
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


@record
class Shell:
    """Rendered shell text and the variables it needs in its environment."""

    text: str
    env: tuple[tuple[str, str], ...] = ()

    def with_exports(self) -> str:
        """The text, preceded on its first line by the exports it refers to (line numbers stay)."""
        if not self.env:
            return self.text
        return "export " + " ".join(f"{k}={ansi_c_quote(v)}" for k, v in self.env) + "; " + self.text


def render(text: str, variables: Mapping[str, str]) -> str:
    """Text with every `{name}` replaced by its value (not shell text: no rule applies)."""
    return "".join(piece if name is None else variables[name] for piece, name, _ in _pieces(text, variables))


def _pieces(text: str, variables: Mapping[str, str]) -> list[tuple[str, str | None, int]]:
    """(literal, None, offset) and (value, name, offset) pieces of a template."""
    out: list[tuple[str, str | None, int]] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        out.append((text[pos:match.start()], None, pos))
        pos = match.end()
        if match.group(1) is None:
            out.append((match.group(0)[0], None, match.start()))
            continue
        name = match.group(1)
        if name not in variables:
            raise TemplateError(name, variables, match.start())
        out.append((variables[name], name, match.start()))
    out.append((text[pos:], None, pos))
    return out


def render_shell(text: str, variables: Mapping[str, str]) -> Shell:
    pieces = _pieces(text, variables)
    uses = [(i, name, value, offset) for i, (value, name, offset) in enumerate(pieces) if name is not None]
    if not uses:
        return Shell("".join(p[0] for p in pieces))
    needs_parse = any(not PLAIN.match(v) for _i, _n, v, _o in uses) or "<<" in text
    contexts = _contexts(pieces, uses) if needs_parse else {}
    out = [p[0] for p in pieces]
    env: dict[str, str] = {}
    for i, name, value, offset in uses:
        ctx = contexts.get(i)
        if PLAIN.match(value):
            if ctx is not None and ctx.kind == "heredoc" and ctx.delimiter in value.split():
                raise ShellValueError(name, offset, f"is inside a here-document ending at {ctx.delimiter}",
                                      "its value holds that word; choose another delimiter")
            continue
        if ctx is None or ctx.refuse:
            where, fix = ctx.refuse if ctx else ("is in shell text", "")
            raise ShellValueError(name, offset, where, fix)
        env[ENV_PREFIX + name] = value
        out[i] = _reference(ctx.kind, ENV_PREFIX + name)
    return Shell("".join(out), tuple(env.items()))


def _reference(kind: str, var: str) -> str:
    return {
        "word": f'"${{{var}}}"',
        "dquote": f"${{{var}}}",
        "heredoc": f"${{{var}}}",
        "comment": f"${{{var}}}",
        "squote": f"'\"${{{var}}}\"'",
        "ansic": f"'\"${{{var}}}\"$'",
    }[kind]


def ansi_c_quote(value: str) -> str:
    """`value` as one bash word on one line: $'...' with \\, ' and control characters escaped."""
    out = []
    for c in value:
        if c in "\\'":
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif ord(c) < 32 or ord(c) == 127:
            out.append(f"\\{ord(c):03o}")
        else:
            out.append(c)
    return "$'" + "".join(out) + "'"


# ------------------------------------------------------------------ contexts


@record
class _Context:
    kind: str  # word, dquote, squote, ansic, heredoc, comment
    refuse: tuple[str, str] | None = None
    delimiter: str = ""


_PLACEHOLDER = "PODMAGICTPL{}Z"
_ARITH_TEST = {"-eq", "-ne", "-lt", "-le", "-gt", "-ge"}
_CODE_COMMANDS = {"eval", "let", "trap", "source", ".", "ssh", "su", "watch", "parallel"}
_NAME_COMMANDS = {"read", "mapfile", "readarray", "getopts", "unset", "wait"}
_SHELLS = {"bash", "sh", "dash", "zsh", "ksh", "fish", "busybox"}
_QUOTING = {"string": "dquote", "translated_string": "dquote", "raw_string": "squote",
            "ansi_c_string": "ansic", "comment": "comment"}
_RESETS = {"command_substitution", "process_substitution"}
_DECIDING = {*_QUOTING, *_RESETS, "heredoc_body", "heredoc_content", "heredoc_redirect", "expansion",
             "arithmetic_expansion", "subscript", "test_command", "binary_expression", "command",
             "declaration_command", "variable_assignment", "compound_statement", "c_style_for_statement"}
_VALUE_FIX = "assign it to a variable first (X={v}) and use $X there"
_PLAIN_FIX = "make the value plain words or move {v} to ordinary arguments"


@functools.lru_cache(maxsize=1)
def _parser():
    import tree_sitter
    import tree_sitter_bash

    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_bash.language()))


def _contexts(pieces, uses) -> dict[int, _Context]:
    """The bash context of each use, from a parse of the text with a plain placeholder per use."""
    chunks: list[bytes] = []
    spans: dict[int, tuple[int, int]] = {}
    size = 0
    for i, (value, name, _offset) in enumerate(pieces):
        data = (_PLACEHOLDER.format(i) if name is not None else value).encode("utf-8", "surrogatepass")
        if name is not None:
            spans[i] = (size, size + len(data))
        chunks.append(data)
        size += len(data)
    src = b"".join(chunks)
    root = _parser().parse(src).root_node
    return {i: _classify(root, src, *spans[i], name) for i, _n, _v, _o in uses
            for name in [pieces[i][1]]}


def _text(node, src: bytes) -> str:
    return src[node.start_byte:node.end_byte].decode("utf-8", "replace")


def _classify(root, src: bytes, start: int, end: int, name: str) -> _Context:
    v = "{" + name + "}"
    node = root.descendant_for_byte_range(start, end)
    error = _first_error(root) if root.has_error else None
    if error is not None and (error.start_byte < end or node.has_error):  # text before {v} is trusted only
        return _Context("word", (f"is in shell text that podmagic's bash parser cannot read (from line "
                                 f"{error.start_point[0] + 1} of this text)",
                                 f"fix the syntax if it is wrong, or {_PLAIN_FIX.format(v=v)}"))
    chain = []
    n = node
    while n is not None:
        chain.append(n)
        n = n.parent
    for depth, n in enumerate(chain):  # any ancestor can make a value code: arithmetic, eval, bash -c ...
        if n.has_error and n.parent is not None and n.type in _DECIDING:
            return _Context("word", ("is in shell text that podmagic's bash parser cannot read",
                                     f"fix the syntax if it is wrong, or {_PLAIN_FIX.format(v=v)}"))
        refuse = _refusal(n, chain[depth - 1] if depth else None, src, start, v)
        if refuse:
            return _Context("word", refuse)
    for n in chain:  # the innermost quoting decides the reference
        if n.type in _QUOTING:
            return _Context(_QUOTING[n.type])
        if n.type in _RESETS:
            return _Context("word")
        if n.type in ("heredoc_body", "heredoc_content"):
            delimiter = _heredoc_start(n, src)
            if delimiter is None or re.search(r"['\"\\]", delimiter):
                return _Context("heredoc", (
                    "is inside a here-document whose delimiter is quoted (<<'EOF'), where nothing expands",
                    f"use an unquoted delimiter (<<EOF, then escape $ ` \\ in the text) or "
                    f"{_PLAIN_FIX.format(v=v)}"), (delimiter or "").strip("'\"\\"))
            return _Context("heredoc", None, delimiter)
        if n.type == "expansion":
            return _Context("word", ("is inside ${...}", _VALUE_FIX.format(v=v)))
        if n.type in ("variable_name", "heredoc_start", "file_descriptor", "special_variable_name") \
                or (n.type == "word" and n.parent is not None and n.parent.type == "function_definition"):
            return _Context("word", ("names a variable, a function or a here-document delimiter here",
                                     _PLAIN_FIX.format(v=v)))
    return _Context("word")


def _refusal(n, child, src: bytes, start: int, v: str) -> tuple[str, str] | None:
    """Why a value cannot be data below this ancestor, if it cannot."""
    t = n.type
    if t in ("arithmetic_expansion", "subscript", "c_style_for_statement") or (
            t == "compound_statement" and n.child_count and n.children[0].type == "(("):
        return ("is in arithmetic ($((...)), ((...)), an array index), which bash evaluates as code",
                _PLAIN_FIX.format(v=v))
    if t == "binary_expression" and any(c.type == "test_operator" and _text(c, src) in _ARITH_TEST
                                        for c in n.children):
        return ("is compared with -eq/-lt/... inside [[ ]], which evaluates it as arithmetic",
                "use [ ... ] or (( )) with a plain value, or " + _PLAIN_FIX.format(v=v))
    if t == "declaration_command" and any(re.fullmatch(r"-\w*i\w*", _text(c, src)) for c in n.children):
        return ("is assigned to an integer (declare -i) variable, which bash evaluates as arithmetic",
                _PLAIN_FIX.format(v=v))
    names_it = ("names a variable here (bash evaluates an index in a name: `a[$(cmd)]`)",
                "pass the name as a plain word, or " + _PLAIN_FIX.format(v=v))
    if t == "declaration_command" and child is not None and not (
            child.type == "variable_assignment" and any(c.type == "=" and c.end_byte <= start
                                                        for c in child.children)):
        return names_it
    if t == "unary_expression" and any(c.type == "test_operator" and _text(c, src) == "-v" for c in n.children):
        return names_it
    if t == "command_substitution" and _text(n, src).startswith("`") and "\\`" in _text(n, src):
        return ("is inside nested backticks", "write $(...) instead of `...`")
    if t == "command":
        words = [_text(c, src) for c in n.children if c.end_byte <= start]
        base = [w.rsplit("/", 1)[-1] for w in words]
        if base and (base[0] in _NAME_COMMANDS or words[-1] == "-v" and base[0] in ("printf", "test", "[")):
            return names_it
        if base and (base[0] in _CODE_COMMANDS or any(b in _SHELLS for b in base) and
                     any(re.fullmatch(r"-[a-z]*c[a-z]*", w) for w in words)):
            return (f"is an argument of `{words[0]}`, which runs its arguments as code",
                    f"export X={v} first and use \"$X\" inside that code, or "
                    + _PLAIN_FIX.format(v=v))
    return None


def _heredoc_start(node, src: bytes) -> str | None:
    n = node
    while n is not None and n.type != "heredoc_redirect":
        n = n.parent
    if n is None:
        return None
    for c in n.children:
        if c.type == "heredoc_start":
            return _text(c, src)
    return None


def _first_error(root):
    stack = [root]
    while stack:
        n = stack.pop()
        if n.type == "ERROR" or n.is_missing:
            return n
        stack.extend(reversed([c for c in n.children if c.has_error or c.type == "ERROR" or c.is_missing]))
    return root


def names(text: str) -> list[str]:
    """The variable names a template refers to (escapes excluded)."""
    return [m.group(1) for m in _TOKEN.finditer(text) if m.group(1)]
