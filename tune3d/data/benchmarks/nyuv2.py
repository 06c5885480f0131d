"""NYUv2: 13- and 40-class segmentation (mmseg folder layout used by FiT3D) and depth (toolbox layout)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from tune3d.data.benchmarks.base import DatasetInfo
from tune3d.data.benchmarks.classes import NYU13_CLASSES, NYU40_CLASSES
from tune3d.data.benchmarks.common import mmseg_folders, pair_split_file, split_key

SEG_LAYOUT = (
    "ROOT/images/{training,validation}/NAME.jpg and ROOT/annotations/{training,validation}/NAME.png "
    "(8-bit labels, 0 = unlabelled, 1..K = classes)"
)
DEPTH_LAYOUT = (
    "ROOT/nyu_train.txt and ROOT/nyu_test.txt with lines 'rgb depth focal' relative to ROOT "
    "(e.g. /kitchen_0028a/rgb_00045.jpg /kitchen_0028a/sync_depth_00045.png 518.8579), depth PNGs uint16 mm"
)


def _seg(name: str, root: Path, split: str, task: str):
    return mmseg_folders(name, SEG_LAYOUT, root, split), None


def _depth(root: Path, split: str, task: str):
    fname = split_key(
        "nyuv2-depth", split, {"train": "nyu_train.txt", "val": "nyu_test.txt", "test": "nyu_test.txt"}
    )
    return pair_split_file("nyuv2-depth", DEPTH_LAYOUT, root / fname, root, root), None


NYUV2_SEG13 = DatasetInfo(
    name="nyuv2-seg13",
    task="semseg",
    layout=SEG_LAYOUT,
    list_samples=partial(_seg, "nyuv2-seg13"),
    class_names=NYU13_CLASSES,
    reduce_zero_label=True,
)
NYUV2_SEG40 = DatasetInfo(
    name="nyuv2-seg40",
    task="semseg",
    layout=SEG_LAYOUT,
    list_samples=partial(_seg, "nyuv2-seg40"),
    class_names=NYU40_CLASSES,
    reduce_zero_label=True,
)
NYUV2_DEPTH = DatasetInfo(
    name="nyuv2-depth",
    task="depth",
    layout=DEPTH_LAYOUT,
    list_samples=_depth,
    splits=("train", "val", "test"),
    depth_scale=1000.0,
    max_depth=10.0,
    eval_crop="eigen",
    train_crop="nyu",
    notes="NYUCrop for training, Eigen crop at evaluation, 0.001 < depth < 10 m",
)
