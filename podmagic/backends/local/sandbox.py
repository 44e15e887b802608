"""How a local pod's commands are confined: a bubblewrap mount namespace, else mapped paths.

`mode()` says which one this machine gives (probed by running bubblewrap
once per process; given the local backend's root, the answer is also kept
there, in `.sandbox-probe.json`, while everything it depends on is
unchanged: bwrap itself, the boot, the user and its namespaces, the
user-namespace sysctls;
`PODMAGIC_LOCAL_SANDBOX=mapped` forces the fallback, `=namespace` refuses to
fall back). `Namespace.argv` wraps one command so that the pod's
volume mount, `/root` (the pod's `$HOME`) and `/tmp` are bind mounts of the
sandbox, the rest of the host is read-only at its own paths, `/dev` is
minimal (plus `/dev/nvidia*` when present), the network is shared, and the
process ids are the host's (no pid namespace: the launcher's job group can
be signalled from any other command of the pod, and a detached run outlives
the client). Imports only the standard library and `podmagic.errors`.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import posixpath
import shutil
import subprocess
from pathlib import PurePosixPath

from podmagic.errors import BackendError
from podmagic.records import record

FORCE_ENV = "PODMAGIC_LOCAL_SANDBOX"
HOME = "/root"
REPLACED_TOP = ("proc", "dev", "tmp")
"""Top-level host folders a pod never sees as they are (its own /proc, a minimal /dev, its /tmp)."""

_probed: dict[str, tuple[str, ...] | None] = {}
"""bwrap path → the /proc arguments that work here, or None when bwrap cannot run (cached)."""


def mode(cache_dir: str | os.PathLike | None = None) -> str:
    """`namespace` or `mapped`: what runs a local pod's commands on this machine (`cache_dir`: see `proc_args`)."""
    forced = os.environ.get(FORCE_ENV, "").strip().lower()
    if forced == "mapped":
        return "mapped"
    if forced not in ("", "namespace"):
        raise BackendError(f"{FORCE_ENV}={forced!r}: use `namespace` or `mapped`")
    if proc_args(cache_dir) is not None:
        return "namespace"
    if forced == "namespace":
        raise BackendError(f"{FORCE_ENV}=namespace, but bubblewrap (`bwrap`) cannot create a mount namespace "
                           "here: install Debian's `bubblewrap` and allow user namespaces, or unset it")
    return "mapped"


def bwrap() -> str | None:
    """bubblewrap on PATH; a path found once is kept while it is still there (a PATH walk per launch is not free)."""
    path_env = os.environ.get("PATH", os.defpath)
    found = _found.get(path_env)
    if found is None or not os.access(found, os.X_OK):
        found = _found[path_env] = shutil.which("bwrap", path=path_env)
    return found


_found: dict[str, str | None] = {}


def proc_args(cache_dir: str | os.PathLike | None = None) -> tuple[str, ...] | None:
    """How /proc is given to a pod (a fresh proc when allowed, else the host's read-only); None: no bwrap.

    Asked of bubblewrap once per process; with `cache_dir` (the local backend's root) the answer is
    also read from and kept in a file there, so a new process (a CLI run) does not ask again."""
    exe = bwrap()
    if exe is None:
        return None
    if exe not in _probed:
        path = os.path.join(cache_dir, CACHE_NAME) if cache_dir is not None else None
        key = _probe_key(exe)
        cached = _remembered(path, key) if path else False
        _probed[exe] = cached if cached is not False else _remember(path, key, _probe(exe))
    return _probed[exe]


CACHE_NAME = ".sandbox-probe.json"
SYSCTLS = ("/proc/sys/user/max_user_namespaces", "/proc/sys/kernel/unprivileged_userns_clone",
           "/proc/sys/kernel/apparmor_restrict_unprivileged_userns")


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _probe_key(exe: str) -> list:
    """What bubblewrap's answer depends on: the binary, this boot, who asks, from which namespaces, the sysctls."""
    try:
        st = os.stat(exe)
        binary = [os.path.realpath(exe), st.st_ino, st.st_size, st.st_mtime_ns]
    except OSError:
        binary = [exe]
    namespaces = []
    for ns in ("user", "mnt", "pid"):
        try:
            namespaces.append(os.readlink(f"/proc/self/ns/{ns}"))
        except OSError:
            namespaces.append(None)
    return [binary, _read("/proc/sys/kernel/random/boot_id"), os.getuid(), namespaces, [_read(p) for p in SYSCTLS]]


def _remembered(path: str, key: list):
    """The cached /proc arguments (a tuple, or None for "bwrap cannot run") for `key`; False: not known."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or data.get("key") != key:
        return False
    return tuple(data["proc"]) if data.get("proc") else None


def _remember(path: str | None, key: list, proc: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if path is None:
        return proc
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            json.dump({"key": key, "proc": list(proc) if proc else None}, fh)
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs the next process a probe
    return proc


def _probe(exe: str) -> tuple[str, ...] | None:
    import tempfile  # once per machine: the answer is kept

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


@record
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
        """Whether the pod's own folders cover this host path (plain strings: asked on every launch)."""
        p = posixpath.normpath(path)
        covered = ["/" + t for t in REPLACED_TOP] + [HOME, posixpath.normpath(self.mount)]
        return any(p == c or p.startswith(c.rstrip("/") + "/") for c in covered)

    def _root(self) -> list[str]:
        """The host's top level, read-only, minus what the pod replaces; folders above a mount that
        does not exist on the host are opened one level so its mount point can be made."""
        return list(_root_layer(PurePosixPath(self.mount).parts[1:], _mtimes(self.mount)))


def _mtimes(mount: str) -> tuple[int | None, ...]:
    """The modification times of `/` and of each folder above the mount: what `_layer` lists."""
    out, path = [], "/"
    for part in PurePosixPath(mount).parts[1:]:
        out.append(mtime_ns(path))
        path = posixpath.join(path, part)
    return tuple(out)


def mtime_ns(path: str) -> int | None:
    """A path's mtime, None when it is not there (the local pod's caches are keyed on these)."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


@functools.lru_cache(maxsize=8)
def _root_layer(mount_parts: tuple[str, ...], _mtimes: tuple) -> tuple[str, ...]:
    """`_layer` of the host's top level, kept while the folders it lists are unchanged (an entry added,
    removed or replaced changes its folder's mtime): every launch of a pod wraps its command in it."""
    return tuple(_layer("/", list(mount_parts), {*REPLACED_TOP, HOME.strip("/")}))


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
