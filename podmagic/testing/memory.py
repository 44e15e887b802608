"""An in-memory pod and backend that implement `backends.base` for real, for tests of the runner.

The pod's file system is a dict (pod path -> bytes). `run` executes nothing: it answers from a
small table of `(regex, Reply)` rows, the first row whose regex is found in the command. The
detached job is a `Job`: `start` writes the script, then each `exit_code` poll appends the next log
chunk to the log file, and once the chunks are spent the exit-code file appears (a `Job` with no
exit code runs until `kill`). `push`, `pull`, `read_from`, `write_file` move real bytes between
this dict and the local disk, so staging, the log pull and artifacts behave as on a pod.

`faults` name a method (`provision`, `run`, `start`, `exit_code`, `read_from`, `heartbeat`,
`kill`, `write_file`, `push`, `pull`, `release`) and say what happens when it is called: an
exception to raise, or a callable given the pod (it may raise, request a stop, or deliver a real
SIGINT with `interrupt`) before the method does anything; `after={"start": ...}` fires once `start`
has launched the job (an interrupt that lands between the launch and the runner noting it). Every call is recorded in `calls`.

May import `backends.base` and the standard library; never `run` or `ui`.
"""

from __future__ import annotations

import re
import signal
import time
from dataclasses import field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Mapping, Sequence, Union

from podmagic.backends.base import POD_HANDLE, CommandResult, Emit, Launch, OnOutput, PodInfo, PodRequest, Transfer
from podmagic.records import record

Fault = Union[BaseException, Callable[["MemoryPod"], None]]
FINAL_STATES = {"delete": "TERMINATED", "stop": "EXITED", "preserve": "RUNNING"}


def interrupt(_pod: "MemoryPod | None" = None) -> None:
    """A real Ctrl-C: SIGINT to this process (KeyboardInterrupt in the main thread, held in teardown)."""
    signal.raise_signal(signal.SIGINT)


@record
class Reply:
    """What an attached command answers."""

    exit_code: int = 0
    output: str = ""
    """Sent to `on_output` in one piece (unless `chunks` is given)."""
    chunks: tuple[str, ...] = ()
    """Sent to `on_output` one by one; the output is their concatenation."""
    raises: BaseException | None = None
    """Raised instead of answering (e.g. `TimeoutError()` for a command past its timeout)."""
    action: Callable[["MemoryPod"], None] | None = None
    """Called before the answer (e.g. request a stop, deliver an interrupt)."""


@record
class Job:
    """The detached run: its log, chunk by chunk, then its exit code."""

    log: tuple[str, ...] = ()
    exit_code: int | None = 0
    """None: the job never ends by itself."""
    ended_by: str | None = None
    """What the pod-side launcher recorded as the cause of the end (e.g. "watchdog: max runtime")."""
    files: Mapping[str, bytes] = field(default_factory=dict)
    """Pod files the job writes once it ends (e.g. artifacts)."""


