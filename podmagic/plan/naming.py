"""Where runs live and how names become path components. Pure: imports only the standard library."""

from __future__ import annotations

import re
from pathlib import Path

RUNS_SUBDIR = Path("artifacts") / "runpod"
"""Run directories live under `<project_root>/artifacts/runpod/` (runpod-deploy's place)."""
RUN_LOG = "run.log"
"""The job's log in the run directory, where the plan's log pull lands (`store.RunDir.LOG`)."""


def slug(text: str) -> str:
    """A name safe as a path component and a pod name."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return cleaned[:80] or "run"
