"""The RunPod simulator, driven only through the real `runpod` SDK (1.12).

The SDK reads `RUNPOD_API_BASE_URL` on every call, so pointing it at the
simulator is one environment variable plus `runpod.api_key`. Pods are real
sshd processes on loopback, reached with paramiko.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import paramiko
import pytest
import requests

from podmagic.testing.sim.catalog import NO_INSTANCES, NO_RESOURCES, NOT_ENOUGH_GPUS
from podmagic.testing.sim.podhost import pod_pids
from podmagic.testing.sim.runpod import RunPodSimulator, Timing
from podmagic.testing.sim.state import load_pods

runpod = pytest.importorskip("runpod")
from runpod import error as rp_error  # noqa: E402

GPU, DC = "NVIDIA L40S", "EU-RO-1"
FAST = Timing(provision_sec=0.2, ports_sec=0.1, ssh_sec=0.0)


@pytest.fixture
def sim(tmp_path, monkeypatch):
    simulator = RunPodSimulator(tmp_path / "sim", timing=FAST).start()
    monkeypatch.setenv("RUNPOD_API_BASE_URL", simulator.base_url)
    monkeypatch.setattr(runpod, "api_key", simulator.api_key)
    yield simulator
    simulator.stop()


def create(name="t", gpu=GPU, dc=DC, **kw):
    kw.setdefault("volume_in_gb", 5)
    return runpod.create_pod(name, "runpod/pytorch:test", gpu, cloud_type="SECURE",
                             data_center_id=dc, ports="22/tcp",
                             volume_mount_path="/workspace", **kw)


def wait_ssh_port(pod_id, timeout=10.0):
    """(ip, port) of private port 22, polling `get_pod` like a backend does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runtime = runpod.get_pod(pod_id)["runtime"]
        for port in (runtime or {}).get("ports") or []:
            if port["privatePort"] == 22:
                return port["ip"], port["publicPort"]
        time.sleep(0.05)
    raise AssertionError(f"no SSH port for {pod_id} within {timeout}s")


def ssh(sim, ip, port, timeout=10.0) -> paramiko.SSHClient:
    deadline = time.monotonic() + timeout
    while True:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(ip, port=port, username="root", key_filename=str(sim.client_key),
                           allow_agent=False, look_for_keys=False, timeout=5)
            return client
        except (OSError, paramiko.SSHException):
            client.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def run(client, command) -> str:
    _, out, err = client.exec_command(command, timeout=15)
    return out.read().decode() + err.read().decode()


def test_create_ssh_stop_resume_terminate(sim):
    pod = create()
    first = runpod.get_pod(pod["id"])
    assert first["desiredStatus"] == "RUNNING" and first["runtime"] is None
    assert first["costPerHr"] == runpod.get_gpu(GPU)["securePrice"]
    assert first["machine"]["gpuDisplayName"] == "L40S"

    ip, port = wait_ssh_port(pod["id"])
    assert ip == "127.0.0.1"
    client = ssh(sim, ip, port)
    assert run(client, "echo hi") == "hi\n"
    run(client, 'echo kept > "$PODMAGIC_POD_ROOT/workspace/f"; echo lost > "$PODMAGIC_POD_ROOT/root/g"')
    client.close()

    assert runpod.stop_pod(pod["id"]) == {"id": pod["id"], "desiredStatus": "EXITED"}
    stopped = runpod.get_pod(pod["id"])
    assert stopped["desiredStatus"] == "EXITED" and stopped["runtime"] is None
    assert stopped["uptimeSeconds"] == 0 and "Exited by User" in stopped["lastStatusChange"]
    assert sim.pod(pod["id"])["billing"] == "disk" and sim.pod(pod["id"])["disk_usd_per_hour"] > 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((ip, port), timeout=2)

    assert runpod.resume_pod(pod["id"], 1)["desiredStatus"] == "RUNNING"
    client = ssh(sim, *wait_ssh_port(pod["id"]))
    assert run(client, 'cat "$PODMAGIC_POD_ROOT/workspace/f"; ls "$PODMAGIC_POD_ROOT/root"') == "kept\n"
    client.close()

    assert [p["id"] for p in runpod.get_pods()] == [pod["id"]]
    runpod.terminate_pod(pod["id"])
    assert runpod.get_pod(pod["id"]) is None and runpod.get_pods() == []
    record = sim.pod(pod["id"])
    assert record["desired_status"] == "TERMINATED" and record["accrued_usd"] > 0
    assert [p["desired_status"] for p in load_pods(sim.state_dir)] == ["TERMINATED"]


