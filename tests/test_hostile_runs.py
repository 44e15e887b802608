"""Hostile runs (issue 7, items 4 and 5) on the local and SSH backends (and the RunPod simulator).

4. `CONCURRENT_RUNS` runs started at once from threads (`api.start` +
   `api.execute`) write as many distinct run directories and manifests, and
   each run.log / events.jsonl holds only its own run's lines.
5. An interrupt delivered at each point of `INTERRUPT_POINTS` (every phase
   boundary, inside provisioning, mid-command, mid-run, during the pulls and
   during teardown; a KeyboardInterrupt raised by a listener, which the
   runner calls synchronously, or a real SIGINT) leaves a manifest with
   `interrupted: true`, the lifecycle's `on_failure` applied and the
   KeyboardInterrupt re-raised after teardown. `RUNPOD_POINTS` (a subset:
   each simulated pod is a real sshd) run through the RunPod simulator.

A pod root (`PODMAGIC_LOCAL_ROOT`, the ssh root) that is not one shell word
is refused before any command runs (`POD_ROOTS`).

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

from podmagic.run import api, store
from podmagic.run.events import read_events

from sshd_fixtures import requires_sshd
from test_hostile import RUNPOD_POD, module_sshd, sim  # noqa: F401 - shared fixtures

pytestmark = pytest.mark.e2e  # real backends end to end: not in the fast lane (-m "not e2e")

BACKENDS = ["local", pytest.param("ssh", marks=requires_sshd)]
STARTED: list[Path] = []


def _backend(kind: str, tmp_path: Path, server, root: Path | None = None):
    if kind == "local":
        return None
    if kind == "runpod":
        from podmagic.backends.runpod.backend import RunPodBackend

        return RunPodBackend(key_path=str(server.client_key), poll=(0.05, 0.2), retry_delays=(0.05,) * 4)
    from podmagic.backends.ssh.backend import SSHBackend

    return SSHBackend(server.host_spec, root=str(root or tmp_path / "pod"), known_hosts=tmp_path / "kh",
                      key_path=str(server.client_key))


@pytest.fixture
def server(request):
    backend = request.node.callspec.params.get("backend")
    return request.getfixturevalue({"ssh": "module_sshd", "runpod": "sim"}[backend]) if backend != "local" else None


# ============================================================== 4. concurrency

CONCURRENT_RUNS = 16
LINES = 40
CONCURRENT = """name: conc-{i}
staging: []
setup:
  - command: echo "setup of {i}"
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
        phases = (run_dir / "phases.log").read_text()
        assert phases == f'$ [setup[0]] echo "setup of {i}"\nsetup of {i}\n', phases
        journal = read_events(run_dir / "events.jsonl")
        started = [e for e in journal if e["event"] == "run_started"]
        assert len(started) == 1 and run_dir.name in started[0]["log_path"]
        assert [e["event"] for e in journal].count("run_finished") == 1
        assert store.read_json(run_dir / store.STATUS)["run_id"] == run_dir.name


# ============================================================== 5. interrupt anywhere

