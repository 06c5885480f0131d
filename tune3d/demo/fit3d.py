"""FiT3D part of the demo: synthetic scenes -> lift (stage I) -> fine-tune (stage II) -> linear probes.

The probes compare the paper's four feature sets on held-out data: ``original``, ``finetuned``,
``assembled`` (concatenation, the reported setting) and ``duplicated`` (doubled-width control).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import ConcatDataset

from tune3d.backbones import create_backbone, get_spec, save_backbone
from tune3d.data import load_scene, load_scenes, parse_frame_range
from tune3d.data.synth import synth_dataset
from tune3d.demo.common import DemoConfig, StageLog, drop_checkpoints, metrics_done
from tune3d.errors import Tune3DError, WeightsUnavailableError
from tune3d.fit3d.assembly import AssembledBackbone
from tune3d.fit3d.finetune import FinetuneConfig, finetune
from tune3d.io import read_json
from tune3d.probe import ProbeConfig, SceneSamples, run_probe
from tune3d.splatting.lift import lift_scene
from tune3d.splatting.lift_format import REFERENCE_ITERS, LiftConfig
from tune3d.viz import fit_pca, save_png, tile_images

MODES = ("original", "finetuned", "assembled", "duplicated")
HELDOUT_SEED_OFFSET = 100_003  # held-out rooms come from another seed stream than the training rooms


class MemoBackbone(nn.Module):
    """A frozen backbone whose ``forward_features`` results are memoised per input batch.

    The four probe modes ask the same two models for the same images again and again (the assembled mode
    runs both); memoising turns five backbone passes over the probe data per task into two. Keys hash the
    image bytes together with the call's options, so a different batch or setting is never served a stale
    result.
    """

    def __init__(self, backbone: Any) -> None:
        super().__init__()
        self.backbone = backbone
        self._memo: dict[str, Any] = {}

    name = property(lambda self: self.backbone.name)
    width = property(lambda self: self.backbone.width)
    patch_size = property(lambda self: self.backbone.patch_size)
    weights = property(lambda self: self.backbone.weights)

    @torch.no_grad()
    def forward_features(self, images: torch.Tensor, norm: bool = True, **kwargs: Any) -> Any:
        h = hashlib.sha1(images.detach().float().cpu().contiguous().numpy().tobytes())
        h.update(repr((tuple(images.shape), norm, sorted(kwargs.items()))).encode())
        key = h.hexdigest()
        if key not in self._memo:
            self._memo[key] = self.backbone.forward_features(images, norm=norm, **kwargs)
        return self._memo[key]

    def forward(self, images: torch.Tensor, norm: bool = True, **kwargs: Any) -> Any:
        return self.forward_features(images, norm=norm, **kwargs)


# ----------------------------------------------------------------------------------------------- data


def synth_split(cfg: DemoConfig, folder: Path, scenes: int, seed: int, log: StageLog, name: str) -> list[Any]:
    """Generate (or reuse) ``scenes`` synthetic scenes in ``folder`` and load them."""

    def make() -> None:
        try:
            synth_dataset(
                folder,
                scenes=scenes,
                views=cfg.views,
                resolution=cfg.resolution,
                seed=seed,
                num_points=20_000,
            )
        except Tune3DError as e:
            raise Tune3DError(f"{e} -- the demo's sizes changed; use a new --out folder") from None

    log.run(
        f"data/{name}",
        metrics_done(folder, "dataset.json"),
        make,
        f"rendering {scenes} synthetic scene(s), {cfg.views} views at {'x'.join(map(str, cfg.resolution))}",
    )
    return load_scenes(folder)


def default_frames(scene: Any, train: str | None, test: str | None) -> tuple[list[int], list[int]]:
    """Train/test frame indices of a real scene: the flags, else its own splits, else first 70% / last 20%."""
    n = len(scene)
    if train is None and test is None and scene.splits.get("train") and scene.splits.get("test"):
        return list(scene.splits["train"]), list(scene.splits["test"])
    tr = parse_frame_range(train, n) if train else list(range(int(0.7 * n)))
    te = parse_frame_range(test, n) if test else list(range(int(0.8 * n), n))
    if not tr or not te:
        raise Tune3DError(f"{scene.path or scene.name}: empty train or test frame selection ({n} frames)")
    return tr, te


def prepare_data(cfg: DemoConfig, out: Path, log: StageLog) -> dict[str, Any]:
    """Training scenes (lifted, fine-tuned on, probe training) and test scenes (probe evaluation)."""
    if cfg.data is None:
        train = synth_split(cfg, out / "data" / "train", cfg.scenes, cfg.seed, log, "train")
        test = synth_split(
            cfg, out / "data" / "heldout", cfg.heldout_scenes, cfg.seed + HELDOUT_SEED_OFFSET, log, "heldout"
        )
        H, W = cfg.resolution
        desc = (
            f"synthetic: {len(train)} training + {len(test)} held-out rooms, {cfg.views} views at {H}x{W} "
            f"(seed {cfg.seed})"
        )
        return {"train": train, "test": test, "description": desc, "render_resolution": None}

    scene = load_scene(cfg.data)
    tr, te = default_frames(scene, cfg.train_frames, cfg.test_frames)
    desc = (
        f"{cfg.data}: {len(scene)} frames; lift/fine-tune/probe-train on {len(tr)} frames "
        f"({cfg.train_frames or 'default'}), probe-test on {len(te)} ({cfg.test_frames or 'default'})"
    )
    return {
        "train": [scene.subset(tr)],
        "test": [scene.subset(te)],
        "description": desc,
        "render_resolution": tuple(cfg.resolution),
    }


# ----------------------------------------------------------------------------------------------- model


def base_backbone(cfg: DemoConfig, out: Path, log: StageLog) -> tuple[Any, str | None, str]:
    """``(backbone, weights file for every stage or None for the hub default, label for the report)``.

    Without pretrained weights the random initialisation is saved once to ``OUT/base`` and every stage
    loads that file, so lifting, fine-tuning and probing all see the very same starting network.
    """
    dev = None if cfg.device == "auto" else cfg.device
    if cfg.weights:
        bb = create_backbone(cfg.backbone, weights=cfg.weights, device=dev)
        return bb, cfg.weights, str(cfg.weights)
    saved = out / "base" / "backbone.safetensors"
    if saved.is_file():
        log.note(
            f"{cfg.backbone}: pretrained weights unavailable, using the random initialisation saved in "
            f"{saved} -- the numbers show the pipeline works, not what FiT3D gains on DINOv2"
        )
        return create_backbone(cfg.backbone, weights=saved, device=dev), str(saved), "random-init"
    try:
        bb = create_backbone(cfg.backbone, device=dev)
        return bb, None, bb.weights_info.source if hasattr(bb, "weights_info") else str(bb.weights)
    except WeightsUnavailableError:
        pass
    log.note(
        f"{cfg.backbone}: pretrained weights could not be fetched, so the demo uses RANDOM weights -- "
        "the numbers show the pipeline works, not what FiT3D gains on DINOv2 (pass --weights FILE)"
    )
    bb = create_backbone(cfg.backbone, allow_random_init=True, device=dev, seed=cfg.seed)
    save_backbone(bb.timm_model, get_spec(cfg.backbone), saved.parent, parent_weights="random-init")
    return create_backbone(cfg.backbone, weights=saved, device=dev), str(saved), "random-init"


# ----------------------------------------------------------------------------------------------- stages


def lift_all(
    cfg: DemoConfig,
    out: Path,
    log: StageLog,
    scenes: list[Any],
    backbone: Any,
    render_resolution: tuple[int, int] | None,
) -> list[Path]:
    lcfg = LiftConfig(
        iters=cfg.lift_iters,
        init_points=cfg.lift_points,
        resolution=render_resolution,
        seed=cfg.seed,
        device=cfg.device,
        progress=cfg.progress,
        num_render_views=2,
        feature_cache=str(out / "cache" / "features"),
        # A demo-length lift keeps the initial Gaussians: the 30k-iteration densification and opacity-reset
        # schedule scaled down to a few dozen steps would refine and reset almost every step.
        densify_from=REFERENCE_ITERS,
        densify_until=REFERENCE_ITERS,
        opacity_reset_every=REFERENCE_ITERS,
    )
    dirs = []
    for scene in scenes:
        d = out / "lift" / scene.name
        dirs.append(d)
        log.run(
            f"lift/{scene.name}",
            metrics_done(d),
            lambda s=scene, d=d: lift_scene(s, backbone, lcfg, d),
            f"{cfg.lift_iters} iterations, {len(scene)} frames",
        )
    return dirs


def finetune_stage(
    cfg: DemoConfig, out: Path, log: StageLog, lifted: list[Path], weights: str | None
) -> Path:
    d = out / "finetune"
    train_views = sum(int(read_json(p / "metrics.json").get("num_train_views", 0)) for p in lifted)
    per_epoch = max(1, train_views // 2)
    fcfg = FinetuneConfig(
        epochs=max(1, math.ceil(cfg.finetune_steps / per_epoch)),  # the paper's single epoch is ~70k steps
        max_steps=cfg.finetune_steps,
        lr=cfg.finetune_lr,
        seed=cfg.seed,
        device=cfg.device,
        progress=cfg.progress,
    )
    log.run(
        "finetune",
        metrics_done(d),
        lambda: finetune(lifted, cfg.backbone, fcfg, d, weights=weights),
        f"{cfg.finetune_steps} steps, lr {cfg.finetune_lr:g}",
    )
    drop_checkpoints(d)
    return d / "backbone.safetensors"


def probe_samples(scenes: list[Any], task: str) -> Any:
    parts = [SceneSamples(s, task) for s in scenes]
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def probe_all(
    cfg: DemoConfig, out: Path, log: StageLog, data: dict[str, Any], original: Any, tuned: Any
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {"depth": {}, "semseg": {}}
    tasks = ["depth"]
    if all(s.has_semantics for s in data["train"] + data["test"]):
        tasks.append("semseg")
    else:
        log.note("the data has no semantic labels: segmentation probes skipped (depth only)")
    memo = (MemoBackbone(original), MemoBackbone(tuned))
    for task in tasks:
        if not all(s.has_depth for s in data["train"] + data["test"]) and task == "depth":
            log.note("the data has no depth: depth probes skipped")
            continue
        class_names = data["train"][0].class_names if task == "semseg" else None
        train, test = probe_samples(data["train"], task), probe_samples(data["test"], task)
        pcfg = ProbeConfig(
            iters=cfg.probe_iters,
            image_size=list(cfg.resolution),
            max_depth=cfg.probe_max_depth,
            seed=cfg.seed,
            device=cfg.device,
            progress=cfg.progress,
            num_vis=3,
        )
        for mode in MODES:
            d = out / "probe" / task / mode
            model = AssembledBackbone(memo[0], memo[1] if mode in ("finetuned", "assembled") else None, mode)
            log.run(
                f"probe/{task}/{mode}",
                metrics_done(d),
                lambda m=model, d=d, t=task, tr=train, te=test, pc=pcfg, cn=class_names: run_probe(
                    t, m, tr, te, pc, d, class_names=cn, run_info={"command": "demo"}
                ),
                f"{cfg.probe_iters} iterations on {len(train)} train / {len(test)} test images",
            )
            results[task][mode] = _probe_summary(task, read_json(d / "metrics.json"), d / "config.yaml")
        memo[0]._memo.clear()
        memo[1]._memo.clear()
    return results


def _probe_summary(task: str, m: dict[str, Any], config: Path) -> dict[str, Any]:
    keys = (
        ("mIoU", "mAcc", "aAcc")
        if task == "semseg"
        else ("rmse", "abs_rel", "delta1", "delta2", "delta3", "sq_rel", "rmse_log", "log10", "silog")
    )
    out = {k: m[k] for k in keys if k in m}
    out["feature_width"] = int((yaml.safe_load(config.read_text()) or {}).get("feature_width", 0))
    out.update({k: m[k] for k in ("final_train_loss", "time_features_s", "time_train_s") if k in m})
    return out


# ----------------------------------------------------------------------------------------------- figures


@torch.no_grad()
def pca_figure(
    scenes: list[Any], original: Any, tuned: Any, path: Path, size: tuple[int, int], n: int = 4
) -> Path:
    """Rows: held-out views | PCA of the original features | PCA of the fine-tuned features.

    One PCA per model, fitted across all shown views, so colours are comparable between views. The views
    are enlarged 2x before the backbone for a finer token grid.
    """
    frames = [
        s[i] for s in scenes for i in np.linspace(0, len(s) - 1, max(1, n // len(scenes))).round().astype(int)
    ]
    frames = [f.resized(*size) for f in frames[:n]]
    images = torch.stack(
        [torch.from_numpy(np.ascontiguousarray(f.image())).permute(2, 0, 1).float() / 255 for f in frames]
    )
    H, W = images.shape[-2:]
    big = F.interpolate(images, scale_factor=2.0, mode="bilinear", align_corners=False)
    rows = [[(im.permute(1, 2, 0).numpy() * 255).astype(np.uint8) for im in images]]
    for model in (original, tuned):
        feats = model.forward_features(big.to(_device(model)), norm=True).patch.float().cpu()
        rows.append(fit_pca(feats).to_images(feats, (H, W)))
    save_png(tile_images([im for r in rows for im in r], ncols=len(frames)), path)
    return path


def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def prediction_figures(out: Path, tasks: list[str]) -> list[tuple[str, Path]]:
    """The probes' own ``predictions/0000.png`` (image | ground truth | prediction) per task and mode."""
    figs = []
    for task in tasks:
        for mode in MODES:
            p = out / "probe" / task / mode / "predictions" / "0000.png"
            if p.is_file():
                figs.append((f"{task} probe, {mode} features: image | ground truth | prediction", p))
    return figs


