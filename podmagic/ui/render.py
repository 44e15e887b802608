"""Runs for people: the summary line, the folded manifest, logs, run lists and tables, as HTML or text.

Imports `podmagic.run` (manifest, events) and `podmagic.ui.ansi`/`logtail`;
no IPython, no widgets, so the server extension and the CLI use it too.

Every HTML piece is static and self-contained: inline styles whose colours are
JupyterLab theme variables with a fallback (light and dark themes read; a saved
notebook, nbconvert and GitHub need no stylesheet of ours), the `podmagic-*`
classes for the labextension's finer styling, text escaped, ANSI rendered.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from podmagic.run.events import read_events
from podmagic.run.manifest import DISPLAY_KEYS, lookup, rows
from podmagic.run.store import status_word
from podmagic.ui import ansi

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

RUN_COLUMNS = (("run_id", "run"), ("job_name", "job"), ("state", "status"), ("backend", "backend"),
               ("gpu_id", "GPU"), ("exit_code", "exit"), ("wall_time_sec", "wall s"),
               ("estimated_cost_usd", "cost $"), ("python_resolved", "python"), ("started_at_utc", "started"))
COLORS = {"succeeded": "var(--jp-success-color1,#1a7f37)", "failed": "var(--jp-error-color1,#cf222e)",
          "interrupted": "var(--jp-warn-color1,#b35900)", "running": "var(--jp-brand-color1,#0969da)",
          "starting": "var(--jp-brand-color1,#0969da)", "lost": "var(--jp-ui-font-color2,#6e7781)",
          "pending": "var(--jp-ui-font-color2,#6e7781)", "cancelled": "var(--jp-ui-font-color2,#6e7781)"}
LABELS = {key: label for key, label in DISPLAY_KEYS} | {
    "status": "status", "variables": "variables", "image": "image", "gpu_price_per_hour_usd": "$/hour",
    "deploy_metadata.local_git_dirty": "git dirty", "elapsed_sec": "elapsed (s)", "state": "status",
    "deploy_metadata.payload_lockfile_sha256": "lockfile sha256", "shard": "shard",
}
BORDER = "var(--jp-border-color2,#d0d7de)"
MUTED = "color:var(--jp-ui-font-color2,#6e7781)"
MONO = "font-family:var(--jp-code-font-family,monospace)"
CELL = f"text-align:left;vertical-align:top;padding:2px 10px 2px 0;border-bottom:1px solid {BORDER}"
# Differing rows: a translucent tint of the theme's warn colour, so the theme's own text colour stays readable.
DIFF_BG = "background-color:rgba(255,152,0,.16);background-color:color-mix(in srgb,var(--jp-warn-color1,#ff9800) 18%,transparent)"
STICKY = "position:sticky;left:0;z-index:1;background-color:var(--jp-layout-color0,#fff)"
_HASH = re.compile(r"^[0-9a-f]{32,128}$")
NOMATH = "tex2jax_ignore mathjax_ignore"
"""JupyterLab typesets `$...$` in HTML outputs as TeX; our dollars are money."""


# ----------------------------------------------------------------- values as text


def fmt(value: Any) -> str:
    """A value as a person reads it: no Python reprs."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value else "0"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={fmt(v)}" for k, v in value.items()) or "—"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value) or "—"
    return str(value)


def value_html(text: str) -> str:
    """Escaped text; a long hash shows its first 12 characters, the full value on hover and on copy;
    a multi-line value (an error with its traceback) its first line, the whole on hover."""
    if "\n" in text.strip():
        return f"<span title='{html.escape(text.strip(), quote=True)}'>{html.escape(text.strip().splitlines()[0])} …</span>"
    if _HASH.match(text):
        return (f"<code title='{text}' style='{MONO};display:inline-block;max-width:12ch;overflow:hidden;"
                f"text-overflow:ellipsis;white-space:nowrap;vertical-align:bottom'>{text}</code>")
    return html.escape(text)


def state_html(state: str | None) -> str:
    state = state or "?"
    color = COLORS.get(state, "inherit")
    return f"<span class='podmagic-state' data-state='{html.escape(state)}' style='color:{color};font-weight:bold'>" \
           f"{html.escape(state)}</span>"


def money(usd: Any, digits: int = 4) -> str:
    return f"${usd:.{digits}f}" if isinstance(usd, (int, float)) and not isinstance(usd, bool) else ""


def seconds(sec: Any) -> str:
    if not isinstance(sec, (int, float)) or isinstance(sec, bool):
        return ""
    s = int(sec)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{sec:.1f}s" if sec < 10 else f"{s}s"


# ----------------------------------------------------------------- one run


def _state(data: Mapping[str, Any]) -> str:
    return status_word(dict(data)) if "failed" in data and "schema_version" in data else str(data.get("state") or "?")