INTERRUPT_SPEC = """name: intr
%ssetup:
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
    Point("inside-provision", "inside-provision", pod=False),
    Point("setup", "phase_started", ("phase", "setup")),
    Point("setup-command", "output", ("text", "setup-ran")),
    Point("secrets", "phase_started", ("phase", "secrets")),
    Point("staging", "phase_started", ("phase", "staging")),
    Point("staging-pushed", "staging_pushed"),
    Point("preflight", "phase_started", ("phase", "preflight")),
    Point("pin", "step_started", ("label", "python pin")),
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
RUNPOD_POINTS = ("provision", "inside-provision", "staging", "pin", "mid-run", "pull", "teardown-sigint")
PIN = '  python_version: "3.12.1"\n'

INSIDE_PROVISION = {"local": "gpu_selected", "ssh": "ssh_connected", "runpod": "pod_created"}
CASES = [pytest.param(b, p, id=f"{b}-{p.id}", marks=[requires_sshd] if b == "ssh" else [])
         for b in ("local", "ssh") for p in INTERRUPT_POINTS]
CASES += [pytest.param("runpod", p, id=f"runpod-{p.id}") for p in INTERRUPT_POINTS if p.id in RUNPOD_POINTS]


class Interrupter:
    def __init__(self, point: Point, backend: str):
        self.point, self.backend = point, backend
        self.fired_at: int | None = None
        self.seen: list[str] = []

    def __call__(self, event) -> None:
        self.seen.append(event.kind)
        p = self.point
        kind = INSIDE_PROVISION[self.backend] if p.kind == "inside-provision" else p.kind
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


@pytest.mark.parametrize("backend,point", CASES)
def test_interrupt_anywhere(backend, point, pod_env, project, tmp_path, server, monkeypatch):
    monkeypatch.setenv("HOSTILE_SECRET", "interrupt-secret")
    text = INTERRUPT_SPEC % (RUNPOD_POD + PIN if backend == "runpod" else "pod:\n" + PIN, point.sleep)
    prepared = api.start(api.prepare(text, cwd=_interrupt_project(project), backend=backend))
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
    if backend == "runpod":
        pod_left = lambda: bool(server.live_pods())  # noqa: E731
    else:
        sandbox = (Path(os.environ["PODMAGIC_LOCAL_ROOT"]) / "pods" / f"local-{prepared.plan.run_id}"
                   if backend == "local" else tmp_path / "pod")
        pod_left = sandbox.exists
    if not point.pod:
        assert manifest["pod_final_state"] is None and manifest["pod_id"] is None
        assert not pod_left(), "a pod made before the interrupt was left behind"
    elif manifest["failed"]:
        assert "lifecycle_applied" in kinds
        assert manifest["pod_final_state"] == "TERMINATED" and not pod_left()  # on_failure: delete
    else:
        assert manifest["pod_final_state"] == "RUNNING" and pod_left()  # on_success: preserve
    if point.ran:
        log = (run_dir / "run.log").read_text()
        assert "started" in log if point.logged else log in ("", "started\n")
        if not point.failed_before:
            assert (run_dir / "out" / "a.txt").read_text() == "data\n"
    else:
        assert "run_started" not in kinds


# ============================================================== a hostile machine

POD_ROOTS = [("space", "my pods"), ("dollar-paren", "x$(touch CANARY)"), ("quote", "it's")]


@pytest.mark.parametrize("name,piece", POD_ROOTS, ids=[r[0] for r in POD_ROOTS])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_pod_root_that_is_not_one_shell_word_is_refused(backend, name, piece, pod_env, project, tmp_path,
                                                          server, monkeypatch):
    """The pod root is pasted into commands (`/workspace/...` → `<root>/workspace/...`): it must be a plain path."""
    root = tmp_path / piece
    monkeypatch.setenv("PODMAGIC_LOCAL_ROOT", str(root))
    monkeypatch.chdir(tmp_path)
    text = "staging: []\nsetup: [{command: 'echo hi > /workspace/f'}]\nrun: cat /workspace/f\n"
    prepared = api.start(api.prepare(text, cwd=project, backend=backend))
    STARTED.append(prepared.plan.run_dir)
    be = _backend(backend, tmp_path, server, root=root / "pod")
    manifest = api.execute(prepared, backend=be)
    assert manifest["failed"] is True and "plain path" in manifest["error"], manifest["error"]
    assert manifest["pod_id"] is None and not list(root.glob("pods/*")) and not (root / "pod").exists()
    assert not list(tmp_path.rglob("CANARY")) and not list(project.rglob("CANARY"))
    assert "step_started" not in [e["event"] for e in read_events(prepared.plan.run_dir / "events.jsonl")]


LAUNCHER_KILLED = """staging: []
run: |
  echo started; kill -KILL $PPID; sleep 5; echo late
budget: {max_runtime_minutes: 1}
lifecycle: {on_failure: preserve}
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_launcher_killed_fails_the_run_at_once_and_ends_its_job(backend, pod_env, project, tmp_path, server):
    """The job kills the launcher (as the out-of-memory killer might): no exit file will ever come. The
    run fails at once, saying so, instead of waiting out its time budget (on the local pod it spun a core
    all that time), and the orphaned job is ended: it never prints its last line."""
    import time

    prepared = api.start(api.prepare(LAUNCHER_KILLED, cwd=project, backend=backend))
    STARTED.append(prepared.plan.run_dir)
    started = time.monotonic()
    manifest = api.execute(prepared, backend=_backend(backend, tmp_path, server))
    assert time.monotonic() - started < 5  # the SSH pod looks at its launcher every 2 s
    assert manifest["failed"] is True and "launcher ended without recording the job's exit code" in \
        manifest["error"], manifest["error"]
    assert manifest["pod_final_state"] == "RUNNING"  # on_failure: preserve, so its log can be read below
    sandbox = Path(os.environ["PODMAGIC_LOCAL_ROOT"]) / "pods" / f"local-{prepared.plan.run_id}" \
        if backend == "local" else tmp_path / "pod"
    time.sleep(max(0.0, started + 6.5 - time.monotonic()))  # past the job's `sleep 5`, had it survived
    (pod_log,) = [p for p in sandbox.rglob("run.log") if prepared.plan.run_id in str(p)]
    assert pod_log.read_text() == "started\n"
    assert (prepared.plan.run_dir / "run.log").read_text() == "started\n"
    deadline = time.monotonic() + 10  # the watchdog looks every 5 s; the sampler was TERMed by the teardown
    while _processes_of(prepared.plan.run_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_of(prepared.plan.run_id) == []


def _processes_of(run_id: str) -> list[str]:
    """The command lines of live processes naming `run_id` (the pod's launcher, sampler, watchdog)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if run_id in text:
            found.append(text)
    return found


def test_no_run_was_lost():
    """The README's `runs lost` count: every run started in this module has its manifest."""
    lost = [d for d in STARTED if store.read_json(d / store.MANIFEST) is None]
    assert lost == []


