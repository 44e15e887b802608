"""The SVG charts: well-formed, theme-aware, bounded in size, and fed from a run directory by offset."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET

from podmagic.run import store
from podmagic.ui import charts

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_line_chart_is_well_formed_theme_aware_svg_without_script():
    svg = charts.line_chart({"loss": [(i, 1 / (i + 1)) for i in range(50)], "val": [(i, 0.5) for i in range(50)]},
                            title="loss", x_label="step")
    root = _parse(svg)
    assert root.tag == SVG + "svg" and "script" not in svg.lower() and "<foreignObject" not in svg
    paths = [p for p in root.iter(SVG + "path") if "stroke-width:1.5" in p.get("style", "")]
    assert len(paths) == 2
    assert "var(--podmagic-chart-1, var(--jp-brand-color1, #1f77b4))" in paths[0].get("style")
    assert "var(--podmagic-chart-2" in paths[1].get("style")
    texts = "".join(t.text or "" for t in root.iter(SVG + "text"))
    assert "loss" in texts and "step" in texts and "val 0.5" in texts
    assert all("currentColor" in t.get("style", "") for t in root.iter(SVG + "text"))


def test_nothing_to_plot_is_an_empty_string():
    assert charts.line_chart({}) == "" and charts.line_chart({"a": []}) == ""
    assert charts.sparkline([1.0]) == "" and charts.sparkline([math.nan, 2.0]) == ""
    assert charts.run_charts([], []) == ""


def test_thinning_bounds_points_and_keeps_spikes():
    points = [(float(i), 0.0) for i in range(100_000)]
    points[54_321] = (54_321.0, 99.0)
    thinned = charts.thin(points, 200)
    assert len(thinned) <= 200 and thinned[0] == points[0] and thinned[-1] == points[-1]
    assert (54_321.0, 99.0) in thinned
    assert [x for x, _ in thinned] == sorted(x for x, _ in thinned)
    svg = charts.line_chart({"y": points})
    assert len(svg) < 20_000  # a chart update stays far below Jupyter's output limits


def test_sparkline_and_gpu_series():
    svg = charts.sparkline([1, 3, 2, 5], title="GPU util")
    assert _parse(svg).tag == SVG + "svg" and "GPU util" in svg
    rows = [{"ts_utc": f"2026-12-01T21:00:{s:02d}Z", "gpu_util_pct": 10 * s, "gpu_mem_used_mb": 40,
             "gpu_mem_total_mb": 80, "gpu_mem_util_pct": None} for s in range(0, 10, 5)]
    assert charts.gpu_series(rows) == {"GPU util %": [(0.0, 0.0), (5.0, 50.0)], "GPU mem %": [(0.0, 50.0), (5.0, 50.0)]}
    assert charts.gpu_series([{"ts_utc": "2026-12-01T21:00:00Z", "gpu_util_pct": None}]) == {}


def test_metric_charts_one_per_numeric_metric():
    rows = [{"step": i, "loss": 1 / (i + 1), "acc": i / 10, "phase": "train"} for i in range(10)]
    made = charts.metric_charts(rows)
    assert len(made) == 2 and ">loss<" in made[0] and ">acc<" in made[1]


def _append(path, rows, tail=""):
    with path.open("a") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows) + tail)


def test_live_charts_read_the_run_dir_by_offset(tmp_path):
    live = charts.LiveCharts(tmp_path, every_sec=0)
    assert live.html() is None  # no files yet
    _append(tmp_path / store.RunDir.USER_METRICS, [{"step": 1, "loss": 2.0}], tail='{"step": 2, "lo')
    first = live.html()
    assert first and ">loss<" in first and "loss 2<" in first
    assert live.html() is None  # nothing new
    with (tmp_path / store.RunDir.USER_METRICS).open("a") as fh:
        fh.write('ss": 1.0}\n')
    _append(tmp_path / store.RunDir.METRICS, [{"ts_utc": "2026-12-01T21:00:00Z", "gpu_util_pct": 40},
                                               {"ts_utc": "2026-12-01T21:00:30Z", "gpu_util_pct": 60}])
    second = live.html()
    assert "loss 1<" in second and ">GPU<" in second and live.current == second
    slow = charts.LiveCharts(tmp_path, every_sec=3600)
    assert slow.html() and slow.html() is None and slow.html(force=True) is None


def test_compare_overlays_runs_and_payload_for_the_panel(tmp_path):
    dirs = {}
    for i in range(3):
        d = tmp_path / f"run-{i}"
        d.mkdir()
        _append(d / store.RunDir.USER_METRICS, [{"step": s, "loss": (3 - i) / (s + 1)} for s in range(20)])
        _append(d / store.RunDir.METRICS, [{"ts_utc": f"2026-12-01T21:00:{s:02d}Z", "gpu_util_pct": 30 + i}
                                           for s in range(0, 30, 5)])
        dirs[f"seed={i}"] = d
    html = charts.compare_charts(dirs)
    svgs = [s for s in html.split("<svg")[1:]]
    assert len(svgs) == 2  # loss overlaid, GPU util overlaid
    assert all(f"seed={i}" in svgs[0] for i in range(3))
    assert svgs[0].count("stroke-width:1.5") == 3
    payload = charts.series_payload(dirs["seed=0"], points=8)
    assert payload["x"] == "step" and len(payload["metrics"]["loss"]) <= 8
    assert payload["metrics"]["loss"][0] == [0.0, 3.0] and payload["gpu"]["GPU util %"][0] == [0.0, 30.0]
    json.dumps(payload)


def test_charts_import_nothing_heavy():
    code = ("import sys, podmagic, podmagic.ui.charts\n"
            "print([m for m in ('ipywidgets', 'pandas', 'matplotlib', 'IPython', 'numpy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_sweep_chart_and_last_values(tmp_path):
    shards = {}
    for i in range(2):
        d = tmp_path / f"s{i}"
        d.mkdir()
        _append(d / store.RunDir.USER_METRICS, [{"step": s, "loss": 1.0 + i - s / 10, "acc": s / 10} for s in range(5)])
        shards[f"lr={i}"] = d
    shards["pending"] = None
    svg, names = charts.sweep_chart(shards, "acc")
    assert names == ["loss", "acc"] and ">acc<" in svg and "lr=0" in svg and "lr=1" in svg
    default, _ = charts.sweep_chart(shards)
    assert ">loss<" in default
    assert charts.sweep_chart({"x": None}) == ("", [])
    assert charts.last_values([{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25}]) == "loss=0.25"
