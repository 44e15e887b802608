#!/usr/bin/env python3
"""Benchmark the SSH backend against OpenSSH tools over the same local sshd.

    .venv/bin/python bench/bench_ssh.py [--files 5000] [--mb 200] [--repeat 3]

(a) first push of a payload of N files / M MB, podmagic vs `rsync -a`;
(b) an unchanged re-push of the same payload, podmagic vs `rsync -a`;
(c) a trivial command on a fresh connection, podmagic (connect + `true`)
    vs bare `ssh host true`, and a whole `run: "true"` through the runner.
Each figure is the best of `--repeat` tries; ratios < 1 mean podmagic is faster.
The sshd gives sessions their own HOME (an empty .bashrc), so both sides
measure transport and tools, not this machine's shell start-up.
Not part of the test suite (it writes a few hundred MB under a temp dir).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from podmagic.backends.base import PodRequest  # noqa: E402
from podmagic.backends.ssh.backend import SSHBackend  # noqa: E402
from podmagic.testing.sshd import SSHServer  # noqa: E402

SIZES_KB = (1, 4, 16, 64, 115)  # mean 40 KB: 5,000 files ≈ 200 MB


def make_payload(root: Path, files: int, megabytes: int) -> int:
    scale = megabytes * 1024 / (files * sum(SIZES_KB) / len(SIZES_KB))
    blob = os.urandom(max(SIZES_KB) * 1024 * 2)
    total = 0
    for i in range(files):
        size = int(SIZES_KB[i % len(SIZES_KB)] * 1024 * scale)
        path = root / f"d{i // 100:03d}" / f"f{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        start = (i * 7919) % (len(blob) - size) if size < len(blob) else 0
        path.write_bytes(blob[start:start + size] if size < len(blob) else os.urandom(size))
        total += size
    return total


def ssh_opts(server: SSHServer) -> list[str]:
    return ["-p", str(server.port), "-i", str(server.client_key), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def best(fn, repeat: int, reset=None) -> float:
    times = []
    for _ in range(repeat):
        if reset:
            reset()
        times.append(timed(fn))
    return min(times)


def duel(ours, theirs, repeat: int, reset=None) -> tuple[float, float]:
    """Best-of-`repeat` times of both, alternating so background load hits both alike."""
    a, b = [], []
    for _ in range(repeat):
        for fn, times in ((ours, a), (theirs, b)):
            if reset:
                reset()
            times.append(timed(fn))
    return min(a), min(b)


def rsync(server: SSHServer, src: Path, dest: Path) -> None:
    ssh = " ".join(["ssh", *ssh_opts(server)])
    subprocess.run(["rsync", "-a", "-e", ssh, f"{src}/", f"{server.user}@{server.host}:{dest}/"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="podmagic-bench-"))
    try:
        run(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, args) -> None:
    src = work / "payload"
    total = make_payload(src, args.files, args.mb)
    files = sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.is_file())
    print(f"payload: {len(files)} files, {total / 2**20:.1f} MiB (random bytes)")
    with SSHServer(work / "sshd", home=work / "home") as server:
        backend = SSHBackend(server.host_spec, root=str(work / "pod"), known_hosts=work / "kh",
                             key_path=str(server.client_key))
        pod = backend.provision(REQUEST, lambda *a, **k: None)
        staging = measure_staging(work, server, pod, src, files, args.repeat)
        latency = measure_latency(work, server, backend, pod, args.repeat)
        pod.transport.close()
    report(staging, latency)


REQUEST = PodRequest(run_id="bench", image="-", datacenters=(), gpu_order=())


def measure_staging(work: Path, server: SSHServer, pod, src: Path, files: list[str], repeat: int) -> dict:
    ours_dest, rsync_dest = work / "pod/workspace/repo", work / "rsync-dest"

    def push():
        pod.push(src, "/workspace/repo", files=files, excludes=(), delete=True)

    def theirs():
        rsync(server, src, rsync_dest)

    def clean():
        subprocess.run(["sync"], check=True)
        for path in (ours_dest, rsync_dest):
            shutil.rmtree(path, ignore_errors=True)

    first = duel(push, theirs, repeat, reset=clean)
    push()
    theirs()
    again = duel(push, theirs, repeat)
    moved = pod.push(src, "/workspace/repo", files=files, excludes=(), delete=True).bytes_transferred
    return {"first": first, "again": again, "moved": moved}


def measure_latency(work: Path, server: SSHServer, backend: SSHBackend, pod, repeat: int) -> dict:
    def bare_ssh():
        subprocess.run(["ssh", *ssh_opts(server), server.host_spec.split(":")[0], "true"], check=True)

    def connect_and_true():
        fresh = backend.provision(REQUEST, lambda *a, **k: None)
        fresh.run("true", timeout=30)
        fresh.transport.close()

    trivial = duel(connect_and_true, bare_ssh, repeat)
    warm = best(lambda: pod.run("true", timeout=30), repeat)
    whole = best(lambda: full_run(work, server), repeat)
    return {"trivial": trivial, "warm": warm, "whole": whole}


def report(staging: dict, latency: dict) -> None:
    rows = [("(a) first push", *staging["first"]), ("(b) unchanged re-push", *staging["again"]),
            ("(c) connect + `true`", *latency["trivial"])]
    print(f"{'':26}{'podmagic':>10}{'reference':>11}{'ratio':>8}")
    for label, ours, ref in rows:
        print(f"{label:26}{ours:>9.3f}s{ref:>10.3f}s{ours / ref:>8.2f}")
    print("references: rsync -a over the same sshd for (a)/(b); `ssh host true` for (c)")
    print(f"unchanged re-push moved {staging['moved']} bytes")
    bare = latency["trivial"][1]
    print(f"`true` on the open connection: {latency['warm']:.3f}s; whole `run: \"true\"` through the runner "
          f"(provision, probe, launch, follow, pull, release): {latency['whole']:.3f}s "
          f"({latency['whole'] / bare:.2f}x ssh true)")


def full_run(work: Path, server: SSHServer) -> None:
    from podmagic.run import api

    project = work / "project"
    project.mkdir(exist_ok=True)
    backend = SSHBackend(server.host_spec, root=str(work / "runpod"), known_hosts=work / "kh",
                         key_path=str(server.client_key))
    text = "name: trivial\nstaging: []\nrun: \"true\"\nlifecycle: {on_success: preserve}\n"
    prepared = api.start(api.prepare(text, cwd=project, backend="ssh"))
    manifest = api.execute(prepared, backend=backend)
    assert not manifest["failed"], manifest["error"]


if __name__ == "__main__":
    main()
