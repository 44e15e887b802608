"""The suite writes nothing outside its temporary directories.

conftest's `private_home` points podmagic's local sandbox root, the XDG folders, IPython's
folder and podmagic's known_hosts into the session's tmp dir. Here a real local run, in this
process and through the `podmagic` command line (a subprocess inheriting the environment), must
leave nothing new under the real ~/.cache/podmagic and ~/.config/podmagic.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from conftest import REAL_HOME, WATCHED
from helpers import run_spec
from podmagic.backends.local import default_root
from podmagic.backends.ssh.hostkeys import known_hosts_path


def snapshot() -> set[str]:
    return {str(p) for root in WATCHED if root.is_dir() for p in root.rglob("*")}


def test_podmagic_writes_under_tmp_not_home(project, tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    for path in (default_root(), known_hosts_path(), Path(os.environ["XDG_CACHE_HOME"]),
                 Path(os.environ["XDG_CONFIG_HOME"]), Path(os.environ["IPYTHONDIR"])):
        assert base in path.parents, path
        assert REAL_HOME not in path.parents or base in path.parents


def test_a_local_run_in_process_and_through_the_cli_leaves_nothing_in_home(project):
    before = snapshot()
    token = secrets.token_hex(4)
    text = f"name: iso-{token}\nrun: echo hi\nlifecycle: {{on_success: preserve}}\n"  # the sandbox stays
    manifest, plan, _ = run_spec(text, project)
    assert manifest["failed"] is False and manifest["pod_final_state"] == "RUNNING"
    assert (default_root() / "pods" / manifest["pod_id"]).is_dir()
    (project / "job.yaml").write_text(text.replace("iso-", "iso-cli-"))
    out = subprocess.run([sys.executable, "-m", "podmagic.ui.cli", "run", "job.yaml"], cwd=project,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert list((default_root() / "pods").glob(f"local-iso-cli-{token}-*"))
    new = snapshot() - before
    # another session on this machine may write there meanwhile: only this test's runs are ours
    assert not [p for p in new if token in p], sorted(new)
