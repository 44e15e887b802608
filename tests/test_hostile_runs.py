"""Hostile runs (issue 7, items 4 and 5) on the local and SSH backends.

4. `CONCURRENT_RUNS` runs started at once from threads (`api.start` +
   `api.execute`) write as many distinct run directories and manifests, and
   each run.log / events.jsonl holds only its own run's lines.
5. An interrupt delivered at each point of `INTERRUPT_POINTS` (every phase
   boundary, inside provisioning, mid-command, mid-run, during the pulls and
   during teardown; a KeyboardInterrupt raised by a listener, which the
   runner calls synchronously, or a real SIGINT) leaves a manifest with
   `interrupted: true`, the lifecycle's `on_failure` applied and the
   KeyboardInterrupt re-raised after teardown.

Every run started here is recorded in `STARTED`; the last test checks that
each one has its manifest (the README's `runs lost`: 0).
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from podmagic import api, store
from podmagic.events import read_events

from sshd_fixtures import requires_sshd

BACKENDS = ["local", pytest.param("ssh", marks=requires_sshd)]
STARTED: list[Path] = []


def _backend(kind: str, tmp_path: Path, server, root: Path | None = None):
    if kind == "local":
        return None
    from podmagic.backends.ssh import SSHBackend

    return SSHBackend(server.host_spec, root=str(root or tmp_path / "pod"), known_hosts=tmp_path / "kh",
                      key_path=str(server.client_key))


@pytest.fixture(scope="module")
def module_sshd(tmp_path_factory):
    from podmagic.testing.sshd import SSHServer

    with SSHServer(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def server(request):
    return request.getfixturevalue("module_sshd") if request.node.callspec.params.get("backend") == "ssh" else None


# ============================================================== 4. concurrency

CONCURRENT_RUNS = 16
LINES = 40
CONCURRENT = """name: conc-{i}
staging: []
run: |
  for k in $(seq 1 %d); do echo "run {i} line $k"; done
lifecycle: {on_success: preserve}
""" % LINES


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_runs_never_interleave(backend, pod_env, project, tmp_path, server):
    barrier = threading.Barrier(CONCURRENT_RUNS)
    results: dict[int, object] = {}

    def one(i: int) -> None:
        try:
            prepared = api.prepare(CONCURRENT, cwd=project, backend=backend, variables=[("i", str(i))])
            barrier.wait(timeout=60)
            prepared = api.start(prepared)
            STARTED.append(prepared.plan.run_dir)
            be = _backend(backend, tmp_path, server, root=tmp_path / "shared-pod")
            results[i] = (api.execute(prepared, backend=be), prepared.plan.run_dir)
        except BaseException as exc:  # noqa: BLE001 - reported below
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(CONCURRENT_RUNS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    errors = {i: r for i, r in results.items() if isinstance(r, BaseException)}
    assert not errors and len(results) == CONCURRENT_RUNS, errors
    run_dirs = {r[1] for r in results.values()}
    assert len(run_dirs) == CONCURRENT_RUNS
    assert len(list(store.iter_run_dirs(project))) == CONCURRENT_RUNS
    for i, (manifest, run_dir) in results.items():
        assert manifest["failed"] is False, manifest["error"]
        assert manifest["job_name"] == f"conc-{i}" and manifest["run_id"] == run_dir.name
        assert store.read_json(run_dir / store.MANIFEST) == manifest
        log = (run_dir / "run.log").read_text().splitlines()
        assert log == [f"run {i} line {k}" for k in range(1, LINES + 1)], f"run {i}'s log is not its own"
        journal = read_events(run_dir / "events.jsonl")
        started = [e for e in journal if e["event"] == "run_started"]
        assert len(started) == 1 and run_dir.name in started[0]["log_path"]
        assert [e["event"] for e in journal].count("run_finished") == 1
        assert store.read_json(run_dir / store.STATUS)["run_id"] == run_dir.name


# ============================================================== 5. interrupt anywhere

INTERRUPT_SPEC = """name: intr
setup:
  - command: echo setup-ran
secrets:
  - {name: s, env: [HOSTILE_SECRET], destination: /workspace/secrets/env}
staging:
  - {label: src, source: src/, destination: /workspace/src/}
preflight:
  - command: echo preflight-ran
run: |
  mkdir -p /workspace/out && echo data > /workspace/out/a.txt
  echo started
  sleep %s
  echo done
artifacts:
  - {label: out, remote_path: /workspace/out/, local_path: "{run_dir}/out/", required: false}
lifecycle: {on_success: preserve, on_failure: delete}
"""


@dataclass(frozen=True)
class Point:
    id: str
    kind: str | dict[str, str]
    """The event at which the interrupt arrives (per backend when a dict)."""
    match: tuple[str, str] | None = None
    """(key, text): the event's data[key] must contain text."""
    how: str = "raise"
    """raise: the listener raises KeyboardInterrupt; sigint: it sends this process a real SIGINT."""
    pod: bool = True
    """Whether a pod had been handed to the runner (so the lifecycle applies)."""
    ran: bool = False
    """Whether the job had started (so its log is pulled)."""
    logged: bool = True
    """Whether the job had surely printed `started` (else its log may still be empty)."""
    failed_before: bool = True
    """Whether the run had failed before the interrupt (False: it arrives in the teardown of a success)."""
    sleep: str = "30"


