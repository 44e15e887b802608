"""The views' models: ANSI → HTML, the \\r-aware tail, the stepper, the summary line, tables, relaunch form."""

from __future__ import annotations

import re

from podmagic.run.events import Event
from podmagic.ui import ansi, render
from podmagic.ui.logtail import LogTail
from podmagic.ui.widgets import RunView, stepper_html

MANIFEST = {
    "schema_version": "v2", "failed": False, "job_name": "train", "run_id": "train-20260101T000000Z-abcd",
    "backend": "runpod", "gpu_id": "NVIDIA A100 80GB PCIe", "datacenter_id": "EU-RO-1", "wall_time_sec": 11.5,
    "estimated_cost_usd": 0.0115, "cost_cap_usd": 2.0, "gpu_price_per_hour_usd": 3.6, "python_version": "3.12",
    "python_resolved": "3.12.1", "exit_code": 0, "variables": {"seed": "0"}, "image": "img", "error": None,
    "spec_sha256": "a" * 64,
    "deploy_metadata": {"local_git_sha": "0123456789abcdef0123456789abcdef01234567", "local_git_dirty": False,
                        "payload_lockfile_sha256": "b" * 64},
}


def test_ansi_colours_become_spans_and_no_escape_survives():
    text = "\x1b[32mOK\x1b[0m <b>&\x1b[1;31m FAIL\x1b[0m\x1b[2K\x1b[1A\x1b]0;title\x07\x1b(B\x1b[38;5;208mo\x1b[48;2;1;2;3mx\x1b[3"
    out = ansi.to_html(text)
    assert "\x1b" not in out and "title" not in out
    assert '<span style="color:#1a9a4a">OK</span> &lt;b&gt;&amp;' in out
    assert "font-weight:bold" in out and "#ff8700" in out and "background-color:#010203" in out
    assert ansi.strip(text) == "OK <b>& FAILox"


def test_log_tail_is_bounded_and_carriage_returns_replace_the_line():
    tail = LogTail(max_lines=3)
    for chunk in ["a\n", "50%\r", "60%\r", "100%\n", "x", "y\nz\n", "w"]:
        tail.feed(chunk)
    assert tail.text() == "100%\nxy\nz\nw" and tail.total_lines == 4
    tail.feed("q" * 10_000 + "\n")
    assert len(tail.text().splitlines()[-1]) == 2000


def test_live_view_stepper_cost_of_cap_notes_and_attempts():
    view = RunView("r1", "job", "runpod", cost_cap=2.0)
    view.on_event(Event("ssh_host_key_trusted", {"host": "box", "fingerprint": "SHA256:abc"}))
    view.on_event(Event("placement_attempt", {"gpu_id": "H100", "datacenter_id": "EU", "outcome": "trying"}))
    view.on_event(Event("placement_attempt", {"gpu_id": "H100", "datacenter_id": "EU", "outcome": "no_capacity",
                                              "reason": "no longer any instances"}))
    view.on_event(Event("pod_provisioned", {"price_per_hour_usd": 3.6}))
    for phase in ("provision", "setup", "run"):
        view.on_event(Event("phase_started", {"phase": phase}))
    view.on_event(Event("output", {"text": "\x1b[32mgreen\x1b[0m 10%\r\x1b[32mgreen\x1b[0m 99%\n"}))
    view.flush(force=True)  # output is throttled to a re-render every FLUSH_SEC
    assert "SHA256:abc" in view.header.value
    assert view.attempts == {("H100", "EU"): ("no_capacity", "no longer any instances")}
    assert "no longer any instances" in view.placement.value and "no capacity" in view.placement.value
    assert re.search(r"\$0\.\d{4} of \$2\.00", view.header.value)
    plain = re.sub(r"<[^>]+>", "", view.header.value)
    assert "provision ✓ · setup ✓ · run ●" in plain and "── " not in view.log.value
    assert "99%" in view.log.value and "10%" not in view.log.value and "\x1b" not in view.log.value
    assert view.log.layout.flex_flow == "column-reverse" and "podmagic-log" in view.log._dom_classes
    view.on_event(Event("run_finished", {"failed": True, "interrupted": True}))
    assert view.state == "interrupted" and view.stop_button.layout.display == "none"
    assert "run ✗" in re.sub(r"<[^>]+>", "", view.header.value)
    final = view.final_html(None)
    assert "no longer any instances" in final and "SHA256:abc" in final and "\x1b" not in final


def test_stepper_marks():
    plain = lambda s: re.sub(r"<[^>]+>", "", s)  # noqa: E731
    assert plain(stepper_html(["setup", "run"], "succeeded")) == "setup ✓ · run ✓"
    assert plain(stepper_html(["setup", "run"], "failed")) == "setup ✓ · run ✗"
    assert stepper_html([], "running") == ""


def test_summary_line_then_folded_manifest_with_short_hashes(tmp_path):
    run_dir = tmp_path / "artifacts" / "runpod" / MANIFEST["run_id"]
    out = render.run_html(MANIFEST, log_text="\x1b[31mred\x1b[0m\n", total_lines=1, run_dir=run_dir,
                          attempts={("A100", "EU-RO-1"): ("ok", "")}, notes=["warning: dirty tree"])
    summary = re.sub(r"<[^>]+>", "", out.split("</div>", 1)[0])
    assert summary.startswith("train train-20260101T000000Z-abcd · succeeded · NVIDIA A100 80GB PCIe · EU-RO-1 · "
                              "11s · $0.0115 of $2.00 · python 3.12 → 3.12.1 · git 01234567 clean · log · folder"), summary
    assert out.index("podmagic-summary") < out.index("<details")  # the manifest is folded under the summary
    assert f"title='{'b' * 64}'" in out  # a long hash: full value on hover and copy, shown short
    assert "seed=0" in out and "{'seed'" not in out and "None" not in out
    assert "warning: dirty tree" in out and "EU-RO-1</td>" in out and "\x1b" not in out
    href = re.search(r"href='([^']+)/run.log'", out).group(1)
    assert href.endswith("artifacts/runpod/" + MANIFEST["run_id"])