# ----------------------------------------------------------------------------------------------- driver


def run_fit3d(
    cfg: DemoConfig, out: Path, log: StageLog
) -> tuple[dict[str, Any], list[tuple[str, Path]], dict[str, Any]]:
    """Run the FiT3D part; returns the ``report.json["fit3d"]`` section, the report's figures and extra
    tables (none: the section holds every number)."""
    data = prepare_data(cfg, out, log)
    backbone, weights, label = base_backbone(cfg, out, log)
    lifted = lift_all(cfg, out, log, data["train"], backbone, data["render_resolution"])
    tuned_path = finetune_stage(cfg, out, log, lifted, weights)
    dev = None if cfg.device == "auto" else cfg.device
    tuned = create_backbone(cfg.backbone, weights=tuned_path, device=dev)
    results = probe_all(cfg, out, log, data, backbone, tuned)

    figs: list[tuple[str, Path]] = []
    fig_dir = out / "figures"
    log.run(
        "figures/fit3d_pca",
        lambda: (fig_dir / "fit3d_pca.png").is_file(),
        lambda: pca_figure(data["test"], backbone, tuned, fig_dir / "fit3d_pca.png", cfg.resolution),
        "PCA of original vs fine-tuned features",
    )
    figs.append(
        (
            "Held-out views (top), PCA of original features (middle) and of fine-tuned features (bottom)",
            fig_dir / "fit3d_pca.png",
        )
    )
    figs.extend(prediction_figures(out, [t for t in ("depth", "semseg") if results[t]]))
    section = {
        "backbone": cfg.backbone,
        "weights": label,
        "data": data["description"],
        "depth": results["depth"],
        "semseg": results["semseg"],
        "seconds": round(
            sum(
                log.seconds(p)
                for p in ("data/train", "data/heldout", "lift/", "finetune", "probe/", "figures/fit3d")
            ),
            2,
        ),
    }
    return section, figs, {}
