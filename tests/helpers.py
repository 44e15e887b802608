"""Small helpers shared by the tests (run a spec on the local backend and collect events)."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from podmagic.run import api


class Recorder:
    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append(event)

    def kinds(self):
        return [e.kind for e in self.events if e.kind not in ("tick", "output")]

    def output(self):
        return "".join(e.data["text"] for e in self.events if e.kind == "output")


def run_spec(text: str, project: Path, *, listeners=(), **kw):
    rec = Recorder()
    prepared = api.start(api.prepare(text, cwd=project, **kw))
    manifest = api.execute(prepared, listeners=[rec, *listeners])
    return manifest, prepared.plan, rec


def git_project(root: Path, files: dict[str, str]) -> Path:
    """A committed git project holding `files` (name → text)."""
    import subprocess

    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text)
    git = ["git", "-C", str(root), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    return root


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str):
    """A tmpfs of `size` mounted at `path`, a full disk in the making (we are root here; where mounting
    is not allowed the test skips and says so)."""
    path.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                         text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip()}); the full-disk tests need one")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
