"""The `podmagic` command line: the same runs as the cell, from a shell.

    podmagic run FILE [--var k=v] [--secret-var k=v] [--backend B] [--host H] [--dry-run]
    podmagic validate FILE | plan FILE
    podmagic runs [--name N] [--failed] [--since 2h] [--json]
    podmagic show RUN [--json] | logs RUN [--tail N] | stop RUN | capture-env
    podmagic compare A B [C ...] | SWEEP_ID [--json]
    podmagic ls-stale [--json] | cleanup RUN|--all-stopped [--yes]

Exit codes: 0 success, 1 the run failed, 2 bad input (nothing was started),
130 interrupted. Job output goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from podmagic.backends import BACKENDS
from podmagic.errors import PodmagicError
from podmagic.plan.build import describe
from podmagic.run import api, history, provenance, store
from podmagic.run.events import Event
from podmagic.spec.jobspec import SpecError, decode
from podmagic.ui import render


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="podmagic", description="Run %%pod specs from the shell.")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("run", "validate", "plan"):
        s = sub.add_parser(name)
        s.add_argument("file", type=Path)
        s.add_argument("--var", action="append", default=[], metavar="K=V")
        s.add_argument("--secret-var", action="append", default=[], metavar="K=V")
        s.add_argument("--backend", choices=BACKENDS)
        s.add_argument("--host", help="ssh backend: user@host:port or an ~/.ssh/config alias")
        s.add_argument("--root", help="ssh backend: folder on the host standing in for the pod (~ = remote home)")
        if name == "run":
            s.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
            s.add_argument("--force-fresh", action="store_true", help="runpod recycle: replace the kept pod")
    runs = sub.add_parser("runs")
    runs.add_argument("--name")
    runs.add_argument("--failed", action="store_true")
    runs.add_argument("--since", help="e.g. 30m, 2h, 7d")
    runs.add_argument("--limit", type=int, default=50)
    runs.add_argument("--json", action="store_true")
    show = sub.add_parser("show")
    show.add_argument("run")
    show.add_argument("--json", action="store_true")
    logs = sub.add_parser("logs")
    logs.add_argument("run")
    logs.add_argument("--tail", type=int, default=200)
    stop = sub.add_parser("stop")
    stop.add_argument("run")
    sub.add_parser("capture-env")
    ls_stale = sub.add_parser("ls-stale", help="stopped RunPod pods still billing for disk")
    ls_stale.add_argument("--json", action="store_true")
    clean = sub.add_parser("cleanup", help="terminate the pod of RUN, or every stopped pod")
    clean.add_argument("run", nargs="?")
    clean.add_argument("--all-stopped", action="store_true")
    clean.add_argument("--yes", "-y", action="store_true")
    cmp_ = sub.add_parser("compare", help="runs (ids or prefixes) or a sweep id, side by side")
    cmp_.add_argument("refs", nargs="+")
    cmp_.add_argument("--json", action="store_true")
    for s in sub.choices.values():
        s.add_argument("--project-root", type=Path, default=None)
    return p


def _root(args) -> Path:
    return (args.project_root or provenance.git_toplevel(Path.cwd()) or Path.cwd()).resolve()


def _prepare(args) -> api.Prepared:
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise SpecError(f"cannot read {args.file}: {exc.strerror}", source=str(args.file)) from None
    return api.prepare(
        decode(data, source=str(args.file)), cwd=args.file.resolve().parent, backend=api.resolve_backend(args.backend),
        source=str(args.file), variables=api.parse_assignments(args.var, "--var"),
        secret_variables=api.parse_assignments(args.secret_var, "--secret-var"),
        default_name=args.file.stem, config_path=str(args.file.resolve()), is_file=True,
        backend_options={"host": args.host, "root": args.root, "force_fresh": getattr(args, "force_fresh", False)},
    )


class _Printer:
    """Streams job output to stdout and phases/events to stderr."""

    def __call__(self, event: Event) -> None:
        if event.kind == "output":
            sys.stdout.write(event.data.get("text", ""))
            sys.stdout.flush()
        elif event.kind == "phase_started":
            print(f"[podmagic] {event.data['phase']}", file=sys.stderr)
        elif event.kind in ("warning", "error", "placement_attempt", "datacenter_failover", "python_resolved",
                            "lifecycle_applied", "ssh_host_key_trusted", "ssh_reconnect", "pod_killed_unexpected"):
            detail = " ".join(f"{k}={v}" for k, v in event.data.items())
            print(f"[podmagic] {event.kind} {detail}", file=sys.stderr)


def cmd_run(args) -> int:
    prepared = _prepare(args)
    _print_notes(prepared)
    if args.dry_run:
        print(describe(prepared.plan, prepared.redactor.mask))
        return 0
    prepared = api.start(prepared)
    print(f"RUN_DIR={prepared.plan.run_dir}", file=sys.stderr)
    try:
        manifest = api.execute(prepared, listeners=[_Printer()])
    except KeyboardInterrupt:
        print(f"\n[podmagic] interrupted; run dir {prepared.plan.run_dir}", file=sys.stderr)
        return 130
    print(render.manifest_text(manifest), file=sys.stderr)
    return 1 if manifest.get("failed") else 0


def _print_notes(prepared: api.Prepared) -> None:
    for note in prepared.notes:
        print(f"{note.severity}: {note.message}", file=sys.stderr)


def cmd_validate(args) -> int:
    prepared = _prepare(args)
    _print_notes(prepared)
    print(f"ok: {args.file} schema_version=2 job={prepared.plan.job_name}")
    return 0


def cmd_plan(args) -> int:
    prepared = _prepare(args)
    _print_notes(prepared)
    print(describe(prepared.plan, prepared.redactor.mask))
    return 0


def cmd_runs(args) -> int:
    rows = history.list_runs(_root(args), name=args.name, failed=args.failed, since=args.since, limit=args.limit)
    print(json.dumps(rows, indent=2) if args.json else render.table_text(rows))
    return 0


def cmd_show(args) -> int:
    run_dir = store.find_run(_root(args), args.run)
    manifest = store.read_json(run_dir / store.MANIFEST) or store.run_summary(run_dir)
    print(json.dumps(manifest, indent=2) if args.json else render.manifest_text(manifest)
          if "schema_version" in manifest else render.table_text([manifest]))
    return 0


def cmd_logs(args) -> int:
    sys.stdout.write(history.log_tail(store.find_run(_root(args), args.run), args.tail))
    return 0


def cmd_stop(args) -> int:
    run_dir = store.find_run(_root(args), args.run)
    store.RunDir(run_dir).request_stop()
    print(f"asked {run_dir.name} to stop")
    return 0


def cmd_capture_env(args) -> int:
    print(json.dumps(provenance.capture_env(_root(args)), indent=2))
    return 0


def cmd_ls_stale(args) -> int:
    from podmagic.ui import audit

    rows = audit.stale(_root(args))
    print(json.dumps(rows, indent=2) if args.json else audit.stale_text(rows))
    return 0


def cmd_cleanup(args) -> int:
    from podmagic.ui import audit

    if bool(args.run) == args.all_stopped:
        print("podmagic cleanup: give a RUN or --all-stopped", file=sys.stderr)
        return 2
    if args.all_stopped:
        rows = audit.stale(_root(args))
        print(audit.stale_text(rows), file=sys.stderr)
        if not rows:
            return 0
    what = "every stopped pod above" if args.all_stopped else f"the pod of {args.run}"
    if not args.yes and not _confirm(f"terminate {what}? [y/N] "):
        print("not confirmed; nothing terminated", file=sys.stderr)
        return 1
    for pod_id in audit.cleanup(_root(args), args.run, args.all_stopped):
        print(f"terminated {pod_id}")
    return 0


def _confirm(prompt: str) -> bool:
    if not sys.stdin.isatty():
        return False
    print(prompt, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def cmd_compare(args) -> int:
    from podmagic.run import compare

    manifests = history.manifests(_root(args), args.refs)
    rows = compare.side_by_side(manifests)
    if args.json:
        print(json.dumps({"runs": [m["run_id"] for m in manifests], "rows": rows,
                          "consistency": compare.consistency(manifests)}, indent=2, default=str))
        return 0
    table = [{"field": ("* " if r["differs"] else "  ") + r["field"],
              **{str(i): r["values"][i] for i in range(len(manifests))}} for r in rows]
    cols = [("field", "field")] + [(str(i), m["run_id"]) for i, m in enumerate(manifests)]
    print(render.table_text(table, cols))
    for problem in compare.consistency(manifests):
        print(f"reproducibility check: {problem}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = globals()["cmd_" + args.command.replace("-", "_")]
    try:
        return handler(args)
    except SpecError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except PodmagicError as exc:
        print(f"podmagic: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
