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
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from podmagic.errors import BackendError
from podmagic.plan import staging

MAX_LINKS = 40


class OutsidePod(BackendError):
    """A pod path that leads outside the pod (`..`, or a symlink out of it)."""


@dataclass(frozen=True)
class PodFiles:
    sandbox: Path
    """The sandbox folder, already resolved (no symlinks in it)."""
    mount: str = "/workspace"
    namespace: bool = True
    """In a namespace an absolute symlink target is a pod path; mapped, it is a host path."""

    @property
    def prefixes(self) -> tuple[str, ...]:
        return (self.mount.rstrip("/") or "/", "/root", "/tmp")

    def lexical(self, pod_path: str) -> Path:
        """The sandbox path of a pod path, without looking at the disk."""
        p = PurePosixPath(pod_path)
        if not p.is_absolute() or ".." in p.parts:
            raise OutsidePod(f"pod path {pod_path!r} must be absolute, without `..`")
        if not any(p == PurePosixPath(x) or PurePosixPath(x) in p.parents for x in self.prefixes):
            raise OutsidePod(f"pod path {pod_path!r} is outside the local pod (under {', '.join(self.prefixes)})")
        return self.sandbox / str(p).lstrip("/")

    def inside(self, path: Path) -> bool:
        return any(path == self.sandbox / x.lstrip("/") or (self.sandbox / x.lstrip("/")) in path.parents
                   for x in self.prefixes)

    def resolve(self, pod_path: str, *, follow_last: bool = True) -> Path:
        """The sandbox path `pod_path` reaches, symlinks followed as in the pod; OutsidePod if it leaves."""
        start = self.lexical(pod_path)
        parts = list(start.relative_to(self.sandbox).parts)
        current, hops = self.sandbox, 0
        while parts:
            name = parts.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                if current == self.sandbox:
                    raise OutsidePod(f"pod path {pod_path!r} leads outside the pod (above its root)")
                current = current.parent
                continue
            nxt = current / name
            if (parts or follow_last) and nxt.is_symlink():
                hops += 1
                if hops > MAX_LINKS:
                    raise OutsidePod(f"pod path {pod_path!r}: too many levels of symlinks")
                target = os.readlink(nxt)
                if target.startswith("/"):
                    current, parts = self.sandbox, self._link_parts(pod_path, target) + parts
                else:
                    parts = list(PurePosixPath(target).parts) + parts
                continue
            current = nxt
        if not self.inside(current):
            raise OutsidePod(f"pod path {pod_path!r} leads outside the pod (to {current}) through a symlink")
        return current

    def _link_parts(self, pod_path: str, target: str) -> list[str]:
        if self.namespace:
            try:
                return list(self.lexical(target).relative_to(self.sandbox).parts)
            except OutsidePod:
                raise OutsidePod(f"pod path {pod_path!r} leads outside the pod through a symlink to {target}")
        real = Path(os.path.normpath(target))
        if real != self.sandbox and self.sandbox not in real.parents:
            raise OutsidePod(f"pod path {pod_path!r} leads outside the pod through a symlink to {target}")
        return list(real.relative_to(self.sandbox).parts)

    def makedirs(self, pod_path: str) -> Path:
        """Create a pod folder (resolved inside the pod); its sandbox path."""
        path = self.resolve(pod_path)
        safe_makedirs(self.sandbox, path)
        return path


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
