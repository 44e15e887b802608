"""The spec never crashes (issue 12): seeded mutation of `tests/corpus/` through `api.prepare`.

Each case takes a corpus spec (whole, or `run` plus a few of its sections: small cases keep
20,000 of them inside a minute), applies one to three mutations to its data (a value becomes
`null`, another type, an odd string, a template, an empty or nested collection; a key is
dropped, misspelt or added) and sometimes to its text (a character dropped or inserted, a line
doubled, dropped or cut), and calls `api.prepare` (what `%%pod` and `podmagic run` call) on the
local or runpod backend, with odd `--var` values for the templates it uses. Every case must end in a plan or a `PodmagicError` whose message is one
`cell:LINE:COL: error:` line (or `--var: error:` for a bad `--var` value). Anything else is a crash, kept by signature (exception type and
the podmagic line that raised it); the README's crash count is `len(CRASHES)`.

`PODMAGIC_FUZZ_CASES` and `PODMAGIC_FUZZ_SEED` change the count and the seed.
"""

from __future__ import annotations

import copy
import math
import os
import random
import re
import time
import traceback
from pathlib import Path

import pytest
import yaml

from podmagic.errors import PodmagicError
from podmagic.run import api

pytestmark = pytest.mark.e2e  # seeded fuzzing, tens of seconds: not in the fast lane (-m "not e2e")

CORPUS = sorted((Path(__file__).parent / "corpus").glob("*.yaml"))
CASES = int(os.environ.get("PODMAGIC_FUZZ_CASES", "20000"))
SEED = int(os.environ.get("PODMAGIC_FUZZ_SEED", "12"))
CRASHES: dict[str, tuple[str, str]] = {}
"""signature → (the case's text, the traceback's last lines)."""
STATS: dict[str, float] = {}
POSITIONED = re.compile(r"^(cell:\d+:\d+|--[a-z-]+): error: [^\n]+\Z")
"""A position in the cell, or the command-line flag the bad value came from."""

ODD_STRINGS = ("", " ", "{", "}", "{x}", "{{", "}}", "${HOME}", "{run_id}", "{v}", "~", "/", "..", "-", "--",
               "0", "-1", "3.13", "0777", "9" * 40, "a" * 300, "null", "~/x", "../..", "a\nb", "\t", "é", "\u202e",
               "*", "[", "'", '"', "`id`", "$(id)", ";", "#", "a: b", "- x", "&a", "*a", "!tag", "\\", "\x7f")
ODD_VALUES = (None, True, False, 0, -1, 1, 2**63, -(2**63), 10**30, 0.5, -0.0, math.inf, -math.inf, math.nan,
              [], {}, [None], {"x": None}, [[1]], {"zz_unknown": 1}, [""], ["a", 1])
KEY_TYPOS = ("zz_unknown", "", "Run", "run ", "1", "null")
TEXT_CHARS = ":-[]{}#&*!|>'\"%@`\t\n ,?~\\\x00\ufeff"


def _seeds() -> list[dict]:
    return [yaml.safe_load(p.read_text()) for p in CORPUS]


def _paths(data, prefix=()) -> list[tuple]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, prefix + (i,))
    return out


def _get(data, path):
    for key in path:
        data = data[key]
    return data


def _odd(rng: random.Random):
    roll = rng.random()
    if roll < 0.45:
        return copy.deepcopy(rng.choice(ODD_VALUES))
    if roll < 0.9:
        return rng.choice(ODD_STRINGS)
    return rng.choice(ODD_STRINGS) + rng.choice(ODD_STRINGS) + "{" + rng.choice(("a", "v", "name", "run_dir", "9")) + "}"


def _mutate_data(data: dict, rng: random.Random) -> dict:
    path = rng.choice(_paths(data)[1:] or [()])
    if not path:
        return data
    parent, key = _get(data, path[:-1]), path[-1]
    op = rng.random()
    if op < 0.3:
        parent[key] = None
    elif op < 0.65:
        parent[key] = _odd(rng)
    elif op < 0.75:
        del parent[key]
    elif op < 0.85 and isinstance(parent, dict):
        parent[rng.choice(KEY_TYPOS) if rng.random() < 0.5 else str(key)[:-1] or "x"] = parent.pop(key)
    elif op < 0.92 and isinstance(parent, dict):
        parent[rng.choice(KEY_TYPOS)] = _odd(rng)
    else:
        parent[key] = [parent[key]] if rng.random() < 0.5 else {"x": parent[key]}
    return data


def _mutate_text(text: str, rng: random.Random) -> str:
    lines = text.split("\n")
    op = rng.random()
    if op < 0.35 and text:
        i = rng.randrange(len(text))
        return text[:i] + rng.choice(TEXT_CHARS) + text[i:]
    if op < 0.55 and text:
        i = rng.randrange(len(text))
        return text[:i] + text[i + 1:]
    if op < 0.7:
        i = rng.randrange(len(lines))
        return "\n".join(lines[:i] + [lines[i]] + lines[i:])
    if op < 0.85:
        i = rng.randrange(len(lines))
        return "\n".join(lines[:i] + lines[i + 1:])
    return text[: rng.randrange(len(text) + 1)]


