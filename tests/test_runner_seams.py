"""The runner's every exit path, driven through the in-memory pod (`podmagic.testing.memory`).

Each case runs a real plan (parsed, built, started in a tmp git project) on a `MemoryPod` whose
commands answer from a table and whose faults fire in one phase, and then checks the three
things every exit path owes: the manifest (on disk, equal to the one returned), the journal, and
exactly one teardown (at most one kill, the log pulled once if the job started, one lifecycle
action, one `run_finished`, last). Interrupts are real SIGINTs delivered to this process.
"""

from __future__ import annotations

import inspect
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from helpers import Recorder, git_project
from podmagic.backends.base import Pod
from podmagic.errors import BackendError, CapacityError
from podmagic.run import api, store
from podmagic.run.events import read_events
from podmagic.run.manifest import status_word
from podmagic.testing.memory import Job, MemoryBackend, MemoryPod, Reply, interrupt

SECRET = "s3cr3t-token-value"
SPEC = """name: seams
pod: {python_version: "3.12.1"}
setup:
  - command: echo setting up
secrets:
  - {name: tok, env: [SEAM_TOKEN], destination: /root/.tok}
preflight:
  - command: echo user preflight
run: |
  python train.py
artifacts:
  - {label: metrics, remote_path: /workspace/repo/out/, local_path: "{run_dir}/out/"}
lifecycle: {on_success: delete, on_failure: stop}
"""
PROBE = (r"uv python find", Reply(0, "3.12.1 /pod/python3.12\n"))
METRICS = {"/workspace/repo/out/metrics.json": b'{"loss": 0.25}\n'}
GOOD_JOB = Job(log=("epoch 1\n", f"token={SECRET}\n", "done\n"), exit_code=0, files=METRICS)


@dataclass
class Result:
    manifest: dict
    plan: object
    backend: MemoryBackend
    rec: Recorder
    interrupted: bool

    @property
    def journal(self) -> list[str]:
        return [e["event"] for e in read_events(self.plan.run_dir / "events.jsonl")]

    @property
    def pod(self) -> MemoryPod | None:
        return self.backend.pods[0] if self.backend.pods else None

    def phases(self) -> list[str]:
        return [e["phase"] for e in read_events(self.plan.run_dir / "events.jsonl") if e["event"] == "phase_started"]

    def warnings(self) -> list[str]:
        return [e["message"] for e in read_events(self.plan.run_dir / "events.jsonl") if e["event"] == "warning"]


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SEAM_TOKEN", SECRET)
    return git_project(tmp_path / "proj", {"train.py": "print('trained')\n", "uv.lock": "version = 1\n",
                                           ".gitignore": "artifacts/\n"})


def run(project: Path, backend: MemoryBackend, *, spec: str = SPEC, cancel: threading.Event | None = None,
        **plan_changes) -> Result:
    prepared = api.start(api.prepare(spec, cwd=project, backend="local"))  # a plan for a pod like local's
    prepared = replace(prepared, plan=replace(prepared.plan, backend="memory", **plan_changes))
    rec = Recorder()
    try:
        manifest, interrupted = api.execute(prepared, listeners=[rec], backend=backend, cancel=cancel), False
    except KeyboardInterrupt:
        manifest, interrupted = store.read_json(prepared.plan.run_dir / store.MANIFEST), True
    return Result(manifest, prepared.plan, backend, rec, interrupted)


def pod(*commands, job: Job = GOOD_JOB, **options) -> MemoryBackend:
    return MemoryBackend(commands=[*commands, PROBE], job=job, **options)


