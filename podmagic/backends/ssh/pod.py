"""A pod reached over SSH: the `Pod` protocol on top of one `SSHTransport`.

Used by the SSH backend (any host) and by the RunPod backend (its pods).
Pod paths are mapped with `remote.PathMap` when the host gives a pod root
(`PODMAGIC_POD_ROOT` in the server's environment, or `root=`): `/workspace/...`
lands under `<root>/workspace` and commands run with `HOME=<root>/root`, the
same convention as the local sandbox. Repeatable operations (reading the log
from an offset, polling the exit file, touching the heartbeat, killing)
survive a dropped connection transparently; an attached command cut mid-way
raises `ConnectionLost` instead of being silently run twice.
"""

from __future__ import annotations

import errno
import io
import posixpath
import secrets
import shlex
import tarfile
import time
from pathlib import Path
from typing import Iterable

from podmagic.backends import podside as remote
from podmagic.backends.base import (
    BackendError,
    CommandResult,
    Launch,
    OnOutput,
    PodInfo,
    Transfer,
)
from podmagic.backends.ssh.sync import pull_tree, push_file, push_tree
from podmagic.backends.ssh.transport import (
    ConnectionLost,
    SSHTransport,
    is_connection_error,
)
from podmagic.errors import StepFailed
from podmagic.plan import staging
from podmagic.records import replace

q = shlex.quote
TIMEOUT_EXIT = 124
ENV_FILE = "/etc/rp_environment"
KILL_AFTER_SEC = 5


