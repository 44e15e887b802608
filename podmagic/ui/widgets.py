"""The live run view (ipywidgets), fed by runner events.

Within Jupyter's limits (about 1 MB/s and 1000 messages/s on iopub): events
go into a bounded `LogTail` and the widgets are re-rendered at most every
`FLUSH_SEC`, never once per line. The full log is on disk in the run
directory. When the run ends, the view is replaced by static HTML (manifest
table + log excerpt), which survives saving the notebook and nbconvert.
"""

from __future__ import annotations

import html
import threading
import time

import ipywidgets as w

from podmagic.run.events import Event
from podmagic.run.store import status_word
from podmagic.ui.logtail import LogTail
from podmagic.ui.render import COLORS, log_html, manifest_html

FLUSH_SEC = 0.25


class RunView:
    def __init__(self, run_id: str, job_name: str, backend: str, on_stop=None):
        self.run_id, self.job_name, self.backend = run_id, job_name, backend
        self.phase, self.state = "starting", "running"
        self.started = time.time()
        self.price = None
        self.tail = LogTail()
        self.attempts: dict[tuple[str, str], tuple[str, str]] = {}
        self.notes: list[str] = []
        self._dirty, self._last_flush = False, 0.0
        self._lock = threading.Lock()
        self.header = w.HTML()
        self.placement = w.HTML()
        self.log = w.HTML(layout=w.Layout(max_height="22em", overflow="auto"))
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop",
                                    layout=w.Layout(width="90px"))
        self.stop_button.on_click(lambda _b: on_stop and on_stop())
        self.widget = w.VBox([w.HBox([self.header, self.stop_button]), self.placement, self.log])
        self.widget.add_class("podmagic-run-view")
        self.flush(force=True)

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
            self.tail.feed(f"\n── {self.phase} ──\n" if self.tail.total_lines or self.tail.current else f"── {self.phase} ──\n")
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
            header, log, placement = self._header(now), self.tail.text(), self._placement()
        self.header.value = header
        self.log.value = f"<pre style='margin:0;white-space:pre-wrap'>{html.escape(log)}</pre>"
        if placement != self.placement.value:
            self.placement.value = placement
        self.stop_button.disabled = self.state != "running"

    def _header(self, now: float) -> str:
        elapsed = now - self.started
        cost = f" · ${self.price * elapsed / 3600:.4f}" if self.price else ""
        color = COLORS.get(self.state, "#000")
        notes = "".join(f"<div style='color:#9a6700'>{html.escape(n)}</div>" for n in self.notes[-5:])
        return (f"<b>{html.escape(self.job_name)}</b> <code>{html.escape(self.run_id)}</code> · "
                f"{html.escape(self.backend)} · phase <b>{html.escape(self.phase)}</b> · "
                f"<span style='color:{color}'>{self.state}</span> · {elapsed:.0f}s{cost}{notes}")

    def _placement(self) -> str:
        if not self.attempts:
            return ""
        rows = "".join(f"<tr><td>{html.escape(g)}</td><td>{html.escape(d)}</td><td>{html.escape(o)}</td>"
                       f"<td>{html.escape(r)}</td></tr>" for (g, d), (o, r) in self.attempts.items())
        return f"<table><tr><th>GPU</th><th>datacenter</th><th>outcome</th><th>reason</th></tr>{rows}</table>"

    def finish(self, manifest: dict | None) -> None:
        """Show the last state and, under the log, the manifest table (a view that stays live)."""
        self.flush(force=True)
        self.log.value += self.final_html(manifest)

    def final_html(self, manifest: dict | None) -> str:
        log = log_html(self.tail.text(), f"log tail ({self.tail.total_lines} lines; full log in the run directory)")
        table = manifest_html(manifest) if manifest else ""
        return table + log
