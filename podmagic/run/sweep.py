"""Sweeps: one shard per combination of variables, run in parallel.

Every shard is prepared (validated, reconciled) before any is started, so a
bad combination costs nothing. Shards then start as detached runners, at
most `max_parallel` at a time, each with its own run id and directory, under
one sweep id recorded in `artifacts/runpod/.sweeps/<sweep_id>.json`. A failed
shard does not stop the others unless `fail_fast`.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from podmagic.errors import RunNotFound
from podmagic.run import api, detached, store
from podmagic.spec.jobspec import IDENT_RE, SpecError, parse

SWEEPS_DIR = ".sweeps"


def grid(axes: Sequence[tuple[str, Sequence[str]]]) -> list[dict[str, str]]:
    """The cartesian product of `name=v1,v2` axes, in order."""
    names = [name for name, _ in axes]
    return [dict(zip(names, combo)) for combo in itertools.product(*(values for _, values in axes))]


def parse_axes(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    axes = []
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not IDENT_RE.match(name) or not values:
            raise SpecError(f"--sweep expects NAME=V1,V2,... with NAME an identifier, got {item!r}", source="--sweep")
        axes.append((name, values.split(",")))
    return axes


def load_file(path: Path) -> list[dict[str, str]]:
    """A sweep file: a mapping of name → list of values (a grid), or a list of mappings (shards)."""
    data = yaml.safe_load(Path(path).read_text())
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
        return grid([(k, [str(x) for x in v]) for k, v in data.items()])
    if isinstance(data, list) and all(isinstance(s, dict) for s in data):
        return [{k: str(v) for k, v in s.items()} for s in data]
    raise SpecError("a sweep file is a mapping of NAME: [values] or a list of {NAME: value} shards",
                    source=str(path))


def new_sweep_id(name: str) -> str:
    return "sweep-" + store.slug(name) + "-" + api.run_suffix()


@dataclass
class Shard:
    variables: dict[str, str]
    prepared: api.Prepared
    run_dir: Path | None = None
    state: str = "pending"


@dataclass
class Sweep:
    sweep_id: str
    shards: list[Shard]
    root: Path
    max_parallel: int = 4
    fail_fast: bool = False
    secret_values: Mapping[str, str] = field(default_factory=dict)
    on_change: Callable[[], None] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> "Sweep":
        self._thread = threading.Thread(target=self._schedule, daemon=True, name=self.sweep_id)
        self._thread.start()
        return self

    def _schedule(self) -> None:
        pending = list(self.shards)
        while pending or self.running():
            if self._stop.is_set() or (self.fail_fast and self.any_failed()):
                for shard in pending:
                    shard.state = "cancelled"
                pending = []
            while pending and len(self.running()) < self.max_parallel:
                self._launch(pending.pop(0))
            self._refresh()
            time.sleep(0.2)
        self._refresh()

    def _launch(self, shard: Shard) -> None:
        shard.prepared = api.start(shard.prepared)
        shard.run_dir = shard.prepared.plan.run_dir
        shard.state = "running"
        self._record()
        detached.spawn(shard.prepared, dict(self.secret_values))

    def _refresh(self) -> None:
        for shard in self.shards:
            if shard.run_dir is not None and shard.state == "running":
                summary = store.run_summary(shard.run_dir)
                if summary.get("state") in ("succeeded", "failed", "interrupted", "lost"):
                    shard.state = summary["state"]
        if self.on_change:
            self.on_change()

    def running(self) -> list[Shard]:
        return [s for s in self.shards if s.state == "running"]

    def any_failed(self) -> bool:
        return any(s.state in ("failed", "interrupted", "lost") for s in self.shards)

    def _record(self) -> None:
        folder = store.runs_root(self.root) / SWEEPS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        store.write_json_atomic(folder / f"{self.sweep_id}.json", {
            "sweep_id": self.sweep_id,
            "shards": [{"variables": s.variables, "run_id": s.run_dir.name if s.run_dir else None}
                       for s in self.shards],
        })

    def stop(self) -> None:
        """Cancel shards not yet started and ask running ones to stop."""
        self._stop.set()
        for shard in self.running():
            store.RunDir(shard.run_dir).request_stop()

    def wait(self, timeout: float | None = None) -> list[dict[str, Any] | None]:
        self._thread.join(timeout)
        return self.manifests()

    def manifests(self) -> list[dict[str, Any] | None]:
        return [store.read_json(s.run_dir / store.MANIFEST) if s.run_dir else None for s in self.shards]


def prepare(text: str, combos: Sequence[dict[str, str]], *, base_variables: Sequence[tuple[str, str]] = (),
            **prepare_kw) -> tuple[str, list[Shard]]:
    """Prepare every shard (all validated before any starts); returns the sweep id and shards."""
    if not combos:
        raise SpecError("the sweep has no shards", source="--sweep")
    name = parse(text, source=prepare_kw.get("source", "cell"), line_offset=prepare_kw.get("line_offset", 0)).name
    sweep_id = new_sweep_id((name or prepare_kw.get("default_name") or "sweep").split("{")[0] or "sweep")
    shards = []
    for combo in combos:
        variables = list(base_variables) + list(combo.items())
        prepared = api.prepare(text, variables=variables, sweep=True, sweep_id=sweep_id, **prepare_kw)
        shards.append(Shard(dict(combo), prepared))
    return sweep_id, shards


def load(root: Path, sweep_id: str) -> list[Path]:
    """The run directories of a recorded sweep."""
    record = store.read_json(store.runs_root(root) / SWEEPS_DIR / f"{sweep_id}.json")
    if record is None:
        raise RunNotFound(f"no sweep {sweep_id!r} under {store.runs_root(root)}")
    return [store.runs_root(root) / s["run_id"] for s in record["shards"] if s["run_id"]]
