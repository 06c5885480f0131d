"""Monocular depth metrics (Eigen et al. / Depth-Anything-V2 convention).

Metrics are computed per image over valid pixels (``mask`` & finite & ``min_depth <= gt <= max_depth``)
after optional alignment (``tune3d.geometry.align_depth``), with predictions clipped to
``[min_depth, max_depth]``; a batch is summarised by the mean over images (images without valid pixels
are skipped). Averaging per image, not per pixel, is what DA-V2/MoGe do when they loop over a test set.

``silog`` is ``sqrt(mean(g²) - 0.5·mean(g)²) · 100`` with ``g = log(pred) - log(gt)``: the ×100 follows the
KITTI benchmark / BTS / AdaBins reporting (DA-V2's ``metric.py`` leaves it unscaled). Deltas are fractions
in [0, 1], not percentages.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from tune3d.geometry.align import align_depth

DEPTH_METRIC_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3", "silog")


def _as_batch(x: Tensor) -> Tensor:
    """(H,W) | (B,H,W) | (B,1,H,W) -> (B,H,W)."""
    if x.ndim == 2:
        return x[None]
    if x.ndim == 3:
        return x
    if x.ndim == 4 and x.shape[1] == 1:
        return x[:, 0]
    raise ValueError(f"expected depth of shape (H,W), (B,H,W) or (B,1,H,W), got {tuple(x.shape)}")


def depth_metrics_per_image(
    pred: Tensor,
    gt: Tensor,
    mask: Tensor | None = None,
    min_depth: float = 1e-3,
    max_depth: float | None = None,
    align: str = "none",
) -> dict[str, Tensor]:
    """Per-image metrics: dict of ``DEPTH_METRIC_KEYS`` -> float64 tensors (B,), NaN for images without
    valid pixels.

    ``pred``/``gt``: (H,W), (B,H,W) or (B,1,H,W) metres (gt 0 = invalid); ``mask`` same shape (bool).
    ``align``: ``"none" | "median" | "scale" | "scale_shift" | "affine_disparity"`` (fitted per image on the
    valid pixels before clipping).
    """
    p, g = _as_batch(pred), _as_batch(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in shape")
    valid = torch.isfinite(g) & (g > 0) & (g >= min_depth)
    if max_depth is not None:
        valid &= g <= max_depth
    if mask is not None:
        valid &= _as_batch(mask).bool()
    p, g = p.double(), g.double()
    p, _ = align_depth(p, g, valid, align)
    p = p.nan_to_num(nan=min_depth).clamp(min=min_depth, max=max_depth)

    B = p.shape[0]
    p, g, v = p.reshape(B, -1), g.reshape(B, -1), valid.reshape(B, -1).double()
    g = torch.where(valid.reshape(B, -1), g, torch.ones_like(g))  # keeps logs/divisions finite off-mask
    n = v.sum(1)

    def mean(x: Tensor) -> Tensor:
        return (x * v).sum(1) / n

    diff = p - g
    glog = torch.log(p) - torch.log(g)
    ratio = torch.maximum(p / g, g / p)
    out = {
        "abs_rel": mean(diff.abs() / g),
        "sq_rel": mean(diff**2 / g),
        "rmse": mean(diff**2).sqrt(),
        "rmse_log": mean(glog**2).sqrt(),
        "log10": mean((torch.log10(p) - torch.log10(g)).abs()),
        "delta1": mean((ratio < 1.25).double()),
        "delta2": mean((ratio < 1.25**2).double()),
        "delta3": mean((ratio < 1.25**3).double()),
        "silog": (mean(glog**2) - 0.5 * mean(glog) ** 2).clamp_min(0).sqrt() * 100,
    }
    empty = n == 0
    return {k: torch.where(empty, torch.full_like(val, math.nan), val) for k, val in out.items()}


def depth_metrics(pred: Tensor, gt: Tensor, mask: Tensor | None = None, **options: Any) -> dict[str, float]:
    """Depth metrics averaged over the images of a batch: :func:`depth_metrics_per_image` with the same
    arguments (``options``: ``min_depth``, ``max_depth``, ``align``), then the mean over the images with a
    valid pixel. Returns ``{key: float}`` for ``DEPTH_METRIC_KEYS``; all NaN if no image has one.
    """
    per = depth_metrics_per_image(pred, gt, mask, **options)
    return {k: float(v.nanmean()) if (~v.isnan()).any() else math.nan for k, v in per.items()}


class DepthMetricAccumulator:
    """Average per-image depth metrics over a dataset (same conventions as :func:`depth_metrics`).

    ``update`` returns the batch's per-image metrics; ``compute`` returns ``{key: float}`` over every image
    seen so far that had valid pixels (``count`` of them). ``state_dict``/``load_state_dict`` allow
    resuming, ``merge`` combines accumulators from different workers.
    """

    def __init__(self, min_depth: float = 1e-3, max_depth: float | None = None, align: str = "none") -> None:
        self.min_depth, self.max_depth, self.align = min_depth, max_depth, align
        self.reset()

    def reset(self) -> None:
        self.sums = dict.fromkeys(DEPTH_METRIC_KEYS, 0.0)
        self.count = 0

    def update(self, pred: Tensor, gt: Tensor, mask: Tensor | None = None) -> dict[str, Tensor]:
        per = depth_metrics_per_image(pred, gt, mask, self.min_depth, self.max_depth, self.align)
        ok = ~per["abs_rel"].isnan()
        for k, v in per.items():
            self.sums[k] += float(v[ok].sum())
        self.count += int(ok.sum())
        return per

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            return dict.fromkeys(DEPTH_METRIC_KEYS, math.nan)
        return {k: s / self.count for k, s in self.sums.items()}

    def merge(self, other: DepthMetricAccumulator) -> DepthMetricAccumulator:
        for k in DEPTH_METRIC_KEYS:
            self.sums[k] += other.sums[k]
        self.count += other.count
        return self

    def state_dict(self) -> dict:
        return {"sums": dict(self.sums), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.sums = {k: float(state["sums"][k]) for k in DEPTH_METRIC_KEYS}
        self.count = int(state["count"])
