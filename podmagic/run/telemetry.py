"""Telemetry: what the run ran on and how the pod was doing, in runpod-deploy's files.

Every `telemetry.*` key means what it means in runpod-deploy, on every backend:

- at start (after the pin and preflight, just before the job) the launcher
  captures `nvidia-smi` (`nvidia_smi_start.txt`), `uname -a` and the pod's
  default `python3` (`remote_env.json`), `uv pip freeze` of the project
  environment or else `pip freeze` (`pip_freeze.txt`), then starts the
  sampler beside the job (`backends.podside.launch_files`: no command of its
  own); the pod description goes to `pod_describe_start.json`;
- while the job runs, the sampler (started by the launcher, on the pod)
  appends one line every `sample_interval_sec`; the client reads it by byte
  offset over the connection it already has, like the log, into
  `metrics.jsonl` with runpod-deploy's columns (GPU columns null where there
  is no GPU). The job's own metrics (`$PODMAGIC_METRICS`, JSON lines) are
  streamed the same way into `user_metrics.jsonl`;
- at end (the launcher again, before it writes the job's exit code),
  `nvidia_smi_end.txt`, `dmesg_tail.txt` (where readable) and
  `pod_describe_end.json`. A launcher that was ended before it could is
  replaced by one attached command.

`enabled: false` turns all of it off; each `capture_*` flag turns off its
part. Telemetry never fails a run: every pod call is best-effort.

On a pod without `nvidia-smi`, the GPU columns come from the control plane
where there is one: the Pod protocol's `live_gpus()` (RunPod REST v2
`runtime.gpus[]` items, `{"util": 94, "memoryUtil": 78}`; None elsewhere),
and `describe()` gives the pod description.

Parsing and planning here are pure functions; `Session` is the small
collaborator the runner calls at five points (what the launcher is to do,
launched, poll, end, and the manifest fields it leaves on the outcome). May
import: the standard library, `plan.requests`, `backends.podside` (shell
text), `run.probecache` and `run.store`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from podmagic.backends import podside
from podmagic.backends.podside import GPU_QUERY, SAMPLE_QUERY, SECTION
from podmagic.plan.requests import PodTelemetry
from podmagic.records import asdict, field, mutable
from podmagic.run import probecache, store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

METRICS = store.RunDir.METRICS
USER_METRICS = store.RunDir.USER_METRICS
"""The job's own metrics. Not `metrics.jsonl`: that name is runpod-deploy's sampler file."""
COLUMNS = ("ts_utc", "gpu_util_pct", "gpu_mem_used_mb", "gpu_mem_total_mb", "gpu_temp_c", "gpu_ecc_errors",
           "cpu_load_1m", "cpu_user_pct", "cpu_sys_pct", "host_mem_used_mb", "host_mem_total_mb",
           "workspace_disk_used_bytes", "workspace_disk_total_bytes")
EXTRA_COLUMNS = ("gpu_mem_util_pct",)
"""Added to runpod-deploy's columns: GPU memory in percent (what RunPod's API reports)."""
ENV_SECTIONS = ("uname", "python3", "uv", "freeze")
"""The start capture's pod-environment sections (reused while unchanged, see `Session._cached_env`)."""
POLL_SEC = 2.0
_claims: dict[str, threading.Event] = {}
"""Pod-environment captures in flight in this process (a sweep's shards wait for the first one's)."""
_claims_guard = threading.Lock()


# ---------------------------------------------------------------- parsing (pure)


def sections(output: str) -> dict[str, str]:
    """Split a capture's output into its named sections."""
    out: dict[str, str] = {}
    name = None
    lines: list[str] = []
    for line in output.splitlines():
        if line.startswith(SECTION) and line.endswith("@@"):
            if name is not None:
                out[name] = "\n".join(lines).strip("\n")
            name, lines = line[len(SECTION):-2], []
        elif name is not None:
            lines.append(line)
    if name is not None:
        out[name] = "\n".join(lines).strip("\n")
    return out


