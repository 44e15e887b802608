"""The log path: each byte read once (follow, then teardown from the same offset), markers matched
while streaming, bounded reads, checks that run however fast a job prints, a watchdog that ends with
its job. Figures (how fast) are measured by bench/, never asserted here."""

from __future__ import annotations

import pytest

import os
import threading
import time
from pathlib import Path

from podmagic.run import api
from podmagic.run.events import Event
from podmagic.run.follow import READ_LIMIT, Follower, LogCopy
from podmagic.run.redact import Redactor

from helpers import Recorder, run_spec

pytestmark = pytest.mark.e2e  # real runs, CLI subprocesses or kernels: not in the fast lane (-m "not e2e")


def test_log_copy_matches_markers_and_masks_across_chunk_boundaries(tmp_path):
    copy = LogCopy(lambda: (tmp_path / "run.log").open("a"), Redactor(["hunter22"]).stream(), ["ALL DONE", "Traceback"])
    pieces = [b"step 1 hun", b"ter22 ok\nALL ", "DON".encode(), b"E\n", "caf\u00e9 ".encode()[:-2],
              "caf\u00e9 ".encode()[-2:]]
    shown = "".join(copy.feed(p) for p in pieces) + copy.finish()
    assert copy.finish() == ""  # once only
    text = (tmp_path / "run.log").read_text()
    assert shown == text == "step 1 *** ok\nALL DONE\ncaf\u00e9 "
    assert copy.found == {"ALL DONE"} and copy.offset == sum(map(len, pieces))


def test_markers_are_matched_while_streaming(pod_env, project):
    spec = ("staging: []\nrun:\n  success_marker: MARKER\n  body: |\n"
            "    python3 -c \"import sys; sys.stdout.write('x' * 3000000 + 'MARK' + 'ER\\\\n')\"\n")
    m, plan, _ = run_spec(spec, project)
    assert not m["failed"], m["error"]
    assert (plan.run_dir / "run.log").stat().st_size == 3000007


def test_a_stop_is_honoured_while_the_job_prints_without_pause(pod_env, project):
    cancel = threading.Event()
    rec = Recorder()

    def stop_once_output_flows(event: Event) -> None:
        if event.kind == "output" and not cancel.is_set():
            threading.Timer(0.5, cancel.set).start()

    prepared = api.start(api.prepare("staging: []\nrun: yes podmagic-line\n", cwd=project))
    box = {}
    worker = threading.Thread(target=lambda: box.update(m=api.execute(
        prepared, listeners=[rec, stop_once_output_flows], cancel=cancel)))
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the runner never checked the stop while output kept arriving"
    assert box["m"]["failed"] and box["m"]["interrupted"]


def test_teardown_continues_from_the_followers_offset(pod_env, project):
    """A stopped run: the streamed part and the teardown's remainder join up, no line lost or repeated."""
    cancel = threading.Event()
    seen = []

    def stop_at_first_output(event: Event) -> None:
        if event.kind == "output":
            seen.append(event.data["text"])
            if "line 20000\n" in "".join(seen[-2:]):
                cancel.set()

    body = ("    trap 'seq 20001 20100 | sed \"s/^/line /\"; exit 1' TERM\n"
            "    for i in $(seq 1 20000); do echo line $i; done\n    sleep 30 & wait\n")
    prepared = api.start(api.prepare(f"staging: []\nrun: |\n{body}", cwd=project))
    manifest = api.execute(prepared, listeners=[stop_at_first_output], cancel=cancel)
    assert manifest["interrupted"]
    lines = (prepared.plan.run_dir / "run.log").read_text().splitlines()
    assert lines[:20000] == [f"line {i}" for i in range(1, 20001)]
    assert "".join(seen) == "\n".join(lines) + "\n"  # every byte shown once, teardown's part included


def test_follower_catches_up_in_bounded_reads(tmp_path):
    (tmp_path / "run.log").write_bytes(b"y" * (READ_LIMIT * 3 + 10))
    sizes = []
    follower = Follower(tmp_path, lambda e: sizes.append(len(e.data["text"])) if e.kind == "output" else None)
    follower.poll()
    assert sum(sizes) == READ_LIMIT * 3 + 10 and max(sizes) <= READ_LIMIT and len(sizes) == 4


def _session_members(sid: int) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(pid))
    return found


def test_the_watchdog_ends_with_its_job(pod_env, project):
    manifest, plan, _ = run_spec("staging: []\nrun: echo hi\nbudget: {max_runtime_minutes: 5}\n"
                                 "lifecycle: {on_success: stop}\n", project)
    assert not manifest["failed"]
    pid_file = pod_env / "pods" / manifest["pod_id"] / (plan.launch.exit_path.lstrip("/") + ".launcher_pid")
    launcher = int(pid_file.read_text())
    deadline = time.monotonic() + 2  # the watchdog sleeps 5 s between checks: it must not outlive the job
    while _session_members(launcher) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _session_members(launcher) == []


SWEEP_OUTLIVES = """
import os, sys
from pathlib import Path
from podmagic.run import sweep
root = Path(sys.argv[1])
sweep_id, shards = sweep.prepare("name: out-{i}\\nstaging: []\\nrun: sleep 0.3; echo shard {i}\\n",
                                 [{"i": str(i)} for i in range(3)], cwd=root)
sweep.Sweep(sweep_id, shards, root, max_parallel=1).start()
print(sweep_id, flush=True)
os._exit(0)  # the caller (a kernel) dies at once: started and pending shards go on
"""


