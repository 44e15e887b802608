"""Telemetry's pure parts: nvidia-smi formats (through the fake), sampler lines, series; the diff hash."""

from __future__ import annotations

import subprocess
from pathlib import Path
import sys

import pytest

from podmagic.run import provenance, telemetry
from podmagic.testing import fake_nvidia_smi

from conftest import git


@pytest.fixture
def smi(tmp_path):
    path = tmp_path / "nvidia-smi"
    path.write_text(fake_nvidia_smi.script(count=2))
    path.chmod(0o755)

    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True)
    return call


def test_fake_query_formats_follow_nvidia_docs(smi):
    full = smi("--query-gpu=index,name,memory.total,utilization.gpu,power.draw,fan.speed", "--format=csv").stdout
    head, first, second = full.splitlines()
    assert head == "index, name, memory.total [MiB], utilization.gpu [%], power.draw [W], fan.speed [%]"
    assert first.startswith("0, NVIDIA H100 80GB HBM3, 81559 MiB, ") and first.endswith(" W, [N/A]")
    assert second.startswith("1, ")
    bare = smi("--query-gpu=memory.total,utilization.gpu", "--format=csv,noheader,nounits").stdout.splitlines()
    assert len(bare) == 2 and bare[0].split(", ")[0] == "81559" and bare[0].split(", ")[1].isdigit()
    assert smi("--query-gpu=memory.total", "--format=csv,nounits").stdout.splitlines()[0] == "memory.total"
    bad = smi("--query-gpu=bogus", "--format=csv")
    assert bad.returncode == 2 and 'Field "bogus" is not a valid field to query.' in bad.stdout
    listed = smi("-L").stdout.splitlines()
    assert listed[0].startswith("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-") and len(listed) == 2
    table = smi().stdout
    assert "Driver Version: 550.54.15" in table and "CUDA Version: 12.4" in table and "81559MiB" in table


def test_parse_csv_with_units_header_and_na():
    text = "index, name, memory.total [MiB], ecc.errors.uncorrected.volatile.total\n" \
           "0, NVIDIA A100 80GB PCIe, 81920 MiB, [N/A]\n1, NVIDIA A100 80GB PCIe, 81920 MiB, 3\n"
    rows = telemetry.parse_csv(text, "index,name,memory.total,ecc.errors.uncorrected.volatile.total", header=True)
    assert rows == [{"index": 0, "name": "NVIDIA A100 80GB PCIe", "memory.total": 81920,
                     "ecc.errors.uncorrected.volatile.total": None},
                    {"index": 1, "name": "NVIDIA A100 80GB PCIe", "memory.total": 81920,
                     "ecc.errors.uncorrected.volatile.total": 3}]
    assert telemetry.parse_csv("No devices were found\n", "index,name") == []
    assert telemetry.csv_value("[Not Supported]") is None and telemetry.csv_value("69.52 W") == 69.52


def test_gpu_fields_from_the_fake(smi):
    table = smi().stdout
    query = smi(f"--query-gpu={telemetry.GPU_QUERY}", "--format=csv,noheader,nounits").stdout
    assert telemetry.gpu_fields(table, query) == {
        "gpu_name": "NVIDIA H100 80GB HBM3", "gpu_count": 2, "gpu_memory_total_mb": 81559,
        "gpu_driver_version": "550.54.15", "gpu_cuda_version": "12.4"}
    assert set(telemetry.gpu_fields(None, None).values()) == {None}


def test_sections_and_remote_env():
    out = ("noise\n@@podmagic-telemetry:uname@@\nLinux pod 6.1 x86_64\n\n@@podmagic-telemetry:python3@@\n"
           "3.11.4 /usr/bin/python3\n@@podmagic-telemetry:uv@@\nuv 0.13.1 (abc 2025-01-01)\n")
    secs = telemetry.sections(out)
    assert secs == {"uname": "Linux pod 6.1 x86_64", "python3": "3.11.4 /usr/bin/python3",
                    "uv": "uv 0.13.1 (abc 2025-01-01)"}
    assert telemetry.remote_env(secs) == {"remote_uname": "Linux pod 6.1 x86_64", "remote_python_version": "3.11.4",
                                          "remote_python_path": "/usr/bin/python3", "uv_version": "0.13.1"}
    assert telemetry.freeze("a==1\nb==2\n#podmagic:uv pip freeze") == ("a==1\nb==2\n", "uv pip freeze")


