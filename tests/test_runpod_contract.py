"""The contract: every exchange of full RunPod runs is validated against RunPod's openapi.json,
and the checker itself catches drift (a field missing, an undeclared parameter, a bad 429)."""

from __future__ import annotations

import json

import pytest

from helpers import git_project

from podmagic.backends.runpod import catalog
from podmagic.backends.runpod.backend import RunPodBackend
from podmagic.testing.sim.contract import Contract

from runpod_helpers import finish_sim, image_env_for, start_sim

pytestmark = pytest.mark.e2e  # full runs against the simulator: not in the fast lane (-m "not e2e")

SPEC = """name: {name}
pod:
  image: runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04
  datacenters: [EU-RO-1, US-MD-1]
  gpu_order: ["NVIDIA H100 80GB HBM3", "NVIDIA A100 80GB PCIe"]
  python_version: "3.12.1"
{storage}run: |
  cd /workspace/repo && uv run python -c "print('ok')"
lifecycle: {{on_success: {on_success}, on_failure: delete}}
"""


def test_full_runs_validate_against_the_document(tmp_path, monkeypatch, python_mirror, uv_python_dir):
    from podmagic.run import api

    volumes = ({"id": "vol1abc", "name": "data", "size": 50, "dataCenter": "US-MD-1"},)
    sim = start_sim(tmp_path, monkeypatch, network_volumes=volumes,
                    image_env=image_env_for(python_mirror, uv_python_dir, tmp_path))
    try:
        project = git_project(tmp_path / "proj", {"pyproject.toml": '[project]\nname = "p"\nversion = "0"\n'
                                                                   'requires-python = ">=3.10"\n'})
        backend = RunPodBackend(key_path=str(sim.client_key), poll=(0.05, 0.2), retry_delays=(0.05,) * 4,
                                lost_create_sec=1.0)

        def run(name, on_success="delete", storage=""):
            text = SPEC.format(name=name, on_success=on_success, storage=storage)
            return api.execute(api.start(api.prepare(text, cwd=project, backend="runpod")), backend=backend)

        sim.set_stock("NVIDIA H100 80GB HBM3", "EU-RO-1", 0)                    # failover
        sim.inject("createPod", status=503)                                      # a 5xx to retry
        sim.inject("getPod", status=429, retry_after=1)                          # a rate limit
        results = [run("happy"), run("rec", "recycle"), run("rec", "recycle"),   # recycle: stop, then start
                   run("vol", "stop", "storage: {mode: network_volume, volume_name: data}\n")]
        assert [m["failed"] for m in results] == [False] * 4, [m["error"] for m in results]
        assert results[2]["pod_resumed"] and results[3]["pod_final_state"] == "TERMINATED"
        assert [o.id for o in catalog(["NVIDIA L40S"])] == ["NVIDIA L40S"]
        seen = {c.operation for c in sim.calls}
        assert {"createPod", "getPod", "listPods", "podAction:stop", "podAction:start", "podAction:terminate",
                "getSshKeys", "listNetworkVolumes", "listGpuTypes"} <= seen
        for pod in sim.live_pods():  # the recycled pod, kept stopped on purpose
            backend.api(lambda *a, **k: None).terminate(pod["id"])
    finally:
        finish_sim(sim)          # fails on any violation
    assert sim.contract.checked >= 40, sim.contract.checked


POD = {"id": "p1", "name": "n", "status": "RUNNING", "actions": ["stop"], "image": "i", "args": "", "disk": 20,
       "mounts": {}, "ports": ["22/tcp"], "env": {}, "registry": None, "cloud": "SECURE", "dataCenterId": "EU-RO-1",
       "cudaVersion": None, "ssh": {"proxy": None, "direct": None}, "template": None, "cost": 1.0,
       "locked": False, "runtime": None, "createdAt": "2026-01-01T00:00:00Z", "startedAt": None,
       "globalNetworking": {"enabled": False}}
JSON = {"Content-Type": "application/json"}


def test_the_checker_catches_drift():
    c = Contract()
    assert c.response_problems("GET", "/v2/pods/p1", 200, JSON, json.dumps(POD).encode()) == []
    broken = {k: v for k, v in POD.items() if k != "ssh"}
    assert "'ssh' is a required property" in " ".join(
        c.response_problems("GET", "/v2/pods/p1", 200, JSON, json.dumps(broken).encode()))
    assert c.response_problems("GET", "/v2/pods/p1", 200, JSON, json.dumps({**POD, "status": "PAUSED"}).encode())
    assert c.request_problems("GET", "/v2/pods", {"cursor": ["x"]}, None, None) == \
        ["query parameter 'cursor' is not declared"]
    assert c.request_problems("POST", "/v2/pods/p1/action", {}, b'{"action": "resume"}', "application/json")
    problem = {"title": "Too Many Requests", "status": 429, "detail": "slow down"}
    headers = {"Content-Type": "application/problem+json"}
    assert c.response_problems("GET", "/v2/pods", 429, headers, json.dumps(problem).encode()) == \
        ["429 without an integer Retry-After (None)"]
    assert c.response_problems("GET", "/v2/pods", 429, {**headers, "Retry-After": "3"}, json.dumps(problem).encode()) == []
    assert c.request_problems("POST", "/v2/graphql", {}, b"{}", "application/json")   # not an operation
