"""FiT3D stage II targets: render a lifted scene's features, reduce them to the ViT token grid, compare.

Paper Alg. 1 / ``engine.py``: the per-scene feature Gaussians are rendered without gradients at the
training-image resolution, the scene's 3x3 conv lifts the latent map to the ViT width, and the result and
the valid mask are **bilinearly downsampled** (``align_corners=False``, no antialiasing) to the token grid,
where a masked L1 ``sum(|out - tgt| * m) / (sum(m) * C)`` compares them with the ViT's final-norm patch
tokens. FiT3D's mask is ScanNet++'s anonymisation mask; here it is the rendered opacity (``"alpha"``),
its threshold (``"binary"``) or all ones (``"none"``): pixels no Gaussian covers have no target.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tune3d.splatting.gaussians import FeatureGaussians
from tune3d.splatting.rasterize import rasterize

MASK_MODES = ("alpha", "binary", "none")


@torch.no_grad()
def render_latent(
    gaussians: FeatureGaussians,
    viewmat: Tensor,
    K: Tensor,
    height: int,
    width: int,
    backend: str = "auto",
    device: str | torch.device | None = None,
    pixels: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Latent render ``[C,D,H,W]`` and alpha ``[C,1,H,W]`` for ``C`` cameras, no autograd, no decoder.

    ``viewmat``: ``[4,4]``/``[C,4,4]`` world-to-camera (OpenCV); ``K``: ``[3,3]``/``[C,3,3]`` pixels. Only the
    latent channels are rasterized (no colour pass), with no background term, as in FiT3D. ``device``
    (default: where the Gaussians are) is where rendering happens; the Gaussians module is not moved, so a
    CPU-cached scene can be rendered on the GPU. ``pixels``: ``(rows [R], cols [S])`` renders only that
    product grid of the ``height x width`` image (``[C,D,R,S]``, ``[C,1,R,S]``; see ``rasterize``).
    """
    dev = gaussians.means.device if device is None else torch.device(device)
    viewmats = (viewmat[None] if viewmat.dim() == 2 else viewmat).to(dev, torch.float32)
    Ks = (K[None] if K.dim() == 2 else K).to(dev, torch.float32)
    if gaussians.decoder is None:
        raise ValueError("lifted Gaussians have no feature decoder")
    latent, alpha, _ = rasterize(
        gaussians.means.to(dev),
        gaussians.quats.to(dev),
        gaussians.scales.to(dev),
        gaussians.opacities.to(dev),
        gaussians.features.to(dev),
        viewmats,
        Ks,
        width,
        height,
        backend=backend,
        pixel_rows=None if pixels is None else pixels[0].to(dev),
        pixel_cols=None if pixels is None else pixels[1].to(dev),
    )
    return latent.permute(0, 3, 1, 2), alpha.permute(0, 3, 1, 2)


@torch.no_grad()
def render_target(gaussians: FeatureGaussians, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor]:
    """Decoded full-resolution feature render ``[C,width_vit,H,W]`` and alpha ``[C,1,H,W]``; arguments as
    :func:`render_latent`. Stage II itself only needs :func:`render_grid_target`."""
    latent, alpha = render_latent(gaussians, *args, **kwargs)
    return decode_full(latent, gaussians.decoder), alpha


@torch.no_grad()
def render_grid_target(
    gaussians: FeatureGaussians,
    viewmat: Tensor,
    K: Tensor,
    height: int,
    width: int,
    grid: tuple[int, int],
    backend: str = "auto",
    device: str | torch.device | None = None,
    mask: str = "alpha",
    threshold: float = 0.5,
) -> tuple[Tensor, Tensor]:
    """Stage II target ``[C,width_vit,h,w]`` and mask ``[C,1,h,w]`` on the token grid ``(h, w)``.

    Equal (to float rounding) to ``reduce_to_grid`` of the full :func:`render_target`, but the latent is
    rendered only at the pixels a token reads (:func:`grid_support`: for patch 14 and FiT3D's 3x3 decoder,
    4 rows x 4 columns per token, 8% of the image) and decoded only where the bilinear reduction reads
    (:func:`decode_at_grid`). Decoders that are not a zero-padded 'same' conv, and grids not smaller than
    the image, take the full render.
    """
    h, w = int(grid[0]), int(grid[1])
    dec = gaussians.decoder
    if dec is None or not support_decodable(dec) or h * w >= height * width:
        latent, alpha = render_latent(gaussians, viewmat, K, height, width, backend, device)
        feats = decode_at_grid(latent, dec, grid)
        return feats, reduce_to_grid(valid_mask(alpha, mask, threshold), grid)
    dev = gaussians.means.device if device is None else torch.device(device)
    rows, cols = grid_support((height, width), (h, w), dec.kernel_size[0], dev)
    latent, alpha = render_latent(gaussians, viewmat, K, height, width, backend, device, (rows, cols))
    feats = decode_at_grid(latent, dec, grid, support=(rows, cols, height, width))
    # the bilinear reduction reads only support pixels: a zero map holding them reduces bit for bit alike
    m = alpha.new_zeros(alpha.shape[0], 1, height, width)
    m[:, :, rows[:, None], cols[None, :]] = valid_mask(alpha, mask, threshold)
    return feats, reduce_to_grid(m, grid)


