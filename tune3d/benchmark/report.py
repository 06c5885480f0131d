"""Suite reports: ``results.csv`` (contract columns), ``results_full.csv``, ``results.md``, ``results.html``.

Values are in the paper's units: segmentation metrics in %, depth RMSE in metres, abs_rel and delta1
unitless. ``paper`` is empty where the paper reports no number.
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass
from pathlib import Path

from tune3d.io import write_text_atomic

CSV_COLUMNS = ("suite", "dataset", "task", "mode", "metric", "value", "paper")


@dataclass
class ResultRow:
    suite: str
    dataset: str
    task: str
    mode: str
    backbone: str
    metric: str
    value: float | None
    paper: float | None
    status: str  # done | failed | pending
    error: str = ""


def _fmt(x: float | None, digits: int = 4) -> str:
    return "" if x is None else f"{x:.{digits}f}".rstrip("0").rstrip(".") if abs(x) < 1e6 else f"{x:g}"


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.6g}"


def _suite_label(row: ResultRow, multi_backbone: bool) -> str:
    # results.csv has no backbone column: a suite mixing backbones names it next to the suite
    return f"{row.suite}:{row.backbone}" if multi_backbone else row.suite


def write_reports(rows: list[ResultRow], out: Path, title: str) -> None:
    """Write the four report files atomically (each file is whole or absent)."""
    multi = len({r.backbone for r in rows}) > 1
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow(
            [_suite_label(r, multi), r.dataset, r.task, r.mode, r.metric, _fmt(r.value), _fmt(r.paper)]
        )
    write_text_atomic(out / "results.csv", buf.getvalue())

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow((*CSV_COLUMNS, "backbone", "status", "error"))
    for r in rows:
        w.writerow(
            [
                r.suite,
                r.dataset,
                r.task,
                r.mode,
                r.metric,
                _fmt(r.value),
                _fmt(r.paper),
                r.backbone,
                r.status,
                r.error,
            ]
        )
    write_text_atomic(out / "results_full.csv", buf.getvalue())

    header = ("dataset", "task", "backbone", "mode", "metric", "value", "paper", "diff", "status")
    table = []
    for r in rows:
        diff = None if r.value is None or r.paper is None else r.value - r.paper
        table.append(
            (
                r.dataset,
                r.task,
                r.backbone,
                r.mode,
                r.metric,
                _fmt(r.value),
                _fmt(r.paper),
                _fmt(diff),
                r.status,
            )
        )
    failed = sorted({(r.dataset, r.task, r.backbone, r.mode, r.error) for r in rows if r.status == "failed"})
    md = [f"# {title}", "", "Segmentation in %, depth RMSE in metres; `paper` = FiT3D's reported value.", ""]
    md.append("| " + " | ".join(header) + " |")
    md.append("|" + "---|" * len(header))
    md += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in table]
    if failed:
        md += ["", "## Failed cells", ""]
        md += [f"- {d} / {t} / {b} / {m}: {e}" for d, t, b, m, e in failed]
    write_text_atomic(out / "results.md", "\n".join(md) + "\n")

    esc = html.escape
    rows_html = "\n".join(
        f"<tr class='{esc(row[-1])}'>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table
    )
    fail_html = "".join(f"<li>{esc(' / '.join(f[:4]))}: {esc(f[4])}</li>" for f in failed)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;
padding:2px 8px;text-align:right}} tr.failed{{background:#fdd}} tr.pending{{color:#888}}</style></head>
<body><h1>{esc(title)}</h1>
<p>Segmentation in %, depth RMSE in metres; <i>paper</i> = FiT3D's reported value.</p>
<table><tr>{"".join(f"<th>{esc(h)}</th>" for h in header)}</tr>
{rows_html}
</table>{"<h2>Failed cells</h2><ul>" + fail_html + "</ul>" if failed else ""}</body></html>
"""
    write_text_atomic(out / "results.html", page)
