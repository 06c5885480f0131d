"""Point-cloud / pointmap metrics.

Reconstruction (Spann3R / DUSt3R 7-Scenes protocol, NICE-SLAM lineage): ``acc`` = mean distance from each
predicted point to its nearest ground-truth point, ``comp`` = the reverse, ``nc`` = mean ``|n_pred·n_gt|``
over nearest-neighbour pairs in both directions, averaged. Spann3R additionally runs ICP after the coarse
alignment and estimates normals with Open3D; here the alignment is Umeyama/least squares only and normals
come from the pointmap grid (``tune3d.geometry.pointmap_to_normals``) unless given.

Per-point (MoGe): ``rel_point`` = mean ``‖p̂ - p‖ / ‖p‖``; ``delta1_point`` = fraction with
``‖p̂ - p‖ < 0.25 · min(‖p‖, ‖p̂‖)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from tune3d.geometry.align import align_points_scale, align_points_scale_shift, apply_sim3, umeyama_sim3
from tune3d.geometry.pointmap import pointmap_to_normals

POINTMAP_ALIGN_MODES = ("none", "scale", "scale_shift", "umeyama")
POINTMAP_METRIC_KEYS = (
    "acc",
    "acc_med",
    "comp",
    "comp_med",
    "chamfer",
    "nc",
    "nc_acc",
    "nc_comp",
    "rel_point",
    "delta1_point",
)


def _np(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64).reshape(-1, 3)


def nearest_neighbors(query: Tensor | np.ndarray, ref: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query point (N, 3), the distance to and index of its nearest ``ref`` point (M, 3)."""
    q, r = _np(query), _np(ref)
    if len(r) == 0:
        return np.full(len(q), np.inf), np.zeros(len(q), dtype=np.int64)
    dist, idx = cKDTree(r).query(q, k=1, workers=1)
    return dist, idx


def accuracy(
    pred_points: Tensor | np.ndarray, gt_points: Tensor | np.ndarray, reduction: str = "mean"
) -> float:
    """Mean (or ``reduction="median"``) distance from predicted points (N,3) to their nearest GT point."""
    dist, _ = nearest_neighbors(pred_points, gt_points)
    return _reduce(dist, reduction)


def completeness(
    pred_points: Tensor | np.ndarray, gt_points: Tensor | np.ndarray, reduction: str = "mean"
) -> float:
    """Mean (or median) distance from GT points (M,3) to their nearest predicted point."""
    dist, _ = nearest_neighbors(gt_points, pred_points)
    return _reduce(dist, reduction)


def normal_consistency(
    pred_points: Tensor | np.ndarray,
    gt_points: Tensor | np.ndarray,
    pred_normals: Tensor | np.ndarray,
    gt_normals: Tensor | np.ndarray,
) -> float:
    """Mean ``|n_pred · n_gt|`` over nearest-neighbour pairs, averaged over both directions (pred->gt and
    gt->pred), with unit normals (N,3)/(M,3). Rows with a zero normal (unknown) are left out of the mean."""
    return _nc(pred_points, gt_points, _np(pred_normals), _np(gt_normals))[0]


def _reduce(x: np.ndarray, reduction: str) -> float:
    if x.size == 0:
        return math.nan
    if reduction == "mean":
        return float(x.mean())
    if reduction == "median":
        return float(np.median(x))
    raise ValueError(f"unknown reduction {reduction!r}; expected 'mean' or 'median'")


def _nc(pred, gt, n_pred, n_gt, nn_pg=None, nn_gp=None) -> tuple[float, float, float]:
    _, i_pg = nearest_neighbors(pred, gt) if nn_pg is None else nn_pg
    _, i_gp = nearest_neighbors(gt, pred) if nn_gp is None else nn_gp
    if len(n_gt) == 0 or len(n_pred) == 0:
        return math.nan, math.nan, math.nan
    d_acc = np.abs((n_pred * n_gt[i_pg]).sum(-1))
    ok_acc = (np.linalg.norm(n_pred, axis=-1) > 0) & (np.linalg.norm(n_gt[i_pg], axis=-1) > 0)
    d_comp = np.abs((n_gt * n_pred[i_gp]).sum(-1))
    ok_comp = (np.linalg.norm(n_gt, axis=-1) > 0) & (np.linalg.norm(n_pred[i_gp], axis=-1) > 0)
    nc_acc = _reduce(d_acc[ok_acc], "mean")
    nc_comp = _reduce(d_comp[ok_comp], "mean")
    return 0.5 * (nc_acc + nc_comp), nc_acc, nc_comp


def rel_point(pred: Tensor, gt: Tensor, mask: Tensor | None = None) -> Tensor:
    """MoGe relative point error ``mean ‖p̂ - p‖ / ‖p‖`` per batch element of (B, ..., 3) -> (B,)."""
    err, v = _point_err(pred, gt, mask)
    ratio = err / gt.reshape(gt.shape[0], -1, 3).double().norm(dim=-1).clamp_min(1e-12)
    return _masked_mean(ratio, v).to(pred.dtype)


def delta1_point(pred: Tensor, gt: Tensor, mask: Tensor | None = None) -> Tensor:
    """MoGe inlier ratio: fraction with ``‖p̂ - p‖ < 0.25 · min(‖p‖, ‖p̂‖)`` per batch element -> (B,)."""
    err, v = _point_err(pred, gt, mask)
    B = pred.shape[0]
    n = torch.minimum(
        pred.reshape(B, -1, 3).double().norm(dim=-1), gt.reshape(B, -1, 3).double().norm(dim=-1)
    )
    return _masked_mean((err < 0.25 * n).double(), v).to(pred.dtype)


