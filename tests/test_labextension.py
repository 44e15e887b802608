"""End to end: a real `jupyter lab` driven by Debian's Chromium through Playwright.

The server runs on 127.0.0.1 with a token, rooted in a temporary git project
holding one notebook. The browser checks that a `%%pod` cell is highlighted as
YAML with unknown keys marked (also while typing), runs a `%%pod` cell on the
local backend and sees its log stream into the output, sees the run in the
Pods panel and the live count in the status bar, opens the manifest and log
tail, and stops a live run from the panel. The cell as a terminal: the live
log stays at its newest line unless scrolled up (and comes back with its
button), ANSI colours render, `\r` replaces the line, Python prints arrive
live; each end state (a run, a relaunch, a sweep, compare) is static HTML;
all of it in the light and the dark theme. Screenshots land in each test's
temporary directory (the paths are printed): look at them.

Needs: the package installed (`pip install -e .[test]`, which builds and
ships the labextension), /usr/bin/chromium (`apt-get install -y chromium`).
Playwright's own browser download is never used.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
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
    pytest.mark.e2e,
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
TERM_CELL = r"""%%pod
name: e2e-term
pod:
  gpu_order: ["NVIDIA RTX A4000", "NVIDIA A40"]
  datacenters: [EU-RO-1]
budget: {cost_cap_usd: 2.5}
run: |
  for i in $(seq 1 80); do printf '\033[3%dmline %d\033[0m\n' $((i % 6 + 1)) $i; done
  for i in $(seq 1 20); do printf '\rprogress %d%%' $((i * 5)); sleep 0.05; done; echo
  python3 -c "import time
  for i in range(6): print('py', i); time.sleep(0.4)"
  for i in $(seq 1 8); do echo tail$i; sleep 0.5; done
"""
SWEEP_CELL = """%%pod --sweep seed=0,1 -o sw
name: e2e-sweep
run: |
  printf '\\033[1;32mshard {seed}\\033[0m\\n'; sleep 1
"""
CELLS = ["%load_ext podmagic", SHORT_CELL, LONG_CELL, TYPO_CELL, "x = 1 + 1\nprint(x)", TERM_CELL, SWEEP_CELL,
         "%pod compare {sw.sweep_id}"]
LOAD, SHORT, LONG, TYPOS, PYTHON, TERM, SWEEP, COMPARE = range(len(CELLS))
assert CELLS[TERM].count("name: e2e-term") == 1 and CELLS[SWEEP].count("name: e2e-sweep") == 1


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


SNIPPETS = {5: "name: e2e-term", 6: "name: e2e-sweep", 7: "%pod compare"}


def _cell_after_typing(page, index: int):
    """A cell found by its text (the typing test inserted a cell, Shift+Enter adds one at the end)."""
    return page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").filter(
        has=page.locator(".cm-content", has_text=SNIPPETS[index])).first


def _run_at(page, index: int) -> None:
    cell = _cell_after_typing(page, index)
    cell.locator(".cm-content").click()
    page.keyboard.press("Shift+Enter")


def _button(scope, name: str):
    """A widget button by its exact label (the icon adds no text)."""
    return scope.locator("button").filter(has_text=re.compile(rf"^\s*{re.escape(name)}\s*$"))


def _theme(page, dark: bool) -> None:
    """Switch JupyterLab's theme with the command palette (no reload)."""
    name = "JupyterLab Dark" if dark else "JupyterLab Light"
    page.keyboard.press("Control+Shift+c")
    palette = page.locator(".lm-CommandPalette-input")
    palette.wait_for()
    palette.fill(f"Use Theme: {name}")
    page.locator(".lm-CommandPalette-item", has_text=f"Use Theme: {name}").first.click()
    page.wait_for_function(f"document.body.dataset.jpThemeLight === '{str(not dark).lower()}'")
    page.wait_for_timeout(300)


def _luminance(rgb: str) -> float:
    parts = [float(p) for p in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3]]
    lin = [c / 255 / 12.92 if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in parts]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(fg: str, bg: str) -> float:
    a, b = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)


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
        detail.locator(".pm-record .podmagic-summary").wait_for()
        assert "succeeded" in detail.locator(".podmagic-summary").inner_text()
        detail.locator(".pm-record summary").click()  # the folded manifest
        assert detail.locator(".pm-record td[data-key='exit code']").inner_text() == "0"
        assert detail.locator(".pm-record td[data-key='backend']").inner_text() == "local"
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
        assert detail.locator(".pm-record .podmagic-state").get_attribute("data-state") == "running"
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
        row.locator("button.pm-stop[disabled]").wait_for(timeout=10_000)  # at once, before the POST answers
        deadline = time.monotonic() + 10
        while not (dirs[0] / "stop").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (dirs[0] / "stop").is_file() and not (dirs[1] / "stop").exists()
        for run_dir in dirs:
            for child in run_dir.iterdir():
                child.unlink()
            run_dir.rmdir()
        page.locator(".pm-StatusItem[data-live-count='0']").wait_for(timeout=10_000)