def summary_parts(data: Mapping[str, Any], *, elapsed: float | None = None, cost: float | None = None) -> list[str]:
    """The summary's pieces (HTML): state, GPU · datacenter, time, cost of the cap, python, git."""
    parts = [state_html(_state(data))]
    where = " · ".join(html.escape(str(v)) for v in dict.fromkeys((data.get("gpu_id"), data.get("datacenter_id"))) if v)
    parts.append(where or html.escape(str(data.get("backend") or "")))
    wall = data.get("wall_time_sec") if elapsed is None else elapsed
    if seconds(wall):
        parts.append(seconds(wall))
    cost = data.get("estimated_cost_usd") if cost is None else cost
    cap = data.get("cost_cap_usd")
    if money(cost) or money(cap):
        parts.append(f"{money(cost) or '$0'} of {money(cap, 2)}" if money(cap) else money(cost))
    want, got = data.get("python_version"), data.get("python_resolved")
    if want or got:
        parts.append("python " + html.escape(f"{want} → {got or '?'}" if want and want != got else str(got or want)))
    sha = lookup(dict(data), "deploy_metadata.local_git_sha")
    if sha:
        dirty = lookup(dict(data), "deploy_metadata.local_git_dirty")
        parts.append(f"git <code title='{html.escape(str(sha))}' style='{MONO}'>{html.escape(str(sha)[:8])}</code> "
                     + ("dirty" if dirty else "clean"))
    return [p for p in parts if p]


def links_html(run_dir: Path | None, base: Path | None = None) -> str:
    """Links that open the run's log and folder in JupyterLab (relative to the notebook's folder)."""
    if run_dir is None:
        return ""
    rel = os.path.relpath(run_dir, base or Path.cwd())
    href = quote(rel.replace(os.sep, "/"))
    return (f"<a class='podmagic-link' href='{href}/run.log' target='_blank' title='{html.escape(rel)}/run.log'>log</a>"
            f" · <a class='podmagic-link' href='{href}/' target='_blank' title='{html.escape(rel)}'>folder</a>")


def summary_html(data: Mapping[str, Any], *, run_dir: Path | None = None, base: Path | None = None,
                 elapsed: float | None = None, cost: float | None = None) -> str:
    """The one line on top: job and run id, then the summary parts and the links."""
    name = html.escape(str(data.get("job_name") or data.get("run_id") or "run"))
    rid = html.escape(str(data.get("run_id") or ""))
    parts = summary_parts(data, elapsed=elapsed, cost=cost)
    links = links_html(run_dir, base)
    return (f"<div class='podmagic-summary {NOMATH}' style='line-height:1.6'><b>{name}</b> "
            f"<code style='{MONO};{MUTED}'>{rid}</code> · " + " · ".join(parts + ([links] if links else [])) + "</div>")


def manifest_table_html(manifest: Mapping[str, Any]) -> str:
    body = "".join(f"<tr><th style='{CELL};font-weight:normal;{MUTED};white-space:nowrap'>{html.escape(k)}</th>"
                   f"<td style='{CELL};{MONO}' data-key='{html.escape(k)}'>{value_html(v)}</td></tr>"
                   for k, v in rows(dict(manifest)))
    variables = manifest.get("variables")
    if variables:
        body += (f"<tr><th style='{CELL};font-weight:normal;{MUTED}'>variables</th>"
                 f"<td style='{CELL};{MONO}' data-key='variables'>{html.escape(fmt(variables))}</td></tr>")
    return f"<table style='border-collapse:collapse;margin:2px 0'>{body}</table>"


def manifest_html(manifest: Mapping[str, Any], title: str | None = None, *, run_dir: Path | None = None,
                  open_: bool = False) -> str:
    """The summary line, then the manifest folded (open on request)."""
    fields = len(rows(dict(manifest)))
    return (f"<div class='podmagic-manifest {NOMATH}'>{summary_html(manifest, run_dir=run_dir)}"
            f"<details{' open' if open_ else ''}><summary style='cursor:pointer;{MUTED}'>manifest ({fields} fields)"
            f"</summary>{manifest_table_html(manifest)}</details></div>")


def attempts_html(attempts: Mapping[tuple[str, str], tuple[str, str]]) -> str:
    """The failover attempts: one row per GPU × datacenter."""
    if not attempts:
        return ""
    head = "".join(f"<th style='{CELL}'>{h}</th>" for h in ("GPU", "datacenter", "outcome", "reason"))
    body = "".join(f"<tr><td style='{CELL}'>{html.escape(g)}</td><td style='{CELL}'>{html.escape(d)}</td>"
                   f"<td style='{CELL}'>{html.escape(o.replace('_', ' '))}</td><td style='{CELL}'>{html.escape(r)}</td></tr>"
                   for (g, d), (o, r) in attempts.items())
    return (f"<div class='podmagic-attempts {NOMATH}'><div style='{MUTED}'>placement attempts</div>"
            f"<table style='border-collapse:collapse'><tr>{head}</tr>{body}</table></div>")


