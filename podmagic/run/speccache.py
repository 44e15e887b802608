"""The composed YAML of spec texts parsed before, so that a repeated `podmagic run FILE` never loads PyYAML.

`import yaml` costs a new interpreter about 17 ms (its reader compiles a 9 ms regular expression at
import) and composing a spec a few more: a sixth of what `podmagic run` adds to a one-second job.
`jobspec.compose` is a pure function of the text and the line offset, so its nodes (values,
positions, each scalar's text) are kept under a digest of those and of the code that made them
(the files of `spec.jobspec` and of PyYAML). Only YAML's part is skipped: what the nodes mean is
validated afresh on every parse, so a spec's errors are the same whether its nodes were kept or
not, and a spec that fails to compose is never kept. Nodes that hold what JSON cannot (a YAML
timestamp, `!!binary`) are not kept either.

Kept in `$XDG_CACHE_HOME/podmagic/specs` (default `~/.cache/podmagic/specs`), or in
`PODMAGIC_SPEC_CACHE` (`off`: keep nothing), one small file per text; past `MAX_ENTRIES` the
older half goes. A spec's text is already copied into each run directory; this keeps no more of it
than its values. Kept nodes become the commands a run runs, so an entry is read only
when this user wrote it, in a folder (made 0700) no one else can write to. Imports: `spec.jobspec`, `run.store`.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from importlib.machinery import PathFinder
from pathlib import Path

from podmagic.digest import sha256
from podmagic.run import store
from podmagic.spec import jobspec

ENV = "PODMAGIC_SPEC_CACHE"
FORMAT = 1
MAX_ENTRIES = 512


def directory() -> Path | None:
    chosen = os.environ.get(ENV)
    if chosen == "off":
        return None
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "podmagic", "specs")


def nodes(text: str, *, source: str = "cell", line_offset: int = 0):
    """`jobspec.compose(text, ...)`: the kept nodes when this text was composed before, else composed now
    (and kept). Raises what `compose` raises."""
    where = directory()
    if where is None:
        return jobspec.compose(text, source=source, line_offset=line_offset)
    jobspec.check_size(text, source, line_offset)  # before hashing a text too large to be a spec
    path = where / f"{_key(text, line_offset)}.json"
    kept = _load(path)
    if kept is not None:
        return kept
    composed = jobspec.compose(text, source=source, line_offset=line_offset)
    data = jobspec.dump_nodes(composed) if composed is not None else None
    if data is not None:
        _keep(path, data)
    return composed


def _key(text: str, line_offset: int) -> str:
    stamp = f"[{FORMAT}, {line_offset}, {_code_stamp()}]"
    return sha256(stamp.encode() + b"\0" + text.encode("utf-8", "surrogatepass")).hexdigest()


@functools.cache
def _code_stamp() -> str:
    """The files of the code that composes, stamped once a process (a sweep prepares many texts). A PyYAML
    replaced under a running kernel is then keyed as the one before it: such an entry is read back by
    that kernel alone, as the next process stamps the new files."""
    return json.dumps([_stamp(jobspec.__file__), _stamp(_yaml_file())])


def _yaml_file() -> str | None:
    """PyYAML's `__init__.py`, found without importing it."""
    loaded = sys.modules.get("yaml")
    if loaded is not None:
        return getattr(loaded, "__file__", None)
    spec = PathFinder.find_spec("yaml")
    return spec.origin if spec is not None else None


def _stamp(path: str | None) -> list | None:
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return [path, st.st_mtime_ns, st.st_size] if st else None


def _load(path: Path):
    try:
        if not _ours(path.parent):
            return None
        with open(path, "rb") as fh:
            if not _ours(fh.fileno()):
                return None
            data = json.loads(fh.read())
        return jobspec.load_nodes(data["nodes"])
    except (OSError, ValueError, TypeError, KeyError, IndexError):
        return None  # not kept yet, or not readable as nodes: compose (and keep) again


def _ours(where) -> bool:
    """Only what this user wrote, in a folder no one else can write to, is read: kept nodes become the
    commands a run runs, so a shared `PODMAGIC_SPEC_CACHE` must not let another user plant or swap them."""
    st = os.stat(where)
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def _keep(path: Path, data: list) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        store.write_text_atomic(path, json.dumps({"format": FORMAT, "nodes": data}))
        if path.name < "08":  # one new entry in 32 (by its digest) looks at the count: a miss costs no listing
            _prune(path.parent)
    except (OSError, store.DiskFull):
        pass  # a cache that cannot be written costs the next run its YAML, nothing else


def _prune(where: Path) -> None:
    entries = [e for e in os.scandir(where) if e.name.endswith(".json")]
    if len(entries) <= MAX_ENTRIES:
        return
    entries.sort(key=lambda e: e.stat().st_mtime_ns)
    for entry in entries[: len(entries) - MAX_ENTRIES // 2]:
        try:
            os.unlink(entry.path)
        except OSError:
            pass
