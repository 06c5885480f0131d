"""Self-contained HTML reports: result tables with the best value per column marked, inline PNG figures.

Everything is inlined (CSS in a ``<style>`` element, images as base64 ``data:`` URIs), so the file can be
mailed or attached to an issue and opens offline. No JavaScript, no external assets.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tune3d.io import write_text_atomic
from tune3d.viz.images import to_uint8

# Direction of each metric: True = higher is better. Unknown metrics are shown without highlighting.
HIGHER_IS_BETTER: dict[str, bool] = {
    "mIoU": True,
    "mAcc": True,
    "aAcc": True,
    "delta1": True,
    "delta2": True,
    "delta3": True,
    "delta1_point": True,
    "nc": True,
    "abs_rel": False,
    "sq_rel": False,
    "rmse": False,
    "rmse_log": False,
    "log10": False,
    "silog": False,
    "accuracy": False,
    "accuracy_med": False,
    "completeness": False,
    "completeness_med": False,
    "chamfer": False,
    "rel_point": False,
    "norm_gap": False,
    "pre-norm gap": False,
}

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#1d1d1f;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.3em;margin-top:1.8em;border-bottom:1px solid #ddd}
h3{font-size:1.05em;margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.92em}
th,td{border:1px solid #d0d0d0;padding:.3em .65em;text-align:right}
th{background:#f3f3f3}td.name,th.name{text-align:left}
td.best{font-weight:700;background:#e3f4e1}
.note{background:#fff6e0;border-left:4px solid #f0b429;padding:.5em .9em;margin:.8em 0}
.muted{color:#666;font-size:.88em}
figure{margin:.6em 0 1.2em}figure img{max-width:100%;image-rendering:pixelated;border:1px solid #ccc}
figcaption{font-size:.88em;color:#444}
code{background:#f3f3f3;padding:0 .25em}
"""


def png_data_uri(image: np.ndarray | str | os.PathLike) -> str:
    """``data:image/png;base64,...`` of an ``H,W,3`` uint8 array or of a PNG file."""
    if isinstance(image, (str, os.PathLike)):
        data = Path(image).read_bytes()
    else:
        buf = io.BytesIO()
        Image.fromarray(to_uint8(image)).save(buf, format="PNG", optimize=True)
        data = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"
    return html.escape(str(v))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def best_rows(rows: Mapping[str, Mapping[str, Any]], column: str) -> set[str]:
    """Names of the rows holding the best value of ``column`` (ties included; empty for unknown metrics)."""
    if column not in HIGHER_IS_BETTER:
        return set()
    vals = {r: float(m[column]) for r, m in rows.items() if _is_number(m.get(column))}
    if len(vals) < 2:
        return set()
    best = max(vals.values()) if HIGHER_IS_BETTER[column] else min(vals.values())
    return {r for r, v in vals.items() if math.isclose(v, best, rel_tol=1e-9, abs_tol=1e-12)}


