"""Comparing runs: side-by-side manifests, differences, and the sweep consistency check.

Pure functions over manifests (dicts). `frame` turns rows into a pandas
DataFrame when pandas is installed (imported only there).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from podmagic.run.manifest import lookup
from podmagic.run.store import status_word

FIELDS = (
    "job_name", "status", "backend", "exit_code", "gpu_id", "datacenter_id", "gpu_price_per_hour_usd",
    "wall_time_sec", "estimated_cost_usd", "python_version", "python_resolved", "remote_python_version", "uv_version",
    "gpu_name", "gpu_count", "gpu_memory_total_mb", "gpu_driver_version", "gpu_cuda_version",
    "deploy_metadata.local_git_sha", "deploy_metadata.local_git_dirty", "deploy_metadata.local_git_diff_sha256",
    "deploy_metadata.payload_lockfile_sha256", "image", "spec_sha256", "variables", "pod_final_state", "error",
)
TRIPOD = ("python_resolved", "deploy_metadata.payload_lockfile_sha256", "deploy_metadata.local_git_sha")
RAN_ON = ("gpu_name", "gpu_driver_version", "deploy_metadata.local_git_diff_sha256")
"""Also checked across shards: the GPU model, the driver and the uncommitted diff."""
_VOLATILE = ("wall_time_sec", "estimated_cost_usd")


def value(manifest: dict[str, Any], field: str) -> Any:
    return status_word(manifest) if field == "status" else lookup(manifest, field)


def side_by_side(manifests: Sequence[dict[str, Any]], fields: Iterable[str] = FIELDS) -> list[dict[str, Any]]:
    """One row per field: its value in each run and whether they differ."""
    rows = []
    for field in fields:
        values = [value(m, field) for m in manifests]
        differs = len({repr(v) for v in values}) > 1
        rows.append({"field": field, "values": values, "differs": differs and field not in _VOLATILE})
    return rows


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """What changed from one run to the next, cost and wall time included."""
    return [(f, value(before, f), value(after, f)) for f in FIELDS
            if f not in ("status", "error") and repr(value(before, f)) != repr(value(after, f))]


def consistency(manifests: Sequence[dict[str, Any]]) -> list[str]:
    """The seed's check: every shard used the same interpreter, lockfile and git SHA, and ran on the
    same GPU model and driver with the same uncommitted diff.

    Returns one message per field that differs, naming the shards that differ
    from the majority. Empty when consistent.
    """
    problems = []
    for field in (*TRIPOD, *RAN_ON):
        values = [value(m, field) for m in manifests]
        counts: dict[str, int] = {}
        for v in values:
            counts[repr(v)] = counts.get(repr(v), 0) + 1
        if len(counts) <= 1:
            continue
        majority = max(counts, key=counts.get)
        odd = [f"{m.get('run_id')} ({value(m, field)})" for m in manifests if repr(value(m, field)) != majority]
        problems.append(f"{field} differs: majority {majority}; differing: {', '.join(odd)}")
    return problems


def frame(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None):
    """A pandas DataFrame of rows (requires pandas)."""
    import pandas as pd

    return pd.DataFrame(list(rows), columns=list(columns) if columns else None)
