"""ADE20K scene parsing (``ADEChallengeData2016``): 150 classes, label 0 ignored and the rest shifted down."""

from __future__ import annotations

from pathlib import Path

from tune3d.data.benchmarks.base import DatasetInfo
from tune3d.data.benchmarks.classes import ADE20K_CLASSES
from tune3d.data.benchmarks.common import mmseg_folders

LAYOUT = (
    "ROOT (or ROOT/ADEChallengeData2016)/images/{training,validation}/ADE_*.jpg and "
    "annotations/{training,validation}/ADE_*.png (8-bit, 0 = other, 1..150 = classes)"
)


def _list(root: Path, split: str, task: str):
    if (root / "ADEChallengeData2016").is_dir():
        root = root / "ADEChallengeData2016"
    return mmseg_folders("ade20k", LAYOUT, root, split), None


ADE20K = DatasetInfo(
    name="ade20k",
    task="semseg",
    layout=LAYOUT,
    list_samples=_list,
    class_names=ADE20K_CLASSES,
    reduce_zero_label=True,
)
