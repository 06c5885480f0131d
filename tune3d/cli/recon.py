"""CLI commands of the recon area: ``reconstruct``, ``train-recon``, ``eval-recon``."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from tune3d.cli._args import given_on_command_line, parse_hw, resolve_command_config
from tune3d.errors import Tune3DError


def _model_name(model: str | None, weights: Path | None) -> str:
    """``--model``, or the registry name recorded in ``model.json`` beside ``--weights``."""
    if model:
        return model
    if weights is not None:
        meta = (weights.parent if weights.is_file() else weights) / "model.json"
        if meta.is_file():
            from tune3d.io import read_json

            name = read_json(meta).get("model")
            if name:
                return str(name)
    raise Tune3DError("--model NAME is required (no model.json beside --weights)")


def _model_meta(weights: Path | None) -> dict:
    """``model.json`` beside ``--weights`` (written by ``train-recon``), or ``{}``."""
    if weights is None:
        return {}
    meta = (weights.parent if weights.is_file() else weights) / "model.json"
    if not meta.is_file():
        return {}
    from tune3d.io import read_json

    data = read_json(meta)
    return data if isinstance(data, dict) else {}


def _trained_size(net, weights: Path | None) -> int | None:
    """The input size ``weights`` were trained at (``resolution`` in their ``model.json``): the long side
    for CroCo models, the width for VGGT; ``None`` when not recorded."""
    res = _model_meta(weights).get("resolution")
    if not (isinstance(res, list) and len(res) == 2 and all(isinstance(v, int) and v > 0 for v in res)):
        return None
    from tune3d.recon.inference import model_family

    return res[1] if model_family(net) == "vggt" else max(res)


def _build(
    model: str | None, weights: Path | None, allow_random_init: bool, adapter: Path | None, device: str
):
    from tune3d.engine import resolve_device
    from tune3d.recon import create_model
    from tune3d.recon.hub_weights import HUB_MODELS, resolve_weights

    hub_name = HUB_MODELS.get(str(weights)) if weights is not None else None
    if weights is not None:
        weights = resolve_weights(weights)  # a local path, or a Hugging Face id via its cache / the hub
    name = _model_name(model or hub_name, weights)
    net = create_model(
        name, weights=weights, device=resolve_device(device), allow_random_init=allow_random_init
    )
    if adapter is not None:
        if not adapter.is_file():
            raise Tune3DError(f"{adapter}: adapter file not found")
        from tune3d.fin3r.adapters import load_adapters

        load_adapters(net, adapter)
        net.eval()
    net.trained_input_size = _trained_size(net, weights)  # the default --size (inference.default_size)
    return name, net


# What an eval-recon run's config.yaml records beside the EvalReconConfig fields (inputs given as options).
EVAL_RECORD_KEYS = ("model", "weights", "adapter", "data")


def register(app: typer.Typer) -> None:
    """Register this area's commands on the root app."""

    @app.command("reconstruct")
    def reconstruct(
        ctx: typer.Context,
        images: list[Path] = typer.Argument(
            ..., help="Input images and/or folders of images (at least two)."
        ),
        out: Path = typer.Option(..., "--out", help="Output folder."),
        model: str | None = typer.Option(None, "--model", help="Registry name (default: model.json)."),
        weights: Path | None = typer.Option(
            None, "--weights", help="Checkpoint (.pth/.safetensors/HF folder)."
        ),
        allow_random_init: bool = typer.Option(False, "--allow-random-init", help="Run without weights."),
        adapter: Path | None = typer.Option(None, "--adapter", help="Fin3R adapter file."),
        size: int | None = typer.Option(
            None,
            "--size",
            help="Input size: long side (CroCo; 224 = square crop) or width (VGGT); default: the training "
            "size in model.json beside --weights, else 512 / 518. Aspect ratios are kept: CroCo models "
            "need one aspect ratio for all images, VGGT pads other shapes with white.",
        ),
        mode: str = typer.Option("crop", "--mode", help="VGGT preprocessing: crop | pad."),
        conf_threshold: float | None = typer.Option(
            None,
            "--conf-threshold",
            help="Keep points with conf > this (default: 3 for CroCo, median for VGGT).",
        ),
        previews: bool = typer.Option(True, "--previews/--no-previews", help="Write PNG previews."),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
        align: str = typer.Option(
            "global", "--align", help="Pairwise models: global (pair graph + global alignment) | none."
        ),
        graph: str = typer.Option(
            "complete", "--graph", help="Pair graph: complete | swin-K | logwin-K | oneref-I."
        ),
        niter: int = typer.Option(300, "--niter", min=0, help="Global-alignment steps."),
        poses: Path | None = typer.Option(
            None, "--poses", help="Known cameras: a cameras.json or a scene folder, one view per image."
        ),
        intrinsics: Path | None = typer.Option(
            None, "--intrinsics", help="Known K of the input images: text 3x3 matrix or 'fx fy cx cy'."
        ),
        export: str = typer.Option("", "--export", help="Extra exports, comma-separated: colmap, glb."),
        config: Path | None = typer.Option(
            None, "--config", help="YAML with ReconstructConfig fields, or a run's config.yaml (flags win)."
        ),
    ) -> None:
        """Reconstruct images: predictions.npz, points.ply, cameras.json, previews/ (+ colmap/, scene.glb).

        Pairwise models (DUSt3R, MASt3R) run every pair of the pair graph and fuse them by global
        alignment (``--align none``: every image paired with the first); CUT3R and VGGT take all images
        in one forward (CUT3R streamed; ``--poses`` with K feed its ray-map input). Outputs are in image
        1's camera frame unless ``--poses`` gives the world.
        """
        from tune3d.engine.runfolder import check_out_dir

        check_out_dir(out)  # before any work: a file or read-only --out is one line, exit 2
        import dataclasses

        from tune3d.recon.reconstruct_config import RECORD_KEYS, ReconstructConfig

        fields = {f.name for f in dataclasses.fields(ReconstructConfig)}
        values = {k: v for k, v in ctx.params.items() if k in fields}
        cfg = resolve_command_config(
            ctx, ReconstructConfig, config, values, given_on_command_line(ctx), ignore=RECORD_KEYS
        )
        size, mode, conf_threshold = cfg.size, cfg.mode, cfg.conf_threshold
        device, align, graph, niter, export = cfg.device, cfg.align, cfg.graph, cfg.niter, cfg.export
        if size is not None and size <= 0:
            raise Tune3DError(f"--size {size}: must be a positive number of pixels")
        if conf_threshold is not None and not math.isfinite(conf_threshold):
            raise Tune3DError(f"--conf-threshold {conf_threshold}: must be a finite number")
        if niter < 0:
            raise Tune3DError(f"--niter {niter}: must be at least 0")

        from tune3d.recon.export import parse_exports, write_reconstruct_run
        from tune3d.recon.graph import parse_graph
        from tune3d.recon.inference import (
            ALIGN_MODES,
            default_conf_threshold,
            list_images,
            model_family,
            prepare_images,
        )
        from tune3d.recon.inference import reconstruct as run

        parse_exports(export)
        if align not in ALIGN_MODES:
            raise Tune3DError(f"--align {align!r}: expected one of {', '.join(ALIGN_MODES)}")
        parse_graph(graph)
        images = list_images(images)
        name, net = _build(model, weights, allow_random_init, adapter, device)
        if len(images) < 2:
            where = images[0] if images else "reconstruct"
            raise Tune3DError(f"{where}: need at least two images, got {len(images)}")
        prep = prepare_images(images, net, size=size, mode=mode)
        known_c2w = known_K = None
        rays = model_family(net) == "cut3r"  # CUT3R takes known cameras as its ray-map input
        for given in (poses, intrinsics):
            if given is not None and not rays and (net.num_views != 2 or align != "global"):
                raise Tune3DError(
                    f"{given}: known cameras are used by global alignment (DUSt3R/MASt3R) and CUT3R ray maps"
                )
        if rays and intrinsics is not None and poses is None:
            raise Tune3DError(f"{intrinsics}: CUT3R's ray-map input needs --poses as well")
        if poses is not None:
            from tune3d.recon.known_cameras import load_known_cameras

            known_c2w, known_K = load_known_cameras(poses, prep, use_intrinsics=intrinsics is None)
        if intrinsics is not None:
            from tune3d.recon.known_cameras import load_intrinsics

            known_K = load_intrinsics(intrinsics, prep)
        if rays and poses is not None and known_K is None:
            raise Tune3DError(f"{poses}: CUT3R's ray-map input needs intrinsics (K per view or --intrinsics)")
        recon = run(
            net,
            prep.images,
            align=align,
            graph=graph,
            known_K=known_K,
            known_c2w=known_c2w,
            niter=niter,
            progress=True,
        )
        if conf_threshold is None:
            conf_threshold = default_conf_threshold(net, recon.conf, prep.valid.numpy())
        from tune3d.recon.export import nonfinite_cameras, sparse_cloud_warning

        sparse = sparse_cloud_warning(recon.conf, prep.valid.numpy(), conf_threshold)
        if sparse:
            typer.echo(f"tune3d: warning: {sparse}", err=True)
        bad = nonfinite_cameras(recon)
        if bad:
            typer.echo(
                f"tune3d: warning: {len(bad)} of {len(prep.names)} views have a non-finite predicted camera "
                f"({prep.names[bad[0]]}, ...); cameras.json marks them invalid",
                err=True,
            )
        summary = write_reconstruct_run(
            out,
            recon,
            prep,
            cfg,
            conf_threshold,
            model=name,
            num_views=net.num_views,
            images=images,
            weights=weights,
            adapter=adapter,
            poses=poses,
            intrinsics=intrinsics,
        )
        typer.echo(
            f"{summary['views']} views at {summary['width']}x{summary['height']}, "
            f"{summary['points']} points -> {out}"
        )

    @app.command("train-recon")
    def train_recon(
        ctx: typer.Context,
        data: list[Path] = typer.Option(
            ..., "--data", help="Scene folder(s) or dataset folder(s) with depth."
        ),
        out: Path = typer.Option(..., "--out", help="Run folder (resumes if it has checkpoints)."),
        model: str = typer.Option(..., "--model", help="Registry name, e.g. dust3r_tiny, vggt_tiny."),
        weights: Path | None = typer.Option(None, "--weights", help="Initial weights."),
        allow_random_init: bool = typer.Option(False, "--allow-random-init", help="Start from random init."),
        views: int = typer.Option(2, "--views", help="Views per tuple (2 for pairwise models)."),
        resolution: str | None = typer.Option(None, "--resolution", help="HxW (patch multiples)."),
        steps: int = typer.Option(1000, "--steps"),
        batch_size: int = typer.Option(4, "--batch-size"),
        lr: float = typer.Option(1e-4, "--lr"),
        seed: int = typer.Option(0, "--seed"),
        min_overlap: float = typer.Option(0.3, "--min-overlap", help="Min. co-visible fraction in a tuple."),
        point_gradient: str = typer.Option(
            "normal",
            "--point-gradient",
            help="VGGT point-loss gradient term: normal (official) | grad | normal+conf | grad+conf | none.",
        ),
        save_every: int = typer.Option(200, "--save-every"),
        log_every: int = typer.Option(10, "--log-every"),
        device: str = typer.Option("auto", "--device"),
        resume: bool = typer.Option(True, "--resume/--no-resume"),
        config: Path | None = typer.Option(
            None, "--config", help="YAML with TrainReconConfig fields, or a run's config.yaml (flags win)."
        ),
    ) -> None:
        """Supervised training with the family's own loss; writes model.safetensors + model.json."""
        from tune3d.engine.runfolder import check_out_dir

        check_out_dir(out)  # before any work: a file or read-only --out is one line, exit 2
        import dataclasses

        from tune3d.recon.train import TrainReconConfig
        from tune3d.recon.train import train_recon as run

        fields = {f.name for f in dataclasses.fields(TrainReconConfig)}

        values = {k: v for k, v in ctx.params.items() if k in fields}
        values.update(
            data=[str(d) for d in data],
            out=str(out),
            weights=str(weights) if weights else None,
            resolution=parse_hw(resolution),
        )
        cfg = resolve_command_config(ctx, TrainReconConfig, config, values, given_on_command_line(ctx))
        if cfg.weights is not None and not Path(cfg.weights).exists():
            raise Tune3DError(f"{cfg.weights}: weights file not found")
        if not (math.isfinite(cfg.lr) and cfg.lr > 0):
            raise Tune3DError(f"--lr {cfg.lr}: the learning rate must be a positive number")
        for option, value in (
            ("--steps", cfg.steps),
            ("--batch-size", cfg.batch_size),
            ("--views", cfg.views),
        ):
            if value < 1:
                raise Tune3DError(f"{option} {value}: must be at least 1")
        summary = run(cfg)
        typer.echo(
            f"trained {cfg.model} for {summary['steps']} steps: loss {summary['first_loss']} -> "
            f"{summary['final_loss']}; weights in {out / 'model.safetensors'}"
        )

    @app.command("eval-recon")
    def eval_recon(
        ctx: typer.Context,
        data: Path = typer.Option(..., "--data", help="Scene with depth and poses."),
        out: Path = typer.Option(..., "--out", help="Output folder (metrics.json, config.yaml)."),
        model: str | None = typer.Option(None, "--model", help="Registry name (default: model.json)."),
        weights: Path | None = typer.Option(None, "--weights"),
        allow_random_init: bool = typer.Option(False, "--allow-random-init", help="Evaluate random init."),
        adapter: Path | None = typer.Option(None, "--adapter", help="Fin3R adapter file."),
        frames: str | None = typer.Option(None, "--frames", help="A:B[:STEP] subset of the scene."),
        pairs: int = typer.Option(20, "--pairs", help="Number of multi-view tuples."),
        views: int = typer.Option(2, "--views", help="Tuple size for N-view models."),
        mono_frames: int = typer.Option(20, "--mono-frames", help="Frames for monocular depth."),
        size: int | None = typer.Option(
            None,
            "--size",
            help="Input size: long side / VGGT width; default: the training size in model.json beside "
            "--weights, else 512 / 518.",
        ),
        align: str = typer.Option("scale_shift", "--align", help="none | median | scale | scale_shift."),
        max_depth: float | None = typer.Option(None, "--max-depth"),
        seed: int = typer.Option(0, "--seed"),
        device: str = typer.Option("auto", "--device"),
        config: Path | None = typer.Option(
            None, "--config", help="YAML with EvalReconConfig fields, or a run's config.yaml (flags win)."
        ),
    ) -> None:
        """Monocular and multi-view depth, pointmap accuracy/completeness/NC, relative pose AUC."""
        from tune3d.engine.runfolder import check_out_dir

        check_out_dir(out)  # before any work: a file or read-only --out is one line, exit 2
        import dataclasses

        from tune3d.geometry.align import DEPTH_ALIGN_MODES
        from tune3d.recon.evaluate import EvalReconConfig, evaluate_model, write_eval_run

        fields = {f.name for f in dataclasses.fields(EvalReconConfig)}
        values = {k: v for k, v in ctx.params.items() if k in fields}
        cfg = resolve_command_config(
            ctx, EvalReconConfig, config, values, given_on_command_line(ctx), ignore=EVAL_RECORD_KEYS
        )
        if cfg.align not in DEPTH_ALIGN_MODES:
            raise Tune3DError(f"--align {cfg.align!r}: expected one of {', '.join(DEPTH_ALIGN_MODES)}")
        if not data.exists():
            raise Tune3DError(f"{data}: scene not found")
        if cfg.size is not None and cfg.size <= 0:
            raise Tune3DError(f"--size {cfg.size}: must be a positive number of pixels")
        for option, value, least in (
            ("--views", cfg.views, 1),
            ("--pairs", cfg.pairs, 0),
            ("--mono-frames", cfg.mono_frames, 0),
        ):
            if value < least:
                raise Tune3DError(f"{option} {value}: must be at least {least}")
        from tune3d.data import load_scene

        scene = load_scene(data)
        n_frames = len(scene.subset(cfg.frames)) if cfg.frames else len(scene)
        name, net = _build(model, weights, allow_random_init, adapter, device)
        tuple_size = 2 if net.num_views == 2 else max(2, cfg.views)
        if cfg.pairs > 0 and tuple_size > n_frames:
            raise Tune3DError(
                f"{data}: tuples of {tuple_size} views need at least {tuple_size} frames, "
                f"the scene has {n_frames}; lower --views"
            )
        metrics = evaluate_model(net, scene, cfg, progress=True)
        if cfg.pairs > 0 and not metrics["multiview"].get("tuples"):
            raise Tune3DError(
                f"{data}: no tuple of {tuple_size} co-visible frames found for the multi-view metrics; "
                "use fewer --views (or --pairs 0 for monocular depth only)"
            )
        write_eval_run(
            out,
            cfg,
            metrics,
            model=name,
            weights=str(weights) if weights else None,
            adapter=str(adapter) if adapter else None,
            data=str(data),
        )
        head = next(iter(metrics["mono_depth"]), None)
        line = [f"{name}:"]
        if head:
            line.append(f"mono {head} abs_rel {metrics['mono_depth'][head]['abs_rel']:.4f}")
        if "accuracy" in metrics["multiview"]:
            line.append(
                f"acc {metrics['multiview']['accuracy']:.4f} comp {metrics['multiview']['completeness']:.4f}"
            )
        if "pose" in metrics:
            line.append(f"auc@20 {metrics['pose']['auc@20']:.3f}")
        typer.echo(" ".join(line) + f" -> {out / 'metrics.json'}")