def _wait_manifests(project, sweep_id, count, timeout=60):
    from podmagic.run import store, sweep

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            dirs = sweep.load(project, sweep_id)
        except Exception:  # noqa: BLE001 - not recorded yet
            dirs = []
        manifests = [store.read_json(d / store.MANIFEST) for d in dirs]
        if len(manifests) == count and all(manifests):
            return dirs, manifests
        time.sleep(0.1)
    raise AssertionError(f"sweep {sweep_id} did not finish")


@pytest.mark.parametrize("host", ["fork", "new interpreter"])
def test_a_sweeps_shards_run_in_one_host_that_outlives_its_caller(pod_env, project, host):
    """A forked host runs the caller's prepared shards; a new interpreter re-prepares them from the host file."""
    import subprocess
    import sys

    from podmagic.run import store

    env = {k: v for k, v in os.environ.items() if k != "PODMAGIC_SWEEP_SPAWN"}
    if host == "new interpreter":
        env["PODMAGIC_SWEEP_SPAWN"] = "1"
    out = subprocess.run([sys.executable, "-c", SWEEP_OUTLIVES, str(project)], capture_output=True, text=True,
                         timeout=60, check=True, env=env)
    sweep_id = out.stdout.split()[0]
    dirs, manifests = _wait_manifests(project, sweep_id, 3)
    assert [m["failed"] for m in manifests] == [False] * 3
    assert [(d / "run.log").read_text() for d in dirs] == [f"shard {i}\n" for i in range(3)]
    owners = {store.read_json(d / store.STATUS)["owner_pid"] for d in dirs}
    assert len(owners) == 1 and os.getpid() not in owners  # one host process ran every shard


def _wait_first_shard_printing(sw, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while not (sw.shards[0].run_dir and (sw.shards[0].run_dir / "run.log").exists()
               and (sw.shards[0].run_dir / "run.log").read_text()):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_stopping_a_sweep_stops_running_shards_and_cancels_pending_ones(pod_env, project):
    from podmagic.run import sweep

    sweep_id, shards = sweep.prepare("name: st-{i}\nstaging: []\nrun: echo up; sleep 60\n",
                                     [{"i": str(i)} for i in range(3)], cwd=project)
    sw = sweep.Sweep(sweep_id, shards, project, max_parallel=1).start()
    _wait_first_shard_printing(sw)
    sw.stop()
    manifests = sw.wait(60)
    assert [s.state for s in sw.shards] == ["interrupted", "cancelled", "cancelled"]
    assert manifests[0]["interrupted"] and manifests[1:] == [None, None]


def test_a_sweep_whose_host_dies_marks_its_running_shard_lost(pod_env, project, monkeypatch):
    """The observer takes ends from the host's record and reads no shard's files while the host lives;
    once the host is gone, a shard it never recorded as ended is lost (its files say it did not end)."""
    import signal

    from podmagic.run import store, sweep

    summaries = []
    real_summary = store.run_summary
    monkeypatch.setattr(store, "run_summary", lambda d: summaries.append(d) or real_summary(d))
    sweep_id, shards = sweep.prepare("name: lo-{i}\nstaging: []\nrun: echo up; sleep 60\n", [{"i": "0"}],
                                     cwd=project)
    sw = sweep.Sweep(sweep_id, shards, project, max_parallel=1).start()
    _wait_first_shard_printing(sw)
    assert sw.shards[0].state == "running" and summaries == []
    os.kill(sw._host.pid, signal.SIGKILL)
    sw.wait(30)
    assert [s.state for s in sw.shards] == ["lost"] and summaries == [sw.shards[0].run_dir]
    _kill_matching(sw.shards[0].run_dir.name)  # the job the host left running (detached shards outlive it)


def _kill_matching(text: str) -> None:
    import signal

    for entry in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if entry.isdigit() and text.encode() in cmdline:
            try:
                os.killpg(int(entry), signal.SIGKILL) if os.getpgid(int(entry)) == int(entry) else None
                os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass


def test_probe_and_pod_environment_are_captured_once_while_nothing_changes(pod_env, project, monkeypatch):
    from podmagic.backends import podside
    from podmagic.backends.local import LocalPod
    from podmagic.run import store

    commands, freezes = [], []
    real_run, real_start = LocalPod.run, LocalPod.start

    def counting_run(self, command, **kw):
        commands.append(command)
        return real_run(self, command, **kw)

    def counting_start(self, launch):
        # the freeze is part of the launcher's start capture (podside.capture_start_script)
        freezes.append("pip freeze" in podside.launch_files(launch)[podside.launcher_path(launch.exit_path)])
        return real_start(self, launch)

    monkeypatch.setattr(LocalPod, "run", counting_run)
    monkeypatch.setattr(LocalPod, "start", counting_start)
    first, plan1, _ = run_spec("staging: []\nrun: echo one\n", project)
    probes = sum("uv python find" in c for c in commands)
    second, plan2, _ = run_spec("staging: []\nrun: echo two\n", project)
    assert (probes, freezes) == (1, [True, False])
    assert sum("uv python find" in c for c in commands) == 1
    assert not any("pip freeze" in c for c in commands)  # no command of its own: the launcher's
    assert second["python_resolved"] == first["python_resolved"] and first["python_resolved"]
    for name in ("remote_env.json", "pip_freeze.txt"):
        assert (plan1.run_dir / name).read_text() == (plan2.run_dir / name).read_text()
    assert "pip freeze" in (plan1.run_dir / "remote_env.json").read_text()
    third, _, _ = run_spec("staging: []\npreflight: [{command: 'true'}]\nrun: echo three\n", project)
    assert freezes == [True, False, True]  # a different preflight: captured again
    assert (store.runs_root(project) / ".probe-cache.json").is_file()
