"""Sweeps: one shard per combination of variables, run in parallel.

Every shard is prepared (validated, reconciled) before any is started, so a
bad combination costs nothing. `Sweep.start` then hands the whole sweep to
one detached host process (`detached.spawn_sweep`): it imports podmagic
once and runs the shards as threads, at most `max_parallel` at a time, each
with its own run id and directory, under one sweep id recorded in
`artifacts/runpod/.sweeps/<sweep_id>.json`. The host outlives the kernel, so
a detached sweep's shards (started or pending) go on without it. The caller's
`Sweep` follows that record. A failed shard does not stop the others unless
`fail_fast`; a stop (`.sweeps/<sweep_id>.stop`) cancels pending shards and
stops running ones.

Imports: `run.api`, `run.detached`, `run.speccache`, `run.store`, `spec.jobspec`, `records`, `errors`.
"""

from __future__ import annotations

import itertools
import sysconfig
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from podmagic.errors import RunNotFound
from podmagic.records import field, mutable
from podmagic.run import api, detached, speccache, store
from podmagic.spec.jobspec import IDENT_RE, SpecError, parse

SWEEPS_DIR = ".sweeps"
POLL_SEC = 0.05
"""How often the caller's side reads the sweep's record (the cell ends this soon after the last shard)."""
SCHEDULE_SEC = 0.5
"""How often the host looks for a stop request between shard ends: a shard's end wakes it at once, and
it looks again before each start, so no shard starts after a stop."""


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
    import yaml  # only for a sweep file: a sweep from flags or a cell never loads it

    data = yaml.safe_load(Path(path).read_text())
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
        return grid([(k, [str(x) for x in v]) for k, v in data.items()])
    if isinstance(data, list) and all(isinstance(s, dict) for s in data):
        return [{k: str(v) for k, v in s.items()} for s in data]
    raise SpecError("a sweep file is a mapping of NAME: [values] or a list of {NAME: value} shards",
                    source=str(path))


def new_sweep_id(name: str) -> str:
    return "sweep-" + store.slug(name) + "-" + api.run_suffix()


TERMINAL = frozenset({"succeeded", "failed", "interrupted", "lost", "cancelled"})
FAILED = frozenset({"failed", "interrupted", "lost"})


@mutable
class Shard:
    variables: dict[str, str]
    prepared: api.Prepared
    run_dir: Path | None = None
    state: str = "pending"


