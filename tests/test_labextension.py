"""End to end: a real `jupyter lab` driven by Debian's Chromium through Playwright.

The server runs on 127.0.0.1 with a token, rooted in a temporary git project
holding one notebook. The browser checks that a `%%pod` cell is highlighted as
YAML with unknown keys marked (also while typing), runs a `%%pod` cell on the
local backend and sees its log stream into the output, sees the run in the
Pods panel and the live count in the status bar, opens the manifest and log
tail, and stops a live run from the panel. Screenshots of failures land in
the test's temporary directory (the path is printed).

Needs: the package installed (`pip install -e .[test]`, which builds and
ships the labextension), /usr/bin/chromium (`apt-get install -y chromium`).
Playwright's own browser download is never used.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from podmagic.spec import schema

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
GIT = ["git", "-c", "user.name=podmagic-test", "-c", "user.email=test@podmagic.invalid"]

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install -y chromium)"),
    pytest.mark.timeout(240),
]

SHORT_CELL = """%%pod
name: e2e-short
run: |
  for i in 1 2 3 4 5; do echo line$i; sleep 1; done
"""
LONG_CELL = """%%pod
name: e2e-long
run: |
  for i in $(seq 1 120); do echo tick$i; sleep 1; done
"""
TYPO_CELL = """%%pod
name: typos
pod:
  image: runpod/pytorch:2.4.0
  gpu_ordr: ["NVIDIA A100 80GB PCIe"]
bogus_key: 1
artifacts:
  - {label: metrics, remote_pth: /workspace/out/}
run: |
  echo not: a key
"""
CELLS = ["%load_ext podmagic", SHORT_CELL, LONG_CELL, TYPO_CELL, "x = 1 + 1\nprint(x)"]
LOAD, SHORT, LONG, TYPOS, PYTHON = range(len(CELLS))


# ----------------------------------------------------------------- the project


def _notebook(cells: list[str]) -> dict:
    def cell(src: str) -> dict:
        return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                "source": src.splitlines(keepends=True)}

    return {
        "cells": [cell(src) for src in cells],
        "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _make_project(root: Path) -> None:
    """A tiny git project with the test notebook."""
    root.mkdir(parents=True)
    (root / "train.py").write_text("print('training')\n")
    (root / ".gitignore").write_text("artifacts/\n.ipynb_checkpoints/\n")
    (root / "pods.ipynb").write_text(json.dumps(_notebook(CELLS), indent=1))
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run([*GIT, "-C", str(root), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(root), "commit", "-q", "-m", "init"], check=True)


def _lab_settings(settings_dir: Path) -> None:
    """No news toast, no update check: nothing in the way of the clicks."""
    path = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))


# ----------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Lab:
    """A running `jupyter lab`: its URL, token and project root."""

    def __init__(self, base: Path):
        self.root = base / "project"
        self.token = secrets.token_hex(16)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = base / "jupyter-lab.log"
        self.proc: subprocess.Popen | None = None
        self._base = base

    def start(self) -> None:
        _make_project(self.root)
        _lab_settings(self._base / "settings")
        env = {**os.environ,
               "PODMAGIC_BACKEND": "local",
               "JUPYTER_RUNTIME_DIR": str(self._base / "runtime"),
               "JUPYTERLAB_SETTINGS_DIR": str(self._base / "settings"),
               "JUPYTERLAB_WORKSPACES_DIR": str(self._base / "workspaces")}
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               "--ServerApp.port_retries=0"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, start_new_session=True,
                                     stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT)
        self._wait_ready()

    def federated_extensions(self) -> list[str]:
        """The prebuilt extensions the lab page loads (from its jupyter-config-data)."""
        status, html = self.request("lab")
        assert status == 200, html
        start = html.index('id="jupyter-config-data"')
        data = html[html.index(">", start) + 1:html.index("</script>", start)]
        return [ext["name"] for ext in json.loads(data).get("federated_extensions", [])]

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                if self.request("api/status")[0] == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"jupyter lab not ready in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def request(self, path: str, method: str = "GET", token: bool = True) -> tuple[int, object]:
        """An HTTP call to the server; returns (status, parsed JSON or text)."""
        headers = {"Authorization": f"token {self.token}"} if token else {}
        req = urllib.request.Request(self.url + path, method=method, headers=headers,
                                     data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, body = err.code, err.read()
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode(errors="replace")

    def stop(self) -> None:
        """SIGTERM shuts the server and its kernels down; then the whole group goes."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    server = Lab(tmp_path_factory.mktemp("labext"))
    try:
        server.start()
        assert "podmagic" in server.federated_extensions(), (
            "the podmagic labextension is not installed: `pip install -e .` builds and installs it")
        yield server
    finally:
        server.stop()


