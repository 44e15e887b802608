"""`ls-stale` and `cleanup` for front ends: what is left billing, and releasing it.

The RunPod account's stopped pods (their disks bill while they sit there) and
its RUNNING pods whose run is lost (no manifest, and the client that ran it is
gone), matched to this project's run directories, and this project's local
pods whose run finished or is lost (sandboxes kept by `stop`/`preserve`, with
their size on disk; listed without a RunPod key too). `cleanup` terminates the
pod of one run or every stopped pod (a local pod: its sandbox is removed). The
backend halves are `backends.runpod.audit` and `backends.local.audit`.
"""

from __future__ import annotations

import json
from pathlib import Path

from podmagic.errors import PodmagicError
from podmagic.run import store


def _api():
    from podmagic.backends.runpod.backend import RunPodBackend

    return RunPodBackend().api(lambda *a, **k: None)


def has_runpod_key() -> bool:
    from podmagic.backends.runpod.api import resolve_api_key

    try:
        resolve_api_key()
    except PodmagicError:
        return False
    return True


NO_KEY_NOTE = ("RunPod not listed: no API key (export RUNPOD_API_KEY=... or run `runpod config`); "
               "local pods only")


def note() -> str | None:
    """What `ls-stale` could not look at (RunPod, without a key)."""
    return None if has_runpod_key() else NO_KEY_NOTE


def stale(project_root: Path, *, runpod: bool | None = None) -> list[dict]:
    """Stopped pods: this project's local sandboxes whose run finished, and (with a key) RunPod's."""
    rows = local_stale(project_root)
    if runpod if runpod is not None else has_runpod_key():
        rows += runpod_stale(project_root)
    return rows


def runpod_stale(project_root: Path) -> list[dict]:
    from podmagic.backends.runpod.audit import stale_pods

    return [{"backend": "runpod", "pod_id": p.pod_id, "name": p.name, "status": p.desired_status, "gpu": p.gpu,
             "volume_gb": p.volume_gb, "size_bytes": None, "usd_per_hour": p.usd_per_hour,
             "usd_per_day": p.usd_per_day, "usd_per_month": round(p.usd_per_day * 30, 2),
             "last_status_change": p.last_status_change, "run_id": p.run_dir.name if p.run_dir else None}
            for p in stale_pods(_api(), store.pods_by_id(project_root), is_lost=run_lost)]


def run_lost(run_dir: Path) -> bool:
    """A run with no manifest whose client is gone: nothing will end its pod."""
    rundir = store.RunDir(run_dir)
    if rundir.manifest() is not None:
        return False
    return not store.owner_alive(rundir.status() or {})


def local_stale(project_root: Path) -> list[dict]:
    """Local sandboxes of this project's runs that finished or are lost (a running one is not stale)."""
    from podmagic.backends.local.audit import pods

    owners = store.pods_by_id(project_root)
    runs_root = store.runs_root(project_root).resolve()
    rows = []
    for pod in pods():
        run_dir = owners.get(pod.pod_id) or pod.run_dir
        ours = pod.pod_id in owners or (run_dir is not None and runs_root in Path(run_dir).resolve().parents)
        if not ours or (Path(run_dir).is_dir() and not (Path(run_dir) / store.MANIFEST).exists()
                        and not run_lost(Path(run_dir))):
            continue
        rows.append({"backend": "local", "pod_id": pod.pod_id, "name": pod.sandbox or "", "status": "EXITED",
                     "gpu": "local", "volume_gb": round(pod.size_bytes / 1e9, 3), "size_bytes": pod.size_bytes,
                     "usd_per_hour": 0.0, "usd_per_day": 0.0, "usd_per_month": 0.0, "last_status_change": pod.modified_utc,
                     "run_id": Path(run_dir).name if run_dir else pod.run_id, "path": str(pod.path)})
    return rows


def stale_text(rows: list[dict]) -> str:
    from podmagic.ui.render import table_text

    total = sum(r["usd_per_day"] for r in rows)
    local = [r for r in rows if r.get("backend") == "local"]
    shown = [{**r, "size": _size(r)} for r in rows]
    cols = (("backend", "backend"), ("pod_id", "pod"), ("name", "name"), ("status", "status"), ("gpu", "GPU"),
            ("size", "disk"), ("usd_per_hour", "$/h"), ("usd_per_day", "$/day"), ("usd_per_month", "$/mo"),
            ("run_id", "run"))
    stopped = sum(1 for r in rows if r.get("status", "EXITED") == "EXITED")
    lost = len(rows) - stopped
    disk = f"; {len(local)} local, {_bytes(sum(r['size_bytes'] for r in local))} on disk" if local else ""
    return table_text(shown, cols) + (f"\nTOTAL: {stopped} stopped pods" + (f", {lost} running pods of lost runs"
                                      if lost else "") + f", ${total:.2f}/day (~${total * 30:.2f}/mo)" + disk)


def _size(row: dict) -> str:
    return _bytes(row["size_bytes"]) if row.get("size_bytes") is not None else f"{row.get('volume_gb')} GB"


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def cleanup(project_root: Path, run: str | None, all_stopped: bool, mode: str = "delete") -> list[str]:
    """Terminate (or, mode stop, stop) the pod of one run, or terminate every stopped pod; the pod ids done.

    A local pod is its sandbox: terminating removes it; stopping it is a no-op (it runs nothing)."""
    from podmagic.backends.local.audit import remove

    if all_stopped:
        done = [remove(r["pod_id"]) for r in local_stale(project_root)]
        if has_runpod_key() or not done:  # without a key and with nothing local, say why
            from podmagic.backends.runpod.audit import cleanup_stopped

            done += cleanup_stopped(_api())
        return done
    rundir = store.RunDir(store.find_run(project_root, run))
    record = rundir.pod() or {}
    pod_id = record.get("pod_id")
    if not pod_id:
        raise PodmagicError(f"run {rundir.run_id} has no pod recorded (no {rundir.POD})")
    if record.get("backend") == "local":
        if not (rundir.path / store.MANIFEST).exists() and not run_lost(rundir.path):
            raise PodmagicError(f"run {rundir.run_id} has not finished: stop it first (podmagic stop {rundir.run_id})")
        return [] if mode == "stop" else [remove(pod_id)]
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