LOG_STATE = """el => ({top: el.scrollTop, height: el.scrollHeight, client: el.clientHeight,
                 up: el.classList.contains('pm-scrolled-up'), text: el.innerText})"""


SEEN_COLORS = """el => {
  const parse = c => {
    const n = (c.match(/[\\d.]+/g) || []).map(Number);
    const k = c.startsWith('color(') ? 255 : 1;
    return [n[0] * k, n[1] * k, n[2] * k, n.length > 3 ? n[3] : 1];
  };
  const layers = [];
  for (let node = el; node; node = node.parentElement) {
    const c = parse(getComputedStyle(node).backgroundColor);
    if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
  }
  let rgb = [255, 255, 255];
  for (const [r, g, b, a] of layers.reverse()) {
    rgb = [r * a + rgb[0] * (1 - a), g * a + rgb[1] * (1 - a), b * a + rgb[2] * (1 - a)];
  }
  return [getComputedStyle(el).color, `rgb(${rgb.map(Math.round).join(', ')})`];
}"""
"""The text colour of an element and the background it is really seen on (translucent layers blended)."""


def _snap(page, tmp_path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")


def test_the_cell_is_a_terminal_and_ends_as_a_record(magic, page, lab, shots, tmp_path):
    with shots("terminal"):
        _open_pods_panel(page)
        _run_at(page, TERM)
        cell = _cell_after_typing(page, TERM)
        log = cell.locator(".podmagic-log").first
        log.get_by_text("line 80").wait_for(timeout=60_000)
        state = log.evaluate(LOG_STATE)
        assert state["height"] > state["client"] + 100, state  # it overflows ...
        assert abs(state["top"]) <= 2, state  # ... and shows its newest line
        assert "\x1b" not in state["text"] and "␛" not in state["text"] and "[32m" not in state["text"]
        assert log.locator("span[style*='color']").count() >= 10  # ANSI colours rendered
        header = cell.locator(".podmagic-run-view .podmagic-stepper")
        assert "run ●" in header.inner_text()
        log.get_by_text("py 1").wait_for(timeout=20_000)  # Python prints arrive while it runs (unbuffered)
        assert "py 5" not in log.inner_text()
        log.get_by_text("progress 100%").wait_for(timeout=20_000)
        assert "progress 50%" not in log.inner_text()  # \r replaced the line
        _snap(page, tmp_path, "terminal-live-light")

        # Scrolled up, it stays put while lines arrive; the button brings it back to the end.
        log.evaluate("el => { el.scrollTop = -(el.scrollHeight - el.clientHeight); }")
        page.wait_for_function("el => el.classList.contains('pm-scrolled-up')", arg=log.element_handle())
        before = log.evaluate(LOG_STATE)
        log.get_by_text("tail3").wait_for(timeout=20_000)
        after = log.evaluate(LOG_STATE)
        from_top = lambda s: s["height"] - s["client"] + s["top"]  # noqa: E731
        assert after["up"] and abs(from_top(after) - from_top(before)) <= 30, (before, after)
        end = log.locator("button.pm-log-end")
        assert end.is_visible()
        _snap(page, tmp_path, "terminal-scrolled-up-light")
        end.click()
        page.wait_for_function("el => Math.abs(el.scrollTop) <= 2 && !el.classList.contains('pm-scrolled-up')",
                               arg=log.element_handle())
        log.get_by_text("tail5").wait_for(timeout=20_000)
        assert abs(log.evaluate(LOG_STATE)["top"]) <= 2  # following again

        _wait_kernel_idle(page, timeout=60_000)
        record = cell.locator(".podmagic-run").first
        record.wait_for(timeout=10_000)
        assert cell.locator(".podmagic-run-view").count() == 0  # the live widget is gone
        summary = record.locator(".podmagic-summary").inner_text()
        assert "succeeded" in summary and "of $2.50" in summary and "log · folder" in summary, summary
        assert "\x1b" not in record.text_content() and record.locator("span[style*='color']").count() >= 10
        assert "progress 100%" in record.text_content() and "progress 50%" not in record.text_content()
        controls = cell.locator(".podmagic-relaunch")
        assert controls.count() == 1 and _button(controls, "Relaunch").count() == 1
        assert _button(controls, "Edit & relaunch").count() == 1  # its form is made when first opened
        assert cell.locator("button", has_text="Stop").count() == 0  # nothing to stop any more
        _snap(page, tmp_path, "terminal-record-light")

        # The run's log opens in JupyterLab from the record.
        record.locator("a.podmagic-link", has_text="log").click()
        log_tab = page.locator(".lm-TabBar-tab", has_text="run.log").first
        log_tab.wait_for(timeout=15_000)
        log_tab.locator(".lm-TabBar-tabCloseIcon").click()
        log_tab.wait_for(state="detached")
        page.locator(".lm-TabBar-tab", has_text="pods.ipynb").first.click()

        # Panel: formatted detail, ANSI rendered.
        row = _row(page, "e2e-term", "succeeded")
        row.wait_for(timeout=10_000)
        row.locator("[data-field='name']").click()
        detail = page.locator("#podmagic-pods .pm-detail[data-run-id^='e2e-term-']")
        detail.locator(".pm-record .podmagic-summary").wait_for()
        assert "of $2.50" in detail.locator(".podmagic-summary").inner_text()
        assert detail.locator("pre.pm-log span[style*='color']").count() >= 10
        assert "\x1b" not in detail.inner_text()
        _snap(page, tmp_path, "panel-detail-light")
        detail.locator("button.pm-open-log").click()  # the run's log opens in JupyterLab from the panel too
        page.locator(".lm-TabBar-tab", has_text="run.log").first.wait_for(timeout=15_000)
        page.locator(".lm-TabBar-tab", has_text="pods.ipynb").first.click()
        row.locator("[data-field='name']").click()  # close it again


def test_relaunch_sweep_and_compare_records_in_both_themes(magic, page, lab, shots, tmp_path):
    for dark in (False, True):
        theme = "dark" if dark else "light"
        with shots(f"records-{theme}"):
            _theme(page, dark)
            cell = _cell_after_typing(page, TERM)
            controls = cell.locator(".podmagic-relaunch").first
            fields = controls.locator("input[type='text']")
            if not fields.first.is_visible():  # the button makes the form (once) and opens (or closes) it
                _button(controls, "Edit & relaunch").click()
                fields.nth(4).wait_for()  # all five fields, made by the click
            values = [fields.nth(i).input_value() for i in range(fields.count())]
            assert values[:2] == ["NVIDIA RTX A4000, NVIDIA A40", "EU-RO-1"] and values[-1] == ("2.75" if dark else "2.5"), values  # the last run's values
            fields.nth(len(values) - 1).fill("3" if dark else "2.75")  # the cost cap
            _button(controls, "Run edited").click()
            relaunch = _button(controls, "Relaunching…")
            relaunch.wait_for(timeout=10_000)
            assert relaunch.is_disabled()
            cell.locator(".podmagic-run-view").first.wait_for(timeout=20_000)  # its own live block
            _snap(page, tmp_path, f"relaunch-live-{theme}")
            result = cell.locator(".podmagic-relaunch-result").nth(1 if dark else 0)
            result.wait_for(timeout=90_000)
            assert "budget.cost_cap_usd" in result.inner_text()
            again = _button(controls, "Relaunch")
            again.wait_for()
            assert not again.is_disabled()

            _run_at(page, SWEEP)
            sweep = _cell_after_typing(page, SWEEP)
            record = sweep.locator(".podmagic-sweep-record")
            record.wait_for(timeout=90_000)
            heads = record.locator(".podmagic-sweep th").all_text_contents()
            assert heads[:3] == ["seed", "status", "GPU"], heads
            assert "sweep-sweep-" not in record.inner_text()
            _wait_kernel_idle(page)
            _run_at(page, COMPARE)
            compare = _cell_after_typing(page, COMPARE).locator(".podmagic-compare").first
            compare.wait_for(timeout=30_000)
            diff_cell = compare.locator("tr[data-field='variables'] td").first
            text_color, bg = diff_cell.evaluate(SEEN_COLORS)
            assert _contrast(text_color, bg) >= 4.5, (theme, text_color, bg)
            assert "seed=0" in compare.inner_text() and "{'seed'" not in compare.inner_text()
            assert compare.locator("th").first.evaluate("el => getComputedStyle(el).position") == "sticky"
            _snap(page, tmp_path, f"records-{theme}")

            _open_pods_panel(page)
            group = page.locator("#podmagic-pods .pm-sweep-group").first
            group.wait_for(timeout=10_000)
            assert "2 shards" in group.locator(".pm-sweep-head").inner_text()
            assert set(group.locator(".pm-run-id").all_text_contents()) == {"seed=0", "seed=1"}
            ids = page.locator("#podmagic-pods .pm-run-row[data-run-id^='e2e-term-'] .pm-run-id").all_text_contents()
            assert len(ids) >= 2 and all(i.startswith("e2e-term-") for i in ids), ids  # names repeat: ids shown
            info = page.locator("#podmagic-pods .pm-info").inner_text()
            assert " runs" in info and "1 runs" not in info
            _snap(page, tmp_path, f"panel-{theme}")
    _theme(page, False)


def test_panel_follows_a_new_run_within_a_second(page, lab):
    _open_pods_panel(page)
    run_id = "timed-20260101T000000Z-0000"
    run_dir = lab.root / "artifacts" / "runpod" / run_id
    run_dir.mkdir(parents=True)
    started = time.monotonic()
    (run_dir / "status.json").write_text(json.dumps({"state": "running", "phase": "run", "backend": "local",
                                                     "owner_pid": os.getpid(), "owner_host": os.uname().nodename,
                                                     "run_id": run_id, "job_name": "timed"}))
    try:
        _row(page, "timed").wait_for(timeout=5_000)
        seen = time.monotonic() - started
        print(f"panel showed a new run after {seen:.2f}s")
        assert seen < 1.0, seen
    finally:
        (run_dir / "status.json").unlink()
        run_dir.rmdir()
