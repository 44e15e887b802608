"""The simulated control plane: REST v2 operations → pod transitions.

`ControlPlane.handle(operation, caller, path_id, query, body)` answers one operation of the
OpenAPI document (`listPods`, `createPod`, `getPod`, `deletePod`, `podAction`, `listGpuTypes`,
`getSshKeys`, `updateSshKeys`, `listNetworkVolumes`) with `(status, body)`, or raises `SimError`
carrying an `ErrorResponse`. RunPod behaviours modelled, each with its source:

- createPod answers 201 with the pod in PROVISIONING; a GPU/datacenter without capacity is a
  400 with a human-readable `detail` (createPod's description: "400 covers both 'your request
  breaks a rule' and 'no capacity'");
- `startSsh` puts the account's keys registered *at create* on the pod, unless the request sets
  `PUBLIC_KEY` itself (CreatePodRequest.startSsh); with neither, the pod has no SSH access;
- an image tag that does not exist never starts, and bills (runpod-deploy pitfall 15);
- a pod with a network volume cannot be stopped: `stop` is a 409 (RunPod docs, pods/manage-pods:
  network-volume pods can only be terminated); any action not valid for the status is a 409
  (podAction's description);
- terminated pods answer 404 and leave the listing (deletePod's description);
- the listing lags behind a create by `listing_lag_sec` (eventual consistency, seen by
  SkyPilot's provisioner, PR #10846, which polls for new pods);
- a pod's own key (`RUNPOD_API_KEY` on the pod) may read and act on that pod only.
Host work (booting or halting a pod's sshd) happens outside the store lock.
"""

from __future__ import annotations

import secrets
import string
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

from podmagic.errors import PodmagicError
from podmagic.records import record
from podmagic.testing.sim.catalog import GpuType, NO_INSTANCES
from podmagic.testing.sim.images import lookup
from podmagic.testing.sim.podhost import PodHost
from podmagic.testing.sim.shapes import actions, pod_view, visible_status
from podmagic.testing.sim.state import Boot, PodRecord, Store, settle
from podmagic.testing.sim.stock import OutOfStock, Stock

POD_OPERATIONS = frozenset({"getPod", "podAction", "deletePod"})
TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
          422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error"}


