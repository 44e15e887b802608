"""Whole `%%pod` runs on the RunPod backend, through the runner, against the simulator.

The simulator's pods are real sshd hosts booted as RunPod boots them: the seed's image
(`runpod/pytorch:2.4.0...`) has no uv, sessions get a bare environment, and an offline Python
mirror stands in for the internet, so podmagic installs uv and the pin really runs.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from helpers import git_project

from podmagic.run.events import read_events
from podmagic.backends.runpod.backend import RunPodBackend

from runpod_helpers import finish_sim, image_env_for, start_sim

pytestmark = pytest.mark.e2e  # real backends end to end: not in the fast lane (-m "not e2e")

TRAIN = """import os, sys, time
print("hello from", sys.version.split()[0], flush=True)
os.makedirs("out", exist_ok=True)
open("out/metrics.json", "w").write('{"loss": 0.5}')
if os.environ.get("SLOW"):
    for i in range(600):
        print("tick", i, flush=True)
        time.sleep(0.05)
"""
SPEC = """name: rp
pod:
  image: runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04
  datacenters: [EU-RO-1, US-MD-1]
  gpu_order: ["NVIDIA H100 80GB HBM3", "NVIDIA A100 80GB PCIe"]
{extra_pod}run: |
  cd /workspace/repo && {run}
artifacts:
  - {{label: metrics, remote_path: /workspace/repo/out/, local_path: "{{run_dir}}/out/"}}
