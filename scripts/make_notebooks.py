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


def write(name: str, cells: list) -> None:
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    write("quickstart.ipynb", QUICKSTART)
