"""Telemetry over SSH (RunPod simulator pods): one connection, the fake nvidia-smi from a preflight step,
and the RunPod API's live GPU figures filling in where a pod has no nvidia-smi."""

from __future__ import annotations

import pytest

from podmagic.backends.local import LocalBackend
from podmagic.run import telemetry
from podmagic.testing import fake_nvidia_smi



from test_runpod_runs import SPEC, execute, image_env, sim  # noqa: E402,F401 - the simulator fixtures

pytestmark = pytest.mark.e2e  # real runs end to end: not in the fast lane (-m "not e2e")


def test_runpod_pod_with_fake_gpu_records_telemetry(sim, tmp_path):
    install = fake_nvidia_smi.install_command().replace("{", "{{").replace("}", "}}")
    text = SPEC.format(extra_pod="", on_failure="stop", run=(
        'for i in 1 2 3; do echo "{{\\"step\\": $i, \\"loss\\": 0.$i}}" >> "$PODMAGIC_METRICS"; sleep 1; done; mkdir -p out'))
    text = text.replace("run: |", "telemetry: {sample_interval_sec: 5}\npreflight:\n  - command: |\n"
                        + "".join("      " + line + "\n" for line in install.splitlines()) + "run: |")
    manifest, run_dir, events = execute(sim, tmp_path, text)
    assert manifest["failed"] is False, manifest["error"]
    assert manifest["gpu_name"] == "NVIDIA H100 80GB HBM3" and manifest["gpu_cuda_version"] == "12.4"
    assert {"nvidia_smi_start.txt", "nvidia_smi_end.txt", "metrics.jsonl"} <= set(manifest["telemetry_files"])
    rows = telemetry.gpu_metrics(run_dir)
    assert rows and all(r["gpu_mem_total_mb"] == 81559 for r in rows)
    assert [r["step"] for r in telemetry.user_metrics(run_dir)] == [1, 2, 3]


class _ApiGpuBackend(LocalBackend):
    """A pod without nvidia-smi whose control plane reports live GPU use (RunPod's `runtime.gpus`)."""

    def provision(self, request, emit):
        pod = super().provision(request, emit)
        pod.live_gpus = lambda: [{"id": "gpu0", "util": 93, "memoryUtil": 41}]
        pod.describe = lambda: {"id": pod.info.pod_id, "desiredStatus": "RUNNING", "costPerHr": 1.64}
        return pod


def test_live_gpu_hook_fills_gpu_columns_without_nvidia_smi(pod_env, project):
    text = "name: api\ntelemetry: {sample_interval_sec: 5}\nrun: sleep 2\n"
    from podmagic.run import api

    prepared = api.start(api.prepare(text, cwd=project))
    manifest = api.execute(prepared, backend=_ApiGpuBackend())
    rows = telemetry.gpu_metrics(prepared.plan.run_dir)
    assert rows and all(r["gpu_util_pct"] == 93 and r["gpu_mem_util_pct"] == 41 for r in rows)
    described = (prepared.plan.run_dir / "pod_describe_start.json").read_text()
    assert '"costPerHr": 1.64' in described and manifest["gpu_name"] is None
