"""The sweep view: one row per shard (its variables first), the live log of the selected shard, Stop.

Imports ipywidgets, `podmagic.run` (store, compare, sweep) and `podmagic.ui`.

A single kernel thread refreshes it a few times a second from the shards' run
directories (status, manifest, a bounded `\\r`-aware log tail), so its cost
does not grow with the shards' output. A chart plots one metric of the job
(chosen in a dropdown) for every shard, and the table shows each shard's last
values; both are redrawn at most every `CHART_SEC`. When the sweep ends, its
block becomes static HTML: the shard table, every metric overlaid across the
shards (inline SVG), the comparison of the shards and the reproducibility check.
"""

from __future__ import annotations

import html
import threading
import time

import ipywidgets as w

from podmagic.run import compare, store, telemetry
from podmagic.run.sweep import Sweep
from podmagic.ui import ansi, charts, render
from podmagic.ui.widgets import LOG_LAYOUT, Block, close_all

REFRESH_SEC = 0.5
CHART_SEC = 2.0
COLUMNS = (("state", "status"), ("gpu_id", "GPU"), ("elapsed", "time"), ("cost", "cost"),
           ("exit_code", "exit"), ("python_resolved", "python"), ("metrics", "last metrics"), ("run_id", "run"))


class SweepView:
    def __init__(self, sweep: Sweep):
        self.sweep = sweep
        self.variables = list(dict.fromkeys(k for s in sweep.shards for k in s.variables))
        self.head = w.HTML()
        self.table = w.HTML()
        self.selector = w.Dropdown(description="log of", options=[(self._label(i), i) for i in range(len(sweep.shards))])
        self.log = w.HTML(layout=w.Layout(**LOG_LAYOUT))
        self.log.add_class("podmagic-log")
        self.stop_button = w.Button(description="Stop sweep", button_style="danger", icon="stop")
        self.stop_button.on_click(lambda _b: self._stop())
        self.metric = w.Dropdown(description="chart", options=[])
        self.metric.observe(lambda _change: self._draw_chart(force=True), names="value")
        self.chart = w.HTML()
        self._last: dict[int, str] = {}
        self._chart_at: float | None = None
        self.widget = w.VBox([self.head, self.table, self.metric, self.chart,
                              w.HBox([self.selector, self.stop_button]), self.log])
        self.widget.add_class("podmagic-sweep-view")
        self.block: Block | None = None
        self.final: str | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"view-{sweep.sweep_id}")

    def _label(self, i: int) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.sweep.shards[i].variables.items())

    def _stop(self) -> None:
        self.sweep.stop()
        self.stop_button.disabled, self.stop_button.description = True, "Stopping…"

    def show(self) -> "SweepView":
        """Display the view as the cell's block and start refreshing it."""
        self.refresh()
        self.block = Block(self.widget, self.sweep.sweep_id)
        self._thread.start()
        return self

    start = show

    def _loop(self) -> None:
        while self.sweep._thread is None or self.sweep._thread.is_alive():
            self.refresh()
            if self.sweep._thread is None:
                time.sleep(REFRESH_SEC)
            else:  # woken when the sweep ends, not at the next refresh: the cell waits for this block
                self.sweep._thread.join(REFRESH_SEC)
        self.refresh()
        self.end()

    def rows(self) -> list[dict]:
        out = []
        for shard in self.sweep.shards:
            row = store.run_summary(shard.run_dir) if shard.run_dir else {"run_id": "", "state": shard.state}
            row["state"] = shard.state if shard.state in ("pending", "cancelled") else row.get("state")
            row.update({f"var:{k}": v for k, v in shard.variables.items()})
            row["elapsed"] = render.seconds(row.get("wall_time_sec") if row.get("wall_time_sec") is not None
                                            else row.get("elapsed_sec")) or None
            row["cost"] = render.money(row.get("estimated_cost_usd")) or None
            row["metrics"] = self._last.get(id(shard)) or None
            out.append(row)
        return out

    def columns(self) -> list[tuple[str, str]]:
        return [(f"var:{k}", k) for k in self.variables] + list(COLUMNS)

    def heading(self) -> str:
        states = [s.state for s in self.sweep.shards]
        counts = " · ".join(f"{n} {state}" for state in ("running", "pending", "succeeded", "failed", "interrupted",
                                                          "cancelled", "lost") if (n := states.count(state)))
        n = len(states)
        return (f"<div class='podmagic-summary {render.NOMATH}'><b>{html.escape(self.sweep.sweep_id)}</b> · {n} shard"
                f"{'s' if n != 1 else ''} · {counts}</div>")

    def table_html(self) -> str:
        return render.table_html(self.rows(), self.columns(), cls="podmagic-sweep")

    def _shard_dirs(self) -> dict:
        return {self._label(i): s.run_dir for i, s in enumerate(self.sweep.shards)}

    def _draw_chart(self, force: bool = False) -> None:
        """The chosen metric of every shard, and each shard's last values (at most every CHART_SEC)."""
        now = time.monotonic()
        if not force and self._chart_at is not None and now - self._chart_at < CHART_SEC:
            return
        self._chart_at = now
        for shard in self.sweep.shards:
            if shard.run_dir:
                self._last[id(shard)] = charts.last_values(telemetry.user_metrics(shard.run_dir))
        svg, names = charts.sweep_chart(self._shard_dirs(), self.metric.value)
        if list(self.metric.options) != names:
            self.metric.options = names  # may fire the observer; the value it keeps is still a metric
        self.chart.value = svg

    def refresh(self) -> None:
        self._draw_chart()
        self.head.value = self.heading()
        self.table.value = self.table_html()
        shard = self.sweep.shards[self.selector.value or 0]
        tail = store.RunDir(shard.run_dir).log_tail(60).text if shard.run_dir else ""
        self.log.value = (f"<pre class='podmagic-log-text' style='margin:0;white-space:pre-wrap;{render.MONO}'>"
                          f"{ansi.to_html(tail)}</pre>")

    def final_html(self) -> str:
        done = [m for m in self.sweep.manifests() if m]
        self._draw_chart(force=True)
        parts = [self.heading(), self.table_html(), charts.compare_charts(
            {k: d for k, d in self._shard_dirs().items() if d})]
        if len(done) >= 2:
            parts.append(render.compare_html(done, title=f"{len(done)} finished shards compared"))
        problems = compare.consistency(done)
        parts += [f"<div style='color:var(--jp-warn-color0,#9a6700)'>reproducibility check: {html.escape(p)}</div>"
                  for p in problems]
        return "<div class='podmagic-sweep-record'>" + "".join(parts) + "</div>"

    def end(self) -> None:
        """Make the block static (once; the sweep has ended)."""
        if self.final is not None:
            return
        self.final = self.final_html()
        if self.block:
            self.block.end(self.final)
        else:
            close_all(self.widget)

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
