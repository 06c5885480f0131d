"""CLI: ``tune3d backbones`` (list the registry) and ``tune3d features`` (dense features of a scene)."""

from __future__ import annotations

from pathlib import Path

import typer

from tune3d.cli._args import parse_hw
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
) -> None:
    """Extract dense patch features of a scene's frames; write features, PCA images and meta.json."""
    from tune3d.engine.runfolder import check_out_dir

    check_out_dir(out)  # before any work: a file or read-only --out is one line, exit 2
    import torch
    from tqdm import tqdm

    from tune3d.backbones import (
        RESIZE_MODES,
        create_backbone,
        extract_features,
        network_input_size,
        open_cache,
    )
    from tune3d.data import load_scene, parse_frame_range
    from tune3d.io import save_safetensors_atomic, write_json, write_yaml
    from tune3d.viz import fit_pca, save_png

    if resize not in RESIZE_MODES:
        raise Tune3DError(f"--resize {resize!r}: choose one of {', '.join(RESIZE_MODES)}")
    if dtype not in ("float32", "float16"):
        raise Tune3DError(f"--dtype {dtype!r}: choose float32 or float16")
    size = parse_hw(resolution)
    layer_ids = _parse_layers(layers)
    sc = load_scene(scene)
    indices = parse_frame_range(frames, len(sc)) if frames else list(range(len(sc)))
    bb = create_backbone(backbone, weights=weights, allow_random_init=allow_random_init, device=device)
    norm = not no_norm
    fcache = open_cache(cache, bb, size, layer_ids, norm, resize) if cache is not None else None

    names = [sc[i].name for i in indices]
    if len(set(names)) != len(names):
        raise Tune3DError(f"{scene}: frame names are not unique")
    images = (sc[i].image() for i in indices)
    store_dtype = torch.float16 if dtype == "float16" else torch.float32
    tensors: dict[str, torch.Tensor] = {}
    cls_tokens: dict[str, torch.Tensor] = {}
    first_size = None
    stream = extract_features(bb, images, size, layer_ids, norm, resize, batch_size, fcache)
    for name, feats in tqdm(zip(names, stream), total=len(names), desc="features", unit="img", leave=False):
        tensors[name] = feats["patch"].to(store_dtype)
        if "cls" in feats:
            cls_tokens[name] = feats["cls"].to(store_dtype)
        for k, v in feats.items():
            if k.startswith("layer."):
                tensors[f"{name}/{k}"] = v.to(store_dtype)
        if first_size is None:
            first_size = tuple(feats["patch"].shape[-2:])

    out.mkdir(parents=True, exist_ok=True)
    meta_st = {"backbone": bb.name, "weights": bb.weights, "patch_size": str(bb.patch_size)}
    save_safetensors_atomic(tensors, out / "features.safetensors", metadata=meta_st)
    if cls_tokens:
        save_safetensors_atomic(cls_tokens, out / "cls.safetensors", metadata=meta_st)

    # One PCA for the whole scene (fitted on evenly spaced frames) so colours are comparable across views.
    step = max(1, len(names) // max(1, pca_frames))
    pca = fit_pca([tensors[n].float() for n in names[::step]])
    for n in names:
        save_png(pca.to_images(tensors[n].float()[None], bb.patch_size)[0], out / "pca" / f"{n}.png")

    frame0 = sc[indices[0]]
    image_size = size or (frame0.height, frame0.width)
    meta = {
        "backbone": bb.name,
        "timm_name": bb.spec.timm_name,
        "weights": bb.weights,
        "weights_source": bb.weights_info.source,
        "patch_size": bb.patch_size,
        "width": bb.width,
        "grid_size": list(first_size),
        "input_size": list(network_input_size(*image_size, bb.patch_size, resize)),
        "image_size": list(image_size),
        "resize": resize,
        "layers": bb.layer_indices(layer_ids),
        "norm": norm,
        "dtype": dtype,
        "scene": str(scene),
        "num_frames": len(names),
        "frames": names,
        "pca_explained_variance": [round(float(v), 6) for v in pca.explained],
        "cache": None
        if fcache is None
        else {"dir": str(fcache.dir), "hits": fcache.hits, "misses": fcache.misses},
    }
    write_json(out / "meta.json", meta)
    write_yaml(
        out / "config.yaml",
        {
            "command": "features",
            "scene": str(scene),
            "backbone": backbone,
            "weights": str(weights) if weights else None,
            "allow_random_init": allow_random_init,
            "frames": frames,
            "resolution": list(size) if size else None,
            "resize": resize,
            "layers": layer_ids,
            "norm": norm,
            "batch_size": batch_size,
            "cache": str(cache) if cache else None,
            "dtype": dtype,
        },
    )
    typer.echo(
        f"wrote {len(names)} feature maps {bb.width}x{first_size[0]}x{first_size[1]} ({bb.name}, weights "
        f"{bb.weights}) to {out}",
        err=True,
    )


def register(app: typer.Typer) -> None:
    """Register this area's commands on the root app."""
    app.command("backbones")(backbones_cmd)
    app.command("features")(features_cmd)
