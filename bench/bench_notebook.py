"""What a notebook cell pays: a `%%pod` cell of `sleep 1.1` and a 16-shard `%%pod --sweep` of `sleep 2`.

    .venv/bin/python bench/bench_notebook.py [--baseline REV] [--tries 5]

A real kernel run by nbclient (the local backend), each cell timed from the cell just before it, so
the figure holds the view, its end and the relaunch controls, not only `api.execute`. With
`--baseline REV` the kernel alternates between REV and this tree, one notebook of `--tries` cells of
each kind per turn, two turns each. Prints best and median against the bare job.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_common import alternating  # noqa: E402
from report import worktree  # noqa: E402

SWEEP = "%%pod --sweep i=" + ",".join(map(str, range(16))) + " --max-parallel 16\nname: nb-sweep-{i}\nstaging: []\n" \
        "run: sleep 2\n"
ONE = "%%pod\nname: nb-one\nstaging: []\nrun: sleep 1.1\n"
JOBS = {"one": (ONE, 1.1), "sweep": (SWEEP, 2.0)}


def notebook(tries: int):
    from nbformat.v4 import new_code_cell, new_notebook

    cells = [new_code_cell("%load_ext podmagic"), new_code_cell("%%pod\nname: nb-warm\nstaging: []\nrun: sleep 0\n")]
    for _ in range(tries):
        for kind, (body, _) in JOBS.items():
            cells += [new_code_cell("import time; t0 = time.perf_counter()"), new_code_cell(body),
                      new_code_cell(f"print('{kind}', time.perf_counter() - t0)")]
    return new_notebook(cells=cells)


def run(tree: Path, tries: int, work: Path) -> dict[str, list[float]]:
    from nbclient import NotebookClient

    os.environ.update(PYTHONPATH=str(tree), PODMAGIC_LOCAL_ROOT=str(work / "pods"), PODMAGIC_BACKEND="local")
    nb = notebook(tries)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()
    out: dict[str, list[float]] = {k: [] for k in JOBS}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if m := re.match(r"(one|sweep) ([0-9.]+)", o.get("text", "")):
                out[m[1]].append(float(m[2]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", metavar="REV")
    parser.add_argument("--tries", type=int, default=5)
    args = parser.parse_args()
    trees = {"this tree": HERE.parent, **({args.baseline: worktree(args.baseline)} if args.baseline else {})}
    work = Path(tempfile.mkdtemp(prefix="podmagic-bench-notebook-"))
    samples = {name: {k: [] for k in JOBS} for name in trees}
    for name, tree in alternating(trees, 2):
        for kind, values in run(tree, args.tries, work).items():
            samples[name][kind] += values
    for kind, (_, job) in JOBS.items():
        for name, by_kind in samples.items():
            v = by_kind[kind]
            print(f"{kind} ({name}): best {min(v):.3f} s ({min(v) / job:.2f}x the job), "
                  f"median {statistics.median(v):.3f} s, {len(v)} tries")


if __name__ == "__main__":
    main()
