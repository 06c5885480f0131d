"""Photometric losses and image metrics of 3DGS / FiT3D stage I: L1, SSIM (11x11 Gaussian window,
sigma 1.5, zero-padded "same" convolution as in the 3DGS reference), PSNR, and feature agreement."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


@functools.lru_cache(maxsize=8)
def _gauss_1d(window: int, sigma: float) -> Tensor:
    x = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def _blur(x: Tensor, window: int, sigma: float) -> Tensor:
    """Separable Gaussian blur of ``B,C,H,W`` with zero padding (same size out)."""
    C = x.shape[1]
    g = _gauss_1d(window, sigma).to(x)
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(C, 1, 1, window), padding=(0, window // 2), groups=C)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(C, 1, window, 1), padding=(window // 2, 0), groups=C)


def ssim_map(img1: Tensor, img2: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Per-pixel SSIM ``B,C,H,W`` of images ``B,C,H,W`` in [0, 1] (Wang et al. 2004 constants)."""
    if img1.shape != img2.shape or img1.dim() != 4:
        raise ValueError(f"ssim expects two B,C,H,W tensors of equal shape, got {img1.shape} / {img2.shape}")
    mu1, mu2 = _blur(img1, window, sigma), _blur(img2, window, sigma)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = _blur(img1 * img1, window, sigma) - mu1_sq
    s2 = _blur(img2 * img2, window, sigma) - mu2_sq
    s12 = _blur(img1 * img2, window, sigma) - mu12
    return ((2 * mu12 + SSIM_C1) * (2 * s12 + SSIM_C2)) / ((mu1_sq + mu2_sq + SSIM_C1) * (s1 + s2 + SSIM_C2))


def ssim(img1: Tensor, img2: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM over pixels, channels and batch (scalar)."""
    return ssim_map(img1, img2, window, sigma).mean()


def l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error over every element."""
    return (pred - target).abs().mean()


def photometric_loss(pred: Tensor, target: Tensor, lambda_ssim: float = 0.2) -> Tensor:
    """3DGS colour loss ``(1 - l) L1 + l (1 - SSIM)`` on ``B,3,H,W`` images."""
    return (1.0 - lambda_ssim) * l1_loss(pred, target) + lambda_ssim * (1.0 - ssim(pred, target))


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Per-image PSNR ``[B]`` in dB of ``B,C,H,W`` images in [0, 1] (prediction clamped to [0, 1])."""
    mse = ((pred.clamp(0, 1) - target) ** 2).flatten(1).mean(1)
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


def feature_agreement(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """``feature_l1`` (mean |pred - target| over pixels and channels) and ``feature_cosine`` (mean per-pixel
    cosine similarity), each ``[B]``, for feature maps ``B,C,H,W``."""
    l1 = (pred - target).abs().flatten(1).mean(1)
    cos = F.cosine_similarity(pred, target, dim=1, eps=1e-8).flatten(1).mean(1)
    return {"feature_l1": l1, "feature_cosine": cos}
