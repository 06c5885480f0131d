"""Scene point clouds: the stored one, or one back-projected from depth for RGB-D scenes."""

from __future__ import annotations

import numpy as np
import torch

from tune3d.data.scene import Scene
from tune3d.errors import Tune3DError
from tune3d.geometry import depth_to_pointmap


def scene_point_cloud(
    scene: Scene,
    max_points: int = 200_000,
    stride: int = 4,
    num_frames: int = 32,
    seed: int = 0,
    use_stored: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) float32 world points and (N, 3) uint8 colours for ``scene``.

    Returns ``scene.points`` when stored (and ``use_stored``); otherwise back-projects the depth of
    ``num_frames`` evenly spaced frames, every ``stride``-th pixel, and keeps a random (seeded) subset
    of at most ``max_points`` valid points.
    """
    if use_stored and scene.points is not None:
        colors = scene.point_colors
        if colors is None:
            colors = np.full((len(scene.points), 3), 128, np.uint8)
        return scene.points, colors
    if not scene.has_depth:
        raise Tune3DError(f"{scene.path or scene.name}: no stored point cloud and no depth to back-project")
    idx = np.unique(np.linspace(0, len(scene) - 1, min(num_frames, len(scene))).round().astype(int))
    pts, cols = [], []
    for i in idx:
        f = scene[int(i)]
        depth = f.depth()[::stride, ::stride]
        rgb = f.image()[::stride, ::stride]
        # Pixel j of the strided map is pixel j*s of the original: u = s*(u' - 0.5) + 0.5, hence
        # K' has focal f/s and principal point c/s + 0.5 - 0.5/s.
        K = f.K.copy()
        K[:2] /= stride
        K[0, 2] += 0.5 - 0.5 / stride
        K[1, 2] += 0.5 - 0.5 / stride
        pm = depth_to_pointmap(
            torch.from_numpy(depth.astype(np.float64)), torch.from_numpy(K), torch.from_numpy(f.c2w)
        )
        valid = depth > 0
        pts.append(pm.numpy()[valid].astype(np.float32))
        cols.append(rgb[valid])
    points, colors = np.concatenate(pts), np.concatenate(cols)
    if len(points) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(points), max_points, replace=False))
        points, colors = points[keep], colors[keep]
    return points, colors
