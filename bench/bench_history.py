"""Run history with 2,000 runs against the same with 20 (the goal: the default views cost the same).

    .venv/bin/python bench/bench_history.py [--repeat 5] [--json]

(a) `podmagic runs` (its default view: 50 rows) in a new interpreter;
(b) the server extension's /runs poll (the panel's, every 2 s), warm, with nothing changed;
(c) a unique-prefix look-up and a miss (the panel's 404 path), warm.
Run directories are written as a finished run leaves them (status.json and the manifest).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_common import TREE, Result, emit, timed  # noqa: E402 - puts the measured tree on sys.path
from podmagic.run import store  # noqa: E402


def make_runs(root: Path, count: int) -> None:
    folder = store.runs_root(root)
    for i in range(count):
        run_id = f"job{i % 7}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(1.7e9 + i))}-{i % 65536:04x}"
        run_dir = folder / run_id
        run_dir.mkdir(parents=True)
        store.write_json_atomic(run_dir / store.STATUS, {"run_id": run_id, "job_name": f"job{i % 7}",
                                                         "state": "succeeded", "phase": "teardown"})
        store.write_json_atomic(run_dir / store.MANIFEST, {"run_id": run_id, "job_name": f"job{i % 7}",
                                                           "failed": i % 5 == 0, "exit_code": 0, "wall_time_sec": 3.0})
    past = time.time() - 60  # as a project's history is: written a while ago
    for run_dir in folder.iterdir():
        for name in (store.STATUS, store.MANIFEST):
            os.utime(run_dir / name, (past, past))
    os.utime(folder, (past, past))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from podmagic.ui.serverext import views

    work = Path(tempfile.mkdtemp(prefix="podmagic-bench-history-"))
    timings: dict[int, dict[str, list[float]]] = {}
    env = {**os.environ, "PYTHONPATH": str(TREE)}
    for count in (20, 2000):
        root = work / f"p{count}"
        make_runs(root, count)
        newest = next(store.iter_run_dirs(root)).name
        cli = [sys.executable, "-c", "import sys; from podmagic.ui.cli import main; sys.exit(main(sys.argv[1:]))",
               "runs", "--project-root", str(root)]
        views.run_list(root)  # warm, as a server that has polled before
        t = timings[count] = {"cli": [], "poll": [], "lookup": []}
        for _ in range(args.repeat):
            t["cli"].append(timed(lambda: subprocess.run(cli, env=env, stdout=subprocess.DEVNULL, check=True)))
            t["poll"].append(timed(lambda: views.run_list(root)))
            t["lookup"].append(timed(lambda: (store.find_run(root, newest[:-3]), _miss(root))))
    labels = {"cli": "`podmagic runs` (default view), new interpreter", "poll": "panel poll (/runs), nothing changed",
              "lookup": "prefix look-up + a miss"}
    results = [Result(f"{labels[k]}: 2,000 runs vs 20", [x * 1000 for x in timings[2000][k]],
                      [x * 1000 for x in timings[20][k]], unit="ms", reference_label="20 runs")
               for k in labels]
    emit(results, args.json)


def _miss(root: Path) -> None:
    try:
        store.find_run(root, "no-such-run")
    except Exception:  # noqa: BLE001 - the miss is what is timed
        pass


if __name__ == "__main__":
    main()
