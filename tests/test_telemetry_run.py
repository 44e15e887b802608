"""Telemetry on real runs: a fake nvidia-smi on the pod's PATH, the job's own metrics, runpod-deploy's files."""

from __future__ import annotations

import json
import textwrap

import pytest

from podmagic.run import telemetry
from podmagic.testing import fake_nvidia_smi

from conftest import git
from helpers import run_spec

pytestmark = pytest.mark.e2e  # real runs end to end: not in the fast lane (-m "not e2e")

WITH_GPU = """name: tele
telemetry: {sample_interval_sec: 5}
preflight:
  - command: install -D -m 755 fake-nvidia-smi "$HOME/.local/bin/nvidia-smi"
run: |
  for i in 1 2 3 4 5; do
    echo "{{\\"step\\": $i, \\"loss\\": $(( 10 - i )).5, \\"note\\": \\"x\\"}}" >> "$PODMAGIC_METRICS"
    sleep 1
  done
  echo done
lifecycle: {on_success: delete, on_failure: stop}
"""

RUNPOD_COLUMNS = set(telemetry.COLUMNS)


@pytest.fixture
def gpu_project(project):
    (project / "fake-nvidia-smi").write_text(fake_nvidia_smi.script(count=2))
    git(project, "add", "-A")
    git(project, "commit", "-qm", "fake gpu")
    return project


def test_run_records_gpu_files_metrics_and_user_metrics(pod_env, gpu_project):
    manifest, plan, rec = run_spec(WITH_GPU, gpu_project)
    assert manifest["failed"] is False, manifest["error"]
    run_dir = plan.run_dir
    assert manifest["gpu_name"] == "NVIDIA H100 80GB HBM3" and manifest["gpu_count"] == 2
    assert manifest["gpu_memory_total_mb"] == 81559 and manifest["gpu_driver_version"] == "550.54.15"
    assert manifest["gpu_cuda_version"] == "12.4"
    assert manifest["uv_version"] and manifest["uv_version"][0].isdigit()
    assert manifest["remote_python_version"].startswith("3.") and manifest["remote_uname"].startswith("Linux")
    for name in ("nvidia_smi_start.txt", "nvidia_smi_end.txt", "remote_env.json", "pip_freeze.txt",
                 "metrics.jsonl", "pod_describe_start.json"):
        assert name in manifest["telemetry_files"], name
        assert (run_dir / name).is_file(), name
    assert "CUDA Version: 12.4" in (run_dir / "nvidia_smi_start.txt").read_text()
    env = json.loads((run_dir / "remote_env.json").read_text())
    assert env["remote_python_version"] == manifest["remote_python_version"]
    rows = telemetry.gpu_metrics(run_dir)
    assert len(rows) >= 2  # the first sample at t=0 and the last one when the job ended
    assert RUNPOD_COLUMNS <= set(rows[0])
    assert all(r["gpu_mem_total_mb"] == 2 * 81559 for r in rows)
    assert all(0 <= r["gpu_util_pct"] <= 100 and r["gpu_temp_c"] >= 34 and r["gpu_ecc_errors"] == 0 for r in rows)
    assert all(r["host_mem_total_mb"] > 0 and r["workspace_disk_total_bytes"] > 0 for r in rows)
    assert all(r["cpu_load_1m"] is not None for r in rows)
    user = telemetry.user_metrics(run_dir)
    assert [r["step"] for r in user] == [1, 2, 3, 4, 5] and user[-1]["loss"] == 5.5
    assert manifest["user_metrics_file"] == "user_metrics.jsonl"
    live = [e for e in rec.events if e.kind == "metrics" and e.data["source"] == "user"]
    assert sum(len(e.data["rows"]) for e in live) == 5
    journal = (run_dir / "events.jsonl").read_text()
    assert '"metrics"' not in journal and "telemetry_captured" in journal


def test_no_gpu_means_null_gpu_columns_not_an_error(pod_env, project):
    manifest, plan, _ = run_spec(WITH_GPU.replace('install -D -m 755 fake-nvidia-smi "$HOME/.local/bin/nvidia-smi"',
                                                  "echo no-gpu"), project)
    assert manifest["failed"] is False, manifest["error"]
    assert manifest["gpu_name"] is None and manifest["gpu_count"] is None
    assert "nvidia_smi_start.txt" not in manifest["telemetry_files"]
    rows = telemetry.gpu_metrics(plan.run_dir)
    assert rows and all(r["gpu_util_pct"] is None and r["gpu_mem_used_mb"] is None for r in rows)
    assert all(r["host_mem_used_mb"] is not None for r in rows)


def test_capture_flags_and_enabled_turn_parts_off(pod_env, gpu_project):
    text = WITH_GPU.replace("telemetry: {sample_interval_sec: 5}",
                            "telemetry: {capture_nvidia_smi: false, capture_remote_env: false, capture_dmesg: false,"
                            " capture_pod_describe: false, capture_local_git: false}")
    manifest, plan, _ = run_spec(text, gpu_project)
    assert manifest["failed"] is False
    assert set(manifest["telemetry_files"]) == {"metrics.jsonl"}
    assert manifest["gpu_name"] is None and manifest["remote_python_version"] is None
    assert "local_git_sha" not in manifest["deploy_metadata"]
    assert "payload_lockfile_sha256" in manifest["deploy_metadata"]
    off = WITH_GPU.replace("telemetry: {sample_interval_sec: 5}", "telemetry: {enabled: false}")
    manifest, plan, _ = run_spec(off, gpu_project)
    assert manifest["telemetry_files"] == [] and not (plan.run_dir / "metrics.jsonl").exists()
    assert len(telemetry.user_metrics(plan.run_dir)) == 5  # the job's own metrics do not depend on telemetry


def test_fake_installed_by_a_preflight_heredoc(pod_env, project):
    """The held-out check's way: a preflight command writes the fake into ~/.local/bin."""
    command = fake_nvidia_smi.install_command().replace("{", "{{").replace("}", "}}")
    text = ("name: heredoc\ntelemetry: {sample_interval_sec: 5}\npreflight:\n  - command: |\n"
            + textwrap.indent(command, "      ") + "\nrun: nvidia-smi -L\n")
    manifest, plan, _ = run_spec(text, project)
    assert manifest["failed"] is False, manifest["error"]
    assert manifest["gpu_count"] == 1 and "GPU 0: NVIDIA H100" in (plan.run_dir / "run.log").read_text()


def test_two_dirty_runs_with_different_edits_get_different_diff_hashes(pod_env, project):
    text = "name: dirty\ntelemetry: {enabled: false}\nrun: cat train.py\n"
    clean, _, _ = run_spec(text, project)
    (project / "train.py").write_text("print('edit one')\n")
    one, _, _ = run_spec(text, project)
    (project / "train.py").write_text("print('edit two')\n")
    two, plan, _ = run_spec(text, project)
    hashes = [m["deploy_metadata"]["local_git_diff_sha256"] for m in (clean, one, two)]
    assert hashes[0] is None and None not in hashes[1:] and hashes[1] != hashes[2]
    assert one["deploy_metadata"]["local_git_dirty"] and two["deploy_metadata"]["local_git_dirty"]
    assert "edit two" in (plan.run_dir / "run.log").read_text()
