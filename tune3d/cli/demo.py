"""CLI: ``tune3d demo`` (FiT3D and Fin3R end to end on generated data, with an HTML report)."""

from __future__ import annotations

from pathlib import Path

import typer

from tune3d.cli._args import parse_hw
from tune3d.demo import DemoConfig as _D  # light: the demo's heavy imports happen inside run_demo
from tune3d.errors import Tune3DError


def _summary_lines(report: dict) -> list[str]:
    """Plain-text tables of the headline numbers (stdout)."""
    lines: list[str] = []
    fit = report.get("fit3d")
    if fit:
        lines.append(f"FiT3D  backbone {fit['backbone']}  weights {fit['weights']}")
        lines.append(
            f"  {'features':<12}{'depth rmse':>12}{'abs_rel':>10}{'delta1':>10}{'mIoU':>10}{'mAcc':>10}"
        )
        for mode in ("original", "finetuned", "assembled", "duplicated"):
            d, s = fit["depth"].get(mode, {}), fit["semseg"].get(mode, {})
            cells = [d.get("rmse"), d.get("abs_rel"), d.get("delta1"), s.get("mIoU"), s.get("mAcc")]
            widths = [12, 10, 10, 10, 10]
            lines.append(
                f"  {mode:<12}"
                + "".join(f"{('-' if v is None else f'{v:.4f}'):>{w}}" for v, w in zip(cells, widths))
            )
        lines.append(f"  ({fit['seconds']:.0f} s)")
    fin = report.get("fin3r")
    if fin:
        lines.append(f"Fin3R  base {fin['base_model']}  teacher {fin['teacher']}")
        lines.append(f"  {'':<8}{'abs_rel':>10}{'delta1':>10}{'mv acc':>10}{'mv comp':>10}")
        for k in ("before", "after"):
            m, v = fin["mono_depth"][k], fin["multiview"][k]
            lines.append(
                f"  {k:<8}{m['abs_rel']:>10.4f}{m['delta1']:>10.4f}{v['accuracy']:>10.4f}"
                f"{v.get('completeness', float('nan')):>10.4f}"
            )
        n = fin["feature_norm"]
        lines.append(
            f"  feature norm: base {n['base']:.3f}, plain LoRA {n['plain']:.3f}, "
            f"re-norm LoRA {n['renorm']:.3f}"
        )
        lines.append(f"  ({fin['seconds']:.0f} s)")
    return lines


def demo_cmd(
    method: str = typer.Option(_D.method, "--method", help="fit3d | fin3r | all."),
    out: Path = typer.Option(Path(_D.out), "--out", "-o", help="Output folder (a rerun resumes)."),
    data: Path | None = typer.Option(
        None, "--data", help="A real scene for the FiT3D part (e.g. 7-Scenes); default: synthetic rooms."
    ),
    seed: int = typer.Option(_D.seed, "--seed"),
    device: str = typer.Option(_D.device, "--device", help="auto | cpu | cuda."),
    scenes: int = typer.Option(_D.scenes, "--scenes", min=1, help="Synthetic training scenes."),
    heldout_scenes: int = typer.Option(
        _D.heldout_scenes, "--heldout-scenes", min=1, help="Synthetic held-out scenes."
    ),
    mono_scenes: int = typer.Option(
        _D.mono_scenes, "--mono-scenes", min=0, help="Synthetic scenes of Fin3R mono images."
    ),
    views: int = typer.Option(_D.views, "--views", min=4, help="Views per synthetic scene."),
    resolution: str = typer.Option(
        "x".join(map(str, _D.resolution)), "--resolution", help="Image size HxW (also the render size)."
    ),
    backbone: str = typer.Option(_D.backbone, "--backbone", "-b", help="FiT3D backbone (registry name)."),
    weights: Path | None = typer.Option(None, "--weights", help="Backbone weights [hub, else random]."),
    lift_iters: int = typer.Option(
        _D.lift_iters, "--lift-iters", min=1, help="Stage I iterations per scene."
    ),
    lift_points: int = typer.Option(
        _D.lift_points, "--lift-points", min=1, help="Gaussians per lifted scene."
    ),
    finetune_steps: int = typer.Option(
        _D.finetune_steps, "--finetune-steps", min=1, help="Stage II steps (batch 2)."
    ),
    finetune_lr: float = typer.Option(_D.finetune_lr, "--finetune-lr", help="Stage II learning rate."),
    probe_iters: int = typer.Option(_D.probe_iters, "--probe-iters", min=1, help="Linear-probe iterations."),
    train_frames: str | None = typer.Option(None, "--train-frames", help="Frames A:B of --data to train on."),
    test_frames: str | None = typer.Option(None, "--test-frames", help="Frames A:B of --data to test on."),
    base_model: str = typer.Option(_D.base_model, "--base-model", help="Fin3R base model (recon registry)."),
    recon_steps: int = typer.Option(
        _D.recon_steps, "--recon-steps", min=1, help="train-recon steps of the base model."
    ),
    recon_lr: float = typer.Option(_D.recon_lr, "--recon-lr", help="train-recon learning rate."),
    teacher: str = typer.Option(
        _D.teacher,
        "--teacher",
        help="Monocular teacher (hf:ID, moge:ID, recon:NAME, sensor); falls back to sensor.",
    ),
    distill_steps: int = typer.Option(
        _D.distill_steps, "--distill-steps", min=1, help="Fin3R steps per adapter form."
    ),
    distill_lr: float = typer.Option(_D.distill_lr, "--distill-lr", help="Fin3R LoRA learning rate."),
    eval_pairs: int = typer.Option(
        _D.eval_pairs, "--eval-pairs", min=1, help="Multi-view tuples per held-out scene."
    ),
    progress: bool = typer.Option(False, "--progress/--no-progress", help="Per-stage progress bars."),
) -> None:
    """Run FiT3D and Fin3R end to end on synthetic rooms and write report.json + a self-contained report.html.

    Needs no downloads: pretrained weights are used when they can be fetched, otherwise the demo runs on
    random weights and says so. The default sizes finish in about 10 minutes on 2 CPU cores.
    """
    from tune3d.demo import DemoConfig, run_demo

    cfg = DemoConfig(
        method=method,
        out=str(out),
        data=str(data) if data else None,
        seed=seed,
        device=device,
        scenes=scenes,
        heldout_scenes=heldout_scenes,
        mono_scenes=mono_scenes,
        views=views,
        resolution=parse_hw(resolution),
        backbone=backbone,
        weights=str(weights) if weights else None,
        lift_iters=lift_iters,
        lift_points=lift_points,
        finetune_steps=finetune_steps,
        finetune_lr=finetune_lr,
        probe_iters=probe_iters,
        train_frames=train_frames,
        test_frames=test_frames,
        base_model=base_model,
        recon_steps=recon_steps,
        recon_lr=recon_lr,
        teacher=teacher,
        distill_steps=distill_steps,
        distill_lr=distill_lr,
        eval_pairs=eval_pairs,
        progress=progress,
    )
    if data is not None and not data.exists():
        raise Tune3DError(f"{data}: --data not found")
    report = run_demo(cfg)
    for line in _summary_lines(report):
        typer.echo(line)
    typer.echo(f"report: {out / 'report.html'}")


def register(app: typer.Typer) -> None:
    """Register this area's commands on the root app."""
    app.command("demo")(demo_cmd)
