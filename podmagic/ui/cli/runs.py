"""`run`, `validate`, `plan` and the commands on a live run: `attach`, `wait`, `logs`, `stop`."""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
import time
from pathlib import Path

from podmagic.errors import PodmagicError
from podmagic.plan.build import describe
from podmagic.run import api, history, store
from podmagic.run.events import Event
from podmagic.spec.jobspec import SpecError, decode
from podmagic.ui.cli.common import Printer, add_config, add_root, config_file, progress_line, root


def _manifest_text(manifest: dict) -> str:
    from podmagic.ui import render  # at the end of a run only (`_import_render_meanwhile`): its start does not wait

    for thread in _importers:
        thread.join()  # done with its import: joined, so the command line can end at once (`_exit_now`)
    return render.manifest_text(manifest)


_importers: list[threading.Thread] = []


def _import_render_meanwhile(event: Event) -> None:
    """Once the job runs, import what prints its record in a thread: the job's run time hides it (the
    main thread mostly waits on the pod then), instead of the end of the run paying for it."""
    if event.kind == "run_started" and "podmagic.ui.render" not in sys.modules:  # after the launch: no contention
        _importers.append(threading.Thread(target=importlib.import_module, args=("podmagic.ui.render",),
                                           daemon=True, name="podmagic-render-import"))
        _importers[-1].start()


class RunFailed(PodmagicError):
    exit_code = 1


def _spec_args(p: argparse.ArgumentParser) -> None:
    add_config(p)
    p.add_argument("--var", action="append", default=[], metavar="K=V", help="set a {template} variable")
    p.add_argument("--vars-file", type=Path, metavar="PATH", help="a JSON object of variables (--var wins)")
    p.add_argument("--secret-var", action="append", default=[], metavar="K=V",
                   help="a variable whose value is masked everywhere")
    p.add_argument("--backend", choices=("local", "ssh", "runpod"), help="where the pod comes from")
    p.add_argument("--host", help="ssh backend: user@host:port or an ~/.ssh/config alias")
    p.add_argument("--root", help="ssh backend: folder on the host standing in for the pod (~ = remote home)")
    p.add_argument("--cost-cap-usd", type=float, metavar="F", help="override budget.cost_cap_usd")
    p.add_argument("--max-runtime-minutes", type=int, metavar="N", help="override budget.max_runtime_minutes")
    p.add_argument("--ssh-ready-timeout-sec", type=int, metavar="N", help="override budget.ssh_ready_timeout_sec")
    p.add_argument("--gpu-id", metavar="GPU", help="pin the GPU (with --datacenter-id): skips the failover walk")
    p.add_argument("--datacenter-id", metavar="DC", help="pin the datacenter (with --gpu-id)")
    p.add_argument("--max-gpu-price", type=float, metavar="USD",
                   help="skip GPUs priced above this $/GPU-hour (RunPod's catalogue; unpriced GPUs stay)")
    add_root(p)


def register(sub) -> None:
    run = sub.add_parser("run", help="run a spec to the end (or --detach)", description=(
        "Run the spec: provision, stage, pin, run, pull, tear down. Exit 0 success, 1 the run failed, "
        "2 bad input (nothing started), 130 interrupted."))
    _spec_args(run)
    run.add_argument("--dry-run", action="store_true", help="print the plan (and, on runpod, where it would "
                     "land at what price); create nothing")
    run.add_argument("--offline-dry-run", action="store_true", help="print the plan, make no call at all")
    run.add_argument("--detach", action="store_true", help="start the run in the background and return")
    run.add_argument("--print-run-dir", action="store_true", help="write RUN_DIR=<path> to stdout first")
    run.add_argument("--force-fresh", action="store_true", help="runpod recycle: replace the kept pod")
    run.add_argument("--fallback-cloud-type", choices=("SECURE", "COMMUNITY"),
                     help="after a stock-out, try once more on this cloud type")
    run.set_defaults(func=cmd_run)
    val = sub.add_parser("validate", help="check a spec without running it", description=(
        "Parse and plan the spec (templates, paths, the budget guard on runpod); prints `ok: ...`."))
    _spec_args(val)
    val.add_argument("--check-local", action="store_true", help="local.required_paths must exist")
    val.add_argument("--check-availability", action="store_true",
                     help="RunPod stock for gpu_order × datacenters (exit 3 on a full stock-out)")
    val.add_argument("--check-image", "--check-image-registry", dest="check_image", action="store_true",
                     help="ask the image registry whether pod.image exists")
    val.add_argument("--all", action="store_true", help="--check-local --check-availability --check-image")
    val.set_defaults(func=cmd_validate)
    plan = sub.add_parser("plan", help="print what a run would do", description="Print the plan; run nothing.")
    _spec_args(plan)
    plan.set_defaults(func=cmd_plan)
    for name, helptext, func in (("attach", "follow a live run's output until it ends", cmd_attach),
                                 ("wait", "wait for a run to end; exit with its status", cmd_wait),
                                 ("stop", "ask a live run to stop (teardown follows)", cmd_stop)):
        s = sub.add_parser(name, help=helptext, description=helptext)
        s.add_argument("run", metavar="RUN", help="run id or unique prefix (see podmagic runs)")
        if name == "wait":
            s.add_argument("--timeout", type=float, metavar="SEC", help="give up after SEC seconds (exit 1)")
        add_root(s)
        s.set_defaults(func=func)
    logs = sub.add_parser("logs", help="a run's log (-f follows a live run)", description=(
        "Print the end of a run's log. RUN, or --config FILE for the newest run of that config "
        "(then it follows unless --no-follow, as runpod-deploy does)."))
    logs.add_argument("run", nargs="?", metavar="RUN")
    logs.add_argument("--config", type=Path, metavar="FILE")
    logs.add_argument("--tail", "--lines", dest="tail", type=int, default=200, metavar="N")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the run ends")
    logs.add_argument("--no-follow", action="store_true")
    add_root(logs)
    logs.set_defaults(func=cmd_logs)


