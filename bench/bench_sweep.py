"""Sweeps: N shards of `sleep S` at --max-parallel P, wall and CPU, against the bare job.

    .venv/bin/python bench/bench_sweep.py [--repeat 3] [--json]

Wall is from `Sweep.start` (all shards prepared: what a cell does first) to the last manifest;
CPU is this process's plus every reaped child's (the sweep host and what it ran). The reference
is the job itself: one `sleep S` per wave of P shards (N / P waves).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from bench_common import Result, compile_package, emit  # noqa: E402 - puts the measured tree on sys.path


def cpu() -> float:
    r = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(x.ru_utime + x.ru_stime for x in r)


def one(work: Path, shards: int, parallel: int, seconds: float, extra: str = "") -> tuple[float, float]:
    from podmagic.run import sweep as sweep_mod

    text = f"name: sw-{{i}}\nstaging: []\nrun: sleep {seconds:g}\n{extra}"
    combos = [{"i": str(i)} for i in range(shards)]
    c0, t0 = cpu(), time.perf_counter()
    sweep_id, prepared = sweep_mod.prepare(text, combos, cwd=work, is_file=True)
    sweep = sweep_mod.Sweep(sweep_id, prepared, work, max_parallel=parallel).start()
    manifests = sweep.wait()
    wall, used = time.perf_counter() - t0, cpu() - c0
    failed = [m for m in manifests if not m or m.get("failed")]
    if failed:
        raise SystemExit(f"{len(failed)} shard(s) failed: {failed[:1]}")
    return wall, used


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    compile_package()
    work = Path(tempfile.mkdtemp(prefix="podmagic-bench-sweep-"))
    os.environ["PODMAGIC_LOCAL_ROOT"] = str(work / "pods")
    results = []
    for extra, what in (("", ""), ("telemetry: {enabled: false}\n", ", telemetry off")):
        for shards, parallel in ((16, 16), (64, 16)):
            runs = [one(work, shards, parallel, 2.0, extra) for _ in range(args.repeat)]
            reference = 2.0 * -(-shards // parallel)
            walls, cpus = [w for w, _ in runs], [c for _, c in runs]
            results.append(Result(f"sweep {shards} x `sleep 2`, --max-parallel {parallel}{what}: wall", walls,
                                  [reference], "s", reference_label=f"the job: {reference:g} s"))
            if shards == 16:
                results.append(Result(f"sweep {shards} x `sleep 2`, --max-parallel {parallel}{what}: CPU", cpus,
                                      None, "s", goal=1.0))
    emit(results, args.json)


if __name__ == "__main__":
    main()
