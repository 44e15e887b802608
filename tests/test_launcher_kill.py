"""The pod-side launcher and `kill_command`, run with the real bash on this machine (no backend around them).

A kill can come at any moment of the launcher's life: while the start capture runs (no job pid yet), while
the job runs, or with a job that ignores TERM. Whatever the moment, the job must not outlive the kill, and
once `kill_command` returns the launcher must write nothing more: the teardown reads and removes the
pod's files next (an `rm -rf` racing a launcher that still writes fails, and leaves the pod)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from podmagic.backends import podside
from podmagic.plan.requests import Launch, PodTelemetry
from podmagic.records import replace

from helpers import small_tmpfs


def _launch(tmp_path: Path, body: str, telemetry: PodTelemetry | None = None) -> Launch:
    control = tmp_path / "control"
    control.mkdir()
    return Launch(script_path=str(control / "run.sh"), log_path=str(control / "run.log"),
                  exit_path=str(control / "exit"), workdir=str(tmp_path), body=body, telemetry=telemetry)


def _start(launch: Launch, env: dict[str, str] | None = None) -> None:
    for path, text in podside.launch_files(launch).items():
        Path(path).write_text(text)
        os.chmod(path, 0o700)
    out = subprocess.run(["bash", "-c", podside.start_command(podside.launcher_path(launch.exit_path))],
                         env={**os.environ, **(env or {})}, capture_output=True, text=True, check=True)
    assert out.stdout.strip().isdigit()


def _wait_for(path: Path, limit: float = 10.0) -> None:
    end = time.monotonic() + limit
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.02)


def _kill(launch: Launch, **kw) -> float:
    started = time.monotonic()
    subprocess.run(["bash", "-c", podside.kill_command(launch, **kw)], check=True, timeout=60)
    return time.monotonic() - started


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state


def test_a_kill_during_the_start_capture_means_the_job_never_starts(tmp_path):
    # an nvidia-smi that takes a second: the launcher is in its start capture, no job pid written yet
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    slow_once = bin_dir / "slow-once"  # the capture calls it several times: the first call is enough
    (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\n[ -e {slow_once} ] || {{ touch {slow_once}; sleep 1; }}\n"
                                        "echo 'No devices were found'\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    marker = tmp_path / "job-ran"
    telemetry = PodTelemetry(sample_interval_sec=30, max_samples=10, mount=str(tmp_path), nvidia_smi=True,
                             remote_env=False, dmesg=False)
    launch = _launch(tmp_path, f"touch {marker}\nsleep 30\n", telemetry)
    _start(launch, {"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    _wait_for(Path(launch.exit_path + ".launcher_pid"))
    assert not Path(launch.exit_path + ".pid").exists()

    _kill(launch)

    exit_file = Path(launch.exit_path)
    assert exit_file.read_text().strip() == "143", "the launcher must have finished when the kill returns"
    assert not Path(launch.exit_path + ".pid").exists() and not marker.exists(), "the job started after the kill"
    assert not _alive(int(Path(launch.exit_path + ".launcher_pid").read_text()))
    assert Path(launch.exit_path + ".ended_by").read_text().strip() == "interrupted"
    end = Path(podside.capture_output_path(launch.exit_path, "end")).read_text()
    assert end.rstrip().endswith(podside.CAPTURE_DONE)


def test_a_kill_during_the_job_ends_it_and_waits_for_the_launcher(tmp_path):
    launch = _launch(tmp_path, "echo started\nsleep 30\n")
    _start(launch)
    _wait_for(Path(launch.exit_path + ".pid"))
    job = int(Path(launch.exit_path + ".pid").read_text())

    took = _kill(launch, grace_sec=5)

    assert took < 4, f"a job that ends on TERM must not cost the whole grace period ({took:.1f} s)"
    assert not _alive(job)
    assert Path(launch.exit_path).read_text().strip() == "143"
    assert not _alive(int(Path(launch.exit_path + ".launcher_pid").read_text()))


def test_a_job_that_ignores_term_is_killed_after_the_grace(tmp_path):
    launch = _launch(tmp_path, "trap '' TERM\necho started\nsleep 30 & wait $!\nsleep 30\n")
    _start(launch)
    _wait_for(Path(launch.exit_path + ".pid"))
    _wait_for(Path(launch.log_path))
    job = int(Path(launch.exit_path + ".pid").read_text())

    took = _kill(launch, grace_sec=1)

    assert 1 <= took < 8
    assert not _alive(job)
    assert Path(launch.exit_path).read_text().strip() == "137"
    out = subprocess.run(["pgrep", "-g", str(job)], capture_output=True, text=True)
    # a killed orphan stays a zombie until the machine's init reaps it (some containers' init never does)
    left = [pid for pid in out.stdout.split() if _alive(int(pid))]
    assert left == [], "a process of the job's group outlived the kill"


def test_a_sampler_that_will_not_end_never_holds_the_exit_file(tmp_path):
    """The launcher stops its sampler with TERM; a TERM can be lost when it reaches the sampler's subshell in
    its first moments (bash resets its signals there: one launch in a few hundred here, when the job ends
    as the sampler starts). Stood in for by a sampler that ignores TERM: the exit file must come anyway."""
    telemetry = PodTelemetry(sample_interval_sec=30, max_samples=10, mount=str(tmp_path), nvidia_smi=False,
                             remote_env=False, dmesg=False)
    launch = _launch(tmp_path, "exit 3\n", telemetry)
    files = podside.launch_files(launch)
    files[podside.sampler_path(launch.exit_path)] = "trap '' TERM\nsleep 60 & wait $!\n"
    for path, text in files.items():
        Path(path).write_text(text)
        os.chmod(path, 0o700)
    started = time.monotonic()
    subprocess.run(["bash", "-c", podside.start_command(podside.launcher_path(launch.exit_path))], check=True,
                   capture_output=True)
    _wait_for(Path(launch.exit_path), limit=30)
    assert Path(launch.exit_path).read_text().strip() == "3"
    assert time.monotonic() - started < 15, "the exit file waited on the sampler"
    assert not _alive(int(Path(launch.exit_path + ".sampler_pid").read_text()))


def test_the_log_is_whole_when_the_exit_file_comes(tmp_path):
    """stdout and stderr go into the log interleaved as written, and every line is in the log by the time
    the exit code is written (the launcher waits for the log's `cat` to end)."""
    launch = _launch(tmp_path, "for i in $(seq 1 50000); do echo \"line $i\"; done; echo last >&2; exit 4\n")
    _start(launch)
    _wait_for(Path(launch.exit_path), limit=30)
    lines = Path(launch.log_path).read_text().splitlines()
    assert Path(launch.exit_path).read_text().strip() == "4"
    assert lines[:-1] == [f"line {i}" for i in range(1, 50001)] and lines[-1] == "last"


def test_a_job_that_prints_on_its_way_out_of_a_kill_has_those_lines_in_the_log(tmp_path):
    """The job's output goes through a pipe that a `cat` empties into the log: the `cat` is not in the job's
    process group, so a kill of the job leaves it to take what the job prints as it ends (a checkpoint
    saved on TERM), and the launcher writes the exit code once the log is whole."""
    launch = _launch(tmp_path, "trap 'for i in $(seq 1 2000); do echo saving $i; done; echo saved; exit 5' TERM\n"
                               "echo started\nsleep 30 & wait $!\n")
    _start(launch)
    log = Path(launch.log_path)
    end = time.monotonic() + 10
    while not (log.exists() and log.read_text() == "started\n"):
        assert time.monotonic() < end, "the job never started"
        time.sleep(0.02)
    _kill(launch)
    assert Path(launch.exit_path).read_text().strip() == "5"
    lines = log.read_text().splitlines()
    assert lines == ["started", *(f"saving {i}" for i in range(1, 2001)), "saved"]


def test_a_log_that_cannot_be_written_does_not_end_the_job(tmp_path):
    """The pod's disk is full under the log (a 64 KiB tmpfs): the `cat` fails, the job's further output is
    dropped, and the job goes on to its end and its own exit code (a job that appends to a file would
    only see its writes fail)."""
    with small_tmpfs(tmp_path / "disk", "64k") as disk:
        marker = tmp_path / "reached"
        launch = replace(_launch(tmp_path, f"for i in $(seq 1 20000); do echo line $i; done\n: > {marker}\nexit 7\n"),
                         log_path=str(disk / "run.log"))
        _start(launch)
        _wait_for(Path(launch.exit_path), limit=30)
        assert Path(launch.exit_path).read_text().strip() == "7" and marker.exists()
        lines = Path(launch.log_path).read_text().splitlines()
        assert 0 < len(lines) < 20000 and lines[:100] == [f"line {i}" for i in range(1, 101)]


def test_a_process_left_holding_the_log_does_not_hold_the_exit_file(tmp_path):
    """A job that leaves a background process with its output open (a server started with `&`): the exit
    code is written when the job's script ends, whatever the process still holds."""
    launch = _launch(tmp_path, "(sleep 30; echo late) &\necho started\n")
    started = time.monotonic()
    _start(launch)
    _wait_for(Path(launch.exit_path), limit=30)
    took = time.monotonic() - started
    assert Path(launch.exit_path).read_text().strip() == "0"
    assert took < 5
    assert Path(launch.log_path).read_text() == "started\n"
    subprocess.run(["bash", "-c", f"kill -KILL -- -$(cat {launch.exit_path}.pid) 2>/dev/null; true"], check=True)


def test_the_first_sample_waits_for_the_job_to_start_and_a_shorter_job_still_gets_one(tmp_path):
    """The sampler is forked just after the job: its first sample comes `FIRST_SAMPLE_SEC` in, and a job
    that ends before that (TERM while the sampler naps) still leaves exactly one sample, taken at the end."""
    telemetry = PodTelemetry(sample_interval_sec=30, max_samples=10, mount=str(tmp_path), nvidia_smi=False,
                             remote_env=False, dmesg=False)
    for body, count in (("true\n", 1), ("sleep 0.5\n", 2)):
        here = tmp_path / body.split()[0]
        here.mkdir()
        launch = _launch(here, body, telemetry)
        _start(launch)
        _wait_for(Path(launch.exit_path), limit=30)
        samples = Path(podside.samples_path(launch.exit_path)).read_text().splitlines()
        assert len(samples) == count, samples  # the short one: the TERM's sample; the other: 0.05 s in, and the TERM's
        assert all("\tload=" in s and "\tdisk=" in s for s in samples)
    assert podside.FIRST_SAMPLE_SEC < 0.5


def test_the_captures_run_in_the_launcher_and_leave_the_job_its_environment(tmp_path):
    """The captures are functions of the launcher (no subshell): the `PATH` they extend and the variables
    they set stay theirs, so the job sees the launcher's environment; an nvidia-smi on that extended
    PATH is still found by the capture, and the watchdog and sampler nap on the one shared pipe."""
    bin_dir = tmp_path / ".local" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: Fake (UUID: GPU-0)'\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    telemetry = PodTelemetry(sample_interval_sec=30, max_samples=10, mount=str(tmp_path), remote_env=False)
    launch = _launch(tmp_path, 'echo "PATH=$PATH"; echo "gq=${gq-unset} o=${o-unset} f=${f-unset}"\n', telemetry)
    launch = replace(launch, heartbeat_path=str(tmp_path / "beat"), heartbeat_timeout_sec=600)  # a watchdog too
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    _start(launch, env)
    _wait_for(Path(launch.exit_path), limit=30)
    assert Path(launch.log_path).read_text().splitlines() == ["PATH=/usr/bin:/bin", "gq=unset o=unset f=unset"]
    start = Path(podside.capture_output_path(launch.exit_path, "start")).read_text()
    assert "GPU 0: Fake" in start and start.rstrip().endswith(podside.CAPTURE_DONE)
    script = Path(podside.launcher_path(launch.exit_path)).read_text()
    assert script.count("_pm_nap()") == 1 and "{nap}" not in script and "( capture_" not in script


def test_the_exit_wait_ends_when_the_launcher_left_no_pid(tmp_path):
    """The SSH pod's one-channel wait (`exit_wait_command`) must not outlive a launcher that never wrote its
    pid (a full disk) or whose folder is gone: it gives up at its first look at the launcher, 2 s in, and its
    status says the launcher is lost; with the exit file there it ends at once, with 0."""
    launch = _launch(tmp_path, "true\n")  # never started: no exit file, no pid file
    started = time.monotonic()
    lost = subprocess.run(["bash", "-c", podside.exit_wait_command(launch)], timeout=20)
    assert time.monotonic() - started < 10
    assert lost.returncode == podside.LAUNCHER_LOST_STATUS
    Path(launch.exit_path).write_text("")  # the launcher's `echo` has opened it, not yet written the code
    assert subprocess.run(["bash", "-c", podside.exit_wait_command(launch)], timeout=20).returncode \
        == podside.LAUNCHER_LOST_STATUS
    Path(launch.exit_path).write_text("0\n")
    assert subprocess.run(["bash", "-c", podside.exit_wait_command(launch)], timeout=5).returncode == 0


def test_the_exit_wait_takes_an_empty_exit_file_for_not_yet(tmp_path):
    """The launcher writes the exit code with one `echo` (no `mv`): a wait that looks between its open and
    its write sees an empty file, and must go on waiting for the code while the launcher is there."""
    launch = _launch(tmp_path, "true\n")
    launcher = subprocess.Popen(["sleep", "30"])
    try:
        Path(launch.exit_path + ".launcher_pid").write_text(f"{launcher.pid}\n")
        Path(launch.exit_path).write_text("")
        waiter = subprocess.Popen(["bash", "-c", podside.exit_wait_command(launch)])
        time.sleep(0.5)
        assert waiter.poll() is None, "an empty exit file ended the wait"
        Path(launch.exit_path).write_text("7\n")
        assert waiter.wait(timeout=5) == 0
    finally:
        launcher.kill()
        launcher.wait()


def _killed_launcher_and_its_sampler(tmp_path: Path) -> tuple[Launch, int]:
    """A launch whose launcher is KILLed while the job and the sampler run; the sampler's pid."""
    telemetry = PodTelemetry(sample_interval_sec=30, max_samples=10, mount=str(tmp_path), nvidia_smi=False,
                             remote_env=False, dmesg=False)
    launch = _launch(tmp_path, "sleep 30\n", telemetry)
    _start(launch)
    _wait_for(Path(launch.exit_path + ".sampler_pid"))
    _wait_for(Path(podside.samples_path(launch.exit_path)))  # its first sample: it naps now
    os.kill(int(Path(launch.exit_path + ".launcher_pid").read_text()), 9)
    return launch, int(Path(launch.exit_path + ".sampler_pid").read_text())


def test_a_sampler_whose_launcher_was_killed_ends_by_itself(tmp_path):
    """Its launcher will never TERM it: it looks every `LAUNCHER_LOOK_SEC` while it naps, not only after its
    30 s interval (or the hours of a run's max samples)."""
    launch, sampler = _killed_launcher_and_its_sampler(tmp_path)
    try:
        end = time.monotonic() + podside.LAUNCHER_LOOK_SEC + 3
        while _alive(sampler) and time.monotonic() < end:
            time.sleep(0.1)
        assert not _alive(sampler)
    finally:
        _kill(launch, launcher_sec=1)


def test_the_kill_ends_the_sampler_of_a_launcher_killed_before(tmp_path):
    """The teardown's kill TERMs it: it takes its last sample and ends at once."""
    launch, sampler = _killed_launcher_and_its_sampler(tmp_path)
    took = _kill(launch, launcher_sec=1)
    end = time.monotonic() + 2
    while _alive(sampler) and time.monotonic() < end:
        time.sleep(0.02)
    assert not _alive(sampler) and took < 3
    assert len(Path(podside.samples_path(launch.exit_path)).read_text().splitlines()) == 2  # the first, the TERM's
