"""FiT3D stage II step cost: a full fine-tuning step against a bare timm forward+backward of the same batch.

The two variants run interleaved in one process (finetune step, bare step, finetune step, ...), so load
drifts hit both alike; times are medians over the timed repetitions. One JSON line per measurement:
- ``finetune_step``: render the latent (rasterizer) at the token grid's support pixels only, decode there
  and reduce targets and masks (``load_ms``), then forward, masked L1, backward, clip, AdamW step
  (``train_ms``) through :class:`tune3d.fit3d.finetune.Finetuner` (Accelerate), with no target cache: every
  step renders;
- ``finetune_step_cached``: the same steps with their targets already in the per-view target cache (a
  second epoch, or a rerun with ``--target-cache``): no rendering, only the image read;
- ``finetune_step_prefetch``: the fine-tuning loop as ``tune3d finetune`` runs it (``prefetch``): the next
  step's targets render on a worker thread while this step trains, no target cache; timed as a separate
  block after the interleaved variants (its background render would disturb their timings), followed by
  its own block of bare steps (``bare_after_ms``) that its ratio uses;
- ``bare_timm``: the same timm model, batch and input size: forward_features, L1 against the same target,
  backward, clip, AdamW step, no rendering, no Accelerate;
- ``target_decode``: one view's decoder pass, full-resolution decode + bilinear reduction (the old way) vs
  decoding only at the token grid's support, and their max abs difference;
- ``target_render``: one view's whole target (latent render, decode, mask), the full-frame render then
  decoding at the support (the previous way) vs rendering only the support's rows x columns
  (``render_grid_target``), interleaved, and their max abs differences (target, mask);
- ``finetune_step_ratio``: median finetune step / median bare step (target <= 1.15), plus the cached
  ratio and the median of per-repetition paired ratios.
Peak memory: ``torch.cuda.max_memory_allocated`` on GPU; process max RSS on CPU.

    python benchmarks/bench_finetune.py --quick          # tiny model, seconds on CPU
    python benchmarks/bench_finetune.py                  # ViT-S/14, 294x392, 30k Gaussians, 64-d latent
    python benchmarks/bench_finetune.py --threads 1      # intra-op threads (default: torch's)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
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


def _ms(xs: list[float]) -> float:
    return round(1000 * statistics.median(xs), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny model and scene")
    ap.add_argument("--steps", type=int, default=None, help="timed repetitions of each variant")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--latent-dim", type=int, default=64, help="latent channels rendered (real lifts: 64)")
    ap.add_argument("--gaussians", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    from tune3d.backbones import create_backbone
    from tune3d.data import write_scene
    from tune3d.data.synth import generate_scene
    from tune3d.engine import make_accelerator
    from tune3d.fit3d.finetune import FinetuneConfig, Finetuner
    from tune3d.fit3d.lifted import open_lifted, write_random_lifted

    if args.quick:
        name, (H, W), n_gauss, steps = "dinov2_vits14_tiny", (42, 56), 500, args.steps or 3
    else:
        name, (H, W), n_gauss, steps = "dinov2_vits14", (294, 392), 30_000, args.steps or 6
    n_gauss = args.gaussians or n_gauss
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        views = args.batch_size * (steps + 1)
        write_scene(
            generate_scene(0, num_views=views, height=H, width=W, num_points=max(n_gauss, 2000)), tmp / "s"
        )
        acc = make_accelerator(args.device, "auto")
        dev = acc.device
        bb = create_backbone(name, allow_random_init=True, device=dev, precision="fp32")
        lifted = open_lifted(
            write_random_lifted(
                tmp / "s", tmp / "l", bb.width, num_gaussians=n_gauss, latent_dim=args.latent_dim
            )
        )
        cfg = FinetuneConfig(batch_size=args.batch_size, progress=False, device=args.device, seed=0)
        trainer = Finetuner([lifted], bb, cfg, acc)  # default in-memory target cache, filled as steps run
        common = {
            "backbone": name,
            "resolution": [H, W],
            "gaussians": n_gauss,
            "latent_dim": args.latent_dim,
            "batch": args.batch_size,
            "threads": torch.get_num_threads(),
            "device": str(dev),
            "mixed_precision": acc.mixed_precision,
        }

        # the bare timm model: same architecture, batch, input size and target
        model = create_backbone(name, allow_random_init=True, device=dev, precision="fp32").timm_model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if acc.mixed_precision == "bf16" else None

        def bare_step(x: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor) -> None:
            with amp if amp is not None else torch.autocast("cpu", enabled=False):
                tok = model.forward_features(x)[:, model.num_prefix_tokens :]
            out = tok.float().transpose(1, 2).reshape(targets.shape)
            loss = ((out - targets).abs() * masks).sum() / (masks.sum() * out.shape[1])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)

        def timed(fn, *a):
            _sync(dev)
            t0 = time.perf_counter()
            out = fn(*a)
            _sync(dev)
            return out, time.perf_counter() - t0

        # warm-up (step 0) of both variants, then interleaved timed repetitions
        g = trainer.load_step(0)
        trainer.train_step(0, g)
        images, targets, masks = g[0]
        bare_step(trainer.backbone.prepare(images, cfg.resize).detach(), targets, masks)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        load, train, bare, load_cached = [], [], [], []
        for s in range(1, steps + 1):
            groups, t = timed(trainer.load_step, s)  # every view is new: a cache miss, rendered
            load.append(t)
            train.append(timed(trainer.train_step, s, groups)[1])
            images, targets, masks = groups[0]
            x = trainer.backbone.prepare(images, cfg.resize).detach()
            bare.append(timed(bare_step, x, targets, masks)[1])
            load_cached.append(timed(trainer.load_step, s)[1])  # the same views again: cache hits
        assert trainer.targets is not None and trainer.targets.hits == steps * args.batch_size
        step = [a + b for a, b in zip(load, train)]
        cached = [a + b for a, b in zip(load_cached, train)]
        ft, ft_cached, bare_ms = _ms(step), _ms(cached), _ms(bare)
        peak = _peak(dev)
        print(
            json.dumps(
                {
                    "name": "finetune_step",
                    **common,
                    "ms": ft,
                    "load_ms": _ms(load),
                    "train_ms": _ms(train),
                    **peak,
                }
            ),
            flush=True,
        )
        print(
            json.dumps(
                {"name": "finetune_step_cached", **common, "ms": ft_cached, "load_ms": _ms(load_cached)}
            ),
            flush=True,
        )
        print(json.dumps({"name": "bare_timm", **common, "ms": bare_ms}), flush=True)
        # the default loop: step s + 1's targets render on a worker thread while step s trains (no target
        # cache, so every step renders). Run as its own block after the interleaved ones: its background
        # render would otherwise overlap and slow the other variants' timings.
        pf_cfg = FinetuneConfig(
            batch_size=args.batch_size, progress=False, device=args.device, seed=0, target_cache_mb=0
        )
        pf_bb = create_backbone(name, allow_random_init=True, device=dev, precision="fp32")
        pf = Finetuner([lifted], pf_bb, pf_cfg, acc)
        pf_steps = pf.prefetched_steps(0, steps + 1)
        pf.train_step(0, next(pf_steps))  # warm-up; step 1's targets render meanwhile
        prefetch = []
        for s in range(1, steps + 1):
            prefetch.append(timed(lambda s=s: pf.train_step(s, next(pf_steps)))[1])
        pf_steps.close()
        # its own bare reference, right after (load drifts between blocks on a shared machine)
        bare_after = [timed(bare_step, x, targets, masks)[1] for _ in range(steps)]
        print(
            json.dumps(
                {
                    "name": "finetune_step_prefetch",
                    **common,
                    "ms": _ms(prefetch),
                    "bare_after_ms": _ms(bare_after),
                }
            ),
            flush=True,
        )

        # the decoder alone: full-resolution decode + reduce vs decode at the token grid's support
        from tune3d.fit3d.targets import decode_at_grid, decode_full, reduce_to_grid, render_latent

        gs = trainer.cache.get(lifted)
        _, viewmat, K = lifted.view(lifted.train_views[0])
        latent, _ = render_latent(gs, viewmat, K, H, W, cfg.raster_backend, dev)
        grid = trainer.data.grid(H, W)
        full_t, support_t = [], []
        with torch.no_grad():
            for _ in range(3):
                ref, t = timed(lambda: reduce_to_grid(decode_full(latent, gs.decoder), grid))
                full_t.append(t)
                got, t = timed(decode_at_grid, latent, gs.decoder, grid)
                support_t.append(t)
        print(
            json.dumps(
                {
                    "name": "target_decode",
                    **common,
                    "full_ms": _ms(full_t),
                    "support_ms": _ms(support_t),
                    "speedup": round(statistics.median(full_t) / statistics.median(support_t), 1),
                    "max_abs_diff": float((ref - got).abs().max()),
                }
            ),
            flush=True,
        )
        # the whole target of one view: full-frame render (previous way) vs the support's pixel grid only
        from tune3d.fit3d.targets import render_grid_target, valid_mask

        def full_frame_target():
            lat, alpha = render_latent(gs, viewmat, K, H, W, cfg.raster_backend, dev)
            mask = reduce_to_grid(valid_mask(alpha, cfg.mask, cfg.alpha_threshold), grid)
            return decode_at_grid(lat, gs.decoder, grid), mask

        def grid_target():
            return render_grid_target(
                gs, viewmat, K, H, W, grid, cfg.raster_backend, dev, cfg.mask, cfg.alpha_threshold
            )

        frame_t, grid_t = [], []
        for _ in range(3):
            ref, t = timed(full_frame_target)
            frame_t.append(t)
            got, t = timed(grid_target)
            grid_t.append(t)
        print(
            json.dumps(
                {
                    "name": "target_render",
                    **common,
                    "full_frame_ms": _ms(frame_t),
                    "support_grid_ms": _ms(grid_t),
                    "speedup": round(statistics.median(frame_t) / statistics.median(grid_t), 2),
                    "max_abs_diff_target": float((ref[0] - got[0]).abs().max()),
                    "max_abs_diff_mask": float((ref[1] - got[1]).abs().max()),
                }
            ),
            flush=True,
        )
        print(
            json.dumps(
                {
                    "name": "ratio",
                    **common,
                    "finetune_step_ratio": round(ft / bare_ms, 3),
                    "finetune_step_ratio_paired": round(
                        statistics.median(a / b for a, b in zip(step, bare)), 3
                    ),
                    "cached_step_ratio": round(ft_cached / bare_ms, 3),
                    "prefetch_step_ratio": round(_ms(prefetch) / _ms(bare_after), 3),
                    "train_only_ratio": round(_ms(train) / bare_ms, 3),
                    "steps": steps,
                    "target": 1.15,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
