"""Pure-PyTorch 3DGS rasterizer with gsplat's kernel semantics (any device; the CPU path of tune3d).

gsplat has no CPU implementation (its "torch" reference still calls CUDA ops), hence this file.
Pipeline, mirroring gsplat 1.5 (``packed=False``):

1. :func:`project_gaussians`: EWA projection with gsplat's clamped pinhole Jacobian, ``eps2d`` dilation,
   optional antialiasing compensation, near/far culling and the opacity-aware bounding box
   (``extend = min(3.33, sqrt(2 log(255 o)))``; radii ``ceil(extend * sqrt(Sigma_xx))``, same for y).
2. :func:`isect_tiles`: tile/Gaussian intersection list, sorted by (camera, tile, depth) with torch ops.
3. :func:`rasterize_to_pixels`: per chunk of tiles, gather each tile's depth-sorted Gaussians (padded to the
   chunk's longest list), evaluate ``alpha = min(0.999, o exp(-sigma))`` at the tile's pixels, drop
   ``sigma < 0`` / ``alpha < 1/255``, and composite front to back with a cumulative product; a Gaussian is
   included only while the transmittance *after* it stays above 1e-4 (gsplat's exclusive stop).

Cost is proportional to the padded (pixel, Gaussian) pairs of the tile lists, so the tile lists are cut to
the tiles each Gaussian's ``alpha >= 1/255`` ellipse actually reaches, the default tile is 8x8, and a cheap
no-grad pass cuts each tile's list where all its pixels have reached the transmittance stop. The
compositing has a hand-written backward (:class:`_Composite`, gsplat's back-to-front recurrence), so nothing
is recomputed; ``compositing="autograd"`` keeps the plain-autograd version (chunks under activation
checkpointing) as the test oracle.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from tune3d.splatting.sh import eval_sh

ALPHA_THRESHOLD = 1.0 / 255.0
MAX_ALPHA = 0.999
TRANSMITTANCE_EPS = 1e-4
# Elements of the [tiles, pixels, gaussians] work tensor per chunk (about 16 MiB per float32 intermediate).
DEFAULT_CHUNK_ELEMENTS = 1 << 22
# Fastest measured tile edge on CPU (benchmarks/bench_rasterize.py --tile-sizes): 8x8 tiles pad each tile's
# list to far fewer pixels than 16x16, while 4x4 tiles multiply the tile lists to sort and gather.
DEFAULT_TILE_SIZE = 8
# Tile edge (in selected rows/columns) for product-grid renders (pixel_rows/pixel_cols): stage II's grids are
# 4x4 support blocks per token, so 4 keeps each tile's bounding box to one block.
DEFAULT_GRID_TILE_SIZE = 4
# A chunk of tiles only takes tiles whose list is at least this share of its longest (padding waste <= 25%).
CHUNK_FILL = 0.75


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """Covariances ``R S S^T R^T`` ``[N,3,3]`` from wxyz ``quats [N,4]`` (any norm) and linear ``scales``."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*quats.shape[:-1], 3, 3)
    M = R * scales[..., None, :]
    return M @ M.transpose(-1, -2)


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    calc_compensations: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """Project ``N`` Gaussians into ``C`` pinhole cameras (gsplat ``fully_fused_projection``, unpacked).

    Returns ``radii [C,N,2] int32`` (0 = culled), ``means2d [C,N,2]`` (pixels), ``depths [C,N]`` (camera z),
    ``conics [C,N,3]`` (upper triangle of the inverse dilated 2D covariance) and ``compensations [C,N]`` or
    None. Culled entries hold zeros and receive no gradient.
    """
    R = viewmats[:, :3, :3]
    t = viewmats[:, :3, 3]
    means_c = torch.einsum("cij,nj->cni", R, means) + t[:, None, :]  # [C,N,3]
    covar_c = R[:, None] @ quat_scale_to_covar(quats, scales)[None] @ R.transpose(-1, -2)[:, None]
    tx, ty, tz = means_c.unbind(-1)
    in_depth = (tz >= near_plane) & (tz <= far_plane)
    # Culled Gaussians must not produce inf/NaN that would leak into the gradients of the kept ones.
    tz = torch.where(in_depth, tz, torch.ones_like(tz))

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    # gsplat clamps the Jacobian's evaluation point to 1.3x the field of view (not the mean itself).
    lim_xp, lim_xn = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_yp, lim_yn = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    txc = tz * torch.minimum(torch.maximum(tx / tz, -lim_xn), lim_xp)
    tyc = tz * torch.minimum(torch.maximum(ty / tz, -lim_yn), lim_yp)
    zero = torch.zeros_like(tz)
    J = torch.stack([fx / tz, zero, -fx * txc / tz**2, zero, fy / tz, -fy * tyc / tz**2], dim=-1)
    J = J.reshape(*tz.shape, 2, 3)
    cov2d = J @ covar_c @ J.transpose(-1, -2)
    means2d = torch.stack([fx * tx / tz + cx, fy * ty / tz + cy], dim=-1)

    a, b, c = cov2d[..., 0, 0], 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0]), cov2d[..., 1, 1]
    det_orig = a * c - b * b
    a, c = a + eps2d, c + eps2d
    det = a * c - b * b
    ok = in_depth & (det > 0)
    det_safe = torch.where(ok, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    compensations = None
    if calc_compensations:
        ratio = det_orig / det_safe
        pos = ratio > 0
        compensations = torch.where(pos, torch.sqrt(torch.where(pos, ratio, torch.ones_like(ratio))), zero)

    with torch.no_grad():
        opac = opacities.detach()[None].expand_as(tz)
        if compensations is not None:
            opac = opac * compensations.detach()
        ok = ok & (opac >= ALPHA_THRESHOLD)
        extend = torch.sqrt(2.0 * torch.log(opac.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
        extend = extend.clamp_max(3.33)
        rx = torch.ceil(extend * torch.sqrt(a.detach().clamp_min(0)))
        ry = torch.ceil(extend * torch.sqrt(c.detach().clamp_min(0)))
        ok = ok & ~((rx <= radius_clip) & (ry <= radius_clip))
        mx, my = means2d.detach().unbind(-1)
        ok = ok & (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        radii = torch.where(ok[..., None], torch.stack([rx, ry], dim=-1), 0.0).to(torch.int32)

    keep = ok[..., None]
    means2d = torch.where(keep, means2d, 0.0)
    conics = torch.where(keep, conics, 0.0)
    depths = torch.where(ok, means_c[..., 2], 0.0)
    if compensations is not None:
        compensations = torch.where(ok, compensations, 0.0)
    return radii, means2d, depths, conics, compensations


@torch.no_grad()
def _min_sigma_over_boxes(d_lo: Tensor, d_hi: Tensor, conics: Tensor) -> Tensor:
    """Minimum of ``sigma(d) = 0.5 (a dx^2 + c dy^2) + b dx dy`` over boxes ``d_lo <= d <= d_hi`` ``[M,2]``.

    ``conics [M,3]`` = ``(a, b, c)`` positive definite. Zero when the box holds the origin, else the minimum
    over the four edges (on an edge the quadratic is 1D; its minimiser is clamped into the edge).
    """
    a, b, c = conics.unbind(-1)
    inside = ((d_lo <= 0) & (d_hi >= 0)).all(-1)
    best = torch.full_like(a, math.inf)
    for x in (d_lo[:, 0], d_hi[:, 0]):  # vertical edges: minimise over dy
        y = torch.minimum(torch.maximum(-b * x / c, d_lo[:, 1]), d_hi[:, 1])
        best = torch.minimum(best, 0.5 * (a * x * x + c * y * y) + b * x * y)
    for y in (d_lo[:, 1], d_hi[:, 1]):  # horizontal edges: minimise over dx
        x = torch.minimum(torch.maximum(-b * y / a, d_lo[:, 0]), d_hi[:, 0])
        best = torch.minimum(best, 0.5 * (a * x * x + c * y * y) + b * x * y)
    return torch.where(inside, torch.zeros_like(best), best)


@torch.no_grad()
def isect_tiles(
    means2d: Tensor,
    radii: Tensor,
    depths: Tensor,
    tile_size: int,
    tile_width: int,
    tile_height: int,
    conics: Tensor | None = None,
    opacities: Tensor | None = None,
    tile_bounds: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Tile/Gaussian intersections like gsplat's ``isect_tiles`` + ``isect_offset_encode`` (unpacked).

    Returns ``tiles_per_gauss [C,N]``, ``flatten_ids [M]`` (indices into the flattened ``[C*N]`` arrays,
    sorted by camera, tile and then depth, ties by index) and ``isect_offsets [C,tile_height,tile_width]``
    (start of each tile's range in ``flatten_ids``).

    With ``conics [C,N,3]`` and ``opacities [C,N]`` the bounding-box candidates are filtered further: a tile
    is kept only if the ellipse ``alpha >= 1/255`` (``sigma <= log(255 o)``) reaches the box spanned by its
    pixel centres, so an elongated or faint Gaussian is not listed in tiles its box merely grazes. Pixels
    outside that ellipse are skipped by the compositing anyway, so the image is unchanged.

    ``tile_bounds`` (product-grid tiles, see :class:`PixelGrid`): the first and last pixel index ``[n,2]`` of
    each tile column (x) and tile row (y); a tile then covers the pixel squares from its first to its last
    pixel, and a Gaussian is listed where its bounding box overlaps that region, as for uniform tiles.
    """
    C, N = depths.shape
    device = depths.device
    n_tiles = tile_width * tile_height
    if tile_bounds is None:
        r = radii.to(means2d.dtype) / tile_size
        txy = means2d / tile_size
        lo = torch.floor(txy - r)
        hi = torch.ceil(txy + r)
        lim = torch.tensor([tile_width, tile_height], device=device, dtype=means2d.dtype)
        lo = torch.minimum(lo.clamp_min(0), lim).long()
        hi = torch.minimum(hi.clamp_min(0), lim).long()
    else:  # the uniform case's floor/ceil, over tiles of any extent: overlapped tiles are contiguous
        r = radii.to(means2d.dtype)
        los, his = [], []
        for axis, b in enumerate(tile_bounds):
            b = b.to(means2d.dtype)
            v_lo = (means2d[..., axis] - r[..., axis]).contiguous()
            v_hi = (means2d[..., axis] + r[..., axis]).contiguous()
            los.append(torch.searchsorted(b[:, 1].contiguous() + 1, v_lo, right=True))  # tiles ending <= lo
            his.append(torch.searchsorted(b[:, 0].contiguous(), v_hi))  # tiles starting < hi
        lo, hi = torch.stack(los, dim=-1), torch.stack(his, dim=-1)
    span = (hi - lo).clamp_min(0)
    valid = (radii > 0).all(dim=-1)
    counts = torch.where(valid, span[..., 0] * span[..., 1], 0)  # [C,N]

    flat_counts = counts.reshape(-1)
    total = int(flat_counts.sum())
    gid = torch.repeat_interleave(torch.arange(C * N, device=device), flat_counts, output_size=total)
    starts = torch.cumsum(flat_counts, 0) - flat_counts
    k = torch.arange(total, device=device) - starts.index_select(0, gid)
    # index_select: several times faster than advanced indexing on CPU
    lo_f, span_f = lo.reshape(-1, 2).index_select(0, gid), span.reshape(-1, 2).index_select(0, gid)
    tx = lo_f[:, 0] + k % span_f[:, 0].clamp_min(1)
    ty = lo_f[:, 1] + k // span_f[:, 0].clamp_min(1)

    if conics is not None and opacities is not None:
        mu = means2d.reshape(-1, 2).index_select(0, gid)
        if tile_bounds is None:
            box_lo = torch.stack([tx, ty], dim=-1).to(means2d.dtype) * tile_size + 0.5
            box_hi = box_lo + (tile_size - 1)
        else:  # the box spanned by the tile's pixel centres
            xb, yb = (b.to(means2d.dtype) + 0.5 for b in tile_bounds)
            box_lo = torch.stack([xb[tx, 0], yb[ty, 0]], dim=-1)
            box_hi = torch.stack([xb[tx, 1], yb[ty, 1]], dim=-1)
        min_sigma = _min_sigma_over_boxes(
            box_lo - mu, box_hi - mu, conics.reshape(-1, 3).index_select(0, gid)
        )
        # alpha >= 1/255  <=>  sigma <= log(255 o); the margin keeps pairs that rounding puts on the edge
        s_max = torch.log(opacities.reshape(-1).index_select(0, gid).clamp_min(1e-30) / ALPHA_THRESHOLD)
        keep = min_sigma <= s_max * (1 + 1e-3) + 1e-3
        kept = keep.nonzero().squeeze(1)
        gid, tx, ty = gid.index_select(0, kept), tx.index_select(0, kept), ty.index_select(0, kept)
        counts = torch.bincount(gid, minlength=C * N).reshape(C, N)
    cam = gid // N
    tile_ids = cam * n_tiles + ty * tile_width + tx

    # depth rank within each camera, stable so equal depths keep index order (as gsplat's radix sort)
    order = torch.argsort(depths, dim=1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(N, device=device).expand(C, N))
    keys = tile_ids * N + rank.reshape(-1).index_select(0, gid)
    flatten_ids = gid.index_select(0, torch.argsort(keys))

    tile_counts = torch.bincount(tile_ids, minlength=C * n_tiles)
    offsets = (torch.cumsum(tile_counts, 0) - tile_counts).reshape(C, tile_height, tile_width)
    return counts.to(torch.int32), flatten_ids, offsets.to(torch.int32)


def _composite_chunk(
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    colors: Tensor,
    gids: Tensor,
    slot_ok: Tensor,
    pix: Tensor,
    geo_channels: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Composite one chunk of tiles with plain autograd (the ``compositing="autograd"`` oracle).

    ``means2d [CN,2]``, ``conics [CN,3]``, ``opacities [CN]``, ``colors [CN,X]`` are flattened per camera;
    ``gids [T,K]`` each tile's depth-sorted list (padded, ``slot_ok`` marks real entries); ``pix [T,P,2]``
    pixel centres. Returns the blended colours ``[T,P,X]`` (no background) and transmittance ``[T,P]``.
    ``geo_channels``: if given, only those channels send gradient to the blending weights.
    """
    mu = means2d[gids]  # [T,K,2]
    con = conics[gids]
    opa = opacities[gids]
    dx = mu[:, None, :, 0] - pix[:, :, None, 0]  # [T,P,K]
    dy = mu[:, None, :, 1] - pix[:, :, None, 1]
    sigma = 0.5 * (con[:, None, :, 0] * dx * dx + con[:, None, :, 2] * dy * dy) + con[:, None, :, 1] * dx * dy
    alpha = torch.clamp_max(opa[:, None, :] * torch.exp(-sigma), MAX_ALPHA)
    valid = (sigma >= 0) & (alpha >= ALPHA_THRESHOLD) & slot_ok[:, None, :]
    alpha = torch.where(valid, alpha, 0.0)
    one_minus = 1.0 - alpha
    T_incl = torch.cumprod(one_minus, dim=-1)
    # Transmittance is non-increasing, so "stop before the first Gaussian whose next T <= 1e-4" is a mask.
    included = valid & (T_incl > TRANSMITTANCE_EPS)
    alpha = torch.where(included, alpha, 0.0)
    T_excl = torch.cat([torch.ones_like(T_incl[..., :1]), T_incl[..., :-1]], dim=-1)
    weights = alpha * T_excl  # [T,P,K]
    T_final = torch.prod(torch.where(included, one_minus, 1.0), dim=-1)
    cols = colors[gids]  # [T,K,X]
    if geo_channels is None:
        out = torch.bmm(weights, cols)
    else:
        out = torch.bmm(weights.detach(), cols)
        out_geo = torch.bmm(weights, cols[..., geo_channels])
        out = out.index_copy(-1, geo_channels, out_geo)
    return out, T_final


def _composite_forward(
    coef: Tensor, opa: Tensor, V: Tensor, nphi: Tensor, for_grad: bool
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """:class:`_Composite`'s forward: ``Y [T,P,Xv]``, the weights ``W [T,P,K]`` and, if ``for_grad``, what
    the backward needs besides them: ``r = a / (1 - a)`` (0 where skipped or stopped) and the mask of
    unclamped alphas (None when no alpha is clamped, the common case)."""
    # In-place ops and thresholds instead of boolean masks: masked_fill / where are many times slower
    # than arithmetic on CPU, and these [T,P,K] tensors are the whole cost.
    nsig = torch.matmul(nphi, coef)  # [T,P,K] = -sigma
    # sigma < 0 only arises from rounding at a Gaussian's centre: count it as 0 rather than skip the pair
    alpha = nsig.clamp_max_(0.0).exp_().mul_(opa[:, None, :]).clamp_max_(MAX_ALPHA)
    F.threshold_(alpha, _below(ALPHA_THRESHOLD, alpha.dtype), 0.0)  # alpha < 1/255 -> skipped
    T, P, K = alpha.shape
    # transmittance before and after each entry from one cumulative product over [1, 1 - a_1, ..., 1 - a_K]
    trans = alpha.new_empty(T, P, K + 1)
    trans[..., 0] = 1.0
    torch.sub(alpha.new_ones(()), alpha, out=trans[..., 1:])
    trans.view(-1, K + 1).cumprod_(-1)
    T_excl, T_incl = trans[..., :-1], trans[..., 1:]
    # Transmittance is non-increasing, so "stop before the first Gaussian whose next T <= 1e-4" is a mask,
    # needed only where some pixel's final transmittance reached the stop.
    # 1 where T_incl > 1e-4 (then T_incl * 2e4 > 1), else 0 (thresholds beat boolean masks here, see above)
    if bool((trans[..., -1] <= TRANSMITTANCE_EPS).any()):
        alpha.mul_(F.threshold(T_incl, TRANSMITTANCE_EPS, 0.0).mul_(2.0 / TRANSMITTANCE_EPS).clamp_max_(1.0))
    r = unclamped = None
    if for_grad:
        if bool((opa >= MAX_ALPHA).any()):  # only such Gaussians can reach the 0.999 clamp
            unclamped = (alpha < MAX_ALPHA).to(alpha.dtype)
        r = torch.sub(alpha.new_ones(()), alpha)
        r = torch.div(alpha, r, out=r)
    W = alpha.mul_(T_excl)
    return torch.bmm(W, V), W, r, unclamped


class _Composite(torch.autograd.Function):
    """Front-to-back compositing of a chunk of tiles with gsplat's analytic backward.

    Inputs: ``coef [T,6,K]`` (per tile list entry, the quadratic ``sigma(q) = coef . (1, qx, qy, qx^2, qx qy,
    qy^2)`` in tile-local pixel coordinates ``q``), ``opa [T,K]`` (0 on padding slots), values ``V [T,K,Xv]``
    and ``nphi [P,6]`` (minus the monomials at the tile's pixel centres; ``[T,P,6]`` for product-grid tiles,
    whose pixels differ from tile to tile). Output ``Y [T,P,Xv] = W V`` with
    weights ``w_i = a_i prod_{j<i} (1 - a_j)`` and ``a = min(0.999, o exp(-sigma))`` under gsplat's skip
    (``sigma < 0`` or ``a < 1/255``) and stop (transmittance after the Gaussian ``<= 1e-4``) rules.

    Backward (no recomputation of the forward): with ``g = dL/dW = G V^T``,
    ``dL/da_i = T_i g_i - (sum_{j>i} w_j g_j) / (1 - a_i)`` (the suffix sum is gsplat's back-to-front
    recurrence, here a reversed cumulative sum), then ``dL/dsigma = -a dL/da`` and ``dL/do = a dL/da / o``
    where ``a`` is not clamped; the sums over a tile's pixels are one matmul with the monomials. As
    ``a T_i = w_i``, ``dL/d(-sigma) = r_i suffix_i - w_i g_i`` with ``r = a / (1 - a)`` kept from the forward.
    ``geo`` (optional channel indices of ``V``): only these channels' gradients reach the weights.
    """

    @staticmethod
    def forward(ctx, coef: Tensor, opa: Tensor, V: Tensor, nphi: Tensor, geo: Tensor | None) -> Tensor:
        Y, W, r, unclamped = _composite_forward(coef, opa, V, nphi, any(ctx.needs_input_grad[:2]))
        ctx.save_for_backward(W, r, unclamped, opa, V, nphi, geo)
        return Y

    @staticmethod
    def backward(ctx, G: Tensor):
        W, r, unclamped, opa, V, nphi, geo = ctx.saved_tensors
        need_coef, need_opa, need_v = ctx.needs_input_grad[:3]
        dV = torch.bmm(W.transpose(1, 2), G) if need_v else None
        dcoef = dopa = None
        if need_coef or need_opa:
            Gg, Vg = (G, V) if geo is None else (G[..., geo], V[..., geo])
            wg = torch.bmm(Gg, Vg.transpose(1, 2)).mul_(W)  # w_i dL/dw_i [T,P,K]
            # 2D: torch's CPU cumsum runs ~2x faster over a matrix's rows than along a 3D tensor's last dim
            suffix = torch.cumsum(wg.view(-1, wg.shape[-1]), dim=-1).view_as(wg)
            torch.sub(suffix[..., -1:].clone(), suffix, out=suffix)  # total - prefix: sum over j > i
            u_neg = suffix.mul_(r).sub_(wg)  # dL/d(-sigma)
            if unclamped is not None:  # clamped (0.999) alphas do not depend on the inputs
                u_neg.mul_(unclamped)
            dcoef = torch.matmul(-nphi.transpose(-1, -2), u_neg)  # [T,6,K] = dL/dcoef
            if need_opa:  # dL/do = sum_p dL/d(-sigma) / o; the constant monomial's row is minus that sum
                dopa = torch.where(opa > 0, -dcoef[:, 0] / opa.clamp_min(1e-30), 0.0)
        return dcoef, dopa, dV, None, None


def _below(x: float, dtype: torch.dtype) -> float:
    """The largest ``dtype`` value below ``x``: ``threshold(t, _below(x))`` keeps exactly ``t >= x``."""
    return torch.nextafter(torch.tensor(x, dtype=dtype), torch.tensor(-math.inf, dtype=dtype)).item()


def _tile_monomials(tile_size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Minus the monomials ``(1, qx, qy, qx^2, qx qy, qy^2)`` ``[P,6]`` at pixel centres (tile-centred)."""
    lp = torch.arange(tile_size * tile_size, device=device)
    q = torch.stack([lp % tile_size, lp // tile_size], dim=-1).to(dtype) + 0.5 - 0.5 * tile_size
    return _neg_monomials(q)


def _neg_monomials(q: Tensor) -> Tensor:
    """Minus ``(1, qx, qy, qx^2, qx qy, qy^2)`` ``[..., 6]`` at tile-local pixels ``q [..., 2]``."""
    qx, qy = q.unbind(-1)
    return -torch.stack([torch.ones_like(qx), qx, qy, qx * qx, qx * qy, qy * qy], dim=-1)


def _sigma_coefficients(mu: Tensor, con: Tensor, centre: Tensor) -> Tensor:
    """``[T,6,K]`` coefficients of ``sigma`` in the monomials of :func:`_tile_monomials`.

    ``mu [T,K,2]`` means, ``con [T,K,3]`` conics, ``centre [T,2]`` tile centres (pixels). Local coordinates
    keep the expanded quadratic's terms small, so float32 cancellation stays at float noise.
    """
    m = mu - centre[:, None, :]
    mx, my = m.unbind(-1)
    a, b, c = con.unbind(-1)
    ha, hc = 0.5 * a, 0.5 * c
    lin_x = a * mx + b * my
    lin_y = b * mx + c * my
    const = ha * mx * mx + b * mx * my + hc * my * my
    return torch.stack([const, -lin_x, -lin_y, ha, b, hc], dim=1)


class PixelGrid:
    """Product-grid tiles: the pixels ``pixel_rows x pixel_cols`` of an image, in groups of ``tile_size``
    consecutive selected rows by ``tile_size`` consecutive selected columns (the last group of each axis is
    padded by repeating its last pixel; those outputs are cropped).

    ``rows [R]``, ``cols [S]``: strictly increasing pixel indices (pixel centres at index + 0.5). Holds per
    tile ``bounds`` (first/last pixel of each tile column and tile row, for :func:`isect_tiles`), ``centre
    [tiles,2]``, pixel centres ``pix [tiles,P,2]`` and minus their tile-local monomials ``nphi [tiles,P,6]``
    (as :func:`_tile_monomials`), tiles in row-major order like uniform tiles.
    """

    def __init__(self, rows: Tensor, cols: Tensor, tile_size: int, dtype: torch.dtype) -> None:
        ts = tile_size
        axes = []
        for p in (cols, rows):
            n = math.ceil(p.numel() / ts)
            idx = torch.arange(n * ts, device=p.device).clamp_max(p.numel() - 1)
            per_tile = p[idx].view(n, ts)
            axes.append((per_tile.to(dtype) + 0.5, torch.stack([per_tile[:, 0], per_tile[:, -1]], dim=-1)))
        (xs, xb), (ys, yb) = axes
        self.tile_width, self.tile_height = xs.shape[0], ys.shape[0]
        self.height, self.width = rows.numel(), cols.numel()
        self.bounds = (xb, yb)
        th, tw = self.tile_height, self.tile_width
        px = xs.view(1, tw, 1, ts).expand(th, tw, ts, ts)
        py = ys.view(th, 1, ts, 1).expand(th, tw, ts, ts)
        self.pix = torch.stack([px, py], dim=-1).reshape(th * tw, ts * ts, 2)
        cx = 0.5 * (xb[:, 0] + xb[:, 1]).to(dtype) + 0.5
        cy = 0.5 * (yb[:, 0] + yb[:, 1]).to(dtype) + 0.5
        self.centre = torch.stack([cx.view(1, tw).expand(th, tw), cy.view(th, 1).expand(th, tw)], dim=-1)
        self.centre = self.centre.reshape(th * tw, 2)
        self.nphi = _neg_monomials(self.pix - self.centre[:, None])


def check_pixel_grid(pixel_rows: Tensor | None, pixel_cols: Tensor | None, width: int, height: int) -> None:
    """Raise ``ValueError`` unless both are None or both are 1D, non-empty, strictly increasing integer
    pixel indices inside the ``height x width`` image (rows) / (columns)."""
    if pixel_rows is None and pixel_cols is None:
        return
    if pixel_rows is None or pixel_cols is None:
        raise ValueError("pixel_rows and pixel_cols must be given together")
    for name, p, n in (("pixel_rows", pixel_rows, height), ("pixel_cols", pixel_cols, width)):
        if p.dim() != 1 or p.numel() == 0 or p.dtype.is_floating_point or p.dtype == torch.bool:
            raise ValueError(f"{name} must be a non-empty 1D integer tensor, got {p.dtype} {tuple(p.shape)}")
        if bool((p[1:] <= p[:-1]).any()) or int(p[0]) < 0 or int(p[-1]) >= n:
            raise ValueError(f"{name} must be strictly increasing pixel indices in [0, {n})")


def plan_chunks(sorted_counts: list[int], pixels: int, chunk_elements: int) -> list[tuple[int, int, int]]:
    """Split tiles sorted by descending list length into ``(start, end, kmax)`` chunks.

    A chunk holds at most ``chunk_elements`` padded pairs and only tiles whose list is at least
    :data:`CHUNK_FILL` of its longest, so padding every list to the chunk's longest wastes little work.
    """
    neg = [-c for c in sorted_counts]  # ascending, for bisect
    chunks, i, n_tiles = [], 0, len(sorted_counts)
    while i < n_tiles:
        kmax = max(sorted_counts[i], 1)
        similar = bisect.bisect_right(neg, -math.ceil(CHUNK_FILL * sorted_counts[i]))
        n = max(1, min(similar - i, n_tiles - i, chunk_elements // (pixels * kmax)))
        chunks.append((i, i + n, kmax))
        i += n
    return chunks


def _chunk_lists(
    tids: Tensor,
    kmax: int,
    counts: Tensor,
    offsets: Tensor,
    fids: Tensor,
    pad: int,
    tile_size: int,
    tile_width: int,
    tile_height: int,
    dtype: torch.dtype,
    grid: PixelGrid | None = None,
) -> tuple[Tensor, Tensor]:
    """Padded Gaussian lists ``gids [T,kmax]`` (slot ``pad``: the dummy row) and tile centres ``[T,2]``."""
    local = tids % (tile_height * tile_width)
    if grid is not None:
        centre = grid.centre[local]
    else:
        centre = torch.stack([local % tile_width, local // tile_width], dim=-1).to(dtype) * tile_size
        centre = centre + 0.5 * tile_size
    slot = torch.arange(kmax, device=tids.device)
    n, start = counts.index_select(0, tids)[:, None], offsets.index_select(0, tids)[:, None]
    idx = torch.where(slot[None] < n, start + slot[None], pad)
    return _take(fids, idx), centre


def _take(t: Tensor, ids: Tensor) -> Tensor:
    """``t[ids]`` via ``index_select`` (its backward is an ``index_add``, much cheaper than ``index_put``)."""
    return t.index_select(0, ids.reshape(-1)).reshape(*ids.shape, *t.shape[1:])


@torch.no_grad()
def _saturated_length(coef: Tensor, opa: Tensor, nphi: Tensor) -> Tensor:
    """Per tile ``[T]``: list entries up to the one where every pixel's transmittance has fallen to the stop.

    Entries after it get weight 0 at every pixel of the tile (gsplat's stop), so cutting them changes
    nothing. The cut uses half the stop threshold, so rounding can never cut an entry the compositing uses.
    """
    alpha = torch.matmul(nphi, coef).clamp_max_(0.0).exp_().mul_(opa[:, None, :]).clamp_max_(MAX_ALPHA)
    F.threshold_(alpha, _below(ALPHA_THRESHOLD, alpha.dtype), 0.0)
    T_incl = torch.sub(alpha.new_ones(()), alpha, out=alpha)  # in place: no new [T,P,K] buffers
    T_incl.view(-1, T_incl.shape[-1]).cumprod_(-1)
    # T_incl falls along the list at every pixel, so its max over the tile's pixels does too
    return (T_incl.amax(dim=1) > 0.5 * TRANSMITTANCE_EPS).sum(-1)


@torch.no_grad()
def cut_saturated_lists(
    counts: Tensor,
    offsets: Tensor,
    fids: Tensor,
    means2d: Tensor,
    conics: Tensor,
    opacities: Tensor,
    tile_size: int,
    tile_width: int,
    tile_height: int,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    grid: PixelGrid | None = None,
) -> Tensor:
    """Per-tile list lengths ``[tiles]`` cut by :func:`_saturated_length` (never longer than ``counts``).

    ``fids [M+1]`` ends with the index of the dummy row (opacity 0) that ``means2d``, ``conics`` and
    ``opacities`` (flattened ``[CN+1,...]``) carry last. ``grid``: product-grid tiles (:class:`PixelGrid`).
    """
    pad = fids.numel() - 1  # fids[-1] points at the dummy row
    P = tile_size * tile_size
    nphi = _tile_monomials(tile_size, means2d.device, means2d.dtype)
    order = torch.argsort(counts, descending=True, stable=True)
    counts = counts.clone()
    for s, e, kmax in plan_chunks(counts[order].tolist(), P, chunk_elements):
        tids = order[s:e]
        gids, centre = _chunk_lists(
            tids, kmax, counts, offsets, fids, pad, tile_size, tile_width, tile_height, means2d.dtype, grid
        )
        coef = _sigma_coefficients(_take(means2d, gids), _take(conics, gids), centre)
        nph = nphi if grid is None else grid.nphi[tids % (tile_height * tile_width)]
        counts[tids] = torch.minimum(counts[tids], _saturated_length(coef, _take(opacities, gids), nph))
    return counts


def rasterize_to_pixels(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    width: int,
    height: int,
    tile_size: int,
    isect_offsets: Tensor,
    flatten_ids: Tensor,
    backgrounds: Tensor | None = None,
    geo_channels: Tensor | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    compositing: str = "analytic",
    grid: PixelGrid | None = None,
) -> tuple[Tensor, Tensor]:
    """Composite ``[C,N,...]`` projected Gaussians into ``[C,H,W,X]`` colours and ``[C,H,W,1]`` alphas.

    ``compositing``: ``"analytic"`` (default; :class:`_Composite`, hand-written backward, nothing
    recomputed) or ``"autograd"`` (plain autograd, chunks under activation checkpointing; the test oracle).
    ``grid``: evaluate only at a product grid of pixels (:class:`PixelGrid`, whose tiles ``isect_offsets``
    must index); the outputs are then ``[C,R,S,...]`` and ``width``/``height`` are ignored.
    """
    if compositing not in ("analytic", "autograd"):
        raise ValueError(f"compositing must be 'analytic' or 'autograd', got {compositing!r}")
    C, N = opacities.shape
    X = colors.shape[-1]
    device, dtype = means2d.device, means2d.dtype
    tile_height, tile_width = isect_offsets.shape[-2:]
    n_tiles = C * tile_height * tile_width
    M = flatten_ids.numel()
    offsets = isect_offsets.reshape(-1).long()
    counts = torch.diff(offsets, append=torch.tensor([M], device=device))
    P = tile_size * tile_size
    analytic = compositing == "analytic"

    m2 = means2d.reshape(C * N, 2)
    con = conics.reshape(C * N, 3)
    opa = opacities.reshape(C * N)
    col = colors.reshape(C * N, X)
    if analytic:  # a ones column: its composite is the alpha (1 - final transmittance)
        col = torch.cat([col, col.new_ones(C * N, 1)], dim=-1)
    # Padding slots point at a dummy row (opacity 0: never visible) so the gathers need no bounds checks.
    m2 = torch.cat([m2, m2.new_zeros(1, 2)])
    con = torch.cat([con, con.new_zeros(1, 3)])
    opa = torch.cat([opa, opa.new_zeros(1)])
    col = torch.cat([col, col.new_zeros(1, col.shape[-1])])
    fids = torch.cat([flatten_ids, flatten_ids.new_full((1,), C * N)])
    geo = None
    if analytic and geo_channels is not None:
        geo = torch.cat([geo_channels.to(device), torch.tensor([X], device=device)])

    nphi = _tile_monomials(tile_size, device, dtype)
    if analytic:  # cut every tile's list where all its pixels are saturated
        geom = (m2.detach(), con.detach(), opa.detach())
        counts = cut_saturated_lists(
            counts, offsets, fids, *geom, tile_size, tile_width, tile_height, chunk_elements, grid
        )
    order = torch.argsort(counts, descending=True, stable=True)
    chunks = plan_chunks(counts[order].tolist(), P, chunk_elements)

    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (m2, con, opa, col))
    lp = torch.arange(P, device=device)
    px_in_tile = torch.stack([lp % tile_size, lp // tile_size], dim=-1).to(dtype) + 0.5  # [P,2]
    outs, Ts = [], []
    for s, e, kmax in chunks:
        tids = order[s:e]
        gids, centre = _chunk_lists(
            tids, kmax, counts, offsets, fids, M, tile_size, tile_width, tile_height, dtype, grid
        )
        local = None if grid is None else tids % (tile_height * tile_width)
        if analytic:
            coef = _sigma_coefficients(_take(m2, gids), _take(con, gids), centre)
            nph = nphi if grid is None else grid.nphi[local]
            if needs_grad:
                Y = _Composite.apply(coef, _take(opa, gids), _take(col, gids), nph, geo)
            else:
                Y = _composite_forward(coef, _take(opa, gids), _take(col, gids), nph, False)[0]
            outs.append(Y[..., :X])
            Ts.append(1.0 - Y[..., X])
            continue
        slot_ok = torch.arange(kmax, device=device)[None] < counts[tids][:, None]
        if grid is None:
            pix = (centre - 0.5 * tile_size)[:, None, :] + px_in_tile[None]  # [T,P,2]
        else:
            pix = grid.pix[local]
        args = (m2, con, opa, col, gids, slot_ok, pix, geo_channels)
        if needs_grad and len(chunks) > 1:
            out, T = checkpoint(_composite_chunk, *args, use_reentrant=False)
        else:
            out, T = _composite_chunk(*args)
        outs.append(out)
        Ts.append(T)

    inv = torch.argsort(order)
    out = torch.cat(outs).index_select(0, inv)  # [C*th*tw, P, X]; backward: index_add, not index_put
    T = torch.cat(Ts).index_select(0, inv)
    if backgrounds is not None:
        bg = backgrounds.reshape(C, 1, 1, X).expand(C, tile_height * tile_width, 1, X).reshape(n_tiles, 1, X)
        out = out + T[..., None] * bg

    if grid is not None:
        height, width = grid.height, grid.width

    def to_image(t: Tensor) -> Tensor:
        t = t.reshape(C, tile_height, tile_width, tile_size, tile_size, -1).permute(0, 1, 3, 2, 4, 5)
        return t.reshape(C, tile_height * tile_size, tile_width * tile_size, -1)[:, :height, :width]

    return to_image(out), to_image(1.0 - T[..., None])


def rasterization_torch(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: int | None = None,
    tile_size: int | None = None,
    backgrounds: Tensor | None = None,
    render_mode: str = "RGB",
    rasterize_mode: str = "classic",
    geo_channels: Tensor | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    compositing: str = "analytic",
    pixel_rows: Tensor | None = None,
    pixel_cols: Tensor | None = None,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """gsplat ``rasterization(..., packed=False)`` in pure torch; see :func:`tune3d.splatting.rasterize`.

    ``geo_channels`` (torch backend only): indices of the rendered channels (before the depth channel is
    appended; the depth channel always counts as geometry) whose loss may move the geometry; the other
    channels' gradients reach only their colours. ``None`` = all channels. ``tile_size`` None =
    :data:`DEFAULT_TILE_SIZE`
    (:data:`DEFAULT_GRID_TILE_SIZE` with a pixel grid). ``compositing``: see :func:`rasterize_to_pixels`.
    ``pixel_rows [R]``, ``pixel_cols [S]``: evaluate only at that product grid of pixels of the
    ``height x width`` image (:class:`PixelGrid`); outputs ``[C,R,S,...]`` equal the full render there.
    """
    C, N = viewmats.shape[0], means.shape[0]
    check_pixel_grid(pixel_rows, pixel_cols, width, height)
    default_ts = DEFAULT_TILE_SIZE if pixel_rows is None else DEFAULT_GRID_TILE_SIZE
    tile_size = default_ts if tile_size is None else int(tile_size)
    if tile_size <= 0:
        raise ValueError(f"tile_size must be positive, got {tile_size}")
    radii, means2d, depths, conics, comps = project_gaussians(
        means,
        quats,
        scales,
        opacities,
        viewmats,
        Ks,
        width,
        height,
        eps2d=eps2d,
        near_plane=near_plane,
        far_plane=far_plane,
        radius_clip=radius_clip,
        calc_compensations=rasterize_mode == "antialiased",
    )
    opac = opacities[None].expand(C, N)
    if comps is not None:
        opac = opac * comps

    if sh_degree is None:
        cols = colors if colors.dim() == 3 else colors[None].expand(C, N, colors.shape[-1])
    else:
        campos = torch.linalg.inv(viewmats)[:, :3, 3]  # [C,3]
        dirs = means[None] - campos[:, None]  # [C,N,3]
        shs = colors if colors.dim() == 4 else colors[None].expand(C, *colors.shape)
        cols = torch.clamp_min(eval_sh(sh_degree, dirs, shs) + 0.5, 0.0)

    n_color = cols.shape[-1]
    if render_mode in ("RGB+D", "RGB+ED"):
        cols = torch.cat([cols, depths[..., None]], dim=-1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(C, 1)], dim=-1)
        if geo_channels is not None:
            geo_channels = torch.cat([geo_channels, geo_channels.new_tensor([n_color])])
    elif render_mode in ("D", "ED"):
        cols = depths[..., None]
        backgrounds = None if backgrounds is None else backgrounds.new_zeros(C, 1)
        geo_channels = None

    grid = None
    if pixel_rows is not None and pixel_cols is not None:
        grid = PixelGrid(pixel_rows.to(means.device), pixel_cols.to(means.device), tile_size, means.dtype)
        tile_width, tile_height = grid.tile_width, grid.tile_height
    else:
        tile_width = math.ceil(width / tile_size)
        tile_height = math.ceil(height / tile_size)
    tiles_per_gauss, flatten_ids, isect_offsets = isect_tiles(
        means2d.detach(),
        radii,
        depths.detach(),
        tile_size,
        tile_width,
        tile_height,
        conics=conics.detach(),
        opacities=opac.detach(),
        tile_bounds=None if grid is None else grid.bounds,
    )
    render_colors, render_alphas = rasterize_to_pixels(
        means2d,
        conics,
        cols,
        opac,
        width,
        height,
        tile_size,
        isect_offsets,
        flatten_ids,
        backgrounds=backgrounds,
        geo_channels=geo_channels,
        chunk_elements=chunk_elements,
        compositing=compositing,
        grid=grid,
    )
    if render_mode in ("ED", "RGB+ED"):
        render_colors = torch.cat(
            [render_colors[..., :-1], render_colors[..., -1:] / render_alphas.clamp(min=1e-10)], dim=-1
        )
    info = {
        "batch_ids": None,
        "camera_ids": None,
        "gaussian_ids": None,
        "radii": radii,
        "means2d": means2d,
        "depths": depths,
        "conics": conics,
        "opacities": opac,
        "tile_width": tile_width,
        "tile_height": tile_height,
        "tiles_per_gauss": tiles_per_gauss,
        "flatten_ids": flatten_ids,
        "isect_offsets": isect_offsets,
        "width": width,
        "height": height,
        "tile_size": tile_size,
        "n_batches": 1,
        "n_cameras": C,
    }
    return render_colors, render_alphas, info
