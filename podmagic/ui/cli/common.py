"""What the CLI's commands share: the project root, the config argument, the event printer."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from podmagic.errors import PodmagicError
from podmagic.run import provenance
from podmagic.run.events import Event


def add_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project-root", type=Path, default=None,
                   help="the project whose artifacts/runpod/ holds the runs (default: the git repository "
                        "around the current folder)")


def add_config(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("file", nargs="?", type=Path, metavar="FILE", help="the YAML spec (runpod-deploy's config)")
    p.add_argument("--config", type=Path, dest="config", metavar="FILE", help="the same, runpod-deploy style")
    p.set_defaults(config_required=required)


def config_file(args: argparse.Namespace) -> Path | None:
    given = [p for p in (getattr(args, "file", None), getattr(args, "config", None)) if p is not None]
    if len(given) == 2 and given[0] != given[1]:
        raise PodmagicError(f"two config files given ({given[0]} and --config {given[1]}); give one")
    if not given and getattr(args, "config_required", True):
        raise PodmagicError("give the config file: FILE or --config FILE")
    return given[0] if given else None


def root(args: argparse.Namespace) -> Path:
    return (args.project_root or provenance.git_toplevel(Path.cwd()) or Path.cwd()).resolve()


def confirm(prompt: str) -> bool:
    if not sys.stdin.isatty():
        return False
    print(prompt, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


PROGRESS = ("warning", "error", "placement_attempt", "datacenter_failover", "python_resolved", "lifecycle_applied",
            "ssh_host_key_trusted", "ssh_reconnect", "pod_killed_unexpected", "gpu_selected", "cloud_type_fallback",
            "api_retry")


def progress_line(event: Event) -> str | None:
    """One stderr line for an event worth showing (None: not shown). No field is printed as None."""
    if event.kind == "phase_started":
        return f"[podmagic] {event.data['phase']}"
    if event.kind not in PROGRESS:
        return None
    if event.kind == "placement_attempt" and event.data.get("outcome") == "trying":
        return None
    detail = " ".join(f"{k}={v}" for k, v in event.data.items() if v is not None and v != "")
    return f"[podmagic] {event.kind.replace('_', ' ')}" + (f" {detail}" if detail else "")


class Printer:
    """Streams job output to stdout and phases/events to stderr."""

    def __call__(self, event: Event) -> None:
        if event.kind == "output":
            sys.stdout.write(event.data.get("text", ""))
            sys.stdout.flush()
            return
        line = progress_line(event)
        if line:
            print(line, file=sys.stderr)
