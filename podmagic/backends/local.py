"""The local backend: a "pod" is a sandbox directory on this machine.

Pod paths under the volume mount (`/workspace/...`) map into the sandbox and
`$HOME` is the sandbox's `root/`, so a body written for a real pod runs
unchanged (see `remote.PathMap`). Commands run with a pod-like environment:
the client's PATH with uv's own binary first, `UV_*` settings passed through,
and a shared uv cache and Python install directory (like a warm image), but
none of the client's other variables. The run itself is started detached by
the same launcher the SSH backend uses.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable

from podmagic.backends import podside as remote
from podmagic.backends.base import (
    CommandResult,
    Launch,
    OnOutput,
    PodInfo,
    PodRequest,
    Transfer,
)
from podmagic.plan import staging

PASSTHROUGH = ("LANG", "LC_ALL", "TERM", "TZ", "USER", "LOGNAME", "SSL_CERT_FILE", "SSL_CERT_DIR")


def default_root() -> Path:
    base = os.environ.get("PODMAGIC_LOCAL_ROOT") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "podmagic", "local")
    return Path(base)


def _uv_bin_dir() -> str | None:
    try:
        from uv import find_uv_bin

        return str(Path(find_uv_bin()).parent)
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        return str(Path(found).parent) if found else None


class LocalBackend:
    name = "local"

    def __init__(self, sandbox_root: str | Path | None = None):
        self.root = Path(sandbox_root) if sandbox_root else default_root()

    def provision(self, request: PodRequest, emit: Callable[..., None]) -> "LocalPod":
        pod_id = f"local-{request.run_id}"
        sandbox = self.root / "pods" / pod_id
        try:
            (sandbox / "root").mkdir(parents=True, exist_ok=True)
            (sandbox / request.volume_mount.lstrip("/")).mkdir(parents=True, exist_ok=True)
            info = PodInfo(pod_id=pod_id, backend=self.name, gpu_id="local", datacenter_id="local",
                           price_per_hour_usd=0.0, price_source="local", host=os.uname().nodename)
            emit("gpu_selected", gpu_id="local", datacenter_id="local")
            return LocalPod(info, sandbox, request.volume_mount, self.root)
        except BaseException:  # interrupted before the runner has the pod: nobody else would release it
            shutil.rmtree(sandbox, ignore_errors=True)
            raise


class LocalPod:
    def __init__(self, info: PodInfo, sandbox: Path, mount: str, cache_root: Path):
        self.info = info
        self.sandbox = sandbox
        self.paths = remote.PathMap(str(sandbox), mount)
        self.env = self._environment(cache_root)
        self._launchers: dict[str, subprocess.Popen] = {}

    def _environment(self, cache_root: Path) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASSTHROUGH if k in os.environ}
        env.update({k: v for k, v in os.environ.items() if k.startswith("UV_")})
        env.setdefault("UV_CACHE_DIR", str(cache_root / "uv-cache"))
        env.setdefault("UV_PYTHON_INSTALL_DIR", str(cache_root / "python"))
        uv_dir = _uv_bin_dir()
        path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        env["HOME"] = self.paths.home or str(self.sandbox / "root")
        env["PATH"] = ":".join(p for p in (f"{env['HOME']}/.local/bin", uv_dir, path) if p)
        env["PODMAGIC_POD_ID"] = self.info.pod_id
        return env

    def probe_key(self) -> list[object]:
        """What the interpreter probe's answer depends on here, besides the plan (see run.probecache)."""
        env = {k: v for k, v in self.env.items() if k not in ("HOME", "PODMAGIC_POD_ID")}
        env["PATH"] = env["PATH"].replace(self.env["HOME"], "~")
        stores = [self.env.get("UV_PYTHON_INSTALL_DIR", ""), *env["PATH"].split(":")]
        return [env, [(p, _mtime_ns(p)) for p in stores if p and not p.startswith("~")]]

    def stable_path(self, path: str) -> bool:
        """An interpreter outside this pod's own sandbox that still exists (another run sees the same one)."""
        real = os.path.realpath(path)
        return os.path.isfile(real) and not real.startswith(str(self.sandbox) + os.sep) \
            and not os.path.abspath(path).startswith(str(self.sandbox) + os.sep)

    def _cwd(self, workdir: str | None) -> str:
        cwd = self.paths.path(workdir) if workdir else self.env["HOME"]
        return cwd if os.path.isdir(cwd) else self.env["HOME"]

    def run(self, command: str, *, timeout: float, on_output: OnOutput | None = None,
            workdir: str | None = None) -> CommandResult:
        proc = subprocess.Popen(["bash", "-c", self.paths.text(command)], cwd=self._cwd(workdir), env=self.env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
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

    def _mapped(self, launch: Launch) -> Launch:
        p = self.paths.path
        return replace(launch, script_path=p(launch.script_path), log_path=p(launch.log_path),
                       exit_path=p(launch.exit_path), workdir=p(launch.workdir) if launch.workdir else "",
                       heartbeat_path=p(launch.heartbeat_path) if launch.heartbeat_path else None,
                       body=self.paths.text(launch.body))

    def start(self, launch: Launch) -> None:
        m = self._mapped(launch)
        Path(m.exit_path).parent.mkdir(parents=True, exist_ok=True)
        for path in (m.exit_path, m.exit_path + ".ended_by", m.log_path):
            Path(path).unlink(missing_ok=True)
        Path(m.script_path).parent.mkdir(parents=True, exist_ok=True)
        Path(m.script_path).write_text(m.body)
        Path(m.log_path).parent.mkdir(parents=True, exist_ok=True)
        if m.heartbeat_path:
            Path(m.heartbeat_path).touch()
        launcher = Path(m.exit_path + ".launcher.sh")
        launcher.write_text(remote.launcher_script(m, launch.env))
        self._launchers[m.exit_path] = subprocess.Popen(
            ["bash", str(launcher)], cwd=self._cwd(None), env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def wait_exit(self, launch: Launch, timeout: float) -> int | None:
        """Block up to `timeout` for the launcher (it exits right after writing the exit file): woken by
        the kernel through a pidfd, so the end is noticed at once."""
        proc = self._launchers.get(self.paths.path(launch.exit_path))
        if proc is None:
            time.sleep(timeout)
        elif proc.poll() is None:
            _wait_process(proc, timeout)
        return self.exit_code(launch)

    def read_from(self, path: str, offset: int, limit: int = 1 << 20) -> bytes:
        try:
            with open(self.paths.path(path), "rb") as fh:
                fh.seek(offset)
                return fh.read(limit)
        except FileNotFoundError:
            return b""

    def exit_code(self, launch: Launch) -> int | None:
        try:
            return int(Path(self.paths.path(launch.exit_path)).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def ended_by(self, launch: Launch) -> str | None:
        try:
            return Path(self.paths.path(launch.exit_path) + ".ended_by").read_text().strip() or None
        except FileNotFoundError:
            return None

    def heartbeat(self, launch: Launch) -> None:
        if launch.heartbeat_path:
            Path(self.paths.path(launch.heartbeat_path)).touch()

    def kill(self, launch: Launch) -> None:
        self.run(remote.kill_command(self._mapped(launch), grace_sec=1), timeout=30)

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        target = Path(self.paths.path(path))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(target, mode)

    def push(self, source: Path, destination: str, *, files: Iterable[str] | None,
             excludes: tuple[str, ...], delete: bool) -> Transfer:
        dest = Path(self.paths.path(destination))
        dest.mkdir(parents=True, exist_ok=True)
        selected = list(files) if files is not None else staging.walk(source, excludes)
        sent = sum(_sync_file(source / rel, dest / rel) for rel in selected)
        if delete:
            for rel in staging.deletions(staging.walk(dest, ()), selected, excludes):
                (dest / rel).unlink()
        return Transfer(sent, len(selected))

    def pull(self, remote_path: str, local: Path, *, excludes: tuple[str, ...] = (),
             delete: bool = False) -> Transfer:
        src = Path(self.paths.path(remote_path))
        if src.is_file():
            target = local / src.name if local.is_dir() or str(local).endswith("/") else local
            target.parent.mkdir(parents=True, exist_ok=True)
            return Transfer(_sync_file(src, target), 1)
        if not src.is_dir():
            raise FileNotFoundError(f"{remote_path} does not exist on the pod")
        target = local if remote_path.endswith("/") else local / src.name
        target.mkdir(parents=True, exist_ok=True)
        selected = staging.walk(src, excludes)
        moved = sum(_sync_file(src / rel, target / rel) for rel in selected)
        if delete:
            for rel in staging.deletions(staging.walk(target, ()), selected, excludes):
                (target / rel).unlink()
        return Transfer(moved, len(selected))

    def release(self, action: str) -> str:
        if action == "delete":
            shutil.rmtree(self.sandbox, ignore_errors=True)
            return "TERMINATED"
        return "RUNNING" if action == "preserve" else "EXITED"


def _sync_file(src: Path, dst: Path) -> int:
    """Copy when size or mtime differ (rsync's quick check); bytes copied."""
    st = src.stat()
    try:
        dt = dst.stat()
        if dt.st_size == st.st_size and int(dt.st_mtime) == int(st.st_mtime):
            return 0
    except FileNotFoundError:
        dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst, follow_symlinks=True)
    return st.st_size


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


def _mtime_ns(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


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
