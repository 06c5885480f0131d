"""Dense-feature extraction throughput and feature-cache speed-up.

Prints one JSON line per measurement: images/s of DINOv2 ViT-S/14 (random init: weights do not change
speed) at 224 and 448 px, and the speed-up of a warm feature cache over recomputing.
``--quick`` uses the tiny test model and small inputs (seconds, for CI).

    python benchmarks/bench_features.py [--quick] [--device cuda] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import numpy as np
import torch


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def throughput(backbone, size: int, batch: int, iters: int, device: str) -> float:
    x = torch.rand(batch, 3, size, size, device=device)
    backbone.forward_features(x)  # warm-up (allocations, kernels)
    _sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        backbone.forward_features(x)
    _sync(device)
    return batch * iters / (time.perf_counter() - t)


def cache_speedup(backbone, n: int, size: int, batch: int) -> dict:
    from tune3d.backbones import extract_features, open_cache

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]
    with tempfile.TemporaryDirectory() as root:
        t = time.perf_counter()
        list(extract_features(backbone, images, batch_size=batch, cache=open_cache(root, backbone)))
        cold = time.perf_counter() - t
        cache = open_cache(root, backbone)
        t = time.perf_counter()
        list(extract_features(backbone, images, batch_size=batch, cache=cache))
        warm = time.perf_counter() - t
    return {
        "cold_s": round(cold, 4),
        "warm_s": round(warm, 4),
        "speedup": round(cold / warm, 2),
        "hits": cache.hits,
    }


def main() -> None:
    from tune3d.backbones import create_backbone

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny model and sizes")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--iters", type=int, default=5)
    args = ap.parse_args()

    name = "dinov2_vits14_tiny" if args.quick else "dinov2_vits14"
    sizes = (56, 112) if args.quick else (224, 448)
    batch = 2 if args.quick else args.batch_size
    iters = 2 if args.quick else args.iters
    bb = create_backbone(name, allow_random_init=True, device=args.device)
    common = {
        "backbone": name,
        "device": args.device if not args.device.startswith("cuda") else torch.cuda.get_device_name(),
        "precision": "fp32" if args.device == "cpu" else bb.precision,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }
    rates = {}
    for size in sizes:
        rates[size] = throughput(bb, size, batch, iters, args.device)
        rec = {"bench": "extract", "size": size, "batch": batch, "images_per_s": round(rates[size], 3)}
        print(json.dumps({**rec, **common}), flush=True)
    lo, hi = sizes
    print(
        json.dumps({"bench": "extract_ratio", f"{lo}_over_{hi}": round(rates[lo] / rates[hi], 3), **common})
    )
    n = 8 if args.quick else 64
    print(
        json.dumps({"bench": "cache", "images": n, "size": lo, **cache_speedup(bb, n, lo, batch), **common})
    )


if __name__ == "__main__":
    main()
