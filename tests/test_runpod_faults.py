"""Fault injection: many randomised runs against the RunPod simulator.

Each run draws faults from a menu (5xx with non-JSON bodies on create, get,
stop and terminate, creates whose answer is lost, stock-outs, a slow sshd,
SSH never ready, the pod killed mid-run) and a lifecycle. At the end:
- every run has a manifest;
- the simulator holds exactly the pods the lifecycle asked to keep
  (`stop` / `preserve`), nothing else: no leaked pod;
- no log line was lost or repeated (complete runs have every line, killed
  runs a gap-free prefix).

`PODMAGIC_FAULT_RUNS` (default 30) and `PODMAGIC_FAULT_SEED` reproduce a run.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time

import pytest

from podmagic.testing.sim.runpod import RunPodSimulator, Timing
from podmagic.backends.runpod.backend import RunPodBackend

pytestmark = pytest.mark.e2e  # real backends end to end: not in the fast lane (-m "not e2e")

RUNS = int(os.environ.get("PODMAGIC_FAULT_RUNS", "30"))
SEED = int(os.environ.get("PODMAGIC_FAULT_SEED", str(int(time.time()))))
LINES = 40
H100, A100, EU, US = "NVIDIA H100 80GB HBM3", "NVIDIA A100 80GB PCIe", "EU-RO-1", "US-MD-1"
FAULTS = ("create_5xx", "create_lost", "stockout", "terminate_5xx", "terminate_lost", "stop_5xx",
          "get_5xx", "slow_ssh", "kill", "never_ready")
SPEC = """name: f{i}
pod:
  image: runpod/pytorch:2.4.0
  datacenters: [{eu}, {us}]
  gpu_order: ["{h100}", "{a100}"]
budget: {{ssh_ready_timeout_sec: {ready}}}
staging: []
run: |
  for i in $(seq 0 {last}); do echo "line $i"; sleep {pause}; done
lifecycle: {{on_success: {on_success}, on_failure: {on_failure}}}
"""


def _arm(sim: RunPodSimulator, faults: set[str]) -> None:
    sim.faults.clear()
    sim.set_timing(provision_sec=0.05, ports_sec=0.05, ssh_sec=0.5 if "slow_ssh" in faults else 0.0)
    sim.set_stock(H100, EU, 0 if "stockout" in faults else None)
    if "never_ready" in faults:
        sim.set_timing(provision_sec=float("inf"))
    if "create_5xx" in faults:
        sim.inject("createPod", status=502)
    if "create_lost" in faults:
        sim.inject("createPod", status=504, apply=True)
    if "terminate_5xx" in faults:
        sim.inject("podAction:terminate", times=2, status=500)
    if "terminate_lost" in faults:
        sim.inject("podAction:terminate", status=502, apply=True)
    if "stop_5xx" in faults:
        sim.inject("podAction:stop", status=503)
    if "get_5xx" in faults:
        sim.inject("getPod", times=2, status=502)


def _killer(sim: RunPodSimulator, run_dir) -> threading.Thread:
    """Kill this run's pod (from its pod.json) once its streamed log reaches line 5."""
    def kill_when_logging():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            log, handle = run_dir / "run.log", run_dir / "pod.json"
            if log.exists() and handle.exists() and "line 5" in log.read_text():
                sim.kill_pod(json.loads(handle.read_text())["pod_id"], status="EXITED")
                return
            time.sleep(0.02)

    thread = threading.Thread(target=kill_when_logging, daemon=True)
    thread.start()
    return thread


def _one_run(sim, project, i: int, rng: random.Random):
    from podmagic.run import api

    faults = set(rng.sample(FAULTS, rng.choice((0, 1, 1, 2))))
    on_success = rng.choice(("delete", "delete", "stop", "preserve"))
    on_failure = rng.choice(("delete", "stop"))
    _arm(sim, faults)
    text = SPEC.format(i=i, eu=EU, us=US, h100=H100, a100=A100, last=LINES - 1,
                       ready=1 if "never_ready" in faults else 20, pause=0.1 if "kill" in faults else 0.005,
                       on_success=on_success, on_failure=on_failure)
    prepared = api.start(api.prepare(text, cwd=project, backend="runpod"))
    run_dir = prepared.plan.run_dir
    killer = _killer(sim, run_dir) if "kill" in faults and "never_ready" not in faults else None
    backend = RunPodBackend(key_path=str(sim.client_key), poll=(0.02, 0.1), retry_delays=(0.02,) * 4,
                            lost_create_sec=1.0)
    t0 = time.monotonic()
    manifest = api.execute(prepared, backend=backend)
    if killer:
        killer.join(timeout=30)
    print(f"run {i}: {time.monotonic() - t0:.2f}s {sorted(faults)} {manifest['error']}")
    return faults, on_success, on_failure, manifest, prepared.plan.run_dir


def test_randomised_fault_injection_leaks_nothing_and_loses_no_line(tmp_path, project, monkeypatch):
    rng = random.Random(SEED)
    sim = RunPodSimulator(tmp_path / "sim", timing=Timing(0.05, 0.05, 0.0)).start()
    monkeypatch.setenv("RUNPOD_API_BASE_URL", sim.base_url)
    monkeypatch.setenv("RUNPOD_API_KEY", sim.api_key)
    results, started = [], time.monotonic()
    try:
        for i in range(RUNS):
            results.append(_one_run(sim, project, i, rng))
        live = {p["id"]: p["desired_status"] for p in sim.live_pods()}
    finally:
        sim.stop()
    assert sim.contract.violations == [], sim.contract.violations[:5]
    context = f"seed={SEED}"
    kept = set()
    full = [f"line {n}" for n in range(LINES)]
    for faults, on_success, on_failure, manifest, run_dir in results:
        assert (run_dir / "runpod_deploy_pull_manifest.json").exists(), context
        failed = bool(faults & {"kill", "never_ready"})
        assert manifest["failed"] is failed, (context, faults, manifest["error"])
        action = on_failure if failed else on_success
        if action in ("stop", "preserve") and manifest["pod_final_state"] in ("EXITED", "RUNNING"):
            kept.add(manifest["pod_id"])
        elif manifest["pod_id"]:
            assert manifest["pod_final_state"] == "TERMINATED", (context, faults, action, manifest)
        if "never_ready" in faults:
            continue
        lines = (run_dir / "run.log").read_text().splitlines()
        assert lines == (full[:len(lines)] if failed else full), (context, faults, lines[-3:])
    assert set(live) == kept, (context, live, kept)
    fired = len(sim.faults.fired)
    print(f"\n{RUNS} runs, {fired} injected faults, {len(kept)} pods kept on purpose, "
          f"{time.monotonic() - started:.1f}s, {context}")
