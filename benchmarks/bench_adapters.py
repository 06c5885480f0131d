"""Inference latency of the Fin3R adapter forms against the base encoder, side by side in one run.

Variants: base, plain LoRA (unmerged / merged), renorm activation form (never mergeable), renorm-weight
(unmerged / merged). Encoder: a randomly initialised timm ``vit_large_patch16_224`` at 224x224 (Fin3R's
ViT-L encoders have the same 24 x dim-1024 qkv shapes). Targets: merged forms 1.00x, activation form <= 1.05x.
Timings are interleaved across variants (round robin) and reported as medians, one JSON line per variant.

    python benchmarks/bench_adapters.py            # ViT-L/16 at 224, batch 8
    python benchmarks/bench_adapters.py --quick    # tiny ViT, seconds on CPU
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import timm
import torch

from tune3d.fin3r.adapters import add_adapters, merge_adapters


def build_variants(
    model_name: str, img_size: int, rank: int, device: torch.device, dtype: torch.dtype
) -> dict:
    torch.manual_seed(0)
    base = timm.create_model(model_name, pretrained=False, num_classes=0, img_size=img_size).eval()
    variants = {"base": base}
    for form, merge in [
        ("plain", False),
        ("plain", True),
        ("renorm", False),
        ("renorm-weight", False),
        ("renorm-weight", True),
    ]:
        m = copy.deepcopy(base)
        add_adapters(m, form=form, rank=rank, alpha=rank)
        with torch.no_grad():  # non-zero B so no path can shortcut the adapter
            for n, p in m.named_parameters():
                if ".lora_B." in n:
                    p.normal_(0, 0.02)
        if merge:
            merge_adapters(m)
        variants[f"{form}{'-merged' if merge else ''}"] = m
    return {k: v.to(device=device, dtype=dtype).eval() for k, v in variants.items()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny ViT and sizes (smoke test)")
    ap.add_argument("--model", default="vit_large_patch16_224")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--iters", type=int, default=5, help="forward passes per variant per round")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = ap.parse_args()
    if args.quick:
        args.model, args.img_size, args.batch, args.rounds, args.iters = "vit_tiny_patch16_224", 64, 2, 3, 2
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)

    variants = build_variants(args.model, args.img_size, args.rank, device, dtype)
    x = torch.rand(args.batch, 3, args.img_size, args.img_size, device=device, dtype=dtype)
    times: dict[str, list[float]] = {k: [] for k in variants}
    with torch.inference_mode():
        for m in variants.values():  # warm-up (kernels, allocator)
            for _ in range(2):
                m(x)
        sync(device)
        for _ in range(args.rounds):
            for name, m in variants.items():
                sync(device)
                t0 = time.perf_counter()
                for _ in range(args.iters):
                    m(x)
                sync(device)
                times[name].append((time.perf_counter() - t0) / args.iters * 1e3)
    base_ms = statistics.median(times["base"])
    for name, ts in times.items():
        ms = statistics.median(ts)
        print(
            json.dumps(
                {
                    "bench": "adapters",
                    "variant": name,
                    "model": args.model,
                    "img_size": args.img_size,
                    "batch": args.batch,
                    "rank": args.rank,
                    "device": str(device),
                    "dtype": args.dtype,
                    "ms_median": round(ms, 3),
                    "ratio_vs_base": round(ms / base_ms, 4),
                }
            )
        )


if __name__ == "__main__":
    main()
