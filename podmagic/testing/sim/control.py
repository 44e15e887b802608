"""The simulated control plane: GraphQL root fields → pod transitions.

`ControlPlane.execute(field, caller)` answers one root field of a parsed
document (`gpuTypes`, `pod`, `myself`, `podFindAndDeployOnDemand`,
`podStop`, `podResume`, `podTerminate`, `updateUserSettings`) or raises
`ApiError` with the message the real API would give. Host work (booting or
halting a pod's sshd) always happens outside the store lock.
"""

from __future__ import annotations

import secrets
import string
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from podmagic.errors import PodmagicError
from podmagic.testing.sim.catalog import NO_INSTANCES, GpuType
from podmagic.testing.sim.gql import Field, project
from podmagic.testing.sim.podhost import PodHost
from podmagic.testing.sim.shapes import (
    MEMORY_GB_PER_GPU,
    VCPU_PER_GPU,
    deploy_view,
    pod_view,
)
from podmagic.testing.sim.state import Boot, PodRecord, Store, settle
from podmagic.testing.sim.stock import OutOfStock, Stock

POD_KEY_FIELDS = frozenset({"pod", "podStop", "podResume", "podTerminate"})


class ApiError(PodmagicError):
    """A GraphQL error answer (HTTP 200 with `errors`)."""


@dataclass(frozen=True)
class Timing:
    """Seconds from a (re)start to: runtime shown, ports shown, sshd listening."""

    provision_sec: float = 0.3
    ports_sec: float = 0.2
    ssh_sec: float = 0.0

    def boot(self, now: float) -> Boot:
        runtime_at = now + self.provision_sec
        ports_at = runtime_at + self.ports_sec
        return Boot(now, runtime_at, ports_at, ports_at + self.ssh_sec)


@dataclass(frozen=True)
class Caller:
    """Who called: the account key (`pod_id` None) or one pod's own key."""

    pod_id: str | None = None


def new_id(length: int = 14) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


