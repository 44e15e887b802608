"""runpod-deploy's run flags and forensic verbs, plus detach / attach / wait / logs -f, on real local runs."""

from __future__ import annotations

import pytest

import json
import subprocess
import sys
import time
from pathlib import Path

from podmagic.run import store
from test_cli_mistakes import cli

pytestmark = pytest.mark.e2e  # real runs, CLI subprocesses or kernels: not in the fast lane (-m "not e2e")


def test_run_flags_print_run_dir_vars_file_and_overrides(pod_env, project):
    (project / "job.yaml").write_text("name: f-{seed}-{tag}\nvariables: {seed: \"1\", tag: a}\nstaging: []\n"
                                      "run: echo seed={seed} tag={tag}\n")
    (project / "vars.json").write_text(json.dumps({"seed": "5", "tag": "file"}))
    res = cli("run", "--config", "job.yaml", "--vars-file", "vars.json", "--var", "tag=flag", "--print-run-dir",
              cwd=project)
    assert res.returncode == 0, res.stderr
    first = res.stdout.splitlines()[0]
    assert first.startswith("RUN_DIR=") and Path(first[8:]).is_dir() and Path(first[8:]).name.startswith("f-5-flag-")
    assert "seed=5 tag=flag" in res.stdout
    plan = cli("plan", "job.yaml", "--cost-cap-usd", "2", "--max-runtime-minutes", "7", cwd=project).stdout
    assert "timeout=7m" in plan
    (project / "bad.json").write_text('{"seed": 5}')
    res = cli("run", "job.yaml", "--vars-file", "bad.json", cwd=project)
    assert res.returncode == 2 and "the value of 'seed' must be a string" in res.stderr
    assert len(list(store.iter_run_dirs(project))) == 1
    (project / "paths.yaml").write_text("local: {required_paths: [data/x.csv, train.py]}\nstaging: []\nrun: echo\n")
    missing = cli("validate", "paths.yaml", "--check-local", cwd=project)
    assert missing.returncode == 2 and "local.required_paths missing:" in missing.stderr
    assert "data/x.csv" in missing.stderr and "train.py" not in missing.stderr
    assert cli("validate", "paths.yaml", cwd=project).returncode == 0  # opt-in at validate


def test_detach_attach_wait_and_logs_follow(pod_env, project):
    (project / "slow.yaml").write_text("staging: []\nrun: |\n  echo early\n  sleep 2\n  echo late\n")
    (project / "fails.yaml").write_text("staging: []\nrun: |\n  sleep 1\n  exit 4\n")
    started = time.monotonic()
    res = cli("run", "slow.yaml", "--detach", "--print-run-dir", cwd=project)
    assert res.returncode == 0 and time.monotonic() - started < 20, res.stderr
    run_id = Path(res.stdout.splitlines()[0][8:]).name
    assert f"podmagic attach {run_id}" in res.stderr
    follow = cli("logs", run_id, "-f", cwd=project, timeout=120)
    assert follow.returncode == 0 and "early" in follow.stdout and "late" in follow.stdout, follow.stderr
    assert cli("wait", run_id, cwd=project).returncode == 0
    attach = cli("attach", run_id, cwd=project)
    assert attach.returncode == 0 and "late" in attach.stdout
    assert cli("logs", "--config", "slow.yaml", "--no-follow", cwd=project).stdout.splitlines()[-1] == "late"
    failing = Path(cli("run", "fails.yaml", "--detach", "--print-run-dir", cwd=project).stdout.splitlines()[0][8:])
    waited = cli("wait", failing.name, cwd=project)
    assert waited.returncode == 1 and "exit code" in waited.stderr
    stop = cli("stop", failing.name, cwd=project)
    assert stop.returncode == 2 and "already ended (failed)" in stop.stderr


def _two_runs(project: Path) -> tuple[str, str]:
    (project / "ok.yaml").write_text("staging: []\nrun: echo fine\n")
    (project / "no.yaml").write_text("staging: []\nrun: exit 2\n")
    ok = cli("run", "ok.yaml", "--print-run-dir", cwd=project).stdout.splitlines()[0][8:]
    no = cli("run", "no.yaml", "--print-run-dir", cwd=project).stdout.splitlines()[0][8:]
    return Path(ok).name, Path(no).name


def test_events_timeline_query_summary_and_ls_runs(pod_env, project):
    ok, no = _two_runs(project)
    timeline = cli("events", ok, cwd=project)
    assert timeline.returncode == 0
    lines = timeline.stdout.splitlines()
    assert lines[0].startswith("[+0:00] ") and all(line.startswith("[+") for line in lines)
    assert any(" run_finished " in line or line.endswith(" run_finished") for line in lines), lines
    as_dir = cli("events", str(store.runs_root(project) / ok), cwd=project)
    assert as_dir.stdout == timeline.stdout
    query = cli("events-query", "--filter", "event=run_finished", "--json", cwd=project)
    found = [json.loads(line) for line in query.stdout.splitlines()]
    assert {Path(e["run_dir"]).name for e in found} == {ok, no} and all(e["event"] == "run_finished" for e in found)
    only_failed = cli("events-query", "--filter", "event=run_finished", "--filter", "failed=true", cwd=project)
    assert no in only_failed.stdout and ok not in only_failed.stdout
    assert cli("events-query", "--since", "1h", cwd=project).stdout.count("run_finished") == 2
    assert cli("events-query", "--filter", "event", cwd=project).returncode == 2
    single = cli("manifest-summary", no, cwd=project)
    assert single.returncode == 0 and "failed:        True" in single.stdout and f"run_id:        {no}" in single.stdout
    total = cli("manifest-summary", "--root", str(store.runs_root(project)), cwd=project)
    assert total.returncode == 0
    tail = total.stdout.split("== TOTALS ==")[1]
    assert "manifests:        2" in tail and "failed:           1" in tail and "estimated_cost:   $" in tail
    table = cli("ls-runs", cwd=project).stdout.splitlines()
    assert table[0].split() == ["timestamp", "job", "pod_id", "gpu", "dc", "wall_s", "failed", "est_$"]
    assert len(table) == 3 and {line.split()[1]: line.split()[6] for line in table[1:]} == {"no": "Y", "ok": "N"}
    rows = json.loads(cli("ls-runs", "--json", cwd=project).stdout)
    assert {r["run_id"]: r["failed"] for r in rows} == {no: "Y", ok: "N"}
    assert len(json.loads(cli("ls-runs", "--json", "--limit", "1", cwd=project).stdout)) == 1


def test_help_on_every_subcommand_and_version(pod_env, project):
    from podmagic.ui.cli import parser

    sub = next(a for a in parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    helps = {a.dest: a.help for a in sub._choices_actions}
    assert set(helps) == set(sub.choices) and all(helps.values()), helps
    for verb in ("gpu-list", "gpu-inventory", "gpu-prices", "estimate", "events", "events-query",
                 "manifest-summary", "ls-runs", "attach", "wait", "run", "validate", "logs", "cleanup"):
        assert verb in sub.choices
    version = subprocess.run([sys.executable, "-m", "podmagic.ui.cli", "--version"], capture_output=True,
                             text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("podmagic 0.")
    assert "--max-gpu-price" in cli("run", "--help", cwd=project).stdout
