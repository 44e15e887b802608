"""Waiting for a RunPod pod's SSH, and noticing when a pod dies under us.

A created pod is `PROVISIONING`, then `STARTING`, then `RUNNING` (PodStatus in the REST v2
document); `runtime` is null until it runs. `ssh.direct` (PodSsh) is null unless `22/tcp` is in
`ports` and the running pod has been given a public port for it, which comes after RUNNING.
A pod with no public IP (some COMMUNITY hosts) only ever has `ssh.proxy`, which carries an
interactive shell only (no exec channels, no SFTP): podmagic cannot use it and says so.
`wait_for_ssh` polls with a growing interval until `ssh.direct` appears or the deadline passes.

`PodWatch` sits on the SSH transport's reconnect hook: when the link drops it asks the API
whether the pod still runs; a pod that is EXITED, TERMINATED or gone raises `PodGone` at once
(with a `pod_killed_unexpected` event) instead of reconnecting to a host that no longer exists.
"""

from __future__ import annotations

import time
from typing import Callable

from podmagic.backends.base import BackendError
from podmagic.backends.runpod.api import RunPodAPI, TransientError
from podmagic.records import record

GONE = ("EXITED", "TERMINATED", "ERROR")
PENDING_GRACE_SEC = 30.0
DIRECT_GRACE_SEC = 60.0
"""How long a RUNNING pod with only the proxy may take to show `ssh.direct` before podmagic gives up."""
PROXY_ADVICE = ("RunPod gave this pod no public IP, so SSH is only reachable through RunPod's proxy, "
                "which carries an interactive shell only (no exec channels, no SFTP) and podmagic cannot "
                "run commands or move files through it. Use pod.cloud_type: SECURE (SECURE pods have a "
                "public IP), or another datacenter")


class SSHNotReady(BackendError):
    """No SSH endpoint within budget.ssh_ready_timeout_sec."""


class ProxyOnly(BackendError):
    """The pod has only RunPod's SSH proxy (no public IP for 22/tcp)."""


class PodGone(BackendError):
    """The pod stopped or vanished while podmagic was using it."""


@record
class Endpoint:
    ip: str
    port: int


def ssh_endpoint(pod: dict) -> tuple[str, Endpoint | None]:
    """The pod's stage ('provisioning', 'starting', 'proxy_only', 'ready') and SSH address."""
    direct = (pod.get("ssh") or {}).get("direct")
    if direct and direct.get("host") and direct.get("port"):
        return "ready", Endpoint(str(direct["host"]), int(direct["port"]))
    runtime = pod.get("runtime")
    if not runtime:
        return ("provisioning" if pod.get("status") in (None, "PROVISIONING") else "starting"), None
    ssh_ports = [p for p in runtime.get("ports") or [] if p.get("private") == 22]
    if ssh_ports and all(p.get("public") is None or not p.get("ip") for p in ssh_ports):
        return "proxy_only", None
    return "starting", None


def wait_for_ssh(api: RunPodAPI, pod_id: str, timeout: float, emit: Callable[..., None], *,
                 poll: tuple[float, float] = (0.5, 5.0), budget: float | None = None, image: str = "",
                 sleep: Callable[[float], None] = time.sleep) -> tuple[Endpoint, dict]:
    """Poll `getPod` until `ssh.direct` exists; SSHNotReady on timeout, ProxyOnly for a proxy-only pod.

    `budget` is the configured `ssh_ready_timeout_sec` the message names
    (`timeout` may be what is left of it)."""
    started = time.monotonic()
    deadline, delay, stage, pod, seen = started + timeout, poll[0], None, {}, False
    ran, running_since = False, None
    while True:
        try:
            fetched = api.get_pod(pod_id)
            # not visible yet right after create: pending (for a grace period); once seen, gone is gone
            pending = not seen and time.monotonic() - started < PENDING_GRACE_SEC
            pod = fetched or ({} if pending else {"status": "TERMINATED"})
            seen = seen or fetched is not None
        except TransientError:
            pass  # the API is flaky right now; the deadline still holds
        status = pod.get("status")
        if status in GONE:
            raise PodGone(f"pod {pod_id} became {status} while starting")
        now_stage, endpoint = ssh_endpoint(pod)
        ran = ran or bool(pod.get("runtime"))
        if status == "RUNNING" and running_since is None:
            running_since = time.monotonic()
        if now_stage != stage:
            stage = now_stage
            emit("pod_status", pod_id=pod_id, stage=stage, status=status,
                 waited_sec=round(time.monotonic() - started, 1))
        if endpoint is not None:
            return endpoint, pod
        if stage == "proxy_only" or (running_since is not None and (pod.get("ssh") or {}).get("proxy")
                                     and time.monotonic() - running_since > DIRECT_GRACE_SEC):
            raise ProxyOnly(f"pod {pod_id}: {PROXY_ADVICE}")
        left = deadline - time.monotonic()
        if left <= 0:
            raise SSHNotReady(_not_ready(pod_id, budget or timeout, status, stage, ran, image))
        sleep(min(delay, left))
        delay = min(delay * 1.5, poll[1])


def _not_ready(pod_id: str, budget: float, status, stage, ran: bool, image: str) -> str:
    text = f"SSH was not ready on pod {pod_id} within {budget:g}s (status={status}, stage={stage})"
    if not ran and image and stage == "starting":  # a machine was assigned, the container never started
        text += (f"; its container never started: the image tag {image!r} may not exist (RunPod accepts any "
                 "image string, and such a pod bills while it never starts). Check it with "
                 "`podmagic validate --check-image`")
    return text


class PodWatch:
    """An `emit` wrapper for the SSH layer that checks the pod on every reconnect."""

    def __init__(self, api: RunPodAPI, pod_id: str, emit: Callable[..., None], min_interval: float = 1.0):
        self.api, self.pod_id, self.emit = api, pod_id, emit
        self.min_interval = min_interval
        self.gone: str | None = None
        self._checked = 0.0

    def __call__(self, kind: str, **data) -> None:
        self.emit(kind, **data)
        if kind in ("ssh_reconnect", "ssh_retry"):
            self.check()

    def check(self) -> None:
        if self.gone is None and time.monotonic() - self._checked >= self.min_interval:
            self._checked = time.monotonic()
            try:
                pod = self.api.get_pod(self.pod_id)
            except BackendError:
                return
            status = (pod or {}).get("status") or "TERMINATED"
            if status in GONE:
                self.gone = status
                self.emit("pod_killed_unexpected", pod_id=self.pod_id, status=status)
        if self.gone is not None:
            raise PodGone(f"pod {self.pod_id} is {self.gone}: it was stopped or terminated "
                          "outside podmagic (host failure, console, or the pod's watchdog)")
