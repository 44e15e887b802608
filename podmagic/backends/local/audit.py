"""Local pods left on this machine (`ls-stale`, `cleanup`): sandboxes kept by `stop` or `preserve`.

A sandbox is `<root>/pods/<pod id>/` (root: `PODMAGIC_LOCAL_ROOT`, else
`~/.cache/podmagic/local`); its `.podmagic-pod.json` names the run that made
it. `pods` lists them with their size on disk (symlinks counted, never
followed); `remove` deletes one. The front end decides which are stale
(their run finished) and confirms. Standard library only.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path

from podmagic.backends.local import POD_JSON, default_root
from podmagic.errors import PodmagicError
from podmagic.records import record


@record
class LocalPodDir:
    pod_id: str
    path: Path
    size_bytes: int
    modified_utc: str
    run_id: str | None
    run_dir: Path | None
    sandbox: str | None


def pods(root: Path | None = None) -> list[LocalPodDir]:
    """Every sandbox under `root`, largest first."""
    base = (root or default_root()) / "pods"
    if not base.is_dir():
        return []
    out = []
    for entry in sorted(base.iterdir()):
        if not entry.is_dir() or entry.is_symlink():
            continue
        try:
            meta = json.loads((entry / POD_JSON).read_text())
        except (OSError, ValueError):
            meta = {}
        run_dir = meta.get("run_dir") or None
        out.append(LocalPodDir(
            pod_id=entry.name, path=entry, size_bytes=disk_usage(entry),
            modified_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry.stat().st_mtime)),
            run_id=meta.get("run_id") or (entry.name[len("local-"):] if entry.name.startswith("local-") else None),
            run_dir=Path(run_dir) if run_dir else None, sandbox=meta.get("sandbox")))
    return sorted(out, key=lambda p: (-p.size_bytes, p.pod_id))


def disk_usage(path: Path) -> int:
    """Bytes the tree takes on disk (allocated blocks), links not followed."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                total += st.st_blocks * 512
    return total


def remove(pod_id: str, root: Path | None = None) -> str:
    """Delete the sandbox of `pod_id`; its id."""
    base = (root or default_root()) / "pods"
    if not pod_id or "/" in pod_id or pod_id in (".", ".."):
        raise PodmagicError(f"{pod_id!r} is not a local pod id")
    target = base / pod_id
    if target.is_symlink() or not target.is_dir():
        raise PodmagicError(f"local pod {pod_id} does not exist under {base} (already removed?)")
    shutil.rmtree(target, onerror=_writable_and_retry)
    return pod_id


def _writable_and_retry(func, path, _exc) -> None:
    os.chmod(os.path.dirname(path), 0o700)
    func(path)