# ----------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def page(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1500, "height": 1000})
        pg.set_default_timeout(30_000)
        pg.goto(f"{lab.url}lab/tree/pods.ipynb?token={lab.token}")
        pg.locator(".jp-NotebookPanel .jp-Cell").nth(len(CELLS) - 1).wait_for()
        _wait_kernel_idle(pg)
        try:
            yield pg
        finally:
            browser.close()


@pytest.fixture(scope="module")
def magic(page):
    """The page with `%load_ext podmagic` run in its kernel."""
    _run_cell(page, LOAD)
    _wait_kernel_idle(page)
    assert "Error" not in _cell(page, LOAD).locator(".jp-OutputArea").inner_text()
    return page


@pytest.fixture
def shots(page, tmp_path):
    """Use as `with shots("name"):`; saves `name-failed.png` (or `name-ok.png`) in tmp_path."""

    def save(name: str) -> None:
        path = tmp_path / f"{name}.png"
        with contextlib.suppress(Exception):
            page.screenshot(path=str(path))
            print(f"screenshot: {path}")

    @contextlib.contextmanager
    def guard(name: str):
        try:
            yield
        except BaseException:
            save(f"{name}-failed")
            raise
        save(f"{name}-ok")

    return guard


def _cell(page, index: int):
    return page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(index)


def _wait_kernel_idle(page, timeout: float = 60_000) -> None:
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=timeout)


def _run_cell(page, index: int) -> None:
    cell = _cell(page, index)
    cell.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")


def _open_pods_panel(page) -> None:
    page.locator(".pm-StatusItem").click()
    page.locator("#podmagic-pods .pm-header").wait_for(state="visible")


def _row(page, prefix: str, state: str | None = None):
    where = f"[data-state='{state}']" if state else ""
    return page.locator(f"#podmagic-pods .pm-run-row[data-run-id^='{prefix}-']{where}").first


# ----------------------------------------------------------------- the tests


def test_server_extension_is_authenticated_and_rejects_bad_ids(lab):
    assert lab.request("podmagic/runs", token=False)[0] == 403
    assert lab.request("podmagic/schema", token=False)[0] == 403
    status, body = lab.request("podmagic/schema")
    assert status == 200 and body == json.loads(json.dumps(schema.as_json()))
    status, body = lab.request("podmagic/runs")
    assert status == 200 and Path(body["project_root"]) == lab.root.resolve() and body["live_count"] == 0
    for bad in ("..%2F..%2Fetc", "-rf", "a%2Fb", "%2Fetc%2Fpasswd", "x%00y"):
        assert lab.request(f"podmagic/runs/{bad}")[0] == 400, bad
        assert lab.request(f"podmagic/runs/{bad}/stop", method="POST")[0] == 400, bad
    assert lab.request("podmagic/runs/no-such-run")[0] == 404
    assert lab.request("podmagic/runs/no-such-run/log")[0] == 404


def test_pod_cell_is_yaml_and_unknown_keys_are_marked(page, shots):
    with shots("editor"):
        typo = _cell(page, TYPOS)
        typo.locator(".pm-pod-cell").wait_for()
        keys = typo.locator(".tok-atom").all_text_contents()
        assert {"name", "pod", "bogus_key", "artifacts", "run"} <= {k.strip() for k in keys}
        assert typo.locator(".tok-string").count() > 0  # the `run: |` block scalar
        marks = {m.get_attribute("data-pm-key"): m.get_attribute("title")
                 for m in typo.locator(".pm-unknown-key").all()}
        assert set(marks) == {"gpu_ordr", "bogus_key", "remote_pth"}, marks
        assert "did you mean 'gpu_order'" in marks["gpu_ordr"]
        assert "did you mean 'remote_path'" in marks["remote_pth"]
        assert _cell(page, SHORT).locator(".pm-unknown-key").count() == 0
        python = _cell(page, PYTHON)
        assert python.locator(".pm-pod-cell").count() == 0
        assert python.locator(".tok-atom").count() == 0

        # As the user types: a new cell becomes YAML and its typo is marked.
        python.locator(".cm-content").click()
        page.keyboard.press("Escape")
        page.keyboard.press("b")
        fresh = _cell(page, PYTHON + 1)
        fresh.locator(".cm-content").click()
        page.keyboard.type("%%pod\n")
        fresh.locator(".pm-pod-cell").wait_for()
        page.keyboard.type("nmae: x\n")
        mark = fresh.locator(".pm-unknown-key[data-pm-key='nmae']")
        mark.wait_for()
        assert "did you mean 'name'" in mark.get_attribute("title")
        page.keyboard.press("Control+a")
        page.keyboard.type("print('plain python again')")
        fresh.locator(".pm-pod-cell").wait_for(state="detached")


