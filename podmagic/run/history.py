"""Reading past runs: filtered listings and log tails (CLI and magics)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from podmagic.errors import PodmagicError
from podmagic.run import store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_SINCE = re.compile(r"^(\d+)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> float:
    """`30m`, `2h`, `7d` → a UNIX time that far back."""
    match = _SINCE.match(text.strip())
    if not match:
        raise PodmagicError(f"--since expects a duration like 30m, 2h or 7d, got {text!r}")
    return time.time() - int(match.group(1)) * _UNIT[match.group(2)]


def _started(row: dict[str, Any]) -> float | None:
    stamp = row.get("started_at_utc")
    if not stamp:
        return None
    # imported only where runs are listed: a run's start does not pay for it
    from datetime import datetime, timezone

    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


def list_runs(project_root: Path, *, name: str | None = None, failed: bool = False,
              since: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    cutoff = parse_since(since) if since else None
    out = []
    for run_dir in store.iter_run_dirs(project_root):
        row = store.run_summary(run_dir)
        if name and name not in (row.get("job_name") or "") and name not in row["run_id"]:
            continue
        if failed and row.get("state") not in ("failed", "interrupted", "lost"):
            continue
        started = _started(row)
        if cutoff and (started is None or started < cutoff):
            continue
        out.append(row)
        if limit and len(out) >= limit:
            break
    return store.link_reproductions(out)


def log_tail(run_dir: Path, lines: int = 200) -> str:
    return store.RunDir(run_dir).log_tail(lines).text


def manifests(project_root: Path, refs: list[str]) -> list[dict[str, Any]]:
    """Manifests of runs named by id, unique prefix or sweep id (finished runs only)."""
    from podmagic.run import sweep

    dirs: list[Path] = []
    for ref in refs:
        dirs.extend(sweep.load(project_root, ref) if ref.startswith("sweep-") else [store.find_run(project_root, ref)])
    found = [m for m in (store.RunDir(d).manifest() for d in dirs) if m]
    if len(found) < 2:
        raise PodmagicError("compare needs at least two finished runs (or a sweep id)")
    return found
