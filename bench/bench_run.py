"""A run's overhead, its log path and `import podmagic`, against references in the same run.

    .venv/bin/python bench/bench_run.py [--repeat 5] [--json] [--only sleep,lines,big,import]

Local backend, alternating tries, best of `--repeat` with the range of ratios:
  sleep   `sleep 1.1` through `podmagic run` (a new interpreter, what a shell pays) and in-process
          (`api.execute`, what a %%pod cell pays) vs bare `sleep 1.1`;
  lines   1M x 100-char lines through `podmagic run` (stdout to /dev/null) vs the same job (with the
          pod's PYTHONUNBUFFERED=1) to /dev/null and writing to a file, with podmagic's peak RSS;
  big     a 500 MB log through `podmagic run` vs the same job writing it to a file, with peak RSS;
  import  `import podmagic` and `import podmagic.run.api` (a fresh interpreter, timed by `-X importtime`) vs
          `import yaml`, with byte-code compiled once (as an installed package has it).
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

from bench_common import TREE as REPO  # noqa: E402
from bench_common import Result, compile_package, duel, emit, timed  # noqa: E402

LINES_JOB = "python3 -c 'import sys; w = sys.stdout.write; line = \"x\" * 99 + \"\\n\"; [w(line) for _ in range(1000000)]'"
BIG_JOB = "head -c 500000000 /dev/zero | tr '\\0' 'y' | fold -w 99"


def run_child(argv: list[str], *, cwd: Path, env: dict, stdout=subprocess.DEVNULL) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=stdout, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}")
    return wall, usage.ru_maxrss / 1024


def cli(work: Path, env: dict, spec: str) -> list[str]:
    path = work / f"{abs(hash(spec))}.yaml"
    path.write_text(spec)
    # what the `podmagic` console script runs (not `-m`, whose runpy a user's shell does not pay)
    return [sys.executable, "-c", "import sys; from podmagic.ui.cli import main; sys.exit(main())", "run", str(path)]


def bench_sleep(work: Path, env: dict, repeat: int) -> list[Result]:
    from podmagic.run import api

    os.environ.update(PODMAGIC_LOCAL_ROOT=env["PODMAGIC_LOCAL_ROOT"])
    out = []
    for extra, what in (("", ""), ("telemetry: {enabled: false}\n", ", telemetry off")):
        spec = f"name: bench\nstaging: []\nrun: sleep 1.1\n{extra}"
        argv = cli(work, env, spec)
        ours, bare = duel(lambda: run_child(argv, cwd=work, env=env), lambda: subprocess.run(["sleep", "1.1"]),
                          repeat)
        out.append(Result(f"`sleep 1.1` via `podmagic run` (CLI{what})", ours, bare,
                          reference_label="bare `sleep 1.1`"))
        inproc, bare = duel(lambda: api.execute(api.start(api.prepare(spec, cwd=work, is_file=True))),
                            lambda: subprocess.run(["sleep", "1.1"]), repeat)
        out.append(Result(f"`sleep 1.1` in-process (what a `%%pod` cell pays{what})", inproc, bare,
                          reference_label="bare `sleep 1.1`"))
    return out


def bench_log(work: Path, env: dict, repeat: int, job: str, label: str, to_file: bool) -> list[Result]:
    """`job` through `podmagic run` against the job alone, in the environment the pod gives it
    (`PYTHONUNBUFFERED=1`): to /dev/null, and (`to_file` or not) writing to a file as it does on the pod."""
    argv = cli(work, env, f"name: log\nstaging: []\nrun: |\n  {job}\n")
    target = work / "raw.out"
    job_env = {**env, "PYTHONUNBUFFERED": "1"}  # as the pod's launch sets it: prints reach the live log at once
    ours, rss, to_null, to_disk = [], [], [], []

    def alone(fh) -> None:
        subprocess.run(["bash", "-c", job], stdout=fh, env=job_env, check=True)

    for _ in range(repeat):
        if not to_file:
            to_null.append(timed(lambda: alone(subprocess.DEVNULL)))
        with target.open("wb") as fh:
            to_disk.append(timed(lambda: alone(fh)))
        wall, peak = run_child(argv, cwd=work, env=env)
        ours.append(wall)
        rss.append(peak)
        target.unlink(missing_ok=True)
        for log in (work / "artifacts").rglob("run.log"):
            log.unlink()  # keep the disk free between tries
    note = f"peak RSS {min(rss):.0f}-{max(rss):.0f} MB"
    file_ref = "the job writing to a file (as on the pod)"
    if to_file:
        return [Result(label, ours, to_disk, reference_label=file_ref, note=note)]
    return [Result(label, ours, to_null, reference_label="the job to /dev/null", note=note),
            Result(f"{label}, against the job writing its log", ours, to_disk, reference_label=file_ref)]


def bench_import(repeat: int) -> list[Result]:
    """Each module's import in a fresh interpreter, as `-X importtime` times it (its cumulative line): the
    import alone, without the interpreter's start-up, whose few ms of jitter are larger than `import podmagic`
    (subtracting an empty interpreter's time made it come out below zero)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def import_ms(module: str) -> float:
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], cwd=REPO, env=env,
                              check=True, capture_output=True, text=True)
        line = next(ln for ln in reversed(done.stderr.splitlines()) if ln.rstrip().endswith(f"| {module}"))
        return int(line.split("|")[1]) / 1000  # "import time: self [us] | cumulative | name"

    modules = ("yaml", "podmagic", "podmagic.run.api")
    times: dict[str, list[float]] = {m: [] for m in modules}
    for _ in range(repeat * 2):  # taking turns: a machine whose speed drifts moves them alike
        for module in modules:
            times[module].append(import_ms(module))
    return [Result(f"`import {module}` (fresh interpreter, `-X importtime`)", times[module], times["yaml"],
                   unit="ms", reference_label="`import yaml`")
            for module in ("podmagic", "podmagic.run.api")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", default="sleep,lines,big,import")
    args = parser.parse_args()
    only = set(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="podmagic-bench-run-"))
    env = {**os.environ, "PODMAGIC_LOCAL_ROOT": str(work / "pods"), "PODMAGIC_BACKEND": "local",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    results: list[Result] = []
    compile_package()
    if "sleep" in only:
        results += bench_sleep(work, env, args.repeat)
    if "lines" in only:
        results += bench_log(work, env, args.repeat, LINES_JOB, "1M x 100-char lines via `podmagic run`", False)
    if "big" in only:
        results += bench_log(work, env, max(2, args.repeat // 2), BIG_JOB, "a 500 MB log via `podmagic run`", True)
    if "import" in only:
        results += bench_import(args.repeat)
    emit(results, args.json)


if __name__ == "__main__":
    main()
