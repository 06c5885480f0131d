"""Table 5: pointmap reconstruction on 7-Scenes / NRGBD (Spann3R / CUT3R protocol).

Per test sequence (keyframes every 20th frame): every frame is resized (no crop) to the model's input
size with its ground-truth depth (nearest) and intrinsics; the model reconstructs all frames at once
(VGGT / CUT3R in one pass, DUSt3R / MASt3R through a complete pair graph and global alignment). On the
pixels with valid ground-truth depth, the predicted points are aligned to the ground-truth world points by
Umeyama (Sim(3); rigid for metric models) and then point-to-point ICP (0.1 m). Acc / Comp are the mean and
median nearest-neighbour distances (m) pred->GT / GT->pred; NC the mean / median ``|n_pred . n_gt|`` over
nearest-neighbour pairs of both directions, normals from each pointmap's pixel grid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from tune3d.data.benchmarks.pointmap_eval import EvalSequence, load_eval_frame
from tune3d.fin3r.evaluation.common import model_device, resize_depth_nearest, resize_for_model
from tune3d.geometry.cameras import depth_to_pointmap, scale_K
from tune3d.geometry.pointmap import pointmap_to_normals
from tune3d.metrics.icp import align_umeyama_icp
from tune3d.metrics.pointmap import nearest_neighbors
from tune3d.recon.inference import reconstruct
from tune3d.recon.interface import ReconModel

POINTMAP_METRICS = ("acc", "acc_med", "comp", "comp_med", "nc", "nc_med")
ICP_THRESHOLD = 0.1


def _normals(pts: np.ndarray, valid: np.ndarray) -> np.ndarray:
    n, ok = pointmap_to_normals(torch.from_numpy(pts), torch.from_numpy(valid))
    return torch.where(ok[..., None], n, torch.zeros_like(n)).numpy()


def reconstruction_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    valid: np.ndarray,
    metric: bool = False,
    icp_threshold: float | None = ICP_THRESHOLD,
    max_points: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Acc / Comp / NC (mean and median) of pointmaps ``S,H,W,3`` on ``valid`` ``S,H,W`` after Umeyama+ICP.

    ``pred`` is in any frame and scale (``metric=True``: rigid alignment, no scale); ``gt`` in metres.
    ``max_points`` randomly subsamples the valid pixels (the same ones in both clouds) for the alignment
    and the nearest-neighbour queries (``None``: all, as the protocol; a CPU budget option).
    """
    valid = valid & np.isfinite(pred).all(-1) & np.isfinite(gt).all(-1)
    P, G = pred[valid].astype(np.float64), gt[valid].astype(np.float64)
    if len(P) < 3:
        return dict.fromkeys(POINTMAP_METRICS, float("nan"))
    NG = _normals(gt.astype(np.float64), valid)[valid]
    keep = np.arange(len(P))
    if max_points is not None and len(P) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(P), max_points, replace=False))
    # Umeyama on pixel correspondences, then ICP, both on the (sub)sampled points.
    _, T = align_umeyama_icp(P[keep], G[keep], with_scale=not metric, icp_max_dist=icp_threshold)
    full = pred.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    NP_all = _normals(full, valid)[valid]
    P, NP, G, NG = full[valid][keep], NP_all[keep], G[keep], NG[keep]
    d_pg, i_pg = nearest_neighbors(P, G)
    d_gp, i_gp = nearest_neighbors(G, P)
    nc_p = np.abs((NP * NG[i_pg]).sum(-1))
    nc_g = np.abs((NG * NP[i_gp]).sum(-1))
    nc_p = nc_p[(np.linalg.norm(NP, axis=-1) > 0) & (np.linalg.norm(NG[i_pg], axis=-1) > 0)]
    nc_g = nc_g[(np.linalg.norm(NG, axis=-1) > 0) & (np.linalg.norm(NP[i_gp], axis=-1) > 0)]
    return {
        "acc": float(d_pg.mean()),
        "acc_med": float(np.median(d_pg)),
        "comp": float(d_gp.mean()),
        "comp_med": float(np.median(d_gp)),
        "nc": 0.5 * float(nc_p.mean() + nc_g.mean()) if len(nc_p) and len(nc_g) else float("nan"),
        "nc_med": 0.5 * float(np.median(nc_p) + np.median(nc_g)) if len(nc_p) and len(nc_g) else float("nan"),
    }


def load_sequence(
    seq: EvalSequence | Any,
    model: ReconModel,
    size: int | None = None,
    loader: Callable[[Any], tuple[np.ndarray, np.ndarray]] = load_eval_frame,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(images ``S,3,h,w`` at the model size, GT world points ``S,h,w,3``, valid ``S,h,w``).

    ``seq.frames`` carry ``K`` (at the depth's size) and ``c2w``; ``loader(frame)`` gives (image, depth)."""
    images, pts, valid = [], [], []
    for f in seq.frames:
        image, depth = loader(f)
        x = resize_for_model(image, model, size)
        h, w = x.shape[1:]
        d = resize_depth_nearest(depth, h, w)
        K = scale_K(torch.from_numpy(f.K), w / depth.shape[1], h / depth.shape[0])
        p = depth_to_pointmap(torch.from_numpy(d.astype(np.float64)), K, torch.from_numpy(f.c2w))
        images.append(x)
        pts.append(p.numpy())
        valid.append(d > 0)
    return torch.stack(images), np.stack(pts), np.stack(valid)


@torch.no_grad()
def predict_points(model: ReconModel, images: torch.Tensor, niter: int = 300) -> np.ndarray:
    """Pointmaps ``S,h,w,3`` of all frames in one frame (global alignment for pairwise models)."""
    rec = reconstruct(model, images.to(model_device(model)), align="global", niter=niter)
    return np.asarray(rec.pts3d, dtype=np.float64)


def evaluate_pointmaps(
    model: ReconModel,
    sequences: Sequence[EvalSequence],
    max_points: int | None = None,
    niter: int = 300,
    size: int | None = None,
) -> dict[str, float]:
    """Mean over sequences of :func:`reconstruction_metrics` (plus ``n_sequences``)."""
    metric = bool(model.metric)
    rows = [
        reconstruction_metrics(pred, gt, valid, metric=metric, max_points=max_points)
        for _, pred, gt, valid in reconstruct_sequences(model, sequences, niter, size)
    ]
    return mean_metrics(rows)


def reconstruct_sequences(
    model: ReconModel,
    sequences: Sequence[Any],
    niter: int = 300,
    size: int | None = None,
    loader: Callable[[Any], tuple[np.ndarray, np.ndarray]] = load_eval_frame,
) -> Iterator[tuple[Any, np.ndarray, np.ndarray, np.ndarray]]:
    """Per sequence ``(seq, predicted points, GT points, valid)``, as :func:`load_sequence` and
    :func:`predict_points` give them (one sequence in memory at a time)."""
    for seq in sequences:
        images, gt, valid = load_sequence(seq, model, size, loader=loader)
        yield seq, predict_points(model, images, niter=niter), gt, valid


def mean_metrics(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Per-sequence :func:`reconstruction_metrics` rows -> their NaN-ignoring means plus ``n_sequences``."""
    out = {k: float(np.nanmean([r[k] for r in rows])) for k in POINTMAP_METRICS}
    out["n_sequences"] = float(len(rows))
    return out