def notes_html(notes: Sequence[str], limit: int = 20) -> str:
    if not notes:
        return ""
    more = f"<div style='{MUTED}'>… {len(notes) - limit} earlier</div>" if len(notes) > limit else ""
    items = "".join(f"<div>{html.escape(n)}</div>" for n in notes[-limit:])
    return f"<div class='podmagic-notes {NOMATH}' style='color:var(--jp-warn-color0,#9a6700)'>{more}{items}</div>"


def without_error(notes: Sequence[str], manifest: Mapping[str, Any] | None) -> list[str]:
    """The notes less the run's own error, which the record shows once, in red."""
    error = f"error: {manifest.get('error')}" if manifest and manifest.get("error") else None
    return [n for n in notes if n != error]


def journal_extras(run_dir: Path | None) -> tuple[dict[tuple[str, str], tuple[str, str]], list[str]]:
    """Failover attempts and notes recorded in a run's events.jsonl (for views rebuilt from disk)."""
    attempts: dict[tuple[str, str], tuple[str, str]] = {}
    notes: list[str] = []
    if run_dir is None:
        return attempts, notes
    for record in read_events(run_dir / "events.jsonl"):
        kind = record.get("event")
        if kind == "placement_attempt":
            attempts[(str(record.get("gpu_id", "")), str(record.get("datacenter_id", "")))] = (
                str(record.get("outcome", "")), str(record.get("reason", "")))
        elif kind in ("warning", "error", "reconcile_warning", "reconcile_note") and record.get("message"):
            notes.append(f"{kind.replace('reconcile_', '')}: {record['message']}")
    return attempts, notes


def log_pre(text: str, max_height: str = "20em") -> str:
    return (f"<pre class='podmagic-log-text' style='margin:0;max-height:{max_height};overflow:auto;white-space:pre-wrap;"
            f"overflow-wrap:anywhere;{MONO};font-size:var(--jp-code-font-size,12px)'>{ansi.to_html(text)}</pre>")


def log_html(text: str, title: str = "log (tail)", open_: bool = False) -> str:
    return (f"<details class='podmagic-logbox {NOMATH}'{' open' if open_ else ''}><summary style='cursor:pointer;{MUTED}'>"
            f"{html.escape(title)}</summary>{log_pre(text)}</details>")


def run_html(manifest: Mapping[str, Any] | None, *, log_text: str = "", total_lines: int = 0,
             run_dir: Path | None = None, attempts=None, notes: Sequence[str] = (), charts: str = "",
             fallback: Mapping[str, Any] | None = None) -> str:
    """The record a run leaves in the notebook: summary, charts, attempts, notes, folded manifest, log tail."""
    if not attempts and not notes:  # a view fed from the run directory (detach, attach) saw no such events
        attempts, notes = journal_extras(run_dir)
    data = manifest or fallback or {}
    notes = without_error(notes, manifest)
    failed = bool(manifest and manifest.get("failed"))
    title = f"log tail ({total_lines} lines)" if total_lines else "log"
    error = (f"<div style='color:var(--jp-error-color1,#cf222e)'>{html.escape(str(manifest.get('error')))}</div>"
             if manifest and manifest.get("error") else "")
    parts = [summary_html(data, run_dir=run_dir), error,
             f"<div class='podmagic-charts'>{charts}</div>" if charts else "",  # telemetry's charts block
             attempts_html(attempts or {}), notes_html(list(notes))]
    if manifest:
        parts.append(f"<details><summary style='cursor:pointer;{MUTED}'>manifest ({len(rows(dict(manifest)))} fields)"
                     f"</summary>{manifest_table_html(manifest)}</details>")
    if log_text:
        parts.append(log_html(log_text, title, open_=failed))
    return (f"<div class='podmagic-run podmagic-manifest {NOMATH}' style='margin:2px 0'>" + "".join(p for p in parts if p)
            + "</div>")


def manifest_text(manifest: dict[str, Any]) -> str:
    pairs = rows(manifest)
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in pairs)


# ----------------------------------------------------------------- tables


LINK_COLUMNS = (("reproduces", "reproduces"), ("reproduction_verdict", "verdict"), ("reproduced_by", "reproduced by"))
"""`podmagic reproduce`'s link both ways; shown only when a listed run has one."""


