"""How a local pod's commands are confined: a bubblewrap mount namespace, else mapped paths.

`mode()` says which one this machine gives (probed once per process, then
cached; `PODMAGIC_LOCAL_SANDBOX=mapped` forces the fallback, `=namespace`
refuses to fall back). `Namespace.argv` wraps one command so that the pod's
volume mount, `/root` (the pod's `$HOME`) and `/tmp` are bind mounts of the
sandbox, the rest of the host is read-only at its own paths, `/dev` is
minimal (plus `/dev/nvidia*` when present), the network is shared, and the
process ids are the host's (no pid namespace: the launcher's job group can
be signalled from any other command of the pod, and a detached run outlives
the client). Imports only the standard library and `podmagic.errors`.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import PurePosixPath

from podmagic.errors import BackendError

FORCE_ENV = "PODMAGIC_LOCAL_SANDBOX"
HOME = "/root"
REPLACED_TOP = ("proc", "dev", "tmp")
"""Top-level host folders a pod never sees as they are (its own /proc, a minimal /dev, its /tmp)."""

_probed: dict[str, tuple[str, ...] | None] = {}
"""bwrap path → the /proc arguments that work here, or None when bwrap cannot run (cached)."""


def mode() -> str:
    """`namespace` or `mapped`: what runs a local pod's commands on this machine."""
    forced = os.environ.get(FORCE_ENV, "").strip().lower()
    if forced == "mapped":
        return "mapped"
    if forced not in ("", "namespace"):
        raise BackendError(f"{FORCE_ENV}={forced!r}: use `namespace` or `mapped`")
    if proc_args() is not None:
        return "namespace"
    if forced == "namespace":
        raise BackendError(f"{FORCE_ENV}=namespace, but bubblewrap (`bwrap`) cannot create a mount namespace "
                           "here: install Debian's `bubblewrap` and allow user namespaces, or unset it")
    return "mapped"


def bwrap() -> str | None:
    return shutil.which("bwrap")


def proc_args() -> tuple[str, ...] | None:
    """How /proc is given to a pod (a fresh proc when allowed, else the host's read-only); None: no bwrap."""
    exe = bwrap()
    if exe is None:
        return None
    if exe not in _probed:
        _probed[exe] = _probe(exe)
    return _probed[exe]


def _probe(exe: str) -> tuple[str, ...] | None:
    with tempfile.TemporaryDirectory(prefix="podmagic-probe-") as tmp:
        for sub in ("workspace", "root", "tmp"):
            os.mkdir(os.path.join(tmp, sub))
        for proc in (("--proc", "/proc"), ("--ro-bind", "/proc", "/proc")):
            ns = Namespace(tmp, "/workspace", proc=proc)
            try:
                done = subprocess.run(ns.argv(["true"], cwd=HOME), stdin=subprocess.DEVNULL,
                                      capture_output=True, timeout=20)
            except (OSError, subprocess.SubprocessError):
                return None
            if done.returncode == 0:
                return proc
    return None


@dataclass(frozen=True)
class Namespace:
    """The mount layout of one pod: `sandbox` holds `workspace/` (the mount), `root/` and `tmp/`."""

    sandbox: str
    mount: str = "/workspace"
    shared: tuple[str, ...] = ()
    """Host folders shared writable at their own paths (uv's cache and Python installs: a warm image)."""
    visible: tuple[str, ...] = ()
    """Host paths shown read-only at their own paths even where the pod's own folders hide them."""
    proc: tuple[str, ...] = ("--proc", "/proc")

    def argv(self, command: list[str], *, cwd: str, die_with_parent: bool = True) -> list[str]:
        args = [bwrap() or "bwrap", *self._root(), "--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm"]
        for dev in sorted(glob.glob("/dev/nvidia*")):
            args += ["--dev-bind", dev, dev]
        args += [*self.proc, "--bind", f"{self.sandbox}/tmp", "/tmp",
                 "--bind", f"{self.sandbox}/root", HOME,
                 "--bind", self.sandbox + self.mount, self.mount]
        for path in self.shared:
            args += ["--bind", path, path]
        for path in self.visible:
            if self.hidden(path):
                args += ["--ro-bind-try", path, path]
        if die_with_parent:
            args.append("--die-with-parent")
        return [*args, "--chdir", cwd, "--", *command]

    def hidden(self, path: str) -> bool:
        """Whether the pod's own folders cover this host path."""
        p = PurePosixPath(path)
        covered = [PurePosixPath("/" + t) for t in REPLACED_TOP] + [PurePosixPath(HOME), PurePosixPath(self.mount)]
        return any(p == c or c in p.parents for c in covered)

    def _root(self) -> list[str]:
        """The host's top level, read-only, minus what the pod replaces; folders above a mount that
        does not exist on the host are opened one level so its mount point can be made."""
        skip = {*REPLACED_TOP, HOME.strip("/")}
        return _layer("/", [p for p in PurePosixPath(self.mount).parts[1:]], skip)


def _layer(host_dir: str, mount_parts: list[str], skip: set[str]) -> list[str]:
    args: list[str] = []
    try:
        names = sorted(os.listdir(host_dir))
    except OSError:
        return args
    head = mount_parts[0] if mount_parts else None
    for name in names:
        path = os.path.join(host_dir, name)
        if name in skip or (name == head and len(mount_parts) == 1):
            continue
        if name == head and os.path.isdir(path) and not os.path.islink(path):
            args += _layer(path, mount_parts[1:], set())  # the mount lies below: open this folder
        elif os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        else:
            args += ["--ro-bind", path, path]
    return args