def test_parse_sample_columns_and_cpu_delta():
    line1 = ("ts=2026-12-01T21:00:00Z\tgpu=40, 1000, 80000, 50, 0;60, 3000, 80000, 55, [N/A];\tload=0.50\t"
             "cpu=cpu  100 0 50 850 0 0 0 0 0 0\tmem=16384000 8192000\tdisk=1000 5000")
    row, cpu = telemetry.parse_sample(line1)
    assert row["ts_utc"] == "2026-12-01T21:00:00Z"
    assert (row["gpu_util_pct"], row["gpu_mem_used_mb"], row["gpu_mem_total_mb"]) == (50, 4000, 160000)
    assert (row["gpu_temp_c"], row["gpu_ecc_errors"], row["gpu_mem_util_pct"]) == (55, 0, 2.5)
    assert (row["cpu_load_1m"], row["cpu_user_pct"], row["cpu_sys_pct"]) == (0.5, 10, 5)
    assert (row["host_mem_total_mb"], row["host_mem_used_mb"]) == (16000, 8000)
    assert (row["workspace_disk_used_bytes"], row["workspace_disk_total_bytes"]) == (1000, 5000)
    line2 = line1.replace("cpu  100 0 50 850", "cpu  150 0 60 890").replace("gpu=40, 1000, 80000, 50, 0;60, 3000, "
                                                                             "80000, 55, [N/A];", "gpu=-")
    row2, _ = telemetry.parse_sample(line2, cpu)
    assert (row2["cpu_user_pct"], row2["cpu_sys_pct"]) == (50, 10)
    assert all(row2[c] is None for c in telemetry.COLUMNS if c.startswith("gpu_"))
    assert set(telemetry.COLUMNS) <= set(row2)


def test_runpod_api_fills_gpu_columns_only_when_nvidia_smi_gave_none():
    empty, _ = telemetry.parse_sample("ts=x\tgpu=-")
    filled = telemetry.fill_from_api(empty, [{"util": 90, "memoryUtil": 70}, {"util": 70, "memoryUtil": 50}])
    assert filled["gpu_util_pct"] == 80 and filled["gpu_mem_util_pct"] == 60 and filled["gpu_mem_used_mb"] is None
    measured = {**empty, "gpu_util_pct": 12}
    assert telemetry.fill_from_api(measured, [{"util": 90}]) is measured
    assert telemetry.fill_from_api(empty, None) is empty


def test_numeric_series_uses_step_and_skips_non_numbers():
    rows = [{"step": 1, "loss": 2.0, "tag": "a", "ok": True}, {"step": 2, "loss": 1.5, "acc": 0.7}, {"loss": 9}]
    out = telemetry.numeric_series(rows)
    assert out["x"] == "step"
    assert out["series"] == {"loss": [(1.0, 2.0), (2.0, 1.5)], "acc": [(2.0, 0.7)]}
    assert telemetry.numeric_series([{"loss": 3}, {"loss": 2}])["series"] == {"loss": [(0.0, 3.0), (1.0, 2.0)]}


class _FakePod:
    def __init__(self, data: bytes):
        self.data = data

    def read_from(self, path, offset, limit=1 << 20):
        return self.data[offset:offset + 3]  # tiny reads: lines arrive torn


def test_line_reader_holds_a_torn_line_until_complete():
    pod = _FakePod(b'{"a": 1}\n{"a": 2}\n{"a"')
    reader = telemetry.LineReader("/x")
    assert reader.read(pod) == ['{"a": 1}', '{"a": 2}']
    pod.data += b': 3}\n'
    assert reader.read(pod) == ['{"a": 3}']
    pod.data += b'{"tail": 1}'
    assert reader.read(pod, final=True) == ['{"tail": 1}']


