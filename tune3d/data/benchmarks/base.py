"""Benchmark datasets: images with a label map or a depth map, read from a dataset's official layout.

A :class:`DatasetInfo` describes one dataset (task, classes, depth range, crops, expected layout) and knows
how to list the samples of a split; :class:`BenchmarkDataset` is the resulting sequence of
``(image HxWx3 uint8, target HxW)`` pairs. Labels are int64 with 255 = ignore (classes ``0..K-1``);
depth is float32 metres with 0 = invalid. Every file problem is a one-line :class:`Tune3DError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tune3d.data.benchmarks.classes import pascal_palette
from tune3d.data.sources import _open_pil, image_size
from tune3d.errors import Tune3DError

IGNORE = 255


@dataclass(frozen=True)
class BenchmarkSample:
    """One sample: a display ``name``, its RGB ``image`` file and its label / depth ``target`` file."""

    name: str
    image: Path
    target: Path
    meta: Any = field(default=None, compare=False)  # reader-specific (e.g. the camera to render with)


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a benchmark dataset.

    ``list_samples(root, split, task) -> (samples, label_lut[, extra])`` reads the split (raising on a bad
    layout); ``label_lut`` (or None) maps raw label values to dataset classes before ``reduce_zero_label``;
    ``extra`` may carry ``class_names`` read from the dataset's own metadata.
    ``prepare_target(sample, task)``: makes ``sample.target`` exist first (ScanNet++ renders it).
    ``depth_scale``: stored integer units per metre (1000 for millimetre PNGs, 256 for KITTI).
    ``eval_crop``: ``"eigen"`` / ``"garg"`` / None, the evaluation mask; ``kb_crop``: KITTI benchmark crop
    (352x1216, bottom-centre) applied to image and depth of every sample.
    """

    name: str
    task: str
    layout: str
    list_samples: Callable[[Path, str, str], tuple[list[BenchmarkSample], np.ndarray | None]]
    tasks: tuple[str, ...] = ()  # every task the layout supports (default: just ``task``)
    splits: tuple[str, ...] = ("train", "val")
    class_names: tuple[str, ...] | None = None
    reduce_zero_label: bool = False
    depth_scale: float = 1000.0
    min_depth: float = 1e-3
    max_depth: float = 10.0
    eval_crop: str | None = None
    train_crop: str | None = None  # "nyu": the toolbox's NYUCrop before the training augmentations
    kb_crop: bool = False
    image_to_target_size: bool = False  # resize the image to the target's size (ScanNet colour vs depth)
    prepare_target: Callable[[BenchmarkSample, str], None] | None = None
    fixed_num_classes: int | None = None  # class count when the names come from the dataset's metadata
    notes: str = ""

    @property
    def num_classes(self) -> int | None:
        return self.fixed_num_classes if self.class_names is None else len(self.class_names)

    @property
    def all_tasks(self) -> tuple[str, ...]:
        return self.tasks or (self.task,)

    @property
    def palette(self) -> np.ndarray | None:
        return None if self.num_classes is None else pascal_palette(self.num_classes)


def require(path: Path, what: str, dataset: str, layout: str) -> Path:
    """``path`` if it exists, else a one-line error naming it and the expected layout."""
    if not path.exists():
        raise Tune3DError(f"{path}: {what} not found; {dataset} expects {layout}")
    return path


def read_split_lines(path: Path) -> list[str]:
    """Non-empty, stripped lines of a split file."""
    try:
        return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise Tune3DError(f"{path}: unreadable split file ({e})") from None


def check_exists(samples: list[BenchmarkSample], split_file: Path | None = None) -> list[BenchmarkSample]:
    """Every sample's image and target exist (a split file naming a missing file is an error)."""
    for s in samples:
        for p in (s.image, s.target):
            if not p.is_file():
                src = f" (listed in {split_file})" if split_file is not None else ""
                raise Tune3DError(f"{p}: file not found{src}")
    return samples


def kb_crop_box(height: int, width: int) -> tuple[int, int, int, int]:
    """KITTI benchmark crop ``(top, left, 352, 1216)``: bottom rows, horizontally centred."""
    h, w = min(352, height), min(1216, width)
    return height - h, (width - w) // 2, h, w


def eval_crop_mask(shape: tuple[int, int], crop: str | None) -> np.ndarray:
    """Boolean evaluation region of a depth map of ``shape = (H, W)``.

    ``eigen``: NYUv2 rows 45:471, columns 41:601 of the 480x640 frame (scaled to other sizes);
    ``garg``: rows 0.40810811H:0.99189189H, columns 0.03594771W:0.96405229W; None: everything.
    """
    H, W = shape
    mask = np.zeros((H, W), dtype=bool)
    if crop is None:
        mask[:] = True
    elif crop == "eigen":
        mask[int(45 * H / 480) : int(471 * H / 480), int(41 * W / 640) : int(601 * W / 640)] = True
    elif crop == "garg":
        mask[int(0.40810811 * H) : int(0.99189189 * H), int(0.03594771 * W) : int(0.96405229 * W)] = True
    else:
        raise ValueError(f"unknown evaluation crop {crop!r}")
    return mask


