"""Run a benchmark suite: each cell is a probe run in ``OUT/cells/<id>/``, resumable and isolated.

A finished cell leaves ``result.json`` (``status: done`` and its metrics) and is skipped on a rerun; a
failing cell records ``status: failed`` with the one-line error and the suite goes on. The reports are
rewritten after every cell.
"""

from __future__ import annotations

import logging
import math
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tune3d.benchmark.paper import paper_value
from tune3d.benchmark.report import ResultRow, write_reports
from tune3d.benchmark.suite import TASK_METRICS, Cell, Suite
from tune3d.errors import Tune3DError
from tune3d.fit3d.assembly import build_assembled
from tune3d.io import read_json, write_json
from tune3d.probe import ProbeConfig
from tune3d.probe.datasets import run_dataset_probe
from tune3d.probe.paper import PAPER_ITERS, PaperOptions

log = logging.getLogger(__name__)

_PERCENT = {"macc", "miou", "aacc"}


@dataclass
class SuiteSettings:
    """How to run the cells: data locations, weights and probe settings (CLI over YAML over defaults)."""

    roots: dict[str, str] = field(default_factory=dict)
    data_dir: str | None = None  # dataset NAME lives in DATA_DIR/NAME unless in roots
    finetuned: dict[str, str] = field(default_factory=dict)  # backbone -> file ("*" = every backbone)
    weights: dict[str, str] = field(default_factory=dict)
    protocol: str = "fast"
    iters: int | None = None
    batch_size: int | None = None
    resolution: list[int] | None = None
    allow_random_init: bool = False
    amp: str = "none"  # paper protocol: backbone precision on GPU
    workers: int = 0  # paper protocol: data-loading workers
    device: str = "auto"
    seed: int = 0
    progress: bool = False

    def root_for(self, dataset: str) -> Path:
        if dataset in self.roots:
            return Path(self.roots[dataset])
        if self.data_dir is not None:
            return Path(self.data_dir) / dataset
        raise Tune3DError(f"no root for dataset {dataset!r}: give --root {dataset}=PATH or --data-dir DIR")

    def finetuned_for(self, backbone: str) -> str | None:
        return self.finetuned.get(backbone, self.finetuned.get("*"))


def _cell_metrics(cell: Cell, settings: SuiteSettings, run_dir: Path) -> dict[str, Any]:
    root = settings.root_for(cell.dataset)
    ft = settings.finetuned_for(cell.backbone) if cell.mode in ("finetuned", "assembled") else None
    if cell.mode in ("finetuned", "assembled") and ft is None:
        raise Tune3DError(f"mode {cell.mode} needs fine-tuned weights: give --finetuned {cell.backbone}=FILE")

    cfg = ProbeConfig(image_size=settings.resolution, seed=settings.seed, device=settings.device)
    cfg.progress = settings.progress
    paper = PaperOptions(amp=settings.amp, num_workers=settings.workers)
    if settings.iters is not None:
        cfg.iters = settings.iters
    elif settings.protocol == "paper":
        cfg.iters = PAPER_ITERS[cell.task]
    if settings.batch_size is not None:
        cfg.batch_size = paper.batch_size = settings.batch_size
    model = build_assembled(
        cell.backbone,
        weights=settings.weights.get(cell.backbone),
        finetuned=ft,
        mode=cell.mode,
        allow_random_init=settings.allow_random_init,
        device=None if settings.device == "auto" else settings.device,
    )
    try:
        return run_dataset_probe(
            cell.dataset,
            root,
            cell.task,
            model,
            cfg,
            run_dir,
            protocol=settings.protocol,
            run_info={"command": "benchmark", "cell": cell.id},
            paper_options=paper,
        )
    finally:
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _value(metric: str, metrics: dict[str, Any]) -> float | None:
    v = metrics.get(metric)
    if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v) * 100.0 if metric in _PERCENT else float(v)


def run_suite(suite: Suite, out_dir: str | os.PathLike, settings: SuiteSettings) -> list[ResultRow]:
    """Run every unfinished cell of ``suite`` into ``out_dir`` and write the reports; returns the rows."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[Cell, dict[str, Any]] = {}
    for cell in suite.cells:
        path = out / "cells" / cell.id / "result.json"
        if path.is_file():
            prev = read_json(path)
            if prev.get("status") == "done":
                results[cell] = prev
    for cell in suite.cells:
        if cell in results:
            log.info("cell %s finished earlier; skipped", cell.id)
            continue
        cell_dir = out / "cells" / cell.id
        try:
            metrics = _cell_metrics(cell, settings, cell_dir / "run")
            res = {"status": "done", "cell": cell.__dict__, "metrics": metrics}
        except Tune3DError as e:
            res = {"status": "failed", "cell": cell.__dict__, "error": str(e)}
        except Exception as e:  # one broken cell must not lose the others
            log.debug("cell %s crashed:\n%s", cell.id, traceback.format_exc())
            res = {"status": "failed", "cell": cell.__dict__, "error": f"{type(e).__name__}: {e}"}
        write_json(cell_dir / "result.json", res)
        results[cell] = res
        write_reports(_rows(suite, results), out, suite.name)
    rows = _rows(suite, results)
    write_reports(rows, out, suite.name)
    return rows


def _rows(suite: Suite, results: dict[Cell, dict[str, Any]]) -> list[ResultRow]:
    rows = []
    for cell in suite.cells:
        res = results.get(cell, {"status": "pending"})
        metrics = res.get("metrics", {})
        error = res.get("error", "").splitlines()[0] if res.get("error") else ""
        for metric in TASK_METRICS[cell.task]:
            rows.append(
                ResultRow(
                    suite=suite.name,
                    dataset=cell.dataset,
                    task=cell.task,
                    mode=cell.mode,
                    backbone=cell.backbone,
                    metric=metric,
                    value=_value(metric, metrics),
                    paper=paper_value(cell.dataset, cell.task, cell.backbone, cell.mode, metric),
                    status=res["status"],
                    error=error,
                )
            )
    return rows
