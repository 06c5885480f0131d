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
import dataclasses
import functools
import logging
import math
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

from tune3d.errors import Tune3DError
from tune3d.splatting.gaussians import PARAM_KEYS, FeatureGaussians
from tune3d.splatting.losses import feature_agreement, l1_loss, photometric_loss, psnr, ssim_map
from tune3d.splatting.render import render_rgb_and_features

logger = logging.getLogger(__name__)

REFERENCE_ITERS = 30_000
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"
# Fields that do not change the result: a finished or interrupted run with other values still matches.
_NON_RESULT_FIELDS = ("checkpoint_every", "device", "feature_cache", "num_render_views", "progress")
_NON_RESULT_FIELDS += ("tile_size",)  # the same image up to float rounding


@dataclass
class LiftConfig:
    """Settings of one per-scene lift. Schedules are given for the 30k-iteration reference and scaled by
    ``iters / 30000``; learning rates are the 3DGS / FiT3D ones (means lr times the camera extent).

    ``feature_lr_scale``: the latent features and the decoder start at zero / random and only move through
    Adam steps of size ~lr, so a run much shorter than the reference cannot travel as far; with
    ``"iters"`` their learning rates are multiplied by ``max(1, sqrt(30000 / iters))``, ``"none"`` keeps them.
    """

    iters: int = 1000
    latent_dim: int = 64
    sh_degree: int = 3
    resolution: tuple[int, int] | None = None  # render (H, W); None = the frames' own size
    feature_resolution: tuple[int, int] | None = None  # backbone input (H, W); None = see feature_input_size
    frames: str | None = None  # "A:B[:STEP]" selection before the hold-out split
    holdout_every: int = 8  # every k-th selected frame (index % k == 0) is held out; 0 = none
    seed: int = 0
    backend: str = "auto"
    tile_size: int | None = None  # rasterizer tile edge (pixels); None = the backend's fastest default
    device: str = "auto"
    checkpoint_every: int = 500
    feature_cache: str | None = None  # folder of the backbone feature cache; None = no cache
    num_render_views: int = 4
    max_eval_views: int = 25  # held-out views scored (evenly spaced over the held-out set); 0 = all
    progress: bool = True
    # initialisation
    init_points: int = 20_000
    init_depth_frames: int = 32
    init_depth_stride: int = 4
    init_opacity: float = 0.1
    # loss
    lambda_ssim: float = 0.2
    lambda_feature: float = 1.0
    # learning rates (Adam, eps 1e-15)
    lr_means: float = 1.6e-4
    lr_means_final: float = 1.6e-6
    lr_quats: float = 1e-3
    lr_scales: float = 5e-3
    lr_opacities: float = 0.05
    lr_sh0: float = 2.5e-3
    lr_shN: float = 2.5e-3 / 20
    lr_features: float = 2.5e-3 / 40
    lr_decoder: float = 2.5e-3 / 40
    feature_lr_scale: str = "iters"
    # densification (reference iterations; scaled by iters / 30000)
    densify_from: int = 500
    densify_until: int = 15_000
    densify_every: int = 100
    opacity_reset_every: int = 3000
    sh_up_every: int = 1000
    grow_grad2d: float = 2e-4
    grow_scale3d: float = 0.01
    prune_opa: float = 0.005
    prune_scale3d: float = 0.1
    max_gaussians: int = 20_000  # growth cap (0 = none), see CappedDefaultStrategy

    def __post_init__(self) -> None:
        for name in ("resolution", "feature_resolution"):
            v = getattr(self, name)
            if v is not None:
                v = tuple(int(x) for x in v)
                if len(v) != 2 or min(v) <= 0:
                    raise Tune3DError(f"{name} must be two positive sizes (H, W), got {v}")
                setattr(self, name, v)
        if self.iters <= 0:
            raise Tune3DError(f"iters must be positive, got {self.iters}")
        if self.tile_size is not None and int(self.tile_size) <= 0:
            raise Tune3DError(f"tile_size must be positive, got {self.tile_size}")
        if self.holdout_every < 0 or self.holdout_every == 1:
            raise Tune3DError(f"holdout_every must be 0 (none) or >= 2, got {self.holdout_every}")
        if not 0 <= self.sh_degree <= 3:
            raise Tune3DError(f"sh_degree must be in [0, 3], got {self.sh_degree}")
        if self.feature_lr_scale not in ("iters", "none"):
            raise Tune3DError(f"feature_lr_scale must be 'iters' or 'none', got {self.feature_lr_scale!r}")

    def scaled(self, reference_iter: int) -> int:
        """A reference-schedule iteration count scaled to this run (at least 1)."""
        return max(1, round(reference_iter * self.iters / REFERENCE_ITERS))

    @property
    def feature_lr_factor(self) -> float:
        if self.feature_lr_scale == "none":
            return 1.0
        return max(1.0, math.sqrt(REFERENCE_ITERS / self.iters))


