"""Local provenance: git SHA, dirty flag, branch, uncommitted-diff hash and lockfile hash.

The same fields as runpod-deploy's `deploy_metadata` and `capture-env`, plus
`local_git_diff_sha256`: two dirty runs with different uncommitted edits get
different hashes. `local_git_diff` returns the diff bytes themselves (for a
later `reproduce`). Each value is None when it cannot be read; nothing here
raises. Imports only the standard library.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

LOCKFILES = ("uv.lock", "requirements.txt")


def _git(root: Path, *args: str) -> str | None:
    out = _git_bytes(root, *args)
    return None if out is None else out.decode("utf-8", "replace").strip()


def _git_bytes(root: Path, *args: str) -> bytes | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


DIFF_ARGS = ("-c", "core.quotepath=off", "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff",
             "--no-textconv", "--no-renames", "--src-prefix=a/", "--dst-prefix=b/", "--full-index")
"""Pinned so that the user's git config (noprefix, renames, external diff tools) cannot change the bytes."""


def local_git_diff(root: Path) -> tuple[bytes | None, str | None]:
    """The uncommitted diff against HEAD and its sha256; (None, None) when clean or unreadable.

    Covers tracked files (staged or not) and untracked files that are staged
    (`git add`ed new files); untracked files that are not staged are left out,
    as `git diff HEAD` leaves them out. The diff is of the whole repository.
    """
    data = _git_bytes(root, *DIFF_ARGS)
    if not data:
        return None, None
    return data, hashlib.sha256(data).hexdigest()


def lockfile(root: Path) -> tuple[str | None, str | None]:
    for name in LOCKFILES:
        path = Path(root) / name
        if path.is_file():
            return name, hashlib.sha256(path.read_bytes()).hexdigest()
    return None, None


def capture(root: Path, *, git: bool = True, lock: bool = True) -> dict[str, object]:
    meta: dict[str, object] = {}
    if git:
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
        meta.update(
            local_git_sha=_git(root, "rev-parse", "HEAD"),
            local_git_dirty=None if status is None else bool(status),
            local_git_branch=_git(root, "rev-parse", "--abbrev-ref", "HEAD"),
            local_git_diff_sha256=local_git_diff(root)[1] if status else None,
        )
    if lock:
        name, digest = lockfile(root)
        meta.update(payload_lockfile=name, payload_lockfile_sha256=digest)
    return meta


def git_toplevel(path: Path) -> Path | None:
    top = _git(path, "rev-parse", "--show-toplevel")
    return Path(top) if top else None


def capture_env(root: Path) -> dict[str, object]:
    """`capture-env`: deploy_metadata plus the interpreter pin committed in the project, if any."""
    meta = capture(root)
    pin = Path(root) / ".python-version"
    meta["python_version"] = pin.read_text().strip() or None if pin.is_file() else None
    return meta
