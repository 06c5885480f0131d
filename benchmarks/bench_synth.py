"""Synthetic room rendering throughput (views/s) at 240x320, one JSON line per measurement.

python benchmarks/bench_synth.py            # 100 views at 240x320 (the 30 s target on 2 cores)
python benchmarks/bench_synth.py --quick    # 6 views at 60x80
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--views", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from tune3d.data.synth import camera_path, generate_room, make_K, render_view

    H, W, V = (60, 80, 6) if args.quick else (240, 320, 100)
    V = args.views or V
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    room = generate_room(args.seed)
    poses = camera_path(room, V, rng)
    t_layout = time.perf_counter() - t0
    K = make_K(H, W, 68.0)
    t0 = time.perf_counter()
    for c2w in poses:
        render_view(room, c2w, K, H, W)
    dt = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "bench": "synth_render",
                "height": H,
                "width": W,
                "views": V,
                "seconds": round(dt, 3),
                "views_per_s": round(V / dt, 3),
                "layout_s": round(t_layout, 4),
                "prims": len(room.prims),
                "threads": os.environ.get("OMP_NUM_THREADS"),
                "cpu": platform.processor() or platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
