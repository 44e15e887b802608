"""What a plan asks of a pod: the machine (`PodRequest`) and the detached job (`Launch`).

Pure data: imports only the standard library. Backends read these; the plan builds them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from podmagic.records import field, record


@record
class PodRequest:
    """What the runner asks a backend for (from the `pod`/`storage` sections)."""

    run_id: str
    image: str
    datacenters: tuple[str, ...]
    gpu_order: tuple[str, ...]
    cloud_type: str = "SECURE"
    gpu_count: int = 1
    ports: tuple[str, ...] = ("22/tcp",)
    container_disk_gb: int = 20
    volume_gb: int | None = 20
    volume_mount: str = "/workspace"
    volume_name: str | None = None
    storage_mode: str = "ephemeral"
    spot: bool = False
    min_vcpu_count: int | None = None
    min_memory_gb: int | None = None
    ssh_ready_timeout_sec: int = 900
    key_path: str = "~/.ssh/id_ed25519"
    run_dir: Path | None = None
    options: Mapping[str, str] = field(default_factory=dict)


@record
class PodTelemetry:
    """What the launcher captures and samples on the pod beside the job (the `telemetry` keys' pod side).

    The start capture runs before the job starts and the end capture after it ended, both inside the
    launcher: no command of their own, no round trip."""

    sample_interval_sec: float
    max_samples: int
    mount: str
    """The folder whose disk use the sampler reports (the volume mount)."""
    nvidia_smi: bool = True
    remote_env: bool = True
    """uname, the pod's python3, uv and the freeze (off when an earlier run's answer still holds)."""
    dmesg: bool = True


@record
class Launch:
    """The detached run: its script, log and exit-code file (pod paths)."""

    script_path: str
    log_path: str
    exit_path: str
    workdir: str
    body: str
    env: Mapping[str, str] = field(default_factory=dict)
    heartbeat_path: str | None = None
    heartbeat_timeout_sec: float | None = None
    max_runtime_sec: float | None = None
    watchdog_interval_sec: float = 5.0
    watchdog_command: str | None = None
    """Run on the pod after the watchdog ends the job (e.g. terminate the pod)."""
    telemetry: PodTelemetry | None = None
    """None: no sampler and no captures (the job's own metrics file is always there)."""

    @property
    def control_prefix(self) -> str:
        """Pod path prefix of the launcher's files: `.pid`, `.ended_by`, `.sh`."""
        return self.exit_path
