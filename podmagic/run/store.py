"""The run store: run directories under `<project_root>/artifacts/runpod/`.

A run directory holds, by name:
  spec.yaml     the cell or file text exactly as submitted
  plan.txt      the plan as `--dry-run` prints it
  pod.json      the pod handle, written before any wait (for cleanup)
  status.json   live state: phase, state, started/updated times, owner pid
  run.log       the job's log (streamed while it runs, then the pulled copy)
  events.jsonl  the journal
  stop          present when someone (panel, CLI) asked the run to stop
  runpod_deploy_pull_manifest.json   the manifest, on every exit path

Everything here is plain files written atomically, so the CLI, the magics and
the Jupyter server extension can all read a run while another process
writes it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator
from podmagic.errors import RunNotFound
from podmagic.plan.naming import RUNS_SUBDIR, slug  # noqa: F401 - re-exported for the store's users

MANIFEST = "runpod_deploy_pull_manifest.json"
STATUS = "status.json"
STOP = "stop"
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
LIVE_STATES = frozenset({"starting", "running"})


def runs_root(project_root: Path) -> Path:
    return Path(project_root) / RUNS_SUBDIR


def new_run_id(prefix: str, now: float | None = None) -> str:
    """`<prefix>-<UTC stamp>-<4 hex>`: unique even for runs in the same second."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return f"{slug(prefix)}-{stamp}-{secrets.token_hex(2)}"


def create_run_dir(project_root: Path, prefix: str) -> tuple[str, Path]:
    """Make a fresh run directory; `mkdir` without exist_ok makes it race-free."""
    root = runs_root(project_root)
    root.mkdir(parents=True, exist_ok=True)
    while True:
        run_id = new_run_id(prefix)
        try:
            (root / run_id).mkdir()
            return run_id, root / run_id
        except FileExistsError:
            continue


def write_json_atomic(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    write_text_atomic(path, text)


def write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, NotADirectoryError):
        return None


def iter_run_dirs(project_root: Path) -> Iterator[Path]:
    """Run directories, newest first."""
    root = runs_root(project_root)
    if not root.is_dir():
        return iter(())
    dirs = [p for p in root.iterdir() if p.is_dir() and RUN_ID_RE.match(p.name)]
    dirs.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return iter(dirs)


def find_run(project_root: Path, ref: str) -> Path:
    """A run directory by id, unique id prefix, or path."""
    as_path = Path(ref).expanduser()
    if as_path.is_dir() and ((as_path / STATUS).exists() or (as_path / MANIFEST).exists()):
        return as_path.resolve()
    if not RUN_ID_RE.match(ref):
        raise RunNotFound(f"not a run id: {ref!r}")
    root = runs_root(project_root)
    if (root / ref).is_dir():
        return root / ref
    matches = [p for p in iter_run_dirs(project_root) if p.name.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunNotFound(f"no run {ref!r} under {root}")
    raise RunNotFound(f"{ref!r} matches {len(matches)} runs: " + ", ".join(p.name for p in matches[:5]))


def run_summary(run_dir: Path) -> dict[str, Any]:
    """One row for listings: the manifest when present, else the live status."""
    manifest = read_json(run_dir / MANIFEST)
    status = read_json(run_dir / STATUS) or {}
    row = {"run_id": run_dir.name, **status}
    if manifest:
        row.update(
            job_name=manifest.get("job_name"),
            backend=manifest.get("backend"),
            state="interrupted" if manifest.get("interrupted") else ("failed" if manifest.get("failed") else "succeeded"),
            gpu_id=manifest.get("gpu_id"),
            exit_code=manifest.get("exit_code"),
            wall_time_sec=manifest.get("wall_time_sec"),
            estimated_cost_usd=manifest.get("estimated_cost_usd"),
            python_resolved=manifest.get("python_resolved"),
            started_at_utc=manifest.get("started_at_utc"),
            ended_at_utc=manifest.get("ended_at_utc"),
        )
    elif row.get("state") in LIVE_STATES and not owner_alive(status):
        row["state"] = "lost"
    return row


def owner_alive(status: dict[str, Any]) -> bool:
    """Whether the process that runs this run is still alive (same host only)."""
    pid = status.get("owner_pid")
    if not isinstance(pid, int):
        return False
    if status.get("owner_host") not in (None, os.uname().nodename):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def request_stop(run_dir: Path, reason: str = "stop requested") -> None:
    write_text_atomic(run_dir / STOP, reason + "\n")


def stop_requested(run_dir: Path) -> bool:
    return (run_dir / STOP).exists()
