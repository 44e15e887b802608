"""`podmagic reproduce RUN` and `%pod reproduce RUN`: re-create a run from its run directory alone.

The comparison (`run.reproduce.compare`) is tested on its own; the rest are real runs on the local
backend in a tmp git project: a run on a dirty tree (a tracked edit, a deletion, a staged new file,
an untracked file the job imports), then commits and edits on top, then `reproduce` re-creates the
original tree (the staged files' hashes equal the recorded ones), runs it and reports a match,
leaving the user's working tree as it was. A changed pin is named; a drifting metric fails the
exit code unless within tolerance; every refusal leaves no pod and no run directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MIRROR_VERSIONS, PIN, git
from helpers import run_spec
from podmagic.run import history, recipe, store
from podmagic.run.reproduce import Refused, Tolerance, compare, exit_code, reproduce, run_metrics
from podmagic.ui import reproduce_view

e2e = pytest.mark.e2e

TRAIN = """import json, os
from helper import OFFSET
assert not os.path.exists("old.txt")
scale = float(open("scale.txt").read())
with open(os.environ["PODMAGIC_METRICS"], "a") as out:
    for step in range(1, 4):
        out.write(json.dumps({"step": step, "loss": scale / step + OFFSET + NOISE}) + "\\n")
print("trained", scale)
"""
SPEC = """name: repro
pod: {python_version: "PIN"}
run: |
  python3 train.py
