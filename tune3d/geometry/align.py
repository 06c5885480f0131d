"""Align predictions to ground truth under masks: depth scale/shift, disparity, points, Sim(3).

Depth-like inputs are ``(B, ...)``: the first dimension is the batch and every other dimension is
flattened, so ``B,H,W`` and ``B,1,H,W`` both work (add ``[None]`` for a single image). Masks have the
same shape as the prediction (bool; ``None`` = all valid). Parameters are fitted per batch element in
float64 and returned in the prediction's dtype. An element with no valid pixel gets the identity
parameters (scale 1, shift 0) so that downstream metrics can skip it without NaNs leaking in.
"""

from __future__ import annotations

import torch
from torch import Tensor

DEPTH_ALIGN_MODES = ("none", "median", "scale", "scale_shift", "affine_disparity")


def _flat(x: Tensor) -> Tensor:
    if x.ndim < 2:
        raise ValueError(f"expected a batched tensor (B, ...), got shape {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1)


def _flat_weights(pred: Tensor, mask: Tensor | None, weights: Tensor | None) -> Tensor:
    """Per-element float64 weights (B, N): mask (0/1) times optional weights, non-finite inputs dropped."""
    w = torch.ones_like(pred, dtype=torch.float64) if weights is None else weights.to(torch.float64)
    w = torch.broadcast_to(w, pred.shape)
    if mask is not None:
        w = w * torch.broadcast_to(mask, pred.shape).to(torch.float64)
    return _flat(w)


def _per_batch(v: Tensor, like: Tensor) -> Tensor:
    """(B,) -> broadcastable against ``like`` (B, ...)."""
    return v.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def _masked_median(x: Tensor, valid: Tensor) -> Tensor:
    """Median over the valid entries of each row of (B, N); averages the two middle values like numpy."""
    out = torch.full((x.shape[0],), float("nan"), dtype=x.dtype, device=x.device)
    for b in range(x.shape[0]):
        v = x[b][valid[b]]
        if v.numel():
            s = v.sort().values
            n = s.numel()
            out[b] = 0.5 * (s[(n - 1) // 2] + s[n // 2])
    return out


def align_median_scale(pred: Tensor, gt: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Median scaling (monodepth convention): ``s = median(gt) / median(pred)`` over valid pixels.

    Returns ``(pred * s, s)`` with ``s`` of shape (B,).
    """
    valid = _flat_weights(pred, mask, None) > 0
    p, g = _flat(pred).double(), _flat(gt).double()
    valid &= torch.isfinite(p) & torch.isfinite(g)
    s = _masked_median(g, valid) / _masked_median(p, valid)
    s = torch.where(torch.isfinite(s), s, torch.ones_like(s))
    return pred * _per_batch(s, pred), s.to(pred.dtype)


def align_lstsq_scale(
    pred: Tensor, gt: Tensor, mask: Tensor | None = None, weights: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Least-squares scale ``s = Σ w p g / Σ w p²``. Returns ``(pred * s, s)`` with ``s`` (B,)."""
    w = _flat_weights(pred, mask, weights)
    p, g = _flat(pred).double(), _flat(gt).double()
    w = torch.where(torch.isfinite(p) & torch.isfinite(g), w, torch.zeros_like(w))
    p, g = p.nan_to_num(0.0, 0.0, 0.0), g.nan_to_num(0.0, 0.0, 0.0)
    num, den = (w * p * g).sum(1), (w * p * p).sum(1)
    s = torch.where(den > 0, num / den.clamp_min(1e-300), torch.ones_like(den))
    return pred * _per_batch(s, pred), s.to(pred.dtype)


def _fit_scale_shift(p: Tensor, g: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Weighted least squares of ``s p + t ≈ g`` per row, on centred data for conditioning (float64)."""
    w = torch.where(torch.isfinite(p) & torch.isfinite(g), w, torch.zeros_like(w))
    p, g = p.nan_to_num(0.0, 0.0, 0.0), g.nan_to_num(0.0, 0.0, 0.0)
    wsum = w.sum(1)
    safe = wsum.clamp_min(1e-300)
    pm, gm = (w * p).sum(1) / safe, (w * g).sum(1) / safe
    pc, gc = p - pm[:, None], g - gm[:, None]
    var = (w * pc * pc).sum(1)
    cov = (w * pc * gc).sum(1)
    # A constant prediction leaves s undetermined; keep s = 1 and fit the shift only.
    s = torch.where(var > 1e-12 * wsum.clamp_min(1), cov / var.clamp_min(1e-300), torch.ones_like(var))
    t = torch.where(wsum > 0, gm - s * pm, torch.zeros_like(gm))
    s = torch.where(wsum > 0, s, torch.ones_like(s))
    return s, t


def align_scale_shift(
    pred: Tensor, gt: Tensor, mask: Tensor | None = None, weights: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Least squares ``[pred 1][s t]^T ≈ gt`` (in depth). Returns ``(s * pred + t, s, t)``, s/t (B,)."""
    s, t = _fit_scale_shift(_flat(pred).double(), _flat(gt).double(), _flat_weights(pred, mask, weights))
    aligned = pred * _per_batch(s, pred) + _per_batch(t, pred)
    return aligned, s.to(pred.dtype), t.to(pred.dtype)


def align_affine_disparity(
    pred: Tensor,
    gt: Tensor,
    mask: Tensor | None = None,
    weights: Tensor | None = None,
    pred_is_disparity: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Affine-invariant disparity alignment (MiDaS / Depth Anything relative-depth protocol).

    Fits ``s, t`` by least squares on ``1/gt`` over valid pixels, then inverts. ``pred`` is depth (inverted
    here) or, with ``pred_is_disparity=True``, a disparity map such as Depth Anything's relative output.
    Like MoGe, the aligned disparity is clamped from below at ``1 / max(gt)`` (per image) so depth stays
    finite and positive. Returns ``(aligned_depth, s, t)`` where s/t (B,) act on disparity.
    """
    valid = _flat_weights(pred, mask, None) > 0
    p, g = _flat(pred).double(), _flat(gt).double()
    valid &= (g > 0) & torch.isfinite(g)
    if not pred_is_disparity:
        valid &= p > 0
        p = 1.0 / torch.where(p > 0, p, torch.ones_like(p))
    gd = 1.0 / torch.where(g > 0, g, torch.ones_like(g))
    w = _flat_weights(pred, valid.reshape(pred.shape), weights)
    s, t = _fit_scale_shift(p, gd, w)
    gmax = torch.where(valid, g, torch.zeros_like(g)).amax(1)
    floor = torch.where(gmax > 0, 1.0 / gmax.clamp_min(1e-300), torch.full_like(gmax, 1e-6))
    disp = (s[:, None] * p + t[:, None]).clamp_min(floor[:, None])
    aligned = (1.0 / disp).reshape(pred.shape).to(pred.dtype)
    return aligned, s.to(pred.dtype), t.to(pred.dtype)


def align_depth(
    pred: Tensor, gt: Tensor, mask: Tensor | None = None, mode: str = "none"
) -> tuple[Tensor, dict[str, Tensor]]:
    """Align a depth prediction with one of ``DEPTH_ALIGN_MODES``.

    Returns ``(aligned, {"scale": (B,), "shift": (B,)})``; for ``affine_disparity`` the parameters act on
    disparity, for the other modes on depth (``none`` gives scale 1, shift 0).
    """
    B = pred.shape[0]
    one = torch.ones(B, dtype=pred.dtype, device=pred.device)
    zero = torch.zeros_like(one)
    if mode == "none":
        return pred, {"scale": one, "shift": zero}
    if mode == "median":
        aligned, s = align_median_scale(pred, gt, mask)
        return aligned, {"scale": s, "shift": zero}
    if mode == "scale":
        aligned, s = align_lstsq_scale(pred, gt, mask)
        return aligned, {"scale": s, "shift": zero}
    if mode == "scale_shift":
        aligned, s, t = align_scale_shift(pred, gt, mask)
        return aligned, {"scale": s, "shift": t}
    if mode == "affine_disparity":
        aligned, s, t = align_affine_disparity(pred, gt, mask)
        return aligned, {"scale": s, "shift": t}
    raise ValueError(f"unknown depth alignment mode {mode!r}; expected one of {DEPTH_ALIGN_MODES}")


def _point_weights(pts: Tensor, mask: Tensor | None, weights: Tensor | None) -> Tensor:
    """(B, N) float64 weights for pointmaps (B, ..., 3) with masks/weights (B, ...)."""
    lead = pts.shape[:-1]
    w = torch.ones(lead, dtype=torch.float64, device=pts.device)
    if weights is not None:
        w = w * torch.broadcast_to(weights.to(torch.float64), lead)
    if mask is not None:
        w = w * torch.broadcast_to(mask, lead).to(torch.float64)
    w = w * torch.isfinite(pts).all(-1)
    return w.reshape(pts.shape[0], -1)


def align_points_scale(
    pred: Tensor, gt: Tensor, mask: Tensor | None = None, weights: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Least-squares scale for pointmaps (B, ..., 3): ``s = Σ w p·g / Σ w ‖p‖²``.

    Returns ``(s * pred, s)`` with ``s`` (B,).
    """
    w = _point_weights(pred, mask, weights) * _point_weights(gt, None, None)
    p = pred.reshape(pred.shape[0], -1, 3).double().nan_to_num(0.0, 0.0, 0.0)
    g = gt.reshape(gt.shape[0], -1, 3).double().nan_to_num(0.0, 0.0, 0.0)
    num, den = (w * (p * g).sum(-1)).sum(1), (w * (p * p).sum(-1)).sum(1)
    s = torch.where(den > 0, num / den.clamp_min(1e-300), torch.ones_like(den))
    return pred * _per_batch(s, pred), s.to(pred.dtype)


def align_points_scale_shift(
    pred: Tensor, gt: Tensor, mask: Tensor | None = None, weights: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """MoGe-style affine point alignment: one scale ``s`` and an xyz shift ``t`` with ``s p + t ≈ g``.

    Solved by (weighted) least squares rather than MoGe's robust L1 solver. Pointmaps (B, ..., 3), masks
    (B, ...). Returns ``(s * pred + t, s (B,), t (B, 3))``.
    """
    w = _point_weights(pred, mask, weights) * _point_weights(gt, None, None)
    p = pred.reshape(pred.shape[0], -1, 3).double().nan_to_num(0.0, 0.0, 0.0)
    g = gt.reshape(gt.shape[0], -1, 3).double().nan_to_num(0.0, 0.0, 0.0)
    wsum = w.sum(1)
    safe = wsum.clamp_min(1e-300)[:, None]
    pm, gm = (w[..., None] * p).sum(1) / safe, (w[..., None] * g).sum(1) / safe
    pc, gc = p - pm[:, None], g - gm[:, None]
    var = (w * (pc * pc).sum(-1)).sum(1)
    cov = (w * (pc * gc).sum(-1)).sum(1)
    s = torch.where(var > 0, cov / var.clamp_min(1e-300), torch.ones_like(var))
    t = torch.where(wsum[:, None] > 0, gm - s[:, None] * pm, torch.zeros_like(gm))
    shape = (pred.shape[0],) + (1,) * (pred.ndim - 2) + (3,)
    aligned = pred * _per_batch(s, pred) + t.to(pred.dtype).reshape(shape)
    return aligned, s.to(pred.dtype), t.to(pred.dtype)


def umeyama_sim3(
    src: Tensor, dst: Tensor, weights: Tensor | None = None, with_scale: bool = True
) -> tuple[Tensor, Tensor, Tensor]:
    """Least-squares similarity ``dst ≈ s R src + t`` (Umeyama 1991), batched.

    ``src``/``dst`` (..., N, 3); ``weights`` (..., N) (bool masks work). The reflection case is handled
    (``det R = +1`` always). Returns ``s`` (...,), ``R`` (..., 3, 3), ``t`` (..., 3) in ``src``'s dtype;
    ``s = 1`` when ``with_scale=False`` (Kabsch).
    """
    x, y = src.double(), dst.double()
    w = torch.ones(x.shape[:-1], dtype=torch.float64, device=x.device)
    if weights is not None:
        w = w * torch.broadcast_to(weights.to(torch.float64), x.shape[:-1])
    finite = torch.isfinite(x).all(-1) & torch.isfinite(y).all(-1)
    w = torch.where(finite, w, torch.zeros_like(w))
    x, y = x.nan_to_num(0.0, 0.0, 0.0), y.nan_to_num(0.0, 0.0, 0.0)
    wsum = w.sum(-1, keepdim=True).clamp_min(1e-300)
    wn = (w / wsum)[..., None]
    mx, my = (wn * x).sum(-2), (wn * y).sum(-2)
    xc, yc = x - mx[..., None, :], y - my[..., None, :]
    cov = (wn * yc).transpose(-1, -2) @ xc  # (..., 3, 3) = Σ w (y - my)(x - mx)^T
    U, D, Vh = torch.linalg.svd(cov)
    S = torch.ones_like(D)
    S[..., 2] = torch.sign(torch.linalg.det(U) * torch.linalg.det(Vh))
    S[..., 2] = torch.where(S[..., 2] == 0, torch.ones_like(S[..., 2]), S[..., 2])
    R = U @ torch.diag_embed(S) @ Vh
    if with_scale:
        var_x = (wn[..., 0] * (xc * xc).sum(-1)).sum(-1)
        s = (D * S).sum(-1) / var_x.clamp_min(1e-300)
        s = torch.where(var_x > 0, s, torch.ones_like(s))
    else:
        s = torch.ones(R.shape[:-2], dtype=R.dtype, device=R.device)
    t = my - s[..., None] * (R @ mx[..., None])[..., 0]
    return s.to(src.dtype), R.to(src.dtype), t.to(src.dtype)


def apply_sim3(s: Tensor, R: Tensor, t: Tensor, points: Tensor) -> Tensor:
    """``s R p + t`` for points (..., N, 3) or pointmaps (..., H, W, 3), one transform per leading index."""
    lead = R.shape[:-2]
    flat = points.reshape(*lead, -1, 3)
    out = s[..., None, None] * (flat @ R.transpose(-1, -2)) + t[..., None, :]
    return out.reshape(points.shape)
