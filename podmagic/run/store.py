"""The run store: run directories under `<project_root>/artifacts/runpod/`.

`RunDir` is the one owner of a run directory: it names every file and is the only writer of
status, pod record, logs and manifest (`RunDir.FILES` lists them). Everything is plain files
written atomically, so the CLI, the magics and the Jupyter server extension can all read a run
while another process writes it.

May import `plan.naming`, `run.events` and `podmagic.errors`; never `backends` or `ui`.
"""

from __future__ import annotations

import bisect
import errno
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from podmagic.errors import PodmagicError, RunNotFound
from podmagic.plan.naming import RUN_LOG, RUNS_SUBDIR, slug  # noqa: F401 - slug re-exported for the store's users
from podmagic.records import record
from podmagic.run.events import utc_iso

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

MANIFEST = "runpod_deploy_pull_manifest.json"
STATUS = "status.json"
STOP = "stop"
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
LIVE_STATES = frozenset({"starting", "running"})
TAIL_MAX_BYTES = 256 * 1024
"""A log tail reads at most this much from the end of the file, however long the log."""


def runs_root(project_root: Path) -> Path:
    return Path(project_root) / RUNS_SUBDIR


FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""A full disk, a full quota, a file-size limit: the same for whoever writes."""


class DiskFull(PodmagicError):
    """A write under a run directory found no space: names the file and the folder whose disk is full."""

    exit_code = 1

    def __init__(self, path: Path | str, note: str = ""):
        self.path = Path(path)
        super().__init__(f"no space left on the disk holding {self.path.parent}: could not write {self.path.name}"
                         f" there{note}; free space on that disk (or move the project to another) and run again")


@contextmanager
def writing(path: Path | str):
    """Turn a full-disk OSError while writing `path` into `DiskFull(path)`."""
    try:
        yield
    except OSError as exc:
        if exc.errno in FULL_ERRNOS:
            raise DiskFull(path) from exc
        raise


class _Guarded:
    """A file being appended to whose full-disk errors are `DiskFull` naming it."""

    def __init__(self, fh, path: Path):
        self._fh, self._path = fh, path

    def write(self, data):
        with writing(self._path):
            return self._fh.write(data)

    def flush(self) -> None:
        with writing(self._path):
            self._fh.flush()

    def close(self) -> None:
        with writing(self._path):
            self._fh.close()

    def __getattr__(self, name: str):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _append(path: Path, mode: str):
    with writing(path):
        fh = path.open(mode, **({} if "b" in mode else {"encoding": "utf-8"}))
    return _Guarded(fh, path)


def write_json_atomic(path: Path, data: Any, pretty: bool = False) -> None:
    """`pretty`: indented all the way down (for a record read by people once, e.g. the manifest)."""
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n" if pretty else dumps(data))


def dumps(data: Any) -> str:
    """JSON with one top-level key per line: readable, and made by json's C encoder (`indent=` would take
    the pure-Python one, ten times slower: a sweep writes its record and each run its status many times)."""
    if not isinstance(data, dict) or not data:
        return json.dumps(data, default=str) + "\n"
    lines = (f"  {json.dumps(str(k))}: {json.dumps(v, default=str)}" for k, v in data.items())
    return "{\n" + ",\n".join(lines) + "\n}\n"


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write beside `path`, then rename over it: a reader sees the old file or the new one, never half.

    The temporary name is this thread's own (no other writer shares it), so no random name is needed."""
    with writing(path):
        tmp = path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)  # as mkstemp made them
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, NotADirectoryError):
        return None


STAMP_RE = re.compile(r"-(\d{8}T\d{6}Z)-[0-9a-f]{4}$")
"""The creation stamp in a run id (`<prefix>-<UTC stamp>-<4 hex>`): run ids sort by it, newest first."""


@record
class RunIndex:
    """The run ids of one runs folder: newest first, and sorted by name for prefix look-ups."""

    signature: tuple[int, int, int]
    newest_first: tuple[str, ...]
    by_name: tuple[str, ...]

    def with_prefix(self, prefix: str) -> list[str]:
        """Ids starting with `prefix`: a binary search in the sorted names, O(log n + matches)."""
        start = bisect.bisect_left(self.by_name, prefix)
        out = []
        for name in self.by_name[start:]:
            if not name.startswith(prefix):
                break
            out.append(name)
        return out


_INDEXES: dict[str, RunIndex] = {}
_INDEX_LOCK = threading.Lock()


TICK_NS = 10**9
"""Coarser than any file system's timestamps: a change within one tick of another looks alike."""


def quiet_since(mtime_ns: int, ns: int = TICK_NS) -> bool:
    """Whether a file or folder last changed more than `ns` ago (so an equal mtime means no change)."""
    return time.time_ns() - mtime_ns > ns


