"""CLI: ``tune3d probe``: linear segmentation / depth probes of original, fine-tuned or assembled features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tune3d.cli._args import given_on_command_line, parse_hw, resolve_command_config
from tune3d.errors import Tune3DError

# What a probe's config.yaml records beside its "probe" settings (run identity, inputs given as options).
PROBE_RECORD_KEYS = (
    *("task", "backbone", "mode", "weights", "finetuned_weights", "feature_width", "cls_width"),
    *("num_classes", "num_train", "num_test", "command", "train", "test", "train_frames", "test_frames"),
    *("dataset", "root", "split_train", "split_test", "protocol"),
    *("accumulation", "num_processes", "global_batch", "crop", "paper"),
)


def _as_list(hw: tuple[int, int] | None) -> list[int] | None:
    return None if hw is None else list(hw)


def scene_samples(path: str | Path, task: str, frames: str | None = None) -> tuple[Any, list[Any]]:
    """Probe samples of one scene or a folder of scenes: ``(samples, scenes)``.

    ``frames`` (``"A:B[:STEP]"``) selects frames of every scene. The samples are the concatenation of one
    :class:`~tune3d.probe.SceneSamples` per scene (read lazily). A scene without the task's targets is a
    one-line error naming it.
    """
    from torch.utils.data import ConcatDataset

    from tune3d.data import load_scenes, parse_frame_range
    from tune3d.probe import SceneSamples

    scenes = load_scenes(path)
    parts = []
    for scene in scenes:
        if task == "semseg" and not scene.has_semantics:
            raise Tune3DError(
                f"{scene.path or path}: scene has no semantic labels; a semseg probe needs labelled frames "
                "(use --task depth)"
            )
        idx = parse_frame_range(frames, len(scene)) if frames else None
        if idx is not None and not idx:
            raise Tune3DError(f"{scene.path or path}: frame range {frames!r} selects no frames")
        parts.append(SceneSamples(scene, task, idx))
    return (parts[0] if len(parts) == 1 else ConcatDataset(parts)), scenes


def class_names_of(scenes: list[Any]) -> list[str] | None:
    """The scenes' shared class names (``None`` when absent or when scenes disagree)."""
    names = [tuple(s.class_names) for s in scenes if getattr(s, "class_names", None)]
    if not names or len(set(names)) != 1 or len(names) != len(scenes):
        return None
    return list(names[0])


