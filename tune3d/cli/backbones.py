"""CLI: ``tune3d backbones`` (list the registry) and ``tune3d features`` (dense features of a scene)."""

from __future__ import annotations

from pathlib import Path

import typer

from tune3d.cli._args import given_on_command_line, parse_hw, resolve_command_config
from tune3d.errors import Tune3DError


def _parse_layers(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise Tune3DError(f"--layers {text!r}: expected comma-separated block indices, e.g. 3,7,11") from None


def backbones_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    tiny: bool = typer.Option(False, "--tiny", help="Also list the *_tiny test variants."),
) -> None:
    """List the registered backbones: timm name, patch size, feature width and weight sources."""
    import json

    from tune3d.backbones import list_backbones

    specs = list_backbones(include_tiny=tiny)
    if as_json:
        keys = ("name", "timm_name", "patch_size", "width", "depth", "num_prefix_tokens", "mean", "std")
        rows = [{**{k: s.to_dict()[k] for k in keys}, "weights_source": s.weights_source} for s in specs]
        typer.echo(json.dumps(rows, indent=2))
        return
    header = f"{'name':<22} {'timm name':<50} {'patch':>5} {'width':>5}  weights"
    typer.echo(header)
    for s in specs:
        typer.echo(f"{s.name:<22} {s.timm_name:<50} {s.patch_size:>5} {s.width:>5}  {s.weights_source}")


def features_cmd(
    ctx: typer.Context,
    scene: Path = typer.Argument(..., help="Scene folder (any format tune3d.data.load_scene reads)."),
    backbone: str = typer.Option(..., "--backbone", "-b", help="Registry name, see `tune3d backbones`."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    weights: Path | None = typer.Option(None, "--weights", help="Weights file (.pth/.safetensors/tune3d)."),
    allow_random_init: bool = typer.Option(
        False,
        "--allow-random-init",
        help="Use random weights when none can be loaded (recorded in meta.json).",
    ),
    frames: str | None = typer.Option(None, "--frames", help="Frame range A:B[:STEP] (default: all)."),
    resolution: str | None = typer.Option(None, "--resolution", help="Resize images to HxW first."),
    resize: str = typer.Option("resize", "--resize", help="Fit to the patch size: resize | floor | pad."),
    layers: str | None = typer.Option(None, "--layers", help="Block indices, e.g. 3,7,11 (default: last)."),
    no_norm: bool = typer.Option(False, "--no-norm", help="Skip the final LayerNorm."),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    cache: Path | None = typer.Option(None, "--cache", help="Feature cache folder shared between runs."),
    dtype: str = typer.Option("float32", "--dtype", help="Stored feature dtype: float32 | float16."),
    device: str | None = typer.Option(None, "--device", help="cpu / cuda (default: cuda if available)."),
    pca_frames: int = typer.Option(64, "--pca-frames", help="Frames (evenly spaced) used to fit the PCA."),
    config: Path | None = typer.Option(
        None, "--config", help="YAML with FeaturesConfig fields, or a run's config.yaml (flags win)."
    ),
) -> None:
    """Extract dense patch features of a scene's frames; write features, PCA images and meta.json."""
    from tune3d.engine.runfolder import check_out_dir

    check_out_dir(out)  # before any work: a file or read-only --out is one line, exit 2
    import dataclasses

    from tune3d.backbones import create_backbone
    from tune3d.backbones.scene_features import FeaturesConfig, write_scene_features
    from tune3d.data import load_scene, parse_frame_range
    from tune3d.io import write_yaml

    fields = {f.name for f in dataclasses.fields(FeaturesConfig)}
    values = {k: v for k, v in ctx.params.items() if k in fields}
    values.update(
        resolution=parse_hw(resolution),
        layers=_parse_layers(layers),
        norm=not no_norm,
        cache=None if cache is None else str(cache),
    )
    typed = given_on_command_line(ctx)
    typed |= {"norm"} if "no_norm" in typed else set()
    cfg = resolve_command_config(ctx, FeaturesConfig, config, values, typed, ignore=FEATURES_RECORD_KEYS)
    cfg.validate()
    sc = load_scene(scene)
    indices = parse_frame_range(cfg.frames, len(sc)) if cfg.frames else list(range(len(sc)))
    bb = create_backbone(backbone, weights=weights, allow_random_init=allow_random_init, device=cfg.device)
    meta = write_scene_features(bb, sc, indices, cfg, out, source=str(scene))
    write_yaml(
        out / "config.yaml",
        {
            "command": "features",
            "scene": str(scene),
            "backbone": backbone,
            "weights": str(weights) if weights else None,
            "allow_random_init": allow_random_init,
            **dataclasses.asdict(cfg),
        },
    )
    h, w = meta["grid_size"]
    typer.echo(
        f"wrote {meta['num_frames']} feature maps {bb.width}x{h}x{w} ({bb.name}, weights {bb.weights}) "
        f"to {out}",
        err=True,
    )


# What a features run's config.yaml records beside the FeaturesConfig fields (inputs given as options).
FEATURES_RECORD_KEYS = ("command", "scene", "backbone", "weights", "allow_random_init")


def register(app: typer.Typer) -> None:
    """Register this area's commands on the root app."""
    app.command("backbones")(backbones_cmd)
    app.command("features")(features_cmd)
