"""How a simulated pod looks in REST v2 answers (the `Pod` schema of the OpenAPI document).

Pure functions from a `PodRecord` and the current time. The status follows the boot:
PROVISIONING until the machine is set up, STARTING while the container starts, RUNNING once it
is up (PodStatus). `runtime` is null unless RUNNING. The `22/tcp` mapping, and with it
`ssh.direct`, appears a little after RUNNING (`Timing.ports_sec`), and only when `22/tcp` is in
`ports` (PodSsh: "Null unless `22/tcp` is in `ports` and the running pod has been assigned a
public port for it"). A pod without a public IP (some COMMUNITY hosts) shows the 22 mapping
with no public port and never gets `ssh.direct`; `ssh.proxy` is there from the machine
assignment on, as the document says.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from podmagic.testing.sim.state import PodRecord

ACTIONS = {
    # PodAction / podAction's description: which transitions each status allows
    "RUNNING": ("stop", "restart", "terminate"),
    "EXITED": ("start", "terminate"),
    "ERROR": ("start", "terminate"),
    "PROVISIONING": ("stop", "terminate"),
    "STARTING": ("stop", "terminate"),
}


def iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def visible_status(pod: PodRecord, now: float) -> str:
    if pod.desired_status != "RUNNING":
        return pod.desired_status
    boot = pod.boot
    if boot is None or now < boot.starting_at:
        return "PROVISIONING"
    return "STARTING" if now < boot.runtime_at else "RUNNING"


def actions(pod: PodRecord, status: str) -> list[str]:
    allowed = ACTIONS.get(status, ())
    if pod.network_volume_id:  # RunPod docs (pods/manage-pods): a network-volume pod cannot be stopped
        allowed = tuple(a for a in allowed if a != "stop")
    return list(allowed)


def ssh_port_entry(pod: PodRecord, now: float) -> dict | None:
    boot = pod.boot
    if "22/tcp" not in pod.ports or boot is None or now < boot.ports_at or pod.ssh_port is None:
        return None
    if not pod.public_ip:
        return {"private": 22, "public": None, "type": "tcp", "ip": None}
    return {"private": 22, "public": pod.ssh_port, "type": "tcp", "ip": "127.0.0.1"}


def runtime(pod: PodRecord, now: float, status: str) -> dict | None:
    if status != "RUNNING":
        return None
    entry = ssh_port_entry(pod, now)
    others = [{"private": int(p.split("/")[0]), "public": None, "type": p.split("/")[1], "ip": None}
              for p in pod.ports if p != "22/tcp" and p.split("/")[0].isdigit() and "/" in p]
    return {
        "uptime": int(now - pod.boot.runtime_at),
        "gpus": [{"util": 0, "memoryUtil": 0} for _ in range(pod.gpu_count)],
        "cpu": {"util": 0}, "memory": {"util": 0},
        "ports": ([entry] if entry else []) + others,
    }


def ssh_block(pod: PodRecord, now: float, status: str) -> dict:
    user = f"{pod.id}-{pod.pod_host_id[-8:]}"
    proxy = {"host": "ssh.proxy.runpod-sim.invalid", "port": 22, "username": user,
             "command": f"ssh {user}@ssh.proxy.runpod-sim.invalid"}
    entry = ssh_port_entry(pod, now) if status == "RUNNING" else None
    direct = None
    if entry and entry["public"] is not None:
        direct = {"host": entry["ip"], "port": entry["public"], "username": "root",
                  "command": f"ssh root@{entry['ip']} -p {entry['public']}"}
    return {"proxy": proxy, "direct": direct}


def mounts(pod: PodRecord) -> dict:
    if pod.network_volume_id:
        return {"network": [{"volumeId": pod.network_volume_id, "path": pod.volume_mount_path}]}
    if pod.volume_gb:
        return {"persistent": {"size": pod.volume_gb, "path": pod.volume_mount_path}}
    return {}


def pod_view(pod: PodRecord, *, now: float | None = None) -> dict:
    """The `Pod` object."""
    now = time.time() if now is None else now
    status = visible_status(pod, now)
    billing = pod.desired_status == "RUNNING"
    return {
        "id": pod.id, "name": pod.name, "status": status, "actions": actions(pod, status),
        "image": pod.image_name, "args": pod.docker_args, "disk": pod.container_disk_gb,
        "mounts": mounts(pod), "ports": list(pod.ports),
        "env": {k: v for k, v in pod.env if k != "PUBLIC_KEY"}, "registry": None,
        "gpu": {"id": pod.gpu_type_id, "count": pod.gpu_count}, "cloud": pod.cloud_type,
        "dataCenterId": pod.data_center_id, "cudaVersion": "12.8",
        "ssh": ssh_block(pod, now, status), "template": None,
        "cost": pod.cost_per_hr if billing else 0.0, "locked": False,
        "globalNetworking": {"enabled": False}, "runtime": runtime(pod, now, status),
        "createdAt": iso(pod.created_at),
        "startedAt": iso(pod.boot.runtime_at) if billing and pod.boot and now >= pod.boot.runtime_at else None,
    }
