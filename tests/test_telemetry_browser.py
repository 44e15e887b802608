"""Charts in JupyterLab, in the light and the dark theme: a saved notebook's inline SVG charts (no
kernel: the static record as it is read back) and the Pods panel's sparklines for a selected run.
Screenshots land in the test's temporary directory (the paths are printed).

Uses the labextension built in this tree (`podmagic/labextension`, made by `jlpm build` or
`pip install -e .`) when there is one, else the installed one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from podmagic.run import store
from podmagic.ui import charts

from test_labextension import CHROMIUM, CHROMIUM_ARGS, Lab, _contrast, _open_pods_panel

REPO = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing"),
    pytest.mark.timeout(240),
]
RUN_ID = "charts-20261201T210000Z-c0de"


def _rows():
    gpu = [{"ts_utc": f"2026-12-01T21:{m:02d}:{s:02d}Z", "gpu_util_pct": 50 + (m * 60 + s) % 40,
            "gpu_mem_used_mb": 20000 + 100 * m, "gpu_mem_total_mb": 81559, "gpu_mem_util_pct": 25 + m}
           for m in range(5) for s in range(0, 60, 30)]
    user = [{"step": i, "loss": 2.0 / (i + 1), "acc": i / 40} for i in range(40)]
    return gpu, user


def _run_dir(root: Path) -> None:
    gpu, user = _rows()
    run_dir = store.runs_root(root) / RUN_ID
    run_dir.mkdir(parents=True)
    (run_dir / store.RunDir.METRICS).write_text("".join(json.dumps(r) + "\n" for r in gpu))
    (run_dir / store.RunDir.USER_METRICS).write_text("".join(json.dumps(r) + "\n" for r in user))
    store.write_json_atomic(run_dir / store.STATUS, {"run_id": RUN_ID, "job_name": "charts", "state": "succeeded",
                                                     "backend": "local", "phase": "teardown"})
    store.write_json_atomic(run_dir / store.MANIFEST, {"run_id": RUN_ID, "job_name": "charts", "failed": False,
                                                       "backend": "local", "exit_code": 0,
                                                       "gpu_name": "NVIDIA H100 80GB HBM3"})


def _saved_notebook(root: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    gpu, user = _rows()
    html = charts.run_charts(gpu, user)
    cell = new_code_cell("%%pod\nrun: train\n", execution_count=1,
                         outputs=[new_output("display_data", data={"text/html": html})])
    path = root / "charts.ipynb"
    meta = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"}}
    nbformat.write(new_notebook(cells=[cell], metadata=meta), path)
    # as a notebook run and saved on this machine is: signed, so its HTML output is shown unsanitised
    out = subprocess.run([sys.executable, "-c", "from nbformat.sign import TrustNotebookApp as T; T.launch_instance()",
                          str(path)], check=True, capture_output=True, text=True)
    assert "Signing notebook" in out.stdout + out.stderr, out


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    base = tmp_path_factory.mktemp("labcharts")
    built = REPO / "podmagic" / "labextension"
    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "JUPYTER_DATA_DIR")}
    os.environ["JUPYTER_DATA_DIR"] = str(base / "data")  # the notebook signatures stay in the tmp dir
    if (built / "package.json").is_file():  # this tree's build comes first (lab takes the first it finds)
        (base / "jp" / "labextensions").mkdir(parents=True)
        (base / "jp" / "labextensions" / "podmagic").symlink_to(built)
        os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(base / "jp"), saved["JUPYTER_PATH"]) if p)
    server = Lab(base)
    try:
        server.start()
        _run_dir(server.root)
        _saved_notebook(server.root)
        yield server
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def page(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 900})
        pg.set_default_timeout(30_000)
        pg.goto(f"{lab.url}lab/tree/charts.ipynb?token={lab.token}")
        pg.locator(".jp-NotebookPanel .podmagic-chart").first.wait_for()
        try:
            yield pg
        finally:
            browser.close()


def _set_theme(page, dark: bool) -> None:
    """Settings › Theme › JupyterLab Light/Dark, through the menu bar."""
    name = "JupyterLab Dark" if dark else "JupyterLab Light"
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel", has_text="Theme").first.hover()
    page.locator(".lm-Menu-itemLabel", has_text=name).first.click()
    page.wait_for_function(f"document.body.dataset.jpThemeLight === '{str(not dark).lower()}'")
    page.wait_for_timeout(300)


STROKE = "el => getComputedStyle(el).stroke"
TEXT = ("el => { const c = getComputedStyle(el).fill; let n = el; "
        "while (n && (getComputedStyle(n).backgroundColor === 'rgba(0, 0, 0, 0)')) n = n.parentElement; "
        "return [c, n ? getComputedStyle(n).backgroundColor : 'rgb(255, 255, 255)']; }")


def test_charts_follow_the_theme_in_the_notebook_and_the_panel(page, tmp_path):
    strokes = {}
    for dark in (False, True):
        theme = "dark" if dark else "light"
        _set_theme(page, dark)
        out = page.locator(".jp-NotebookPanel .jp-OutputArea").first
        svgs = out.locator("svg.podmagic-chart")
        assert svgs.count() == 3  # GPU, loss, acc: inline SVG from the saved output, no kernel
        assert out.locator("script").count() == 0
        line = svgs.first.locator("path[style*='stroke-width:1.5']").first
        strokes[theme] = line.evaluate(STROKE)
        fill, bg = svgs.first.locator("text").first.evaluate(TEXT)
        assert _contrast(fill, bg) >= 4.5, (theme, fill, bg)
        page.screenshot(path=str(tmp_path / f"charts-{theme}.png"))
        print(f"screenshot: {tmp_path / f'charts-{theme}.png'}")

        _open_pods_panel(page)
        row = page.locator(f"#podmagic-pods .pm-run-row[data-run-id='{RUN_ID}']")
        row.wait_for(timeout=10_000)
        if not page.locator("#podmagic-pods .pm-detail .podmagic-sparklines").count():
            row.click()
        sparks = page.locator("#podmagic-pods .pm-detail .pm-charts .podmagic-sparklines")
        sparks.wait_for(timeout=10_000)
        labels = sparks.locator(".podmagic-sparkline-label").all_text_contents()
        assert labels == ["GPU util %", "GPU mem %", "loss", "acc"], labels
        assert sparks.locator("svg path").count() == 4
        page.screenshot(path=str(tmp_path / f"panel-sparklines-{theme}.png"))
        print(f"screenshot: {tmp_path / f'panel-sparklines-{theme}.png'}")
    assert strokes["light"] != strokes["dark"], strokes  # the series colour is the theme's
    _set_theme(page, False)
