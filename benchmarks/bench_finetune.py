"""FiT3D stage II step cost: a full fine-tuning step against a bare timm forward+backward of the same batch.

One JSON line per measurement:
- ``finetune_step``: render + decode + reduce the targets of one batch (``load``), then forward, masked L1,
  backward, clip, AdamW step (``train``) through :class:`tune3d.fit3d.finetune.Finetuner` (Accelerate);
- ``bare_timm``: the same timm model, batch and input size: forward_features, L1 against a fixed target,
  backward, clip, AdamW step, no rendering, no Accelerate;
- ``ratio``: finetune_step / bare_timm (target <= 1.3 when rendering is cheap next to the ViT; on CPU with
  the torch rasterizer the render share is reported separately as ``load_ms``).
Peak memory: ``torch.cuda.max_memory_allocated`` per variant on GPU; process max RSS on CPU.

    python benchmarks/bench_finetune.py --quick          # tiny model, seconds on CPU
    python benchmarks/bench_finetune.py                  # ViT-S/14, 294x392, 30k Gaussians
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch


def _peak(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"peak_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)}
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return {"max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, 1)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny model and scene")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    from tune3d.backbones import create_backbone
    from tune3d.data import write_scene
    from tune3d.data.synth import generate_scene
    from tune3d.engine import make_accelerator
    from tune3d.fit3d.finetune import FinetuneConfig, Finetuner
    from tune3d.fit3d.lifted import open_lifted, write_random_lifted

    if args.quick:
        name, (H, W), n_gauss, steps = "dinov2_vits14_tiny", (42, 56), 500, args.steps or 3
    else:
        name, (H, W), n_gauss, steps = "dinov2_vits14", (294, 392), 30_000, args.steps or 10
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        views = 2 * args.batch_size * (steps + 1)
        write_scene(
            generate_scene(0, num_views=views, height=H, width=W, num_points=max(n_gauss, 2000)), tmp / "s"
        )
        cfg = FinetuneConfig(
            batch_size=args.batch_size, flip_p=0.5, progress=False, device=args.device, seed=0
        )
        acc = make_accelerator(cfg.device, cfg.mixed_precision)
        dev = acc.device
        bb = create_backbone(name, allow_random_init=True, device=dev, precision="fp32")
        lifted = open_lifted(write_random_lifted(tmp / "s", tmp / "l", bb.width, num_gaussians=n_gauss))
        trainer = Finetuner([lifted], bb, cfg, acc)
        common = {
            "backbone": name,
            "resolution": [H, W],
            "gaussians": n_gauss,
            "batch": args.batch_size,
            "device": str(dev),
            "mixed_precision": acc.mixed_precision,
        }

        # -- full fine-tuning step (step 0 is warm-up)
        trainer.train_step(0, trainer.load_step(0))
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t_load = t_train = 0.0
        for s in range(1, steps + 1):
            _sync(dev)
            t0 = time.perf_counter()
            groups = trainer.load_step(s)
            _sync(dev)
            t1 = time.perf_counter()
            trainer.train_step(s, groups)
            _sync(dev)
            t_load += t1 - t0
            t_train += time.perf_counter() - t1
        ft_ms = 1000 * (t_load + t_train) / steps
        print(
            json.dumps(
                {
                    "name": "finetune_step",
                    **common,
                    "ms": round(ft_ms, 2),
                    "load_ms": round(1000 * t_load / steps, 2),
                    "train_ms": round(1000 * t_train / steps, 2),
                    **_peak(dev),
                }
            ),
            flush=True,
        )

        # -- bare timm forward+backward of the same batch and input size
        images, targets, masks = groups[0]
        model = create_backbone(name, allow_random_init=True, device=dev, precision="fp32").timm_model.train()
        x = trainer.backbone.prepare(images, cfg.resize).detach()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if acc.mixed_precision == "bf16" else None

        def bare_step() -> None:
            with amp if amp is not None else torch.autocast("cpu", enabled=False):
                tok = model.forward_features(x)[:, model.num_prefix_tokens :]
            out = tok.float().transpose(1, 2).reshape(targets.shape)
            loss = ((out - targets).abs() * masks).sum() / (masks.sum() * out.shape[1])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)

        bare_step()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(steps):
            bare_step()
        _sync(dev)
        bare_ms = 1000 * (time.perf_counter() - t0) / steps
        print(json.dumps({"name": "bare_timm", **common, "ms": round(bare_ms, 2), **_peak(dev)}), flush=True)
        print(
            json.dumps(
                {
                    "name": "ratio",
                    **common,
                    "finetune_over_bare": round(ft_ms / bare_ms, 3),
                    "train_only_over_bare": round(1000 * t_train / steps / bare_ms, 3),
                    "target": 1.3,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