def test_compare_shows_differing_rows_as_text_and_folds_the_rest():
    other = {**MANIFEST, "run_id": "train-2", "variables": {"seed": "1"}, "python_resolved": "3.12.2",
             "deploy_metadata": {**MANIFEST["deploy_metadata"], "local_git_dirty": True}}
    out = render.compare_html([MANIFEST, other])
    main, same = out.split("podmagic-compare-same")
    assert "seed=0" in main and "seed=1" in main and "3.12.2" in main and ">yes<" in main and ">no<" in main
    assert "data-field='image'" not in main and "data-field='image'" in same
    assert "{'seed'" not in out and "None" not in out and "text-align:left" in out and "position:sticky" in out
    assert "var(--jp-warn-color1" in out  # the highlight follows the theme
    full = render.compare_html([MANIFEST, other], show_all=True)
    assert "data-field='image'" in full and "podmagic-compare-same" not in full


def test_relaunch_form_is_prefilled_and_untouched_fields_change_nothing():
    from podmagic.ui.relaunch import current_values, edited_text

    text = ('name: t\npod:\n  gpu_order: ["A", "B"]\n  python_version: "3.12.1"\nbudget: {cost_cap_usd: 2.0}\n'
            'variables: {lr: "0.1", seed: "0"}\nrun: echo\n')
    values = current_values(text, [("seed", "3")])  # the cell's variables, --var on top
    assert values == {"gpu_order": "A, B", "datacenters": "", "python_version": "3.12.1",
                      "variables": "lr=0.1, seed=3", "cost_cap": "2.0"}
    assert edited_text(text) == text
    assert "3.13" in edited_text(text, python_version="3.13")


def test_runs_launch_unbuffered_python(project):
    from podmagic.run import api

    prepared = api.prepare("run: python -c 'print(1)'\n", cwd=project, backend="local")
    assert prepared.plan.launch.env["PYTHONUNBUFFERED"] == "1"


def test_a_record_rebuilt_from_disk_keeps_the_attempts_and_notes(tmp_path):
    from podmagic.run.events import Event, Journal

    journal = Journal(tmp_path / "events.jsonl")
    journal(Event("placement_attempt", {"gpu_id": "H100", "datacenter_id": "EU", "outcome": "no_capacity",
                                        "reason": "no longer any instances"}))
    journal(Event("warning", {"message": "tree is dirty"}))
    journal(Event("error", {"message": "boom"}))
    out = render.run_html({**MANIFEST, "failed": True, "error": "boom"}, run_dir=tmp_path, attempts={}, notes=[])
    assert "no longer any instances" in out and "warning: tree is dirty" in out
    assert "error: boom" not in out  # the error is shown once in red, not again as a note


def test_the_sweep_view_ends_when_the_sweep_does_not_at_its_next_refresh(tmp_path, monkeypatch):
    """The cell waits for the view's block to turn static: the view's thread is woken by the sweep's end,
    so even with a refresh period far longer than the wait, it ends at once."""
    import threading
    import time

    from podmagic.run.sweep import Shard, Sweep
    from podmagic.ui import sweepview

    monkeypatch.setattr(sweepview, "REFRESH_SEC", 60.0)
    sweep = Sweep("sweep-view-1", [Shard({"seed": "0"}, None, state="cancelled")], tmp_path)
    release = threading.Event()
    sweep._thread = threading.Thread(target=release.wait, daemon=True)
    sweep._thread.start()
    view = sweepview.SweepView(sweep)
    view._thread.start()  # `show` without a cell to display in
    time.sleep(0.2)
    assert view._thread.is_alive() and view.final is None  # refreshing while the sweep runs
    release.set()
    view.wait(10)
    assert not view._thread.is_alive() and "podmagic-sweep-record" in view.final


def test_the_relaunch_form_is_made_when_first_opened():
    """Most runs are never edited: the controls open no field widgets until "Edit & relaunch" is clicked,
    and then the form holds the run's current values (untouched, they change nothing)."""
    from types import SimpleNamespace

    from podmagic.ui.relaunch import RelaunchControls

    text = "pod:\n  gpu_order: [A40, A4000]\nbudget: {cost_cap_usd: 2.5}\nrun: echo\n"
    controls = RelaunchControls(SimpleNamespace(inputs={"text": text, "variables": [["lr", "0.1"]]}),
                                {"run_id": "r1"}, {})
    assert controls.form.children == () and controls._fields == {} and controls.prefilled == {}  # nothing made yet
    controls.edit_button.click()
    assert controls.form.layout.display is None and controls.form.children[-1] is controls.run_edited_button
    values = {k: f.value for k, f in controls.fields.items()}
    assert values == {"gpu_order": "A40, A4000", "datacenters": "", "python_version": "", "variables": "lr=0.1",
                      "cost_cap": "2.5"}
    assert controls.edited() == (text, [("lr", "0.1")])
    controls.edit_button.click()
    assert controls.form.layout.display == "none" and controls.fields["cost_cap"].value == "2.5"
    asked = RelaunchControls(SimpleNamespace(inputs={"text": text, "variables": []}), {"run_id": "r1"}, {})
    assert asked.fields["gpu_order"].value == "A40, A4000"  # asked for in code: made then, still closed
    assert asked.form.children[-1] is asked.run_edited_button and asked.form.layout.display == "none"
