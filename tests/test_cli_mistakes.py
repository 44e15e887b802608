"""Every mistake a new user hit, through the real `podmagic` command: one line naming the fix,
exit 2, and no run directory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from podmagic.run import store

pytestmark = pytest.mark.e2e  # real runs, CLI subprocesses or kernels: not in the fast lane (-m "not e2e")


def cli(*args, cwd: Path, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "podmagic.ui.cli", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout)


def one_line(res) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


SEED = "name: m-{seed}\nvariables: {seed: \"1\"}\nstaging: []\nrun: echo seed={seed}\n"

MISTAKES = [
    # (id, spec text, argv after the file, fragment of the one line)
    ("unused-var", SEED, ["--var", "sed=3"], "--var: error: sed=...: no template in the spec uses {sed}; "
                                            "did you mean seed?"),
    ("unused-var-no-templates", "staging: []\nrun: echo hi\n", ["--var", "x=1"], "the spec uses no {templates}"),
    ("unused-secret-var", SEED, ["--secret-var", "tokn=abc"], "--secret-var: error: tokn=...: no template"),
    ("bad-var", SEED, ["--var", "seed"], "--var: error: --var expects NAME=VALUE"),
    ("ssh-without-host", SEED, ["--backend", "ssh"], "the ssh backend needs --host USER@HOST[:PORT]"),
    ("host-on-local", SEED, ["--backend", "local", "--host", "x"], "--host does not apply to the local backend"),
    ("gpu-id-alone", SEED, ["--gpu-id", "NVIDIA L40S"], "--gpu-id: error: --gpu-id and --datacenter-id go together"),
    ("cap-zero", SEED, ["--cost-cap-usd", "0"], "--cost-cap-usd: error: must be > 0, got 0.0"),
    ("vars-file-missing", SEED, ["--vars-file", "nope.json"], "--vars-file: error: nope.json does not exist"),
    ("yaml-no-space", "name: x\nrun:echo hi\nstaging: []\n", [], "job.yaml:2:1: error: invalid YAML: put a space "
                                                                "after the colon: `run:echo` should be `run: echo`"),
    ("yaml-indent", "pod:\n  image: x\n   gpu_order: [a]\nrun: echo\n", [], "this line is indented more than the "
                                                                          "key above it"),
    ("yaml-tab", "pod:\n\timage: x\nrun: echo\n", [], "YAML indentation must use spaces, not tabs"),
    ("yaml-dash", "setup:\n  - command: a\n  -command: b\nrun: x\n", [], "put a space after the dash"),
    ("yaml-colon-value", "run: echo a: b\n", [], "a value holding ': ' must be quoted"),
    ("telemetry", "telemetry: {sample_interval_sec: 2}\nrun: x\n", [], "must be ≥ 5 (seconds), got 2"),
    ("secret-relative", "secrets:\n  - {name: t, destination: secrets/env, env: [HOME]}\nrun: x\n", [],
     "`secrets[0].destination` must be an absolute pod path"),
    ("secret-env-empty", "secrets:\n  - {name: t, destination: /workspace/s, env: []}\nrun: x\n", [],
     "needs exactly one of `env: [VAR, ...]` or `file: PATH` (`env: []` names no variable)"),
    ("stop-false-false", "stop: {on_success: false, on_failure: false}\nrun: x\n", [],
     "write `lifecycle: {on_success: preserve, on_failure: preserve}` instead"),
    ("stop-true-true", "stop: {on_success: true, on_failure: true}\nrun: x\n", [],
     "write `lifecycle: {on_success: delete, on_failure: stop}` instead"),
    ("stop-failure-false", "stop:\n  on_failure: false\nrun: x\n", [],
     "write `lifecycle: {on_success: delete, on_failure: preserve}` instead"),
]


@pytest.mark.parametrize("case", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_mistake_is_one_line_exit_2_no_run_dir(case, pod_env, project):
    _, text, argv, fragment = case
    (project / "job.yaml").write_text(text)
    for verb in ("run", "validate", "plan"):
        res = cli(verb, "job.yaml", *argv, cwd=project, env={"PODMAGIC_SSH_HOST": ""})
        assert res.returncode == 2, (verb, res.returncode, res.stderr)
        assert fragment in one_line(res), (verb, res.stderr)
        assert not re.match(r"^--[\w-]+:\d+:\d+:", res.stderr)  # a flag has no line and column
    assert not store.runs_root(project).exists()


def test_usage_mistakes_name_the_fix(pod_env, project):
    res = cli("rnu", "job.yaml", cwd=project)
    assert res.returncode == 2 and "unknown command 'rnu'; did you mean 'run'?" in one_line(res)
    res = cli("run", "job.yaml", "--max-gpu-prize", "1", cwd=project)
    assert res.returncode == 2 and "did you mean --max-gpu-price?" in one_line(res)
    res = cli("run", cwd=project)
    assert res.returncode == 2 and "give the config file: FILE or --config FILE" in one_line(res)
    res = cli("validate", "a.yaml", "--config", "b.yaml", cwd=project)
    assert res.returncode == 2 and "two config files given" in one_line(res)


def test_runpod_commands_without_a_key_are_one_line(pod_env, project, tmp_path):
    env = {"HOME": str(tmp_path / "home"), "RUNPOD_API_KEY": ""}
    (tmp_path / "home").mkdir()
    (project / "ok.yaml").write_text("staging: []\nrun: echo fine\n")
    run_id = Path(cli("run", "ok.yaml", "--print-run-dir", cwd=project).stdout.splitlines()[0][8:]).name
    gone = cli("cleanup", run_id, "--yes", cwd=project, env=env)  # a local run's pod needs no key (issue 11)
    assert gone.returncode != 0 and "already removed" in one_line(gone), gone.stderr
    for argv in (["gpu-prices"], ["gpu-list"]):  # ls-stale/cleanup list local pods without a key (issue 11)
        res = cli(*argv, cwd=project, env=env)
        assert res.returncode == 2, (argv, res.stderr)
        assert "no RunPod API key: export RUNPOD_API_KEY=" in one_line(res), argv


def test_stop_finished_compare_first_line_and_plan_without_cap(pod_env, project):
    (project / "ok.yaml").write_text("staging: []\nrun: echo fine\n")
    (project / "bad.yaml").write_text("staging: []\nsetup:\n  - command: \"printf 'L%s\\\\n' 1 2 3 >&2; exit 3\"\n"
                                      "run: echo never\n")
    assert cli("run", "ok.yaml", cwd=project).returncode == 0
    assert cli("run", "bad.yaml", cwd=project).returncode == 1
    rows = json.loads(cli("runs", "--json", cwd=project).stdout)
    by_name = {r["job_name"]: r["run_id"] for r in rows}
    ok, bad = by_name["ok"], by_name["bad"]
    res = cli("stop", ok, cwd=project)
    assert res.returncode == 2 and f"run {ok} already ended (succeeded); nothing to stop" in one_line(res)
    assert not (store.runs_root(project) / ok / store.STOP).exists()
    error = store.read_json(store.runs_root(project) / bad / store.MANIFEST)["error"]
    table = cli("compare", ok, bad, cwd=project).stdout
    width = max(len(line) for line in table.splitlines())
    assert error.splitlines()[0] in table and width < 300, table
    assert "\n" in error and "L2" in error and "L2" not in table
    assert json.loads(cli("show", bad, "--json", cwd=project).stdout)["error"] == error
    assert "L3" in cli("show", bad, cwd=project).stdout  # show has the whole error
    strict = cli("compare-runs", ok, bad, cwd=project)
    assert strict.returncode == 1 and ok in strict.stdout
    plan = cli("plan", "ok.yaml", cwd=project).stdout
    assert "no cost cap (the local backend has no price)" in plan and "cap=$" not in plan
    (project / "gpu.yaml").write_text("pod: {image: img, datacenters: [EU-RO-1], gpu_order: [NVIDIA L40S]}\n"
                                      "staging: []\nrun: echo fine\n")
    assert "cap=$10.0" in cli("plan", "gpu.yaml", "--backend", "runpod", "--cost-cap-usd", "10", cwd=project).stdout


def test_progress_lines_never_print_none(pod_env, project):
    from podmagic.run.events import Event
    from podmagic.ui.cli.common import progress_line

    line = progress_line(Event("python_resolved", {"requested": None, "resolved": "3.12.1", "path": "/p"}))
    assert line == "[podmagic] python resolved resolved=3.12.1 path=/p"
    assert progress_line(Event("placement_attempt", {"gpu_id": "A", "outcome": "trying"})) is None
    (project / "job.yaml").write_text("staging: []\nrun: echo hi\n")
    res = cli("run", "job.yaml", cwd=project)
    assert res.returncode == 0 and "=None" not in res.stderr and "python resolved" in res.stderr