def run_columns(rows_: Sequence[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    linked = any(r.get("reproduces") or r.get("reproduced_by") for r in rows_)
    return RUN_COLUMNS + LINK_COLUMNS if linked else RUN_COLUMNS


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, float):
        return f"{value:.4g}"
    return fmt(value)


def table_text(rows_: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]] | None = None) -> str:
    rows_ = list(rows_)
    columns = columns or run_columns(rows_)
    data = [[_cell(r, k) for k, _ in columns] for r in rows_]
    heads = [label for _, label in columns]
    widths = [max([len(h)] + [len(row[i]) for row in data]) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in data]
    return "\n".join(lines)


def _scroller(table: str, cls: str, title: str = "") -> str:
    head = f"<div style='margin-bottom:2px'>{title}</div>" if title else ""
    return (f"<div class='{cls} {NOMATH}'>{head}<div style='overflow-x:auto;max-width:100%'>"
            f"<table style='border-collapse:collapse'>{table}</table></div></div>")


def table_html(rows_: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]] | None = None,
               cls: str = "podmagic-runs", title: str = "") -> str:
    """Rows as a left-aligned table, the first column kept visible while scrolling sideways."""
    rows_ = list(rows_)
    columns = columns or run_columns(rows_)
    head = "".join(f"<th style='{CELL};white-space:nowrap{';' + STICKY if i == 0 else ''}'>{html.escape(label)}</th>"
                   for i, (_, label) in enumerate(columns))
    body = []
    for r in rows_:
        cells = []
        for i, (key, _) in enumerate(columns):
            text = state_html(r.get(key)) if key == "state" else value_html(_cell(r, key))
            cells.append(f"<td style='{CELL};{MONO}{';' + STICKY if i == 0 else ''}'>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return _scroller(f"<tr>{head}</tr>{''.join(body)}", cls, title)


def compare_html(manifests: Sequence[dict[str, Any]], title: str = "compare", show_all: bool = False) -> str:
    """Runs side by side: the fields that differ, and the ones they share folded (or all, on request)."""
    from podmagic.run import compare

    rows_ = compare.side_by_side(manifests)
    head = (f"<tr><th style='{CELL};{STICKY}'>field</th>"
            + "".join(f"<th style='{CELL};{MONO};white-space:nowrap'>{html.escape(str(m.get('job_name') or ''))}<br>"
                      f"<span style='font-weight:normal;{MUTED}'>{html.escape(str(m.get('run_id')))}</span></th>"
                      for m in manifests) + "</tr>")

    def line(row: dict[str, Any], highlight: bool) -> str:
        bg = ";" + DIFF_BG if highlight else ""
        cells = "".join(f"<td style='{CELL};{MONO}{bg}'>"
                        f"{state_html(v) if row['field'] == 'status' else value_html(fmt(v))}</td>"
                        for v in row["values"])
        label = html.escape(LABELS.get(row["field"], row["field"]))
        return f"<tr data-field='{html.escape(row['field'])}'><th style='{CELL};{STICKY}'>{label}</th>{cells}</tr>"

    differing = [r for r in rows_ if r["differs"] or len({repr(v) for v in r["values"]}) > 1]
    same = [r for r in rows_ if r not in differing]
    main = [line(r, r["differs"]) for r in (rows_ if show_all else differing)]
    if not main:
        main = [f"<tr><td style='{CELL};{MUTED}' colspan='{len(manifests) + 1}'>no differences</td></tr>"]
    out = _scroller(head + "".join(main), "podmagic-compare",
                    f"<b>{html.escape(title)}</b> <span style='{MUTED}'>· {len(differing)} of {len(rows_)} fields differ"
                    "</span>")
    if same and not show_all:
        out += (f"<details class='podmagic-compare-same {NOMATH}'><summary style='cursor:pointer;{MUTED}'>{len(same)} fields the "
                f"same in every run</summary>" + _scroller(head + "".join(line(r, False) for r in same), "") + "</details>")
    return out


def diff_html(changes: Sequence[tuple[str, Any, Any]], title: str) -> str:
    """Before → after, one row per field that changed."""
    if not changes:
        return f"<div class='podmagic-diff {NOMATH}'><b>{html.escape(title)}</b>: no differences</div>"
    head = "".join(f"<th style='{CELL}'>{h}</th>" for h in ("field", "before", "after"))
    body = "".join(f"<tr data-field='{html.escape(str(k))}'><th style='{CELL};{STICKY};font-weight:normal'>"
                   f"{html.escape(LABELS.get(str(k), str(k)))}</th>"
                   f"<td style='{CELL};{MONO}'>{value_html(fmt(a))}</td><td style='{CELL};{MONO};{DIFF_BG}'>"
                   f"{value_html(fmt(b))}</td></tr>" for k, a, b in changes)
    return _scroller(f"<tr>{head}</tr>{body}", "podmagic-diff", f"<b>{html.escape(title)}</b>")
