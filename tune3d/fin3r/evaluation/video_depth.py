"""Table 4: video depth on Sintel / Bonn / KITTI (CUT3R / MonST3R protocol).

All frames of a sequence run through the model together (VGGT depth head, CUT3R self-view head through
streaming, DUSt3R/MASt3R depth after global alignment), predictions are resized (bicubic) to the ground
truth's size, and each sequence is aligned once: ``rel`` / ``delta1`` with one per-sequence scale,
``rel_ss`` / ``delta1_ss`` with one scale and shift (``*_metric``: no alignment, for MASt3R). Sequence
results are averaged with weights = their valid pixel counts, as the official script does. ``rel`` is Abs
Rel (a fraction, as in the paper's Table 4) and ``delta1`` the % with ``max(p/g, g/p) < 1.25``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from tune3d.data.benchmarks.video_depth import MAX_DEPTH, VideoSequence, load_video_depth
from tune3d.data.sources import ImageFileSource
from tune3d.fin3r.evaluation.common import model_device, resize_for_model
from tune3d.metrics.video_depth import video_depth_metrics
from tune3d.recon.inference import reconstruct
from tune3d.recon.interface import ReconModel

ALIGNS = {"": "scale", "_ss": "scale_shift", "_metric": "metric"}


@torch.no_grad()
def predict_video_depth(
    model: ReconModel, images: list[np.ndarray], size: int | None = None, niter: int = 300
):
    """Per-frame depth ``S,h,w`` (float64) of ``H,W,3`` uint8 frames at the model's input size."""
    x = torch.stack([resize_for_model(im, model, size) for im in images]).to(model_device(model))
    rec = reconstruct(model, x, align="global", niter=niter)
    if rec.depth is None:
        raise ValueError(f"{type(model).__name__} predicts no per-frame depth")
    return torch.from_numpy(np.asarray(rec.depth, dtype=np.float64))


def evaluate_video_depth(
    model: ReconModel,
    sequences: Sequence[VideoSequence],
    size: int | None = None,
    niter: int = 300,
    max_frames: int | None = None,
) -> dict[str, float]:
    """Pixel-weighted means over ``sequences`` of ``rel``, ``delta1`` (per-sequence scale), ``rel_ss``,
    ``delta1_ss`` (scale and shift) and ``rel_metric``, ``delta1_metric`` (none); plus ``n_sequences``."""
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for seq in sequences:
        n = len(seq.images) if max_frames is None else min(max_frames, len(seq.images))
        frames = [ImageFileSource(p).load() for p in seq.images[:n]]
        gt = torch.from_numpy(np.stack([load_video_depth(seq, i) for i in range(n)]).astype(np.float64))
        pred = predict_video_depth(model, frames, size, niter)
        pred = F.interpolate(pred[:, None], size=gt.shape[-2:], mode="bicubic", align_corners=False)[:, 0]
        for suffix, align in ALIGNS.items():
            m = video_depth_metrics(pred, gt, gt > 0, align=align, max_depth=MAX_DEPTH[seq.dataset])
            w = m["n_pixels"]
            if w > 0:
                for k, scale in (("rel", 1.0), ("delta1", 100.0)):
                    sums[k + suffix] = (
                        sums.get(k + suffix, 0.0) + scale * m["abs_rel" if k == "rel" else k] * w
                    )
                    weights[k + suffix] = weights.get(k + suffix, 0.0) + w
    out = {k: sums[k] / weights[k] for k in sums}
    out["n_sequences"] = float(len(sequences))
    return out