# ----------------------------------------------------------------------------------------------- views
@dataclass
class View:
    """One posed frame at render resolution: ``image [3,H,W]`` in [0,1], ``viewmat [4,4]``, ``K [3,3]``."""

    index: int
    name: str
    image: Tensor
    viewmat: Tensor
    K: Tensor


def split_views(num_frames: int, holdout_every: int) -> tuple[list[int], list[int]]:
    """``(train, held_out)`` positions: every ``holdout_every``-th one (``i % k == 0``) is held out."""
    if holdout_every <= 0:
        return list(range(num_frames)), []
    held = [i for i in range(num_frames) if i % holdout_every == 0]
    train = [i for i in range(num_frames) if i % holdout_every != 0]
    if not train:
        raise Tune3DError(f"holdout_every={holdout_every} leaves no training views of {num_frames}")
    return train, held


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
    from tune3d.backbones import extract_features, open_cache

    cache = open_cache(cache_dir, backbone, size, None, True, "resize") if cache_dir else None
    images = (scene[i].image() for i in positions)
    return [
        d["patch"].float() for d in extract_features(backbone, images, size, None, True, "resize", 8, cache)
    ]


def initial_point_cloud(
    scene, train_positions: list[int], cfg: LiftConfig
) -> tuple[np.ndarray, np.ndarray, str]:
    """Init points: the scene's own cloud (synthetic / COLMAP) or depth back-projection of training frames;
    at most ``cfg.init_points`` (seeded random subset). Returns ``(xyz, rgb uint8, source)``."""
    from tune3d.data import scene_point_cloud

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
def make_optimizers(
    gaussians: FeatureGaussians, cfg: LiftConfig, extent: float
) -> dict[str, torch.optim.Adam]:
    """One Adam (eps 1e-15) per parameter key, gsplat's DefaultStrategy contract, plus ``"decoder"``."""
    f = cfg.feature_lr_factor
    lrs = {
        "means": cfg.lr_means * extent,
        "quats": cfg.lr_quats,
        "scales": cfg.lr_scales,
        "opacities": cfg.lr_opacities,
        "sh0": cfg.lr_sh0,
        "shN": cfg.lr_shN,
        "features": cfg.lr_features * f,
    }
    opts = {k: torch.optim.Adam([gaussians.params[k]], lr=lrs[k], eps=1e-15) for k in PARAM_KEYS}
    opts["decoder"] = torch.optim.Adam(gaussians.decoder.parameters(), lr=cfg.lr_decoder * f, eps=1e-15)
    return opts


def means_lr(cfg: LiftConfig, extent: float, step: int) -> float:
    """Exponential decay from ``lr_means`` to ``lr_means_final`` (times the extent) over the run."""
    t = min(max(step / max(cfg.iters, 1), 0.0), 1.0)
    return extent * math.exp((1 - t) * math.log(cfg.lr_means) + t * math.log(cfg.lr_means_final))


def _refine_every(cfg: LiftConfig) -> int:
    # Gradient statistics need a few views to mean anything: never refine more often than every 10 steps.
    return max(10, cfg.scaled(cfg.densify_every))


