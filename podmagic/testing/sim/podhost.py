"""The machine side of a simulated pod: a real sshd over its own root dir, as RunPod boots it.

Each pod has `<state_dir>/pods/<id>/root` standing in for its `/` (`/workspace` is
`root/workspace`, `$HOME` is `root/root`, `/etc` is `root/etc`). A container start does what
RunPod images' start.sh does (runpod/containers, `export_env_vars` and `setup_ssh`):

- it writes `PATH` and every `RUNPOD_*` variable of the container to `/etc/rp_environment` and
  appends `source /etc/rp_environment` to `~/.bashrc`, after Ubuntu's "not interactive: return"
  guard. SSH sessions get none of the container's environment: sshd gives them its bare default
  PATH, and a non-interactive command stops at that guard;
- it authorizes `PUBLIC_KEY` (the keys the control plane decided on) in
  `~/.ssh/authorized_keys` and starts sshd only when there is one;
- the image decides where uv is (`images.py`): nowhere, or `~/.local/bin/uv` put on PATH only
  by `/etc/profile.d/uv.sh` (read by login shells only), or on the image's PATH.

Two things reach sessions that a real pod would not have, both plumbing of this machine:
`PODMAGIC_POD_ROOT` (the pod root, how the SSH pod maps `/workspace` and `/etc` here) and
the offline stand-ins for the internet (`UV_PYTHON_DOWNLOADS_JSON_URL`, `UV_PYTHON_INSTALL_DIR`,
`UV_CACHE_DIR` from `image_env`). A boot runs on a thread: it reserves the port, starts sshd
when the boot says SSH is up, and can be cancelled. `halt()` is what a stop, a terminate or a
host failure does: the sshd and every process of the pod (found by `PODMAGIC_SIM_POD` in their
environment, detached ones included) die.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Callable

from podmagic.testing import sshd as sshd_mod
from podmagic.testing.sshd import SSHServer, SSHServerError, free_port, keygen
from podmagic.testing.sim.state import Boot

OFFLINE_STANDINS = ("UV_PYTHON_DOWNLOADS_JSON_URL", "UV_PYTHON_INSTALL_DIR", "UV_CACHE_DIR")
SSHD_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def pod_pids(marker: str) -> list[int]:
    """Processes whose environment holds the exact `NAME=value` `marker`."""
    needle, found = marker.encode(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def kill_marked(marker: str, rounds: int = 3) -> int:
    """SIGKILL every process carrying `marker`; repeat to catch late forks."""
    killed = 0
    for _ in range(rounds):
        pids = pod_pids(marker)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.02)
    return killed


class PodHost:
    """The sshd and filesystem of one pod; boots are cancellable threads."""

    def __init__(self, pod_dir: Path, pod_id: str):
        self.pod_dir = Path(pod_dir)
        self.pod_id = pod_id
        self.root = self.pod_dir / "root"
        self._lock = threading.Lock()
        self._server: SSHServer | None = None
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    @property
    def marker(self) -> str:
        return f"PODMAGIC_SIM_POD={self.pod_id}"

    def prepare(self, volume: Path | None = None) -> None:
        """Create the pod's dirs; a network volume is shared: `workspace` links to it."""
        (self.root / "root").mkdir(parents=True, exist_ok=True)
        workspace = self.root / "workspace"
        if volume is None:
            workspace.mkdir(exist_ok=True)
        elif not workspace.is_symlink():
            volume.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(workspace, ignore_errors=True)
            workspace.symlink_to(volume, target_is_directory=True)

    def boot(self, boot: Boot, env: dict[str, str], on_port: Callable[[int], None],
             keys: tuple[str, ...] = (), uv: str = "none") -> None:
        """Start booting: the container's start.sh, then the port is reported to `on_port`."""
        self.halt()
        self._cancel = threading.Event()
        args = (boot, env, on_port, tuple(keys), uv, self._cancel)
        self._thread = threading.Thread(target=self._run_boot, args=args,
                                        name=f"sim-pod-{self.pod_id}", daemon=True)
        self._thread.start()

    def _run_boot(self, boot, env, on_port, keys, uv, cancel) -> None:
        port = free_port()
        if not self._sleep_until(boot.runtime_at, cancel):
            return
        self.start_sh(env, keys, uv)
        if not self._sleep_until(boot.ports_at, cancel):
            return
        on_port(port)
        if not keys or not self._sleep_until(boot.ssh_at, cancel):
            return  # start.sh starts sshd only when PUBLIC_KEY is set
        self._start_sshd(port, env, keys, cancel)

    def start_sh(self, env: dict[str, str], keys: tuple[str, ...], uv: str) -> None:
        """What RunPod images' start.sh leaves on disk (paths under the pod root)."""
        etc, home = self.root / "etc", self.root / "root"
        etc.mkdir(parents=True, exist_ok=True)
        home.mkdir(parents=True, exist_ok=True)
        path = image_path(env.get("PATH") or SSHD_DEFAULT_PATH, keep_uv=uv == "path")
        exported = {"PATH": path, **{k: v for k, v in env.items() if k.startswith("RUNPOD_")}}
        (etc / "rp_environment").write_text("".join(f'export {k}="{v}"\n' for k, v in sorted(exported.items())))
        if not (home / ".bashrc").exists():
            # Ubuntu's default ~/.bashrc opens with this guard, so the line start.sh appends after it
            # never runs for a non-interactive `ssh pod CMD` (bash reads ~/.bashrc when sshd starts it)
            (home / ".bashrc").write_text("case $- in\n    *i*) ;;\n      *) return;;\nesac\n")
        with (home / ".bashrc").open("a") as rc:
            rc.write(f"source {etc / 'rp_environment'}\n")
        if uv == "local-bin":
            local = home / ".local" / "bin"
            local.mkdir(parents=True, exist_ok=True)
            if not (local / "uv").exists():
                (local / "uv").symlink_to(uv_binary())
            (etc / "profile.d").mkdir(exist_ok=True)
            (etc / "profile.d" / "uv.sh").write_text('export PATH="$HOME/.local/bin:$PATH"\n')
        if keys:
            (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
            (home / ".ssh" / "authorized_keys").write_text("\n".join(keys) + "\n")

    @staticmethod
    def _sleep_until(moment: float, cancel: threading.Event) -> bool:
        while not cancel.is_set():
            left = moment - time.time()
            if left <= 0:
                return True
            cancel.wait(min(left, 0.5))
        return False

    def _start_sshd(self, port: int, env: dict[str, str], keys: tuple[str, ...], cancel: threading.Event) -> None:
        session = {k: env[k] for k in OFFLINE_STANDINS if k in env}
        session.update({"PODMAGIC_POD_ROOT": str(self.root), "HOME": str(self.root / "root"),
                        "PODMAGIC_SIM_POD": self.pod_id})
        server = PodSSHServer(self.pod_dir / "sshd", self.root / "root" / ".ssh" / "authorized_keys",
                              env=session, port=port)
        for attempt in range(5):
            with self._lock:
                if cancel.is_set():
                    return
                try:
                    self._server = server.start()
                    self.error = None
                    return
                except SSHServerError as exc:
                    self.error = str(exc)
            time.sleep(0.2 * (attempt + 1))

    def halt(self) -> None:
        """Cancel any boot, stop sshd, kill every process of the pod."""
        self._cancel.set()
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=15)
        kill_marked(self.marker)

    def wipe_container_disk(self, keep_workspace: bool) -> None:
        """What a stop does to the container: everything but the volume goes."""
        if not self.root.exists():
            return
        for child in self.root.iterdir():
            if keep_workspace and child.name == "workspace":
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink()
        (self.root / "root").mkdir(parents=True, exist_ok=True)

    def destroy(self) -> None:
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)


class PodSSHServer(SSHServer):
    """sshd whose authorized keys are the pod's `~/.ssh/authorized_keys` (what start.sh wrote)."""

    def __init__(self, workdir: Path, authorized_keys: Path, **kw):
        super().__init__(workdir, client_key=Path(workdir) / "no-client-key", **kw)
        self.authorized = Path(authorized_keys)

    def stop(self) -> None:
        """A host that dies takes every connection with it: the listener is frozen first, so no
        connection accepted while the sessions are killed outlives it."""
        if self._proc is None:
            return
        try:
            os.kill(self._proc.pid, signal.SIGSTOP)
        except ProcessLookupError:
            pass
        self.drop_connections()
        try:
            os.kill(self._proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._kill_listener()

    def _prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            sshd_mod.PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        if not self.host_key.exists():
            keygen(self.host_key, "runpod-sim-host")
        (self.workdir / "authorized_keys").write_text(self.authorized.read_text())


def uv_binary() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def image_path(path: str, keep_uv: bool) -> str:
    """The image's PATH; without `keep_uv`, directories holding a `uv` are left out (no uv in the image)."""
    if keep_uv:
        return path
    return ":".join(d for d in path.split(":") if d and not (Path(d) / "uv").exists())
