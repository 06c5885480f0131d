"""Feature-norm statistics: per-token L2 norm maps, summaries and drift between two models' features.

Fin3R (Fig. 3) tracks the mean per-token L2 norm of encoder patch tokens; the drift helpers compare a
fine-tuned encoder's tokens to the frozen one's on the same images.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


def token_norms(features: Tensor) -> Tensor:
    """Per-token L2 norms: tokens (B, N, C) -> (B, N); feature maps (B, C, h, w) -> (B, h, w). Float32+."""
    if features.ndim == 3:
        dim = -1
    elif features.ndim == 4:
        dim = 1
    else:
        raise ValueError(f"expected features (B,N,C) or (B,C,h,w), got {tuple(features.shape)}")
    x = features if features.dtype == torch.float64 else features.float()
    return x.norm(dim=dim)


def norm_summary(
    features: Tensor, percentiles: tuple[float, ...] = DEFAULT_PERCENTILES, is_norms: bool = False
) -> dict[str, float]:
    """Summary of per-token norms over all tokens and images: ``mean``, ``std`` (unbiased), ``min``, ``max``
    and ``p<q>`` for each percentile (linear interpolation, e.g. ``p50``). ``is_norms=True`` takes an
    already computed norm map of any shape."""
    n = (features if is_norms else token_norms(features)).reshape(-1).double()
    out = {
        "mean": float(n.mean()),
        "std": float(n.std()) if n.numel() > 1 else 0.0,
        "min": float(n.min()),
        "max": float(n.max()),
    }
    if percentiles:
        # torch.quantile refuses inputs above 2**24 elements; numpy has no such limit.
        values = np.quantile(n.cpu().numpy(), [p / 100 for p in percentiles])
        out.update({f"p{p:g}": float(v) for p, v in zip(percentiles, values)})
    return out


def feature_drift(features_a: Tensor, features_b: Tensor) -> dict[str, float]:
    """Drift of features ``b`` relative to reference ``a`` (same shape, (B,N,C) or (B,C,h,w)).

    Returns ``norm_a`` / ``norm_b`` (mean token norm), ``norm_ratio`` (= norm_b / norm_a),
    ``norm_abs_diff`` (mean |‖b‖ - ‖a‖| per token), ``norm_rel_diff`` (= norm_abs_diff / norm_a),
    ``cosine_mean``, ``cosine_std``, ``cosine_min`` (per-token cosine similarity of b to a).
    """
    if features_a.shape != features_b.shape:
        raise ValueError(f"feature shapes differ: {tuple(features_a.shape)} vs {tuple(features_b.shape)}")
    na, nb = token_norms(features_a).double(), token_norms(features_b).double()
    dim = -1 if features_a.ndim == 3 else 1
    cos = F.cosine_similarity(features_a.double(), features_b.double(), dim=dim, eps=1e-12).reshape(-1)
    mean_a = float(na.mean())
    abs_diff = float((nb - na).abs().mean())
    return {
        "norm_a": mean_a,
        "norm_b": float(nb.mean()),
        "norm_ratio": float(nb.mean()) / mean_a if mean_a > 0 else float("nan"),
        "norm_abs_diff": abs_diff,
        "norm_rel_diff": abs_diff / mean_a if mean_a > 0 else float("nan"),
        "cosine_mean": float(cos.mean()),
        "cosine_std": float(cos.std()) if cos.numel() > 1 else 0.0,
        "cosine_min": float(cos.min()),
    }
