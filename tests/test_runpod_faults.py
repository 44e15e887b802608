"""Fault injection: many randomised runs against the RunPod simulator (held to openapi.json).

Each run draws faults from a menu and a lifecycle:
- control plane: 5xx on create, get, stop and terminate; creates whose answer is lost (also
  while the listing lags behind the create); 429 bursts with Retry-After; stock-outs;
- pods: a slow sshd, SSH never ready, a phantom image tag that never starts, a network-volume
  pod (which RunPod refuses to stop), the pod killed mid-run;
- the client: killed with `kill -9` once SSH is up (setup, staging, preflight, run), or sent
  SIGTERM in any phase from provisioning on.
At the end:
- every run that was not killed with -9 has a manifest (a SIGTERM one says interrupted);
- no pod bills compute (nothing RUNNING), and the only pods left are the stopped ones a
  `stop` lifecycle asked to keep: no leaked pod, whatever failed;
- no log line was lost or repeated (complete runs have every line, failed runs a gap-free prefix);
- the simulator saw no exchange that breaks RunPod's OpenAPI document.

A `kill -9` between the create and SSH coming up is not drawn here: the client-side sentinel covers
that window, tested in tests/test_runpod_realism.py.
`PODMAGIC_FAULT_RUNS` (default 50) and `PODMAGIC_FAULT_SEED` reproduce a run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from podmagic.backends.runpod.backend import RunPodBackend
from podmagic.testing.sim.runpod import RunPodSimulator, Timing

pytestmark = pytest.mark.e2e  # real backends end to end: not in the fast lane (-m "not e2e")

RUNS = int(os.environ.get("PODMAGIC_FAULT_RUNS", "50"))
SEED = int(os.environ.get("PODMAGIC_FAULT_SEED", str(int(time.time()))))
LINES = 40
GUARD_SEC = 2
REPO = Path(__file__).resolve().parent.parent
NEWER = "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404"
H100, A100, EU, US = "NVIDIA H100 80GB HBM3", "NVIDIA A100 80GB PCIe", "EU-RO-1", "US-MD-1"
FAULTS = ("create_5xx", "create_lost", "lost_while_listing_lags", "rate_limited", "stockout", "terminate_5xx",
          "terminate_lost", "stop_5xx", "get_5xx", "slow_ssh", "kill", "never_ready", "phantom",
          "network_volume", "client_kill9", "client_sigterm")
FAILING = {"kill", "never_ready", "phantom", "client_kill9", "client_sigterm"}
KILL9_PHASES = ("setup", "staging", "preflight", "run")
TERM_PHASES = ("provision", "setup", "staging", "preflight", "run")
SPEC = """name: f{i}
pod:
  image: {image}
  datacenters: [{eu}, {us}]
  gpu_order: ["{h100}", "{a100}"]
budget: {{ssh_ready_timeout_sec: {ready}}}
{storage}setup:
  - {{command: "sleep {setup}"}}
preflight:
  - {{command: "sleep {setup}"}}
run: |
  for i in $(seq 0 {last}); do echo "line $i"; sleep {pause}; done
lifecycle: {{on_success: {on_success}, on_failure: {on_failure}}}
"""
DRIVER = """
import sys
from pathlib import Path
from podmagic.run import api
from podmagic.backends.runpod.backend import RunPodBackend
prepared = api.start(api.prepare(Path(sys.argv[1]).read_text(), cwd=Path(sys.argv[2]), backend="runpod"))
print(prepared.plan.run_dir, flush=True)
backend = RunPodBackend(key_path=sys.argv[3], poll=(0.02, 0.1), retry_delays=(0.02,) * 4, lost_create_sec=1.0)
try:
    api.execute(prepared, backend=backend)
except KeyboardInterrupt:
    sys.exit(130)