def run_index(project_root: Path) -> RunIndex:
    """The runs folder's index, rebuilt only when the folder changed (a run added or removed).

    The check is one `stat` of the folder (mtime, link count, inode), so a long-lived reader (the
    server extension polled by the panel) does no directory scan while nothing changed. Order is by
    the creation stamp in the id (stable: a run writing its status does not move it), falling back
    to the directory's mtime for ids without one.
    """
    root = runs_root(project_root)
    try:
        st = root.stat()
    except (FileNotFoundError, NotADirectoryError):
        return RunIndex((0, 0, 0), (), ())
    signature = (st.st_mtime_ns, st.st_nlink, st.st_ino)
    key = str(root)
    cached = _INDEXES.get(key)
    if cached is not None and cached.signature == signature and quiet_since(st.st_mtime_ns):
        return cached
    keyed = []
    with os.scandir(root) as entries:
        for entry in entries:
            if RUN_ID_RE.match(entry.name) and entry.is_dir():
                stamp = STAMP_RE.search(entry.name)
                when = stamp.group(1) if stamp else time.strftime(
                    "%Y%m%dT%H%M%SZ", time.gmtime(entry.stat().st_mtime))
                keyed.append((when, entry.name))
    keyed.sort(reverse=True)
    index = RunIndex(signature, tuple(name for _, name in keyed), tuple(sorted(name for _, name in keyed)))
    with _INDEX_LOCK:
        _INDEXES[key] = index
    return index


def iter_run_dirs(project_root: Path) -> Iterator[Path]:
    """Run directories, newest first (by creation)."""
    root = runs_root(project_root)
    return (root / name for name in run_index(project_root).newest_first)


def pods_by_id(project_root: Path) -> dict[str, Path]:
    """pod id → run directory, from each run's pod record."""
    found = {}
    for run_dir in iter_run_dirs(project_root):
        pod_id = (RunDir(run_dir).pod() or {}).get("pod_id")
        if pod_id:
            found[str(pod_id)] = run_dir
    return found