class SSHPod:
    """The `Pod` protocol over SSH."""

    def __init__(self, transport: SSHTransport, info: PodInfo, paths: remote.PathMap,
                 created_root: str | None = None):
        self.transport = transport
        self.info = info
        self.paths = paths
        self.created_root = created_root
        self._waiters: dict[str, object] = {}

    # -- attached commands ---------------------------------------------------
    def run(self, command: str, *, timeout: float, on_output: OnOutput | None = None,
            workdir: str | None = None) -> CommandResult:
        started = time.monotonic()
        try:
            result = self.transport.exec(self._wrap(command, workdir, timeout), retry_start=True,
                                         timeout=timeout + KILL_AFTER_SEC + 30, on_output=on_output)
        except TimeoutError:
            raise TimeoutError(f"command timed out after {timeout:g}s") from None
        except Exception as exc:
            if is_connection_error(exc):
                raise ConnectionLost(
                    f"the SSH connection to {self.transport.target.spec} dropped while a command ran; "
                    "it was not retried because it may have had effects"
                ) from exc
            raise
        if result.exit_code == TIMEOUT_EXIT and time.monotonic() - started >= timeout:
            raise TimeoutError(f"command timed out after {timeout:g}s")
        return result

    def _wrap(self, command: str, workdir: str | None, timeout: float) -> str:
        cd = f"cd {q(self.paths.path(workdir))} 2>/dev/null || cd \"$HOME\"\n" if workdir else "cd \"$HOME\"\n"
        body = self._prelude() + cd + self.paths.text(command)
        inner = f"bash --norc -c {q(body)}"
        return (f"if command -v timeout >/dev/null 2>&1; then exec timeout -k {KILL_AFTER_SEC} "
                f"{max(1, int(timeout))} {inner}; else exec {inner}; fi")

    def _prelude(self) -> str:
        pod_id = f"export PODMAGIC_POD_ID={q(self.info.pod_id)}\n"
        home = self.paths.home
        return pod_id + (f"export HOME={q(home)}; mkdir -p \"$HOME\"\n" if home else "") + self.environment()

    def environment(self) -> str:
        """SSH sessions are bare: RunPod's start.sh leaves the pod's PATH and RUNPOD_* only in
        /etc/rp_environment (read by ~/.bashrc, which `bash -c` never reads), and images put uv
        in ~/.local/bin (on PATH only through /etc/profile.d). Every command gets both."""
        env_file = q((self.paths.root or "") + ENV_FILE)
        return f'[ -r {env_file} ] && . {env_file}; export PATH="$HOME/.local/bin:$PATH"\n'

    # -- the detached run ----------------------------------------------------
    def mapped(self, launch: Launch) -> Launch:
        """The launch with every pod path mapped onto the host."""
        return self.paths.launch(launch)

    def start(self, launch: Launch) -> None:
        """Write the script and launcher and start it detached, in one round trip.

        A per-call token makes the command idempotent: repeated after a
        dropped connection, it neither wipes the run's files nor starts a
        second job.
        """
        m = self.mapped(launch)
        m = replace(m, body=self.environment() + m.body)
        c = m.control_prefix
        exports = {"PODMAGIC_POD_ID": self.info.pod_id, **m.env,
                   **({"HOME": self.paths.home} if self.paths.home else {})}
        files = {path: text.encode() for path, text in remote.launch_files(m, exports).items()}
        dirs = {posixpath.dirname(x) or "/" for x in (*files, m.log_path, c, m.heartbeat_path) if x}
        stale = [c, c + ".ended_by", c + ".pid", c + ".launcher_pid", m.log_path,
                 remote.capture_output_path(c, "start"), remote.capture_output_path(c, "end")]
        token, marker = secrets.token_hex(8), q(c + ".started")
        steps = [
            f"[ \"$(cat {marker} 2>/dev/null)\" = {token} ] && exit 0",
            f"mkdir -p {' '.join(q(d) for d in sorted(dirs))} && rm -f {' '.join(map(q, stale))}",
            "tar -x -p --no-same-owner -C / -f -",
            *([remote.touch_command(m.heartbeat_path)] if m.heartbeat_path else []),
            f"echo {token} > {marker}",
            "{ " + remote.start_command(remote.launcher_path(c)) + "; }",
        ]
        command = steps[0] + "\n" + " && ".join(steps[1:])
        self.transport.forget(*stale)
        self._must(command, stdin=_tar_of(files, 0o700), what="starting the run")

    def read_from(self, path: str, offset: int, limit: int = 1 << 20) -> bytes:
        real = self.paths.path(path)
        return self.transport.retrying(lambda: self.transport.read_at(real, offset, limit))

    def exit_code(self, launch: Launch) -> int | None:
        text = self.read_from(launch.exit_path, 0, 64).decode(errors="replace").strip()
        try:
            return int(text) if text else None
        except ValueError:
            return None

    def wait_exit(self, launch: Launch, timeout: float) -> int | None:
        """Wait on one channel whose command ends when the exit file appears (`remote.exit_wait_command`):
        the end arrives as that channel's exit, with no round trip per poll. After a dropped link the
        channel is opened again; if it cannot be, this is a bounded poll of the exit file."""
        waiter = self._waiters.get(launch.exit_path)
        if waiter is None or (waiter.closed and not waiter.exit_status_ready()):
            try:
                waiter = self.transport.channel(remote.exit_wait_command(self.mapped(launch)))
                self._waiters[launch.exit_path] = waiter
            except Exception:  # noqa: BLE001 - the poll below still notices the end
                self._waiters.pop(launch.exit_path, None)
                time.sleep(timeout)
                return self.exit_code(launch)
        if not waiter.status_event.wait(timeout):
            return None
        code = self.exit_code(launch)
        if code is None:  # the channel ended without the file (a dropped link): a new one next time
            lost = waiter.exit_status == remote.LAUNCHER_LOST_STATUS  # or the launcher is gone for good
            self._close_waiter(launch.exit_path)
            if lost and self.exit_code(launch) is None:
                raise StepFailed(remote.LAUNCHER_LOST)
        return code

    def _close_waiter(self, exit_path: str) -> None:
        waiter = self._waiters.pop(exit_path, None)
        if waiter is not None:
            try:
                waiter.close()
            except Exception:  # noqa: BLE001 - already gone with its link
                pass

    def probe_key(self) -> None:
        return None  # the host can change under us unseen: always probe

    def stable_path(self, path: str) -> bool:
        return False

    def live_gpus(self) -> list[dict] | None:
        return None  # a host has no control plane (RunPod's pod can say)

    def describe(self) -> dict | None:
        return None

    def ended_by(self, launch: Launch) -> str | None:
        """Who ended the run early (`watchdog:max_runtime`, `interrupted`, ...), if anyone."""
        text = self.read_from(launch.exit_path + ".ended_by", 0, 256).decode(errors="replace").strip()
        return text or None

    def heartbeat(self, launch: Launch) -> None:
        if launch.heartbeat_path:
            self._must(remote.touch_command(self.paths.path(launch.heartbeat_path)))

    def kill(self, launch: Launch) -> None:
        self._must(remote.kill_command(self.mapped(launch)))
        self._close_waiter(launch.exit_path)

    # -- files ---------------------------------------------------------------
    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        self._put(self.paths.path(path), data, mode)

    def _put(self, real: str, data: bytes, mode: int) -> None:
        """Write atomically, never readable beyond `mode` (umask 077 until chmod)."""
        tmp = f"{real}.podmagic-tmp"
        command = (f"umask 077; mkdir -p {q(posixpath.dirname(real) or '/')} && cat > {q(tmp)} "
                   f"&& chmod {mode:o} {q(tmp)} && mv -f {q(tmp)} {q(real)}")
        self._must(command, stdin=data, what=f"writing {real}")

    def put_executable(self, source: Path, real_path: str) -> None:
        """Copy one local executable to a real path on the host (not a pod path)."""
        self.transport.retrying(lambda: push_file(self.transport, Path(source), real_path))
        self._must(f"chmod 755 {q(real_path)}")

    def push(self, source: Path, destination: str, *, files: Iterable[str] | None,
             excludes: tuple[str, ...], delete: bool) -> Transfer:
        source = Path(source)
        real = self.paths.path(destination)
        if source.is_file():
            target = real + source.name if real.endswith("/") else real
            return self.transport.retrying(lambda: push_file(self.transport, source, target))
        selected = list(files) if files is not None else staging.walk(source, tuple(excludes))
        # A sync is repeatable: after a drop, the re-listing sends only what did not land.
        return self.transport.retrying(lambda: push_tree(self.transport, source, selected, real,
                                                         excludes=tuple(excludes), delete=delete))

    def pull(self, remote_path: str, local: Path, *, excludes: tuple[str, ...] = (),
             delete: bool = False) -> Transfer:
        real = self.paths.path(remote_path)
        try:
            return self.transport.retrying(lambda: pull_tree(
                self.transport, real, Path(local), excludes=tuple(excludes), delete=delete,
                contents=remote_path.endswith("/")))
        except FileNotFoundError as exc:
            raise FileNotFoundError(errno.ENOENT, f"{remote_path} does not exist on the pod") from exc

    # -- the end -------------------------------------------------------------
    def release(self, action: str) -> str:
        """The host is not ours: only `delete` removes, and only a root we created.

        Returns `TERMINATED` when the pod root was removed, else `RUNNING`
        (the host, and any files, are left as they are).
        """
        for exit_path in list(self._waiters):
            self._close_waiter(exit_path)
        try:
            if action == "delete" and self.created_root:
                # a process still writing under the root (one the kill could not end) can make one
                # `rm -rf` meet a directory that is no longer empty: a few tries, then the error
                root = q(self.created_root)
                self._must(f"for _ in 1 2 3 4 5; do rm -rf -- {root} 2>/dev/null && exit 0; sleep 0.2; done; "
                           f"rm -rf -- {root}", what=f"removing {self.created_root}")
                return "TERMINATED"
            return "RUNNING"
        finally:
            self.transport.close()

    # -- helpers -------------------------------------------------------------
    def _must(self, command: str, *, stdin: bytes | None = None, what: str | None = None) -> str:
        """Run a repeatable internal command; a non-zero exit is a BackendError."""
        result = self.transport.retrying(lambda: self.transport.exec(command, timeout=120, stdin=stdin))
        if result.exit_code != 0:
            raise BackendError(f"{what or 'pod command'} failed ({result.exit_code}): {result.output[-500:]}")
        return result.output


def _tar_of(files: dict[str, bytes], mode: int) -> bytes:
    """A small in-memory archive of absolute paths (stored relative to `/`)."""
    buffer = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path, data in files.items():
            if not path.startswith("/"):
                raise BackendError(f"pod paths must be absolute, got {path!r}")
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, now
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
