"""Local provenance: git SHA, dirty flag, branch, uncommitted-diff hash and lockfile hash.

The same fields as runpod-deploy's `deploy_metadata` and `capture-env`, plus
`local_git_diff_sha256`: two dirty runs with different uncommitted edits get
different hashes. `local_git_diff` returns the diff bytes themselves (for a
later `reproduce`). Each value is None when it cannot be read; nothing here
raises. Imports only the standard library.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from podmagic.digest import sha256

LOCKFILES = ("uv.lock", "requirements.txt")


def in_repository(path: Path) -> bool:
    """Whether git could find a repository around `path`: a `.git` in it or a folder above, or git told
    where by its environment. False spares a run the git processes that would only say "not a repository"."""
    if any(os.environ.get(name) for name in ("GIT_DIR", "GIT_WORK_TREE")):
        return True
    here = os.path.abspath(path)
    while True:
        if os.path.lexists(os.path.join(here, ".git")):
            return True
        parent = os.path.dirname(here)
        if parent == here:
            return False
        here = parent


def _git(root: Path, *args: str) -> str | None:
    out = _git_bytes(root, *args)
    return None if out is None else out.decode("utf-8", "replace").strip()


def _git_bytes(root: Path, *args: str) -> bytes | None:
    if not in_repository(root):
        return None
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
    return data, sha256(data).hexdigest()


def lockfile(root: Path) -> tuple[str | None, str | None]:
    for name in LOCKFILES:
        path = Path(root) / name
        if path.is_file():
            return name, sha256(path.read_bytes()).hexdigest()
    return None, None


def git_state(root: Path) -> tuple[str | None, str | None, bool | None]:
    """(HEAD's SHA, the branch, dirty) from one `git status --porcelain=v2 --branch`: tracked files only, so
    untracked run directories do not make every run dirty. A detached HEAD's branch is `HEAD` (as
    `rev-parse --abbrev-ref HEAD` says); a repository without commits has no SHA and no branch."""
    out = _git(root, "--no-optional-locks", "status", "--porcelain=v2", "--branch", "--untracked-files=no")
    if out is None:
        return None, None, None
    lines = out.splitlines()
    heads = dict(line[2:].split(" ", 1) for line in lines if line.startswith("# ") and " " in line[2:])
    dirty = any(line and not line.startswith("#") for line in lines)
    sha, branch = heads.get("branch.oid"), heads.get("branch.head")
    if not sha or sha == "(initial)":
        return None, None, dirty
    return sha, "HEAD" if branch == "(detached)" else branch, dirty


def capture(root: Path, *, git: bool = True, lock: bool = True) -> dict[str, object]:
    meta: dict[str, object] = {}
    if git:
        sha, branch, dirty = git_state(root)
        meta.update(local_git_sha=sha, local_git_dirty=dirty, local_git_branch=branch,
                    local_git_diff_sha256=local_git_diff(root)[1] if dirty else None)
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
