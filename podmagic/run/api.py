"""The Python API every front end uses: prepare a run, then execute it.

`prepare` parses, resolves the project, reconciles the pin and builds the
plan (no pod, no cost, no files written). `start` creates the run directory
and records the spec and plan. `execute` runs it on a backend. The magics,
the CLI, sweeps and relaunch are all this sequence.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from podmagic.backends import check_front_end_options, ssh_host
from podmagic.errors import RunNotFound, close_matches
from podmagic.plan import build as plan_mod
from podmagic.plan import reconcile
from podmagic.records import record, replace
from podmagic.run import speccache, store
from podmagic.run.events import Event, Journal, Listener
from podmagic.run.redact import Redactor
from podmagic.spec import jobspec as spec_mod
from podmagic.spec import schema, template


@record
class Prepared:
    spec: spec_mod.JobSpec
    plan: plan_mod.Plan
    notes: tuple[reconcile.Note, ...]
    redactor: Redactor
    backend_options: Mapping[str, object]
    context: plan_mod.Context
    inputs: Mapping[str, object]
    """The arguments of `prepare` (secret values left out): `launch.json` records them."""


def run_suffix() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(2).hex()


def parse_assignments(items: Iterable[str], flag: str = "--var") -> tuple[tuple[str, str], ...]:
    """`k=v` strings → pairs; a bad one is an error naming the flag."""
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not spec_mod.IDENT_RE.match(key):
            shown = repr(item) if flag != "--secret-var" else (f"{key!r}=..." if sep else "(value hidden)")
            raise spec_mod.SpecError(f"{flag} expects NAME=VALUE with NAME an identifier, got {shown}",
                                     source=flag)
        out.append((key, value))
    return tuple(out)


def load_vars_file(path: Path) -> tuple[tuple[str, str], ...]:
    """`--vars-file`: a JSON object of NAME: "string" (runpod-deploy's format); `--var` wins over it."""
    flag = "--vars-file"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise spec_mod.SpecError(f"{path} does not exist", source=flag) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise spec_mod.SpecError(f"cannot read {path}: {exc}", source=flag) from None
    except json.JSONDecodeError as exc:
        raise spec_mod.SpecError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
                                 source=flag) from None
    if not isinstance(data, dict):
        raise spec_mod.SpecError(f"{path}: the JSON root must be an object of NAME: \"value\"", source=flag)
    out = []
    for key, value in data.items():
        if not spec_mod.IDENT_RE.match(key):
            raise spec_mod.SpecError(f"{path}: key {key!r} must be a valid identifier", source=flag)
        if not isinstance(value, str):
            raise spec_mod.SpecError(f"{path}: the value of {key!r} must be a string, got "
                                     f"{type(value).__name__} {value!r} (write \"{value}\")", source=flag)
        out.append((key, value))
    return tuple(out)


def check_variables_used(spec: spec_mod.JobSpec, variables: Iterable[tuple[str, str]], flag: str) -> None:
    """A `--var NAME=...` that no template of the spec refers to is a mistake (a typo, usually)."""
    pairs = list(variables)
    used = set(template.names(spec.text))
    for _, value in [*spec.variables, *pairs]:
        used.update(template.names(value))
    known = sorted(used | {k for k, _ in spec.variables})
    for key, _ in pairs:
        if key in used:
            continue
        close = close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else (
            f"; the spec uses {', '.join('{' + k + '}' for k in known)}" if known else
            "; the spec uses no {templates}")
        raise spec_mod.SpecError(f"{key}=...: no template in the spec uses {{{key}}}{hint}", source=flag)


OVERRIDES = {
    "cost_cap_usd": ("budget", float), "max_runtime_minutes": ("budget", int),
    "ssh_ready_timeout_sec": ("budget", int), "gpu_order": ("pod", tuple), "datacenters": ("pod", tuple),
    "cloud_type": ("pod", str),
}
"""Per-run overrides of the spec (runpod-deploy's run flags): key → (section, type)."""


def apply_overrides(spec: spec_mod.JobSpec, overrides: Mapping[str, object]) -> spec_mod.JobSpec:
    """The spec with command-line overrides applied (each checked as the YAML value would be)."""
    sections: dict[str, dict[str, object]] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        section, kind = OVERRIDES[key]
        flag = "--" + key.replace("_", "-")
        if kind in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise spec_mod.SpecError(f"must be > 0, got {value}", source=flag)
        if key == "cloud_type" and value not in schema.CLOUD_TYPES:
            raise spec_mod.SpecError(f"must be SECURE or COMMUNITY, got {value!r}", source=flag)
        sections.setdefault(section, {})[key] = kind(value)
    for section, values in sections.items():
        spec = replace(spec, **{section: replace(getattr(spec, section), **values)})
    return spec


