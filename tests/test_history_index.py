"""The runs index: newest first by creation, prefix look-ups by binary search, no directory scan
while nothing changed, finished rows read once."""

from __future__ import annotations

import os
import time

import pytest

from podmagic.errors import RunNotFound
from podmagic.run import history, store
from podmagic.ui.serverext import views


def _run(root, run_id, manifest=None):
    run_dir = store.runs_root(root) / run_id
    run_dir.mkdir(parents=True)
    store.write_json_atomic(run_dir / store.STATUS, {"run_id": run_id, "state": "running", "owner_pid": 2**22 + 7})
    if manifest is not None:
        store.write_json_atomic(run_dir / store.MANIFEST, manifest)
    return run_dir


def _settle(root):
    """Date the runs folder a few seconds back, as it is when nothing has changed for a while."""
    folder = store.runs_root(root)
    past = time.time() - 5
    os.utime(folder, (past, past))


def test_newest_first_by_creation_whatever_was_touched_since(tmp_path):
    old = _run(tmp_path, "a-20260101T000000Z-0001", {"failed": False})
    _run(tmp_path, "b-20260301T000000Z-0002", {"failed": True})
    _run(tmp_path, "a-20260201T000000Z-0003", {"failed": False})
    os.utime(old, None)  # the oldest run writes a file: it does not jump ahead
    assert [p.name for p in store.iter_run_dirs(tmp_path)] == [
        "b-20260301T000000Z-0002", "a-20260201T000000Z-0003", "a-20260101T000000Z-0001"]
    assert [r["run_id"] for r in history.list_runs(tmp_path, failed=True)] == ["b-20260301T000000Z-0002"]


def test_prefix_lookups(tmp_path):
    for i in range(50):
        _run(tmp_path, f"job{i:02d}-20260101T0000{i:02d}Z-{i:04x}")
    assert store.find_run(tmp_path, "job07").name == "job07-20260101T000007Z-0007"
    with pytest.raises(RunNotFound, match="matches 10 runs"):
        store.find_run(tmp_path, "job1")
    with pytest.raises(RunNotFound, match="no run"):
        store.find_run(tmp_path, "nope")
    index = store.run_index(tmp_path)
    assert index.with_prefix("job4") == [f"job4{i}-20260101T00004{i}Z-{40 + i:04x}" for i in range(10)]


def test_the_index_follows_runs_added_and_removed(tmp_path):
    _run(tmp_path, "x-20260101T000000Z-0001")
    assert len(list(store.iter_run_dirs(tmp_path))) == 1
    added = _run(tmp_path, "x-20260101T000001Z-0002")
    assert [p.name for p in store.iter_run_dirs(tmp_path)][0] == added.name
    (added / store.STATUS).unlink()
    added.rmdir()
    assert [p.name for p in store.iter_run_dirs(tmp_path)] == ["x-20260101T000000Z-0001"]


def test_a_poll_with_nothing_changed_scans_no_directory_and_reads_no_finished_run(tmp_path, monkeypatch):
    for i in range(30):
        _run(tmp_path, f"r-20260101T0000{i:02d}Z-{i:04x}", {"failed": False, "job_name": f"j{i}"})
    _settle(tmp_path)
    first = views.run_list(tmp_path)
    scans, reads = [], []
    real_scandir, real_read = os.scandir, store.read_json
    monkeypatch.setattr(store.os, "scandir", lambda *a: scans.append(a) or real_scandir(*a))
    monkeypatch.setattr(store, "read_json", lambda path: reads.append(path) or real_read(path))
    again = views.run_list(tmp_path)
    assert scans == [] and reads == []
    assert again == first and len(again["runs"]) == 30
    _run(tmp_path, "r-20260102T000000Z-ffff")  # a new run: the next poll sees it
    assert views.run_list(tmp_path)["runs"][0]["run_id"] == "r-20260102T000000Z-ffff"
    assert len(scans) == 1


def _age(path, seconds=5):
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_a_poll_of_finished_runs_is_answered_from_the_last_one_and_a_live_run_is_always_read(tmp_path, monkeypatch):
    for i in range(40):
        run_dir = _run(tmp_path, f"f-20260101T0000{i:02d}Z-{i:04x}", {"failed": False, "wall_time_sec": 1.0})
        _age(run_dir / store.MANIFEST, 120)
        _age(run_dir / store.STATUS, 120)
    _settle(tmp_path)
    views.run_list(tmp_path)  # reads every row once (a finished run's row settles)
    views.run_list(tmp_path)
    stats = []
    real_stat = os.stat
    monkeypatch.setattr(store.os, "stat", lambda p, *a, **k: stats.append(str(p)) or real_stat(p, *a, **k))
    monkeypatch.setattr(store, "summary_settled", lambda *a: pytest.fail("a cached answer looks at no run"))
    assert len(views.run_list(tmp_path)["runs"]) == 40
    root = store.runs_root(tmp_path)
    assert stats == [str(root), str(root / ".sweeps")]  # the two folders, not one stat per run
    monkeypatch.undo()

    live = _run(tmp_path, "l-20260102T000000Z-0001")  # a new run: the folder changed
    store.write_json_atomic(live / store.STATUS, {"run_id": live.name, "state": "running", "owner_pid": os.getpid(),
                                                  "started_at_utc": "2026-01-02T00:00:00Z"})
    _settle(tmp_path)
    first = views.run_list(tmp_path)["runs"][0]
    assert first["run_id"] == live.name and first["live"]
    store.write_json_atomic(live / store.MANIFEST, {"failed": False, "wall_time_sec": 2.0})  # it ends in place
    ended = views.run_list(tmp_path)["runs"][0]  # the folder did not change, but a live run is read every poll
    assert not ended["live"] and ended["state"] == "succeeded" and ended["elapsed_sec"] == 2.0
