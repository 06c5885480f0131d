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
protocol on up to 20k points) and ``rel_point``.
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


def evaluate(recon, gt_pts: torch.Tensor, gt_valid: torch.Tensor, gt_c2w: torch.Tensor) -> dict:
    from tune3d.metrics.pointmap import pointmap_metrics
    from tune3d.metrics.pose import pose_metrics

    c2w = torch.from_numpy(recon.c2w).double()
    pose = pose_metrics(c2w, gt_c2w, auc_thresholds=(30,), accuracy_thresholds=(15,))
    pts = pointmap_metrics(torch.from_numpy(recon.pts3d).double(), gt_pts, gt_valid, max_points=20000)
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
            "frames": args.frames, "views": S, "input": f"{H}x{W}", "device": args.device}  # fmt: skip

    runs = [("pairwise_to_first", {"align": "none"})]
    for g in [g.strip() for g in args.graphs.split(",") if g.strip()]:
        runs.append((f"global/{g}/init", {"align": "global", "graph": g, "niter": 0}))
        runs.append((f"global/{g}", {"align": "global", "graph": g, "niter": args.niter}))
    for name, kw in runs:
        t0 = time.perf_counter()
        recon = reconstruct(model, prep.images, batch_pairs=16, **kw)
        sec = time.perf_counter() - t0
        row = {"route": name, **meta, "pairs": len(recon.pairs), "seconds": round(sec, 2)}
        row.update({k: round(v, 4) for k, v in evaluate(recon, gt_pts, gt_valid, gt_c2w).items()})
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