def test_diff_hash_null_when_clean_and_distinct_for_different_edits(project):
    assert provenance.capture(project)["local_git_diff_sha256"] is None
    assert provenance.local_git_diff(project) == (None, None)
    (project / "train.py").write_text("print('edit one')\n")
    one = provenance.capture(project)
    (project / "train.py").write_text("print('edit two')\n")
    two = provenance.capture(project)
    assert one["local_git_dirty"] and two["local_git_dirty"]
    assert len(one["local_git_diff_sha256"]) == 64 and one["local_git_diff_sha256"] != two["local_git_diff_sha256"]
    data, digest = provenance.local_git_diff(project)
    assert b"edit two" in data and digest == two["local_git_diff_sha256"]


def test_diff_covers_staged_new_files_not_unstaged_ones(project):
    (project / "notes.txt").write_text("untracked, not staged\n")
    assert provenance.capture(project)["local_git_diff_sha256"] is None
    git(project, "add", "notes.txt")
    data, digest = provenance.local_git_diff(project)
    assert b"untracked, not staged" in data and digest
    git(project, "-c", "diff.noprefix=true", "config", "diff.noprefix", "true")
    assert provenance.local_git_diff(project)[1] == digest  # the user's diff config does not change the hash


def _manifest(run_id, **kw):
    base = {"run_id": run_id, "python_resolved": "3.12.1", "gpu_name": "NVIDIA H100 80GB HBM3",
            "gpu_driver_version": "550.54.15",
            "deploy_metadata": {"local_git_sha": "a" * 40, "payload_lockfile_sha256": "b" * 64,
                                "local_git_diff_sha256": None}}
    for key, value in kw.items():
        if key == "diff":
            base["deploy_metadata"] = {**base["deploy_metadata"], "local_git_diff_sha256": value}
        else:
            base[key] = value
    return base


def test_sweep_check_names_shards_whose_gpu_driver_or_diff_differ():
    from podmagic.run.compare import consistency, side_by_side

    runs = [_manifest("s0"), _manifest("s1"), _manifest("s2", gpu_name="NVIDIA A100 80GB PCIe"),
            _manifest("s3", gpu_driver_version="535.104.05"), _manifest("s4", diff="c" * 64)]
    problems = consistency(runs)
    assert problems == [
        "gpu_name differs: majority 'NVIDIA H100 80GB HBM3'; differing: s2 (NVIDIA A100 80GB PCIe)",
        "gpu_driver_version differs: majority '550.54.15'; differing: s3 (535.104.05)",
        f"deploy_metadata.local_git_diff_sha256 differs: majority None; differing: s4 ({'c' * 64})"]
    assert consistency(runs[:2]) == []
    fields = {r["field"]: r for r in side_by_side(runs)}
    assert fields["gpu_name"]["differs"] and fields["deploy_metadata.local_git_diff_sha256"]["differs"]
    assert {"gpu_count", "gpu_cuda_version", "uv_version", "remote_python_version"} <= set(fields)


def test_podmagic_metrics_reads_a_run(tmp_path):
    import podmagic
    from podmagic.run import store

    run_dir = store.runs_root(tmp_path) / "r-20260101T000000Z-abcd"
    run_dir.mkdir(parents=True)
    (run_dir / store.RunDir.USER_METRICS).write_text('{"step": 1, "loss": 0.4}\nnot json\n{"step": 2, "loss": 0.3}\n')
    (run_dir / store.RunDir.METRICS).write_text('{"ts_utc": "t", "gpu_util_pct": null}\n')
    store.write_json_atomic(run_dir / store.MANIFEST, {"run_id": run_dir.name})
    rows = podmagic.metrics("r-2026", project_root=tmp_path)
    records = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
    assert records == [{"step": 1, "loss": 0.4}, {"step": 2, "loss": 0.3}]
    from podmagic.run.results import Run

    handle = podmagic.metrics(Run(run_dir))
    assert len(handle) == 2
    gpu = podmagic.metrics(run_dir, source="telemetry")
    assert len(gpu) == 1
    with pytest.raises(podmagic.errors.PodmagicError):
        podmagic.metrics(run_dir, source="bogus")


