"""Shared fixtures: a local Python download mirror, a sandbox root, a git project."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MIRROR_VERSIONS = ("3.12.1", "3.13.0")


@pytest.fixture(scope="session")
def python_mirror(tmp_path_factory) -> str:
    """UV_PYTHON_DOWNLOADS_JSON_URL for a mirror of interpreters already on this machine."""
    index = tmp_path_factory.mktemp("mirror") / "downloads.json"  # this session's own listing
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "python-mirror"), "--index", str(index),
                          *MIRROR_VERSIONS], capture_output=True, text=True, check=True).stdout
    url = out.strip().split("=", 1)[1]
    return url


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
