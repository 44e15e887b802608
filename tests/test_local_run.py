"""Real runs on the local backend with real uv: every exit path ends in one teardown and a manifest."""

from __future__ import annotations

import json
import os
import re
import threading
import time

import pytest

from podmagic.run import api, store
from podmagic.run.events import read_events

from conftest import PIN
from helpers import Recorder, run_spec

pytestmark = pytest.mark.e2e  # real runs on the local backend: not in the fast lane (-m "not e2e")

RUNPOD_DEPLOY_KEYS = {
    "schema_version", "pulled_at_utc", "failed", "job_name", "run_id", "config_path", "storage_mode",
    "datacenter_id", "gpu_id", "pod_id", "image", "gpu_price_per_hour_usd", "gpu_price_source", "wall_time_sec",
    "estimated_cost_usd", "cost_cap_usd", "pod_final_state", "pod_resumed", "volume_mount", "volume_name",
    "volume_gb", "deploy_metadata", "artifacts", "telemetry_files",
}
ADDED_KEYS = {"python_version", "python_resolved", "exit_code", "interrupted", "started_at_utc", "ended_at_utc",
              "backend", "spec_sha256", "variables"}

PINNED = """name: pinned
pod:
  python_version: "PIN"
preflight:
  - command: cat .python-version > /workspace/pin_seen_by_preflight
run: |
  echo "body sees $(cat .python-version) in $(basename $(pwd))"
  mkdir -p /workspace/repo/out && echo '{{"loss": 0.5}}' > /workspace/repo/out/metrics.json
  uv run --no-project python -c 'import platform; print("interpreter", platform.python_version())'
artifacts:
  - {label: metrics, remote_path: /workspace/repo/out/, local_path: "{run_dir}/out/"}
  - {label: seen, remote_path: /workspace/pin_seen_by_preflight, local_path: "{run_dir}/"}
lifecycle: {on_success: delete, on_failure: stop}
""".replace("PIN", PIN)


def test_pinned_run_records_the_tripod_and_pulls_artifacts(pod_env, project):
    manifest, plan, rec = run_spec(PINNED, project)
    assert manifest["failed"] is False and manifest["exit_code"] == 0
    assert RUNPOD_DEPLOY_KEYS | ADDED_KEYS <= set(manifest)
    assert manifest["python_version"] == PIN and manifest["python_resolved"] == PIN
    meta = manifest["deploy_metadata"]
    assert meta["local_git_sha"] and len(meta["local_git_sha"]) == 40 and meta["local_git_dirty"] is False
    assert meta["payload_lockfile"] == "uv.lock" and len(meta["payload_lockfile_sha256"]) == 64
    assert (plan.run_dir / "pin_seen_by_preflight").read_text().strip() == PIN
    assert json.loads((plan.run_dir / "out" / "metrics.json").read_text()) == {"loss": 0.5}
    log = (plan.run_dir / "run.log").read_text()
    assert f"body sees {PIN} in repo" in log and f"interpreter {PIN}" in log
    assert [a["status"] for a in manifest["artifacts"]] == ["success", "success"]
    assert manifest["artifacts"][0]["bytes_transferred"] > 0
    assert manifest["pod_final_state"] == "TERMINATED" and not (pod_env / "pods" / manifest["pod_id"]).exists()
    assert store.read_json(plan.run_dir / "status.json")["state"] == "succeeded"
    journal = [e["event"] for e in read_events(plan.run_dir / "events.jsonl")]
    phases = [e["phase"] for e in read_events(plan.run_dir / "events.jsonl") if e["event"] == "phase_started"]
    assert phases == ["provision", "setup", "secrets", "staging", "preflight", "run"]
    assert journal[-1] == "run_finished" and "python_resolved" in journal
    steps = [e.data["label"] for e in rec.events if e.kind == "step_started"]
    assert steps == ["python pin", "preflight[0]"]


def test_second_install_of_the_same_version_is_a_no_op(pod_env, project):
    run_spec(PINNED, project)
    manifest, plan, _ = run_spec(PINNED, project)
    assert manifest["failed"] is False
    phases_log = (plan.run_dir / "phases.log").read_text()
    assert f"Pinned `.python-version` to `{PIN}`" in phases_log
    assert "Download" not in phases_log  # the interpreter came from the warm install dir
    ms = re.search(rf"Installed Python {re.escape(PIN)} in (\d+)ms", phases_log)
    assert ms is None or int(ms.group(1)) < 200  # a fresh pod home only gets its executable link


