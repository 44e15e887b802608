"""Typed run events and the journal that writes them to `events.jsonl`.

The runner emits events; front ends (run view, CLI printer) and the journal
consume them. Output chunks, ticks and metric rows are not journaled: the log and
the metric files are on disk. Event names follow runpod-deploy's where they exist
(`gpu_selected`, `datacenter_failover`, `artifact_pull_*`, ...).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from podmagic.records import field, record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NOT_JOURNALED = frozenset({"output", "tick", "metrics"})
"""`metrics` rows are in metrics.jsonl / user_metrics.jsonl already."""


@record
class Event:
    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


Listener = Callable[[Event], None]


def utc_iso(ts: float | None = None) -> str:
    """`2026-12-03T09:25:18Z` (by `time`: `datetime` is 2 ms of a command line's start)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if ts is None else ts))


class Journal:
    """Appends journaled events to `events.jsonl`, one JSON object a line, each written out at once.

    The file is opened at the first event and kept open until `close` (a run journals a few dozen)."""

    def __init__(self, path: Path, redact: Callable[[str], str] = lambda s: s):
        self._path = path
        self._redact = redact
        self._lock = threading.Lock()
        self._fh = None

    def __call__(self, event: Event) -> None:
        if event.kind in NOT_JOURNALED:
            return
        record = {"ts_utc": utc_iso(event.ts), "event": event.kind, **event.data}
        line = self._redact(json.dumps(record, default=str)) + "\n"
        with self._lock:
            try:
                if self._fh is None:
                    self._fh = self._path.open("a", encoding="utf-8")
                self._fh.write(line)
                self._fh.flush()
            except OSError:
                self._drop()  # a full disk: this event is lost (the runner goes on), the next opens the file again
                raise

    def close(self) -> None:
        """Never raises: the run's end (its manifest, its error) must not wait on a journal a full disk broke."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            try:
                fh.close()
            except OSError:
                pass  # the file is closed all the same; what it held back is lost

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_events(path: Path) -> list[dict[str, Any]]:
    """All well-formed events of a journal (a torn last line is skipped)."""
    events = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events
