"""Rasterizer speed on CPU: tune3d's torch backend vs gsplat 1.5.3's own pure-PyTorch reference algorithm.

Prints one JSON line per measurement. The reference is gsplat's ``gsplat.cuda._torch_impl``: its projection
(``_quat_scale_to_covar_preci`` + ``_fully_fused_projection``), its tile offsets (``_isect_offset_encode``)
and its compositing loop ``_rasterize_to_pixels`` with gsplat's own ``accumulate``. Three pieces of it cannot
run on a CPU as shipped and are ported here, with the same outputs:

* ``_isect_tiles`` is a per-Gaussian Python loop (~5 s at 20k, ~25 s at 100k Gaussians); the timed reference
  uses :func:`ref_isect_tiles`, a vectorized copy (checked equal to gsplat's loop on a small scene first), so
  the ratios compare algorithms, not interpreter overhead. The loop's own time is printed beside them;
* ``rasterize_to_indices_in_range`` is a CUDA kernel; :func:`ref_rasterize_to_indices_in_range` evaluates each
  tile's pixels against its depth-sorted list (padded per chunk of tiles), applies the kernel's skip and
  stop rules and writes the (Gaussian, pixel) pairs in the kernel's pixel-major order by its
  count-then-prefix-sum scheme (no sort);
* ``accumulate`` calls nerfacc's CUDA ``render_weight_from_alpha`` / ``accumulate_along_rays``; a stand-in
  ``nerfacc`` module (:class:`_NerfaccCPU`) gives them in torch (segmented exclusive product in log space,
  float64 prefix sums; ``index_add`` for the sums), differentiable by autograd as in gsplat's reference.

Both sides get the same leaf tensors; one run, variants interleaved in each round, min and paired-median
ratios. ``speedup_vs_gsplat_reference`` = the smaller fwd+bwd speed-up of the 20k/120x160 and 100k/240x320
configs.

    python benchmarks/bench_rasterize.py            # 20k@120x160, 20k@240x320, 100k@240x320; 3 + 64 channels
    python benchmarks/bench_rasterize.py --quick    # tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
import types

import torch

from tune3d.splatting import rasterize
from tune3d.splatting._torch_backend import (
    ALPHA_THRESHOLD,
    MAX_ALPHA,
    TRANSMITTANCE_EPS,
    isect_tiles,
    project_gaussians,
)


def make_scene(n: int, width: int, height: int, channels: int, device: str = "cpu", seed: int = 0):
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


# ------------------------------------------------------------------------------- gsplat reference (ported)
class _NerfaccCPU(types.ModuleType):
    """The two nerfacc functions gsplat's ``accumulate`` imports, for CPU tensors sorted by ray."""

    def __init__(self) -> None:
        super().__init__("nerfacc")

    @staticmethod
    def render_weight_from_alpha(alphas, ray_indices, n_rays):
        # exclusive product of (1 - alpha) along each ray's contiguous run, in log space
        log_t = torch.log1p(-alphas).double()
        incl = torch.cumsum(log_t, 0)
        excl = incl - log_t
        start = torch.ones_like(ray_indices, dtype=torch.bool)
        start[1:] = ray_indices[1:] != ray_indices[:-1]
        first = torch.nonzero(start)[:, 0]
        seg = torch.cumsum(start.long(), 0) - 1
        trans = torch.exp(excl - excl[first][seg]).to(alphas.dtype)
        return alphas * trans, trans

    @staticmethod
    def accumulate_along_rays(weights, values, ray_indices, n_rays):
        src = weights[:, None] if values is None else weights[:, None] * values
        out = torch.zeros(n_rays, src.shape[-1], dtype=src.dtype, device=src.device)
        return out.index_add(0, ray_indices, src)


