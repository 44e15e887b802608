"""What the endpoints return: plain dicts built from `podmagic.run.store`."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from podmagic.run import store

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
    row.update(live=live, elapsed_sec=elapsed, cost_usd=cost, stop_requested=store.RunDir(run_dir).stop_requested())
    return row


def run_list(project_root: Path) -> dict[str, Any]:
    """The project's runs, newest first, with the live totals the status bar shows."""
    rows = [run_row(d) for _, d in zip(range(MAX_RUNS), store.iter_run_dirs(project_root))]
    live = [r for r in rows if r["live"]]
    per_hour = sum(_number(r.get("price_per_hour_usd")) or 0.0 for r in live)
    return {
        "project_root": str(project_root),
        "runs": rows,
        "live_count": len(live),
        "live_usd_per_hour": per_hour,
    }


def run_detail(run_dir: Path) -> dict[str, Any]:
    """One run: its row, raw status and manifest (None until the run ends)."""
    return {
        "run": run_row(run_dir),
        "status": store.RunDir(run_dir).status(),
        "manifest": store.RunDir(run_dir).manifest(),
    }


def log_tail(run_dir: Path, lines: int = 200) -> dict[str, Any]:
    """The last `lines` lines of run.log; a `\\r` progress line shows its last state."""
    found = store.RunDir(run_dir).log_tail(lines)
    return {"run_id": run_dir.name, "size": found.size, "lines": list(found.lines), "truncated": found.truncated}
