"""Forward time per view of the reconstruction models (one JSON line per measurement).

Tiny models at their test sizes, and the ViT-L encoders of the released models at 224 (encoder only:
DUSt3R/MASt3R/CUT3R share the CroCo ViT-L/16; VGGT's is DINOv2 ViT-L/14, 224 -> 16x16 patches).
``--quick`` uses one repetition; ``--skip-vitl`` leaves out the ViT-L encoders (their random init of the full
released models needs ~5 GB RAM and a minute on CPU). Ratios are relative to dust3r_tiny.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def _time(fn, reps: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-vitl", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    from tune3d.recon import create_model

    reps = 1 if args.quick else 5
    views = 2
    rows = []
    cases = [
        ("dust3r_tiny", (64, 96)),
        ("mast3r_tiny", (64, 96)),
        ("cut3r_tiny", (64, 96)),
        ("vggt_tiny", (56, 84)),
    ]
    for name, (H, W) in cases:
        m = create_model(name, device=args.device, allow_random_init=True)
        x = torch.rand(1, views, 3, H, W, device=args.device)
        sec = _time(lambda m=m, x=x: m(x), reps) / views
        rows.append({"model": name, "input": f"{H}x{W}", "views": views, "ms_per_view": 1e3 * sec})
    if not args.skip_vitl:
        for name in ("dust3r_vitl_512_dpt", "vggt_1b"):
            m = create_model(name, device=args.device, allow_random_init=True)
            H = W = 224
            x = torch.rand(views, 3, H, W, device=args.device)
            sec = _time(lambda m=m, x=x: m.encoder_tokens(x), reps) / views
            rows.append(
                {"model": f"{name}:encoder", "input": f"{H}x{W}", "views": views, "ms_per_view": 1e3 * sec}
            )
    base = rows[0]["ms_per_view"]
    for r in rows:
        r.update(device=args.device, ratio_vs_dust3r_tiny=r["ms_per_view"] / base)
        print(json.dumps(r))


if __name__ == "__main__":
    main()
