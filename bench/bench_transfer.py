"""SSH transfers against OpenSSH's own tools over the same local sshd (real sshd on 127.0.0.1).

    .venv/bin/python bench/bench_transfer.py [--repeat 3] [--pull-mib 1024] [--files 20000] [--json]

(a) pull of one large artifact (random bytes), podmagic vs `scp`;
(b) first push of many small files (1-4 KiB), podmagic vs `rsync -a`;
(c) the same push again with nothing changed, podmagic vs `rsync -a`.
Alternating tries, best of `--repeat`; ratios < 1 mean podmagic is faster. Writes under a temp dir.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import Result, duel, emit  # noqa: E402 - puts the measured tree on sys.path
from podmagic.backends.base import PodRequest  # noqa: E402
from podmagic.backends.ssh.backend import SSHBackend  # noqa: E402
from podmagic.testing.sshd import SSHServer  # noqa: E402

REQUEST = PodRequest(run_id="bench", image="-", datacenters=(), gpu_order=())


def ssh_opts(server: SSHServer) -> list[str]:
    return ["-i", str(server.client_key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]


def small_files(root: Path, count: int) -> list[str]:
    blob = os.urandom(8192)
    rels = []
    for i in range(count):
        rel = f"d{i // 200:03d}/f{i:05d}.txt"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob[(i * 37) % 4096:(i * 37) % 4096 + 1024 + (i % 4) * 1024])
        rels.append(rel)
    return rels


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pull-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="podmagic-bench-ssh-"))
    try:
        run(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, args) -> None:
    with SSHServer(work / "sshd", home=work / "home") as server:
        backend = SSHBackend(server.host_spec, root=str(work / "pod"), known_hosts=work / "kh",
                             key_path=str(server.client_key))
        pod = backend.provision(REQUEST, lambda *a, **k: None)
        host = server.host_spec.split(":")[0]
        port = ["-P", str(server.port)]
        results = []

        big = work / "pod" / "workspace" / "big.bin"
        big.parent.mkdir(parents=True, exist_ok=True)
        with big.open("wb") as fh:
            chunk = os.urandom(1 << 20)
            for _ in range(args.pull_mib):
                fh.write(chunk)
        ours_dest, scp_dest = work / "got-ours", work / "got-scp"

        def reset_pull():
            for p in (ours_dest, scp_dest):
                shutil.rmtree(p, ignore_errors=True)
                p.mkdir()

        a, b = duel(lambda: pod.pull("/workspace/big.bin", ours_dest),
                    lambda: subprocess.run(["scp", "-q", *port, *ssh_opts(server), f"{host}:{big}", str(scp_dest)],
                                           check=True), args.repeat, reset=reset_pull)
        assert (ours_dest / "big.bin").stat().st_size == big.stat().st_size
        results.append(Result(f"SSH pull of a {args.pull_mib} MiB artifact", a, b, reference_label="scp"))
        big.unlink()

        src = work / "small"
        files = small_files(src, args.files)
        ours_push, rsync_dest = work / "pod" / "workspace" / "repo", work / "rsync-dest"
        ssh = " ".join(["ssh", "-p", str(server.port), *ssh_opts(server)])

        def push():
            pod.push(src, "/workspace/repo", files=files, excludes=(), delete=True)

        def rsync():
            subprocess.run(["rsync", "-a", "-e", ssh, f"{src}/", f"{host}:{rsync_dest}/"], check=True)

        def clean():
            for p in (ours_push, rsync_dest):
                shutil.rmtree(p, ignore_errors=True)

        a, b = duel(push, rsync, args.repeat, reset=clean)
        results.append(Result(f"SSH first push of {args.files:,} small files", a, b, reference_label="rsync -a"))
        push()
        rsync()
        a, b = duel(push, rsync, args.repeat)
        results.append(Result(f"SSH unchanged re-push of {args.files:,} small files", a, b,
                              reference_label="rsync -a"))
        pod.transport.close()
    emit(results, args.json)


if __name__ == "__main__":
    main()
