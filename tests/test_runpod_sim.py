"""The RunPod simulator, driven through plain REST v2 (httpx), as RunPod's document describes it.

Pods are real sshd processes on loopback, reached with paramiko. Every exchange here is also
validated against openapi.json by the simulator (the `sim` fixture fails on any violation).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import paramiko
import pytest

from podmagic.testing.sim.catalog import NO_INSTANCES, NO_RESOURCES
from podmagic.testing.sim.podhost import pod_pids
from podmagic.testing.sim.runpod import RunPodSimulator, Timing
from podmagic.testing.sim.state import load_pods

from runpod_helpers import finish_sim, start_sim

pytestmark = pytest.mark.e2e  # real backends end to end: not in the fast lane (-m "not e2e")

GPU, DC = "NVIDIA L40S", "EU-RO-1"
OLD, NEW, PHANTOM = ("runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04",
                     "runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404",
                     "runpod/pytorch:2.4.0-py3.13-cuda12.4.1-devel-ubuntu22.04")


@pytest.fixture
def sim(tmp_path, monkeypatch):
    simulator = start_sim(tmp_path, monkeypatch)
    yield simulator
    finish_sim(simulator)


def client(sim, key=None) -> httpx.Client:
    return httpx.Client(base_url=sim.base_url, headers={"Authorization": f"Bearer {key or sim.api_key}"}, timeout=10)


def create(http, name="t", image=OLD, **kw):
    body = {"name": name, "image": image, "gpu": {"id": kw.pop("gpu", GPU), "count": 1},
            "dataCenterIds": [kw.pop("dc", DC)], "ports": kw.pop("ports", ["22/tcp"]), "startSsh": True, **kw}
    return http.post("/v2/pods", json=body)


def wait_direct(http, pod_id, timeout=10.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = http.get(f"/v2/pods/{pod_id}").json()
        if pod["ssh"]["direct"]:
            return pod
        time.sleep(0.05)
    raise AssertionError(f"no ssh.direct for {pod_id} within {timeout}s: {pod}")


def ssh(key_path, host, port, timeout=10.0) -> paramiko.SSHClient:
    deadline = time.monotonic() + timeout
    while True:
        c = paramiko.SSHClient()
        c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            c.connect(host, port=port, username="root", key_filename=str(key_path), allow_agent=False,
                      look_for_keys=False, timeout=5)
            return c
        except (OSError, paramiko.SSHException):
            c.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def run(c, command) -> str:
    _, out, err = c.exec_command(command, timeout=15)
    return out.read().decode() + err.read().decode()


def test_statuses_ssh_direct_stop_start_terminate(sim):
    sim.set_timing(provision_sec=0.3, ports_sec=0.3)
    with client(sim) as http:
        answer = create(http, ports=["8888/http"])
        assert answer.status_code == 201
        pod = answer.json()
        assert pod["status"] == "PROVISIONING" and pod["ssh"]["direct"] is None and pod["runtime"] is None
        assert pod["ports"] == ["8888/http"]          # what was asked: no 22/tcp, so never ssh.direct
        seen = set()
        for _ in range(30):
            now = http.get(f"/v2/pods/{pod['id']}").json()
            seen.add((now["status"], now["ssh"]["direct"] is None))
            time.sleep(0.05)
        assert ("RUNNING", True) in seen and ("RUNNING", False) not in seen
        assert now["ssh"]["proxy"]["username"].startswith(pod["id"])

        ok = wait_direct(http, create(http, name="ssh").json()["id"])
        assert ok["status"] == "RUNNING" and ok["runtime"]["ports"][0]["private"] == 22
        c = ssh(sim.client_key, ok["ssh"]["direct"]["host"], ok["ssh"]["direct"]["port"])
        assert run(c, "echo hi") == "hi\n"
        c.close()
        stopped = http.post(f"/v2/pods/{ok['id']}/action", json={"action": "stop"})
        assert stopped.status_code == 200 and stopped.json()["status"] == "EXITED"
        assert stopped.json()["cost"] == 0.0 and stopped.json()["actions"] == ["start", "terminate"]
        again = http.post(f"/v2/pods/{ok['id']}/action", json={"action": "stop"})
        assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"
        assert http.post(f"/v2/pods/{ok['id']}/action", json={"action": "start"}).json()["status"] == "PROVISIONING"
        assert http.post(f"/v2/pods/{ok['id']}/action", json={"action": "terminate"}).status_code == 204
        gone = http.get(f"/v2/pods/{ok['id']}")
        assert gone.status_code == 404 and gone.json() == {"title": "Not Found", "status": 404,
                                                            "detail": "pod not found"}
        assert ok["id"] not in [p["id"] for p in http.get("/v2/pods").json()["pods"]]
        http.post(f"/v2/pods/{pod['id']}/action", json={"action": "terminate"})
    assert sim.pod(ok["id"])["desired_status"] == "TERMINATED"


def test_stock_out_is_a_400_and_the_catalogue_says_so(sim):
    sim.set_stock(GPU, DC, 0)
    with client(sim) as http:
        refused = create(http)
        assert refused.status_code == 400 and refused.json()["detail"] == NO_INSTANCES
        sim.set_stock(GPU, DC, 0, message=NO_RESOURCES)
        assert create(http).json()["detail"] == NO_RESOURCES
        gpus = http.get("/v2/catalog/gpus", params={"include": "AVAILABILITY", "product": "POD"}).json()["gpus"]
        l40s = next(g for g in gpus if g["id"] == GPU)
        assert DC not in [d["id"] for d in l40s["dataCenters"]] and l40s["price"]["secure"] == 0.86
        assert http.get("/v2/catalog/gpus", params={"include": "AVAILABILITY"}).status_code == 400
    assert sim.live_pods() == []


def test_invalid_bodies_are_422_and_count_as_violations(sim):
    with client(sim) as http:
        bad = http.post("/v2/pods", json={"name": "x", "image": "i", "gpu": {"id": GPU}, "minVcpuCount": 2})
        assert bad.status_code == 422 and "minVcpuCount" in " ".join(bad.json()["errors"])
    assert len(sim.contract.violations) == 1 and "request" in sim.contract.violations[0]
    sim.contract.violations.clear()


def test_unauthorized_and_pod_key_scope(sim):
    with client(sim, key="wrong") as http:
        assert http.get("/v2/pods").status_code == 401
    with client(sim) as http:
        pod = wait_direct(http, create(http).json()["id"])
        other = create(http, name="other").json()
    own = sim.plane.store.get(pod["id"]).api_key
    with client(sim, key=own) as http:
        assert http.get(f"/v2/pods/{pod['id']}").status_code == 200
        assert http.get(f"/v2/pods/{other['id']}").status_code == 403
        assert http.get("/v2/pods").status_code == 403
        assert http.post(f"/v2/pods/{pod['id']}/action", json={"action": "terminate"}).status_code == 204


def test_rate_limit_and_injected_faults(sim):
    with client(sim) as http:
        sim.rate_limit(2, window_sec=1.0)
        codes = [http.get("/v2/pods").status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = http.get("/v2/pods")
        assert limited.headers["retry-after"].isdigit() and "RateLimit" in limited.headers
        sim.rate_limit(None)
        sim.inject("createPod", status=503, apply=True)
        assert create(http, name="lost").status_code == 503
        sim.listing_lag_sec = 0.5
        assert http.get("/v2/pods").json()["pods"] == []          # created, not listed yet
        time.sleep(0.6)
        assert [p["name"] for p in http.get("/v2/pods").json()["pods"]] == ["lost"]
        sim.inject("getPod", drop=True)
        with pytest.raises(httpx.TransportError):
            http.get("/v2/pods/whatever")


def test_the_pod_runpod_boots(sim, tmp_path):
    """Bare sessions, /etc/rp_environment, keys only from the account or PUBLIC_KEY, uv by image."""
    with client(sim) as http:
        old = wait_direct(http, create(http, image=OLD).json()["id"])
        c = ssh(sim.client_key, old["ssh"]["direct"]["host"], old["ssh"]["direct"]["port"])
        env = run(c, "echo $RUNPOD_POD_ID; echo $PATH; command -v uv || echo no-uv; command -v python3")
        pod_id, path, uv, python = env.splitlines()
        assert pod_id == "" and "no-uv" == uv and python.endswith("python3")
        root = sim.pod_root(old["id"])
        rp_env = (root / "etc" / "rp_environment").read_text()
        assert f'RUNPOD_POD_ID="{old["id"]}"' in rp_env and "RUNPOD_API_KEY=" in rp_env
        assert run(c, f". {root}/etc/rp_environment; echo $RUNPOD_POD_ID").strip() == old["id"]
        assert f"source {root}/etc/rp_environment" in (root / "root" / ".bashrc").read_text()
        c.close()

        new = wait_direct(http, create(http, name="new", image=NEW).json()["id"])
        c = ssh(sim.client_key, new["ssh"]["direct"]["host"], new["ssh"]["direct"]["port"])
        assert run(c, "command -v uv || echo no-uv").strip() == "no-uv"      # not on a bare PATH
        assert run(c, 'PATH="$HOME/.local/bin:$PATH" uv --version').startswith("uv ")
        c.close()

        stranger = tmp_path / "stranger"
        from podmagic.testing.sshd import keygen

        keygen(stranger, "stranger")
        keyed = create(http, name="keyed", env={"PUBLIC_KEY": (tmp_path / "stranger.pub").read_text().strip()})
        pod = wait_direct(http, keyed.json()["id"])
        assert "PUBLIC_KEY" not in pod["env"]
        c = ssh(stranger, pod["ssh"]["direct"]["host"], pod["ssh"]["direct"]["port"])
        assert run(c, "echo in") == "in\n"
        c.close()
        with pytest.raises(paramiko.AuthenticationException):
            ssh(sim.client_key, pod["ssh"]["direct"]["host"], pod["ssh"]["direct"]["port"], timeout=1)

        phantom = create(http, name="phantom", image=PHANTOM).json()
        time.sleep(0.6)
        stuck = http.get(f"/v2/pods/{phantom['id']}").json()
        assert stuck["status"] == "STARTING" and stuck["runtime"] is None and stuck["cost"] > 0
        assert sim.pod(phantom["id"])["billing"] == "compute"
        for p in http.get("/v2/pods").json()["pods"]:
            http.post(f"/v2/pods/{p['id']}/action", json={"action": "terminate"})


def test_no_registered_key_means_no_ssh(tmp_path, monkeypatch):
    sim = start_sim(tmp_path, monkeypatch, register_key=False)
    try:
        with client(sim) as http:
            assert http.get("/v2/account/ssh-keys").json() == {"keys": []}
            pod = wait_direct(http, create(http).json()["id"])
            time.sleep(0.3)
            with pytest.raises((OSError, paramiko.SSHException)):
                ssh(sim.client_key, "127.0.0.1", pod["ssh"]["direct"]["port"], timeout=0.5)
            keys = [sim.public_key_file.read_text().strip()]
            assert http.put("/v2/account/ssh-keys", json={"keys": keys}).json() == {"keys": keys}
            later = wait_direct(http, create(http, name="later").json()["id"])  # only pods created after
            ssh(sim.client_key, "127.0.0.1", later["ssh"]["direct"]["port"]).close()
    finally:
        finish_sim(sim)


def test_network_volume_pods_refuse_stop_and_community_without_public_ip(tmp_path, monkeypatch):
    volumes = ({"id": "vol1abc", "name": "data", "size": 50, "dataCenter": "US-MD-1"},)
    sim = start_sim(tmp_path, monkeypatch, network_volumes=volumes)
    try:
        with client(sim) as http:
            assert http.get("/v2/network-volumes").json()["networkVolumes"][0]["dataCenter"] == "US-MD-1"
            pod = create(http, dc="US-MD-1", mounts={"network": [{"volumeId": "vol1abc", "path": "/workspace"}]})
            pod = wait_direct(http, pod.json()["id"])
            assert "stop" not in pod["actions"]
            refused = http.post(f"/v2/pods/{pod['id']}/action", json={"action": "stop"})
            assert refused.status_code == 409 and "network volume" in refused.json()["detail"]
            http.post(f"/v2/pods/{pod['id']}/action", json={"action": "terminate"})
            sim.community_public_ip = False
            community = create(http, name="c", cloud="COMMUNITY").json()
            time.sleep(0.8)
            now = http.get(f"/v2/pods/{community['id']}").json()
            assert now["status"] == "RUNNING" and now["ssh"]["direct"] is None and now["ssh"]["proxy"]
            assert now["runtime"]["ports"] == [{"private": 22, "public": None, "type": "tcp", "ip": None}]
            http.post(f"/v2/pods/{community['id']}/action", json={"action": "terminate"})
    finally:
        finish_sim(sim)


def test_pod_killed_mid_run(sim):
    with client(sim) as http:
        pod = wait_direct(http, create(http).json()["id"])
        c = ssh(sim.client_key, "127.0.0.1", pod["ssh"]["direct"]["port"])
        run(c, "setsid nohup sleep 300 > /dev/null 2>&1 < /dev/null &")
        assert pod_pids(f"PODMAGIC_SIM_POD={pod['id']}")
        killed = sim.kill_pod(pod["id"], status="EXITED")
        assert killed["desired_status"] == "EXITED" and not pod_pids(f"PODMAGIC_SIM_POD={pod['id']}")
        assert http.get(f"/v2/pods/{pod['id']}").json()["status"] == "EXITED"
        c.close()


def test_command_line_serves_rest_and_writes_state(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "podmagic.testing.sim.runpod", "--port", "0", "--state-dir",
         str(tmp_path / "cli"), "--api-key", "k123", "--stock", f"{GPU}@{DC}=0", "--provision-sec", "0.1",
         "--ports-sec", "0.1", "--ssh-sec", "0", "--image-env", "PATH=/usr/bin:/bin", "--listing-lag-sec", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer k123"}) as http:
            assert create(http).json()["detail"] == NO_INSTANCES
            made = create(http, gpu="NVIDIA A100 80GB PCIe").json()
        time.sleep(0.5)
        (pod,) = load_pods(tmp_path / "cli")
        assert pod["id"] == made["id"] and pod["status"] == "RUNNING" and pod["ports"] == ["22/tcp"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0
    assert os.path.exists(tmp_path / "cli" / "account_key.pub")
    assert "contract violations" not in proc.stderr.read()


def test_state_reloads_in_a_new_simulator(tmp_path, monkeypatch):
    sim = start_sim(tmp_path, monkeypatch, timing=Timing(0.1, 0.1, 0.0))
    try:
        with client(sim) as http:
            kept = wait_direct(http, create(http, name="kept").json()["id"])
            http.post(f"/v2/pods/{kept['id']}/action", json={"action": "stop"})
    finally:
        finish_sim(sim)
    again = RunPodSimulator(tmp_path / "sim", api_key=sim.api_key).start()
    try:
        with client(again) as http:
            assert [(p["name"], p["status"]) for p in http.get("/v2/pods").json()["pods"]] == [("kept", "EXITED")]
        assert json.loads((tmp_path / "sim" / "state.json").read_text())["pods"][0]["status"] == "EXITED"
    finally:
        finish_sim(again)


def test_command_line_flags_parse_and_mistakes_exit_2(tmp_path, capsys):
    from podmagic.testing.sim.runpod import parse_args

    args = parse_args(["--state-dir", str(tmp_path), "--stock", "NVIDIA A100 80GB PCIe@EU-RO-1=2",
                       "--stock", "NVIDIA H100 80GB HBM3@US-MD-1=inf", "--image-env", "A=1",
                       "--provision-sec", "0.5", "--no-account-key", "--rate-limit", "5/1"])
    assert args.state_dir == tmp_path and args.provision_sec == 0.5 and args.no_account_key is True
    assert args.stock == [(("NVIDIA A100 80GB PCIe", "EU-RO-1"), 2), (("NVIDIA H100 80GB HBM3", "US-MD-1"), None)]
    assert args.image_env == ["A=1"] and args.rate_limit == "5/1" and args.port == 0
    for bad in (["--port", "x", "--state-dir", "d"], ["--stock", "nodc=1", "--state-dir", "d"], ["--port", "1"],
                ["--state-dir", "d", "--nope"], ["--state-dir", "d", "extra"]):
        with pytest.raises(SystemExit) as exc:
            parse_args(bad)
        assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err
