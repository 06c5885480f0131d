"""Pascal VOC 2012 segmentation: palette PNGs (index = class, 255 = ignore), official split files.

With ``SegmentationClassAug/`` and ``ImageSets/Segmentation/aug.txt`` present (the SBD-augmented set as
prepared by mmseg's ``voc_aug`` tool), the train split adds the ``aug.txt`` images with their
``SegmentationClassAug`` labels (8-bit, same convention).
"""

from __future__ import annotations

from pathlib import Path

from tune3d.data.benchmarks.base import BenchmarkSample, DatasetInfo, check_exists, read_split_lines, require
from tune3d.data.benchmarks.classes import VOC_CLASSES
from tune3d.data.benchmarks.common import split_key
from tune3d.errors import Tune3DError

LAYOUT = (
    "ROOT (or ROOT/VOCdevkit/VOC2012)/JPEGImages/NAME.jpg, SegmentationClass/NAME.png (palette PNG) and "
    "ImageSets/Segmentation/{train,val}.txt [+ SegmentationClassAug/ with ImageSets/Segmentation/aug.txt]"
)


def _voc_root(root: Path) -> Path:
    for cand in (root / "VOCdevkit" / "VOC2012", root / "VOC2012"):
        if cand.is_dir():
            return cand
    return root


def _list(root: Path, split: str, task: str):
    root = _voc_root(root)
    sets = root / "ImageSets" / "Segmentation"
    fname = split_key("voc2012", split, {"train": "train.txt", "val": "val.txt"})
    split_file = require(sets / fname, "split file", "voc2012", LAYOUT)
    names = read_split_lines(split_file)
    samples = [
        BenchmarkSample(n, root / "JPEGImages" / f"{n}.jpg", root / "SegmentationClass" / f"{n}.png")
        for n in names
    ]
    check_exists(samples, split_file)
    aug_file = sets / "aug.txt"
    if split == "train" and (root / "SegmentationClassAug").is_dir() and aug_file.is_file():
        have = set(names)
        aug = [
            BenchmarkSample(n, root / "JPEGImages" / f"{n}.jpg", root / "SegmentationClassAug" / f"{n}.png")
            for n in read_split_lines(aug_file)
            if n not in have
        ]
        samples += check_exists(aug, aug_file)
    if not samples:
        raise Tune3DError(f"{split_file}: empty split file")
    return samples, None


VOC2012 = DatasetInfo(
    name="voc2012",
    task="semseg",
    layout=LAYOUT,
    list_samples=_list,
    class_names=VOC_CLASSES,
    reduce_zero_label=False,
)
