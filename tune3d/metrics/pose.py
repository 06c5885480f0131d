"""Camera pose metrics: relative rotation/translation errors over all pairs, AUC, RRA/RTA."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from tune3d.geometry.pose import relative_pose, rotation_error_deg, translation_angle_deg


def relative_pose_errors(c2w_pred: Tensor, c2w_gt: Tensor, sign_invariant: bool = False) -> dict[str, Tensor]:
    """Relative-pose errors over every pair ``i < j`` of N cameras (N, 4, 4) c2w.

    For each pair the relative transform camera-i -> camera-j (``inv(c2w_j) @ c2w_i``) is compared:
    ``rot_err`` = geodesic angle between relative rotations, ``trans_err`` = angle between relative
    translation directions (scale-free; ``sign_invariant`` as in LoFTR/VGGT), both in degrees (P,).
    ``pairs`` (P, 2) holds the indices. Invariant to a global similarity transform of either trajectory.
    """
    if c2w_pred.shape != c2w_gt.shape or c2w_pred.shape[-2:] != (4, 4) or c2w_pred.ndim != 3:
        raise ValueError(
            f"expected matching (N,4,4) poses, got {tuple(c2w_pred.shape)} and {tuple(c2w_gt.shape)}"
        )
    n = c2w_pred.shape[0]
    pairs = torch.triu_indices(n, n, offset=1, device=c2w_pred.device).T
    i, j = pairs[:, 0], pairs[:, 1]
    rp = relative_pose(c2w_pred[i].double(), c2w_pred[j].double())
    rg = relative_pose(c2w_gt[i].double(), c2w_gt[j].double())
    return {
        "rot_err": rotation_error_deg(rp[:, :3, :3], rg[:, :3, :3]),
        "trans_err": translation_angle_deg(rp[:, :3, 3], rg[:, :3, 3], sign_invariant=sign_invariant),
        "pairs": pairs,
    }


def pose_auc(
    errors: Tensor | np.ndarray | list[float],
    thresholds: tuple[float, ...] = (5, 10, 20),
    method: str = "trapezoid",
) -> dict[str, float]:
    """Area under the recall-vs-error curve up to each threshold, normalised to [0, 1].

    ``errors`` are per-pair angles in degrees (usually ``max(rot_err, trans_err)``). ``"trapezoid"`` is
    the exact LoFTR/SuperGlue integral of the empirical recall curve (starting at (0, 0)); ``"histogram"``
    is the VGGT/CO3D variant: mean of the recall at 1° steps ``1, ..., threshold`` (integer thresholds).
    Returns ``{"auc@<t>": value}`` with ``t`` formatted with ``:g`` (e.g. ``auc@5``).
    """
    e = np.sort(np.asarray(errors.detach().cpu() if isinstance(errors, Tensor) else errors, dtype=np.float64))
    e = e[~np.isnan(e)]
    out = {}
    for thr in thresholds:
        if thr <= 0:
            raise ValueError(f"AUC thresholds must be positive, got {thr}")
        key = f"auc@{thr:g}"
        if e.size == 0:
            out[key] = math.nan
        elif method == "trapezoid":
            recall = np.arange(e.size + 1, dtype=np.float64) / e.size
            x = np.concatenate([[0.0], e])
            last = np.searchsorted(x, thr)  # points of the curve strictly below the threshold
            xs = np.concatenate([x[:last], [thr]])
            ys = np.concatenate([recall[:last], [recall[last - 1]]])
            out[key] = float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2) / thr)
        elif method == "histogram":
            hist, _ = np.histogram(e, bins=np.arange(int(thr) + 1))
            out[key] = float(np.mean(np.cumsum(hist) / e.size))
        else:
            raise ValueError(f"unknown AUC method {method!r}; expected 'trapezoid' or 'histogram'")
    return out


def rra_rta(rot_err: Tensor, trans_err: Tensor, threshold: float) -> tuple[float, float]:
    """Relative rotation / translation accuracy: fractions of pairs with error below ``threshold`` degrees."""
    return float((rot_err < threshold).double().mean()), float((trans_err < threshold).double().mean())


def pose_metrics(
    c2w_pred: Tensor,
    c2w_gt: Tensor,
    auc_thresholds: tuple[float, ...] = (5, 10, 20, 30),
    accuracy_thresholds: tuple[float, ...] = (5, 15, 30),
    sign_invariant: bool = False,
    auc_method: str = "trapezoid",
) -> dict[str, float]:
    """All pair-wise pose metrics for one trajectory: ``rot_err_mean``, ``rot_err_median``,
    ``trans_err_mean``, ``trans_err_median``, ``auc@<t>`` (on ``max(rot_err, trans_err)``), ``rra@<t>``,
    ``rta@<t>``."""
    err = relative_pose_errors(c2w_pred, c2w_gt, sign_invariant)
    r, t = err["rot_err"], err["trans_err"]
    out = {
        "rot_err_mean": float(r.mean()),
        "rot_err_median": float(np.median(r.cpu().numpy())),
        "trans_err_mean": float(t.mean()),
        "trans_err_median": float(np.median(t.cpu().numpy())),
    }
    out.update(pose_auc(torch.maximum(r, t), auc_thresholds, auc_method))
    for thr in accuracy_thresholds:
        out[f"rra@{thr:g}"], out[f"rta@{thr:g}"] = rra_rta(r, t, thr)
    return out
