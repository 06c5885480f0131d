"""Prediction heads and output activations of DUSt3R/MASt3R (dust3r ``heads/``, mast3r ``catmlp_dpt_head``).

Every head maps a list of token tensors ``[enc_out, dec_1, ..., dec_L]`` (``B,N,C``) to a dict of dense
outputs: ``pts3d`` ``B,H,W,3``, ``conf`` ``B,H,W`` and, for MASt3R, ``desc`` ``B,H,W,D`` / ``desc_conf``.

Output activations, exactly as the official ``postprocess``:

- points, mode ``('exp', -inf, inf)``: with ``d = |xyz|``, ``pts = xyz / max(d, 1e-8) * expm1(d)``
  (the direction is kept, the distance to the camera centre is ``exp(d) - 1``);
- confidence, mode ``('exp', vmin, inf)``: ``vmin + exp(x)`` (``1 + exp`` for points, ``0 + exp`` for MASt3R
  descriptors);
- descriptors, mode ``'norm'``: L2-normalised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tune3d.recon.croco.dpt import DPTAdapter
from tune3d.recon.croco.layers import Mlp

Mode = tuple[str, float, float]
DEPTH_MODE: Mode = ("exp", -math.inf, math.inf)
CONF_MODE: Mode = ("exp", 1.0, math.inf)


def reg_dense_depth(xyz: Tensor, mode: Mode = DEPTH_MODE, pos_z: bool = False) -> Tensor:
    """Activation of raw ``...,3`` point regressions (official ``reg_dense_depth``, unbounded modes only).

    ``pos_z`` flips each vector so its z is non-negative first (CUT3R's linear self-view head).
    """
    kind, vmin, vmax = mode
    if not (vmin == -math.inf and vmax == math.inf):
        raise ValueError(f"bounded depth modes are not supported: {mode}")
    if kind == "linear":
        return xyz
    if pos_z:
        xyz = xyz * torch.sign(xyz[..., -1:])
    d = xyz.norm(dim=-1, keepdim=True)
    xyz = xyz / d.clip(min=1e-8)
    if kind == "square":
        return xyz * d.square()
    if kind == "exp":
        return xyz * torch.expm1(d)
    raise ValueError(f"unknown depth mode {kind!r}")


def reg_dense_conf(x: Tensor, mode: Mode = CONF_MODE) -> Tensor:
    """Confidence activation (official ``reg_dense_conf``): ``vmin + exp(x)`` (clipped) or scaled sigmoid."""
    kind, vmin, vmax = mode
    if kind == "exp":
        return vmin + x.exp().clip(max=vmax - vmin)
    if kind == "sigmoid":
        return (vmax - vmin) * torch.sigmoid(x) + vmin
    raise ValueError(f"unknown confidence mode {kind!r}")


def postprocess(out: Tensor, depth_mode: Mode = DEPTH_MODE, conf_mode: Mode = CONF_MODE, pos_z: bool = False):
    """Raw head map ``B,4,H,W`` -> ``{"pts3d": B,H,W,3, "conf": B,H,W}``."""
    fmap = out.permute(0, 2, 3, 1)
    return {
        "pts3d": reg_dense_depth(fmap[..., 0:3], depth_mode, pos_z=pos_z),
        "conf": reg_dense_conf(fmap[..., 3], conf_mode),
    }


def pixel_shuffle_tokens(x: Tensor, image_size: tuple[int, int], patch_size: int) -> Tensor:
    """Per-patch predictions ``B,N,C*p*p`` -> dense map ``B,C,H,W`` (``F.pixel_shuffle``)."""
    H, W = image_size
    B, _, D = x.shape
    x = x.transpose(1, 2).reshape(B, D, H // patch_size, W // patch_size)
    return F.pixel_shuffle(x, patch_size)


def dpt_hooks(dec_depth: int) -> list[int]:
    """Official DPT hooks into ``[enc_out, dec_1..dec_L]``: ``[0, L/2, 3L/4, L]`` (integer division)."""
    return [0, dec_depth * 2 // 4, dec_depth * 3 // 4, dec_depth]


class LinearPts3d(nn.Module):
    """DUSt3R linear head: ``proj`` maps each last-decoder token to its 16x16 patch of (xyz, conf)."""

    def __init__(self, dec_dim: int, patch_size: int = 16) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Linear(dec_dim, 4 * patch_size**2)

    def forward(self, tokens: Sequence[Tensor], image_size: tuple[int, int]) -> dict[str, Tensor]:
        return postprocess(pixel_shuffle_tokens(self.proj(tokens[-1]), image_size, self.patch_size))


class DPTPts3d(nn.Module):
    """DUSt3R DPT head (``PixelwiseTaskWithDPT``): DPT on hooked layers, then the point/conf activation."""

    def __init__(
        self, enc_dim: int, dec_dim: int, dec_depth: int, patch_size: int = 16, **dpt_kwargs
    ) -> None:
        super().__init__()
        self.hooks = dpt_hooks(dec_depth)
        self.dpt = DPTAdapter(4, [enc_dim, dec_dim, dec_dim, dec_dim], patch_size=patch_size, **dpt_kwargs)

    def forward(self, tokens: Sequence[Tensor], image_size: tuple[int, int]) -> dict[str, Tensor]:
        return postprocess(self.dpt([tokens[i] for i in self.hooks], image_size))


class CatMLPDPTPts3d(DPTPts3d):
    """MASt3R ``catmlp+dpt`` head: DPT points + an MLP on ``cat(enc_out, dec_out)`` for local descriptors.

    ``head_local_features`` predicts ``desc_dim`` descriptor channels + 1 descriptor confidence per pixel
    (``two_confs=True``); descriptors are L2-normalised, their confidence is ``exp`` (``desc_conf_mode =
    ('exp', 0, inf)``).
    """

    def __init__(
        self,
        enc_dim: int,
        dec_dim: int,
        dec_depth: int,
        patch_size: int = 16,
        desc_dim: int = 24,
        desc_conf_mode: Mode = ("exp", 0.0, math.inf),
        **dpt_kwargs,
    ) -> None:
        super().__init__(enc_dim, dec_dim, dec_depth, patch_size, **dpt_kwargs)
        self.patch_size = patch_size
        self.desc_dim = desc_dim
        self.desc_conf_mode = desc_conf_mode
        idim = enc_dim + dec_dim
        self.head_local_features = Mlp(idim, 4 * idim, (desc_dim + 1) * patch_size**2)

    def forward(self, tokens: Sequence[Tensor], image_size: tuple[int, int]) -> dict[str, Tensor]:
        res = super().forward(tokens, image_size)
        feats = self.head_local_features(torch.cat([tokens[0], tokens[-1]], dim=-1))
        feats = pixel_shuffle_tokens(feats, image_size, self.patch_size).permute(0, 2, 3, 1)
        desc = feats[..., : self.desc_dim]
        res["desc"] = desc / desc.norm(dim=-1, keepdim=True)
        res["desc_conf"] = reg_dense_conf(feats[..., self.desc_dim], self.desc_conf_mode)
        return res
