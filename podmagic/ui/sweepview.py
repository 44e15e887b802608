"""The sweep view: one row per shard, the live log of the selected shard, Stop.

A single kernel thread refreshes it a few times a second from the shards' run
directories (status, manifest, a bounded log tail), so its cost does not grow
with the number of shards' output.
"""

from __future__ import annotations

import html
import threading
import time

import ipywidgets as w

from podmagic.run import history, store
from podmagic.run.sweep import Sweep
from podmagic.ui.render import COLORS

REFRESH_SEC = 0.5


class SweepView:
    def __init__(self, sweep: Sweep):
        self.sweep = sweep
        self.table = w.HTML()
        self.selector = w.Dropdown(description="log of", options=[(self._label(i), i) for i in range(len(sweep.shards))])
        self.log = w.HTML(layout=w.Layout(max_height="18em", overflow="auto"))
        self.stop_button = w.Button(description="Stop sweep", button_style="danger", icon="stop")
        self.stop_button.on_click(lambda _b: sweep.stop())
        self.summary = w.HTML()
        self.widget = w.VBox([w.HTML(f"<b>sweep</b> <code>{html.escape(sweep.sweep_id)}</code>"), self.table,
                              w.HBox([self.selector, self.stop_button]), self.log, self.summary])
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"view-{sweep.sweep_id}")

    def _label(self, i: int) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.sweep.shards[i].variables.items())

    def start(self) -> "SweepView":
        self.refresh()
        self._thread.start()
        return self

    def _loop(self) -> None:
        while self.sweep._thread is None or self.sweep._thread.is_alive():
            self.refresh()
            time.sleep(REFRESH_SEC)
        self.refresh()
        self.stop_button.disabled = True

    def rows(self) -> list[dict]:
        out = []
        for shard in self.sweep.shards:
            row = store.run_summary(shard.run_dir) if shard.run_dir else {"run_id": "", "state": shard.state}
            row["state"] = shard.state if shard.state in ("pending", "cancelled") else row.get("state")
            row["shard"] = ", ".join(f"{k}={v}" for k, v in shard.variables.items())
            out.append(row)
        return out

    def refresh(self) -> None:
        cells = ("shard", "state", "gpu_id", "elapsed_sec", "wall_time_sec", "estimated_cost_usd", "exit_code",
                 "python_resolved", "run_id")
        head = "".join(f"<th style='text-align:left'>{c}</th>" for c in cells)
        body = ""
        for row in self.rows():
            tds = []
            for c in cells:
                value = "" if row.get(c) is None else str(row.get(c))
                style = f"color:{COLORS.get(value, '#000')}" if c == "state" else ""
                tds.append(f"<td style='{style}'>{html.escape(value)}</td>")
            body += "<tr>" + "".join(tds) + "</tr>"
        self.table.value = f"<table class='podmagic-sweep'><tr>{head}</tr>{body}</table>"
        shard = self.sweep.shards[self.selector.value or 0]
        tail = history.log_tail(shard.run_dir, 40) if shard.run_dir else ""
        self.log.value = f"<pre style='margin:0'>{html.escape(tail)}</pre>"

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
