"""The one error root and the user-facing kinds under it. Imports nothing (difflib on an error path).

Front ends catch `PodmagicError` and show its message in one line; any other exception is a
bug and shows as one (a traceback).
"""

from __future__ import annotations


class PodmagicError(Exception):
    """Something a user can act on: the message says what is wrong and what to do."""


class RunNotFound(PodmagicError, LookupError):
    """A run id, prefix, sweep id or artifact label that names nothing (or more than one run)."""

    def __str__(self) -> str:  # LookupError's KeyError-like repr quoting is not for people
        return str(self.args[0]) if self.args else "run not found"


class BackendError(PodmagicError):
    """A failure of the backend itself (not of the user's commands)."""


class CapacityError(BackendError):
    """No GPU × datacenter combination could be placed."""


class StepFailed(PodmagicError):
    """A setup/preflight/staging step or the run failed; the message says what to do."""


class Stopped(PodmagicError):
    """The run was asked to stop (Stop button, `podmagic stop`, panel)."""


class SpecError(PodmagicError, ValueError):
    """A bad spec: where it is, what is wrong and how to fix it (`spec.jobspec` raises it)."""

    def __init__(self, message: str, line: int = 1, col: int = 1, source: str = "cell"):
        self.message, self.line, self.col, self.source = message, line, col, source
        super().__init__(str(self))

    def __str__(self) -> str:
        message = self.message.replace("\r", "\\r").replace("\n", "\\n")  # always one line
        if self.source.startswith("--"):  # a command-line flag has no line or column
            return f"{self.source}: error: {message}"
        return f"{self.source}:{self.line}:{self.col}: error: {message}"


def close_matches(word: str, options, n: int = 1, cutoff: float = 0.6) -> list[str]:
    """The did-you-mean candidates for `word` (difflib is imported only when a message needs one)."""
    import difflib

    return difflib.get_close_matches(word, list(options), n=n, cutoff=cutoff)