@mutable
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
    _host: object | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ended: threading.Event = field(default_factory=threading.Event)

    # -- the caller's side: hand the sweep to a host process, follow its record
    def start(self) -> "Sweep":
        self._record()
        store.write_json_atomic(self.host_file(), {
            "max_parallel": self.max_parallel, "fail_fast": self.fail_fast,
            "shards": [{"variables": s.variables, "inputs": s.prepared.inputs} for s in self.shards],
        })
        self._host = detached.spawn_sweep(self.root, self.sweep_id, dict(self.secret_values),
                                          cwd=str(self.shards[0].prepared.inputs["cwd"]),
                                          prepared=[s.prepared for s in self.shards])
        self._thread = threading.Thread(target=self._observe, daemon=True, name=self.sweep_id)
        self._thread.start()
        return self

    def _observe(self) -> None:
        while True:
            host_done = self._host is None or self._host.poll() is not None
            self._refresh(host_done)
            if all(s.state in TERMINAL for s in self.shards):
                if not host_done:  # it exits right after its last record: reap it
                    try:
                        self._host.wait(5)
                    except Exception:  # noqa: BLE001 - still writing: leave it be
                        pass
                return
            time.sleep(POLL_SEC)

    def _refresh(self, host_done: bool = False) -> None:
        record = store.read_json(self.record_file()) or {}
        for shard, row in zip(self.shards, record.get("shards", [])):
            if row.get("run_id") and shard.run_dir is None:
                shard.run_dir = store.runs_root(self.root) / row["run_id"]
            if shard.run_dir is None:
                shard.state = row["state"] if row.get("state") in TERMINAL else ("cancelled" if host_done else "pending")
            elif shard.state not in TERMINAL:
                if row.get("state") in TERMINAL:  # the host records a shard's end once its manifest is written
                    shard.state = row["state"]
                    continue
                if not host_done:  # no read of every running shard's files at every poll
                    shard.state = "running"
                    continue
                state = store.run_summary(shard.run_dir).get("state")  # the host is gone: did the shard end?
                shard.state = state if state in TERMINAL else "lost"
        if self.on_change:
            self.on_change()

    def stop(self) -> None:
        """Cancel shards not yet started and ask running ones to stop."""
        self._stop.set()
        store.write_text_atomic(self.stop_file(), "stop requested\n")
        for shard in self.running():
            store.RunDir(shard.run_dir).request_stop()

    def wait(self, timeout: float | None = None) -> list[dict[str, Any] | None]:
        self._thread.join(timeout)
        return self.manifests()

    # -- the host's side: run the shards here, in threads
    def run_here(self) -> None:
        """Schedule and run every shard in this process (the host); returns when all have ended."""
        pending, threads, stop_file = list(self.shards), [], self.stop_file()
        sysconfig.get_config_vars()  # its lazy set-up is not thread-safe: uv.find_uv_bin saw EXE None

        def stopped() -> bool:  # the caller's stop file, looked at before each wait and each start
            if not self._stop.is_set() and stop_file.exists():
                self._stop.set()
            return self._stop.is_set()

        while True:
            if stopped() or (self.fail_fast and self.any_failed()):
                for shard in pending:
                    shard.state = "cancelled"
                if pending:
                    self._record()
                pending = []
            while pending and len(self.running()) < self.max_parallel and not stopped():
                threads.append(self._launch(pending.pop(0)))
            if pending and self._stop.is_set():
                continue  # a stop that came while starting: the pending shards are cancelled at once
            # by state, not by thread: a shard's thread is still alive for a moment after the end it signals
            if not pending and not self.running():
                break
            self._ended.wait(SCHEDULE_SEC)  # a shard that ends wakes the scheduler at once
            self._ended.clear()
        for thread in threads:
            thread.join()  # each has only its wake-up left
        self._record()

    def _launch(self, shard: Shard) -> threading.Thread:
        shard.state = "running"
        thread = threading.Thread(target=self._execute, args=(shard,), daemon=True, name=f"shard-{id(shard)}")
        thread.start()
        return thread

    def _execute(self, shard: Shard) -> None:
        try:
            shard.prepared = api.start(shard.prepared)
            shard.run_dir = shard.prepared.plan.run_dir
            self._record()
            manifest = api.execute(shard.prepared, cancel=self._stop)
            shard.state = "interrupted" if manifest.get("interrupted") else (
                "failed" if manifest.get("failed") else "succeeded")
        except BaseException:  # noqa: BLE001 - one shard's crash is that shard's failure
            shard.state = "failed"
        self._record()
        self._ended.set()

    # -- shared
    def running(self) -> list[Shard]:
        return [s for s in self.shards if s.state == "running"]

    def any_failed(self) -> bool:
        return any(s.state in FAILED for s in self.shards)

    def record_file(self) -> Path:
        return store.runs_root(self.root) / SWEEPS_DIR / f"{self.sweep_id}.json"

    def host_file(self) -> Path:
        return store.runs_root(self.root) / SWEEPS_DIR / f"{self.sweep_id}.host.json"

    def stop_file(self) -> Path:
        return store.runs_root(self.root) / SWEEPS_DIR / f"{self.sweep_id}.stop"

    def _record(self) -> None:
        with self._lock:
            self.record_file().parent.mkdir(parents=True, exist_ok=True)
            store.write_json_atomic(self.record_file(), {
                "sweep_id": self.sweep_id,
                "shards": [{"variables": s.variables, "run_id": s.run_dir.name if s.run_dir else None,
                            "state": s.state} for s in self.shards],
            })

    def manifests(self) -> list[dict[str, Any] | None]:
        return [store.read_json(s.run_dir / store.MANIFEST) if s.run_dir else None for s in self.shards]


def host(root: Path, sweep_id: str, secret_values: Mapping[str, str],
         prepared: Sequence[api.Prepared] | None = None) -> int:
    """The host process's work: run every shard here. A forked host is handed the caller's `prepared`
    shards (already validated, in its memory); a new interpreter re-prepares them from the host file."""
    plan = store.read_json(store.runs_root(root) / SWEEPS_DIR / f"{sweep_id}.host.json")
    if plan is None:
        raise RunNotFound(f"no sweep host file for {sweep_id!r} under {store.runs_root(root)}")
    if prepared is None:
        prepared = [api.prepare_from(row["inputs"], secret_values) for row in plan["shards"]]
    shards = [Shard(dict(row["variables"]), p) for row, p in zip(plan["shards"], prepared, strict=True)]
    sweep = Sweep(sweep_id, shards, Path(root), max_parallel=plan["max_parallel"], fail_fast=plan["fail_fast"],
                  secret_values=secret_values)
    sweep.run_here()
    return 1 if sweep.any_failed() else 0


def prepare(text: str, combos: Sequence[dict[str, str]], *, base_variables: Sequence[tuple[str, str]] = (),
            **prepare_kw) -> tuple[str, list[Shard]]:
    """Prepare every shard (all validated before any starts); returns the sweep id and shards."""
    if not combos:
        raise SpecError("the sweep has no shards", source="--sweep")
    where = {"source": prepare_kw.get("source", "cell"), "line_offset": prepare_kw.get("line_offset", 0)}
    name = parse(text, **where, nodes=speccache.nodes(text, **where)).name  # kept: each shard's prepare reads them
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
