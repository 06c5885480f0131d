"""Co-visibility between the frames of a scene, from depth (and poses) or from its point cloud.

Two forms: :func:`overlap_matrix` on a :class:`~tune3d.data.Scene` (depth sampled on a coarse lattice, or the
scene's point cloud when it has no depth; used by :class:`~tune3d.data.datasets.MultiViewDataset`) and
:func:`covisibility` / :func:`covisible_partners` on frames already in memory as tensors (every valid pixel
of a quarter-resolution depth map; used to sample training and evaluation tuples of reconstruction models).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from tune3d.data.scene import Frame, Scene
from tune3d.errors import Tune3DError
from tune3d.geometry.cameras import depth_to_pointmap, invert_rigid, project, transform_points

__all__ = ["covisibility", "covisible_partners", "overlap_matrix", "pixel_correspondences"]


def _frame_points(frame: Frame, grid: int) -> np.ndarray:
    """World points from a ``grid x grid`` subsample of the frame's valid depth, (N, 3) float64."""
    depth = frame.depth()
    H, W = depth.shape
    v = ((np.arange(grid) + 0.5) * H / grid).astype(int)
    u = ((np.arange(grid) + 0.5) * W / grid).astype(int)
    z = depth[v[:, None], u[None, :]]
    uu, vv = np.meshgrid(u + 0.5, v + 0.5)
    ok = z > 0
    K = frame.K
    x = (uu[ok] - K[0, 2]) / K[0, 0] * z[ok]
    y = (vv[ok] - K[1, 2]) / K[1, 1] * z[ok]
    cam = np.stack([x, y, z[ok]], 1)
    return cam @ frame.c2w[:3, :3].T + frame.c2w[:3, 3]


def _visible(points: np.ndarray, frame: Frame, depth: np.ndarray | None, rel_tol: float = 0.1) -> np.ndarray:
    """Which world points project inside ``frame`` in front of it (and agree with its depth if given)."""
    vm = frame.viewmat
    cam = points @ vm[:3, :3].T + vm[:3, 3]
    z = cam[:, 2]
    front = z > 1e-3
    zs = np.where(front, z, 1.0)
    u = frame.K[0, 0] * cam[:, 0] / zs + frame.K[0, 2]
    v = frame.K[1, 1] * cam[:, 1] / zs + frame.K[1, 2]
    inside = front & (u >= 0) & (u < frame.width) & (v >= 0) & (v < frame.height)
    if depth is not None and inside.any():
        ui = np.clip(u[inside].astype(int), 0, frame.width - 1)
        vi = np.clip(v[inside].astype(int), 0, frame.height - 1)
        d = depth[vi, ui]
        agree = (d <= 0) | (np.abs(d - z[inside]) <= rel_tol * d)  # unknown depth counts as visible
        inside[np.flatnonzero(inside)[~agree]] = False
    return inside


def overlap_matrix(
    scene: Scene, indices: Sequence[int], grid: int = 24, use_depth_test: bool = True
) -> np.ndarray:
    """(n, n) co-visibility: entry (a, b) = fraction of frame a's depth points visible in frame b.

    Uses each frame's depth (subsampled on a ``grid x grid`` lattice) and, when ``use_depth_test``,
    rejects points occluded in frame b (z disagrees with b's depth by > 10 %). Scenes without depth
    fall back to the stored point cloud: the fraction of points seen by a that are also seen by b.
    """
    frames = [scene[int(i)] for i in indices]
    n = len(frames)
    M = np.zeros((n, n))
    if scene.has_depth:
        depths = [f.depth() for f in frames] if use_depth_test else [None] * n
        for a, fa in enumerate(frames):
            pts = _frame_points(fa, grid)
            if len(pts) == 0:
                continue
            for b, fb in enumerate(frames):
                M[a, b] = 1.0 if a == b else _visible(pts, fb, depths[b]).mean()
        return M
    if scene.points is not None and len(scene.points):
        pts = scene.points.astype(np.float64)
        if len(pts) > 20000:
            pts = pts[np.random.default_rng(0).choice(len(pts), 20000, replace=False)]
        vis = np.stack([_visible(pts, f, None) for f in frames])  # (n, P)
        counts = vis.sum(1)
        inter = vis.astype(np.float64) @ vis.T.astype(np.float64)
        return np.where(counts[:, None] > 0, inter / np.maximum(counts[:, None], 1), 0.0)
    raise Tune3DError(f"{scene.path or scene.name}: overlap needs depth or a point cloud")