def _point_err(pred: Tensor, gt: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    if pred.shape != gt.shape or pred.shape[-1] != 3 or pred.ndim < 2:
        raise ValueError(
            f"expected matching (B, ..., 3) pointmaps, got {tuple(pred.shape)} and {tuple(gt.shape)}"
        )
    B = pred.shape[0]
    p, g = pred.reshape(B, -1, 3).double(), gt.reshape(B, -1, 3).double()
    v = torch.isfinite(p).all(-1) & torch.isfinite(g).all(-1) & (g.norm(dim=-1) > 0)
    if mask is not None:
        v &= mask.reshape(B, -1).bool()
    return (p - g).norm(dim=-1), v


def _masked_mean(x: Tensor, v: Tensor) -> Tensor:
    n = v.sum(1)
    s = torch.where(v, x, torch.zeros_like(x)).sum(1)
    return torch.where(n > 0, s / n.clamp_min(1), torch.full_like(s, math.nan))


def align_pointmaps(pred: Tensor, gt: Tensor, mask: Tensor | None = None, align: str = "umeyama") -> Tensor:
    """Align all views of one scene (..., H, W, 3) jointly to the GT with one transform.

    ``align`` is one of ``POINTMAP_ALIGN_MODES``; ``mask`` (..., H, W) selects the points used for the fit.
    """
    if align == "none":
        return pred
    p, g = pred.reshape(1, -1, 3), gt.reshape(1, -1, 3)
    m = None if mask is None else mask.reshape(1, -1)
    if align == "umeyama":
        s, R, t = umeyama_sim3(p, g, m)
        out = apply_sim3(s, R, t, p)
    elif align == "scale":
        out, _ = align_points_scale(p, g, m)
    elif align == "scale_shift":
        out, _, _ = align_points_scale_shift(p, g, m)
    else:
        raise ValueError(f"unknown pointmap alignment {align!r}; expected one of {POINTMAP_ALIGN_MODES}")
    return out.reshape(pred.shape)


def pointmap_metrics(
    pred: Tensor,
    gt: Tensor,
    mask: Tensor | None = None,
    align: str = "umeyama",
    pred_normals: Tensor | None = None,
    gt_normals: Tensor | None = None,
    max_points: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Reconstruction and per-point metrics for one scene.

    ``pred``/``gt``: pointmaps (..., H, W, 3) in a common frame (all leading dims = views of one scene);
    ``mask`` (..., H, W) marks valid GT pixels. ``align`` fits one transform from all valid points of the
    scene (``"umeyama"`` Sim(3), ``"scale"``, ``"scale_shift"`` MoGe affine, or ``"none"``). Normals are
    taken from the pointmaps after alignment unless given (..., H, W, 3). ``max_points`` randomly
    subsamples (``seed``) each cloud for the nearest-neighbour metrics. Returns floats for
    ``POINTMAP_METRIC_KEYS``: ``acc``, ``acc_med``, ``comp``, ``comp_med``, ``chamfer`` (=(acc+comp)/2),
    ``nc``, ``nc_acc``, ``nc_comp``, ``rel_point``, ``delta1_point``.
    """
    if pred.shape != gt.shape or pred.shape[-1] != 3 or pred.ndim < 3:
        raise ValueError(
            f"expected matching (..., H, W, 3) pointmaps, got {tuple(pred.shape)} and {tuple(gt.shape)}"
        )
    valid = torch.isfinite(gt).all(-1) & torch.isfinite(pred).all(-1)
    if mask is not None:
        valid &= mask.bool()
    pred = align_pointmaps(pred.double(), gt.double(), valid, align)
    gt = gt.double()
    if pred_normals is None:
        pred_normals, pv = pointmap_to_normals(pred, valid)
        pred_normals = torch.where(pv[..., None], pred_normals, torch.zeros_like(pred_normals))
    if gt_normals is None:
        gt_normals, gv = pointmap_to_normals(gt, valid)
        gt_normals = torch.where(gv[..., None], gt_normals, torch.zeros_like(gt_normals))

    v = valid.reshape(-1)
    P, G = _np(pred)[v.cpu().numpy()], _np(gt)[v.cpu().numpy()]
    NP, NG = _np(pred_normals)[v.cpu().numpy()], _np(gt_normals)[v.cpu().numpy()]
    if max_points is not None and len(P) > max_points:
        rng = np.random.default_rng(seed)
        ip = rng.choice(len(P), max_points, replace=False)
        ig = rng.choice(len(G), max_points, replace=False)
        P, NP, G, NG = P[ip], NP[ip], G[ig], NG[ig]

    nn_pg = nearest_neighbors(P, G)
    nn_gp = nearest_neighbors(G, P)
    nc, nc_acc, nc_comp = _nc(P, G, NP, NG, nn_pg, nn_gp)
    acc, comp = _reduce(nn_pg[0], "mean"), _reduce(nn_gp[0], "mean")
    flat_p, flat_g, flat_m = pred.reshape(1, -1, 3), gt.reshape(1, -1, 3), valid.reshape(1, -1)
    return {
        "acc": acc,
        "acc_med": _reduce(nn_pg[0], "median"),
        "comp": comp,
        "comp_med": _reduce(nn_gp[0], "median"),
        "chamfer": 0.5 * (acc + comp),
        "nc": nc,
        "nc_acc": nc_acc,
        "nc_comp": nc_comp,
        "rel_point": float(rel_point(flat_p, flat_g, flat_m)[0]),
        "delta1_point": float(delta1_point(flat_p, flat_g, flat_m)[0]),
    }
