"""The `podmagic` command line, as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PIN
from podmagic.run import store

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.e2e  # real runs through the command line, as subprocesses: not in the fast lane


def cli(*args, cwd: Path, env=None):
    return subprocess.run([sys.executable, "-m", "podmagic.ui.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_validate_plan_run_runs_show_logs(pod_env, project):
    (project / "job.yaml").write_text("name: cli-{seed}\nvariables: {seed: \"0\"}\npod: {python_version: \"" + PIN + "\"}\n"
                                      "run: |\n  echo seed={seed}\n")
    ok = cli("validate", "job.yaml", cwd=project)
    assert ok.returncode == 0 and "ok: job.yaml schema_version=2 job=cli-0" in ok.stdout
    plan = cli("plan", "job.yaml", "--var", "seed=3", cwd=project)
    assert f"uv python install {PIN} && cd /workspace/repo && uv python pin {PIN}" in plan.stdout
    assert not store.runs_root(project).exists()  # validate and plan write nothing
    run = cli("run", "job.yaml", "--var", "seed=3", cwd=project)
    assert run.returncode == 0, run.stderr
    assert "seed=3" in run.stdout and "python resolved" in run.stderr
    rows = json.loads(cli("runs", "--json", cwd=project).stdout)
    assert rows[0]["job_name"] == "cli-3" and rows[0]["state"] == "succeeded"
    show = json.loads(cli("show", rows[0]["run_id"], "--json", cwd=project).stdout)
    assert show["python_resolved"] == PIN
    assert cli("logs", rows[0]["run_id"], cwd=project).stdout == "seed=3\n"
    assert "local_git_sha" in cli("capture-env", cwd=project).stdout


def test_invalid_config_exits_2_with_no_run_dir(pod_env, project):
    (project / "bad.yaml").write_text("run: x\npod:\n  gpu_order: A100\n")
    for verb in ("validate", "plan", "run"):
        res = cli(verb, "bad.yaml", cwd=project)
        assert res.returncode == 2 and res.stderr.strip() == "bad.yaml:3:14: error: `pod.gpu_order` must be a list of strings, got str 'A100'"
    (project / "latin1.yaml").write_bytes(b"run: echo caf\xe9\n")
    res = cli("run", "latin1.yaml", cwd=project)
    assert res.returncode == 2 and "latin1.yaml:1:14: error:" in res.stderr
    assert cli("run", "bad.yaml", "--var", "x", cwd=project).returncode == 2
    assert not store.runs_root(project).exists()


def test_failed_run_exits_1_and_dry_run_runs_nothing(pod_env, project):
    (project / "fail.yaml").write_text("staging: []\nrun: exit 7\n")
    res = cli("run", "fail.yaml", cwd=project)
    assert res.returncode == 1 and "exit code           7" in res.stderr
    dry = cli("run", "fail.yaml", "--dry-run", cwd=project)
    assert dry.returncode == 0 and "[run]" in dry.stdout
    assert len(list(store.iter_run_dirs(project))) == 1


def test_import_is_light():
    code = ("import sys, podmagic, podmagic.run.api, podmagic.ui.cli, podmagic.run.runner, podmagic.backends.ssh.backend, "
            "podmagic.backends.runpod.backend; heavy = {'ipywidgets', 'paramiko', 'runpod', 'IPython'} & set(sys.modules); "
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_what_a_run_from_the_shell_imports_leaves_out_yaml_dataclasses_inspect_typing_and_hashlib():
    """About 40 ms of a `podmagic run`: PyYAML (its kept nodes, `run.speccache`), `dataclasses` and
    the `inspect` it imports (`records`), until something asks for them; `typing` (annotations only)
    and `hashlib` with OpenSSL (`podmagic.digest`)."""
    code = ("import sys, podmagic.ui.cli.runs, podmagic.run.api, podmagic.run.runner, podmagic.run.telemetry, "
            "podmagic.run.manifest, podmagic.backends.local, podmagic.backends, podmagic.ui.render; "
            "podmagic.backends.get_backend('local'); "
            "print(sorted({'yaml', 'dataclasses', 'inspect', 'typing', 'hashlib', '_hashlib'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_the_digest_is_sha256():
    import hashlib

    from podmagic import digest

    for data in (b"", b"podmagic", bytes(range(256)) * 1000):
        assert digest.sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()


def test_the_command_map_names_every_command_and_only_its_module_is_imported():
    from podmagic.ui import cli

    whole = cli.parser()
    sub = next(a for a in whole._actions if a.__class__.__name__ == "_SubParsersAction")
    assert sorted(sub.choices) == sorted(cli.COMMANDS)  # every registered command is mapped, and no other
    for command, module in cli.COMMANDS.items():
        one = cli.parser(command)
        only = next(a for a in one._actions if a.__class__.__name__ == "_SubParsersAction")
        assert command in only.choices, (command, module)
    code = ("import sys; from podmagic.ui.cli import parser; parser('run'); "
            "print(sorted(m for m in sys.modules if m.startswith('podmagic.ui.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['podmagic.ui.cli.common', 'podmagic.ui.cli.runs']"


def test_the_command_ends_at_once_only_when_nothing_waits_for_the_exit(tmp_path):
    """`main()` ends the process itself (skipping Python's slow shutdown) only when no atexit callback
    and no other thread is left; either way its piped output is whole and its exit code is the command's."""
    spec = tmp_path / "job.yaml"
    spec.write_text("name: ok\nstaging: []\nrun: echo hi\n")
    lines = "for i in range(2000): print('x' * 60, i)"  # more than a pipe buffer: stdout must be flushed
    code = ("import atexit, sys\n"
            "from podmagic.ui.cli import main\n"
            "{register}\n"
            f"{lines}\n"
            f"sys.argv = ['podmagic', 'validate', {str(spec)!r}]\n"
            "sys.exit(main())\n")
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as most shells have it
    quiet = subprocess.run([sys.executable, "-c", code.format(register="")], capture_output=True, text=True,
                           cwd=tmp_path, env=buffered)
    assert quiet.returncode == 0 and quiet.stdout.count("\n") == 2001 and "x 1999" in quiet.stdout
    assert quiet.stdout.rstrip().endswith("job.yaml schema_version=2 job=ok")
    told = subprocess.run([sys.executable, "-c", code.format(register="atexit.register(print, 'atexit ran')")],
                          capture_output=True, text=True, cwd=tmp_path, env=buffered)
    assert told.returncode == 0 and told.stdout.rstrip().endswith("atexit ran")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [\n")
    failed = subprocess.run([sys.executable, "-m", "podmagic.ui.cli", "validate", str(broken)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert failed.returncode == 2 and "broken.yaml:" in failed.stderr
