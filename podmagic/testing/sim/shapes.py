"""How a simulated pod looks in GraphQL answers (`pod`, `myself.pods`, ...).

Pure functions from a `PodRecord` and the current time to the dicts the real
API returns, before projection onto the client's selection. `runtime` is
`null` until the container is up; `runtime.ports` is empty until the port
mapping appears; then the SSH entry is `privatePort: 22` on 127.0.0.1.
"""

from __future__ import annotations

import time

from podmagic.testing.sim.state import PodRecord, status_text

VCPU_PER_GPU = 16
MEMORY_GB_PER_GPU = 125


def runtime(pod: PodRecord, now: float, private_entry: bool = False) -> dict | None:
    boot = pod.boot
    if pod.desired_status != "RUNNING" or boot is None or now < boot.runtime_at:
        return None
    ports = []
    if now >= boot.ports_at and pod.ssh_port is not None:
        if private_entry:
            ports.append({"ip": "10.65.0.2", "isIpPublic": False, "privatePort": 22,
                          "publicPort": 22, "type": "tcp"})
        ports.append({"ip": "127.0.0.1", "isIpPublic": True, "privatePort": 22,
                      "publicPort": pod.ssh_port, "type": "tcp"})
    return {
        "uptimeInSeconds": int(now - boot.started_at),
        "ports": ports,
        "gpus": [{"id": f"GPU-{pod.id}-{i}", "gpuUtilPercent": 0, "memoryUtilPercent": 0}
                 for i in range(pod.gpu_count)],
        "container": {"cpuPercent": 0, "memoryPercent": 0},
    }


def pod_view(pod: PodRecord, gpu_display_name: str, *, now: float | None = None,
             private_entry: bool = False) -> dict:
    """The full `Pod` object; the client's selection picks from it."""
    now = time.time() if now is None else now
    running = pod.desired_status == "RUNNING" and pod.boot is not None
    return {
        "id": pod.id, "name": pod.name, "imageName": pod.image_name,
        "containerDiskInGb": pod.container_disk_gb, "costPerHr": pod.cost_per_hr,
        "adjustedCostPerHr": pod.cost_per_hr, "desiredStatus": pod.desired_status,
        "dockerArgs": pod.docker_args, "dockerId": None,
        "env": [f"{k}={v}" for k, v in pod.env], "gpuCount": pod.gpu_count,
        "lastStatusChange": status_text(pod), "machineId": pod.machine_id,
        "memoryInGb": MEMORY_GB_PER_GPU * pod.gpu_count, "podType": "RESERVED",
        "port": None, "ports": pod.ports,
        "uptimeSeconds": int(now - pod.boot.started_at) if running else 0,
        "vcpuCount": VCPU_PER_GPU * pod.gpu_count, "volumeInGb": pod.volume_gb,
        "volumeMountPath": pod.volume_mount_path, "networkVolumeId": pod.network_volume_id,
        "runtime": runtime(pod, now, private_entry),
        "machine": {"gpuDisplayName": gpu_display_name, "podHostId": pod.pod_host_id,
                    "dataCenterId": pod.data_center_id, "location": pod.data_center_id},
    }


def deploy_view(pod: PodRecord) -> dict:
    """What `podFindAndDeployOnDemand` / `podResume` answer."""
    return {
        "id": pod.id, "imageName": pod.image_name, "desiredStatus": pod.desired_status,
        "env": [f"{k}={v}" for k, v in pod.env], "machineId": pod.machine_id,
        "costPerHr": pod.cost_per_hr,
        "machine": {"podHostId": pod.pod_host_id, "dataCenterId": pod.data_center_id},
    }
