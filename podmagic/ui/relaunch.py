"""Relaunch from a finished run: same spec, or edited (GPU order, datacenters, interpreter, variables, cost cap).

Imports ipywidgets, yaml, `podmagic.run` (api, compare, store) and `podmagic.ui`.

The form (made when it is first opened) starts with the run's current values. A relaunch runs in a
kernel thread (the buttons work while no cell is executing); its live view appears as a block of its
own under the controls (in the cell that ran, or in the cell that called `relaunch()`), and ends as
static HTML: the new run's record and what differs from the previous run (spec fields changed,
manifest fields that moved: git SHA, dirty flag, lockfile hash, interpreter, GPU, cost ...). The
buttons say what can be done now: disabled with "Relaunching…" while one runs.
"""

from __future__ import annotations

import html
import threading
from typing import Any, Mapping

import ipywidgets as w
import yaml

from podmagic.run import api, compare, store
from podmagic.ui import render
from podmagic.ui.widgets import Block, RunView, current_parent, parent_kind

FIELDS = (("gpu_order", "GPU order", "comma-separated"), ("datacenters", "datacenters", "comma-separated"),
          ("python_version", "python", "e.g. 3.13.5"), ("variables", "variables", "k=v, k2=v2"),
          ("cost_cap", "cost cap $", "e.g. 2.00"))


def current_values(text: str, variables: list[tuple[str, str]] | None = None) -> dict[str, str]:
    """The form's fields as the cell has them now."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        data = {}
    data = data if isinstance(data, dict) else {}
    pod = data.get("pod") if isinstance(data.get("pod"), dict) else {}
    budget = data.get("budget") if isinstance(data.get("budget"), dict) else {}
    listed = lambda v: ", ".join(str(x) for x in v) if isinstance(v, list) else ("" if v is None else str(v))  # noqa: E731
    return {
        "gpu_order": listed(pod.get("gpu_order")),
        "datacenters": listed(pod.get("datacenters")),
        "python_version": "" if pod.get("python_version") is None else str(pod.get("python_version")),
        "variables": ", ".join(f"{k}={v}" for k, v in {**(data.get("variables") if isinstance(data.get("variables"), dict)
                                                          else {}), **dict(variables or [])}.items()),
        "cost_cap": "" if budget.get("cost_cap_usd") is None else str(budget.get("cost_cap_usd")),
    }


def edited_text(text: str, *, gpu_order=None, datacenters=None, python_version=None, cost_cap=None) -> str:
    """The cell text with the form's fields applied (unchanged when nothing is edited)."""
    if not any(v not in (None, "") for v in (gpu_order, datacenters, python_version, cost_cap)):
        return text
    data = yaml.safe_load(text) or {}
    pod = data.setdefault("pod", {}) or {}
    data["pod"] = pod
    if gpu_order:
        pod["gpu_order"] = [g.strip() for g in gpu_order.split(",") if g.strip()]
    if datacenters:
        pod["datacenters"] = [d.strip() for d in datacenters.split(",") if d.strip()]
    if python_version:
        pod["python_version"] = python_version.strip()
    if cost_cap not in (None, ""):
        data.setdefault("budget", {})["cost_cap_usd"] = float(cost_cap)
    return yaml.safe_dump(data, sort_keys=False)


def flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flat(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def spec_changes(before: str, after: str) -> list[tuple[str, Any, Any]]:
    a, b = flat(yaml.safe_load(before) or {}), flat(yaml.safe_load(after) or {})
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


diff_html = render.diff_html


class _Controls(w.VBox):
    """The controls' box; what a saved notebook without the kernel (nbconvert, GitHub) shows in its place."""

    def __repr__(self) -> str:
        return "podmagic relaunch controls (live while the notebook's kernel runs)"


class RelaunchControls:
    """Buttons under a finished run; each relaunch chains onto the last one."""

    def __init__(self, prepared: api.Prepared, manifest: dict, secret_values: Mapping[str, str]):
        self.inputs = dict(prepared.inputs)
        self.manifest = manifest
        self.secret_values = dict(secret_values)
        self.thread: threading.Thread | None = None
        self.runs: list[str] = []
        self.results: list[str] = []
        """The static HTML each relaunch ended with (newest last)."""
        self.cell_parent = current_parent()
        self.relaunch_button = w.Button(description="Relaunch", icon="redo", tooltip="run the same cell again")
        self.edit_button = w.Button(description="Edit & relaunch", icon="edit")
        # the form is made when first opened or asked for (`fields`, `run_edited_button`): most runs are
        # never edited, and each field is three widgets the front end opens before the cell can end
        self._fields: dict[str, w.Text] = {}
        self._run_edited: w.Button | None = None
        self.form = w.VBox([], layout=w.Layout(display="none"))
        self.status = w.HTML()
        self.relaunch_button.on_click(lambda _b: self.relaunch())
        self.edit_button.on_click(lambda _b: self._toggle_form())
        self.widget = _Controls([w.HBox([self.relaunch_button, self.edit_button, self.status]), self.form])
        self.widget.add_class("podmagic-relaunch")
        self.prefilled: dict[str, str] = {}  # the fields' first values: read from the cell when the form is made

    @property
    def fields(self) -> dict[str, w.Text]:
        """The form's fields by key (`FIELDS`), holding the run's current values."""
        self._make_form()
        return self._fields

    @property
    def run_edited_button(self) -> w.Button:
        self._make_form()
        return self._run_edited

    def _prefill(self) -> None:
        if self._run_edited is None:
            return  # no form yet: `_make_form` fills it from the inputs of that time
        self.prefilled = current_values(self.inputs["text"], [tuple(v) for v in self.inputs["variables"]])
        for key, field in self._fields.items():
            field.value = self.prefilled.get(key, "")

    def _make_form(self) -> None:
        if self._run_edited is not None:
            return
        self._fields = {key: w.Text(description=label, placeholder=hint, style={"description_width": "7em"},
                                    layout=w.Layout(width="32em")) for key, label, hint in FIELDS}
        self._run_edited = w.Button(description="Run edited", button_style="primary", icon="play",
                                    disabled=self.busy())
        self._run_edited.on_click(lambda _b: self.relaunch(edited=True))
        self._prefill()
        self.form.children = [*self._fields.values(), self._run_edited]

    def _toggle_form(self) -> None:
        self._make_form()
        self.form.layout.display = None if self.form.layout.display == "none" else "none"

    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def _buttons(self, busy: bool, note: str = "") -> None:
        for button in (self.relaunch_button, self.edit_button, self._run_edited):
            if button is not None:
                button.disabled = busy
        self.relaunch_button.description = "Relaunching…" if busy else "Relaunch"
        self.status.value = note

    def edited(self) -> tuple[str, list[tuple[str, str]]]:
        """The text and variables with the fields the user changed (untouched fields change nothing)."""
        text, variables = self.inputs["text"], [tuple(v) for v in self.inputs["variables"]]
        f = {k: v.value.strip() for k, v in self.fields.items()}
        changed = {k: v for k, v in f.items() if v != self.prefilled.get(k, "")}
        text = edited_text(text, gpu_order=changed.get("gpu_order"), datacenters=changed.get("datacenters"),
                           python_version=changed.get("python_version"), cost_cap=changed.get("cost_cap"))
        if "variables" in changed:
            merged = dict(variables)
            merged.update(api.parse_assignments([p.strip() for p in f["variables"].split(",") if p.strip()]))
            variables = list(merged.items())
        return text, variables

    def relaunch(self, edited: bool = False) -> None:
        if self.busy():
            return
        here = current_parent()
        parent = here if parent_kind(here) == "execute_request" else self.cell_parent  # a click: the run's cell
        text, variables = self.edited() if edited else (self.inputs["text"], [tuple(v) for v in self.inputs["variables"]])
        self._buttons(True, "<span style='color:var(--jp-ui-font-color2,#6e7781)'>preparing…</span>")
        try:
            prepared = api.start(api.prepare_from(self.inputs, self.secret_values, text=text, variables=variables))
        except Exception as exc:  # noqa: BLE001 - a bad edit is shown next to the buttons, not raised into a comm
            self._buttons(False, f"<span style='color:var(--jp-error-color1,#cf222e)'>{html.escape(str(exc))}</span>")
            return
        self.thread = threading.Thread(target=self._run, args=(prepared, parent), daemon=True, name="podmagic-relaunch")
        self.thread.start()

    def _run(self, prepared: api.Prepared, parent: dict | None) -> None:
        plan = prepared.plan
        cancel = threading.Event()
        view = RunView(plan.run_id, plan.job_name, plan.backend, on_stop=cancel.set, run_dir=plan.run_dir,
                       cost_cap=plan.cost_cap_usd)
        block = Block(view.widget, plan.run_id, parent)
        self.runs.append(plan.run_id)
        self._buttons(True, f"<span style='color:var(--jp-ui-font-color2,#6e7781)'>relaunching as "
                            f"<code>{html.escape(plan.run_id)}</code> (below)</span>")
        manifest = None
        try:
            manifest = api.execute(prepared, listeners=[view.on_event], cancel=cancel)
        except Exception as exc:  # noqa: BLE001 - shown in the record; the manifest is on disk anyway
            manifest = store.read_json(plan.run_dir / store.MANIFEST) or {"error": str(exc)}
        finally:
            view.finish(manifest)
            changes = spec_changes(self.inputs["text"], prepared.inputs["text"])
            moved = compare.differences(self.manifest, manifest or {})
            result = ("<div class='podmagic-relaunch-result'>" + view.final_html(manifest)
                      + render.diff_html(changes, "spec changes")
                      + render.diff_html(moved, f"{plan.run_id} vs {self.manifest.get('run_id')}") + "</div>")
            self.results.append(result)
            block.end(result)
            if manifest and "schema_version" in manifest:
                self.inputs, self.manifest = dict(prepared.inputs), manifest
                self._prefill()
            state = render.status_word(manifest) if manifest and "schema_version" in manifest else "failed"
            self._buttons(False, f"<span style='color:var(--jp-ui-font-color2,#6e7781)'>last relaunch: "
                                 f"{render.state_html(state)} "
                                 f"<code>{html.escape(plan.run_id)}</code></span>")

    def wait(self, timeout: float | None = 300) -> None:
        if self.thread:
            self.thread.join(timeout)
