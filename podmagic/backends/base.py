"""The one seam between the runner and a place that runs jobs.

A `Backend` provisions a `Pod`; a `Pod` runs attached commands, starts the
run script detached, reads files from a byte offset, pushes and pulls files,
kills the detached run and is finally released. Paths handed to a pod are
always *pod paths* (`/workspace/repo`, ...); a backend that is not a real pod
maps them (the local sandbox does). Backends import nothing from front ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from podmagic.errors import BackendError, CapacityError  # noqa: F401 - the backends' error kinds
from podmagic.plan.requests import Launch, PodRequest  # noqa: F401 - what a backend is asked for
from podmagic.records import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object  # the protocols below are for type checkers; a backend need not subclass them

OnOutput = Callable[[str], None]
"""Receives decoded output of an attached command, chunk by chunk."""

Emit = Callable[..., None]
"""`emit(kind, **data)`: how a backend reports progress (events) to the runner."""

POD_HANDLE = "pod_handle"
"""The event a backend emits as soon as a pod exists (before any wait), with what cleanup needs
(`pod_id`, `backend`, `state`, ...). The runner records it in the run directory's `pod.json`;
backends themselves write no run-directory files."""


@record
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
    uv_version: str | None = None
    uv_source: str | None = None
    """How uv got there: present, copied (this machine's binary), pip, or None (missing)."""
    sandbox: str | None = None
    """How a local pod confines its commands: `namespace` or `mapped` (None elsewhere)."""


@record
class CommandResult:
    exit_code: int
    output: str


@record
class Transfer:
    """The outcome of a push or pull: bytes moved and files considered."""

    bytes_transferred: int
    files: int


class Pod(Protocol):
    """A machine that runs one job: everything the runner asks of it."""

    info: PodInfo

    def run(self, command: str, *, timeout: float, on_output: OnOutput | None = None,
            workdir: str | None = None) -> CommandResult: ...

    def start(self, launch: Launch) -> None: ...

    def read_from(self, path: str, offset: int, limit: int = 1 << 20) -> bytes: ...

    def exit_code(self, launch: Launch) -> int | None: ...

    def wait_exit(self, launch: Launch, timeout: float) -> int | None:
        """Block up to `timeout` seconds for the job's end, returning early when it ends; its exit code,
        or None while it runs. Event-driven where the pod allows it, else a bounded poll."""

    def probe_key(self) -> object | None:
        """What the interpreter probe's answer depends on, on the pod's side (JSON-able), or None when
        the pod cannot tell: then the probe always runs (see `run.probecache`)."""

    def stable_path(self, path: str) -> bool:
        """Whether an interpreter path from an earlier probe is still valid for this pod."""

    def live_gpus(self) -> list[dict] | None:
        """The control plane's live GPU use, one dict per GPU (RunPod REST v2 `runtime.gpus[]`:
        `{"util": 94, "memoryUtil": 78}`), or None where there is none; telemetry fills the GPU columns
        from it when the pod has no nvidia-smi."""

    def describe(self) -> dict | None:
        """The control plane's description of the pod (`pod_describe_*.json`), or None: then telemetry
        records the pod handle (`info`)."""

    def heartbeat(self, launch: Launch) -> None: ...

    def kill(self, launch: Launch) -> None: ...

    def ended_by(self, launch: Launch) -> str | None:
        """Who ended the job when it was not the job itself (the watchdog: runtime cap, stale heartbeat)."""

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None: ...

    def push(self, source: Path, destination: str, *, files: Iterable[str] | None,
             excludes: tuple[str, ...], delete: bool) -> Transfer: ...

    def pull(self, remote: str, local: Path, *, excludes: tuple[str, ...] = (),
             delete: bool = False) -> Transfer: ...

    def release(self, action: str) -> str:
        """Apply a lifecycle action (delete, stop, preserve, recycle); returns the pod's final state."""


class Backend(Protocol):
    """Where pods come from."""

    name: str

    def provision(self, request: PodRequest, emit: Emit) -> Pod:
        """A pod ready to run commands; emits `POD_HANDLE` as soon as one exists."""
