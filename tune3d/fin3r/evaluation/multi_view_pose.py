"""Table 3: multi-view pose on RealEstate10K (VGGT / Pi3 angular protocol).

Each test sequence's sampled frames (10) run through the model together (VGGT / CUT3R camera heads;
DUSt3R / MASt3R through a complete pair graph and global alignment). Every unordered pair of frames gives
a relative rotation error and a sign-invariant relative translation-direction error (degrees); the pairs of
all sequences are pooled. RRA@5 / RTA@5: % of pairs below 5 degrees; AUC@30: VGGT's histogram AUC (mean
recall at 1..30 degrees) of ``max(rotation, translation)`` error, in %.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tune3d.data.benchmarks.re10k import PoseSequence
from tune3d.errors import Tune3DError
from tune3d.fin3r.evaluation.common import model_device
from tune3d.metrics.pose import pose_auc, relative_pose_errors, rra_rta
from tune3d.recon.inference import prepare_images, reconstruct
from tune3d.recon.interface import ReconModel

ACC_THRESHOLD = 5.0
AUC_THRESHOLD = 30


def multi_view_pose_metrics(rot_err: np.ndarray, trans_err: np.ndarray) -> dict[str, float]:
    """``rra@5``, ``rta@5``, ``auc@30`` (all %) of pooled per-pair errors in degrees."""
    r = torch.as_tensor(np.asarray(rot_err, dtype=np.float64))
    t = torch.as_tensor(np.asarray(trans_err, dtype=np.float64))
    rra, rta = rra_rta(r, t, ACC_THRESHOLD)
    auc = pose_auc(torch.maximum(r, t), (AUC_THRESHOLD,), method="histogram")[f"auc@{AUC_THRESHOLD}"]
    return {"rra@5": 100.0 * rra, "rta@5": 100.0 * rta, "auc@30": 100.0 * auc}


def sequence_errors(c2w_pred: np.ndarray, c2w_gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair (rotation, translation-direction) errors in degrees of ``S,4,4`` camera-to-world poses."""
    err = relative_pose_errors(
        torch.as_tensor(c2w_pred, dtype=torch.float64),
        torch.as_tensor(c2w_gt, dtype=torch.float64),
        sign_invariant=True,
    )
    return err["rot_err"].numpy(), err["trans_err"].numpy()


@torch.no_grad()
def predict_cameras(
    model: ReconModel, seq: PoseSequence, size: int | None = None, niter: int = 300
) -> np.ndarray:
    """Predicted ``S,4,4`` camera-to-world of the sequence's frames (any global frame and scale)."""
    prep = prepare_images([str(p) for p in seq.images], model, size)
    rec = reconstruct(model, prep.images.to(model_device(model)), align="global", niter=niter)
    if rec.c2w is None:
        raise Tune3DError(f"{type(model).__name__} predicts no cameras")
    return np.asarray(rec.c2w, dtype=np.float64)


def evaluate_multi_view_pose(
    model: ReconModel, sequences: Sequence[PoseSequence], size: int | None = None, niter: int = 300
) -> dict[str, float]:
    """Table 3 metrics over ``sequences`` plus mean errors and counts."""
    rots, trans = [], []
    for seq in sequences:
        r, t = sequence_errors(predict_cameras(model, seq, size, niter), seq.c2w)
        rots.append(r)
        trans.append(t)
    r, t = np.concatenate(rots), np.concatenate(trans)
    out = multi_view_pose_metrics(r, t)
    out.update(
        rot_err_mean=float(r.mean()),
        trans_err_mean=float(t.mean()),
        n_pairs=float(len(r)),
        n_sequences=float(len(rots)),
    )
    return out