def check_backend(backend: str, options: Mapping[str, object]) -> None:
    """What a backend needs from the command line; front ends call it before `start` makes a run directory
    (not `prepare`, since an API caller may hand `execute` a configured backend)."""
    if backend == "ssh":
        ssh_host(options.get("host"))


def project_root(spec: spec_mod.JobSpec, config_dir: Path, *, is_file: bool) -> Path:
    """`local.project_root` (relative to the config's directory), else the repository around it."""
    from podmagic.run.provenance import git_toplevel

    given = spec.local.project_root
    if given is not None:
        root = (config_dir / Path(given).expanduser()).resolve()
    elif is_file:
        root = config_dir.resolve()
    else:
        root = (git_toplevel(config_dir) or config_dir).resolve()
    home = Path.home().resolve()
    if root in (home, Path(root.anchor)):
        where = "local.project_root" if given is not None else ""
        raise spec.error(where, f"the project root resolves to {root}: podmagic will not stage or write under "
                         f"{'your home directory' if root == home else 'the filesystem root'}; set "
                         "`local: {project_root: ...}` to your project's folder")
    return root


def resolve_backend(flag: str | None = None, configured: str | None = None) -> str:
    """Flag, then `%config PodMagic.backend`, then PODMAGIC_BACKEND, then runpod if a key exists, else local."""
    for choice in (flag, configured, os.environ.get("PODMAGIC_BACKEND")):
        if choice:
            return choice
    if os.environ.get("RUNPOD_API_KEY") or (Path.home() / ".runpod" / "config.toml").is_file():
        return "runpod"
    return "local"


def prepare(text: str, *, cwd: Path, backend: str = "local", source: str = "cell", line_offset: int = 0,
            variables: Iterable[tuple[str, str]] = (), secret_variables: Iterable[tuple[str, str]] = (),
            default_name: str = "pod", config_path: str | None = None, is_file: bool = False,
            sweep: bool = False, canonical: bool = False,
            backend_options: Mapping[str, object] | None = None, suffix: str | None = None,
            sweep_id: str | None = None, overrides: Mapping[str, object] | None = None) -> Prepared:
    variables = tuple(tuple(v) for v in variables)
    secret_variables = tuple(secret_variables)
    overrides = {k: (list(v) if isinstance(v, tuple) else v) for k, v in (overrides or {}).items() if v is not None}
    backend_options = check_front_end_options(backend, dict(backend_options or {}))
    inputs = {
        "text": text, "cwd": str(cwd), "backend": backend, "source": source, "line_offset": line_offset,
        "variables": [list(v) for v in variables], "default_name": default_name, "config_path": config_path,
        "is_file": is_file, "sweep": sweep, "canonical": canonical, "backend_options": backend_options,
        "sweep_id": sweep_id, "overrides": overrides,
    }
    nodes = speccache.nodes(text, source=source, line_offset=line_offset)
    spec = apply_overrides(spec_mod.parse(text, source=source, line_offset=line_offset, nodes=nodes), overrides)
    check_variables_used(spec, variables, "--var/--sweep" if sweep else "--var")
    check_variables_used(spec, secret_variables, "--secret-var")
    root = project_root(spec, cwd, is_file=is_file)
    secret_pairs = secret_variables
    redactor = Redactor(v for _, v in secret_pairs)
    ctx = plan_mod.Context(
        project_root=root, config_dir=cwd.resolve(), run_suffix=suffix or run_suffix(), backend=backend,
        cli_variables=tuple(variables) + secret_pairs, secret_variables=frozenset(k for k, _ in secret_pairs),
        default_name=default_name, config_path=config_path, mask=redactor.mask,
        pod_root=bool((backend_options or {}).get("root") or os.environ.get("PODMAGIC_SSH_ROOT"))
        if backend == "ssh" else None,
    )
    built = plan_mod.build(spec, ctx)
    if backend == "runpod":
        budget_guard(spec)
    pin_project = _pin_project(built)
    notes = tuple(reconcile.check(spec, pin_project, sweep=sweep, canonical=canonical))
    inputs["secret_names"] = [k for k, _ in secret_pairs]
    return Prepared(spec, built, notes, redactor, backend_options, ctx, inputs)


def prepare_from(inputs: Mapping[str, object], secret_values: Mapping[str, str], **overrides) -> Prepared:
    """`prepare` again from recorded inputs (`Prepared.inputs` or `launch.json`), with overrides."""
    args = {k: v for k, v in inputs.items() if k not in ("secret_names", "suffix")}
    args.update(cwd=Path(inputs["cwd"]), variables=[tuple(v) for v in inputs["variables"]])
    args.update(overrides)
    secrets_ = [(k, secret_values[k]) for k in inputs.get("secret_names", [])]
    return prepare(args.pop("text"), secret_variables=secrets_, **args)


