"""The SSH transfer engine's fast paths: a push archived by this machine's GNU tar, a single-file pull
as plain bytes, and the pod's job end noticed through one waiting channel. Real sshd on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

import podmagic.backends.ssh.sync as sync
from podmagic.backends.base import Launch
from podmagic.backends.ssh.transport import SSHTransport

from sshd_fixtures import pod_request, requires_sshd, ssh_events, ssh_pod_factory, sshd  # noqa: F401

pytestmark = [requires_sshd, pytest.mark.e2e]


def _tree(root):
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode & 0o777, int(p.stat().st_mtime))
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.skipif(not sync._gnu_tar(), reason="no GNU tar on this machine")
def test_system_tar_push_mirrors_modes_and_mtimes_and_survives_a_drop(ssh_pod_factory, tmp_path, monkeypatch):
    pod = ssh_pod_factory()
    src = tmp_path / "src"
    for i in range(300):
        path = src / f"d{i % 7}" / f"f{i:03d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(i) * (100 + i))
    os.chmod(src / "d1" / "f001.txt", 0o755)
    real, sent = SSHTransport.stream_in, []

    def flaky_stream_in(self, command, produce):
        def dropping(writer):
            if not sent:
                sent.append(1)
                writer.write(b"\0" * 10)
                self.drop()  # the link dies while the archive streams
            produce(writer)
        return real(self, command, dropping)

    monkeypatch.setattr(SSHTransport, "stream_in", flaky_stream_in)
    result = pod.push(src, "/workspace/repo", files=None, excludes=(), delete=True)
    dest = tmp_path / "pod" / "workspace" / "repo"
    assert _tree(dest) == _tree(src) and result.files == 300
    assert pod.transport.reconnects == 1
    again = pod.push(src, "/workspace/repo", files=None, excludes=(), delete=True)
    assert again.bytes_transferred == 0  # whole-second mtimes: the quick check sees nothing changed


def test_a_first_push_makes_its_directories_first_with_their_modes_and_never_sends_a_symlink_as_one(
        ssh_pod_factory, tmp_path):
    """The archive opens with the directories the pod lacks, parents first, carrying their local modes (as
    rsync -a makes them); a symlink among a file's parents is not one of them: the pod gets a directory."""
    pod = ssh_pod_factory()
    src = tmp_path / "src"
    (src / "data" / "private").mkdir(parents=True)
    (src / "data" / "private" / "x.txt").write_text("x")
    (src / "data" / "y.txt").write_text("y")
    os.chmod(src / "data" / "private", 0o750)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "z.txt").write_text("z")
    (src / "link").symlink_to(tmp_path / "outside")
    files = ["data/private/x.txt", "data/y.txt", "link/z.txt"]
    pod.push(src, "/workspace/repo", files=files, excludes=(), delete=False)
    dest = tmp_path / "pod" / "workspace" / "repo"
    assert (dest / "data" / "private").stat().st_mode & 0o777 == 0o750
    assert not (dest / "link").is_symlink() and (dest / "link" / "z.txt").read_text() == "z"
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == sorted(files)


def test_single_file_pull_is_bytes_with_mode_and_mtime(ssh_pod_factory, tmp_path):
    pod = ssh_pod_factory()
    far = tmp_path / "pod" / "workspace" / "out" / "model.bin"
    far.parent.mkdir(parents=True)
    data = os.urandom(3 << 20)
    far.write_bytes(data)
    os.chmod(far, 0o640)
    os.utime(far, (1_700_000_000, 1_700_000_000))
    local = tmp_path / "got"
    local.mkdir()
    (local / "model.bin").symlink_to(tmp_path / "elsewhere")  # replaced, never followed
    moved = pod.pull("/workspace/out/model.bin", local)
    got = local / "model.bin"
    assert moved.bytes_transferred == len(data) and got.read_bytes() == data and not got.is_symlink()
    assert got.stat().st_mode & 0o777 == 0o640 and int(got.stat().st_mtime) == 1_700_000_000
    assert not (tmp_path / "elsewhere").exists() and not list(local.glob(".*part"))
    assert pod.pull("/workspace/out/model.bin", local).bytes_transferred == 0


