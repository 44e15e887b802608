"""The one seam between the runner and a place that runs jobs.

A `Backend` provisions a `Pod`; a `Pod` runs attached commands, starts the
run script detached, reads files from a byte offset, pushes and pulls files,
kills the detached run and is finally released. Paths handed to a pod are
always *pod paths* (`/workspace/repo`, ...); a backend that is not a real pod
maps them (the local sandbox does). Backends import nothing from front ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Protocol

OnOutput = Callable[[str], None]
"""Receives decoded output of an attached command, chunk by chunk."""


class BackendError(RuntimeError):
    """A failure of the backend itself (not of the user's commands)."""


class CapacityError(BackendError):
    """No GPU × datacenter combination could be placed."""


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class PodInfo:
    """What the manifest records about the pod that was obtained."""

    pod_id: str
    backend: str
    gpu_id: str | None = None
    datacenter_id: str | None = None
    price_per_hour_usd: float | None = None
    price_source: str | None = None
    host: str | None = None
    resumed: bool = False


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    output: str


@dataclass(frozen=True)
class Transfer:
    """The outcome of a push or pull: bytes moved and files considered."""

    bytes_transferred: int
    files: int


@dataclass(frozen=True)
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

    @property
    def control_prefix(self) -> str:
        """Pod path prefix of the launcher's files: `.pid`, `.ended_by`, `.sh`."""
        return self.exit_path


class Pod(Protocol):
    info: PodInfo

    def run(self, command: str, *, timeout: float, on_output: OnOutput | None = None,
            workdir: str | None = None) -> CommandResult: ...

    def start(self, launch: Launch) -> None: ...

    def read_from(self, path: str, offset: int, limit: int = 1 << 20) -> bytes: ...

    def exit_code(self, launch: Launch) -> int | None: ...

    def heartbeat(self, launch: Launch) -> None: ...

    def kill(self, launch: Launch) -> None: ...

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None: ...

    def push(self, source: Path, destination: str, *, files: Iterable[str] | None,
             excludes: tuple[str, ...], delete: bool) -> Transfer: ...

    def pull(self, remote: str, local: Path, *, excludes: tuple[str, ...] = (),
             delete: bool = False) -> Transfer: ...

    def release(self, action: str) -> str: ...


class Backend(Protocol):
    name: str

    def provision(self, request: PodRequest, emit: Callable[..., None]) -> Pod: ...
