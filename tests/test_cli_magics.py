"""The same verbs and mistakes through the magics, in a real kernel (nbclient): `%pod gpus`,
`%%pod --estimate`, `%pod events`, one-line errors, `--fail-fast`, `wait` returning a Run,
`podmagic.runs()` from a subfolder."""

from __future__ import annotations

import pytest

from nbformat.v4 import new_code_cell, new_notebook

from podmagic.run import store
from podmagic.testing.sim.runpod import RunPodSimulator
from test_notebook import execute, outputs_text

pytestmark = pytest.mark.e2e  # real runs, CLI subprocesses or kernels: not in the fast lane (-m "not e2e")


def cells(sim):
    return [
        "%load_ext podmagic",
        "%%pod --var sed=3\nname: m-{seed}\nvariables: {seed: \"1\"}\nstaging: []\nrun: echo {seed}\n",
        "%%pod --backend ssh\nstaging: []\nrun: echo hi\n",
        "%%pod -o r\nname: ok\nstaging: []\nrun: echo done\n",
        "w = r.wait()\nprint(type(w).__name__, w is r, w.manifest['failed'])",
        "%pod stop {r.run_id}",
        "%pod events {r.run_id}",
        "import os, podmagic\nos.makedirs('sub', exist_ok=True)\nos.chdir('sub')\n"
        "print('rows', len(podmagic.runs()))\nos.chdir('..')",
        "os.environ.pop('RUNPOD_API_KEY', None); os.environ['HOME'] = os.path.abspath('home')\n%pod ls-stale",
        f"os.environ.update(RUNPOD_API_BASE_URL={sim.base_url!r}, RUNPOD_API_KEY={sim.api_key!r})",
        "%pod gpus --gpu L40S",
        "%%pod --estimate\npod: {image: img, datacenters: [EU-RO-1], gpu_order: [NVIDIA L40S]}\n"
        "budget: {max_runtime_minutes: 60}\nrun: echo hi\n",
        "%%pod --backend local --sweep s=1,2,3 --max-parallel 1 --fail-fast\nname: ff-{s}\nstaging: []\nrun: exit 1\n",
        "%pod gpuz",
        "%%pod\nname: x\nrun:echo hi\n",
        "%%pod\ntelemetry: {sample_interval_sec: 1}\nrun: x\n",
        "%%pod\nsecrets:\n  - {name: t, destination: s/env, env: [HOME]}\nrun: x\n",
        "%%pod --backend local -o bad\nname: bad\nstaging: []\nsetup:\n  - command: \"printf 'L%s\\\\n' 1 2 3 >&2; exit 3\"\n"
        "run: x\n",
        "%pod compare {r.run_id} {bad.run_id}",
    ]


def test_magics_verbs_and_mistakes(pod_env, project, tmp_path):
    sim = RunPodSimulator(tmp_path / "sim").start()
    try:
        nb = execute(new_notebook(cells=[new_code_cell(c) for c in cells(sim)]), project, allow_errors=True)
        assert not sim.pods()
    finally:
        sim.stop()
    out = [outputs_text(c).strip() for c in nb.cells]
    assert out[1] == "UsageError: --var: error: sed=...: no template in the spec uses {sed}; did you mean seed?"
    assert out[2].startswith("UsageError: the ssh backend needs --host") and "\n" not in out[2]
    assert out[4] == "Run True False"
    assert "UsageError: run ok-" in out[5] and "already ended (succeeded); nothing to stop" in out[5]
    assert out[6].startswith("[+0:00] ") and "run_finished" in out[6]
    assert out[7] == "rows 1"  # the project is the repository around the notebook, as for %pod runs
    assert "TOTAL: 0 stopped pods" in out[8] and "RunPod not listed: no API key" in out[8]  # local pods listed
    assert "NVIDIA L40S" in out[10] and "NVIDIA H100" not in out[10]
    assert "selected:      NVIDIA L40S @ EU-RO-1" in out[11] and "time budget:   60 min" in out[11]
    assert "spend at that: $0.86" in out[11]
    sweep = out[12].splitlines()[-1]
    assert "1 of 3 shards failed: ff-1-" in sweep
    assert "2 shards cancelled by --fail-fast, never started: s=2, s=3" in sweep
    assert out[13].startswith("UsageError: %pod: unknown command 'gpuz'; did you mean gpus?")
    assert out[14] == ("UsageError: cell:3:1: error: invalid YAML: put a space after the colon: `run:echo` should "
                       "be `run: echo` (without it YAML reads the line as one word)")
    assert out[15].endswith("must be ≥ 5 (seconds), got 1") and "\n" not in out[15]
    assert "`secrets[0].destination` must be an absolute pod path" in out[16]
    assert "setup[0] failed with exit code 3: printf" in out[18] and " …</span>" in out[18]  # first line shown
    names = sorted(d.name.split("-")[0] for d in store.iter_run_dirs(project))
    assert names == ["bad", "ff", "ok"]  # the mistakes, the estimate and the cancelled shards made no run directory
