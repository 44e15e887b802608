"""Overhead of a podmagic run and of `import podmagic`, against references in the same run.

    .venv/bin/python bench/bench_run.py [--repeat 5]

(a) `podmagic run` (CLI, local backend) of a `sleep 1` body vs bare `sleep 1`, and the same
    run through the Python API in-process (what a %%pod cell pays);
(b) `import podmagic` vs `import yaml` (each in a fresh interpreter, minus an empty one).
Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="podmagic-bench-"))
    (work / "sleep.yaml").write_text("name: bench\nstaging: []\nrun: sleep 1\n")
    env = {**os.environ, "PODMAGIC_LOCAL_ROOT": str(work / "pods"), "PODMAGIC_BACKEND": "local"}
    sys.path.insert(0, str(REPO))
    from podmagic.run import api

    bare = timed(lambda: subprocess.run(["sleep", "1"], check=True), args.repeat)
    cli = timed(lambda: subprocess.run([sys.executable, "-m", "podmagic.ui.cli", "run", "sleep.yaml"], cwd=work,
                                       env=env, check=True, capture_output=True), args.repeat)
    os.environ.update(PODMAGIC_LOCAL_ROOT=str(work / "pods"))
    text = (work / "sleep.yaml").read_text()
    inproc = timed(lambda: api.execute(api.start(api.prepare(text, cwd=work, is_file=True))), args.repeat)
    print(f"run  : bare sleep 1 {bare:.3f}s | podmagic run (CLI) {cli:.3f}s ({cli / bare:.2f}x) | "
          f"in-process (%%pod) {inproc:.3f}s ({inproc / bare:.2f}x)")

    def fresh(code: str) -> float:
        return timed(lambda: subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True), args.repeat * 2)

    empty = fresh("pass")
    pm = fresh("import podmagic") - empty
    pm_api = fresh("import podmagic.run.api") - empty
    yml = fresh("import yaml") - empty
    print(f"import: yaml {yml * 1000:.1f}ms | podmagic {pm * 1000:.1f}ms ({pm / yml:.2f}x) | "
          f"podmagic.run.api (spec+plan+reconcile) {pm_api * 1000:.1f}ms ({pm_api / yml:.2f}x)")


if __name__ == "__main__":
    main()
