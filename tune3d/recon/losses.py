"""Supervised losses of the reconstruction families (also Fin3R's replay loss).

CroCo family (DUSt3R / MASt3R / CUT3R): ``ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha=0.2)``.
Predicted and ground-truth pointmaps of all views of a sample (in the first view's frame) are each divided
by their mean distance to the origin over the valid pixels of all views; the per-pixel Euclidean error
``ℓ`` is weighted by the confidence ``c`` (``1 + exp``) as ``ℓ·c − α·log c`` and averaged over the valid
pixels of each view across the batch; the views' means are summed (dust3r/losses.py ``ConfLoss``).
``metric=True`` is MASt3R's ``'?avg_dis'`` on metric data: the prediction is divided by the *ground
truth's* factor, so the absolute scale is supervised.

VGGT family (vggt/training/loss.py): camera loss = L1 on the 9-d pose encoding (translation, quaternion,
field of view weighted 0.5) summed over the camera head's refinement iterations with weights
``γ^(I−1−i)`` (γ = 0.6), divided by the number of iterations; depth and point losses = ``ℓ·c − α·log c``
plus a multi-scale gradient term (depth: conf-weighted L1 of the residual's finite differences;
points: angular error between the normals of predicted and ground-truth pointmaps). The ground truth is
put in the first camera's frame and divided by the mean distance of its valid points to the origin (VGGT
normalises the scene, not the prediction).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tune3d.geometry.cameras import invert_rigid, transform_points
from tune3d.geometry.pointmap import normalize_pointmap

__all__ = [
    "camera_loss",
    "conf_regression",
    "croco_loss",
    "gradient_loss_multiscale",
    "normal_loss_multiscale",
    "pointmaps_in_first_frame",
    "normalize_vggt_gt",
    "regr3d_conf_loss",
    "vggt_loss",
    "vggt_regression_loss",
]


def pointmaps_in_first_frame(pts_world: Tensor, c2w: Tensor) -> Tensor:
    """World pointmaps ``B,S,H,W,3`` -> the first view's camera frame, with ``c2w`` ``B,S,4,4``."""
    w2c0 = invert_rigid(c2w[:, 0].to(pts_world.dtype))  # B,4,4
    flat = pts_world.reshape(pts_world.shape[0], -1, 3)
    return transform_points(w2c0, flat).reshape(pts_world.shape)


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


# -- VGGT ---------------------------------------------------------------------------------------


def camera_loss(
    pose_enc_iters: Tensor,
    gt_pose_enc: Tensor,
    gamma: float = 0.6,
    weight_trans: float = 1.0,
    weight_rot: float = 1.0,
    weight_fov: float = 0.5,
) -> dict[str, Tensor]:
    """VGGT camera loss: L1 on the ``absT_quaR_FoV`` encoding over the refinement iterations.

    ``pose_enc_iters`` ``I,B,S,9`` (the camera head's outputs, last = final), ``gt_pose_enc`` ``B,S,9``.
    Iteration ``i`` is weighted ``gamma^(I-1-i)``; the weighted sum is divided by ``I``.
    """
    n = pose_enc_iters.shape[0]
    total_t = total_r = total_f = pose_enc_iters.new_zeros(())
    for i in range(n):
        w = gamma ** (n - 1 - i)
        d = (pose_enc_iters[i] - gt_pose_enc).abs()
        total_t = total_t + w * d[..., :3].mean()
        total_r = total_r + w * d[..., 3:7].mean()
        total_f = total_f + w * d[..., 7:].mean()
    t, r, f = total_t / n, total_r / n, total_f / n
    loss = weight_trans * t + weight_rot * r + weight_fov * f
    return {"loss": loss, "T": t.detach(), "R": r.detach(), "fov": f.detach()}


def _gradients(x: Tensor) -> tuple[Tensor, Tensor]:
    """Finite differences along x and y of ``N,H,W,C`` maps -> ``N,H,W-1,C`` and ``N,H-1,W,C``."""
    return x[:, :, 1:] - x[:, :, :-1], x[:, 1:] - x[:, :-1]


def gradient_loss_multiscale(
    pred: Tensor, gt: Tensor, valid: Tensor, conf: Tensor | None = None, scales: int = 3, alpha: float = 0.2
) -> Tensor:
    """Multi-scale gradient matching (MiDaS/VGGT ``grad``): L1 of the finite differences of the residual.

    ``pred``/``gt`` ``N,H,W,C``, ``valid``/``conf`` ``N,H,W``. At scale ``k`` every ``2^k``-th pixel is kept;
    a difference counts where both of its pixels are valid. With ``conf`` the term is ``g·c − α·log c``
    (VGGT weights the gradient term by the confidence of the first pixel). Mean over scales.
    """
    total = pred.new_zeros(())
    used = 0
    for k in range(scales):
        s = 2**k
        p, g, v = pred[:, ::s, ::s], gt[:, ::s, ::s], valid[:, ::s, ::s].bool()
        if min(p.shape[1], p.shape[2]) < 2:
            break
        r = torch.where(v[..., None], p - g.nan_to_num(0.0), torch.zeros_like(p))
        gx, gy = _gradients(r)
        vx, vy = v[:, :, 1:] & v[:, :, :-1], v[:, 1:] & v[:, :-1]
        ex, ey = gx.abs().sum(-1), gy.abs().sum(-1)
        if conf is not None:
            c = conf[:, ::s, ::s]
            term = conf_regression(ex, c[:, :, :-1], vx, alpha) + conf_regression(ey, c[:, :-1], vy, alpha)
        else:
            n = (vx.sum() + vy.sum()).clamp_min(1)
            term = ((ex * vx).sum() + (ey * vy).sum()) / n
        total = total + term
        used += 1
    return total / max(used, 1)


