"""Following a run from its run directory, as events (for detach, attach, sweeps).

A `Follower` thread turns the files a runner writes (`run.log` by byte
offset, `status.json`, the manifest) into the same events the runner emits,
so one run view serves in-process and detached runs alike. `wait` blocks
until the manifest exists.
"""

from __future__ import annotations

import codecs
import threading
import time
from pathlib import Path
from typing import Callable

from podmagic.errors import PodmagicError
from podmagic.run import store
from podmagic.run.events import Event

INTERVAL = 0.25


class Follower(threading.Thread):
    def __init__(self, run_dir: Path, listener: Callable[[Event], None], interval: float = INTERVAL,
                 from_start: bool = True):
        super().__init__(daemon=True, name=f"podmagic-follow-{run_dir.name}")
        self.run_dir, self.listener, self.interval = run_dir, listener, interval
        self.rundir = store.RunDir(run_dir)
        self.offset = 0 if from_start else _size(self.rundir.log_path)
        self.phase: str | None = None
        self.manifest: dict | None = None
        self.done = threading.Event()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def run(self) -> None:
        while not self.done.is_set():
            self.poll()
            if self.manifest is not None:
                self.done.set()
                break
            time.sleep(self.interval)

    def poll(self) -> None:
        status = self.rundir.status() or {}
        phase = status.get("phase")
        if phase and phase != self.phase and phase != "teardown":
            self.phase = phase
            self.listener(Event("phase_started", {"phase": phase}))
        if status.get("price_per_hour_usd") is not None:
            self.listener(Event("pod_provisioned", {"price_per_hour_usd": status["price_per_hour_usd"]}))
        self._read_log()
        manifest = self.rundir.manifest()
        if manifest is not None:
            self._read_log()
            self.manifest = manifest
            self.listener(Event("run_finished", {"failed": manifest.get("failed"),
                                                 "interrupted": manifest.get("interrupted"),
                                                 "exit_code": manifest.get("exit_code"),
                                                 "error": manifest.get("error")}))
        else:
            self.listener(Event("tick", {}))

    def _read_log(self) -> None:
        try:
            with open(self.rundir.log_path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return
        if data:
            self.offset += len(data)
            text = self._decoder.decode(data)
            if text:
                self.listener(Event("output", {"text": text, "phase": "run"}))

    def stop(self) -> None:
        self.done.set()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def wait(run_dir: Path, timeout: float | None = None, interval: float = INTERVAL) -> dict:
    """Block until the run's manifest exists; returns it."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        manifest = store.RunDir(run_dir).manifest()
        if manifest is not None:
            return manifest
        summary = store.run_summary(run_dir)
        if summary.get("state") == "lost":
            raise PodmagicError(f"run {run_dir.name} lost its runner (its process is gone and it has no manifest); "
                               f"see {store.RunDir.RUNNER_LOG} in the run directory")
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"run {run_dir.name} still running after {timeout}s")
        time.sleep(interval)
