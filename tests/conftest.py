"""Shared fixtures: a local Python download mirror, a sandbox root, a git project.

Every test runs with podmagic's and the XDG caches pointed into temporary directories
(`private_home`), so the suite writes nothing under the real ~/.cache or ~/.config; the
session ends with a check that nothing new appeared under ~/.cache/podmagic or
~/.config/podmagic (an error under CI=true, a warning otherwise, since on a shared machine
another session may write there meanwhile).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MIRROR = REPO / "scripts" / "python-mirror"
REAL_HOME = Path.home()
WATCHED = (REAL_HOME / ".cache" / "podmagic", REAL_HOME / ".config" / "podmagic")


def _found_versions() -> tuple[str, ...]:
    """The interpreters `scripts/python-mirror` finds on this machine (the newest two), oldest first."""
    out = subprocess.run([sys.executable, str(MIRROR), "--newest", "2", "--list"], capture_output=True,
                         text=True)
    return tuple(out.stdout.split()) if out.returncode == 0 else ()


MIRROR_VERSIONS = _found_versions()
PIN = MIRROR_VERSIONS[0] if MIRROR_VERSIONS else "3.12.1"
"""An exact pin the mirror serves: what the pinned-run tests pin."""


E2E_MODULE = re.compile(r"^pytestmark = .*pytest\.mark\.e2e|^    pytest\.mark\.e2e,$", re.M)


def pytest_ignore_collect(collection_path, config):
    """With `-m "not e2e"`, a module marked e2e as a whole is not even imported (nbformat's
    jsonschema and the runpod SDK alone take seconds)."""
    if config.getoption("markexpr", "") == "not e2e" and collection_path.suffix == ".py" \
            and collection_path.name.startswith("test_"):
        return bool(E2E_MODULE.search(collection_path.read_text(encoding="utf-8"))) or None
    return None


REAL_THINGS = frozenset({"pod_env", "python_mirror", "sshd", "module_sshd", "sim", "lab"})
"""A test using any of these fixtures runs real things (local runs, sshd, the simulator, a lab): e2e."""


def pytest_collection_modifyitems(config, items):
    """Tests that use real things are e2e even when their file forgot the mark (keeps the fast lane fast)."""
    for item in items:
        if REAL_THINGS & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.e2e)


def _snapshot() -> set[str]:
    return {str(p) for root in WATCHED if root.is_dir() for p in root.rglob("*")}


def pytest_sessionstart(session):
    session.config._podmagic_home_before = _snapshot()


def pytest_sessionfinish(session, exitstatus):
    new = sorted(_snapshot() - getattr(session.config, "_podmagic_home_before", set()))
    if not new:
        return
    message = f"the suite wrote {len(new)} path(s) outside its tmp dirs: " + ", ".join(new[:5])
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        reporter.write_line(("ERROR: " if os.environ.get("CI") == "true" else "WARNING: ") + message)
    if os.environ.get("CI") == "true" and session.exitstatus == 0:
        session.exitstatus = 1


@pytest.fixture(scope="session", autouse=True)
def private_home(tmp_path_factory) -> Path:
    """Point every HOME-ish location podmagic (or a tool it starts) writes at this session's tmp dir.

    Session-scoped, so module-scoped fixtures (a `jupyter lab`, an sshd) start with it too.
    """
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
            mp.setenv(var, str(home / var.lower()))
        mp.setenv("IPYTHONDIR", str(home / "ipython"))
        mp.setenv("PODMAGIC_LOCAL_ROOT", str(home / "podmagic-local"))
        mp.setattr("podmagic.backends.ssh.hostkeys.DEFAULT_KNOWN_HOSTS",
                   str(home / "xdg_config_home" / "podmagic" / "known_hosts"))
        yield home


@pytest.fixture(scope="session")
def python_mirror(tmp_path_factory) -> str:
    """UV_PYTHON_DOWNLOADS_JSON_URL for a mirror of interpreters already on this machine."""
    if not MIRROR_VERSIONS:
        pytest.skip("scripts/python-mirror finds no installed interpreter (pyenv) to mirror")
    folder = tmp_path_factory.mktemp("mirror")  # archives too: nothing lands in ~/.cache
    out = subprocess.run([sys.executable, str(MIRROR), "--dir", str(folder), "--index", str(folder / "downloads.json"),
                          *MIRROR_VERSIONS], capture_output=True, text=True, check=True).stdout
    return out.strip().split("=", 1)[1]


@pytest.fixture(scope="session")
def uv_python_dir(tmp_path_factory) -> Path:
    """One uv Python install dir for the session (like a warm pod image)."""
    return tmp_path_factory.mktemp("uv-python")


@pytest.fixture
def pod_env(monkeypatch, tmp_path, python_mirror, uv_python_dir) -> Path:
    """Environment for real local runs; returns the sandbox root."""
    root = tmp_path / "pods"
    monkeypatch.setenv("PODMAGIC_LOCAL_ROOT", str(root))
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS_JSON_URL", python_mirror)
    monkeypatch.setenv("UV_PYTHON_INSTALL_DIR", str(uv_python_dir))
    monkeypatch.delenv("PODMAGIC_BACKEND", raising=False)
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    return root


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True,
                          env=env).stdout


@pytest.fixture
def project(tmp_path) -> Path:
    """A small git project: pyproject (requires-python >=3.10), uv.lock, a script."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "proj"\nversion = "0.1"\n'
                                         'requires-python = ">=3.10"\ndependencies = []\n')
    (root / "uv.lock").write_text("version = 1\n")
    (root / "train.py").write_text("print('trained')\n")
    (root / ".gitignore").write_text("ignored.txt\nartifacts/\n")
    (root / "ignored.txt").write_text("not staged\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    return root