def probe_cmd(
    ctx: typer.Context,
    task: str = typer.Option(..., "--task", "-t", help="semseg | depth."),
    backbone: str = typer.Option(..., "--backbone", "-b", help="Registry name, see `tune3d backbones`."),
    train: Path | None = typer.Option(
        None, "--train", help="Scene or folder of scenes to train the probe on."
    ),
    test: Path | None = typer.Option(None, "--test", help="Scene or folder of scenes to evaluate on."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (metrics.json, head, predictions)."),
    mode: str = typer.Option(
        "original", "--mode", "-m", help="original | finetuned | assembled | duplicated."
    ),
    weights: Path | None = typer.Option(
        None, "--weights", help="Original weights (.pth/.safetensors/tune3d)."
    ),
    finetuned: Path | None = typer.Option(
        None, "--finetuned", help="Fine-tuned weights (tune3d finetune output or FiT3D *_finetuned.pth)."
    ),
    allow_random_init: bool = typer.Option(
        False, "--allow-random-init", help="Random original weights when none can be loaded (tests)."
    ),
    train_frames: str | None = typer.Option(None, "--train-frames", help="Frames A:B[:STEP] of --train."),
    test_frames: str | None = typer.Option(None, "--test-frames", help="Frames A:B[:STEP] of --test."),
    iters: int | None = typer.Option(None, "--iters", min=1, help="Probe training iterations [4000]."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Probe batch size [8]."),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate [seg 1e-3, depth 1e-4]."),
    resolution: str | None = typer.Option(
        None, "--resolution", help="Resize images (and targets) to HxW before the backbone [native]."
    ),
    max_depth: float | None = typer.Option(
        None, "--max-depth", help="Depth bins up to this many metres [10]."
    ),
    cache_features: bool = typer.Option(
        False, "--cache-features", help="Keep the features under OUT/cache and reuse them on a rerun."
    ),
    seed: int | None = typer.Option(None, "--seed"),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bars."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Benchmark dataset (see `tune3d datasets`) instead of --train/--test."
    ),
    root: Path | None = typer.Option(None, "--root", help="Root folder of --dataset."),
    split_train: str = typer.Option("train", "--split-train", help="Training split of --dataset."),
    split_test: str = typer.Option("val", "--split-test", help="Evaluation split of --dataset."),
    protocol: str = typer.Option(
        "fast",
        "--protocol",
        help="fast (cached features) | paper (full DINOv2/FiT3D protocol); --dataset only.",
    ),
    amp: str = typer.Option("none", "--amp", help="paper: backbone precision on GPU, none | fp16 | bf16."),
    workers: int = typer.Option(0, "--workers", min=0, help="paper: data-loading/augmentation workers."),
    config: Path | None = typer.Option(
        None, "--config", help="YAML with ProbeConfig fields, or a probe's config.yaml (flags win)."
    ),
) -> None:
    """Train and evaluate a linear probe (DINOv2/FiT3D protocol) on frozen backbone features.

    Modes: `original` (the base model), `finetuned` (the --finetuned model alone), `assembled` (both,
    concatenated: FiT3D's test-time assembly) and `duplicated` (the original twice: the doubled-width
    control). Data: scenes (--train/--test) or a benchmark dataset (--dataset NAME --root ROOT).
    """
    from tune3d.engine.runfolder import check_out_dir

    check_out_dir(out)  # before any work: a file or read-only --out is one line, exit 2
    from tune3d.config import read_config_file
    from tune3d.fit3d.assembly import ASSEMBLY_MODES, build_assembled
    from tune3d.probe import TASKS, ProbeConfig, run_probe

    if task not in TASKS:
        raise Tune3DError(f"--task {task!r}: choose one of {', '.join(TASKS)}")
    if mode not in ASSEMBLY_MODES:
        raise Tune3DError(f"--mode {mode!r}: choose one of {', '.join(ASSEMBLY_MODES)}")
    if amp not in ("none", "fp16", "bf16"):
        raise Tune3DError(f"--amp {amp!r}: choose none, fp16 or bf16")
    if dataset is not None:
        if root is None:
            raise Tune3DError("--dataset needs --root (the dataset's folder)")
        if train is not None or test is not None:
            raise Tune3DError("--dataset reads its own splits; leave out --train/--test")
        from tune3d.data.benchmarks import open_dataset
        from tune3d.probe.datasets import PROTOCOLS

        if protocol not in PROTOCOLS:
            raise Tune3DError(f"--protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
        for split in (split_train, split_test):  # a bad layout fails before any model is built
            open_dataset(dataset, root, split, task)
    else:
        if train is None or test is None:
            raise Tune3DError("give --train and --test scenes, or --dataset NAME --root ROOT")
        if protocol != "fast":
            raise Tune3DError("--protocol paper needs --dataset (scene folders use the fast protocol)")
        for flag, p in (("--train", train), ("--test", test)):
            if not p.exists():
                raise Tune3DError(f"{p}: {flag} data not found")
        # data first: a missing label set fails before any model is built
        train_samples, train_scenes = scene_samples(train, task, train_frames)
        test_samples, test_scenes = scene_samples(test, task, test_frames)
    # Unset options (None) leave the protocol's value; a probe's config.yaml nests the settings under "probe".
    flags = dict(iters=iters, batch_size=batch_size, lr=lr, max_depth=max_depth, seed=seed, device=device)
    flags = {k: v for k, v in flags.items() if v is not None}
    flags.update(
        image_size=_as_list(parse_hw(resolution)), cache_features=cache_features, progress=not no_progress
    )
    typed = given_on_command_line(ctx) & set(flags)
    typed |= {"image_size"} if "resolution" in given_on_command_line(ctx) else set()
    typed |= {"progress"} if "no_progress" in given_on_command_line(ctx) else set()
    cfg = resolve_command_config(
        ctx, ProbeConfig, config, flags, typed, section="probe", ignore=PROBE_RECORD_KEYS
    )
    in_file = (
        set() if config is None else set(read_config_file(config).get("probe") or read_config_file(config))
    )
    dev = None if cfg.device == "auto" else cfg.device
    model = build_assembled(
        backbone,
        weights=str(weights) if weights else None,
        finetuned=str(finetuned) if finetuned else None,
        mode=mode,
        allow_random_init=allow_random_init,
        device=dev,
    )
    if dataset is not None:
        from tune3d.probe.datasets import run_dataset_probe
        from tune3d.probe.paper import PAPER_ITERS, PaperOptions

        paper_options = PaperOptions(amp=amp, num_workers=workers)
        if protocol == "paper":
            if iters is None and "iters" not in in_file:
                cfg.iters = PAPER_ITERS[task]
            if batch_size is not None:
                paper_options.batch_size = batch_size

        metrics = run_dataset_probe(
            dataset,
            root,
            task,
            model,
            cfg,
            out,
            split_train=split_train,
            split_test=split_test,
            protocol=protocol,
            run_info={"command": "probe"},
            max_depth_set=max_depth is not None or "max_depth" in in_file,
            paper_options=paper_options,
        )
    else:
        class_names = class_names_of(train_scenes) if task == "semseg" else None
        run_info = {
            "command": "probe",
            "train": str(train),
            "test": str(test),
            "train_frames": train_frames,
            "test_frames": test_frames,
        }
        metrics = run_probe(
            task, model, train_samples, test_samples, cfg, out, class_names=class_names, run_info=run_info
        )
    if task == "semseg":
        summary = f"mIoU {metrics['mIoU']:.4f}, mAcc {metrics['mAcc']:.4f}, aAcc {metrics['aAcc']:.4f}"
    else:
        summary = (
            f"rmse {metrics['rmse']:.4f}, abs_rel {metrics['abs_rel']:.4f}, delta1 {metrics['delta1']:.4f}"
        )
    typer.echo(f"probe {task} [{mode}] {backbone}: {summary}; wrote {out / 'metrics.json'}")


def register(app: typer.Typer) -> None:
    """Register this area's commands on the root app."""
    app.command("probe")(probe_cmd)
