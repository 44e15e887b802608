"""A cache of the interpreter probe's answer, for pods that can say when nothing changed.

The probe (`uv python find` then the interpreter itself, ≈40 ms of CPU) asks which Python the
project resolves to. A pod that offers `probe_key()` names everything on its side the answer can
depend on (PATH, uv's settings, the state of uv's interpreter store); the runner adds its own
side (setup and preflight commands, the pin, the probe command and workdir, the staged
`.python-version` / `pyproject.toml`). With the same key, and the answer's interpreter still
there and not inside a pod of its own (`pod.stable_path`), the answer is reused: a sweep's shards
probe once, a repeated CLI run not at all. Pods that cannot tell (ssh, runpod) always probe.

The same store keeps the telemetry start capture's pod environment (uname, python3, uv, the
freeze), which depends on the same things: looked up before the launch (`recall`) and kept once
the launcher's capture is read (`keep`). Kept in `<runs root>/.probe-cache.json`,
entries a day at most. Imports: `run.store`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from podmagic.digest import sha256
from podmagic.run import store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FILE = ".probe-cache.json"
MAX_AGE_SEC = 86400.0
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def key_of(parts: object) -> str:
    return sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def pin_files(sources: list[Path]) -> list[str]:
    """Digests of the pin-bearing files at the top of each staged folder."""
    out = []
    for source in sources:
        for name in (".python-version", "pyproject.toml", "uv.lock"):
            path = Path(source) / name
            if path.is_file():
                out.append(f"{source}/{name}:{sha256(path.read_bytes()).hexdigest()}")
    return out


def cached(project_root: Path, key: str, valid: Callable[[str], bool],
           compute: Callable[[], tuple[str, str] | None]) -> tuple[str, str] | None:
    """(version, path) for `key`: the cached answer when `valid(path)`, else `compute()` (stored once)."""
    answer = remember(project_root, "probe:" + key, lambda: compute(), lambda v: bool(v) and valid(v[1]))
    return tuple(answer) if answer else None


def remember(project_root: Path, key: str, compute: Callable[[], Any], valid: Callable[[Any], bool] = bool) -> Any:
    """The stored value for `key` when `valid(value)`, else `compute()`, stored when valid. Callers in one
    process with the same key wait for the first one's answer (a sweep's shards start together)."""
    with _guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        hit = recall(project_root, key, valid)
        if hit is not None:
            return hit
        value = compute()
        if valid(value):
            keep(project_root, key, value)
        return value


def recall(project_root: Path, key: str, valid: Callable[[Any], bool] = bool) -> Any:
    """The stored value for `key` while fresh and `valid(value)`, else None."""
    hit = (store.read_json(store.runs_root(project_root) / FILE) or {}).get(key)
    if isinstance(hit, dict) and time.time() - hit.get("at", 0) < MAX_AGE_SEC and valid(hit.get("value")):
        return hit["value"]
    return None


def keep(project_root: Path, key: str, value: Any) -> None:
    """Store `value` for `key` (entries past their age are dropped on the way)."""
    with _guard:
        path = store.runs_root(project_root) / FILE
        entries = {k: v for k, v in (store.read_json(path) or {}).items()
                   if isinstance(v, dict) and time.time() - v.get("at", 0) < MAX_AGE_SEC}
        entries[key] = {"value": value, "at": time.time()}
        path.parent.mkdir(parents=True, exist_ok=True)
        store.write_json_atomic(path, entries)