def test_run_streams_and_shows_in_panel_and_status_bar(magic, page, lab, shots, tmp_path):
    with shots("run"):
        status = page.locator(".pm-StatusItem")
        assert status.get_attribute("data-live-count") == "0"
        _open_pods_panel(page)
        _run_cell(page, SHORT)
        output = _cell(page, SHORT).locator(".jp-OutputArea")
        output.get_by_text("line2").first.wait_for(timeout=60_000)  # streaming, not at the end
        page.locator(".pm-StatusItem[data-live-count='1']").wait_for(timeout=10_000)
        assert "Pods: 1" in status.inner_text()
        row = _row(page, "e2e-short")
        row.wait_for()
        page.screenshot(path=str(tmp_path / "run-live.png"))
        assert row.get_attribute("data-state") in ("starting", "running")
        assert row.locator("button.pm-stop").count() == 1
        output.get_by_text("line5").first.wait_for(timeout=60_000)
        _wait_kernel_idle(page)
        page.locator(".pm-StatusItem[data-live-count='0']").wait_for(timeout=10_000)
        _row(page, "e2e-short", "succeeded").wait_for(timeout=10_000)
        fields = {f: row.locator(f"[data-field='{f}']").inner_text() for f in
                  ("name", "status", "backend", "gpu", "elapsed", "cost", "exit")}
        assert fields["name"] == "e2e-short" and fields["status"] == "succeeded", fields
        assert fields["backend"] == "local" and fields["exit"] == "0" and fields["elapsed"].endswith("s"), fields
        assert fields["cost"].startswith("$"), fields

        row.click()
        detail = page.locator("#podmagic-pods .pm-detail")
        detail.locator(".pm-manifest").wait_for()
        manifest = dict(zip(detail.locator(".pm-manifest dt").all_text_contents(),
                            detail.locator(".pm-manifest dd").all_text_contents()))
        assert manifest.get("exit_code") == "0" and manifest.get("backend") == "local", manifest
        log = detail.locator("pre.pm-log")
        for i in range(1, 6):
            assert f"line{i}" in log.inner_text()


def test_stop_a_live_run_from_the_panel(magic, page, lab, shots):
    with shots("stop"):
        _open_pods_panel(page)
        _run_cell(page, LONG)
        _cell(page, LONG).locator(".jp-OutputArea").get_by_text("tick2").first.wait_for(timeout=60_000)
        row = _row(page, "e2e-long")
        row.locator("button.pm-stop").wait_for(timeout=10_000)
        page.locator(".pm-StatusItem[data-live-count='1']").wait_for(timeout=10_000)
        row.locator("[data-field='name']").click()  # the live status and a log tail that grows
        detail = page.locator("#podmagic-pods .pm-detail")
        detail.get_by_text("(live status)").wait_for()
        detail.locator("pre.pm-log").get_by_text("tick4").wait_for(timeout=10_000)
        assert detail.locator(".pm-manifest dd[data-key='state']").inner_text() == "running"
        row.locator("button.pm-stop").click()
        _wait_kernel_idle(page, timeout=60_000)
        _row(page, "e2e-long", "interrupted").wait_for(timeout=15_000)
        page.locator(".pm-StatusItem[data-live-count='0']").wait_for(timeout=10_000)
        run_id = row.get_attribute("data-run-id")
        run_dir = lab.root / "artifacts" / "runpod" / run_id
        manifest = json.loads((run_dir / "runpod_deploy_pull_manifest.json").read_text())
        assert manifest.get("interrupted") is True, manifest
        assert "tick100" not in (run_dir / "run.log").read_text()


def test_status_bar_sums_the_hourly_price_of_live_pods(page, lab, shots):
    """Two live runs owned by this process (as a kernel's runner would own them)."""
    owner = {"state": "running", "phase": "run", "backend": "runpod", "owner_pid": os.getpid(),
             "owner_host": os.uname().nodename, "started_at_utc": "2026-01-01T00:00:00Z"}
    dirs = []
    for name, price in (("priced-a", 1.25), ("priced-b", 0.5)):
        run_id = f"{name}-20260101T000000Z-0000"
        dirs.append(lab.root / "artifacts" / "runpod" / run_id)
        dirs[-1].mkdir(parents=True)
        (dirs[-1] / "status.json").write_text(json.dumps({**owner, "run_id": run_id, "job_name": name,
                                                          "gpu_id": "NVIDIA A100 80GB PCIe",
                                                          "price_per_hour_usd": price}))
    with shots("priced"):
        page.locator(".pm-StatusItem[data-live-count='2']").wait_for(timeout=10_000)
        assert page.locator(".pm-StatusItem").inner_text() == "Pods: 2 · $1.75/h"
        _open_pods_panel(page)
        row = _row(page, "priced-a")
        assert row.locator("[data-field='gpu']").inner_text() == "NVIDIA A100 80GB PCIe"
        row.locator("button.pm-stop").click()
        row.locator("button.pm-stop[disabled]").wait_for(timeout=10_000)
        assert (dirs[0] / "stop").is_file() and not (dirs[1] / "stop").exists()
        for run_dir in dirs:
            for child in run_dir.iterdir():
                child.unlink()
            run_dir.rmdir()
        page.locator(".pm-StatusItem[data-live-count='0']").wait_for(timeout=10_000)
