"""Relaunch from the run view: same spec, or edited (GPU order, datacenters, interpreter, variables, cost cap).

The relaunch runs in the background in the same view (a kernel thread; the
buttons work while no cell is executing) and, when it ends, shows what differs
from the previous run: the spec fields changed, and the manifest fields that
moved (git SHA, dirty flag, lockfile hash, interpreter, GPU, cost ...).
"""

from __future__ import annotations

import html
import threading
from typing import Any, Mapping

import ipywidgets as w
import yaml

from podmagic.run import api, compare, store
from podmagic.ui.widgets import RunView


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


def diff_html(changes: list[tuple[str, Any, Any]], title: str) -> str:
    if not changes:
        return f"<div><b>{html.escape(title)}</b>: no differences</div>"
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td><code>{html.escape(str(a))}</code></td>"
                   f"<td><code>{html.escape(str(b))}</code></td></tr>" for k, a, b in changes)
    return (f"<div class='podmagic-diff'><b>{html.escape(title)}</b><table><tr><th>field</th><th>before</th>"
            f"<th>after</th></tr>{rows}</table></div>")


class RelaunchControls:
    """Buttons under a finished run; each relaunch chains onto the last one."""

    def __init__(self, prepared: api.Prepared, manifest: dict, secret_values: Mapping[str, str]):
        self.inputs = dict(prepared.inputs)
        self.manifest = manifest
        self.secret_values = dict(secret_values)
        self.thread: threading.Thread | None = None
        self.runs: list[str] = []
        self.relaunch_button = w.Button(description="Relaunch", icon="redo")
        self.edit_button = w.Button(description="Edit & relaunch", icon="edit")
        self.fields = {
            "gpu_order": w.Text(description="GPU order", placeholder="comma-separated"),
            "datacenters": w.Text(description="datacenters", placeholder="comma-separated"),
            "python_version": w.Text(description="python", placeholder="e.g. 3.13.5"),
            "variables": w.Text(description="variables", placeholder="k=v, k2=v2"),
            "cost_cap": w.Text(description="cost cap $"),
        }
        self.run_edited_button = w.Button(description="Run edited", button_style="primary")
        self.form = w.VBox([*self.fields.values(), self.run_edited_button], layout=w.Layout(display="none"))
        self.area = w.VBox()
        self.diff = w.HTML()
        self.relaunch_button.on_click(lambda _b: self.relaunch())
        self.edit_button.on_click(lambda _b: self._toggle_form())
        self.run_edited_button.on_click(lambda _b: self.relaunch(edited=True))
        self.widget = w.VBox([w.HBox([self.relaunch_button, self.edit_button]), self.form, self.area, self.diff])

    def _toggle_form(self) -> None:
        self.form.layout.display = None if self.form.layout.display == "none" else "none"

    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def relaunch(self, edited: bool = False) -> None:
        if self.busy():
            return
        text, variables = self.inputs["text"], [tuple(v) for v in self.inputs["variables"]]
        if edited:
            f = {k: v.value for k, v in self.fields.items()}
            text = edited_text(text, gpu_order=f["gpu_order"], datacenters=f["datacenters"],
                               python_version=f["python_version"], cost_cap=f["cost_cap"])
            variables = dict(variables)
            variables.update(api.parse_assignments([p.strip() for p in f["variables"].split(",") if p.strip()]))
            variables = list(variables.items())
        prepared = api.start(api.prepare_from(self.inputs, self.secret_values, text=text, variables=variables))
        self.thread = threading.Thread(target=self._run, args=(prepared,), daemon=True, name="podmagic-relaunch")
        self.thread.start()

    def _run(self, prepared: api.Prepared) -> None:
        plan = prepared.plan
        cancel = threading.Event()
        view = RunView(plan.run_id, plan.job_name, plan.backend, on_stop=cancel.set)
        self.area.children = (view.widget,)
        self.diff.value = ""
        self.runs.append(plan.run_id)
        try:
            manifest = api.execute(prepared, listeners=[view.on_event], cancel=cancel)
        except Exception as exc:  # noqa: BLE001 - shown in the view; the manifest is on disk anyway
            manifest = store.read_json(plan.run_dir / store.MANIFEST) or {"error": str(exc)}
        view.finish(manifest)
        changes = spec_changes(self.inputs["text"], prepared.inputs["text"])
        moved = compare.differences(self.manifest, manifest)
        self.diff.value = diff_html(changes, "spec changes") + diff_html(moved, f"{plan.run_id} vs previous run")
        self.inputs, self.manifest = dict(prepared.inputs), manifest

    def wait(self, timeout: float | None = 300) -> None:
        if self.thread:
            self.thread.join(timeout)