def test_stock_out_uses_runpods_messages(sim):
    sim.set_stock(GPU, DC, 0)
    with pytest.raises(rp_error.QueryError, match="no longer any instances available"):
        create()
    sim.set_stock(GPU, DC, 0, message=NO_RESOURCES)
    with pytest.raises(rp_error.QueryError) as info:
        create()
    assert str(info.value) == NO_RESOURCES

    sim.set_stock(GPU, DC, 1)
    pod = create()
    with pytest.raises(rp_error.QueryError, match="no longer any instances"):
        create()
    runpod.stop_pod(pod["id"])          # a stop frees the GPU ...
    other = create()                    # ... which another pod takes
    with pytest.raises(rp_error.QueryError) as info:
        runpod.resume_pod(pod["id"], 1)
    assert str(info.value) == NOT_ENOUGH_GPUS
    assert create(gpu="NVIDIA RTX A6000")["id"]  # other combinations are unaffected
    assert {p["id"] for p in sim.live_pods()} >= {pod["id"], other["id"]}
    assert NO_INSTANCES.startswith("There are no longer any instances available")


def test_5xx_with_non_json_body_surfaces_as_the_sdks_error(sim):
    sim.inject("podFindAndDeployOnDemand", status=502)
    with pytest.raises(requests.exceptions.JSONDecodeError):
        create()
    assert sim.live_pods() == []

    sim.inject("podFindAndDeployOnDemand", status=503, apply=True)
    with pytest.raises(requests.exceptions.JSONDecodeError):
        create(name="lost-answer")
    leaked = runpod.get_pods()          # the pod exists although the client saw a 503
    assert [p["name"] for p in leaked] == ["lost-answer"]

    sim.inject("podTerminate", times=2, status=500)
    for _ in range(2):
        with pytest.raises(requests.exceptions.JSONDecodeError):
            runpod.terminate_pod(leaked[0]["id"])
    runpod.terminate_pod(leaked[0]["id"])
    assert sim.live_pods() == []

    sim.inject("gpuTypes", message="Something went wrong. Please try again later.")
    with pytest.raises(rp_error.QueryError, match="Something went wrong"):
        runpod.get_gpus()
    assert sim.call_count("podTerminate") == 3


def test_unauthorized_without_the_key(sim, monkeypatch):
    monkeypatch.setattr(runpod, "api_key", "wrong-key")
    with pytest.raises(rp_error.AuthenticationError):
        runpod.get_gpus()
    answer = requests.post(sim.graphql_url, json={"query": "{ myself { id } }"}, timeout=5)
    assert answer.status_code == 401
    assert runpod.get_gpus(api_key=sim.api_key)


def test_unescaped_quote_from_the_sdk_is_a_syntax_error(sim):
    with pytest.raises(rp_error.QueryError, match="Syntax Error"):
        create(docker_args='bash -c "echo hi"')
    assert sim.live_pods() == []


def test_pod_killed_mid_run(sim):
    pod = create()
    client = ssh(sim, *wait_ssh_port(pod["id"]))
    run(client, "setsid nohup sleep 300 > /dev/null 2>&1 < /dev/null &")
    _, out, _ = client.exec_command("sleep 60; echo never")
    marker = f"RUNPOD_POD_ID={pod['id']}"
    assert len(pod_pids(marker)) >= 2

    killed = sim.kill_pod(pod["id"], status="EXITED")
    assert killed["desired_status"] == "EXITED"
    assert out.read() == b""            # the session died with the host
    assert pod_pids(marker) == []
    seen = runpod.get_pod(pod["id"])
    assert seen["desiredStatus"] == "EXITED" and seen["runtime"] is None
    client.close()

    second = create(name="t2")
    wait_ssh_port(second["id"])
    sim.kill_pod(second["id"], status="TERMINATED")
    assert runpod.get_pod(second["id"]) is None


SELF_TERMINATE = """#!/bin/sh
# what a pod-side watchdog does: terminate this pod (or $1) with the pod's own key
q='{"query": "mutation { podTerminate(input: {podId: \\"'"${1:-$RUNPOD_POD_ID}"'\\"}) }"}'
curl -s -X POST "$RUNPOD_API_BASE_URL/graphql" -H "Authorization: Bearer $RUNPOD_API_KEY" \\
  -H "Content-Type: application/json" -d "$q"
"""


