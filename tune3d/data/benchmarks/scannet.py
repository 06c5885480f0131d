"""ScanNet 2D frames in the exported layout (``color/ depth/ label-filt/`` per scene), NYU40 classes.

Labels are ScanNet ids mapped to NYU40 through ``scannetv2-labels.combined.tsv`` (columns ``id`` and
``nyu40id``); NYU40 id 0 (unannotated) is ignored and 1..40 become classes 0..39. Colour frames
(1296x968) are resized bilinearly to the size of their label or depth map (depth: 640x480, uint16 mm).
Every exported frame of the split's scenes is used (export with the SDK's frame skip to subsample).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tune3d.data.benchmarks.base import BenchmarkSample, DatasetInfo, read_split_lines, require
from tune3d.data.benchmarks.classes import NYU40_CLASSES
from tune3d.data.benchmarks.common import split_key
from tune3d.errors import Tune3DError

LAYOUT = (
    "ROOT/scannetv2_{train,val}.txt (scene ids), ROOT/scannetv2-labels.combined.tsv and "
    "ROOT/scans/SCENE/{color/N.jpg, depth/N.png (uint16 mm), label-filt/N.png (ScanNet ids)}"
)
TSV = "scannetv2-labels.combined.tsv"


def read_nyu40_lut(path: Path) -> np.ndarray:
    """Lookup table ScanNet id -> NYU40 id (-1 for ids the file does not list; id 0 -> 0)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise Tune3DError(f"{path}: unreadable label mapping ({e})") from None
    if not rows or "id" not in rows[0] or "nyu40id" not in rows[0]:
        raise Tune3DError(f"{path}: label mapping needs the columns 'id' and 'nyu40id'")
    try:
        pairs = [(int(r["id"]), int(r["nyu40id"])) for r in rows]
    except (TypeError, ValueError):
        raise Tune3DError(f"{path}: non-integer id or nyu40id") from None
    lut = np.full(max(i for i, _ in pairs) + 1, -1, dtype=np.int64)
    lut[0] = 0
    for i, n in pairs:
        if not 0 <= n <= 40:
            raise Tune3DError(f"{path}: nyu40id {n} of id {i} is outside 0..40")
        lut[i] = n
    return lut


def _list(root: Path, split: str, task: str):
    fname = split_key("scannet", split, {"train": "scannetv2_train.txt", "val": "scannetv2_val.txt"})
    split_file = require(root / fname, "split file", "scannet", LAYOUT)
    lut = (
        read_nyu40_lut(require(root / TSV, "label mapping", "scannet", LAYOUT)) if task == "semseg" else None
    )
    sub = "label-filt" if task == "semseg" else "depth"
    samples = []
    for scene in read_split_lines(split_file):
        sdir = root / "scans" / scene
        tdir = require(
            sdir / sub, f"{sub} folder of {scene} (listed in {split_file.name})", "scannet", LAYOUT
        )
        frames = sorted(tdir.glob("*.png"), key=lambda p: (len(p.stem), p.stem))
        for t in frames:
            img = sdir / "color" / f"{t.stem}.jpg"
            if not img.is_file():
                raise Tune3DError(f"{img}: colour frame for {t.relative_to(root)} not found")
            samples.append(BenchmarkSample(f"{scene}/{t.stem}", img, t))
    if not samples:
        raise Tune3DError(f"{split_file}: its scenes have no {sub} frames")
    return samples, lut


SCANNET = DatasetInfo(
    name="scannet",
    task="semseg",
    tasks=("semseg", "depth"),
    layout=LAYOUT,
    list_samples=_list,
    class_names=NYU40_CLASSES,
    reduce_zero_label=True,
    depth_scale=1000.0,
    max_depth=10.0,
    image_to_target_size=True,
)
