"""CLI: ``tune3d finetune`` (FiT3D stage II: 3D-aware fine-tuning of a backbone on lifted scenes)."""

from __future__ import annotations

from pathlib import Path

import typer

from tune3d.cli._args import parse_hw, resolve_command_config

# What a finetune run's config.yaml records beside the FinetuneConfig fields (inputs given as options).
RUN_RECORD_KEYS = ("backbone", "weights", "base_weights", "lifted", "val_lifted", "num_processes")


def finetune_cmd(
    ctx: typer.Context,
    lifted: list[Path] = typer.Option(
        ..., "--lifted", "-l", help="Lifted scene folder (repeatable), or a folder of lifted scenes."
    ),
    backbone: str = typer.Option(..., "--backbone", "-b", help="Registry name, see `tune3d backbones`."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (resumes from its checkpoints)."),
    weights: Path | None = typer.Option(None, "--weights", help="Base weights (.pth/.safetensors/tune3d)."),
    allow_random_init: bool = typer.Option(
        False, "--allow-random-init", help="Start from random weights when none can be loaded (tests)."
    ),
    val_lifted: list[Path] = typer.Option(
        [], "--val-lifted", help="Held-out lifted scene(s) for the validation loss (repeatable)."
    ),
    scene_root: Path | None = typer.Option(
        None,
        "--scene-root",
        help="Folder now holding the lifts' source scenes (looked up by folder name; for moved data).",
    ),
    config: Path | None = typer.Option(None, "--config", help="YAML with FinetuneConfig fields (flags win)."),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="Passes over all views [1]."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Stop after this many steps."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Per process [2]."),
    lr: float | None = typer.Option(None, "--lr", help="AdamW learning rate [1e-5]."),
    weight_decay: float | None = typer.Option(None, "--weight-decay", help="AdamW weight decay [1e-4]."),
    grad_clip: float | None = typer.Option(None, "--grad-clip", help="Max grad norm, 0 = off [0.1]."),
    lr_schedule: str | None = typer.Option(None, "--lr-schedule", help="constant | cosine [constant]."),
    warmup_steps: int | None = typer.Option(None, "--warmup-steps", min=0),
    flip_p: float | None = typer.Option(None, "--flip-p", help="Horizontal flip probability [0.5]."),
    views: str | None = typer.Option(None, "--views", help="train | all (adds the lift's held-out views)."),
    resolution: str | None = typer.Option(None, "--resolution", help="Render/train at HxW [lift's]."),
    resize: str | None = typer.Option(None, "--resize", help="To a patch multiple: floor | resize | pad."),
    mask: str | None = typer.Option(None, "--mask", help="Target mask: alpha | binary | none [alpha]."),
    val_max_views: int | None = typer.Option(None, "--val-max-views", min=1, help="Per validation scene."),
    checkpoint_every: int | None = typer.Option(None, "--checkpoint-every", min=1),
    log_every: int | None = typer.Option(None, "--log-every", min=1),
    cache_mb: float | None = typer.Option(None, "--cache-mb", help="Memory budget of loaded Gaussians (MB)."),
    target_cache_mb: float | None = typer.Option(
        None, "--target-cache-mb", min=0, help="Memory budget of rendered targets, 0 = off (MB) [1024]."
    ),
    target_cache: str | None = typer.Option(
        None, "--target-cache", help="Folder keeping rendered targets across runs (safetensors) [none]."
    ),
    seed: int | None = typer.Option(None, "--seed"),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda."),
    mixed_precision: str | None = typer.Option(None, "--mixed-precision", help="auto | no | bf16 | fp16."),
    raster_backend: str | None = typer.Option(None, "--raster-backend", help="auto | torch | gsplat."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    no_prefetch: bool = typer.Option(
        False, "--no-prefetch", help="Render each step's targets in turn, not during the previous step."
    ),
) -> None:
    """Fine-tune a 2D backbone on features rendered from lifted scenes (FiT3D stage II) and export it.

    Runs on CPU, one GPU, or many processes: `accelerate launch [--multi_gpu --num_processes N] -m tune3d
    finetune ...` or `torchrun --nproc_per_node N -m tune3d finetune ...` (per-process batch x N = global).
    """
    from tune3d.engine.runfolder import check_out_dir

    check_out_dir(out)  # before any work: a file or read-only --out is one line, exit 2
    from tune3d.fit3d.finetune import FinetuneConfig, finetune

    flags = dict(
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        grad_clip=grad_clip,
        lr_schedule=lr_schedule,
        warmup_steps=warmup_steps,
        flip_p=flip_p,
        views=views,
        resolution=parse_hw(resolution),
        resize=resize,
        mask=mask,
        val_max_views=val_max_views,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        cache_mb=cache_mb,
        target_cache_mb=target_cache_mb,
        target_cache_dir=target_cache,
        seed=seed,
        device=device,
        mixed_precision=mixed_precision,
        raster_backend=raster_backend,
    )
    if no_progress:
        flags["progress"] = False
    if no_prefetch:
        flags["prefetch"] = False
    flags = {k: v for k, v in flags.items() if v is not None}  # options default to None: unset yields
    cfg = resolve_command_config(ctx, FinetuneConfig, config, flags, given=flags, ignore=RUN_RECORD_KEYS)
    metrics = finetune(
        lifted,
        backbone,
        cfg,
        out,
        weights=weights,
        allow_random_init=allow_random_init,
        val_lifted_dirs=val_lifted,
        scene_root=scene_root,
    )
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        before, after = metrics["val_loss_before"], metrics["val_loss_after"]
        val = f", val {before:.4f} -> {after:.4f}" if before is not None and after is not None else ""
        typer.echo(
            f"finetune: {metrics['steps']} steps, train loss {metrics['train_loss_first']:.4f} -> "
            f"{metrics['train_loss_last']:.4f}{val}; wrote {out / 'backbone.safetensors'}"
        )


def register(app: typer.Typer) -> None:
    """Register this area's commands on the root app."""
    app.command("finetune")(finetune_cmd)
