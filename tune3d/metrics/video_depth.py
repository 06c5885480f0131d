"""Video depth metrics (CUT3R / MonST3R protocol): one alignment per sequence, then Abs Rel and δ<1.25.

``pred``/``gt`` are ``S,H,W`` depth of all frames of one sequence (gt ``0`` / non-finite = invalid).
``align``: ``"scale"`` (one least-squares scale over every valid pixel of the sequence), ``"median"``
(one median-ratio scale), ``"scale_shift"`` (one least-squares scale and shift), ``"metric"`` (none).
Predictions are clipped to ``[min_depth, max_depth]`` after alignment. Metrics are pooled over all
valid pixels of the sequence (per-pixel mean), as in the MonST3R/CUT3R ``depth_evaluation``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tune3d.geometry.align import align_lstsq_scale, align_median_scale, align_scale_shift

VIDEO_DEPTH_ALIGNS = ("median", "scale", "scale_shift", "metric")


def video_depth_metrics(
    pred: Tensor,
    gt: Tensor,
    mask: Tensor | None = None,
    align: str = "scale",
    min_depth: float = 1e-3,
    max_depth: float | None = None,
) -> dict[str, float]:
    """``{"abs_rel", "delta1", "n_pixels"}`` of one sequence (fractions, not %) after one alignment."""
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"expected matching S,H,W depth, got {tuple(pred.shape)} and {tuple(gt.shape)}")
    if align not in VIDEO_DEPTH_ALIGNS:
        raise ValueError(f"unknown video depth alignment {align!r}; expected one of {VIDEO_DEPTH_ALIGNS}")
    p, g = pred.double().reshape(1, -1), gt.double().reshape(1, -1)
    valid = torch.isfinite(g) & (g > min_depth) & torch.isfinite(p)
    if max_depth is not None:
        valid &= g < max_depth
    if mask is not None:
        valid &= mask.reshape(1, -1).bool()
    if not valid.any():
        return {"abs_rel": math.nan, "delta1": math.nan, "n_pixels": 0.0}
    if align == "median":
        p, _ = align_median_scale(p, g, valid)
    elif align == "scale":
        p, _ = align_lstsq_scale(p, g, valid)
    elif align == "scale_shift":
        p, _, _ = align_scale_shift(p, g, valid)
    p = p.clamp(min=min_depth, max=max_depth)
    pv, gv = p[valid], g[valid]
    ratio = torch.maximum(pv / gv, gv / pv)
    return {
        "abs_rel": float(((pv - gv).abs() / gv).mean()),
        "delta1": float((ratio < 1.25).double().mean()),
        "n_pixels": float(valid.sum()),
    }