class MemoryPod:
    def __init__(self, info: PodInfo, *, commands: Sequence[tuple[str, Reply]] = (), job: Job = Job(),
                 faults: Mapping[str, Fault] | None = None, default: Reply = Reply(),
                 final_states: Mapping[str, str] | None = None, after: Mapping[str, Fault] | None = None):
        self.info = info
        self.commands = [(re.compile(pattern), reply) for pattern, reply in commands]
        self.job = job
        self.faults = dict(faults or {})
        self.after = dict(after or {})
        self.default = default
        self.final_states = {**FINAL_STATES, **(final_states or {})}
        """What `release(action)` reports, e.g. {"stop": "TERMINATED"}: a stop that fell back to terminate."""
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, int] = {}
        self.calls: list[tuple] = []
        self.launch: Launch | None = None
        self.killed = False
        self.released: list[str] = []
        self._chunks: list[str] = []
        self._ended_by: str | None = None

    # ------------------------------------------------------------ the protocol

    def run(self, command: str, *, timeout: float, on_output: OnOutput | None = None,
            workdir: str | None = None) -> CommandResult:
        self._call("run", command, workdir)
        reply = next((r for pattern, r in self.commands if pattern.search(command)), self.default)
        if reply.action:
            reply.action(self)
        if reply.raises is not None:
            raise reply.raises
        pieces = reply.chunks or ((reply.output,) if reply.output else ())
        for piece in pieces:
            if on_output:
                on_output(piece)
        return CommandResult(reply.exit_code, "".join(pieces))

    def start(self, launch: Launch) -> None:
        self._call("start", launch.script_path)
        self.launch = launch
        for path in (launch.exit_path, launch.log_path):
            self.files.pop(path, None)
        self.files[launch.script_path] = launch.body.encode()
        self.files[launch.log_path] = b""
        if launch.heartbeat_path:
            self.files[launch.heartbeat_path] = b""
        self._chunks = list(self.job.log)
        self._fire(self.after.get("start"))

    def exit_code(self, launch: Launch) -> int | None:
        self._call("exit_code")
        if launch.exit_path not in self.files and self.launch is not None and not self.killed:
            self._advance(launch)
        try:
            return int(self.files[launch.exit_path].decode().strip())
        except KeyError:
            return None

    def wait_exit(self, launch: Launch, timeout: float) -> int | None:
        """One step of the job; while it runs, a short real wait (at most `timeout`)."""
        code = self.exit_code(launch)
        if code is None:
            time.sleep(min(timeout, 0.01))
        return code

    def probe_key(self) -> object | None:
        self._call("probe_key")
        return None  # nothing to tell: the runner always probes

    def stable_path(self, path: str) -> bool:
        self._call("stable_path", path)
        return path in self.files

    def live_gpus(self) -> list[dict] | None:
        return None

    def describe(self) -> dict | None:
        return None

    def ended_by(self, launch: Launch) -> str | None:
        self._call("ended_by")
        return self._ended_by

    def read_from(self, path: str, offset: int, limit: int = 1 << 20) -> bytes:
        self._call("read_from", path, offset)
        return self.files.get(path, b"")[offset:offset + limit]

    def heartbeat(self, launch: Launch) -> None:
        self._call("heartbeat")
        if launch.heartbeat_path:
            self.files[launch.heartbeat_path] = b""

    def kill(self, launch: Launch) -> None:
        self._call("kill")
        if launch.exit_path not in self.files:
            self.killed = True
            self._ended_by = "killed"
            self.files[launch.exit_path] = b"143\n"

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        self._call("write_file", path, mode)
        self.files[path] = bytes(data)
        self.modes[path] = mode

    def push(self, source: Path, destination: str, *, files: Iterable[str] | None,
             excludes: tuple[str, ...], delete: bool) -> Transfer:
        selected = list(files) if files is not None else \
            [str(p.relative_to(source)) for p in sorted(Path(source).rglob("*")) if p.is_file()]
        self._call("push", str(source), destination, tuple(selected))
        dest = PurePosixPath(destination)
        moved = 0
        for rel in selected:
            data = (Path(source) / rel).read_bytes()
            self.files[str(dest / rel)] = data
            moved += len(data)
        if delete:
            keep = {str(dest / rel) for rel in selected}
            for path in [p for p in self.files if p.startswith(f"{dest}/") and p not in keep]:
                del self.files[path]
        return Transfer(moved, len(selected))

    def pull(self, remote: str, local: Path, *, excludes: tuple[str, ...] = (),
             delete: bool = False) -> Transfer:
        self._call("pull", remote, str(local))
        if remote in self.files:
            target = local / PurePosixPath(remote).name if local.is_dir() or str(local).endswith("/") else local
            return Transfer(_write(target, self.files[remote]), 1)
        prefix = remote.rstrip("/") + "/"
        inside = {p[len(prefix):]: data for p, data in self.files.items() if p.startswith(prefix)}
        if not inside:
            raise FileNotFoundError(f"{remote} does not exist on the pod")
        target = local if remote.endswith("/") else local / PurePosixPath(remote.rstrip("/")).name
        return Transfer(sum(_write(target / rel, data) for rel, data in inside.items()), len(inside))

    def release(self, action: str) -> str:
        self._call("release", action)
        self.released.append(action)
        return self.final_states.get(action, "EXITED")

    # ------------------------------------------------------------ for tests

    def count(self, method: str) -> int:
        return sum(1 for call in self.calls if call[0] == method)

    def _call(self, method: str, *args) -> None:
        self.calls.append((method, *args))
        self._fire(self.faults.get(method))

    def _fire(self, fault: Fault | None) -> None:
        if fault is None:
            return
        if isinstance(fault, BaseException):
            raise fault
        fault(self)

    def _advance(self, launch: Launch) -> None:
        """One step of the job: the next log chunk, or the end."""
        if self._chunks:
            self.files[launch.log_path] += self._chunks.pop(0).encode()
            return
        if self.job.exit_code is None:
            return
        self.files.update(self.job.files)
        self._ended_by = self.job.ended_by
        self.files[launch.exit_path] = f"{self.job.exit_code}\n".encode()


def _write(target: Path, data: bytes) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return len(data)


class MemoryBackend:
    """Provisions `MemoryPod`s; `pods` holds every pod it made, `provision_fault` fails provisioning."""

    name = "memory"

    def __init__(self, *, provision_fault: Fault | None = None, **pod_options):
        self.provision_fault = provision_fault
        self.pod_options = pod_options
        self.pods: list[MemoryPod] = []
        self.requests: list[PodRequest] = []

    def provision(self, request: PodRequest, emit: Emit) -> MemoryPod:
        self.requests.append(request)
        if isinstance(self.provision_fault, BaseException):
            raise self.provision_fault
        if self.provision_fault is not None:
            self.provision_fault(None)
        info = PodInfo(pod_id=f"memory-{request.run_id}", backend=self.name, gpu_id="memory",
                       datacenter_id="memory", price_per_hour_usd=0.0, price_source="memory", host="memory")
        emit(POD_HANDLE, pod_id=info.pod_id, backend=self.name, state="RUNNING")
        emit("gpu_selected", gpu_id=info.gpu_id, datacenter_id=info.datacenter_id)
        pod = MemoryPod(info, **self.pod_options)
        self.pods.append(pod)
        return pod

    @property
    def pod(self) -> MemoryPod:
        (only,) = self.pods
        return only
