"""What a later `reproduce` needs, recorded in the run directory when a run starts.

`local_git_diff.patch`: the whole uncommitted state of the repository against the recorded SHA,
as one `git apply`-able binary patch: tracked changes (staged or not), deletions, and untracked
files that are not ignored (the default staging sends those too). It is made with a private index
and object directory, so the user's repository is not written to. Secret values are masked; a
patch that masking changed cannot be re-applied exactly and says so. Over `PATCH_CAP_BYTES`
nothing is kept and the note says why.

`reproduce.json`: the SHA, the repository and project paths, the patch's sha256 and status, the
lockfile's name and sha256, and the sha256 of every file each staging entry sends (the recorded
staging, against which a re-created tree is checked).

Pure helpers plus git subprocesses; never raises on a broken repository (the note says what is
missing). May import `plan`, `run.provenance`, `run.store`, `run.redact`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from podmagic import digest
from podmagic.plan import staging
from podmagic.plan.naming import RUNS_SUBDIR
from podmagic.run import provenance, store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PATCH_CAP_BYTES = 16 << 20
"""Bigger uncommitted state (data files not ignored, usually) is not kept: commit or ignore it."""
HASH_CAP_BYTES = 1 << 30
"""Staged files are hashed up to this many bytes in all; past it the record says `complete: false`."""
DIFF_ARGS = ("-c", "core.quotepath=off", "diff", "--cached", "HEAD", "--binary", "--no-color", "--no-ext-diff",
             "--no-textconv", "--no-renames", "--src-prefix=a/", "--dst-prefix=b/", "--full-index")
"""As the telemetry diff's, but of a private index holding the whole working tree."""
PATHSPEC = (".", f":(exclude){RUNS_SUBDIR.as_posix()}")
"""The whole tree but the run directories (which never travel to a pod either)."""


def git(root: Path, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, env=env, input=stdin,
                          timeout=timeout)


def sha256(data: bytes) -> str:
    return digest.sha256(data).hexdigest()


def repo_facts(path: Path) -> tuple[Path | None, str | None, str | None]:
    """(toplevel, common git directory, HEAD's SHA) of the repository around `path`, from one `git rev-parse`;
    Nones outside a repository, no SHA before the first commit."""
    if not provenance.in_repository(path):
        return None, None, None
    try:
        done = git(path, "rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir",
                   "--verify", "-q", "HEAD")
    except (OSError, subprocess.TimeoutExpired):
        return None, None, None
    lines = done.stdout.decode("utf-8", "replace").splitlines()
    if len(lines) < 2:
        return None, None, None
    return Path(lines[0]), lines[1], lines[2] if done.returncode == 0 and len(lines) > 2 else None


def working_tree_patch(top: Path, cap: int = PATCH_CAP_BYTES) -> tuple[bytes | None, str]:
    """(patch, status): status is "clean", "recorded", "too_large" or "unreadable: why"."""
    _, common, sha = repo_facts(top)
    return _patch(top, common, sha, cap)


def _patch(top: Path, common: str | None, sha: str | None, cap: int) -> tuple[bytes | None, str]:
    if common is None or sha is None:
        return None, "unreadable: not a git repository with a commit"
    # one listing says whether there is anything to record (most runs: no) and which files are untracked;
    # --no-optional-locks: status must not refresh (write) the user's index
    listing = git(top, "--no-optional-locks", "status", "--porcelain=v2", "-z", "--untracked-files=all",
                  "--no-renames", "--", *PATHSPEC)
    if listing.returncode == 0 and not listing.stdout:
        return b"", "clean"
    untracked = [entry[2:] for entry in listing.stdout.split(b"\0") if entry.startswith(b"? ")]
    size = sum((top / os.fsdecode(p)).stat().st_size for p in untracked if (top / os.fsdecode(p)).is_file())
    if size > cap:
        return None, "too_large"
    import tempfile  # only when there is a change to record: most runs have none

    with tempfile.TemporaryDirectory(prefix="podmagic-patch-") as tmp:
        os.makedirs(os.path.join(tmp, "objects", "pack"))
        env = {**os.environ, "GIT_INDEX_FILE": os.path.join(tmp, "index"),
               "GIT_OBJECT_DIRECTORY": os.path.join(tmp, "objects"),
               "GIT_ALTERNATE_OBJECT_DIRECTORIES": os.path.join(common, "objects")}
        for step in (("read-tree", "HEAD"), ("add", "-A", "--", ".")):
            done = git(top, *step, env=env)
            if done.returncode != 0:
                return None, f"unreadable: git {step[0]} failed: {done.stderr.decode(errors='replace')[:300]}"
        git(top, "reset", "-q", "--", RUNS_SUBDIR.as_posix(), env=env)  # run directories: as in HEAD
        diff = git(top, *DIFF_ARGS, env=env)
    if diff.returncode != 0:
        return None, f"unreadable: git diff failed: {diff.stderr.decode(errors='replace')[:300]}"
    if len(diff.stdout) > cap:
        return None, "too_large"
    return diff.stdout, "recorded" if diff.stdout else "clean"


