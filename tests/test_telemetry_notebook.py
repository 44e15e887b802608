"""The held-out scenario's shape: a fake nvidia-smi installed by a preflight step into ~/.local/bin,
metrics written to $PODMAGIC_METRICS, the notebook executed, saved and read back: the charts are
inline SVG in the static output, and the manifest says what the run ran on."""

from __future__ import annotations

import pytest

import textwrap

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from podmagic.run import store
from podmagic.testing import fake_nvidia_smi

from test_notebook import execute, outputs_text

pytestmark = pytest.mark.e2e  # notebooks in a real kernel: not in the fast lane (-m "not e2e")


def test_saved_notebook_keeps_gpu_and_metric_charts(pod_env, project, tmp_path):
    install = fake_nvidia_smi.install_command().replace("{", "{{").replace("}", "}}")
    cell = ("%%pod\nname: charts\ntelemetry: {sample_interval_sec: 5}\npreflight:\n  - command: |\n"
            + textwrap.indent(install, "      ") + "\n"
            + "run: |\n"
            + "  for i in 1 2 3 4 5 6; do\n"
            + '    echo "{{\\"step\\": $i, \\"loss\\": 0.$(( 9 - i )), \\"acc\\": 0.$i}}" >> "$PODMAGIC_METRICS"\n'
            + "    sleep 1\n  done\n")
    nb = new_notebook(cells=[new_code_cell("%load_ext podmagic"), new_code_cell(cell)])
    nb = execute(nb, project)
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, path)
    saved = nbformat.read(path, as_version=4)
    html = outputs_text(saved.cells[1])
    assert "succeeded" in html
    assert html.count("<svg") >= 3  # GPU, loss, acc
    assert ">GPU<" in html and ">loss<" in html and ">acc<" in html
    assert "<script" not in html
    (run_dir,) = list(store.iter_run_dirs(project))
    manifest = store.read_json(run_dir / store.MANIFEST)
    assert manifest["gpu_name"] == "NVIDIA H100 80GB HBM3" and manifest["gpu_driver_version"] == "550.54.15"
    assert "metrics.jsonl" in manifest["telemetry_files"] and manifest["user_metrics_file"] == "user_metrics.jsonl"


SWEEP = """%%pod --sweep lr=1,2 --max-parallel 2 -o sw
name: lr-{lr}
staging: []
telemetry: {sample_interval_sec: 5}
run: |
  for i in 1 2 3 4; do
    echo "{{\\"step\\": $i, \\"loss\\": $(( {lr} * 10 - i ))}}" >> "$PODMAGIC_METRICS"
    sleep 0.5
  done
"""


def test_sweep_plots_every_shard_and_compare_overlays(pod_env, project, tmp_path):
    nb = new_notebook(cells=[new_code_cell("%load_ext podmagic"), new_code_cell(SWEEP),
                             new_code_cell("%pod compare {sw.sweep_id}")])
    nb = execute(nb, project)
    path = tmp_path / "sweep.ipynb"
    nbformat.write(nb, path)
    saved = nbformat.read(path, as_version=4)
    sweep_out, compare_out = outputs_text(saved.cells[1]), outputs_text(saved.cells[2])
    assert "lr=1" in sweep_out and "lr=2" in sweep_out and ">loss<" in sweep_out
    assert "loss=16" in sweep_out and "loss=6" in sweep_out  # each shard's last value in the table
    chart = compare_out[compare_out.index("<svg"):]
    assert ">loss<" in chart and chart.count("stroke-width:1.5") >= 2
