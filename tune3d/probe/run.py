"""One probe run end to end: cache features, train the head, evaluate, write the run folder.

``<out>/config.yaml`` (resolved settings), ``metrics.json``, ``head.safetensors``, ``history.json`` (loss
curve) and ``predictions/*.png`` (image | ground truth | prediction); ``cache/{train,test}.safetensors``
with ``cfg.cache_features`` (reused when a rerun asks for the same features).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tune3d.engine.devices import resolve_device
from tune3d.engine.seed import seed_everything
from tune3d.errors import Tune3DError
from tune3d.io import save_safetensors_atomic, write_json, write_yaml
from tune3d.probe.bank import FeatureBank
from tune3d.probe.config import ProbeConfig
from tune3d.probe.train import (
    evaluate_depth_probe,
    evaluate_seg_probe,
    predict_depth,
    predict_seg,
    train_depth_probe,
    train_seg_probe,
)
from tune3d.viz.images import colorize_depth, colorize_labels, save_png, tile_images

log = logging.getLogger(__name__)


def backbone_info(backbone: Any) -> dict[str, str]:
    """Strings identifying a (possibly assembled) backbone: name, mode, weights of each model."""
    info = {"backbone": str(getattr(backbone, "name", type(backbone).__name__))}
    original = getattr(backbone, "original", None)
    if original is not None:  # AssembledBackbone
        info["mode"] = str(backbone.mode)
        info["weights"] = str(getattr(original, "weights", ""))
        tuned = getattr(backbone, "finetuned", None)
        info["finetuned_weights"] = str(getattr(tuned, "weights", "")) if tuned is not None else ""
    else:
        info["mode"] = "original"
        info["weights"] = str(getattr(backbone, "weights", ""))
    return info


def _bank_for(
    split: str,
    task: str,
    backbone: Any,
    samples: Any,
    cfg: ProbeConfig,
    out_dir: Path,
    keep_images: int,
) -> FeatureBank:
    meta = {
        "task": task,
        **backbone_info(backbone),
        "num_samples": str(len(samples)) if hasattr(samples, "__len__") else "?",
        "feature_dtype": cfg.feature_dtype,
        "requested_image_size": "x".join(map(str, cfg.image_size)) if cfg.image_size else "native",
        "keep_images": str(keep_images),
    }
    path = out_dir / "cache" / f"{split}.safetensors"
    if cfg.cache_features and path.is_file():
        bank = FeatureBank.load(path)
        if all(bank.meta.get(k) == v for k, v in meta.items()):
            log.info("reusing cached %s features from %s", split, path)
            return bank
        log.info("cached %s features at %s were made differently; recomputing", split, path)
    bank = FeatureBank.build(
        backbone,
        samples,
        norm=(task == "semseg"),  # FiT3D: final LayerNorm for segmentation, none for depth
        batch_size=cfg.feature_batch_size,
        device=resolve_device(cfg.device),
        image_size=cfg.image_size,
        resize=cfg.resize,
        feature_dtype=cfg.feature_dtype,
        keep_images=keep_images,
        progress=cfg.progress,
        meta=meta,
    )
    if cfg.cache_features:
        bank.save(path)
    return bank


def run_probe(
    task: str,
    backbone: Any,
    train_samples: Any,
    test_samples: Any,
    cfg: ProbeConfig,
    out_dir: str | os.PathLike,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    run_info: dict[str, Any] | None = None,
    eval_mask: Any = None,
) -> dict[str, Any]:
    """Train and evaluate a linear probe of ``backbone`` for ``task`` ("semseg" or "depth").

    ``backbone``: an :class:`~tune3d.fit3d.AssembledBackbone` or a plain backbone (anything with
    ``forward_features(images, norm=, resize=)`` returning ``.patch``/``.cls``). ``train_samples`` /
    ``test_samples``: sequences of ``(image, target)`` (e.g. :class:`~tune3d.probe.data.SceneSamples`).
    For segmentation ``num_classes`` defaults to ``len(class_names)`` or to the largest label seen + 1.
    ``run_info`` (data paths, CLI arguments) is recorded in ``config.yaml``. ``eval_mask`` (depth only):
    ``fn(depth H,W numpy) -> bool H,W`` restricting the evaluated pixels (a dataset's Eigen/Garg crop).
    Returns the metrics dict; segmentation metrics also appear as ``miou``/``macc``/``aacc``.
    """
    cfg = cfg.resolve(task)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    train_bank = _bank_for("train", task, backbone, train_samples, cfg, out, keep_images=0)
    test_bank = _bank_for("test", task, backbone, test_samples, cfg, out, keep_images=cfg.num_vis)
    t_feat = time.perf_counter() - t0

    if task == "semseg":
        if num_classes is None:
            num_classes = len(class_names) if class_names else _infer_num_classes(train_bank, test_bank)
        if class_names is not None and len(class_names) != num_classes:
            raise Tune3DError(f"{len(class_names)} class names for {num_classes} classes")
    config = {
        "task": task,
        **backbone_info(backbone),
        "feature_width": train_bank.width,
        "cls_width": train_bank.cls_width,
        "num_classes": num_classes,
        "num_train": len(train_bank),
        "num_test": len(test_bank),
        "probe": cfg,
        **(run_info or {}),
    }
    write_yaml(out / "config.yaml", config)

    t1 = time.perf_counter()
    if task == "semseg":
        head = train_seg_probe(train_bank, num_classes, cfg)
        t_train = time.perf_counter() - t1
        metrics = evaluate_seg_probe(head, test_bank, num_classes, cfg, class_names)
    else:
        head = train_depth_probe(train_bank, cfg)
        t_train = time.perf_counter() - t1
        metrics = evaluate_depth_probe(head, test_bank, cfg, eval_mask)
    save_safetensors_atomic(
        head.state_dict(), out / "head.safetensors", metadata={"task": task, **backbone_info(backbone)}
    )
    write_json(out / "history.json", head.history)
    if task == "semseg":
        metrics = {"miou": metrics["mIoU"], "macc": metrics["mAcc"], "aacc": metrics["aAcc"], **metrics}
    metrics = {
        **metrics,
        "task": task,
        **backbone_info(backbone),
        "final_train_loss": head.history[-1]["loss"] if head.history else None,
        "time_features_s": round(t_feat, 3),
        "time_train_s": round(t_train, 3),
    }
    write_json(out / "metrics.json", metrics)
    _write_predictions(task, head, test_bank, cfg, out / "predictions")
    return metrics


def _infer_num_classes(*banks: FeatureBank) -> int:
    top = -1
    for b in banks:
        t = b.targets.long()
        valid = t[t != 255]
        if valid.numel():
            top = max(top, int(valid.max()))
    if top < 0:
        raise Tune3DError("segmentation probe: every label is 255 (ignore); nothing to train on")
    return top + 1


# -- prediction images ------------------------------------------------------------------------------------


def _write_predictions(task: str, head: Any, bank: FeatureBank, cfg: ProbeConfig, folder: Path) -> None:
    """``predictions/NNNN.png``: input image | ground truth | prediction, for the first test images.

    Depth panels share one colour range per image (the ground truth's valid 2-98th percentiles).
    """
    n = 0 if bank.images is None else min(len(bank.images), cfg.num_vis)
    if n == 0:
        return
    idx = torch.arange(n)
    if task == "semseg":
        preds = predict_seg(head, bank, idx, cfg)
        panels = [(colorize_labels(bank.targets[i].long()), colorize_labels(preds[i])) for i in range(n)]
    else:
        preds = predict_depth(head, bank, idx, cfg)
        panels = []
        for i in range(n):
            gt = bank.targets[i].float()
            valid = gt > 0
            lo, hi = (
                np.percentile(gt[valid].numpy(), [2, 98])
                if bool(valid.any())
                else (cfg.min_depth, cfg.max_depth)
            )
            panels.append((colorize_depth(gt, lo, hi), colorize_depth(preds[i], lo, hi)))
    for i, (gt_rgb, pred_rgb) in enumerate(panels):
        image = bank.images[i].numpy()  # numpy: to_uint8 would rescale a uint8 *tensor* as floats
        save_png(tile_images([image, gt_rgb, pred_rgb]), folder / f"{i:04d}.png")
