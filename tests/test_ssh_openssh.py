"""The system `ssh` that bulk pulls use: the options it is given, and where it is not used at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from podmagic.backends.ssh import openssh
from podmagic.backends.ssh.hosts import SSHTarget


@pytest.fixture
def ssh_here(monkeypatch):
    monkeypatch.setattr(openssh.shutil, "which", lambda name: f"/usr/bin/{name}")


def _argv(target: SSHTarget, known: str, **kw):
    return openssh.client_argv(target, Path(known), use_agent=kw.get("use_agent", True), connect_timeout_sec=15,
                               keepalive_sec=15)


def test_the_host_key_is_checked_strictly_against_podmagics_file_and_no_config_is_read(ssh_here):
    argv = _argv(SSHTarget(host="10.0.0.5", port=2222, user="root", key_paths=("/keys/id_ed25519",)),
                 "/cfg/known_hosts", use_agent=False)
    options = {argv[i + 1] for i, a in enumerate(argv) if a == "-o"}
    assert argv[1:3] == ["-F", "/dev/null"] and "BatchMode=yes" in options
    assert {"StrictHostKeyChecking=yes", "UserKnownHostsFile=/cfg/known_hosts",
            "GlobalKnownHostsFile=/dev/null", "IdentityAgent=none", "IdentitiesOnly=yes"} <= options
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-l") + 1] == "root"
    assert argv[argv.index("-i") + 1] == "/keys/id_ed25519"


@pytest.mark.parametrize("known, key", [("/my files/known_hosts", "/k/id"), ("/cfg/known_hosts", "/k/%d/id"),
                                        ("/cfg/kh\"x", "/k/id")])
def test_a_path_openssh_would_read_otherwise_leaves_the_pull_to_paramiko(ssh_here, known, key):
    assert _argv(SSHTarget(host="h", key_paths=(key,)), known) is None


def test_no_ssh_on_the_path_means_paramiko(monkeypatch):
    monkeypatch.setattr(openssh.shutil, "which", lambda name: None)
    assert _argv(SSHTarget(host="h"), "/cfg/known_hosts") is None
