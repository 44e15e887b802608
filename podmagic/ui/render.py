"""Tables for people: a manifest or a run list as HTML (notebook) or text (CLI)."""

from __future__ import annotations

import html
from typing import Any, Iterable, Sequence

from podmagic.run.manifest import rows
from podmagic.run.store import status_word

RUN_COLUMNS = (("run_id", "run"), ("job_name", "job"), ("state", "status"), ("backend", "backend"),
               ("gpu_id", "GPU"), ("exit_code", "exit"), ("wall_time_sec", "wall s"),
               ("estimated_cost_usd", "cost $"), ("python_resolved", "python"), ("started_at_utc", "started"))
COLORS = {"succeeded": "#1a7f37", "failed": "#cf222e", "interrupted": "#9a6700", "running": "#0969da",
          "starting": "#0969da", "lost": "#6e7781"}


def manifest_html(manifest: dict[str, Any], title: str | None = None) -> str:
    status = status_word(manifest)
    head = title or f"run {manifest.get('run_id')}"
    body = "".join(
        f"<tr><th style='text-align:left;padding:2px 12px 2px 0'>{html.escape(k)}</th>"
        f"<td style='text-align:left;font-family:monospace'>{html.escape(v)}</td></tr>"
        for k, v in rows(manifest)
    )
    return (f"<div class='podmagic-manifest'><b>{html.escape(head)}</b> — "
            f"<span style='color:{COLORS.get(status, '#000')}'>{status}</span>"
            f"<table>{body}</table></div>")


def manifest_text(manifest: dict[str, Any]) -> str:
    pairs = rows(manifest)
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in pairs)


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table_text(rows_: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]] = RUN_COLUMNS) -> str:
    data = [[_cell(r, k) for k, _ in columns] for r in rows_]
    heads = [label for _, label in columns]
    widths = [max([len(h)] + [len(row[i]) for row in data]) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in data]
    return "\n".join(lines)


def table_html(rows_: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]] = RUN_COLUMNS) -> str:
    head = "".join(f"<th style='text-align:left'>{html.escape(label)}</th>" for _, label in columns)
    body = []
    for r in rows_:
        cells = []
        for key, _ in columns:
            text = html.escape(_cell(r, key))
            if key == "state":
                text = f"<span style='color:{COLORS.get(r.get(key), '#000')}'>{text}</span>"
            cells.append(f"<td style='text-align:left;font-family:monospace'>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='podmagic-runs'><tr>{head}</tr>{''.join(body)}</table>"


def log_html(text: str, title: str = "log (tail)") -> str:
    return (f"<details><summary>{html.escape(title)}</summary><pre style='max-height:20em;overflow:auto'>"
            f"{html.escape(text)}</pre></details>")
