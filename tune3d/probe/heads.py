"""DINOv2-protocol linear probe heads: BN + 1x1 conv segmentation; binned ("UD", "linear") depth."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LinearSegHead(nn.Module):
    """``BatchNorm2d`` + (dropout) + 1x1 conv on the patch map (DINOv2 / FiT3D ``BNHead``).

    ``forward(patch B,C,h,w) -> logits B,K,h,w`` at patch resolution; :meth:`predict` upsamples them
    bilinearly (``align_corners=False``) to the label size, where the loss and the argmax are taken.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.bn = nn.BatchNorm2d(in_channels)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(in_channels, num_classes, kernel_size=1)
        nn.init.normal_(self.conv_seg.weight, std=0.01)  # mmseg decode-head init
        nn.init.zeros_(self.conv_seg.bias)

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        return self.conv_seg(self.dropout(self.bn(patch)))

    def predict(self, patch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Logits ``B,K,H,W`` bilinearly resized to ``size = (H, W)``."""
        return F.interpolate(self.forward(patch), size=size, mode="bilinear", align_corners=False)


class BinnedDepthHead(nn.Module):
    """DINOv2 linear depth head: classification over uniform depth bins.

    Input: last-layer patch map ``B,C,h,w`` (no final norm) and a CLS token ``B,Cc`` broadcast to every
    patch; the concatenation is upsampled ``x upsample`` (bilinear) and a 1x1 conv gives ``num_bins`` logits.
    ``p = (relu(logits) + 0.1) / sum``; depth ``= sum_k p_k * bin_k`` with ``bins = linspace(min, max)``.

    The 1x1 conv is applied *before* the upsampling, and the CLS part of it as a per-image bias: bilinear
    interpolation is linear with weights summing to one, so both orders are equal; this is ~16x cheaper
    than convolving the upsampled ``C+Cc``-channel map. The ReLU comes after the upsampling, as in the
    original.
    ``conv_depth`` keeps the official weight layout ``(num_bins, C + Cc, 1, 1)`` (CLS channels last).
    """

    def __init__(
        self,
        in_channels: int,
        cls_channels: int,
        num_bins: int = 256,
        min_depth: float = 1e-3,
        max_depth: float = 10.0,
        upsample: int = 4,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.cls_channels = cls_channels
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        self.upsample = upsample
        self.conv_depth = nn.Conv2d(in_channels + cls_channels, num_bins, kernel_size=1)
        nn.init.normal_(self.conv_depth.weight, std=0.01)
        nn.init.zeros_(self.conv_depth.bias)
        self.register_buffer("bins", torch.linspace(min_depth, max_depth, num_bins), persistent=False)

    @property
    def num_bins(self) -> int:
        return self.conv_depth.out_channels

    def logits(self, patch: torch.Tensor, cls: torch.Tensor | None) -> torch.Tensor:
        """Bin logits ``B,num_bins,h*up,w*up`` before the normalisation."""
        w = self.conv_depth.weight.flatten(1)  # (K, C + Cc)
        out = F.conv2d(patch, w[:, : self.in_channels, None, None], self.conv_depth.bias)
        if self.cls_channels:
            if cls is None:
                raise ValueError("this depth head was built with a CLS token; pass cls (B, Cc)")
            out = out + (cls @ w[:, self.in_channels :].t())[:, :, None, None]
        if self.upsample != 1:
            out = F.interpolate(out, scale_factor=self.upsample, mode="bilinear", align_corners=False)
        return out

    def forward(self, patch: torch.Tensor, cls: torch.Tensor | None = None) -> torch.Tensor:
        """Depth ``B,1,h*up,w*up`` in metres (a convex combination of the bins, not yet clamped)."""
        p = torch.relu(self.logits(patch, cls)) + 0.1
        p = p / p.sum(dim=1, keepdim=True)
        return torch.einsum("bkhw,k->bhw", p, self.bins.to(p.dtype)).unsqueeze(1)

    def predict(self, patch: torch.Tensor, cls: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        """Inference: depth clamped to ``[min_depth, max_depth]`` and bilinearly resized to ``size``."""
        d = self.forward(patch, cls).clamp(self.min_depth, self.max_depth)
        return F.interpolate(d, size=size, mode="bilinear", align_corners=False)
