"""Fin3R diagnostics: a run's before/after checks (base = adapters off vs trained: monocular depth and encoder
feature norms) and loss summary, and the feature-norm analysis (the paper's Fig. 3): per-token L2 norms of the
encoder's output patch tokens, as heatmaps per image and as one "Avg" number per model, plus drift against
the base encoder.

Monocular distillation tends to grow these norms, which moves the frozen decoder's input off its training
distribution; re-normalisation LoRA is meant to keep them at the base model's level.

Outputs (under ``out_dir/diagnostics``): ``feature_norms.json`` and ``norms_<name>.png`` (one row of
heatmaps per model, shared colour scale across models) plus ``norms_all.png`` (input images on top, one
row per model).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from tune3d.fin3r.adapters import adapter_form, lora_layers
from tune3d.fin3r.data import MonoImages
from tune3d.io import write_json
from tune3d.metrics.depth import DepthMetricAccumulator
from tune3d.metrics.features import feature_drift, norm_summary, token_norms
from tune3d.viz.images import colorize, save_png, tile_images, to_uint8, upsample_nearest


def final_encoder_norm(model: Any) -> nn.Module | None:
    """The encoder's final LayerNorm (CroCo ``enc_norm``, DINOv2 ``norm``): the last LayerNorm registered
    under ``model.encoder_prefixes``; ``None`` if there is none."""
    prefixes = tuple(getattr(model, "encoder_prefixes", ()) or ())
    norms = [
        m
        for n, m in model.named_modules()
        if prefixes and n.startswith(prefixes) and isinstance(m, nn.LayerNorm)
    ]
    return norms[-1] if norms else None


@torch.no_grad()
def encoder_tokens(model: Any, images: Tensor, batch_size: int = 8, prenorm: bool = False) -> Tensor:
    """Encoder output patch tokens ``N, h*w, C`` (float32, CPU) of images ``N,3,H,W`` in [0, 1].

    ``prenorm=True`` returns the same tokens *before* the encoder's final LayerNorm (the residual stream,
    captured with a forward hook; class/register tokens dropped). After the norm a token's length is bounded
    by the norm's affine parameters (exactly ``sqrt(C)`` for a freshly initialised one), so drift shows up
    first, and much more strongly, before it.
    """
    dev = next(model.parameters()).device
    norm = final_encoder_norm(model) if prenorm else None
    if prenorm and norm is None:
        raise ValueError(f"{type(model).__name__}: no final encoder LayerNorm to read pre-norm tokens from")
    captured: list[Tensor] = []
    handle = norm.register_forward_hook(lambda m, i, o: captured.append(i[0])) if norm is not None else None
    out = []
    try:
        for s in range(0, len(images), batch_size):
            captured.clear()
            tok = model.encoder_tokens(images[s : s + batch_size].to(dev))
            if norm is not None:
                tok = captured[-1][:, -tok.shape[1] :]  # patch tokens are the last h*w
            out.append(tok.float().cpu())
    finally:
        if handle is not None:
            handle.remove()
    return torch.cat(out)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "model"


def _norm_stats(tokens: Mapping[str, Tensor], grid: tuple[int, int], base: str) -> tuple[dict, dict]:
    h, w = grid
    maps, stats = {}, {}
    for name, t in tokens.items():
        if t.ndim != 3 or t.shape[1] != h * w:
            raise ValueError(f"{name}: tokens {tuple(t.shape)} do not match a {h}x{w} patch grid")
        n = token_norms(t).reshape(len(t), h, w)
        maps[name] = n
        stats[name] = {
            "mean_norm": float(n.double().mean()),
            "summary": norm_summary(n, is_norms=True),
            "per_image_mean": [float(v) for v in n.double().flatten(1).mean(1)],
        }
        if name != base:
            stats[name]["drift"] = feature_drift(tokens[base], t)
    return maps, stats


def feature_norm_report_from_tokens(
    tokens: Mapping[str, Tensor],
    grid: tuple[int, int],
    images: Tensor | None = None,
    out_dir: str | Path | None = None,
    base: str | None = None,
    prenorm: Mapping[str, Tensor] | None = None,
) -> dict[str, Any]:
    """Norm statistics of precomputed encoder tokens ``{name: N, h*w, C}`` (same images for every entry).

    ``grid``: ``(h, w)`` patch grid; ``prenorm``: optional tokens before the final norm, same names.
    ``base``: reference entry for drift (default ``"base"`` if present, else the first). Returns
    ``{name: {"mean_norm", "summary", "per_image_mean", "drift", "prenorm": {...same...}}}``; ``drift`` is
    :func:`tune3d.metrics.features.feature_drift` against the base (absent for the base itself). With
    ``out_dir`` writes ``diagnostics/feature_norms.json``, ``norms_<name>.png``, ``norms_all.png`` and the
    ``norms_prenorm_*.png`` equivalents.
    """
    if not tokens:
        raise ValueError("feature_norm_report needs at least one model")
    base = base or ("base" if "base" in tokens else next(iter(tokens)))
    if base not in tokens:
        raise ValueError(f"base {base!r} is not one of {list(tokens)}")
    maps, report = _norm_stats(tokens, grid, base)
    pre_maps = None
    if prenorm is not None:
        if set(prenorm) != set(tokens):
            raise ValueError("prenorm tokens must have the same names as tokens")
        pre_maps, pre = _norm_stats(prenorm, grid, base)
        for name in report:
            report[name]["prenorm"] = pre[name]
    if out_dir is not None:
        d = Path(out_dir) / "diagnostics"
        d.mkdir(parents=True, exist_ok=True)
        write_json(d / "feature_norms.json", {"base": base, "grid": list(grid), "models": report})
        _save_heatmaps(maps, images, d, "norms")
        if pre_maps is not None:
            _save_heatmaps(pre_maps, images, d, "norms_prenorm")
    return report


def feature_norm_report(
    models: Mapping[str, Any],
    images: Tensor,
    out_dir: str | Path | None = None,
    base: str | None = None,
    prenorm: bool = True,
) -> dict[str, Any]:
    """Fig. 3 analysis for several models on the same images ``N,3,H,W`` in [0, 1] (H, W multiples of the
    patch size): per-token encoder norm heatmaps, the mean ("Avg") per model and drift vs ``base``.

    ``models``: name -> :class:`~tune3d.recon.ReconModel`, e.g. ``{"base": .., "plain": .., "renorm": ..}``.
    ``prenorm``: also analyse the tokens before the encoder's final norm (when every model has one).
    Returns ``{name: {"mean_norm", "summary", "per_image_mean", "drift", "prenorm"}}``; see
    :func:`feature_norm_report_from_tokens` for the files written under ``out_dir``.
    """
    patches = {int(getattr(m, "patch_size", 16)) for m in models.values()}
    if len(patches) != 1:
        raise ValueError(f"models have different patch sizes {sorted(patches)}")
    p = patches.pop()
    tokens = {name: encoder_tokens(m, images) for name, m in models.items()}
    pre = None
    if prenorm and all(final_encoder_norm(m) is not None for m in models.values()):
        pre = {name: encoder_tokens(m, images, prenorm=True) for name, m in models.items()}
    grid = (images.shape[-2] // p, images.shape[-1] // p)
    return feature_norm_report_from_tokens(tokens, grid, images, out_dir, base, pre)


def _save_heatmaps(
    norms: Mapping[str, Tensor], images: Tensor | None, d: Path, stem: str, cell: int = 128
) -> None:
    # One colour scale for every model, so the maps compare directly (as in the paper's figure).
    allv = torch.cat([n.reshape(-1) for n in norms.values()]).double().numpy()
    vmin, vmax = np.percentile(allv, [1, 99])
    if vmax - vmin < 1e-6 * max(1.0, abs(vmax)):  # flat maps (e.g. right after a fresh LayerNorm)
        vmin, vmax = vmin - 0.5, vmax + 0.5

    def size(hw: tuple[int, int]) -> tuple[int, int]:
        return cell, max(1, round(cell * hw[1] / hw[0]))

    rows = []
    if images is not None:
        rows.append(
            [
                upsample_nearest(to_uint8(im.detach().float().clamp(0, 1).cpu()), size(im.shape[-2:]))
                for im in images
            ]
        )
    for name, n in norms.items():
        tiles = [upsample_nearest(colorize(m, vmin=vmin, vmax=vmax), size(m.shape)) for m in n]
        save_png(tile_images(tiles), d / f"{stem}_{_safe(name)}.png")
        rows.append(tiles)
    ncols = max(len(r) for r in rows)
    save_png(tile_images([t for r in rows for t in r], ncols=ncols), d / f"{stem}_all.png")


# ------------------------------------------------------------------------------------ run checks


@torch.no_grad()
def mono_depth_eval(model: Any, images: Tensor, depth: Tensor, batch_size: int = 4) -> dict[str, float]:
    """Monocular depth of the per-view head vs ground truth, median-aligned per image (the model is up to
    scale): mean ``abs_rel`` and ``delta1`` over ``images`` ``N,3,H,W`` with depth ``N,H,W`` (0 = invalid)."""
    acc = DepthMetricAccumulator(align="median" if not model.metric else "none")
    dev = next(model.parameters()).device
    for s in range(0, len(images), batch_size):
        pred, _ = model.forward_mono(images[s : s + batch_size].to(dev))
        acc.update(pred.float().cpu(), depth[s : s + batch_size])
    res = acc.compute()
    return {"abs_rel": res["abs_rel"], "delta1": res["delta1"], "n_images": acc.count}


def _set_adapters(model: Any, enabled: bool) -> None:
    for layer in lora_layers(model).values():
        layer.enable_adapters(enabled)


def pick(n_total: int, n: int, seed: int) -> list[int]:
    """``n`` sorted indices out of ``n_total``, drawn with ``seed`` (all of them when ``n_total <= n``)."""
    if n_total <= n:
        return list(range(n_total))
    return sorted(np.random.default_rng(seed).choice(n_total, size=n, replace=False).tolist())


def loss_summary(history: dict[str, list[float]]) -> dict[str, Any]:
    """First/last values and means over the first/last 10% of steps for every loss term."""
    out: dict[str, Any] = {}
    for name, vals in history.items():
        v = np.asarray(vals, dtype=np.float64)
        v = v[np.isfinite(v)]
        if not len(v):
            continue
        w = max(1, len(v) // 10)
        out[name] = {
            "first": float(v[0]),
            "last": float(v[-1]),
            "first_mean": float(v[:w].mean()),
            "last_mean": float(v[-w:].mean()),
            "window": w,
        }
    return out


def depth_eval_set(
    held: MonoImages | None, mono: MonoImages, replay: Dataset, n: int, seed: int
) -> tuple[tuple[Tensor, Tensor] | None, bool]:
    """``n`` images with depth (drawn with ``seed + 1``) for the before/after monocular check, and whether
    they are held out: held-out mono frames if any, else training mono frames, else replay first views."""
    if n <= 0:
        return None, False
    for source, is_held in ((held, True), (mono, False)):
        if source is None:
            continue
        with_depth = [i for i, it in enumerate(source.items) if not isinstance(it, Path) and it.has_depth]
        if with_depth:
            picked = [source[with_depth[i]] for i in pick(len(with_depth), n, seed + 1)]
            return (
                torch.stack([x["image"] for x in picked]),
                torch.stack([x["depth"] for x in picked]),
            ), is_held
    if len(replay):
        picked = [replay[i] for i in pick(len(replay), n, seed + 1)]
        return (
            torch.stack([x["images"][0] for x in picked]),
            torch.stack([x["depth"][0] for x in picked]),
        ), False
    return None, False


def base_vs_trained(
    core: Any,
    diag_images: Tensor,
    eval_set: tuple[Tensor, Tensor] | None,
    held_out: bool,
    out: Path,
) -> dict[str, Any]:
    """Base (adapters off) vs trained: encoder feature norms (+ heatmaps) and monocular depth."""
    res: dict[str, Any] = {}
    form = adapter_form(core) or "adapted"
    dev = next(core.parameters()).device
    has_norm = final_encoder_norm(core) is not None
    images = diag_images.to(dev)
    core.eval()
    _set_adapters(core, False)
    try:
        base = encoder_tokens(core, images)
        base_pre = encoder_tokens(core, images, prenorm=True) if has_norm else None
        base_eval = mono_depth_eval(core, *eval_set) if eval_set is not None else None
    finally:
        _set_adapters(core, True)
    trained = encoder_tokens(core, images)
    trained_pre = encoder_tokens(core, images, prenorm=True) if has_norm else None
    res["feature_norms"] = feature_norm_report_from_tokens(
        {"base": base, form: trained},
        grid=(images.shape[-2] // core.patch_size, images.shape[-1] // core.patch_size),
        images=diag_images,
        out_dir=out,
        prenorm={"base": base_pre, form: trained_pre} if has_norm else None,
    )
    if eval_set is not None:
        res["mono_depth"] = {
            "base": base_eval,
            "trained": mono_depth_eval(core, *eval_set),
            "held_out": held_out,
        }
    return res
