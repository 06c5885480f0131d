"""Fin3R data: single images to distil on and labelled multi-view tuples to replay, at one resolution.

Items are loaded through :mod:`tune3d.data.datasets` (:func:`~tune3d.data.datasets.view_item` for scene
frames, :class:`~tune3d.data.datasets.ImageFolderDataset` for image files) and reshaped to what the Fin3R
step reads: :class:`MonoImages` (image, depth, ``K`` and whether depth and ``K`` are real) and
:class:`ReplayTuples` (``V`` views with ground-truth points in the first view's camera frame).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from tune3d.data import find_scene_dirs, load_scene, load_scenes
from tune3d.data.datasets import ImageFolderDataset, view_item
from tune3d.data.sources import IMAGE_EXTENSIONS
from tune3d.errors import Tune3DError
from tune3d.geometry import depth_to_pointmap, invert_rigid


def distill_resolution(resolution: tuple[int, int] | None, patch: int) -> tuple[int, int]:
    """Training ``(H, W)``: ``resolution`` checked against the patch size; ``None`` = 224x224 rounded down."""
    if resolution is None:
        return (224 // patch * patch, 224 // patch * patch)
    H, W = (int(v) for v in resolution)
    if H < patch or W < patch or H % patch or W % patch:
        raise Tune3DError(
            f"--resolution {H}x{W} must be positive multiples of the model's patch size {patch}"
        )
    return H, W


def _nominal_K(H: int, W: int) -> np.ndarray:
    """Stand-in intrinsics for images without calibration; only used where just z-depth matters."""
    f = float(max(H, W))
    return np.array([[f, 0.0, W / 2], [0.0, f, H / 2], [0.0, 0.0, 1.0]])


def _frame_item(frame: Any, resolution: tuple[int, int] | None) -> dict[str, Any]:
    # Fin3R reads no labels: drop them so a scene's semantics are neither loaded nor checked.
    return view_item(dataclasses.replace(frame, semantics_source=None), resolution)


class MonoImages(Dataset):
    """Single images at ``resolution``: an image folder (no depth, no intrinsics) or the frames of scenes.

    Items: ``image`` ``3,H,W`` in [0, 1]; ``depth`` ``H,W`` metres (zeros without depth); ``K`` ``3,3``
    float32 (nominal without calibration); ``has_depth`` / ``has_K`` bool tensors.
    """

    def __init__(self, items: Sequence[Any], resolution: tuple[int, int]) -> None:
        self.items = list(items)  # Path (image file) or Frame
        self.H, self.W = resolution
        files = [i for i, it in enumerate(self.items) if isinstance(it, Path)]
        self._file_pos = {i: k for k, i in enumerate(files)}
        self._files = ImageFolderDataset([self.items[i] for i in files], resolution) if files else None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        H, W = self.H, self.W
        if isinstance(self.items[i], Path):
            image = self._files[self._file_pos[i % len(self.items)]]["image"]
            depth, K, has_depth, has_K = torch.zeros(H, W), _nominal_K(H, W), False, False
        else:
            item = _frame_item(self.items[i], (H, W))
            image, depth, K = item["image"], item["depth"][0].float(), item["K"]
            has_depth, has_K = item["has_depth"], True
        return {
            "image": image,
            "depth": depth,
            "K": torch.as_tensor(K, dtype=torch.float32),
            "has_depth": torch.tensor(has_depth),
            "has_K": torch.tensor(has_K),
        }


class ReplayTuples(Dataset):
    """Labelled multi-view tuples from scenes with depth and poses.

    Tuple ``j`` of a scene is frames ``start, start + stride, ..., start + (V-1)·stride``. Items: ``images``
    ``V,3,H,W``; ``depth`` ``V,H,W``; ``K`` ``V,3,3``; ``c2w`` ``V,4,4`` (float64); ``pts3d`` ``V,H,W,3``
    every view's ground-truth points
    in the **first view's camera frame**; ``valid`` ``V,H,W`` bool.
    """

    def __init__(self, scenes: Sequence[Any], num_views: int, resolution: tuple[int, int], stride: int = 1):
        self.H, self.W = resolution
        self.tuples: list[tuple[Any, list[int]]] = []
        span = (num_views - 1) * stride
        for scene in scenes:
            if not scene.has_depth:
                raise Tune3DError(
                    f"{scene.path or scene.name}: replay scenes need depth maps for every frame"
                )
            for start in range(len(scene) - span):
                self.tuples.append((scene, [start + k * stride for k in range(num_views)]))
        if not self.tuples:
            raise Tune3DError(
                f"replay data: no scene has {span + 1} frames ({num_views}-view tuples, stride {stride})"
            )

    def __len__(self) -> int:
        return len(self.tuples)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        scene, idx = self.tuples[i]
        frames = [scene[j].resized(self.H, self.W) for j in idx]
        items = [_frame_item(f, None) for f in frames]
        images = torch.stack([it["image"] for it in items])
        depth = torch.stack([it["depth"][0].float() for it in items])
        # K and poses from the frames themselves: the geometry below is done in float64.
        K = torch.from_numpy(np.stack([f.K for f in frames]))
        c2w = torch.from_numpy(np.stack([f.c2w for f in frames]))
        rel = invert_rigid(c2w[0]) @ c2w  # view k's camera -> first camera, float64
        pts = depth_to_pointmap(depth.double(), K, rel).float()
        valid = torch.isfinite(depth) & (depth > 0)
        return {"images": images, "depth": depth, "K": K.float(), "c2w": c2w, "pts3d": pts, "valid": valid}


class EmptyDataset(Dataset):
    """No items (a run without replay data)."""

    def __len__(self) -> int:
        return 0

    def __getitem__(self, i: int) -> Any:
        raise IndexError(i)


def _image_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def load_mono_items(path: str | Path) -> tuple[list[Any], list[Any], bool]:
    """Mono data -> ``(train items, held-out items, every train item has depth)`` for :class:`MonoImages`.

    ``path``: a folder of images, or one or more scenes (any layout :func:`tune3d.data.load_scenes` reads).
    Scenes that declare both a ``train`` and a non-empty ``test`` split train on ``train`` and keep ``test``
    for the before/after check; otherwise every frame trains and nothing is held out. Only the images are
    used, unless the teacher is ``sensor`` (then the frames' depth is the target).
    """
    p = Path(path)
    if not p.exists():
        raise Tune3DError(f"{p}: mono data not found")
    if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
        return [p], [], False
    # Decide the kind once, from the layout alone: a scene (or folder of scenes) is loaded and its own
    # errors (a NaN pose, a truncated image) are reported; only a folder that is no scene is an image folder.
    try:
        scene_dirs = find_scene_dirs(p)
    except Tune3DError:
        if p.is_dir() and _image_files(p):
            return _image_files(p), [], False
        raise
    scenes = [load_scene(d) for d in scene_dirs]
    train, held = [], []
    for s in scenes:
        if s.splits.get("train") and s.splits.get("test"):
            train.extend(s[i] for i in s.splits["train"])
            held.extend(s[i] for i in s.splits["test"])
        else:
            train.extend(s)
    if not train:
        raise Tune3DError(f"{p}: no frames in the mono data")
    return train, held, all(f.has_depth for f in train)


def load_replay_scenes(path: str | Path) -> list[Any]:
    p = Path(path)
    if not p.exists():
        raise Tune3DError(f"{p}: replay data not found")
    return load_scenes(p)


def load_inputs(
    mono_data: str | Path, replay_data: str | Path | None, teacher_spec: str, replay_ratio: float
) -> tuple[list[Any], list[Any], list[Any]]:
    """A run's inputs -> ``(mono train items, mono held-out items, replay scenes)``, checked before any model
    is built: the ``sensor`` teacher needs mono data with depth, ``replay_ratio > 0`` needs replay data."""
    mono_items, held_items, mono_has_depth = load_mono_items(mono_data)
    if teacher_spec == "sensor" and not mono_has_depth:
        raise Tune3DError(
            f"{mono_data}: the 'sensor' teacher needs mono data with depth (scenes, not images)"
        )
    use_replay = replay_data is not None and replay_ratio > 0
    replay_scenes = load_replay_scenes(replay_data) if use_replay else []
    if replay_ratio > 0 and not replay_scenes:
        raise Tune3DError("--replay-ratio > 0 needs --replay DATA (or pass --replay-ratio 0)")
    return mono_items, held_items, replay_scenes