@torch.no_grad()
def ref_isect_tiles(means2d, radii, depths, tile_size: int, tile_width: int, tile_height: int):
    """gsplat ``_isect_tiles`` (``sort=True``) minus its Python loop: same ``isect_ids``, ``flatten_ids``."""
    image_dims = means2d.shape[:-2]
    N = means2d.shape[-2]
    n_img = math.prod(image_dims)
    means2d, radii, depths = (
        means2d.reshape(n_img, N, 2),
        radii.reshape(n_img, N, 2),
        depths.reshape(n_img, N),
    )
    tile_mins = torch.floor(means2d / tile_size - radii / tile_size).int()
    tile_maxs = torch.ceil(means2d / tile_size + radii / tile_size).int()
    for t, lim in ((0, tile_width), (1, tile_height)):
        tile_mins[..., t] = tile_mins[..., t].clamp(0, lim)
        tile_maxs[..., t] = tile_maxs[..., t].clamp(0, lim)
    span = (tile_maxs - tile_mins).long()
    tiles_per_gauss = span.prod(-1) * (radii > 0.0).all(-1)
    counts = tiles_per_gauss.reshape(-1)
    total = int(counts.sum())
    index = torch.repeat_interleave(torch.arange(n_img * N), counts, output_size=total)
    k = torch.arange(total) - (torch.cumsum(counts, 0) - counts)[index]
    sx = span.reshape(-1, 2)[index, 0].clamp_min(1)
    x = tile_mins.reshape(-1, 2)[index, 0].long() + k % sx
    y = tile_mins.reshape(-1, 2)[index, 1].long() + k // sx
    tile_n_bits = (tile_width * tile_height).bit_length()
    depth_id = depths.float().reshape(-1).view(torch.int32)[index].long() & 0xFFFFFFFF
    hi = ((index // N) << tile_n_bits) | (y * tile_width + x)
    isect_ids, order = torch.sort((hi << 32) | depth_id)
    return tiles_per_gauss.reshape(image_dims + (N,)).int(), isect_ids, index[order].int()


@torch.no_grad()
def ref_rasterize_to_indices_in_range(
    range_start,
    range_end,
    transmittances,
    means2d,
    conics,
    opacities,
    image_width,
    image_height,
    tile_size,
    isect_offsets,
    flatten_ids,
    chunk_elements: int = 1 << 22,
):
    """CPU port of gsplat's ``rasterize_to_indices_in_range`` CUDA kernel (same pairs, same order)."""
    image_dims = means2d.shape[:-2]
    N = means2d.shape[-2]
    n_img = math.prod(image_dims)
    tile_height, tile_width = isect_offsets.shape[-2:]
    block = tile_size * tile_size
    m2, con = means2d.reshape(-1, 2), conics.reshape(-1, 3)
    opa = opacities.reshape(-1)
    trans = transmittances.reshape(n_img, -1)
    n_isects = flatten_ids.numel()
    starts = isect_offsets.reshape(-1).long()
    ends = torch.cat([starts[1:], torch.tensor([n_isects])])
    lo = torch.minimum(starts + range_start * block, ends)
    hi = torch.minimum(starts + range_end * block, ends)
    counts = hi - lo
    order = torch.argsort(counts, descending=True)
    sorted_counts = counts[order].tolist()
    lp = torch.arange(block)
    pix_local = torch.stack([lp % tile_size, lp // tile_size], -1)
    parts = []  # per chunk: (image id, pixel id, gaussian id) of emitted pairs, in (pixel, depth) order
    i = 0
    while i < len(order) and sorted_counts[i] > 0:
        kmax = sorted_counts[i]
        n = max(1, min(len(order) - i, chunk_elements // (block * kmax)))
        tids = order[i : i + n]
        i += n
        slot = torch.arange(kmax)
        ok = slot[None] < counts[tids][:, None]
        fid = flatten_ids[torch.where(ok, lo[tids][:, None] + slot[None], 0)].long()  # [T,K]
        img, local = tids // (tile_height * tile_width), tids % (tile_height * tile_width)
        px = (local % tile_width)[:, None] * tile_size + pix_local[None, :, 0]  # [T,P]
        py = (local // tile_width)[:, None] * tile_size + pix_local[None, :, 1]
        inside = (px < image_width) & (py < image_height)
        pid = (py * image_width + px).clamp_max(image_height * image_width - 1)
        dx = m2[fid][:, None, :, 0] - (px[..., None] + 0.5)  # [T,P,K]
        dy = m2[fid][:, None, :, 1] - (py[..., None] + 0.5)
        c = con[fid][:, None]
        sigma = 0.5 * (c[..., 0] * dx * dx + c[..., 2] * dy * dy) + c[..., 1] * dx * dy
        alpha = torch.clamp_max(opa[fid][:, None] * torch.exp(-sigma), MAX_ALPHA)
        valid = (sigma >= 0) & (alpha >= ALPHA_THRESHOLD) & ok[:, None] & inside[..., None]
        alpha = torch.where(valid, alpha, 0.0)
        t0 = trans[img[:, None], pid]  # the transmittance the pixel starts this range with
        t_next = t0[..., None] * torch.cumprod(1.0 - alpha, -1)
        emit = valid & (t_next > TRANSMITTANCE_EPS)
        t_i, p_i, k_i = torch.nonzero(emit, as_tuple=True)
        parts.append((img[t_i], pid[t_i, p_i], fid[t_i, k_i] % N))
    if not parts:
        e = torch.zeros(0, dtype=torch.long)
        return e, e, e
    image_ids, pixel_ids, gs_ids = (torch.cat(p) for p in zip(*parts))
    # the kernel's output layout: per-pixel counts, prefix sum, each pixel's pairs in depth order
    key = image_ids * (image_height * image_width) + pixel_ids
    pix_counts = torch.bincount(key, minlength=n_img * image_height * image_width)
    offs = torch.cumsum(pix_counts, 0) - pix_counts
    new_run = torch.ones_like(key, dtype=torch.bool)
    new_run[1:] = key[1:] != key[:-1]  # within a chunk, a pixel's pairs are contiguous and depth-ordered
    run_start = torch.cummax(torch.where(new_run, torch.arange(len(key)), 0), 0).values
    pos = offs[key] + torch.arange(len(key)) - run_start
    out = [torch.empty_like(t) for t in (gs_ids, pixel_ids, image_ids)]
    for dst, src in zip(out, (gs_ids, pixel_ids, image_ids)):
        dst[pos] = src
    return tuple(out)


def install_reference():
    """Point gsplat's reference at the CPU ports above; return its module."""
    import gsplat.cuda._torch_impl as ti
    import gsplat.cuda._wrapper as wrapper

    sys.modules.setdefault("nerfacc", _NerfaccCPU())
    wrapper.rasterize_to_indices_in_range = ref_rasterize_to_indices_in_range
    return ti


def run_reference(ti, scene, tile_size: int = 16):
    """gsplat's reference pipeline (``packed=False``, RGB, no background) on one scene."""
    means, quats, log_scales, logit_opac, colors, viewmat, K, width, height = scene
    covars, _ = ti._quat_scale_to_covar_preci(quats, log_scales.exp(), compute_preci=False)
    radii, means2d, depths, conics, _ = ti._fully_fused_projection(means, covars, viewmat, K, width, height)
    opac = logit_opac.sigmoid()[None]
    tw, th = math.ceil(width / tile_size), math.ceil(height / tile_size)
    _, isect_ids, flatten_ids = ref_isect_tiles(means2d.detach(), radii, depths.detach(), tile_size, tw, th)
    offsets = ti._isect_offset_encode(isect_ids, 1, tw, th)
    cols = colors[None]
    out, alpha = ti._rasterize_to_pixels(
        means2d, conics, cols, opac, width, height, tile_size, offsets, flatten_ids
    )
    return out, alpha


def run_tune3d(scene, tile_size: int | None = None):
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
        tile_size=tile_size,
        backend="torch",
    )
    return out, alpha


def _timed(fn, leaves, backward: bool) -> float:
    t0 = time.perf_counter()
    if backward:
        out, alpha = fn()
        (out.mean() + alpha.mean()).backward()
        for t in leaves:
            t.grad = None
    else:
        with torch.no_grad():
            fn()
    return (time.perf_counter() - t0) * 1e3


@torch.no_grad()
def pair_counts(scene, tile_size: int) -> dict[str, int]:
    """(pixel, Gaussian) pairs: padded (what tune3d composites: its cut tile lists with chunk padding), its
    tile lists before and after the saturation cut, gsplat's reference 16x16 box lists, and contributing
    (alpha >= 1/255 before the transmittance stop). One camera."""
    from tune3d.splatting._torch_backend import DEFAULT_CHUNK_ELEMENTS, cut_saturated_lists, plan_chunks

    means, quats, log_scales, logit_opac, colors, viewmat, K, width, height = scene
    opac = logit_opac.sigmoid()
    radii, m2, depths, con, _ = project_gaussians(
        means, quats, log_scales.exp(), opac, viewmat, K, width, height
    )
    tw, th = math.ceil(width / tile_size), math.ceil(height / tile_size)
    _, fids, offs = isect_tiles(m2, radii, depths, tile_size, tw, th, con, opac[None].expand_as(depths))
    counts = torch.diff(offs.reshape(-1).long(), append=torch.tensor([fids.numel()]))
    P = tile_size * tile_size
    # the dummy-row layout of rasterize_to_pixels, then its cut of saturated lists
    pad_ids = torch.cat([fids, fids.new_full((1,), m2.shape[1])])
    rows = [torch.cat([t[0], t.new_zeros(1, *t.shape[2:])]) for t in (m2, con, opac[None])]
    cut = cut_saturated_lists(counts, offs.reshape(-1).long(), pad_ids, *rows, tile_size, tw, th)
    padded = sum(
        (e - s) * P * k
        for s, e, k in plan_chunks(sorted(cut.tolist(), reverse=True), P, DEFAULT_CHUNK_ELEMENTS)
    )
    ti = install_reference()
    covars, _ = ti._quat_scale_to_covar_preci(quats, log_scales.exp(), compute_preci=False)
    r_radii, r_m2, r_depths, r_con, _ = ti._fully_fused_projection(means, covars, viewmat, K, width, height)
    rtw, rth = math.ceil(width / 16), math.ceil(height / 16)
    _, r_ids, r_fids = ref_isect_tiles(r_m2, r_radii, r_depths, 16, rtw, rth)
    r_offs = ti._isect_offset_encode(r_ids, 1, rtw, rth)
    gs, _, _ = ref_rasterize_to_indices_in_range(
        0, 10**9, torch.ones(1, height, width), r_m2, r_con, opac[None], width, height, 16, r_offs, r_fids
    )
    return {
        "tile_size": tile_size,
        "padded_pairs": padded,
        "tile_list_pairs_after_cut": int(cut.sum()) * P,
        "tile_list_pairs": int(counts.sum()) * P,
        "reference_16px_box_pairs": r_fids.numel() * 256,
        "contributing_pairs": gs.numel(),
        "contributing_share_of_padded": round(gs.numel() / padded, 3),
    }


def check_isect_port(ti) -> bool:
    """The vectorized ``_isect_tiles`` port returns exactly what gsplat's Python loop does."""
    (means, quats, log_scales, logit_opac, colors), viewmat, K = make_scene(300, 40, 30, 3)
    with torch.no_grad():
        covars, _ = ti._quat_scale_to_covar_preci(quats, log_scales.exp(), compute_preci=False)
        radii, m2, depths, _, _ = ti._fully_fused_projection(means, covars, viewmat, K, 40, 30)
        a = ti._isect_tiles(m2, radii, depths, 16, 3, 2)
        b = ref_isect_tiles(m2, radii, depths, 16, 3, 2)
    return all(torch.equal(x.long(), y.long()) for x, y in zip(a, b))


def compare(ti, n: int, height: int, width: int, channels: int, rounds: int, env: dict) -> dict:
    leaves, viewmat, K = make_scene(n, width, height, channels)
    scene = (*leaves, viewmat, K, width, height)
    base = dict(n_gaussians=n, channels=channels, height=height, width=width, **env)

    ours = lambda: run_tune3d(scene)  # noqa: E731
    ref = lambda: run_reference(ti, scene)  # noqa: E731
    with torch.no_grad():
        a_out, a_alpha = ours()
        b_out, b_alpha = ref()
    max_diff = max((a_out - b_out).abs().max().item(), (a_alpha - b_alpha).abs().max().item())
    # gradients agree too (same loss on both sides)
    grads = []
    for fn in (ours, ref):
        out, alpha = fn()
        (out.mean() + alpha.mean()).backward()
        grads.append([t.grad.clone() for t in leaves])
        for t in leaves:
            t.grad = None
    grad_rel = max(((g1 - g2).abs().max() / g2.abs().max().clamp_min(1e-30)).item() for g1, g2 in zip(*grads))
    print(json.dumps({**base, **pair_counts(scene, tile_size=_default_tile())}), flush=True)

    times: dict[str, list[float]] = {k: [] for k in ("ours_fwd", "ref_fwd", "ours_fb", "ref_fb")}
    for r in range(rounds):
        pairs = [("ours", ours), ("ref", ref)]
        if r % 2:
            pairs.reverse()
        for name, fn in pairs:
            times[f"{name}_fwd"].append(_timed(fn, leaves, backward=False))
            times[f"{name}_fb"].append(_timed(fn, leaves, backward=True))
    # gsplat's own _isect_tiles is a per-Gaussian Python loop; timed once, reported beside (not in) the ratios
    with torch.no_grad():
        covars, _ = ti._quat_scale_to_covar_preci(leaves[1], leaves[2].exp(), compute_preci=False)
        radii, m2, depths, _, _ = ti._fully_fused_projection(leaves[0], covars, viewmat, K, width, height)
        t0 = time.perf_counter()
        ti._isect_tiles(m2, radii, depths, 16, math.ceil(width / 16), math.ceil(height / 16))
        loop_ms = (time.perf_counter() - t0) * 1e3
    med = lambda num, den: statistics.median(a / b for a, b in zip(times[num], times[den]))  # noqa: E731
    row = {
        **base,
        "rounds": rounds,
        "ms_tune3d_fwd": round(min(times["ours_fwd"]), 1),
        "ms_reference_fwd": round(min(times["ref_fwd"]), 1),
        "ms_tune3d_fwd_bwd": round(min(times["ours_fb"]), 1),
        "ms_reference_fwd_bwd": round(min(times["ref_fb"]), 1),
        "speedup_fwd_min": round(min(times["ref_fwd"]) / min(times["ours_fwd"]), 2),
        "speedup_fwd_paired_median": round(med("ref_fwd", "ours_fwd"), 2),
        "speedup_fwd_bwd_min": round(min(times["ref_fb"]) / min(times["ours_fb"]), 2),
        "speedup_fwd_bwd_paired_median": round(med("ref_fb", "ours_fb"), 2),
        "tune3d_fwd_bwd_over_fwd": round(min(times["ours_fb"]) / min(times["ours_fwd"]), 2),
        "ms_gsplat_isect_tiles_python_loop": round(loop_ms, 1),
        "speedup_fwd_bwd_if_reference_uses_its_python_isect": round(
            (min(times["ref_fb"]) + loop_ms) / min(times["ours_fb"]), 2
        ),
        "max_abs_diff": max_diff,
        "grad_max_rel_diff": grad_rel,
    }
    print(json.dumps(row), flush=True)
    return row


def _default_tile() -> int:
    from tune3d.splatting._torch_backend import DEFAULT_TILE_SIZE

    return DEFAULT_TILE_SIZE


def tile_sweep(n: int, height: int, width: int, channels: int, sizes: list[int], rounds: int, env: dict):
    """tune3d fwd+bwd per tile size, interleaved (how the default tile size was chosen)."""
    leaves, viewmat, K = make_scene(n, width, height, channels)
    scene = (*leaves, viewmat, K, width, height)
    times = {ts: [] for ts in sizes}
    for ts in sizes:
        _timed(lambda: run_tune3d(scene, ts), leaves, backward=True)  # noqa: B023 (warm-up)
    for _ in range(rounds):
        for ts in sizes:
            times[ts].append(_timed(lambda: run_tune3d(scene, ts), leaves, backward=True))  # noqa: B023
    best = min(sizes, key=lambda ts: min(times[ts]))
    row = {
        "tile_sweep": True,
        "n_gaussians": n,
        "channels": channels,
        "height": height,
        "width": width,
        **env,
    }
    row.update({f"ms_fwd_bwd_tile{ts}": round(min(times[ts]), 1) for ts in sizes})
    print(json.dumps({**row, "fastest_tile_size": best}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per config")
    ap.add_argument("--tile-sizes", default="4,8,16", help="tune3d tile sizes to sweep ('' = no sweep)")
    ap.add_argument(
        "--configs",
        default=None,
        help="N@HxW,... (default 20000@120x160,20000@240x320,100000@240x320; --quick: 2000@30x40,5000@60x80)",
    )
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    channels = 3 + 8 if args.quick else 3 + 64
    spec = args.configs or (
        "2000@30x40,5000@60x80" if args.quick else "20000@120x160,20000@240x320,100000@240x320"
    )
    configs = []
    for item in spec.split(","):
        n, hw = item.split("@")
        h, w = hw.lower().split("x")
        configs.append((int(n), int(h), int(w)))
    rounds = 1 if args.quick else args.rounds
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.processor()}
    import gsplat

    env["gsplat"] = gsplat.__version__
    ti = install_reference()
    print(json.dumps({"isect_port_equals_gsplat_loop": check_isect_port(ti), **env}), flush=True)

    rows = {}
    for n, h, w in configs:
        rows[(n, h, w)] = compare(ti, n, h, w, channels, rounds, env)
    sizes = [int(s) for s in args.tile_sizes.split(",") if s]
    if sizes:
        for n, h, w in configs:
            tile_sweep(n, h, w, channels, sizes, rounds, env)

    keyed = [rows[k] for k in ((20000, 120, 160), (100000, 240, 320)) if k in rows] or list(rows.values())
    print(
        json.dumps(
            {
                "speedup_vs_gsplat_reference": min(r["speedup_fwd_bwd_min"] for r in keyed),
                "speedup_vs_gsplat_reference_paired_median": min(
                    r["speedup_fwd_bwd_paired_median"] for r in keyed
                ),
                "configs": [f"{r['n_gaussians']}@{r['height']}x{r['width']}" for r in keyed],
                "max_abs_diff": max(r["max_abs_diff"] for r in rows.values()),
                "max_fwd_bwd_over_fwd": max(r["tune3d_fwd_bwd_over_fwd"] for r in rows.values()),
                **env,
            }  # fmt: skip
        ),
        flush=True,
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
