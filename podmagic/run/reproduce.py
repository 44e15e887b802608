"""Reproduce a run from its run directory alone, and say whether it reproduced.

`reproduce(ref)`: check out the recorded SHA into a temporary git worktree (the user's working
tree is never touched; the worktree is removed at the end), apply the recorded
`local_git_diff.patch`, check that the re-created tree is the recorded one (lockfile hash, and the
sha256 of every staged file), then run the recorded spec with the recorded variables and pin on
the recorded backend (or `backend`/`host`). Every refusal (`Refused`, with the precise reason)
happens before any run directory or pod exists. The reproduction's run directory sits with the
others (the worktree's `artifacts/runpod` is a link to the project's), and records
`reproduces: RUN` and the verdict in its manifest and `reproduce_report.json`.

`compare(original, reproduction)` is pure: environment facts side by side and the job's metrics
(last values and curves, within `rtol`/`atol`), with every difference named.

May import `run`, `plan`, `spec`, `backends` (through `run.api`); never `ui`.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from podmagic.errors import PodmagicError
from podmagic.plan.naming import RUNS_SUBDIR
from podmagic.records import record
from podmagic.run import api, provenance, recipe, store, telemetry
from podmagic.run.events import Listener
from podmagic.run.redact import MASK

ENVIRONMENT = (
    ("python_version", "interpreter requested"),
    ("python_resolved", "interpreter resolved"),
    ("uv_version", "uv version"),
    ("gpu_name", "GPU"),
    ("gpu_count", "GPU count"),
    ("gpu_driver_version", "driver"),
    ("gpu_cuda_version", "CUDA"),
    ("image", "image"),
    ("deploy_metadata.payload_lockfile_sha256", "lockfile sha256"),
    ("patch_sha256", "diff sha256"),
    ("deploy_metadata.local_git_sha", "git SHA"),
    ("spec_sha256", "spec sha256"),
)
"""(manifest key, label): must be equal for a reproduction."""
CONTEXT = (("backend", "backend"), ("gpu_id", "GPU type (backend)"), ("run_id", "run"), ("exit_code", "exit code"))
"""Shown beside them; the exit code counts (a reproduction must end as the original did)."""


class Refused(PodmagicError):
    """The run cannot be re-created as recorded; nothing was started."""

    exit_code = 2


@record
class Tolerance:
    rtol: float = 0.0
    atol: float = 0.0

    def close(self, a: float, b: float) -> bool:
        return abs(a - b) <= self.atol + self.rtol * abs(a)


# ---------------------------------------------------------------- comparing (pure)


def _lookup(manifest: Mapping[str, Any], dotted: str) -> Any:
    value: Any = manifest
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def environment(original: Mapping[str, Any], again: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, label in ENVIRONMENT:
        a, b = _lookup(original, key), _lookup(again, key)
        rows.append({"key": key, "label": label, "original": a, "reproduction": b, "match": a == b})
    for key, label in CONTEXT:
        a, b = original.get(key), again.get(key)
        counts = key == "exit_code"
        rows.append({"key": key, "label": label, "original": a, "reproduction": b,
                     "match": a == b if counts else None})
    return rows


def _fmt(value: Any) -> str:
    return "—" if value is None else repr(value) if isinstance(value, str) and not value else str(value)


def _status(a: float, b: float, tol: Tolerance) -> str:
    if a == b or (math.isnan(a) and math.isnan(b)):
        return "exact"
    return "within" if tol.close(a, b) else "differs"


WORST = {"exact": 0, "within": 1, "differs": 2, "missing": 2}


def metric_rows(original: Mapping[str, list], again: Mapping[str, list], tol: Tolerance) -> list[dict[str, Any]]:
    """Per metric: last values and the whole curve compared (series are [(x, y), ...])."""
    rows = []
    for name in sorted(set(original) | set(again)):
        a, b = original.get(name) or [], again.get(name) or []
        if not a or not b:
            rows.append({"name": name, "status": "missing", "original_last": a[-1][1] if a else None,
                         "reproduction_last": b[-1][1] if b else None, "points": [len(a), len(b)],
                         "why": f"only in the {'original' if a else 'reproduction'}"})
            continue
        last = _status(a[-1][1], b[-1][1], tol)
        curve, max_diff, why = "exact", 0.0, None
        if len(a) != len(b) or any(x1 != x2 for (x1, _), (x2, _) in zip(a, b)):
            curve, why = "differs", f"the curves have {len(a)} and {len(b)} points" if len(a) != len(b) else \
                "the curves are sampled at different steps"
        else:
            for (_, y1), (_, y2) in zip(a, b):
                max_diff = max(max_diff, abs(y1 - y2))
                curve = max(curve, _status(y1, y2, tol), key=WORST.get)
        status = max(last, curve, key=WORST.get)
        if status == "differs" and why is None:
            why = (f"last {a[-1][1]} vs {b[-1][1]}" if last == "differs" else
                   f"the curve differs by up to {max_diff:g}") + f" (rtol {tol.rtol:g}, atol {tol.atol:g})"
        rows.append({"name": name, "status": status, "last": last, "curve": curve,
                     "original_last": a[-1][1], "reproduction_last": b[-1][1], "points": [len(a), len(b)],
                     "max_abs_diff": max_diff, "why": why})
    return rows


def compare(original: Mapping[str, Any], again: Mapping[str, Any], metrics_a: Mapping[str, list],
            metrics_b: Mapping[str, list], tol: Tolerance = Tolerance()) -> dict[str, Any]:
    """The report: environment side by side, metrics compared, the verdict and every reason."""
    env = environment(original, again)
    metrics = metric_rows(metrics_a, metrics_b, tol)
    reasons = [f"{r['label']}: {_fmt(r['original'])} → {_fmt(r['reproduction'])}" for r in env if r["match"] is False]
    if again.get("failed") and not original.get("failed"):
        reasons.append(f"the reproduction failed: {again.get('error')}")
    reasons += [f"metric {m['name']}: {m['why']}" for m in metrics if m["status"] in ("differs", "missing")]
    env_ok = all(r["match"] is not False for r in env)
    metrics_ok = all(m["status"] in ("exact", "within") for m in metrics)
    verdict = "reproduced" if not reasons else "differs"
    exact = verdict == "reproduced" and all(m["status"] == "exact" for m in metrics)
    return {"reproduces": original.get("run_id"), "reproduction": again.get("run_id"), "verdict": verdict,
            "exact": exact, "environment_matches": env_ok, "metrics_within_tolerance": metrics_ok,
            "rtol": tol.rtol, "atol": tol.atol, "environment": env, "metrics": metrics, "reasons": reasons,
            "metrics_source": None}


# ---------------------------------------------------------------- metrics of a run directory


def run_metrics(run_dir: Path, manifest: Mapping[str, Any]) -> tuple[dict[str, list], str | None]:
    """The job's own metrics: `user_metrics.jsonl` (telemetry's stream), else its pulled JSON artifacts."""
    rows = telemetry.user_metrics(run_dir)
    if rows:
        return telemetry.numeric_series(rows)["series"], store.RunDir.USER_METRICS
    found: dict[str, list] = {}
    for art in manifest.get("artifacts") or []:
        path = Path(str(art.get("local_path") or ""))
        if art.get("status") != "success" or not path.exists():
            continue
        files = [path] if path.is_file() else sorted(path.rglob("*.json"))
        for file in files:
            if file.suffix != ".json":
                continue
            try:
                import json

                data = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            for key, value in _leaves(data, file.relative_to(path if path.is_dir() else path.parent).as_posix()):
                found[key] = [(0.0, value)]
    return found, ("artifacts JSON" if found else None)


def _leaves(data: Any, prefix: str) -> Iterator[tuple[str, float]]:
    if isinstance(data, bool):
        return
    if isinstance(data, (int, float)):
        yield prefix, float(data)
    elif isinstance(data, dict):
        for k, v in data.items():
            yield from _leaves(v, f"{prefix}:{k}" if ":" not in prefix else f"{prefix}.{k}")
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _leaves(v, f"{prefix}[{i}]")


# ---------------------------------------------------------------- re-creating the tree


def _git_ok(root: Path, *args: str) -> tuple[bool, str]:
    done = recipe.git(root, "-c", "core.hooksPath=/dev/null", *args)
    return done.returncode == 0, (done.stderr or done.stdout).decode("utf-8", "replace").strip()


@contextmanager
def worktree(repo: Path, sha: str) -> Iterator[Path]:
    """A detached worktree of `repo` at `sha` in a temporary folder, removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="podmagic-reproduce-"))
    tree = base / "tree"
    ok, why = _git_ok(repo, "worktree", "add", "--detach", "--quiet", str(tree), sha)
    if not ok:
        shutil.rmtree(base, ignore_errors=True)
        raise Refused(f"cannot check out {sha[:12]} into a temporary worktree: {why}")
    try:
        yield tree
    finally:
        for link in [p for p in tree.rglob("runpod") if p.is_symlink()]:
            link.unlink()  # never followed by the removal below: it points at the user's runs
        _git_ok(repo, "worktree", "remove", "--force", str(tree))
        shutil.rmtree(base, ignore_errors=True)
        _git_ok(repo, "worktree", "prune")


