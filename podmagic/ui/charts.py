"""Small charts as inline SVG: line charts and sparklines, no JavaScript, no plotting library.

The SVG survives saving the notebook, nbconvert and GitHub. Colours are CSS
variables with fallbacks (`--podmagic-chart-N`, then JupyterLab's theme
colours, then a fixed colour), and text and axes use `currentColor`, so the
charts follow the light and dark themes. Series are thinned to at most
`MAX_POINTS` points (each bucket keeps its minimum and maximum, so spikes
stay visible), which bounds the size of every update within Jupyter's output
limits.

`run_charts` builds the block a run view shows: GPU utilisation and memory
(from the sampler's `metrics.jsonl` rows) and each numeric metric of the job
(`user_metrics.jsonl`) against step, or time; `LiveCharts` keeps that block
current from a run directory's files, read by offset, at most once a second.
Everything but `LiveCharts` (which reads files) is pure. Imports only the
standard library and `run.telemetry` / `run.store`.
"""

from __future__ import annotations

import html
import math
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from podmagic.run import store, telemetry
from podmagic.run.telemetry import numeric_series

MAX_POINTS = 240
PALETTE = ("var(--jp-brand-color1, #1f77b4)", "var(--jp-warn-color1, #e36209)",
           "var(--jp-success-color1, #2da44e)", "var(--jp-error-color1, #cf222e)",
           "var(--jp-accent-color1, #8250df)", "var(--jp-info-color1, #0598bc)")
Point = tuple[float, float]


def color(i: int) -> str:
    return f"var(--podmagic-chart-{i % len(PALETTE) + 1}, {PALETTE[i % len(PALETTE)]})"


def thin(points: Sequence[Point], max_points: int = MAX_POINTS) -> list[Point]:
    """At most `max_points` points: first and last kept, each bucket's min and max kept in x order."""
    points = [p for p in points if _finite(p[0]) and _finite(p[1])]
    if len(points) <= max_points:
        return list(points)
    buckets = max(1, (max_points - 2) // 2)
    inner = points[1:-1]
    size = len(inner) / buckets
    out = [points[0]]
    for b in range(buckets):
        chunk = inner[int(b * size):int((b + 1) * size)]
        if not chunk:
            continue
        lo, hi = min(chunk, key=lambda p: p[1]), max(chunk, key=lambda p: p[1])
        out.extend(sorted({lo, hi}, key=lambda p: p[0]))
    out.append(points[-1])
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.2e}"
    return f"{v:.4g}"