def assert_one_teardown(r: Result, *, release: str | None, job_started: bool, killed: bool = False) -> None:
    """The manifest on disk, status, journal and pod calls of exactly one teardown."""
    on_disk = store.read_json(r.plan.run_dir / store.MANIFEST)
    assert on_disk == r.manifest and on_disk["run_id"] == r.plan.run_id
    assert store.read_json(r.plan.run_dir / store.STATUS)["state"] == status_word(on_disk)
    journal = r.journal
    assert journal.count("run_finished") == 1 and journal[-1] == "run_finished"
    assert journal.count("lifecycle_applied") == (release is not None)
    log_pulls = [e for e in read_events(r.plan.run_dir / "events.jsonl")
                 if e["event"] == "artifact_pull_started" and e["label"] == "log"]
    assert len(log_pulls) == job_started
    if r.pod is None:
        assert release is None
        return
    assert [c[1] for c in r.pod.calls if c[0] == "release"] == ([release] if release else [])
    assert r.pod.count("kill") == killed
    assert r.pod.count("start") == job_started
    assert SECRET not in (r.plan.run_dir / "events.jsonl").read_text()
    assert SECRET not in (r.plan.run_dir / store.MANIFEST).read_text()


# ------------------------------------------------------------------ the pod really is a Pod


def test_memory_pod_implements_every_method_of_the_protocol():
    members = {n for n, v in vars(Pod).items() if callable(v) and not n.startswith("_")}
    assert {"run", "start", "read_from", "exit_code", "kill", "write_file", "push", "pull", "release"} <= members
    for name in members:
        theirs = inspect.signature(getattr(Pod, name))
        ours = inspect.signature(getattr(MemoryPod, name))
        assert list(ours.parameters) == list(theirs.parameters), name
        assert [p.kind for p in ours.parameters.values()] == [p.kind for p in theirs.parameters.values()], name
    assert "info" in Pod.__annotations__


# ------------------------------------------------------------------ success and failure


def test_success_stages_writes_secrets_streams_pulls_and_deletes(project):
    r = run(project, pod())
    m = r.manifest
    assert (m["failed"], m["exit_code"], m["interrupted"], m["timed_out"], m["error"]) == (False, 0, False, False, None)
    assert m["pod_final_state"] == "TERMINATED" and m["backend"] == "memory" and m["python_resolved"] == "3.12.1"
    assert m["deploy_metadata"]["payload_lockfile"] == "uv.lock" and m["deploy_metadata"]["local_git_dirty"] is False
    assert_one_teardown(r, release="delete", job_started=True)
    assert r.phases() == ["provision", "setup", "secrets", "staging", "preflight", "run"]
    files = r.pod.files
    assert files["/workspace/repo/train.py"] == b"print('trained')\n"
    assert files["/root/.tok"] == f"SEAM_TOKEN={SECRET}\n".encode() and r.pod.modes["/root/.tok"] == 0o600
    assert (r.plan.run_dir / "run.log").read_text() == "epoch 1\ntoken=***\ndone\n"
    assert SECRET not in r.rec.output() and "epoch 1" in r.rec.output()
    assert (r.plan.run_dir / "out" / "metrics.json").read_bytes() == METRICS["/workspace/repo/out/metrics.json"]
    assert [(a["label"], a["status"]) for a in m["artifacts"]] == [("metrics", "success")]
    commands = [c[1] for c in r.pod.calls if c[0] == "run"]
    assert commands[:2] == ["echo setting up", "uv python install 3.12.1 && cd /workspace/repo && uv python pin 3.12.1"]
    assert commands[2] == "echo user preflight"


def test_job_failure_pulls_log_and_artifacts_then_stops(project):
    r = run(project, pod(job=Job(log=("boom\n",), exit_code=3, files=METRICS)))
    m = r.manifest
    assert m["failed"] is True and m["exit_code"] == 3 and "the run exited with code 3" in m["error"]
    assert m["pod_final_state"] == "EXITED" and not m["interrupted"]
    assert_one_teardown(r, release="stop", job_started=True)
    assert (r.plan.run_dir / "run.log").read_text() == "boom\n"
    assert m["artifacts"][0]["status"] == "success"