def _apply(tree: Path, patch: Path) -> None:
    ok, why = _git_ok(tree, "apply", "--check", "--binary", "--whitespace=nowarn", str(patch))
    if not ok:
        raise Refused(f"the recorded diff ({patch.name}) does not apply to the recorded SHA: {why}")
    ok, why = _git_ok(tree, "apply", "--binary", "--whitespace=nowarn", str(patch))
    if not ok:
        raise Refused(f"the recorded diff ({patch.name}) could not be applied: {why}")


def _link_runs(project: Path, runs: Path) -> Path:
    """The reproduction's run directory lands beside the original's, not in the temporary tree."""
    runs.mkdir(parents=True, exist_ok=True)
    link = project / RUNS_SUBDIR
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(runs, target_is_directory=True)
    return link


def _inside(path: str | None, old_top: Path, tree: Path) -> str | None:
    if not path:
        return path
    p = Path(path)
    try:
        return str(tree / p.relative_to(old_top))
    except ValueError:
        return path


@record
class Source:
    """The recorded run: its directory, manifest, launch inputs and recipe."""

    run_dir: Path
    manifest: dict[str, Any]
    launch: dict[str, Any]
    recipe: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.run_dir.name


def load(project_root: Path, ref: str) -> Source:
    run_dir = store.find_run(project_root, ref)
    rd = store.RunDir(run_dir)
    manifest, launch, rec = rd.manifest(), rd.launch(), rd.recipe()
    if not manifest:
        raise Refused(f"run {run_dir.name} has no manifest (still running, or lost): nothing to compare with")
    if not launch:
        raise Refused(f"run {run_dir.name} has no {store.RunDir.LAUNCH}: its inputs were not recorded")
    if not rec:
        raise Refused(f"run {run_dir.name} has no {store.RunDir.RECIPE}: it was made before podmagic recorded "
                      "what a reproduction needs (the diff, the staged files)")
    return Source(run_dir, manifest, launch, rec)