def mask_patch(patch: bytes, mask: Callable[[str], str]) -> tuple[bytes, bool]:
    """The patch with secret values masked, and whether masking changed it."""
    text = patch.decode("utf-8", "surrogateescape")
    masked = mask(text)
    return masked.encode("utf-8", "surrogateescape"), masked != text


def staged_hashes(pushes, cap: int = HASH_CAP_BYTES) -> dict[str, Any]:
    """Per staging entry: the sha256 of every file it sends (run directories left out)."""
    out: dict[str, Any] = {}
    budget = cap
    for push in pushes:
        try:
            sel = staging.select(push.source, push.destination, push.excludes, use_git=push.use_git)
        except OSError as exc:
            out[push.label] = {"source": push.source, "files": {}, "complete": False, "error": str(exc)}
            continue
        files: dict[str, str] = {}
        complete = True
        for rel in sel.files:
            if rel == RUNS_SUBDIR.as_posix() or rel.startswith(f"{RUNS_SUBDIR.as_posix()}/"):
                continue
            path = sel.base / rel
            try:
                size = path.stat().st_size
                if size > budget:
                    complete = False
                    continue
                budget -= size
                files[rel] = sha256(path.read_bytes())
            except OSError:
                files[rel] = "unreadable"
        out[push.label] = {"source": push.source, "destination": sel.destination, "files": files,
                           "complete": complete}
    return out


def capture(plan, mask: Callable[[str], str], *, git_on: bool = True) -> tuple[bytes | None, dict[str, Any]]:
    """(patch bytes to keep, the `reproduce.json` record) for a plan about to run."""
    top, common, sha = repo_facts(plan.project_root)
    record: dict[str, Any] = {
        "schema": 1, "git_toplevel": str(top) if top else None, "project_root": str(plan.project_root),
        "git_sha": sha,
    }
    patch, status = (None, "unreadable: telemetry.capture_local_git is off") if not git_on else \
        (None, "unreadable: not in a git repository") if top is None else _patch(top, common, sha, PATCH_CAP_BYTES)
    masked = False
    if patch:
        patch, masked = mask_patch(patch, mask)
    record["patch"] = {"file": store.RunDir.PATCH if patch else None, "status": "masked" if masked else status,
                       "bytes": len(patch) if patch else 0, "sha256": sha256(patch) if patch else None,
                       "cap_bytes": PATCH_CAP_BYTES}
    if status == "too_large":
        record["patch"]["note"] = (f"the uncommitted state is over {PATCH_CAP_BYTES >> 20} MiB and was not kept; "
                                   "commit it, or ignore the large files, to make this run reproducible")
    if masked:
        record["patch"]["note"] = "the diff holds a secret value (masked here): it cannot be re-applied exactly"
    name, digest = provenance.lockfile(plan.project_root)
    record["lockfile"] = {"name": name, "sha256": digest}
    record["staging"] = staged_hashes(plan.staging)
    return patch, record


def record(plan, rundir: "store.RunDir", mask: Callable[[str], str], *, git_on: bool = True) -> dict[str, Any]:
    """Write `local_git_diff.patch` (when there is one) and `reproduce.json`; returns the record."""
    patch, rec = capture(plan, mask, git_on=git_on)
    rundir.write_recipe(patch, rec)
    return rec
