"""The machine side of a simulated pod: a real sshd over its own root dir.

Each pod has `<state_dir>/pods/<id>/root` standing in for its filesystem
(`/workspace` is `root/workspace`, `$HOME` is `root/root`) and a real
OpenSSH server (`podmagic.testing.sshd.SSHServer`) whose sessions carry the
pod's environment (`PODMAGIC_POD_ROOT`, `RUNPOD_POD_ID`, `RUNPOD_API_KEY`,
`RUNPOD_API_BASE_URL`, ...) and the pod's own `HOME` (`root/root`), so a
session never runs this machine's `~/.bashrc` (a pod is not the host). A boot runs on a thread: it reserves the port,
starts sshd when the boot says SSH is up, and can be cancelled. `halt()` is
what a stop, a terminate or a host failure does: the sshd and every process
the pod's sessions started (found by their `RUNPOD_POD_ID` environment,
detached ones included) die.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Callable

from podmagic.testing.sim.state import Boot
from podmagic.testing.sshd import SSHServer, SSHServerError, free_port


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

    def __init__(self, pod_dir: Path, pod_id: str, public_key_file: Path):
        self.pod_dir = Path(pod_dir)
        self.pod_id = pod_id
        self.root = self.pod_dir / "root"
        self._pub = public_key_file
        self._lock = threading.Lock()
        self._server: SSHServer | None = None
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    @property
    def marker(self) -> str:
        return f"RUNPOD_POD_ID={self.pod_id}"

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
             ssh: bool = True) -> None:
        """Start booting: the port is reported to `on_port` once reserved."""
        self.halt()
        self._cancel = threading.Event()
        args = (boot, env, on_port, ssh, self._cancel)
        self._thread = threading.Thread(target=self._run_boot, args=args,
                                        name=f"sim-pod-{self.pod_id}", daemon=True)
        self._thread.start()

    def _run_boot(self, boot, env, on_port, ssh, cancel) -> None:
        port = free_port()
        if not self._sleep_until(boot.ports_at, cancel):
            return
        on_port(port)
        if not ssh or not self._sleep_until(boot.ssh_at, cancel):
            return
        self._start_sshd(port, env, cancel)

    @staticmethod
    def _sleep_until(moment: float, cancel: threading.Event) -> bool:
        while not cancel.is_set():
            left = moment - time.time()
            if left <= 0:
                return True
            cancel.wait(min(left, 0.5))
        return False

    def _start_sshd(self, port: int, env: dict[str, str], cancel: threading.Event) -> None:
        env = {**env, "PODMAGIC_POD_ROOT": str(self.root), "RUNPOD_TCP_PORT_22": str(port),
               "HOME": str(self.root / "root")}
        server = SSHServer(self.pod_dir / "sshd", env=env, port=port, client_key=self._pub.with_suffix(""))
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
