"""Peak memory of CUT3R at 10/50/200 frames: streamed one frame at a time vs the all-frames forward.

Each (route, frames) case runs in a fresh subprocess. On CUDA the number is
``torch.cuda.max_memory_allocated`` minus the memory held after loading the model; on the CPU it is the
growth of the process's peak resident set (``ru_maxrss``) over its value after loading the model and
making the frames. Streamed outputs are moved to the CPU and discarded per frame (``--keep`` keeps them),
so the number is the model's working memory. One JSON line per case; ratios are to the first frame count.

With ``--model vggt_tiny --routes forward`` it gives VGGT's memory/time table by frame count (all frames in
one forward, as released).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def run_case(route: str, frames: int, model_name: str, size: int, device: str, keep: bool) -> dict:
    from tune3d.recon import create_model
    from tune3d.recon.streaming import stream_cut3r

    torch.manual_seed(0)
    model = create_model(model_name, device=device, allow_random_init=True)
    H = W = size
    images = torch.rand(frames, 3, H, W)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = _peak_rss_mb()
    t0 = time.perf_counter()
    with torch.no_grad():
        if route == "stream":
            kept = []
            for out in stream_cut3r(model, iter(images)):
                if keep:
                    kept.append(out)
        else:
            model(images[None].to(device))
    sec = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _peak_rss_mb()
    return {"route": route, "frames": frames, "model": model_name, "input": f"{H}x{W}", "device": device,
            "keep_outputs": keep, "peak_mb": round(peak - base, 1), "seconds": round(sec, 2)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", default="10,50,200")
    ap.add_argument("--routes", default="stream,forward")
    ap.add_argument("--model", default="cut3r_tiny")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)  # route:frames, run in this process
    args = ap.parse_args()
    if args.case:
        route, n = args.case.split(":")
        print(json.dumps(run_case(route, int(n), args.model, args.size, args.device, args.keep)))
        return
    rows = []
    for route in args.routes.split(","):
        for n in args.frames.split(","):
            cmd = [sys.executable, __file__, "--case", f"{route}:{n}", "--model", args.model,
                   "--size", str(args.size), "--device", args.device]  # fmt: skip
            cmd += ["--keep"] if args.keep else []
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    for r in rows:
        first = next(x for x in rows if x["route"] == r["route"])
        r["ratio_to_first"] = round(r["peak_mb"] / first["peak_mb"], 2) if first["peak_mb"] > 0 else None
        print(json.dumps(r))


if __name__ == "__main__":
    main()
