"""podmagic against the pod RunPod really boots (the simulator, held to openapi.json), and an SSH
host without uv: the seed recipe end to end, uv installed when missing, keys, proxy-only pods,
phantom images, network-volume pods that cannot stop, the pod-side guard, SIGTERM/kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import git_project

from podmagic.backends.runpod.backend import RunPodBackend
from podmagic.run.events import read_events
from podmagic.testing.sshd import SSHServer

from runpod_helpers import finish_sim, image_env_for, start_sim

pytestmark = pytest.mark.e2e  # real runs against the simulator: not in the fast lane (-m "not e2e")

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = '[project]\nname = "p"\nversion = "0"\nrequires-python = ">=3.10"\n'
SEED = """name: seed
pod:
  image: {image}
  datacenters: [EU-RO-1]
  gpu_order: ["NVIDIA H100 80GB HBM3"]
  python_version: "3.12.1"
  ports: ["8888/http"]
{extra}run: |
  cd /workspace/repo && uv run python -c "import sys; print('py', sys.version.split()[0])"
lifecycle: {{on_success: delete, on_failure: {on_failure}}}
"""


@pytest.fixture
def image_env(python_mirror, uv_python_dir, tmp_path):
    return image_env_for(python_mirror, uv_python_dir, tmp_path)


@pytest.fixture
def sim(tmp_path, monkeypatch, image_env):
    simulator = start_sim(tmp_path, monkeypatch, image_env=image_env)
    yield simulator
    finish_sim(simulator)


def seed(image="runpod/pytorch:2.4.0", extra="", on_failure="delete") -> str:
    return SEED.format(image=image, extra=extra, on_failure=on_failure)


def backend(sim, **kw) -> RunPodBackend:
    kw.setdefault("key_path", str(sim.client_key))
    return RunPodBackend(poll=(0.05, 0.2), retry_delays=(0.05,) * 4, lost_create_sec=1.0, **kw)


def execute(sim, tmp_path, text, **kw):
    from podmagic.run import api

    events: list = []
    project = git_project(tmp_path / "proj", {"pyproject.toml": PYPROJECT})
    prepared = api.start(api.prepare(text, cwd=project, backend="runpod"))
    manifest = api.execute(prepared, backend=kw.pop("backend", None) or backend(sim), listeners=[events.append])
    return manifest, prepared.plan.run_dir, events


def kinds(run_dir):
    return [e["event"] for e in read_events(run_dir / "events.jsonl")]


def test_the_seed_recipe_on_a_pod_without_uv(sim, tmp_path):
    manifest, run_dir, _ = execute(sim, tmp_path, seed())
    assert manifest["failed"] is False, manifest["error"]
    assert manifest["python_version"] == "3.12.1" and manifest["python_resolved"].startswith("3.12.1")
    assert manifest["uv_source"] == "copied" and manifest["uv_version"].startswith("0.")
    assert "py 3.12.1" in (run_dir / "run.log").read_text()
    (pod,) = sim.pods()
    assert pod["ports"] == ["8888/http", "22/tcp"]          # 22/tcp added: without it, no ssh.direct
    assert pod["status"] == "TERMINATED" and sim.live_pods() == []
    assert "uv_installed" in kinds(run_dir) and "pod_guard_armed" in kinds(run_dir)


def test_newer_image_keeps_uv_in_local_bin(sim, tmp_path):
    manifest, _, _ = execute(sim, tmp_path, seed(image="runpod/pytorch:1.0.2-cu1281-torch280-ubuntu2404"))
    assert manifest["failed"] is False, manifest["error"]
    assert manifest["uv_source"] == "present" and sim.live_pods() == []


def test_unregistered_key_goes_in_as_public_key(tmp_path, monkeypatch, image_env):
    sim = start_sim(tmp_path, monkeypatch, image_env=image_env, register_key=False)
    try:
        manifest, _, events = execute(sim, tmp_path, seed())
        assert manifest["failed"] is False, manifest["error"]
        assert [e.data["via"] for e in events if e.kind == "ssh_key_checked"] == ["PUBLIC_KEY"]
        assert sim.pods()[0]["authorized_keys"] == [sim.public_key_file.read_text().split(" runpod")[0]]
    finally:
        finish_sim(sim)


def test_no_public_key_is_refused_before_any_spend(sim, tmp_path):
    missing = tmp_path / "no-such-key"
    manifest, _, _ = execute(sim, tmp_path, seed(), backend=backend(sim, key_path=str(missing)))
    assert manifest["failed"] and "no SSH public key" in manifest["error"] and "ssh-keygen" in manifest["error"]
    assert sim.call_count("createPod") == 0 and sim.pods() == []


def test_proxy_only_pod_is_refused_with_advice(sim, tmp_path):
    sim.community_public_ip = False
    text = seed().replace("  ports:", "  cloud_type: COMMUNITY\n  ports:")
    manifest, _, _ = execute(sim, tmp_path, text)
    assert manifest["failed"] and "ProxyOnly" in manifest["error"] and "cloud_type: SECURE" in manifest["error"]
    assert sim.live_pods() == [] and sim.pods()[0]["status"] == "TERMINATED"


def test_phantom_image_is_terminated_naming_the_tag(sim, tmp_path):
    tag = "runpod/pytorch:2.4.0-py3.13-cuda12.4.1-devel-ubuntu22.04"
    manifest, _, _ = execute(sim, tmp_path, seed(image=tag, extra="budget: {ssh_ready_timeout_sec: 2}\n"))
    assert manifest["failed"] and f"the image tag '{tag}' may not exist" in manifest["error"]
    assert "--check-image" in manifest["error"]
    (pod,) = sim.pods()
    assert pod["status"] == "TERMINATED" and pod["accrued_usd"] > 0   # it billed while it never started


def test_network_volume_pod_is_terminated_not_stopped(tmp_path, monkeypatch, image_env):
    volumes = ({"id": "vol1abc", "name": "data", "size": 50, "dataCenter": "EU-RO-1"},)
    sim = start_sim(tmp_path, monkeypatch, image_env=image_env, network_volumes=volumes)
    try:
        text = seed(extra="", on_failure="stop").replace("run: |", "storage: {mode: network_volume, volume_name: data}\nrun: |")
        text = text.replace('uv run python -c', 'exit 3; uv run python -c')
        manifest, run_dir, events = execute(sim, tmp_path, text)
        assert manifest["failed"] and manifest["pod_final_state"] == "TERMINATED"
        warnings = [e.data["message"] for e in events if e.kind == "warning"]
        assert any("network volume" in w and "terminate" in w for w in warnings)
        assert sim.live_pods() == []
    finally:
        finish_sim(sim)


DRIVER = """
import sys
from pathlib import Path
from podmagic.run import api
from podmagic.backends.runpod.backend import RunPodBackend
text = Path(sys.argv[1]).read_text()
prepared = api.start(api.prepare(text, cwd=Path(sys.argv[2]), backend="runpod"))
print(prepared.plan.run_dir, flush=True)
backend = RunPodBackend(key_path=sys.argv[3], poll=(0.05, 0.2), retry_delays=(0.05,) * 4, lost_create_sec=1.0)
try:
    api.execute(prepared, backend=backend)
