"""runpod-deploy's forensic readers as text: `events`, `events-query`, `manifest-summary`, `ls-runs`.

Pure functions over run directories, manifests and `events.jsonl` records (read through
`run.store` / `run.events`); the CLI and the magics print what they return. May import
`run` (store, events, history, manifest); nothing here touches a backend.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from podmagic.errors import PodmagicError, RunNotFound
from podmagic.run import history, store
from podmagic.run.events import read_events

EVENTS = "events.jsonl"


def parse_ts(stamp: Any) -> float | None:
    """An event's `ts_utc` (ISO, `Z` or an offset) as a UNIX time; None when unreadable."""
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _offset(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"+{hours}:{minutes:02d}:{secs:02d}" if hours else f"+{minutes}:{secs:02d}"


def _fields(event: dict[str, Any], skip: Iterable[str] = ("ts_utc", "event")) -> str:
    skip = set(skip)
    return " ".join(f"{k}={_short(v)}" for k, v in event.items() if k not in skip and v is not None and v != "")


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    first = text.splitlines()[0] if text else ""
    return first[:200] + ("…" if len(first) > 200 or "\n" in text else "")


def timeline(events: list[dict[str, Any]]) -> str:
    """`[+M:SS] event k=v ...` lines, offsets from the first event (runpod-deploy's `events`)."""
    stamps = [parse_ts(e.get("ts_utc")) for e in events]
    start = next((s for s in stamps if s is not None), None)
    lines = []
    for event, ts in zip(events, stamps):
        where = _offset(ts - start) if ts is not None and start is not None else "+?:??"
        rest = _fields(event)
        lines.append(f"[{where}] {event.get('event', '?')}" + (f" {rest}" if rest else ""))
    return "\n".join(lines)


def resolve_run(project_root: Path, ref: str) -> Path:
    """A run id, unique prefix, run directory or manifest path → the run directory."""
    path = Path(ref).expanduser()
    if path.is_file():
        return path.resolve().parent
    if path.is_dir() and ((path / store.MANIFEST).exists() or (path / EVENTS).exists()
                          or (path / store.STATUS).exists()):
        return path.resolve()
    return store.find_run(project_root, ref)


def _since(text: str | None) -> float | None:
    return history.parse_since(text) if text else None


def parse_filters(items: Iterable[str]) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PodmagicError(f"--filter expects KEY=VALUE (e.g. event=pod_killed_unexpected), got {item!r}")
        out.append((key, value))
    return out


def _matches(event: dict[str, Any], filters: list[tuple[str, str]]) -> bool:
    for key, want in filters:
        got = event.get(key)
        text = got if isinstance(got, str) else json.dumps(got) if got is not None else None
        if text != want and str(got) != want:
            return False
    return True


def query(root: Path, filters: list[tuple[str, str]], since: str | None = None) -> Iterator[dict[str, Any]]:
    """Every event under `root` (recursively) matching all filters, each with its `run_dir` added."""
    cutoff = _since(since)
    if not root.is_dir():
        raise RunNotFound(f"no run directories under {root} (give --root or --project-root)")
    for path in sorted(root.rglob(EVENTS)):
        for event in read_events(path):
            ts = parse_ts(event.get("ts_utc"))
            if cutoff is not None and (ts is None or ts < cutoff):
                continue
            if _matches(event, filters):
                yield {**event, "run_dir": str(path.parent)}


def query_text(events: Iterable[dict[str, Any]]) -> str:
    lines = [f"[{e.get('ts_utc')}] {Path(e['run_dir']).name} {e.get('event', '?')} "
             f"{_fields(e, ('ts_utc', 'event', 'run_dir'))}".rstrip() for e in events]
    return "\n".join(lines)


def _money(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    return f"${value:.4f}" if 0 < value < 0.01 else f"${value:.2f}"


def summary(manifest: dict[str, Any], path: Path | None = None) -> str:
    """runpod-deploy's `manifest-summary` block for one manifest."""
    price = manifest.get("gpu_price_per_hour_usd")
    lines = [f"== {path} ==" if path else None,
             f"job:           {manifest.get('job_name')}",
             f"run_id:        {manifest.get('run_id')}",
             f"failed:        {manifest.get('failed')}",
             f"schema:        {manifest.get('schema_version')}",
             f"backend:       {manifest.get('backend')}" if manifest.get("backend") else None,
             f"pod_id:        {manifest.get('pod_id')}",
             f"gpu:           {manifest.get('gpu_id')}",
             f"datacenter:    {manifest.get('datacenter_id')}",
             f"image:         {manifest.get('image')}",
             f"storage:       {manifest.get('storage_mode')}",
             f"wall_time_sec: {manifest.get('wall_time_sec')}",
             f"price_usd/hr:  {price} ({manifest.get('gpu_price_source')})" if price is not None
             else "price_usd/hr:  -",
             f"est_cost_usd:  {manifest.get('estimated_cost_usd')}",
             f"cost_cap_usd:  {manifest.get('cost_cap_usd')}",
             f"final_state:   {manifest.get('pod_final_state')}",
             f"python:        {manifest.get('python_resolved')}" if manifest.get("python_resolved") else None,
             f"exit_code:     {manifest.get('exit_code')}" if "exit_code" in manifest else None]
    error = manifest.get("error")
    if error:
        lines.append(f"error:         {str(error).splitlines()[0]}")
    meta = manifest.get("deploy_metadata") or {}
    if meta:
        lines.append("deploy_metadata:")
        lines += [f"  {k}: {v}" for k, v in meta.items() if v is not None]
    arts = manifest.get("artifacts") or []
    if arts:
        lines.append("artifacts:")
        lines += [f"  - {a.get('label')}: status={a.get('status')} duration_sec={a.get('duration_sec')}"
                  for a in arts]
    files = manifest.get("telemetry_files") or []
    if files:
        lines.append("telemetry_files:")
        lines += [f"  - {f}" for f in files]
    return "\n".join(line for line in lines if line is not None)


def manifests_under(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted(root.rglob(store.MANIFEST)) if root.is_dir() else []:
        manifest = store.read_json(path)
        if manifest is not None:
            found.append((path, manifest))
    return found


def totals(manifests: list[dict[str, Any]]) -> str:
    wall = sum(float(m.get("wall_time_sec") or 0) for m in manifests)
    cost = sum(float(m.get("estimated_cost_usd") or 0) for m in manifests)
    failed = sum(1 for m in manifests if m.get("failed"))
    return "\n".join(["== TOTALS ==", f"manifests:        {len(manifests)}", f"failed:           {failed}",
                      f"wall_time_sec:    {wall:.1f}", f"estimated_cost:   ${cost:.2f}"])


LS_COLUMNS = (("timestamp", "timestamp"), ("job", "job"), ("pod_id", "pod_id"), ("gpu", "gpu"), ("dc", "dc"),
              ("wall_s", "wall_s"), ("failed", "failed"), ("est", "est_$"))


def ls_rows(project_root: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """runpod-deploy's `ls-runs`: one row per finished run (newest first), from the manifests."""
    rows = []
    for run_dir in store.iter_run_dirs(project_root):
        manifest = store.read_json(run_dir / store.MANIFEST)
        if manifest is None:
            continue
        wall = manifest.get("wall_time_sec")
        rows.append({"timestamp": manifest.get("started_at_utc") or manifest.get("pulled_at_utc"),
                     "run_id": manifest.get("run_id"), "run_dir": str(run_dir),
                     "job": manifest.get("job_name"), "pod_id": manifest.get("pod_id"),
                     "gpu": manifest.get("gpu_id"), "dc": manifest.get("datacenter_id"),
                     "wall_s": None if wall is None else int(round(float(wall))),
                     "failed": "Y" if manifest.get("failed") else "N",
                     "est": _money(manifest.get("estimated_cost_usd")),
                     "estimated_cost_usd": manifest.get("estimated_cost_usd")})
        if limit and len(rows) >= limit:
            break
    return rows

