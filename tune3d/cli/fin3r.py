"""``tune3d distill``: Fin3R fine-tuning of a reconstruction model's encoder by monocular distillation."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import typer

from tune3d.cli._args import config_options, config_values, given_on_command_line, resolve_command_config
from tune3d.errors import Tune3DError
from tune3d.fin3r.config import DistillConfig  # light (no torch): its fields are this command's options

# What a distill run's config.yaml records beside the DistillConfig fields (inputs given as options).
RUN_RECORD_KEYS = ("model", "weights", "teacher", "mono", "replay")


def _check_one_aspect_ratio(mono: Path, tolerance: float = 0.01) -> None:
    """An image folder (not a scene) given as ``--mono`` must hold one aspect ratio: every image is
    resized to ``--resolution`` without cropping, so another shape would be stretched. Reads headers only."""
    from tune3d.data import find_scene_dirs
    from tune3d.data.sources import IMAGE_EXTENSIONS, image_size

    if not mono.is_dir():
        return
    try:
        find_scene_dirs(mono)
        return  # scenes carry intrinsics; their frames are resized with them
    except Tune3DError:
        pass
    files = sorted(p for p in mono.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        return
    h0, w0 = image_size(files[0])
    for f in files[1:]:
        h, w = image_size(f)
        if abs((w / h) / (w0 / h0) - 1) > tolerance:
            raise Tune3DError(
                f"{f}: {w}x{h} has another aspect ratio than {files[0].name} ({w0}x{h0}); --mono images are "
                "resized to --resolution without cropping, so use images of one aspect ratio"
            )


@config_options(DistillConfig, after="out", skip=("progress",))  # --quiet sets progress
def distill_cmd(
    ctx: typer.Context,
    model: str = typer.Option(
        ..., "--model", "-m", help="Reconstruction model, see `tune3d` recon commands."
    ),
    weights: Path | None = typer.Option(None, "--weights", help="Base weights (official .pth/.safetensors)."),
    teacher: str = typer.Option(
        ..., "--teacher", help="hf:<id>[?kind=..], moge:<id>, recon:<model>[@weights] or sensor."
    ),
    mono: Path = typer.Option(
        ...,
        "--mono",
        help="Unlabeled data: an image folder (one aspect ratio) or scene(s). Every image is resized to "
        "--resolution without cropping, as replay frames are.",
    ),
    replay: Path | None = typer.Option(None, "--replay", help="Labelled scene(s) with depth and poses."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from OUT's last checkpoint."),
    allow_random_init: bool = typer.Option(
        False, "--allow-random-init", help="Allow running without --weights (random base; tests/demos)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    config: Path | None = typer.Option(
        None, "--config", help="YAML with DistillConfig fields, or a run's config.yaml (flags win)."
    ),
    **fields: Any,
) -> None:
    """Fin3R: train encoder adapters by monocular distillation (decoder and heads frozen).

    Writes OUT/adapter.safetensors, config.yaml, metrics.json, metrics.jsonl, tb/, checkpoints/ and
    diagnostics/ (encoder feature norms, base vs trained).
    """
    from tune3d.engine.runfolder import check_out_dir

    check_out_dir(out)  # before any work: a file or read-only --out is one line, exit 2
    from tune3d.fin3r.distill import distill

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    values = config_values(ctx, DistillConfig) | {"progress": not quiet}
    typed = given_on_command_line(ctx)
    typed |= {"progress"} if "quiet" in typed else set()
    cfg = resolve_command_config(ctx, DistillConfig, config, values, typed, ignore=RUN_RECORD_KEYS)
    if weights is not None and not weights.is_file() and not weights.is_dir():
        raise Tune3DError(f"{weights}: weights file not found")
    _check_one_aspect_ratio(mono)
    metrics = distill(
        model,
        weights,
        teacher,
        mono,
        replay,
        cfg,
        out,
        allow_random_init=allow_random_init,
        resume=resume,
    )
    if metrics:
        loss = metrics["loss"].get("loss", {})
        norms = metrics.get("feature_norms", {})
        summary = {
            "out": str(out),
            "steps": metrics["steps"],
            "loss_first": loss.get("first_mean"),
            "loss_last": loss.get("last_mean"),
            "mean_norm": {k: round(v["mean_norm"], 4) for k, v in norms.items()},
        }
        typer.echo(json.dumps(summary), err=True)


def register(app: typer.Typer) -> None:
    """Register this area's commands on the root app."""
    app.command("distill")(distill_cmd)
