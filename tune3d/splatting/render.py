"""Render colour, depth and latent features of :class:`FeatureGaussians` with FiT3D's gradient split.

FiT3D (Sec. 3.1) optimises the latent features only with the feature loss and everything else only with the
colour loss: the feature loss must not move means, rotations, scales or opacities. Two implementations:

* torch backend, **one pass**: colour, latent and depth channels are composited together with shared
  blending weights; the latent channels use the weights ``detach()``-ed, so their loss reaches only the
  features. Cost = one projection + one tile sort + one compositing pass over ``3 + D + 1`` channels.
* gsplat backend, **two passes**: ``RGB+ED`` with full gradients, then the latent features with detached
  geometry. Cost = two projections/sorts; the second pass composites ``D`` channels (D=64 needs no padding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from tune3d.splatting._torch_backend import rasterization_torch
from tune3d.splatting.gaussians import FeatureGaussians
from tune3d.splatting.rasterize import rasterize, resolve_backend
from tune3d.splatting.sh import eval_sh


@dataclass
class FeatureRender:
    """Renders for ``C`` cameras: ``rgb [C,3,H,W]``, expected ``depth [C,1,H,W]`` (0 where empty),
    ``alpha [C,1,H,W]``, ``latent [C,D,H,W]`` (no background term), and the rasterizer ``info``."""

    rgb: Tensor
    depth: Tensor
    alpha: Tensor
    latent: Tensor
    info: dict[str, Any]


def render_rgb_and_features(
    gaussians: FeatureGaussians,
    viewmat: Tensor,
    K: Tensor,
    width: int,
    height: int,
    backend: str = "auto",
    sh_degree: int | None = None,
    background: Tensor | None = None,
    **raster_kwargs: Any,
) -> FeatureRender:
    """Render with the colour/feature gradient split (see module docstring).

    Args:
        viewmat: ``[4,4]`` or ``[C,4,4]`` world-to-camera (OpenCV). K: ``[3,3]`` or ``[C,3,3]``.
        sh_degree: SH degree to use (default: all the Gaussians hold; lower it for 3DGS's warm-up schedule).
        background: ``[3]`` or ``[C,3]`` RGB background (the latent map gets none, as in FiT3D).
        raster_kwargs: forwarded to the rasterizer (``near_plane``, ``eps2d``, ``rasterize_mode``, ...).

    ``info["means2d"]`` belongs to the colour pass: ``DefaultStrategy`` sees colour gradients only.
    """
    viewmats = viewmat[None] if viewmat.dim() == 2 else viewmat
    Ks = K[None] if K.dim() == 2 else K
    viewmats, Ks = viewmats.to(gaussians.means), Ks.to(gaussians.means)
    C, D = viewmats.shape[0], gaussians.feature_dim
    sh_degree = gaussians.sh_degree if sh_degree is None else sh_degree
    bg = None if background is None else background.to(gaussians.means).expand(C, 3)
    means, quats, scales, opac = gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities
    name = resolve_backend(backend, means.device)

    if name == "torch":
        campos = torch.linalg.inv(viewmats)[:, :3, 3]
        rgb_g = torch.clamp_min(
            eval_sh(sh_degree, means[None] - campos[:, None], gaussians.sh_coeffs) + 0.5, 0.0
        )
        feats = gaussians.features[None].expand(C, -1, -1)
        colors = torch.cat([rgb_g, feats], dim=-1)  # [C,N,3+D]
        bgs = None if bg is None else torch.cat([bg, bg.new_zeros(C, D)], dim=-1)
        out, alpha, info = rasterization_torch(
            means,
            quats,
            scales,
            opac,
            colors,
            viewmats,
            Ks,
            width,
            height,
            backgrounds=bgs,
            render_mode="RGB+ED",
            geo_channels=torch.arange(3, device=means.device),
            **raster_kwargs,
        )
        rgb, latent, depth = out[..., :3], out[..., 3 : 3 + D], out[..., -1:]
    else:
        out, alpha, info = rasterize(
            means,
            quats,
            scales,
            opac,
            gaussians.sh_coeffs,
            viewmats,
            Ks,
            width,
            height,
            sh_degree=sh_degree,
            backgrounds=bg,
            render_mode="RGB+ED",
            backend=name,
            **raster_kwargs,
        )
        rgb, depth = out[..., :3], out[..., 3:]
        latent, _, _ = rasterize(
            means.detach(),
            quats.detach(),
            scales.detach(),
            opac.detach(),
            gaussians.features,
            viewmats,
            Ks,
            width,
            height,
            backend=name,
            **raster_kwargs,
        )

    def chw(t: Tensor) -> Tensor:
        return t.permute(0, 3, 1, 2)

    return FeatureRender(chw(rgb), chw(depth), chw(alpha), chw(latent), info)
