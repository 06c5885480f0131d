"""The FiT3D paper's numbers (``paper_numbers.csv``, shipped with the package) for Tables 1-4."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PAPER_CSV = Path(__file__).with_name("paper_numbers.csv")


@dataclass(frozen=True)
class PaperValue:
    """One reported number: segmentation metrics in %, depth RMSE in metres, abs_rel unitless."""

    suite: str
    dataset: str
    task: str
    backbone: str
    mode: str
    metric: str
    value: float


@lru_cache(maxsize=1)
def paper_values() -> tuple[PaperValue, ...]:
    """Every row of ``paper_numbers.csv`` (``#`` lines are comments)."""
    with open(PAPER_CSV, newline="") as f:
        rows = [ln for ln in f if not ln.startswith("#")]
    return tuple(
        PaperValue(
            r["suite"], r["dataset"], r["task"], r["backbone"], r["mode"], r["metric"], float(r["value"])
        )
        for r in csv.DictReader(rows)
    )


def paper_value(dataset: str, task: str, backbone: str, mode: str, metric: str) -> float | None:
    """The paper's number for one cell and metric, or None where the paper has none."""
    for v in paper_values():
        if (v.dataset, v.task, v.backbone, v.mode, v.metric) == (dataset, task, backbone, mode, metric):
            return v.value
    return None
