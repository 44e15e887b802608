"""`run.manifest` on its own: plan + outcome -> the manifest dict, the status word, display rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from podmagic import __version__
from podmagic.backends.base import PodInfo
from podmagic.plan import build as plan_mod
from podmagic.run.manifest import Outcome, build, lookup, rows, status_word
from podmagic.run.redact import MASK
from podmagic.spec import jobspec

RUNPOD_DEPLOY_KEYS = {
    "schema_version", "pulled_at_utc", "failed", "job_name", "run_id", "config_path", "storage_mode",
    "datacenter_id", "gpu_id", "pod_id", "image", "gpu_price_per_hour_usd", "gpu_price_source", "wall_time_sec",
    "estimated_cost_usd", "cost_cap_usd", "pod_final_state", "pod_resumed", "volume_mount", "volume_name",
    "volume_gb", "deploy_metadata", "artifacts", "telemetry_files",
}
SPEC = """name: m-{seed}
variables: {seed: "1"}
pod: {python_version: "3.12.1", image: "img:1", datacenters: [EU-RO-1]}
run: echo {seed} {tok}
"""
POD = PodInfo(pod_id="p1", backend="runpod", gpu_id="NVIDIA L40S", datacenter_id="US-MD-1",
              price_per_hour_usd=1.8, price_source="api")


@pytest.fixture
def plan(tmp_path: Path) -> plan_mod.Plan:
    ctx = plan_mod.Context(project_root=tmp_path, config_dir=tmp_path, run_suffix="20260101T000000Z-abcd",
                           backend="runpod", cli_variables=(("tok", "hunter22"),),
                           secret_variables=frozenset({"tok"}))
    spec = jobspec.parse(SPEC.replace("pod: {", "pod: {gpu_order: [NVIDIA L40S], "))
    return plan_mod.build(spec, ctx)


def test_a_finished_run_has_runpod_deploys_keys_and_ours(plan):
    outcome = Outcome(started_at=1000.0, ended_at=1000.0 + 1800, failed=False, exit_code=0, pod=POD,
                      pod_final_state="TERMINATED", python_resolved="3.12.1", deploy_metadata={"local_git_sha": "a" * 40})
    m = build(plan, outcome)
    assert RUNPOD_DEPLOY_KEYS <= set(m) and m["schema_version"] == "v2"
    assert (m["run_id"], m["job_name"], m["backend"]) == ("m-1-20260101T000000Z-abcd", "m-1", "runpod")
    assert m["wall_time_sec"] == 1800.0 and m["estimated_cost_usd"] == 0.9 and m["gpu_price_per_hour_usd"] == 1.8
    assert m["datacenter_id"] == "US-MD-1" and m["gpu_id"] == "NVIDIA L40S" and m["pod_id"] == "p1"
    assert m["started_at_utc"] == "1970-01-01T00:16:40Z" and m["ended_at_utc"] == "1970-01-01T00:46:40Z"
    assert m["pulled_at_utc"] == m["ended_at_utc"] and m["image"] == "img:1"
    assert m["python_version"] == "3.12.1" and m["python_resolved"] == "3.12.1"
    assert m["variables"] == {"seed": "1", "tok": MASK}  # a secret variable is never written
    assert m["spec_sha256"] == plan.spec_sha256 and len(m["spec_sha256"]) == 64
    assert m["podmagic_version"] == __version__ and m["deploy_metadata"] == {"local_git_sha": "a" * 40}
    assert status_word(m) == "succeeded"


def test_a_run_that_never_got_a_pod(plan):
    m = build(plan, Outcome(started_at=5.0, error="no capacity"))
    assert m["failed"] is True and m["pod_id"] is None and m["gpu_id"] is None
    assert m["estimated_cost_usd"] is None and m["gpu_price_per_hour_usd"] is None and m["pod_resumed"] is False
    assert m["datacenter_id"] == "EU-RO-1"  # the first one asked for
    assert m["wall_time_sec"] == 0 and m["ended_at_utc"] is not None
    assert status_word(m) == "failed"


def test_status_word_interrupted_wins():
    assert status_word({"failed": True, "interrupted": True}) == "interrupted"
    assert status_word({"failed": True}) == "failed" and status_word({"failed": False}) == "succeeded"


def test_lookup_follows_dotted_keys_and_tolerates_missing_ones():
    m = {"deploy_metadata": {"local_git_sha": "abc"}, "x": 1}
    assert lookup(m, "deploy_metadata.local_git_sha") == "abc"
    assert lookup(m, "deploy_metadata.nope") is None and lookup(m, "x.y") is None and lookup(m, "z") is None


def test_rows_are_in_a_fixed_order_formatted_and_skip_empty_values(plan):
    outcome = Outcome(started_at=0.0, ended_at=10.0, failed=False, exit_code=0, pod=POD,
                      deploy_metadata={"local_git_dirty": False, "local_git_sha": ""},
                      artifacts=[{"label": "metrics", "status": "success", "bytes_transferred": 12}])
    table = rows(build(plan, outcome))
    labels = [label for label, _ in table]
    assert labels[:4] == ["run", "job", "backend", "status"]
    shown = dict(table)
    assert shown["status"] == "succeeded" and shown["git dirty"] == "no" and "git SHA" not in shown
    assert shown["$/hour"] == "1.8" and shown["estimated cost ($)"] == "0.005" and shown["exit code"] == "0"
    assert shown["artifact metrics"] == "success (12 bytes)" and labels[-1] == "artifact metrics"
    assert "error" not in shown


@pytest.mark.parametrize("ts", [0, 0.999, 1.5, 951782400.25, 1796289918.999, 4102444800.0, 2**31 + 0.5])
def test_utc_stamps_are_what_datetime_writes(ts):
    """`utc_iso` formats by `time` (no `datetime` import on a run's path); it says what isoformat said."""
    from datetime import datetime, timezone

    from podmagic.run.events import utc_iso

    assert utc_iso(ts) == datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def test_the_journal_shows_each_event_at_once_and_closes_its_file(tmp_path):
    """One open file a run: every event is on disk as soon as it is journaled (a panel reads them while the
    run goes on), the redactor masks it, output is not journaled, and `close` lets the file go."""
    import os

    from podmagic.run.events import Event, Journal, read_events

    path = tmp_path / "events.jsonl"
    fds = len(os.listdir("/proc/self/fd"))
    with Journal(path, lambda s: s.replace("hunter2", "***")) as journal:
        journal(Event("warning", {"message": "token hunter2"}))
        assert [e["message"] for e in read_events(path)] == ["token ***"]
        journal(Event("output", {"text": "not journaled"}))
        journal(Event("error", {"message": "boom"}))
        assert [e["event"] for e in read_events(path)] == ["warning", "error"]
        assert len(os.listdir("/proc/self/fd")) == fds + 1
    assert len(os.listdir("/proc/self/fd")) == fds
    journal(Event("warning", {"message": "after the end"}))  # a late event opens the file again
    journal.close()
    assert [e["event"] for e in read_events(path)] == ["warning", "error", "warning"]


def test_a_journal_on_a_full_disk_loses_the_event_not_the_run():
    """/dev/full takes the open and refuses every write (ENOSPC): the event's write raises (the runner
    swallows a listener's error), the file is let go, and closing never raises."""
    import os

    from podmagic.run.events import Event, Journal

    fds = len(os.listdir("/proc/self/fd"))
    journal = Journal(Path("/dev/full"))
    for _ in range(2):
        with pytest.raises(OSError):
            journal(Event("warning", {"message": "no room"}))
        assert len(os.listdir("/proc/self/fd")) == fds
    journal.close()
