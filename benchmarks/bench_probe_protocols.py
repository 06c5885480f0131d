"""Probe step cost of the ``paper`` protocol (augment + backbone forward + head) against the cached
``fast`` protocol (head only), side by side in one run; optionally the 7-Scenes depth split with the
``paper`` protocol at reduced iterations (train frames 0-699, test 800-999).

Prints one JSON line per measurement. Random-initialised backbones (speed does not depend on weights).
``--quick`` uses the tiny model and small crops (seconds, for CI).

    python benchmarks/bench_probe_protocols.py [--quick] [--device cuda] [--steps 3]
    python benchmarks/bench_probe_protocols.py --seven-scenes ../shared/data/7scenes-redkitchen --iters 20
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import numpy as np
import torch


def _common(device: str) -> dict:
    return {
        "device": device,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
    }


def step_costs(
    backbone_name: str, task: str, crop: int, steps: int, device: str, batch: int, eff: int
) -> dict:
    """Seconds per optimiser step (``eff`` crops) of both protocols, on the same crop size."""
    from tune3d.fit3d.assembly import build_assembled
    from tune3d.probe import FeatureBank, ProbeConfig
    from tune3d.probe.paper import PaperOptions, run_paper_probe
    from tune3d.probe.train import train_depth_probe, train_seg_probe

    rng = np.random.default_rng(0)
    n, H, W = 4, 480, 640
    if task == "semseg":
        samples = [
            (rng.integers(0, 256, (H, W, 3), dtype=np.uint8), rng.integers(0, 13, (H, W))) for _ in range(n)
        ]
    else:
        samples = [
            (
                rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
                rng.uniform(0.5, 9.0, (H, W)).astype(np.float32),
            )
            for _ in range(n)
        ]
    model = build_assembled(backbone_name, mode="original", allow_random_init=True, device=device)
    cfg = ProbeConfig(iters=steps, device=device, progress=False)
    opts = PaperOptions(batch_size=batch, effective_batch=eff, seg_crop=(crop, crop), depth_crop=(crop, crop))
    with tempfile.TemporaryDirectory() as tmp:
        m = run_paper_probe(task, model, samples, samples[:1], cfg, tmp, opts, num_classes=13)
    paper_step = m["time_per_step_s"]
    # fast: the head alone on cached features of the same grid (what the paper step adds is the rest)
    grid = -(-crop // model.patch_size)
    bank = FeatureBank(
        patch=torch.randn(eff, model.width, grid, grid),
        cls=torch.randn(eff, model.cls_width) if task == "depth" else None,
        targets=torch.from_numpy(np.stack([s[1][:crop, :crop] for s in samples[:1]] * eff)),
    )
    cfg_fast = ProbeConfig(iters=steps, batch_size=eff, device=device, progress=False)
    t = time.perf_counter()
    (train_seg_probe(bank, 13, cfg_fast) if task == "semseg" else train_depth_probe(bank, cfg_fast))
    fast_step = (time.perf_counter() - t) / steps
    return {
        "bench": "probe_step",
        "task": task,
        "backbone": backbone_name,
        "crop": crop,
        "crops_per_step": eff,
        "paper_step_s": round(paper_step, 4),
        "paper_backbone_share": round(m["time_backbone_s"] / m["time_train_s"], 3),
        "fast_step_s": round(fast_step, 4),
        "paper_over_fast": round(paper_step / fast_step, 1),
    }


def seven_scenes(path: str, iters: int, device: str, backbone_name: str, batch: int, eff: int) -> dict:
    """``paper`` depth protocol on 7-Scenes redkitchen: train frames 0-699, test 800-999."""
    from tune3d.data import load_scene
    from tune3d.data.benchmarks import eval_crop_mask
    from tune3d.fit3d.assembly import build_assembled
    from tune3d.probe import ProbeConfig, SceneSamples
    from tune3d.probe.paper import PaperOptions, run_paper_probe

    scene = load_scene(path)
    train = SceneSamples(scene, "depth", range(0, 700))
    test = SceneSamples(scene, "depth", range(800, 1000))
    model = build_assembled(backbone_name, mode="original", allow_random_init=True, device=device)
    cfg = ProbeConfig(iters=iters, device=device, progress=False, max_depth=10.0)
    opts = PaperOptions(batch_size=batch, effective_batch=eff)

    def mask(d: np.ndarray) -> np.ndarray:
        return (d > cfg.min_depth) & (d < cfg.max_depth) & eval_crop_mask(d.shape, None)

    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        m = run_paper_probe("depth", model, train, test, cfg, tmp, opts, eval_mask=mask)
    return {
        "bench": "7scenes_paper_depth",
        "backbone": backbone_name,
        "iters": iters,
        "crops_per_step": eff,
        "num_train": len(train),
        "num_test": len(test),
        "rmse": round(m["rmse"], 4),
        "abs_rel": round(m["abs_rel"], 4),
        "delta1": round(m["delta1"], 4),
        "wall_s": round(time.perf_counter() - t, 1),
        "train_s": m["time_train_s"],
        "eval_s": m["time_eval_s"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny model and small crops")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=3, help="optimiser steps timed per protocol")
    ap.add_argument("--backbone", default=None, help="[dinov2_vits14, tiny with --quick]")
    ap.add_argument("--batch-size", type=int, default=2, help="crops per backbone forward")
    ap.add_argument("--effective-batch", type=int, default=16, help="crops per optimiser step")
    ap.add_argument("--seven-scenes", default=None, help="7-Scenes redkitchen folder: run the depth split")
    ap.add_argument("--iters", type=int, default=20, help="paper-protocol iterations of the 7-Scenes run")
    a = ap.parse_args()
    name = a.backbone or ("dinov2_vits14_tiny" if a.quick else "dinov2_vits14")
    common = _common(a.device)
    if a.seven_scenes:
        print(
            json.dumps(
                {
                    **seven_scenes(a.seven_scenes, a.iters, a.device, name, a.batch_size, a.effective_batch),
                    **common,
                }
            ),
            flush=True,
        )
        return
    crops = {"semseg": 56 if a.quick else 512, "depth": 56 if a.quick else 416}
    for task, crop in crops.items():
        rec = step_costs(name, task, crop, a.steps, a.device, a.batch_size, a.effective_batch)
        print(json.dumps({**rec, **common}), flush=True)


if __name__ == "__main__":
    main()
