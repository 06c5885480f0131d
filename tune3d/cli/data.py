"""``tune3d data``: make synthetic scenes, inspect and convert scene folders."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tune3d.cli._args import parse_hw

data_app = typer.Typer(help="Scenes: synthesize, inspect, convert.", no_args_is_help=True)


def scene_info(scene) -> dict:
    """Summary dict of a scene (first frame's camera; sizes/intrinsics may vary per frame)."""
    f = scene[0]
    sizes = {(fr.width, fr.height) for fr in scene.frames}
    return {
        "name": scene.name,
        "format": scene.format,
        "path": scene.path,
        "num_frames": len(scene),
        "width": f.width,
        "height": f.height,
        "fx": float(f.K[0, 0]),
        "fy": float(f.K[1, 1]),
        "cx": float(f.K[0, 2]),
        "cy": float(f.K[1, 2]),
        "uniform_size": len(sizes) == 1,
        "camera_model": f.camera_model,
        "has_depth": scene.has_depth,
        "has_semantics": scene.has_semantics,
        "num_classes": None if scene.class_names is None else len(scene.class_names),
        "class_names": scene.class_names,
        "num_points": 0 if scene.points is None else int(len(scene.points)),
        "splits": {k: len(v) for k, v in scene.splits.items()},
    }


@data_app.command("synth")
def synth(
    out: Path = typer.Argument(..., help="Output folder (scenes go to OUT/scene_000, ...)."),
    scenes: int = typer.Option(2, "--scenes", min=1, help="Number of scenes."),
    views: int = typer.Option(24, "--views", min=1, help="Views per scene."),
    resolution: str = typer.Option("240x320", "--resolution", help="HxW."),
    seed: int = typer.Option(0, "--seed", help="Random seed (scene i uses (seed, i))."),
    points: int = typer.Option(50_000, "--points", min=0, help="Surface points sampled per scene."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dataset."),
) -> None:
    """Render procedural furnished rooms with depth and semantic labels."""
    import time

    from tune3d.data.synth import CLASS_NAMES, synth_dataset

    H, W = parse_hw(resolution)
    t0 = time.perf_counter()
    paths = synth_dataset(
        out, scenes, views, (H, W), seed, num_points=points, overwrite=overwrite, progress=True
    )
    dt = time.perf_counter() - t0
    typer.echo(
        f"wrote {len(paths)} scene(s) x {views} views at {H}x{W} to {out} "
        f"({len(CLASS_NAMES)} classes, {dt:.1f} s)"
    )


@data_app.command("info")
def info(
    path: Path = typer.Argument(..., help="A scene folder (any supported layout) or a folder of scenes."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per line."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Read PATH as this benchmark dataset (see `tune3d datasets`)."
    ),
    split: str = typer.Option("val", "--split", help="Split of --dataset [val]."),
    task: str | None = typer.Option(None, "--task", help="Task of --dataset [its main task]."),
) -> None:
    """Summarize a scene: frames, camera, depth/labels, points, splits (or a benchmark dataset's split)."""
    from tune3d.data import find_scene_dirs, load_scene

    if dataset is not None:
        _dataset_info(path, dataset, split, task, as_json)
        return
    for d in find_scene_dirs(path):
        s = scene_info(load_scene(d))
        if as_json:
            typer.echo(json.dumps(s))
            continue
        typer.echo(
            f"{s['name']} [{s['format']}] {s['num_frames']} frames {s['width']}x{s['height']} "
            f"fx={s['fx']:.2f} fy={s['fy']:.2f} cx={s['cx']:.2f} cy={s['cy']:.2f} "
            f"depth={'yes' if s['has_depth'] else 'no'} labels={'yes' if s['has_semantics'] else 'no'} "
            f"points={s['num_points']} splits={s['splits'] or '-'}"
        )


def _dataset_info(path: Path, name: str, split: str, task: str | None, as_json: bool) -> None:
    from tune3d.data.benchmarks import open_dataset

    ds = open_dataset(name, path, split, task)
    s = {
        "dataset": name,
        "root": str(path),
        "split": split,
        "task": ds.task,
        "num_samples": len(ds),
        "num_classes": ds.num_classes,
        "class_names": ds.class_names,
        "max_depth": ds.max_depth if ds.task == "depth" else None,
        "eval_crop": ds.info.eval_crop if ds.task == "depth" else None,
    }
    if as_json:
        typer.echo(json.dumps(s))
    else:
        extra = f"{s['num_classes']} classes" if ds.task == "semseg" else f"max depth {s['max_depth']} m"
        typer.echo(f"{name} [{split}] {ds.task}: {len(ds)} samples, {extra} ({path})")


@data_app.command("convert")
def convert(
    src: Path = typer.Argument(
        ..., help="Any readable scene (7-Scenes, nerfstudio, COLMAP, ScanNet++, tune3d)."
    ),
    out: Path = typer.Argument(..., help="Output folder in the tune3d format."),
    frames: str = typer.Option(
        None, "--frames", help="Frame selection 'A:B[:STEP]' (comma-separated list ok)."
    ),
    resolution: str = typer.Option(None, "--resolution", help="Resize to HxW (default: keep)."),
    depth_format: str = typer.Option("auto", "--depth-format", help="auto | npy | png16."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty OUT."),
) -> None:
    """Convert a scene to the tune3d format (scene.json written last)."""
    from tune3d.data import load_scene, write_scene

    scene = load_scene(src)
    if frames:
        scene = scene.subset(frames)
    if resolution:
        scene = scene.resized(*parse_hw(resolution))
    write_scene(scene, out, overwrite=overwrite, depth_format=depth_format, progress=True)
    typer.echo(f"wrote {len(scene)} frames of {scene.name} [{scene.format}] to {out}")


def register(app: typer.Typer) -> None:
    """Register this area's commands on the root app."""
    app.add_typer(data_app, name="data")
