"""`ls-stale` and `cleanup` for front ends: what is left billing, and releasing it.

The RunPod account's stopped pods (their disks bill while they sit there) and
its RUNNING pods whose run is lost (no manifest, and the client that ran it is
gone), matched to this project's run directories; `cleanup` terminates the pod of
one run or every stopped pod. The backend half is `backends.runpod.audit`.
"""

from __future__ import annotations

import json
from pathlib import Path

from podmagic.errors import PodmagicError
from podmagic.run import store


def _api():
    from podmagic.backends.runpod.backend import RunPodBackend

    return RunPodBackend().api(lambda *a, **k: None)


def stale(project_root: Path) -> list[dict]:
    from podmagic.backends.runpod.audit import stale_pods

    return [{"pod_id": p.pod_id, "name": p.name, "status": p.desired_status, "gpu": p.gpu,
             "volume_gb": p.volume_gb, "usd_per_hour": p.usd_per_hour,
             "usd_per_day": p.usd_per_day, "usd_per_month": round(p.usd_per_day * 30, 2),
             "last_status_change": p.last_status_change, "run_id": p.run_dir.name if p.run_dir else None}
            for p in stale_pods(_api(), store.pods_by_id(project_root), is_lost=run_lost)]


def run_lost(run_dir: Path) -> bool:
    """A run with no manifest whose client is gone: nothing will end its pod."""
    rundir = store.RunDir(run_dir)
    if rundir.manifest() is not None:
        return False
    return not store.owner_alive(rundir.status() or {})


def stale_text(rows: list[dict]) -> str:
    from podmagic.ui.render import table_text

    total = sum(r["usd_per_day"] for r in rows)
    cols = (("pod_id", "pod"), ("name", "name"), ("status", "status"), ("gpu", "GPU"), ("volume_gb", "GB"),
            ("usd_per_hour", "$/h"), ("usd_per_day", "$/day"), ("usd_per_month", "$/mo"), ("run_id", "run"))
    stopped = sum(1 for r in rows if r.get("status", "EXITED") == "EXITED")
    lost = len(rows) - stopped
    return table_text(rows, cols) + (f"\nTOTAL: {stopped} stopped pods" + (f", {lost} running pods of lost runs" if lost
                                     else "") + f", ${total:.2f}/day (~${total * 30:.2f}/mo)")


def cleanup(project_root: Path, run: str | None, all_stopped: bool, mode: str = "delete") -> list[str]:
    """Terminate (or, mode stop, stop) the pod of one run, or terminate every stopped pod; the pod ids done."""
    from podmagic.backends.runpod.audit import cleanup_stopped

    if all_stopped:
        return cleanup_stopped(_api())
    rundir = store.RunDir(store.find_run(project_root, run))
    pod_id = (rundir.pod() or {}).get("pod_id")
    if not pod_id:
        raise PodmagicError(f"run {rundir.run_id} has no pod recorded (no {rundir.POD})")
    if mode == "stop":
        _api().stop(pod_id)
    else:
        _api().terminate(pod_id)
    return [pod_id]


def state_file_pod(path: Path) -> str:
    """The pod id of runpod-deploy's state file (`pod_id`, `id` or `podId`)."""
    try:
        data = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PodmagicError(f"state file {path} does not exist (no live pod recorded there)") from None
    except (OSError, ValueError) as exc:
        raise PodmagicError(f"cannot read state file {path}: {exc}") from None
    pod_id = next((data.get(k) for k in ("pod_id", "id", "podId") if isinstance(data, dict) and data.get(k)), None)
    if not isinstance(pod_id, str):
        raise PodmagicError(f"state file {path} names no pod (expected a JSON object with pod_id)")
    return pod_id


def release(pod_id: str, mode: str, state_file: Path | None = None) -> str:
    """Apply `mode` (delete or stop) to one pod; delete also removes the state file pointing at it."""
    api = _api()
    if mode == "stop":
        api.stop(pod_id)
        return f"stopped {pod_id}"
    api.terminate(pod_id)
    if state_file is not None:
        Path(state_file).expanduser().unlink(missing_ok=True)
    return f"terminated {pod_id}"