def _reset_every(cfg: LiftConfig) -> int:
    # Keep the reference's 30 refinements between opacity resets, so that a short run still has time to
    # recover its opacities after each reset.
    return max(cfg.scaled(cfg.opacity_reset_every), 30 * _refine_every(cfg))


def make_strategy(cfg: LiftConfig):
    """gsplat's ``DefaultStrategy`` with the scaled 3DGS schedule and the ``max_gaussians`` cap."""
    return _capped_strategy_class()(
        prune_opa=cfg.prune_opa,
        grow_grad2d=cfg.grow_grad2d,
        grow_scale3d=cfg.grow_scale3d,
        prune_scale3d=cfg.prune_scale3d,
        refine_start_iter=cfg.scaled(cfg.densify_from),
        refine_stop_iter=cfg.scaled(cfg.densify_until),
        refine_every=_refine_every(cfg),
        reset_every=_reset_every(cfg),
        max_gaussians=cfg.max_gaussians,
    )


@functools.cache
def _capped_strategy_class():
    from gsplat.strategy import DefaultStrategy
    from gsplat.strategy.ops import reset_opa

    @dataclasses.dataclass
    class CappedDefaultStrategy(DefaultStrategy):
        """``DefaultStrategy`` plus two things.

        * ``max_gaussians``: when growing would exceed the cap, the gradient threshold is raised for that
          refinement so that only the highest-gradient Gaussians grow (each clone/split adds one). Short,
          CPU-sized schedules start densifying before the fit settles, when nearly every Gaussian's gradient
          is above 2e-4; uncapped, the count then doubles at every refinement.
        * The opacity reset: gsplat 1.5.3 tests ``step % reset_every == 0 & step > 0``, which by operator
          precedence is never true, so the 3DGS reset never happens; it is applied here (idempotent).
        """

        max_gaussians: int = 0

        def _grow_gs(self, params, optimizers, state, step):
            base = self.grow_grad2d
            if self.max_gaussians > 0:
                avg = state["grad2d"] / state["count"].clamp_min(1)
                budget = self.max_gaussians - len(params["means"])
                above = int((avg > base).sum())
                if budget <= 0:
                    self.grow_grad2d = float("inf")
                elif above > budget:
                    self.grow_grad2d = float(torch.topk(avg, budget + 1).values[-1])
            try:
                return super()._grow_gs(params, optimizers, state, step)
            finally:
                self.grow_grad2d = base

        def step_post_backward(self, params, optimizers, state, step, info, packed=False):
            super().step_post_backward(params, optimizers, state, step, info, packed=packed)
            if 0 < step < self.refine_stop_iter and step % self.reset_every == 0:
                reset_opa(params=params, optimizers=optimizers, state=state, value=self.prune_opa * 2.0)

    return CappedDefaultStrategy


@contextlib.contextmanager
def _seeded(seed: int, step: int, device: torch.device):
    """Seed the global RNG (gsplat's split samples with it) from (seed, step), restoring it afterwards."""
    devices = [device] if device.type == "cuda" else []
    from tune3d.engine import step_generator

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
    from tune3d.viz import colorize_depth, fit_pca, save_png, tile_images

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


def scene_fingerprint(scene) -> str:
    """Content fingerprint of a scene's frames: names, sizes, intrinsics and poses (rounded to 1e-6).

    Identifies the scene wherever its folder lives; reads no pixels, so it is cheap for large scenes.
    """
    import hashlib

    h = hashlib.sha256()
    for f in scene.frames:
        h.update(f.name.encode())
        h.update(np.asarray([f.width, f.height], dtype=np.int64).tobytes())
        for m in (f.K, f.c2w):
            h.update((np.round(np.asarray(m, dtype=np.float64), 6) + 0.0).tobytes())  # + 0.0: no -0.0
    return h.hexdigest()[:16]


