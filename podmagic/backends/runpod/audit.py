"""What is left on the RunPod account, and releasing it (`ls-stale`, `cleanup`).

`stale_pods` lists the account's stopped (EXITED) pods with what their disk
costs per day while they sit there, and RUNNING pods whose run is lost (its
client gone: `is_lost(run_dir)` says so) with their $/h, matched to local runs
by pod id (the caller passes that mapping, from the store). `cleanup_stopped`
terminates every stopped pod. Both are the
backend half of `podmagic ls-stale` / `podmagic cleanup RUN|--all-stopped`;
the front ends print and confirm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

from podmagic.backends.runpod.api import RunPodAPI
from podmagic.backends.runpod.pod import STOPPED_VOLUME_USD_PER_GB_MONTH
from podmagic.records import record


@record
class StalePod:
    pod_id: str
    name: str
    desired_status: str
    gpu: str | None
    volume_gb: int
    usd_per_day: float
    last_status_change: str | None
    run_dir: Path | None = None
    usd_per_hour: float = 0.0


def disk_usd_per_day(volume_gb: int) -> float:
    return round(volume_gb * STOPPED_VOLUME_USD_PER_GB_MONTH / 30, 4)


def stale_pods(api: RunPodAPI, owners: Mapping[str, Path] | None = None,
               is_lost: Callable[[Path], bool] | None = None) -> list[StalePod]:
    """Stopped pods, and running pods of lost runs, most expensive first; `owners` maps pod ids to run dirs."""
    owners = owners or {}
    out = []
    for pod in api.list_pods():
        status, run_dir = pod.get("status"), owners.get(pod["id"])
        lost = status == "RUNNING" and run_dir is not None and is_lost is not None and is_lost(run_dir)
        if status != "EXITED" and not lost:
            continue
        volume = int(((pod.get("mounts") or {}).get("persistent") or {}).get("size") or 0)
        per_hour = float(pod.get("cost") or 0.0) if lost else 0.0
        out.append(StalePod(
            pod_id=pod["id"], name=pod.get("name") or "", desired_status=status,
            gpu=(pod.get("gpu") or {}).get("id"), volume_gb=volume,
            usd_per_day=round(per_hour * 24, 4) if lost else disk_usd_per_day(volume),
            last_status_change=pod.get("startedAt") or pod.get("createdAt"),
            run_dir=run_dir, usd_per_hour=per_hour,
        ))
    return sorted(out, key=lambda p: (-p.usd_per_day, p.pod_id))


def cleanup_stopped(api: RunPodAPI) -> list[str]:
    """Terminate every stopped pod on the account; the ids terminated."""
    done = []
    for pod in stale_pods(api):
        if pod.desired_status != "EXITED":
            continue
        api.terminate(pod.pod_id)
        done.append(pod.pod_id)
    return done
