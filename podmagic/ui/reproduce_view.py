"""The reproduction report for people: static HTML (notebook) and text (shell).

Takes the report dict of `run.reproduce.compare` (what `--json` prints) and renders it: the
verdict, every environment fact side by side with differences marked, the metrics (last values,
curve status) and the reasons. Pure; no widgets.
"""

from __future__ import annotations

import html
from typing import Any

GOOD, BAD, INFO = "#1a7f37", "#cf222e", "#6e7781"
MARKS = {True: "=", False: "≠", None: " "}
STATUS_WORDS = {"exact": "exact match", "within": "within tolerance", "differs": "DIFFERS", "missing": "MISSING"}


def _v(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def headline(report: dict[str, Any]) -> str:
    if report.get("verdict") == "running":
        return f"reproducing {report.get('reproduces')} …"
    if report.get("verdict") == "reproduced":
        how = "exactly" if report.get("exact") else f"within rtol={report.get('rtol'):g} atol={report.get('atol'):g}"
        return f"{report.get('reproduction')} reproduces {report.get('reproduces')} {how}"
    return f"{report.get('reproduction')} does NOT reproduce {report.get('reproduces')}"


def text(report: dict[str, Any]) -> str:
    lines = [headline(report), ""]
    env = report.get("environment") or []
    width = max((len(r["label"]) for r in env), default=0)
    left = max((len(_v(r["original"])) for r in env), default=0)
    lines.append(f"{'':{width}}    {'original':{left}}    reproduction")
    for r in env:
        lines.append(f"{r['label']:{width}}  {MARKS[r['match']]} {_v(r['original']):{left}}    {_v(r['reproduction'])}")
    metrics = report.get("metrics") or []
    if metrics:
        lines += ["", f"metrics ({report.get('metrics_source')}; rtol={report.get('rtol'):g} atol={report.get('atol'):g}):"]
        name_w = max(len(m["name"]) for m in metrics)
        for m in metrics:
            lines.append(f"  {m['name']:{name_w}}  {_v(m['original_last'])} → {_v(m['reproduction_last'])}  "
                         f"[{STATUS_WORDS[m['status']]}; {m['points'][0]}/{m['points'][1]} points]")
    if report.get("note"):
        lines += ["", report["note"]]
    if report.get("reasons"):
        lines += ["", "differences:"] + [f"  - {r}" for r in report["reasons"]]
    return "\n".join(lines)


def html_report(report: dict[str, Any]) -> str:
    ok = report.get("verdict") == "reproduced"
    e = html.escape
    rows = []
    for r in report.get("environment") or []:
        color = INFO if r["match"] is None else GOOD if r["match"] else BAD
        rows.append(f"<tr><th style='text-align:left;padding:2px 12px 2px 0'>{e(r['label'])}</th>"
                    f"<td style='font-family:monospace'>{e(_v(r['original']))}</td>"
                    f"<td style='color:{color};text-align:center'>{e(MARKS[r['match']])}</td>"
                    f"<td style='font-family:monospace'>{e(_v(r['reproduction']))}</td></tr>")
    metric_rows = []
    for m in report.get("metrics") or []:
        color = GOOD if m["status"] in ("exact", "within") else BAD
        metric_rows.append(f"<tr><th style='text-align:left;padding:2px 12px 2px 0'>{e(m['name'])}</th>"
                           f"<td style='font-family:monospace'>{e(_v(m['original_last']))}</td>"
                           f"<td style='font-family:monospace'>{e(_v(m['reproduction_last']))}</td>"
                           f"<td style='color:{color}'>{e(STATUS_WORDS[m['status']])}</td>"
                           f"<td>{m['points'][0]}/{m['points'][1]}</td></tr>")
    parts = [f"<div class='podmagic-reproduce'><b style='color:{GOOD if ok else BAD}'>{e(headline(report))}</b>",
             "<table><tr><th></th><th style='text-align:left'>original</th><th></th>"
             "<th style='text-align:left'>reproduction</th></tr>" + "".join(rows) + "</table>"]
    if metric_rows:
        parts.append(f"<div>metrics ({e(str(report.get('metrics_source')))}; rtol={report.get('rtol'):g} "
                     f"atol={report.get('atol'):g})</div><table><tr><th></th><th style='text-align:left'>original "
                     "last</th><th style='text-align:left'>reproduction last</th><th></th><th>points</th></tr>"
                     + "".join(metric_rows) + "</table>")
    if report.get("note"):
        parts.append(f"<div>{e(report['note'])}</div>")
    if report.get("reasons"):
        parts.append("<ul>" + "".join(f"<li>{e(r)}</li>" for r in report["reasons"]) + "</ul>")
    return "".join(parts) + "</div>"
