"""Registry of the benchmark datasets: ``DATASETS[name]`` and :func:`open_dataset`."""

from __future__ import annotations

import os
from pathlib import Path

from tune3d.data.benchmarks.ade20k import ADE20K
from tune3d.data.benchmarks.base import BenchmarkDataset, DatasetInfo
from tune3d.data.benchmarks.kitti import KITTI_EIGEN
from tune3d.data.benchmarks.nyuv2 import NYUV2_DEPTH, NYUV2_SEG13, NYUV2_SEG40
from tune3d.data.benchmarks.scannet import SCANNET
from tune3d.data.benchmarks.scannetpp import SCANNETPP
from tune3d.data.benchmarks.voc import VOC2012
from tune3d.errors import Tune3DError

DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (NYUV2_SEG13, NYUV2_SEG40, NYUV2_DEPTH, ADE20K, VOC2012, KITTI_EIGEN, SCANNET, SCANNETPP)
}


def dataset_names() -> list[str]:
    return list(DATASETS)


def get_dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` called ``name`` (one-line error listing the known names otherwise)."""
    if name not in DATASETS:
        raise Tune3DError(f"--dataset {name!r}: unknown dataset; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def open_dataset(
    name: str, root: str | os.PathLike, split: str = "val", task: str | None = None
) -> BenchmarkDataset:
    """Split ``split`` of dataset ``name`` under ``root``; ``task`` defaults to the dataset's main task."""
    info = get_dataset_info(name)
    task = task or info.task
    if task not in info.all_tasks:
        raise Tune3DError(f"--task {task!r}: {name} provides {', '.join(info.all_tasks)}")
    if split not in info.splits:
        raise Tune3DError(f"--split {split!r}: {name} has the splits {', '.join(info.splits)}")
    root = Path(root)
    if not root.is_dir():
        raise Tune3DError(f"{root}: dataset root not found (a folder in the {name} layout)")
    samples, lut, *rest = info.list_samples(root, split, task)
    return BenchmarkDataset(info, root, split, task, samples, lut, dict(rest[0]) if rest else {})