# ---------------------------------------------------------------- prepare


def _read(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read {path}: {exc.strerror}", source=str(path)) from None
    return decode(data, source=str(path))


def _variables(args) -> tuple[tuple[str, str], ...]:
    from_file = api.load_vars_file(args.vars_file) if args.vars_file else ()
    given = api.parse_assignments(args.var, "--var")
    names = {k for k, _ in given}
    return tuple((k, v) for k, v in from_file if k not in names) + given


def _overrides(args) -> dict:
    if (args.gpu_id is None) != (args.datacenter_id is None):
        raise SpecError("--gpu-id and --datacenter-id go together (both pin the placement)", source="--gpu-id")
    return {"cost_cap_usd": args.cost_cap_usd, "max_runtime_minutes": args.max_runtime_minutes,
            "ssh_ready_timeout_sec": args.ssh_ready_timeout_sec,
            "gpu_order": (args.gpu_id,) if args.gpu_id else None,
            "datacenters": (args.datacenter_id,) if args.datacenter_id else None}


def prepare(args, **extra) -> api.Prepared:
    path = config_file(args)
    options = {k: v for k, v in (("host", args.host), ("root", args.root),
                                 ("force_fresh", getattr(args, "force_fresh", False))) if v}
    overrides = {**_overrides(args), **extra}
    if args.max_gpu_price is not None and not args.gpu_id:
        overrides["gpu_order"] = _priced_order(args, path, overrides)
    backend = api.resolve_backend(args.backend)
    api.check_backend(backend, options)
    return api.prepare(
        _read(path), cwd=path.resolve().parent, backend=backend, source=str(path),
        variables=_variables(args), secret_variables=api.parse_assignments(args.secret_var, "--secret-var"),
        default_name=path.stem, config_path=str(path.resolve()), is_file=True, backend_options=options,
        overrides=overrides,
    )


def _priced_order(args, path: Path, overrides: dict) -> tuple[str, ...]:
    from podmagic.spec.jobspec import parse
    from podmagic.ui import catalog

    if args.max_gpu_price <= 0:
        raise SpecError(f"must be > 0, got {args.max_gpu_price}", source="--max-gpu-price")
    spec = api.apply_overrides(parse(_read(path), source=str(path)), overrides)
    cat = catalog.fetch(spec.pod.cloud_type, spec.pod.gpu_count)
    kept = catalog.filter_by_price(cat, spec.pod.gpu_order, args.max_gpu_price)
    for gpu in spec.pod.gpu_order:
        if gpu not in kept:
            print(f"[podmagic] --max-gpu-price: skipping {gpu} (${cat.get(gpu).price:.2f}/h)", file=sys.stderr)
    return kept


def _notes(prepared: api.Prepared) -> None:
    for note in prepared.notes:
        print(f"{note.severity}: {note.message}", file=sys.stderr)


# ---------------------------------------------------------------- commands


def cmd_run(args) -> int:
    prepared = prepare(args)
    _notes(prepared)
    if args.dry_run or args.offline_dry_run:
        if args.print_run_dir:
            print(f"RUN_DIR={prepared.plan.run_dir}")
        print(describe(prepared.plan, prepared.redactor.mask))
        if args.dry_run and not args.offline_dry_run and prepared.plan.backend == "runpod":
            _print_estimate(prepared)
        return 0
    return _start_and_run(args, prepared)


def _start_and_run(args, prepared: api.Prepared, retried: bool = False) -> int:
    prepared = api.start(prepared)
    run_dir = prepared.plan.run_dir
    if args.print_run_dir:
        print(f"RUN_DIR={run_dir}", flush=True)
    else:
        print(f"RUN_DIR={run_dir}", file=sys.stderr)
    secrets = dict(api.parse_assignments(args.secret_var, "--secret-var"))
    if args.detach:
        from podmagic.run import detached

        detached.spawn(prepared, secrets)
        rid = prepared.plan.run_id
        print(f"detached: {rid}  (podmagic attach {rid} | wait {rid} | logs {rid} -f | stop {rid})",
              file=sys.stderr)
        return 0
    try:
        manifest = api.execute(prepared, listeners=[Printer(), _import_render_meanwhile])
    except KeyboardInterrupt:
        print(f"\n[podmagic] interrupted; run dir {run_dir}", file=sys.stderr)
        return 130
    print(_manifest_text(manifest), file=sys.stderr)
    if manifest.get("failed") and not retried and _stock_out(manifest) and _fallback_ok(args, prepared):
        target = args.fallback_cloud_type
        print(f"[podmagic] stock-out on pod create; retrying with cloud_type={target}", file=sys.stderr)
        again = prepare(args, cloud_type=target)
        return _start_and_run(args, again, retried=True)
    return exit_code(manifest)


def _stock_out(manifest: dict) -> bool:
    first = str(manifest.get("error") or "").split("\n", 1)[0]
    return not manifest.get("pod_id") and "no capacity for any GPU" in first


def _fallback_ok(args, prepared: api.Prepared) -> bool:
    target = getattr(args, "fallback_cloud_type", None)
    if not target or prepared.plan.backend != "runpod":
        return False
    if prepared.spec.storage.mode == "network_volume":
        print("warning: --fallback-cloud-type skipped: a network_volume is SECURE-only", file=sys.stderr)
        return False
    if target == prepared.spec.pod.cloud_type:
        print(f"warning: --fallback-cloud-type {target} matches the configured pod.cloud_type; skipped",
              file=sys.stderr)
        return False
    return True


def exit_code(manifest: dict) -> int:
    """What `run` exits with for a finished run: 0 success, 130 interrupted, 1 failed."""
    if manifest.get("interrupted"):
        return 130
    return 1 if manifest.get("failed") else 0


def _print_estimate(prepared: api.Prepared) -> None:
    from podmagic.ui import catalog

    spec = prepared.spec
    try:
        cat = catalog.fetch(spec.pod.cloud_type, spec.pod.gpu_count)
    except PodmagicError as exc:
        print(f"warning: no live estimate: {exc}", file=sys.stderr)
        return
    est = catalog.estimate(cat, datacenters=spec.pod.datacenters, gpu_order=spec.pod.gpu_order,
                           timeout_sec=spec.budget.timeout_sec, cost_cap_usd=spec.budget.cost_cap_usd,
                           assumed_rate=spec.budget.assumed_hourly_rate_usd, gpu_count=spec.pod.gpu_count)
    print(catalog.estimate_text(est))


def cmd_validate(args) -> int:
    prepared = prepare(args)
    _notes(prepared)
    spec, plan = prepared.spec, prepared.plan
    if spec.storage.mode == "network_volume" and len(spec.pod.datacenters) > 1:
        print("warning: a network volume pins its datacenter; pod.datacenters after the volume's own are "
              "never tried", file=sys.stderr)
    if args.check_local or args.all:
        missing = [str(p) for p in plan.required_paths if not p.exists()]
        if missing:
            raise PodmagicError(f"local.required_paths missing: {', '.join(missing)}")
    if args.check_image or args.all:
        _check_image(spec.pod.image)
    if args.check_availability or args.all:
        from podmagic.ui.cli.catalog import availability

        code = availability(spec)
        if code:
            return code
    print(f"ok: {config_file(args)} schema_version=2 job={plan.job_name}")
    return 0


def _check_image(image: str | None) -> None:
    """runpod-deploy's --check-image-registry: a loud warning for a phantom tag, never a refusal."""
    from podmagic.backends.runpod.registry import check_image

    print(check_image(image), file=sys.stderr)


def cmd_plan(args) -> int:
    prepared = prepare(args)
    _notes(prepared)
    print(describe(prepared.plan, prepared.redactor.mask))
    return 0


def cmd_wait(args) -> int:
    from podmagic.run import follow

    run_dir = store.find_run(root(args), args.run)
    try:
        manifest = follow.wait(run_dir, args.timeout)
    except TimeoutError as exc:
        print(f"podmagic wait: {exc}", file=sys.stderr)
        return 1
    print(_manifest_text(manifest), file=sys.stderr)
    return exit_code(manifest)


def cmd_attach(args) -> int:
    from podmagic.run.follow import Follower

    run_dir = store.find_run(root(args), args.run)
    printer = Printer()
    follower = Follower(run_dir, lambda e: printer(e) if e.kind != "run_finished" else None)
    follower.start()
    try:
        while not follower.done.wait(0.5):
            if store.run_summary(run_dir).get("state") == "lost":
                follower.stop()
                raise RunFailed(f"run {run_dir.name} lost its runner (no process, no manifest); "
                                "see runner.log in its run directory")
    except KeyboardInterrupt:
        follower.stop()
        print(f"\n[podmagic] detached from {run_dir.name}; it keeps running (podmagic stop {run_dir.name})",
              file=sys.stderr)
        return 130
    follower.join(2)
    print(_manifest_text(follower.manifest), file=sys.stderr)
    return exit_code(follower.manifest)


def _latest_of_config(project_root: Path, config: Path) -> Path:
    wanted = str(config.resolve())
    for run_dir in store.iter_run_dirs(project_root):
        inputs = store.RunDir(run_dir).launch() or {}
        if inputs.get("config_path") == wanted:
            return run_dir
    raise PodmagicError(f"no run of {config} under {store.runs_root(project_root)} (podmagic runs lists them)")


def cmd_logs(args) -> int:
    if bool(args.run) == bool(args.config):
        raise PodmagicError("give a RUN or --config FILE")
    project = root(args) if args.project_root or not args.config else args.config.resolve().parent
    run_dir = store.find_run(project, args.run) if args.run else _latest_of_config(project, args.config)
    follow_ = (args.follow or bool(args.config)) and not args.no_follow
    if not follow_:
        sys.stdout.write(history.log_tail(run_dir, args.tail))
        return 0
    return _follow_log(run_dir, args.tail)


def _follow_log(run_dir: Path, lines: int) -> int:
    log = run_dir / "run.log"
    offset = log.stat().st_size if log.exists() else 0
    if offset:
        with log.open("rb") as fh:
            head = fh.read(offset).decode("utf-8", "replace").splitlines(keepends=True)
        sys.stdout.write("".join(head[-lines:]))
        sys.stdout.flush()
    try:
        while True:
            offset = _copy_from(log, offset)
            manifest = store.read_json(run_dir / store.MANIFEST)
            if manifest is not None:
                _copy_from(log, offset)
                return exit_code(manifest)
            if store.run_summary(run_dir).get("state") == "lost":
                raise RunFailed(f"run {run_dir.name} lost its runner (no process, no manifest)")
            time.sleep(0.25)
    except KeyboardInterrupt:
        return 130


def _copy_from(log: Path, offset: int) -> int:
    try:
        with log.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return offset
    if data:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return offset + len(data)


def cmd_stop(args) -> int:
    run_dir = store.find_run(root(args), args.run)
    state = store.run_summary(run_dir).get("state")
    if state not in store.LIVE_STATES:
        manifest = store.RunDir(run_dir).manifest() or {}
        kept = manifest.get("backend") == "runpod" and manifest.get("pod_final_state") in ("EXITED", "RUNNING")
        hint = (f"; its runner is gone: `podmagic cleanup {run_dir.name}` terminates a pod left behind"
                if state == "lost" else
                f"; its pod was kept ({manifest['pod_final_state']}): `podmagic cleanup {run_dir.name}` "
                "terminates it" if kept else "")
        raise PodmagicError(f"run {run_dir.name} already ended ({state or 'no status'}); nothing to stop{hint}")
    store.RunDir(run_dir).request_stop()
    print(f"asked {run_dir.name} to stop")
    return 0


__all__ = ["register", "prepare", "exit_code", "progress_line"]
