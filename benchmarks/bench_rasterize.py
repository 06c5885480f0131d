"""Rasterizer speed: tiled torch backend vs dense all-pairs evaluation (and gsplat on CUDA), forward+backward.

Prints one JSON line per measurement. The dense baseline below evaluates every Gaussian at every pixel with
the same kernel semantics (alpha clamp, 1/255 skip, T <= 1e-4 stop), chunked over pixels and checkpointed so
it fits in memory; it is what a straightforward CPU implementation without tiling would do.

    python benchmarks/bench_rasterize.py            # 20k Gaussians, 3 + 64 channels, 120x160 and 240x320
    python benchmarks/bench_rasterize.py --quick    # tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import time

import torch
from torch.utils.checkpoint import checkpoint

from tune3d.splatting import rasterize
from tune3d.splatting._torch_backend import ALPHA_THRESHOLD, MAX_ALPHA, TRANSMITTANCE_EPS, project_gaussians


def make_scene(n: int, width: int, height: int, channels: int, device: str, seed: int = 0):
    """Gaussians filling a 4x3x4 m box 2-6 m in front of the camera, roughly kNN-sized (like a fresh init)."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor([-2.0, -1.5, 2.0]), torch.tensor([2.0, 1.5, 6.0])
    means = lo + (hi - lo) * torch.rand(n, 3, generator=g)
    spacing = (48.0 / n) ** (1 / 3)
    log_scales = math.log(0.4 * spacing) + 0.3 * torch.randn(n, 3, generator=g)
    quats = torch.randn(n, 4, generator=g)
    logit_opac = torch.full((n,), 0.0)
    colors = torch.rand(n, channels, generator=g)
    f = 0.8 * width
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])[None]
    viewmat = torch.eye(4)[None]
    leaves = [t.to(device).requires_grad_() for t in (means, quats, log_scales, logit_opac, colors)]
    return leaves, viewmat.to(device), K.to(device)


def _dense_chunk(px, m2, con, opa, col):
    dx = m2[None, :, 0] - px[:, None, 0]  # [P,N]
    dy = m2[None, :, 1] - px[:, None, 1]
    sigma = 0.5 * (con[None, :, 0] * dx * dx + con[None, :, 2] * dy * dy) + con[None, :, 1] * dx * dy
    alpha = torch.clamp_max(opa[None] * torch.exp(-sigma), MAX_ALPHA)
    valid = (sigma >= 0) & (alpha >= ALPHA_THRESHOLD)
    alpha = torch.where(valid, alpha, 0.0)
    t_incl = torch.cumprod(1 - alpha, -1)
    alpha = torch.where(valid & (t_incl > TRANSMITTANCE_EPS), alpha, 0.0)
    t_excl = torch.cat([torch.ones_like(t_incl[:, :1]), t_incl[:, :-1]], -1)
    w = alpha * t_excl
    return w @ col, torch.prod(1 - alpha, -1)


def dense_rasterize(means, quats, scales, opac, colors, viewmat, K, width, height, pixels_per_chunk=1024):
    """All-pairs baseline: every (depth-sorted, non-culled) Gaussian evaluated at every pixel."""
    radii, m2, depths, con, _ = project_gaussians(means, quats, scales, opac, viewmat, K, width, height)
    keep = (radii[0] > 0).all(-1)
    idx = torch.nonzero(keep)[:, 0]
    idx = idx[torch.argsort(depths[0, idx].detach(), stable=True)]
    m2, con, opa, col = m2[0, idx], con[0, idx], opac[idx], colors[idx]
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    px = torch.stack([xs, ys], -1).reshape(-1, 2).to(means) + 0.5
    outs, ts = [], []
    for s in range(0, px.shape[0], pixels_per_chunk):
        o, t = checkpoint(_dense_chunk, px[s : s + pixels_per_chunk], m2, con, opa, col, use_reentrant=False)
        outs.append(o)
        ts.append(t)
    return torch.cat(outs).reshape(height, width, -1), 1 - torch.cat(ts).reshape(height, width, 1)


