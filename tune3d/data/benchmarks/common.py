"""Listing helpers shared by the dataset readers: mmseg-style folders and ``rgb depth focal`` split files."""

from __future__ import annotations

from pathlib import Path

from tune3d.data.benchmarks.base import BenchmarkSample, check_exists, read_split_lines, require
from tune3d.errors import Tune3DError

IMAGE_EXTS = (".jpg", ".png", ".jpeg")


def split_key(dataset: str, split: str, mapping: dict[str, str]) -> str:
    """``mapping[split]`` or a one-line error listing the dataset's splits."""
    if split not in mapping:
        raise Tune3DError(f"--split {split!r}: {dataset} has the splits {', '.join(mapping)}")
    return mapping[split]


def mmseg_folders(dataset: str, layout: str, root: Path, split: str) -> list[BenchmarkSample]:
    """``images/<training|validation>/NAME.jpg`` + ``annotations/<...>/NAME.png`` (mmseg's folder layout).

    The annotation folder drives the listing; each label needs an image of the same stem.
    """
    sub = split_key(dataset, split, {"train": "training", "val": "validation"})
    ann_dir = require(root / "annotations" / sub, "annotation folder", dataset, layout)
    img_dir = require(root / "images" / sub, "image folder", dataset, layout)
    samples = []
    for ann in sorted(ann_dir.glob("*.png")):
        img = next(
            (img_dir / (ann.stem + e) for e in IMAGE_EXTS if (img_dir / (ann.stem + e)).is_file()), None
        )
        if img is None:
            raise Tune3DError(f"{img_dir / (ann.stem + '.jpg')}: image for the label {ann.name} not found")
        samples.append(BenchmarkSample(ann.stem, img, ann))
    if not samples:
        raise Tune3DError(f"{ann_dir}: no label PNGs; {dataset} expects {layout}")
    return samples


def _rel(s: str) -> str:
    return s[1:] if s[:1] in ("/", "\\") else s


def pair_split_file(
    dataset: str, layout: str, split_file: Path, image_root: Path, target_root: Path
) -> list[BenchmarkSample]:
    """Samples of a BTS / Monocular-Depth-Estimation-Toolbox split file: ``rgb depth [focal]`` per line.

    Paths are relative to ``image_root`` / ``target_root`` (a leading slash is dropped); lines whose depth
    is ``None`` (no ground truth) are skipped, as the toolbox does. Sorted by image path, as the toolbox.
    """
    require(split_file, "split file", dataset, layout)
    samples = []
    for n, line in enumerate(read_split_lines(split_file), 1):
        parts = line.split()
        if len(parts) < 2:
            raise Tune3DError(f"{split_file}: line {n} needs 'rgb depth [focal]', got {line!r}")
        if parts[1] == "None":
            continue
        img, tgt = image_root / _rel(parts[0]), target_root / _rel(parts[1])
        samples.append(BenchmarkSample(_rel(parts[0]), img, tgt))
    if not samples:
        raise Tune3DError(f"{split_file}: no samples with ground truth")
    samples.sort(key=lambda s: str(s.image))
    return check_exists(samples, split_file)