class ControlPlane:
    def __init__(self, store: Store, state_dir: Path, *, gpus: tuple[GpuType, ...],
                 stock: Stock, timing: Timing, public_key_file: Path,
                 base_url: Callable[[], str], private_port_entry: bool = False,
                 image_env: dict[str, str] | None = None,
                 network_volumes: tuple[dict, ...] = ()):
        self.store, self.state_dir = store, Path(state_dir)
        self.gpus = {g.id: g for g in gpus}
        self.stock, self.timing = stock, timing
        self.public_key_file, self.base_url = public_key_file, base_url
        self.private_port_entry = private_port_entry
        self.image_env = dict(image_env or {})
        self.volumes = {str(v["id"]): dict(v) for v in network_volumes}
        self.hosts: dict[str, PodHost] = {}

    # -- dispatch --------------------------------------------------------
    def execute(self, field: Field, caller: Caller) -> Any:
        handler = getattr(self, f"_op_{field.name}", None)
        if handler is None:
            raise ApiError(f'Cannot query field "{field.name}" on type "Query".')
        if caller.pod_id is not None:
            self._check_pod_key(field, caller)
        return project(handler(field), field.selection)

    @staticmethod
    def _check_pod_key(field: Field, caller: Caller) -> None:
        target = (field.args.get("input") or {}).get("podId")
        if field.name not in POD_KEY_FIELDS or target != caller.pod_id:
            raise ApiError("Unauthorized: a pod API key may only act on its own pod.")

    def caller_for(self, key: str) -> Caller | None:
        for pod in self.store.all():
            if pod.live and secrets.compare_digest(pod.api_key, key):
                return Caller(pod.id)
        return None

    # -- queries ---------------------------------------------------------
    def _op_gpuTypes(self, field: Field) -> list[dict]:
        wanted = (field.args.get("input") or {}).get("id")
        count = _lowest_price_count(field)
        return [g.as_graphql(count) for g in self.gpus.values() if wanted in (None, g.id)]

    def _op_pod(self, field: Field) -> dict | None:
        pod = self.store.get((field.args.get("input") or {}).get("podId", ""))
        return self.view(pod) if pod is not None and pod.live else None

    def _op_myself(self, field: Field) -> dict:
        return {
            "id": "user_sim", "email": "sim@podmagic.invalid",
            "pubKey": self.public_key_file.read_text().strip(),
            "networkVolumes": list(self.volumes.values()), "clientBalance": 100.0,
            "pods": [self.view(p) for p in self.store.all() if p.live],
        }

    def view(self, pod: PodRecord) -> dict:
        gpu = self.gpus.get(pod.gpu_type_id)
        name = gpu.display_name if gpu else pod.gpu_type_id
        return pod_view(pod, name, private_entry=self.private_port_entry)

    # -- mutations -------------------------------------------------------
    def _op_updateUserSettings(self, field: Field) -> dict:
        pub = (field.args.get("input") or {}).get("pubKey")
        if pub:
            self.public_key_file.write_text(pub.strip() + "\n")
        return {"id": "user_sim", "pubKey": self.public_key_file.read_text().strip()}

    def _op_deployCpuPod(self, field: Field) -> None:
        raise ApiError("CPU pods are not available in this simulator.")

    def _op_podFindAndDeployOnDemand(self, field: Field) -> dict:
        spec = field.args.get("input") or {}
        gpu = self.gpus.get(spec.get("gpuTypeId") or "")
        if gpu is None:
            raise ApiError(f"Invalid GPU type: {spec.get('gpuTypeId')!r}")
        count = int(spec.get("gpuCount") or 1)
        _check_shape(gpu, count, spec)
        spec = self._pin_to_volume(spec)
        try:
            dc = self.stock.acquire(gpu.id, spec.get("dataCenterId"), count)
        except OutOfStock as exc:
            raise ApiError(str(exc)) from None
        pod = self.store.put(self._record(spec, gpu, count, dc), "created")
        self.boot(pod)
        return deploy_view(self.store.get(pod.id))

    def _pin_to_volume(self, spec: dict) -> dict:
        """A network volume lives in one datacenter: the pod must land there."""
        volume_id = spec.get("networkVolumeId")
        if not volume_id:
            return spec
        volume = self.volumes.get(str(volume_id))
        if volume is None:
            raise ApiError(f"Network volume {volume_id} not found.")
        if spec.get("dataCenterId") not in (None, volume["dataCenterId"]):
            raise ApiError(f"Network volume {volume_id} is in {volume['dataCenterId']}, "
                           f"not in {spec.get('dataCenterId')}.")
        return {**spec, "dataCenterId": volume["dataCenterId"]}

    def _record(self, spec: dict, gpu: GpuType, count: int, dc: str) -> PodRecord:
        now, pod_id = time.time(), new_id()
        cloud = str(spec.get("cloudType") or "ALL")
        env = tuple((str(e["key"]), str(e["value"])) for e in spec.get("env") or ())
        return PodRecord(
            id=pod_id, name=str(spec.get("name") or ""), image_name=str(spec.get("imageName") or ""),
            gpu_type_id=gpu.id, gpu_count=count, data_center_id=dc, cloud_type=cloud,
            cost_per_hr=round(gpu.price(cloud) * count, 4), machine_id=new_id(12),
            pod_host_id=f"{pod_id}-{secrets.token_hex(4)}", api_key=f"rpa_POD{secrets.token_hex(16)}",
            created_at=now, last_status_change=now, billed_until=now,
            container_disk_gb=int(spec.get("containerDiskInGb") or 0),
            volume_gb=int(spec.get("volumeInGb") or 0),
            volume_mount_path=str(spec.get("volumeMountPath") or "/runpod-volume"),
            ports=str(spec.get("ports") or ""), docker_args=str(spec.get("dockerArgs") or ""),
            env=env, network_volume_id=spec.get("networkVolumeId"),
            start_ssh=bool(spec.get("startSsh")), status_reason="Rented by User",
        )

    def _op_podStop(self, field: Field) -> dict:
        pod = self._live(field)
        pod = self.halt(pod.id, "EXITED", "Exited by User") or pod
        return {"id": pod.id, "desiredStatus": pod.desired_status}

    def _op_podResume(self, field: Field) -> dict:
        with self.store.lock:
            pod = self._live(field)
            if pod.desired_status != "EXITED":
                return deploy_view(pod)
            try:
                self.stock.reacquire(pod.gpu_type_id, pod.data_center_id, pod.gpu_count)
            except OutOfStock as exc:
                raise ApiError(str(exc)) from None
            pod = self._transition(pod.id, "RUNNING", "Resumed by User", "resumed")
        self.boot(pod)
        return deploy_view(self.store.get(pod.id))

    def _op_podTerminate(self, field: Field) -> None:
        pod_id = (field.args.get("input") or {}).get("podId", "")
        pod = self.store.get(pod_id)
        if pod is None:
            raise ApiError("Pod not found.")
        self.halt(pod_id, "TERMINATED", "Terminated by User")
        return None

    def _live(self, field: Field) -> PodRecord:
        pod = self.store.get((field.args.get("input") or {}).get("podId", ""))
        if pod is None or not pod.live:
            raise ApiError("Pod not found.")
        return pod

    # -- transitions -----------------------------------------------------
    def _transition(self, pod_id: str, status: str, reason: str, event: str) -> PodRecord:
        def change(p: PodRecord) -> PodRecord:
            p = settle(p, time.time())
            return replace(p, desired_status=status, status_reason=reason,
                           last_status_change=time.time(), boot=None, ssh_port=None)
        return self.store.update(pod_id, change, event)

    def halt(self, pod_id: str, status: str, reason: str) -> PodRecord | None:
        """Stop, terminate or kill: the host dies, GPUs go back to stock."""
        with self.store.lock:
            before = self.store.get(pod_id)
            if before is None or not before.live or before.desired_status == status:
                return before
            pod = self._transition(pod_id, status, reason, status.lower())
            if before.desired_status == "RUNNING":
                self.stock.release(pod.gpu_type_id, pod.data_center_id, pod.gpu_count)
        host = self.host(pod)
        if status == "TERMINATED":
            host.destroy()
        else:
            host.halt()
            host.wipe_container_disk(keep_workspace=pod.volume_gb > 0 or bool(pod.network_volume_id))
        return pod

    def host(self, pod: PodRecord) -> PodHost:
        if pod.id not in self.hosts:
            self.hosts[pod.id] = PodHost(self.state_dir / "pods" / pod.id, pod.id, self.public_key_file)
        return self.hosts[pod.id]

    def boot(self, pod: PodRecord) -> None:
        boot = self.timing.boot(time.time())
        pod = self.store.update(pod.id, lambda p: replace(p, boot=boot, ssh_port=None), "boot")
        host = self.host(pod)
        host.prepare(self.state_dir / "volumes" / pod.network_volume_id if pod.network_volume_id else None)
        ssh = pod.start_ssh and not pod.docker_args.strip()
        host.boot(boot, self.pod_env(pod), lambda port: self._on_port(pod.id, boot, port), ssh)

    def _on_port(self, pod_id: str, boot: Boot, port: int) -> None:
        def change(p: PodRecord) -> PodRecord:
            current = p.boot == boot and p.desired_status == "RUNNING"
            return replace(p, ssh_port=port) if current else p
        self.store.update(pod_id, change)

    def pod_env(self, pod: PodRecord) -> dict[str, str]:
        """The environment of every process on the pod (RunPod's names)."""
        return {
            **self.image_env, **dict(pod.env),
            "RUNPOD_POD_ID": pod.id, "RUNPOD_API_KEY": pod.api_key,
            "RUNPOD_API_BASE_URL": self.base_url(), "RUNPOD_POD_HOSTNAME": pod.pod_host_id,
            "RUNPOD_GPU_COUNT": str(pod.gpu_count), "RUNPOD_DC_ID": pod.data_center_id,
            "RUNPOD_PUBLIC_IP": "127.0.0.1",
        }


def _lowest_price_count(field: Field) -> int:
    for sub in field.selection:
        if sub.name == "lowestPrice":
            return int((sub.args.get("input") or {}).get("gpuCount") or 1)
    return 1


def _check_shape(gpu: GpuType, count: int, spec: dict) -> None:
    """GPU count, vCPU and memory floors that no machine can meet."""
    vcpu = int(spec.get("minVcpuCount") or 0)
    memory = int(spec.get("minMemoryInGb") or 0)
    if count > gpu.max_gpu_count or vcpu > VCPU_PER_GPU * count \
            or memory > MEMORY_GB_PER_GPU * count:
        raise ApiError(NO_INSTANCES)