def line_chart(series: Mapping[str, Sequence[Point]], *, title: str = "", x_label: str = "",
               width: int = 320, height: int = 130, y_range: tuple[float, float] | None = None,
               unit: str = "") -> str:
    """One SVG chart of several series (name → [(x, y), ...]); empty string when there is nothing to plot."""
    data = {name: thin(points) for name, points in series.items()}
    data = {n: p for n, p in data.items() if p}
    if not data:
        return ""
    xs = [x for p in data.values() for x, _ in p]
    ys = [y for p in data.values() for _, y in p]
    x0, x1 = min(xs), max(xs)
    y0, y1 = y_range if y_range else (min(ys), max(ys))
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    if x1 == x0:
        x1 = x0 + 1
    labels = [f"{name} {_fmt(points[-1][1])}{unit}" for name, points in data.items()]
    legend = _legend_layout(labels, width, 44)
    extra = 12 * (max((row for _, row in legend), default=0))
    left, right, top, bottom = 44, 8, 18 if title else 6, 26
    pw, ph = width - left - right, height - top - bottom
    full = height + extra

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + ph - (min(max(y, y0), y1) - y0) / (y1 - y0) * ph

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' class='podmagic-chart' width='{width}' height='{full}' "
             f"viewBox='0 0 {width} {full}' role='img' aria-label='{html.escape(title, quote=True)}' "
             "style='color:inherit;font:10px sans-serif'>"]
    if title:
        parts.append(f"<text x='{left}' y='12' style='fill:currentColor;font-weight:bold'>{html.escape(title)}</text>")
    axis = "stroke:currentColor;stroke-opacity:0.35;fill:none"
    muted = "fill:currentColor;fill-opacity:0.7"
    parts.append(f"<path d='M{left},{top}V{top + ph}H{left + pw}' style='{axis}'/>")
    for y in (y0, y1):
        parts.append(f"<text x='{left - 3}' y='{py(y) + 3:.1f}' text-anchor='end' style='{muted}'>"
                     f"{_fmt(y)}{html.escape(unit)}</text>")
    parts.append(f"<text x='{left}' y='{height - 14}' style='{muted}'>{_fmt(x0)}</text>")
    parts.append(f"<text x='{left + pw}' y='{height - 14}' text-anchor='end' style='{muted}'>{_fmt(x1)}</text>")
    if x_label:
        parts.append(f"<text x='{left + pw / 2:.1f}' y='{height - 14}' text-anchor='middle' style='{muted}'>"
                     f"{html.escape(x_label)}</text>")
    for i, ((name, points), label, (lx, row)) in enumerate(zip(data.items(), labels, legend)):
        d = "M" + "L".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        parts.append(f"<path d='{d}' style='fill:none;stroke:{color(i)};stroke-width:1.5'>"
                     f"<title>{html.escape(name)}</title></path>")
        ly = height - 4 + 12 * row
        parts.append(f"<rect x='{lx}' y='{ly - 4}' width='8' height='3' style='fill:{color(i)}'/>"
                     f"<text x='{lx + 11}' y='{ly}' style='fill:currentColor'>{html.escape(label)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _legend_layout(labels: Sequence[str], width: int, left: int) -> list[tuple[int, int]]:
    """(x, row) of each legend entry, wrapping at the chart's width (about 6 px a character)."""
    out, x, row = [], left, 0
    for label in labels:
        size = 16 + 6 * len(label)
        if x > left and x + size > width:
            x, row = left, row + 1
        out.append((x, row))
        x += size
    return out


def sparkline(values: Sequence[float], *, width: int = 100, height: int = 20, index: int = 0,
              y_range: tuple[float, float] | None = None, title: str = "") -> str:
    """A tiny line of the last values (no axes); empty string without two finite values."""
    points = thin([(float(i), float(v)) for i, v in enumerate(values) if _finite(v)], max(width, 2))
    if len(points) < 2:
        return ""
    ys = [y for _, y in points]
    y0, y1 = y_range if y_range else (min(ys), max(ys))
    span = (y1 - y0) or 1.0
    x_span = (points[-1][0] - points[0][0]) or 1.0
    d = "M" + "L".join(f"{(x - points[0][0]) / x_span * (width - 2) + 1:.1f},"
                       f"{height - 1 - (min(max(y, y0), y1) - y0) / span * (height - 2):.1f}" for x, y in points)
    tip = f"<title>{html.escape(title)}</title>" if title else ""
    return (f"<svg xmlns='http://www.w3.org/2000/svg' class='podmagic-sparkline' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' style='vertical-align:middle'>{tip}<path d='{d}' "
            f"style='fill:none;stroke:{color(index)};stroke-width:1.2'/></svg>")


# ---------------------------------------------------------------- run charts


def _seconds(stamp: Any) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def gpu_series(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[Point]]:
    """Sampler rows → GPU utilisation and memory in percent against seconds since the first row."""
    rows = list(rows)
    start = next((t for t in (_seconds(r.get("ts_utc")) for r in rows) if t is not None), None)
    out: dict[str, list[Point]] = {"GPU util %": [], "GPU mem %": []}
    for r in rows:
        t = _seconds(r.get("ts_utc"))
        if t is None or start is None:
            continue
        if _finite(r.get("gpu_util_pct")):
            out["GPU util %"].append((t - start, float(r["gpu_util_pct"])))
        mem = r.get("gpu_mem_util_pct")
        if not _finite(mem) and _finite(r.get("gpu_mem_used_mb")) and r.get("gpu_mem_total_mb"):
            mem = 100.0 * r["gpu_mem_used_mb"] / r["gpu_mem_total_mb"]
        if _finite(mem):
            out["GPU mem %"].append((t - start, float(mem)))
    return {k: v for k, v in out.items() if v}


def gpu_chart(rows: Iterable[Mapping[str, Any]], **kw) -> str:
    return line_chart(gpu_series(rows), title="GPU", x_label="seconds", y_range=(0, 100), **kw)


def metric_charts(rows: Iterable[Mapping[str, Any]], *, limit: int = 8, **kw) -> list[str]:
    """One chart per numeric metric of the job, against step (or time, or row)."""
    found = numeric_series(rows)
    return [line_chart({name: points}, title=name, x_label=found["x"], **kw)
            for name, points in list(found["series"].items())[:limit]]


def run_charts(gpu_rows: Iterable[Mapping[str, Any]], user_rows: Iterable[Mapping[str, Any]]) -> str:
    """The charts block of a run view (HTML); empty when there is nothing to draw."""
    charts = [c for c in (gpu_chart(gpu_rows), *metric_charts(user_rows)) if c]
    if not charts:
        return ""
    return ("<div class='podmagic-chart-row' style='display:flex;flex-wrap:wrap;gap:8px 16px;margin:4px 0'>"
            + "".join(charts) + "</div>")


def overlay(runs: Mapping[str, Iterable[Mapping[str, Any]]], metric: str, **kw) -> str:
    """One metric of several runs on one chart (sweep view, `%pod compare`): run label → user rows."""
    series: dict[str, list[Point]] = {}
    x_name = "step"
    for label, rows in runs.items():
        found = numeric_series(rows)
        if metric in found["series"]:
            series[label] = found["series"][metric]
            x_name = found["x"]
    return line_chart(series, title=metric, x_label=x_name, width=kw.pop("width", 480), height=kw.pop("height", 170),
                      **kw)


def metric_names(runs: Iterable[Iterable[Mapping[str, Any]]]) -> list[str]:
    """The numeric metrics any of the runs reported, in first-seen order."""
    names: dict[str, None] = {}
    for rows in runs:
        names.update(dict.fromkeys(numeric_series(rows)["series"]))
    return list(names)


class _Tail:
    """New complete JSON lines of a growing file, by byte offset; keeps the last `keep` rows."""

    def __init__(self, path: Path, keep: int):
        self.path, self.offset, self.rows = path, 0, deque(maxlen=keep)

    def read(self) -> bool:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return False
        end = data.rfind(b"\n") + 1
        if not end:
            return False
        self.offset += end
        rows = [telemetry.parse_user_line(line) for line in data[:end].decode("utf-8", "replace").splitlines()]
        self.rows.extend(r for r in rows if r is not None)
        return True


class LiveCharts:
    """The charts block of a live run, from its run directory (in-process and detached runs alike)."""

    def __init__(self, run_dir: Path | None, every_sec: float = 1.0, keep: int = 20000):
        self.every_sec, self._at, self._html = every_sec, None, ""
        self._gpu = _Tail(Path(run_dir) / store.RunDir.METRICS, keep) if run_dir else None
        self._user = _Tail(Path(run_dir) / store.RunDir.USER_METRICS, keep) if run_dir else None

    def html(self, force: bool = False) -> str | None:
        """The block when it changed (None otherwise); reads at most every `every_sec` unless forced."""
        now = time.monotonic()
        if self._gpu is None or (not force and self._at is not None and now - self._at < self.every_sec):
            return None
        self._at = now
        changed = self._gpu.read() | self._user.read()
        if not changed:
            return None
        self._html = run_charts(self._gpu.rows, self._user.rows)
        return self._html

    @property
    def current(self) -> str:
        return self._html


def run_dir_charts(run_dir: Path) -> str:
    """The charts block of a finished run, from its files."""
    return run_charts(telemetry.gpu_metrics(run_dir), telemetry.user_metrics(run_dir))


def compare_charts(run_dirs: Mapping[str, Path], metrics: Sequence[str] | None = None, limit: int = 6) -> str:
    """`%pod compare` / the sweep: each metric of the runs overlaid, and their GPU utilisation."""
    user = {label: telemetry.user_metrics(d) for label, d in run_dirs.items()}
    names = list(metrics) if metrics else metric_names(user.values())[:limit]
    charts = [overlay(user, name) for name in names]
    gpu = {label: gpu_series(telemetry.gpu_metrics(d)).get("GPU util %", []) for label, d in run_dirs.items()}
    charts.append(line_chart({k: v for k, v in gpu.items() if v}, title="GPU util %", x_label="seconds",
                             width=480, height=170, y_range=(0, 100)))
    charts = [c for c in charts if c]
    if not charts:
        return ""
    return ("<div class='podmagic-chart-row' style='display:flex;flex-wrap:wrap;gap:8px 16px;margin:4px 0'>"
            + "".join(charts) + "</div>")


def series_payload(run_dir: Path, points: int = 120) -> dict[str, Any]:
    """JSON for the Pods panel's sparklines: GPU and each numeric metric of the job, thinned."""
    gpu = gpu_series(telemetry.gpu_metrics(run_dir))
    user = numeric_series(telemetry.user_metrics(run_dir))
    def pack(series: Mapping[str, Sequence[Point]]) -> dict[str, list[list[float]]]:
        return {name: [[x, y] for x, y in thin(p, points)] for name, p in series.items()}
    return {"run_id": Path(run_dir).name, "gpu": pack(gpu), "x": user["x"], "metrics": pack(user["series"])}


def last_values(rows: Iterable[Mapping[str, Any]], limit: int = 3) -> str:
    """`loss=0.31 acc=0.9`: the last value of each numeric metric (a sweep table cell)."""
    found = numeric_series(rows)
    parts = [f"{name}={_fmt(points[-1][1])}" for name, points in list(found["series"].items())[:limit]]
    return " ".join(parts)


def sweep_chart(shards: Mapping[str, Path | None], metric: str | None = None) -> tuple[str, list[str]]:
    """One metric of every shard on one chart (shard label → run dir); returns (svg, metric names)."""
    user = {label: telemetry.user_metrics(d) if d else [] for label, d in shards.items()}
    names = metric_names(user.values())
    chosen = metric if metric in names else (names[0] if names else None)
    return (overlay(user, chosen) if chosen else ""), names
