"""Real notebooks executed headlessly (nbclient): the quickstart and the magics' error paths."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_notebook

from podmagic.run import store

pytestmark = pytest.mark.e2e  # real backends end to end: not in the fast lane (-m "not e2e")

REPO = Path(__file__).resolve().parent.parent


def execute(nb, cwd: Path, allow_errors=False):
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=allow_errors,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def outputs_text(cell) -> str:
    """The cell's outputs as a reader sees them. A kernel may send one print as two stream messages when
    its buffer flushes between them; front-ends run consecutive stream chunks together, and so does this."""
    parts, stream = [], None
    for out in cell.get("outputs", []):
        name = out.get("name") if out.get("output_type") == "stream" else None
        if name is not None and name == stream:
            parts[-1] += out.get("text", "")
            continue
        stream = name
        parts.append(out.get("text", ""))
        parts.extend(str(v) for v in out.get("data", {}).values())
        parts.extend(out.get("traceback", []))
    return "\n".join(parts)


def test_quickstart_notebook_runs_and_leaves_a_static_manifest(pod_env, tmp_path):
    work = tmp_path / "example_notebooks"
    shutil.copytree(REPO / "example_notebooks", work, ignore=shutil.ignore_patterns("artifacts", ".venv"))
    nb = execute(nbformat.read(work / "quickstart.ipynb", as_version=4), work)
    run_cell = nb.cells[2]
    html = outputs_text(run_cell)
    assert "podmagic-manifest" in html and "succeeded" in html
    assert "python resolved" in html and "3.12.1" in html
    assert "epoch 3 loss=" in html  # the log tail, with \r progress collapsed
    live_view = run_cell.outputs[0]  # the live view, replaced by static HTML when the run ended
    assert "application/vnd.jupyter.widget-view+json" not in live_view["data"]
    assert "podmagic-manifest" in live_view["data"]["text/html"]
    assert "application/vnd.jupyter.widget-view+json" in run_cell.outputs[1]["data"]  # relaunch controls
    listing = outputs_text(nb.cells[4])
    assert "podmagic-runs" in listing and "quickstart-" in listing
    (run_dir,) = list(store.iter_run_dirs(work / "demo"))
    manifest = store.read_json(run_dir / store.MANIFEST)
    assert manifest["python_resolved"] == "3.12.1" and manifest["artifacts"][0]["status"] == "success"
    assert (run_dir / "metrics.json").is_file()


def test_bad_cell_is_one_line_error_and_no_run_dir(pod_env, project):
    nb = new_notebook(cells=[
        new_code_cell("%load_ext podmagic"),
        new_code_cell("%%pod\npod:\n  gpu_order: A100\nrun: echo hi\n"),
        new_code_cell("%%pod --var 9bad=1\nrun: echo hi\n"),
        new_code_cell("%%pod --dry-run --var who=me\npod: {python_version: \"3.12.1\"}\nrun: echo {who}\n"),
        new_code_cell("%%pod\nstaging: []\nrun: exit 5\n"),
    ])
    nb = execute(nb, project, allow_errors=True)
    bad, badvar, dry, failed = nb.cells[1:]
    assert outputs_text(bad).strip() == ("UsageError: cell:3:14: error: `pod.gpu_order` must be a list of "
                                         "strings, got str 'A100'")  # one line, no Python traceback
    assert "--var expects NAME=VALUE" in outputs_text(badvar)
    text = outputs_text(dry)
    assert "uv python install 3.12.1 && cd /workspace/repo && uv python pin 3.12.1" in text and "echo me" in text
    assert "run exited with code 5" in outputs_text(failed)
    runs = list(store.iter_run_dirs(project))
    assert len(runs) == 1  # only the failing run made a directory; bad cells and the dry run made none


def test_an_error_cell_stops_run_all(pod_env, project):
    nb = new_notebook(cells=[new_code_cell("%load_ext podmagic"), new_code_cell("%%pod\nrun: [x\n"),
                             new_code_cell("print('must not run')")])
    with pytest.raises(CellExecutionError):
        execute(nb, project)
    assert nb.cells[2].get("outputs") == []


def test_magic_line_commands(pod_env, project):
    nb = new_notebook(cells=[
        new_code_cell("%load_ext podmagic"),
        new_code_cell("%%pod --name listed\nstaging: []\nrun: echo listed-output\n"),
        new_code_cell("%pod runs --name listed"),
        new_code_cell("rid = __import__('podmagic.run.store').run.store.iter_run_dirs(__import__('pathlib').Path('.'))\n"
                      "rid = next(rid).name\n%pod show $rid"),
        new_code_cell("%pod logs $rid"),
        new_code_cell("env = %pod capture-env\nprint(sorted(env))"),
        new_code_cell("%config PodMagic.backend = 'nope'\ntry:\n    get_ipython().run_cell_magic('pod', '', 'run: x')\n"
                      "except Exception as e:\n    print('ERR', e)"),
    ])
    nb = execute(nb, project)
    assert "listed-" in outputs_text(nb.cells[2])
    assert "podmagic-manifest" in outputs_text(nb.cells[3])
    assert "listed-output" in outputs_text(nb.cells[4])
    assert "local_git_sha" in outputs_text(nb.cells[5])
    assert "unknown backend 'nope'" in outputs_text(nb.cells[6])


@pytest.mark.parametrize("flag,config,env,key,expected", [
    ("ssh", "runpod", "local", True, "ssh"), (None, "ssh", "local", True, "ssh"),
    (None, None, "ssh", True, "ssh"), (None, None, None, True, "runpod"), (None, None, None, False, "local"),
])
def test_backend_choice_order(monkeypatch, tmp_path, flag, config, env, key, expected):
    from podmagic.run.api import resolve_backend

    monkeypatch.setenv("HOME", str(tmp_path))
    for name, value in (("PODMAGIC_BACKEND", env), ("RUNPOD_API_KEY", "k" if key else None)):
        if value:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name, raising=False)
    assert resolve_backend(flag, config) == expected


RECORDS = [
    "%load_ext podmagic",
    "%%pod --name colours\nstaging: []\nrun: |\n  printf '\\033[32mOK\\033[0m green\\n'\n"
    "  for i in 1 2 3; do printf '\\rstep %s of 3' $i; sleep 0.1; done; echo\n",
    "from podmagic.ui.magics import last_controls\nc = last_controls()\nc.relaunch()\nc.wait()",
    "%%pod --sweep seed=0,1 -o sw --name sweepy\nstaging: []\nrun: printf '\\033[31mshard {seed}\\033[0m\\n'\n",
    "%%pod --detach -o d --name det\nstaging: []\nrun: |\n  printf '\\033[34mblue\\033[0m\\n'; sleep 1\n",
    "%pod wait {d.run_id}",
    "%pod attach {d.run_id}",
    "%pod compare {sw.sweep_id}",
    "%pod logs {d.run_id}",
    "%pod show {d.run_id}",
]
WIDGET = "application/vnd.jupyter.widget-view+json"


def _html(cell) -> list[str]:
    return [o["data"]["text/html"] for o in cell.get("outputs", []) if "text/html" in o.get("data", {})]


def test_every_end_state_is_static_html_in_the_saved_notebook(pod_env, project):
    """Run each kind of cell, save, drop the kernel, and read the file as a fresh session would."""
    nb = execute(new_notebook(cells=[new_code_cell(c) for c in RECORDS]), project)
    path = project / "records.ipynb"
    nbformat.write(nb, path)
    raw = path.read_text()
    assert "\\u001b" not in raw and "\x1b" not in raw  # no escape reached the file
    saved = nbformat.read(path, as_version=4)  # the kernel is gone: only what the file holds
    load, run, relaunch, sweep, detached, wait, attach, compare, logs, show = saved.cells

    first = run.outputs[0]["data"]
    assert WIDGET not in first and "podmagic-run" in first["text/html"]  # the live view became its record
    record = first["text/html"]
    assert '<span style="color:#1a9a4a">OK</span> green' in record  # ANSI rendered
    assert "step 3 of 3" in record and "step 1 of 3" not in record  # \r replaced the line
    assert "podmagic-summary" in record and "succeeded" in record and "run.log'" in record
    assert WIDGET in run.outputs[1]["data"]  # the relaunch controls (live only) ...
    assert run.outputs[1]["data"]["text/plain"].startswith("podmagic relaunch controls")  # ... and without it

    (result,) = [h for h in _html(relaunch) if "podmagic-relaunch-result" in h]
    assert "spec changes</b>: no differences" in result and "green" in result
    assert all(WIDGET not in o.get("data", {}) for o in relaunch.outputs)

    (table,) = _html(sweep)
    assert "podmagic-sweep-record" in table and "shard 1" not in table and "sweepy" in table
    assert ">seed<" in table and "sweep-sweep-" not in table and "podmagic-compare" in table
    assert all(WIDGET not in o.get("data", {}) for o in sweep.outputs)

    # The detached cell's live view was ended by `%pod wait` (a display update by id).
    assert any("podmagic-run" in h and "blue" in h for h in _html(detached)), detached.outputs
    assert all(WIDGET not in o.get("data", {}) for o in detached.outputs)
    for cell in (wait, attach):
        assert any("podmagic-run" in h and "blue" in h and "succeeded" in h for h in _html(cell)), cell.outputs
    assert "podmagic-compare" in _html(compare)[0]
    assert "podmagic-logs" in _html(logs)[0] and "color:#2f7ae5" in _html(logs)[0]
    assert "podmagic-manifest" in _html(show)[0]

    from nbconvert import HTMLExporter

    exported, _ = HTMLExporter().from_notebook_node(saved)  # as nbconvert (and a static viewer) shows it
    for marker in ("podmagic-run", "podmagic-relaunch-result", "podmagic-sweep-record", "podmagic-compare",
                   "podmagic-logs", "step 3 of 3"):
        assert marker in exported, marker
    assert "\x1b" not in exported and "model not found" not in exported