def make_case(seeds: list[dict], rng: random.Random) -> str:
    data = copy.deepcopy(rng.choice(seeds))
    if rng.random() < 0.8:  # run plus a few sections: small, so many cases fit in a minute
        keep = {"run"} | set(rng.sample(sorted(data), k=min(len(data), rng.randint(0, 2))))
        data = {k: v for k, v in data.items() if k in keep}
    for _ in range(rng.randint(1, 3)):
        data = _mutate_data(data, rng)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)
    if rng.random() < 0.25:
        text = _mutate_text(text, rng)
    return text


def _signature(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/podmagic/" in f.filename]
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__} at {where}"


def run_case(text: str, cwd: Path, rng: random.Random, again: bool = False) -> str:
    """'ok', 'error', or a crash signature. `again`: prepare the case a second time, which reads the
    nodes the first one kept (`run.speccache`), and require the same outcome, word for word."""
    backend = "runpod" if rng.random() < 0.3 else "local"
    variables = [(name, rng.choice(ODD_STRINGS)) for name in ("a", "v") if "{" + name + "}" in text]
    result, said = _prepare(text, cwd, backend, variables)
    if again and result in ("ok", "error"):
        second = _prepare(text, cwd, backend, variables)
        if second != (result, said):
            return f"kept nodes changed the outcome: {said[:60]!r} then {second[1][:60]!r}"
    return result


def _prepare(text: str, cwd: Path, backend: str, variables: list) -> tuple[str, str]:
    try:
        prepared = api.prepare(text, cwd=cwd, backend=backend, variables=variables, suffix="20260101T000000Z-abcd")
    except PodmagicError as exc:
        if POSITIONED.match(str(exc)):
            return "error", str(exc)
        return f"{type(exc).__name__} without a position: {str(exc)[:80]!r}", str(exc)
    except Exception as exc:  # noqa: BLE001 - what the fuzzer is for
        return _signature(exc), ""
    return "ok", repr((prepared.spec, prepared.spec.positions, prepared.plan))


def test_the_spec_never_crashes(tmp_path):
    cwd = tmp_path / "proj"
    cwd.mkdir()
    seeds, rng = _seeds(), random.Random(SEED)
    outcomes = {"ok": 0, "error": 0}
    start = time.monotonic()
    for i in range(CASES):
        text = make_case(seeds, rng)
        result = run_case(text, cwd, rng, again=i % 20 == 0)
        if result in outcomes:
            outcomes[result] += 1
        else:
            CRASHES.setdefault(result, (text, ""))
    STATS.update(cases=CASES, seconds=time.monotonic() - start, **outcomes)
    print(f"fuzz: {CASES} cases in {STATS['seconds']:.1f} s: {outcomes}, {len(CRASHES)} crash signatures")
    assert CASES >= 20_000 or "PODMAGIC_FUZZ_CASES" in os.environ
    assert outcomes["ok"] > CASES // 50 and outcomes["error"] > CASES // 5, outcomes  # it reaches both ends
    assert not CRASHES, "\n\n".join(f"{sig}\n{text}" for sig, (text, _) in list(CRASHES.items())[:6])
    assert not list(tmp_path.rglob("artifacts")), "prepare wrote a run directory"


@pytest.mark.parametrize("text,fragment", [
    ("pod: {image: null}\nrun: x\n", "`pod.image` is null"),
    ("staging: [{label: a, source: ., destination: /x, excludes: null}]\nrun: x\n", "is null"),
    ("run: x\nremote_env: {exports: null}\n", "is null"),
    ("run: x\nstorage: {mode: null}\n", "is null"),
    ("run: {body: x, failure_markers: null}\n", "is null"),
    ("run: x\nsecrets: [{name: s, destination: /x, env: null}]\n", "is null"),
    ("run: x\nsetup: [null]\n", "must be a mapping"),
    ("run: x\nvariables: {a: null}\n", "is null"),
    ("run: x\nstaging: null\n", "`staging: []` for none"),
    ("run: x\nbudget: {poll_interval_sec: ~}\n", "is null"),
    ("run: x\nartifacts: [{label: a, remote_path: null, local_path: x}]\n", "is null"),
])
def test_an_explicit_null_is_one_positioned_error(text, fragment, tmp_path):
    """The six crash signatures the issue's fuzzing found, and their kin."""
    with pytest.raises(PodmagicError) as info:
        api.prepare(text, cwd=tmp_path)
    assert POSITIONED.match(str(info.value)) and fragment in str(info.value), str(info.value)
    assert re.search(r"null|~", text.splitlines()[info.value.line - 1]), str(info.value)
