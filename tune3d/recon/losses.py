"""Supervised losses of the reconstruction families (``tune3d train-recon``).

CroCo family (DUSt3R / MASt3R / CUT3R): ``ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha=0.2)``.
Predicted and ground-truth pointmaps of all views of a sample (in the first view's frame) are each divided
by their mean distance to the origin over the valid pixels of all views; the per-pixel Euclidean error
``ℓ`` is weighted by the confidence ``c`` (``1 + exp``) as ``ℓ·c − α·log c`` and averaged over the valid
pixels of each view across the batch; the views' means are summed (dust3r/losses.py ``ConfLoss``).
``metric=True`` is MASt3R's ``'?avg_dis'`` on metric data: the prediction is divided by the *ground
truth's* factor, so the absolute scale is supervised. MASt3R adds ``0.075 x`` its matching loss: an InfoNCE
("proper": row and column softmax, temperature 0.05) over ground-truth pixel matches between the two views
(depth reprojection with an occlusion test), weighted by the descriptors' confidence with ``α = 10``.
CUT3R adds its pose term (:func:`cut3r_pose_loss`: camera-to-first-camera translation over the pointmap
scale, unit quaternion) and an MSE on its reconstructed image (``recon_loss``).

VGGT family (vggt/training/loss.py): camera loss = L1 on the 9-d pose encoding (translation, quaternion,
field of view weighted 0.5) summed over the camera head's refinement iterations with weights
``γ^(I−1−i)`` (γ = 0.6), divided by the number of iterations; depth and point losses = ``ℓ·c − α·log c``
plus the plain mean error ``ℓ`` plus a multi-scale gradient term (depth: L1 of the residual's finite
differences; points: angular error between the normals of predicted and ground-truth pointmaps), with the
per-pixel values above the 98% quantile dropped. The ground truth is
put in the first camera's frame and divided by the mean distance of its valid points to the origin (VGGT
normalises the scene, not the prediction).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from tune3d.data.overlap import pixel_correspondences
from tune3d.geometry.cameras import depth_to_pointmap, invert_rigid, transform_points
from tune3d.geometry.pointmap import normalize_pointmap
from tune3d.geometry.pose import mat_to_quat
from tune3d.recon.vggt.pose_encoding import encode_pose

__all__ = [
    "camera_loss",
    "conf_regression",
    "croco_loss",
    "cut3r_pose_loss",
    "GRADIENT_LOSSES",
    "gradient_loss_multiscale",
    "info_nce",
    "mast3r_matching_loss",
    "ground_truth",
    "normal_loss_multiscale",
    "normalize_vggt_gt",
    "pointmaps_in_first_frame",
    "quantile_filter",
    "regr3d_conf_loss",
    "sample_correspondences",
    "vggt_loss",
    "vggt_regression_loss",
]


def pointmaps_in_first_frame(pts_world: Tensor, c2w: Tensor) -> Tensor:
    """World pointmaps ``B,S,H,W,3`` -> the first view's camera frame, with ``c2w`` ``B,S,4,4``."""
    w2c0 = invert_rigid(c2w[:, 0].to(pts_world.dtype))  # B,4,4
    flat = pts_world.reshape(pts_world.shape[0], -1, 3)
    return transform_points(w2c0, flat).reshape(pts_world.shape)