def _check_patch(src: Source) -> Path | None:
    info = src.recipe.get("patch") or {}
    status = info.get("status")
    if status == "clean":
        return None
    if status == "recorded":
        path = src.run_dir / store.RunDir.PATCH
        if not path.is_file() or recipe.sha256(path.read_bytes()) != info.get("sha256"):
            raise Refused(f"{store.RunDir.PATCH} of run {src.run_id} is missing or does not match its recorded "
                          "sha256 (edited?)")
        return path
    raise Refused(f"the uncommitted diff of run {src.run_id} cannot be re-applied: " +
                  (info.get("note") or str(status)))


def _check_secrets(src: Source, secret_values: Mapping[str, str]) -> None:
    missing = [k for k in src.launch.get("secret_names") or [] if k not in secret_values]
    if missing:
        raise Refused("secrets needed and not given: " + ", ".join(f"--secret-var {k}=..." for k in missing))


def _check_spec_secrets(prepared: api.Prepared) -> None:
    for s in prepared.plan.secrets:
        if s.file and not Path(s.file).expanduser().is_file():
            raise Refused(f"secrets needed and not given: secret {s.name!r} reads {s.file}, which does not exist here")
        missing = [v for v in s.env if v not in os.environ]
        if missing:
            raise Refused(f"secrets needed and not given: secret {s.name!r} needs environment variable(s) "
                          f"{', '.join(missing)}; export them first")


