"""Local provenance: git SHA, dirty flag, branch and lockfile hash.

The same fields as runpod-deploy's `deploy_metadata` and `capture-env`.
Each value is None when it cannot be read; nothing here raises.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

LOCKFILES = ("uv.lock", "requirements.txt")


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


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
