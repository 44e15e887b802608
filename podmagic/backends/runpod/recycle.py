"""`lifecycle.on_success: recycle`: keep the stopped pod, resume it next run.

The pointer is a small JSON file per job, `<runs root>/.recycle/<key>.json`
with `{pod_id, gpu_id, image, datacenter_id}` (runpod-deploy's state file).
The key is `request.options["recycle_key"]`, else the run id without its
`-<UTC stamp>-<hex>` suffix (the job name). The next run resumes the pod
when it is EXITED and its image, GPU and datacenter still match the spec;
drift, a pod in use, or a failed resume means a fresh create (a drifted or
unresumable pod is terminated first, a pod in use is left alone).
`force_fresh` terminates the stopped pod and creates a new one.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable

from podmagic.backends.base import BackendError, PodRequest
from podmagic.backends.runpod.api import RunPodAPI
from podmagic.plan.naming import slug
from podmagic.records import asdict, record

RUN_SUFFIX = re.compile(r"-\d{8}T\d{6}Z-[0-9a-f]{4}$")


@record
class RecycleState:
    pod_id: str
    gpu_id: str
    image: str
    datacenter_id: str


def wants_recycle(request: PodRequest) -> bool:
    """Resume when the lifecycle says recycle, or when it is not passed at all (a
    pointer only exists because an earlier run of this job asked to recycle)."""
    value = request.options.get("on_success")
    return value is None or str(value).lower() == "recycle"


def state_path(request: PodRequest) -> Path | None:
    if request.run_dir is None:
        return None
    key = request.options.get("recycle_key") or RUN_SUFFIX.sub("", request.run_id)
    return Path(request.run_dir).parent / ".recycle" / f"{slug(key)}.json"


def read_state(path: Path | None) -> RecycleState | None:
    try:
        data = json.loads(path.read_text()) if path else None
        return RecycleState(**{k: str(data[k]) for k in ("pod_id", "gpu_id", "image", "datacenter_id")})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def write_state(path: Path | None, state: RecycleState) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(state)))
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old pointer or the new one


def forget(path: Path | None, pod_id: str | None = None) -> None:
    """Remove the pointer (only if it points at `pod_id`, when given)."""
    state = read_state(path)
    if path is not None and (pod_id is None or (state and state.pod_id == pod_id)):
        path.unlink(missing_ok=True)


def drift(state: RecycleState, request: PodRequest) -> list[str]:
    out = []
    if state.image != request.image:
        out.append(f"image {state.image} → {request.image}")
    if state.gpu_id not in request.gpu_order:
        out.append(f"GPU {state.gpu_id} not in gpu_order")
    if state.datacenter_id not in request.datacenters:
        out.append(f"datacenter {state.datacenter_id} not in datacenters")
    return out


def try_resume(api: RunPodAPI, request: PodRequest, emit: Callable[..., None],
               force_fresh: bool = False) -> tuple[RecycleState, dict] | None:
    """Resume the recycled pod if it fits; None means: create a fresh one."""
    path = state_path(request)
    state = read_state(path)
    if state is None:
        return None
    if force_fresh:
        emit("recycle_force_fresh", pod_id=state.pod_id)
        _discard(api, path, state, emit)
        return None
    pod = api.get_pod(state.pod_id)
    if pod is None or pod.get("status") == "TERMINATED":
        forget(path)
        return None
    if pod.get("status") != "EXITED":
        emit("warning", message=f"recycled pod {state.pod_id} is {pod.get('status')} (in use?); "
                                "creating a fresh pod and leaving it alone")
        return None
    changes = drift(state, request)
    if changes:
        emit("recycle_drift", pod_id=state.pod_id, changes=changes)
        emit("warning", message=f"recycled pod {state.pod_id} no longer matches ({'; '.join(changes)}): "
                                "terminating it and creating a fresh pod")
        _discard(api, path, state, emit)
        return None
    try:
        answer = api.resume(state.pod_id)
    except BackendError as exc:
        emit("warning", message=f"resuming pod {state.pod_id} failed ({exc}); terminating it, creating fresh")
        _discard(api, path, state, emit)
        return None
    return state, answer


def _discard(api: RunPodAPI, path: Path | None, state: RecycleState, emit: Callable[..., None]) -> None:
    try:
        api.terminate(state.pod_id)
        emit("pod_terminated", pod_id=state.pod_id, reason="recycle pointer discarded")
    except BackendError as exc:
        emit("warning", message=f"could not terminate stale pod {state.pod_id}: {exc}; "
                                f"release it with `podmagic cleanup --all-stopped`")
    forget(path)
