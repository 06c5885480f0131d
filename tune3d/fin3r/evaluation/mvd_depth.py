"""Table 4's ETH3D and Tanks and Temples columns: key-view depth of RobustMVD's multi-view samples.

Each sample's key view and its source views (key view first, as the reference frame) run through the model
together, exactly like a Table 4 video sequence (VGGT depth head, CUT3R self-view head, DUSt3R/MASt3R depth
after global alignment). The key view's depth is resized nearest-neighbour to the ground truth's size (as
RobustMVD's evaluation does) and aligned per sample with the suite's Table 4 alignments: ``rel`` /
``delta1`` one least-squares scale, ``_ss`` scale and shift, ``_metric`` none. Metrics are averaged over
samples (RobustMVD's mean over samples); ``rel`` is Abs Rel (a fraction), ``delta1`` the % of valid pixels
with ``max(p/g, g/p) < 1.25``. No depth cap: RobustMVD has none for these datasets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from tune3d.data.benchmarks.robustmvd import MVDSample, load_mvd_depth
from tune3d.data.sources import ImageFileSource
from tune3d.fin3r.evaluation.video_depth import ALIGNS, predict_video_depth
from tune3d.metrics.video_depth import video_depth_metrics
from tune3d.recon.interface import ReconModel


def key_view_metrics(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, float]:
    """``rel``/``delta1`` (+ ``_ss``, ``_metric``) of one key-view depth ``pred`` (any ``h,w``) vs ``gt``
    ``H,W`` (0 = invalid); NaN where no pixel is valid."""
    pred = F.interpolate(pred[None, None].double(), size=gt.shape, mode="nearest-exact")[0]
    out = {}
    for suffix, align in ALIGNS.items():
        m = video_depth_metrics(pred, gt[None].double(), gt[None] > 0, align=align)
        out["rel" + suffix] = m["abs_rel"]
        out["delta1" + suffix] = 100.0 * m["delta1"]
    return out


def evaluate_mvd_depth(
    model: ReconModel, samples: Sequence[MVDSample], size: int | None = None, niter: int = 300
) -> dict[str, float]:
    """Means over ``samples`` of :func:`key_view_metrics` (samples without valid pixels skipped), plus
    ``n_samples``."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for s in samples:
        gt = torch.from_numpy(load_mvd_depth(s))
        frames = [ImageFileSource(p).load() for p in s.ordered_images]
        pred = predict_video_depth(model, frames, size, niter)[0]
        for k, v in key_view_metrics(pred, gt).items():
            if np.isfinite(v):
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
    out = {k: sums[k] / counts[k] for k in sums}
    out["n_samples"] = float(len(samples))
    return out