class SimError(PodmagicError):
    """An error answer: HTTP status and `ErrorResponse` fields."""

    def __init__(self, status: int, detail: str, errors: list[str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors

    def body(self) -> dict:
        out = {"title": TITLES.get(self.status, "Error"), "status": self.status, "detail": self.detail}
        if self.errors:
            out["errors"] = self.errors
        return out


@record
class Timing:
    """Seconds from a (re)start to: STARTING, RUNNING, the 22/tcp mapping, sshd listening."""

    provision_sec: float = 0.3
    ports_sec: float = 0.2
    ssh_sec: float = 0.0
    starting_sec: float = 0.05

    def boot(self, now: float, phantom: bool = False) -> Boot:
        starting_at = now + self.provision_sec
        runtime_at = float("inf") if phantom else starting_at + self.starting_sec
        ports_at = runtime_at + self.ports_sec
        return Boot(now, runtime_at, ports_at, ports_at + self.ssh_sec, starting_at)


@record
class Caller:
    """Who called: the account key (`pod_id` None) or one pod's own key."""

    pod_id: str | None = None


def new_id(length: int = 14) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


class ControlPlane:
    def __init__(self, store: Store, state_dir: Path, *, gpus: tuple[GpuType, ...],
                 stock: Stock, timing: Timing, account_keys: list[str],
                 base_url: Callable[[], str], image_env: dict[str, str] | None = None,
                 network_volumes: tuple[dict, ...] = (), images: dict[str, str] | None = None):
        self.store, self.state_dir = store, Path(state_dir)
        self.gpus = {g.id: g for g in gpus}
        self.stock, self.timing = stock, timing
        self.account_keys, self.base_url = account_keys, base_url
        self.image_env = dict(image_env or {})
        self.images = dict(images or {})
        self.volumes = {str(v["id"]): _volume(v) for v in network_volumes}
        self.hosts: dict[str, PodHost] = {}
        self.listing_lag_sec = 0.0
        self.community_public_ip = True

    # -- dispatch --------------------------------------------------------
    def handle(self, operation: str, caller: Caller, path_id: str | None, query: dict, body) -> tuple[int, object]:
        handler = getattr(self, f"_op_{operation}", None)
        if handler is None:
            raise SimError(404, f"{operation} is not simulated")
        if caller.pod_id is not None and (operation not in POD_OPERATIONS or path_id != caller.pod_id):
            raise SimError(403, "a pod API key may only act on its own pod")
        return handler(path_id, query, body)

    def caller_for(self, key: str) -> Caller | None:
        for pod in self.store.all():
            if pod.live and secrets.compare_digest(pod.api_key, key):
                return Caller(pod.id)
        return None

    def view(self, pod: PodRecord) -> dict:
        return pod_view(pod)

    # -- reads -----------------------------------------------------------
    def _op_listPods(self, _id, query, _body) -> tuple[int, dict]:
        now = time.time()
        shown = [self.view(p) for p in self.store.all()
                 if p.live and now - p.created_at >= self.listing_lag_sec]
        return 200, {"pods": shown}

    def _op_getPod(self, pod_id, _query, _body) -> tuple[int, dict]:
        return 200, self.view(self._live(pod_id))

    def _op_listGpuTypes(self, _id, query, _body) -> tuple[int, dict]:
        include = "AVAILABILITY" in (query.get("include") or [""])[-1].split(",")
        product = (query.get("product") or [""])[-1]
        if include != bool(product):
            raise SimError(400, "product is required with include=AVAILABILITY, and valid only with it")
        count = int((query.get("count") or ["1"])[-1])
        gpus = []
        for gpu in self.gpus.values():
            stock = {dc: self.stock.free(gpu.id, dc) for dc in self.stock.datacenters} if include else None
            gpus.append(gpu.as_rest(stock, count))
        return 200, {"gpus": gpus}

    def _op_getSshKeys(self, _id, _query, _body) -> tuple[int, dict]:
        return 200, {"keys": list(self.account_keys)}

    def _op_updateSshKeys(self, _id, _query, body) -> tuple[int, dict]:
        self.account_keys[:] = [str(k).strip() for k in body.get("keys", [])]
        return 200, {"keys": list(self.account_keys)}

    def _op_listNetworkVolumes(self, _id, _query, _body) -> tuple[int, dict]:
        return 200, {"networkVolumes": list(self.volumes.values())}

    # -- create ----------------------------------------------------------
    def _op_createPod(self, _id, _query, spec) -> tuple[int, dict]:
        if "cpu" in spec or "gpu" not in spec:
            raise SimError(400, "exactly one of gpu or cpu must be set (CPU pods are not simulated)")
        gpu = self.gpus.get(spec["gpu"]["id"])
        if gpu is None:
            raise SimError(400, f"unknown GPU type {spec['gpu']['id']!r}")
        count = int(spec["gpu"].get("count") or 1)
        if count > gpu.max_gpu_count:
            raise SimError(400, NO_INSTANCES)
        mounts = spec.get("mounts") or {}
        if mounts.get("persistent") and mounts.get("network"):
            raise SimError(400, "at most one of mounts.persistent and mounts.network may be set")
        wanted = list(spec.get("dataCenterIds") or [])
        volume = self._volume_for(mounts, wanted)
        if volume is not None:
            wanted = [volume["dataCenter"]]
        for dc in wanted or [None]:
            try:
                placed = self.stock.acquire(gpu.id, dc, count)
                break
            except OutOfStock as exc:
                error = str(exc)
        else:
            raise SimError(400, error)
        pod = self.store.put(self._record(spec, gpu, count, placed, volume), "created")
        self.boot(pod)
        return 201, self.view(self.store.get(pod.id))

    def _volume_for(self, mounts: dict, wanted: list[str]) -> dict | None:
        network = mounts.get("network") or []
        if not network:
            return None
        volume = self.volumes.get(str(network[0]["volumeId"]))
        if volume is None:
            raise SimError(400, f"network volume {network[0]['volumeId']} not found")
        if wanted and volume["dataCenter"] not in wanted:
            raise SimError(400, f"network volume {volume['id']} is in {volume['dataCenter']}, not in {wanted}")
        return volume

    def _record(self, spec: dict, gpu: GpuType, count: int, dc: str, volume: dict | None) -> PodRecord:
        now, pod_id = time.time(), new_id()
        cloud = str(spec.get("cloud") or "SECURE")
        env = tuple((str(k), str(v)) for k, v in (spec.get("env") or {}).items())
        mounts = spec.get("mounts") or {}
        persistent = mounts.get("persistent") or {}
        keys: tuple[str, ...] = ()
        if dict(env).get("PUBLIC_KEY"):
            keys = tuple(k for k in dict(env)["PUBLIC_KEY"].splitlines() if k.strip())
        elif spec.get("startSsh"):
            keys = tuple(self.account_keys)  # the keys registered now; later registrations do not reach it
        return PodRecord(
            id=pod_id, name=str(spec["name"]), image_name=str(spec.get("image") or ""),
            gpu_type_id=gpu.id, gpu_count=count, data_center_id=dc, cloud_type=cloud,
            cost_per_hr=round(gpu.price(cloud) * count, 4), machine_id=new_id(12),
            pod_host_id=f"{pod_id}-{secrets.token_hex(4)}", api_key=f"rpa_POD{secrets.token_hex(16)}",
            created_at=now, last_status_change=now, billed_until=now,
            container_disk_gb=int(spec.get("disk") or 50),
            volume_gb=int(persistent.get("size") or 0),
            volume_mount_path=str(persistent.get("path") or ((mounts.get("network") or [{}])[0].get("path"))
                                  or "/workspace"),
            ports=tuple(spec.get("ports") or ()), docker_args=str(spec.get("args") or ""),
            env=env, network_volume_id=volume["id"] if volume else None,
            start_ssh=bool(spec.get("startSsh")), status_reason="Rented by User",
            public_ip=cloud != "COMMUNITY" or self.community_public_ip, authorized_keys=keys,
        )

    # -- actions ---------------------------------------------------------
    def _op_podAction(self, pod_id, _query, body) -> tuple[int, dict | None]:
        action = body["action"]
        pod = self._live(pod_id)
        status = visible_status(pod, time.time())
        if action == "stop" and pod.network_volume_id:
            raise SimError(409, "a pod with a network volume cannot be stopped, only terminated")
        if action not in actions(pod, status):
            raise SimError(409, f"action {action} is not valid for a pod in status {status}")
        if action == "terminate":
            self.halt(pod_id, "TERMINATED", "Terminated by User")
            return 204, None
        if action == "stop":
            self.halt(pod_id, "EXITED", "Exited by User")
        elif action == "start":
            self._resume(pod)
        else:  # restart
            self.boot(pod)
        return 200, self.view(self.store.get(pod_id))

    def _op_deletePod(self, pod_id, _query, _body) -> tuple[int, None]:
        self._live(pod_id)
        self.halt(pod_id, "TERMINATED", "Terminated by User")
        return 204, None

    def _resume(self, pod: PodRecord) -> None:
        with self.store.lock:
            try:
                self.stock.reacquire(pod.gpu_type_id, pod.data_center_id, pod.gpu_count)
            except OutOfStock as exc:
                raise SimError(400, str(exc)) from None
            pod = self._transition(pod.id, "RUNNING", "Resumed by User", "resumed")
        self.boot(pod)

    def _live(self, pod_id: str | None) -> PodRecord:
        pod = self.store.get(pod_id or "")
        if pod is None or not pod.live:
            raise SimError(404, "pod not found")
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
            self.hosts[pod.id] = PodHost(self.state_dir / "pods" / pod.id, pod.id)
        return self.hosts[pod.id]

    def boot(self, pod: PodRecord) -> None:
        image = lookup(pod.image_name, self.images)
        boot = self.timing.boot(time.time(), phantom=image is None)
        pod = self.store.update(pod.id, lambda p: replace(p, boot=boot, ssh_port=None), "boot")
        host = self.host(pod)
        host.prepare(self.state_dir / "volumes" / pod.network_volume_id if pod.network_volume_id else None)
        if image is None:
            return  # the image pull never succeeds: no container, no sshd, but the GPU is held and billed
        host.boot(boot, self.pod_env(pod), lambda port: self._on_port(pod.id, boot, port),
                  keys=pod.authorized_keys, uv=image.uv)

    def _on_port(self, pod_id: str, boot: Boot, port: int) -> None:
        def change(p: PodRecord) -> PodRecord:
            current = p.boot == boot and p.desired_status == "RUNNING"
            return replace(p, ssh_port=port) if current else p
        self.store.update(pod_id, change)

    def pod_env(self, pod: PodRecord) -> dict[str, str]:
        """The container's environment (RunPod's names); SSH sessions do not inherit it."""
        return {
            **self.image_env, **dict(pod.env),
            "RUNPOD_POD_ID": pod.id, "RUNPOD_API_KEY": pod.api_key,
            "RUNPOD_API_BASE_URL": self.base_url(), "RUNPOD_POD_HOSTNAME": pod.pod_host_id,
            "RUNPOD_GPU_COUNT": str(pod.gpu_count), "RUNPOD_DC_ID": pod.data_center_id,
            "RUNPOD_PUBLIC_IP": "127.0.0.1" if pod.public_ip else "",
        }


def _volume(v: dict) -> dict:
    """A `NetworkVolume` (accepts the old `dataCenterId` spelling of tests)."""
    return {"id": str(v["id"]), "name": str(v.get("name") or v["id"]), "size": int(v.get("size") or 10),
            "dataCenter": str(v.get("dataCenter") or v.get("dataCenterId")), "type": v.get("type") or "STANDARD"}
