"""Reconciling the pin with the project before launch (no pod, no cost)."""

from __future__ import annotations

import pytest

from podmagic.plan import reconcile
from podmagic.spec.jobspec import SpecError, parse

from conftest import git


def spec(pin: str, name: str = "job"):
    return parse(f"name: {name}\npod: {{python_version: \"{pin}\"}}\nrun: x\n")


def test_pin_outside_requires_python_is_an_error_at_the_pin(project):
    with pytest.raises(SpecError) as info:
        reconcile.check(spec("3.9.18"), project)
    assert "outside the project's requires-python '>=3.10'" in info.value.message
    assert (info.value.line, info.value.col) == (2, 23)


def test_minor_pin_fits_when_some_patch_fits(project):
    assert reconcile.pin_fits("3.12", ">=3.12.3")
    assert not reconcile.pin_fits("3.11", ">=3.12")
    assert reconcile.check(spec("3.12"), project) == []


def test_committed_python_version_that_disagrees_warns_with_both_values(project):
    (project / ".python-version").write_text("3.11\n")
    assert reconcile.check(spec("3.12.1"), project) == []  # untracked: not a committed claim
    git(project, "add", ".python-version")
    git(project, "commit", "-qm", "pin")
    (note,) = reconcile.check(spec("3.12.1"), project)
    assert note.severity == "warning" and "'3.11'" in note.message and "'3.12.1'" in note.message
    assert reconcile.check(spec("3.11"), project) == []


def test_minor_pin_on_canonical_or_sweep_gets_a_note(project):
    (note,) = reconcile.check(spec("3.12", name="canonical-x"), project)
    assert note.severity == "note" and "exact pin" in note.message
    assert reconcile.check(spec("3.12"), project, sweep=True)[0].severity == "note"
    assert reconcile.check(spec("3.12.1"), project, sweep=True) == []
