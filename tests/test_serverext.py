"""The jupyter_server extension's lookups and views, without a browser.

HTTP, auth and the handlers are covered end to end by test_labextension.py;
here: run-id validation, path containment, the run rows the panel shows and
the log tail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from podmagic.errors import RunNotFound

from podmagic.run import store
from podmagic.ui.serverext.project import project_root_for, run_dir_for, valid_run_id
from podmagic.run.store import TAIL_MAX_BYTES as MAX_TAIL_BYTES
from podmagic.ui.serverext.views import log_tail, run_list, run_row


def _run(root: Path, run_id: str, **status) -> Path:
    run_dir = store.runs_root(root) / run_id
    run_dir.mkdir(parents=True)
    store.write_json_atomic(run_dir / store.STATUS, {"run_id": run_id, **status})
    return run_dir


def _live(**extra) -> dict:
    return {"state": "running", "owner_pid": os.getpid(), "owner_host": os.uname().nodename, **extra}


@pytest.mark.parametrize("bad", ["..", ".", "../x", "a/b", "/etc", "-rf", "", "x\x00y", "a b", "~root"])
def test_bad_run_ids_are_rejected(tmp_path, bad):
    assert not valid_run_id(bad)
    with pytest.raises(ValueError):
        run_dir_for(tmp_path, bad)


def test_lookup_is_exact_and_stays_inside_the_runs_root(tmp_path, monkeypatch):
    run_dir = _run(tmp_path, "train-20260101T000000Z-abcd", **_live())
    assert run_dir_for(tmp_path, run_dir.name) == run_dir
    with pytest.raises(RunNotFound):
        run_dir_for(tmp_path, "train")  # a prefix is not an id here
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / store.STATUS).write_text("{}")
    (store.runs_root(tmp_path) / "link").symlink_to(outside)
    with pytest.raises(RunNotFound):
        run_dir_for(tmp_path, "link")
    monkeypatch.chdir(tmp_path)  # find_run also accepts a path relative to the cwd
    with pytest.raises(RunNotFound):
        run_dir_for(tmp_path, "elsewhere")


def test_rows_carry_live_elapsed_and_cost(tmp_path):
    live = _run(tmp_path, "a-1", **_live(started_at_utc="2026-01-01T00:00:00Z", price_per_hour_usd=2.0))
    row = run_row(live, now=1767225600 + 1800)  # 2026-01-01T00:30:00Z
    assert row["live"] and row["elapsed_sec"] == 1800 and row["cost_usd"] == pytest.approx(1.0)
    done = _run(tmp_path, "b-1", state="running", owner_pid=os.getpid())
    store.write_json_atomic(done / store.MANIFEST, {"job_name": "b", "backend": "local", "exit_code": 0,
                                                    "wall_time_sec": 12.5, "estimated_cost_usd": 0.25})
    row = run_row(done)
    assert not row["live"] and row["state"] == "succeeded"
    assert (row["elapsed_sec"], row["cost_usd"], row["exit_code"]) == (12.5, 0.25, 0)


def test_list_sums_live_pods_only(tmp_path):
    _run(tmp_path, "a-1", **_live(price_per_hour_usd=1.25))
    _run(tmp_path, "b-1", **_live(price_per_hour_usd=0.5))
    _run(tmp_path, "c-1", state="running", owner_pid=2**22 + 12345, owner_host=os.uname().nodename,
         price_per_hour_usd=9.0)  # owner gone: lost, not live
    listing = run_list(tmp_path)
    assert listing["live_count"] == 2 and listing["live_usd_per_hour"] == pytest.approx(1.75)
    assert {r["run_id"]: r["state"] for r in listing["runs"]}["c-1"] == "lost"


def test_log_tail_keeps_the_last_state_of_progress_lines(tmp_path):
    run_dir = _run(tmp_path, "a-1", **_live())
    (run_dir / "run.log").write_text("one\nprogress 10%\rprogress 100%\ntwo\nthree\n")
    assert log_tail(run_dir, 3)["lines"] == ["progress 100%", "two", "three"]
    assert log_tail(run_dir, 100)["lines"][0] == "one"
    (run_dir / "run.log").write_bytes(b"windows\r\nline\r\nbar 1\rbar 2\r\n")
    assert log_tail(run_dir, 10)["lines"] == ["windows", "line", "bar 2"]
    assert log_tail(_run(tmp_path, "b-1"), 10) == {"run_id": "b-1", "size": 0, "lines": [], "html": "",
                                                     "truncated": False}


def test_log_tail_reads_a_bounded_window(tmp_path):
    run_dir = _run(tmp_path, "a-1", **_live())
    with (run_dir / "run.log").open("w") as fh:
        for i in range(60_000):
            fh.write(f"line {i:06d}\n")
    tail = log_tail(run_dir, 5)
    assert tail["lines"] == [f"line {i:06d}" for i in range(59_995, 60_000)] and tail["truncated"]
    assert tail["size"] > MAX_TAIL_BYTES


def test_project_root_is_the_git_top_level(tmp_path):
    sub = tmp_path / "repo" / "notebooks"
    sub.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    assert project_root_for(sub) == (tmp_path / "repo").resolve()
    plain = tmp_path / "plain"
    plain.mkdir()
    assert project_root_for(plain) == plain.resolve()


def test_server_extension_imports_no_heavy_front_end_or_backend_modules():
    code = ("import sys, podmagic.ui.serverext, podmagic.ui.serverext.handlers, podmagic.ui.serverext.views\n"
            "print([m for m in ('ipywidgets', 'paramiko', 'runpod', 'IPython') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.replace("'", '"')) == []


READ_ONLY_AUTHORIZER = '''
from jupyter_server.auth.authorizer import Authorizer


class ReadOnly(Authorizer):
    def is_authorized(self, handler, user, action, resource):
        return action == "read"
'''


def _http(url: str, token: str | None, method: str = "GET") -> int:
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"token {token}"} if token else {}
    req = urllib.request.Request(url, method=method, headers=headers, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except urllib.error.URLError:
        return 0  # not listening yet


def test_a_read_only_user_sees_runs_but_cannot_stop_them(tmp_path):
    """A real jupyter server with an authorizer that allows only `read`."""
    import socket
    import time

    (tmp_path / "ro_authz.py").write_text(READ_ONLY_AUTHORIZER)
    run_dir = _run(tmp_path / "root", "a-1", **_live())
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--IdentityProvider.token=tok", f"--ServerApp.root_dir={tmp_path / 'root'}",
           "--ServerApp.authorizer_class=ro_authz.ReadOnly", "--ServerApp.port_retries=0"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/podmagic/"
    try:
        deadline = time.monotonic() + 30
        while _http(base + "runs", "tok") != 200:
            assert proc.poll() is None and time.monotonic() < deadline, "jupyter server did not come up"
            time.sleep(0.2)
        for path in ("schema", "runs", "runs/a-1", "runs/a-1/log", "runs/a-1/metrics"):
            assert _http(base + path, None) == 403, path
            assert _http(base + path, "tok") == 200, path
        assert _http(base + "runs/a-1/stop", "tok", "POST") == 403
        assert not store.RunDir(run_dir).stop_requested()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