def test_pin_failure_stops_before_user_preflight_with_a_clear_reason(pod_env, project):
    text = PINNED.replace(f'"{PIN}"', '"3.14.99"')
    manifest, plan, _ = run_spec(text, project)
    assert manifest["failed"] is True and manifest["exit_code"] is None
    assert "python pin 3.14.99 failed before any user command ran" in manifest["error"]
    assert "no Python 3.14.99 is available" in manifest["error"]
    sandbox = pod_env / "pods" / manifest["pod_id"]
    assert not (sandbox / "workspace" / "pin_seen_by_preflight").exists()
    assert manifest["pod_final_state"] == "EXITED" and sandbox.exists()  # on_failure: stop keeps it
    assert not (plan.run_dir / "run.log").exists()  # the job never started: nothing to pull


def test_uv_missing_is_named(pod_env, project, monkeypatch):
    monkeypatch.setattr("podmagic.backends.local.uv_binary", lambda: None)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    manifest, _, _ = run_spec(PINNED, project)
    assert "uv is not installed on the pod" in manifest["error"]


@pytest.mark.parametrize("body,code", [("exit 3", 3), ("false", 1), ("true", 0)])
def test_exit_code_is_the_verdict(pod_env, project, body, code):
    manifest, _, _ = run_spec(f"run: '{body}'\nstaging: []\n", project)
    assert manifest["exit_code"] == code and manifest["failed"] is (code != 0)
    assert manifest["pod_final_state"] == ("TERMINATED" if code == 0 else "EXITED")


def test_markers_are_extra_checks(pod_env, project):
    m, _, _ = run_spec("run: {body: echo fine, success_marker: ALL DONE}\nstaging: []\n", project)
    assert m["failed"] and "success marker 'ALL DONE' not found" in m["error"]
    m, _, _ = run_spec("run: {body: echo CUDA out of memory, failure_markers: [CUDA out of memory]}\nstaging: []\n",
                       project)
    assert m["failed"] and "failure marker" in m["error"]
    m, _, _ = run_spec("run: {body: echo DONE, success_marker: DONE}\nstaging: []\n", project)
    assert not m["failed"]


def test_setup_failure_writes_the_manifest_and_skips_pulls(pod_env, project):
    manifest, plan, _ = run_spec("setup: [{command: 'echo nope; exit 4'}]\nrun: echo never\n"
                                 "artifacts: [{label: a, remote_path: /workspace/a, local_path: \"{run_dir}/a\"}]\n",
                                 project)
    assert manifest["failed"] and "setup[0] failed with exit code 4" in manifest["error"]
    assert manifest["artifacts"] == [] and not (plan.run_dir / "run.log").exists()
    assert not [p for p in plan.run_dir.iterdir() if p.name.endswith(".tmp")]


