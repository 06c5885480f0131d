"""Readers for the FiT3D evaluation benchmarks in their official layouts (no poses needed).

``open_dataset(name, root, split, task)`` returns a :class:`BenchmarkDataset` of ``(image, target)``
pairs; ``DATASETS`` lists the names (``nyuv2-seg13``, ``nyuv2-seg40``, ``nyuv2-depth``, ``ade20k``,
``voc2012``, ``kitti-eigen``, ``scannet``, ``scannetpp``) with their expected layouts.
"""

from tune3d.data.benchmarks.base import (
    BenchmarkDataset,
    BenchmarkSample,
    DatasetInfo,
    eval_crop_mask,
    kb_crop_box,
)
from tune3d.data.benchmarks.registry import DATASETS, dataset_names, get_dataset_info, open_dataset

__all__ = [
    "DATASETS",
    "BenchmarkDataset",
    "BenchmarkSample",
    "DatasetInfo",
    "dataset_names",
    "eval_crop_mask",
    "get_dataset_info",
    "kb_crop_box",
    "open_dataset",
]
