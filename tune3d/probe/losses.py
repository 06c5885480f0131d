"""Depth-probe losses of the DINOv2 protocol: scale-invariant log loss and multi-scale log-gradient loss."""

from __future__ import annotations

import torch


def _bhw(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 4:
        if x.shape[1] != 1:
            raise ValueError(f"depth must be B,1,H,W or B,H,W, got {tuple(x.shape)}")
        return x[:, 0]
    if x.dim() != 3:
        raise ValueError(f"depth must be B,1,H,W or B,H,W, got {tuple(x.shape)}")
    return x


def sig_loss(
    pred: torch.Tensor,
    gt: torch.Tensor,
    valid: torch.Tensor | None = None,
    lam: float = 0.15,
    eps: float = 1e-3,
    warmup: bool = False,
) -> torch.Tensor:
    """Scale-invariant log loss ``sqrt(Var(g) + lam * mean(g)^2)``, ``g = log(pred+eps) - log(gt+eps)``.

    Pooled over all ``valid`` pixels of the batch (default ``gt > 0``); ``Var`` is the unbiased variance,
    as ``torch.var`` in DINOv2's ``SigLoss``. ``warmup=True`` gives the warm-up form
    ``sqrt(lam * mean(g)^2)``.
    Returns 0 (with a graph) when no pixel is valid.
    """
    if valid is None:
        valid = gt > 0
    p, t = pred[valid], gt[valid]
    if p.numel() == 0:
        return pred.sum() * 0.0
    g = torch.log(p + eps) - torch.log(t + eps)
    d = lam * g.mean() ** 2
    if not warmup:
        d = d + (g.var() if g.numel() > 1 else g.new_zeros(()))
    return torch.sqrt(d)


def gradient_loss(
    pred: torch.Tensor,
    gt: torch.Tensor,
    valid: torch.Tensor | None = None,
    eps: float = 1e-3,
    strides: tuple[int, ...] = (1, 2, 4, 6),
) -> torch.Tensor:
    """Multi-scale gradient matching loss on log depth (MegaDepth form used by DINOv2's ``GradientLoss``).

    At each subsampling stride ``s``, with ``d = (log(pred+eps) - log(gt+eps)) * valid``, sums
    ``|d[y] - d[y+2]|`` vertically and ``|d[x] - d[x+2]|`` horizontally over pairs where both pixels are
    valid, divided by the number of valid pixels at that stride (pooled over the batch); summed over strides.
    Strides ``(1, 2, 4, 6)`` and the two-pixel offset are DINOv2's. DINOv2 applies it to the whole
    ``B,1,H,W`` tensor, so its slicing runs over the batch and channel axes and the loss vanishes for
    batches of 2; here it is applied to each image's spatial axes, as intended.
    """
    pred, gt = _bhw(pred), _bhw(gt)
    if valid is None:
        valid = gt > 0
    valid = _bhw(valid)
    total = pred.new_zeros(())
    for s in strides:
        p, t, m = pred[:, ::s, ::s], gt[:, ::s, ::s], valid[:, ::s, ::s]
        n = m.sum()
        if n == 0:
            continue
        mf = m.to(p.dtype)
        # where(): invalid gt may be 0 or garbage; keep the log finite so 0 * x stays 0 in the backward pass.
        d = torch.where(m, torch.log(p + eps) - torch.log(torch.where(m, t, torch.ones_like(t)) + eps), 0.0)
        v = (d[:, :-2, :] - d[:, 2:, :]).abs() * mf[:, :-2, :] * mf[:, 2:, :]
        h = (d[:, :, :-2] - d[:, :, 2:]).abs() * mf[:, :, :-2] * mf[:, :, 2:]
        total = total + (v.sum() + h.sum()) / n
    return total


def depth_probe_loss(
    pred: torch.Tensor,
    gt: torch.Tensor,
    max_depth: float | None = None,
    grad_weight: float = 0.5,
    sig_warmup: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``SigLoss + grad_weight * GradientLoss`` over pixels with ``0 < gt (<= max_depth)``.

    ``pred``/``gt``: ``B,1,H,W`` or ``B,H,W`` at the same size. Returns the loss and its parts as floats.
    """
    pred, gt = _bhw(pred), _bhw(gt)
    valid = gt > 0
    if max_depth is not None:
        valid &= gt <= max_depth
    ls = sig_loss(pred, gt, valid, warmup=sig_warmup)
    lg = gradient_loss(pred, gt, valid) if grad_weight else pred.new_zeros(())
    loss = ls + grad_weight * lg
    return loss, {"loss_sig": float(ls.detach()), "loss_grad": float(lg.detach())}
