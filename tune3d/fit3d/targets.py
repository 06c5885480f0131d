"""FiT3D stage II targets: render a lifted scene's features, reduce them to the ViT token grid, compare.

Paper Alg. 1 / ``engine.py``: the per-scene feature Gaussians are rendered without gradients at the
training-image resolution, the scene's 3x3 conv lifts the latent map to the ViT width, and the result and
the valid mask are **bilinearly downsampled** (``align_corners=False``, no antialiasing) to the token grid,
where a masked L1 ``sum(|out - tgt| * m) / (sum(m) * C)`` compares them with the ViT's final-norm patch
tokens. FiT3D's mask is ScanNet++'s anonymisation mask; here it is the rendered opacity (``"alpha"``),
its threshold (``"binary"``) or all ones (``"none"``): pixels no Gaussian covers have no target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tune3d.splatting.gaussians import FeatureGaussians
from tune3d.splatting.rasterize import rasterize

MASK_MODES = ("alpha", "binary", "none")


@torch.no_grad()
def render_target(
    gaussians: FeatureGaussians,
    viewmat: Tensor,
    K: Tensor,
    height: int,
    width: int,
    backend: str = "auto",
    device: str | torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """Decoded feature render ``[C,width_vit,H,W]`` and alpha ``[C,1,H,W]`` for ``C`` cameras, no autograd.

    ``viewmat``: ``[4,4]``/``[C,4,4]`` world-to-camera (OpenCV); ``K``: ``[3,3]``/``[C,3,3]`` pixels. Only the
    latent channels are rasterized (no colour pass), with no background term, as in FiT3D. ``device``
    (default: where the Gaussians are) is where rendering happens; the Gaussians module is not moved, so a
    CPU-cached scene can be rendered on the GPU.
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
    )
    # the scene's decoder: one 3x3 conv without bias (FiT3D), applied to the full-resolution latent map
    feats = F.conv2d(latent.permute(0, 3, 1, 2), gaussians.decoder.weight.to(dev), padding=1)
    return feats, alpha.permute(0, 3, 1, 2)


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
