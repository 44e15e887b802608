"""An interleaved A/B of this tree against revision REV: one try of each in turn, so load hits both alike.

    .venv/bin/python bench/bench_ab.py REV [--tries 10] [--what cli|lines|sweep]

`cli`: `podmagic run` of `sleep 1.1` (a new interpreter each try); `lines`: `podmagic run` of a job that
prints 1M unbuffered 100-char lines, wall and the CPU of it and its children; `sweep`: 16 shards of `sleep 2` at
`--max-parallel 16`, wall and CPU, in a new interpreter each try (`bench_sweep.one`). A report
(`report.py --baseline REV`) measures one revision after the other; on a shared machine whose speed
drifts within minutes, this is what says whether a change moved a figure. Prints best and median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_common import alternating, timed  # noqa: E402
from bench_run import LINES_JOB  # noqa: E402
from report import worktree  # noqa: E402

CLI = "import sys; from podmagic.ui.cli import main; sys.exit(main())"
SWEEP = ("import json, os, sys, tempfile; from pathlib import Path; from bench_sweep import one; "
         "w = Path(tempfile.mkdtemp(prefix='podmagic-bench-ab-')); "
         "os.environ['PODMAGIC_LOCAL_ROOT'] = str(w / 'pods'); "
         "one(w, 16, 16, 2.0); print(json.dumps(one(w, 16, 16, 2.0)))")


def try_cli(tree: Path, spec: Path) -> list[float]:
    return [timed(lambda: subprocess.run([sys.executable, "-c", CLI, "run", str(spec)], env=_env(tree),
                                         cwd=spec.parent, check=True, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL))]


def try_lines(tree: Path, spec: Path) -> list[float]:
    lines = spec.with_name("lines.yaml")
    lines.write_text(f"name: ab\nstaging: []\nrun: |\n  {LINES_JOB}\n")
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CLI, "run", str(lines)], env=_env(tree), cwd=spec.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"the lines run exited {os.waitstatus_to_exitcode(status)}")
    for log in (spec.parent / "artifacts").rglob("run.log"):
        log.unlink()  # keep the disk free between tries
    return [wall, usage.ru_utime + usage.ru_stime]


def try_sweep(tree: Path, _spec: Path) -> list[float]:
    out = subprocess.run([sys.executable, "-c", SWEEP], env=_env(tree), cwd=tree / "bench", check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "PODMAGIC_BENCH_TREE": str(tree)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rev")
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--what", choices=("cli", "lines", "sweep"), default="cli")
    args = parser.parse_args()
    trees = {args.rev: worktree(args.rev), "this tree": HERE.parent}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(HERE.parent / "podmagic")], check=True)
    work = Path(tempfile.mkdtemp(prefix="podmagic-bench-ab-"))
    spec = work / "job.yaml"
    spec.write_text("name: ab\nstaging: []\nrun: sleep 1.1\n")
    os.environ["PODMAGIC_LOCAL_ROOT"] = str(work / "pods")
    one = {"cli": try_cli, "lines": try_lines, "sweep": try_sweep}[args.what]
    samples: dict[str, list[list[float]]] = {k: [] for k in trees}
    for name, tree in alternating(trees, args.tries):
        samples[name].append(one(tree, spec))
    for name, rows in samples.items():
        cols = list(zip(*rows))
        labels = ("wall",) if args.what == "cli" else ("wall", "CPU")  # lines: the CPU of the run and its pod
        print(f"{name}: " + "; ".join(f"{label} best {min(c):.3f} s, median {statistics.median(c):.3f} s"
                                      for label, c in zip(labels, cols)))


if __name__ == "__main__":
    main()
