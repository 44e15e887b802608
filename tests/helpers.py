"""Small helpers shared by the tests (run a spec on the local backend and collect events)."""

from __future__ import annotations

from pathlib import Path

from podmagic import api


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
