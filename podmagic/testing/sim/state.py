"""Simulator state: pod records, billing, and their JSON file in `state_dir`.

A `PodRecord` is immutable; every transition replaces it. Times are wall
clock (`time.time()`), so the JSON file is meaningful to a reader in another
process. `state.json` is rewritten atomically after each change and lists
every pod ever created, terminated ones included (`desiredStatus`
TERMINATED), which is what a "no leaked pods" assertion reads.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from dataclasses import asdict, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from podmagic.records import record
from podmagic.testing.sim.catalog import (
    RUNNING_VOLUME_USD_PER_GB_MONTH,
    VOLUME_USD_PER_GB_MONTH,
)

LIVE = ("RUNNING", "EXITED", "ERROR")
"""Stored statuses the API still shows; TERMINATED pods answer 404 and leave the listing.
The stored RUNNING means "meant to run": what `status` shows (PROVISIONING, STARTING,
RUNNING) follows the boot's timing (`shapes.visible_status`)."""


@record
class Boot:
    """When the current container start reaches each stage (wall clock)."""

    started_at: float
    runtime_at: float
    ports_at: float
    ssh_at: float
    starting_at: float = 0.0


@record
class PodRecord:
    """One pod as the control plane knows it."""

    id: str
    name: str
    image_name: str
    gpu_type_id: str
    gpu_count: int
    data_center_id: str
    cloud_type: str
    cost_per_hr: float
    machine_id: str
    pod_host_id: str
    api_key: str
    created_at: float
    last_status_change: float
    desired_status: str = "RUNNING"
    status_reason: str = "Rented by User"
    container_disk_gb: int = 10
    volume_gb: int = 0
    volume_mount_path: str = "/runpod-volume"
    ports: tuple[str, ...] = ()
    docker_args: str = ""
    env: tuple[tuple[str, str], ...] = ()
    network_volume_id: str | None = None
    start_ssh: bool = True
    public_ip: bool = True
    authorized_keys: tuple[str, ...] = ()
    boot: Boot | None = None
    ssh_port: int | None = None
    compute_sec: float = 0.0
    stopped_disk_sec: float = 0.0
    billed_until: float = 0.0
    history: tuple[str, ...] = field(default_factory=tuple)

    @property
    def live(self) -> bool:
        return self.desired_status in LIVE

    def disk_usd_per_hour(self) -> float:
        if self.desired_status == "RUNNING":
            gb = self.volume_gb + self.container_disk_gb
            return gb * RUNNING_VOLUME_USD_PER_GB_MONTH / 720
        if self.desired_status == "EXITED":
            return self.volume_gb * VOLUME_USD_PER_GB_MONTH / 720
        return 0.0


def settle(pod: PodRecord, now: float) -> PodRecord:
    """Account the time since `billed_until` to compute or stopped disk."""
    elapsed = max(0.0, now - (pod.billed_until or pod.created_at))
    if pod.desired_status == "RUNNING":
        return replace(pod, compute_sec=pod.compute_sec + elapsed, billed_until=now)
    if pod.desired_status == "EXITED":
        return replace(pod, stopped_disk_sec=pod.stopped_disk_sec + elapsed, billed_until=now)
    return replace(pod, billed_until=now)


def accrued_usd(pod: PodRecord) -> float:
    """Compute plus disk spend up to `billed_until` (settle first for 'now')."""
    gpu = pod.compute_sec * pod.cost_per_hr / 3600
    running_disk = pod.compute_sec * (pod.volume_gb + pod.container_disk_gb) \
        * RUNNING_VOLUME_USD_PER_GB_MONTH / 720 / 3600
    stopped_disk = pod.stopped_disk_sec * pod.volume_gb * VOLUME_USD_PER_GB_MONTH / 720 / 3600
    return round(gpu + running_disk + stopped_disk, 6)


def status_text(pod: PodRecord) -> str:
    """`lastStatusChange` in RunPod's style: reason, then a JS Date string."""
    moment = datetime.fromtimestamp(pod.last_status_change, tz=timezone.utc)
    return f"{pod.status_reason}: {moment.strftime('%a %b %d %Y %H:%M:%S')} GMT+0000 (Coordinated Universal Time)"


def inspect(pod: PodRecord, now: float | None = None) -> dict:
    """A plain dict view for tests: every field plus billing figures as of now."""
    pod = settle(pod, time.time() if now is None else now)
    data = asdict(pod)
    data.pop("api_key")
    data["env"] = {k: v for k, v in pod.env if k != "PUBLIC_KEY"}
    data["ports"], data["authorized_keys"] = list(pod.ports), list(pod.authorized_keys)
    data["status"] = pod.desired_status if pod.desired_status != "RUNNING" else _live_status(pod, time.time())
    data["accrued_usd"] = accrued_usd(pod)
    data["disk_usd_per_hour"] = round(pod.disk_usd_per_hour(), 6)
    data["billing"] = {"RUNNING": "compute", "EXITED": "disk"}.get(pod.desired_status, "none")
    return data


def _live_status(pod: PodRecord, now: float) -> str:
    boot = pod.boot
    if boot is None or now < (boot.starting_at or boot.runtime_at):
        return "PROVISIONING"
    return "STARTING" if now < boot.runtime_at else "RUNNING"


def _from_json(data: dict) -> PodRecord:
    data = dict(data)
    for key in ("accrued_usd", "disk_usd_per_hour", "billing"):
        data.pop(key, None)
    data.pop("status", None)
    data["env"] = tuple(tuple(kv) for kv in (data.get("env") or {}).items())
    data["ports"] = tuple(data.get("ports") or ())
    data["authorized_keys"] = tuple(data.get("authorized_keys") or ())
    data["history"] = tuple(data.get("history", ()))
    data["boot"] = Boot(**data["boot"]) if data.get("boot") else None
    data.setdefault("api_key", f"rpa_POD{secrets.token_hex(16)}")  # never written out
    return PodRecord(**data)


class Store:
    """The pods, behind one lock, mirrored to `state_dir/state.json`."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / "state.json"
        self.lock = threading.RLock()
        self._pods: dict[str, PodRecord] = {}
        self.extra: dict = {}
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = json.loads(self.path.read_text())
        self._pods = {p["id"]: _from_json(p) for p in data.get("pods", [])}

    def get(self, pod_id: str) -> PodRecord | None:
        with self.lock:
            return self._pods.get(pod_id)

    def all(self) -> list[PodRecord]:
        with self.lock:
            return sorted(self._pods.values(), key=lambda p: p.created_at)

    def put(self, pod: PodRecord, event: str | None = None) -> PodRecord:
        with self.lock:
            if event:
                pod = replace(pod, history=pod.history + (f"{time.time():.3f} {event}",))
            self._pods[pod.id] = pod
            self.save()
            return pod

    def update(self, pod_id: str, change: Callable[[PodRecord], PodRecord],
               event: str | None = None) -> PodRecord | None:
        with self.lock:
            pod = self._pods.get(pod_id)
            return None if pod is None else self.put(change(pod), event)

    def save(self) -> None:
        with self.lock:
            now = time.time()
            body = {"saved_at": now, **self.extra,
                    "pods": [inspect(p, now) for p in self.all()]}
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(body, indent=1, sort_keys=True))
            os.replace(tmp, self.path)

    def __iter__(self) -> Iterator[PodRecord]:
        return iter(self.all())


def load_pods(state_dir: Path) -> list[dict]:
    """The pods recorded in a simulator's state file (for another process)."""
    path = Path(state_dir) / "state.json"
    return json.loads(path.read_text())["pods"] if path.exists() else []
