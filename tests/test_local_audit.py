"""`ls-stale` and `cleanup` of local pods (issue 11): sandboxes kept by stop/preserve, listed with their
size on disk even without a RunPod key, removed with the same confirmation as RunPod pods."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from podmagic.run import api, store
from podmagic.ui import audit

from helpers import run_spec

KEPT = "staging: []\nrun: 'head -c 300000 /dev/urandom > /workspace/blob; exit 3'\n"


def cli(project: Path, home: Path, *args: str):
    env = {**os.environ, "HOME": str(home), "RUNPOD_API_KEY": ""}
    return subprocess.run([sys.executable, "-m", "podmagic.ui.cli", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)


def test_kept_local_pods_are_listed_and_cleaned_up_without_a_runpod_key(pod_env, project, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    kept, _, _ = run_spec(KEPT, project)  # on_failure: stop keeps the sandbox
    gone, _, _ = run_spec("staging: []\nrun: 'true'\n", project)  # on_success: delete removes it
    sandbox = pod_env / "pods" / kept["pod_id"]
    assert kept["pod_final_state"] == "EXITED" and sandbox.is_dir()
    assert not (pod_env / "pods" / gone["pod_id"]).exists()

    listed = cli(project, home, "ls-stale", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["backend"] == "local" and row["pod_id"] == kept["pod_id"] and row["run_id"] == kept["run_id"]
    assert row["size_bytes"] >= 300_000 and row["usd_per_day"] == 0
    assert "RunPod not listed: no API key" in listed.stderr
    text = cli(project, home, "ls-stale").stdout
    assert kept["pod_id"] in text and "1 local" in text and "KB on disk" in text

    refused = cli(project, home, "cleanup", kept["run_id"])  # no tty, no --yes: nothing happens
    assert refused.returncode == 1 and sandbox.is_dir()
    done = cli(project, home, "cleanup", kept["run_id"], "--yes")
    assert done.returncode == 0 and f"terminated {kept['pod_id']}" in done.stdout, done.stderr
    assert not sandbox.exists()
    assert json.loads(cli(project, home, "ls-stale", "--json").stdout) == []


def test_cleanup_all_stopped_removes_this_projects_finished_pods_only(pod_env, project, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    a, _, _ = run_spec(KEPT, project)
    b, _, _ = run_spec("staging: []\nrun: 'exit 1'\nlifecycle: {on_failure: preserve}\n", project)
    other = pod_env / "pods" / "local-someone-else-20260101T000000Z-0000"  # another project's pod
    other.mkdir(parents=True)
    live = api.start(api.prepare("name: live\nstaging: []\nrun: x\n", cwd=project))  # started, not finished
    (pod_env / "pods" / f"local-{live.plan.run_id}").mkdir()
    store.RunDir(live.plan.run_dir).record_pod({"pod_id": f"local-{live.plan.run_id}", "backend": "local"})
    store.write_json_atomic(live.plan.run_dir / store.STATUS, {"state": "running", "owner_pid": os.getpid(),
                                                               "owner_host": os.uname().nodename})
    assert {r["pod_id"] for r in audit.stale(project, runpod=False)} == {a["pod_id"], b["pod_id"]}
    refused = cli(project, home, "cleanup", "--all-stopped")
    assert refused.returncode == 1 and a["pod_id"] in refused.stderr and (pod_env / "pods" / a["pod_id"]).is_dir()
    done = cli(project, home, "cleanup", "--all-stopped", "--yes")
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()) == sorted(["terminated", a["pod_id"], "terminated", b["pod_id"]])
    left = sorted(p.name for p in (pod_env / "pods").iterdir())
    assert left == sorted([other.name, f"local-{live.plan.run_id}"])


def test_a_lost_local_run_is_stale(pod_env, project):
    lost = api.start(api.prepare("name: lost\nstaging: []\nrun: x\n", cwd=project))  # no runner owns it
    (pod_env / "pods" / f"local-{lost.plan.run_id}").mkdir(parents=True)
    store.RunDir(lost.plan.run_dir).record_pod({"pod_id": f"local-{lost.plan.run_id}", "backend": "local"})
    assert [r["pod_id"] for r in audit.stale(project, runpod=False)] == [f"local-{lost.plan.run_id}"]


def test_cleanup_refuses_a_local_run_that_has_not_finished(pod_env, project):
    import pytest

    from podmagic.errors import PodmagicError

    live = api.start(api.prepare("name: live\nstaging: []\nrun: x\n", cwd=project))
    store.RunDir(live.plan.run_dir).record_pod({"pod_id": f"local-{live.plan.run_id}", "backend": "local"})
    store.write_json_atomic(live.plan.run_dir / store.STATUS, {"state": "running", "owner_pid": os.getpid(),
                                                               "owner_host": os.uname().nodename})
    with pytest.raises(PodmagicError, match="has not finished"):
        audit.cleanup(project, live.plan.run_id, False)