def metrics_table(
    rows: Mapping[str, Mapping[str, Any]], columns: Sequence[str], row_header: str = "", caption: str = ""
) -> str:
    """An HTML table, one row per entry of ``rows`` (name -> metrics), best value per column in bold.

    Column headers carry an arrow giving the metric's direction when it is known.
    """
    head = [f'<th class="name">{html.escape(row_header)}</th>']
    for c in columns:
        arrow = {True: " ↑", False: " ↓"}.get(HIGHER_IS_BETTER.get(c), "")
        head.append(f"<th>{html.escape(c)}{arrow}</th>")
    best = {c: best_rows(rows, c) for c in columns}
    body = []
    for name, m in rows.items():
        cells = [f'<td class="name">{html.escape(str(name))}</td>']
        for c in columns:
            cls = ' class="best"' if name in best[c] else ""
            cells.append(f"<td{cls}>{_fmt(m.get(c))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def figure(image: np.ndarray | str | os.PathLike, caption: str) -> str:
    """An inline ``<figure>`` with the image as a base64 PNG."""
    return (
        f'<figure><img alt="{html.escape(caption)}" src="{png_data_uri(image)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def note(text: str) -> str:
    return f'<div class="note">{html.escape(text)}</div>'


def paragraph(text: str, muted: bool = False) -> str:
    cls = ' class="muted"' if muted else ""
    return f"<p{cls}>{html.escape(text)}</p>"


def heading(text: str, level: int = 2) -> str:
    return f"<h{level}>{html.escape(text)}</h{level}>"


def page(title: str, body: Sequence[str]) -> str:
    """A complete HTML5 document with the inline stylesheet and the given body fragments."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>" + "\n".join(body) + "</body></html>\n"
    )


def write_html(path: str | os.PathLike, document: str) -> Path:
    """Write the document atomically; returns the path."""
    write_text_atomic(path, document)
    return Path(path)


# --------------------------------------------------------------------------------------------- demo report

_DEPTH_COLUMNS = ("rmse", "abs_rel", "delta1", "delta2", "delta3", "feature_width")
_SEG_COLUMNS = ("mIoU", "mAcc", "aAcc", "feature_width")
_MONO_COLUMNS = ("abs_rel", "delta1", "rmse", "sq_rel")
_MV_COLUMNS = ("accuracy", "completeness", "chamfer", "nc", "rel_point", "delta1_point")


def _figures(items: Sequence[tuple[str, str | os.PathLike]]) -> list[str]:
    return [figure(path, caption) for caption, path in items if Path(path).is_file()]


def demo_report_html(
    report: Mapping[str, Any],
    figures: Mapping[str, Sequence[tuple[str, str | os.PathLike]]],
    stages: Mapping[str, Mapping[str, Any]],
    notes: Sequence[str],
    config: Mapping[str, Any],
    tables: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """The ``tune3d demo`` report: notes, FiT3D and Fin3R result tables and figures, per-stage timings.

    ``report``: the ``report.json`` dict; ``figures``: section -> ``(caption, png path)``; ``stages``: stage
    name -> ``{"seconds", "cpu_seconds", "skipped"}``; ``notes``: one-line remarks (random weights, teacher
    fallback); ``tables``: section -> optional richer rows: Fin3R ``mono_depth`` / ``multiview`` with every
    evaluated model (instead of before/after) and ``feature_norm_prenorm`` (name -> mean norm).
    """
    tables = tables or {}
    fin_extra = tables.get("fin3r", {})
    body: list[str] = []
    body += [note(n) for n in notes]
    fit = report.get("fit3d")
    if fit:
        body.append(heading("FiT3D: 3D-aware fine-tuning of a 2D backbone"))
        body.append(
            paragraph(f"Backbone {fit['backbone']} (weights: {fit['weights']}). Data: {fit['data']}.")
        )
        if fit.get("weights") == "random-init":
            body.append(
                note(
                    "The backbone started from random weights (no pretrained weights could be fetched): "
                    "these numbers demonstrate the pipeline, not FiT3D's gains on DINOv2."
                )
            )
        body.append(
            paragraph(
                "Linear probes on frozen features of held-out scenes: original model, fine-tuned model, both "
                "concatenated (assembled; the paper's setting) and the original twice (duplicated; the "
                "doubled-width control). Best value per column in bold.",
                muted=True,
            )
        )
        if fit.get("depth"):
            body.append(heading("Depth probe (256 bins)", 3))
            body.append(metrics_table(fit["depth"], _DEPTH_COLUMNS, "features"))
        if fit.get("semseg"):
            body.append(heading("Semantic segmentation probe", 3))
            body.append(metrics_table(fit["semseg"], _SEG_COLUMNS, "features"))
        body += _figures(figures.get("fit3d", []))
    fin = report.get("fin3r")
    if fin:
        body.append(heading("Fin3R: monocular distillation into a reconstruction model's encoder"))
        body.append(
            paragraph(
                f"Base model {fin['base_model']} trained from scratch with train-recon; teacher "
                f"{fin['teacher']}. Before = base model, after = base + re-normalised LoRA. "
                "Held-out scenes."
            )
        )
        if fin.get("teacher") == "sensor":
            body.append(
                note(
                    "Teacher: the frames' own depth (sensor), because the monocular teacher model "
                    "could not be loaded."
                )
            )
        body.append(heading("Monocular depth", 3))
        body.append(metrics_table(fin_extra.get("mono_depth") or fin["mono_depth"], _MONO_COLUMNS, "model"))
        body.append(heading("Multi-view pointmaps (Umeyama-aligned)", 3))
        body.append(metrics_table(fin_extra.get("multiview") or fin["multiview"], _MV_COLUMNS, "model"))
        body.append(heading("Encoder feature norms (paper Fig. 3)", 3))
        base = fin["feature_norm"].get("base")
        pre = fin_extra.get("feature_norm_prenorm") or {}
        rows = {}
        for k, v in fin["feature_norm"].items():
            rows[k] = {"mean token norm": v, "norm_gap": abs(v - base) if base is not None else None}
            if k in pre:
                rows[k]["pre-norm mean"] = pre[k]
                rows[k]["pre-norm gap"] = abs(pre[k] - pre["base"]) if "base" in pre else None
        columns = ("mean token norm", "norm_gap") + (("pre-norm mean", "pre-norm gap") if pre else ())
        body.append(
            metrics_table(
                rows,
                columns,
                "encoder",
                caption="gap = |mean norm - base mean norm|; pre-norm: before the encoder's final LayerNorm",
            )
        )
        body += _figures(figures.get("fin3r", []))
    body.append(heading("Timings"))
    trows = {
        name: {
            "seconds": s.get("seconds"),
            "CPU seconds": s.get("cpu_seconds"),
            "skipped on this run": bool(s.get("skipped")),
        }
        for name, s in stages.items()
    }
    for section in ("fit3d", "fin3r"):
        if report.get(section):
            trows[f"total {section}"] = {
                "seconds": report[section].get("seconds"),
                "skipped on this run": None,
            }
    body.append(metrics_table(trows, ("seconds", "CPU seconds", "skipped on this run"), "stage"))
    body.append(heading("Configuration", 3))
    body.append(metrics_table({k: {"value": str(v)} for k, v in config.items()}, ("value",), "option"))
    return page("tune3d demo", body)
