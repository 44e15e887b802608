"""Writes the example notebooks from the cell sources below (kept in one place, reviewable)."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent.parent / "example_notebooks"

QUICKSTART = [
    new_markdown_cell(
        "# podmagic quickstart\n\n"
        "A `%%pod` cell holds a run in runpod-deploy's YAML vocabulary. Without a RunPod key it runs on the "
        "**local** backend: a sandbox directory standing in for the pod, with `/workspace` mapped into it. "
        "The interpreter pin (`pod.python_version`) really runs `uv python install X && cd /workspace/repo && "
        "uv python pin X` before the job, and the manifest records the interpreter requested and resolved."
    ),
    new_code_cell("%load_ext podmagic"),
    new_code_cell(
        "%%pod --var epochs=3\n"
        "name: quickstart\n"
        "pod:\n"
        "  image: runpod/pytorch:2.4.0-py3.13-cuda12.4.1-devel-ubuntu22.04\n"
        "  datacenters: [EU-RO-1, US-MD-1]\n"
        "  gpu_order: [\"NVIDIA RTX A4000\"]\n"
        "  python_version: \"3.12.1\"\n"
        "local:\n"
        "  project_root: demo\n"
        "run: |\n"
        "  uv run python train.py --epochs {epochs}\n"
        "artifacts:\n"
        "  - {label: metrics, remote_path: /workspace/repo/out/metrics.json, local_path: \"{run_dir}/metrics.json\"}\n"
    ),
    new_markdown_cell("Every run has a directory with its spec, log, events and manifest. List them:"),
    new_code_cell("%pod runs --name quickstart --limit 3"),
]


WORKFLOW = [
    new_markdown_cell(
        "# Sweep → compare → relaunch\n\n"
        "Fan out seeds as a sweep (one shard per value, each its own run directory, in parallel), check that "
        "every shard used the same interpreter, lockfile and git SHA, compare runs, then relaunch a run with "
        "an edit from its run view."
    ),
    new_code_cell("%load_ext podmagic"),
    new_code_cell(
        "%%pod --sweep seed=0,1,2 --max-parallel 3 -o sweep\n"
        "name: workflow-s{seed}\n"
        "pod:\n"
        "  python_version: \"3.12.1\"\n"
        "local:\n"
        "  project_root: demo\n"
        "run: |\n"
        "  uv run python train.py --epochs 2 --seed {seed}\n"
        "artifacts:\n"
        "  - {label: metrics, remote_path: /workspace/repo/out/metrics.json, local_path: \"{run_dir}/metrics.json\"}\n"
    ),
    new_markdown_cell("The same comparison as a table in the notebook, and as a DataFrame (with pandas installed):"),
    new_code_cell("%pod compare {sweep.sweep_id}"),
    new_code_cell("import podmagic\n"
                  "df = podmagic.compare_runs(sweep.sweep_id, project_root='demo')\n"
                  "df[df['differs']] if hasattr(df, 'columns') else [r for r in df if r['differs']]"),
    new_markdown_cell("One run bound to a variable, its metrics loaded from the pulled artifact:"),
    new_code_cell(
        "%%pod -o best --var seed=1\n"
        "name: workflow-best\n"
        "pod:\n"
        "  python_version: \"3.12.1\"\n"
        "local:\n"
        "  project_root: demo\n"
        "run: uv run python train.py --epochs 2 --seed {seed}\n"
        "artifacts:\n"
        "  - {label: metrics, remote_path: /workspace/repo/out/metrics.json, local_path: \"{run_dir}/metrics.json\"}\n"
    ),
    new_code_cell("best.json('metrics')"),
    new_markdown_cell(
        "Under the run, **Relaunch** runs the same spec again and **Edit & relaunch** opens a small form "
        "(GPU order, datacenters, python, variables, cost cap). Here the same click, from code: relaunch on "
        "Python 3.13.0 and see what changed."
    ),
    new_code_cell(
        "from podmagic.ui.magics import last_controls\n"
        "controls = last_controls()\n"
        "controls.fields['python_version'].value = '3.13.0'\n"
        "controls.run_edited_button.click()\n"
        "controls.wait()  # the relaunch shows live here, then stays as its record and diff"
    ),
]


def write(name: str, cells: list) -> None:
    for i, cell in enumerate(cells):
        cell["id"] = f"{Path(name).stem}-{i}"  # stable ids: regenerating changes nothing
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    write("quickstart.ipynb", QUICKSTART)
    write("workflow.ipynb", WORKFLOW)
