"""The SSH backend against a real OpenSSH sshd on 127.0.0.1 (no mocked paramiko)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import git_project

from podmagic.backends.base import BackendError, Launch
from podmagic.backends.ssh.hostkeys import HostKeyChanged, forget_host
from podmagic.backends.ssh.hosts import parse_host_spec, resolve_target

from sshd_fixtures import pod_request, requires_sshd, ssh_events, ssh_pod_factory, sshd  # noqa: F401

pytestmark = [requires_sshd, pytest.mark.e2e]


# -- helpers ------------------------------------------------------------------
def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def launch(tmp: str = "/workspace/job", body: str = "echo hi", **kw) -> Launch:
    return Launch(script_path=f"{tmp}/run.sh", log_path=f"{tmp}/run.log", exit_path=f"{tmp}/run.exit",
                  workdir="/workspace", body=body, **kw)


def wait_exit(pod, lch: Launch, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = pod.exit_code(lch)
        if code is not None:
            return code
        time.sleep(0.1)
    raise AssertionError("run did not finish")


def follow(pod, lch: Launch, on_chunk=None, timeout: float = 30.0) -> bytes:
    """Follow the log by byte offset until the exit file appears (as the runner does)."""
    got, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = pod.exit_code(lch) is not None
        chunk = pod.read_from(lch.log_path, len(got))
        got += chunk
        if on_chunk and chunk:
            on_chunk(got)
        if done and not chunk:
            return got
        time.sleep(0.05)
    raise AssertionError("run did not finish")


def group_alive(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


# -- host names ---------------------------------------------------------------
def test_import_does_not_load_paramiko():
    code = "import sys, podmagic.backends.ssh.backend; print('paramiko' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_host_spec_parsing():
    assert parse_host_spec("alice@gpu.lab:2222") == parse_host_spec("alice@gpu.lab:2222")
    spec = parse_host_spec("alice@gpu.lab:2222")
    assert (spec.user, spec.host, spec.port) == ("alice", "gpu.lab", 2222)
    target = resolve_target("gpu.lab", config_path="/nonexistent")
    assert (target.user, target.port) == ("root", 22)
    assert resolve_target("[::1]:2200", config_path="/nonexistent").port == 2200
    with pytest.raises(BackendError):
        parse_host_spec("host:notaport")


def test_alias_from_ssh_config(sshd, ssh_pod_factory, tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host gpubox\n  HostName {sshd.host}\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  IdentityFile {sshd.client_key}\n"
    )
    target = resolve_target("gpubox", config_path=config)
    assert (target.host, target.port, target.user, target.alias) == (sshd.host, sshd.port, sshd.user, "gpubox")
    pod = ssh_pod_factory(host="gpubox", ssh_config=config, key_path="/nonexistent/key")
    assert pod.run("echo via-alias", timeout=20).output == "via-alias\n"


# -- host keys ----------------------------------------------------------------
def test_host_key_trusted_on_first_use_then_refused_when_changed(sshd, ssh_pod_factory, ssh_events, tmp_path):
    known = tmp_path / "known_hosts"
    ssh_pod_factory()
    assert f"[127.0.0.1]:{sshd.port} {sshd.host_key_pub}" in known.read_text()
    assert [k for k, _ in ssh_events].count("ssh_host_key_trusted") == 1
    ssh_pod_factory()
    assert len(known.read_text().splitlines()) == 1
    assert [k for k, _ in ssh_events].count("ssh_host_key_trusted") == 1

    sshd.restart(new_host_key=True)
    with pytest.raises(HostKeyChanged) as info:
        ssh_pod_factory()
    message = str(info.value)
    assert "CHANGED" in message and "ssh-keygen -R" in message and str(known) in message
    assert forget_host(known, f"[127.0.0.1]:{sshd.port}") == 1
    ssh_pod_factory()
    assert sshd.host_key_pub in known.read_text()


# -- attached commands --------------------------------------------------------
def test_run_maps_paths_streams_output_and_times_out(ssh_pod_factory, tmp_path):
    pod = ssh_pod_factory()
    chunks: list[str] = []
    result = pod.run("mkdir -p /workspace/d && cd /workspace/d && pwd && echo $HOME && exit 7",
                     timeout=20, on_output=chunks.append)
    root = (tmp_path / "pod").resolve()
    assert result.exit_code == 7
    assert result.output == f"{root}/workspace/d\n{root}/root\n" == "".join(chunks)
    assert pod.run("pwd", timeout=20, workdir="/workspace/d").output.strip() == f"{root}/workspace/d"
    assert pod.run("pwd", timeout=20, workdir="/workspace/missing").output.strip() == f"{root}/root"
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        pod.run("sleep 30", timeout=1)
    pod.transport.drop()  # a link that died while idle is re-made before the next command
    assert pod.run("echo again", timeout=20).output == "again\n" and pod.transport.reconnects == 1
    assert pod.run("exit 124", timeout=5).exit_code == 124
    assert time.monotonic() - started < 10


def test_attached_command_cut_mid_way_is_not_rerun(ssh_pod_factory, tmp_path):
    import threading

    from podmagic.backends.ssh.transport import ConnectionLost

    pod = ssh_pod_factory()
    threading.Timer(0.5, pod.transport.drop).start()
    with pytest.raises(ConnectionLost, match="not retried"):
        pod.run("echo once >> /workspace/count; sleep 1.5", timeout=20)
    time.sleep(1.5)
    assert (tmp_path / "pod/workspace/count").read_text() == "once\n"


# -- staging ------------------------------------------------------------------
def test_push_honours_excludes_and_delete(ssh_pod_factory, tmp_path):
    pod = ssh_pod_factory()
    src = tmp_path / "src"
    write(src, {"train.py": "print(1)\n", "pkg/mod.py": "x = 1\n", "pkg/__pycache__/mod.cpython-311.pyc": "bin",
                "data/big.bin": "0" * 100, ".git/HEAD": "ref", "notes.tmp": "t"})
    dest = tmp_path / "pod/workspace/repo"
    write(dest, {"stale.py": "old", "olddir/gone.txt": "old", "keep.tmp": "excluded, so protected",
                 ".venv/lib/site.py": "made on the pod", "gone_pkg/__pycache__/m.pyc": "protected",
                 "gone_pkg/m.py": "old"})
    excludes = (".git/", ".venv/", "**/__pycache__/", "**/*.pyc", "*.tmp", "/data/")

    result = pod.push(src, "/workspace/repo", files=None, excludes=excludes, delete=True)
    assert tree(dest) == {"train.py": b"print(1)\n", "pkg/mod.py": b"x = 1\n", "keep.tmp": b"excluded, so protected",
                          ".venv/lib/site.py": b"made on the pod", "gone_pkg/__pycache__/m.pyc": b"protected"}
    assert not (dest / "olddir").exists()
    assert result.files == 2 and result.bytes_transferred == len("print(1)\n") + len("x = 1\n")

    from podmagic.backends.ssh.sync import remote_listing

    listed = remote_listing(pod.transport, str(dest), excludes).entries
    assert ".venv/lib" not in listed and ".venv/lib/site.py" not in listed and "keep.tmp" in listed

    write(dest, {"extra.txt": "stays"})
    pod.push(src, "/workspace/repo", files=["train.py"], excludes=(), delete=False)
    assert (dest / "extra.txt").read_text() == "stays"


def test_push_that_fails_on_the_pod_says_why_at_once(ssh_pod_factory, tmp_path):
    from podmagic.backends.base import BackendError

    pod = ssh_pod_factory()
    src = tmp_path / "src"
    write(src, {"big.bin": "x" * (8 << 20), "small.txt": "s"})
    started = time.monotonic()
    with pytest.raises(BackendError, match="(?s)unpacking on the pod.*(cannot create|No such file)"):
        pod.push(src, "/proc/podmagic-nowhere", files=None, excludes=(), delete=False)
    assert time.monotonic() - started < 10 and pod.transport.reconnects == 0


def test_delete_plan_keeps_directories_that_hold_excluded_files():
    from podmagic.backends.ssh.sync import Entry, _doomed

    d, f = Entry("d", 0, 0), Entry("f", 1, 0)
    existing = {"a": d, "a/x.pyc": f, "a/y.py": f, "b": d, "b/c": d, "b/c/z": f, "keep.txt": f, "s.py": f,
                "venv": d}
    assert _doomed(existing, {"s.py"}, ("*.pyc", "venv/")) == ["a/y.py", "b", "keep.txt"]
    assert _doomed(existing, {"s.py", "b/c/z"}, ()) == ["a", "keep.txt", "venv"]


def test_push_keeps_modes_and_mtimes_and_single_files(ssh_pod_factory, tmp_path):
    pod = ssh_pod_factory()
    src = tmp_path / "src"
    write(src, {"run.sh": "#!/bin/sh\necho ok\n", "cfg.yaml": "a: 1\n"})
    (src / "run.sh").chmod(0o755)
    pod.push(src, "/workspace/p", files=None, excludes=(), delete=True)
    dest = tmp_path / "pod/workspace/p"
    assert os.stat(dest / "run.sh").st_mode & 0o777 == 0o755
    assert int(os.stat(dest / "cfg.yaml").st_mtime) == int(os.stat(src / "cfg.yaml").st_mtime)
    assert pod.push(src / "cfg.yaml", "/workspace/single/", files=None, excludes=(), delete=False).files == 1
    assert (tmp_path / "pod/workspace/single/cfg.yaml").read_text() == "a: 1\n"


def test_unchanged_repush_costs_nothing(ssh_pod_factory, tmp_path):
    pod = ssh_pod_factory()
    src = tmp_path / "src"
    write(src, {f"d{i % 10}/f{i}.txt": f"content {i}\n" * 20 for i in range(500)})
    first = pod.push(src, "/workspace/repo", files=None, excludes=(), delete=True)
    assert first.files == 500 and first.bytes_transferred > 0

    started = time.monotonic()
    again = pod.push(src, "/workspace/repo", files=None, excludes=(), delete=True)
    assert again.bytes_transferred == 0 and again.files == 500
    assert time.monotonic() - started < 2.0

    (src / "d3/f3.txt").write_text("changed, longer\n" * 3)
    os.utime(src / "d3/f3.txt", (time.time() + 5, time.time() + 5))
    third = pod.push(src, "/workspace/repo", files=None, excludes=(), delete=True)
    assert third.bytes_transferred == len("changed, longer\n" * 3)
    assert tree(tmp_path / "pod/workspace/repo") == tree(src)


def test_push_and_pull_resume_after_a_dropped_connection(ssh_pod_factory, tmp_path, monkeypatch):
    import podmagic.backends.ssh.sync as sync

    pod = ssh_pod_factory()
    src = tmp_path / "src"
    write(src, {f"f{i:03d}.bin": str(i) * 5000 for i in range(120)})
    real_add, calls = sync._add, []

    def flaky_add(tar, path, arcname):
        calls.append(arcname)
        if len(calls) == 60:
            pod.transport.drop()
        return real_add(tar, path, arcname)

    monkeypatch.setattr(sync, "_add", flaky_add)
    monkeypatch.setattr(sync, "_gnu_tar", lambda: False)  # Python's tarfile (test_transfer covers system tar)
    result = pod.push(src, "/workspace/data", files=None, excludes=(), delete=True)
    assert tree(tmp_path / "pod/workspace/data") == tree(src)
    assert pod.transport.reconnects == 1 and len(calls) < 240 and result.files == 120

    calls.clear()
    real_extract = sync._extract

    def flaky_extract(tar, member, local):
        calls.append(member.name)
        if len(calls) == 60:  # the link dies mid-archive (locally the data is often already buffered)
            pod.transport.drop()
            raise EOFError("simulated drop")
        return real_extract(tar, member, local)

    monkeypatch.setattr(sync, "_extract", flaky_extract)
    pod.pull("/workspace/data/", tmp_path / "back")
    assert tree(tmp_path / "back") == tree(src) and pod.transport.reconnects == 2
    assert len(calls) == 60 + 61  # the second pass fetched only what had not landed


def test_pull_survives_a_real_drop_mid_archive(ssh_pod_factory, tmp_path, monkeypatch):
    import podmagic.backends.ssh.sync as sync
    import podmagic.backends.ssh.transport as transport_mod

    monkeypatch.setattr(transport_mod, "WINDOW", 256 << 10)  # little in flight: the drop truncates the stream
    pod = ssh_pod_factory()
    write(tmp_path / "pod/workspace/out", {f"part{i}.bin": chr(65 + i) * (512 << 10) for i in range(6)})
    real_extract, seen = sync._extract, []

    def dropping_extract(tar, member, local):
        seen.append(member.name)
        if len(seen) == 2:
            pod.transport.drop()
        return real_extract(tar, member, local)

    monkeypatch.setattr(sync, "_extract", dropping_extract)
    result = pod.pull("/workspace/out/", tmp_path / "back")
    assert tree(tmp_path / "back") == tree(tmp_path / "pod/workspace/out")
    assert pod.transport.reconnects == 1 and result.files == 6


# -- secrets ------------------------------------------------------------------
def test_secrets_written_with_their_mode_and_never_echoed(sshd, ssh_pod_factory, ssh_events, tmp_path):
    pod = ssh_pod_factory()
    secret = b"HF_TOKEN=hf_s3cr3t_value\n"
    pod.write_file("/workspace/secrets/env", secret, 0o600)
    pod.write_file("/workspace/secrets/shared", b"x", 0o640)
    env = tmp_path / "pod/workspace/secrets/env"
    assert env.read_bytes() == secret
    assert os.stat(env).st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "pod/workspace/secrets/shared").st_mode & 0o777 == 0o640
    assert not list((tmp_path / "pod/workspace/secrets").glob("*podmagic-tmp*"))
    assert b"s3cr3t" not in repr(ssh_events).encode() and "s3cr3t" not in sshd.log_text()


# -- the detached run ---------------------------------------------------------
def test_detached_run_log_and_exit_code(ssh_pod_factory, tmp_path, monkeypatch):
    import podmagic.backends.ssh.pod as ssh_pod

    pod = ssh_pod_factory()
    lch = launch(body='echo out; echo err >&2; pwd; echo "$DATA"; echo x >> /workspace/starts; exit 3',
                 env={"DATA": "/workspace/data"})
    monkeypatch.setattr(ssh_pod.secrets, "token_hex", lambda n: "fixedtoken")
    pod.start(lch)
    pod.start(lch)  # the same start repeated (as after a reconnect) starts no second job
    assert wait_exit(pod, lch) == 3
    log = follow(pod, lch).decode()
    root = (tmp_path / "pod").resolve()
    assert log == f"out\nerr\n{root}/workspace\n{root}/workspace/data\n"
    assert (root / "workspace/starts").read_text() == "x\n"
    assert pod.ended_by(lch) is None


def test_read_from_offsets_of_a_large_growing_file(ssh_pod_factory, tmp_path):
    pod = ssh_pod_factory()
    target = tmp_path / "pod/workspace/big.log"
    target.parent.mkdir(parents=True, exist_ok=True)
    first, more = os.urandom(2_500_000), os.urandom(70_000)
    target.write_bytes(first)
    got = b""
    while chunk := pod.read_from("/workspace/big.log", len(got)):
        got += chunk
    assert got == first
    with target.open("ab") as fh:
        fh.write(more)
    assert pod.read_from("/workspace/big.log", len(got), 100) == more[:100]
    assert pod.read_from("/workspace/big.log", len(got)) == more
    assert pod.read_from("/workspace/big.log", len(got) + len(more)) == b""
    assert pod.read_from("/workspace/none.log", 0) == b""


@pytest.mark.parametrize("cut", ["drop_connections", "restart", "client_socket"])
def test_connection_cut_mid_run_loses_and_repeats_no_line(sshd, ssh_pod_factory, cut):
    pod = ssh_pod_factory()
    lch = launch(body="for i in $(seq 1 150); do echo line-$i; sleep 0.01; done")
    pod.start(lch)
    cuts = []

    def on_chunk(got: bytes) -> None:
        if not cuts and got.count(b"\n") >= 20:
            cuts.append(got.count(b"\n"))
            if cut == "client_socket":
                pod.transport.drop()
            else:
                getattr(sshd, cut)()

    log = follow(pod, lch, on_chunk=on_chunk)
    assert cuts and cuts[0] < 150
    assert log.decode().splitlines() == [f"line-{i}" for i in range(1, 151)]
    assert pod.transport.reconnects >= 1
    assert wait_exit(pod, lch) == 0


def test_kill_ends_the_remote_process_group(ssh_pod_factory, tmp_path):
    pod = ssh_pod_factory()
    lch = launch(body="sleep 300 & sleep 301 & (sleep 302; echo never) & echo started; wait")
    pod.start(lch)
    pid_file = tmp_path / "pod/workspace/job/run.exit.pid"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (pid_file.exists() and pod.read_from(lch.log_path, 0)):
        time.sleep(0.05)
    pgid = int(pid_file.read_text())
    assert len(group_alive(pgid)) >= 4
    pod.kill(lch)
    assert wait_exit(pod, lch) != 0
    assert group_alive(pgid) == []
    assert pod.ended_by(lch) == "interrupted"
    assert b"never" not in pod.read_from(lch.log_path, 0)


def test_watchdog_ends_run_at_max_runtime(ssh_pod_factory):
    pod = ssh_pod_factory()
    lch = launch(body="echo going; sleep 60", max_runtime_sec=1, watchdog_interval_sec=0.2)
    started = time.monotonic()
    pod.start(lch)
    assert wait_exit(pod, lch, timeout=15) != 0
    assert time.monotonic() - started < 8
    assert pod.ended_by(lch) == "watchdog:max_runtime"


def test_watchdog_ends_run_when_heartbeat_goes_stale(ssh_pod_factory):
    pod = ssh_pod_factory()
    lch = launch(body="sleep 60", heartbeat_path="/workspace/job/heartbeat", heartbeat_timeout_sec=2,
                 watchdog_interval_sec=0.2)
    pod.start(lch)
    beat_until = time.monotonic() + 3.5
    while time.monotonic() < beat_until:
        assert pod.exit_code(lch) is None  # alive while the client beats
        pod.heartbeat(lch)
        last_beat = time.monotonic()
        time.sleep(0.5)
    assert wait_exit(pod, lch, timeout=15) != 0
    assert time.monotonic() - last_beat >= 1.0  # the limit, less stat's whole-second rounding
    assert pod.ended_by(lch) == "watchdog:heartbeat"


# -- pulls and release --------------------------------------------------------
def test_pull_counts_bytes_honours_excludes_and_delete(ssh_pod_factory, tmp_path):
    pod = ssh_pod_factory()
    remote = tmp_path / "pod/workspace/repo/out"
    write(remote, {"metrics.json": '{"loss": 0.1}', "ckpt/model.pt": "w" * 1000, "tmp/scratch.bin": "s" * 50})
    local = tmp_path / "run_dir/out"
    write(local, {"old.txt": "stale", "keep.log": "excluded"})

    result = pod.pull("/workspace/repo/out/", local, excludes=("tmp/", "*.log"), delete=True)
    assert result.bytes_transferred == len('{"loss": 0.1}') + 1000 and result.files == 2
    assert tree(local) == {"metrics.json": b'{"loss": 0.1}', "ckpt/model.pt": b"w" * 1000, "keep.log": b"excluded"}
    assert pod.pull("/workspace/repo/out/", local, excludes=("tmp/",)).bytes_transferred == 0
    assert pod.pull("/workspace/repo/out", tmp_path / "named", excludes=("tmp/",)).files == 2
    assert (tmp_path / "named/out/ckpt/model.pt").exists()

    one = pod.pull("/workspace/repo/out/metrics.json", tmp_path / "single.json")
    assert one == type(one)(len('{"loss": 0.1}'), 1)
    assert (tmp_path / "single.json").read_text() == '{"loss": 0.1}'
    with pytest.raises(FileNotFoundError):
        pod.pull("/workspace/nothing", tmp_path / "x")


def test_release_deletes_only_a_root_it_created(sshd, ssh_pod_factory, tmp_path):
    pod = ssh_pod_factory()
    assert pod.release("delete") == "TERMINATED" and not (tmp_path / "pod").exists()
    (tmp_path / "theirs").mkdir()
    pod = ssh_pod_factory(root=str(tmp_path / "theirs"))
    assert pod.release("delete") == "RUNNING" and (tmp_path / "theirs").exists()
    pod = ssh_pod_factory(root=str(tmp_path / "mine"))
    assert pod.release("stop") == "RUNNING" and (tmp_path / "mine/workspace").is_dir()


def test_unwritable_mount_without_a_root_is_a_clear_error(sshd, tmp_path):
    from podmagic.backends.base import BackendError
    from podmagic.backends.ssh.backend import SSHBackend

    backend = SSHBackend(sshd.host_spec, known_hosts=tmp_path / "kh", key_path=str(sshd.client_key))
    with pytest.raises(BackendError, match="PODMAGIC_SSH_ROOT"):
        backend.provision(pod_request(volume_mount="/proc/podmagic-nowhere"), lambda *a, **k: None)


def test_pod_root_from_the_server_environment(tmp_path):
    from podmagic.backends.ssh.backend import SSHBackend
    from podmagic.testing.sshd import SSHServer

    with SSHServer(tmp_path / "sshd", pod_root=tmp_path / "podA", home=tmp_path / "h") as server:
        backend = SSHBackend(server.host_spec, known_hosts=tmp_path / "kh", key_path=str(server.client_key))
        pod = backend.provision(pod_request(), lambda *a, **k: None)
        pod.write_file("/workspace/hello.txt", b"hi", 0o644)
        assert (tmp_path / "podA/workspace/hello.txt").read_bytes() == b"hi"
        assert pod.release("delete") == "TERMINATED"


# -- end to end through the runner -------------------------------------------
PROJECT_TRAIN = """\
import os, sys, time
print("hello from", sys.version.split()[0], flush=True)
os.makedirs("out", exist_ok=True)
open("out/metrics.json", "w").write('{"loss": 0.5}')
if os.environ.get("STARTED"):
    open(os.environ["STARTED"], "w").write(str(os.getpgrp()))
    time.sleep(120)
