"""The labextension's unknown-key scanner (labextension/src/schema.ts), run in node.

It reads the schema `python -m podmagic.spec.schema` prints, so these cases also
pin that the two agree. Needs the built `labextension/lib/schema.js` (made by
`pip install .` / `-e .` or `jlpm build`) and node.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from podmagic.spec import schema

LIB = Path(__file__).resolve().parents[1] / "labextension" / "lib" / "schema.js"

CASES = {
    "valid": ("%%pod --var seed=3\nname: train-{seed}\npod:\n  image: x\n  gpu_order: [A]\n"
              "run: |\n  echo not: a key\nartifacts:\n  - {label: m, remote_path: /x, local_path: y}\n", []),
    "root typo": ("%%pod\nnmae: x\n", ["nmae"]),
    "compact list": ("artifacts:\n- label: a\n  remote_pth: x\n- labl: b\nname: y\n", ["remote_pth", "labl"]),
    "list of sections": ("setup:\n  - command: a\n    timeot_sec: 3\n  - {command: b, with_env: true, wth: 1}\n",
                         ["timeot_sec", "wth"]),
    "free-form maps": ("remote_env:\n  exports:\n    ANYTHING: 1\nvariables:\n  seed: 3\n", []),
    "run as a mapping": ("run:\n  body: echo\n  sucess_marker: ok\n", ["sucess_marker"]),
    "folded scalar": ("preflight:\n  - command: >\n      not: key\n    timeout_sec: 3\nbudgt: {}\n", ["budgt"]),
    "comments and quotes": ("# c: x\nname: a # t: y\n\"quoted\": 1\npod: {image: x, gpu_orde: []}\n",
                            ["quoted", "gpu_orde"]),
    "unknown parent only": ("foo:\n  bar: 1\n", ["foo"]),
}

SCRIPT = """
import { unknownKeys } from './schema.mjs';
import fs from 'fs';
const schema = JSON.parse(fs.readFileSync('schema.json', 'utf8'));
const cases = JSON.parse(fs.readFileSync('cases.json', 'utf8'));
const out = {};
for (const [name, text] of Object.entries(cases)) {
  out[name] = unknownKeys(text, schema).map(p => ({ key: p.key, text: text.slice(p.from, p.to), message: p.message }));
}
console.log(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    node = shutil.which("node")
    if node is None or not LIB.is_file():
        pytest.skip(f"needs node and {LIB} (pip install -e . or jlpm build in labextension/)")
    work = tmp_path_factory.mktemp("schema_ts")
    shutil.copy(LIB, work / "schema.mjs")
    (work / "schema.json").write_text(json.dumps(schema.as_json()))
    (work / "cases.json").write_text(json.dumps({name: text for name, (text, _) in CASES.items()}))
    (work / "run.mjs").write_text(SCRIPT)
    out = subprocess.run([node, "run.mjs"], cwd=work, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("name", list(CASES))
def test_unknown_keys(results, name):
    expected = CASES[name][1]
    found = results[name]
    assert [p["key"] for p in found] == expected
    for problem in found:
        assert problem["text"].strip("\"'") == problem["key"]


def test_did_you_mean(results):
    (problem,) = results["root typo"]
    assert problem["message"] == "unknown key 'nmae' (did you mean 'name'?)"