def pixel_correspondences(
    depth_i: Tensor,
    K_i: Tensor,
    c2w_i: Tensor,
    depth_j: Tensor,
    K_j: Tensor,
    c2w_j: Tensor,
    rtol: float = 0.1,
) -> tuple[Tensor, Tensor, int]:
    """Ground-truth pixel matches from frame ``i`` to frame ``j`` by reprojecting ``i``'s depth.

    ``depth_*`` ``H,W`` (0 = invalid), ``K_*`` ``3,3``, ``c2w_*`` ``4,4``. A valid pixel of ``i`` matches the
    pixel of ``j`` it projects into when it lies in front of camera ``j``, inside its image, and within
    ``rtol`` of ``j``'s depth there (occlusion test). Returns ``(xy_i, xy_j, n_valid)``: integer pixel
    coordinates ``M,2`` (x, y) of the matches in both frames, and the number of valid pixels of ``i``.
    """
    valid = depth_i > 0
    ys, xs = valid.nonzero(as_tuple=True)
    pts = depth_to_pointmap(depth_i.double(), K_i.double(), c2w_i.double())[ys, xs]
    uv, z = project(transform_points(invert_rigid(c2w_j.double()), pts), K_j.double())
    H, W = depth_j.shape[-2:]
    u, v = uv[:, 0].floor().long(), uv[:, 1].floor().long()
    inside = (z > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    dj = torch.zeros_like(z)
    dj[inside] = depth_j[v[inside], u[inside]].double()
    ok = inside & (dj > 0) & ((z - dj).abs() <= rtol * dj)
    return torch.stack([xs[ok], ys[ok]], -1), torch.stack([u[ok], v[ok]], -1), int(valid.sum())


def covisibility(depth: Tensor, K: Tensor, c2w: Tensor, i: int, j: int, rtol: float = 0.1) -> float:
    """Fraction of frame ``i``'s valid pixels that land inside frame ``j`` with a consistent depth
    (:func:`pixel_correspondences`). ``depth`` ``N,H,W`` (0 = invalid), ``K`` ``N,3,3``, ``c2w`` ``N,4,4``."""
    xy_i, _, n_valid = pixel_correspondences(depth[i], K[i], c2w[i], depth[j], K[j], c2w[j], rtol)
    return float(len(xy_i)) / n_valid if n_valid else 0.0


def covisible_partners(
    depth: Tensor, K: Tensor, c2w: Tensor, views: int, min_overlap: float, max_gap: int
) -> list[list[int]]:
    """For each frame, the frames within ``max_gap`` indices whose :func:`covisibility` with it is at least
    ``min_overlap``, measured on quarter-resolution depth. ``depth`` ``N,H,W``, ``K`` ``N,3,3``, ``c2w``
    ``N,4,4``; ``views == 1`` gives empty lists."""
    n = depth.shape[0]
    if views == 1:
        return [[] for _ in range(n)]
    small = torch.nn.functional.interpolate(depth[:, None], scale_factor=0.25, mode="nearest")[:, 0]
    sK = K.clone()
    sK[:, :2] *= small.shape[-1] / depth.shape[-1]
    out = []
    for i in range(n):
        cand = [j for j in range(max(0, i - max_gap), min(n, i + max_gap + 1)) if j != i]
        out.append([j for j in cand if covisibility(small, sK, c2w, i, j) >= min_overlap])
    return out
