"""Global alignment vs the pairwise-to-image-1 route on a 7-Scenes sequence (one JSON line per route).

Runs a pairwise model (default ``dust3r_tiny``; ``--weights`` or ``--allow-random-init``) on ``--frames``
(default 800:1000:10, 20 frames) of the redkitchen sequence at ``--size`` and compares, against the
sensor depth and KinectFusion poses resized to the model input:

- ``pairwise_to_first``: every image paired with image 1 (``reconstruct(align="none")``);
- ``global/<graph>`` for each ``--graphs`` entry: pair graph + global alignment (``niter`` steps);
- ``global/<graph>/init``: its spanning-tree initialisation alone (``niter=0``).

Pose: relative rotation / translation-direction errors over all frame pairs (degrees, mean and median)
and AUC@30, plus the absolute trajectory error (RMSE of camera centres after a Sim(3) fit, metres).
Pointmaps: one Sim(3) per route from all valid pixels, then accuracy / completeness (metres, Spann3R
protocol on up to 20k points) and ``rel_point``. The ``*_conf`` columns score only each view's most
confident ``--keep`` fraction of its valid pixels (by the route's own per-view confidence: DUSt3R's
``im_conf`` for global alignment, the pair's confidence for the pairwise route), as DUSt3R's demo drops
low-confidence points (``min_conf_thr``) before showing a scene: both routes keep the same number of
points per view, the Sim(3) is fitted on the kept points, and accuracy / completeness are measured
against the whole valid ground-truth scene (the same reference for both routes). ``conf>3`` is the
fraction of valid pixels above the demo's default threshold of 3. Last, one line per (points, pixels) pair
scores every route's points on every route's kept pixels and on a random ``--keep`` fraction, separating
the choice of pixels (the confidence ranking) from the geometry.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "7scenes-redkitchen"


def ate(c2w_pred: torch.Tensor, c2w_gt: torch.Tensor) -> float:
    from tune3d.geometry.align import apply_sim3, umeyama_sim3

    p, g = c2w_pred[:, :3, 3].double()[None], c2w_gt[:, :3, 3].double()[None]
    s, R, t = umeyama_sim3(p, g)
    return float((apply_sim3(s, R, t, p) - g).norm(dim=-1).pow(2).mean().sqrt())


def top_confidence(conf: torch.Tensor, valid: torch.Tensor, keep: float) -> torch.Tensor:
    """Per view ``S,H,W``: the ``keep`` fraction of its ``valid`` pixels with the highest ``conf``."""
    out = torch.zeros_like(valid)
    for v in range(conf.shape[0]):
        idx = valid[v].reshape(-1).nonzero()[:, 0]
        n = int(round(keep * idx.numel()))
        if n:
            best = conf[v].reshape(-1)[idx].argsort(descending=True)[:n]
            out[v].view(-1)[idx[best]] = True
    return out


def kept_cloud_metrics(pred, gt, valid, kept, max_points: int = 20000, seed: int = 0) -> dict:
    """Accuracy / completeness of the ``kept`` points of ``pred`` against all ``valid`` points of ``gt``
    (``S,H,W,3``), after one Sim(3) fitted on the kept pixels."""
    from tune3d.metrics.pointmap import align_pointmaps, nearest_neighbors

    P = align_pointmaps(pred, gt, kept, "umeyama")[kept].numpy()
    G = gt[valid].numpy()
    rng = np.random.default_rng(seed)
    if len(P) > max_points:
        P = P[rng.choice(len(P), max_points, replace=False)]
    if len(G) > max_points:
        G = G[rng.choice(len(G), max_points, replace=False)]
    return {"acc": float(nearest_neighbors(P, G)[0].mean()), "comp": float(nearest_neighbors(G, P)[0].mean())}


def evaluate(recon, gt_pts: torch.Tensor, gt_valid: torch.Tensor, gt_c2w: torch.Tensor, keep: float) -> dict:
    from tune3d.metrics.pointmap import pointmap_metrics
    from tune3d.metrics.pose import pose_metrics

    c2w = torch.from_numpy(recon.c2w).double()
    pose = pose_metrics(c2w, gt_c2w, auc_thresholds=(30,), accuracy_thresholds=(15,))
    pred = torch.from_numpy(recon.pts3d).double()
    conf = torch.from_numpy(recon.conf).double()
    pts = pointmap_metrics(pred, gt_pts, gt_valid, max_points=20000)
    top = kept_cloud_metrics(pred, gt_pts, gt_valid, top_confidence(conf, gt_valid, keep))
    return {
        "rot_err_mean": pose["rot_err_mean"],
        "rot_err_median": pose["rot_err_median"],
        "trans_err_mean": pose["trans_err_mean"],
        "trans_err_median": pose["trans_err_median"],
        "auc@30": pose["auc@30"],
        "ate_m": ate(c2w, gt_c2w),
        "acc_m": pts["acc"],
        "comp_m": pts["comp"],
        "rel_point": pts["rel_point"],
        "acc_conf_m": top["acc"],
        "comp_conf_m": top["comp"],
        "conf>3": float((conf[gt_valid] > 3).double().mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--frames", default="800:1000:10")
    ap.add_argument("--model", default="dust3r_tiny")
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--allow-random-init", action="store_true")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--graphs", default="complete,swin-3")
    ap.add_argument("--niter", type=int, default=300)
    ap.add_argument("--save", type=Path, default=None, help="Folder for each route's predictions (npz).")
    ap.add_argument(
        "--keep", type=float, default=0.5, help="Fraction of valid pixels kept per view (*_conf)."
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()

    from tune3d.data import load_scene
    from tune3d.data.scene import parse_frame_range
    from tune3d.geometry.cameras import depth_to_pointmap
    from tune3d.recon import create_model
    from tune3d.recon.inference import prepare_images, reconstruct

    torch.manual_seed(0)
    scene = load_scene(args.data)
    idx = parse_frame_range(args.frames, len(scene))
    model = create_model(
        args.model, weights=args.weights, device=args.device, allow_random_init=args.allow_random_init
    )
    paths = [scene[k].image_source.path for k in idx]
    prep = prepare_images(paths, model, size=args.size)
    S, _, H, W = prep.images.shape
    frames = [scene[k] for k in idx]
    if any(f.width * H != f.height * W for f in frames):
        raise SystemExit("this benchmark expects a resize without crop (same aspect ratio as the frames)")
    frames = [f.resized(H, W) for f in frames]
    depth = torch.from_numpy(np.stack([f.depth() for f in frames])).double()
    gt_c2w = torch.from_numpy(np.stack([f.c2w for f in frames])).double()
    K = torch.from_numpy(np.stack([f.K for f in frames])).double()
    gt_pts, gt_valid = depth_to_pointmap(depth, K, gt_c2w), depth > 0
    meta = {"model": args.model, "weights": str(args.weights) if args.weights else "random init",
            "frames": args.frames, "views": S, "input": f"{H}x{W}", "device": args.device,
            "keep": args.keep}  # fmt: skip

    runs = [("pairwise_to_first", {"align": "none"})]
    for g in [g.strip() for g in args.graphs.split(",") if g.strip()]:
        runs.append((f"global/{g}/init", {"align": "global", "graph": g, "niter": 0}))
        runs.append((f"global/{g}", {"align": "global", "graph": g, "niter": args.niter}))
    kept = {}
    for name, kw in runs:
        t0 = time.perf_counter()
        recon = reconstruct(model, prep.images, batch_pairs=16, **kw)
        sec = time.perf_counter() - t0
        if args.save is not None:
            args.save.mkdir(parents=True, exist_ok=True)
            np.savez(
                args.save / (name.replace("/", "_") + ".npz"),
                pts3d=recon.pts3d,
                conf=recon.conf,
                c2w=recon.c2w,
            )
        row = {"route": name, **meta, "pairs": len(recon.pairs), "seconds": round(sec, 2)}
        row.update({k: round(v, 4) for k, v in evaluate(recon, gt_pts, gt_valid, gt_c2w, args.keep).items()})
        print(json.dumps(row), flush=True)
        kept[name] = (torch.from_numpy(recon.pts3d).double(), torch.from_numpy(recon.conf).double())

    # Which pixels vs which geometry: every route's points on every route's kept pixels (and a random half).
    g = torch.Generator().manual_seed(0)
    masks = {n: top_confidence(c, gt_valid, args.keep) for n, (_, c) in kept.items()}
    masks["random"] = gt_valid & (torch.rand(gt_valid.shape, generator=g, dtype=torch.float64) < args.keep)
    for mask_name, mask in masks.items():
        for name, (pts, _) in kept.items():
            m = kept_cloud_metrics(pts, gt_pts, gt_valid, mask)
            row = {
                "points": name,
                "pixels": mask_name,
                "acc_m": round(m["acc"], 4),
                "comp_m": round(m["comp"], 4),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
