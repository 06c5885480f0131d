"""FiT3D stage I: lift a 2D backbone's features of one scene into feature Gaussians.

Per iteration one random training view is rendered and the loss is
``(1 - l) L1(rgb) + l (1 - SSIM(rgb)) + w_f L1(decoder(latent), up(F_2D))`` with ``l = 0.2``, ``w_f = 1``,
where ``up(F_2D)`` are the backbone's patch features of that view (computed once, through the feature cache)
bilinearly upsampled to the render size. The colour loss moves every Gaussian parameter except the latent
features; the feature loss moves only the latent features and the decoder (``render_rgb_and_features``).

The schedule is the 3DGS/FiT3D one (30k iterations) scaled by ``iters / 30000``; densification, pruning and
opacity resets are gsplat's ``DefaultStrategy`` on per-key Adam optimizers. The run is resumable:
checkpoints hold the whole parameter dict (its size changes with densification), every optimizer, the
strategy state and the step, and each step's randomness comes from ``step_generator(seed, step)``.

Outputs in ``out_dir``: ``config.yaml`` (first), ``gaussians.safetensors``, ``decoder.safetensors``,
``point_cloud.ply``, ``renders/*.png``, ``metrics.jsonl`` and ``metrics.json`` (last: marks the scene done).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from tune3d.backbones import extract_features, open_cache
from tune3d.data import parse_frame_range, scene_point_cloud
from tune3d.engine import CheckpointManager, RunLogger, resolve_device, step_generator
from tune3d.engine.runfolder import RunFolder, plain
from tune3d.errors import Tune3DError
from tune3d.io import read_json, write_json, write_yaml
from tune3d.splatting.gaussians import PARAM_KEYS, FeatureGaussians
from tune3d.splatting.lift_format import (
    CONFIG_FILE,
    METRICS_FILE,
    NON_RESULT_FIELDS,
    LiftConfig,
    config_record,
    split_views,
)
from tune3d.splatting.losses import feature_agreement, l1_loss, photometric_loss, psnr, ssim_map
from tune3d.splatting.rasterize import resolve_backend
from tune3d.splatting.render import render_rgb_and_features
from tune3d.splatting.strategy import make_optimizers, make_strategy, means_lr
from tune3d.viz import colorize_depth, fit_pca, save_png, tile_images

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- views
@dataclass
class View:
    """One posed frame at render resolution: ``image [3,H,W]`` in [0,1], ``viewmat [4,4]``, ``K [3,3]``."""

    index: int
    name: str
    image: Tensor
    viewmat: Tensor
    K: Tensor


def feature_input_size(height: int, width: int, patch_size: int, short_side: int = 224) -> tuple[int, int]:
    """Default backbone input for a ``height x width`` render: scaled up (never down) so the short side is
    about ``short_side`` pixels, each side rounded to the nearest multiple of the patch size."""
    s = max(1.0, short_side / min(height, width))
    return tuple(max(1, round(v * s / patch_size)) * patch_size for v in (height, width))  # type: ignore[return-value]


def camera_extent(viewmats: Tensor) -> float:
    """3DGS scene extent: 1.1 x the largest distance of a camera centre from their mean (>= 1e-3)."""
    centres = torch.linalg.inv(viewmats.double())[:, :3, 3]
    radius = (centres - centres.mean(0)).norm(dim=-1).max().item() if len(centres) > 1 else 0.0
    return max(1.1 * radius, 1e-3)


def load_views(
    scene, positions: list[int], resolution: tuple[int, int] | None, device: torch.device
) -> list[View]:
    """Frames of ``scene`` at render resolution (``None`` = their own size; all frames must then agree)."""
    views = []
    for i in positions:
        f = scene[i]
        if resolution is not None:
            f = f.resized(*resolution)
        img = torch.from_numpy(np.ascontiguousarray(f.image())).permute(2, 0, 1).float().div(255.0)
        views.append(
            View(
                index=i,
                name=f.name,
                image=img.to(device),
                viewmat=torch.from_numpy(f.viewmat).float().to(device),
                K=torch.from_numpy(f.K).float().to(device),
            )
        )
    sizes = {tuple(v.image.shape[-2:]) for v in views}
    if len(sizes) > 1:
        raise Tune3DError(
            f"{scene.path or scene.name}: frames differ in size {sorted(sizes)}; pass a render resolution"
        )
    return views


def compute_target_features(
    backbone, scene, positions: list[int], size: tuple[int, int], cache_dir: str | None
) -> list[Tensor]:
    """Last-layer, final-norm patch features ``[C,h,w]`` (CPU) of the frames at backbone input ``size``.

    Each frame's full-resolution image is resized once to ``size`` (a patch multiple) by the extractor; with
    ``cache_dir`` the features go through the backbone's feature cache (computed once across runs).
    """
    opts = {"resolution": size, "layers": None, "norm": True, "resize": "resize"}
    cache = open_cache(cache_dir, backbone, **opts) if cache_dir else None
    images = (scene[i].image() for i in positions)
    return [d["patch"].float() for d in extract_features(backbone, images, **opts, batch_size=8, cache=cache)]


def initial_point_cloud(
    scene, train_positions: list[int], cfg: LiftConfig
) -> tuple[np.ndarray, np.ndarray, str]:
    """Init points: the scene's own cloud (synthetic / COLMAP) or depth back-projection of training frames;
    at most ``cfg.init_points`` (seeded random subset). Returns ``(xyz, rgb uint8, source)``."""
    if scene.points is not None and len(scene.points) > 0:
        xyz, rgb = scene_point_cloud(scene)
        source = "scene"
    elif scene.has_depth:
        train_scene = scene.subset(train_positions)
        xyz, rgb = scene_point_cloud(
            train_scene,
            max_points=cfg.init_points,
            stride=cfg.init_depth_stride,
            num_frames=cfg.init_depth_frames,
            seed=cfg.seed,
            use_stored=False,
        )
        source = "depth"
    else:
        raise Tune3DError(
            f"{scene.path or scene.name}: no point cloud to initialise from (no stored points, no depth); "
            "run COLMAP or provide RGB-D frames"
        )
    xyz, rgb = np.asarray(xyz, np.float32), np.asarray(rgb, np.uint8)
    if len(xyz) > cfg.init_points:
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(xyz), cfg.init_points, replace=False))
        xyz, rgb = xyz[keep], rgb[keep]
    if len(xyz) == 0:
        raise Tune3DError(f"{scene.path or scene.name}: the initial point cloud is empty")
    return xyz, rgb, source


# ----------------------------------------------------------------------------------------------- state
@contextlib.contextmanager
def _seeded(seed: int, step: int, device: torch.device):
    """Seed the global RNG (gsplat's split samples with it) from (seed, step), restoring it afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        g = step_generator(seed, step, rank=1)  # rank 1: a stream apart from the view sampling
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
        yield


def _checkpoint_payload(gaussians: FeatureGaussians, opts: dict, strategy_state: dict) -> tuple[dict, dict]:
    tensors = {f"params.{k}": v.detach() for k, v in gaussians.params.items()}
    tensors["decoder.weight"] = gaussians.decoder.weight.detach()
    optim = {
        "optimizers": {k: o.state_dict() for k, o in opts.items()},
        "strategy": {k: v for k, v in strategy_state.items()},
    }
    return tensors, optim


def _restore(tensors: dict, optim: dict, cfg: LiftConfig, width: int, device: torch.device, extent: float):
    params = {k: tensors[f"params.{k}"] for k in PARAM_KEYS}
    gaussians = FeatureGaussians(params, sh_degree=cfg.sh_degree, feature_width=width).to(device)
    with torch.no_grad():
        gaussians.decoder.weight.copy_(tensors["decoder.weight"])
    opts = make_optimizers(gaussians, cfg, extent)
    for k, o in opts.items():
        o.load_state_dict(optim["optimizers"][k])
    state = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in optim["strategy"].items()}
    return gaussians, opts, state