def _normals(pts: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Normals from the right and down neighbours of ``N,H,W,3`` -> ``N,H-1,W-1,3`` and validity."""
    dx = pts[:, :-1, 1:] - pts[:, :-1, :-1]
    dy = pts[:, 1:, :-1] - pts[:, :-1, :-1]
    n = torch.linalg.cross(dx, dy)
    v = valid[:, :-1, :-1] & valid[:, :-1, 1:] & valid[:, 1:, :-1]
    return F.normalize(n, dim=-1, eps=1e-8), v & (n.norm(dim=-1) > 1e-12)


def normal_loss_multiscale(pred: Tensor, gt: Tensor, valid: Tensor, scales: int = 3) -> Tensor:
    """Multi-scale normal loss for pointmaps (VGGT ``normal``): mean ``1 − cos`` between the normals of the
    predicted and ground-truth pointmaps ``N,H,W,3`` over pixels where both are defined."""
    total = pred.new_zeros(())
    used = 0
    for k in range(scales):
        s = 2**k
        p, g, v = pred[:, ::s, ::s], gt[:, ::s, ::s].nan_to_num(0.0), valid[:, ::s, ::s].bool()
        if min(p.shape[1], p.shape[2]) < 2:
            break
        npred, vp = _normals(p, v)
        ngt, vg = _normals(g, v)
        m = vp & vg
        if m.any():
            total = total + (1 - (npred * ngt).sum(-1))[m].mean()
        used += 1
    return total / max(used, 1)


def vggt_regression_loss(
    pred: Tensor,
    conf: Tensor,
    gt: Tensor,
    valid: Tensor,
    alpha: float = 0.2,
    gradient: str = "grad",
    scales: int = 3,
    valid_range: float | None = 0.98,
) -> dict[str, Tensor]:
    """VGGT ``regression_loss`` for depth (``C = 1``) or points (``C = 3``).

    ``pred``/``gt`` ``B,S,H,W,C``, ``conf``/``valid`` ``B,S,H,W``. Per-pixel error ``‖pred − gt‖``; pixels
    whose error exceeds the ``valid_range`` quantile are dropped (outlier robustness, as in VGGT); the
    confidence term is ``ℓ·c − α·log c``. ``gradient``: ``"grad"`` (residual gradients, conf-weighted),
    ``"normal"`` (normal angles) or ``"none"``. Returns ``loss = conf + grad`` and the parts.
    """
    valid = valid.bool() & torch.isfinite(gt).all(-1)
    err = (pred - gt.nan_to_num(0.0)).norm(dim=-1)
    if valid_range is not None and valid.sum() > 10:
        thr = torch.quantile(err[valid].detach().float()[:1_000_000], valid_range)
        valid = valid & (err <= thr)
    l_conf = conf_regression(err, conf, valid, alpha)
    flat = (pred.flatten(0, 1), gt.flatten(0, 1), valid.flatten(0, 1))
    if gradient == "grad":
        l_grad = gradient_loss_multiscale(*flat, conf=conf.flatten(0, 1), scales=scales, alpha=alpha)
    elif gradient == "normal":
        l_grad = normal_loss_multiscale(*flat, scales=scales)
    elif gradient == "none":
        l_grad = err.new_zeros(())
    else:
        raise ValueError(f"unknown gradient loss {gradient!r}; expected 'grad', 'normal' or 'none'")
    reg = err[valid].mean() if valid.any() else err.sum() * 0.0
    return {"loss": l_conf + l_grad, "conf": l_conf.detach(), "grad": l_grad.detach(), "reg": reg.detach()}


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
) -> dict[str, Tensor]:
    """VGGT's training objective on a :class:`~tune3d.recon.interface.ReconOutput`.

    Ground truth already normalised (see :func:`normalize_vggt_gt`): ``gt_depth`` ``B,S,H,W``,
    ``gt_pts_first`` ``B,S,H,W,3`` (first-camera frame), ``gt_pose_enc`` ``B,S,9``; ``valid`` ``B,S,H,W``.
    Camera (weight 5), depth (``grad``) and point (``normal``) terms, as VGGT's default training config.
    """
    cam = camera_loss(out.extras["pose_enc_iters"], gt_pose_enc)
    dep = vggt_regression_loss(
        out.depth[..., None], out.depth_conf, gt_depth[..., None], valid, alpha, "grad"
    )
    pts = vggt_regression_loss(out.pts3d, out.pts3d_conf, gt_pts_first, valid, alpha, "normal")
    loss = weight_camera * cam["loss"] + weight_depth * dep["loss"] + weight_point * pts["loss"]
    logs = {"loss": loss}
    logs.update({f"camera_{k}": v.detach() for k, v in cam.items()})
    logs.update({f"depth_{k}": v for k, v in dep.items() if k != "loss"})
    logs.update({f"point_{k}": v for k, v in pts.items() if k != "loss"})
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
