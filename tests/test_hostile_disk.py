"""Hostile disk (issue 12): the run directory's disk fills up mid-run.

The project (and so its run directory) sits on a 1 MiB tmpfs mounted for the test (we are root
here; where mounting is not allowed the tests skip and say so). The job prints far more than
fits. The run must fail cleanly: the pod released, the error naming the file that could not be
written and its folder, the manifest written (podmagic keeps room for it from the start) or
else the error saying it could not be, the CLI exiting 1 with one error line and no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from podmagic.errors import PodmagicError
from podmagic.run import api, store

from helpers import Recorder, small_tmpfs
from sshd_fixtures import requires_sshd
from test_hostile import module_sshd  # noqa: F401

BODY = "head -c 3000000 /dev/zero | tr '\\\\0' x | fold -w 99\necho never-reached-$((1 + 1))\n"
SPEC = f"name: full\nstaging: []\nrun: |\n  {BODY.replace(chr(10), chr(10) + '  ').rstrip()}\n" \
       "lifecycle: {on_success: delete, on_failure: delete}\n"


@pytest.fixture
def small_disk(tmp_path):
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        yield disk


@pytest.fixture
def full_project(small_disk, pod_env):
    project = small_disk / "proj"
    project.mkdir()
    (project / "job.yaml").write_text(SPEC)
    return project


def _pods(pod_env: Path) -> list[Path]:
    root = pod_env / "pods"
    return [p for p in root.iterdir()] if root.exists() else []


def test_a_full_disk_through_the_cli(full_project, pod_env):
    env = {k: v for k, v in os.environ.items() if k not in ("PODMAGIC_BACKEND", "RUNPOD_API_KEY")}
    res = subprocess.run([sys.executable, "-m", "podmagic.ui.cli", "run", "job.yaml"], cwd=full_project,
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 1, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    (run_dir,) = store.iter_run_dirs(full_project)
    manifest = json.loads((run_dir / store.MANIFEST).read_text())
    assert manifest["failed"] is True
    error = manifest["error"]
    assert "\n" not in error and f"no space left on the disk holding {run_dir}" in error, error
    assert "could not write run.log" in error, error
    assert [line for line in res.stderr.splitlines() if "no space left" in line], res.stderr[-3000:]
    assert manifest["pod_final_state"] == "TERMINATED" and _pods(pod_env) == [], "the pod was not released"
    assert store.run_summary(run_dir)["state"] == "failed"  # not "lost"
    assert not (run_dir / store.RunDir.RESERVE).exists()


@requires_sshd
def test_a_full_disk_on_the_ssh_backend_still_releases_the_pod(full_project, pod_env, module_sshd, tmp_path):
    from podmagic.backends.ssh.backend import SSHBackend

    pod_root = tmp_path / "pod"
    be = SSHBackend(module_sshd.host_spec, root=str(pod_root), known_hosts=tmp_path / "kh",
                    key_path=str(module_sshd.client_key))
    prepared = api.start(api.prepare(SPEC, cwd=full_project, backend="ssh"))
    manifest = api.execute(prepared, listeners=[Recorder()], backend=be)
    assert manifest["failed"] is True and "could not write run.log" in manifest["error"], manifest["error"]
    assert manifest["pod_final_state"] == "TERMINATED" and not pod_root.exists(), "the pod was not released"
    assert store.RunDir(prepared.plan.run_dir).manifest() == manifest


def test_when_not_even_the_manifest_fits_the_error_says_so(full_project, pod_env, monkeypatch, capsys):
    """No room kept (as if it was taken too): the run still ends, the pod is released, the error says it."""
    monkeypatch.setattr(store.RunDir, "RESERVE_BYTES", 0)
    monkeypatch.chdir(full_project)
    rec = Recorder()
    prepared = api.start(api.prepare(SPEC, cwd=full_project))
    with pytest.raises(store.DiskFull) as info:
        api.execute(prepared, listeners=[rec])
    message = str(info.value)
    assert isinstance(info.value, PodmagicError) and "\n" not in message
    assert "could not write runpod_deploy_pull_manifest.json" in message and "the manifest could not be written" \
        in message and "could not write run.log" in message, message
    assert "the pod was released (TERMINATED)" in message and _pods(pod_env) == []
    assert [e for e in rec.events if e.kind == "lifecycle_applied"][0].data["action"] == "delete"

    from podmagic.ui.cli import main

    import shutil

    shutil.rmtree(prepared.plan.run_dir)  # room again for a run to start
    capsys.readouterr()
    assert main(["run", "job.yaml"]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("podmagic run: ")]
    assert len(lines) == 1 and "the manifest could not be written" in lines[0], err[-3000:]
    assert "Traceback" not in err and _pods(pod_env) == []


def test_a_disk_already_full_starts_nothing(small_disk, pod_env):
    project = small_disk / "proj"
    project.mkdir()
    (small_disk / "filler").write_bytes(b"\0" * (1024 * 1024 - 4096 * 4))
    with pytest.raises(store.DiskFull) as info:
        api.start(api.prepare(SPEC, cwd=project))
    assert "no space left on the disk holding" in str(info.value)
    assert _pods(pod_env) == []


def counts() -> dict[str, int]:
    return {"full_disk_cases": 4}