def _check_lockfile(src: Source, project: Path) -> None:
    """The re-created lockfile must hash as recorded, in the manifest and in `reproduce.json` alike."""
    name, digest = provenance.lockfile(project)
    shown = name or (src.recipe.get("lockfile") or {}).get("name") or "lockfile"
    recorded = (("the manifest", _lookup(src.manifest, "deploy_metadata.payload_lockfile_sha256")),
                (store.RunDir.RECIPE, (src.recipe.get("lockfile") or {}).get("sha256")))
    for where, value in recorded:
        if value != digest and (value is not None or where == store.RunDir.RECIPE):
            raise Refused(f"the lockfile differs: {shown} of the re-created tree has sha256 {digest or '(none)'}, "
                          f"{where} of run {src.run_id} recorded {value or '(none)'}")


def _check_staging(src: Source, prepared: api.Prepared) -> None:
    recorded = src.recipe.get("staging") or {}
    now = recipe.staged_hashes(prepared.plan.staging)
    for label, rec in recorded.items():
        then_files, now_files = rec.get("files") or {}, (now.get(label) or {}).get("files") or {}
        if not rec.get("complete", True):
            now_files = {k: v for k, v in now_files.items() if k in then_files}
        changed = sorted(k for k in then_files.keys() | now_files.keys() if then_files.get(k) != now_files.get(k))
        if changed:
            shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
            raise Refused(f"the re-created tree is not the one staged by run {src.run_id}: staging {label!r} "
                          f"differs in {len(changed)} file(s): {shown}")


def prepare(src: Source, tree: Path, *, backend: str | None, host: str | None,
            secret_values: Mapping[str, str]) -> api.Prepared:
    """The recorded inputs, re-rooted in `tree`, on the chosen backend; every check before a run dir."""
    old_top = Path(src.recipe.get("git_toplevel") or src.recipe.get("project_root") or src.launch["cwd"])
    inputs = dict(src.launch)
    recorded = _read_text(src.run_dir / store.RunDir.SPEC)
    if recorded and recorded != inputs["text"] and MASK not in recorded:
        inputs["text"] = recorded  # spec.yaml is the record of the spec; launch.json a copy of the inputs
    chosen = backend or inputs.get("backend") or "local"
    options = dict(inputs.get("backend_options") or {}) if chosen == inputs.get("backend") else {}
    if host:
        options["host"] = host
    api.check_backend(chosen, options)
    prepared = api.prepare_from(
        inputs, secret_values, cwd=Path(_inside(inputs["cwd"], old_top, tree)), backend=chosen,
        backend_options=options, config_path=_inside(inputs.get("config_path"), old_top, tree), sweep_id=None)
    root = prepared.plan.project_root
    if root != tree and tree not in root.parents:
        raise Refused(f"the run's project root {root} is outside its repository; it cannot be re-created from git")
    return prepared


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def reproduce(project_root: Path, ref: str, *, backend: str | None = None, host: str | None = None,
              secret_values: Mapping[str, str] | None = None, tolerance: Tolerance = Tolerance(),
              listeners: Iterable[Listener] = (), cancel: threading.Event | None = None,
              on_started=None) -> dict[str, Any]:
    """Re-run `ref` as recorded; returns the report (its `verdict` is "reproduced" or "differs")."""
    secret_values = dict(secret_values or {})
    src = load(project_root, ref)
    _check_secrets(src, secret_values)
    sha = _lookup(src.manifest, "deploy_metadata.local_git_sha") or src.recipe.get("git_sha")
    if not sha:
        raise Refused(f"run {src.run_id} recorded no git SHA (not a git project, or capture_local_git off)")
    repo = provenance.git_toplevel(project_root)
    if repo is None:
        raise Refused(f"{project_root} is not in a git repository: there is nowhere to check out {sha[:12]} from")
    ok, _ = _git_ok(repo, "cat-file", "-e", f"{sha}^{{commit}}")
    if not ok:
        raise Refused(f"the recorded SHA {sha} is not in the repository at {repo} (fetch it, e.g. "
                      "`git fetch --all`, or reproduce from a clone that has it)")
    patch = _check_patch(src)
    with worktree(repo, sha) as tree:
        if patch is not None:
            _apply(tree, patch)
        prepared = prepare(src, tree, backend=backend, host=host, secret_values=secret_values)
        _check_lockfile(src, prepared.plan.project_root)
        _check_staging(src, prepared)
        _check_spec_secrets(prepared)
        real = src.run_dir.parent.resolve()
        in_tree = str(_link_runs(prepared.plan.project_root, real))
        prepared = api.start(prepared)
        rundir = store.RunDir(real / prepared.plan.run_id)
        rundir.write_report({"reproduces": src.run_id, "verdict": "running"})
        if on_started:
            on_started(prepared)
        manifest = None
        try:
            manifest = api.execute(prepared, listeners=listeners, cancel=cancel)
        finally:
            manifest = _rerooted(manifest or rundir.manifest() or {}, in_tree, str(real))
            report = finish(src, rundir, manifest, tolerance)
    return report