# ----------------------------------------------------------------------------------------------- loop
def lift_losses(
    gaussians: FeatureGaussians,
    view: View,
    target: Tensor,
    cfg: LiftConfig,
    sh_degree: int,
    backend: str,
) -> tuple[dict[str, Tensor], Any]:
    """Render ``view`` and return ``{"rgb", "feature", "total"}`` losses and the render.

    ``target``: the view's 2D features ``[C,h,w]``, upsampled here (bilinear) to the render size.
    """
    H, W = view.image.shape[-2:]
    out = render_rgb_and_features(
        gaussians, view.viewmat, view.K, W, H, backend=backend, sh_degree=sh_degree, tile_size=cfg.tile_size
    )
    rgb_loss = photometric_loss(out.rgb, view.image[None], cfg.lambda_ssim)
    up = F.interpolate(target[None], size=(H, W), mode="bilinear", align_corners=False)
    feat_loss = l1_loss(gaussians.decode(out.latent), up)
    total = rgb_loss + cfg.lambda_feature * feat_loss
    return {"rgb": rgb_loss, "feature": feat_loss, "total": total}, out


@torch.no_grad()
def evaluate(
    gaussians: FeatureGaussians,
    views: list[View],
    targets: list[Tensor],
    backend: str,
    sh_degree: int,
    tile_size: int | None = None,
) -> dict[str, float]:
    """Mean over ``views`` of PSNR, SSIM, feature L1 and per-pixel feature cosine (at render size)."""
    acc: dict[str, list[float]] = {"psnr": [], "ssim": [], "feature_l1": [], "feature_cosine": []}
    for view, target in zip(views, targets):
        H, W = view.image.shape[-2:]
        out = render_rgb_and_features(
            gaussians, view.viewmat, view.K, W, H, backend=backend, sh_degree=sh_degree, tile_size=tile_size
        )
        rgb = out.rgb.clamp(0, 1)
        acc["psnr"].append(psnr(rgb, view.image[None]).item())
        acc["ssim"].append(ssim_map(rgb, view.image[None]).mean().item())
        up = F.interpolate(target[None].to(rgb), size=(H, W), mode="bilinear", align_corners=False)
        fa = feature_agreement(gaussians.decode(out.latent), up)
        acc["feature_l1"].append(fa["feature_l1"].item())
        acc["feature_cosine"].append(fa["feature_cosine"].item())
    return {k: float(np.mean(v)) if v else float("nan") for k, v in acc.items()}