LIMITED_SMI = '''#!/usr/bin/env bash
# an nvidia-smi that knows only some fields (as a minimal fake or an old driver might)
case "$*" in
  -L) echo "GPU 0: NVIDIA A40 (UUID: GPU-1234)";;
  *--query-gpu=utilization.gpu,memory.used,memory.total\\ *) echo "37 %, 1200 MiB, 46068 MiB";;
  *--query-gpu=name,memory.total,driver_version\\ *) echo "NVIDIA A40, 46068 MiB, 535.104.05";;
  *--query-gpu=*) echo "Field is not a valid field to query."; exit 2;;
  *) echo "| NVIDIA-SMI 535.104.05   Driver Version: 535.104.05   CUDA Version: 12.2 |";;
esac
'''


def test_partial_nvidia_smi_falls_back_to_the_fields_it_knows(tmp_path):
    from podmagic.backends import podside
    from podmagic.plan.requests import Launch, PodTelemetry

    bindir = tmp_path / ".local" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "nvidia-smi").write_text(LIMITED_SMI)
    (bindir / "nvidia-smi").chmod(0o755)
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    exit_path = str(tmp_path / "ctl" / "exit")
    launch = Launch(script_path=str(tmp_path / "run.sh"), log_path=str(tmp_path / "run.log"), exit_path=exit_path,
                    workdir="", body="true\n", telemetry=PodTelemetry(sample_interval_sec=5, max_samples=1,
                                                                     mount=str(tmp_path)))
    (tmp_path / "ctl").mkdir()
    for path, text in podside.launch_files(launch).items():
        Path(path).write_text(text)
    out = subprocess.run(["bash", "-c", podside.capture_start_script(launch.telemetry, "")], capture_output=True,
                         text=True, env=env, cwd=tmp_path).stdout
    secs = telemetry.sections(out)
    fields = telemetry.gpu_fields(secs.get("nvidia_smi"), secs.get("gpu_query"), secs["gpu_fields"].strip(),
                                  secs.get("gpu_list"))
    assert fields == {"gpu_name": "NVIDIA A40", "gpu_count": 1, "gpu_memory_total_mb": 46068,
                      "gpu_driver_version": "535.104.05", "gpu_cuda_version": "12.2"}
    subprocess.run(["bash", podside.sampler_path(exit_path)], env=env, check=True, timeout=30)
    (line,) = (tmp_path / "ctl" / "exit.samples").read_text().splitlines()
    row, _ = telemetry.parse_sample(line)
    assert (row["gpu_util_pct"], row["gpu_mem_used_mb"], row["gpu_mem_total_mb"]) == (37, 1200, 46068)
    assert row["gpu_temp_c"] is None and row["host_mem_total_mb"] > 0


class _FilesPod:
    """Just enough of a pod for the capture reader: files by pod path, read by offset in small pieces."""

    def __init__(self, files):
        self.files = files

    def read_from(self, path, offset, limit=7):
        return self.files.get(path, b"")[offset:offset + limit]

    def run(self, command, timeout):
        raise AssertionError("no command: the launcher wrote the capture")


def test_a_capture_is_taken_only_once_its_completion_line_is_there(tmp_path):
    from types import SimpleNamespace

    from podmagic.backends import podside

    exit_path = "/workspace/.podmagic/r/exit"
    plan = SimpleNamespace(telemetry=SimpleNamespace(enabled=True), run_dir=tmp_path,
                           launch=SimpleNamespace(exit_path=exit_path))
    session = telemetry.Session(plan, emit=lambda *a, **k: None)
    body = f"\n{podside.SECTION}dmesg@@\nline one\nline two\n"
    path = podside.capture_output_path(exit_path, "end")
    half = _FilesPod({path: body.encode()})
    assert session._output(half, "end") is None  # the launcher is still writing it
    whole = _FilesPod({path: (body + f"\n{podside.CAPTURE_DONE}\n").encode()})
    assert telemetry.sections(session._output(whole, "end")) == {"dmesg": "line one\nline two"}
