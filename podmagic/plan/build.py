"""Spec + context → the exact, ordered plan of a run. Pure: no I/O.

Phases, in order: provision → setup → secrets → staging → preflight (the
interpreter pin first, then the user's) → probe (which interpreter the
project really resolves to) → run (detached) → pull (log, then artifacts) →
lifecycle. `describe` prints a plan; that is all `--dry-run` does.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePosixPath

from podmagic.digest import sha256
from podmagic.plan import podpaths
from podmagic.plan.naming import RUN_LOG, RUNS_SUBDIR, slug
from podmagic.plan.requests import Launch, PodRequest
from podmagic.records import record
from podmagic.spec import template
from podmagic.spec.jobspec import JobSpec, LifecycleSpec, SpecError, TelemetrySpec

q = shlex.quote
PIN_TIMEOUT_SEC = 300
PY_INFO = "'import platform, sys; print(platform.python_version(), sys.executable)'"
PROBE = ("d=$(command -v python3) && printf 'python3 ' && \"$d\" -c " + PY_INFO + "; "
         "p=$(uv python find 2>/dev/null) && \"$p\" -c " + PY_INFO)
"""Two lines: `python3 VERSION PATH` (the pod's default python3), then uv's `VERSION PATH` last."""
BARE_PYTHON = re.compile(r"(?m)(?:^|[;&|(`]|\b(?:then|do|else|exec|nohup|time|env|sudo)\s)[ \t]*python3?(?=[ \t\n;&|)]|$)")


def calls_bare_python(body: str) -> bool:
    """Whether a body runs `python`/`python3` itself (not through `uv run`), i.e. the pod's default."""
    return bool(BARE_PYTHON.search(body))


@record
class Context:
    """What a plan needs besides the spec; chosen by the caller."""

    project_root: Path
    config_dir: Path
    run_suffix: str
    """`<UTC stamp>-<hex>`: with the rendered prefix it makes the run id."""
    backend: str = "local"
    cli_variables: tuple[tuple[str, str], ...] = ()
    secret_variables: frozenset[str] = frozenset()
    default_name: str = "pod"
    config_path: str | None = None
    mask: Callable[[str], str] = str
    """Masks secret values in text (the caller's redactor): names and errors must not show them."""
    pod_root: bool | None = None
    """The pod is a folder standing in for one (SSH `--root`); None: only on the local backend."""

    @property
    def confined(self) -> bool:
        return self.backend == "local" if self.pod_root is None else self.pod_root


@record
class Command:
    phase: str
    label: str
    command: str
    timeout_sec: int = 600
    workdir: str | None = None


@record
class Push:
    label: str
    source: str
    destination: str
    excludes: tuple[str, ...]
    delete: bool
    use_git: bool = False


@record
class SecretPush:
    name: str
    destination: str
    mode: int
    env: tuple[str, ...] = ()
    file: str | None = None


@record
class Pull:
    label: str
    remote_path: str
    local_path: Path
    required: bool
    excludes: tuple[str, ...] = ()
    delete: bool = False
    into_dir: bool = False
    """`local_path` ended with `/`: the pulled file or folder goes inside it (rsync's meaning)."""


@record
class Plan:
    run_id: str
    run_dir: Path
    job_name: str
    backend: str
    project_root: Path
    spec_sha256: str
    request: PodRequest
    setup: tuple[Command, ...]
    secrets: tuple[SecretPush, ...]
    staging: tuple[Push, ...]
    preflight: tuple[Command, ...]
    probe: Command
    launch: Launch
    pulls: tuple[Pull, ...]
    lifecycle: LifecycleSpec
    timeout_sec: float
    success_marker: str | None
    failure_markers: tuple[str, ...]
    python_version: str | None
    variables: Mapping[str, str]
    secret_variables: frozenset[str]
    config_path: str | None = None
    cost_cap_usd: float | None = None
    required_paths: tuple[Path, ...] = ()
    """`local.required_paths`, resolved: each must exist before any pod is asked for."""
    assumed_hourly_rate_usd: float | None = None
    telemetry: TelemetrySpec = TelemetrySpec()
    """The `telemetry:` section as given (run/telemetry.py carries it out)."""


class _Variables(Mapping[str, str]):
    """Resolves variables lazily, so `name` may use a variable and a variable `run_id`."""

    def __init__(self, spec: JobSpec, ctx: Context, raw: dict[str, str]):
        self.spec, self.ctx, self.raw = spec, ctx, raw
        self.done: dict[str, str] = {
            "config_dir": str(ctx.config_dir),
            "project_root": str(ctx.project_root),
            "volume_mount": spec.storage.volume_mount,
        }
        self.active: list[str] = []
        self.mask = ctx.mask

    def __getitem__(self, key: str) -> str:
        if key in self.done:
            return self.done[key]
        if key in self.active:
            raise SpecError(f"variables refer to each other in a loop: {' -> '.join(self.active + [key])}",
                            *_pos(self.spec, f"variables.{key}"), self.spec.source)
        self.active.append(key)
        try:
            self.done[key] = self._compute(key)
        finally:
            self.active.pop()
        return self.done[key]

    def _compute(self, key: str) -> str:
        if key == "job_name":
            raw = self.spec.name or self.ctx.default_name
            return self._public("name", _render(self.spec, "name", raw, self))
        if key == "run_id":
            prefix = self.spec.run_id_prefix
            base = self._public("run_id_prefix", _render(self.spec, "run_id_prefix", prefix, self)) if prefix \
                else self["job_name"]
            return f"{slug(base)}-{self.ctx.run_suffix}"
        if key == "run_dir":
            return str(self.ctx.project_root / RUNS_SUBDIR / self["run_id"])
        if key in self.raw:
            flag = "--secret-var" if key in self.ctx.secret_variables else \
                "--var" if key in dict(self.ctx.cli_variables) else None
            if flag is None:
                return _render(self.spec, f"variables.{key}", self.raw[key], self)
            try:  # a value given on the command line: the error names the flag, not the cell
                return template.render(self.raw[key], self)
            except template.TemplateError as exc:
                raise SpecError(f"{flag} {key}=...: {exc}", 1, 1, flag) from None
        raise KeyError(key)

    def _public(self, path: str, value: str) -> str:
        """Names become the run directory, pod and status: a secret must not reach them."""
        if self.mask(value) != value:
            raise self.spec.error(path, f"`{path}` uses a --secret-var value; it would name the run directory "
                                        "and the pod, so secrets cannot be used there")
        return value

    def __contains__(self, key: object) -> bool:
        return key in self.done or key in self.raw or key in ("job_name", "run_id", "run_dir")

    def __iter__(self) -> Iterator[str]:
        return iter([*self.done, *self.raw, "job_name", "run_id", "run_dir"])

    def __len__(self) -> int:
        return len(list(iter(self)))


def _pos(spec: JobSpec, path: str) -> tuple[int, int]:
    loc = spec.where(path)
    return loc.line, loc.col


SHELL_FIELDS = ("setup[", "preflight[", "run.body")
"""Fields that are shell text: values reach bash as data (`template.render_shell`); values that are
not plain words are exported as `PODMAGIC_V_<name>` on the text's first line and referenced."""


def _render(spec: JobSpec, path: str, text: str, variables: Mapping[str, str]) -> str:
    try:
        if path.startswith(SHELL_FIELDS):
            return template.render_shell(text, variables).with_exports()
        return template.render(text, variables)
    except (template.TemplateError, template.ShellValueError) as exc:
        line, col = _locate(spec, spec.where(path), text, exc.offset, "{" + exc.name + "}")
        raise SpecError(str(exc), line, col, spec.source) from None


def _locate(spec: JobSpec, loc, text: str, offset: int, token: str) -> tuple[int, int]:
    """Where the token at `offset` of the value is in the spec: its n-th occurrence from the value's start."""
    nth = text[:offset].count(token)
    lines = spec.text.splitlines()
    for i in range(max(loc.line - 1 - spec.line_offset, 0), len(lines)):
        start = loc.col - 1 if i == loc.line - 1 - spec.line_offset else 0
        col = lines[i].find(token, start)
        while col != -1:
            if nth == 0:
                return i + 1 + spec.line_offset, col + 1
            nth -= 1
            col = lines[i].find(token, col + 1)
    return loc.line, loc.col


def build(spec: JobSpec, ctx: Context) -> Plan:
    """The plan of one run. Raises SpecError (with position) on bad templates."""
    raw = dict(spec.variables)
    raw.update(ctx.cli_variables)
    variables = _Variables(spec, ctx, raw)
    try:
        return _build(spec, ctx, raw, variables)
    except SpecError as exc:  # an error quoting a rendered value must not show a secret
        exc.message = ctx.mask(exc.message)
        exc.args = (str(exc),)
        raise


def _build(spec: JobSpec, ctx: Context, raw: dict[str, str], variables: "_Variables") -> Plan:
    r = lambda path, text: _render(spec, path, text, variables)  # noqa: E731
    _require_pod_fields(spec, ctx.backend)
    run_id, run_dir, job_name = variables["run_id"], Path(variables["run_dir"]), variables["job_name"]
    mount = spec.storage.volume_mount.rstrip("/") or "/"
    staging = _staging(spec, ctx, r, mount)
    workdir = staging[0].destination if staging else ""
    launch = _launch(spec, r, mount, run_id, workdir)
    secrets = tuple(_secrets(spec, r))
    pulls = tuple(_pulls(spec, ctx, r, launch, run_dir))
    podpaths.check(spec, _pod_paths(spec, staging, secrets, launch, pulls), mount=mount, confined=ctx.confined)
    return Plan(
        run_id=run_id, run_dir=run_dir, job_name=job_name, backend=ctx.backend,
        project_root=ctx.project_root,
        spec_sha256=sha256(spec.text.encode("utf-8", "surrogatepass")).hexdigest(),
        request=_request(spec, run_id, run_dir, job_name),
        setup=tuple(_commands(spec, "setup", r, None)),
        secrets=secrets,
        staging=staging,
        preflight=tuple(_pin(spec, workdir)) + tuple(_commands(spec, "preflight", r, workdir or None)),
        probe=Command("probe", "python_resolved", PROBE, 120, workdir or None),
        launch=launch,
        pulls=pulls,
        lifecycle=spec.lifecycle,
        timeout_sec=spec.budget.timeout_sec,
        success_marker=r("run.success_marker", spec.run.success_marker) if spec.run.success_marker else None,
        failure_markers=tuple(r("run.failure_markers", m) for m in spec.run.failure_markers),
        python_version=spec.pod.python_version,
        variables={k: variables[k] for k in raw},
        secret_variables=ctx.secret_variables,
        config_path=ctx.config_path,
        cost_cap_usd=spec.budget.cost_cap_usd,
        required_paths=tuple(Path(_local(ctx, r("local.required_paths", p))) for p in spec.local.required_paths),
        assumed_hourly_rate_usd=spec.budget.assumed_hourly_rate_usd,
        telemetry=spec.telemetry,
    )


def _pod_paths(spec: JobSpec, staging: tuple[Push, ...], secrets: tuple[SecretPush, ...], launch: Launch,
               pulls: tuple[Pull, ...]) -> Iterator[podpaths.PodPath]:
    if spec.staging is not None:
        yield from (podpaths.PodPath(f"staging[{i}].destination", p.destination) for i, p in enumerate(staging))
    yield from (podpaths.PodPath(f"secrets[{i}].destination", s.destination) for i, s in enumerate(secrets))
    if spec.run.script_path:
        yield podpaths.PodPath("run.script_path", launch.script_path)
    if spec.run.log_path:
        yield podpaths.PodPath("run.log_path", launch.log_path)
    artifacts = pulls[1:]  # the first pull is always the log
    yield from (podpaths.PodPath(f"artifacts[{i}].remote_path", p.remote_path) for i, p in enumerate(artifacts))


def _require_pod_fields(spec: JobSpec, backend: str) -> None:
    if backend != "runpod":
        return
    for key in ("image", "datacenters", "gpu_order"):
        if not getattr(spec.pod, key):
            raise spec.error("pod", f"`pod.{key}` is required on the runpod backend")


def _request(spec: JobSpec, run_id: str, run_dir: Path, job_name: str) -> PodRequest:
    p, s = spec.pod, spec.storage
    return PodRequest(
        run_id=run_id, image=p.image or "local", datacenters=p.datacenters, gpu_order=p.gpu_order,
        cloud_type=p.cloud_type, gpu_count=p.gpu_count, ports=p.ports,
        container_disk_gb=p.container_disk_gb, volume_gb=s.volume_gb, volume_mount=s.volume_mount,
        volume_name=s.volume_name, storage_mode=s.mode, spot=p.spot, min_vcpu_count=p.min_vcpu_count,
        min_memory_gb=p.min_memory_gb, ssh_ready_timeout_sec=spec.budget.ssh_ready_timeout_sec,
        key_path=spec.ssh.key_path, run_dir=run_dir,
        options={"on_success": spec.lifecycle.on_success, "recycle_key": job_name},
    )


def _env_prefix(spec: JobSpec, r) -> str:
    parts = [f"[ -f {q(f)} ] && source {q(f)} || true" for f in
             (r("remote_env.source_files", f) for f in spec.remote_env.source_files)]
    parts += [f"export {k}={q(r(f'remote_env.exports.{k}', v))}" for k, v in spec.remote_env.exports]
    return "".join(p + "; " for p in parts)


def _commands(spec: JobSpec, phase: str, r, workdir: str | None) -> Iterator[Command]:
    for i, c in enumerate(getattr(spec, phase)):
        command = r(f"{phase}[{i}].command", c.command)
        if c.with_env:
            command = _env_prefix(spec, r) + command
        yield Command(phase, f"{phase}[{i}]", command, c.timeout_sec, workdir)


def pin_command(version: str, workdir: str) -> str:
    """The seed recipe's preflight[0], exactly."""
    target = q(workdir) if workdir else '"$HOME"'
    return f"uv python install {q(version)} && cd {target} && uv python pin {q(version)}"


def _pin(spec: JobSpec, workdir: str) -> Iterator[Command]:
    if spec.pod.python_version:
        yield Command("preflight", "python pin", pin_command(spec.pod.python_version, workdir), PIN_TIMEOUT_SEC)


def _staging(spec: JobSpec, ctx: Context, r, mount: str) -> tuple[Push, ...]:
    if spec.staging is None:
        from podmagic.spec.schema import DEFAULT_STAGING_EXCLUDES

        dest = str(PurePosixPath(mount) / "repo")
        return (Push("project", str(ctx.project_root), dest, DEFAULT_STAGING_EXCLUDES, True, use_git=True),)
    return tuple(
        Push(s.label, _local(ctx, r(f"staging[{i}].source", s.source)), r(f"staging[{i}].destination", s.destination),
             tuple(r(f"staging[{i}].excludes", e) for e in s.effective_excludes), s.delete)
        for i, s in enumerate(spec.staging)
    )


def _local(ctx: Context, path: str) -> str:
    """A local path: relative ones resolve under the project root (keeps a trailing /)."""
    resolved = str(Path(path).expanduser() if path.startswith("~") else ctx.project_root / path)
    return resolved + "/" if path.endswith("/") and not resolved.endswith("/") else resolved


def _secrets(spec: JobSpec, r) -> Iterator[SecretPush]:
    for i, s in enumerate(spec.secrets):
        yield SecretPush(s.name, r(f"secrets[{i}].destination", s.destination), int(s.mode, 8), s.env,
                         r(f"secrets[{i}].file", s.file) if s.file else None)


def _launch(spec: JobSpec, r, mount: str, run_id: str, workdir: str) -> Launch:
    control = f"{mount.rstrip('/')}/.podmagic/{run_id}"
    run = spec.run
    return Launch(
        script_path=r("run.script_path", run.script_path) if run.script_path else f"{control}/run.sh",
        log_path=r("run.log_path", run.log_path) if run.log_path else f"{control}/run.log",
        exit_path=f"{control}/exit",
        workdir=workdir,
        body=r("run.body", run.body),
        env={"PYTHONUNBUFFERED": "1"},  # prints reach the live log as they happen; the script may unset it
        heartbeat_path=f"{control}/heartbeat",
        max_runtime_sec=spec.budget.max_runtime_minutes * 60 if spec.budget.max_runtime_minutes else None,
    )


def _pulls(spec: JobSpec, ctx: Context, r, launch: Launch, run_dir: Path) -> Iterator[Pull]:
    yield Pull("log", launch.log_path, run_dir / RUN_LOG, required=False)
    root = ctx.project_root.resolve()
    for i, a in enumerate(spec.artifacts):
        rendered = r(f"artifacts[{i}].local_path", a.local_path)
        local = Path(rendered).expanduser()
        local = local if local.is_absolute() else root / local
        resolved = Path(os.path.realpath(local))  # symlinks too: a linked folder must not lead out
        if resolved != root and root not in resolved.parents:
            raise spec.error(f"artifacts[{i}].local_path", f"`artifacts[{i}].local_path` resolves to {resolved}, "
                             f"outside the project ({root}); use a path under {{run_dir}} or the project")
        yield Pull(a.label, r(f"artifacts[{i}].remote_path", a.remote_path), resolved, a.required,
                   tuple(r(f"artifacts[{i}].excludes", e) for e in a.excludes), a.delete,
                   into_dir=rendered.endswith("/"))


def describe(plan: Plan, mask=lambda s: s) -> str:
    """The plan as text: what `--dry-run` prints."""
    req = plan.request
    lines = [
        f"run {plan.run_id}  ({plan.backend} backend)",
        f"  run dir   {plan.run_dir}",
        f"  pod       image={req.image} gpu_order={list(req.gpu_order)} datacenters={list(req.datacenters)}",
        f"  budget    timeout={plan.timeout_sec / 60:.0f}m cap=${plan.cost_cap_usd}" if plan.backend == "runpod"
        else f"  budget    timeout={plan.timeout_sec / 60:.0f}m; no cost cap (the {plan.backend} backend has no price)",
        f"  python    {plan.python_version or '(not pinned)'}",
    ]
    lines += [f"[setup] {c.command}" for c in plan.setup]
    lines += [f"[secrets] {s.name} -> {s.destination} (mode={s.mode:04o})" for s in plan.secrets]
    for p in plan.staging:
        what = "git-tracked and untracked-not-ignored files of" if p.use_git else "files of"
        lines.append(f"[staging:{p.label}] {what} {p.source} -> {p.destination}"
                     f" (delete={str(p.delete).lower()}, excludes={list(p.excludes)})")
    lines += [f"[{c.label if c.label == 'python pin' else 'preflight'}] {c.command}" for c in plan.preflight]
    lines.append(f"[probe] {plan.probe.command}")
    lines.append(f"[run] {plan.launch.script_path} (log {plan.launch.log_path}, cwd {plan.launch.workdir or '$HOME'}):")
    lines += ["    " + line for line in plan.launch.body.rstrip("\n").splitlines()]
    lines += [f"[pull:{p.label}] {p.remote_path} -> {p.local_path}" + ("" if p.required else " (optional)")
              for p in plan.pulls]
    t = plan.telemetry
    if t.enabled:
        lines.append(f"[telemetry] capture at start and end; metrics.jsonl every {t.sample_interval_sec}s")
    lc = plan.lifecycle
    lines.append(f"[lifecycle] on_success={lc.on_success} on_failure={lc.on_failure}")
    return mask("\n".join(lines))
