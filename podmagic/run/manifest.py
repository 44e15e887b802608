"""The run manifest: runpod-deploy's v2 keys plus what it never recorded.

`build` is pure: plan + outcome → dict. Added to runpod-deploy's keys:
`python_version` (requested), `python_resolved` (what the pinned project
really runs, asked on the pod), `exit_code`, `interrupted`, `timed_out`,
`ended_by`, `error`, `started_at_utc`, `ended_at_utc`, `backend`,
`spec_sha256`, `variables` (secret ones masked) and `podmagic_version`;
what the run ran on, from telemetry (run/telemetry.py): `gpu_name`,
`gpu_count`, `gpu_memory_total_mb`, `gpu_driver_version`, `gpu_cuda_version`
(nvidia-smi), `uv_version`, `remote_python_version` / `remote_python_path`
(the pod's default python3), `remote_uname`, and `user_metrics_file`;
`deploy_metadata.local_git_diff_sha256` comes from provenance; `uv_source`
(how uv got on the pod: present, copied, pip) comes with the pod's info; `sandbox` (a local pod:
`namespace` or `mapped`) too. The interpreter probe also asks the pod's python3, so
it is recorded when telemetry's start capture is off or fails.
"""

from __future__ import annotations

from podmagic import __version__
from podmagic.backends.base import PodInfo
from podmagic.plan.build import Plan
from podmagic.records import field, mutable
from podmagic.run.events import utc_iso
from podmagic.run.redact import MASK
from podmagic.run.store import status_word

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DISPLAY_KEYS = (
    ("run_id", "run"), ("job_name", "job"), ("backend", "backend"), ("status", "status"),
    ("exit_code", "exit code"), ("wall_time_sec", "wall time (s)"), ("pod_id", "pod"),
    ("gpu_id", "GPU"), ("datacenter_id", "datacenter"), ("gpu_price_per_hour_usd", "$/hour"),
    ("estimated_cost_usd", "estimated cost ($)"), ("python_version", "python requested"),
    ("python_resolved", "python resolved"), ("remote_python_version", "pod python3"), ("sandbox", "sandbox"),
    ("uv_version", "uv"), ("gpu_name", "GPU model"), ("gpu_count", "GPU count"),
    ("gpu_memory_total_mb", "GPU memory (MiB)"), ("gpu_driver_version", "driver"), ("gpu_cuda_version", "CUDA"),
    ("deploy_metadata.local_git_sha", "git SHA"),
    ("deploy_metadata.local_git_dirty", "git dirty"), ("deploy_metadata.local_git_diff_sha256", "git diff sha256"), ("deploy_metadata.local_git_branch", "git branch"),
    ("deploy_metadata.payload_lockfile", "lockfile"),
    ("deploy_metadata.payload_lockfile_sha256", "lockfile sha256"), ("pod_final_state", "pod final state"),
    ("started_at_utc", "started (UTC)"), ("ended_at_utc", "ended (UTC)"), ("spec_sha256", "spec sha256"),
    ("error", "error"),
)


TELEMETRY_KEYS = ("gpu_name", "gpu_count", "gpu_memory_total_mb", "gpu_driver_version", "gpu_cuda_version",
                  "uv_version", "remote_python_version", "remote_python_path", "remote_uname", "user_metrics_file")


@mutable
class Outcome:
    """What happened; filled in by the runner as the run goes."""

    started_at: float
    ended_at: float | None = None
    failed: bool = True
    interrupted: bool = False
    timed_out: bool = False
    exit_code: int | None = None
    ended_by: str | None = None
    error: str | None = None
    pod: PodInfo | None = None
    pod_final_state: str | None = None
    python_resolved: str | None = None
    python_resolved_path: str | None = None
    remote_python_version: str | None = None
    """The pod's default `python3` (what a bare `python3` runs), beside uv's resolved interpreter."""
    remote_python_path: str | None = None
    deploy_metadata: dict[str, Any] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    telemetry_files: list[str] = field(default_factory=list)
    telemetry: dict[str, Any] = field(default_factory=dict)
    """Fields telemetry adds (GPU, driver, CUDA, uv, the pod's python3, user_metrics_file)."""


def build(plan: Plan, outcome: Outcome) -> dict[str, Any]:
    pod = outcome.pod
    wall = (outcome.ended_at or outcome.started_at) - outcome.started_at
    price = pod.price_per_hour_usd if pod else None
    req = plan.request
    manifest = {
        "schema_version": "v2",
        "pulled_at_utc": utc_iso(outcome.ended_at),
        "failed": outcome.failed,
        "job_name": plan.job_name,
        "run_id": plan.run_id,
        "config_path": plan.config_path,
        "storage_mode": req.storage_mode,
        "datacenter_id": (pod.datacenter_id if pod else None) or (req.datacenters[0] if req.datacenters else None),
        "gpu_id": pod.gpu_id if pod else None,
        "pod_id": pod.pod_id if pod else None,
        "image": req.image,
        "gpu_price_per_hour_usd": price,
        "gpu_price_source": pod.price_source if pod else None,
        "wall_time_sec": round(wall, 3),
        "estimated_cost_usd": None if price is None else round(price * wall / 3600.0, 4),
        "cost_cap_usd": plan.cost_cap_usd,
        "pod_final_state": outcome.pod_final_state,
        "pod_resumed": bool(pod and pod.resumed),
        "uv_version": pod.uv_version if pod else None,
        "uv_source": pod.uv_source if pod else None,
        "volume_mount": req.volume_mount,
        "volume_name": req.volume_name,
        "volume_gb": req.volume_gb,
        "deploy_metadata": outcome.deploy_metadata,
        "artifacts": outcome.artifacts,
        "telemetry_files": list(outcome.telemetry_files),
        "python_version": plan.python_version,
        "python_resolved": outcome.python_resolved,
        "python_resolved_path": outcome.python_resolved_path,
        "exit_code": outcome.exit_code,
        "interrupted": outcome.interrupted,
        "timed_out": outcome.timed_out,
        "ended_by": outcome.ended_by,
        "error": outcome.error,
        "started_at_utc": utc_iso(outcome.started_at),
        "ended_at_utc": utc_iso(outcome.ended_at),
        "backend": plan.backend,
        "sandbox": pod.sandbox if pod else None,
        "spec_sha256": plan.spec_sha256,
        "variables": {k: MASK if k in plan.secret_variables else v for k, v in plan.variables.items()},
        "podmagic_version": __version__,
        **({} if not plan.telemetry.capture_remote_env else {  # the probe's answer too, unless turned off
            "remote_python_version": outcome.remote_python_version,
            "remote_python_path": outcome.remote_python_path}),
    }
    for key in TELEMETRY_KEYS:  # a key another step also records (the pod's python3) keeps its value over a null
        if outcome.telemetry.get(key) is not None or key not in manifest:
            manifest[key] = outcome.telemetry.get(key)
    return manifest


def lookup(manifest: dict[str, Any], dotted: str) -> Any:
    value: Any = manifest
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def rows(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs for display, in a fixed order."""
    out = []
    for key, label in DISPLAY_KEYS:
        value = status_word(manifest) if key == "status" else lookup(manifest, key)
        if value is None or value == "":
            continue
        out.append((label, _fmt(value)))
    for art in manifest.get("artifacts") or []:
        out.append((f"artifact {art.get('label')}", f"{art.get('status')} ({art.get('bytes_transferred') or 0} bytes)"))
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value else "0"
    return str(value)