def _rerooted(manifest: dict[str, Any], in_tree: str, real: str) -> dict[str, Any]:
    """Artifact paths as they are once the temporary tree is gone (its runs folder is a link)."""
    arts = [{**a, "local_path": real + str(a["local_path"])[len(in_tree):]}
            if str(a.get("local_path") or "").startswith(in_tree) else a for a in manifest.get("artifacts") or []]
    return {**manifest, "artifacts": arts} if manifest else manifest


def finish(src: Source, rundir: store.RunDir, manifest: dict[str, Any], tolerance: Tolerance) -> dict[str, Any]:
    """Compare, then record the report and the link (`reproduces`, verdict) in the reproduction's manifest."""
    again_recipe = rundir.recipe() or {}
    original = {**src.manifest, "patch_sha256": (src.recipe.get("patch") or {}).get("sha256")}
    again = {**manifest, "patch_sha256": (again_recipe.get("patch") or {}).get("sha256")}
    metrics_a, source_a = run_metrics(src.run_dir, src.manifest)
    metrics_b, source_b = run_metrics(rundir.path, manifest)
    report = compare(original, again, metrics_a, metrics_b, tolerance)
    report["metrics_source"] = source_a or source_b
    if not metrics_a and not metrics_b:
        report["note"] = "neither run recorded metrics ($PODMAGIC_METRICS or JSON artifacts): only the environment " \
                         "and exit code were compared"
    report["reproduction"] = rundir.run_id
    report["run_dir"] = str(rundir.path)
    rundir.write_report(report)
    if manifest:
        rundir.write_manifest({**manifest, "reproduces": src.run_id, "reproduction_verdict": report["verdict"]})
    return report


def exit_code(report: Mapping[str, Any]) -> int:
    """0 only when the environment matches and the metrics are within tolerance."""
    return 0 if report.get("verdict") == "reproduced" else 1


def links(project_root: Path) -> dict[str, list[str]]:
    """run id → the runs that reproduce it (the reverse of each manifest's `reproduces`)."""
    out: dict[str, list[str]] = {}
    for run_dir in store.iter_run_dirs(project_root):
        rd = store.RunDir(run_dir)
        of = (rd.manifest() or {}).get("reproduces") or (rd.report() or {}).get("reproduces")
        if of:
            out.setdefault(of, []).append(run_dir.name)
    return out


