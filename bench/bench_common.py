"""What every benchmark shares: best-of-N timing, alternation against a reference, and output.

Each `Result` holds all samples of podmagic and of its reference; the table shows the best
(minimum) of each, their ratio, and the range of ratios over the tries. `--json` prints the
results as JSON lines so `bench/report.py` can regenerate the README's Performance table.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

TREE = Path(os.environ.get("PODMAGIC_BENCH_TREE") or Path(__file__).resolve().parents[1])
"""The podmagic checkout being measured: this one, or another revision's (`report.py --baseline REV`)."""
sys.path.insert(0, str(TREE))


def compile_package() -> None:
    """Byte-code for every module, as an installed package has it (this machine sets PYTHONDONTWRITEBYTECODE,
    so a new interpreter, or a sweep host's first shard, would otherwise compile what changed since the last
    compileall each time)."""
    import subprocess

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(TREE / "podmagic")], check=True,
                   stdout=subprocess.DEVNULL)


@dataclass
class Result:
    name: str
    ours: Sequence[float]
    reference: Sequence[float] | None
    unit: str = "s"
    reference_label: str = ""
    goal: float | None = None
    """For a figure with no reference run: the goal it is held against (in `unit`)."""
    note: str = ""

    @property
    def best(self) -> float:
        return min(self.ours)

    @property
    def ratio(self) -> float | None:
        return self.best / min(self.reference) if self.reference else None

    @property
    def ratio_range(self) -> tuple[float, float] | None:
        if not self.reference:
            return None
        if len(self.reference) == len(self.ours):
            ratios = [a / b for a, b in zip(self.ours, self.reference)]
        else:
            ratios = [a / min(self.reference) for a in self.ours]
        return min(ratios), max(ratios)


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def duel(ours: Callable[[], object], theirs: Callable[[], object], repeat: int,
         reset: Callable[[], object] | None = None) -> tuple[list[float], list[float]]:
    """`repeat` alternating tries of both, so passing load hits both alike."""
    a, b = [], []
    for _ in range(repeat):
        for fn, times in ((theirs, b), (ours, a)):
            if reset:
                reset()
            times.append(timed(fn))
    return a, b


def alternating(trees: dict[str, Path], rounds: int) -> Iterator[tuple[str, Path]]:
    """Each of `trees` once a round, the order reversed every other round, so drifting load hits all alike."""
    for i in range(rounds):
        yield from (list(trees.items()) if i % 2 == 0 else list(reversed(trees.items())))


def best_of(fn: Callable[[], object], repeat: int) -> list[float]:
    return [timed(fn) for _ in range(repeat)]


def fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "MB":
        return f"{value:.0f} MB"
    return f"{value:g} {unit}"


def emit(results: Sequence[Result], as_json: bool) -> None:
    for r in results:
        if as_json:
            print(json.dumps({**asdict(r), "best": r.best, "ratio": r.ratio, "ratio_range": r.ratio_range}))
            continue
        line = f"{r.name}: {fmt(r.best, r.unit)}"
        if r.reference:
            lo, hi = r.ratio_range
            line += f" | {r.reference_label or 'reference'} {fmt(min(r.reference), r.unit)} | " \
                    f"{r.ratio:.2f}x ({lo:.2f}-{hi:.2f})"
        elif r.goal is not None:
            line += f" (goal <= {fmt(r.goal, r.unit)}; range {fmt(min(r.ours), r.unit)}-{fmt(max(r.ours), r.unit)})"
        print(line + (f"  [{r.note}]" if r.note else ""), flush=True)
