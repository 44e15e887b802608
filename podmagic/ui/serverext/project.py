"""Which project the server's panel shows, and safe lookup of its runs."""

from __future__ import annotations

from pathlib import Path

from podmagic.errors import RunNotFound
from podmagic.run import store
from podmagic.run.provenance import git_toplevel


def project_root_for(root_dir: str | Path) -> Path:
    """The git top level above `root_dir`, else `root_dir` itself."""
    root = Path(root_dir).expanduser().resolve()
    return git_toplevel(root) or root


def valid_run_id(run_id: str) -> bool:
    """A run id is one safe path component (store.RUN_ID_RE), never `.`/`..`."""
    return bool(store.RUN_ID_RE.match(run_id)) and run_id not in (".", "..")


def run_dir_for(project_root: Path, run_id: str) -> Path:
    """The run directory of `run_id`, which must lie inside the runs root.

    Raises ValueError for a malformed id and RunNotFound for an unknown run.
    """
    if not valid_run_id(run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    found = store.find_run(project_root, run_id)
    runs_root = store.runs_root(project_root).resolve()
    if found.resolve().parent != runs_root or found.name != run_id:
        raise RunNotFound(f"no run {run_id!r} under {runs_root}")
    return found