def test_pod_terminates_itself_with_its_own_key(sim):
    pod, other = create(), create(name="other")
    client = ssh(sim, *wait_ssh_port(pod["id"]))
    stdin, out, _ = client.exec_command('cat > "$PODMAGIC_POD_ROOT/bye.sh"')
    stdin.write(SELF_TERMINATE)
    stdin.channel.shutdown_write()
    out.channel.recv_exit_status()
    script = 'sh "$PODMAGIC_POD_ROOT/bye.sh"'
    assert "only act on its own pod" in run(client, f"{script} {other['id']}")
    assert run(client, "env | grep -c ^RUNPOD_API_KEY=rpa_POD") == "1\n"
    run(client, f"setsid nohup {script} > /dev/null 2>&1 < /dev/null &")
    deadline = time.monotonic() + 10
    while sim.pod(pod["id"])["desired_status"] != "TERMINATED":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    client.close()
    assert [p["id"] for p in runpod.get_pods()] == [other["id"]]
    assert any(c.by_pod == pod["id"] and c.operation == "podTerminate" for c in sim.calls)


def test_slow_provisioning_and_slow_ssh_start(sim):
    sim.set_timing(provision_sec=0.4, ports_sec=0.3, ssh_sec=0.8)
    pod = create()
    assert runpod.get_pod(pod["id"])["runtime"] is None
    time.sleep(0.5)
    assert runpod.get_pod(pod["id"])["runtime"]["ports"] == []
    ip, port = wait_ssh_port(pod["id"])
    with pytest.raises(ConnectionRefusedError):  # the mapping is there, sshd is not yet
        socket.create_connection((ip, port), timeout=2)
    client = ssh(sim, ip, port)
    assert run(client, "echo hi") == "hi\n"
    client.close()


def test_command_line_prints_its_base_url(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "podmagic.testing.sim.runpod", "--port", "0", "--state-dir",
         str(tmp_path / "cli"), "--api-key", "k123", "--stock", f"{GPU}@{DC}=0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        query = {"query": runpod.api.mutations.pods.generate_pod_deployment_mutation(
            "x", "img", GPU, data_center_id=DC)}
        answer = requests.post(f"{url}/graphql", data=json.dumps(query),
                               headers={"Authorization": "Bearer k123"}, timeout=5).json()
        assert answer["errors"][0]["message"] == NO_INSTANCES
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    assert json.loads((tmp_path / "cli" / "state.json").read_text())["pods"] == []
    assert os.path.exists(tmp_path / "cli" / "account_key.pub")


def test_never_ready_pod_terminates_promptly_and_state_reloads(tmp_path, monkeypatch):
    sim = RunPodSimulator(tmp_path / "sim", timing=FAST, private_port_entry=True).start()
    monkeypatch.setenv("RUNPOD_API_BASE_URL", sim.base_url)
    monkeypatch.setattr(runpod, "api_key", sim.api_key)
    try:
        sim.set_timing(provision_sec=float("inf"))
        stuck = create(name="stuck")
        time.sleep(0.3)
        assert runpod.get_pod(stuck["id"])["runtime"] is None
        started = time.monotonic()
        runpod.terminate_pod(stuck["id"])
        assert time.monotonic() - started < 2

        sim.set_timing(provision_sec=0.1)
        kept = create(name="kept")
        wait_ssh_port(kept["id"])
        entries = runpod.get_pod(kept["id"])["runtime"]["ports"]
        assert [e["isIpPublic"] for e in entries] == [False, True]
        runpod.stop_pod(kept["id"])
        assert runpod.stop_pod(kept["id"])["desiredStatus"] == "EXITED"
    finally:
        sim.stop()

    again = RunPodSimulator(tmp_path / "sim", api_key=sim.api_key).start()
    try:
        monkeypatch.setenv("RUNPOD_API_BASE_URL", again.base_url)
        assert [(p["name"], p["desiredStatus"]) for p in runpod.get_pods()] == [("kept", "EXITED")]
        assert [p["desired_status"] for p in again.pods()] == ["TERMINATED", "EXITED"]
    finally:
        again.stop()
