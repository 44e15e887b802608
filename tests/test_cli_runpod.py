"""runpod-deploy's `state_file` honoured on the runpod backend, `cleanup --state-file`, `ls-stale`,
and the `--fallback-cloud-type` decision, against the simulator."""

from __future__ import annotations

import json
from argparse import Namespace

import pytest

from test_cli_mistakes import cli


from test_runpod_runs import execute, image_env, sim, spec  # noqa: E402,F401 - fixtures reused

pytestmark = pytest.mark.e2e  # real runs, CLI subprocesses or kernels: not in the fast lane (-m "not e2e")


def test_state_file_points_at_a_kept_pod_and_cleanup_releases_it(sim, tmp_path):  # noqa: F811
    pointer = tmp_path / "state" / "current.json"
    text = spec(run="exit 3").replace("name: rp\n", f"name: rp\nstate_file: {pointer}\n")
    manifest, run_dir, _ = execute(sim, tmp_path, text)
    assert manifest["failed"] and manifest["pod_final_state"] == "EXITED"  # on_failure: stop keeps the pod
    recorded = json.loads(pointer.read_text())
    assert recorded == {k: manifest[k] for k in ("pod_id", "gpu_id", "image", "datacenter_id")}
    env = {"RUNPOD_API_BASE_URL": sim.base_url, "RUNPOD_API_KEY": sim.api_key, "HOME": str(tmp_path)}
    stale = cli("ls-stale", "--json", "--project-root", str(run_dir.parent.parent.parent), cwd=tmp_path, env=env)
    assert stale.returncode == 0 and [r["pod_id"] for r in json.loads(stale.stdout)] == [manifest["pod_id"]]
    dry = cli("cleanup", "--state-file", str(pointer), "--dry-run", cwd=tmp_path, env=env)
    assert dry.returncode == 0 and f"would delete pod {manifest['pod_id']}" in dry.stdout and pointer.exists()
    res = cli("cleanup", "--state-file", str(pointer), "--yes", cwd=tmp_path, env=env)
    assert res.returncode == 0 and f"terminated {manifest['pod_id']}" in res.stdout, res.stderr
    assert not pointer.exists() and sim.live_pods() == []
    again = cli("cleanup", "--state-file", str(pointer), "--yes", cwd=tmp_path, env=env)
    assert again.returncode == 2 and "does not exist" in again.stderr


def test_state_file_removed_when_the_pod_is_deleted(sim, tmp_path):  # noqa: F811
    pointer = tmp_path / "current.json"
    text = spec(run="mkdir -p out").replace("name: rp\n", f"name: rp\nstate_file: {pointer}\n")
    manifest, _, _ = execute(sim, tmp_path, text)
    assert not manifest["failed"], manifest["error"]
    assert manifest["pod_final_state"] == "TERMINATED"
    assert not pointer.exists()


def test_fallback_cloud_type_only_after_a_stock_out_and_where_it_can_help():
    from podmagic.ui.cli import runs

    class P:  # the parts of a Prepared the decision reads
        def __init__(self, backend="runpod", mode="ephemeral", cloud="SECURE"):
            self.plan = Namespace(backend=backend)
            self.spec = Namespace(storage=Namespace(mode=mode), pod=Namespace(cloud_type=cloud))

    args = Namespace(fallback_cloud_type="COMMUNITY")
    assert runs._stock_out({"error": "no capacity for any GPU in ['A'] ...", "pod_id": None})
    assert not runs._stock_out({"error": "setup[0] failed", "pod_id": "p1"})
    assert runs._fallback_ok(args, P())
    assert not runs._fallback_ok(args, P(mode="network_volume"))
    assert not runs._fallback_ok(args, P(cloud="COMMUNITY"))
    assert not runs._fallback_ok(args, P(backend="local"))
    assert not runs._fallback_ok(Namespace(fallback_cloud_type=None), P())


def test_fallback_cloud_type_retries_once_after_a_stock_out(sim, tmp_path):  # noqa: F811
    sim.set_stock("NVIDIA L40S", "EU-RO-1", 0)
    work = tmp_path / "work"
    work.mkdir()
    (work / "job.yaml").write_text("name: fb\npod: {image: runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04, "
                                   "datacenters: [EU-RO-1], gpu_order: [NVIDIA L40S]}\nstaging: []\nrun: echo hi\n"
                                   f"ssh: {{key_path: {sim.client_key}}}\n")
    env = {"RUNPOD_API_BASE_URL": sim.base_url, "RUNPOD_API_KEY": sim.api_key, "HOME": str(tmp_path)}
    res = cli("run", "job.yaml", "--backend", "runpod", "--fallback-cloud-type", "COMMUNITY", cwd=work, env=env)
    assert res.returncode == 1 and "stock-out on pod create; retrying with cloud_type=COMMUNITY" in res.stderr
    runs = sorted((work / "artifacts" / "runpod").glob("fb-*"))
    assert len(runs) == 2 and not sim.live_pods()
    launches = [json.loads((r / "launch.json").read_text()) for r in runs]
    assert sorted(str(launch["overrides"].get("cloud_type")) for launch in launches) == ["COMMUNITY", "None"]
    same = cli("run", "job.yaml", "--backend", "runpod", "--fallback-cloud-type", "SECURE", cwd=work, env=env)
    assert same.returncode == 1 and "matches the configured pod.cloud_type; skipped" in same.stderr