def reprepare(run_dir: Path, secret_values: Mapping[str, str]) -> Prepared:
    """The same Prepared again from a started run's `launch.json` (same run id), e.g. in another process."""
    inputs = store.RunDir(run_dir).launch()
    if not inputs:
        raise RunNotFound(f"{run_dir} has no {store.RunDir.LAUNCH}: it cannot be started again")
    prepared = prepare_from(inputs, secret_values, suffix=inputs["suffix"])
    if prepared.plan.run_dir != run_dir:
        raise RuntimeError(f"re-prepared run dir {prepared.plan.run_dir} is not {run_dir}")
    return prepared


def budget_guard(spec: spec_mod.JobSpec) -> None:
    """Refuse before any spend when the assumed rate over the time budget exceeds the cap."""
    b = spec.budget
    spend = b.assumed_hourly_rate_usd * b.timeout_sec / 3600.0
    if spend > b.cost_cap_usd + 1e-9:
        raise spec.error("budget", f"budget: {b.timeout_sec / 60:.0f} min at the assumed ${b.assumed_hourly_rate_usd}/h "
                         f"would spend ${spend:.2f}, over cost_cap_usd ${b.cost_cap_usd}; raise the cap, lower "
                         "max_runtime_minutes, or set assumed_hourly_rate_usd to the GPU's real price")


def _pin_project(plan: plan_mod.Plan) -> Path:
    """The local folder the pin's `cd` lands in: the first staging source."""
    if plan.staging:
        source = Path(plan.staging[0].source)
        if source.is_dir():
            return source
    return plan.project_root


def start(prepared: Prepared) -> Prepared:
    """Create the run directory (fresh, race-free) and record spec and plan in it."""
    plan, ctx = prepared.plan, prepared.context
    for _ in range(20):
        if store.RunDir(plan.run_dir).create():
            break
        ctx = replace(ctx, run_suffix=run_suffix())
        plan = plan_mod.build(prepared.spec, ctx)
    prepared = replace(prepared, plan=plan, context=ctx)
    rundir = store.RunDir(plan.run_dir)
    rundir.write_inputs(prepared.redactor.mask(prepared.spec.text), {**prepared.inputs, "suffix": ctx.run_suffix},
                        plan_mod.describe(plan, prepared.redactor.mask) + "\n")
    with Journal(rundir.events_path) as journal:
        for note in prepared.notes:
            journal(Event("reconcile_" + note.severity, {"message": note.message}))
        _record_recipe(prepared, rundir, journal)
    return prepared


def _record_recipe(prepared: Prepared, rundir: store.RunDir, journal: Journal) -> None:
    """What `reproduce` needs (the uncommitted diff, lockfile and staged-file hashes); never fails a run."""
    from podmagic.run import recipe

    try:
        rec = recipe.record(prepared.plan, rundir, prepared.redactor.mask,
                            git_on=prepared.plan.telemetry.capture_local_git)
    except Exception as exc:  # noqa: BLE001 - a run must not fail because its record for later could not be made
        journal(Event("warning", {"message": f"reproduce record not written: {type(exc).__name__}: {exc}"}))
        return
    if rec["patch"].get("note"):
        journal(Event("warning", {"message": f"{store.RunDir.PATCH}: {rec['patch']['note']}"}))


def execute(prepared: Prepared, *, listeners: Iterable[Listener] = (), cancel: threading.Event | None = None,
            backend=None) -> dict:
    """Run a started plan to the end; returns the manifest (KeyboardInterrupt re-raised after teardown)."""
    from podmagic.backends import get_backend
    from podmagic.run.runner import Runner

    plan = prepared.plan
    backend = backend or get_backend(plan.backend, **prepared.backend_options)
    with Journal(store.RunDir(plan.run_dir).events_path, prepared.redactor.mask) as journal:
        runner = Runner(plan, backend, listeners=[journal, *listeners], redactor=prepared.redactor, cancel=cancel)
        manifest = runner.execute()
    honour_state_file(prepared, manifest)
    return manifest


def honour_state_file(prepared: Prepared, manifest: Mapping[str, object]) -> Path | None:
    """runpod-deploy's `state_file`: a pointer `{pod_id, gpu_id, image, datacenter_id}` to a pod the
    lifecycle kept (stop, preserve, recycle), removed when that pod was deleted; the runpod backend only.
    `podmagic cleanup --state-file P` reads it."""
    given = prepared.spec.state_file
    if not given or prepared.plan.backend != "runpod" or not manifest.get("pod_id"):
        return None
    path = Path(given).expanduser()
    try:
        if manifest.get("pod_final_state") in ("RUNNING", "EXITED"):
            path.parent.mkdir(parents=True, exist_ok=True)
            store.write_json_atomic(path, {k: manifest.get(k) for k in ("pod_id", "gpu_id", "image", "datacenter_id")})
            return path
        if (store.read_json(path) or {}).get("pod_id") == manifest.get("pod_id"):
            path.unlink(missing_ok=True)
    except OSError:
        return None
    return None
