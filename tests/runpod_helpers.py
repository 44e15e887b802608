"""Shared by the RunPod tests: a simulator fixture held to RunPod's OpenAPI document.

Every test that uses `sim` fails if any request podmagic sent, or any answer the simulator
gave, broke `openapi.json` (the simulator validates each exchange; `contract.violations`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from podmagic.testing.sim.runpod import RunPodSimulator, Timing


def start_sim(tmp_path: Path, monkeypatch, **kw) -> RunPodSimulator:
    kw.setdefault("timing", Timing(0.2, 0.1, 0.0))
    simulator = RunPodSimulator(tmp_path / "sim", **kw).start()
    monkeypatch.setenv("RUNPOD_API_BASE_URL", simulator.base_url)
    monkeypatch.setenv("RUNPOD_API_KEY", simulator.api_key)
    return simulator


def finish_sim(simulator: RunPodSimulator) -> None:
    simulator.stop()
    assert simulator.contract.violations == [], "\n".join(simulator.contract.violations)


@pytest.fixture
def sim(tmp_path, monkeypatch):
    simulator = start_sim(tmp_path, monkeypatch)
    yield simulator
    finish_sim(simulator)


def image_env_for(python_mirror: str, uv_python_dir: Path, tmp_path: Path) -> dict[str, str]:
    """A pod image's PATH plus the offline stand-ins for the internet (conftest's Python mirror)."""
    return {"UV_PYTHON_DOWNLOADS_JSON_URL": python_mirror, "UV_PYTHON_INSTALL_DIR": str(uv_python_dir),
            "UV_CACHE_DIR": str(tmp_path / "uv-cache"), "PATH": "/usr/local/bin:/usr/bin:/bin"}