"""


def _arm(sim: RunPodSimulator, faults: set[str]) -> None:
    sim.faults.clear()
    sim.listing_lag_sec = 0.0
    sim.set_timing(provision_sec=0.05, ports_sec=0.05, ssh_sec=0.5 if "slow_ssh" in faults else 0.0)
    sim.set_stock(H100, EU, 0 if "stockout" in faults else None)
    if "never_ready" in faults:
        sim.set_timing(provision_sec=float("inf"))
    if "create_5xx" in faults:
        sim.inject("createPod", status=502, body="<html>502 Bad Gateway</html>")   # a gateway's page
    if "create_lost" in faults:
        sim.inject("createPod", status=504, apply=True)
    if "lost_while_listing_lags" in faults:
        sim.listing_lag_sec = 0.5
        sim.inject("createPod", drop=True, apply=True)
    if "rate_limited" in faults:
        sim.inject("*", times=2, status=429, retry_after=1)
    if "terminate_5xx" in faults:
        sim.inject("podAction:terminate", times=2, status=500)
    if "terminate_lost" in faults:
        sim.inject("podAction:terminate", status=502, apply=True)
    if "stop_5xx" in faults:
        sim.inject("podAction:stop", status=503)
    if "get_5xx" in faults:
        sim.inject("getPod", times=2, status=502)


def _killer(sim: RunPodSimulator, run_dir) -> threading.Thread:
    """Kill this run's pod (from the run's pod.json) once its streamed log reaches line 5."""
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


def _phase(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "status.json").read_text()).get("phase")
    except (OSError, ValueError):
        return None


def _client(sim, project, text_path: Path, faults: set[str], rng: random.Random):
    """A client process, killed (-9) or sent SIGTERM once it reaches a random phase."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **sim.client_env(), "PODMAGIC_HEARTBEAT_TIMEOUT_SEC": str(GUARD_SEC)}
    proc = subprocess.Popen([sys.executable, str(text_path.parent / "driver.py"), str(text_path), str(project),
                             str(sim.client_key)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = Path(proc.stdout.readline().strip())
    kill9 = "client_kill9" in faults
    phase = rng.choice(KILL9_PHASES if kill9 else TERM_PHASES)
    deadline = time.monotonic() + 60
    while _phase(run_dir) != phase and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if kill9:
        proc.kill()
    else:
        proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    return run_dir, phase, code


def _one_run(sim, project, tmp_path, i: int, rng: random.Random):
    from podmagic.run import api

    faults = set(rng.sample(FAULTS, rng.choice((0, 1, 1, 2))))
    if {"client_kill9", "client_sigterm"} <= faults:
        faults.discard("client_sigterm")
    if faults & {"never_ready", "phantom"}:  # the 1 s SSH timeout may end the run before the signal lands
        faults -= {"client_kill9", "client_sigterm"}
    client = faults & {"client_kill9", "client_sigterm"}
    on_success = rng.choice(("delete", "delete", "stop"))
    on_failure = rng.choice(("delete", "stop"))
    _arm(sim, faults)
    text = SPEC.format(
        i=i, eu=EU, us=US, h100=H100, a100=A100, last=LINES - 1,
        image="runpod/pytorch:2.4.0-py3.13-cuda12.4.1-devel-ubuntu22.04" if "phantom" in faults
        else rng.choice(("runpod/pytorch:2.4.0", NEWER, NEWER)),  # 2.4.0 has no uv: podmagic copies it
        ready=1 if faults & {"never_ready", "phantom"} else 20,
        storage="storage: {mode: network_volume, volume_name: data}\n" if "network_volume" in faults else "",
        setup=0.3 if client else 0, pause=0.1 if "kill" in faults or client else 0.005,
        on_success=on_success, on_failure=on_failure)
    t0 = time.monotonic()
    if client:
        spec = tmp_path / f"spec{i}.yaml"
        spec.write_text(text)
        run_dir, phase, code = _client(sim, project, spec, faults, rng)
        manifest_path = run_dir / "runpod_deploy_pull_manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
        print(f"run {i}: {time.monotonic() - t0:.2f}s {sorted(faults)} at {phase} exit {code}")
        return faults, on_success, on_failure, manifest, run_dir, phase
    prepared = api.start(api.prepare(text, cwd=project, backend="runpod"))
    run_dir = prepared.plan.run_dir
    killer = _killer(sim, run_dir) if "kill" in faults and not faults & {"never_ready", "phantom"} else None
    backend = RunPodBackend(key_path=str(sim.client_key), poll=(0.02, 0.1), retry_delays=(0.02,) * 4,
                            lost_create_sec=1.0)
    manifest = api.execute(prepared, backend=backend)
    if killer:
        killer.join(timeout=30)
    print(f"run {i}: {time.monotonic() - t0:.2f}s {sorted(faults)} {manifest['error']}")
    return faults, on_success, on_failure, manifest, run_dir, None


def _settle(sim, timeout: float) -> dict[str, str]:
    """Live pods once every guard of a killed client had time to fire."""
    deadline = time.monotonic() + timeout
    while True:
        live = {p["id"]: p["desired_status"] for p in sim.live_pods()}
        if "RUNNING" not in live.values() or time.monotonic() > deadline:
            return live
        time.sleep(0.2)


def test_randomised_fault_injection_leaks_nothing_and_loses_no_line(tmp_path, project, monkeypatch):
    rng = random.Random(SEED)
    volumes = ({"id": "vol1abc", "name": "data", "size": 50, "dataCenter": EU},)
    sim = RunPodSimulator(tmp_path / "sim", timing=Timing(0.05, 0.05, 0.0), network_volumes=volumes).start()
    monkeypatch.setenv("RUNPOD_API_BASE_URL", sim.base_url)
    monkeypatch.setenv("RUNPOD_API_KEY", sim.api_key)
    (tmp_path / "driver.py").write_text(DRIVER)
    results, started = [], time.monotonic()
    try:
        for i in range(RUNS):
            results.append(_one_run(sim, project, tmp_path, i, rng))
        live = _settle(sim, GUARD_SEC + 45)
        pods = sim.pods()
    finally:
        sim.stop()
    context = f"seed={SEED}"
    assert sim.contract.violations == [], (context, sim.contract.violations[:5])
    kept, full = set(), [f"line {n}" for n in range(LINES)]
    for faults, on_success, on_failure, manifest, run_dir, phase in results:
        if "client_kill9" in faults:
            continue  # no manifest by design; its pod is checked below (nothing left RUNNING)
        assert manifest is not None, (context, faults, phase)
        failed = bool(faults & FAILING)
        assert manifest["failed"] is failed, (context, faults, phase, manifest["error"])
        if "client_sigterm" in faults:
            assert manifest["interrupted"] is True and "SIGTERM" in manifest["error"], (context, manifest["error"])
        action = on_failure if failed else on_success
        if "network_volume" in faults or action == "delete":
            assert manifest["pod_final_state"] in ("TERMINATED", None), (context, faults, action, manifest)
        elif manifest["pod_final_state"] == "EXITED":
            kept.add(manifest["pod_id"])
        if faults & {"never_ready", "phantom"} or phase in ("provision", "setup", "staging", "preflight"):
            continue
        lines = (run_dir / "run.log").read_text().splitlines()
        assert lines == (full[:len(lines)] if failed else full), (context, faults, lines[-3:])
    assert "RUNNING" not in live.values(), (context, live)
    assert set(live) == kept, (context, live, kept)
    billed = sum(p["accrued_usd"] for p in pods)
    fired = len(sim.faults.fired)
    print(f"\n{RUNS} runs, {fired} injected faults, {len(kept)} stopped pods kept on purpose, 0 pods billing "
          f"compute at the end, ${billed:.2f} simulated spend, {sim.contract.checked} exchanges validated, "
          f"{time.monotonic() - started:.1f}s, {context}")
