"""Fin3R part of the demo: train a small reconstruction model, distil a monocular teacher into its encoder
with plain and re-normalised LoRA, and compare before/after on held-out synthetic scenes.

"Before" is the trained base model, "after" the base with the re-normalised adapters (the method); the plain
adapters are evaluated too, and all three enter the feature-norm comparison (the paper's Fig. 3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from tune3d.demo.common import DemoConfig, StageLog, drop_checkpoints, metrics_done
from tune3d.demo.fit3d import HELDOUT_SEED_OFFSET, synth_split
from tune3d.engine.devices import resolve_device
from tune3d.errors import Tune3DError, WeightsUnavailableError
from tune3d.fin3r import load_adapters
from tune3d.fin3r.diagnostics import feature_norm_report
from tune3d.fin3r.distill import DistillConfig, distill
from tune3d.fin3r.teachers import create_teacher
from tune3d.hub import hub_model_available
from tune3d.io import read_json, write_json
from tune3d.recon import create_model
from tune3d.recon.evaluate import EvalReconConfig, evaluate_model
from tune3d.recon.train import TrainReconConfig, train_recon
from tune3d.viz import colorize_depth, save_png, tile_images

FORMS = ("plain", "renorm")
MONO_SEED_OFFSET = 2 * HELDOUT_SEED_OFFSET


def resolve_teacher(cfg: DemoConfig, log: StageLog) -> str:
    """The teacher to distil from: ``cfg.teacher`` when it loads, else ``sensor`` (the data's own depth)."""
    if cfg.teacher == "sensor":
        return "sensor"
    scheme, _, rest = cfg.teacher.partition(":")
    repo = rest.partition("?")[0]
    if scheme in ("hf", "moge") and not Path(repo).expanduser().exists():
        ok, why = hub_model_available(repo)
        if not ok:
            log.note(
                f"teacher {cfg.teacher} is not available ({why}); distilling from the synthetic frames' "
                "own depth instead (sensor teacher)"
            )
            return "sensor"
    try:
        create_teacher(cfg.teacher, device="cpu")
        return cfg.teacher
    except (WeightsUnavailableError, OSError) as e:
        log.note(
            f"teacher {cfg.teacher} could not be loaded ({str(e).splitlines()[0][:160]}); distilling from "
            "the synthetic frames' own depth instead (sensor teacher)"
        )
        return "sensor"


def _mean_metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of the numeric leaves shared by every row (nested dicts averaged key by key)."""
    if not rows:
        return {}
    out: dict[str, Any] = {}
    for k, v in rows[0].items():
        vals = [r.get(k) for r in rows]
        if isinstance(v, dict) and all(isinstance(x, dict) for x in vals):
            out[k] = _mean_metrics(vals)
        elif all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vals):
            out[k] = float(np.nanmean([float(x) for x in vals]))
    return out


def _load(cfg: DemoConfig, weights: Path, adapter: Path | None) -> Any:
    model = create_model(cfg.base_model, weights=weights, device=resolve_device(cfg.device))
    if adapter is not None:
        load_adapters(model, adapter)
    return model.eval()


def _frames(scenes: list[Any], n: int, H: int, W: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` held-out frames spread over the scenes at ``H x W``: images ``n,3,H,W``, depth ``n,H,W``."""
    per = max(1, -(-n // len(scenes)))
    frames = [s[int(i)].resized(H, W) for s in scenes for i in np.linspace(0, len(s) - 1, per).round()][:n]
    images = torch.stack(
        [torch.from_numpy(np.ascontiguousarray(f.image())).permute(2, 0, 1).float() / 255 for f in frames]
    )
    depth = torch.stack([torch.from_numpy(f.depth().astype(np.float32)) for f in frames])
    return images, depth


def evaluate_all(
    cfg: DemoConfig, out: Path, scenes: list[Any], weights: Path, resolution: tuple[int, int]
) -> dict[str, Any]:
    """Before/after metrics on the held-out scenes, feature norms and the figures; writes ``eval/``."""
    d = out / "eval"
    models = {
        "base": _load(cfg, weights, None),
        **{form: _load(cfg, weights, out / "distill" / form / "adapter.safetensors") for form in FORMS},
    }
    head = models["base"].per_view_head
    ecfg = EvalReconConfig(
        pairs=cfg.eval_pairs, mono_frames=cfg.eval_frames, size=max(resolution), seed=cfg.seed
    )
    results: dict[str, Any] = {}
    for name, model in models.items():
        rows = [evaluate_model(model, s, ecfg) for s in scenes]
        mono = [r["mono_depth"][head] for r in rows]
        results[name] = {
            "mono_depth": _mean_metrics(mono),
            "multiview": _mean_metrics([r["multiview"] for r in rows]),
        }
    H, W = resolution
    images, depth = _frames(scenes, 4, H, W)
    norms = feature_norm_report(models, images, d)
    _depth_figure(models, images, depth, out / "figures" / "fin3r_depth.png")
    metrics = {
        "head": head,
        "scenes": [s.name for s in scenes],
        "models": results,
        "feature_norm": {k: v["mean_norm"] for k, v in norms.items()},
        "feature_norm_prenorm": {k: v["prenorm"]["mean_norm"] for k, v in norms.items() if "prenorm" in v},
    }
    write_json(d / "metrics.json", metrics)
    return metrics


@torch.no_grad()
def _depth_figure(models: dict[str, Any], images: torch.Tensor, depth: torch.Tensor, path: Path) -> None:
    """Rows: held-out image | ground truth | base | plain | renorm, each prediction median-aligned to the
    ground truth (the models predict up to scale) and coloured on the ground truth's range."""
    preds = {}
    for name, model in models.items():
        dev = next(model.parameters()).device
        preds[name] = model.forward_mono(images.to(dev))[0].float().cpu()
    tiles = []
    for i in range(len(images)):
        gt = depth[i]
        valid = gt > 0
        lo, hi = np.percentile(gt[valid].numpy(), [2, 98]) if bool(valid.any()) else (0.0, 1.0)
        tiles += [(images[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8), colorize_depth(gt, lo, hi)]
        for name in models:
            p = preds[name][i]
            ok = valid & (p > 0)
            scale = float(gt[ok].median() / p[ok].median()) if bool(ok.any()) else 1.0
            tiles.append(colorize_depth(p * scale, lo, hi))
    save_png(tile_images(tiles, ncols=2 + len(models)), path)


def _model_resolution(name: str, size: tuple[int, int]) -> tuple[int, int]:
    """``size`` rounded to the nearest multiples of the model's patch size (the data's own resolution; the
    model's default input size would upscale the small synthetic frames to 512 pixels)."""
    p = int(create_model(name, device="meta").patch_size)
    return tuple(max(p, round(v / p) * p) for v in size)  # type: ignore[return-value]


def run_fin3r(
    cfg: DemoConfig, out: Path, log: StageLog
) -> tuple[dict[str, Any], list[tuple[str, Path]], dict[str, Any]]:
    """Run the Fin3R part; returns the ``report.json["fin3r"]`` section, the report's figures and extra tables
    for the HTML report (all three models, pre-norm feature norms)."""
    train_dir, test_dir, mono_dir = out / "data" / "train", out / "data" / "heldout", out / "data" / "mono"
    synth_split(cfg, train_dir, cfg.scenes, cfg.seed, log, "train")
    test = synth_split(cfg, test_dir, cfg.heldout_scenes, cfg.seed + HELDOUT_SEED_OFFSET, log, "heldout")
    if cfg.mono_scenes > 0:
        synth_split(cfg, mono_dir, cfg.mono_scenes, cfg.seed + MONO_SEED_OFFSET, log, "mono")
    else:
        mono_dir = train_dir

    recon = out / "recon"
    rcfg = TrainReconConfig(
        model=cfg.base_model,
        data=[str(train_dir)],
        out=str(recon),
        allow_random_init=True,
        resolution=_model_resolution(cfg.base_model, cfg.resolution),
        steps=cfg.recon_steps,
        batch_size=4,
        lr=cfg.recon_lr,
        seed=cfg.seed,
        device=cfg.device,
        progress=cfg.progress,
        save_every=max(50, cfg.recon_steps // 2),
        split=None,
        # From scratch, VGGT's released normal term keeps the point head at the mean layout (BENCHMARKS.md).
        point_gradient="grad",
    )
    log.run(
        "recon",
        metrics_done(recon, "train_summary.json"),
        lambda: train_recon(rcfg),
        f"train-recon {cfg.base_model} from scratch, {cfg.recon_steps} steps",
    )
    drop_checkpoints(recon)
    summary = read_json(recon / "train_summary.json")
    write_json(recon / "metrics.json", summary)  # the stage's marker, like every other stage folder
    weights = recon / "model.safetensors"
    resolution = tuple(int(v) for v in summary["resolution"])

    done = [out / "distill" / f / "metrics.json" for f in FORMS]
    teacher = read_json(done[0])["teacher"] if done[0].is_file() else resolve_teacher(cfg, log)
    for form in FORMS:
        d = out / "distill" / form
        dcfg = DistillConfig(
            form=form,
            steps=cfg.distill_steps,
            lr=cfg.distill_lr,
            batch_size=4,
            resolution=resolution,
            seed=cfg.seed,
            device=cfg.device,
            progress=cfg.progress,
            eval_images=4,
            diag_images=4,
            save_every=cfg.distill_steps,
        )
        log.run(
            f"distill/{form}",
            metrics_done(d),
            lambda d=d, c=dcfg: distill(cfg.base_model, weights, teacher, mono_dir, train_dir, c, d),
            f"{form} LoRA, teacher {teacher}, {cfg.distill_steps} steps",
        )
        drop_checkpoints(d)
    log.run(
        "eval",
        metrics_done(out / "eval"),
        lambda: evaluate_all(cfg, out, test, weights, resolution),
        f"before/after on {len(test)} held-out scene(s)",
    )
    ev = read_json(out / "eval" / "metrics.json")
    if not ev["models"]["base"]["multiview"]:
        raise Tune3DError("fin3r evaluation found no co-visible view tuples in the held-out scenes")
    figs = [
        (
            "Monocular depth on held-out views: image | ground truth | base | plain LoRA | re-norm LoRA "
            "(median-aligned)",
            out / "figures" / "fin3r_depth.png",
        ),
        (
            "Encoder patch-token L2 norms: images, then base, plain LoRA, re-norm LoRA (shared colour scale)",
            out / "eval" / "diagnostics" / "norms_all.png",
        ),
    ]
    pre = out / "eval" / "diagnostics" / "norms_prenorm_all.png"
    if pre.is_file():
        figs.append(("The same norms before the encoder's final LayerNorm", pre))
    section = {
        "base_model": cfg.base_model,
        "teacher": teacher,
        "mono_depth": {
            "before": ev["models"]["base"]["mono_depth"],
            "after": ev["models"]["renorm"]["mono_depth"],
        },
        "multiview": {
            "before": ev["models"]["base"]["multiview"],
            "after": ev["models"]["renorm"]["multiview"],
        },
        "feature_norm": {k: ev["feature_norm"][k] for k in ("base", "plain", "renorm")},
        "seconds": round(
            sum(log.seconds(p) for p in ("data/mono", "recon", "distill/", "eval"))
            + (log.seconds("data/train") + log.seconds("data/heldout")) * (cfg.method == "fin3r"),
            2,
        ),
    }
    names = {"base": "base (before)", "plain": "plain LoRA", "renorm": "re-norm LoRA (after)"}
    tables = {
        "mono_depth": {names[k]: v["mono_depth"] for k, v in ev["models"].items()},
        "multiview": {names[k]: v["multiview"] for k, v in ev["models"].items()},
        "feature_norm_prenorm": ev.get("feature_norm_prenorm", {}),
    }
    return section, figs, tables
