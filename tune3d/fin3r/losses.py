"""Fin3R's distillation loss: confidence-weighted regression to a monocular teacher.

(The replay term on labelled tuples is the tuned model's own released criterion,
:func:`tune3d.recon.losses.recon_loss`, via :func:`tune3d.fin3r.targets.replay_loss`.)

It follows DUSt3R's ``ConfLoss(Regr3D(L21, norm_mode="avg_dis"), alpha=0.2)``: prediction and target are
each divided by their mean distance to the origin over valid pixels (per sample; jointly over all views of
a multi-view sample), the per-pixel error is the unsquared Euclidean distance (``L21``), and the loss is
``mean over valid pixels of conf · dist − λ · log(conf)``. The paper writes the distance squared;
``squared=True`` gives that variant. The mean is taken over every valid pixel of the batch at once, as
DUSt3R's ``ConfLoss`` does.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tune3d.geometry import normalize_pointmap


def _distance(x: Tensor, is_points: bool) -> Tensor:
    return x.norm(dim=-1) if is_points else x.abs()


def avg_dis_normalize(x: Tensor, mask: Tensor, is_points: bool | None = None) -> tuple[Tensor, Tensor]:
    """Divide ``x`` by its mean distance to the origin over valid pixels, per sample (dim 0).

    ``x``: pointmaps ``(B, ..., 3)`` or depth ``(B, ...)`` (for depth the "distance" is ``|z|``);
    ``mask``: bool ``(B, ...)`` over the same pixels. All non-batch dims are reduced jointly, so a multi-view
    ``B,S,H,W,3`` sample is normalised over all its views together (DUSt3R ``normalize_pointcloud``).
    Invalid pixels are zeroed. Returns ``(x / factor, factor)`` with ``factor`` of shape ``(B,)``.
    Pointmaps go through :func:`tune3d.geometry.normalize_pointmap`; depth maps (which it does not take)
    are handled here the same way.
    """
    if is_points is None:
        is_points = x.dim() == mask.dim() + 1 and x.shape[-1] == 3
    mask = mask.bool()
    if is_points:
        out, factor = normalize_pointmap(x, mask, mode="avg_dis")
        return torch.where(mask.unsqueeze(-1), out, torch.zeros_like(out)), factor
    x = torch.where(mask, x, torch.zeros_like(x))
    dims = tuple(range(1, mask.dim()))
    count = mask.sum(dim=dims)
    factor = x.abs().sum(dim=dims) / count.clamp_min(1)
    factor = torch.where(count > 0, factor, torch.ones_like(factor)).clamp_min(1e-8)
    return x / factor.view((-1,) + (1,) * (x.dim() - 1)), factor


def _conf_loss(dist: Tensor, conf: Tensor, mask: Tensor, lam: float, anchor: Tensor) -> Tensor:
    if not bool(mask.any()):
        return anchor.sum() * 0.0  # no valid pixel: zero, but keep the graph for DDP
    # Select before the log so masked-out pixels (conf may be anything there) never reach the gradient.
    c = conf[mask]
    return (c * dist[mask] - lam * torch.log(c)).mean()


def conf_distill_loss(
    pred: Tensor,
    conf: Tensor,
    target: Tensor,
    mask: Tensor,
    lam: float = 0.2,
    squared: bool = False,
    normalize: bool = True,
) -> Tensor:
    """Confidence-weighted distillation ``mean_valid(conf·‖D − D̂‖ − lam·log conf)``.

    ``pred``/``target``: depth ``B,H,W`` or pointmaps ``B,H,W,3`` (same kind); ``conf``: ``B,H,W`` (> 0,
    e.g. DUSt3R's ``1 + exp``); ``mask``: bool ``B,H,W``. With ``normalize`` both are divided by their own
    mean distance over the valid pixels first (:func:`avg_dis_normalize`); pass ``normalize=False`` for a
    metric student with a metric teacher.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    mask = mask.bool() & torch.isfinite(target).reshape(*mask.shape, -1).all(-1)
    is_points = pred.dim() == mask.dim() + 1
    target = torch.where(mask.unsqueeze(-1) if is_points else mask, target, torch.zeros_like(target))
    if normalize:
        pred, _ = avg_dis_normalize(pred, mask, is_points)
        target, _ = avg_dis_normalize(target, mask, is_points)
    dist = _distance(pred - target.detach(), is_points)
    if squared:
        dist = dist.square()
    return _conf_loss(dist, conf, mask, lam, pred)
