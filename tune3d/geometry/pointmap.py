"""Pointmap utilities: DUSt3R-style normalisation, normals from pointmaps, depth discontinuities."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

NORM_MODES = ("avg_dis", "median_dis", "none")


def normalize_pointmap(
    pts: Tensor, mask: Tensor | None = None, mode: str = "avg_dis", eps: float = 1e-8
) -> tuple[Tensor, Tensor]:
    """Divide pointmaps by their mean (or median) distance to the origin over valid points.

    ``pts`` is (B, H, W, 3) (one factor per image) or (B, S, H, W, 3) (one factor per batch element, shared
    jointly by its S views, as DUSt3R's ``normalize_pointcloud`` does for the two views of a pair); a
    single (H, W, 3) map gives a scalar factor. ``mask`` has ``pts.shape[:-1]``. ``mode``:
    ``"avg_dis"`` (DUSt3R default), ``"median_dis"`` or ``"none"``. Returns ``(pts / scale, scale)`` with
    ``scale`` (B,) (``eps``-guarded; an element without valid points gets scale 1).
    """
    if mode not in NORM_MODES:
        raise ValueError(f"unknown normalisation mode {mode!r}; expected one of {NORM_MODES}")
    if pts.ndim not in (3, 4, 5) or pts.shape[-1] != 3:
        raise ValueError(f"expected pointmaps (H,W,3), (B,H,W,3) or (B,S,H,W,3), got {tuple(pts.shape)}")
    single = pts.ndim == 3
    p = pts[None] if single else pts
    m = None if mask is None else (mask[None] if single else mask)
    B = p.shape[0]
    dist = p.reshape(B, -1, 3).norm(dim=-1)
    valid = torch.isfinite(dist)
    if m is not None:
        valid &= m.reshape(B, -1).bool()
    if mode == "none":
        scale = torch.ones(B, dtype=p.dtype, device=p.device)
    elif mode == "avg_dis":
        total = torch.where(valid, dist, torch.zeros_like(dist)).sum(1)
        count = valid.sum(1)
        scale = torch.where(count > 0, total / count.clamp_min(1), torch.ones_like(total))
    else:
        scale = torch.stack(
            [dist[b][valid[b]].median() if valid[b].any() else dist.new_ones(()) for b in range(B)]
        )
    scale = scale.clamp_min(eps)
    out = p / scale.reshape(B, *([1] * (p.ndim - 1)))
    return (out[0], scale[0]) if single else (out, scale)


def pointmap_to_normals(pts: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Unit surface normals of pointmaps (..., H, W, 3) and their validity (..., H, W).

    Each pixel averages the unit normals of the (up to four) triangles it forms with its 4-neighbours,
    using only valid neighbours, so masks and image borders are handled. For a pointmap laid out on its
    camera's pixel grid (OpenCV axes) the normals face the camera (``n·p < 0`` for visible surfaces).
    A pixel is valid when it and at least one adjacent neighbour pair are valid.
    """
    lead, (H, W) = pts.shape[:-3], pts.shape[-3:-1]
    p = pts.reshape(-1, H, W, 3)
    m = torch.isfinite(p).all(-1)
    if mask is not None:
        m &= mask.reshape(-1, H, W).bool()
    p = torch.where(m[..., None], p, torch.zeros_like(p))
    # Pad by one so every pixel has four (possibly invalid) neighbours.
    pp = F.pad(p.permute(0, 3, 1, 2), (1, 1, 1, 1)).permute(0, 2, 3, 1)
    mp = F.pad(m[:, None].float(), (1, 1, 1, 1))[:, 0] > 0
    c = pp[:, 1:-1, 1:-1]
    nb = {
        "r": (pp[:, 1:-1, 2:], mp[:, 1:-1, 2:]),
        "d": (pp[:, 2:, 1:-1], mp[:, 2:, 1:-1]),
        "l": (pp[:, 1:-1, :-2], mp[:, 1:-1, :-2]),
        "u": (pp[:, :-2, 1:-1], mp[:, :-2, 1:-1]),
    }
    normal = torch.zeros_like(c)
    count = torch.zeros_like(m, dtype=p.dtype)
    # Consecutive pairs (d, r), (r, u), (u, l), (l, d): each cross product points towards the camera.
    for a, b in (("d", "r"), ("r", "u"), ("u", "l"), ("l", "d")):
        (pa, ma), (pb, mb) = nb[a], nb[b]
        n = torch.linalg.cross(pa - c, pb - c)
        length = n.norm(dim=-1, keepdim=True)
        ok = ma & mb & m & (length[..., 0] > 0)
        normal = normal + torch.where(ok[..., None], n / length.clamp_min(1e-30), torch.zeros_like(n))
        count = count + ok.to(p.dtype)
    norm = normal.norm(dim=-1, keepdim=True)
    valid = (count > 0) & (norm[..., 0] > 0)
    normal = torch.where(valid[..., None], normal / norm.clamp_min(1e-30), torch.zeros_like(normal))
    return normal.reshape(*lead, H, W, 3), valid.reshape(*lead, H, W)


def depth_edges(
    depth: Tensor, mask: Tensor | None = None, rtol: float = 0.03, kernel_size: int = 3
) -> Tensor:
    """Depth discontinuities: ``(max - min) / depth > rtol`` over a ``kernel_size`` window (MoGe-style).

    ``depth`` (..., H, W) with 0/non-finite or ``mask == False`` treated as invalid (ignored inside the
    window). Returns a bool map (..., H, W); invalid pixels are never edges.
    """
    lead, (H, W) = depth.shape[:-2], depth.shape[-2:]
    d = depth.reshape(-1, 1, H, W)
    valid = torch.isfinite(d) & (d > 0)
    if mask is not None:
        valid &= mask.reshape(-1, 1, H, W).bool()
    pad = kernel_size // 2
    dmax = F.max_pool2d(torch.where(valid, d, torch.full_like(d, -torch.inf)), kernel_size, 1, pad)
    dmin = -F.max_pool2d(torch.where(valid, -d, torch.full_like(d, -torch.inf)), kernel_size, 1, pad)
    edge = valid & ((dmax - dmin) / torch.where(valid, d, torch.ones_like(d)) > rtol)
    return edge.reshape(*lead, H, W)
