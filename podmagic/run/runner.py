"""Executes a plan on a backend and owns every exit path.

Success, failure, timeout, a stop request and a kernel interrupt all end in
one `_teardown`: kill the job if it still runs, pull the log (always, once
the job started) and the artifacts, apply the lifecycle action, write the
manifest. A second Ctrl-C during teardown is held off until it is done. An
interrupt is a failure with `interrupted: true`, never a success, and is
re-raised after teardown so "Run all" stops.

The runner emits events and knows no widgets and no argparse.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

from podmagic.backends.base import POD_HANDLE, Pod
from podmagic.errors import StepFailed, Stopped
from podmagic.plan import staging
from podmagic.plan.build import Command, Plan, calls_bare_python
from podmagic.records import replace
from podmagic.run import manifest as manifest_mod
from podmagic.run import probecache, provenance, store, telemetry
from podmagic.run.events import Event, Listener, utc_iso
from podmagic.run.follow import LogCopy
from podmagic.run.manifest import Outcome
from podmagic.run.redact import Redactor

POLL_MIN, POLL_MAX = 0.05, 0.25
"""How long the follower waits on the pod between log reads: from POLL_MIN after output, growing to POLL_MAX."""
CHECK_EVERY_SEC = 0.1
"""While output keeps arriving, stop/deadline/heartbeat are checked at least this often."""
HEARTBEAT_EVERY_SEC = 5.0
STATUS_EVERY_SEC = 1.0
HEARTBEAT_TIMEOUT_SEC = 600
"""The pod-side watchdog ends a job whose client has not touched its heartbeat for this long
(override with PODMAGIC_HEARTBEAT_TIMEOUT_SEC; 0 turns the heartbeat check off)."""
STEP_MARKER = re.compile(r"__RUNPOD_STEP_(START|DONE)__([\w.\-]+)__")


def heartbeat_timeout() -> float | None:
    value = float(os.environ.get("PODMAGIC_HEARTBEAT_TIMEOUT_SEC", HEARTBEAT_TIMEOUT_SEC))
    return value or None




class Runner:
    def __init__(self, plan: Plan, backend, *, listeners: Iterable[Listener] = (),
                 redactor: Redactor | None = None, cancel: threading.Event | None = None,
                 heartbeat_timeout_sec: float | None = None):
        self.plan, self.backend = plan, backend
        self.rundir = store.RunDir(plan.run_dir)
        self.listeners = list(listeners)
        self.redactor = redactor or Redactor()
        self.cancel = cancel or threading.Event()
        self.heartbeat_timeout_sec = heartbeat_timeout_sec or heartbeat_timeout()
        self._steps_seen: set[tuple[str, str]] = set()
        self._step_carry = ""
        self.outcome = Outcome(started_at=time.time())
        self.phase = "starting"
        self.pod: Pod | None = None
        self.run_started = False
        self.job_done = False
        self._status_at = 0.0
        self._log: LogCopy | None = None
        self._deadline = float("inf")
        self._checked_at = self._beat_at = 0.0
        self.manifest: dict | None = None
        self._unrecorded: store.DiskFull | None = None
        """The manifest could not be written (a full disk): raised after teardown, saying so."""
        self._held: list[int] = []
        """Interrupts that arrived during teardown, delivered once it is done."""
        self.telemetry = telemetry.Session(plan, self.emit, self.redactor.mask)

    # ------------------------------------------------------------ events

    def emit(self, kind: str, **data) -> None:
        event = Event(kind, self.redactor.mask_data(data))
        if kind == POD_HANDLE:  # a backend's pod handle: on disk before any wait, for cleanup
            self.rundir.record_pod(event.data)
        for listener in self.listeners:
            try:
                listener(event)
            except KeyboardInterrupt:
                if self.phase != "teardown":
                    raise
                self._held.append(signal.SIGINT)  # like a Ctrl-C in teardown: held until it is done
            except Exception:  # a broken view must not break the run
                pass

    def _enter(self, phase: str, busy: bool = True) -> None:
        """A phase begins; `busy=False` (nothing to do in it) skips the status write observers would not see."""
        self.phase = phase
        self._check_stop()
        self.emit("phase_started", phase=phase)
        if busy:
            self._write_status(force=True)

    def _write_status(self, force: bool = False, state: str | None = None) -> None:
        now = time.time()
        if not force and now - self._status_at < STATUS_EVERY_SEC:
            return
        self._status_at = now
        pod = self.outcome.pod
        self.rundir.write_status(store.Status(
            run_id=self.plan.run_id, job_name=self.plan.job_name, backend=self.plan.backend,
            phase=self.phase, state=state or ("running" if self.phase != "starting" else "starting"),
            started_at_utc=utc_iso(self.outcome.started_at),
            updated_at_utc=utc_iso(now), elapsed_sec=round(now - self.outcome.started_at, 1),
            owner_pid=os.getpid(), owner_host=os.uname().nodename,
            pod_id=pod.pod_id if pod else None, gpu_id=pod.gpu_id if pod else None,
            price_per_hour_usd=pod.price_per_hour_usd if pod else None,
            exit_code=self.outcome.exit_code,
        ))

    def _check_stop(self) -> None:
        if self.cancel.is_set() or self.rundir.stop_requested():
            raise Stopped("stop requested")

    # ------------------------------------------------------------ main path

    def execute(self) -> dict:
        """Run the plan; returns the manifest. Re-raises KeyboardInterrupt after teardown."""
        interrupt: BaseException | None = None
        try:
            with _signals_interrupt():
                self._run_phases()
        except KeyboardInterrupt as exc:
            interrupt = exc
            why = f"interrupted by {exc} (a closing terminal or a kernel shutdown)" if str(exc) else \
                "interrupted by the user (kernel interrupt / Ctrl-C)"
            self._fail(why, interrupted=True)
        except Stopped:
            self._fail("stopped on request", interrupted=True)
        except (StepFailed, store.DiskFull) as exc:
            self._fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - every failure ends in teardown and the manifest
            self._fail(f"{type(exc).__name__}: {exc}")
        finally:
            with _shielded_from_sigint() as held:
                self._held = held
                self._teardown()
        if interrupt is None and held:
            interrupt = KeyboardInterrupt()
        if interrupt is not None:
            raise interrupt
        if self._unrecorded is not None:
            raise self._unrecorded
        return self.manifest

    def _fail(self, message: str, interrupted: bool = False) -> None:
        self.outcome.failed = True
        self.outcome.interrupted = self.outcome.interrupted or interrupted
        self.outcome.error = self.outcome.error or self.redactor.mask(message)
        self.emit("error", message=message, phase=self.phase)

    def _run_phases(self) -> None:
        plan = self.plan
        self._check_local()
        secret_files = self._read_secrets()
        self.outcome.deploy_metadata = provenance.capture(plan.project_root, git=plan.telemetry.capture_local_git,
                                                          lock=plan.telemetry.capture_payload_lockfile)
        self._enter("provision")
        self.pod = self.backend.provision(plan.request, self.emit)
        self.outcome.pod = self.pod.info
        self.rundir.record_pod(vars(self.pod.info))
        self.emit("pod_provisioned", pod_id=self.pod.info.pod_id, backend=plan.backend,
                  gpu_id=self.pod.info.gpu_id, datacenter_id=self.pod.info.datacenter_id,
                  price_per_hour_usd=self.pod.info.price_per_hour_usd)
        self._enter("setup", busy=bool(plan.setup))
        for command in plan.setup:
            self._command(command)
        self._enter("secrets", busy=bool(secret_files))
        for path, data, mode in secret_files:
            self.pod.write_file(path, data, mode)
        self._enter("staging", busy=bool(plan.staging))
        for push in plan.staging:
            self._push(push)
        self._enter("preflight", busy=bool(plan.preflight))
        for command in plan.preflight:
            self._command(command)
        self._probe()
        pod_telemetry = self.telemetry.pod_side(self.pod)
        self._warn_bare_python()
        self._enter("run")
        self._run_job(pod_telemetry)

    def _check_local(self) -> None:
        """Local inputs that must exist, checked before any pod exists (a typo costs nothing)."""
        missing = [str(p) for p in self.plan.required_paths if not p.exists()]
        if missing:
            raise StepFailed(f"local.required_paths: missing {', '.join(missing)}")
        missing = [f"{p.label}: {p.source}" for p in self.plan.staging if not Path(p.source).exists()]
        if missing:
            raise StepFailed(f"staging source(s) do not exist on this machine: {'; '.join(missing)}")

    def _read_secrets(self) -> list[tuple[str, bytes, int]]:
        """Secret files to write, read before any pod exists (a missing var costs nothing)."""
        out = []
        for s in self.plan.secrets:
            if s.file:
                data = Path(s.file).expanduser().read_bytes()
                self.redactor.add(*data.decode("utf-8", "replace").splitlines())
            else:
                missing = [v for v in s.env if v not in os.environ]
                if missing:
                    raise StepFailed(f"secret {s.name!r}: environment variable(s) {', '.join(missing)} "
                                     "not set on this machine; export them before running")
                values = {v: os.environ[v] for v in s.env}
                # the file holds the shell-quoted form: `cat` of it must not show a secret piecewise
                self.redactor.add(*values.values(), *map(shlex.quote, values.values()))
                data = "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items()).encode()
            out.append((s.destination, data, s.mode))
        return out

    def _command(self, command: Command) -> None:
        self.emit("step_started", phase=command.phase, label=command.label, command=command.command)
        masker = self.redactor.stream()
        log = self.rundir.open_phases_log()
        def on_output(text: str) -> None:
            masked = masker.feed(text)
            log.write(masked)
            self.emit("output", text=masked, phase=command.phase)
        try:
            log.write(f"$ [{command.label}] {self.redactor.mask(command.command)}\n")
            try:
                result = self.pod.run(command.command, timeout=command.timeout_sec, on_output=on_output,
                                      workdir=command.workdir)
            except TimeoutError:
                raise StepFailed(f"{command.label} timed out after {command.timeout_sec}s: {command.command}")
            tail = masker.feed("", final=True)
            if tail:
                on_output(tail)
        finally:
            log.close()
        self.emit("step_finished", phase=command.phase, label=command.label, exit_code=result.exit_code)
        if result.exit_code != 0:
            raise StepFailed(self._explain(command, result.exit_code, self.redactor.mask(result.output)))

    def _explain(self, command: Command, code: int, output: str) -> str:
        tail = "\n".join(output.strip().splitlines()[-8:])
        if command.label != "python pin":
            return f"{command.label} failed with exit code {code}: {command.command}\n{tail}"
        version = self.plan.python_version
        if code == 127 or "uv: command not found" in output or "uv: not found" in output:
            why = "uv is not installed on the pod (or not on PATH): install it in `setup:`, e.g. " \
                  "`curl -LsSf https://astral.sh/uv/install.sh | sh` and add ~/.local/bin to PATH"
        elif "No download found" in output or "No interpreter found" in output or "not found for request" in output:
            why = f"no Python {version} is available to uv (no such version, or missing from the download " \
                  "list / UV_PYTHON_DOWNLOADS_JSON_URL mirror): pick an existing version"
        elif re.search(r"(?i)(network|dns|connect|timed out|failed to (download|fetch)|error sending request)", output):
            why = "uv could not download the interpreter (network): check the pod's network and retry"
        else:
            why = "the interpreter pin failed"
        return f"python pin {version} failed before any user command ran: {why}\n$ {command.command}\n{tail}"

    def _push(self, push) -> None:
        started = time.monotonic()
        selection = staging.select(push.source, push.destination, push.excludes, use_git=push.use_git)
        if selection.single_file:
            path = selection.base / selection.files[0]
            self.pod.write_file(selection.destination, path.read_bytes(), path.stat().st_mode & 0o777)
            moved, files = path.stat().st_size, 1
        else:
            result = self.pod.push(selection.base, selection.destination, files=selection.files,
                                   excludes=push.excludes, delete=push.delete)
            moved, files = result.bytes_transferred, result.files
        self.emit("staging_pushed", label=push.label, destination=selection.destination, files=files,
                  bytes_transferred=moved, duration_sec=round(time.monotonic() - started, 3))

    def _probe(self) -> None:
        key = self.pod.probe_key()
        if key is None:
            answer = self._probe_pod()
        else:
            plan = self.plan
            key = probecache.key_of([key, [c.command for c in (*plan.setup, *plan.preflight)], plan.python_version,
                                     plan.probe.command, plan.probe.workdir,
                                     probecache.pin_files([Path(p.source) for p in plan.staging])])
            answer = probecache.cached(plan.project_root, key, self.pod.stable_path, self._probe_pod)
        if answer:
            self.outcome.python_resolved, self.outcome.python_resolved_path = answer
            self.emit("python_resolved", requested=self.plan.python_version, resolved=answer[0], path=answer[1])

    def _probe_pod(self) -> tuple[str, str] | None:
        try:
            result = self.pod.run(self.plan.probe.command, timeout=self.plan.probe.timeout_sec,
                                  workdir=self.plan.probe.workdir)
        except Exception:  # noqa: BLE001 - the probe is informative only
            return None
        lines = result.output.strip().splitlines()
        default = next((ln.split(" ", 2)[1:] for ln in lines if ln.startswith("python3 ")), None)
        if default and len(default) == 2:  # the pod's default python3 (the probe's first line)
            self.outcome.remote_python_version, self.outcome.remote_python_path = default
        parts = lines[-1:] if result.exit_code == 0 else []
        if parts and not parts[0].startswith("python3 ") and len(parts[0].split(" ", 1)) == 2:
            version, path = parts[0].split(" ", 1)
            return version, path
        return None

    def _warn_bare_python(self) -> None:
        o = self.outcome
        default = o.remote_python_version or self.telemetry.result.fields.get("remote_python_version")
        where = o.remote_python_path or self.telemetry.result.fields.get("remote_python_path")
        if (self.plan.python_version and default and o.python_resolved and default != o.python_resolved
                and calls_bare_python(self.plan.launch.body)):
            self.emit("warning", message=f"the body calls bare python/python3, which is the pod's default "
                      f"{default} ({where}), not the pinned {o.python_resolved}: use `uv run python ...` "
                      "to get the pin")

    # ------------------------------------------------------------ the job

    def _run_job(self, pod_telemetry) -> None:
        launch = replace(self.plan.launch, heartbeat_timeout_sec=self.heartbeat_timeout_sec, telemetry=pod_telemetry)
        self._log = LogCopy(self.rundir.open_log, self.redactor.stream(),
                            (self.plan.success_marker or "", *self.plan.failure_markers))
        self._log.open()
        self.run_started = True  # before start(): an interrupt inside it may come after the job launched
        self.telemetry.launched(self.pod)
        self.pod.start(launch)
        self.emit("run_started", log_path=launch.log_path)
        code = self._follow(launch)
        self.job_done = True
        self.outcome.exit_code = code
        ended_by = self.pod.ended_by(launch)
        if ended_by:
            self.outcome.ended_by = ended_by
        if code != 0:
            raise StepFailed(f"the run exited with code {code}" + (f" ({ended_by})" if ended_by else ""))
        self.outcome.failed = False

    def _follow(self, launch) -> int:
        """Stream the log by byte offset until the job's exit code is known.

        Between reads the pod is waited on (`wait_exit`, at most `POLL_MAX`), so the end is noticed as
        soon as the pod can tell. Stop, deadline and heartbeat are checked between chunks too, however
        fast the job prints.
        """
        log = self._log
        self._deadline = time.monotonic() + self.plan.timeout_sec
        poll, code = POLL_MIN, self.pod.exit_code(launch)
        while True:  # the exit code is read before each drain: once it is known, the drain gets the whole log
            if self._drain(launch.log_path, log, checked=launch):
                poll = POLL_MIN
            if code is not None:
                self._output(log.finish())
                return code
            self._checks(launch)
            code = self.pod.wait_exit(launch, poll)
            poll = min(poll * 1.5, POLL_MAX)

    def _drain(self, path: str, log, checked=None) -> bool:
        """Read the pod log from the copy's offset to its current end; whether anything came."""
        got = False
        while data := self.pod.read_from(path, log.offset):
            got = True
            self._output(log.feed(data))
            if checked is not None:
                self._checks(checked, every=CHECK_EVERY_SEC)
        return got

    def _checks(self, launch, every: float = 0.0) -> None:
        now = time.monotonic()
        if now - self._checked_at < every:
            return
        self._checked_at = now
        self._check_stop()
        if now > self._deadline:
            self.outcome.timed_out = True
            raise StepFailed(f"the run exceeded its time budget ({self.plan.timeout_sec / 60:.0f} min)")
        if now - self._beat_at > HEARTBEAT_EVERY_SEC:
            self.pod.heartbeat(launch)
            self._beat_at = time.monotonic()
        self.telemetry.poll(self.pod)
        self.emit("tick", elapsed=time.time() - self.outcome.started_at)
        self._write_status()

    def _output(self, text: str) -> None:
        if text:
            self.emit("output", text=text, phase="run")
            self._step_markers(text)

    def _step_markers(self, text: str) -> None:
        """runpod-deploy's `__RUNPOD_STEP_START/DONE__name__` lines → events, once each."""
        carry, self._step_carry = self._step_carry, (self._step_carry + text)[-200:] if len(text) < 200 else text[-200:]
        if "__RUNPOD_STEP_" not in text and "__RUNPOD_STEP_" not in carry + text[:200]:
            return  # plain substring searches, no copy of a large chunk: far cheaper than the regex
        scan = carry + text
        for kind, name in STEP_MARKER.findall(scan):
            if (kind, name) not in self._steps_seen:
                self._steps_seen.add((kind, name))
                self.emit("remote_step_started" if kind == "START" else "remote_step_completed", name=name)

    # ------------------------------------------------------------ teardown

    def _teardown(self) -> None:
        plan, pod = self.plan, self.pod
        self.phase = "teardown"
        if pod is not None and self.run_started and not self.job_done:
            self._best_effort("kill", lambda: pod.kill(plan.launch))
        if pod is not None and self.run_started:
            self._pull_all()
            self._check_markers()
        if pod is not None:
            self._best_effort("telemetry", lambda: self.telemetry.end(pod))
            self.outcome.telemetry_files, self.outcome.telemetry = (self.telemetry.result.files,
                                                                    self.telemetry.manifest_fields())
        if self._held:  # a Ctrl-C before the lifecycle is chosen: an interrupted run, never a success
            self._fail("interrupted by the user (kernel interrupt / Ctrl-C) during teardown", interrupted=True)
        if pod is not None:
            action = plan.lifecycle.on_failure if self.outcome.failed else plan.lifecycle.on_success
            final = self._best_effort("lifecycle", lambda: pod.release(action))
            self.outcome.pod_final_state = final
            self.emit("lifecycle_applied", action=action, pod_final_state=final)
        self.outcome.ended_at = time.time()
        self.manifest = self.redactor.mask_data(manifest_mod.build(plan, self.outcome))
        try:
            self.rundir.write_manifest(self.manifest)
        except store.DiskFull as exc:
            pod_state = f"; the pod was released ({self.outcome.pod_final_state})" if pod is not None else ""
            self._unrecorded = store.DiskFull(exc.path, f" (the run: {self.outcome.error or 'succeeded'}){pod_state}"
                                                        "; the manifest could not be written")
            self.emit("error", message=str(self._unrecorded), phase=self.phase)
        self.emit("run_finished", failed=self.outcome.failed, exit_code=self.outcome.exit_code,
                  interrupted=self.outcome.interrupted, error=self.outcome.error)
        try:
            self._write_status(force=True, state=store.status_word(self.manifest))
        except store.DiskFull:
            pass  # the manifest (or the error above) is the record that counts

    def _best_effort(self, what: str, action: Callable[[], object]):
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - teardown goes on whatever fails
            self.emit("warning", message=f"{what} failed: {type(exc).__name__}: {exc}")
            self._full_disk(exc)
            return None

    def _full_disk(self, exc: BaseException, path: Path | None = None) -> None:
        """A write that found the disk full fails the run, naming the file (records are not optional)."""
        if not isinstance(exc, store.DiskFull) and isinstance(exc, OSError) and exc.errno in store.FULL_ERRNOS:
            exc = store.DiskFull(exc.filename or path or self.plan.run_dir)
        if isinstance(exc, store.DiskFull):
            self._fail(str(exc))

    def _pull_all(self) -> None:
        on_success_path = not self.outcome.failed
        for pull in self.plan.pulls:
            started = time.monotonic()
            record = {"label": pull.label, "remote_path": pull.remote_path, "local_path": str(pull.local_path),
                      "required": pull.required, "excludes": list(pull.excludes), "delete": pull.delete}
            self.emit("artifact_pull_started", label=pull.label)
            try:
                if pull.label == "log":
                    moved = self._pull_log(pull)
                else:
                    if pull.into_dir:
                        pull.local_path.mkdir(parents=True, exist_ok=True)
                    moved = self.pod.pull(pull.remote_path, pull.local_path, excludes=pull.excludes,
                                          delete=pull.delete).bytes_transferred
            except Exception as exc:  # noqa: BLE001
                self._full_disk(exc, pull.local_path)
                duration = round(time.monotonic() - started, 3)
                kind = "remote_log_pull_failed" if pull.label == "log" else "artifact_pull_failed"
                self.emit(kind, label=pull.label, duration_sec=duration, error=str(exc)[:500])
                if pull.label != "log":
                    self.outcome.artifacts.append({**record, "status": "failed", "bytes_transferred": 0,
                                                   "duration_sec": duration, "error": str(exc)[:500]})
                if pull.required and on_success_path:
                    self._fail(f"required artifact {pull.label!r} could not be pulled: {exc}")
                continue
            duration = round(time.monotonic() - started, 3)
            self.emit("artifact_pull_completed", label=pull.label, bytes_transferred=moved, duration_sec=duration)
            if pull.label != "log":
                self.outcome.artifacts.append({**record, "status": "success", "bytes_transferred": moved,
                                               "duration_sec": duration})

    def _pull_log(self, pull) -> int:
        """The rest of the pod's log, from where streaming stopped, through the same masker (bytes moved)."""
        log = self._log
        before = log.offset
        try:
            self._drain(pull.remote_path, log)
        finally:
            self._output(log.finish())
        return log.offset - before

    def _check_markers(self) -> None:
        """Markers were matched while the log streamed (`LogCopy.found`)."""
        if self.outcome.failed:
            return
        found = self._log.found if self._log is not None else set()
        if self.plan.success_marker and self.plan.success_marker not in found:
            self._fail(f"success marker {self.plan.success_marker!r} not found in the log")
        hit = next((m for m in self.plan.failure_markers if m in found), None)
        if hit:
            self._fail(f"failure marker {hit!r} found in the log")


@contextmanager
def _shielded_from_sigint():
    """Hold a Ctrl-C (or SIGTERM/SIGHUP) until teardown is done (main thread only); yields what was held."""
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    previous = {s: signal.signal(s, lambda signum, _frame: pending.append(signum)) for s in HELD_SIGNALS}
    try:
        yield pending
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _signals_interrupt():
    """SIGTERM and SIGHUP (a closing terminal, a kernel shutdown) take the Ctrl-C path: teardown,
    manifest, `interrupted: true` (main thread only; elsewhere the caller's handlers stay)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
