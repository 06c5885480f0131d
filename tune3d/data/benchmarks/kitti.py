"""KITTI depth, Eigen split, in the Monocular-Depth-Estimation-Toolbox layout (depth PNG / 256 = metres)."""

from __future__ import annotations

from pathlib import Path

from tune3d.data.benchmarks.base import DatasetInfo
from tune3d.data.benchmarks.common import pair_split_file, split_key

LAYOUT = (
    "ROOT/kitti_eigen_train.txt and ROOT/kitti_eigen_test.txt with lines 'rgb depth focal', rgb relative to "
    "ROOT/input (2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000005.png) and depth relative to "
    "ROOT/gt_depth (2011_09_26_drive_0001_sync/proj_depth/groundtruth/image_02/0000000005.png, uint16 m*256)"
)


def _list(root: Path, split: str, task: str):
    fname = split_key(
        "kitti-eigen",
        split,
        {"train": "kitti_eigen_train.txt", "val": "kitti_eigen_test.txt", "test": "kitti_eigen_test.txt"},
    )
    return pair_split_file("kitti-eigen", LAYOUT, root / fname, root / "input", root / "gt_depth"), None


KITTI_EIGEN = DatasetInfo(
    name="kitti-eigen",
    task="depth",
    layout=LAYOUT,
    list_samples=_list,
    splits=("train", "val", "test"),
    depth_scale=256.0,
    max_depth=80.0,
    eval_crop="garg",
    kb_crop=True,
    notes="KB crop (352x1216) on every sample, Garg crop at evaluation, 0.001 < depth < 80 m",
)
