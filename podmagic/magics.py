"""IPython front end: the `%%pod` cell magic and the `%pod` line magic.

`%%pod [--dry-run] [--var k=v ...] [--secret-var k=v ...] [--backend B] [--host H] [--name N]`
runs the cell's YAML and blocks until the run ends (interrupt = cancel),
showing the live run view; at the end the view becomes static HTML (the
manifest table and a log excerpt). `%pod runs|show|logs|stop|capture-env`
work on the run store. Errors are one line, without a traceback.
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

from . import api, history, manifest as manifest_mod, provenance, render, store
from .plan import describe
from .spec import SpecError


PodError = UsageError
"""IPython shows exactly UsageError (not subclasses) as one line, without a traceback."""


def _cell_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="%%pod", add_help=False, exit_on_error=False)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--var", action="append", default=[])
    p.add_argument("--secret-var", action="append", default=[])
    p.add_argument("--backend", choices=("local", "ssh", "runpod"))
    p.add_argument("--host")
    p.add_argument("--name")
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
        except SpecError as exc:
            raise PodError(str(exc)) from None

    # ------------------------------------------------------------ %%pod

    def _cell(self, line: str, cell: str):
        args = self._parse(_cell_parser(), line)
        prepared = self._prepare(args, cell)
        for note in prepared.notes:
            print(f"{note.severity}: {note.message}", file=sys.stderr)
        if args.dry_run:
            print(describe(prepared.plan, prepared.redactor.mask))
            return None
        prepared = api.start(prepared)
        self.last_project_root = prepared.plan.project_root
        return self._run_blocking(prepared)

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

    def _prepare(self, args: argparse.Namespace, cell: str) -> api.Prepared:
        backend = api.resolve_backend(args.backend, self.backend)
        options = {"host": args.host} if args.host else {}
        text = cell if not args.name else _with_name(cell, args.name)
        return api.prepare(
            text, cwd=Path.cwd(), backend=backend, line_offset=1,
            variables=api.parse_assignments(args.var, "--var"),
            secret_variables=api.parse_assignments(args.secret_var, "--secret-var"),
            default_name=_notebook_name(self.shell), backend_options=options,
        )

    def _run_blocking(self, prepared: api.Prepared):
        from .widgets import RunView

        plan = prepared.plan
        view = RunView(plan.run_id, plan.job_name, plan.backend)
        view.stop_button.layout.display = "none"  # a busy kernel cannot take clicks: interrupt stops
        handle = display(view.widget, display_id=True)
        manifest = None
        try:
            manifest = api.execute(prepared, listeners=[view.on_event])
        finally:
            view.flush(force=True)
            manifest = manifest or store.read_json(plan.run_dir / store.MANIFEST)
            handle.update(HTML(view.final_html(manifest)))
            view.widget.close()
        if manifest and manifest.get("failed"):
            raise PodError(f"run {plan.run_id} failed: {manifest.get('error')}  (run dir: {plan.run_dir})")
        return None

    # ------------------------------------------------------------ %pod

    def _line(self, line: str):
        words = shlex.split(line)
        if not words:
            raise PodError("%pod: give a command: runs, show RUN, logs RUN, stop RUN, capture-env")
        command, rest = words[0], words[1:]
        handler = getattr(self, "_cmd_" + command.replace("-", "_"), None)
        if handler is None:
            raise PodError(f"%pod: unknown command {command!r}; try runs, show, logs, stop, capture-env")
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
        display(HTML(manifest_html_with_title(manifest)))

    def _cmd_logs(self, rest: list[str]):
        p = _Parser(prog="%pod logs", add_help=False)
        p.add_argument("run")
        p.add_argument("--tail", type=int, default=200)
        args = p.parse_args(rest)
        run_dir = self._find([args.run])
        print(history.log_tail(run_dir, args.tail))

    def _cmd_stop(self, rest: list[str]):
        run_dir = self._find(rest)
        store.request_stop(run_dir)
        print(f"asked {run_dir.name} to stop")

    def _cmd_capture_env(self, rest: list[str]):
        meta = provenance.capture(self._root())
        print(json.dumps(meta, indent=2))
        return meta

    def _find(self, rest: list[str]) -> Path:
        if len(rest) != 1:
            raise PodError("%pod: give one run id (see %pod runs)")
        try:
            return store.find_run(self._root(), rest[0])
        except KeyError as exc:
            raise PodError(str(exc.args[0])) from None


def manifest_html_with_title(manifest: dict) -> str:
    return render.manifest_html(manifest, f"{manifest.get('job_name')} · {manifest.get('run_id')}")


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