def test_watchdog_end_is_named(project):
    r = run(project, pod(job=Job(exit_code=137, ended_by="watchdog: max runtime")))
    assert r.manifest["ended_by"] == "watchdog: max runtime" and "(watchdog: max runtime)" in r.manifest["error"]
    assert_one_teardown(r, release="stop", job_started=True)


def test_setup_failure_stops_before_the_job(project):
    r = run(project, pod((r"setting up", Reply(4, "no disk\n"))))
    assert r.manifest["failed"] and r.manifest["exit_code"] is None
    assert r.manifest["error"].startswith("setup[0] failed with exit code 4: echo setting up") and "no disk" in r.manifest["error"]
    assert r.phases() == ["provision", "setup"]
    assert_one_teardown(r, release="stop", job_started=False)
    assert "/workspace/repo/train.py" not in r.pod.files


def test_pin_failure_is_explained_before_user_preflight(project):
    r = run(project, pod((r"uv python install", Reply(127, "bash: uv: command not found\n"))))
    assert "python pin 3.12.1 failed before any user command ran: uv is not installed" in r.manifest["error"]
    assert "echo user preflight" not in [c[1] for c in r.pod.calls if c[0] == "run"]
    assert_one_teardown(r, release="stop", job_started=False)


def test_step_timeout_is_named(project):
    r = run(project, pod((r"user preflight", Reply(raises=TimeoutError()))))
    assert r.manifest["error"] == "preflight[0] timed out after 600s: echo user preflight"
    assert_one_teardown(r, release="stop", job_started=False)


def test_run_timeout_kills_once_pulls_and_stops(project):
    r = run(project, pod(job=Job(log=("working\n",), exit_code=None)), timeout_sec=0.3)
    m = r.manifest
    assert m["timed_out"] is True and m["failed"] is True and "exceeded its time budget" in m["error"]
    assert_one_teardown(r, release="stop", job_started=True, killed=True)
    assert (r.plan.run_dir / "run.log").read_text() == "working\n"


def test_missing_secret_fails_before_any_pod(project, monkeypatch):
    monkeypatch.delenv("SEAM_TOKEN")
    backend = pod()
    r = run(project, backend)
    assert "SEAM_TOKEN" in r.manifest["error"] and "not set on this machine" in r.manifest["error"]
    assert backend.pods == [] and backend.requests == [] and r.manifest["pod_id"] is None
    assert_one_teardown(r, release=None, job_started=False)


@pytest.mark.parametrize("error", [CapacityError("no GPU anywhere"), BackendError("api down")])
def test_provision_failure_has_no_pod_to_release(project, error):
    r = run(project, MemoryBackend(provision_fault=error))
    assert r.manifest["failed"] and str(error) in r.manifest["error"] and r.manifest["pod_id"] is None
    assert_one_teardown(r, release=None, job_started=False)


def test_success_marker_missing_fails_the_run(project):
    spec = SPEC.replace("run: |\n  python train.py\n", "run:\n  body: python train.py\n  success_marker: ALL GOOD\n")
    r = run(project, pod(), spec=spec)
    assert r.manifest["failed"] and "success marker 'ALL GOOD' not found" in r.manifest["error"]
    assert r.manifest["exit_code"] == 0
    assert_one_teardown(r, release="stop", job_started=True)


# ------------------------------------------------------------------ interrupt and stop, in each phase

IN_PHASE = {
    # phase: (how the fault reaches the pod, phases started, job started)
    "provision": (lambda act: MemoryBackend(provision_fault=act, commands=[PROBE], job=GOOD_JOB),
                  ["provision"], False),
    "setup": (lambda act: pod((r"setting up", Reply(action=act))), ["provision", "setup"], False),
    "secrets": (lambda act: pod(faults={"write_file": act}), ["provision", "setup", "secrets"], False),
    "staging": (lambda act: pod(faults={"push": act}), ["provision", "setup", "secrets", "staging"], False),
    "preflight": (lambda act: pod((r"user preflight", Reply(action=act))),
                  ["provision", "setup", "secrets", "staging", "preflight"], False),
    "run": (lambda act: pod(faults={"exit_code": act}, job=Job(log=("x\n",), exit_code=None)),
            ["provision", "setup", "secrets", "staging", "preflight", "run"], True),
}


