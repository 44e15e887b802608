"""IPython front end: the `%%pod` cell magic and the `%pod` line magic.

`%%pod [--dry-run] [--var k=v ...] [--secret-var k=v ...] [--backend B] [--host H] [--root R]
[--name N] [-o NAME] [--detach] [--sweep k=v1,v2 ...] [--sweep-file F] [--max-parallel N]
[--fail-fast] [--force-fresh]` runs the cell's YAML. Without --detach it blocks until the run
ends (interrupt = cancel), showing the live run view; at the end the view becomes static HTML
(the manifest table and a log excerpt) with relaunch controls under it.
`%%pod --estimate` prints where the cell would land and at what price (nothing created).
`%pod runs|show|logs|events|stop|attach|wait|compare|ls-stale|cleanup|capture-env|reproduce` work on
the run store; `%pod gpus` shows RunPod's GPUs × datacenters with stock and $/h. Errors are one line, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import HTML, display
from traitlets import Unicode

from podmagic.backends import BACKENDS
from podmagic.errors import PodmagicError, close_matches
from podmagic.plan.build import describe
from podmagic.run import api, history, provenance, store
from podmagic.run.results import Run
from podmagic.ui import render

PodError = UsageError
"""IPython shows exactly UsageError (not subclasses) as one line, without a traceback."""


def _cell_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="%%pod", add_help=False, exit_on_error=False)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--var", action="append", default=[])
    p.add_argument("--secret-var", action="append", default=[])
    p.add_argument("--backend", choices=BACKENDS)
    p.add_argument("--host")
    p.add_argument("--root")
    p.add_argument("--name")
    p.add_argument("--detach", action="store_true")
    p.add_argument("-o", "--out", dest="out")
    p.add_argument("--sweep", action="append", default=[])
    p.add_argument("--sweep-file")
    p.add_argument("--max-parallel", type=int, default=4)
    p.add_argument("--fail-fast", action="store_true")
    p.add_argument("--canonical", action="store_true")
    p.add_argument("--force-fresh", action="store_true")
    p.add_argument("--estimate", action="store_true")
    p.add_argument("--vars-file")
    p.add_argument("--cost-cap-usd", type=float)
    p.add_argument("--max-runtime-minutes", type=int)
    p.add_argument("--gpu-id")
    p.add_argument("--datacenter-id")
    return p


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # noqa: D401 - argparse hook
        raise PodError(f"{self.prog}: {message}")


@magics_class
class PodMagic(Magics):
    backend = Unicode(None, allow_none=True, help="Default backend: local, ssh or runpod.").tag(config=True)
    last_project_root: Path | None = None

    @line_cell_magic
    def pod(self, line: str, cell: str | None = None):
        try:
            if cell is None:
                return self._line(line)
            return self._cell(line, cell)
        except PodmagicError as exc:  # SpecError included; anything else is a bug and shows as one
            raise PodError(str(exc)) from None

    # ------------------------------------------------------------ %%pod

    def _cell(self, line: str, cell: str):
        args = self._parse(_cell_parser(), line)
        if args.sweep or args.sweep_file:
            return self._sweep(args, cell)
        prepared = self._prepare(args, cell)
        for note in prepared.notes:
            print(f"{note.severity}: {note.message}", file=sys.stderr)
        if args.estimate:
            return self._estimate(prepared)
        if args.dry_run:
            print(describe(prepared.plan, prepared.redactor.mask))
            return None
        prepared = api.start(prepared)
        self.last_project_root = prepared.plan.project_root
        if args.out:
            self.shell.user_ns[args.out] = Run(prepared.plan.run_dir)
        secrets = dict(api.parse_assignments(args.secret_var, "--secret-var"))
        if args.detach:
            return self._run_detached(prepared, secrets)
        return self._run_blocking(prepared, secrets)

    def _parse(self, parser: argparse.ArgumentParser, line: str) -> argparse.Namespace:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise PodError(f"{parser.prog}: cannot read the options: {exc}") from None
        try:
            args, extra = parser.parse_known_args(words)
        except (argparse.ArgumentError, SystemExit) as exc:
            raise PodError(f"{parser.prog}: {exc}") from None
        if extra:
            raise PodError(f"{parser.prog}: unknown option(s): {' '.join(extra)}")
        return args

    def _prepare_kw(self, args: argparse.Namespace) -> dict:
        backend = api.resolve_backend(args.backend, self.backend)
        api.check_backend(backend, {"host": args.host})
        return dict(
            cwd=Path.cwd(), backend=backend, line_offset=1,
            secret_variables=api.parse_assignments(args.secret_var, "--secret-var"),
            default_name=_notebook_name(self.shell),
            backend_options={"host": args.host, "root": args.root, "force_fresh": args.force_fresh},
            canonical=args.canonical,
        )

    def _prepare(self, args: argparse.Namespace, cell: str) -> api.Prepared:
        text = cell if not args.name else _with_name(cell, args.name)
        return api.prepare(text, variables=_variables(args), overrides=_overrides(args), **self._prepare_kw(args))

    def _estimate(self, prepared: api.Prepared):
        """`%%pod --estimate`: where the cell would land, at what price; nothing is created."""
        from podmagic.ui import catalog

        spec = prepared.spec
        cat = catalog.fetch(spec.pod.cloud_type, spec.pod.gpu_count)
        est = catalog.estimate(cat, datacenters=spec.pod.datacenters, gpu_order=spec.pod.gpu_order,
                               timeout_sec=spec.budget.timeout_sec, cost_cap_usd=spec.budget.cost_cap_usd,
                               assumed_rate=spec.budget.assumed_hourly_rate_usd, gpu_count=spec.pod.gpu_count)
        print(catalog.estimate_text(est))
        return est

    def _run_blocking(self, prepared: api.Prepared, secrets: dict[str, str]):
        from podmagic.ui.relaunch import RelaunchControls
        from podmagic.ui.widgets import Block, RunView

        plan = prepared.plan
        view = RunView(plan.run_id, plan.job_name, plan.backend, run_dir=plan.run_dir, cost_cap=plan.cost_cap_usd)
        view.stop_button.layout.display = "none"  # a busy kernel cannot take clicks: interrupt stops
        block = Block(view.widget, plan.run_id)
        manifest = None
        try:
            manifest = api.execute(prepared, listeners=[view.on_event])
        finally:
            manifest = manifest or store.read_json(plan.run_dir / store.MANIFEST)
            view.finish(manifest)
            block.end(view.final_html(manifest))
        if manifest:
            controls = RelaunchControls(prepared, manifest, secrets)
            CONTROLS.append(controls)
            display(controls.widget)
        if manifest and manifest.get("failed"):
            raise PodError(f"run {plan.run_id} failed: {manifest.get('error')}  (run dir: {plan.run_dir})")
        return None

    def _run_detached(self, prepared: api.Prepared, secrets: dict[str, str]):
        from podmagic.run import detached

        detached.spawn(prepared, secrets)
        self._follow_view(prepared.plan.run_dir)
        print(f"detached: {prepared.plan.run_id} (%pod attach / wait / stop {prepared.plan.run_id})")

    def _follow_view(self, run_dir: Path):
        """A live view fed from the run directory by a background thread (detach, attach)."""
        from podmagic.run.follow import Follower
        from podmagic.ui.widgets import Block, RunView

        finished = store.RunDir(run_dir).manifest()
        if finished is not None:  # nothing left to follow: its record
            return _show_record(run_dir, finished)
        status = store.read_json(run_dir / store.STATUS) or {}
        view = RunView(run_dir.name, status.get("job_name") or run_dir.name, status.get("backend") or "?",
                       on_stop=lambda: store.RunDir(run_dir).request_stop(), run_dir=run_dir,
                       cost_cap=status.get("cost_cap_usd"))
        block = Block(view.widget, run_dir.name)

        def on_event(event):
            view.on_event(event)
            if event.kind == "run_finished":
                view.finish(follower.manifest)
                block.end(view.final_html(follower.manifest))

        follower = Follower(run_dir, on_event)
        follower.start()
        FOLLOWERS.append((view, follower))
        return view

    def _sweep(self, args: argparse.Namespace, cell: str):
        from podmagic.run import compare as compare_mod
        from podmagic.run import sweep as sweep_mod
        from podmagic.ui.sweepview import SweepView

        combos = sweep_mod.grid(sweep_mod.parse_axes(args.sweep))
        if args.sweep_file:
            file_combos = sweep_mod.load_file(Path(args.sweep_file))
            combos = [{**a, **b} for a in (combos or [{}]) for b in file_combos]
        text = cell if not args.name else _with_name(cell, args.name)
        sweep_id, shards = sweep_mod.prepare(text, combos, base_variables=_variables(args),
                                             overrides=_overrides(args), **self._prepare_kw(args))
        for note in {n for s in shards for n in s.prepared.notes}:
            print(f"{note.severity}: {note.message}", file=sys.stderr)
        if args.dry_run:
            for shard in shards:
                print(describe(shard.prepared.plan, shard.prepared.redactor.mask), end="\n\n")
            return None
        self.last_project_root = shards[0].prepared.plan.project_root
        secrets = dict(api.parse_assignments(args.secret_var, "--secret-var"))
        sweep = sweep_mod.Sweep(sweep_id, shards, self.last_project_root, max_parallel=max(1, args.max_parallel),
                                fail_fast=args.fail_fast, secret_values=secrets).start()
        view = SweepView(sweep).show()
        SWEEPS.append((sweep, view))
        if args.out:
            self.shell.user_ns[args.out] = sweep
        if args.detach:
            print(f"detached sweep {sweep_id}: %pod compare {sweep_id}")
            return None
        try:
            manifests = sweep.wait()
        except KeyboardInterrupt:
            sweep.stop()
            sweep.wait(120)
            raise
        view.wait(5)
        view.end()
        done = [m for m in manifests if m]
        problems = compare_mod.consistency(done)
        for problem in problems:
            print(f"reproducibility check: {problem}", file=sys.stderr)
        failed = [m["run_id"] for m in done if m.get("failed")]
        cancelled = [_shard_name(s) for s in shards if s.state == "cancelled"]
        if failed or cancelled:
            parts = [f"{len(failed)} of {_count(len(shards), 'shard')} failed: {', '.join(failed)}"] if failed else []
            if cancelled:
                parts.append(f"{_count(len(cancelled), 'shard')} cancelled by --fail-fast, never started: "
                             f"{', '.join(cancelled)}")
            raise PodError(f"sweep {sweep_id}: " + "; ".join(parts))
        return None

    # ------------------------------------------------------------ %pod

    def _line(self, line: str):
        words = shlex.split(line)
        if not words:
            raise PodError(f"%pod: give a command: {', '.join(LINE_COMMANDS)}")
        command, rest = words[0], words[1:]
        handler = getattr(self, "_cmd_" + command.replace("-", "_"), None)
        if handler is None:
            close = close_matches(command, LINE_COMMANDS, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise PodError(f"%pod: unknown command {command!r}; {hint}commands: {', '.join(LINE_COMMANDS)}")
        return handler(rest)

    def _root(self) -> Path:
        """The project of the last run in this session, else the repository around the notebook."""
        return self.last_project_root or provenance.git_toplevel(Path.cwd()) or Path.cwd()

    def _cmd_runs(self, rest: list[str]):
        p = _Parser(prog="%pod runs", add_help=False)
        p.add_argument("--name")
        p.add_argument("--failed", action="store_true")
        p.add_argument("--since")
        p.add_argument("--limit", type=int, default=50)
        args = p.parse_args(rest)
        found = history.list_runs(self._root(), name=args.name, failed=args.failed, since=args.since,
                                  limit=args.limit)
        display(HTML(render.table_html(found)))

    def _cmd_show(self, rest: list[str]):
        run_dir = self._find(rest)
        manifest = store.read_json(run_dir / store.MANIFEST)
        if manifest is None:
            status = store.read_json(run_dir / store.STATUS) or {}
            display(HTML(render.table_html([store.run_summary(run_dir)])))
            return status
        display(HTML(render.manifest_html(manifest, run_dir=run_dir, open_=True)))

    def _cmd_logs(self, rest: list[str]):
        p = _Parser(prog="%pod logs", add_help=False)
        p.add_argument("run")
        p.add_argument("--tail", type=int, default=200)
        args = p.parse_args(rest)
        run_dir = self._find([args.run])
        tail = store.RunDir(run_dir).log_tail(args.tail)
        display(HTML(f"<div class='podmagic-logs {render.NOMATH}'>{render.links_html(run_dir)}"
                     f"{render.log_pre(tail.text, '40em')}</div>"))

    def _cmd_stop(self, rest: list[str]):
        run_dir = self._find(rest)
        state = store.run_summary(run_dir).get("state")
        if state not in store.LIVE_STATES:
            raise PodError(f"run {run_dir.name} already ended ({state or 'no status'}); nothing to stop"
                           f" (%pod cleanup {run_dir.name} --yes terminates a pod it kept)")
        store.RunDir(run_dir).request_stop()
        print(f"asked {run_dir.name} to stop")

    def _cmd_gpus(self, rest: list[str]):
        """`%pod gpus [--datacenter DC] [--gpu TEXT] [--cloud-type C] [--no-prices]`: stock × $/h."""
        from podmagic.ui import catalog

        p = _Parser(prog="%pod gpus", add_help=False)
        p.add_argument("--datacenter")
        p.add_argument("--gpu")
        p.add_argument("--cloud-type", choices=("SECURE", "COMMUNITY"), default="SECURE")
        p.add_argument("--no-prices", action="store_true")
        args = p.parse_args(rest)
        cat = catalog.fetch(args.cloud_type)
        rows = catalog.table(cat, args.datacenter, prices=not args.no_prices, gpu_filter=args.gpu)
        display(HTML(render.table_html(rows, catalog.table_columns(not args.no_prices))))
        return rows

    def _cmd_events(self, rest: list[str]):
        from podmagic.run.events import read_events
        from podmagic.ui import forensics

        events = read_events(self._find(rest) / forensics.EVENTS)
        print(forensics.timeline(events) if events else "(no events)")

    def _cmd_attach(self, rest: list[str]):
        run_dir = self._find(rest)
        self._follow_view(run_dir)

    def _cmd_wait(self, rest: list[str]):
        from podmagic.run.follow import wait

        run_dir = self._find(rest)
        try:
            manifest = wait(run_dir)
        except (PodmagicError, TimeoutError) as exc:
            raise PodError(str(exc)) from None
        _show_record(run_dir, manifest)
        return Run(run_dir)

    def _cmd_reproduce(self, rest: list[str]):
        """`%pod reproduce RUN [--backend B] [--host H] [--rtol R] [--atol A] [--secret-var k=v]`."""
        from podmagic.run import reproduce as repro
        from podmagic.ui import reproduce_view
        from podmagic.ui.widgets import RunView

        p = _Parser(prog="%pod reproduce", add_help=False)
        p.add_argument("run")
        p.add_argument("--backend", choices=BACKENDS)
        p.add_argument("--host")
        p.add_argument("--rtol", type=float, default=0.0)
        p.add_argument("--atol", type=float, default=0.0)
        p.add_argument("--secret-var", action="append", default=[])
        args = p.parse_args(rest)
        live: dict = {}

        def started(prepared):
            plan = prepared.plan
            live["view"] = RunView(plan.run_id, plan.job_name, plan.backend, run_dir=plan.run_dir)
            live["handle"] = display(live["view"].widget, display_id=True)

        report = repro.reproduce(self._root(), args.run, backend=args.backend, host=args.host,
                                 secret_values=dict(api.parse_assignments(args.secret_var, "--secret-var")),
                                 tolerance=repro.Tolerance(args.rtol, args.atol), on_started=started,
                                 listeners=[lambda event: live and live["view"].on_event(event)])
        if live:
            live["view"].finish(store.RunDir(Path(report["run_dir"])).manifest())
            live["handle"].update(HTML(reproduce_view.html_report(report)))
            live["view"].widget.close()
        else:
            display(HTML(reproduce_view.html_report(report)))
        return None

    def _cmd_compare(self, rest: list[str]):
        show_all = "--all" in rest
        rest = [r for r in rest if r != "--all"]
        if not rest:
            raise PodError("%pod compare: give runs (two or more) or a sweep id [--all]")
        try:
            manifests = history.manifests(self._root(), rest)
        except PodmagicError as exc:
            raise PodError(str(exc)) from None
        from podmagic.ui import charts

        runs = store.runs_root(self._root())
        overlay = charts.compare_charts({m["run_id"]: runs / m["run_id"] for m in manifests if m.get("run_id")})
        display(HTML(render.compare_html(manifests, show_all=show_all) + overlay))
        from podmagic.run import compare as compare_mod

        for problem in compare_mod.consistency(manifests):
            print(f"reproducibility check: {problem}", file=sys.stderr)

    def _cmd_ls_stale(self, rest: list[str]):
        from podmagic.ui import audit

        rows = audit.stale(self._root())
        print(audit.stale_text(rows) + (f"\n{audit.note()}" if audit.note() else ""))
        return rows

    def _cmd_cleanup(self, rest: list[str]):
        from podmagic.ui import audit

        p = _Parser(prog="%pod cleanup", add_help=False)
        p.add_argument("run", nargs="?")
        p.add_argument("--all-stopped", action="store_true")
        p.add_argument("--yes", "-y", action="store_true")
        args = p.parse_args(rest)
        if bool(args.run) == args.all_stopped or not args.yes:
            raise PodError("%pod cleanup RUN --yes, or %pod cleanup --all-stopped --yes (see %pod ls-stale first)")
        for pod_id in audit.cleanup(self._root(), args.run, args.all_stopped):
            print(f"terminated {pod_id}")

    def _cmd_capture_env(self, rest: list[str]):
        meta = provenance.capture_env(self._root())
        print(json.dumps(meta, indent=2))
        return meta

    def _find(self, rest: list[str]) -> Path:
        if len(rest) != 1:
            raise PodError("%pod: give one run id (see %pod runs)")
        try:
            return store.find_run(self._root(), rest[0])
        except PodmagicError as exc:
            raise PodError(str(exc)) from None


LINE_COMMANDS = ("runs", "show", "logs", "events", "stop", "attach", "wait", "compare", "gpus", "ls-stale",
                 "cleanup", "capture-env", "reproduce")
CONTROLS: list = []
FOLLOWERS: list = []
SWEEPS: list = []


def last_controls():
    """The relaunch controls of the last blocking run (for scripts and tests)."""
    return CONTROLS[-1] if CONTROLS else None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _shard_name(shard) -> str:
    return ",".join(f"{k}={v}" for k, v in shard.variables.items()) or "(no variables)"


def _variables(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    from_file = api.load_vars_file(Path(args.vars_file)) if args.vars_file else ()
    given = api.parse_assignments(args.var, "--var")
    names = {k for k, _ in given}
    return tuple((k, v) for k, v in from_file if k not in names) + given


def _overrides(args: argparse.Namespace) -> dict:
    if (args.gpu_id is None) != (args.datacenter_id is None):
        raise PodError("%%pod: --gpu-id and --datacenter-id go together (both pin the placement)")
    return {"cost_cap_usd": args.cost_cap_usd, "max_runtime_minutes": args.max_runtime_minutes,
            "gpu_order": (args.gpu_id,) if args.gpu_id else None,
            "datacenters": (args.datacenter_id,) if args.datacenter_id else None}


def manifest_html_with_title(manifest: dict) -> str:
    return render.manifest_html(manifest, f"{manifest.get('job_name')} · {manifest.get('run_id')}")


def _show_record(run_dir: Path, manifest: dict) -> None:
    """A finished run's static record in this cell, and in the block that followed it live, if any."""
    from podmagic.ui.widgets import BLOCKS

    tail = store.RunDir(run_dir).log_tail()
    from podmagic.ui.charts import run_dir_charts

    record = render.run_html(manifest, log_text=tail.text, total_lines=len(tail.lines), run_dir=run_dir,
                             charts=run_dir_charts(run_dir))
    display(HTML(record))
    block = BLOCKS.get(run_dir.name)
    if block is not None:
        block.end(record)


def _with_name(cell: str, name: str) -> str:
    """`--name` overrides the YAML's `name:`; done on the text so positions stay right."""
    escaped = json.dumps(name)
    lines = cell.splitlines()
    for i, raw in enumerate(lines):
        if raw.startswith("name:"):
            lines[i] = f"name: {escaped}"
            return "\n".join(lines) + "\n"
    return cell.rstrip("\n") + f"\nname: {escaped}\n"


def _notebook_name(shell) -> str:
    session = (shell.user_ns.get("__session__") if shell else None) or os.environ.get("JPY_SESSION_NAME")
    return Path(session).stem if session else "pod"


def load_ipython_extension(ipython) -> None:
    ipython.register_magics(PodMagic)
