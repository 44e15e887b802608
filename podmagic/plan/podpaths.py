"""Pod paths of a plan, checked before anything is created (errors carry the cell's line and column).

A secret's `destination` must be absolute on every backend (runpod-deploy's
rule). Where the pod is a folder standing in for a pod (the local backend,
an SSH host with `--root`), every pod path a plan hands over — staging and
secret destinations, artifact `remote_path`s, `run.script_path` and
`run.log_path` (and so the working folder, the first staging destination) —
must be absolute, without `..`, and under the volume mount or `/root` (the
pod's `$HOME`): only those are the pod's own. Symlinks are the backend's
part (it resolves them inside the pod when it touches a path). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

from podmagic.records import record
from podmagic.spec.jobspec import JobSpec

HOME = "/root"


@record
class PodPath:
    field: str
    """Dotted spec path (`staging[0].destination`): where an error points."""
    value: str
    """The rendered pod path."""


def check(spec: JobSpec, paths: Iterable[PodPath], *, mount: str, confined: bool) -> None:
    for p in paths:
        problem = secret_problem(p) if p.field.startswith("secrets[") else None
        if problem is None and confined:
            problem = confined_problem(p.value, mount)
        if problem:
            raise spec.error(p.field, f"`{p.field}` is {p.value!r}: {problem}")


def secret_problem(p: PodPath) -> str | None:
    if not p.value.startswith("/"):
        return "a secret's destination must be an absolute pod path (e.g. /root/.env); a relative one would " \
               "land wherever the pod's shell starts"
    return None


def confined_problem(value: str, mount: str) -> str | None:
    path = PurePosixPath(value)
    if not value.startswith("/"):
        return f"pod paths must be absolute here (under {mount} or {HOME}); `~` and relative paths are not pod paths"
    if ".." in path.parts:
        return "pod paths may not contain `..`: on this backend it would step out of the pod's folder"
    owned = (PurePosixPath(mount), PurePosixPath(HOME))
    if not any(path == o or o in path.parents for o in owned):
        return (f"on this backend only {mount} (the volume) and {HOME} (the pod's home) belong to the pod; "
                "anything else is this machine's own files")
    return None
