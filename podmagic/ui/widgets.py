"""The live run view (ipywidgets), fed by runner events, and the cell blocks that end as static HTML.

Imports ipywidgets, IPython.display, `podmagic.run.events` and `podmagic.ui`.

Within Jupyter's limits (about 1 MB/s and 1000 messages/s on iopub): events
go into a bounded `LogTail` and the widgets are re-rendered at most every
`FLUSH_SEC`, never once per line. The full log is on disk in the run
directory.

The log box is a terminal: it is laid out bottom-up (`flex-direction:
column-reverse`), so the browser keeps it at the newest line while the user has
not scrolled up, and leaves it where the user put it otherwise; the
labextension adds a "newest" button to come back. ANSI colours are rendered,
`\\r` rewrites the line, the phases are one stepper line.

`Block` is one output of a cell: the live widget while something runs, then,
from whichever thread ends it, static HTML in the same place (a display id
update sent with the cell's own parent header), so a saved notebook, nbconvert
and GitHub show the record and no widget.
"""

from __future__ import annotations

import contextlib
import html
import threading
import time
from pathlib import Path
from typing import Any, Callable

import ipywidgets as w
from IPython import get_ipython
from IPython.display import HTML, display, update_display

from podmagic.run.events import Event
from podmagic.run.store import status_word
from podmagic.ui import ansi, charts, render
from podmagic.ui.logtail import LogTail

FLUSH_SEC = 0.25
LOG_LAYOUT = dict(max_height="22em", overflow="auto", display="flex", flex_flow="column-reverse")
BLOCKS: dict[str, "Block"] = {}
"""Blocks by run or sweep id (so `%pod wait` can end a detached run's block too)."""


# ----------------------------------------------------------------- cell blocks


def current_parent() -> dict | None:
    """The request this thread's output belongs to (the executing cell, or a widget's comm message)."""
    shell = get_ipython()
    getter = getattr(shell, "get_parent", None)
    return getter() if getter else None


def parent_kind(parent: dict | None) -> str:
    header = (parent or {}).get("header", parent or {})
    return str(header.get("msg_type") or "")


@contextlib.contextmanager
def output_to(parent: dict | None):
    """Send this thread's output to `parent`'s cell (ipykernel 7 routes thread output only when told)."""
    shell = get_ipython()
    setter = getattr(shell, "set_thread_parent", None)
    tokens = setter(parent) if parent and setter else None
    try:
        yield
    finally:
        if tokens is not None:
            shell.reset_thread_parent(tokens)


class Block:
    """A cell output that is a live widget until `end` makes it static HTML."""

    def __init__(self, widget: w.Widget, key: str, parent: dict | None = None):
        self.widget, self.key = widget, key
        self.display_id = f"podmagic-{key}-{id(self):x}"
        self.parent = parent or current_parent()
        self.ended = False
        self._lock = threading.Lock()
        with output_to(self.parent):
            display(widget, display_id=self.display_id)
        BLOCKS[key] = self

    def end(self, html_text: str, close: tuple[w.Widget, ...] = ()) -> None:
        """Replace the widget by `html_text` and close the widgets; callable from any thread or cell."""
        with self._lock:
            self.ended = True
            with output_to(self.parent):
                update_display(HTML(html_text), display_id=self.display_id)
            here = current_parent()
            if parent_kind(here) == "execute_request" and _msg_id(here) != _msg_id(self.parent):
                # A headless client (nbclient) applies display updates only from the cell it is executing.
                update_display(HTML(html_text), display_id=self.display_id)
        for widget in close or (self.widget,):
            close_all(widget)


def _msg_id(parent: dict | None) -> str:
    header = (parent or {}).get("header", parent or {})
    return str(header.get("msg_id") or "")


def close_all(widget: w.Widget) -> None:
    """Close a widget and its children (their comms too)."""
    for child in getattr(widget, "children", ()):
        close_all(child)
    with contextlib.suppress(Exception):
        widget.close()


# ----------------------------------------------------------------- the run view


def stepper_html(phases: list[str], state: str) -> str:
    """`provision ✓ · setup ✓ · run ●` (the last phase ● while running, ✓ or ✗ at the end)."""
    if not phases:
        return ""
    marks = []
    for i, phase in enumerate(phases):
        last = i == len(phases) - 1
        if not last or state == "succeeded":
            mark, color = "✓", render.COLORS["succeeded"]
        elif state in ("running", "starting"):
            mark, color = "●", render.COLORS["running"]
        else:
            mark, color = "✗", render.COLORS.get(state, render.COLORS["failed"])
        weight = "font-weight:bold;" if last else ""
        marks.append(f"<span style='{weight}'>{html.escape(phase)} <span style='color:{color}'>{mark}</span></span>")
    return "<div class='podmagic-stepper'>" + " · ".join(marks) + "</div>"


