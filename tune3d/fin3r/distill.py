"""Fin3R training: distil a monocular teacher into a reconstruction model's encoder through adapters.

Decoder and heads stay frozen (bit-identical); only the LoRA adapters on the encoder's ``qkv`` projections
train (:func:`tune3d.fin3r.adapters.add_adapters`). Every step mixes unlabeled single images (teacher
pseudo-labels) with a ``replay_ratio`` share of labelled multi-view tuples (:class:`ReplaySampler`):

- distillation on every image's per-view head (``model.per_view_head``: VGGT's depth head, the CroCo
  models' own-frame pointmap ``pts3d_self``; pairwise models see a single image as the self-pair, like
  ``forward_mono``), against the teacher target normalised per its kind;
- on the replayed tuples only, the model family's own released training criterion against their ground
  truth (:func:`tune3d.fin3r.targets.replay_loss`).

The code flows data (:mod:`.data`) -> targets and the batch loss (:mod:`.targets`, which also says how
they compare) -> the step (here). Every step's batch is a pure function of ``(seed, step)``, so a resumed
run reproduces an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from tune3d.engine import RunLogger, make_accelerator, resolve_device, seed_everything
from tune3d.engine.checkpoint import CheckpointManager
from tune3d.engine.runfolder import RunFolder
from tune3d.engine.schedule import warmup_decay
from tune3d.errors import Tune3DError
from tune3d.fin3r.adapters import (
    adapter_form,
    adapter_state_dict,
    add_adapters,
    lora_layers,
    save_adapters,
)
from tune3d.fin3r.config import DistillConfig
from tune3d.fin3r.data import (
    EmptyDataset,
    MonoImages,
    ReplayTuples,
    distill_resolution,
    load_inputs,
)
from tune3d.fin3r.diagnostics import base_vs_trained, depth_eval_set, loss_summary, pick
from tune3d.fin3r.sampling import ReplayMixDataset, ReplaySampler, StepBatchSampler, replay_collate
from tune3d.fin3r.targets import distill_step_loss
from tune3d.fin3r.teachers import Teacher, create_teacher
from tune3d.io import write_json, write_yaml
from tune3d.recon import create_model

log = logging.getLogger(__name__)


def lr_factor(step: int, cfg: DistillConfig) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then constant or cosine decay to 0."""
    return warmup_decay(step, cfg.steps, cfg.warmup_steps, cfg.schedule)


# --------------------------------------------------------------------------------------------- driver


def _run_config(
    model_name: str, weights: Any, teacher_spec: str, mono_data: Any, replay_data: Any, cfg: DistillConfig
) -> dict[str, Any]:
    return {
        "model": model_name,
        "weights": None if weights is None else str(weights),
        "teacher": teacher_spec,
        "mono": str(mono_data),
        "replay": None if replay_data is None else str(replay_data),
        **dataclasses.asdict(cfg),
    }


# Settings a resumed run may change (``steps`` may grow; logging and evaluation knobs are free).
RESUME_FREE = ("steps", "save_every", "log_every", "progress", "num_workers", "diag_images", "eval_images")


def distill(
    model_name: str,
    weights: str | Path | None,
    teacher_spec: str,
    mono_data: str | Path,
    replay_data: str | Path | None,
    cfg: DistillConfig,
    out_dir: str | Path,
    allow_random_init: bool = False,
    resume: bool = True,
) -> dict[str, Any]:
    """Run Fin3R distillation and write ``out_dir/{adapter.safetensors, config.yaml, metrics.json,
    metrics.jsonl, tb/, checkpoints/, diagnostics/}``. Returns the metrics dict.

    ``mono_data``: image folder or scene(s); ``replay_data``: scene(s) with depth and poses (may be None
    with ``cfg.replay_ratio == 0``). ``resume``: continue from the newest checkpoint in ``out_dir`` (same
    config required), else start over.
    """
    cfg.validate()
    run = RunFolder(out_dir, free=RESUME_FREE)
    out = run.path
    run_cfg = _run_config(model_name, weights, teacher_spec, mono_data, replay_data, cfg)
    if resume and CheckpointManager(out).latest() is not None:
        run.check_resume(run_cfg)  # before reading data or building models
    # Inputs first: bad specs and missing data fail before any model is built.
    mono_items, held_items, replay_scenes = load_inputs(
        mono_data, replay_data, teacher_spec, cfg.replay_ratio
    )
    cache = cfg.teacher_cache
    if cache is None and teacher_spec != "sensor":
        cache = str(out / "teacher_cache")
    teacher = create_teacher(teacher_spec, device=resolve_device(cfg.device), cache_dir=cache)

    seed_everything(cfg.seed)
    model = create_model(model_name, weights=weights, device="cpu", allow_random_init=allow_random_init)
    if not getattr(model, "encoder_qkv_pattern", ""):
        raise Tune3DError(f"{model_name}: the model declares no encoder qkv pattern, cannot add adapters")
    H, W = distill_resolution(cfg.resolution, model.patch_size)
    V = 2 if model.num_views == 2 else cfg.replay_views
    mono = MonoImages(mono_items, (H, W))
    held = MonoImages(held_items, (H, W)) if held_items else None
    replay = ReplayTuples(replay_scenes, V, (H, W), cfg.replay_stride) if replay_scenes else None
    metrics = train_adapters(
        model, teacher, mono, replay, cfg, out, held=held, resume=resume, run_config=run_cfg
    )
    if metrics:
        metrics["model"] = model_name
        metrics["base_weights"] = None if weights is None else str(weights)

        write_json(out / "metrics.json", metrics)
    return metrics