@torch.no_grad()
def save_renders(
    gaussians: FeatureGaussians,
    views: list[View],
    targets: list[Tensor],
    out_dir: Path,
    backend: str,
    sh_degree: int,
) -> None:
    """``renders/<name>_rgb.png`` (GT | render), ``_depth.png`` (GT-free expected depth, turbo) and
    ``_features.png`` (2D features | rendered features, one PCA fitted on both)."""
    for view, target in zip(views, targets):
        H, W = view.image.shape[-2:]
        out = render_rgb_and_features(
            gaussians, view.viewmat, view.K, W, H, backend=backend, sh_degree=sh_degree
        )
        stem = out_dir / "renders" / Path(view.name).stem
        save_png(tile_images([view.image, out.rgb[0].clamp(0, 1)]), f"{stem}_rgb.png")
        depth = torch.where(out.alpha[0, 0] > 0.5, out.depth[0, 0], torch.zeros_like(out.depth[0, 0]))
        save_png(colorize_depth(depth), f"{stem}_depth.png")
        up = F.interpolate(target[None].to(out.rgb), size=(H, W), mode="bilinear", align_corners=False)
        rendered = gaussians.decode(out.latent)
        pca = fit_pca([up, rendered])
        save_png(tile_images([*pca.to_images(up), *pca.to_images(rendered)]), f"{stem}_features.png")


# The refusal text for a folder that holds another lift (a RunFolder.refusal template).
REFUSAL = "{out}: holds a lift with different settings (changed: {changed}); use another --out or --overwrite"


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    lift = {k: v for k, v in record.get("lift", {}).items() if k not in NON_RESULT_FIELDS}
    scene = record.get("scene")
    if isinstance(scene, dict) and "fingerprint" in scene:  # the content, not where it lives, identifies it
        scene = {k: v for k, v in scene.items() if k != "path"}
    return {"scene": scene, "backbone": record.get("backbone"), "lift": lift}


def changed_settings(old: dict[str, Any], record: dict[str, Any]) -> list[str]:
    """What differs between ``old`` (a lift's ``config.yaml``) and ``record``: ``scene/backbone`` first,
    then the changed lift fields (run-only fields such as ``device`` never count). Lifts recorded before
    scene fingerprints existed are matched on the scene's name and frame count."""
    a, b = _comparable(old), _comparable(plain(record))
    if isinstance(a["scene"], dict) and "fingerprint" not in a["scene"] and isinstance(b["scene"], dict):
        a["scene"] = {k: a["scene"].get(k) for k in ("name", "frames")}
        b["scene"] = {k: b["scene"].get(k) for k in ("name", "frames")}
    changed = sorted(k for k in a["lift"].keys() | b["lift"].keys() if a["lift"].get(k) != b["lift"].get(k))
    if a["scene"] != b["scene"] or a["backbone"] != b["backbone"]:
        changed = ["scene/backbone", *changed]
    return changed


