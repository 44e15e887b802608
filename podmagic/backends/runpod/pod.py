"""A RunPod pod: the SSH pod plus the control plane's lifecycle actions.

Everything a run does on the pod goes over SSH (`SSHPod`). On top:
- `start` arms the launcher's watchdog to terminate the pod itself through
  the API (its own `RUNPOD_POD_ID` / `RUNPOD_API_KEY`) when the runtime cap
  passes or the client's heartbeat goes stale, so a dead laptop does not
  mean a billing pod;
- `release(action)` applies the lifecycle: `delete` terminates, `stop` stops
  (and says what the stopped volume costs per day and how to release it),
  `preserve` leaves it running (with the command that ends it), `recycle`
  stops it and records it for the next run to resume.
A pod already gone (killed, self-terminated) releases as TERMINATED. No pod keeps billing
because something failed: a pod with a network volume cannot be stopped, only terminated
(RunPod docs, pods/manage-pods; the API answers `stop` with 409), so `stop` and `recycle`
terminate it with a warning; any other failed stop falls back to terminate.
"""

from __future__ import annotations

import re
import shlex
import time
from typing import Callable

from podmagic.backends.base import BackendError, Launch, PodInfo, PodRequest
from podmagic.backends.runpod import guard
from podmagic.backends.runpod.api import RunPodAPI
from podmagic.backends.runpod.recycle import (
    RecycleState,
    forget,
    state_path,
    write_state,
)
from podmagic.backends.ssh.pod import SSHPod
from podmagic.records import replace

STOPPED_VOLUME_USD_PER_GB_MONTH = 0.20
POD_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ACTIONS = ("delete", "stop", "preserve", "recycle")
LIVE_GPUS_EVERY_SEC = 10.0


def self_terminate_command(pod_id: str, env_file: str = "/etc/rp_environment") -> str | None:
    """Shell run on the pod that terminates it through REST v2 with the pod's own API key.

    The key and pod id are in the container's environment, which SSH sessions do not get:
    RunPod's start.sh copies them to /etc/rp_environment (runpod/containers)."""
    if not POD_ID.match(pod_id):
        return None
    url = '"${RUNPOD_API_BASE_URL:-https://api.runpod.io}/v2/pods/${RUNPOD_POD_ID:-' + pod_id + '}/action"'
    call = (f"curl -s -o /dev/null -w '%{{http_code}}' -m 30 -X POST {url} -H 'Content-Type: application/json' "
            "-H \"Authorization: Bearer ${RUNPOD_API_KEY}\" -d '{\"action\": \"terminate\"}'")
    # retried: a 429, a 5xx or a dropped connection must not leave the pod billing (done: 204; gone: 404)
    return (f"[ -r {env_file} ] && . {env_file}; for i in 1 2 3 4 5 6 7 8; do code=$({call} 2>/dev/null); "
            'case "$code" in 200|204|404) break;; esac; sleep $i; done')


def stop_nudge(pod_id: str, run_id: str, volume_gb: int) -> str:
    per_day = volume_gb * STOPPED_VOLUME_USD_PER_GB_MONTH / 30
    return (f"pod {pod_id} is stopped, not deleted: its volume disk ({volume_gb} GB) keeps billing at "
            f"~${per_day:.2f}/day (~${per_day * 30:.2f}/month) until released. "
            f"Release it with: podmagic cleanup {run_id} --yes   (all stopped pods: podmagic ls-stale)")


