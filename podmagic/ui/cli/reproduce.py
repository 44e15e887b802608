"""`podmagic reproduce RUN`: re-run a run from its run directory and report whether it reproduced.

Exit 0 when the environment matches and the metrics are within tolerance, 1 when something
differs (each difference named), 2 when the run cannot be re-created (nothing was started), 130
interrupted. The report goes to stdout (text, or `--json`); the re-run's progress to stderr.
"""

from __future__ import annotations

import json
import sys

from podmagic.backends import BACKENDS
from podmagic.run import api
from podmagic.run import reproduce as repro
from podmagic.ui import reproduce_view
from podmagic.ui.cli.common import Printer, add_root, root


def register(sub) -> None:
    p = sub.add_parser("reproduce", help="re-run a run exactly as recorded and compare", description=(
        "Check out the run's git SHA into a temporary worktree, apply its recorded diff, check the lockfile "
        "and the staged files, run the recorded spec (variables, pin) on the recorded backend, and compare "
        "environment and metrics. Exit 0 reproduced, 1 differs, 2 cannot be re-created (nothing started)."))
    p.add_argument("run", metavar="RUN", help="run id or unique prefix (see podmagic runs)")
    p.add_argument("--backend", choices=BACKENDS, help="run on this backend (default: the recorded one)")
    p.add_argument("--host", help="the ssh host (default: the recorded one)")
    p.add_argument("--secret-var", action="append", default=[], metavar="NAME=VALUE",
                   help="a --secret-var the run was given (values are never recorded)")
    p.add_argument("--rtol", type=float, default=0.0, help="relative tolerance for metrics (default 0)")
    p.add_argument("--atol", type=float, default=0.0, help="absolute tolerance for metrics (default 0)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_root(p)
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args) -> int:
    report = repro.reproduce(
        root(args), args.run, backend=args.backend, host=args.host,
        secret_values=dict(api.parse_assignments(args.secret_var, "--secret-var")),
        tolerance=repro.Tolerance(rtol=args.rtol, atol=args.atol), listeners=[_Progress()],
        on_started=lambda p: print(f"RUN_DIR={p.plan.run_dir}", file=sys.stderr))
    print(json.dumps(report, indent=2, default=str) if args.json else reproduce_view.text(report))
    return repro.exit_code(report)


class _Progress(Printer):
    """The re-run's output and progress both go to stderr: stdout is the report."""

    def __call__(self, event) -> None:
        if event.kind == "output":
            sys.stderr.write(event.data.get("text", ""))
            return
        super().__call__(event)