@pytest.mark.parametrize("phase", list(IN_PHASE))
def test_interrupt_in_each_phase_is_a_failure_with_one_teardown(project, phase):
    make, phases, started = IN_PHASE[phase]
    r = run(project, make(interrupt))
    assert r.interrupted, "the KeyboardInterrupt is re-raised after teardown"
    m = r.manifest
    assert m["interrupted"] is True and m["failed"] is True and "interrupted by the user" in m["error"]
    assert r.phases() == phases
    assert_one_teardown(r, release=None if phase == "provision" else "stop", job_started=started, killed=started)


@pytest.mark.parametrize("phase", list(IN_PHASE))
def test_stop_in_each_phase_ends_the_run_with_one_teardown(project, phase):
    make, phases, started = IN_PHASE[phase]
    cancel = threading.Event()
    r = run(project, make(lambda _pod: cancel.set()), cancel=cancel)
    assert not r.interrupted
    m = r.manifest
    assert m["failed"] is True and m["interrupted"] is True and m["error"] == "stopped on request"
    assert r.phases() == phases  # seen when the next phase begins (in the run: at the next poll)
    assert_one_teardown(r, release="stop", job_started=started, killed=started)


def test_stop_file_from_another_process_ends_the_job(project):
    backend = pod(faults={"heartbeat": lambda _pod: store.RunDir(backend.requests[0].run_dir).request_stop()},
                  job=Job(log=("x\n",), exit_code=None))
    r = run(project, backend)
    assert r.manifest["error"] == "stopped on request" and r.manifest["exit_code"] is None
    assert (r.plan.run_dir / store.STOP).exists()
    assert_one_teardown(r, release="stop", job_started=True, killed=True)


def test_interrupt_inside_start_still_kills_the_launched_job(project):
    r = run(project, pod(after={"start": interrupt}, job=Job(log=("x\n",), exit_code=None)))
    assert r.interrupted and r.manifest["interrupted"]
    assert_one_teardown(r, release="stop", job_started=True, killed=True)


def test_interrupt_during_pulls_is_held_and_marks_the_run_interrupted(project):
    r = run(project, pod(faults={"pull": interrupt}))
    assert r.interrupted
    m = r.manifest
    assert m["interrupted"] and m["failed"] and m["exit_code"] == 0
    assert "during teardown" in m["error"] and m["pod_final_state"] == "EXITED"
    assert_one_teardown(r, release="stop", job_started=True)
    assert r.pod.count("pull") == 1  # held, not re-entered


def test_interrupt_during_the_lifecycle_keeps_the_verdict_and_is_re_raised(project):
    r = run(project, pod(faults={"release": interrupt}))
    assert r.interrupted
    assert r.manifest["failed"] is False and r.manifest["pod_final_state"] == "TERMINATED"
    assert_one_teardown(r, release="delete", job_started=True)


# ------------------------------------------------------------------ teardown failing


def test_kill_raising_still_pulls_and_releases(project):
    r = run(project, pod(faults={"kill": BackendError("connection lost")}, job=Job(exit_code=None)), timeout_sec=0.2)
    assert r.manifest["timed_out"] and any("kill failed" in w and "connection lost" in w for w in r.warnings())
    assert_one_teardown(r, release="stop", job_started=True, killed=True)


def test_required_artifact_pull_failing_fails_a_successful_run(project):
    r = run(project, pod(faults={"pull": OSError("disk full")}))
    m = r.manifest
    assert m["failed"] and m["exit_code"] == 0 and "required artifact 'metrics' could not be pulled" in m["error"]
    assert m["artifacts"][0]["status"] == "failed" and "disk full" in m["artifacts"][0]["error"]
    assert m["pod_final_state"] == "EXITED"
    assert_one_teardown(r, release="stop", job_started=True)
    assert (r.plan.run_dir / "run.log").read_text().endswith("done\n")  # the log is still there