telemetry: {capture_nvidia_smi: false, capture_dmesg: false, capture_pod_describe: false}
lifecycle: {on_success: delete, on_failure: stop}
""".replace("PIN", PIN)


def env_row(label, a, b):
    return {"key": label, "label": label, "original": a, "reproduction": b, "match": a == b}


# ------------------------------------------------------------------ the comparison, pure


def test_compare_exact_within_and_beyond_tolerance():
    base = {"run_id": "a", "python_resolved": "3.12.1", "exit_code": 0}
    again = {**base, "run_id": "b"}
    curve = {"loss": [(1.0, 0.5), (2.0, 0.25)]}
    exact = compare(base, again, curve, curve)
    assert exact["verdict"] == "reproduced" and exact["exact"] and exact["metrics"][0]["status"] == "exact"
    near = {"loss": [(1.0, 0.5), (2.0, 0.2500001)]}
    assert compare(base, again, curve, near)["verdict"] == "differs"
    within = compare(base, again, curve, near, Tolerance(rtol=1e-3))
    assert within["verdict"] == "reproduced" and not within["exact"] and within["metrics"][0]["status"] == "within"
    assert exit_code(within) == 0 and exit_code(compare(base, again, curve, near)) == 1
    drift = compare(base, again, curve, near, Tolerance(atol=1e-9))
    assert any("metric loss" in r and "atol 1e-09" in r for r in drift["reasons"])


def test_compare_names_each_environment_difference_and_missing_metrics():
    a = {"run_id": "a", "python_version": "3.12.1", "python_resolved": "3.12.1", "exit_code": 0,
         "deploy_metadata": {"payload_lockfile_sha256": "x"}}
    b = {**a, "run_id": "b", "python_version": "3.13.0", "python_resolved": "3.13.0",
         "deploy_metadata": {"payload_lockfile_sha256": "y"}, "exit_code": 1}
    report = compare(a, b, {"loss": [(0.0, 1.0)]}, {"acc": [(0.0, 1.0)]})
    assert report["verdict"] == "differs" and not report["environment_matches"]
    reasons = "\n".join(report["reasons"])
    for expected in ("interpreter requested: 3.12.1 → 3.13.0", "interpreter resolved: 3.12.1 → 3.13.0",
                     "lockfile sha256: x → y", "exit code: 0 → 1", "metric acc: only in the reproduction",
                     "metric loss: only in the original"):
        assert expected in reasons
    assert "run:" not in reasons and "backend:" not in reasons  # context rows are shown, not counted
    text = reproduce_view.text(report)
    assert "does NOT reproduce a" in text and "≠ 3.12.1" in text and "interpreter requested" in text
    html = reproduce_view.html_report(report)
    assert "podmagic-reproduce" in html and "3.13.0" in html and "&lt;" not in text


def test_curves_sampled_differently_differ():
    a = {"loss": [(1.0, 1.0), (2.0, 0.5)]}
    report = compare({"run_id": "a"}, {"run_id": "b"}, a, {"loss": [(1.0, 1.0), (3.0, 0.5)]}, Tolerance(atol=1))
    assert report["metrics"][0]["curve"] == "differs" and "different steps" in report["reasons"][0]


# ------------------------------------------------------------------ real runs


@pytest.fixture
def dirty(pod_env, project) -> Path:
    """A project whose run needs its uncommitted state: edit, deletion, staged new file, untracked import."""
    (project / "train.py").write_text(TRAIN.replace("NOISE", "0"))
    (project / "scale.txt").write_text("1.0\n")
    (project / "old.txt").write_text("gone at run time\n")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "train")
    (project / "scale.txt").write_text("2.0\n")            # tracked edit
    (project / "old.txt").unlink()                          # tracked deletion
    (project / "notes.txt").write_text("staged new file\n")
    git(project, "add", "notes.txt")                        # staged new file
    (project / "helper.py").write_text("OFFSET = 0.125\n")  # untracked, not ignored: the job imports it
    return project


def runs(project: Path) -> list[str]:
    return sorted(p.name for p in store.iter_run_dirs(project))


def pods(pod_env: Path) -> list[str]:
    return sorted(os.listdir(pod_env / "pods")) if (pod_env / "pods").is_dir() else []


def worktrees(project: Path) -> int:
    return git(project, "worktree", "list", "--porcelain").count("worktree ")


def move_on(project: Path) -> dict[str, str]:
    """Commit the run's state and edit on top; returns the user's tree as it then is."""
    git(project, "add", "-A")
    git(project, "commit", "-qm", "after the run")
    (project / "scale.txt").write_text("3.0\n")
    (project / "junk.txt").write_text("later work\n")
    return {"status": git(project, "status", "--porcelain"), "scale": (project / "scale.txt").read_text(),
            "head": git(project, "rev-parse", "HEAD")}


@e2e
def test_dirty_run_is_recreated_exactly_and_reproduces(dirty, pod_env):
    original, plan, _ = run_spec(SPEC, dirty)
    assert original["failed"] is False, original["error"]
    rd = store.RunDir(plan.run_dir)
    rec = rd.recipe()
    assert rec["patch"]["status"] == "recorded" and (plan.run_dir / store.RunDir.PATCH).is_file()
    patch = (plan.run_dir / store.RunDir.PATCH).read_text()
    for name in ("scale.txt", "old.txt", "notes.txt", "helper.py"):
        assert f"b/{name}" in patch or f"a/{name}" in patch, name
    assert rec["lockfile"]["sha256"] == original["deploy_metadata"]["payload_lockfile_sha256"]
    staged = rec["staging"]["project"]["files"]
    assert {"helper.py", "notes.txt", "scale.txt", "train.py"} <= set(staged) and "old.txt" not in staged
    before = move_on(dirty)

    report = reproduce(dirty, plan.run_id)
    assert report["verdict"] == "reproduced" and report["exact"], report["reasons"]
    assert exit_code(report) == 0 and report["environment_matches"] and report["metrics_within_tolerance"]
    (loss,) = [m for m in report["metrics"] if m["name"] == "loss"]
    assert loss["status"] == "exact" and loss["points"] == [3, 3] and loss["original_last"] == 2.0 / 3 + 0.125
    again = store.RunDir(Path(report["run_dir"]))
    assert again.path.parent == store.runs_root(dirty) and again.path.is_dir()
    assert again.recipe()["staging"]["project"]["files"] == staged  # the same bytes were staged
    assert again.recipe()["patch"]["sha256"] == rec["patch"]["sha256"]
    manifest = again.manifest()
    assert manifest["reproduces"] == plan.run_id and manifest["reproduction_verdict"] == "reproduced"
    assert again.report()["verdict"] == "reproduced"
    assert "trained 2.0" in again.log_path.read_text()
    # the user's working tree is as it was, and no worktree is left behind
    assert git(dirty, "status", "--porcelain") == before["status"] and worktrees(dirty) == 1
    assert (dirty / "scale.txt").read_text() == before["scale"] and git(dirty, "rev-parse", "HEAD") == before["head"]
    # the link, both ways
    rows = {r["run_id"]: r for r in history.list_runs(dirty)}
    assert rows[again.run_id]["reproduces"] == plan.run_id
    assert rows[plan.run_id]["reproduced_by"] == [again.run_id]


@e2e
@pytest.mark.skipif(len(MIRROR_VERSIONS) < 2, reason="needs two interpreters in the mirror")
def test_a_changed_pin_is_named_as_the_difference(dirty, pod_env):
    original, plan, _ = run_spec(SPEC, dirty)
    other = MIRROR_VERSIONS[1]
    spec = plan.run_dir / store.RunDir.SPEC
    spec.write_text(spec.read_text().replace(f'"{PIN}"', f'"{other}"'))  # the recorded spec, edited
    report = reproduce(dirty, plan.run_id)
    assert report["verdict"] == "differs" and exit_code(report) == 1
    assert f"interpreter requested: {PIN} → {other}" in report["reasons"]
    assert f"interpreter resolved: {PIN} → {other}" in report["reasons"]
    assert any(r.startswith("spec sha256: ") for r in report["reasons"])
    assert not any(r.startswith("metric") for r in report["reasons"])  # the job itself matched


@e2e
def test_a_drifting_metric_fails_unless_within_tolerance(dirty, pod_env):
    (dirty / "train.py").write_text(TRAIN.replace("NOISE", "int.from_bytes(os.urandom(4), 'big') * 1e-12"))
    original, plan, _ = run_spec(SPEC, dirty)
    strict = reproduce(dirty, plan.run_id)
    assert strict["verdict"] == "differs" and exit_code(strict) == 1
    assert any(r.startswith("metric loss:") for r in strict["reasons"]) and strict["environment_matches"]
    loose = reproduce(dirty, plan.run_id, tolerance=Tolerance(atol=0.01))
    assert loose["verdict"] == "reproduced" and not loose["exact"] and exit_code(loose) == 0


def _tamper_sha(run_dir: Path) -> None:
    m = store.read_json(run_dir / store.MANIFEST)
    m["deploy_metadata"]["local_git_sha"] = "0" * 40
    store.write_json_atomic(run_dir / store.MANIFEST, m)


def _tamper_patch(run_dir: Path) -> None:
    path = run_dir / store.RunDir.PATCH
    text = path.read_text().replace("-1.0", "-9.9")  # no longer matches the recorded SHA's scale.txt
    path.write_text(text)
    rec = store.read_json(run_dir / store.RunDir.RECIPE)
    rec["patch"]["sha256"] = recipe.sha256(text.encode())
    store.write_json_atomic(run_dir / store.RunDir.RECIPE, rec)


def _tamper_lockfile(run_dir: Path) -> None:
    m = store.read_json(run_dir / store.MANIFEST)
    m["deploy_metadata"]["payload_lockfile_sha256"] = "f" * 64
    store.write_json_atomic(run_dir / store.MANIFEST, m)


def _tamper_recipe_lockfile(run_dir: Path) -> None:
    rec = store.read_json(run_dir / store.RunDir.RECIPE)
    rec["lockfile"]["sha256"] = "e" * 64
    store.write_json_atomic(run_dir / store.RunDir.RECIPE, rec)


def _tamper_staged_file(run_dir: Path) -> None:
    rec = store.read_json(run_dir / store.RunDir.RECIPE)
    rec["staging"]["project"]["files"]["helper.py"] = "0" * 64
    store.write_json_atomic(run_dir / store.RunDir.RECIPE, rec)


REFUSALS = [
    ("sha", _tamper_sha, "is not in the repository"),
    ("diff", _tamper_patch, "does not apply to the recorded SHA"),
    ("lockfile", _tamper_lockfile, "the lockfile differs: uv.lock"),
    ("lockfile-recipe", _tamper_recipe_lockfile, "reproduce.json of run"),
    ("staged-file", _tamper_staged_file, "staging 'project' differs in 1 file(s): helper.py"),
]


@e2e
@pytest.mark.parametrize("name,tamper,message", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_each_refusal_leaves_no_pod_and_no_run_directory(dirty, pod_env, name, tamper, message):
    original, plan, _ = run_spec(SPEC, dirty)
    tamper(plan.run_dir)
    before_runs, before_pods = runs(dirty), pods(pod_env)
    with pytest.raises(Refused) as info:
        reproduce(dirty, plan.run_id)
    assert message in str(info.value)
    assert runs(dirty) == before_runs and pods(pod_env) == before_pods and worktrees(dirty) == 1


@e2e
def test_secrets_needed_and_not_given_are_refused_before_anything(dirty, pod_env, monkeypatch):
    spec = SPEC.replace("run: |\n", "secrets:\n  - {name: tok, env: [REPRO_TOKEN], destination: /root/.tok}\n"
                                    "run: |\n  test -s /root/.tok && echo '{tag}'\n")
    monkeypatch.setenv("REPRO_TOKEN", "t0ken-value")
    original, plan, _ = run_spec(spec, dirty, secret_variables=[("tag", "s3cret-tag")])
    assert original["failed"] is False, original["error"]
    before_runs, before_pods = runs(dirty), pods(pod_env)
    with pytest.raises(Refused, match=r"secrets needed and not given: --secret-var tag=\.\.\."):
        reproduce(dirty, plan.run_id)
    monkeypatch.delenv("REPRO_TOKEN")
    with pytest.raises(Refused, match="secret 'tok' needs environment variable.*REPRO_TOKEN"):
        reproduce(dirty, plan.run_id, secret_values={"tag": "s3cret-tag"})
    assert runs(dirty) == before_runs and pods(pod_env) == before_pods and worktrees(dirty) == 1
    monkeypatch.setenv("REPRO_TOKEN", "t0ken-value")
    report = reproduce(dirty, plan.run_id, secret_values={"tag": "s3cret-tag"})
    assert report["verdict"] == "reproduced", report["reasons"]
    assert "s3cret-tag" not in (Path(report["run_dir"]) / store.RunDir.REPORT).read_text()


@e2e
def test_the_command_line_reports_text_json_and_exit_codes(dirty, pod_env):
    original, plan, _ = run_spec(SPEC, dirty)
    cli = [sys.executable, "-m", "podmagic.ui.cli"]
    out = subprocess.run([*cli, "reproduce", plan.run_id, "--json"], cwd=dirty, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["verdict"] == "reproduced" and report["reproduces"] == plan.run_id
    assert "RUN_DIR=" in out.stderr and "trained 2.0" in out.stderr  # the re-run's output is not the report
    text = subprocess.run([*cli, "reproduce", plan.run_id, "--rtol", "1e-6"], cwd=dirty, capture_output=True,
                          text=True, timeout=180)
    assert text.returncode == 0 and f"reproduces {plan.run_id} exactly" in text.stdout
    assert "interpreter resolved" in text.stdout and "loss" in text.stdout
    listing = subprocess.run([*cli, "runs"], cwd=dirty, capture_output=True, text=True, timeout=60).stdout
    row = next(line for line in listing.splitlines() if line.startswith(plan.run_id))
    assert "reproduced by" in listing.splitlines()[0] and report["reproduction"] in row
    _tamper_sha(plan.run_dir)
    refused = subprocess.run([*cli, "reproduce", plan.run_id], cwd=dirty, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 2 and "is not in the repository" in refused.stderr and not refused.stdout


@e2e
def test_the_line_magic_shows_the_report(dirty, pod_env):
    from nbformat.v4 import new_code_cell, new_notebook

    from test_notebook import execute, outputs_text

    original, plan, _ = run_spec(SPEC, dirty)
    nb = execute(new_notebook(cells=[new_code_cell("%load_ext podmagic"),
                                     new_code_cell(f"%pod reproduce {plan.run_id}")]), dirty)
    html = outputs_text(nb.cells[1])
    assert "podmagic-reproduce" in html and f"reproduces {plan.run_id} exactly" in html


# ------------------------------------------------------------------ the record and the metrics, on their own


def test_patch_over_the_cap_is_not_kept_and_says_so(project):
    (project / "data.bin").write_bytes(b"x" * 2048)  # untracked, not ignored
    assert recipe.working_tree_patch(project, cap=1024) == (None, "too_large")
    patch, status = recipe.working_tree_patch(project)
    assert status == "recorded" and b"b/data.bin" in patch
    assert git(project, "status", "--porcelain") == "?? data.bin\n"  # the user's index is untouched


def test_a_patch_holding_a_secret_is_masked_and_marked(project):
    (project / "train.py").write_text("TOKEN = 'hunter2-long-secret'\n")
    patch, _ = recipe.working_tree_patch(project)
    masked, changed = recipe.mask_patch(patch, lambda t: t.replace("hunter2-long-secret", "***"))
    assert changed and b"hunter2" not in masked and b"***" in masked
    assert recipe.mask_patch(patch, lambda t: t) == (patch, False)


def test_clean_tree_records_no_patch(project):
    assert recipe.working_tree_patch(project) == (b"", "clean")


def test_the_patch_sees_each_kind_of_change_and_never_writes_the_users_index(project):
    """The clean check is one `git status` listing: each kind of change must still make a patch, changes
    under the run directories alone must not, and the user's index stays byte for byte as it was."""
    index = project / ".git" / "index"
    runs = project / "artifacts" / "runpod" / "r1"
    runs.mkdir(parents=True)
    (runs / "run.log").write_text("a run's log\n")  # ignored here: run directories never count
    os.utime(project / "train.py", (1, 1))  # stale stat data: a status that refreshed would rewrite the index
    before = index.read_bytes()
    assert recipe.working_tree_patch(project) == (b"", "clean")
    assert index.read_bytes() == before
    for change, seen in ((lambda: (project / "new.py").write_text("n = 1\n"), b"b/new.py"),
                         (lambda: (project / "train.py").write_text("print('edited')\n"), b"edited"),
                         (lambda: (project / "uv.lock").unlink(), b"deleted file mode")):
        change()
        patch, status = recipe.working_tree_patch(project)
        assert status == "recorded" and seen in patch
    assert index.read_bytes() == before


