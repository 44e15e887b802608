"""What is left on the RunPod account, and releasing it (`ls-stale`, `cleanup`).

`stale_pods` lists the account's stopped (EXITED) pods with what their disk
costs per day while they sit there, matched to local runs by pod id (the
caller passes that mapping, from the store). `cleanup_stopped` terminates
every stopped pod. Both are the
backend half of `podmagic ls-stale` / `podmagic cleanup RUN|--all-stopped`;
the front ends print and confirm.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from podmagic.backends.runpod.api import RunPodAPI
from podmagic.backends.runpod.pod import STOPPED_VOLUME_USD_PER_GB_MONTH


@dataclass(frozen=True)
class StalePod:
    pod_id: str
    name: str
    desired_status: str
    gpu: str | None
    volume_gb: int
    usd_per_day: float
    last_status_change: str | None
    run_dir: Path | None = None


def disk_usd_per_day(volume_gb: int) -> float:
    return round(volume_gb * STOPPED_VOLUME_USD_PER_GB_MONTH / 30, 4)


def stale_pods(api: RunPodAPI, owners: Mapping[str, Path] | None = None) -> list[StalePod]:
    """The account's stopped pods, most expensive first; `owners` maps pod ids to run directories."""
    owners = owners or {}
    out = []
    for pod in api.list_pods():
        if pod.get("desiredStatus") != "EXITED":
            continue
        volume = int(pod.get("volumeInGb") or 0)
        out.append(StalePod(
            pod_id=pod["id"], name=pod.get("name") or "", desired_status="EXITED",
            gpu=(pod.get("machine") or {}).get("gpuDisplayName"), volume_gb=volume,
            usd_per_day=disk_usd_per_day(volume), last_status_change=pod.get("lastStatusChange"),
            run_dir=owners.get(pod["id"]),
        ))
    return sorted(out, key=lambda p: (-p.usd_per_day, p.pod_id))


def cleanup_stopped(api: RunPodAPI) -> list[str]:
    """Terminate every stopped pod on the account; the ids terminated."""
    done = []
    for pod in stale_pods(api):
        api.terminate(pod.pod_id)
        done.append(pod.pod_id)
    return done
