"""Waiting for a RunPod pod's SSH, and noticing when a pod dies under us.

`runtime` is `null` while the image is pulled; then `runtime.ports` fills in,
sometimes well after `desiredStatus` is RUNNING. SSH is the entry with
`privatePort == 22` (a public one preferred). `wait_for_ssh` polls with a
growing interval until that entry appears or the deadline passes.

`PodWatch` sits on the SSH transport's reconnect hook: when the link drops it
asks the API whether the pod still runs; a pod that is EXITED, TERMINATED or
gone raises `PodGone` at once (with a `pod_killed_unexpected` event) instead
of reconnecting for minutes to a host that no longer exists.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from podmagic.backends.base import BackendError
from podmagic.backends.runpod.api import RunPodAPI, TransientError

GONE = ("EXITED", "TERMINATED")
PENDING_GRACE_SEC = 30.0


class SSHNotReady(BackendError):
    """No SSH endpoint within budget.ssh_ready_timeout_sec."""


class PodGone(BackendError):
    """The pod stopped or vanished while podmagic was using it."""


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int


def ssh_endpoint(pod: dict) -> tuple[str, Endpoint | None]:
    """The pod's stage ('provisioning', 'starting', 'ready') and SSH address."""
    runtime = pod.get("runtime")
    if not runtime:
        return "provisioning", None
    entries = [p for p in runtime.get("ports") or [] if p.get("privatePort") == 22 and p.get("publicPort")]
    entries.sort(key=lambda p: not p.get("isIpPublic"))
    if not entries:
        return "starting", None
    return "ready", Endpoint(str(entries[0]["ip"]), int(entries[0]["publicPort"]))


def wait_for_ssh(api: RunPodAPI, pod_id: str, timeout: float, emit: Callable[..., None], *,
                 poll: tuple[float, float] = (0.5, 5.0), budget: float | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> tuple[Endpoint, dict]:
    """Poll `get_pod` until the SSH port mapping exists; SSHNotReady on timeout.

    `budget` is the configured `ssh_ready_timeout_sec` the message names
    (`timeout` may be what is left of it)."""
    started = time.monotonic()
    deadline, delay, stage, pod, seen = started + timeout, poll[0], None, {}, False
    while True:
        try:
            fetched = api.get_pod(pod_id)
            # not listed yet right after create: pending (for a grace period); once seen, gone is gone
            pending = not seen and time.monotonic() - started < PENDING_GRACE_SEC
            pod = fetched or ({} if pending else {"desiredStatus": "TERMINATED"})
            seen = seen or fetched is not None
        except TransientError:
            pass  # the API is flaky right now; the deadline still holds
        status = pod.get("desiredStatus")
        if status in GONE:
            raise PodGone(f"pod {pod_id} became {status} while starting")
        now_stage, endpoint = ssh_endpoint(pod)
        if now_stage != stage:
            stage = now_stage
            emit("pod_status", pod_id=pod_id, stage=stage, desired_status=status,
                 waited_sec=round(time.monotonic() - started, 1))
        if endpoint is not None:
            return endpoint, pod
        left = deadline - time.monotonic()
        if left <= 0:
            raise SSHNotReady(f"SSH was not ready on pod {pod_id} within {budget or timeout:g}s "
                              f"(desiredStatus={status}, stage={stage}, uptimeSeconds={pod.get('uptimeSeconds')})")
        sleep(min(delay, left))
        delay = min(delay * 1.5, poll[1])


class PodWatch:
    """An `emit` wrapper for the SSH layer that checks the pod on every reconnect."""

    def __init__(self, api: RunPodAPI, pod_id: str, emit: Callable[..., None], min_interval: float = 1.0):
        self.api, self.pod_id, self.emit = api, pod_id, emit
        self.min_interval = min_interval
        self.gone: str | None = None
        self._checked = 0.0

    def __call__(self, kind: str, **data) -> None:
        self.emit(kind, **data)
        if kind == "ssh_reconnect":
            self.check()

    def check(self) -> None:
        if self.gone is None and time.monotonic() - self._checked >= self.min_interval:
            self._checked = time.monotonic()
            try:
                pod = self.api.get_pod(self.pod_id)
            except BackendError:
                return
            status = (pod or {}).get("desiredStatus") or "TERMINATED"
            if status in GONE:
                self.gone = status
                self.emit("pod_killed_unexpected", pod_id=self.pod_id, desired_status=status,
                          last_status_change=(pod or {}).get("lastStatusChange"))
        if self.gone is not None:
            raise PodGone(f"pod {self.pod_id} is {self.gone}: it was stopped or terminated "
                          "outside podmagic (host failure, console, or the pod's watchdog)")
