"""Runs that outlive the kernel: the runner in a detached process of its own.

`spawn` starts `python -m podmagic.run.detached RUN_DIR` in a new session; the
child re-prepares the run from the run directory's `launch.json` (same run
id), executes it and exits. `spawn_sweep` starts one such process for a whole
sweep (`--sweep ROOT SWEEP_ID`): it imports podmagic once and runs every
shard in a thread of its own (`sweep.host`), so a shard costs its job, not an
interpreter. Secret variable values travel in the child's
environment, never on disk. Front ends then follow the run directory
(`follow.Follower`); a stop is a stop file, which the runner honours.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from podmagic.run import api, store

SECRETS_ENV = "PODMAGIC_SECRET_VARS"


def spawn(prepared: api.Prepared, secret_values: dict[str, str] | None = None) -> int:
    """Start the runner for a started run in its own session; returns its pid."""
    run_dir = prepared.plan.run_dir
    env = {**os.environ, SECRETS_ENV: json.dumps(secret_values or {})}
    rundir = store.RunDir(run_dir)
    with rundir.open_runner_log() as log:
        proc = subprocess.Popen([sys.executable, "-m", "podmagic.run.detached", str(run_dir)], env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                cwd=prepared.inputs["cwd"])
    # the child's pid is the owner from now on: a listing must not call the run lost before it starts
    rundir.write_status(store.Status(run_id=run_dir.name, job_name=prepared.plan.job_name,
                                     backend=prepared.plan.backend, owner_pid=proc.pid,
                                     owner_host=os.uname().nodename))
    return proc.pid


def spawn_sweep(root: Path, sweep_id: str, secret_values: dict[str, str] | None = None,
                cwd: str | None = None, prepared: list[api.Prepared] | None = None):
    """Start the host of a recorded sweep in a session of its own; returns a handle with `poll`/`wait`.

    Where the system can fork, the host is a fork of this interpreter: podmagic already imported (what
    a shard runs is imported here first, once per process, not once per sweep) and the `prepared`
    shards already in its memory, so it starts them at once. Elsewhere a new interpreter
    (`--sweep ROOT SWEEP_ID`) re-prepares them from the sweep's host file.
    """
    from podmagic.run.sweep import SWEEPS_DIR

    log_path = store.runs_root(root) / SWEEPS_DIR / f"{sweep_id}.host.log"
    if FORK:
        return _fork_host(root, sweep_id, dict(secret_values or {}), cwd, log_path, prepared)
    env = {**os.environ, SECRETS_ENV: json.dumps(secret_values or {})}
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "podmagic.run.detached", "--sweep", str(root), sweep_id],
                                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                cwd=cwd)


FORK = hasattr(os, "fork") and sys.platform.startswith("linux") and not os.environ.get("PODMAGIC_SWEEP_SPAWN")
"""Fork the sweep host (PODMAGIC_SWEEP_SPAWN=1 starts a new interpreter instead)."""


class _Forked:
    """A forked child, with the two methods of `Popen` the sweep uses."""

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = 0  # reaped elsewhere
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"sweep host {self.pid}", timeout)
            time.sleep(0.02)
        return self.returncode


def _fork_host(root: Path, sweep_id: str, secrets: dict[str, str], cwd: str | None, log_path: Path,
               prepared: list[api.Prepared] | None) -> _Forked:
    from podmagic.backends import backend_class
    from podmagic.run import recipe, runner, sweep  # noqa: F401 - imported for the child: see spawn_sweep

    for name in {p.plan.backend for p in prepared or ()}:
        backend_class(name)
    pid = os.fork()
    if pid:
        return _Forked(pid)
    code = 1
    try:  # the child: detach from the caller's session and output, run the sweep, never return
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        if cwd:
            os.chdir(cwd)
        code = sweep.host(root, sweep_id, secrets, prepared)
    except BaseException:  # noqa: BLE001 - the host's log is where its failure is told
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def main(argv: list[str]) -> int:
    secrets = json.loads(os.environ.pop(SECRETS_ENV, "{}") or "{}")
    if argv[:1] == ["--sweep"]:
        from podmagic.run import sweep

        return sweep.host(Path(argv[1]), argv[2], secrets)
    run_dir = Path(argv[0]).resolve()
    prepared = api.reprepare(run_dir, secrets)
    try:
        manifest = api.execute(prepared)
    except KeyboardInterrupt:
        return 130
    return 1 if manifest.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
