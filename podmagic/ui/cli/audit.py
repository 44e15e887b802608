"""What is left billing on RunPod, and releasing it: `ls-stale`, `cleanup`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from podmagic.errors import PodmagicError
from podmagic.ui import audit
from podmagic.ui.cli.common import add_root, confirm, root


def register(sub) -> None:
    ls = sub.add_parser("ls-stale", help="stopped RunPod pods still billing for disk, and local pods kept on disk",
                        description="BACKEND POD NAME GPU DISK $/day $/mo RUN per stopped pod, and the TOTAL: "
                        "RunPod's (with a key) and this project's local sandboxes whose run finished.")
    ls.add_argument("--json", action="store_true")
    add_root(ls)
    ls.set_defaults(func=cmd_ls_stale)
    clean = sub.add_parser("cleanup", help="terminate (or stop) the pod of RUN, of a state file, or every "
                           "stopped pod", description="Exactly one of RUN, --state-file P, --all-stopped.")
    clean.add_argument("run", nargs="?", metavar="RUN")
    clean.add_argument("--all-stopped", action="store_true")
    clean.add_argument("--state-file", type=Path, metavar="P", help="runpod-deploy's pointer {pod_id, ...}")
    clean.add_argument("--mode", choices=("delete", "stop", "preserve"), default="delete",
                       help="with RUN or --state-file: delete (terminate, default), stop, or preserve")
    clean.add_argument("--yes", "-y", action="store_true", help="do not ask")
    clean.add_argument("--dry-run", action="store_true", help="say what would be done; do nothing")
    add_root(clean)
    clean.set_defaults(func=cmd_cleanup)


def cmd_ls_stale(args) -> int:
    rows = audit.stale(root(args))
    if audit.note():
        print(audit.note(), file=sys.stderr)
    print(json.dumps(rows, indent=2) if args.json else audit.stale_text(rows))
    return 0


def cmd_cleanup(args) -> int:
    if sum(map(bool, (args.run, args.all_stopped, args.state_file))) != 1:
        raise PodmagicError("give exactly one of RUN, --state-file P or --all-stopped (podmagic ls-stale "
                            "lists stopped pods)")
    if args.state_file:
        pod_id = audit.state_file_pod(args.state_file)
        what = f"{args.mode} pod {pod_id} (from {args.state_file})"
    elif args.all_stopped:
        rows = audit.stale(root(args))
        print(audit.stale_text(rows) + (f"\n{audit.note()}" if audit.note() else ""), file=sys.stderr)
        if not rows:
            return 0
        what = f"terminate {len(rows)} stopped pod{'s' if len(rows) != 1 else ''} above"
    else:
        what = f"{args.mode} the pod of {args.run}"
    if args.dry_run:
        print(f"dry run: would {what}")
        return 0
    if args.mode == "preserve" and not args.all_stopped:
        print(f"preserve: nothing done; the pod keeps billing ({what})", file=sys.stderr)
        return 0
    if not args.yes and not confirm(f"{what}? [y/N] "):
        print("not confirmed (give --yes); nothing done", file=sys.stderr)
        return 1
    if args.state_file:
        print(audit.release(pod_id, args.mode, args.state_file))
        return 0
    for pod_id in audit.cleanup(root(args), args.run, args.all_stopped, mode=args.mode):
        print(f"{'stopped' if args.mode == 'stop' and not args.all_stopped else 'terminated'} {pod_id}")
    return 0