def decode_full(latent: Tensor, decoder: nn.Module) -> Tensor:
    """The scene's decoder on the whole latent map ``[B,D,H,W]`` -> ``[B,width,H,W]`` on latent's device."""
    if isinstance(decoder, nn.Conv2d):
        w = decoder.weight.to(latent.device, latent.dtype)
        b = None if decoder.bias is None else decoder.bias.to(latent.device, latent.dtype)
        if decoder.padding_mode != "zeros":
            return decoder.to(latent.device)(latent)
        return F.conv2d(latent, w, b, decoder.stride, decoder.padding, decoder.dilation, decoder.groups)
    return decoder.to(latent.device)(latent)


def support_decodable(decoder: nn.Module) -> bool:
    """Whether :func:`decode_at_grid` can evaluate ``decoder`` at single pixels exactly: a zero-padded
    'same' convolution (odd square kernel, stride 1, no dilation, one group), e.g. FiT3D's 3x3 conv."""
    if not isinstance(decoder, nn.Conv2d):
        return False
    kh, kw = decoder.kernel_size
    return (
        kh == kw
        and kh % 2 == 1
        and decoder.padding == (kh // 2, kw // 2)
        and decoder.stride == (1, 1)
        and decoder.dilation == (1, 1)
        and decoder.groups == 1
        and decoder.padding_mode == "zeros"
    )


def bilinear_matrix(n_in: int, n_out: int, device: torch.device | str | None = None) -> Tensor:
    """``[n_out, n_in]`` weights of the 1D bilinear resize :func:`reduce_to_grid` applies along one axis.

    Taken from ``F.interpolate`` itself on one-hot inputs, so the taps and weights are PyTorch's own
    (source coordinate clamping at the border, float32 weights); at most two non-zeros per row.
    """
    eye = torch.eye(n_in, device=device).view(n_in, 1, n_in, 1)
    if n_in == n_out:
        return eye[:, 0, :, 0]
    out = F.interpolate(eye, size=(n_out, 1), mode="bilinear", align_corners=False, antialias=False)
    return out[:, 0, :, 0].T.contiguous()


def _taps(n_in: int, n_out: int, device: torch.device | str | None) -> tuple[Tensor, Tensor]:
    """Bilinear weights ``[n_out, n_in]`` and the input pixels any output reads (``[R]``, increasing)."""
    m = bilinear_matrix(n_in, n_out, device)
    return m, m.ne(0).any(0).nonzero().squeeze(1)


def grid_support(
    size: tuple[int, int], grid: tuple[int, int], k: int = 3, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """Pixel rows ``[R]`` and columns ``[S]`` (increasing) that the token-grid target reads: each bilinear tap
    and its ``k // 2`` neighbours (the decoder's ``k x k`` conv), inside the ``(H, W)`` image. For 294x392
    and patch 14 (21x28 tokens): 84 rows x 112 columns."""
    out = []
    for n_in, n_out in zip(size, grid):
        _, taps = _taps(int(n_in), int(n_out), device)
        near = taps[None, :] + torch.arange(-(k // 2), k // 2 + 1, device=taps.device)[:, None]
        out.append(torch.unique(near.clamp(0, int(n_in) - 1)))
    return out[0], out[1]


def decode_at_grid(
    latent: Tensor,
    decoder: nn.Module,
    grid: tuple[int, int],
    support: tuple[Tensor, Tensor, int, int] | None = None,
) -> Tensor:
    """``reduce_to_grid(decoder(latent), grid)`` without a full-map decode: ``[B,D,H,W]`` -> ``[B,C,h,w]``.

    Bilinear reduction reads two rows x two columns per token and a ``k x k`` conv reads a ``k x k``
    neighbourhood per pixel, so a token depends only on a ``(k+1) x (k+1)`` latent block (4x4 for FiT3D's
    3x3 conv). The blocks are gathered, reduced with the same bilinear weights (both maps are linear and
    the reduction acts per channel, so they commute) and the conv weights are applied once per token:
    ``C * D * k^2`` multiply-adds per token instead of per pixel. Decoders that are not a zero-padded
    'same' conv, and grids not smaller than the image, take the full decode.

    ``support = (rows, cols, H, W)``: ``latent [B,D,R,S]`` holds only those pixel rows/columns of an
    ``H x W`` map, at least :func:`grid_support`'s (a support-decodable decoder is then required).
    """
    h, w = int(grid[0]), int(grid[1])
    B, D = latent.shape[:2]
    H, W = latent.shape[-2:] if support is None else support[2:]
    if support is None and (not support_decodable(decoder) or h * w >= H * W):
        return reduce_to_grid(decode_full(latent, decoder), (h, w))
    if not support_decodable(decoder):
        raise ValueError("decode_at_grid(support=...) needs a zero-padded 'same' conv decoder")
    dev, dt = latent.device, latent.dtype
    k = decoder.kernel_size[0]
    p = k // 2
    (my, rows), (mx, cols) = _taps(H, h, dev), _taps(W, w, dev)  # [h,H], [w,W]; pixels any token reads
    my, mx = my.to(dt), mx.to(dt)
    # the k rows/columns around each support pixel; out-of-image ones are the conv's zero padding
    ri = (rows[None, :] + torch.arange(-p, p + 1, device=dev)[:, None]).reshape(-1)
    ci = (cols[None, :] + torch.arange(-p, p + 1, device=dev)[:, None]).reshape(-1)
    inside = ((ri >= 0) & (ri < H)).to(dt)[:, None, None] * ((ci >= 0) & (ci < W)).to(dt)[None, :, None]
    ri, ci = ri.clamp(0, H - 1), ci.clamp(0, W - 1)
    if support is not None:  # pixel index -> position in the given rows / columns
        ri = torch.searchsorted(support[0].to(dev), ri)
        ci = torch.searchsorted(support[1].to(dev), ci)
    lat = latent.permute(0, 2, 3, 1)  # the rasterizer's own [B,H,W,D] layout: gathers copy whole vectors
    block = lat.index_select(1, ri).index_select(2, ci) * inside
    block = block.view(B, k, len(rows), k, len(cols), D)
    red = torch.einsum("hr,byrxsd->byxhsd", my[:, rows], block)
    red = torch.einsum("byxhsd,ws->bdyxhw", red, mx[:, cols])  # [B,D,k,k,h,w]
    weight = decoder.weight.to(dev, dt).reshape(decoder.out_channels, D * k * k)  # (d, ky, kx) order
    out = (weight @ red.reshape(B, D * k * k, h * w)).view(B, -1, h, w)
    if decoder.bias is not None:  # the bias passes through the reduction scaled by its weight sums
        ones = my.sum(1)[:, None] * mx.sum(1)[None, :]
        out = out + decoder.bias.to(dev, dt).view(1, -1, 1, 1) * ones
    return out


def valid_mask(alpha: Tensor, mode: str = "alpha", threshold: float = 0.5) -> Tensor:
    """Per-pixel weight ``[B,1,H,W]`` from rendered opacity (see module doc for the modes)."""
    if mode == "alpha":
        return alpha.clamp(0.0, 1.0)
    if mode == "binary":
        return (alpha > threshold).to(alpha.dtype)
    if mode == "none":
        return torch.ones_like(alpha)
    raise ValueError(f"unknown mask mode {mode!r}; choose one of {', '.join(MASK_MODES)}")


def reduce_to_grid(x: Tensor, grid: tuple[int, int]) -> Tensor:
    """Bilinear resize of ``[B,C,H,W]`` to the token grid ``(h, w)`` exactly as FiT3D does
    (``F.interpolate(mode="bilinear", align_corners=False)``, no antialiasing: each token reads the 2x2
    pixels around its centre, not an area average)."""
    if tuple(x.shape[-2:]) == tuple(grid):
        return x
    return F.interpolate(x, size=tuple(grid), mode="bilinear", align_corners=False, antialias=False)


def hflip(*tensors: Tensor, flip: Tensor) -> tuple[Tensor, ...]:
    """Horizontally flip the samples where ``flip [B]`` (bool) is set, in every ``[B,...,W]`` tensor.

    Bilinear reduction with ``align_corners=False`` is mirror-symmetric, so flipping the reduced target and
    mask equals reducing the flipped full-resolution ones (and is far cheaper).
    """
    if not bool(flip.any()):
        return tensors
    out = []
    for t in tensors:
        sel = flip.to(t.device).view(-1, *([1] * (t.dim() - 1)))
        out.append(torch.where(sel, t.flip(-1), t))
    return tuple(out)


def masked_l1_sums(out: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """``(sum(|out - target| * m), sum(m) * C)`` over a batch; ``out``/``target`` ``[B,C,h,w]``, ``mask``
    ``[B,1,h,w]``. Kept apart so a distributed step can normalise by the *global* denominator."""
    if out.shape != target.shape:
        raise ValueError(f"prediction {tuple(out.shape)} and target {tuple(target.shape)} differ")
    num = ((out.float() - target.float()).abs() * mask.float()).sum()
    den = mask.float().sum() * out.shape[1]
    return num, den


def masked_l1(out: Tensor, target: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """FiT3D's masked L1: ``sum(|out - tgt| * m) / (sum(m) * C)`` (paper Alg. 1)."""
    num, den = masked_l1_sums(out, target, mask)
    return num / den.clamp_min(eps)
