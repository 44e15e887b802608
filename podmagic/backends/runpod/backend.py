"""The RunPod backend: RunPod's REST v2 control plane (`runpod.api`), SSH for the rest.

`provision` (never leaves a pod it could not hand over billing):
0. `storage.mode: network_volume` resolves the volume by name; its
   datacenter is the only one tried;
1. the recycled pod is resumed if the lifecycle asks for it and it still
   fits (`runpod_recycle`);
2. otherwise placement walks datacenters × gpu_order with failover
   (`runpod.place`), creating through `runpod.api` (retries, adoption of a
   pod whose create answer was lost); `22/tcp` is always among the ports
   (without it there is no `ssh.direct`), and the user's public key reaches
   the pod: either it is registered on the account (`GET /v2/account/ssh-keys`)
   or it goes in as `PUBLIC_KEY` (what RunPod images' start.sh authorizes);
   without a public key the run is refused before any spend;
3. the pod handle goes to `<run_dir>/pod.json` *before any wait*, so
   `podmagic cleanup` can find it whatever happens next;
4. SSH: wait for the port mapping up to `ssh_ready_timeout_sec`, then
   connect (sshd probed with backoff) within the same budget. Any failure
   or interrupt from here on terminates the pod before the error is raised.

The pod returned (`runpod.pod.RunPodPod`) records the pod's `cost` ($/h), runs
everything over SSH, watches the pod through the API when the link drops,
and applies the lifecycle action in `release`. httpx is imported lazily.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Callable

from podmagic.backends.base import POD_HANDLE, BackendError, PodInfo, PodRequest
from podmagic.backends.runpod.api import (
    LOST_CREATE_SEC,
    RETRY_DELAYS,
    ApiError,
    CreateSpec,
    RunPodAPI,
)
from podmagic.backends.runpod.keys import public_key_env
from podmagic.backends.runpod.place import place
from podmagic.backends.runpod.pod import RunPodPod
from podmagic.backends.runpod.recycle import (
    forget,
    state_path,
    try_resume,
    wants_recycle,
)
from podmagic.backends.runpod.sentinel import Sentinel
from podmagic.backends.runpod.wait import Endpoint, PodWatch, wait_for_ssh
from podmagic.backends.ssh.backend import open_pod
from podmagic.backends.ssh.hosts import SSHTarget
from podmagic.backends.ssh.transport import TransportOptions
from podmagic.plan.naming import slug
from podmagic.records import replace

RUN_RECONNECT_SEC = 300.0
MIN_CONNECT_SEC = 10.0


class RunPodBackend:
    name = "runpod"

    def __init__(self, *, api_key: str | None = None, key_path: str | None = None,
                 known_hosts: str | Path | None = None, force_fresh: bool = False,
                 poll: tuple[float, float] = (0.5, 5.0), retry_delays: tuple[float, ...] = RETRY_DELAYS,
                 api: RunPodAPI | None = None, lost_create_sec: float = LOST_CREATE_SEC):
        self.api_key, self.key_path, self.known_hosts = api_key, key_path, known_hosts
        self.force_fresh, self.poll, self.retry_delays = force_fresh, poll, retry_delays
        self.lost_create_sec = lost_create_sec
        self._api = api

    def api(self, emit: Callable[..., None]) -> RunPodAPI:
        """The backend's one client, as a view that reports this provision's retries."""
        if self._api is None:
            self._api = RunPodAPI(self.api_key, retry_delays=self.retry_delays, lost_create_sec=self.lost_create_sec)
        return self._api.bound(lambda call, why: emit("api_retry", call=call, reason=why))

    def provision(self, request: PodRequest, emit: Callable[..., None]) -> RunPodPod:
        api = self.api(emit)
        sentinel = Sentinel.start(api, slug(request.run_id))  # a client that dies before the pod's guard is armed
        try:
            return self._provision(api, request, emit, sentinel)
        finally:
            sentinel.release()

    def _provision(self, api, request: PodRequest, emit, sentinel: Sentinel) -> RunPodPod:
        _warn_unsupported(request, emit)
        key_env = public_key_env(api, self._key_path(request), emit)
        volume = network_volume(api, request, emit)
        deadline = time.monotonic() + request.ssh_ready_timeout_sec
        if wants_recycle(request):
            pod = self._resume(api, request, emit, deadline, sentinel)
            if pod is not None:
                return pod
        datacenters = (volume["dataCenterId"],) if volume else request.datacenters
        try:
            placed = place(datacenters, request.gpu_order,
                           lambda gpu, dc: api.create(self._create_spec(request, gpu, dc, volume, key_env)), emit)
        except BaseException:
            self._sweep(api, slug(request.run_id), emit)
            raise
        info = PodInfo(pod_id=placed.pod["id"], backend=self.name, gpu_id=placed.gpu_id,
                       datacenter_id=placed.datacenter_id, price_source="runpod:cost")
        return self._bring_up(api, request, info, emit, deadline, sentinel)

    def _create_spec(self, request: PodRequest, gpu: str, dc: str, volume: dict | None,
                     env: tuple[tuple[str, str], ...] = ()) -> CreateSpec:
        return CreateSpec(
            name=slug(request.run_id), image=request.image, gpu_id=gpu, datacenter_id=dc,
            cloud_type=request.cloud_type, gpu_count=request.gpu_count,
            volume_gb=0 if volume else request.volume_gb or 0, container_disk_gb=request.container_disk_gb,
            network_volume_id=volume["id"] if volume else None,
            volume_mount_path=request.volume_mount, ports=tuple(request.ports), env=env,
        )

    def _resume(self, api, request, emit, deadline, sentinel: Sentinel) -> RunPodPod | None:
        force = self.force_fresh or str(request.options.get("force_fresh", "")).lower() in ("1", "true", "yes")
        resumed = try_resume(api, request, emit, force_fresh=force)
        if resumed is None:
            return None
        state, _answer = resumed
        info = PodInfo(pod_id=state.pod_id, backend=self.name, gpu_id=state.gpu_id,
                       datacenter_id=state.datacenter_id, price_source="runpod:cost", resumed=True)
        emit("pod_resumed", pod_id=state.pod_id, gpu_id=state.gpu_id, datacenter_id=state.datacenter_id)
        try:
            return self._bring_up(api, request, info, emit, deadline, sentinel)
        except BackendError as exc:
            emit("warning", message=f"resumed pod {state.pod_id} did not come up ({exc}); creating a fresh pod")
            forget(state_path(request), state.pod_id)
            return None

    def _bring_up(self, api, request, info: PodInfo, emit, deadline: float, sentinel: Sentinel) -> RunPodPod:
        sentinel.watch(info.pod_id)
        try:  # from here the pod bills: any failure or interrupt, even in these first lines, terminates it
            record_pod(emit, request, info, "provisioning")
            emit("pod_created" if not info.resumed else "pod_resuming", pod_id=info.pod_id,
                 gpu_id=info.gpu_id, datacenter_id=info.datacenter_id)
            return self._connect(api, request, info, emit, deadline)
        except BaseException as exc:
            self._terminate_after_failure(api, info.pod_id, emit, exc)
            raise

    def _connect(self, api, request, info: PodInfo, emit, deadline: float) -> RunPodPod:
        left = max(deadline - time.monotonic(), 0.0)
        endpoint, pod = wait_for_ssh(api, info.pod_id, left, emit, poll=self.poll,
                                     budget=request.ssh_ready_timeout_sec, image=request.image)
        info = replace(info, price_per_hour_usd=_price(pod), host=f"root@{endpoint.ip}:{endpoint.port}")
        record_pod(emit, request, info, "starting")
        watch = PodWatch(api, info.pod_id, emit)
        ssh = open_pod(self._target(request, endpoint), pod_id=info.pod_id, known_hosts=self._known_hosts(request),
                       options=TransportOptions(reconnect_timeout_sec=max(deadline - time.monotonic(),
                                                                          MIN_CONNECT_SEC)),
                       emit=watch, backend=self.name, mount=request.volume_mount, info=info)
        ssh.transport.options = replace(ssh.transport.options, reconnect_timeout_sec=RUN_RECONNECT_SEC)
        info = ssh.info  # with uv_version / uv_source
        emit("pod_ssh_ready", pod_id=info.pod_id, host=info.host, price_per_hour_usd=info.price_per_hour_usd)
        self._drop_duplicates(api, request, info, emit)
        pod = RunPodPod(ssh, info, api=api, request=request, emit=emit)
        pod.arm_guard()  # from here a client that dies in any phase leaves no pod billing
        return pod

    @staticmethod
    def _drop_duplicates(api, request, info: PodInfo, emit) -> None:
        """Listings lag: a create retried after a lost answer may have made a second pod; by now it shows."""
        try:
            for pod_id in api.drop_duplicates(slug(request.run_id), keep=info.pod_id):
                emit("pod_terminated", pod_id=pod_id, reason="a second pod of this run (a create whose answer was lost)")
        except ApiError as exc:
            emit("warning", message=f"could not check for duplicate pods of this run: {exc}")

    def _key_path(self, request: PodRequest) -> str:
        return os.path.expanduser(self.key_path or request.key_path)

    def _target(self, request: PodRequest, endpoint: Endpoint) -> SSHTarget:
        return SSHTarget(host=endpoint.ip, port=endpoint.port, user="root", key_paths=(self._key_path(request),))

    def _known_hosts(self, request: PodRequest) -> Path:
        """Per run: pods reuse addresses, so trust is per pod, first use recorded."""
        if self.known_hosts is not None:
            return Path(self.known_hosts)
        base = Path(request.run_dir) if request.run_dir else Path(tempfile.mkdtemp(prefix="podmagic-"))
        return base / "known_hosts"

    @staticmethod
    def _sweep(api, name: str, emit) -> None:
        """After a failed placement: a pod that a lost answer created must not live on."""
        try:
            for pod in api.find_by_name(name):
                api.terminate(pod["id"])
                emit("pod_terminated", pod_id=pod["id"], reason="created by a call whose answer was lost")
        except BaseException as err:  # noqa: BLE001 - best effort; the placement error matters more
            emit("warning", message=f"could not check for a pod named {name} after a failed create: {err}")

    @staticmethod
    def _terminate_after_failure(api, pod_id: str, emit, exc: BaseException) -> None:
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        try:
            api.terminate(pod_id)
            emit("pod_terminated", pod_id=pod_id, reason=f"never handed over: {why}"[:400])
        except BaseException as err:  # noqa: BLE001 - report, then let the original error through
            emit("warning", message=f"pod {pod_id} could NOT be terminated after a failed start ({err}); "
                                    f"release it with `podmagic cleanup --all-stopped` or the RunPod console")


def network_volume(api, request: PodRequest, emit) -> dict | None:
    """`storage.mode: network_volume`: the volume (by name or id); it pins the datacenter."""
    if request.storage_mode != "network_volume":
        return None
    wanted = request.volume_name or ""
    volumes = api.network_volumes()
    found = next((v for v in volumes if wanted in (v.get("name"), v.get("id"))), None)
    found = found and {**found, "dataCenterId": found.get("dataCenter")}
    if found is None:
        names = ", ".join(sorted(str(v.get("name")) for v in volumes)) or "none"
        raise BackendError(f"network volume {wanted!r} not found on the RunPod account (volumes: {names})")
    if found.get("dataCenterId") not in request.datacenters:
        raise BackendError(f"network volume {wanted!r} lives in {found.get('dataCenterId')}, which is not in "
                           f"pod.datacenters {list(request.datacenters)}: add it (a volume pins the datacenter)")
    if request.cloud_type == "COMMUNITY":
        raise BackendError("network volumes are SECURE cloud only: set pod.cloud_type to SECURE")
    emit("network_volume_resolved", volume_id=found["id"], name=found.get("name"),
         datacenter_id=found.get("dataCenterId"), size_gb=found.get("size"))
    return found


def _warn_unsupported(request: PodRequest, emit) -> None:
    """Spec keys REST v2's CreatePodRequest has no field for (it refuses unknown fields)."""
    if request.spot:
        emit("warning", message="pod.spot: RunPod's REST v2 API creates on-demand pods only; using on-demand")
    if request.min_vcpu_count or request.min_memory_gb:
        emit("warning", message="pod.min_vcpu_count / min_memory_gb: REST v2 has no such create fields "
                                "(RunPod sizes vCPU and RAM with the GPU); ignored")
    if request.cloud_type not in ("SECURE", "COMMUNITY"):
        emit("warning", message=f"pod.cloud_type {request.cloud_type}: REST v2 takes SECURE or COMMUNITY; "
                                "using SECURE (its default)")


def _price(pod: dict) -> float | None:
    value = pod.get("cost")
    return float(value) if value is not None else None


def record_pod(emit, request: PodRequest, info: PodInfo, state: str) -> None:
    """Report the handle cleanup needs, before any wait: the runner writes it to `pod.json`."""
    emit(POD_HANDLE, **vars(info), image=request.image, state=state)