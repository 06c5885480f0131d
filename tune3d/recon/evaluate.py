"""Evaluation of reconstruction models on a posed RGB-D scene (``tune3d eval-recon``).

Frames are resized (no crop) to the model's input size (:func:`tune3d.recon.inference.model_input_size`),
intrinsics scaled along. Three groups of metrics, nested in the returned dict / ``metrics.json``:

- ``mono_depth.<head>``: each frame alone (``S = 1``; pairwise models run the self-pair), for every
  per-view head the model has: ``depth`` (VGGT's depth head), ``pts3d`` (z of the point head / world head:
  VGGT, CUT3R; for one view it is the view's own frame), ``pts3d_self`` (CroCo self-view head). Depth is
  aligned per image (``align``: ``scale``, ``scale_shift``, ``median`` or ``none``) and scored with
  :data:`tune3d.metrics.depth.DEPTH_METRIC_KEYS` (``abs_rel``, ``delta1``, ...).
- ``multiview``: tuples of co-visible frames (pairs for DUSt3R/MASt3R, ``views`` frames otherwise).
  Pointmaps in the first view's frame are aligned to the ground truth with one Umeyama Sim(3) per tuple,
  then ``accuracy``, ``completeness``, ``chamfer``, ``nc`` (normal consistency), ``rel_point``,
  ``delta1_point`` averaged over tuples; ``multiview.depth``: own-frame depth of every view predicted
  in the multi-view pass (pairwise models: view ``j`` from the swapped pair), aligned as above.
- ``matching`` (models with descriptors, MASt3R): for ground-truth matches from view 1 to view 2 of each pair
  (depth reprojection with an occlusion test, up to ``match_queries`` per pair), the nearest neighbour of the
  view-1 descriptor among all view-2 pixels; ``acc@1/3/5px`` = share within that many pixels of the true
  match, ``median_px`` the median error.
- ``pose``: relative pose errors over the pairs of each tuple, ``auc@5/10/20`` of ``max(rot, trans)``
  (LoFTR trapezoid), medians. Cameras from the camera head where the model has one, otherwise by
  Procrustes between a view's pointmap in the first frame and its own-frame pointmap (``source``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from tune3d.data import Scene, load_scene
from tune3d.data.overlap import covisible_partners
from tune3d.errors import Tune3DError
from tune3d.geometry.pose import pose_from_pointmaps
from tune3d.io import write_json, write_yaml
from tune3d.metrics.depth import DepthMetricAccumulator
from tune3d.metrics.pointmap import pointmap_metrics
from tune3d.metrics.pose import pose_auc, relative_pose_errors
from tune3d.recon.inference import model_input_size
from tune3d.recon.losses import ground_truth, sample_correspondences


@dataclass
class EvalReconConfig:
    frames: str | None = None  # "A:B[:STEP]" subset of the scene
    pairs: int = 20  # number of multi-view tuples
    views: int = 2  # tuple size for N-view models (pairwise models always use 2)
    mono_frames: int = 20  # frames for monocular depth (evenly spaced over the selection)
    size: int | None = None  # model input size (long side / VGGT width); default: the model's
    align: str = "scale_shift"  # depth alignment: none | median | scale | scale_shift | affine_disparity
    min_overlap: float = 0.3
    max_frame_gap: int = 10  # partners within this many selected frames
    min_depth: float = 1e-3
    max_depth: float | None = None
    max_points: int = 20_000  # subsampling for the nearest-neighbour metrics
    seed: int = 0
    batch_size: int = 4
    match_queries: int = 500  # ground-truth matches per pair for the descriptor metric


def _head_depths(model, out, S: int) -> dict[str, tuple[Tensor, Tensor]]:
    """Own-frame depth ``B,S,H,W`` (+ confidence) of every per-view head present in ``out``."""
    heads = {}
    if out.depth is not None:
        heads["depth"] = (out.depth, out.depth_conf)
    if out.pts3d_self is not None and out.depth is None and out.pts3d_self.shape[1] == S:
        heads["pts3d_self"] = (out.pts3d_self[..., 2], out.pts3d_self_conf)
    if model.num_views != 2:  # pairwise: pts3d[:, 0] is the self-view head itself
        heads["pts3d"] = (out.pts3d[..., 2], out.pts3d_conf)
    return heads


def descriptor_match_errors(desc: Tensor, xy0: Tensor, xy1: Tensor) -> Tensor:
    """Pixel error of nearest-neighbour matching: ``desc`` ``2,H,W,D`` of a pair, queries ``xy0`` ``N,2`` in
    view 1 with true matches ``xy1`` ``N,2`` in view 2 (x, y) -> ``N`` distances between the pixel of view 2
    whose descriptor is most similar to the query's and the true match."""
    H, W, D = desc.shape[1:]
    q = desc[0, xy0[:, 1], xy0[:, 0]].float()  # N,D
    best = (q @ desc[1].reshape(-1, D).float().T).argmax(-1)  # N
    pred = torch.stack([best % W, best // W], -1)
    return (pred - xy1).float().norm(dim=-1)


def _load_frames(scene, H: int, W: int) -> dict[str, Tensor]:
    frames = [f.resized(H, W) for f in scene]
    if not all(f.has_depth for f in frames):
        raise Tune3DError(f"{scene.path or scene.name}: evaluation needs depth for every frame")
    depth = torch.from_numpy(np.stack([f.depth() for f in frames]).astype(np.float32))
    return {
        "images": torch.from_numpy(np.stack([f.image() for f in frames])).permute(0, 3, 1, 2).float() / 255,
        "depth": torch.where(torch.isfinite(depth), depth, torch.zeros_like(depth)),
        "K": torch.from_numpy(np.stack([f.K for f in frames])),
        "c2w": torch.from_numpy(np.stack([f.c2w for f in frames])),
    }


def _mean_dicts(rows: list[dict[str, float]]) -> dict[str, float]:
    if not rows:
        return {}
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}


@torch.no_grad()
def evaluate_model(model, scene_or_path, cfg: EvalReconConfig | None = None, progress: bool = False) -> dict:
    """Evaluate ``model`` on one scene (a :class:`~tune3d.data.Scene` or a path); returns nested metrics."""
    cfg = cfg or EvalReconConfig()
    scene = scene_or_path if isinstance(scene_or_path, Scene) else load_scene(scene_or_path)
    if cfg.frames:
        scene = scene.subset(cfg.frames)
    model.eval()
    device = next(model.parameters()).device
    f0 = scene[0]
    H, W = model_input_size(model, f0.height, f0.width, cfg.size)
    data = _load_frames(scene, H, W)
    n = data["images"].shape[0]
    pairwise = model.num_views == 2
    S = 2 if pairwise else max(2, cfg.views)
    mk = dict(min_depth=cfg.min_depth, max_depth=cfg.max_depth, align=cfg.align)

    # -- monocular depth ---------------------------------------------------------------------
    mono_idx = np.unique(np.linspace(0, n - 1, min(cfg.mono_frames, n)).round().astype(int)).tolist()
    mono: dict[str, DepthMetricAccumulator] = {}
    for k in tqdm(range(0, len(mono_idx), cfg.batch_size), desc="mono depth", disable=not progress):
        idx = mono_idx[k : k + cfg.batch_size]
        x = data["images"][idx].to(device)[:, None]
        out = model(torch.cat([x, x], 1) if pairwise else x)
        gt = data["depth"][idx]
        for head, (d, _) in _head_depths(model, out, 1).items():
            mono.setdefault(head, DepthMetricAccumulator(**mk)).update(d[:, 0].float().cpu(), gt)

    # -- multi-view tuples ---------------------------------------------------------------------
    partners = covisible_partners(
        data["depth"], data["K"], data["c2w"], S, cfg.min_overlap, cfg.max_frame_gap
    )
    anchors = [a for a, p in enumerate(partners) if len(p) >= S - 1]
    g = torch.Generator().manual_seed(cfg.seed)
    mv_rows: list[dict[str, float]] = []
    mv_depth = DepthMetricAccumulator(**mk)
    pose_errs: list[Tensor] = []
    rot_errs: list[Tensor] = []
    trans_errs: list[Tensor] = []
    pose_source = "camera_head"
    match_errs: list[Tensor] = []
    g_match = torch.Generator().manual_seed(cfg.seed)
    for _ in tqdm(range(cfg.pairs if anchors else 0), desc="multi-view", disable=not progress):
        a = anchors[int(torch.randint(len(anchors), (1,), generator=g))]
        p = partners[a]
        idx = [a] + [p[k] for k in torch.randperm(len(p), generator=g)[: S - 1].tolist()]
        batch = {k: v[idx][None] for k, v in data.items()}
        gt = ground_truth(batch)
        x = batch["images"].to(device)
        if pairwise:
            out = model(torch.cat([x, x.flip(1)]))  # (i, j) and (j, i)
            pts = out.pts3d[0].float().cpu()  # both views in view i's frame
            conf = out.pts3d_conf[0].float().cpu()
            own = torch.stack([out.pts3d_self[0, 0], out.pts3d_self[1, 0]]).float().cpu()
            own_conf = torch.stack([out.pts3d_self_conf[0, 0], out.pts3d_self_conf[1, 0]]).float().cpu()
            c2w = None
            if "desc" in out.extras and cfg.match_queries > 0:
                xy0, xy1, ok = sample_correspondences(
                    batch["depth"], batch["K"], batch["c2w"], cfg.match_queries, g_match
                )
                desc = out.extras["desc"][0].cpu()
                match_errs.append(descriptor_match_errors(desc, xy0[0][ok[0]].cpu(), xy1[0][ok[0]].cpu()))
        else:
            out = model(x)
            pts, conf = out.pts3d[0].float().cpu(), out.pts3d_conf[0].float().cpu()
            own = own_conf = None
            if out.pts3d_self is not None and out.pts3d_self.shape[1] == S:
                own, own_conf = out.pts3d_self[0].float().cpu(), out.pts3d_self_conf[0].float().cpu()
            c2w = None if out.c2w is None else out.c2w[0].double().cpu()
        valid = gt["valid"][0]
        m = pointmap_metrics(pts, gt["pts_first"][0], valid, align="umeyama", max_points=cfg.max_points)
        mv_rows.append(
            {
                "accuracy": m["acc"],
                "accuracy_med": m["acc_med"],
                "completeness": m["comp"],
                "completeness_med": m["comp_med"],
                "chamfer": m["chamfer"],
                "nc": m["nc"],
                "rel_point": m["rel_point"],
                "delta1_point": m["delta1_point"],
            }
        )
        if own is not None:
            mv_depth.update(own[..., 2], batch["depth"][0])
        elif out.depth is not None:
            mv_depth.update(out.depth[0].float().cpu(), batch["depth"][0])
        if c2w is None:
            if own is None:
                continue
            pose_source = "procrustes"
            keep = (own_conf >= own_conf.flatten(1).median(1).values[:, None, None]) & (
                conf >= conf.flatten(1).median(1).values[:, None, None]
            )
            c2w = pose_from_pointmaps(pts.double(), own.double(), keep, with_scale=True)
        err = relative_pose_errors(c2w, batch["c2w"][0].double())
        rot_errs.append(err["rot_err"])
        trans_errs.append(err["trans_err"])
        pose_errs.append(torch.maximum(err["rot_err"], err["trans_err"]))

    metrics: dict = {
        "mono_depth": {h: {**acc.compute(), "count": acc.count} for h, acc in mono.items()},
        "multiview": {**_mean_dicts(mv_rows), "tuples": len(mv_rows)},
    }
    if mv_depth.count:
        metrics["multiview"]["depth"] = {**mv_depth.compute(), "count": mv_depth.count}
    if match_errs and (e := torch.cat(match_errs)).numel():
        metrics["matching"] = {
            **{f"acc@{t}px": float((e <= t).float().mean()) for t in (1, 3, 5)},
            "median_px": float(e.median()),
            "queries": int(e.numel()),
        }
    if pose_errs:
        e = torch.cat(pose_errs)
        metrics["pose"] = {
            **pose_auc(e, (5, 10, 20)),
            "rot_err_median": float(torch.cat(rot_errs).median()),
            "trans_err_median": float(torch.cat(trans_errs).median()),
            "pairs": int(e.numel()),
            "source": pose_source,
        }
    metrics["meta"] = {
        "scene": scene.name,
        "frames": n,
        "input_size": [H, W],
        "views_per_tuple": S,
        "align": cfg.align,
        "model_family": getattr(model, "family", ""),
    }
    return metrics


def eval_config_dict(cfg: EvalReconConfig, **extra) -> dict:
    return {**asdict(cfg), **extra}


def write_eval_run(out: str | os.PathLike, cfg: EvalReconConfig, metrics: dict, **record: str | None) -> None:
    """Write one evaluation's ``config.yaml`` (``cfg``'s fields plus ``record``: model, weights, adapter,
    data; ``tune3d eval-recon --config`` reads it back) and ``metrics.json`` into ``out``."""
    os.makedirs(out, exist_ok=True)
    metrics["meta"].update({"model": record.get("model"), "weights": record.get("weights")})
    write_yaml(os.path.join(out, "config.yaml"), eval_config_dict(cfg, **record))
    write_metrics(out, metrics)


def write_metrics(out: str | os.PathLike, metrics: dict) -> None:
    write_json(os.path.join(out, "metrics.json"), metrics)
