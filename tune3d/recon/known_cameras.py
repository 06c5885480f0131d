"""Known cameras for ``tune3d reconstruct --poses``: read a ``cameras.json`` (tune3d's own output) or any
scene folder tune3d reads, and carry its intrinsics to the model input.

Intrinsics given at the original image size follow the input's resize and crop
(``Prepared.transforms``); intrinsics already at the model-input size are used as they are.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from tune3d.data import load_scene
from tune3d.errors import Tune3DError
from tune3d.geometry.cameras import crop_K, make_K, scale_K
from tune3d.io import read_json


def _read(path: Path) -> tuple[np.ndarray, list[np.ndarray | None], list[tuple[int, int] | None]]:
    if path.is_file():
        try:
            frames = read_json(path)["frames"]
            c2w = np.array([f["c2w"] for f in frames], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as e:
            raise Tune3DError(f"{path}: not a cameras.json with frames[].c2w ({e})") from None
        K = [np.array(f["K"], dtype=np.float64) if "K" in f else None for f in frames]
        sizes = [
            (int(f["height"]), int(f["width"])) if "width" in f and "height" in f else None for f in frames
        ]
        return c2w, K, sizes
    if path.is_dir():
        scene = load_scene(path)
        return scene.c2w, [f.K for f in scene.frames], [(f.height, f.width) for f in scene.frames]
    raise Tune3DError(f"{path}: poses file or scene folder not found")


def load_known_cameras(
    path: str | os.PathLike, prep, use_intrinsics: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(c2w S,4,4, K S,3,3 or None)`` for the ``S`` prepared images from ``path`` (one view per image,
    in order)."""
    path = Path(path)
    c2w, Ks, sizes = _read(path)
    S, H, W = prep.images.shape[0], prep.images.shape[2], prep.images.shape[3]
    if len(c2w) != S:
        raise Tune3DError(f"{path}: has {len(c2w)} views but {S} images were given")
    if c2w.shape[1:] != (4, 4) or not np.isfinite(c2w).all():
        raise Tune3DError(f"{path}: poses must be finite 4x4 camera-to-world matrices")
    if not use_intrinsics or any(k is None for k in Ks):
        return torch.from_numpy(c2w), None
    out = []
    for k, (K, size) in enumerate(zip(Ks, sizes)):
        K = torch.as_tensor(K, dtype=torch.float64)
        if size == (H, W):
            out.append(K)
        elif size is None or size == tuple(prep.original_sizes[k]):
            sx, sy, left, top = prep.transforms[k]
            out.append(crop_K(scale_K(K, sx, sy), left, top))
        else:
            raise Tune3DError(
                f"{path}: view {k} is {size[1]}x{size[0]}, matching neither image {prep.names[k]!r} "
                f"({prep.original_sizes[k][1]}x{prep.original_sizes[k][0]}) nor the model input ({W}x{H})"
            )
    return torch.from_numpy(c2w), torch.stack(out)


def load_intrinsics(path: str | os.PathLike, prep) -> torch.Tensor:
    """``K`` ``S,3,3`` at the model input from a text file holding one pinhole ``K`` for the original
    images: a 3x3 matrix (as 7-Scenes' ``camera-intrinsics.txt``) or the four numbers ``fx fy cx cy``."""
    path = Path(path)
    if not path.is_file():
        raise Tune3DError(f"{path}: intrinsics file not found")
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError:
        raise Tune3DError(f"{path}: intrinsics must be numbers (a 3x3 matrix or fx fy cx cy)") from None
    if values.size == 9:
        K = torch.from_numpy(values.reshape(3, 3))
    elif values.size == 4:
        K = make_K(*map(float, values))
    else:
        raise Tune3DError(f"{path}: expected a 3x3 matrix or fx fy cx cy, got {values.size} numbers")
    if not (np.isfinite(values).all() and K[0, 0] > 0 and K[1, 1] > 0):
        raise Tune3DError(f"{path}: focal lengths must be finite and positive")
    out = []
    for sx, sy, left, top in prep.transforms:
        out.append(crop_K(scale_K(K, sx, sy), left, top))
    return torch.stack(out)