_NA = re.compile(r"^\[?(N/A|Not Supported|Unknown Error|Insufficient Permissions|Requested functionality has been "
                 r"deprecated|GPU is lost)\]?$", re.I)


def csv_value(text: str) -> float | str | None:
    """One `nvidia-smi --format=csv` value: a number (units stripped), a string, or None for [N/A]."""
    text = text.strip()
    if not text or _NA.match(text):
        return None
    number = re.fullmatch(r"(-?\d+(?:\.\d+)?)(?:\s*(?:%|MiB|W|MHz|C|GiB|KiB))?", text)
    if number:
        value = float(number.group(1))
        return int(value) if value.is_integer() and "." not in number.group(1) else value
    return text


def parse_csv(text: str, fields: str, header: bool = False) -> list[dict[str, Any]]:
    """`nvidia-smi --query-gpu=<fields> --format=csv[,noheader][,nounits]` → one dict per GPU."""
    names = fields.split(",")
    rows = []
    for i, line in enumerate(text.strip().splitlines()):
        if header and i == 0:
            continue
        cells = [c.strip() for c in line.split(", ")]
        if len(cells) != len(names):
            continue  # an error line ("No devices were found", "NVIDIA-SMI has failed ...")
        rows.append({n: csv_value(c) for n, c in zip(names, cells)})
    return rows


def cuda_version(table: str) -> str | None:
    match = re.search(r"CUDA Version:\s*([\d.]+)", table or "")
    return match.group(1) if match else None


LIST_LINE = re.compile(r"^GPU (\d+): (.+?) \(UUID: [^)]*\)\s*$")


def gpu_fields(table: str | None, query: str | None, fields: str = GPU_QUERY,
               listing: str | None = None) -> dict[str, Any]:
    """The manifest's GPU fields (all None without a GPU).

    From the `--query-gpu` CSV; what it lacks from `nvidia-smi -L` (names, count) and the plain table
    (driver, CUDA, memory), so an nvidia-smi that answers only part of the queries still says what ran.
    """
    rows = parse_csv(query or "", fields)
    listed = [m.group(2) for m in map(LIST_LINE.match, (listing or "").splitlines()) if m]
    names = list(dict.fromkeys(str(r["name"]) for r in rows if r.get("name"))) or list(dict.fromkeys(listed))
    first = rows[0] if rows else {}
    count = len(rows) or len(listed) or None
    driver = first.get("driver_version")
    if driver is None:
        found = re.search(r"Driver Version:\s*([\d.]+)", table or "")
        driver = found.group(1) if found else None
    memory = first.get("memory.total")
    if memory is None:
        found = re.search(r"\d+MiB\s*/\s*(\d+)MiB", table or "")
        memory = int(found.group(1)) if found else None
    return {
        "gpu_name": " + ".join(names) or None,
        "gpu_count": count,
        "gpu_memory_total_mb": memory if count else None,
        "gpu_driver_version": None if driver is None or not count else str(driver),
        "gpu_cuda_version": cuda_version(table or "") if count else None,
    }


def remote_env(secs: dict[str, str]) -> dict[str, Any]:
    """`remote_env.json`: runpod-deploy's `remote_uname`, `remote_python_version`, plus path and uv."""
    python = (secs.get("python3") or "").strip().splitlines()
    version, _, path = (python[-1] if python else "").partition(" ")
    uv = (secs.get("uv") or "").strip().split()
    return {
        "remote_uname": (secs.get("uname") or "").strip() or None,
        "remote_python_version": version or None,
        "remote_python_path": path or None,
        "uv_version": uv[1] if len(uv) >= 2 and uv[0] == "uv" else None,
    }


def freeze(text: str) -> tuple[str, str | None]:
    """The freeze output and which tool made it (the last line says)."""
    lines = text.splitlines()
    if lines and lines[-1].startswith("#podmagic:"):
        return "\n".join(lines[:-1]) + ("\n" if len(lines) > 1 else ""), lines[-1][len("#podmagic:"):]
    return (text + "\n" if text else ""), None


