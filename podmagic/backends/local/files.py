"""The client's side of a local pod's files: pod paths → sandbox paths, and transfers like rsync -a.

`PodFiles.resolve` turns a pod path into the sandbox path it means *inside
the pod*: a symlink the pod made is followed the way the pod would follow
it (an absolute target is a pod path), and a path that would leave the
pod's own folders (its volume mount, `/root`, `/tmp`) is refused with
`OutsidePod` instead of reaching the client's files. `place` writes one
entry without ever writing through a symlink: a symlink is copied as a
symlink, a symlink standing where a folder or file goes is replaced (rsync
`-a` without `--keep-dirlinks`). Standard library plus `plan.staging`.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from podmagic.errors import BackendError
from podmagic.plan import staging
from podmagic.records import record

MAX_LINKS = 40


class OutsidePod(BackendError):
    """A pod path that leads outside the pod (`..`, or a symlink out of it)."""


@record
class PodFiles:
    sandbox: Path
    """The sandbox folder, already resolved (no symlinks in it)."""
    mount: str = "/workspace"
    namespace: bool = True
    """In a namespace an absolute symlink target is a pod path; mapped, it is a host path."""

    @property
    def prefixes(self) -> tuple[str, ...]:
        return (self.mount.rstrip("/") or "/", "/root", "/tmp")

    # Plain strings and os.lstat, not pathlib: a run resolves a pod path for every log and exit-file read.
    def _parts(self, pod_path: str) -> list[str]:
        """The components of an absolute pod path under one of the pod's own folders (no disk access)."""
        parts = [x for x in pod_path.split("/") if x not in ("", ".")]
        if not pod_path.startswith("/") or ".." in parts:
            raise OutsidePod(f"pod path {pod_path!r} must be absolute, without `..`")
        if not any(_under("/" + "/".join(parts), x) for x in self.prefixes):
            raise OutsidePod(f"pod path {pod_path!r} is outside the local pod (under {', '.join(self.prefixes)})")
        return parts

    def lexical(self, pod_path: str) -> Path:
        """The sandbox path of a pod path, without looking at the disk."""
        return Path(str(self.sandbox), *self._parts(pod_path))

    def inside(self, path: Path | str) -> bool:
        box = str(self.sandbox)
        return any(_under(str(path), box + x if x != "/" else box) for x in self.prefixes)

    def resolve(self, pod_path: str, *, follow_last: bool = True) -> Path:
        """The sandbox path `pod_path` reaches, symlinks followed as in the pod; OutsidePod if it leaves."""
        box = str(self.sandbox)
        parts = self._parts(pod_path)
        current, hops = box, 0
        while parts:
            name = parts.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                if current == box:
                    raise OutsidePod(f"pod path {pod_path!r} leads outside the pod (above its root)")
                current = os.path.dirname(current)
                continue
            nxt = current + "/" + name
            if (parts or follow_last) and _is_link(nxt):
                hops += 1
                if hops > MAX_LINKS:
                    raise OutsidePod(f"pod path {pod_path!r}: too many levels of symlinks")
                target = os.readlink(nxt)
                if target.startswith("/"):
                    current, parts = box, self._link_parts(pod_path, target) + parts
                else:
                    parts = target.split("/") + parts
                continue
            current = nxt
        if not self.inside(current):
            raise OutsidePod(f"pod path {pod_path!r} leads outside the pod (to {current}) through a symlink")
        return Path(current)

    def _link_parts(self, pod_path: str, target: str) -> list[str]:
        if self.namespace:
            try:
                return self._parts(target)
            except OutsidePod:
                raise OutsidePod(f"pod path {pod_path!r} leads outside the pod through a symlink to {target}")
        real, box = os.path.normpath(target), str(self.sandbox)
        if not _under(real, box):
            raise OutsidePod(f"pod path {pod_path!r} leads outside the pod through a symlink to {target}")
        return [x for x in real[len(box):].split("/") if x]

    def makedirs(self, pod_path: str) -> Path:
        """Create a pod folder (resolved inside the pod); its sandbox path."""
        path = self.resolve(pod_path)
        safe_makedirs(self.sandbox, path)
        return path


def _under(path: str, base: str) -> bool:
    return base == "/" or path == base or path.startswith(base + "/")


def _is_link(path: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def safe_makedirs(base: Path, path: Path) -> None:
    """mkdir -p below `base`, replacing a symlink or file that stands where a folder goes."""
    current = base
    for name in path.relative_to(base).parts:
        current = current / name
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            current.unlink()
        if not current.exists():
            current.mkdir()


def remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path)


def place(src: Path, base: Path, rel: str) -> int:
    """Copy one entry (file or symlink, as it is) to `base/rel`; bytes copied (0 when unchanged)."""
    parts = rel.split("/")
    if len(parts) > 1:
        safe_makedirs(base, base.joinpath(*parts[:-1]))
    target = base.joinpath(*parts)
    return copy_entry(src, target)


def copy_entry(src: Path, target: Path) -> int:
    st = os.lstat(src)
    if stat.S_ISLNK(st.st_mode):
        link = os.readlink(src)
        if target.is_symlink() and os.readlink(target) == link:
            return 0
        if target.exists() or target.is_symlink():
            remove(target)
        os.symlink(link, target)
        return 0
    if not stat.S_ISREG(st.st_mode):
        return 0
    if target.is_symlink() or target.is_dir():
        remove(target)
    else:
        try:
            tt = os.lstat(target)
            if tt.st_size == st.st_size and int(tt.st_mtime) == int(st.st_mtime):
                return 0
        except FileNotFoundError:
            pass
    shutil.copy2(src, target, follow_symlinks=False)
    return st.st_size


def mirror(src: Path, target: Path, *, files: list[str] | None, excludes: tuple[str, ...], delete: bool) -> tuple[int, int]:
    """`src`'s entries (or `files`) into the folder `target`; (bytes moved, entries)."""
    selected = list(files) if files is not None else staging.walk(src, excludes)
    moved = sum(place(src / rel, target, rel) for rel in selected)
    if delete:
        for rel in staging.deletions(staging.walk(target, ()), selected, excludes):
            (target / rel).unlink()
    return moved, len(selected)