requires_ssh_client = pytest.mark.skipif(not shutil.which("ssh"), reason="no OpenSSH client on this machine")


def _far_tree(tmp_path):
    far = tmp_path / "pod" / "workspace" / "out"
    (far / "ckpt").mkdir(parents=True)
    (far / "model.bin").write_bytes(os.urandom(3 << 20))
    os.chmod(far / "model.bin", 0o640)
    os.utime(far / "model.bin", (1_700_000_000, 1_700_000_000))
    for i in range(5):
        (far / "ckpt" / f"step{i}.pt").write_bytes(os.urandom(300_000 + i))
    return far


@requires_ssh_client
def test_a_bulk_pull_goes_through_the_systems_ssh_with_modes_and_mtimes(ssh_pod_factory, tmp_path, monkeypatch):
    """A pull of many bytes runs through OpenSSH's `ssh` (same key, podmagic's known-hosts file checked
    strictly): one file as bytes, a directory as an archive, each with its mode and mtime."""
    monkeypatch.setattr(sync, "BULK_BYTES", 1 << 20)
    pod = ssh_pod_factory()
    far = _far_tree(tmp_path)
    local = tmp_path / "got"
    local.mkdir()
    moved = pod.pull("/workspace/out/model.bin", local)
    assert moved.bytes_transferred == 3 << 20 and pod.transport.openssh_pulls == 1
    assert _tree(local) == {"model.bin": _tree(far)["model.bin"]}
    back = tmp_path / "back"
    result = pod.pull("/workspace/out/", back)
    assert _tree(back) == _tree(far) and result.files == 6 and pod.transport.openssh_pulls == 2
    assert pod.pull("/workspace/out/", back).bytes_transferred == 0 and pod.transport.openssh_pulls == 2


@requires_ssh_client
def test_a_host_key_that_ssh_does_not_find_recorded_leaves_the_pull_to_paramiko(ssh_pod_factory, tmp_path,
                                                                                  monkeypatch):
    """The system's `ssh` trusts only podmagic's known-hosts file: with another key recorded there for the
    host, it refuses to connect, and the pull goes on over the connection that checked the key itself
    (and does not try `ssh` again)."""
    monkeypatch.setattr(sync, "BULK_BYTES", 1 << 20)
    pod = ssh_pod_factory()
    far = _far_tree(tmp_path)
    known = pod.transport.known_hosts
    name, key_type, _ = known.read_text().split("\n")[0].split(" ", 2)
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", key_type.removeprefix("ssh-").split("-")[0], "-N", "", "-f",
                    str(other)], check=True)
    known.write_text(f"{name} {key_type} {(other.with_suffix('.pub')).read_text().split()[1]}\n")
    back = tmp_path / "back"
    assert pod.pull("/workspace/out/", back).files == 6 and _tree(back) == _tree(far)
    assert pod.transport.openssh_refused and pod.transport.openssh_pulls == 0


def test_the_end_of_a_detached_job_arrives_on_a_waiting_channel(ssh_pod_factory, tmp_path):
    pod = ssh_pod_factory()
    tmp = "/workspace/.podmagic/w"
    launch = Launch(script_path=f"{tmp}/run.sh", log_path=f"{tmp}/run.log", exit_path=f"{tmp}/run.exit",
                    workdir="/workspace", body="sleep 1; exit 7\n")
    pod.start(launch)
    calls = 0
    deadline = time.monotonic() + 30
    code = None
    while code is None:
        assert time.monotonic() < deadline
        code = pod.wait_exit(launch, 5.0)
        calls += 1
    assert code == 7 and calls == 1  # one blocking wait, woken by the job's end, not by its timeout
