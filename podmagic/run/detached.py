"""Runs that outlive the kernel: the runner in a detached process of its own.

`spawn` starts `python -m podmagic.run.detached RUN_DIR` in a new session; the
child re-prepares the run from the run directory's `launch.json` (same run
id), executes it and exits. Secret variable values travel in the child's
environment, never on disk. Front ends then follow the run directory
(`follow.Follower`); a stop is a stop file, which the runner honours.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def main(argv: list[str]) -> int:
    run_dir = Path(argv[0]).resolve()
    secrets = json.loads(os.environ.pop(SECRETS_ENV, "{}") or "{}")
    prepared = api.reprepare(run_dir, secrets)
    try:
        manifest = api.execute(prepared)
    except KeyboardInterrupt:
        return 130
    return 1 if manifest.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