class RunPodPod(SSHPod):
    """`SSHPod` whose end is a RunPod lifecycle action."""

    def __init__(self, ssh: SSHPod, info: PodInfo, *, api: RunPodAPI, request: PodRequest,
                 emit: Callable[..., None]):
        super().__init__(ssh.transport, info, ssh.paths, created_root=None)
        self.api, self.request, self.emit = api, request, emit
        self.env_file = (ssh.paths.root or "") + "/etc/rp_environment"
        self._heartbeat: guard.Heartbeat | None = None
        self._gpus_at, self._gpus = float("-inf"), None
        self._guard_dir: str | None = None

    def arm_guard(self, timeout: float | None = None) -> str | None:
        """Start the pod-side guard and the heartbeat; the API status the pod's own key got (or None)."""
        timeout = guard.timeout_sec() if timeout is None else timeout
        command = self_terminate_command(self.info.pod_id, self.env_file)
        if not timeout or command is None:
            return None
        interval = min(5.0, max(timeout / 4, 0.2))
        script = guard.guard_script(self.info.pod_id, self.env_file, timeout, interval, command)
        result = self.run(guard.arm_command(self.info.pod_id, self.env_file, script), timeout=60)
        home, _, status = (result.output.strip().splitlines() or [""])[-1].partition("|")
        if result.exit_code != 0 or not home:
            self.emit("warning", message=f"the pod guard could not be armed: {result.output.strip()[-300:]}")
            return None
        self._guard_dir = f"{home}/.podmagic-guard"
        beat = f"touch {shlex.quote(self._guard_dir + '/heartbeat')}"
        self._heartbeat = guard.Heartbeat(lambda: self.transport.exec(beat, timeout=20), interval).start()
        self.emit("pod_guard_armed", pod_id=self.info.pod_id, timeout_sec=timeout, api_status=status,
                  can_terminate=status == "200")
        if status != "200":
            self.emit("warning", message=f"the pod guard's check of RunPod's API with the pod's own key answered "
                                         f"{status}: if this client dies, the guard may not be able to end the pod")
        return status

    def _disarm(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self._guard_dir is not None:
            try:
                self.transport.exec(f"touch {shlex.quote(self._guard_dir + '/disarmed')}", timeout=20)
            except Exception:  # noqa: BLE001 - the lifecycle action below matters more
                pass

    def start(self, launch: Launch) -> None:
        armed = launch.max_runtime_sec or (launch.heartbeat_path and launch.heartbeat_timeout_sec)
        if armed and not launch.watchdog_command:
            launch = replace(launch, watchdog_command=self_terminate_command(self.info.pod_id, self.env_file))
        super().start(launch)

    def live_gpus(self) -> list[dict] | None:
        """`runtime.gpus[]` of `GET /v2/pods/{id}` (`util`, `memoryUtil`), or None when not running;
        asked at most every LIVE_GPUS_EVERY_SEC (telemetry may ask once per sample: rate limits)."""
        now = time.monotonic()
        if now - self._gpus_at >= LIVE_GPUS_EVERY_SEC:
            self._gpus_at = now
            try:
                pod = self.api.get_pod(self.info.pod_id) or {}
            except BackendError:
                pod = {}
            gpus = (pod.get("runtime") or {}).get("gpus")
            self._gpus = list(gpus) if gpus else None
        return self._gpus

    def describe(self) -> dict | None:
        """The control plane's `Pod` object (no env: it may carry values the user set)."""
        try:
            pod = self.api.get_pod(self.info.pod_id)
        except BackendError:
            return None
        return None if pod is None else {k: v for k, v in pod.items() if k != "env"}

    def release(self, action: str) -> str:
        if action not in ACTIONS:
            raise BackendError(f"unknown lifecycle action {action!r}; choose one of {', '.join(ACTIONS)}")
        self._disarm()
        self.transport.close()
        pod_id = self.info.pod_id
        if action == "preserve":
            self.emit("warning", message=f"pod {pod_id} keeps running and billing "
                                         f"(${self.info.price_per_hour_usd or 0:.2f}/h); end it with: "
                                         f"podmagic cleanup {self.request.run_id} --yes")
            return "RUNNING"
        if action == "delete":
            return self._terminate(pod_id, "lifecycle delete")
        if self.request.storage_mode == "network_volume":
            self.emit("warning", message=f"pod {pod_id} has a network volume: RunPod cannot stop such a pod, only "
                                         f"terminate it (the volume keeps its data); lifecycle {action} → terminate")
            return self._terminate(pod_id, f"lifecycle {action} on a network-volume pod")
        try:
            status = self.api.stop(pod_id)
        except BackendError as exc:
            self.emit("warning", message=f"stopping pod {pod_id} failed ({exc}); terminating it instead so it "
                                         "does not keep billing")
            return self._terminate(pod_id, f"stop failed: {exc}"[:300])
        if status == "TERMINATED":
            return status
        if action == "recycle":
            write_state(state_path(self.request), RecycleState(
                pod_id, self.info.gpu_id or "", self.request.image, self.info.datacenter_id or ""))
            self.emit("pod_recycled", pod_id=pod_id)
        else:
            self.emit("warning", message=stop_nudge(pod_id, self.request.run_id, self.request.volume_gb or 0))
        return status

    def _terminate(self, pod_id: str, reason: str) -> str:
        self.api.terminate(pod_id)
        forget(state_path(self.request), pod_id)
        self.emit("pod_terminated", pod_id=pod_id, reason=reason)
        return "TERMINATED"