lifecycle: {{on_success: delete, on_failure: {on_failure}}}
"""


@pytest.fixture
def image_env(python_mirror, uv_python_dir, tmp_path) -> dict[str, str]:
    return image_env_for(python_mirror, uv_python_dir, tmp_path)


@pytest.fixture
def sim(tmp_path, monkeypatch, image_env):
    simulator = start_sim(tmp_path, monkeypatch, image_env=image_env)
    yield simulator
    finish_sim(simulator)


def _project(root: Path) -> Path:
    return git_project(root, {"train.py": TRAIN, "pyproject.toml": '[project]\nname = "p"\nversion = "0"\nrequires-python = ">=3.10"\n'})


def execute(sim, tmp_path, text, listeners=(), **kw):
    from podmagic.run import api

    events: list = []
    backend = RunPodBackend(key_path=str(sim.client_key), poll=(0.05, 0.2), retry_delays=(0.05,) * 4, lost_create_sec=1.0)
    (tmp_path).mkdir(parents=True, exist_ok=True)
    prepared = api.start(api.prepare(text, cwd=_project(tmp_path / "proj"), backend="runpod"))
    manifest = api.execute(prepared, backend=backend, listeners=[events.append, *listeners], **kw)
    return manifest, prepared.plan.run_dir, events


def spec(run="uv run python train.py", on_failure="stop", extra_pod=""):
    return SPEC.format(run=run, on_failure=on_failure, extra_pod=extra_pod)


def test_happy_path_with_the_pin(sim, tmp_path):
    version = "3.12.1"
    sim.set_stock("NVIDIA H100 80GB HBM3", "EU-RO-1", 0)
    text = spec(extra_pod=f'  python_version: "{version}"\n')
    from podmagic.ui.widgets import RunView

    view = RunView("r", "rp", "runpod")
    manifest, run_dir, events = execute(sim, tmp_path, text, listeners=[view.on_event])
    assert list(view.attempts) == [("NVIDIA H100 80GB HBM3", "EU-RO-1"), ("NVIDIA A100 80GB PCIe", "EU-RO-1")]
    assert [o for o, _ in view.attempts.values()] == ["no_capacity", "created"]
    assert "no longer any instances" in view.placement.value
    assert manifest["failed"] is False, manifest["error"]
    assert manifest["backend"] == "runpod" and manifest["exit_code"] == 0
    assert manifest["gpu_id"] == "NVIDIA A100 80GB PCIe" and manifest["datacenter_id"] == "EU-RO-1"
    assert manifest["gpu_price_per_hour_usd"] == 1.64 and manifest["estimated_cost_usd"] is not None
    assert manifest["python_version"] == version and manifest["python_resolved"].startswith(version)
    assert (run_dir / "out/metrics.json").read_text() == '{"loss": 0.5}'
    assert manifest["pod_final_state"] == "TERMINATED" and sim.live_pods() == []
    journal = [e["event"] for e in read_events(run_dir / "events.jsonl")]
    assert "gpu_selected" in journal and "placement_attempt" in journal
    assert json.loads((run_dir / "pod.json").read_text())["pod_id"] == manifest["pod_id"]


def test_pod_killed_mid_run_keeps_the_log(sim, tmp_path):
    def kill_when_ticking():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            live = sim.live_pods()
            logs = list(tmp_path.glob("proj/artifacts/runpod/*/run.log"))
            if live and logs and "tick 5" in logs[0].read_text():
                sim.kill_pod(live[0]["id"], status="EXITED")
                return
            time.sleep(0.05)

    threading.Thread(target=kill_when_ticking, daemon=True).start()
    started = time.monotonic()
    manifest, run_dir, events = execute(sim, tmp_path, spec(run="SLOW=1 python3 train.py"))
    assert time.monotonic() - started < 30
    assert manifest["failed"] is True and "PodGone" in manifest["error"]
    assert "tick 5" in (run_dir / "run.log").read_text()
    journal = [e["event"] for e in read_events(run_dir / "events.jsonl")]
    assert "pod_killed_unexpected" in journal
    assert manifest["pod_final_state"] == "EXITED"     # on_failure: stop (it already was)


def test_interrupt_follows_on_failure(sim, tmp_path):
    cancel = threading.Event()

    def stop_when_ticking():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            logs = list(tmp_path.glob("proj/artifacts/runpod/*/run.log"))
            if logs and "tick 3" in logs[0].read_text():
                cancel.set()
                return
            time.sleep(0.05)

    threading.Thread(target=stop_when_ticking, daemon=True).start()
    manifest, run_dir, _ = execute(sim, tmp_path, spec(run="SLOW=1 python3 train.py", on_failure="delete"),
                                   cancel=cancel)
    assert manifest["failed"] is True and manifest["interrupted"] is True
    assert manifest["pod_final_state"] == "TERMINATED" and sim.live_pods() == []


def test_recycle_through_the_runner(sim, tmp_path):
    text = spec(run="python3 train.py").replace("on_success: delete", "on_success: recycle")
    first, _, _ = execute(sim, tmp_path / "a", text)
    assert first["failed"] is False and first["pod_final_state"] == "EXITED"
    from podmagic.run import api

    prepared = api.start(api.prepare(text, cwd=tmp_path / "a" / "proj", backend="runpod"))
    backend = RunPodBackend(key_path=str(sim.client_key), poll=(0.05, 0.2), retry_delays=(0.05,) * 4, lost_create_sec=1.0)
    second = api.execute(prepared, backend=backend)
    assert second["failed"] is False and second["pod_id"] == first["pod_id"] and second["pod_resumed"]
    assert [p["desired_status"] for p in sim.live_pods()] == ["EXITED"]


def test_parallel_runs_share_one_backend(sim, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from podmagic.run import api

    project = _project(tmp_path / "proj")
    backend = RunPodBackend(key_path=str(sim.client_key), poll=(0.05, 0.2), retry_delays=(0.05,) * 4, lost_create_sec=1.0)
    sim.inject("createPod", times=2, status=502)

    def one(i):
        text = spec(run=f"python3 train.py && echo shard {i}").replace("name: rp", f"name: rp{i}")
        return api.execute(api.start(api.prepare(text, cwd=project, backend="runpod")), backend=backend)

    with ThreadPoolExecutor(4) as pool:
        manifests = list(pool.map(one, range(4)))
    assert [m["failed"] for m in manifests] == [False] * 4, [m["error"] for m in manifests]
    assert len({m["pod_id"] for m in manifests}) == 4 and sim.live_pods() == []


def test_budget_guard_refuses_before_any_spend(sim, tmp_path):
    from podmagic.run import api
    from podmagic.spec.jobspec import SpecError

    text = spec() + "budget: {cost_cap_usd: 2.0, assumed_hourly_rate_usd: 4.0, max_runtime_minutes: 60}\n"
    with pytest.raises(SpecError, match=r"would spend \$4.00, over cost_cap_usd \$2.0"):
        api.prepare(text, cwd=_project(tmp_path / "proj"), backend="runpod")
    assert sim.calls == [] and sim.pods() == []


def test_live_cost_meter_and_cli_ls_stale_cleanup(sim, tmp_path):
    import os
    import sys

    from podmagic.ui.widgets import RunView

    view = RunView("r", "rp", "runpod")
    manifest, run_dir, _ = execute(sim, tmp_path, spec(run="exit 3"), listeners=[view.on_event])
    assert view.price == manifest["gpu_price_per_hour_usd"] and "$0.0" in view.header.value
    assert manifest["failed"] and manifest["pod_final_state"] == "EXITED"  # on_failure: stop keeps the disk
    env = {**os.environ, "RUNPOD_API_BASE_URL": sim.base_url, "RUNPOD_API_KEY": sim.api_key}
    cli = lambda *a: subprocess.run([sys.executable, "-m", "podmagic.ui.cli", *a], cwd=tmp_path / "proj", env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    (row,) = json.loads(cli("ls-stale", "--json").stdout)
    assert row["pod_id"] == manifest["pod_id"] and row["run_id"] == run_dir.name and row["usd_per_day"] > 0
    assert "TOTAL: 1 stopped pods" in cli("ls-stale").stdout
    refused = cli("cleanup", run_dir.name)  # no tty, no --yes: nothing happens
    assert refused.returncode == 1 and sim.pods()[0]["desired_status"] == "EXITED"
    done = cli("cleanup", run_dir.name, "--yes")
    assert done.returncode == 0 and f"terminated {manifest['pod_id']}" in done.stdout
    assert json.loads(cli("ls-stale", "--json").stdout) == []
