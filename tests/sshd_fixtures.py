"""Fixtures for tests against a real OpenSSH server (owned by the SSH backend tests).

`sshd` is a fresh `SSHServer` per test (it starts in a few tens of ms),
with its own HOME so sessions never read the machine user's `.bashrc`;
`ssh_pod_factory` provisions `SSHBackend` pods against it with a private
known-hosts file and a pod root under the test's tmp dir.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest

from podmagic.backends.base import PodRequest
from podmagic.testing.sshd import SSHD, SSHServer

requires_sshd = pytest.mark.skipif(
    not (Path(SSHD).exists() and shutil.which("ssh-keygen")),
    reason="OpenSSH server not installed (apt-get install -y openssh-server)",
)


def pod_request(run_id: str = "t", **kw) -> PodRequest:
    return PodRequest(run_id=run_id, image="none", datacenters=(), gpu_order=(), **kw)


@pytest.fixture
def sshd(tmp_path: Path):
    server = SSHServer(tmp_path / "sshd", home=tmp_path / "sshd-home")
    with server:
        yield server


@pytest.fixture
def ssh_events() -> list:
    return []


@pytest.fixture
def ssh_pod_factory(sshd: SSHServer, tmp_path: Path, ssh_events: list) -> Callable:
    from podmagic.backends.ssh.backend import SSHBackend

    pods = []

    def make(**kw):
        kw.setdefault("root", str(tmp_path / "pod"))
        kw.setdefault("known_hosts", tmp_path / "known_hosts")
        kw.setdefault("key_path", str(sshd.client_key))
        host = kw.pop("host", sshd.host_spec)
        backend = SSHBackend(host, **kw)
        pod = backend.provision(pod_request(), lambda kind, **data: ssh_events.append((kind, data)))
        pods.append(pod)
        return pod

    yield make
    for pod in pods:
        pod.transport.close()
