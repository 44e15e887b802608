"""The SSH backend: any host you can `ssh` to becomes a pod.

`--host NAME` is `user@host:port` or an alias from `~/.ssh/config`
(`ssh_hosts.resolve_target`). Host keys are checked against podmagic's own
known-hosts file (`ssh_hostkeys`: first use recorded, a changed key
refused). The connection is one persistent paramiko transport
(`ssh_transport.SSHTransport`); the pod on top of it (`ssh_pod.SSHPod`)
streams staging and artifacts as tar archives (`ssh_sync`).

When the caller passes `root=` (or sets `PODMAGIC_SSH_ROOT` on the client;
a leading `~` means the remote home) or the host names a pod root
(`PODMAGIC_POD_ROOT` in the sshd's environment), pod paths under
`/workspace` are mapped under `<root>/workspace` and `HOME` is
`<root>/root`; otherwise pod paths are used as they are and `/workspace`
must be writable. `--host` may also come from `PODMAGIC_SSH_HOST`. `release("delete")` removes the root only when
this backend created it; the host itself is never ours to stop or delete.

`open_pod(...)` is the same thing for a caller that already knows the
address and key (the RunPod backend, once its pod is up):

    from podmagic.backends.ssh.backend import SSHTarget, open_pod
    pod = open_pod(SSHTarget("203.0.113.7", 22107, "root", ("~/.ssh/id_ed25519",)),
                   pod_id="abc123", backend="runpod", info=PodInfo(...), emit=emit,
                   known_hosts=None, ready_timeout_sec=900)

A re-created pod on a reused address presents a new host key, which is
refused; forget the old one when a pod is deleted
(`ssh_hostkeys.forget_host(known_hosts, SSHTarget(...).known_hosts_name)`)
or give each pod its own known-hosts file.

paramiko is imported only when a connection is made.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Callable

from podmagic.backends import podside as remote
from podmagic.backends import ssh_host
from podmagic.backends.base import BackendError, PodInfo, PodRequest
from podmagic.backends.ssh.hosts import SSHTarget, resolve_target
from podmagic.backends.ssh.pod import SSHPod
from podmagic.backends.ssh.transport import SSHTransport, TransportOptions
from podmagic.backends.uvinstall import ensure_uv
from podmagic.records import record

q = shlex.quote
READY_TIMEOUT_CAP_SEC = 60.0
NO_MOUNT_EXIT = 86
MARK = "@@podmagic-survey "

__all__ = ["SSHBackend", "SSHPod", "SSHTransport", "SSHTarget", "TransportOptions", "open_pod"]


class SSHBackend:
    """Provisions an already-running SSH host as a pod."""

    name = "ssh"

    def __init__(self, host: str | None = None, *, root: str | None = None,
                 known_hosts: str | Path | None = None, ssh_config: str | Path | None = None,
                 key_path: str | None = None, options: TransportOptions | None = None):
        self.host = ssh_host(host)
        self.root = root or os.environ.get("PODMAGIC_SSH_ROOT") or None
        self.known_hosts = known_hosts
        self.ssh_config = ssh_config
        self.key_path = key_path
        self.options = options

    def provision(self, request: PodRequest, emit: Callable[..., None]) -> SSHPod:
        key_path = self.key_path or request.key_path
        target = resolve_target(self.host, config_path=self.ssh_config, key_path=key_path)
        ready = min(float(request.ssh_ready_timeout_sec), READY_TIMEOUT_CAP_SEC)
        return open_pod(target, pod_id=f"ssh:{target.spec}", root=self.root,
                        known_hosts=self.known_hosts, options=self.options, emit=emit,
                        mount=request.volume_mount, ready_timeout_sec=ready)


def open_pod(target: SSHTarget, *, pod_id: str, root: str | None = None,
             known_hosts: str | Path | None = None, options: TransportOptions | None = None,
             emit: Callable[..., None] | None = None, backend: str = "ssh",
             mount: str = "/workspace", info: PodInfo | None = None,
             ready_timeout_sec: float | None = None) -> SSHPod:
    """Connect to `target` (trying for `ready_timeout_sec`, default the reconnect budget) and return its pod.

    Later drops are healed within `options.reconnect_timeout_sec` (300 s by default).
    """
    say = emit or (lambda *a, **k: None)
    transport = SSHTransport(
        target, known_hosts=known_hosts, options=options or TransportOptions(),
        on_host_trusted=lambda seen: say("ssh_host_key_trusted", host=seen.name, key_type=seen.key_type,
                                         fingerprint=seen.fingerprint, known_hosts=seen.path),
        on_reconnect=lambda n, exc: say("ssh_reconnect", host=target.spec, reconnect=n,
                                        error=f"{type(exc).__name__}: {exc}"[:300]),
        on_retry=lambda attempt, exc: say("ssh_retry", host=target.spec, attempt=attempt + 1,
                                          error=f"{type(exc).__name__}: {exc}"[:300]),
    )
    transport.retrying(transport.connect, ready_timeout_sec)
    facts = None
    try:
        facts = survey(transport, root, mount)
        say("ssh_connected", host=target.spec, pod_root=facts.root, gpu=facts.gpu)
        info = info or PodInfo(pod_id=pod_id, backend=backend, host=target.spec, gpu_id=facts.gpu)
        paths = remote.PathMap(facts.root, mount)
        pod = SSHPod(transport, info, paths, created_root=facts.root if facts.created else None)
        ensure_uv(pod, say)  # before the pin: older RunPod images and many hosts have no uv
        return pod
    except BaseException:  # e.g. interrupted before the caller has the pod: undo what was made here
        if facts is not None and facts.created:
            try:
                transport.exec(f"rm -rf -- {q(facts.root)}", timeout=60)
            except Exception:  # noqa: BLE001 - best effort; the original error matters more
                pass
        transport.close()
        raise


@record
class HostFacts:
    """What one round trip at connect time learns about the host."""

    root: str | None
    created: bool
    gpu: str | None


def survey(transport: SSHTransport, root: str | None, mount: str) -> HostFacts:
    """Resolve and prepare the pod root (explicit, else the host's PODMAGIC_POD_ROOT) and name the GPU.

    Without a root, pod paths are real paths, so the mount must be writable.
    """
    result = transport.retrying(lambda: transport.exec(_survey_script(root, mount), timeout=60))
    if result.exit_code == NO_MOUNT_EXIT:
        raise BackendError(
            f"{mount} is not writable on {transport.target.spec} and no pod root is set: set "
            f"PODMAGIC_SSH_ROOT (e.g. ~/podmagic) on this machine, or PODMAGIC_POD_ROOT in the host's "
            f"sshd environment, so that {mount}/... maps under that directory"
        )
    line = next((ln for ln in result.output.splitlines() if ln.startswith(MARK)), None)
    if result.exit_code != 0 or line is None:
        raise BackendError(f"cannot prepare the pod root on {transport.target.spec}: {result.output[-300:]}")
    made, path, gpu = line[len(MARK):].split("|", 2)
    return HostFacts(path or None, made == "1", gpu.strip() or None)


def _survey_script(root: str | None, mount: str) -> str:
    m = q(mount)
    given = q(root) if root else '"${PODMAGIC_POD_ROOT:-}"'
    return "\n".join([
        "gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)",
        f"r={given}",
        f"if [ -z \"$r\" ]; then mkdir -p {m} 2>/dev/null && [ -w {m} ] || exit {NO_MOUNT_EXIT}; "
        f"printf '{MARK}0||%s\\n' \"$gpu\"; exit 0; fi",
        "case $r in '~'*) r=\"$HOME${r#\\~}\";; esac",
        "if [ -d \"$r\" ]; then made=0; else made=1; fi",
        f"mkdir -p \"$r\"{m} \"$r/root\" && cd \"$r\" && "
        f"printf '{MARK}%s|%s|%s\\n' \"$made\" \"$(pwd -P)\" \"$gpu\"",
    ])