"""


def _pinnable_python() -> str | None:
    versions = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
    found = sorted(p.name for p in versions.glob("3.*.*")) if versions.is_dir() else []
    return "3.12.1" if "3.12.1" in found else (found[-1] if found else None)


@pytest.fixture(scope="module")
def uv_env(tmp_path_factory) -> dict[str, str]:
    """What a warm pod image provides: uv on PATH and an interpreter source (offline mirror)."""
    from uv import find_uv_bin

    version = _pinnable_python()
    url = os.environ.get("UV_PYTHON_DOWNLOADS_JSON_URL")
    if url is None:
        if version is None:
            pytest.skip("no local interpreter to mirror for an offline `uv python install`")
        mirror = Path(__file__).resolve().parents[1] / "scripts" / "python-mirror"
        out = subprocess.run([sys.executable, str(mirror), version], capture_output=True, text=True, check=True)
        url = out.stdout.strip().split("=", 1)[1]
    base = tmp_path_factory.mktemp("uv")
    return {
        "UV_PYTHON_DOWNLOADS_JSON_URL": url,
        "UV_PYTHON_INSTALL_DIR": str(base / "python"),
        "UV_CACHE_DIR": str(base / "cache"),
        "PATH": f"{Path(find_uv_bin()).parent}:/usr/local/bin:/usr/bin:/bin",
        "_VERSION": version or "3.12",
    }


def _project(root: Path) -> Path:
    return git_project(root, {"train.py": PROJECT_TRAIN, "pyproject.toml": '[project]\nname = "p"\nversion = "0"\nrequires-python = ">=3.10"\n'})


def _execute(tmp_path: Path, uv_env: dict, text: str, **execute_kw):
    from podmagic.run import api
    from podmagic.backends.ssh.backend import SSHBackend
    from podmagic.testing.sshd import SSHServer

    env = {k: v for k, v in uv_env.items() if not k.startswith("_")}
    project = _project(tmp_path / "proj")
    events: list = []
    with SSHServer(tmp_path / "sshd", env=env, home=tmp_path / "sshd-home") as server:
        backend = SSHBackend(server.host_spec, root=str(tmp_path / "pod"), known_hosts=tmp_path / "kh",
                             key_path=str(server.client_key))
        prepared = api.start(api.prepare(text, cwd=project, backend="ssh"))
        manifest = api.execute(prepared, backend=backend, listeners=[events.append], **execute_kw)
    return manifest, prepared.plan.run_dir, events


def test_end_to_end_run_with_python_pin(tmp_path, uv_env):
    version = uv_env["_VERSION"]
    text = (f'name: e2e\npod:\n  python_version: "{version}"\nrun: |\n  cd /workspace/repo && uv run python train.py\n'
            'artifacts:\n  - {label: metrics, remote_path: /workspace/repo/out/, local_path: "{run_dir}/out/"}\n'
            'lifecycle: {on_success: delete}\n')
    manifest, run_dir, events = _execute(tmp_path, uv_env, text)
    assert manifest["failed"] is False, manifest["error"]
    assert manifest["backend"] == "ssh" and manifest["exit_code"] == 0
    assert manifest["python_version"] == version and manifest["python_resolved"].startswith(version)
    assert (run_dir / "run.log").read_text().splitlines()[-1] == f"hello from {manifest['python_resolved']}"
    (art,) = manifest["artifacts"]
    assert art["status"] == "success" and art["bytes_transferred"] == len('{"loss": 0.5}')
    assert (run_dir / "out/metrics.json").read_text() == '{"loss": 0.5}'
    assert manifest["pod_final_state"] == "TERMINATED" and not (tmp_path / "pod").exists()
    kinds = [e.kind for e in events]
    assert "ssh_host_key_trusted" in kinds and kinds.index("python_resolved") < kinds.index("run_started")


def test_end_to_end_stop_kills_the_remote_job(tmp_path, uv_env):
    import threading

    cancel = threading.Event()
    started = tmp_path / "pod/workspace/started"

    def stop_when_started():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not started.exists():
            time.sleep(0.05)
        cancel.set()

    threading.Thread(target=stop_when_started, daemon=True).start()
    text = "name: stopme\nrun: |\n  cd /workspace/repo && STARTED=/workspace/started python3 train.py\nlifecycle: {on_failure: preserve}\n"
    manifest, run_dir, _ = _execute(tmp_path, uv_env, text, cancel=cancel)
    assert manifest["failed"] is True and manifest["interrupted"] is True, manifest["error"]
    pgid = int(started.read_text())
    assert group_alive(pgid) == []
    assert (run_dir / "run.log").read_text().startswith("hello from")


def test_cli_run_through_an_alias_with_a_secret(tmp_path, uv_env):
    """`podmagic run --backend ssh --host ALIAS`: ~/.ssh/config, podmagic's known_hosts, secret masked."""
    from podmagic.run import store
    from podmagic.testing.sshd import SSHServer

    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    project = _project(tmp_path / "proj")
    (project / "job.yaml").write_text(
        "name: cli\nsecrets:\n  - {name: hf, destination: /workspace/secrets/env, env: [HF_TOKEN]}\n"
        "run: |\n  . /workspace/secrets/env && echo token=$HF_TOKEN && cd /workspace/repo && python3 train.py\n"
        "lifecycle: {on_success: preserve}\n"
    )
    token = "hf_VerySecretValue123"
    env_host = {k: v for k, v in uv_env.items() if not k.startswith("_")}
    with SSHServer(tmp_path / "sshd", pod_root=tmp_path / "pod", env=env_host, home=tmp_path / "h") as server:
        (home / ".ssh/config").write_text(
            f"Host gpubox\n  HostName {server.host}\n  Port {server.port}\n  User {server.user}\n"
            f"  IdentityFile {server.client_key}\n"
        )
        env = {**os.environ, "HOME": str(home), "HF_TOKEN": token, "PODMAGIC_BACKEND": "ssh"}
        env.pop("PODMAGIC_SSH_ROOT", None)
        proc = subprocess.run([sys.executable, "-m", "podmagic.ui.cli", "run", "job.yaml", "--host", "gpubox"],
                              cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (home / ".config/podmagic/known_hosts").read_text().count("ssh-ed25519") == 1
    secret_file = tmp_path / "pod/workspace/secrets/env"
    assert os.stat(secret_file).st_mode & 0o777 == 0o600 and token in secret_file.read_text()
    (run_dir,) = list(store.iter_run_dirs(project))
    manifest = store.read_json(run_dir / store.MANIFEST)
    assert manifest["backend"] == "ssh" and manifest["exit_code"] == 0
    assert "token=" in (run_dir / "run.log").read_text()
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert token not in path.read_text(errors="replace"), path
    assert token not in proc.stdout + proc.stderr


def test_key_from_the_agent(sshd, ssh_pod_factory, tmp_path, monkeypatch):
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(sshd.client_key)], env=env, check=True, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        pod = ssh_pod_factory(key_path=str(tmp_path / "no-such-key"))
        assert pod.run("echo agent", timeout=20).output == "agent\n"
    finally:
        agent.terminate()
        agent.wait()


def test_no_usable_key_is_a_clear_error(sshd, ssh_pod_factory, tmp_path, monkeypatch):
    from podmagic.backends.base import BackendError

    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    with pytest.raises(BackendError, match="authentication .* failed.*ssh.key_path"):
        ssh_pod_factory(key_path=str(tmp_path / "no-such-key"))