def _wait_for(predicate, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is dead
        return fh.read().split()[2] != "Z"


LONG = """staging: []
run: |
  sleep 300 &
  echo $! > /workspace/child.pid
  echo started
  wait
lifecycle: {on_success: delete, on_failure: stop}
"""


def test_interrupt_kills_the_process_group_and_is_never_success(pod_env, project):
    def interrupt_when_started(event):
        if event.kind == "output" and "started" in event.data["text"]:
            raise KeyboardInterrupt

    prepared = api.start(api.prepare(LONG, cwd=project))
    with pytest.raises(KeyboardInterrupt):
        api.execute(prepared, listeners=[interrupt_when_started])
    manifest = store.read_json(prepared.plan.run_dir / store.MANIFEST)
    assert manifest["interrupted"] is True and manifest["failed"] is True
    assert manifest["pod_final_state"] == "EXITED"  # lifecycle.on_failure
    assert "interrupted" in manifest["error"]
    sandbox = pod_env / "pods" / manifest["pod_id"]
    child = int((sandbox / "workspace" / "child.pid").read_text())
    assert _wait_for(lambda: not _alive(child)), "the job's process group survived the interrupt"
    assert "started" in (prepared.plan.run_dir / "run.log").read_text()


def test_stop_request_from_another_process_ends_the_run(pod_env, project):
    prepared = api.start(api.prepare(LONG, cwd=project))
    rec = Recorder()
    def stopper():
        _wait_for(lambda: "started" in rec.output())
        store.RunDir(prepared.plan.run_dir).request_stop()
    threading.Thread(target=stopper, daemon=True).start()
    manifest = api.execute(prepared, listeners=[rec])
    assert manifest["interrupted"] and manifest["error"] == "stopped on request"
    assert store.run_summary(prepared.plan.run_dir)["state"] == "interrupted"


def test_watchdog_ends_a_job_past_its_runtime_cap(pod_env, project):
    from dataclasses import replace

    from podmagic.backends.local import LocalBackend

    prepared = api.prepare("staging: []\nrun: sleep 30\n", cwd=project)
    plan = prepared.plan
    launch = replace(plan.launch, max_runtime_sec=1, watchdog_interval_sec=0.2)
    pod = LocalBackend().provision(plan.request, lambda *a, **k: None)
    pod.start(launch)
    assert _wait_for(lambda: pod.exit_code(launch) is not None, timeout=15)
    assert pod.exit_code(launch) != 0 and pod.ended_by(launch) == "watchdog:max_runtime"
    pod.release("delete")


def test_run_ids_are_unique_within_one_second(pod_env, project):
    dirs = {api.start(api.prepare("name: same\nrun: x\n", cwd=project)).plan.run_dir for _ in range(40)}
    assert len(dirs) == 40 and all(d.is_dir() for d in dirs)


def test_200k_lines_stay_bounded_in_the_view(pod_env, project):
    from podmagic.ui.widgets import RunView

    view = RunView("r", "big", "local")
    updates = []
    view.log.observe(lambda change: updates.append(len(change["new"])), names="value")
    started = time.time()
    manifest, plan, _ = run_spec("staging: []\nrun: seq 1 200000\n", project, listeners=[view.on_event])
    elapsed = time.time() - started
    assert manifest["failed"] is False
    with open(plan.run_dir / "run.log") as fh:
        assert sum(1 for _ in fh) == 200_000
    assert view.tail.total_lines >= 200_000
    assert len(view.tail.lines) == 200 and max(updates) < 200 * 12
    assert len(updates) <= elapsed / 0.25 + 20, (len(updates), elapsed)
    assert "200000" in view.log.value


@pytest.mark.parametrize("mode", ["namespace", "mapped"])
def test_a_pod_body_runs_unchanged_on_the_sandbox(pod_env, project, monkeypatch, mode):
    monkeypatch.setenv("PODMAGIC_LOCAL_SANDBOX", mode)
    manifest, plan, _ = run_spec("run: |\n  test -d /workspace/repo && echo \"home=$HOME\" && ls /workspace/repo\n",
                                 project)
    log = (plan.run_dir / "run.log").read_text()
    assert manifest["failed"] is False and "train.py" in log and "ignored.txt" not in log
    assert manifest["sandbox"] == mode
    assert ("home=/root\n" if mode == "namespace" else f"home={pod_env.resolve()}/pods/") in log


def test_artifact_local_path_with_a_trailing_slash_is_a_folder(pod_env, project):
    manifest, plan, _ = run_spec("staging: []\nrun: echo 1 > /workspace/one.txt\nartifacts:\n"
                                 "  - {label: a, remote_path: /workspace/one.txt, local_path: \"{run_dir}/got/\"}\n"
                                 "  - {label: b, remote_path: /workspace/one.txt, local_path: \"{run_dir}/as.txt\"}\n",
                                 project)
    assert (plan.run_dir / "got" / "one.txt").read_text() == "1\n"
    assert (plan.run_dir / "as.txt").read_text() == "1\n"


def test_step_markers_become_events_once(pod_env, project):
    body = ("run: |\n  echo __RUNPOD_STEP_START__train__\n  echo __RUNPOD_STEP_DONE__train__\n"
            "  echo __RUNPOD_STEP_DONE__train__\nstaging: []\n")
    manifest, plan, _ = run_spec(body, project)
    steps = [(e["event"], e["name"]) for e in read_events(plan.run_dir / "events.jsonl") if "step" in e["event"]
             and "name" in e]
    assert steps == [("remote_step_started", "train"), ("remote_step_completed", "train")]


def test_heartbeat_limit_is_configurable(pod_env, project, monkeypatch):
    from dataclasses import replace

    from podmagic.backends.podside import launcher_script
    from podmagic.run.runner import Runner

    monkeypatch.setenv("PODMAGIC_HEARTBEAT_TIMEOUT_SEC", "42")
    plan = api.prepare("staging: []\nrun: x\n", cwd=project).plan
    limit = Runner(plan, backend=None).heartbeat_timeout_sec
    assert limit == 42
    assert "-ge 42 ]; then why=watchdog:heartbeat" in launcher_script(replace(plan.launch, heartbeat_timeout_sec=limit))
    monkeypatch.setenv("PODMAGIC_HEARTBEAT_TIMEOUT_SEC", "0")
    assert Runner(plan, backend=None).heartbeat_timeout_sec is None
