"""The one error root and the user-facing kinds under it. Imports nothing.

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
