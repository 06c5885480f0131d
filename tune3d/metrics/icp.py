"""Rigid point-to-point ICP and the Spann3R/CUT3R reconstruction alignment (Umeyama, then ICP).

Point clouds are ``N,3`` float arrays. ICP iterates: nearest ground-truth neighbour of every source
point, keep pairs closer than ``max_dist``, solve the rigid fit (Kabsch) on them, apply. This mirrors
Open3D's ``registration_icp`` with ``TransformationEstimationPointToPoint`` (threshold 0.1 m in the
Spann3R/CUT3R 7-Scenes/NRGBD evaluation), without an Open3D dependency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from tune3d.geometry.align import apply_sim3, umeyama_sim3


@dataclass
class ICPResult:
    """``T`` 4x4 rigid transform (applied as ``T @ [p; 1]``), ``fitness`` = fraction of source points with
    a neighbour within ``max_dist``, ``rmse`` over those pairs, ``iterations`` run."""

    T: np.ndarray
    fitness: float
    rmse: float
    iterations: int


def _kabsch(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rigid ``R, t`` minimising ``Σ ‖R src + t - dst‖²`` (no reflection)."""
    ms, md = src.mean(0), dst.mean(0)
    H = (src - ms).T @ (dst - md)
    U, _, Vt = np.linalg.svd(H)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T)) or 1.0])
    R = Vt.T @ D @ U.T
    return R, md - R @ ms


def icp_point_to_point(
    src: np.ndarray,
    dst: np.ndarray,
    max_dist: float,
    max_iters: int = 50,
    tol: float = 1e-7,
    init: np.ndarray | None = None,
) -> ICPResult:
    """Align ``src`` (N,3) to ``dst`` (M,3) rigidly; the accumulated transform (see :class:`ICPResult`).

    Stops when the relative change of the inlier RMSE is below ``tol`` or after ``max_iters``.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 3)
    T = np.eye(4) if init is None else np.asarray(init, dtype=np.float64).copy()
    if len(src) < 3 or len(dst) < 3:
        return ICPResult(T, 0.0, float("nan"), 0)
    tree = cKDTree(dst)
    cur = src @ T[:3, :3].T + T[:3, 3]
    prev_rmse = np.inf
    it = 0
    while it < max_iters:
        it += 1
        dist, idx = tree.query(cur, k=1, distance_upper_bound=max_dist, workers=1)
        ok = np.isfinite(dist)
        if ok.sum() < 3:
            break
        R, t = _kabsch(cur[ok], dst[idx[ok]])
        cur = cur @ R.T + t
        step = np.eye(4)
        step[:3, :3], step[:3, 3] = R, t
        T = step @ T
        rmse = float(np.sqrt(np.mean(dist[ok] ** 2)))
        if rmse < 1e-12 or abs(prev_rmse - rmse) <= tol * rmse:
            break
        prev_rmse = rmse
    dist, _ = tree.query(cur, k=1, distance_upper_bound=max_dist, workers=1)
    ok = np.isfinite(dist)
    fitness = float(ok.mean())
    rmse = float(np.sqrt(np.mean(dist[ok] ** 2))) if ok.any() else float("nan")
    return ICPResult(T, fitness, rmse, it)


def align_umeyama_icp(
    pred: np.ndarray,
    gt: np.ndarray,
    with_scale: bool = True,
    icp_max_dist: float | None = 0.1,
    icp_iters: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """Spann3R/CUT3R alignment of a predicted cloud onto the ground truth.

    ``pred``/``gt`` (N,3) are pixel-corresponding points (same valid pixels). First a Umeyama Sim(3)
    (``with_scale=False`` for metric predictions: rigid only) on the correspondences, then point-to-point
    ICP (no correspondences; ``icp_max_dist`` in GT units, None skips ICP). Returns ``(aligned (N,3),
    4x4 similarity applied)``.
    """
    p = torch.from_numpy(np.asarray(pred, dtype=np.float64).reshape(-1, 3))
    g = torch.from_numpy(np.asarray(gt, dtype=np.float64).reshape(-1, 3))
    s, R, t = umeyama_sim3(p, g, with_scale=with_scale)
    aligned = apply_sim3(s, R, t, p).numpy()
    S = np.eye(4)
    S[:3, :3] = float(s) * R.numpy()
    S[:3, 3] = t.numpy()
    if icp_max_dist is not None:
        res = icp_point_to_point(aligned, g.numpy(), icp_max_dist, icp_iters)
        aligned = aligned @ res.T[:3, :3].T + res.T[:3, 3]
        S = res.T @ S
    return aligned, S
