"""Reading past runs: `runs`, `ls-runs`, `show`, `events`, `events-query`, `manifest-summary`,
`compare` / `compare-runs`, `capture-env`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from podmagic.errors import PodmagicError
from podmagic.run import history, provenance, store
from podmagic.ui import forensics as fx
from podmagic.ui import render
from podmagic.ui.cli.common import add_root, root


def register(sub) -> None:
    runs = sub.add_parser("runs", help="this project's runs, newest first",
                          description="List runs (live ones too) with status, GPU, cost and interpreter.")
    runs.add_argument("--name", help="only runs whose job name or id contains this")
    runs.add_argument("--failed", action="store_true", help="only failed, interrupted or lost runs")
    runs.add_argument("--since", help="only runs started this recently: 30m, 2h, 7d")
    runs.add_argument("--limit", type=int, default=50)
    runs.add_argument("--json", action="store_true")
    ls = sub.add_parser("ls-runs", help="runpod-deploy's run table, from the manifests",
                        description="timestamp job pod_id gpu dc wall_s failed est_$, one row per finished run.")
    ls.add_argument("--limit", type=int, default=None)
    ls.add_argument("--json", action="store_true")
    show = sub.add_parser("show", help="one run's manifest (the whole error included)")
    show.add_argument("run", metavar="RUN")
    show.add_argument("--json", action="store_true")
    events = sub.add_parser("events", help="a run's events as a timeline",
                            description="[+M:SS] event key=value ..., offsets from the first event.")
    events.add_argument("run", metavar="RUN", help="run id, prefix or run directory")
    events.add_argument("--json", action="store_true")
    query = sub.add_parser("events-query", help="search the events of every run",
                           description="Events of all runs under --root matching every --filter (exact).")
    query.add_argument("--root", type=Path, default=None, help="default: <project>/artifacts/runpod")
    query.add_argument("--filter", action="append", default=[], metavar="K=V",
                       help="keep events whose K equals V (repeatable, all must match)")
    query.add_argument("--since", help="only events this recent: 30s, 5m, 1h, 7d")
    query.add_argument("--json", action="store_true", help="JSON lines, each with its run_dir")
    summ = sub.add_parser("manifest-summary", help="a manifest as key: value; --root sums a whole folder",
                          description="One manifest (a run id, run dir or manifest path), or every manifest "
                                      "under --root with == TOTALS ==.")
    summ.add_argument("manifest", nargs="?", metavar="RUN|MANIFEST")
    summ.add_argument("--root", type=Path, default=None)
    for name in ("compare", "compare-runs"):
        cmp_ = sub.add_parser(name, help="runs (ids, prefixes, run dirs) or a sweep id, side by side"
                              + ("; exit 1 if any failed" if name == "compare-runs" else ""))
        cmp_.add_argument("refs", nargs="+", metavar="RUN")
        cmp_.add_argument("--json", action="store_true")
        cmp_.set_defaults(func=cmd_compare, strict=name == "compare-runs")
    env = sub.add_parser("capture-env", help="the manifest's deploy_metadata for this project, as JSON")
    for p, func in ((runs, cmd_runs), (ls, cmd_ls_runs), (show, cmd_show), (events, cmd_events),
                    (query, cmd_events_query), (summ, cmd_manifest_summary), (env, cmd_capture_env)):
        p.set_defaults(func=func)
    for p in (runs, ls, show, events, query, summ, env, *(sub.choices[n] for n in ("compare", "compare-runs"))):
        add_root(p)


def cmd_runs(args) -> int:
    rows = history.list_runs(root(args), name=args.name, failed=args.failed, since=args.since, limit=args.limit)
    print(json.dumps(rows, indent=2) if args.json else render.table_text(rows))
    return 0


def cmd_ls_runs(args) -> int:
    rows = fx.ls_rows(root(args), args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(render.table_text(rows, fx.LS_COLUMNS))
    return 0


def cmd_show(args) -> int:
    run_dir = fx.resolve_run(root(args), args.run)
    manifest = store.read_json(run_dir / store.MANIFEST) or store.run_summary(run_dir)
    print(json.dumps(manifest, indent=2) if args.json else render.manifest_text(manifest)
          if "schema_version" in manifest else render.table_text([manifest]))
    return 0


def cmd_events(args) -> int:
    from podmagic.run.events import read_events

    run_dir = fx.resolve_run(root(args), args.run)
    events = read_events(run_dir / fx.EVENTS)
    if not events:
        raise PodmagicError(f"run {run_dir.name} has no events ({run_dir / fx.EVENTS} is missing or empty)")
    print("\n".join(json.dumps(e) for e in events) if args.json else fx.timeline(events))
    return 0


def cmd_events_query(args) -> int:
    where = (args.root or store.runs_root(root(args))).resolve()
    found = list(fx.query(where, fx.parse_filters(args.filter), args.since))
    if args.json:
        for event in found:
            print(json.dumps(event, default=str))
    elif found:
        print(fx.query_text(found))
    return 0


def cmd_manifest_summary(args) -> int:
    if bool(args.manifest) == bool(args.root):
        raise PodmagicError("give a RUN (id, run dir or manifest path) or --root DIR")
    if args.manifest:
        run_dir = fx.resolve_run(root(args), args.manifest)
        manifest = store.read_json(run_dir / store.MANIFEST)
        if manifest is None:
            raise PodmagicError(f"run {run_dir.name} has no manifest yet (it may still be running: "
                                f"podmagic wait {run_dir.name})")
        print(fx.summary(manifest))
        return 0
    found = fx.manifests_under(args.root.resolve())
    if not found:
        raise PodmagicError(f"no {store.MANIFEST} under {args.root}")
    print("\n\n".join(fx.summary(m, p) for p, m in found))
    print()
    print(fx.totals([m for _, m in found]))
    return 0


def _manifests(project: Path, refs: list[str]) -> list[dict]:
    direct = []
    for ref in refs:
        path = Path(ref).expanduser()
        if not ref.startswith("sweep-") and path.exists():
            manifest = store.read_json(fx.resolve_run(project, ref) / store.MANIFEST)
            if manifest is None:
                raise PodmagicError(f"{ref} has no manifest (still running, or not a run directory)")
            direct.append(manifest)
        else:
            direct.extend(history.manifests(project, [ref]) if ref.startswith("sweep-")
                          else [_one(project, ref)])
    if len(direct) < 2:
        raise PodmagicError("compare needs at least two finished runs (or a sweep id)")
    return direct


def _one(project: Path, ref: str) -> dict:
    run_dir = store.find_run(project, ref)
    manifest = store.read_json(run_dir / store.MANIFEST)
    if manifest is None:
        raise PodmagicError(f"run {run_dir.name} has not finished (podmagic wait {run_dir.name})")
    return manifest


def first_line(value) -> object:
    """A multi-line value (an error with a traceback) shows its first line in a table."""
    if not isinstance(value, str):
        return value
    first = value.strip().splitlines()[0] if value.strip() else value
    more = first != value.strip() or len(first) > 120
    return first[:120] + " …" if more else first


def cmd_compare(args) -> int:
    from podmagic.run import compare

    manifests = _manifests(root(args), args.refs)
    rows = compare.side_by_side(manifests)
    if args.json:
        print(json.dumps({"runs": [m["run_id"] for m in manifests], "rows": rows,
                          "consistency": compare.consistency(manifests)}, indent=2, default=str))
    else:
        table = [{"field": ("* " if r["differs"] else "  ") + r["field"],
                  **{str(i): first_line(r["values"][i]) for i in range(len(manifests))}} for r in rows]
        cols = [("field", "field")] + [(str(i), m["run_id"]) for i, m in enumerate(manifests)]
        print(render.table_text(table, cols))
        for problem in compare.consistency(manifests):
            print(f"reproducibility check: {problem}", file=sys.stderr)
    if args.strict and any(m.get("failed") for m in manifests):
        return 1
    return 0


def cmd_capture_env(args) -> int:
    print(json.dumps(provenance.capture_env(root(args)), indent=2))
    return 0