def _num(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _round(value: float | None, digits: int = 1) -> float | int | None:
    if value is None:
        return None
    value = round(value, digits)
    return int(value) if float(value).is_integer() else value


def parse_sample(line: str, previous_cpu: list[int] | None = None) -> tuple[dict[str, Any], list[int] | None]:
    """One sampler line → a `metrics.jsonl` row (runpod-deploy's columns) and the CPU counters for the next.

    CPU percentages are over the time since the previous sample (since boot for the first one).
    """
    fields = dict(part.split("=", 1) for part in line.rstrip("\n").split("\t") if "=" in part)
    row: dict[str, Any] = {c: None for c in (*COLUMNS, *EXTRA_COLUMNS)}
    row["ts_utc"] = fields.get("ts") or None
    gpus = parse_csv((fields.get("gpu") or "").replace(";", "\n"), fields.get("gpuf") or SAMPLE_QUERY) \
        if fields.get("gpu") not in (None, "", "-") else []
    if gpus:
        def values(key: str) -> list[float]:
            return [g[key] for g in gpus if isinstance(g.get(key), (int, float))]
        util, used, total = values("utilization.gpu"), values("memory.used"), values("memory.total")
        temps, ecc = values("temperature.gpu"), values("ecc.errors.uncorrected.volatile.total")
        row["gpu_util_pct"] = _round(sum(util) / len(util)) if util else None
        row["gpu_mem_used_mb"] = _round(sum(used)) if used else None
        row["gpu_mem_total_mb"] = _round(sum(total)) if total else None
        row["gpu_temp_c"] = _round(max(temps)) if temps else None
        row["gpu_ecc_errors"] = _round(sum(ecc)) if ecc else None
        if used and total and sum(total):
            row["gpu_mem_util_pct"] = _round(100.0 * sum(used) / sum(total))
    row["cpu_load_1m"] = _num(fields.get("load"))
    cpu = [int(x) for x in (fields.get("cpu") or "").split()[1:9] if x.isdigit()]
    if len(cpu) >= 4:
        base = previous_cpu if previous_cpu and len(previous_cpu) == len(cpu) else [0] * len(cpu)
        delta = [a - b for a, b in zip(cpu, base)]
        total = sum(delta)
        if total > 0:
            row["cpu_user_pct"] = _round(100.0 * (delta[0] + delta[1]) / total)
            row["cpu_sys_pct"] = _round(100.0 * delta[2] / total)
    mem = [_num(x) for x in (fields.get("mem") or "").split()]
    if len(mem) == 2 and None not in mem:
        row["host_mem_total_mb"] = int(mem[0] // 1024)
        row["host_mem_used_mb"] = int((mem[0] - mem[1]) // 1024)
    disk = [_num(x) for x in (fields.get("disk") or "").split()]
    if len(disk) == 2 and None not in disk:
        row["workspace_disk_used_bytes"], row["workspace_disk_total_bytes"] = int(disk[0]), int(disk[1])
    return row, (cpu or previous_cpu)


def fill_from_api(row: dict[str, Any], gpus: list[dict[str, Any]] | None) -> dict[str, Any]:
    """GPU columns from RunPod's live `runtime.gpus[]` when the pod had no nvidia-smi (pure)."""
    if row.get("gpu_util_pct") is not None or not gpus:
        return row
    util = [g["util"] for g in gpus if isinstance(g.get("util"), (int, float))]
    mem = [g["memoryUtil"] for g in gpus if isinstance(g.get("memoryUtil"), (int, float))]
    out = dict(row)
    out["gpu_util_pct"] = _round(sum(util) / len(util)) if util else None
    out["gpu_mem_util_pct"] = _round(sum(mem) / len(mem)) if mem else None
    return out


def parse_user_line(line: str) -> dict[str, Any] | None:
    """A `$PODMAGIC_METRICS` line: a JSON object, else None (skipped, never an error)."""
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def numeric_series(rows: Iterable[dict[str, Any]], x_keys: tuple[str, ...] = ("step", "epoch")) -> dict[str, Any]:
    """Rows → {"x": name, "series": {metric: [(x, y), ...]}} for every numeric metric (pure).

    x is the first of `x_keys` the rows carry, else the row's `ts`/`time`, else its index.
    """
    rows = list(rows)
    x_key = next((k for k in x_keys if any(_is_num(r.get(k)) for r in rows)), None)
    if x_key is None:
        x_key = next((k for k in ("ts", "time", "t") if any(_is_num(r.get(k)) for r in rows)), None)
    series: dict[str, list[tuple[float, float]]] = {}
    for i, r in enumerate(rows):
        x = r.get(x_key) if x_key else i
        if not _is_num(x):
            continue
        for key, value in r.items():
            if key != x_key and key not in x_keys and _is_num(value):
                series.setdefault(key, []).append((float(x), float(value)))
    return {"x": x_key or "row", "series": series}


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


# ---------------------------------------------------------------- reading back


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The JSON-object lines of a run-directory file (bad lines skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [r for r in map(parse_user_line, text.splitlines()) if r is not None]


class LineReader:
    """Reads a pod file by byte offset and yields only complete lines (a torn last line waits)."""

    def __init__(self, pod_path: str):
        self.pod_path, self.offset, self.carry = pod_path, 0, b""

    def read(self, pod, final: bool = False) -> list[str]:
        data = b""
        while chunk := pod.read_from(self.pod_path, self.offset):
            self.offset += len(chunk)
            data += chunk
        data = self.carry + data
        *lines, self.carry = data.split(b"\n")
        if final and self.carry:
            lines, self.carry = [*lines, self.carry], b""
        return [line.decode("utf-8", "replace") for line in lines if line.strip()]


@mutable
class Result:
    """What telemetry adds to the manifest (the runner's outcome carries it)."""

    files: list[str] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    user_metrics_rows: int = 0


class Session:
    """The runner's telemetry collaborator: `pod_side`, `launched`, `poll`, `end`; never raises."""

    def __init__(self, plan, emit: Callable[..., None], mask: Callable[[str], str] = str):
        self.plan, self.emit, self.mask = plan, emit, mask
        self.t = plan.telemetry
        self.result = Result()
        self.rundir = store.RunDir(plan.run_dir)
        exit_path = plan.launch.exit_path
        self.samples = LineReader(podside.samples_path(exit_path))
        self.user = LineReader(podside.user_metrics_path(exit_path))
        self.started = False
        self.pod_telemetry: PodTelemetry | None = None
        self._took_start = False
        self._env_key: str | None = None
        self._claim: threading.Event | None = None
        self._cpu: list[int] | None = None
        self._polled: float | None = None
        self._user_seen = False

    @property
    def on(self) -> bool:
        return bool(self.t.enabled)

    # -- the five points -----------------------------------------------------
    def pod_side(self, pod) -> PodTelemetry | None:
        """Before the launch: what the launcher captures and samples (None: telemetry off). The pod
        environment is left out while an earlier run's answer still holds (written here at once)."""
        if not self.on:
            return None
        t = self.t
        env = self._cached_env(pod) if t.capture_remote_env else None
        if env is not None:
            self._take_env(env)
        self.pod_telemetry = PodTelemetry(
            sample_interval_sec=t.sample_interval_sec, mount=self.plan.request.volume_mount,
            max_samples=int(self.plan.timeout_sec // max(t.sample_interval_sec, 1)) + 2,
            nvidia_smi=t.capture_nvidia_smi, remote_env=t.capture_remote_env and env is None,
            dmesg=t.capture_dmesg)
        return self.pod_telemetry

    def launched(self, pod) -> None:
        """As the launcher starts: the pod description (the start capture is read as it lands)."""
        self.started = True
        if self.on and self.t.capture_pod_describe:
            self._describe(pod, "pod_describe_start.json")

    def poll(self, pod, force: bool = False) -> None:
        """In the follow loop: the start capture once it is there; new sampler rows and job metrics at
        most every POLL_SEC."""
        if not self._took_start and self.pod_telemetry is not None:
            self._take_start(pod)
        now = time.monotonic()
        if not force and self._polled is not None and now - self._polled < POLL_SEC:
            return
        self._polled = now
        self._drain(pod, final=False)

    def end(self, pod) -> None:
        """In teardown: the end capture (the launcher's, else one command), then the files read to their end."""
        try:
            if not self.started:
                return
            if self.pod_telemetry is not None:
                if not self._took_start:
                    self._take_start(pod)
                self._take_end(self._end_output(pod))
            self._drain(pod, final=True)
            if self.on and self.t.capture_pod_describe:
                self._describe(pod, "pod_describe_end.json")
        finally:
            self._release()

    def manifest_fields(self) -> dict[str, Any]:
        return {**{k: None for k in ("gpu_name", "gpu_count", "gpu_memory_total_mb", "gpu_driver_version",
                                     "gpu_cuda_version", "remote_python_version", "remote_python_path",
                                     "remote_uname", "uv_version")},
                **self.result.fields,
                "user_metrics_file": USER_METRICS if self._user_seen else None}

    # -- the captures --------------------------------------------------------
    def _output(self, pod, moment: str) -> str | None:
        """A capture's output once the launcher has written all of it (its last line says so), else None."""
        path, data = podside.capture_output_path(self.plan.launch.exit_path, moment), b""
        try:
            while chunk := pod.read_from(path, len(data)):
                data += chunk
        except Exception as exc:  # noqa: BLE001 - telemetry never fails a run
            self.emit("warning", message=f"telemetry read failed: {type(exc).__name__}: {exc}")
            return None
        text = data.decode("utf-8", "replace")
        done = text.rfind("\n" + podside.CAPTURE_DONE)
        return text[:done] if done >= 0 else None

    def _take_start(self, pod) -> None:
        output = self._output(pod, "start")
        if output is None:
            return
        self._took_start = True
        secs = sections(output)
        if "nvidia_smi" in secs:
            self._write("nvidia_smi_start.txt", secs["nvidia_smi"] + "\n")
        self.result.fields.update(gpu_fields(secs.get("nvidia_smi"), secs.get("gpu_query"),
                                             (secs.get("gpu_fields") or GPU_QUERY).strip(), secs.get("gpu_list")))
        if self.pod_telemetry.remote_env:
            env = {k: v for k, v in secs.items() if k in ENV_SECTIONS}
            if self._env_key is not None and env:
                probecache.keep(self.plan.project_root, self._env_key, env)
            self._release()
            self._take_env(env)
        self.emit("telemetry_captured", moment="start", gpu_name=self.result.fields.get("gpu_name"),
                  gpu_count=self.result.fields.get("gpu_count"))

    def _take_env(self, secs: dict[str, str]) -> None:
        env = remote_env(secs)
        text, tool = freeze(secs.get("freeze", ""))
        self._write("remote_env.json", json.dumps({**env, "freeze_tool": tool}, indent=2) + "\n")
        if text.strip():
            self._write("pip_freeze.txt", text)
        self.result.fields.update(env)

    def _end_output(self, pod) -> str | None:
        """The launcher's end capture (written before the exit code); else, when the launcher was ended
        before it could write it, the capture as a command of its own."""
        output = self._output(pod, "end")
        if output is None:
            output = self._run(pod, podside.end_capture_command(self.plan.launch.exit_path, self.pod_telemetry))
        return output

    def _take_end(self, output: str | None) -> None:
        secs = sections(output or "")
        if "nvidia_smi" in secs:
            self._write("nvidia_smi_end.txt", secs["nvidia_smi"] + "\n")
        if "dmesg" in secs and secs["dmesg"].strip():
            self._write("dmesg_tail.txt", secs["dmesg"] + "\n")

    def _cached_env(self, pod) -> dict[str, str] | None:
        """The pod environment an earlier run captured, while what it depends on is unchanged (`pip freeze`
        alone costs ~0.3 s of CPU), as the interpreter probe is (`run.probecache`). A run that must capture
        it claims the key, so the shards of a sweep wait for the first one's answer instead of all freezing."""
        key = _quiet(pod.probe_key)
        if key is None:
            return None
        plan = self.plan
        self._env_key = "telemetry:" + probecache.key_of([
            "telemetry-env", key, [c.command for c in (*plan.setup, *plan.preflight)], plan.python_version,
            plan.launch.workdir, probecache.pin_files([Path(p.source) for p in plan.staging])])
        env = probecache.recall(plan.project_root, self._env_key)
        if env is not None:
            return env
        with _claims_guard:
            other = _claims.get(self._env_key)
            if other is None:
                self._claim = _claims[self._env_key] = threading.Event()
        if other is None:
            return None
        other.wait(podside.CAPTURE_TIMEOUT_SEC)
        return probecache.recall(plan.project_root, self._env_key)

    def _release(self) -> None:
        if self._claim is not None:
            with _claims_guard:
                if _claims.get(self._env_key) is self._claim:
                    del _claims[self._env_key]
            self._claim.set()
            self._claim = None

    # -- helpers -------------------------------------------------------------
    def _drain(self, pod, final: bool) -> None:
        try:
            if self.on:
                self._take_samples(pod, self.samples.read(pod, final))
            self._take_user(self.user.read(pod, final))
        except Exception as exc:  # noqa: BLE001 - telemetry never fails a run
            self.emit("warning", message=f"telemetry read failed: {type(exc).__name__}: {exc}")

    def _take_samples(self, pod, lines: list[str]) -> None:
        rows = []
        for line in lines:
            row, self._cpu = parse_sample(line, self._cpu)
            if row["gpu_util_pct"] is None:
                row = fill_from_api(row, _quiet(pod.live_gpus))
            rows.append(row)
        if rows:
            self._append(METRICS, rows)
            self.emit("metrics", source="telemetry", rows=rows)

    def _take_user(self, lines: list[str]) -> None:
        lines = [self.mask(line) for line in lines]
        if not lines:
            return
        self._user_seen = True
        self.rundir.append_lines(USER_METRICS, lines)
        rows = [r for r in map(parse_user_line, lines) if r is not None]
        self.result.user_metrics_rows += len(rows)
        if rows:
            self.emit("metrics", source="user", rows=rows)

    def _append(self, name: str, rows: list[dict[str, Any]]) -> None:
        self.rundir.append_lines(name, [json.dumps(r) for r in rows])
        self._listed(name)

    def _write(self, name: str, text: str) -> None:
        self.rundir.write_telemetry(name, self.mask(text))
        self._listed(name)

    def _listed(self, name: str) -> None:
        if name not in self.result.files:
            self.result.files.append(name)

    def _describe(self, pod, name: str) -> None:
        described = _quiet(pod.describe)
        info = getattr(pod, "info", None)
        data = described if isinstance(described, dict) else (asdict(info) if info is not None else None)
        if data is not None:
            self._write(name, json.dumps(data, indent=2, default=str) + "\n")

    def _run(self, pod, command: str) -> str | None:
        try:
            result = pod.run(command, timeout=podside.CAPTURE_TIMEOUT_SEC)
        except Exception as exc:  # noqa: BLE001 - telemetry never fails a run
            self.emit("warning", message=f"telemetry capture failed: {type(exc).__name__}: {exc}")
            return None
        return result.output


def _quiet(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception:  # noqa: BLE001 - a control-plane hiccup leaves the columns null
        return None


def user_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The job's metrics of a run (its `user_metrics.jsonl`), as dicts."""
    return read_rows(Path(run_dir) / USER_METRICS)


def gpu_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The sampler's rows of a run (its `metrics.jsonl`), as dicts."""
    return read_rows(Path(run_dir) / METRICS)
