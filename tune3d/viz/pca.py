"""PCA colouring of dense features, fitted once across many views.

Fitting one projection on the features of all views of a scene (rather than one per image) keeps
colours comparable between views, so multi-view (in)consistency of a backbone is visible: the same
surface should get the same colour from every viewpoint. Each component is scaled to [0, 1] with
robust percentiles computed on the fitting data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tune3d.viz.images import upsample_nearest


@dataclass
class PCA:
    """``mean (C,)``, ``components (C,k)`` (unit columns, descending variance), per-component
    ``lo``/``hi`` (k,) display range, ``explained (k,)`` fraction of variance."""

    mean: torch.Tensor
    components: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    explained: torch.Tensor

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """``B,C,h,w`` (or ``C,h,w``) -> raw component scores ``B,k,h,w``."""
        x = features[None] if features.ndim == 3 else features
        x = x.detach().float().to(self.mean.device)
        scores = torch.einsum("bchw,ck->bkhw", x - self.mean.view(1, -1, 1, 1), self.components)
        return scores

    def transform(self, features: torch.Tensor) -> torch.Tensor:
        """``B,C,h,w`` -> colours ``B,3,h,w`` in [0, 1] (first three components, robustly scaled)."""
        s = self.project(features)[:, :3]
        lo, hi = self.lo[:3].view(1, -1, 1, 1), self.hi[:3].view(1, -1, 1, 1)
        return ((s - lo) / (hi - lo).clamp_min(1e-12)).clamp(0.0, 1.0)

    def to_images(self, features: torch.Tensor, scale: int | tuple[int, int] = 1) -> list[np.ndarray]:
        """``B,C,h,w`` -> list of ``H,W,3`` uint8 images, enlarged (nearest) by ``scale`` or to a size."""
        rgb = (self.transform(features).permute(0, 2, 3, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
        return [upsample_nearest(im, scale) if scale != 1 else im for im in rgb]


def _tokens(features: torch.Tensor) -> torch.Tensor:
    """``B,C,h,w`` / ``C,h,w`` / ``N,C`` -> ``N,C`` float64 on CPU."""
    f = features.detach().cpu().double()
    if f.ndim == 4:
        return f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])
    if f.ndim == 3:
        return f.permute(1, 2, 0).reshape(-1, f.shape[0])
    if f.ndim == 2:
        return f
    raise ValueError(f"expected features B,C,h,w / C,h,w / N,C, got shape {tuple(features.shape)}")


def fit_pca(
    features: Sequence[torch.Tensor] | torch.Tensor,
    n_components: int = 3,
    percentiles: tuple[float, float] = (1.0, 99.0),
    max_tokens: int = 200_000,
    seed: int = 0,
) -> PCA:
    """Fit one PCA to the tokens of all given feature maps (``B,C,h,w`` or ``C,h,w`` each).

    Exact eigendecomposition of the ``C x C`` covariance in float64 (deterministic, cheap for
    C <= 1536); at most ``max_tokens`` tokens are used (a seeded random subset). Component signs are
    fixed so that each component's largest-magnitude loading is positive, making colours reproducible.
    """
    if isinstance(features, torch.Tensor):
        features = [features]
    x = torch.cat([_tokens(f) for f in features])
    if x.shape[0] > max_tokens:
        g = torch.Generator().manual_seed(seed)
        x = x[torch.randperm(x.shape[0], generator=g)[:max_tokens]]
    C = x.shape[1]
    k = min(n_components, C)
    mean = x.mean(0)
    xc = x - mean
    cov = xc.T @ xc / max(x.shape[0] - 1, 1)
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    evals, evecs = evals.flip(0)[:k].clamp_min(0), evecs.flip(1)[:, :k]
    sign = torch.sign(evecs.gather(0, evecs.abs().argmax(0, keepdim=True))).squeeze(0)
    evecs = evecs * torch.where(sign == 0, torch.ones_like(sign), sign)
    scores = xc @ evecs
    q = torch.tensor([p / 100.0 for p in percentiles], dtype=scores.dtype)
    lo, hi = torch.quantile(scores, q, dim=0)
    total = torch.clamp(torch.diagonal(cov).sum(), min=1e-30)
    if k < 3:  # pad to three display channels with zeros
        pad = 3 - k
        evecs = torch.cat([evecs, torch.zeros(C, pad, dtype=evecs.dtype)], 1)
        lo = torch.cat([lo, torch.full((pad,), -1.0, dtype=lo.dtype)])
        hi = torch.cat([hi, torch.ones(pad, dtype=hi.dtype)])
        evals = torch.cat([evals, torch.zeros(pad, dtype=evals.dtype)])
    return PCA(
        mean=mean.float(),
        components=evecs.float(),
        lo=lo.float(),
        hi=hi.float(),
        explained=(evals / total).float(),
    )


def pca_images(features: Sequence[torch.Tensor], scale: int = 1, **fit_kwargs) -> list[np.ndarray]:
    """One shared PCA over all ``features`` (each ``B,C,h,w`` or ``C,h,w``) -> one uint8 image per map."""
    pca = fit_pca(features, **fit_kwargs)
    out: list[np.ndarray] = []
    for f in features:
        out.extend(pca.to_images(f[None] if f.ndim == 3 else f, scale))
    return out
