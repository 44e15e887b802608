"""`podmagic validate --check-image` against a stub of Docker Hub's v2 tag API on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from podmagic.backends.runpod.registry import check_image, image_exists, split
from podmagic.testing.registry import StubRegistry

pytestmark = pytest.mark.e2e  # real backends end to end: not in the fast lane (-m "not e2e")

REPO = Path(__file__).resolve().parent.parent
REAL = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
PHANTOM = "runpod/pytorch:2.4.0-py3.13-cuda12.4.1-devel-ubuntu22.04"


def test_split_knows_docker_hub_names():
    assert split(REAL) == ("runpod", "pytorch", "2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04")
    assert split("ubuntu") == ("library", "ubuntu", "latest")
    assert split("docker.io/runpod/base:0.6.2") == ("runpod", "base", "0.6.2")
    assert split("ghcr.io/x/y:1") is None and split("runpod/pytorch@sha256:ab") is None
    assert split("localhost:5000/x:1") is None


def test_exists_phantom_and_unknown(monkeypatch):
    with StubRegistry({REAL, "ubuntu:22.04"}) as hub:
        monkeypatch.setenv("PODMAGIC_DOCKER_HUB_URL", hub.url)
        assert image_exists(REAL) is True and image_exists("ubuntu:22.04") is True
        assert image_exists(PHANTOM) is False
        assert image_exists("ghcr.io/x/y:1") is None
        assert hub.requests[:2] == [f"/v2/repositories/runpod/pytorch/tags/{REAL.split(':')[1]}",
                                    "/v2/repositories/library/ubuntu/tags/22.04"]
        assert "phantom" in check_image(PHANTOM) and check_image(REAL).startswith("ok:")
    monkeypatch.setenv("PODMAGIC_DOCKER_HUB_URL", "http://127.0.0.1:9")
    assert image_exists(REAL) is None and check_image(REAL).startswith("info:")


def test_validate_check_image_through_the_cli(tmp_path):
    spec = tmp_path / "job.yaml"
    with StubRegistry({REAL}) as hub:
        env = {**os.environ, "PYTHONPATH": str(REPO), "PODMAGIC_DOCKER_HUB_URL": hub.url}
        for image, expect in ((PHANTOM, "WARNING: image " + PHANTOM + " does not exist"), (REAL, "ok: image")):
            spec.write_text(f"name: j\npod:\n  image: {image}\n  datacenters: [EU-RO-1]\n"
                            f"  gpu_order: [\"NVIDIA L40S\"]\nrun: echo hi\n")
            out = subprocess.run([sys.executable, "-m", "podmagic.ui.cli", "validate", str(spec), "--check-image"],
                                 cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
            assert expect in out.stderr, out