def find_run(project_root: Path, ref: str) -> Path:
    """A run directory by id, unique id prefix, or path."""
    as_path = Path(ref).expanduser()
    if as_path.is_dir() and ((as_path / STATUS).exists() or (as_path / MANIFEST).exists()):
        return as_path.resolve()
    if not RUN_ID_RE.match(ref):
        raise RunNotFound(f"not a run id: {ref!r}")
    root = runs_root(project_root)
    if (root / ref).is_dir():
        return root / ref
    matches = [root / name for name in run_index(project_root).with_prefix(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunNotFound(f"no run {ref!r} under {root}")
    raise RunNotFound(f"{ref!r} matches {len(matches)} runs: " + ", ".join(p.name for p in matches[:5]))


def status_word(manifest: dict[str, Any]) -> str:
    """A finished run's state: succeeded, failed or interrupted (also of a `run_finished` event)."""
    if manifest.get("interrupted"):
        return "interrupted"
    return "failed" if manifest.get("failed") else "succeeded"


_FINISHED: dict[str, tuple[tuple[int, int] | None, dict[str, Any]]] = {}
"""Summaries of finished runs by run directory: valid while their manifest and status files are unchanged,
and for good (no more stats) once both were older than SETTLED_NS when read (teardown writes them last)."""
SETTLED_NS = 10 * 10**9


def run_summary(run_dir: Path) -> dict[str, Any]:
    """One row for listings: the manifest when present, else the live status.

    A finished run's row is remembered (keyed by its two files' mtimes, then for good once they have
    settled): a reader that lists the same runs again (the panel's poll) reads and stats nothing for
    runs that finished.
    """
    key = str(run_dir)
    hit = _FINISHED.get(key)
    if hit is not None and hit[0] is None:  # settled: a finished run's files no longer change
        return dict(hit[1])
    try:
        signature = (os.stat(run_dir / MANIFEST).st_mtime_ns, _mtime_ns(run_dir / STATUS))
    except (FileNotFoundError, NotADirectoryError):
        signature = None
    if signature is not None and hit is not None and hit[0] == signature:
        return dict(hit[1])
    manifest = read_json(run_dir / MANIFEST)
    status = read_json(run_dir / STATUS) or {}
    row = {"run_id": run_dir.name, **status}
    if manifest:
        row.update(
            job_name=manifest.get("job_name"),
            backend=manifest.get("backend"),
            state=status_word(manifest),
            gpu_id=manifest.get("gpu_id"),
            exit_code=manifest.get("exit_code"),
            wall_time_sec=manifest.get("wall_time_sec"),
            estimated_cost_usd=manifest.get("estimated_cost_usd"),
            python_resolved=manifest.get("python_resolved"),
            started_at_utc=manifest.get("started_at_utc"),
            ended_at_utc=manifest.get("ended_at_utc"),
        )
        row.update({k: manifest[k] for k in ("reproduces", "reproduction_verdict") if manifest.get(k)})
        if signature is not None:
            settled = quiet_since(max(signature), SETTLED_NS)
            _FINISHED[key] = (None if settled else signature, dict(row))
    elif row.get("state") in LIVE_STATES and not owner_alive(status):
        row["state"] = "lost"
    if not manifest and (run_dir / RunDir.REPORT).exists():  # a reproduction still running
        row["reproduces"] = (read_json(run_dir / RunDir.REPORT) or {}).get("reproduces")
    return row


def summary_settled(run_dir: Path) -> bool:
    """Whether `run_summary`'s row for this run is final (a finished run whose files no longer change)."""
    hit = _FINISHED.get(str(run_dir))
    return hit is not None and hit[0] is None


def link_reproductions(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give each listed run that others reproduce a `reproduced_by` list (the reverse of `reproduces`)."""
    by_id = {r.get("run_id"): r for r in rows}
    for r in rows:
        target = by_id.get(r.get("reproduces"))
        if target is not None:
            target.setdefault("reproduced_by", []).append(r["run_id"])
    return rows


def _mtime_ns(path: Path) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except (FileNotFoundError, NotADirectoryError):
        return 0


def owner_alive(status: dict[str, Any]) -> bool:
    """Whether the process that runs this run is still alive (same host only)."""
    pid = status.get("owner_pid")
    if not isinstance(pid, int):
        return False
    if status.get("owner_host") not in (None, os.uname().nodename):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True




@record
class Tail:
    """The last lines of a log; a `\\r` progress line shows its last state."""

    lines: tuple[str, ...]
    size: int
    truncated: bool

    @property
    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)


def tail(path: Path, lines: int = 200, max_bytes: int = TAIL_MAX_BYTES) -> Tail:
    """The last `lines` lines of a text file, read by seeking from its end."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - max_bytes))
            data = fh.read(max_bytes)
    except FileNotFoundError:
        return Tail((), 0, False)
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")  # CRLF ends a line; a lone \r rewrites it
    found = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
    if found and found[-1] == "":
        found.pop()
    if size > max_bytes and found:
        found.pop(0)  # probably a partial line
    kept = found[-max(1, lines):]
    return Tail(tuple(kept), size, len(kept) < len(found) or size > max_bytes)


@record
class Status:
    """`status.json`: the live state of a run, one shape whoever writes it."""

    run_id: str
    job_name: str
    backend: str
    phase: str = "starting"
    state: str = "starting"
    started_at_utc: str | None = None
    updated_at_utc: str | None = None
    elapsed_sec: float | None = None
    owner_pid: int | None = None
    owner_host: str | None = None
    pod_id: str | None = None
    gpu_id: str | None = None
    price_per_hour_usd: float | None = None
    exit_code: int | None = None


@record
class RunDir:
    """One run directory: every file in it by name, and the only writer of them."""

    path: Path

    SPEC = "spec.yaml"            # the cell or file text as submitted (secrets masked)
    PLAN = "plan.txt"             # the plan as `--dry-run` prints it
    LAUNCH = "launch.json"        # what it takes to run it again (secret values left out)
    POD = "pod.json"              # the pod handle, written before any wait (for cleanup)
    STATUS = STATUS               # live state (`Status`)
    PHASES_LOG = "phases.log"     # setup and preflight output
    LOG = RUN_LOG                 # the job's log: streamed, then completed from the pod
    EVENTS = "events.jsonl"       # the journal
    RUNNER_LOG = "runner.log"     # a detached runner's own stdout/stderr
    STOP = STOP                   # present when someone (panel, CLI) asked the run to stop
    MANIFEST = MANIFEST           # runpod_deploy_pull_manifest.json, on every exit path
    RESERVE = ".manifest-space"   # room kept for the manifest: given back when the disk fills up
    METRICS = "metrics.jsonl"     # the telemetry sampler's rows (runpod-deploy's columns)
    USER_METRICS = "user_metrics.jsonl"  # the job's own metrics ($PODMAGIC_METRICS)
    PATCH = "local_git_diff.patch"  # the uncommitted state at start (run.recipe), for `reproduce`
    RECIPE = "reproduce.json"     # SHA, patch status, lockfile and staged-file hashes (run.recipe)
    REPORT = "reproduce_report.json"  # a reproduction's report (run.reproduce)
    TELEMETRY = ("nvidia_smi_start.txt", "nvidia_smi_end.txt", "pod_describe_start.json", "pod_describe_end.json",
                 "remote_env.json", "pip_freeze.txt", "dmesg_tail.txt", METRICS)  # runpod-deploy's names
    FILES = (SPEC, PLAN, LAUNCH, POD, STATUS, PHASES_LOG, LOG, EVENTS, RUNNER_LOG, STOP, MANIFEST, *TELEMETRY,
             USER_METRICS, RESERVE, PATCH, RECIPE, REPORT)
    RESERVE_BYTES = 256 * 1024

    @property
    def run_id(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def log_path(self) -> Path:
        return self.path / self.LOG

    @property
    def events_path(self) -> Path:
        return self.path / self.EVENTS

    # ---------------------------------------------------------------- reading

    def manifest(self) -> dict[str, Any] | None:
        return read_json(self.path / self.MANIFEST)

    def status(self) -> dict[str, Any] | None:
        return read_json(self.path / self.STATUS)

    def pod(self) -> dict[str, Any] | None:
        return read_json(self.path / self.POD)

    def launch(self) -> dict[str, Any] | None:
        return read_json(self.path / self.LAUNCH)

    def stop_requested(self) -> bool:
        return (self.path / self.STOP).exists()

    def log_tail(self, lines: int = 200) -> Tail:
        return tail(self.path / self.LOG, lines)

    # ---------------------------------------------------------------- writing

    def create(self) -> bool:
        """Make the directory; False when it exists already (the caller picks another id)."""
        try:
            self.path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            return False
        return True

    def write_inputs(self, spec_text: str, launch: dict[str, Any], plan_text: str) -> None:
        with writing(self.path / self.RESERVE), (self.path / self.RESERVE).open("wb") as fh:
            fh.write(b"\0" * self.RESERVE_BYTES)  # real blocks (not a sparse file): a full disk cannot take them
        write_text_atomic(self.path / self.SPEC, spec_text)
        write_json_atomic(self.path / self.LAUNCH, launch)
        write_text_atomic(self.path / self.PLAN, plan_text)

    def write_status(self, status: Status) -> None:
        write_json_atomic(self.path / self.STATUS, dict(vars(status)))  # flat: no deep copy needed

    def record_pod(self, record: dict[str, Any]) -> None:
        """Merge into `pod.json`: a later, shorter record never drops what an earlier one said, and one
        that adds nothing (a local pod's info after its handle) writes nothing."""
        known, news = self.pod() or {}, {k: v for k, v in record.items() if v is not None}
        if known and all(known.get(k) == v for k, v in news.items()):
            return
        write_json_atomic(self.path / self.POD, {**known, **news, "run_id": self.run_id, "recorded_at_utc": utc_iso()})

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Written even on a full disk when it can be: the space kept at the start is given back for it."""
        try:
            write_json_atomic(self.path / self.MANIFEST, manifest, pretty=True)
        except DiskFull:
            if not (self.path / self.RESERVE).exists():
                raise
            (self.path / self.RESERVE).unlink()
            write_json_atomic(self.path / self.MANIFEST, manifest, pretty=True)
        (self.path / self.RESERVE).unlink(missing_ok=True)

    def write_telemetry(self, name: str, text: str) -> None:
        """A telemetry snapshot (one of TELEMETRY), written whole."""
        write_text_atomic(self.path / name, text)

    def append_lines(self, name: str, lines: list[str]) -> None:
        """Append complete lines to a metrics file (METRICS or USER_METRICS)."""
        with _append(self.path / name, "a") as fh:
            fh.write("".join(line + "\n" for line in lines))

    def replace_log(self, text: str) -> None:
        write_text_atomic(self.path / self.LOG, text)

    def open_log(self) -> IO[str]:
        return _append(self.path / self.LOG, "a")

    def open_phases_log(self) -> IO[str]:
        return _append(self.path / self.PHASES_LOG, "a")

    def open_runner_log(self) -> IO[bytes]:
        return _append(self.path / self.RUNNER_LOG, "ab")

    def recipe(self) -> dict[str, Any] | None:
        return read_json(self.path / self.RECIPE)

    def report(self) -> dict[str, Any] | None:
        return read_json(self.path / self.REPORT)

    def write_recipe(self, patch: bytes | None, recipe: dict[str, Any]) -> None:
        if patch:
            write_bytes_atomic(self.path / self.PATCH, patch)
        write_json_atomic(self.path / self.RECIPE, recipe)

    def write_report(self, report: dict[str, Any]) -> None:
        write_json_atomic(self.path / self.REPORT, report)

    def request_stop(self, reason: str = "stop requested") -> None:
        write_text_atomic(self.path / self.STOP, reason + "\n")
