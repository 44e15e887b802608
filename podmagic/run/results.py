"""A finished (or running) run as a Python object: what `%%pod -o NAME` binds.

    result.wait()            blocks until the run ends; returns the Run itself
    result.manifest          the manifest dict (waits for the run to end)
    result.run_dir, result.log_path, result.log()
    result.json("metrics")   an artifact parsed as JSON
    result.path("metrics")   an artifact's local path
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from podmagic.errors import PodmagicError, RunNotFound
from podmagic.run import follow, store


class Run:
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self._manifest: dict | None = None

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    @property
    def done(self) -> bool:
        return (self.run_dir / store.MANIFEST).exists()

    def wait(self, timeout: float | None = None) -> "Run":
        """Block until the run ends; returns this Run (as `%pod wait` does), its manifest loaded."""
        self._manifest = follow.wait(self.run_dir, timeout)
        return self

    @property
    def manifest(self) -> dict:
        if self._manifest is None:
            self.wait()
        return self._manifest

    @property
    def failed(self) -> bool:
        return bool(self.manifest.get("failed"))

    @property
    def log_path(self) -> Path:
        return store.RunDir(self.run_dir).log_path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def path(self, label: str) -> Path:
        for art in self.manifest.get("artifacts") or []:
            if art.get("label") == label:
                local = Path(art["local_path"])
                name = Path(art["remote_path"].rstrip("/")).name
                if local.is_dir() and not art["remote_path"].endswith("/") and (local / name).exists():
                    return local / name
                return local
        labels = [a.get("label") for a in self.manifest.get("artifacts") or []]
        raise RunNotFound(f"run {self.run_id} has no artifact {label!r}; it has {labels}")

    def json(self, label: str) -> Any:
        path = self.path(label)
        if path.is_dir():
            files = sorted(path.glob("*.json"))
            if len(files) != 1:
                raise PodmagicError(f"artifact {label!r} is a folder with {len(files)} JSON files; use .path()")
            path = files[0]
        return json.loads(path.read_text())

    def __repr__(self) -> str:
        state = store.run_summary(self.run_dir).get("state")
        return f"<podmagic Run {self.run_id} {state}>"