def test_repo_facts_outside_a_repository_and_before_the_first_commit(tmp_path):
    assert recipe.repo_facts(tmp_path) == (None, None, None)
    git(tmp_path, "init", "-q")
    top, common, sha = recipe.repo_facts(tmp_path)
    assert top == tmp_path.resolve() and common == str(tmp_path.resolve() / ".git") and sha is None
    assert recipe.working_tree_patch(tmp_path) == (None, "unreadable: not a git repository with a commit")


def test_metrics_fall_back_to_the_pulled_json_artifacts(tmp_path):
    out = tmp_path / "run" / "out"
    out.mkdir(parents=True)
    (out / "metrics.json").write_text('{"final": {"acc": 0.9, "ok": true}, "losses": [0.5, 0.25]}')
    manifest = {"artifacts": [{"label": "m", "status": "success", "local_path": str(out)}]}
    series, source = run_metrics(tmp_path / "run", manifest)
    assert source == "artifacts JSON"
    assert series == {"metrics.json:final.acc": [(0.0, 0.9)], "metrics.json:losses[0]": [(0.0, 0.5)],
                      "metrics.json:losses[1]": [(0.0, 0.25)]}
    (tmp_path / "run" / store.RunDir.USER_METRICS).write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.0}\n')
    series, source = run_metrics(tmp_path / "run", manifest)
    assert source == store.RunDir.USER_METRICS and series == {"loss": [(1.0, 2.0), (2.0, 1.0)]}


def test_in_repository_finds_git_where_git_would(tmp_path, monkeypatch):
    from podmagic.run import provenance

    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.delenv("GIT_WORK_TREE", raising=False)
    plain = tmp_path / "plain" / "deep"
    plain.mkdir(parents=True)
    assert not provenance.in_repository(plain)
    assert provenance.git_state(plain) == (None, None, None) and recipe.repo_facts(plain) == (None, None, None)
    repo = tmp_path / "repo"
    (repo / "sub" / "dir").mkdir(parents=True)
    git(repo, "init", "-q")
    assert provenance.in_repository(repo / "sub" / "dir")
    assert recipe.repo_facts(repo / "sub" / "dir")[0] == repo.resolve()
    linked = tmp_path / "linked"  # a worktree or submodule: `.git` is a file naming the real one
    linked.mkdir()
    (linked / ".git").write_text(f"gitdir: {repo / '.git'}\n")
    assert provenance.in_repository(linked)
    monkeypatch.setenv("GIT_DIR", str(repo / ".git"))  # git told where by its environment
    assert provenance.in_repository(plain)
