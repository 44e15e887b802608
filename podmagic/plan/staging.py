"""Which local files a staging entry sends, with rsync's exclude meaning.

Patterns follow rsync: a trailing `/` matches directories only; a pattern
without `/` or `**` matches a name at any depth; one with a `/` matches the
path (anchored at the transfer root when it starts with `/`, else at any
directory boundary); `*` stops at `/`, `**` does not, and a leading `**/`
also matches at the top. Excluding a directory excludes what is inside.
`select` walks the tree once, pruning excluded directories; `git_files` is
the default project selection (tracked plus untracked-not-ignored files).
A symlink is an entry of its own (rsync `-a`): listed, never followed, even
when it points at a folder.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from podmagic.records import record

ALWAYS_EXCLUDED = ("/artifacts/runpod/",)
"""Run directories never travel back to the pod."""


@record
class Selection:
    """Files (relative to `base`, posix) that go to `destination` on the pod."""

    base: Path
    files: tuple[str, ...]
    destination: str
    single_file: bool = False


@lru_cache(maxsize=512)
def _compile(pattern: str) -> tuple[re.Pattern[str], bool]:
    dir_only = pattern.endswith("/")
    body = pattern.rstrip("/")
    anchored = body.startswith("/")
    body = body.lstrip("/")
    if "/" not in body and "**" not in body and not anchored:
        return re.compile(r"(?:^|.*/)" + _translate(body) + "$"), dir_only
    prefix = "^" if anchored else r"(?:^|.*/)"
    return re.compile(prefix + _translate(body) + "$"), dir_only


def _translate(glob: str) -> str:
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append(r"(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[" and "]" in glob[i + 1 :]:
            end = glob.index("]", i + 1)
            out.append("[" + glob[i + 1 : end].replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out)


def excluded(rel: str, is_dir: bool, patterns: Iterable[str]) -> bool:
    """Whether `rel` (posix, relative to the transfer root) is excluded."""
    for pattern in patterns:
        regex, dir_only = _compile(pattern)
        if dir_only and not is_dir:
            continue
        if regex.match(rel):
            return True
    return False


def walk(base: Path, patterns: tuple[str, ...]) -> list[str]:
    """All files and symlinks under `base` not excluded, pruning excluded directories."""
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(base):
        rel_dir = os.path.relpath(dirpath, base).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]  # entries, as rsync -a sends them
        dirnames[:] = sorted(d for d in dirnames if d not in links and not excluded(rel_dir + d, True, patterns))
        files.extend(rel_dir + f for f in sorted(filenames + links) if not excluded(rel_dir + f, False, patterns))
    return files


def git_files(root: Path) -> list[str] | None:
    """Tracked and untracked-not-ignored files of the repository at `root`."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True, check=True, timeout=60,
        ).stdout
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    names = sorted({n for n in out.decode("utf-8", "surrogateescape").split("\0") if n})
    return [n for n in names if (root / n).is_file() or (root / n).is_symlink()]


def select(source: str, destination: str, patterns: tuple[str, ...], *,
           use_git: bool = False) -> Selection:
    """The files one staging entry sends (rsync's trailing-slash meaning)."""
    path = Path(source)
    patterns = patterns + ALWAYS_EXCLUDED
    if path.is_file():
        dest = destination + path.name if destination.endswith("/") else destination
        return Selection(path.parent, (path.name,), dest, single_file=True)
    if not path.is_dir():
        raise FileNotFoundError(f"staging source does not exist: {source}")
    if not source.endswith("/") and not use_git:
        destination = destination.rstrip("/") + "/" + path.name
    listed = git_files(path) if use_git else None
    if listed is None:
        files = walk(path, patterns)
    else:
        files = [f for f in listed if not excluded_path(f, False, patterns)]
    return Selection(path, tuple(files), destination)


def excluded_path(rel: str, is_dir: bool, patterns: tuple[str, ...]) -> bool:
    """Whether `rel` or any folder above it is excluded (for lists not made by `walk`)."""
    parts = rel.split("/")
    if any(excluded("/".join(parts[:i]), True, patterns) for i in range(1, len(parts))):
        return True
    return excluded(rel, is_dir, patterns)


def deletions(existing: Iterable[str], selected: Iterable[str], patterns: tuple[str, ...]) -> list[str]:
    """Destination files `--delete` removes: not sent, and not excluded."""
    keep = set(selected)
    return sorted(f for f in existing if f not in keep and not excluded_path(f, False, patterns))
