"""CLI: ``tune3d lift`` (FiT3D stage I: lift a backbone's 2D features of scenes into feature Gaussians)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from tune3d.cli._args import given_on_command_line, parse_hw, resolve_command_config
from tune3d.errors import Tune3DError


def passive_omp_wait() -> None:
    """Default ``OMP_WAIT_POLICY=PASSIVE`` (a user's own setting wins); only effective before torch loads
    OpenMP. The lift runs thousands of small parallel regions per step; with the default spin-waiting, two
    threads on a busy 2-core machine spin against each other and ran 4-10x slower than passive waiting;
    on an idle machine passive waiting costs 12-24% (``OMP_WAIT_POLICY=ACTIVE``; BENCHMARKS.md, "Lifting
    7-Scenes")."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def lift_cmd(
    ctx: typer.Context,
    scenes: list[Path] = typer.Argument(
        ..., help="Scene folder(s), any format tune3d.data.load_scene reads."
    ),
    backbone: str = typer.Option(..., "--backbone", "-b", help="Registry name, see `tune3d backbones`."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (one sub-folder per scene if several)."),
    weights: Path | None = typer.Option(
        None, "--weights", help="Backbone weights (.pth/.safetensors/tune3d)."
    ),
    allow_random_init: bool = typer.Option(
        False, "--allow-random-init", help="Use random backbone weights when none can be loaded."
    ),
    frames: str | None = typer.Option(None, "--frames", help="Frame range A:B[:STEP] (default: all)."),
    holdout_every: int = typer.Option(8, "--holdout-every", help="Hold out every K-th frame (0 = none)."),
    resolution: str | None = typer.Option(
        None, "--resolution", help="Render size HxW (default: frame size)."
    ),
    feature_resolution: str | None = typer.Option(
        None,
        "--feature-resolution",
        help="Backbone input HxW (default: render size up to ~224 px short side).",
    ),
    iters: int = typer.Option(1000, "--iters", min=1, help="Optimisation steps per scene."),
    latent_dim: int = typer.Option(64, "--latent-dim", min=1, help="Per-Gaussian latent feature size."),
    max_gaussians: int = typer.Option(20_000, "--max-gaussians", min=0, help="Densification cap (0 = none)."),
    init_points: int = typer.Option(
        20_000, "--init-points", min=1, help="Initial point cloud size (at most)."
    ),
    max_eval_views: int = typer.Option(
        25, "--max-eval-views", min=0, help="Held-out views scored, evenly spaced (0 = all)."
    ),
    seed: int = typer.Option(0, "--seed"),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", min=0, help="Steps between checkpoints."),
    backend: str = typer.Option("auto", "--backend", help="Rasterizer: auto | torch | gsplat."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    feature_cache: Path | None = typer.Option(
        None, "--feature-cache", help="Backbone feature cache folder (default: OUT/feature_cache)."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not cache backbone features on disk."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Discard earlier results in the output folders."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    config: Path | None = typer.Option(
        None, "--config", help="YAML with LiftConfig fields, or a lift's config.yaml (flags win)."
    ),
) -> None:
    """Lift 2D backbone features of each scene into 3D feature Gaussians (FiT3D stage I).

    Writes gaussians.safetensors, decoder.safetensors, point_cloud.ply, renders/, config.yaml and (last)
    metrics.json per scene. Finished scenes are skipped, interrupted ones resume. Under torchrun / accelerate
    launch each process lifts its own share of the scenes.
    """
    passive_omp_wait()  # first: before anything imports torch
    from tune3d.engine.runfolder import check_out_dir

    check_out_dir(out)  # before any work: a file or read-only --out is one line, exit 2
    import dataclasses
    import json
    import logging

    from tune3d.data import detect_format
    from tune3d.engine.devices import dist_env, rank_device
    from tune3d.splatting.lift_format import LiftConfig
    from tune3d.splatting.lift_many import lift_scenes

    cache = None if no_cache else str(feature_cache or out / "feature_cache")
    values = dict(
        iters=iters,
        latent_dim=latent_dim,
        resolution=parse_hw(resolution, "--resolution"),
        feature_resolution=parse_hw(feature_resolution, "--feature-resolution"),
        frames=frames,
        holdout_every=holdout_every,
        seed=seed,
        backend=backend,
        device=device,
        checkpoint_every=checkpoint_every,
        feature_cache=cache,
        progress=not quiet,
        init_points=init_points,
        max_gaussians=max_gaussians,
        max_eval_views=max_eval_views,
    )
    typed = given_on_command_line(ctx)
    typed |= {"feature_cache"} if typed & {"feature_cache", "no_cache"} else set()
    typed |= {"progress"} if "quiet" in typed else set()
    # A lift's config.yaml nests the settings under "lift" beside the scene and backbone it was made of.
    cfg = resolve_command_config(
        ctx, LiftConfig, config, values, typed, section="lift", ignore=("scene", "backbone")
    )
    if cfg.backend not in ("auto", "torch", "gsplat"):
        raise Tune3DError(f"--backend {cfg.backend!r}: choose auto, torch or gsplat")
    if cfg.device not in ("auto", "cpu", "cuda") and not cfg.device.startswith("cuda:"):
        raise Tune3DError(f"--device {cfg.device!r}: choose auto, cpu or cuda")
    for s in scenes:
        detect_format(s)  # a missing or unreadable scene fails before any work
    rank, world, local_rank = dist_env()
    cfg = dataclasses.replace(cfg, device=rank_device(cfg.device, local_rank, world))
    logging.basicConfig(level=logging.INFO if cfg.progress else logging.WARNING, format="%(message)s")
    from tune3d.backbones import create_backbone
    from tune3d.engine import resolve_device

    bb = create_backbone(
        backbone,
        weights=weights,
        allow_random_init=allow_random_init,
        device=resolve_device(cfg.device),
        seed=cfg.seed,
    )
    results = lift_scenes(scenes, bb, cfg, out, rank=rank, world_size=world, overwrite=overwrite)
    keys = ("psnr", "ssim", "feature_l1", "feature_cosine", "initial_psnr", "initial_feature_cosine")
    for out_dir, m in results.items():
        summary = {k: round(float(m[k]), 4) for k in keys if k in m}
        summary["num_gaussians"] = m.get("num_gaussians")
        typer.echo(f"{out_dir}: {json.dumps(summary)}")


def register(app: typer.Typer) -> None:
    """Register this area's commands on the root app."""
    app.command("lift")(lift_cmd)