def train_adapters(
    model: Any,
    teacher: Teacher,
    mono: Dataset,
    replay: Dataset | None,
    cfg: DistillConfig,
    out_dir: str | Path,
    held: Dataset | None = None,
    resume: bool = True,
    run_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Fin3R loop on an existing :class:`~tune3d.recon.ReconModel` (adapted in place).

    Adds ``cfg.form`` adapters unless the model has some already (then only they train); everything else
    is frozen and never written to. ``mono``/``held``: :class:`MonoImages`-style items; ``replay``:
    :class:`ReplayTuples`-style items or None. Writes the same files as :func:`distill`; returns metrics
    (empty on non-main processes).
    """
    cfg.validate()
    t0 = time.time()
    run = RunFolder(out_dir, free=RESUME_FREE)
    out = run.path
    core = model
    accelerator = make_accelerator(cfg.device, cfg.mixed_precision)
    device = accelerator.device
    teacher = teacher.to(device)
    if not lora_layers(core):
        add_adapters(core, form=cfg.form, rank=cfg.rank, alpha=cfg.alpha)
    n_train = sum(p.numel() for p in core.parameters() if p.requires_grad)
    if cfg.grad_checkpointing and hasattr(core, "set_grad_checkpointing"):
        core.set_grad_checkpointing(True)
    core.eval()  # frozen parts keep inference behaviour; LoRA has no dropout/batch statistics
    H, W = mono[0]["image"].shape[-2:]
    replay = replay if replay is not None and len(replay) else EmptyDataset()
    V = replay[0]["images"].shape[0] if len(replay) else 0
    mix = ReplayMixDataset(mono, replay)
    ratio = cfg.replay_ratio if len(replay) else 0.0
    sampler = ReplaySampler.for_dataset(mix, replay_ratio=ratio, seed=cfg.seed)

    params = [p for p in core.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    run_cfg = run_config if run_config is not None else dataclasses.asdict(cfg)

    # -- resume
    ckpt = CheckpointManager(out, keep=2)
    start, history = 0, {"loss": [], "distill": [], "replay": []}
    if resume and ckpt.latest() is not None:
        run.check_resume(run_cfg)
        tensors, optim_state, state = ckpt.load()
        own = dict(core.named_parameters())
        with torch.no_grad():
            for k, v in tensors.items():
                own[k].copy_(v)
        optim.load_state_dict(optim_state["optimizer"])
        start, history = int(state["step"]), state["history"]
        log.info("resuming from step %d", start)
    elif not resume and out.exists():
        for name in ("checkpoints", "tb", "metrics.jsonl"):
            target = out / name
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:
        run.prepare()  # also drops temp files a killed run left
        write_yaml(out / "config.yaml", run_cfg)

    # Images for the final base-vs-trained comparison (base = the same model with adapters switched off).
    diag_images = torch.stack([mono[i]["image"] for i in pick(len(mono), cfg.diag_images, cfg.seed)])
    eval_set, eval_held_out = depth_eval_set(held, mono, replay, cfg.eval_images, cfg.seed)

    model, optim = accelerator.prepare(core, optim)
    batches = StepBatchSampler(
        sampler, cfg.batch_size, start, cfg.steps, accelerator.process_index, accelerator.num_processes
    )
    loader = DataLoader(
        mix,
        batch_sampler=batches,
        collate_fn=replay_collate,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
    )
    logger = RunLogger(out, enabled=accelerator.is_main_process, resume_step=start if start else None)
    bar = tqdm(
        total=cfg.steps,
        initial=start,
        desc="distill",
        dynamic_ncols=True,
        disable=not (cfg.progress and accelerator.is_local_main_process),
    )
    step = start
    try:
        for batch in loader:
            for g in optim.param_groups:
                g["lr"] = cfg.lr * lr_factor(step, cfg)
            with accelerator.autocast():
                loss, parts = distill_step_loss(model, core, teacher, batch, cfg, device)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise Tune3DError(f"distill: loss became {value} at step {step}; lower --lr")
            optim.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if cfg.grad_clip:
                accelerator.clip_grad_norm_(params, cfg.grad_clip)
            optim.step()
            history["loss"].append(value)
            history["distill"].append(parts.get("distill_single", parts.get("distill_multiview", math.nan)))
            history["replay"].append(parts.get("replay", math.nan))
            step += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                logger.log(step, loss=value, lr=optim.param_groups[0]["lr"], **parts)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}")
            if step % cfg.save_every == 0 or step == cfg.steps:
                accelerator.wait_for_everyone()
                if accelerator.is_main_process:
                    ckpt.save(
                        step,
                        adapter_state_dict(core),
                        {"optimizer": optim.state_dict()},
                        {"history": history},
                    )
    finally:
        bar.close()
        logger.close()

    seconds = time.time() - t0
    metrics: dict[str, Any] = {}
    if accelerator.is_main_process:
        save_adapters(core, out / "adapter.safetensors")
        form = adapter_form(core)
        metrics = {
            "steps": step,
            "seconds": round(seconds, 3),
            "trainable_params": n_train,
            "form": form,
            "rank": getattr(core, "_tune3d_adapters", {}).get("rank", cfg.rank),
            "alpha": getattr(core, "_tune3d_adapters", {}).get("alpha", cfg.alpha),
            "teacher": teacher.spec,
            "resolution": [int(H), int(W)],
            "replay_views": int(V),
            "n_mono": len(mono),
            "n_replay_tuples": len(replay),
            "loss": loss_summary(history),
        }
        metrics.update(base_vs_trained(core, diag_images, eval_set, eval_held_out, out))
        write_json(out / "metrics.json", metrics)
    accelerator.wait_for_everyone()
    return metrics