INTERRUPT_POINTS = [
    Point("provision", "phase_started", ("phase", "provision"), pod=False),
    Point("inside-provision", {"local": "gpu_selected", "ssh": "ssh_connected"}, pod=False),
    Point("setup", "phase_started", ("phase", "setup")),
    Point("setup-command", "output", ("text", "setup-ran")),
    Point("secrets", "phase_started", ("phase", "secrets")),
    Point("staging", "phase_started", ("phase", "staging")),
    Point("staging-pushed", "staging_pushed"),
    Point("preflight", "phase_started", ("phase", "preflight")),
    Point("preflight-command", "step_started", ("label", "preflight[0]")),
    Point("run", "phase_started", ("phase", "run")),
    Point("run-started", "run_started", ran=True, logged=False),
    Point("mid-run", "output", ("text", "started"), ran=True),
    Point("mid-run-sigint", "output", ("text", "started"), how="sigint", ran=True),
    Point("pull", "artifact_pull_started", ("label", "out"), ran=True, failed_before=False, sleep="0"),
    Point("pull-sigint", "artifact_pull_started", ("label", "out"), how="sigint", ran=True, failed_before=False,
          sleep="0"),
    Point("teardown-sigint", "lifecycle_applied", how="sigint", ran=True, failed_before=False, sleep="0"),
    Point("teardown-raise", "run_finished", ran=True, failed_before=False, sleep="0"),
]


class Interrupter:
    def __init__(self, point: Point, backend: str):
        self.point, self.backend = point, backend
        self.fired_at: int | None = None
        self.seen: list[str] = []

    def __call__(self, event) -> None:
        self.seen.append(event.kind)
        p = self.point
        kind = p.kind[self.backend] if isinstance(p.kind, dict) else p.kind
        if self.fired_at is not None or event.kind != kind:
            return
        if p.match and p.match[1] not in str(event.data.get(p.match[0], "")):
            return
        self.fired_at = len(self.seen)
        if p.how == "sigint":
            os.kill(os.getpid(), signal.SIGINT)
        else:
            raise KeyboardInterrupt


def _interrupt_project(project: Path) -> Path:
    (project / "src").mkdir()
    (project / "src" / "data.txt").write_text("x\n")
    return project


@pytest.mark.parametrize("point", INTERRUPT_POINTS, ids=lambda p: p.id)
@pytest.mark.parametrize("backend", BACKENDS)
def test_interrupt_anywhere(point, backend, pod_env, project, tmp_path, server, monkeypatch):
    monkeypatch.setenv("HOSTILE_SECRET", "interrupt-secret")
    prepared = api.start(api.prepare(INTERRUPT_SPEC % point.sleep, cwd=_interrupt_project(project),
                                     backend=backend))
    STARTED.append(prepared.plan.run_dir)
    run_dir = prepared.plan.run_dir
    listener = Interrupter(point, backend)
    with pytest.raises(KeyboardInterrupt):
        api.execute(prepared, listeners=[listener], backend=_backend(backend, tmp_path, server))
    assert listener.fired_at is not None, f"the interrupt point was never reached: {listener.seen}"
    manifest = store.read_json(run_dir / store.MANIFEST)
    assert manifest is not None, "no manifest after the interrupt"
    kinds = [e["event"] for e in read_events(run_dir / "events.jsonl")]
    assert kinds[-1] == "run_finished" and kinds.count("run_finished") == 1
    if point.failed_before or point.id.startswith("pull"):
        assert manifest["interrupted"] is True and manifest["failed"] is True, manifest
        assert "interrupted" in manifest["error"]
        assert store.read_json(run_dir / store.STATUS)["state"] == "interrupted"
    else:  # a Ctrl-C after the lifecycle was applied: the outcome stands, the interrupt comes after
        assert manifest["failed"] is False and manifest["interrupted"] is False
    sandbox = (Path(os.environ["PODMAGIC_LOCAL_ROOT"]) / "pods" / f"local-{prepared.plan.run_id}"
               if backend == "local" else tmp_path / "pod")
    if not point.pod:
        assert manifest["pod_final_state"] is None and manifest["pod_id"] is None
        assert not sandbox.exists(), "a pod made before the interrupt was left behind"
    elif manifest["failed"]:
        assert "lifecycle_applied" in kinds
        assert manifest["pod_final_state"] == "TERMINATED" and not sandbox.exists()  # on_failure: delete
    else:
        assert manifest["pod_final_state"] == "RUNNING" and sandbox.exists()  # on_success: preserve
    if point.ran:
        log = (run_dir / "run.log").read_text()
        assert "started" in log if point.logged else log in ("", "started\n")
        if not point.failed_before:
            assert (run_dir / "out" / "a.txt").read_text() == "data\n"
    else:
        assert "run_started" not in kinds


def test_no_run_was_lost():
    """The README's `runs lost` count: every run started in this module has its manifest."""
    lost = [d for d in STARTED if store.read_json(d / store.MANIFEST) is None]
    assert lost == []


RUNS_STARTED_PLANNED = CONCURRENT_RUNS * 2 + len(INTERRUPT_POINTS) * 2
