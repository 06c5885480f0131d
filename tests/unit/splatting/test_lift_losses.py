"""Losses and image metrics of stage I lifting (SSIM, PSNR, feature agreement)."""

from __future__ import annotations

import math

import torch

from tune3d.splatting.losses import feature_agreement, photometric_loss, psnr, ssim, ssim_map


def test_ssim_identity_and_degradation():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 32, 40, generator=g)
    assert torch.allclose(ssim(img, img), torch.tensor(1.0), atol=1e-5)
    noisy = (img + 0.2 * torch.randn(img.shape, generator=g)).clamp(0, 1)
    worse = (img + 0.4 * torch.randn(img.shape, generator=g)).clamp(0, 1)
    assert 1.0 > ssim(img, noisy) > ssim(img, worse) > 0.0
    assert ssim_map(img, noisy).shape == img.shape


def test_ssim_matches_direct_gaussian_window():
    """The separable blur equals a direct 11x11 Gaussian (sigma 1.5) window at an interior pixel."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(1, 1, 21, 21, generator=g), torch.rand(1, 1, 21, 21, generator=g)
    x = torch.arange(11, dtype=torch.float64) - 5
    w1 = torch.exp(-(x**2) / (2 * 1.5**2))
    w = (w1[:, None] * w1[None]) / (w1.sum() ** 2)
    pa, pb = a[0, 0, 5:16, 5:16].double(), b[0, 0, 5:16, 5:16].double()
    mu_a, mu_b = (w * pa).sum(), (w * pb).sum()
    va, vb = (w * pa * pa).sum() - mu_a**2, (w * pb * pb).sum() - mu_b**2
    cov = (w * pa * pb).sum() - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    ref = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))
    assert math.isclose(ssim_map(a, b)[0, 0, 10, 10].item(), ref.item(), rel_tol=1e-4, abs_tol=1e-5)


def test_psnr_and_photometric_loss():
    a = torch.zeros(1, 3, 8, 8)
    b = torch.full((1, 3, 8, 8), 0.1)
    assert math.isclose(psnr(b, a).item(), 20.0, rel_tol=1e-5)  # mse 0.01
    assert photometric_loss(a, a).item() < 1e-6
    assert math.isclose(photometric_loss(b, a, lambda_ssim=0.0).item(), 0.1, rel_tol=1e-5)


def test_feature_agreement():
    f = torch.randn(2, 16, 5, 6, generator=torch.Generator().manual_seed(0))
    same = feature_agreement(f, f)
    assert torch.allclose(same["feature_cosine"], torch.ones(2), atol=1e-5)
    assert torch.allclose(same["feature_l1"], torch.zeros(2))
    opp = feature_agreement(-f, f)
    assert torch.allclose(opp["feature_cosine"], -torch.ones(2), atol=1e-5)
    zero = feature_agreement(torch.zeros_like(f), f)
    assert torch.allclose(zero["feature_cosine"], torch.zeros(2))
