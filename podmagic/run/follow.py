"""Following a log by byte offset: the runner's copy of the pod log, and runs followed from their directory.

`LogCopy` is the runner's one copy of the pod's log: bytes arrive by offset
(while the job streams, then at teardown from the same offset), pass one
incremental decoder and one stream masker, are appended to `run.log`, and
the run's markers are matched as they stream, so each byte is read, decoded
and masked once and memory stays flat however large the log.

A `Follower` thread turns the files a runner writes (`run.log` by byte
offset, in bounded reads, `status.json`, the manifest) into the same events
the runner emits, so one run view serves in-process and detached runs alike.
`wait` blocks until the manifest exists.

Imports: `run.store`, `run.events`, `run.redact`, `errors`.
"""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from podmagic.errors import PodmagicError
from podmagic.run import store
from podmagic.run.events import Event
from podmagic.run.redact import StreamMasker

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO

INTERVAL = 0.25
READ_LIMIT = 1 << 20
"""Largest catch-up read, in bytes: a follower far behind reads many bounded chunks, never one huge one."""


class LogCopy:
    """The pod log copied once into the file `open_log()` appends to: by offset, decoded and masked as
    one stream, markers matched."""

    def __init__(self, open_log: Callable[[], IO[str]], masker: StreamMasker, markers: Iterable[str] = ()):
        self._open_log = open_log
        self.offset = 0
        """Bytes of the pod's log consumed so far: where the next read starts."""
        self.found: set[str] = set()
        self._markers = tuple(m for m in markers if m)
        self._keep = max((len(m) for m in self._markers), default=1) - 1
        self._carry = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._masker = masker
        self._fh = None
        self.finished = False

    def open(self) -> "LogCopy":
        """Create the file (empty until the job prints)."""
        if self._fh is None:
            self._fh = self._open_log()
        return self

    def feed(self, data: bytes) -> str:
        """Consume the next bytes of the pod log; returns the masked text written."""
        self.offset += len(data)
        return self._write(self._masker.feed(self._decoder.decode(data)))

    def finish(self) -> str:
        """Flush what the decoder and masker held back and close the file (once)."""
        if self.finished:
            return ""
        self.finished = True
        try:
            return self._write(self._masker.feed(self._decoder.decode(b"", final=True), final=True))
        finally:
            if self._fh is not None:
                self._fh.close()

    def _write(self, text: str) -> str:
        if not text:
            return text
        self.open()._fh.write(text)
        self._fh.flush()
        if self._markers and len(self.found) < len(self._markers):
            edge = self._carry + text[:self._keep]  # a marker split across two chunks
            self.found.update(m for m in self._markers if m not in self.found and (m in text or m in edge))
            self._carry = (self._carry + text)[-self._keep:] if len(text) < self._keep else \
                (text[-self._keep:] if self._keep else "")
        return text


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
                while data := fh.read(READ_LIMIT):
                    self.offset += len(data)
                    text = self._decoder.decode(data)
                    if text:
                        self.listener(Event("output", {"text": text, "phase": "run"}))
        except FileNotFoundError:
            return

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