def ground_truth(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Pointmaps from a batch of tuples: ``pts_first`` (first camera's frame), ``pts_self``, ``valid``."""
    depth, K, c2w = batch["depth"], batch["K"], batch["c2w"]
    valid = depth > 0
    world = depth_to_pointmap(depth.double(), K.double(), c2w.double())
    pts_first = pointmaps_in_first_frame(world, c2w.double()).float()
    pts_self = depth_to_pointmap(depth.double(), K.double()).float()
    return {"pts_first": pts_first, "pts_self": pts_self, "valid": valid}


def conf_regression(err: Tensor, conf: Tensor, valid: Tensor, alpha: float = 0.2) -> Tensor:
    """``mean(err·c − α·log c)`` over the valid entries (0 when none is valid). All inputs share a shape."""
    v = valid.bool()
    if not v.any():
        return err.sum() * 0.0
    return (err[v] * conf[v] - alpha * torch.log(conf[v])).mean()


def regr3d_conf_loss(
    pred_pts: Tensor,
    pred_conf: Tensor,
    gt_pts: Tensor,
    valid: Tensor,
    alpha: float = 0.2,
    norm_mode: str = "avg_dis",
    metric: bool = False,
) -> dict[str, Tensor]:
    """DUSt3R ``ConfLoss(Regr3D(L21, norm_mode), alpha)`` for ``S`` views per sample.

    ``pred_pts``/``gt_pts`` ``B,S,H,W,3`` in the same frame (the first view's camera); ``pred_conf`` and
    ``valid`` ``B,S,H,W``. Both pointmaps are normalised jointly over each sample's ``S`` views
    (``norm_mode`` as in :func:`tune3d.geometry.normalize_pointmap`; ``metric=True`` divides the prediction by
    the ground truth's factor instead of its own). Returns ``loss`` (sum over views of the per-view
    confidence-weighted mean), ``regr`` (plain mean L21 error, for logging) and ``view<k>`` terms.
    """
    valid = valid.bool() & torch.isfinite(gt_pts).all(-1)
    gt_n, gt_scale = normalize_pointmap(gt_pts.float(), valid, norm_mode)
    if metric:
        pr_n = pred_pts / gt_scale.reshape(-1, *([1] * (pred_pts.ndim - 1)))
    else:
        pr_n, _ = normalize_pointmap(pred_pts, valid, norm_mode)
    err = (pr_n - gt_n.nan_to_num(0.0)).norm(dim=-1)
    out: dict[str, Tensor] = {}
    total = err.new_zeros(())
    for k in range(pred_pts.shape[1]):
        term = conf_regression(err[:, k], pred_conf[:, k], valid[:, k], alpha)
        out[f"view{k + 1}"] = term.detach()
        total = total + term
    out["regr"] = (err[valid].mean() if valid.any() else err.sum() * 0.0).detach()
    out["loss"] = total
    return out


def croco_loss(
    out,
    gt_pts_first: Tensor,
    valid: Tensor,
    gt_pts_self: Tensor | None = None,
    alpha: float = 0.2,
    metric: bool = False,
) -> dict[str, Tensor]:
    """The training loss of a CroCo-family :class:`~tune3d.recon.interface.ReconOutput`.

    ``pts3d`` (every view in view 1's frame) against ``gt_pts_first`` ``B,S,H,W,3``; for models whose
    ``pts3d_self`` covers every view (CUT3R's self-view head) also ``pts3d_self`` against ``gt_pts_self``
    (each view normalised on its own, as CUT3R's ``Regr3DPoseBatchList`` does). DUSt3R/MASt3R's view-1
    ``pts3d_self`` is the same head as ``pts3d[:, 0]`` and is not counted twice.
    """
    res = regr3d_conf_loss(out.pts3d, out.pts3d_conf, gt_pts_first, valid, alpha, metric=metric)
    logs = {f"pts3d_{k}": v for k, v in res.items() if k != "loss"}
    loss = res["loss"]
    S = out.pts3d.shape[1]
    if gt_pts_self is not None and out.pts3d_self is not None and out.pts3d_self.shape[1] == S and S > 1:
        self_terms = [
            regr3d_conf_loss(
                out.pts3d_self[:, k : k + 1],
                out.pts3d_self_conf[:, k : k + 1],
                gt_pts_self[:, k : k + 1],
                valid[:, k : k + 1],
                alpha,
                metric=metric,
            )
            for k in range(S)
        ]
        loss = loss + sum(r["loss"] for r in self_terms)
        logs["self_regr"] = torch.stack([r["regr"] for r in self_terms]).mean()
    logs["loss"] = loss
    return logs


def cut3r_pose_loss(
    pose_enc: Tensor, c2w: Tensor, pred_scale: Tensor, gt_scale: Tensor, eps: float = 1e-3
) -> dict[str, Tensor]:
    """CUT3R's pose term (``Regr3DPose.compute_pose_loss``): every view's camera-to-first-camera pose.

    ``pose_enc`` ``B,S,7`` predicted (translation, unit quaternion w, x, y, z with ``w >= 0``), ``c2w``
    ``B,S,4,4`` ground-truth world poses, ``pred_scale``/``gt_scale`` ``B``: the pointmap normalisation
    factors the translations are divided by (prediction by its own, ground truth by its own). Returns
    ``loss = mean‖t̂ − t‖ + mean‖q̂ − q‖`` and its two parts; samples with a factor below ``eps`` are skipped.
    """
    rel = invert_rigid(c2w[:, :1].double()) @ c2w.double()  # B,S,4,4: view k -> first camera
    t_gt = rel[..., :3, 3] / gt_scale.double().clamp(min=eps)[:, None, None]
    q_gt = mat_to_quat(rel[..., :3, :3], scalar_first=True)
    t_pr = pose_enc[..., :3] / pred_scale.clamp(min=eps)[:, None, None]
    keep = (gt_scale > eps) & (pred_scale > eps)
    if not bool(keep.any()):
        zero = pose_enc.sum() * 0.0
        return {"loss": zero, "trans": zero.detach(), "rot": zero.detach()}
    dt = (t_pr - t_gt.to(t_pr.dtype)).norm(dim=-1)[keep].mean()
    dq = (pose_enc[..., 3:7] - q_gt.to(pose_enc.dtype)).norm(dim=-1)[keep].mean()
    return {"loss": dt + dq, "trans": dt.detach(), "rot": dq.detach()}


# -- MASt3R matching ------------------------------------------------------------------------------


def sample_correspondences(
    depth: Tensor, K: Tensor, c2w: Tensor, n: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` ground-truth matches from view 0 to view 1 of each tuple (:func:`pixel_correspondences`).

    ``depth`` ``B,S,H,W``, ``K`` ``B,S,3,3``, ``c2w`` ``B,S,4,4``. Returns pixel coordinates ``xy0``, ``xy1``
    ``B,n,2`` (x, y; long) and ``valid`` ``B,n``: matches drawn without replacement, padded (invalid) when a
    pair has fewer than ``n``.
    """
    B = depth.shape[0]
    xy0 = torch.zeros(B, n, 2, dtype=torch.long)
    xy1 = torch.zeros(B, n, 2, dtype=torch.long)
    valid = torch.zeros(B, n, dtype=torch.bool)
    for b in range(B):
        a, c, _ = pixel_correspondences(depth[b, 0].cpu(), K[b, 0].cpu(), c2w[b, 0].cpu(),
                                        depth[b, 1].cpu(), K[b, 1].cpu(), c2w[b, 1].cpu())  # fmt: skip
        pick = torch.randperm(len(a), generator=generator)[:n]
        xy0[b, : len(pick)], xy1[b, : len(pick)], valid[b, : len(pick)] = a[pick], c[pick], True
    dev = depth.device
    return xy0.to(dev), xy1.to(dev), valid.to(dev)


def info_nce(
    desc0: Tensor, desc1: Tensor, valid: Tensor, temperature: float = 0.05, eps: float = 1e-8
) -> Tensor:
    """MASt3R's "proper" InfoNCE per match: ``−log softmax_row − log softmax_col`` of the positive.

    ``desc0``/``desc1`` ``B,N,D`` (row ``k`` of both is a ground-truth match), ``valid`` ``B,N``. Similarities
    are dot products over ``temperature``; padded (invalid) entries take no part as positives or negatives;
    each log-ratio is clamped at ``log(eps)`` as in MASt3R. Returns the losses of the valid matches ``M``.
    """
    sim = desc0.float() @ desc1.float().transpose(-1, -2) / temperature  # B,N,N
    both = valid[:, :, None] & valid[:, None, :]
    sim = sim.masked_fill(~both, -1e4)  # exp(-1e4) == 0; finite so padded rows keep finite gradients
    pos = sim.diagonal(dim1=-2, dim2=-1)
    floor = math.log(eps)
    row = (pos - torch.logsumexp(sim, dim=-1)).clamp(min=floor)
    col = (pos - torch.logsumexp(sim, dim=-2)).clamp(min=floor)
    return -(row + col)[valid]


def mast3r_matching_loss(
    desc: Tensor,
    desc_conf: Tensor,
    xy0: Tensor,
    xy1: Tensor,
    valid: Tensor,
    temperature: float = 0.05,
    alpha: float = 10.0,
) -> dict[str, Tensor]:
    """MASt3R ``ConfMatchingLoss(MatchingLoss(InfoNCE(mode='proper')), confmode='mean')``.

    ``desc`` ``B,2,H,W,D`` (unit-norm descriptors of both views), ``desc_conf`` ``B,2,H,W`` (``exp``, > 0),
    matches ``xy0``/``xy1`` ``B,N,2`` (x, y) with ``valid`` ``B,N``. Each match's InfoNCE loss ``ℓ`` is
    weighted by the mean confidence ``c`` of its two pixels as ``ℓ·c − α·log c``; mean over matches.
    """
    B = desc.shape[0]
    bi = torch.arange(B, device=desc.device)[:, None]
    d0 = desc[bi, 0, xy0[..., 1], xy0[..., 0]]  # B,N,D
    d1 = desc[bi, 1, xy1[..., 1], xy1[..., 0]]
    if not bool(valid.any()):
        zero = desc.sum() * 0.0
        return {"loss": zero, "infonce": zero.detach()}
    nce = info_nce(d0, d1, valid, temperature)
    c = 0.5 * (desc_conf[bi, 0, xy0[..., 1], xy0[..., 0]] + desc_conf[bi, 1, xy1[..., 1], xy1[..., 0]])[valid]
    loss = (nce * c - alpha * torch.log(c)).mean()
    return {"loss": loss, "infonce": nce.mean().detach()}


# -- VGGT ---------------------------------------------------------------------------------------


def camera_loss(
    pose_enc_iters: Tensor,
    gt_pose_enc: Tensor,
    gamma: float = 0.6,
    weight_trans: float = 1.0,
    weight_rot: float = 1.0,
    weight_fov: float = 0.5,
    valid_samples: Tensor | None = None,
) -> dict[str, Tensor]:
    """VGGT camera loss: L1 on the ``absT_quaR_FoV`` encoding over the refinement iterations.

    ``pose_enc_iters`` ``I,B,S,9`` (the camera head's outputs, last = final), ``gt_pose_enc`` ``B,S,9``.
    Iteration ``i`` is weighted ``gamma^(I-1-i)``; the weighted sum is divided by ``I``. Translation errors
    are clamped at 100. ``valid_samples`` ``B`` (bool) restricts the loss to samples with enough valid
    ground truth (VGGT: > 100 valid pixels in the first view); none valid gives a zero loss.
    """
    if valid_samples is not None:
        if not bool(valid_samples.any()):
            zero = pose_enc_iters.sum() * 0.0
            return {"loss": zero, "T": zero.detach(), "R": zero.detach(), "fov": zero.detach()}
        pose_enc_iters, gt_pose_enc = pose_enc_iters[:, valid_samples], gt_pose_enc[valid_samples]
    n = pose_enc_iters.shape[0]
    total_t = total_r = total_f = pose_enc_iters.new_zeros(())
    for i in range(n):
        w = gamma ** (n - 1 - i)
        d = (pose_enc_iters[i] - gt_pose_enc).abs()
        total_t = total_t + w * d[..., :3].clamp(max=100).mean()
        total_r = total_r + w * d[..., 3:7].mean()
        total_f = total_f + w * d[..., 7:].mean()
    t, r, f = total_t / n, total_r / n, total_f / n
    loss = weight_trans * t + weight_rot * r + weight_fov * f
    return {"loss": loss, "T": t.detach(), "R": r.detach(), "fov": f.detach()}


def quantile_filter(values: Tensor, q: float, min_elements: int = 1000, hard_max: float = 100.0) -> Tensor:
    """VGGT's outlier filter on per-pixel loss values ``N``: clamp at ``hard_max``, then keep the values
    below the ``q`` quantile (nearest rank) when more than ``min_elements`` remain; small inputs pass."""
    if values.numel() <= min_elements:
        return values
    values = values.clamp(max=hard_max)
    flat = values.detach().reshape(-1)
    k = round(q * (flat.numel() - 1)) + 1
    thr = min(float(flat.kthvalue(k).values), hard_max)
    keep = values < thr
    return values[keep] if int(keep.sum()) > min_elements else values


def _multiscale(fn, pred: Tensor, gt: Tensor, valid: Tensor, conf: Tensor | None, scales: int) -> Tensor:
    """Mean of ``fn`` over ``scales`` subsamplings (every ``2^k``-th pixel) of ``N,H,W,C`` maps."""
    total = pred.new_zeros(())
    for k in range(scales):
        s = 2**k
        c = None if conf is None else conf[:, ::s, ::s]
        total = total + fn(pred[:, ::s, ::s], gt[:, ::s, ::s], valid[:, ::s, ::s], c)
    return total / scales


def _gradient_term(
    pred: Tensor, gt: Tensor, valid: Tensor, conf: Tensor | None, alpha: float = 0.2
) -> Tensor:
    m = valid[..., None].expand_as(pred).to(pred.dtype)
    diff = (pred - gt) * m
    gx = (diff[:, :, 1:] - diff[:, :, :-1]).abs() * (m[:, :, 1:] * m[:, :, :-1])
    gy = (diff[:, 1:] - diff[:, :-1]).abs() * (m[:, 1:] * m[:, :-1])
    gx, gy = gx.clamp(max=100), gy.clamp(max=100)
    if conf is not None:  # the confidence of the pixel right of / below the difference, as VGGT
        cx, cy = conf[:, :, 1:, None], conf[:, 1:, :, None]
        gx = gx * cx - alpha * torch.log(cx) * (m[:, :, 1:] * m[:, :, :-1])
        gy = gy * cy - alpha * torch.log(cy) * (m[:, 1:] * m[:, :-1])
    n = m.sum()
    if n == 0:
        return pred.sum() * 0.0
    return (gx.sum() + gy.sum()) / n


def gradient_loss_multiscale(
    pred: Tensor, gt: Tensor, valid: Tensor, conf: Tensor | None = None, scales: int = 4, alpha: float = 0.2
) -> Tensor:
    """Multi-scale gradient matching (MiDaS/VGGT ``grad``): L1 of the finite differences of the residual.

    ``pred``/``gt`` ``N,H,W,C``, ``valid``/``conf`` ``N,H,W``. At scale ``k`` every ``2^k``-th pixel is kept;
    the residual is zeroed at invalid pixels, a difference counts where both pixels are valid (clamped at
    100), and the sum is divided by the number of valid entries (pixels x channels). With ``conf`` (VGGT
    ``grad+conf``) each difference is weighted ``g·c − α·log c``. Mean over ``scales``.
    """
    gt = gt.nan_to_num(0.0)
    return _multiscale(
        lambda p, g, v, c: _gradient_term(p, g, v.bool(), c, alpha), pred, gt, valid, conf, scales
    )


def _normals4(pts: Tensor, valid: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Four unit normals per pixel of ``N,H,W,3``: cross products of the (up, left), (left, down),
    (down, right), (right, up) neighbour offsets (zero padding) -> ``4,N,H,W,3``, validity ``4,N,H,W``."""
    p = F.pad(pts.permute(0, 3, 1, 2), (1, 1, 1, 1)).permute(0, 2, 3, 1)
    m = F.pad(valid, (1, 1, 1, 1), value=False)
    c, mc = p[:, 1:-1, 1:-1], m[:, 1:-1, 1:-1]
    nb = [(p[:, :-2, 1:-1], m[:, :-2, 1:-1]), (p[:, 1:-1, :-2], m[:, 1:-1, :-2])]  # up, left
    nb += [(p[:, 2:, 1:-1], m[:, 2:, 1:-1]), (p[:, 1:-1, 2:], m[:, 1:-1, 2:])]  # down, right
    normals, valids = [], []
    for (a, ma), (b, mb) in zip(nb, nb[1:] + nb[:1]):
        normals.append(torch.linalg.cross(a - c, b - c, dim=-1))
        valids.append(ma & mc & mb)
    return F.normalize(torch.stack(normals), dim=-1, eps=eps), torch.stack(valids)


def _normal_term(
    pred: Tensor, gt: Tensor, valid: Tensor, conf: Tensor | None, alpha: float = 0.2, eps: float = 1e-8
) -> Tensor:
    npred, vp = _normals4(pred, valid, eps)
    ngt, vg = _normals4(gt, valid, eps)
    m = vp & vg
    if int(m.sum()) < 10:
        return pred.sum() * 0.0
    loss = 1 - (npred[m] * ngt[m]).sum(-1).clamp(-1 + eps, 1 - eps)
    if conf is not None:
        c = conf[None].expand(4, *conf.shape)[m]
        loss = loss * c - alpha * torch.log(c)
    return loss.mean()


def normal_loss_multiscale(
    pred: Tensor, gt: Tensor, valid: Tensor, conf: Tensor | None = None, scales: int = 3, alpha: float = 0.2
) -> Tensor:
    """Multi-scale normal loss for pointmaps (VGGT ``normal``): mean ``1 − cos`` between the normals of the
    predicted and ground-truth pointmaps ``N,H,W,3`` (four neighbour pairs per pixel, both defined); with
    ``conf`` (``normal+conf``) weighted ``ℓ·c − α·log c``. Mean over ``scales``."""
    gt = gt.nan_to_num(0.0)
    return _multiscale(
        lambda p, g, v, c: _normal_term(p, g, v.bool(), c, alpha), pred, gt, valid, conf, scales
    )


GRADIENT_LOSSES = ("grad", "grad+conf", "normal", "normal+conf", "none")


def vggt_regression_loss(
    pred: Tensor,
    conf: Tensor,
    gt: Tensor,
    valid: Tensor,
    alpha: float = 0.2,
    gradient: str = "grad",
    valid_range: float | None = 0.98,
    gamma: float = 1.0,
) -> dict[str, Tensor]:
    """VGGT ``regression_loss`` for depth (``C = 1``) or points (``C = 3``).

    ``pred``/``gt`` ``B,S,H,W,C``, ``conf``/``valid`` ``B,S,H,W``. Per valid pixel ``ℓ = ‖pred − gt‖``;
    ``conf = mean(γ·ℓ·c − α·log c)`` and ``reg = mean(ℓ)``, each after :func:`quantile_filter` at
    ``valid_range``; ``grad``: one of :data:`GRADIENT_LOSSES` (``grad``: residual gradients over 4 scales,
    ``normal``: normal angles over 3 scales, ``+conf``: confidence-weighted). ``loss = conf + reg + grad``.
    """
    if gradient not in GRADIENT_LOSSES:
        raise ValueError(f"unknown gradient loss {gradient!r}; expected one of {', '.join(GRADIENT_LOSSES)}")
    valid = valid.bool() & torch.isfinite(gt).all(-1)
    gt = gt.nan_to_num(0.0)
    err = (gt[valid] - pred[valid]).norm(dim=-1)
    c = conf[valid]
    l_conf = gamma * err * c - alpha * torch.log(c)
    if valid_range is not None and valid_range > 0:
        l_conf, err = quantile_filter(l_conf, valid_range), quantile_filter(err, valid_range)
    zero = pred.sum() * 0.0
    l_conf = l_conf.mean() if l_conf.numel() else zero
    l_reg = err.mean() if err.numel() else zero
    flat = (pred.flatten(0, 1), gt.flatten(0, 1), valid.flatten(0, 1))
    fconf = conf.flatten(0, 1) if gradient.endswith("+conf") else None
    if gradient.startswith("grad"):
        l_grad = gradient_loss_multiscale(*flat, conf=fconf, scales=4, alpha=alpha)
    elif gradient.startswith("normal"):
        l_grad = normal_loss_multiscale(*flat, conf=fconf, scales=3, alpha=alpha)
    else:
        l_grad = zero
    return {
        "loss": l_conf + l_reg + l_grad,
        "conf": l_conf.detach(),
        "reg": l_reg.detach(),
        "grad": l_grad.detach(),
    }


def vggt_loss(
    out,
    gt_depth: Tensor,
    gt_pts_first: Tensor,
    gt_pose_enc: Tensor,
    valid: Tensor,
    weight_camera: float = 5.0,
    weight_depth: float = 1.0,
    weight_point: float = 1.0,
    alpha: float = 0.2,
    depth_gradient: str = "grad",
    point_gradient: str = "normal",
) -> dict[str, Tensor]:
    """VGGT's training objective on a :class:`~tune3d.recon.interface.ReconOutput`.

    Ground truth already normalised (see :func:`normalize_vggt_gt`): ``gt_depth`` ``B,S,H,W``,
    ``gt_pts_first`` ``B,S,H,W,3`` (first-camera frame), ``gt_pose_enc`` ``B,S,9``; ``valid`` ``B,S,H,W``.
    Camera (weight 5, samples with > 100 valid first-view pixels), depth (``grad``) and point
    (``normal``) terms, as VGGT's default training config; ``*_gradient`` pick other gradient terms.
    """
    cam = camera_loss(
        out.extras["pose_enc_iters"], gt_pose_enc, valid_samples=valid[:, 0].flatten(1).sum(1) > 100
    )
    dep = vggt_regression_loss(
        out.depth[..., None], out.depth_conf, gt_depth[..., None], valid, alpha, depth_gradient
    )
    loss = weight_camera * cam["loss"] + weight_depth * dep["loss"]
    logs = {}
    if weight_point > 0:
        pts = vggt_regression_loss(out.pts3d, out.pts3d_conf, gt_pts_first, valid, alpha, point_gradient)
        loss = loss + weight_point * pts["loss"]
        logs.update({f"point_{k}": v for k, v in pts.items() if k != "loss"})
    logs["loss"] = loss
    logs.update({f"camera_{k}": v.detach() for k, v in cam.items()})
    logs.update({f"depth_{k}": v for k, v in dep.items() if k != "loss"})
    return logs


def normalize_vggt_gt(
    depth: Tensor, pts_first: Tensor, c2w: Tensor, valid: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Put a tuple's ground truth in VGGT's training frame and scale.

    ``depth`` ``B,S,H,W``, ``pts_first`` ``B,S,H,W,3`` (first-camera frame), ``c2w`` ``B,S,4,4`` world poses,
    ``valid`` ``B,S,H,W``. The first camera becomes the identity; depth, points and camera translations are
    divided by the mean distance of the valid points to the origin. Returns ``(depth, pts, w2c ``B,S,4,4``
    relative to camera 0, scale ``B``)``.
    """
    _, scale = normalize_pointmap(pts_first, valid, "avg_dis")
    w2c0 = invert_rigid(c2w[:, :1])  # B,1,4,4
    w2c = invert_rigid(w2c0 @ c2w)  # world = camera 0
    w2c = w2c.clone()
    w2c[..., :3, 3] = w2c[..., :3, 3] / scale.reshape(-1, 1, 1).to(w2c.dtype)
    sc = scale.reshape(-1, 1, 1, 1)
    return depth / sc, pts_first / sc[..., None], w2c, scale


def recon_loss(
    model,
    out,
    batch: dict[str, Tensor],
    point_gradient: str = "normal",
    matching_weight: float = 0.075,
    n_corres: int = 1024,
    alpha: float = 0.2,
) -> dict[str, Tensor]:
    """The family's supervised loss for model outputs ``out`` on a batch of tuples.

    ``batch``: ``depth`` B,S,H,W (metres, 0 invalid), ``K`` B,S,3,3, ``c2w`` B,S,4,4, optional ``corr_seed``.
    ``point_gradient``: the gradient term of VGGT's point loss (official: ``normal``). Models with descriptors
    (MASt3R) add ``matching_weight`` x the confidence-weighted InfoNCE over ``n_corres`` ground-truth matches
    per pair, as MASt3R's training criterion; models with a pose head (CUT3R) add its pose and RGB terms.
    ``alpha`` is the weight of the ``-log(confidence)`` term (DUSt3R's ``ConfLoss`` alpha; Fin3R's lambda).
    Fin3R's replay term is this criterion too, so a model is tuned with the loss it was released with.
    Returns ``loss`` and detached logging terms.
    """
    gt = ground_truth(batch)
    if getattr(model, "family", "") == "vggt":
        H, W = batch["depth"].shape[-2:]
        depth, pts, w2c, _ = normalize_vggt_gt(
            batch["depth"], gt["pts_first"], batch["c2w"].double(), gt["valid"]
        )
        pose_enc = encode_pose(w2c[..., :3, :], batch["K"].double(), (H, W))
        return vggt_loss(
            out,
            depth.float(),
            pts.float(),
            pose_enc.float(),
            gt["valid"],
            alpha=alpha,
            point_gradient=point_gradient,
        )
    logs = croco_loss(
        out, gt["pts_first"], gt["valid"], gt["pts_self"], alpha=alpha, metric=bool(model.metric)
    )
    if "pose_encoding" in out.extras:
        # CUT3R: 2·mean(per-view conf terms) + pose term; our pointmap part is the *sum* of the 2·S per-view
        # terms, i.e. S times CUT3R's, so the pose term is weighted by S to keep the released ratio.
        _, gt_scale = normalize_pointmap(gt["pts_first"], gt["valid"], "avg_dis")
        if model.metric:
            pr_scale = gt_scale
        else:
            _, pr_scale = normalize_pointmap(out.pts3d, gt["valid"], "avg_dis")
        pose = cut3r_pose_loss(out.extras["pose_encoding"], batch["c2w"], pr_scale, gt_scale)
        logs["loss"] = logs["loss"] + out.pts3d.shape[1] * pose["loss"]
        logs.update({f"pose_{k}": v.detach() for k, v in pose.items()})
        if "rgb" in out.extras and "images" in batch:  # CUT3R's RGBLoss(MSE), images in [-1, 1] as released
            img = batch["images"].permute(0, 1, 3, 4, 2).to(out.extras["rgb"].dtype)
            rgb = ((out.extras["rgb"] * 2 - 1) - (img * 2 - 1)).square().mean()
            logs["loss"] = logs["loss"] + out.pts3d.shape[1] * rgb
            logs["rgb"] = rgb.detach()
    if "desc" in out.extras and matching_weight > 0:
        g = torch.Generator().manual_seed(int(batch.get("corr_seed", torch.tensor(0))))
        xy0, xy1, valid = sample_correspondences(batch["depth"], batch["K"], batch["c2w"], n_corres, g)
        match = mast3r_matching_loss(out.extras["desc"], out.extras["desc_conf"], xy0, xy1, valid)
        logs["loss"] = logs["loss"] + matching_weight * match["loss"]
        logs["matching"] = match["loss"].detach()
        logs["infonce"] = match["infonce"]
        logs["matches"] = valid.sum(1).float().mean()
    return logs
