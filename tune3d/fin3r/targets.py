"""Fin3R targets: teacher output -> normalised target, student output -> the per-view head it is compared
with, and the loss of one collated batch (:func:`distill_step_loss`), as ``fit3d/targets.py`` is for FiT3D.

Teacher targets are normalised per their kind (:func:`normalize_teacher_target`: z-shift removal for
affine-invariant pointmaps, then ``avg_dis``). The comparison space follows what student and teacher share:
pointmaps when the student predicts points and the target's intrinsics are known (scene frames, MoGe),
otherwise z-depth. The batch loss is the per-sample mean ``(1/N) Σ_i [L_distill(i) + 1_mv(i) L_pointmap(i)]``
with each term averaged over its sub-batch's valid pixels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from tune3d.errors import Tune3DError
from tune3d.fin3r.config import DistillConfig
from tune3d.fin3r.losses import avg_dis_normalize, conf_distill_loss
from tune3d.fin3r.teachers import KINDS, Teacher, TeacherOutput
from tune3d.geometry import depth_to_pointmap, recover_z_shift
from tune3d.recon.losses import recon_loss


def normalize_teacher_target(
    points_or_depth: Tensor,
    mask: Tensor,
    kind: str,
    K: Tensor | None = None,
    is_disparity: bool = False,
    normalize: bool = True,
    min_disparity: float = 1e-3,
) -> tuple[Tensor, Tensor]:
    """Teacher output -> the camera-frame pointmap target ``B,H,W,3`` Fin3R distils, and its mask ``B,H,W``.

    Steps (paper: "subtract the shift in the z-component and then apply the normalization used in DUSt3R"):

    1. Disparity (``is_disparity``) -> depth ``1 / d``. An affine-invariant disparity's own shift is not
       observable from a single map, so it is taken as 0; pixels with ``d <= min_disparity · max(d)`` (sky,
       far background) are masked out.
    2. Depth -> points with ``K`` (``B,3,3`` or ``3,3``; required for depth input). The z-shift of an
       affine-invariant *depth* map is likewise unobservable without ground truth and is taken as 0.
    3. Affine-invariant *pointmaps* (MoGe-1 raw output): the z-shift is observable from the rays and removed
       with :func:`tune3d.geometry.recover_z_shift` (``K`` if given, else focal and shift are solved
       jointly). Points that end up behind the camera are masked out.
    4. ``normalize``: divide by the mean distance of valid points to the camera (DUSt3R ``avg_dis``); the
       student's prediction is normalised the same way inside :func:`conf_distill_loss`. Use
       ``normalize=False`` only for a metric teacher with a metric student (MASt3R).
    """
    if kind not in KINDS:
        raise ValueError(f"teacher kind must be one of {KINDS}, got {kind!r}")
    mask = mask.bool() & torch.isfinite(points_or_depth).reshape(*mask.shape, -1).all(-1)
    if points_or_depth.dim() == mask.dim():  # depth / disparity B,H,W
        d = torch.where(mask, points_or_depth, torch.zeros_like(points_or_depth))
        if is_disparity:
            peak = d.flatten(1).amax(dim=1).view(-1, 1, 1)
            mask = mask & (d > min_disparity * peak)
            d = torch.where(mask, 1.0 / d.clamp_min(1e-12), torch.zeros_like(d))
        mask = mask & (d > 0)
        if K is None:
            raise ValueError("normalize_teacher_target needs intrinsics K to turn depth into points")
        Kb = K.to(d).expand(d.shape[0], 3, 3) if K.dim() == 2 else K.to(d)
        pts = depth_to_pointmap(d, Kb)
    else:
        pts = points_or_depth
        if kind == "affine_invariant":
            Kb = None if K is None else (K.expand(pts.shape[0], 3, 3) if K.dim() == 2 else K)
            shift = recover_z_shift(pts, mask, Kb)
            pts = pts.clone()
            pts[..., 2] = pts[..., 2] + shift.view(-1, 1, 1)
            mask = mask & (pts[..., 2] > 0)
    pts = torch.where(mask.unsqueeze(-1), pts, torch.zeros_like(pts))
    if normalize:
        pts, _ = avg_dis_normalize(pts, mask, True)
    return pts, mask


def per_view_prediction(model: Any, out: Any, points: bool = True) -> tuple[Tensor, Tensor, bool]:
    """The per-view head Fin3R distils: ``(pred B,S',H,W[,3], conf B,S',H,W, is_points)``.

    VGGT's depth head (``per_view_head == "depth"``) covers all views; DUSt3R/MASt3R's ``pts3d_self`` only
    view 1 (``S' = 1``), CUT3R's every view. A ``pts3d_self`` head gives points unless ``points=False``; the
    z-depth comes from :meth:`~tune3d.recon.interface.ReconOutput.per_view_depth`.
    """
    head = model.per_view_head
    if head not in ("depth", "pts3d_self"):
        raise Tune3DError(f"{type(model).__name__}: unknown per-view head {head!r}")
    if getattr(out, head) is None:
        raise Tune3DError(f"{type(model).__name__}: per-view head {head!r} produced no output")
    if points and head == "pts3d_self":
        return out.pts3d_self, out.pts3d_self_conf, True
    depth, conf = out.per_view_depth(head)
    return depth, conf, False


def distill_targets(
    tout: TeacherOutput, K: Tensor, has_K: Tensor, want_points: bool, normalize: bool
) -> tuple[Tensor, Tensor, bool]:
    """Teacher output -> ``(target, mask, is_points)`` in the space shared with the student.

    ``K``: ``B,3,3`` dataset intrinsics (nominal where ``has_K`` is False). Teacher pointmaps carry their own
    geometry; depth teachers are lifted with the dataset ``K``. Points are compared only when the student
    predicts points and every image's intrinsics are known (teacher ``K`` or calibrated frames), else
    z-depth: the lift through a stand-in ``K`` keeps z exact.
    """
    Kt = tout.K if tout.K is not None else K
    pts, mask = normalize_teacher_target(
        tout.value.float(),
        tout.mask,
        tout.kind,
        K=Kt.float(),
        is_disparity=tout.is_disparity,
        normalize=normalize,
    )
    points_ok = tout.is_pointmap or tout.K is not None or bool(has_K.all())
    if want_points and points_ok:
        return pts, mask, True
    return pts[..., 2], mask, False


def _distill_term(
    pred: Tensor, conf: Tensor, target: tuple[Tensor, Tensor, bool], cfg: DistillConfig, normalize: bool
) -> Tensor:
    tgt, mask, _ = target  # pred is already in the target's space (per_view_prediction(points=...))
    return conf_distill_loss(
        pred.float(), conf.float(), tgt, mask, lam=cfg.lam, squared=cfg.squared, normalize=normalize
    )


def replay_loss(model: Any, out: Any, multi: dict[str, Tensor], alpha: float) -> Tensor:
    """The replay term on labelled tuples: the released training criterion of ``model``'s family
    (:func:`tune3d.recon.losses.recon_loss`: DUSt3R/MASt3R ``ConfLoss(Regr3D)`` per view, summed, plus
    MASt3R's matching term; CUT3R's pose and RGB terms; VGGT's camera/depth/point losses), with ``alpha``
    weighting ``-log(confidence)``. ``multi``: a batch of :class:`~tune3d.fin3r.data.ReplayTuples` items."""
    device = out.pts3d.device
    batch = {k: multi[k].to(device) for k in ("images", "depth", "K", "c2w")}
    return recon_loss(model, out, batch, alpha=alpha)["loss"]


def distill_step_loss(
    model: Any, core: Any, teacher: Teacher, batch: dict[str, Any], cfg: DistillConfig, device: torch.device
) -> tuple[Tensor, dict[str, float]]:
    """Loss of one collated :func:`replay_collate` batch (model forward + teacher), and its parts."""
    metric_pair = core.metric  # metric student: skip normalisation only against a metric teacher
    single, multi = batch["single"], batch["multiview"]
    n_single = 0 if single is None else len(single["image"])
    n_multi = 0 if multi is None else len(multi["images"])
    total = torch.zeros((), device=device)
    parts: dict[str, float] = {}
    if single is not None:
        images = single["image"].to(device, non_blocking=True)
        tout = teacher.predict(images, depth=single["depth"].to(device))
        normalize = not (metric_pair and tout.kind == "metric")
        want_points = core.per_view_head == "pts3d_self"
        target = distill_targets(tout, single["K"].to(device), single["has_K"], want_points, normalize)
        views = images[:, None]
        if core.num_views == 2:
            views = torch.cat([views, views], dim=1)  # a single image goes in as the self-pair
        out = model(views)
        pred, conf, _ = per_view_prediction(core, out, points=target[2])
        ld = _distill_term(pred[:, 0], conf[:, 0], target, cfg, normalize)
        total = total + ld * n_single
        parts["distill_single"] = float(ld.detach())
    if multi is not None:
        images = multi["images"].to(device, non_blocking=True)
        B, V = images.shape[:2]
        out = model(images)
        pred, _, is_points = per_view_prediction(core, out)
        Sp = pred.shape[1]  # views the per-view head covers (1 for DUSt3R/MASt3R)
        flat = images[:, :Sp].flatten(0, 1)
        tout = teacher.predict(flat, depth=multi["depth"][:, :Sp].flatten(0, 1).to(device))
        normalize = not (metric_pair and tout.kind == "metric")
        K = multi["K"][:, :Sp].flatten(0, 1).to(device)
        target = distill_targets(tout, K, torch.ones(len(flat), dtype=torch.bool), is_points, normalize)
        pred, conf, _ = per_view_prediction(core, out, points=target[2])
        ld = _distill_term(pred.flatten(0, 1), conf.flatten(0, 1), target, cfg, normalize)
        lp = replay_loss(core, out, multi, cfg.lam)
        total = total + (ld + lp) * n_multi
        parts["distill_multiview"] = float(ld.detach())
        parts["replay"] = float(lp.detach())
    loss = total / max(1, n_single + n_multi)
    parts["n_multiview"] = float(n_multi)
    return loss, parts