def run_tiled(scene, backend: str = "torch"):
    means, quats, log_scales, logit_opac, colors, viewmat, K, width, height = scene
    out, alpha, _ = rasterize(
        means,
        quats,
        log_scales.exp(),
        logit_opac.sigmoid(),
        colors,
        viewmat,
        K,
        width,
        height,
        backend=backend,
    )
    return out, alpha


def run_dense(scene):
    means, quats, log_scales, logit_opac, colors, viewmat, K, width, height = scene
    return dense_rasterize(
        means, quats, log_scales.exp(), logit_opac.sigmoid(), colors, viewmat, K, width, height
    )


def time_it(fn, leaves, iters: int, warmup: int, device: str) -> float:
    def step():
        out, alpha = fn()
        (out.mean() + alpha.mean()).backward()
        for t in leaves:
            t.grad = None

    for _ in range(warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--skip-dense", action="store_true", help="skip the slow all-pairs baseline")
    args = ap.parse_args()
    n, channels = (2000, 3 + 8) if args.quick else (20000, 3 + 64)
    sizes = [(30, 40), (60, 80)] if args.quick else [(120, 160), (240, 320)]
    iters = 1 if args.quick else args.iters
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.processor()}

    for device in devices:
        for height, width in sizes:
            leaves, viewmat, K = make_scene(n, width, height, channels, device)
            means, quats, log_scales, logit_opac, colors = leaves

            scene = (means, quats, log_scales, logit_opac, colors, viewmat, K, width, height)
            tiled = functools.partial(run_tiled, scene)
            dense = functools.partial(run_dense, scene)

            with torch.no_grad():  # the two must agree before their speed is compared
                a, b = tiled()[0][0], dense()[0]
                max_diff = (a - b).abs().max().item()
            base = dict(device=device, n_gaussians=n, channels=channels, height=height, width=width, **env)
            ms_tiled = time_it(tiled, leaves, iters, 1, device)
            print(
                json.dumps({**base, "variant": "torch_tiled", "ms_fwd_bwd": round(ms_tiled, 2)}), flush=True
            )
            if not args.skip_dense:
                ms_dense = time_it(dense, leaves, iters if args.quick else 1, 0, device)
                print(json.dumps({**base, "variant": "dense_all_pairs", "ms_fwd_bwd": round(ms_dense, 2)}))
                print(
                    json.dumps(
                        {
                            **base,
                            "ratio": "dense/torch_tiled",
                            "speedup": round(ms_dense / ms_tiled, 2),
                            "max_abs_diff": max_diff,
                        }  # fmt: skip
                    ),
                    flush=True,
                )
            if device == "cuda":
                from tune3d.splatting._gsplat_backend import gsplat_status

                if gsplat_status()[0]:
                    ms_g = time_it(functools.partial(run_tiled, scene, "gsplat"), leaves, iters, 1, device)
                    print(json.dumps({**base, "variant": "gsplat", "ms_fwd_bwd": round(ms_g, 2)}))
                    print(
                        json.dumps(
                            {**base, "ratio": "torch_tiled/gsplat", "slowdown": round(ms_tiled / ms_g, 2)}
                        )
                    )

    # Scene storage: 3DGS params (59 floats, SH degree 3) + latent D=64 + decoder vs full-width features.
    for n_g in (100_000, 1_000_000):
        for width in (384, 768):
            latent = n_g * (59 + 64) * 4 + 64 * width * 9 * 4
            full = n_g * (59 + width) * 4
            print(
                json.dumps(
                    {
                        "memory": "scene_params",
                        "n_gaussians": n_g,
                        "feature_width": width,
                        "latent64_bytes": latent,
                        "full_width_bytes": full,
                        "ratio": round(full / latent, 2),
                    }  # fmt: skip
                )
            )


if __name__ == "__main__":
    main()
