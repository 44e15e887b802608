"""The SSH backend: any host you can `ssh` to becomes a pod.

`--host NAME` is `user@host:port` or an alias from `~/.ssh/config`
(`ssh_hosts.resolve_target`). Host keys are checked against podmagic's own
known-hosts file (`ssh_hostkeys`: first use recorded, a changed key
refused). The connection is one persistent paramiko transport
(`ssh_transport.SSHTransport`); the pod on top of it (`ssh_pod.SSHPod`)
streams staging and artifacts as tar archives (`ssh_sync`).

When the host names a pod root (`PODMAGIC_POD_ROOT` in the sshd's
environment) or the caller passes `root=`, pod paths under `/workspace` are
mapped under `<root>/workspace` and `HOME` is `<root>/root`; otherwise pod
paths are used as they are. `release("delete")` removes the root only when
this backend created it; the host itself is never ours to stop or delete.

`open_pod(...)` is the same thing for a caller that already knows the
address and key (the RunPod backend, once its pod is up).

paramiko is imported only when a connection is made.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Callable

from .. import remote
from .base import BackendError, PodInfo, PodRequest
from .ssh_hosts import SSHTarget, resolve_target
from .ssh_pod import SSHPod
from .ssh_transport import SSHTransport, TransportOptions

q = shlex.quote
READY_TIMEOUT_CAP_SEC = 60.0

__all__ = ["SSHBackend", "SSHPod", "SSHTransport", "SSHTarget", "TransportOptions", "open_pod"]


class SSHBackend:
    """Provisions an already-running SSH host as a pod."""

    name = "ssh"

    def __init__(self, host: str, *, root: str | None = None, known_hosts: str | Path | None = None,
                 ssh_config: str | Path | None = None, key_path: str | None = None,
                 options: TransportOptions | None = None):
        if not host:
            raise BackendError("the ssh backend needs --host NAME (user@host:port or an ~/.ssh/config alias)")
        self.host = host
        self.root = root
        self.known_hosts = known_hosts
        self.ssh_config = ssh_config
        self.key_path = key_path
        self.options = options

    def provision(self, request: PodRequest, emit: Callable[..., None]) -> SSHPod:
        key_path = self.key_path or request.key_path
        target = resolve_target(self.host, config_path=self.ssh_config, key_path=key_path)
        ready = min(float(request.ssh_ready_timeout_sec), READY_TIMEOUT_CAP_SEC)
        options = self.options or TransportOptions(reconnect_timeout_sec=ready)
        return open_pod(target, pod_id=f"ssh:{target.spec}", root=self.root,
                        known_hosts=self.known_hosts, options=options, emit=emit,
                        mount=request.volume_mount)


def open_pod(target: SSHTarget, *, pod_id: str, root: str | None = None,
             known_hosts: str | Path | None = None, options: TransportOptions | None = None,
             emit: Callable[..., None] | None = None, backend: str = "ssh",
             mount: str = "/workspace", info: PodInfo | None = None) -> SSHPod:
    """Connect to `target` (waiting up to `options.reconnect_timeout_sec`) and return its pod."""
    say = emit or (lambda *a, **k: None)
    transport = SSHTransport(
        target, known_hosts=known_hosts, options=options or TransportOptions(),
        on_host_trusted=lambda seen: say("ssh_host_key_trusted", host=seen.name, key_type=seen.key_type,
                                         fingerprint=seen.fingerprint, known_hosts=seen.path),
        on_reconnect=lambda attempt, exc: say("ssh_reconnect", host=target.spec, attempt=attempt + 1,
                                              error=f"{type(exc).__name__}: {exc}"[:300]),
    )
    transport.retrying(transport.connect)
    pod_root, created = _pod_root(transport, root)
    say("ssh_connected", host=target.spec, pod_root=pod_root)
    info = info or PodInfo(pod_id=pod_id, backend=backend, host=target.spec)
    paths = remote.PathMap(pod_root, mount)
    return SSHPod(transport, info, paths, created_root=pod_root if created else None)


def _pod_root(transport: SSHTransport, root: str | None) -> tuple[str | None, bool]:
    """The pod root (explicit, else the host's PODMAGIC_POD_ROOT) and whether we made it."""
    given = q(root) if root else '"${PODMAGIC_POD_ROOT:-}"'
    script = (
        f"r={given}; [ -n \"$r\" ] || exit 0; case $r in '~'*) r=\"$HOME${{r#\\~}}\";; esac; "
        "if [ -d \"$r\" ]; then made=0; else made=1; fi; "
        "mkdir -p \"$r/workspace\" \"$r/root\" && cd \"$r\" && printf '%s %s' \"$made\" \"$(pwd -P)\""
    )
    result = transport.retrying(lambda: transport.exec(script, timeout=60))
    if result.exit_code != 0:
        raise BackendError(f"cannot prepare the pod root on {transport.target.spec}: {result.output[-300:]}")
    text = result.output.strip()
    if not text:
        return None, False
    made, _, path = text.partition(" ")
    return path, made == "1"