def load_rgb(path: Path) -> np.ndarray:
    im = _open_pil(path)
    if im.mode in ("I;16", "I;16B", "I", "F"):
        raise Tune3DError(f"{path}: expected an 8-bit colour image, got mode {im.mode}")
    return np.array(im.convert("RGB"), dtype=np.uint8)


def load_label_png(path: Path) -> np.ndarray:
    """Raw label values of a single-channel PNG (palette indices for mode P), as int64 ``H,W``."""
    im = _open_pil(path)
    if im.mode not in ("L", "P", "I;16", "I;16B", "I"):
        raise Tune3DError(f"{path}: a label map must be a single-channel PNG (L, P or 16-bit), got {im.mode}")
    return np.array(im).astype(np.int64)


def load_depth_png(path: Path, scale: float) -> np.ndarray:
    """Depth in metres from a 16-bit PNG storing ``metres * scale`` (0 = invalid)."""
    im = _open_pil(path)
    if im.mode not in ("I;16", "I;16B", "I"):
        raise Tune3DError(f"{path}: depth must be a 16-bit PNG, got mode {im.mode}")
    arr = np.array(im)
    if arr.dtype == np.int32 and (arr.min() < 0 or arr.max() > 65535):
        raise Tune3DError(f"{path}: depth values outside the 16-bit range")
    return arr.astype(np.float32) / float(scale)


def decode_labels(
    raw: np.ndarray, path: Path, num_classes: int, reduce_zero_label: bool, lut: np.ndarray | None
) -> np.ndarray:
    """Raw label values -> classes ``0..K-1`` / 255 (ignore).

    ``lut`` maps raw values first (ScanNet ids -> NYU40 ids); ``reduce_zero_label`` then makes 0 the
    ignore label and shifts the rest down by one (mmseg's convention for ADE20K / NYUv2 / ScanNet).
    A value outside the classes is an error naming the file.
    """
    lab = raw
    if lut is not None:
        if lab.size and (lab.min() < 0 or lab.max() >= len(lut)):
            raise Tune3DError(f"{path}: label id {int(lab.max())} is not in the label mapping")
        lab = lut[lab]
        if (lab < 0).any():
            bad = int(raw[lab < 0].flat[0])
            raise Tune3DError(f"{path}: label id {bad} is not in the label mapping")
    if reduce_zero_label:
        lab = np.where(lab == 0, IGNORE, np.where(lab == IGNORE, IGNORE, lab - 1))
    bad = (lab != IGNORE) & ((lab < 0) | (lab >= num_classes))
    if bad.any():
        shown = int(raw[bad].flat[0])
        raise Tune3DError(f"{path}: label value {shown} is outside the {num_classes} classes")
    return lab.astype(np.int64)


@dataclass
class BenchmarkDataset(Sequence):
    """The samples of one split of a benchmark dataset, read lazily: ``(image, target)`` per item."""

    info: DatasetInfo
    root: Path
    split: str
    task: str
    samples: list[BenchmarkSample]
    label_lut: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int | None:
        if self.task != "semseg":
            return None
        names = self.extra.get("class_names")
        return len(names) if names else self.info.num_classes

    @property
    def class_names(self) -> list[str] | None:
        if self.task != "semseg":
            return None
        names = self.extra.get("class_names") or self.info.class_names
        return None if names is None else list(names)

    @property
    def max_depth(self) -> float:
        return self.info.max_depth

    @property
    def min_depth(self) -> float:
        return self.info.min_depth

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(i, slice):
            raise TypeError("BenchmarkDataset does not support slicing; pass indices instead")
        s = self.samples[i]
        if self.info.prepare_target is not None:
            self.info.prepare_target(s, self.task)
        image = load_rgb(s.image)
        if self.task == "semseg":
            raw = load_label_png(s.target)
            target = decode_labels(
                raw, s.target, self.num_classes, self.info.reduce_zero_label, self.label_lut
            )
        else:
            target = load_depth_png(s.target, self.info.depth_scale)
        if target.shape != image.shape[:2]:
            if self.info.image_to_target_size:
                image = _resize_rgb(image, target.shape)
            else:
                what = "label map" if self.task == "semseg" else "depth map"
                raise Tune3DError(
                    f"{s.target}: {what} is {target.shape[1]}x{target.shape[0]} but the image "
                    f"{s.image.name} is {image.shape[1]}x{image.shape[0]}"
                )
        if self.info.kb_crop:
            top, left, h, w = kb_crop_box(*target.shape)
            image = image[top : top + h, left : left + w]
            target = target[top : top + h, left : left + w]
        return np.ascontiguousarray(image), np.ascontiguousarray(target)

    def eval_mask(self, depth: np.ndarray) -> np.ndarray:
        """Pixels a depth map is evaluated on: ``min_depth < d < max_depth`` inside the eval crop."""
        d = np.asarray(depth)
        valid = (d > self.info.min_depth) & (d < self.info.max_depth)
        return valid & eval_crop_mask(d.shape[-2:], self.info.eval_crop)

    def image_sizes(self, limit: int | None = None) -> set[tuple[int, int]]:
        """Distinct ``(H, W)`` of the images (headers only) of the first ``limit`` samples."""
        return {image_size(s.image) for s in self.samples[:limit]}


def _resize_rgb(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.array(Image.fromarray(image).resize((shape[1], shape[0]), Image.BILINEAR), dtype=np.uint8)
