"""podmagic: a `%%pod` cell runs a job on a RunPod pod, an SSH host or a local sandbox.

`%load_ext podmagic` registers the magics. Importing the package stays light:
IPython front ends, ipywidgets, paramiko and runpod are imported only where
they are used.
"""

from __future__ import annotations

__version__ = "0.1.0"


def _project(project_root=None):
    """The given folder, else the git repository around the working folder (as `%pod runs` finds it)."""
    from pathlib import Path

    from podmagic.run.provenance import git_toplevel

    if project_root is not None:
        return Path(project_root).expanduser().resolve()
    return (_session_root() or git_toplevel(Path.cwd()) or Path.cwd()).resolve()


def _session_root():
    """The project of this kernel's last `%%pod` run, when the magics are loaded (what `%pod runs` uses)."""
    import sys

    if "podmagic.ui.magics" not in sys.modules:  # never import IPython from here
        return None
    from IPython import get_ipython

    shell = get_ipython()
    magics = shell.magics_manager.registry.get("PodMagic") if shell is not None else None
    return getattr(magics, "last_project_root", None)


def runs(project_root=None, **filters):
    """Past runs as a pandas DataFrame (a list of dicts without pandas); filters: name, failed, since, limit.

    Without `project_root`, the project is the git repository around the working folder, so a
    notebook in a subfolder sees the same runs as `%pod runs` and `podmagic runs`.
    """
    from podmagic.run import history

    return _maybe_frame(history.list_runs(_project(project_root), **filters))


def compare_runs(*refs, project_root=None):
    """Runs (ids, prefixes or a sweep id) side by side: one row per field, `differs` flagged."""
    from podmagic.run import compare as compare_mod
    from podmagic.run import history

    manifests = history.manifests(_project(project_root), list(refs))
    rows = [{"field": r["field"], **{m["run_id"]: v for m, v in zip(manifests, r["values"])},
             "differs": r["differs"]} for r in compare_mod.side_by_side(manifests)]
    return _maybe_frame(rows)


def capture_env(project_root=None):
    """The manifest's deploy_metadata (git SHA, dirty, branch, lockfile hash) plus the project's pin."""
    from podmagic.run import provenance

    return provenance.capture_env(_project(project_root))


def metrics(run, project_root=".", source="user"):
    """A run's metrics as a pandas DataFrame (a list of dicts without pandas).

    `run` is a run id, unique prefix, run directory, or a run handle (what `%%pod -o NAME` gives:
    anything with a `run_dir`). `source="user"` (default) gives what the job
    appended to `$PODMAGIC_METRICS` (the run directory's `user_metrics.jsonl`); `source="telemetry"`
    gives the sampler's `metrics.jsonl` (runpod-deploy's columns: GPU, CPU, memory, disk).
    """
    from pathlib import Path

    from podmagic.errors import PodmagicError
    from podmagic.run import store, telemetry

    if source not in ("user", "telemetry"):
        raise PodmagicError(f"source must be 'user' or 'telemetry', got {source!r}")
    given = getattr(run, "run_dir", None)
    run_dir = Path(given) if given is not None else store.find_run(Path(project_root).resolve(), str(run))
    rows = telemetry.user_metrics(run_dir) if source == "user" else telemetry.gpu_metrics(run_dir)
    return _maybe_frame(rows)


def _maybe_frame(rows):
    from podmagic.run.compare import frame

    try:
        return frame(rows)
    except ImportError:
        return rows


def load_ipython_extension(ipython):  # pragma: no cover - exercised through notebooks
    from podmagic.ui.magics import load_ipython_extension as load

    load(ipython)
