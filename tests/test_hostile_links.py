"""Hostile links (issue 12): logins that drop are retried; every lost link is one event and one notice.

Against a real sshd on 127.0.0.1: the server kills its per-connection processes (what a network
cut or a host under load does) during authentication, between operations, and during a run.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from podmagic.backends.base import BackendError
from podmagic.backends.ssh import transport as transport_mod
from podmagic.backends.ssh.backend import open_pod
from podmagic.backends.ssh.hosts import SSHTarget
from podmagic.backends.ssh.transport import SSHTransport, TransportOptions
from podmagic.run import api

from helpers import Recorder
from sshd_fixtures import requires_sshd
from test_hostile import hostile_env, module_sshd  # noqa: F401

pytestmark = requires_sshd
IDLE_DROPS = 14
RUN_DROPS = 4


class Said:
    def __init__(self):
        self.events: list[tuple[str, dict]] = []

    def __call__(self, kind, **data):
        self.events.append((kind, data))

    def of(self, kind):
        return [d for k, d in self.events if k == kind]


def _target(server, key=None) -> SSHTarget:
    return SSHTarget(host=server.host, port=server.port, user=server.user,
                     key_paths=(str(key or server.client_key),))


def _flaky_logins(monkeypatch, server, drops: int) -> list[int]:
    """The server drops the next `drops` connections in the middle of authentication."""
    left = [drops]
    real = SSHTransport._authenticate

    def authenticate(self, transport):
        if left[0] > 0:
            left[0] -= 1
            server.drop_connections()  # the session's monitor dies: the link breaks at the next auth message
        return real(self, transport)

    monkeypatch.setattr(SSHTransport, "_authenticate", authenticate)
    monkeypatch.setattr(transport_mod, "BACKOFF", (0.05, 0.1, 0.2))
    return left


def test_a_login_that_drops_is_retried_within_the_budget(module_sshd, tmp_path, monkeypatch):
    said = Said()
    left = _flaky_logins(monkeypatch, module_sshd, 3)
    started = time.monotonic()
    pod = open_pod(_target(module_sshd), pod_id="p", root=str(tmp_path / "pod"), known_hosts=tmp_path / "kh",
                   options=TransportOptions(reconnect_timeout_sec=30, use_agent=False), emit=said)
    try:
        assert left == [0] and time.monotonic() - started < 30
        assert pod.run("echo in", timeout=20).output == "in\n"
        assert len(said.of("ssh_retry")) == 3 and not said.of("ssh_reconnect")  # never connected before
        assert all("dropped during authentication" in d["error"] for d in said.of("ssh_retry"))
        # a link that is lost later, whose new logins drop twice too: one reconnect, two more retries
        _flaky_logins(monkeypatch, module_sshd, 3)
        module_sshd.drop_connections()
        assert pod.run("echo again", timeout=20).output == "again\n"
        assert len(said.of("ssh_reconnect")) == 1 and pod.transport.reconnects == 1
    finally:
        pod.transport.close()


def test_logins_that_keep_dropping_say_so_when_the_budget_is_spent(module_sshd, tmp_path, monkeypatch):
    _flaky_logins(monkeypatch, module_sshd, 10_000)
    t = SSHTransport(_target(module_sshd), known_hosts=tmp_path / "kh",
                     options=TransportOptions(reconnect_timeout_sec=1.0, use_agent=False))
    with pytest.raises(ConnectionError, match="dropped during authentication"):
        t.retrying(t.connect)


def test_a_refused_key_is_not_retried(module_sshd, tmp_path):
    from podmagic.testing.sshd import keygen

    stranger = keygen(tmp_path / "stranger")
    t = SSHTransport(_target(module_sshd, stranger), known_hosts=tmp_path / "kh",
                     options=TransportOptions(reconnect_timeout_sec=30, use_agent=False))
    started = time.monotonic()
    with pytest.raises(BackendError, match="authentication to .* failed"):
        t.retrying(t.connect)
    assert time.monotonic() - started < 10


def _wait_dead(transport: SSHTransport) -> None:
    deadline = time.monotonic() + 5
    while transport._transport is not None and transport._transport.is_active() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_every_link_lost_between_operations_is_one_event(module_sshd, tmp_path):
    said = Said()
    pod = open_pod(_target(module_sshd), pod_id="p", root=str(tmp_path / "pod"), known_hosts=tmp_path / "kh",
                   options=TransportOptions(use_agent=False), emit=said)
    try:
        for i in range(IDLE_DROPS):
            module_sshd.drop_connections()
            _wait_dead(pod.transport)
            assert pod.run(f"echo {i}", timeout=20).output == f"{i}\n"
        assert pod.transport.reconnects == IDLE_DROPS
        assert [d["reconnect"] for d in said.of("ssh_reconnect")] == list(range(1, IDLE_DROPS + 1))
    finally:
        pod.transport.close()


def test_links_lost_during_a_run_are_events_and_notices(module_sshd, hostile_env, tmp_path):
    """A real run on the SSH backend: the link is cut RUN_DROPS times while the job runs."""
    from podmagic.backends.ssh.backend import SSHBackend
    from podmagic.ui.widgets import RunView

    project = tmp_path / "proj"
    project.mkdir()
    text = ("name: links\nstaging: []\nrun: |\n  for i in $(seq 1 40); do echo line-$i; sleep 0.2; done\n"
            "lifecycle: {on_success: delete}\n")
    prepared = api.start(api.prepare(text, cwd=project, backend="ssh"))
    view = RunView(prepared.plan.run_id, "links", "ssh")
    rec = Recorder()
    cut = threading.Event()

    def cutter(event):
        if event.kind == "phase_started" and event.data.get("phase") == "run" and not cut.is_set():
            cut.set()

            def go():
                for _ in range(RUN_DROPS):
                    time.sleep(1.0)
                    module_sshd.drop_connections()

            threading.Thread(target=go, daemon=True).start()

    be = SSHBackend(module_sshd.host_spec, root=str(tmp_path / "pod"), known_hosts=tmp_path / "kh",
                    key_path=str(module_sshd.client_key))
    manifest = api.execute(prepared, listeners=[rec, view.on_event, cutter], backend=be)
    assert manifest["failed"] is False, manifest["error"]
    log = (prepared.plan.run_dir / "run.log").read_text()
    assert log == "".join(f"line-{i}\n" for i in range(1, 41))  # nothing lost or repeated
    reconnects = [e for e in rec.events if e.kind == "ssh_reconnect"]
    assert len(reconnects) == RUN_DROPS, [e.data for e in reconnects]
    assert [e.data["reconnect"] for e in reconnects] == list(range(1, RUN_DROPS + 1))
    assert len([n for n in view.notes if n.startswith("ssh reconnect")]) == RUN_DROPS


def counts() -> dict[str, int]:
    return {"dropped_logins_healed": 3 + 3, "links_cut": IDLE_DROPS + RUN_DROPS + 1}
