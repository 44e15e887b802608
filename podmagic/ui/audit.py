"""`ls-stale` and `cleanup` for front ends: what is left billing, and releasing it.

The RunPod account's stopped pods (their disks bill while they sit there),
matched to this project's run directories; `cleanup` terminates the pod of
one run or every stopped pod. The backend half is `backends.runpod.audit`.
"""

from __future__ import annotations

from pathlib import Path

from podmagic.errors import PodmagicError
from podmagic.run import store


def _api():
    from podmagic.backends.runpod.backend import RunPodBackend

    return RunPodBackend().api(lambda *a, **k: None)


def stale(project_root: Path) -> list[dict]:
    from podmagic.backends.runpod.audit import stale_pods

    return [{"pod_id": p.pod_id, "name": p.name, "gpu": p.gpu, "volume_gb": p.volume_gb,
             "usd_per_day": p.usd_per_day, "usd_per_month": round(p.usd_per_day * 30, 2),
             "last_status_change": p.last_status_change, "run_id": p.run_dir.name if p.run_dir else None}
            for p in stale_pods(_api(), store.pods_by_id(project_root))]


def stale_text(rows: list[dict]) -> str:
    from podmagic.ui.render import table_text

    total = sum(r["usd_per_day"] for r in rows)
    cols = (("pod_id", "pod"), ("name", "name"), ("gpu", "GPU"), ("volume_gb", "GB"), ("usd_per_day", "$/day"),
            ("usd_per_month", "$/mo"), ("run_id", "run"))
    return table_text(rows, cols) + f"\nTOTAL: {len(rows)} stopped pods, ${total:.2f}/day (~${total * 30:.2f}/mo)"


def cleanup(project_root: Path, run: str | None, all_stopped: bool) -> list[str]:
    """Terminate the pod of one run, or every stopped pod; returns the pod ids terminated."""
    from podmagic.backends.runpod.audit import cleanup_stopped

    if all_stopped:
        return cleanup_stopped(_api())
    rundir = store.RunDir(store.find_run(project_root, run))
    pod_id = (rundir.pod() or {}).get("pod_id")
    if not pod_id:
        raise PodmagicError(f"run {rundir.run_id} has no pod recorded (no {rundir.POD})")
    _api().terminate(pod_id)
    return [pod_id]
