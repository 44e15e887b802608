"""What the endpoints return: plain dicts built from `podmagic.run.store`.

Imports `podmagic.run` and `podmagic.ui` (render, ansi, logtail); the Pods panel
shows the same summary line, folded manifest and ANSI-rendered log as the cell,
as HTML made here (every value escaped).
"""

from __future__ import annotations

import html
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from podmagic.run import store
from podmagic.run.sweep import SWEEPS_DIR
from podmagic.ui import ansi, render

MAX_RUNS = 200


def _epoch(stamp: Any) -> float | None:
    """Seconds since the epoch for an ISO-8601 UTC stamp, else None."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run_row(run_dir: Path, now: float | None = None) -> dict[str, Any]:
    """`store.run_summary` plus `live`, `elapsed_sec` and `cost_usd` for the panel."""
    row = store.run_summary(run_dir)
    live = row.get("state") in store.LIVE_STATES
    elapsed = _number(row.get("wall_time_sec")) if not live else None
    started = _epoch(row.get("started_at_utc"))
    if elapsed is None and live and started is not None:
        elapsed = max(0.0, (now or time.time()) - started)
    if elapsed is None:
        elapsed = _number(row.get("elapsed_sec"))
    price = _number(row.get("price_per_hour_usd"))
    cost = _number(row.get("estimated_cost_usd"))
    if cost is None and price is not None and elapsed is not None:
        cost = price * elapsed / 3600.0
    row.update(live=live, elapsed_sec=elapsed, cost_usd=cost,
               stop_requested=live and store.RunDir(run_dir).stop_requested())  # moot once it ended
    return row


def _signature(folder: Path) -> tuple[int, int] | None:
    """A folder's (mtime, inode): every record in it is replaced by a rename, which changes the folder."""
    try:
        st = folder.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_ino


_SWEEPS: dict[str, tuple[Any, dict[str, dict[str, Any]]]] = {}
_LISTS: dict[str, tuple[Any, dict[str, Any]]] = {}
"""What the last poll answered, per folder, while nothing it was made of can have changed."""


def sweep_index(project_root: Path, signature: tuple[int, int] | None = None) -> dict[str, dict[str, Any]]:
    """run id → {sweep_id, shard} from the recorded sweeps (`.sweeps/*.json`); read again only when one changed
    (`signature`: the sweeps folder's, when the caller has it)."""
    folder = store.runs_root(project_root) / SWEEPS_DIR
    signature = signature or _signature(folder)
    cached = _SWEEPS.get(str(folder))
    if cached is not None and signature is not None and cached[0] == signature and store.quiet_since(signature[0]):
        return cached[1]
    index: dict[str, dict[str, Any]] = {}
    try:
        records = sorted(folder.glob("*.json"))
    except OSError:
        return index
    for path in records:
        record = store.read_json(path) or {}
        for shard in record.get("shards") or []:
            if isinstance(shard, dict) and shard.get("run_id"):
                variables = shard.get("variables") or {}
                index[str(shard["run_id"])] = {"sweep_id": record.get("sweep_id") or path.stem,
                                               "shard": ", ".join(f"{k}={v}" for k, v in variables.items())}
    if signature is not None:
        _SWEEPS[str(folder)] = (signature, index)
    return index


def run_list(project_root: Path) -> dict[str, Any]:
    """The project's runs, newest first, with their sweep and the live totals the status bar shows.

    While the runs folder and the sweeps folder are unchanged and every listed run has finished for good,
    the panel's poll gets the last answer again: two `stat`s, however many runs there are."""
    index, folder = store.run_index(project_root), store.runs_root(project_root)
    signature = (index.signature, _signature(folder / SWEEPS_DIR))
    cached = _LISTS.get(str(project_root))
    if cached is not None and cached[0] == signature:
        return cached[1]
    sweeps = sweep_index(project_root, signature[1])
    rows, final = [], True
    for run_id in index.newest_first[:MAX_RUNS]:
        run_dir = folder / run_id
        row = run_row(run_dir)
        row.update(sweeps.get(run_id, {}))
        rows.append(row)
        final = final and not row["live"] and store.summary_settled(run_dir)
    store.link_reproductions(rows)
    live = [r for r in rows if r["live"]]
    per_hour = sum(_number(r.get("price_per_hour_usd")) or 0.0 for r in live)
    answer = {
        "project_root": str(project_root),
        "runs": rows,
        "live_count": len(live),
        "live_usd_per_hour": per_hour,
    }
    sweeps_signature = signature[1]
    if final and store.quiet_since(index.signature[0]) and (sweeps_signature is None
                                                            or store.quiet_since(sweeps_signature[0])):
        _LISTS[str(project_root)] = (signature, answer)
    else:
        _LISTS.pop(str(project_root), None)
    return answer


def detail_html(row: dict[str, Any], manifest: dict[str, Any] | None, status: dict[str, Any] | None,
                run_dir: Path) -> str:
    """The panel's formatted detail: the cell's summary line, failover attempts and notes, folded manifest."""
    data = manifest or {**(status or {}), **row}
    summary = render.summary_html(data, elapsed=None if manifest else row.get("elapsed_sec"),
                                  cost=None if manifest else row.get("cost_usd"))
    attempts, notes = render.journal_extras(run_dir)
    parts = [summary, "<div class='pm-charts'></div>", render.attempts_html(attempts), render.notes_html(render.without_error(notes, manifest), 8)]
    if manifest:
        if manifest.get("error"):
            parts.append(f"<div class='pm-error'>{html.escape(str(manifest['error']))}</div>")
        parts.append(f"<details class='pm-manifest-box'><summary>manifest ({len(render.rows(manifest))} fields)"
                     f"</summary>{render.manifest_table_html(manifest)}</details>")
    else:
        live = {k: row.get(k) for k in ("state", "phase", "backend", "gpu_id", "price_per_hour_usd", "started_at_utc")
                if row.get(k) is not None}
        parts.append(f"<div class='pm-live-status'>{html.escape(' · '.join(f'{k} {render.fmt(v)}' for k, v in live.items()))}</div>")
    return "".join(p for p in parts if p)


def run_detail(run_dir: Path) -> dict[str, Any]:
    """One run: its row, raw status and manifest (None until the run ends), and the detail as HTML."""
    row = run_row(run_dir)
    status = store.RunDir(run_dir).status()
    manifest = store.RunDir(run_dir).manifest()
    return {"run": row, "status": status, "manifest": manifest, "html": detail_html(row, manifest, status, run_dir),
            "path": str(run_dir)}


def log_tail(run_dir: Path, lines: int = 200) -> dict[str, Any]:
    """The last `lines` lines of run.log (a `\\r` progress line shows its last state): plain, and as HTML with colours."""
    found = store.RunDir(run_dir).log_tail(lines)
    return {"run_id": run_dir.name, "size": found.size, "lines": [ansi.strip(line) for line in found.lines],
            "html": ansi.to_html(found.text.rstrip("\n")), "truncated": found.truncated}