except KeyboardInterrupt:
    sys.exit(130)
"""


def client(sim, tmp_path, text, env_extra=None):
    """A `podmagic` client in its own process (so it can be killed); its run directory."""
    project = git_project(tmp_path / "proj", {"pyproject.toml": PYPROJECT})
    (tmp_path / "spec.yaml").write_text(text)
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(REPO), **sim.client_env(), **(env_extra or {})}
    proc = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "spec.yaml"), str(project),
                             str(sim.client_key)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line, proc.communicate(timeout=30)[1][-3000:]
    return proc, Path(line)


def wait_phase(run_dir: Path, phase: str, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads((run_dir / "status.json").read_text()).get("phase") == phase:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"never reached {phase}")


def wait_for_output(run_dir: Path, text: str, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if text in (run_dir / "run.log").read_text():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"the run never printed {text!r}")


def test_client_killed_in_setup_the_guard_ends_the_pod(sim, tmp_path):
    text = seed().replace("run: |", "setup:\n  - {command: sleep 30}\nrun: |")
    proc, run_dir = client(sim, tmp_path, text, {"PODMAGIC_HEARTBEAT_TIMEOUT_SEC": "3"})
    wait_phase(run_dir, "setup")
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 20
    terminate = lambda: [c for c in sim.calls if c.operation == "podAction:terminate"]  # noqa: E731
    while sim.live_pods() or not terminate():
        assert time.monotonic() < deadline, sim.live_pods()
        time.sleep(0.2)
    (pod,) = sim.pods()
    assert [c.by_pod for c in terminate()] == [pod["id"]]     # the pod ended itself, with its own key


def test_sigterm_takes_the_interrupt_path(sim, tmp_path):
    text = seed().replace('uv run python -c "import sys; print(\'py\', sys.version.split()[0])"',
                          "for i in $(seq 100); do echo tick $i; sleep 0.1; done")
    proc, run_dir = client(sim, tmp_path, text)
    wait_phase(run_dir, "run")
    wait_for_output(run_dir, "tick 2")  # the job is printing (its launcher runs the start capture first)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130, proc.stderr.read()[-2000:]
    manifest = json.loads((run_dir / "runpod_deploy_pull_manifest.json").read_text())
    assert manifest["interrupted"] is True and "SIGTERM" in manifest["error"]
    assert manifest["pod_final_state"] == "TERMINATED" and sim.live_pods() == []
    assert "tick 1" in (run_dir / "run.log").read_text()


def test_ssh_host_without_uv_on_path_the_pin_works(tmp_path, python_mirror, uv_python_dir):
    from podmagic.backends.ssh.backend import SSHBackend
    from podmagic.run import api

    env = {"UV_PYTHON_DOWNLOADS_JSON_URL": python_mirror, "UV_PYTHON_INSTALL_DIR": str(uv_python_dir)}
    with SSHServer(tmp_path / "sshd", env=env, home=tmp_path / "home") as server:
        probe = subprocess.run(["ssh", "-p", str(server.port), "-i", str(server.client_key), "-o",
                                "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={tmp_path / 'kh0'}",
                                f"{server.user}@127.0.0.1", "command -v uv || echo no-uv"],
                               capture_output=True, text=True, timeout=30)
        assert probe.stdout.strip() == "no-uv", probe
        text = textwrap.dedent("""\
            name: sshpin
            pod:
              image: none
              datacenters: [here]
              gpu_order: [none]
              python_version: "3.12.1"
            run: |
              cd /workspace/repo && uv run python -c "import sys; print('py', sys.version.split()[0])"
            """)
        project = git_project(tmp_path / "proj", {"pyproject.toml": PYPROJECT})
        prepared = api.start(api.prepare(text, cwd=project, backend="ssh"))
        be = SSHBackend(server.host_spec, root=str(tmp_path / "pod"), known_hosts=tmp_path / "kh",
                        key_path=str(server.client_key))
        manifest = api.execute(prepared, backend=be)
    assert manifest["failed"] is False, manifest["error"]
    assert manifest["python_resolved"].startswith("3.12.1") and manifest["uv_source"] == "copied"
    assert "py 3.12.1" in (prepared.plan.run_dir / "run.log").read_text()


def test_ls_stale_lists_running_pods_of_lost_runs(sim, tmp_path):
    text = seed().replace("run: |", "setup:\n  - {command: sleep 60}\nrun: |")
    proc, run_dir = client(sim, tmp_path, text, {"PODMAGIC_HEARTBEAT_TIMEOUT_SEC": "600"})
    wait_phase(run_dir, "setup")
    env = {**os.environ, "PYTHONPATH": str(REPO), **sim.client_env()}
    cli = lambda *a: subprocess.run([sys.executable, "-m", "podmagic.ui.cli", *a], cwd=tmp_path / "proj",  # noqa: E731
                                    env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(cli("ls-stale", "--json").stdout) == []        # its client is alive: not lost
    proc.kill()
    proc.wait(timeout=10)
    (row,) = json.loads(cli("ls-stale", "--json").stdout)
    assert row["status"] == "RUNNING" and row["run_id"] == run_dir.name and row["usd_per_hour"] == 2.99
    assert "1 running pods of lost runs" in cli("ls-stale").stdout
    assert cli("cleanup", run_dir.name, "--yes").returncode == 0 and sim.live_pods() == []


def test_client_killed_before_ssh_is_up_the_sentinel_ends_the_pod(sim, tmp_path):
    sim.set_timing(provision_sec=float("inf"))  # the pod never comes up: no pod-side guard can exist
    proc, _run_dir = client(sim, tmp_path, seed())
    deadline = time.monotonic() + 30
    while not sim.live_pods():
        assert time.monotonic() < deadline and proc.poll() is None, "the pod was never created"
        time.sleep(0.05)
    proc.kill()  # kill -9: no teardown runs in the client
    proc.wait(timeout=10)
    terminate = lambda: [c for c in sim.calls if c.operation == "podAction:terminate"]  # noqa: E731
    deadline = time.monotonic() + 20
    while sim.live_pods() or not terminate():
        assert time.monotonic() < deadline, sim.live_pods()
        time.sleep(0.1)
    (pod,) = sim.pods()
    assert pod["desired_status"] == "TERMINATED"
    assert [c.by_pod for c in terminate()] == [None]  # the account's key: the client-side sentinel did it
