"""Table 2: two-view relative pose on ScanNet-1500 (LoFTR/SuperGlue protocol).

Each pair runs through the model's own pose path (:func:`tune3d.recon.inference.reconstruct`): VGGT and
CUT3R read their camera heads; DUSt3R/MASt3R estimate image 2's pose by Procrustes between its pointmap
in image 1's frame and its own-frame pointmap (pair ``(2, 1)``), on the more confident half of the pixels.
The error of a pair is ``max(rotation angle, translation-direction angle)`` in degrees, the latter
sign-invariant as in LoFTR; AUC@5/10/20 (%) is the exact trapezoid area under the recall curve.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tune3d.data.benchmarks.scannet1500 import PosePair
from tune3d.fin3r.evaluation.common import model_device
from tune3d.geometry.pose import rotation_error_deg, translation_angle_deg
from tune3d.metrics.pose import pose_auc
from tune3d.recon.inference import prepare_images, reconstruct
from tune3d.recon.interface import ReconModel

AUC_THRESHOLDS = (5, 10, 20)


def two_view_error(T_pred: np.ndarray, T_gt: np.ndarray) -> tuple[float, float]:
    """(rotation error, sign-invariant translation-direction error) in degrees of 4x4 ``T_0to1`` poses."""
    Tp, Tg = torch.as_tensor(T_pred, dtype=torch.float64), torch.as_tensor(T_gt, dtype=torch.float64)
    r = rotation_error_deg(Tp[:3, :3], Tg[:3, :3])
    t = translation_angle_deg(Tp[:3, 3], Tg[:3, 3], sign_invariant=True)
    return float(r), float(t)


def pose_auc_percent(
    errors: Sequence[float], thresholds: Sequence[float] = AUC_THRESHOLDS
) -> dict[str, float]:
    """``{"auc@5": %, ...}`` of per-pair errors (degrees)."""
    return {
        k: 100.0 * v for k, v in pose_auc(np.asarray(errors, dtype=np.float64), tuple(thresholds)).items()
    }


@torch.no_grad()
def predict_relative_pose(model: ReconModel, pair: PosePair, size: int | None = None) -> np.ndarray:
    """Predicted 4x4 ``T_0to1`` of one pair from the model's own outputs."""
    prep = prepare_images([pair.image0, pair.image1], model, size)
    rec = reconstruct(model, prep.images.to(model_device(model)), align="none")
    if rec.c2w is None:
        raise ValueError(f"{type(model).__name__} predicts no cameras")
    c2w = np.asarray(rec.c2w, dtype=np.float64)
    return np.linalg.inv(c2w[1]) @ c2w[0]


def evaluate_two_view(
    model: ReconModel, pairs: Sequence[PosePair], size: int | None = None
) -> dict[str, float]:
    """AUC@5/10/20 (%) plus mean rotation/translation errors over ``pairs``."""
    errs, rots, trans = [], [], []
    for pair in pairs:
        r, t = two_view_error(predict_relative_pose(model, pair, size), pair.T_0to1)
        rots.append(r)
        trans.append(t)
        errs.append(max(r, t))
    out = pose_auc_percent(errs)
    out.update(
        rot_err_mean=float(np.mean(rots)), trans_err_mean=float(np.mean(trans)), n_pairs=float(len(errs))
    )
    return out
