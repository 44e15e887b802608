"""A real OpenSSH `sshd` on 127.0.0.1 for tests, benches and pod simulators.

    from podmagic.testing.sshd import SSHServer

    with SSHServer(tmp_path / "sshd", pod_root=tmp_path / "pod") as server:
        server.host, server.port, server.user     # "127.0.0.1", 40123, "root"
        server.client_key                          # Path of the ed25519 private key
        server.host_key_pub                        # "ssh-ed25519 AAAA..." (no comment)
        server.host_spec                           # "root@127.0.0.1:40123"
        server.restart(new_host_key=True)          # same port, new host key
        server.drop_connections()                  # kill every client session's sshd

Stable API (the RunPod simulator builds its pods from it):

- `SSHServer(workdir, *, env=None, pod_root=None, port=None, client_key=None, home=None)`:
  `workdir` is created and holds everything: `sshd_config`, the host key,
  the client key pair (unless `client_key=` names an existing private key
  whose `.pub` sits beside it), `authorized_keys`, `sshd.pid`, `sshd.log`.
  `env` becomes `SetEnv NAME=VALUE` lines (visible to every command the
  server runs); `pod_root=` is shorthand for `env={"PODMAGIC_POD_ROOT": ...}`
  so one machine can host many "pods", each with its own `/workspace`
  mapped under its root. `port=None` picks a free port at `start()`.
  `home=` (created if missing) becomes the sessions' `HOME`, so the login
  shell reads that directory's (empty) `.bashrc` instead of the real
  user's: commands start in ~5 ms instead of whatever the machine's
  `.bashrc` costs (a `pyenv init` can take 100 ms, or stall 60 s on
  pyenv's rehash lock while another process installs packages).
- `.start()`, `.stop()`, `.restart(new_host_key=False)`, context manager.
  `stop()` ends the listener by PID and the per-connection `sshd`
  processes it spawned (never the detached jobs those sessions started).
- `.drop_connections()`: kill the per-connection processes only, which cuts
  every client's TCP session as a network failure would.
- `.host`, `.port`, `.user`, `.client_key`, `.host_key_pub`, `.host_spec`,
  `.pid`, `.log_text()`.

The server runs as the current user, listens on 127.0.0.1 only, accepts the
client key only (no passwords, no PAM) and serves SFTP in-process.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from podmagic.errors import PodmagicError

SSHD = "/usr/sbin/sshd"
HOST = "127.0.0.1"
PRIVSEP_DIR = Path("/run/sshd")


class SSHServerError(PodmagicError, RuntimeError):
    """The test sshd could not be started."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def keygen(path: Path, comment: str = "podmagic-test") -> Path:
    """An ed25519 key pair at `path` / `path.pub` (replaced if present)."""
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    return path


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _wait_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SSHServerError(f"sshd exited with {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=1) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise SSHServerError(f"sshd did not answer on {HOST}:{port} within {timeout}s")


class SSHServer:
    """One OpenSSH server process on 127.0.0.1, configured from `workdir`."""

    def __init__(self, workdir: Path, *, env: dict[str, str] | None = None,
                 pod_root: Path | str | None = None, port: int | None = None,
                 client_key: Path | str | None = None, home: Path | str | None = None):
        self.workdir = Path(workdir)
        self.env = dict(env or {})
        if pod_root is not None:
            self.env["PODMAGIC_POD_ROOT"] = str(pod_root)
        self.home = Path(home) if home is not None else None
        if self.home is not None:
            self.env["HOME"] = str(self.home)
        self.host = HOST
        self.user = getpass.getuser()
        self._fixed_port = port
        self.port = port or 0
        self._given_client_key = Path(client_key) if client_key else None
        self._proc: subprocess.Popen | None = None
        self._log = None

    # -- paths -----------------------------------------------------------
    @property
    def host_key(self) -> Path:
        return self.workdir / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        return self._given_client_key or self.workdir / "client_ed25519"

    @property
    def host_key_pub(self) -> str:
        """`<type> <base64>` of the current host key (no comment)."""
        parts = Path(f"{self.host_key}.pub").read_text().split()
        return f"{parts[0]} {parts[1]}"

    @property
    def host_spec(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def log_text(self) -> str:
        path = self.workdir / "sshd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- lifecycle -------------------------------------------------------
    def start(self) -> "SSHServer":
        if self._proc is not None:
            return self
        self._prepare()
        attempts = 1 if self._fixed_port else 5
        for attempt in range(attempts):
            self.port = self._fixed_port or free_port()
            try:
                self._launch()
                return self
            except SSHServerError:
                self._kill_listener()
                if attempt == attempts - 1:
                    raise SSHServerError(f"sshd failed to start:\n{self.log_text()[-2000:]}")
        return self

    def stop(self) -> None:
        """Stop the listener and every session it spawned, by PID."""
        if self._proc is None:
            return
        self.drop_connections()
        self._kill_listener()

    def restart(self, *, new_host_key: bool = False) -> None:
        """Stop, optionally regenerate the host key, start on the same port."""
        port = self.port
        self.stop()
        if new_host_key:
            keygen(self.host_key, "podmagic-test-host")
        self._fixed_port, fixed = port, self._fixed_port
        try:
            self.start()
        finally:
            self._fixed_port = fixed

    def drop_connections(self) -> None:
        """Kill the per-connection sshd processes: clients see a dead TCP link."""
        if self._proc is None:
            return
        for child in _children(self._proc.pid):
            if _comm(child) == "sshd":
                try:
                    os.kill(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def __enter__(self) -> "SSHServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- internals -------------------------------------------------------
    def _prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.home is not None:
            self.home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        if not self.host_key.exists():
            keygen(self.host_key, "podmagic-test-host")
        if self._given_client_key is None and not self.client_key.exists():
            keygen(self.client_key, "podmagic-test-client")
        pub = Path(f"{self.client_key}.pub").read_text()
        (self.workdir / "authorized_keys").write_text(pub)

    def _config_text(self) -> str:
        lines = [
            f"ListenAddress {HOST}",
            f"Port {self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {self.workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.workdir / 'authorized_keys'}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            "AllowTcpForwarding no",
            "X11Forwarding no",
            "PrintMotd no",
            "MaxSessions 64",
            "MaxStartups 64:30:128",
            "LogLevel INFO",
            "Subsystem sftp internal-sftp",
        ]
        if self.env:
            pairs = " ".join(f'"{k}={v}"' for k, v in sorted(self.env.items()))
            lines.append(f"SetEnv {pairs}")
        return "\n".join(lines) + "\n"

    def _launch(self) -> None:
        cfg = self.workdir / "sshd_config"
        cfg.write_text(self._config_text())
        self._log = (self.workdir / "sshd.log").open("ab")
        self._proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(cfg)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            start_new_session=True,
        )
        _wait_port(self.port, self._proc, timeout=10)

    def _kill_listener(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
