"""The notebook loop (issue 5) in real notebooks executed with nbclient on the local backend."""

from __future__ import annotations

import json
import shutil

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from podmagic.run import store
from podmagic.run.compare import consistency

from test_notebook import REPO, execute, outputs_text

pytestmark = pytest.mark.e2e  # real backends end to end: not in the fast lane (-m "not e2e")


def nb(*cells: str):
    return new_notebook(cells=[new_code_cell(c) for c in cells])


def test_workflow_example_notebook(pod_env, tmp_path):
    work = tmp_path / "example_notebooks"
    shutil.copytree(REPO / "example_notebooks", work, ignore=shutil.ignore_patterns("artifacts", ".venv"))
    done = execute(nbformat.read(work / "workflow.ipynb", as_version=4), work)
    sweep_out = outputs_text(done.cells[2])
    assert "podmagic-compare" in sweep_out and "3 shards" in sweep_out
    assert "podmagic-compare" in outputs_text(done.cells[4])
    assert "differs" in outputs_text(done.cells[5])
    assert "'python': '3.12.1'" in outputs_text(done.cells[8])
    diff = outputs_text(done.cells[10])
    assert "pod.python_version" in diff and "3.13.0" in diff and "python_resolved" in diff
    manifests = [store.read_json(d / store.MANIFEST) for d in store.iter_run_dirs(work / "demo")]
    assert len(manifests) == 5 and not any(m["failed"] for m in manifests)


def test_relaunch_through_the_widget_model(pod_env, project):
    done = execute(nb(
        "%load_ext podmagic",
        "%%pod -o first\nname: rl\nstaging: []\nvariables: {lr: \"0.1\"}\nrun: echo lr={lr}\n",
        "from podmagic.ui.magics import last_controls\nc = last_controls()\nc.relaunch_button.click()\nc.wait()\n"
        "print(c.results[-1])\nprint(c.runs)",
        "c.edit_button.click()\nprint(c.form.layout.display)\nc.fields['variables'].value = 'lr=0.01'\n"
        "c.fields['cost_cap'].value = '3'\nc.run_edited_button.click()\nc.wait()\nprint(c.results[-1])",
        "print(first.manifest['variables'], c.manifest['variables'], c.manifest['cost_cap_usd'])",
    ), project)
    same = outputs_text(done.cells[2])
    assert "spec changes</b>: no differences" in same
    edited = outputs_text(done.cells[3])
    assert "budget.cost_cap_usd" in edited and "variables" in edited and "0.01" in edited
    assert "{'lr': '0.1'} {'lr': '0.01'} 3.0" in outputs_text(done.cells[4])
    logs = [(d / "run.log").read_text() for d in store.iter_run_dirs(project)]
    assert sorted(logs) == ["lr=0.01\n", "lr=0.1\n", "lr=0.1\n"]


BODY = "run: |\n  for i in $(seq 1 40); do echo line-$i; sleep 0.1; done\n"


def test_detached_run_survives_the_kernel_and_is_reattached(pod_env, project):
    first = execute(nb("%load_ext podmagic", "%%pod --detach -o r\nname: det\nstaging: []\n" + BODY,
                       "print('RUN', r.run_id, r.done)"), project)
    run_id = outputs_text(first.cells[2]).split()[1]
    assert "False" in outputs_text(first.cells[2])  # returned at once, still running
    # The first kernel is gone; a new one attaches and waits.
    second = execute(nb("%load_ext podmagic", f"%pod attach {run_id}", f"r = %pod wait {run_id}",
                        "print(r.manifest['failed'], r.manifest['exit_code'])"), project)
    assert "False 0" in outputs_text(second.cells[3])
    run_dir = store.find_run(project, run_id)
    assert (run_dir / "run.log").read_text() == "".join(f"line-{i}\n" for i in range(1, 41))


def test_detached_run_can_be_stopped(pod_env, project):
    done = execute(nb("%load_ext podmagic", "%%pod --detach -o r\nname: stopme\nstaging: []\n"
                      "run: |\n  echo up; sleep 60\n",
                      "import time\nwhile 'up' not in r.log(): time.sleep(0.1)\n%pod stop {r.run_id}\n"
                      "m = r.wait(60).manifest\nprint(m['interrupted'], m['failed'], m['error'])"), project)
    assert "True True stopped on request" in outputs_text(done.cells[2])


SWEEP = """%%pod --sweep seed=0,1,2,3,4,5 --max-parallel 3 -o sw
name: shard-{seed}
pod:
  python_version: "3.12.1"
staging: []
preflight:
  - command: if [ {seed} = 3 ]; then uv python install 3.13.0 && uv python pin 3.13.0; fi
run: |
  echo shard {seed}
  if [ {seed} = 4 ]; then exit 1; fi
"""


def test_six_shard_sweep_names_the_failure_and_the_odd_interpreter(pod_env, project):
    done = execute(nb("%load_ext podmagic", SWEEP,
                      "ms = sw.manifests()\nprint(json.dumps([[m['variables']['seed'], m['run_id'], m['failed'], "
                      "m['python_resolved']] for m in ms]))".replace("json.", "__import__('json')."),
                      "%pod compare {sw.sweep_id}"), project, allow_errors=True)
    out = outputs_text(done.cells[1])
    rows = json.loads(outputs_text(done.cells[2]))
    by_seed = {seed: (run_id, failed, py) for seed, run_id, failed, py in rows}
    assert len(rows) == 6 and len({r[1] for r in rows}) == 6
    assert [s for s, (_, failed, _) in by_seed.items() if failed] == ["4"]
    assert by_seed["3"][2] == "3.13.0" and {py for s, (_, _, py) in by_seed.items() if s != "3"} == {"3.12.1"}
    odd_run = by_seed["3"][0]
    assert f"python_resolved differs: majority '3.12.1'; differing: {odd_run} (3.13.0)" in out
    assert f"1 of 6 shards failed: {by_seed['4'][0]}" in out
    assert "podmagic-compare" in outputs_text(done.cells[3])
    manifests = [store.read_json(store.find_run(project, r[1]) / store.MANIFEST) for r in rows]
    assert consistency(manifests) == [f"python_resolved differs: majority '3.12.1'; differing: {odd_run} (3.13.0)"]


def test_fail_fast_cancels_pending_shards(pod_env, project):
    done = execute(nb("%load_ext podmagic",
                      "%%pod --sweep seed=1,2,3,4 --max-parallel 1 --fail-fast -o sw\nstaging: []\nrun: exit {seed}\n",
                      "print([s.state for s in sw.shards])"), project, allow_errors=True)
    assert "['failed', 'cancelled', 'cancelled', 'cancelled']" in outputs_text(done.cells[2])
    assert len(list(store.iter_run_dirs(project))) == 1


def test_results_and_capture_env(pod_env, project):
    (project / ".python-version").write_text("3.12.1\n")
    done = execute(nb("%load_ext podmagic",
                      "%%pod -o res\nstaging: []\nrun: |\n  mkdir -p /workspace/o && echo '{{\"acc\": 1}}' > /workspace/o/m.json\n"
                      "artifacts: [{label: m, remote_path: /workspace/o/, local_path: \"{run_dir}/o/\"}]\n",
                      "print(res.json('m'), res.path('m').name, res.log_path.name, res.failed)",
                      "env = %pod capture-env\nprint(sorted(env), env['python_version'])"), project)
    assert "{'acc': 1} o run.log False" in outputs_text(done.cells[2])
    env = outputs_text(done.cells[3])
    assert "'local_git_sha'" in env and "'payload_lockfile_sha256'" in env and "3.12.1" in env
