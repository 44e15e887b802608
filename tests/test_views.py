"""The run view's model: bounded \\r-aware tail, notices, placement rows, cost meter."""

from __future__ import annotations

from podmagic.run.events import Event
from podmagic.ui.logtail import LogTail
from podmagic.ui.widgets import RunView


def test_log_tail_is_bounded_and_carriage_returns_replace_the_line():
    tail = LogTail(max_lines=3)
    for chunk in ["a\n", "50%\r", "60%\r", "100%\n", "x", "y\nz\n", "w"]:
        tail.feed(chunk)
    assert tail.text() == "100%\nxy\nz\nw" and tail.total_lines == 4
    tail.feed("q" * 10_000 + "\n")
    assert len(tail.text().splitlines()[-1]) == 2000


def test_notices_placement_and_cost_reach_the_header():
    view = RunView("r1", "job", "ssh")
    view.on_event(Event("ssh_host_key_trusted", {"host": "box", "fingerprint": "SHA256:abc"}))
    view.on_event(Event("ssh_reconnect", {"host": "box", "attempt": 2}))
    view.on_event(Event("placement_attempt", {"gpu_id": "H100", "datacenter_id": "EU", "outcome": "trying"}))
    view.on_event(Event("placement_attempt", {"gpu_id": "H100", "datacenter_id": "EU", "outcome": "no_capacity",
                                              "reason": "no longer any instances"}))
    view.on_event(Event("pod_provisioned", {"price_per_hour_usd": 3.6}))
    view.on_event(Event("phase_started", {"phase": "run"}))
    assert "SHA256:abc" in view.header.value and "attempt=2" in view.header.value
    assert view.attempts == {("H100", "EU"): ("no_capacity", "no longer any instances")}
    assert "no longer any instances" in view.placement.value
    assert view.price == 3.6 and "$0.0" in view.header.value and "phase <b>run</b>" in view.header.value
    view.on_event(Event("run_finished", {"failed": True, "interrupted": True}))
    assert view.state == "interrupted" and view.stop_button.disabled