def test_missing_artifact_is_a_failed_pull_not_a_crash(project):
    r = run(project, pod(job=Job(exit_code=0)))
    assert r.manifest["artifacts"][0]["status"] == "failed" and r.manifest["failed"]
    assert_one_teardown(r, release="stop", job_started=True)


def test_release_raising_is_a_warning_and_the_manifest_is_still_written(project):
    r = run(project, pod(faults={"release": BackendError("api down")}))
    m = r.manifest
    assert m["failed"] is False and m["pod_final_state"] is None
    assert any("lifecycle failed" in w and "api down" in w for w in r.warnings())
    assert_one_teardown(r, release="delete", job_started=True)


def test_a_stop_that_fell_back_to_terminate_records_what_the_pod_became(project):
    r = run(project, pod(job=Job(exit_code=1), final_states={"stop": "TERMINATED"}))
    assert r.manifest["pod_final_state"] == "TERMINATED"
    (applied,) = [e for e in read_events(r.plan.run_dir / "events.jsonl") if e["event"] == "lifecycle_applied"]
    assert applied["action"] == "stop" and applied["pod_final_state"] == "TERMINATED"
    assert_one_teardown(r, release="stop", job_started=True)


def test_a_broken_listener_does_not_break_the_run(project):
    def broken(event):
        raise RuntimeError("view crashed")

    prepared = api.start(api.prepare(SPEC, cwd=project, backend="local"))
    manifest = api.execute(prepared, listeners=[broken], backend=pod())
    assert manifest["failed"] is False


def test_every_file_the_run_writes_is_one_the_store_names(project):
    before = set(os.listdir(project))
    r = run(project, pod())
    assert set(os.listdir(project)) == before | {"artifacts"}
    written = {p.name for p in r.plan.run_dir.iterdir() if not p.name.startswith(".")}
    assert written - {"out"} <= set(store.RunDir.FILES), written - set(store.RunDir.FILES)
    assert {"spec.yaml", "launch.json", "plan.txt", "pod.json", "status.json", "run.log", "events.jsonl",
            store.MANIFEST} <= written


def test_a_phase_with_nothing_to_do_writes_no_status(project, monkeypatch):
    """Each status write is a new file and a rename (about 0.3 ms of CPU on this machine's ext4, five or
    six a run): a phase with nothing in it (no setup, secrets, staging or preflight) is not written."""
    written: list[str] = []
    write = store.RunDir.write_status
    monkeypatch.setattr(store.RunDir, "write_status", lambda self, status: (written.append(status.phase),
                                                                            write(self, status))[1])
    bare = "name: bare\nstaging: []\nrun: python train.py\n"
    r = run(project, pod(), spec=bare)
    assert not r.manifest["failed"]
    assert "provision" in written and "run" in written
    assert not {"setup", "secrets", "staging", "preflight"} & set(written), written
    written.clear()
    staged = bare.replace("staging: []", "staging: [{label: code, source: train.py, destination: /workspace/repo/}]")
    run(project, pod(), spec=staged)
    assert "staging" in written


def test_a_pod_record_that_adds_nothing_is_not_written_again(tmp_path):
    rundir = store.RunDir(tmp_path / "run")
    rundir.path.mkdir()
    rundir.record_pod({"pod_id": "local-1", "backend": "local", "state": "RUNNING", "gpu_id": "local"})
    first = (rundir.path / store.RunDir.POD).stat()
    rundir.record_pod({"pod_id": "local-1", "gpu_id": "local", "cost": None})  # a local pod's info after its handle
    assert (rundir.path / store.RunDir.POD).stat().st_ino == first.st_ino
    rundir.record_pod({"pod_id": "local-1", "state": "EXITED"})
    assert rundir.pod()["state"] == "EXITED" and rundir.pod()["backend"] == "local"
