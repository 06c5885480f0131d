"""Table 1: monocular depth. Each image runs alone (self-pair for DUSt3R/MASt3R, ``S = 1`` otherwise) and
the per-view depth (VGGT depth head, CroCo self-view z) is upsampled to the ground truth's size.

Affine-invariant models (DUSt3R, CUT3R, VGGT) are aligned per image with a least-squares scale and shift
in depth on the valid pixels; metric models (MASt3R) are not aligned. ``rel`` = Abs Rel x 100 and
``delta1`` = % of pixels with ``max(p/g, g/p) < 1.25``, averaged over the images of a dataset.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tune3d.fin3r.evaluation.common import model_device, resize_for_model
from tune3d.metrics.depth import depth_metrics_per_image
from tune3d.recon.interface import ReconModel


def depth_alignment(model: ReconModel) -> str:
    """``"none"`` for metric models, else ``"scale_shift"``."""
    return "none" if getattr(model, "metric", False) else "scale_shift"


@torch.no_grad()
def predict_mono_depth(model: ReconModel, image: np.ndarray, size: int | None = None) -> torch.Tensor:
    """Per-view depth of one ``H,W,3`` uint8 image, bilinearly resized to ``H,W`` (float64).

    ``size``: model input long side (CroCo) / width (VGGT); default the model's own (512 / 518)."""
    x = resize_for_model(image, model, size).to(model_device(model))[None]
    depth, _ = model.forward_mono(x)
    depth = F.interpolate(depth[:, None].float(), size=image.shape[:2], mode="bilinear", align_corners=False)
    return depth[0, 0].double().cpu()


def evaluate_mono_depth(
    model: ReconModel,
    samples: Iterable[dict[str, Any]],
    align: str | None = None,
    min_depth: float = 1e-3,
    max_depth: float | None = None,
    size: int | None = None,
) -> dict[str, float]:
    """``{"rel", "delta1", "n_images"}`` over ``samples`` (dicts with ``image`` H,W,3 uint8, ``depth`` H,W
    metres with 0 = invalid, optional ``mask`` H,W bool). Images without valid pixels are skipped."""
    align = align or depth_alignment(model)
    rel, d1 = [], []
    for s in samples:
        pred = predict_mono_depth(model, s["image"], size)
        gt = torch.from_numpy(np.asarray(s["depth"], dtype=np.float64))
        mask = None if s.get("mask") is None else torch.from_numpy(np.asarray(s["mask"], dtype=bool))
        per = depth_metrics_per_image(
            pred[None],
            gt[None],
            None if mask is None else mask[None],
            min_depth=min_depth,
            max_depth=max_depth,
            align=align,
        )
        if not torch.isnan(per["abs_rel"][0]):
            rel.append(float(per["abs_rel"][0]))
            d1.append(float(per["delta1"][0]))
    if not rel:
        return {"rel": float("nan"), "delta1": float("nan"), "n_images": 0.0}
    return {
        "rel": 100.0 * float(np.mean(rel)),
        "delta1": 100.0 * float(np.mean(d1)),
        "n_images": float(len(rel)),
    }
