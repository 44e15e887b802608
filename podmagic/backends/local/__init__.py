"""The local backend: a "pod" is a sandbox folder on this machine, confined where the machine allows.

`sandbox.mode()` decides, once per process:
- `namespace` (Linux with bubblewrap and user namespaces, or root): every
  command runs in its own mount namespace where the volume mount
  (`/workspace`), `/root` (the pod's `$HOME`) and `/tmp` are the sandbox's and
  everything else is the host's, read-only. Commands are not rewritten; a
  path a program builds means what it means on a pod.
- `mapped` (no namespaces): today's fallback. Pod paths in command text are
  rewritten into the sandbox (`podside.PathMap`) and `$HOME` is the
  sandbox's `root/`; a program building `/workspace/...` itself, or writing
  elsewhere, reaches the machine's real files. The run view warns.
Both give a pod's environment: PATH is system folders plus the pod's
`~/.local/bin`, where a link to uv lives (never the client's virtualenv),
`UV_*` settings pass through, uv's cache and Python installs are shared
(a warm image). Files travel by `files` (symlinks as symlinks, never out
of the pod). The run is started detached by the launcher the SSH backend
uses. May import `plan`, `podmagic.errors`, the other backends' pod-side text.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from podmagic.backends import podside as remote
from podmagic.backends.base import POD_HANDLE, CommandResult, Launch, OnOutput, PodInfo, PodRequest, Transfer
from podmagic.backends.local import files, sandbox
from podmagic.backends.local.files import OutsidePod
from podmagic.errors import BackendError, StepFailed

PASSTHROUGH = ("LANG", "LC_ALL", "TERM", "TZ", "USER", "LOGNAME", "SSL_CERT_FILE", "SSL_CERT_DIR")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SHOW_ENV = "PODMAGIC_LOCAL_SHOW"
"""Colon-separated host paths a namespace pod also sees (read-only, at their own paths) under /root or /tmp."""
POD_JSON = ".podmagic-pod.json"
"""In the sandbox: which run and project made this pod (for `ls-stale` / `cleanup`)."""
MAPPED_WARNING = ("local sandbox: mapped mode (no mount namespaces here: bubblewrap missing or user namespaces "
                  "off). Only `{mount}` written in command text is redirected into the sandbox; a program that "
                  "builds such paths itself, or writes elsewhere, reaches this machine's real files")


def default_root() -> Path:
    base = os.environ.get("PODMAGIC_LOCAL_ROOT") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "podmagic", "local")
    return Path(base)


def uv_binary() -> str | None:
    """uv's real executable (the `uv` wheel's, else the one on PATH), links resolved. Found once per
    process while it stays there (`find_uv_bin` walks sysconfig's paths; every run asks twice)."""
    if _uv_found and os.path.isfile(_uv_found[0]):
        return _uv_found[0]
    beside = os.path.join(os.path.dirname(sys.executable), "uv")  # where the wheel puts it in a venv
    if sys.prefix != sys.base_prefix and os.access(beside, os.X_OK):  # (find_uv_bin's first look, without sysconfig)
        _uv_found[:] = [os.path.realpath(beside)]
        return _uv_found[0]
    try:
        from uv import find_uv_bin

        found = os.path.realpath(find_uv_bin())
    except (ImportError, FileNotFoundError):
        which = shutil.which("uv")
        found = os.path.realpath(which) if which else None
    _uv_found[:] = [found] if found else []
    return found


_uv_found: list[str] = []


class LocalBackend:
    name = "local"

    def __init__(self, sandbox_root: str | Path | None = None):
        self.root = Path(sandbox_root) if sandbox_root else default_root()

    def provision(self, request: PodRequest, emit: Callable[..., None]) -> "LocalPod":
        pod_id = f"local-{request.run_id}"
        mode = sandbox.mode(self.root)
        remote.PathMap(str(self.root / "pods" / pod_id), request.volume_mount)  # the mapped fallback's rule
        box = self.root / "pods" / pod_id
        try:
            box.mkdir(parents=True, exist_ok=True)
            box = box.resolve()
            for sub in ("root/.local/bin", "tmp", request.volume_mount.strip("/")):
                (box / sub).mkdir(parents=True, exist_ok=True)
            os.chmod(box / "tmp", 0o1777)
            uv = uv_binary()
            link = box / "root/.local/bin/uv"
            if uv and not link.is_symlink():
                link.symlink_to(uv)
            (box / POD_JSON).write_text(json.dumps({"pod_id": pod_id, "run_id": request.run_id, "sandbox": mode,
                                                   "run_dir": str(request.run_dir or "")}))
            info = PodInfo(pod_id=pod_id, backend=self.name, gpu_id="local", datacenter_id="local",
                           price_per_hour_usd=0.0, price_source="local", host=os.uname().nodename, sandbox=mode)
            emit(POD_HANDLE, **vars(info), state="RUNNING")
            emit("gpu_selected", gpu_id="local", datacenter_id="local", sandbox=mode)
            if mode == "mapped":
                emit("warning", message=MAPPED_WARNING.format(mount=request.volume_mount))
            return LocalPod(info, box, request.volume_mount, self.root.resolve(), mode)
        except BaseException:  # interrupted before the runner has the pod: nobody else would release it
            shutil.rmtree(box, ignore_errors=True)
            raise


class LocalPod:
    def __init__(self, info: PodInfo, box: Path, mount: str, cache_root: Path, mode: str = "namespace"):
        self.info = info
        self.sandbox = box
        self.mode = mode
        self.mount = mount
        self.paths = remote.PathMap(str(box), mount)
        self.files = files.PodFiles(box, mount, namespace=mode == "namespace")
        self.env = self._environment(cache_root)
        self.ns = sandbox.Namespace(str(box), mount, shared=self._shared(), visible=self._visible(),
                                    proc=sandbox.proc_args() or ("--proc", "/proc")) \
            if mode == "namespace" else None
        self._launchers: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, int | None] = {}
        """Each launch's log (by pod path), open from its first read: the job appends to that one file for
        the whole run, so the reads at every look need no path resolution and no open of their own (and a
        job that puts a symlink where its log was cannot redirect them)."""

    # -- environment ---------------------------------------------------------
    @property
    def home(self) -> str:
        return sandbox.HOME if self.mode == "namespace" else str(self.sandbox / "root")

    def _environment(self, cache_root: Path) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASSTHROUGH if k in os.environ}
        env.update({k: v for k, v in os.environ.items() if k.startswith("UV_")})
        env.setdefault("UV_CACHE_DIR", str(cache_root / "uv-cache"))
        env.setdefault("UV_PYTHON_INSTALL_DIR", str(cache_root / "python"))
        for key in ("UV_CACHE_DIR", "UV_PYTHON_INSTALL_DIR"):
            Path(env[key]).mkdir(parents=True, exist_ok=True)
        env["HOME"] = self.home
        env["PATH"] = f"{self.home}/.local/bin:{SYSTEM_PATH}"
        env["PODMAGIC_POD_ID"] = self.info.pod_id
        return env

    def _shared(self) -> tuple[str, ...]:
        return tuple(os.path.realpath(self.env[k]) for k in ("UV_CACHE_DIR", "UV_PYTHON_INSTALL_DIR"))

    def _visible(self) -> tuple[str, ...]:
        """Host paths the pod must read where its own folders would hide them: uv itself, files named
        by `UV_*` settings (a downloads list and the archives it names), pyenv's interpreters (the
        offline mirror repackages them, and they find their library by absolute path) and SHOW_ENV."""
        found = [uv_binary(), os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv"),
                 *filter(None, os.environ.get(SHOW_ENV, "").split(":"))]
        for key, value in self.env.items():
            if key.startswith("UV_") and key not in ("UV_CACHE_DIR", "UV_PYTHON_INSTALL_DIR"):
                found += _paths_named(value)
        return tuple(sorted({os.path.realpath(p) for p in found if p and os.path.exists(p)}))

    def probe_key(self) -> list[object]:
        """What the interpreter probe's answer depends on here, besides the plan (see run.probecache)."""
        env = {k: v for k, v in self.env.items() if k not in ("HOME", "PODMAGIC_POD_ID")}
        env["PATH"] = env["PATH"].replace(self.env["HOME"], "~")
        env["sandbox"] = self.mode
        stores = [self.env.get("UV_PYTHON_INSTALL_DIR", ""), *env["PATH"].split(":")]
        stores += _site_packages(env["PATH"])  # a package installed there changes a freeze
        return [env, [(p, sandbox.mtime_ns(p)) for p in stores if p and not p.startswith("~")]]

    def live_gpus(self) -> list[dict] | None:
        return None  # no control plane: nvidia-smi, where there is one, says it all

    def describe(self) -> dict | None:
        return None

    def stable_path(self, path: str) -> bool:
        """An interpreter outside this pod's own sandbox that still exists (another run sees the same one)."""
        shared = any(path == d or path.startswith(d + os.sep) for d in self.ns.shared) if self.ns else False
        if self.ns is not None and self.ns.hidden(path) and not shared:
            return False  # a pod path (its home, its volume, its /tmp): this pod's own
        real = os.path.realpath(path)
        return os.path.isfile(real) and not real.startswith(str(self.sandbox) + os.sep) \
            and not os.path.abspath(path).startswith(str(self.sandbox) + os.sep)

    # -- commands --------------------------------------------------------------
    def _argv(self, argv: list[str], workdir: str | None, *, detached: bool = False) -> tuple[list[str], str]:
        """The command as it runs in this pod, and the host folder to start it in."""
        if self.ns is None:
            return argv, self._host_cwd(workdir)
        cwd = sandbox.HOME
        if workdir:
            try:
                cwd = workdir if self.files.resolve(workdir).is_dir() else cwd
            except OutsidePod:
                pass
        return self.ns.argv(argv, cwd=cwd, die_with_parent=not detached), str(self.sandbox)

    def _host_cwd(self, workdir: str | None) -> str:
        home = str(self.sandbox / "root")
        if not workdir:
            return home
        try:
            cwd = self.files.resolve(workdir)
        except OutsidePod:
            return home
        return str(cwd) if cwd.is_dir() else home

    def _text(self, text: str) -> str:
        return text if self.ns is not None else self.paths.text(text)

    def run(self, command: str, *, timeout: float, on_output: OnOutput | None = None,
            workdir: str | None = None) -> CommandResult:
        argv, cwd = self._argv(["bash", "-c", self._text(command)], workdir)
        proc = subprocess.Popen(argv, cwd=cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        chunks: list[str] = []
        deadline = time.monotonic() + timeout
        try:
            for chunk in _read_chunks(proc, deadline):
                chunks.append(chunk)
                if on_output:
                    on_output(chunk)
            return CommandResult(proc.wait(), "".join(chunks))
        finally:
            if proc.poll() is None:
                _kill_group(proc.pid)
                proc.wait()

    def _launch(self, launch: Launch) -> Launch:
        """The launch as the launcher sees it: pod paths in a namespace, mapped paths otherwise."""
        return launch if self.ns is not None else self.paths.launch(launch)

    def start(self, launch: Launch) -> None:
        c = launch.control_prefix
        stale = (c, c + ".ended_by", launch.log_path, remote.capture_output_path(c, "start"),
                 remote.capture_output_path(c, "end"))
        for path in stale:
            target = self.files.resolve(path, follow_last=False)
            if target.exists() or target.is_symlink():
                files.remove(target)
        self.files.makedirs(str(Path(launch.log_path).parent))
        if launch.heartbeat_path:
            self.write_file(launch.heartbeat_path, b"", 0o600)
        self._close_log(launch.log_path)
        self._logs[launch.log_path] = None
        seen = self._launch(launch)
        texts = remote.launch_files(seen, seen.env)
        paths = texts if seen is launch else remote.launch_files(launch)  # mapped mode: text sees host paths
        for path, text in zip(paths, texts.values()):
            self.write_file(path, text.encode(), 0o700)
        argv, cwd = self._argv(["bash", remote.launcher_path(seen.exit_path)], None, detached=True)
        # its own session, and no --die-with-parent: the run outlives the client (the watchdog ends it)
        self._launchers[launch.exit_path] = subprocess.Popen(
            argv, cwd=cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)

    def wait_exit(self, launch: Launch, timeout: float) -> int | None:
        """Block up to `timeout` for the launcher (it exits right after writing the exit file; in a
        namespace the launcher's bwrap exits with it): woken by the kernel through a pidfd. A launcher
        that exited without the file (killed) is `StepFailed`: nothing would ever write it."""
        proc = self._launchers.get(launch.exit_path)
        if proc is None:
            time.sleep(timeout)
        elif proc.poll() is None:
            _wait_process(proc, timeout)
            if proc.poll() is None:
                return None  # still running (an exit file written this instant is read next time)
        code = self.exit_code(launch)
        if code is None and proc is not None:
            raise StepFailed(remote.LAUNCHER_LOST)
        return code

    def read_from(self, path: str, offset: int, limit: int = 1 << 20) -> bytes:
        if path in self._logs:
            return self._read_log(path, offset, limit)
        try:
            with open(self.files.resolve(path), "rb") as fh:
                fh.seek(offset)
                return fh.read(limit)
        except (FileNotFoundError, IsADirectoryError):
            return b""

    def _read_log(self, path: str, offset: int, limit: int) -> bytes:
        try:
            fd = self._logs[path]
            if fd is None:  # not there until the launcher makes it
                fd = self._logs[path] = os.open(self.files.resolve(path), os.O_RDONLY | os.O_CLOEXEC)
            return os.pread(fd, limit, offset)
        except (FileNotFoundError, IsADirectoryError):
            self._close_log(path)
            self._logs[path] = None
            return b""

    def _close_log(self, path: str) -> None:
        fd = self._logs.pop(path, None)
        if fd is not None:
            os.close(fd)

    def exit_code(self, launch: Launch) -> int | None:
        try:
            return int(self.read_from(launch.exit_path, 0, 64).decode().strip())
        except ValueError:
            return None

    def ended_by(self, launch: Launch) -> str | None:
        return self.read_from(launch.exit_path + ".ended_by", 0, 256).decode(errors="replace").strip() or None

    def heartbeat(self, launch: Launch) -> None:
        if launch.heartbeat_path:
            os.utime(self.files.resolve(launch.heartbeat_path))

    def kill(self, launch: Launch) -> None:
        self.run(remote.kill_command(self._launch(launch), grace_sec=1), timeout=30)

    # -- files -----------------------------------------------------------------
    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        target = self.files.resolve(path, follow_last=False)
        files.safe_makedirs(self.sandbox, target.parent)
        if target.is_symlink() or target.is_dir():
            files.remove(target)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(target, mode)

    def push(self, source: Path, destination: str, *, files: Iterable[str] | None,
             excludes: tuple[str, ...], delete: bool) -> Transfer:
        dest = self.files.makedirs(destination)
        moved, count = _files.mirror(Path(source), dest, files=None if files is None else list(files),
                                     excludes=excludes, delete=delete)
        return Transfer(moved, count)

    def pull(self, remote_path: str, local: Path, *, excludes: tuple[str, ...] = (),
             delete: bool = False) -> Transfer:
        contents = remote_path.endswith("/")
        src = self.files.resolve(remote_path.rstrip("/") or "/", follow_last=contents)
        if not src.exists() and not src.is_symlink():
            raise FileNotFoundError(f"{remote_path} does not exist on the pod")
        if src.is_symlink() or not src.is_dir():
            target = local / src.name if local.is_dir() and not local.is_symlink() or str(local).endswith("/") \
                else local
            target.parent.mkdir(parents=True, exist_ok=True)
            return Transfer(_files.copy_entry(src, target), 1)
        target = local if contents else local / src.name
        if target.is_symlink():
            target.unlink()
        target.mkdir(parents=True, exist_ok=True)
        moved, count = _files.mirror(src, target, files=None, excludes=excludes, delete=delete)
        return Transfer(moved, count)

    def release(self, action: str) -> str:
        for path in list(self._logs):
            self._close_log(path)
        if action == "delete":
            shutil.rmtree(self.sandbox, ignore_errors=True)
            return "TERMINATED"
        return "RUNNING" if action == "preserve" else "EXITED"


_files = files  # `push` has a parameter called `files`


def _paths_named(value: str) -> list[str]:
    """Absolute paths in a `UV_*` value (`file://` URLs too), and the `file://` URLs inside a JSON list."""
    out = []
    for piece in value.split(os.pathsep if "://" not in value else " "):
        path = piece[len("file://"):] if piece.startswith("file://") else piece
        if path.startswith("/"):
            out.append(path)
            if path.endswith(".json") and os.path.isfile(path):
                out += _urls_in(path)
    return out


def _urls_in(path: str) -> list[str]:
    try:
        text = Path(path).read_text()
    except OSError:
        return []
    import re

    return [u[len("file://"):] for u in re.findall(r'"(file://[^"]+)"', text)]


def _read_chunks(proc: subprocess.Popen, deadline: float):
    import selectors

    fd = proc.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    decoder = _decoder()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("command timed out")
        if not sel.select(timeout=min(remaining, 0.5)):
            continue
        data = os.read(fd, 65536)
        if not data:
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
            return
        text = decoder.decode(data)
        if text:
            yield text


def _site_packages(path: str) -> list[str]:
    """The site-packages folders of the first python3 on PATH (found without running it)."""
    found = shutil.which("python3", path=path)
    if not found:
        return []
    bases = tuple(dict.fromkeys((os.path.dirname(os.path.dirname(os.path.realpath(found))),
                                 os.path.dirname(os.path.dirname(found)))))
    return list(_site_packages_under(bases, tuple(sandbox.mtime_ns(os.path.join(b, "lib")) for b in bases)))


@functools.lru_cache(maxsize=16)
def _site_packages_under(bases: tuple[str, ...], _lib_mtimes: tuple) -> tuple[str, ...]:
    """Cached while each `lib/` folder is unchanged (a new python3.X folder appears there)."""
    pattern = "lib/python3*/site-packages"
    return tuple(sorted({p for base in bases for p in glob.glob(os.path.join(glob.escape(base), pattern))}))


def _wait_process(proc: subprocess.Popen, timeout: float) -> None:
    """Wait for a child's exit: woken by the kernel (a pidfd) where there is one, else Popen's own poll."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        return
    try:
        if select.select([fd], [], [], timeout)[0]:
            proc.wait()
    finally:
        os.close(fd)


def _decoder():
    import codecs

    return codecs.getincrementaldecoder("utf-8")(errors="replace")


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
        time.sleep(0.2)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


__all__ = ["LocalBackend", "LocalPod", "default_root", "uv_binary", "BackendError"]