class RunView:
    def __init__(self, run_id: str, job_name: str, backend: str, on_stop: Callable[[], None] | None = None,
                 run_dir: Path | None = None, cost_cap: float | None = None):
        self.run_id, self.job_name, self.backend = run_id, job_name, backend
        self.run_dir, self.cost_cap = run_dir, cost_cap
        self.phase, self.state = "starting", "running"
        self.phases: list[str] = []
        self.started = time.time()
        self.price: float | None = None
        self.tail = LogTail()
        self.attempts: dict[tuple[str, str], tuple[str, str]] = {}
        self.notes: list[str] = []
        self._dirty, self._last_flush = False, 0.0
        self._lock = threading.Lock()
        self.header = w.HTML()
        self.charts = w.HTML()
        """The live charts slot (telemetry sets `charts.value`; `final_html` keeps it)."""
        self._live_charts = charts.LiveCharts(run_dir)
        self.placement = w.HTML()
        self.log = w.HTML(layout=w.Layout(**LOG_LAYOUT))
        self.log.add_class("podmagic-log")
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop",
                                    tooltip="stop the run (tear the pod down)", layout=w.Layout(width="auto"))
        self.stop_button.on_click(lambda _b: self._stop(on_stop))
        self.widget = w.VBox([w.HBox([self.header, self.stop_button], layout=w.Layout(align_items="flex-start")),
                              self.charts, self.placement, self.log])
        self.widget.add_class("podmagic-run-view")
        self.flush(force=True)

    def _stop(self, on_stop: Callable[[], None] | None) -> None:
        if on_stop:
            on_stop()
            self.stop_button.disabled, self.stop_button.description = True, "Stopping…"

    # ------------------------------------------------------------ events

    def on_event(self, event: Event) -> None:
        with self._lock:
            self._apply(event)
            self._dirty = True
        self.flush(force=event.kind in ("phase_started", "run_finished"))

    def _apply(self, event: Event) -> None:
        kind, data = event.kind, event.data
        if kind == "output":
            self.tail.feed(data.get("text", ""))
        elif kind == "phase_started":
            self.phase = data["phase"]
            if not self.phases or self.phases[-1] != self.phase:
                self.phases.append(self.phase)
        elif kind in ("pod_provisioned", "gpu_selected", "pod_ssh_ready"):
            self.price = data.get("price_per_hour_usd") or self.price
        elif kind == "placement_attempt":  # one row per GPU × datacenter, updated as it resolves
            self.attempts[(data.get("gpu_id", ""), data.get("datacenter_id", ""))] = (
                data.get("outcome", ""), data.get("reason", ""))
        elif kind in ("warning", "error", "reconcile_warning", "reconcile_note"):
            self.notes.append(f"{kind.replace('reconcile_', '')}: {data.get('message')}")
        elif kind in ("ssh_host_key_trusted", "ssh_reconnect", "pod_killed_unexpected", "api_retry"):
            self.notes.append(kind.replace("_", " ") + ": " + ", ".join(f"{k}={v}" for k, v in data.items()))
        elif kind == "run_finished":
            self.state = status_word(data)

    def flush(self, force: bool = False) -> None:
        now = time.time()
        with self._lock:
            if not force and (not self._dirty or now - self._last_flush < FLUSH_SEC):
                return
            self._dirty, self._last_flush = False, now
            header, log, placement = self._header(now), self.tail.text(), render.attempts_html(self.attempts)
        self.header.value = header
        self.log.value = ("<pre class='podmagic-log-text' style='margin:0;white-space:pre-wrap;overflow-wrap:anywhere;"
                          f"line-height:1.35;{render.MONO}'>{ansi.to_html(log)}</pre>")
        if placement != self.placement.value:
            self.placement.value = placement
        shown = "flex" if log else "none"  # no empty box before the first line
        if self.log.layout.display != shown:
            self.log.layout.display = shown
        block = self._live_charts.html()  # re-read and redrawn at most once a second
        if block is not None:
            self.charts.value = block
        if self.state != "running":
            self.stop_button.layout.display = "none"

    def _header(self, now: float) -> str:
        elapsed = now - self.started
        data: dict[str, Any] = {"job_name": self.job_name, "run_id": self.run_id, "state": self.state,
                                "backend": self.backend, "cost_cap_usd": self.cost_cap}
        cost = self.price * elapsed / 3600 if self.price else None
        summary = render.summary_html(data, elapsed=elapsed, cost=cost)
        return summary + stepper_html(self.phases, self.state) + render.notes_html(self.notes, limit=5)

    def finish(self, manifest: dict | None) -> None:
        """The last state, shown in the live widgets (the caller then ends its block with `final_html`)."""
        if manifest:
            self.state = status_word(manifest)
        self.flush(force=True)
        if self.run_dir is not None:  # the whole series, complete after teardown
            self.charts.value = charts.run_dir_charts(self.run_dir) or self.charts.value

    def final_html(self, manifest: dict | None) -> str:
        return render.run_html(manifest, log_text=self.tail.text(), total_lines=self.tail.total_lines,
                               run_dir=self.run_dir, attempts=self.attempts, notes=self.notes,
                               charts=self.charts.value,
                               fallback={"job_name": self.job_name, "run_id": self.run_id, "state": self.state,
                                         "backend": self.backend})

    def close(self) -> None:
        close_all(self.widget)
