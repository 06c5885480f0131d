"""Benchmark suites: lists of dataset x task x mode (x backbone) cells, named or read from YAML.

Named suites ``fit3d-table1`` .. ``fit3d-table4`` are the cells of the paper's tables (from
``paper_numbers.csv``). A YAML suite::

    name: my-suite                  # optional, default: the file name
    backbone: dinov2_vits14         # default backbone of the cells
    protocol: fast                  # fast | paper
    iters: 2000                     # probe iterations (optional)
    resolution: 224x308             # fast protocol image size (optional)
    roots: {nyuv2-seg13: /data/nyuv2_seg}       # dataset roots (or --root NAME=PATH / --data-dir)
    finetuned: {dinov2_vits14: ft.safetensors}  # fine-tuned weights per backbone (or one path)
    cells:
      - {dataset: nyuv2-seg13, task: semseg, mode: original}
      - {dataset: nyuv2-depth, task: depth, mode: assembled, backbone: dinov2_vits14}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tune3d.benchmark.paper import paper_values
from tune3d.errors import Tune3DError

TASK_METRICS = {"semseg": ("macc", "miou", "aacc"), "depth": ("rmse", "abs_rel", "delta1")}
MODES = ("original", "finetuned", "assembled", "duplicated")


@dataclass(frozen=True)
class Cell:
    """One probe run of a suite."""

    dataset: str
    task: str
    mode: str
    backbone: str

    @property
    def id(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.dataset}__{self.task}__{self.mode}__{self.backbone}")


@dataclass
class Suite:
    """A named list of cells plus run settings (``options``: protocol, iters, roots, finetuned, ...)."""

    name: str
    cells: list[Cell]
    options: dict[str, Any] = field(default_factory=dict)


def named_suites() -> dict[str, Suite]:
    """``fit3d-table1`` .. ``fit3d-table4``: one cell per (dataset, task, backbone, mode) of the table."""
    suites: dict[str, Suite] = {}
    for v in paper_values():
        s = suites.setdefault(v.suite, Suite(v.suite, []))
        cell = Cell(v.dataset, v.task, v.mode, v.backbone)
        if cell not in s.cells:
            s.cells.append(cell)
    return suites


def load_suite(spec: str) -> Suite:
    """A named suite or a YAML file (see the module docstring)."""
    suites = named_suites()
    if spec in suites:
        return suites[spec]
    path = Path(spec)
    if not path.is_file():
        raise Tune3DError(f"{spec}: neither a suite name ({', '.join(suites)}) nor a YAML file")
    try:
        doc = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise Tune3DError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("cells"), list) or not doc["cells"]:
        raise Tune3DError(f"{path}: a suite needs a non-empty 'cells' list")
    default_bb = doc.get("backbone", "dinov2_vits14")
    cells = []
    for i, c in enumerate(doc["cells"]):
        if not isinstance(c, dict) or not {"dataset", "task"} <= set(c):
            raise Tune3DError(f"{path}: cell {i} needs 'dataset' and 'task'")
        cell = Cell(
            str(c["dataset"]),
            str(c["task"]),
            str(c.get("mode", "original")),
            str(c.get("backbone", default_bb)),
        )
        if cell.task not in TASK_METRICS:
            raise Tune3DError(f"{path}: cell {i}: task {cell.task!r} is not semseg or depth")
        if cell.mode not in MODES:
            raise Tune3DError(f"{path}: cell {i}: mode {cell.mode!r} is not one of {', '.join(MODES)}")
        cells.append(cell)
    options = {k: v for k, v in doc.items() if k not in ("cells", "name", "backbone")}
    return Suite(str(doc.get("name", path.stem)), cells, options)
