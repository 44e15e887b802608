# PYTHON_ARGCOMPLETE_OK
"""The `podmagic` command line: the same runs as the cell, from a shell, and runpod-deploy's verbs.

    podmagic run FILE [--var k=v] [--vars-file F] [--backend B] [--host H] [--detach] [--dry-run] ...
    podmagic validate FILE [--check-local] [--check-availability] [--check-image] | plan FILE
    podmagic attach RUN | wait RUN | logs RUN [-f] | logs --config FILE | stop RUN
    podmagic runs | ls-runs | show RUN | events RUN | events-query | manifest-summary | compare A B
    podmagic gpu-list | gpu-inventory FILE | gpu-prices | estimate FILE
    podmagic ls-stale | cleanup RUN|--all-stopped|--state-file P | capture-env
    podmagic reproduce RUN [--backend B] [--host H] [--rtol R] [--atol A] [--json]

`podmagic COMMAND --help` explains each. Every command that takes a config file takes it as
FILE or as runpod-deploy's `--config FILE`.

Exit codes: 0 success; 1 the run failed (or `compare-runs` saw a failed run); 2 bad input
(one line on stderr naming the fix; nothing was started and no run directory was written);
3 a full stock-out (`gpu-inventory`, `validate --check-availability`); 130 interrupted.
Job output goes to stdout, progress to stderr.

May import everything under `podmagic` (it is a front end); argparse lives only here and in
the magics. Only the module that owns the command being run is imported (`COMMANDS`): a `podmagic
run` does not pay for the catalogue, audit or reproduce modules, nor for building their parsers.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import os
import re
import sys

from podmagic import __version__
from podmagic.errors import PodmagicError, SpecError, close_matches

MODULES = ("runs", "forensics", "catalog", "audit", "reproduce")
COMMANDS = {
    **dict.fromkeys(("run", "validate", "plan", "attach", "wait", "stop", "logs"), "runs"),
    **dict.fromkeys(("runs", "ls-runs", "show", "events", "events-query", "manifest-summary", "compare",
                     "compare-runs", "capture-env"), "forensics"),
    **dict.fromkeys(("gpu-list", "gpu-prices", "gpu-inventory", "estimate"), "catalog"),
    **dict.fromkeys(("ls-stale", "cleanup"), "audit"),
    "reproduce": "reproduce",
}
"""Which module registers each command (a test holds this to what the modules register)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the fix (exit 2), not the whole usage."""

    def error(self, message: str):  # noqa: D401 - argparse hook
        choice = re.match(r"argument (\S+): invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if choice:
            options = re.findall(r"'([^']*)'", choice.group(3))
            close = close_matches(choice.group(2), options, n=1)
            what = "command" if choice.group(1) == "COMMAND" else choice.group(1)
            message = (f"unknown {what} {choice.group(2)!r}" + (f"; did you mean {close[0]!r}?" if close else
                                                                 f"; choose from {', '.join(options)}"))
        else:
            flag = re.match(r"unrecognized arguments: (--[\w-]+)", message)
            known = _options(self, getattr(self, "command_line", sys.argv[1:])[:1])
            close = close_matches(flag.group(1), known, n=1) if flag else []
            if close:
                message += f"; did you mean {close[0]}?"
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _options(p: argparse.ArgumentParser, command: list[str]) -> list[str]:
    """The option strings of `p`, and of the subcommand named first on the command line."""
    found = []
    for action in p._actions:
        found += action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                if not command or name in command:
                    found += [o for a in child._actions for o in a.option_strings]
    return found


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `command`, only the module that owns it is imported and registered."""
    p = _Parser(prog="podmagic", description="Run %%pod specs (runpod-deploy YAML) from the shell.")
    p.add_argument("--version", action="version", version=f"podmagic {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    if command in COMMANDS:
        importlib.import_module(f"podmagic.ui.cli.{COMMANDS[command]}").register(_OneCommand(sub, command))
        return p
    for name in MODULES:
        importlib.import_module(f"podmagic.ui.cli.{name}").register(sub)
    return p


class _OneCommand:
    """The subcommands action, building only `command`'s parser: the module's other commands get a stand-in
    that drops what it is told (their `add_argument`s were a third of what argparse cost a `podmagic run`)."""

    def __init__(self, sub: argparse._SubParsersAction, command: str):
        self.sub, self.command = sub, command

    def add_parser(self, name: str, **kwargs):
        if self.command in (name, *kwargs.get("aliases", ())):
            return self.sub.add_parser(name, **kwargs)
        return _Unused()

    @property
    def choices(self) -> dict:
        return collections.defaultdict(_Unused, self.sub.choices)


class _Unused:
    def __getattr__(self, name: str):
        return lambda *args, **kwargs: self


def _command(argv: list[str]) -> str | None:
    """The command named on the command line, when nothing else needs the whole parser (help, completion)."""
    if os.environ.get("_ARGCOMPLETE") or not argv or argv[0] not in COMMANDS:
        return None
    return argv[0]


def main(argv: list[str] | None = None) -> int:
    code = _main(argv)
    if argv is None:  # the process's own command line: this process ends here
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """End the process at once when nothing is left to do at exit (no other thread, no atexit callback):
    Python's own shutdown, which frees every imported module, costs a `podmagic run` about 30 ms."""
    import atexit
    import threading

    pending = getattr(atexit, "_ncallbacks", None)
    if pending is None or pending() or threading.active_count() != 1:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return  # a reader that left, a closed stream: the normal exit deals with it
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def _main(argv: list[str] | None) -> int:
    command_line = list(sys.argv[1:] if argv is None else argv)
    p = parser(_command(command_line))
    p.command_line = command_line
    try:
        import argcomplete  # optional: `pip install 'podmagic[completion]'`

        argcomplete.autocomplete(p)
    except ImportError:
        pass
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except SpecError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except PodmagicError as exc:
        print(f"podmagic {args.command}: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        print("\n[podmagic] interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `podmagic gpu-list | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