def run_folder(out_dir: str | os.PathLike) -> RunFolder:
    """``out_dir`` as a lift's :class:`~tune3d.engine.RunFolder` (compared by :func:`changed_settings`)."""
    return RunFolder(out_dir, config_file=CONFIG_FILE, compare=changed_settings, refusal=REFUSAL)


def is_finished(out_dir: str | os.PathLike, record: dict[str, Any]) -> bool:
    """True when ``out_dir`` holds a completed lift (``metrics.json``) made with the same settings."""
    return run_folder(out_dir).is_finished(record, finished_file=METRICS_FILE)


def _clear(out_dir: Path) -> None:
    """``--overwrite``: remove a previous lift's outputs (other files in the folder stay)."""
    for name in ("checkpoints", "renders", METRICS_FILE, "metrics.jsonl", CONFIG_FILE):
        p = out_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def lift_scene(
    scene,
    backbone,
    cfg: LiftConfig,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress_position: int = 0,
) -> dict[str, Any]:
    """Lift ``backbone``'s features of ``scene`` into feature Gaussians (FiT3D stage I); return the metrics.

    ``scene``: a :class:`tune3d.data.Scene`; ``backbone``: a :class:`tune3d.backbones.Backbone` (frozen).
    A finished ``out_dir`` with the same settings is skipped (its metrics are returned); an interrupted one
    resumes from its last checkpoint; one with other settings is an error unless ``overwrite``.
    Metrics (held-out views; training views when ``holdout_every == 0``): ``psnr``, ``ssim``, ``feature_l1``,
    ``feature_cosine`` and the same at initialisation as ``initial_*``.
    """
    t_start = time.time()
    run = run_folder(out_dir)  # a file or read-only --out fails here, before any work
    out_dir = run.path
    if cfg.frames:
        scene = scene.subset(parse_frame_range(cfg.frames, len(scene)))
    record = config_record(cfg, scene, backbone)
    if not overwrite and run.is_finished(record, finished_file=METRICS_FILE):
        logger.info("%s: already lifted, skipping", out_dir)
        return read_json(out_dir / METRICS_FILE)
    if overwrite and out_dir.exists():
        _clear(out_dir)
    run.check_resume(record)
    run.prepare()  # also drops temp files and checkpoint folders a killed run left
    write_yaml(out_dir / CONFIG_FILE, record)

    device = resolve_device(cfg.device)
    backend = resolve_backend(cfg.backend, device)
    train_pos, held_pos = split_views(len(scene), cfg.holdout_every)
    eval_pos = held_pos or train_pos
    if cfg.max_eval_views and len(eval_pos) > cfg.max_eval_views:
        # Scoring renders every view twice (before and after); an even subset keeps that a small share of
        # the run. Views left out are still never trained on.
        pick = np.linspace(0, len(eval_pos) - 1, cfg.max_eval_views).round().astype(int)
        eval_pos = [eval_pos[i] for i in pick]
    train_views = load_views(scene, train_pos, cfg.resolution, device)
    eval_views = load_views(scene, eval_pos, cfg.resolution, device) if held_pos else train_views
    H, W = train_views[0].image.shape[-2:]
    fsize = cfg.feature_resolution or feature_input_size(H, W, backbone.patch_size)
    backbone = backbone.to(device).eval()
    train_targets = [
        t.to(device) for t in compute_target_features(backbone, scene, train_pos, fsize, cfg.feature_cache)
    ]
    eval_targets = (
        [t.to(device) for t in compute_target_features(backbone, scene, eval_pos, fsize, cfg.feature_cache)]
        if held_pos
        else train_targets
    )
    extent = camera_extent(torch.stack([v.viewmat for v in train_views]).cpu())
    strategy = make_strategy(cfg)
    sh_up_every = cfg.scaled(cfg.sh_up_every)

    ckpt = CheckpointManager(out_dir, keep=1)
    loaded = ckpt.load()
    if loaded is not None:
        tensors, optim, state = loaded
        gaussians, opts, strategy_state = _restore(tensors, optim, cfg, backbone.width, device, extent)
        start, initial, init_source = int(state["step"]), state["initial"], state["init_source"]
        logger.info("%s: resuming at step %d (%d Gaussians)", out_dir, start, len(gaussians))
    else:
        xyz, rgb, init_source = initial_point_cloud(scene, train_pos, cfg)
        torch.manual_seed(cfg.seed)  # the decoder's initial weights
        gaussians = FeatureGaussians.from_points(
            xyz,
            rgb,
            sh_degree=cfg.sh_degree,
            feature_dim=cfg.latent_dim,
            feature_width=backbone.width,
            init_opacity=cfg.init_opacity,
        ).to(device)
        opts = make_optimizers(gaussians, cfg, extent)
        strategy_state = strategy.initialize_state(scene_scale=extent)
        initial = evaluate(gaussians, eval_views, eval_targets, backend, 0, cfg.tile_size)
        start = 0
    strategy.check_sanity(gaussians.params, {k: opts[k] for k in PARAM_KEYS})
    run_log = RunLogger(out_dir, tensorboard=False, resume_step=start if loaded is not None else None)

    bar = tqdm(
        range(start, cfg.iters),
        initial=start,
        total=cfg.iters,
        desc=f"lift {scene.name}",
        unit="it",
        file=sys.stderr,
        position=progress_position,
        disable=not cfg.progress,
        dynamic_ncols=True,
        mininterval=1.0,
    )
    step = start
    for step in bar:
        sh_degree = min(step // sh_up_every, cfg.sh_degree)
        g = step_generator(cfg.seed, step)
        vi = int(torch.randint(len(train_views), (1,), generator=g))
        losses, out = lift_losses(gaussians, train_views[vi], train_targets[vi], cfg, sh_degree, backend)
        strategy.step_pre_backward(gaussians.params, opts, strategy_state, step, out.info)
        losses["total"].backward()
        opts["means"].param_groups[0]["lr"] = means_lr(cfg, extent, step)
        for o in opts.values():
            o.step()
            o.zero_grad(set_to_none=True)
        with _seeded(cfg.seed, step, device):
            strategy.step_post_backward(gaussians.params, opts, strategy_state, step, out.info, packed=False)
        done = step + 1
        if done % 10 == 0 or done == cfg.iters:
            with torch.no_grad():
                p = psnr(out.rgb.detach().clamp(0, 1), train_views[vi].image[None]).item()
            bar.set_postfix(
                loss=f"{losses['total'].item():.4f}", psnr=f"{p:.2f}", n=len(gaussians), refresh=False
            )
            run_log.log(
                done,
                loss=losses["total"].item(),
                rgb=losses["rgb"].item(),
                feature=losses["feature"].item(),
                psnr=p,
                num_gaussians=len(gaussians),
            )
        if cfg.checkpoint_every > 0 and done % cfg.checkpoint_every == 0 and done < cfg.iters:
            tensors, optim = _checkpoint_payload(gaussians, opts, strategy_state)
            ckpt.save(done, tensors, optim, {"initial": initial, "init_source": init_source})
    bar.close()
    run_log.close()

    final = evaluate(gaussians, eval_views, eval_targets, backend, cfg.sh_degree, cfg.tile_size)
    gaussians.save(out_dir)
    gaussians.export_ply(out_dir / "point_cloud.ply")
    k = min(cfg.num_render_views, len(eval_views))
    if k:
        pick = np.unique(np.linspace(0, len(eval_views) - 1, k).round().astype(int))
        save_renders(
            gaussians,
            [eval_views[i] for i in pick],
            [eval_targets[i] for i in pick],
            out_dir,
            backend,
            cfg.sh_degree,
        )
    metrics: dict[str, Any] = {
        **final,
        **{f"initial_{k}": v for k, v in initial.items()},
        "eval_split": "held_out" if held_pos else "train",
        "num_eval_views": len(eval_views),
        "num_train_views": len(train_views),
        "num_gaussians": len(gaussians),
        "iterations": cfg.iters,
        "seconds": round(time.time() - t_start, 2),
        "backend": backend,
        "device": str(device),
        "backbone": backbone.name,
        "weights": backbone.weights,
        "init_source": init_source,
        "resolution": [H, W],
        "feature_resolution": list(fsize),
    }
    write_json(out_dir / METRICS_FILE, metrics)  # last: marks the scene finished
    shutil.rmtree(ckpt.root, ignore_errors=True)
    return metrics
