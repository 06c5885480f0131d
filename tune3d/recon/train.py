"""Supervised training of reconstruction models on posed RGB-D scenes (``tune3d train-recon``).

Each step draws ``batch_size`` tuples of ``views`` co-visible frames: a random scene, a random anchor frame
and ``views - 1`` partners whose depth overlap with the anchor is at least ``min_overlap`` (see
:func:`tune3d.data.overlap.covisibility`). Every random choice is a function of ``(seed, step, rank)``
(:func:`tune3d.engine.step_generator`), so a resumed run replays the uninterrupted one exactly.

Loss by family (``tune3d.recon.losses``): DUSt3R-style ``ConfLoss(Regr3D)`` for dust3r / mast3r / cut3r
(CUT3R also on its self-view pointmaps), VGGT's camera + depth + point losses for vggt. Runs on
Accelerate (CPU, one GPU, ``accelerate launch``); checkpoints under ``out/checkpoints`` and resumes from
the newest. The result is ``out/model.safetensors`` (the full state dict, official key layout, loadable
with ``create_model(name, weights=...)``) and ``out/model.json`` (registry name and training summary).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from tune3d.config import save_config
from tune3d.data import load_scenes
from tune3d.data.overlap import covisible_partners
from tune3d.engine import CheckpointManager, RunLogger, make_accelerator, seed_everything, step_generator
from tune3d.engine.runfolder import RunFolder
from tune3d.engine.schedule import warmup_decay
from tune3d.errors import Tune3DError
from tune3d.io import save_safetensors_atomic, write_json
from tune3d.recon import create_model
from tune3d.recon.inference import default_size, model_family, model_input_size
from tune3d.recon.losses import GRADIENT_LOSSES, recon_loss


@dataclass
class TrainReconConfig:
    model: str = "dust3r_tiny"
    data: list[str] = field(default_factory=list)
    out: str = "runs/recon"
    weights: str | None = None
    allow_random_init: bool = False
    views: int = 2
    resolution: tuple[int, int] | None = None  # (H, W); default: model_input_size of the first frame
    steps: int = 1000
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.05
    warmup_steps: int = 0  # 0: 5% of the steps
    grad_clip: float = 1.0
    point_gradient: str = "normal"  # VGGT point-loss gradient term (tune3d.recon.losses.GRADIENT_LOSSES)
    min_overlap: float = 0.3
    max_frame_gap: int = 30
    split: str | None = "train"
    seed: int = 0
    save_every: int = 200
    log_every: int = 10
    device: str = "auto"
    mixed_precision: str = "auto"
    resume: bool = True
    progress: bool = True


# Settings a resumed run may change: the step budget and how often it saves/logs, not what it learns.
RESUME_FREE = ("steps", "save_every", "log_every", "progress", "resume", "device", "mixed_precision", "out")


# -- data ------------------------------------------------------------------------------------------


class SceneTuples:
    """In-memory frames of several scenes at one resolution plus their co-visible partner lists."""

    def __init__(
        self,
        scenes: list,
        resolution: tuple[int, int],
        views: int,
        min_overlap: float = 0.3,
        max_frame_gap: int = 30,
        split: str | None = "train",
    ) -> None:
        H, W = resolution
        self.views = views
        self.scenes = []
        for scene in scenes:
            idx = scene.split_indices(split) if split and split in scene.splits else list(range(len(scene)))
            frames = [scene[i].resized(H, W) for i in idx]
            if not all(f.has_depth for f in frames):
                raise Tune3DError(f"{scene.path or scene.name}: training needs depth for every frame")
            img = torch.from_numpy(np.stack([f.image() for f in frames])).permute(0, 3, 1, 2).float() / 255
            depth = torch.from_numpy(np.stack([f.depth() for f in frames]).astype(np.float32))
            depth = torch.where(torch.isfinite(depth), depth, torch.zeros_like(depth))
            K = torch.from_numpy(np.stack([f.K for f in frames]))
            c2w = torch.from_numpy(np.stack([f.c2w for f in frames]))
            partners = covisible_partners(depth, K, c2w, views, min_overlap, max_frame_gap)
            anchors = [k for k, p in enumerate(partners) if len(p) >= views - 1]
            if anchors:
                self.scenes.append(
                    dict(
                        name=scene.name,
                        images=img,
                        depth=depth,
                        K=K,
                        c2w=c2w,
                        partners=partners,
                        anchors=anchors,
                    )
                )
        if not self.scenes:
            raise Tune3DError(
                f"no scene has {views} frames with overlap >= {min_overlap} (lower --min-overlap or --views)"
            )

    def sample(self, batch_size: int, g: torch.Generator) -> dict[str, Tensor]:
        """``batch_size`` tuples: ``images`` B,S,3,H,W, ``depth`` B,S,H,W, ``K`` B,S,3,3, ``c2w`` B,S,4,4, and
        ``corr_seed`` (int64 scalar) for the loss's own random choices (MASt3R's correspondences)."""
        items = []
        for _ in range(batch_size):
            sc = self.scenes[int(torch.randint(len(self.scenes), (1,), generator=g))]
            a = sc["anchors"][int(torch.randint(len(sc["anchors"]), (1,), generator=g))]
            p = sc["partners"][a]
            pick = torch.randperm(len(p), generator=g)[: self.views - 1].tolist()
            idx = [a] + [p[k] for k in pick]
            items.append({k: sc[k][idx] for k in ("images", "depth", "K", "c2w")})
        batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
        batch["corr_seed"] = torch.randint(2**62, (), generator=g)
        return batch


def load_training_scenes(paths: list[str]) -> list:
    if not paths:
        raise Tune3DError("no training data given (--data SCENE_OR_DIR)")
    scenes = []
    for p in paths:
        if not Path(p).exists():
            raise Tune3DError(f"{p}: data path not found")
        scenes.extend(load_scenes(p))
    return scenes


# -- loss ------------------------------------------------------------------------------------------


# -- loop ------------------------------------------------------------------------------------------


def _state_for_save(model: torch.nn.Module) -> dict[str, Tensor]:
    seen: set[int] = set()
    out = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.clone() if ptr in seen else v  # tied names (DPT aliases) need their own storage
        seen.add(ptr)
    return out


def save_model(model: torch.nn.Module, out: str | os.PathLike, name: str, extra: dict | None = None) -> Path:
    """``out/model.safetensors`` (full state dict) and ``out/model.json`` (registry name + ``extra``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.safetensors"
    save_safetensors_atomic(_state_for_save(model), path, {"model": name})
    write_json(out / "model.json", {"model": name, "family": getattr(model, "family", ""), **(extra or {})})
    return path


def _lr_lambda(warmup: int, total: int):
    return partial(warmup_decay, total=total, warmup=warmup)


def train_recon(cfg: TrainReconConfig, model=None) -> dict:
    """Train ``cfg.model`` (or a given ``model``) and return a summary with the final losses."""
    if cfg.point_gradient not in GRADIENT_LOSSES:
        raise Tune3DError(
            f"unknown --point-gradient {cfg.point_gradient!r}; expected one of {', '.join(GRADIENT_LOSSES)}"
        )
    if cfg.views < 1 or cfg.steps < 0 or cfg.batch_size < 1:
        raise Tune3DError(
            f"invalid training sizes: views={cfg.views}, steps={cfg.steps}, batch={cfg.batch_size}"
        )
    run = RunFolder(cfg.out, free=RESUME_FREE + (() if cfg.resolution is not None else ("resolution",)))
    out = run.path
    ckpt = CheckpointManager(out)
    if cfg.resume and ckpt.latest() is not None:
        run.check_resume(dataclasses.asdict(cfg))  # before building anything: another model would not load
    run.prepare()
    seed_everything(cfg.seed)
    if model is None:
        model = create_model(cfg.model, weights=cfg.weights, allow_random_init=cfg.allow_random_init)
    if model.num_views == 2 and cfg.views != 2:
        raise Tune3DError(f"{cfg.model} is a pairwise model: --views must be 2, got {cfg.views}")
    scenes = load_training_scenes(cfg.data)
    if cfg.resolution is None:
        # The frames' own size rounded to patch multiples, never above the model's native input: the
        # official 512/518 px would upsample small training frames for nothing.
        f0 = scenes[0][0]
        p = model.patch_size
        native = f0.width if model_family(model) == "vggt" else max(f0.height, f0.width)
        size = min(default_size(model), max(p, round(native / p) * p))
        cfg.resolution = model_input_size(model, f0.height, f0.width, size)
    H, W = cfg.resolution
    if H % model.patch_size or W % model.patch_size:
        raise Tune3DError(f"--resolution {H}x{W} must be a multiple of the patch size {model.patch_size}")
    data = SceneTuples(scenes, (H, W), cfg.views, cfg.min_overlap, cfg.max_frame_gap, cfg.split)

    accelerator = make_accelerator(cfg.device, cfg.mixed_precision)
    model.train()
    if getattr(model, "track_head", None) is not None:
        model.track_head.requires_grad_(False)  # no track supervision here
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    warmup = cfg.warmup_steps or max(1, cfg.steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(warmup, cfg.steps))

    start, first_loss, last_loss = 0, None, None
    if cfg.resume and (state := ckpt.load()) is not None:
        tensors, optim_state, meta = state
        model.load_state_dict(tensors)
        if optim_state is not None:
            optimizer.load_state_dict(optim_state["optimizer"])
            scheduler.load_state_dict(optim_state["scheduler"])
        start = int(meta["step"])
        first_loss, last_loss = meta.get("first_loss"), meta.get("last_loss")
    if accelerator.is_main_process:
        save_config(cfg, out / "config.yaml")
    model, optimizer = accelerator.prepare(model, optimizer)
    raw = accelerator.unwrap_model(model)
    # rows are logged at the number of completed steps: keep those <= start when resuming
    logger = RunLogger(out, enabled=accelerator.is_main_process, resume_step=start + 1 if start else None)
    bar = tqdm(
        total=cfg.steps, initial=start, desc=f"train-recon {cfg.model}", disable=not cfg.progress, unit="step"
    )
    history: list[float] = []
    logs: dict[str, Tensor] = {}
    for step in range(start, cfg.steps):
        g = step_generator(cfg.seed, step, accelerator.process_index)
        batch = {k: v.to(accelerator.device) for k, v in data.sample(cfg.batch_size, g).items()}
        with accelerator.autocast():
            pred = model(batch["images"])
        logs = recon_loss(raw, pred, batch, cfg.point_gradient)
        loss = logs["loss"]
        if not torch.isfinite(loss):
            raise Tune3DError(f"non-finite loss at step {step} (try a lower --lr)")
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if cfg.grad_clip > 0:
            accelerator.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        history.append(float(loss.detach()))
        first_loss = history[0] if first_loss is None else first_loss
        last_loss = history[-1]
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            scalars = {k: float(v.detach()) for k, v in logs.items() if v.numel() == 1}
            logger.log(done, lr=scheduler.get_last_lr()[0], **scalars)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        if accelerator.is_main_process and (done % cfg.save_every == 0 or done == cfg.steps):
            ckpt.save(
                done,
                _state_for_save(raw),
                {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                {"model": cfg.model, "first_loss": first_loss, "last_loss": last_loss},
            )
        bar.update(1)
    bar.close()
    logger.close()
    summary = {
        "model": cfg.model,
        "steps": cfg.steps,
        "resumed_from": start,
        "resolution": [H, W],
        "views": cfg.views,
        "final_loss": last_loss,  # across resumes: the run's first step, not this process's
        "first_loss": first_loss,
        "final_terms": {k: float(v.detach()) for k, v in logs.items() if v.numel() == 1},
    }
    if accelerator.is_main_process:
        raw.eval()
        save_model(raw, out, cfg.model, {"steps": cfg.steps, "resolution": [H, W], "views": cfg.views})
        write_json(out / "train_summary.json", summary)
        write_json(out / "metrics.json", summary)  # last: marks the run finished, like every command
    return summary