def config_record(cfg: LiftConfig, scene, backbone) -> dict[str, Any]:
    """What ``config.yaml`` holds: the lift settings plus the scene and backbone identity.

    The scene path is stored absolute (a lifted scene is usable from any working directory) with a
    content fingerprint (:func:`scene_fingerprint`) so a relocated scene can be checked.
    """
    path = str(Path(scene.path).resolve()) if scene.path else None
    record = {"name": scene.name, "path": path, "frames": len(scene), "fingerprint": scene_fingerprint(scene)}
    if scene.source_indices is not None:  # a subset: which frames of the scene on disk were lifted
        record["source_frames"] = list(scene.source_indices)
    return {
        "scene": record,
        "backbone": {"name": backbone.name, "weights": backbone.weights},
        "lift": dataclasses.asdict(cfg),
    }


def _fingerprint(record: dict[str, Any]) -> dict[str, Any]:
    lift = {k: v for k, v in record.get("lift", {}).items() if k not in _NON_RESULT_FIELDS}
    lift = {k: list(v) if isinstance(v, tuple) else v for k, v in lift.items()}
    scene = record.get("scene")
    if isinstance(scene, dict) and "fingerprint" in scene:  # the content, not where it lives, identifies it
        scene = {k: v for k, v in scene.items() if k != "path"}
    return {"scene": scene, "backbone": record.get("backbone"), "lift": lift}


def _same_settings(old: dict[str, Any], record: dict[str, Any]) -> bool:
    """Whether ``old`` (a lift's ``config.yaml``) was made with ``record``'s settings. Lifts recorded
    before scene fingerprints existed are matched on the scene's name and frame count."""
    a, b = _fingerprint(old), _fingerprint(record)
    if isinstance(a["scene"], dict) and "fingerprint" not in a["scene"] and isinstance(b["scene"], dict):
        a["scene"] = {k: a["scene"].get(k) for k in ("name", "frames")}
        b["scene"] = {k: b["scene"].get(k) for k in ("name", "frames")}
    return a == b


def _read_record(path: Path) -> dict[str, Any] | None:
    import yaml

    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None


def is_finished(out_dir: str | os.PathLike, record: dict[str, Any]) -> bool:
    """True when ``out_dir`` holds a completed lift (``metrics.json``) made with the same settings."""
    from tune3d.engine.runfolder import RunFolder

    run = RunFolder(out_dir, config_file=CONFIG_FILE, same=_same_settings)
    return run.is_finished(record, finished_file=METRICS_FILE)


def _prepare_out_dir(out_dir: Path, record: dict[str, Any], overwrite: bool) -> None:
    cfg_path = out_dir / CONFIG_FILE
    if overwrite and out_dir.exists():
        for name in ("checkpoints", "renders", METRICS_FILE, "metrics.jsonl", CONFIG_FILE):
            p = out_dir / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    if cfg_path.is_file():
        old = _read_record(cfg_path)
        if old is None or not _same_settings(old, record):
            changed = sorted(
                k
                for k, v in _fingerprint(record)["lift"].items()
                if _fingerprint(old or {})["lift"].get(k) != v
            )
            old_fp, new_fp = _fingerprint(old or {}), _fingerprint(record)
            if old_fp["scene"] != new_fp["scene"] or old_fp["backbone"] != new_fp["backbone"]:
                changed = ["scene/backbone", *changed]
            raise Tune3DError(
                f"{out_dir}: holds a lift with different settings (changed: "
                f"{', '.join(changed) or 'unknown'}); use another --out or --overwrite"
            )


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
    from tune3d.data import parse_frame_range
    from tune3d.engine import CheckpointManager, RunFolder, RunLogger, resolve_device, step_generator
    from tune3d.io import read_json, write_json, write_yaml
    from tune3d.splatting.rasterize import resolve_backend

    t_start = time.time()
    run = RunFolder(out_dir)  # a file or read-only --out fails here, before any work
    out_dir = run.path
    if cfg.frames:
        scene = scene.subset(parse_frame_range(cfg.frames, len(scene)))
    record = config_record(cfg, scene, backbone)
    if not overwrite and is_finished(out_dir, record):
        logger.info("%s: already lifted, skipping", out_dir)
        return read_json(out_dir / METRICS_FILE)
    _prepare_out_dir(out_dir, record, overwrite)
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

    from tqdm import tqdm

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
