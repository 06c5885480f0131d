"""Training and evaluation of linear probes on cached features (backbone frozen, run once beforehand)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from tune3d.engine.devices import resolve_device
from tune3d.engine.seed import step_generator
from tune3d.errors import Tune3DError
from tune3d.metrics.depth import DepthMetricAccumulator
from tune3d.metrics.segmentation import ConfusionMatrix
from tune3d.probe.bank import FeatureBank
from tune3d.probe.config import ProbeConfig
from tune3d.probe.heads import BinnedDepthHead, LinearSegHead
from tune3d.probe.losses import depth_probe_loss
from tune3d.probe.schedule import make_scheduler

log = logging.getLogger(__name__)


def _check_bank(bank: FeatureBank, what: str) -> None:
    if bank.targets is None:
        raise Tune3DError(f"{what}: the feature bank has no targets")
    if len(bank) == 0:
        raise Tune3DError(f"{what}: the feature bank is empty")


def _fit(
    head: torch.nn.Module,
    bank: FeatureBank,
    cfg: ProbeConfig,
    loss_fn: Callable[[int, torch.Tensor, torch.Tensor | None, torch.Tensor], tuple[torch.Tensor, dict]],
    desc: str,
) -> list[dict[str, float]]:
    """Shared loop: AdamW + scheduled lr, one random batch of the bank per step.

    Each step's batch and flips come from ``step_generator(seed, step)``, so a run is a pure function of
    the seed (and of the bank). Returns a short loss history (every ~1% of the run).
    """
    device = resolve_device(cfg.device)
    head.to(device).train()
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.999))
    sched = make_scheduler(
        opt,
        cfg.iters,
        cfg.schedule,
        warmup_iters=cfg.warmup_iters,
        warmup_ratio=cfg.warmup_ratio,
        min_lr_ratio=cfg.min_lr_ratio,
    )
    n, bs = len(bank), min(cfg.batch_size, len(bank))
    history: list[dict[str, float]] = []
    every = max(1, cfg.iters // 100)
    bar = tqdm(range(cfg.iters), desc=desc, disable=not cfg.progress, dynamic_ncols=True)
    for step in bar:
        g = step_generator(cfg.seed, step)
        idx = torch.randperm(n, generator=g)[:bs]
        flip = torch.rand(bs, generator=g) < 0.5 if cfg.flip_aug else None
        patch, cls, tgt = bank.batch(idx, flip, device)
        loss, parts = loss_fn(step, patch, cls, tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(head.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise Tune3DError(f"{desc}: loss became {value} at step {step}; lower the learning rate")
        if step % every == 0 or step == cfg.iters - 1:
            history.append({"step": step, "loss": value, "lr": opt.param_groups[0]["lr"], **parts})
            bar.set_postfix(loss=f"{value:.4f}")
    head.eval()
    return history


def train_seg_probe(bank: FeatureBank, num_classes: int, cfg: ProbeConfig) -> LinearSegHead:
    """Train a :class:`LinearSegHead` on ``bank`` (patch maps, labels ``N,H,W`` with 255 = ignore).

    Cross-entropy (mean over non-ignored pixels) on logits bilinearly upsampled to label size; AdamW with
    a poly schedule and linear warm-up (``cfg.resolve("semseg")``). The head's history is kept in
    ``head.history``.
    """
    _check_bank(bank, "segmentation probe")
    if bank.targets.is_floating_point():
        raise Tune3DError("segmentation probe: targets are floating point (depth?), expected integer labels")
    cfg = cfg.resolve("semseg")
    torch.manual_seed(cfg.seed)
    head = LinearSegHead(bank.width, num_classes)
    size = bank.target_size

    def loss_fn(step: int, patch: torch.Tensor, cls: torch.Tensor | None, tgt: torch.Tensor):
        logits = head.predict(patch, size)
        valid = tgt != 255
        if bool(valid.any()) and int(tgt[valid].max()) >= num_classes:
            raise Tune3DError(
                f"segmentation probe: label {int(tgt[valid].max())} >= num_classes {num_classes}"
            )
        ce = F.cross_entropy(logits, tgt, ignore_index=255, reduction="sum")
        return ce / valid.sum().clamp_min(1), {}

    head.history = _fit(head, bank, cfg, loss_fn, "seg probe")
    return head


def train_depth_probe(bank: FeatureBank, cfg: ProbeConfig) -> BinnedDepthHead:
    """Train a :class:`BinnedDepthHead` on ``bank`` (un-normed patch maps + CLS, depth ``N,H,W`` metres).

    Loss ``SigLoss + grad_loss_weight * GradientLoss`` on the prediction bilinearly resized to the target
    size (SigLoss mean-only for the first ``sig_warmup_iters``); AdamW, cosine schedule with linear
    warm-up, grad-norm clip (``cfg.resolve("depth")``).
    """
    _check_bank(bank, "depth probe")
    if not bank.targets.is_floating_point():
        raise Tune3DError("depth probe: targets are integer labels, expected float depth in metres")
    cfg = cfg.resolve("depth")
    torch.manual_seed(cfg.seed)
    head = BinnedDepthHead(
        bank.width, bank.cls_width, cfg.num_bins, cfg.min_depth, cfg.max_depth, upsample=cfg.upsample
    )
    size = bank.target_size

    def loss_fn(step: int, patch: torch.Tensor, cls: torch.Tensor | None, tgt: torch.Tensor):
        pred = F.interpolate(head(patch, cls), size=size, mode="bilinear", align_corners=False)
        return depth_probe_loss(
            pred,
            tgt,
            max_depth=cfg.max_depth,
            grad_weight=cfg.grad_loss_weight,
            sig_warmup=step < cfg.sig_warmup_iters,
        )

    head.history = _fit(head, bank, cfg, loss_fn, "depth probe")
    return head


def _eval_batches(bank: FeatureBank, batch_size: int):
    for start in range(0, len(bank), batch_size):
        yield torch.arange(start, min(start + batch_size, len(bank)))


@torch.no_grad()
def predict_seg(
    head: LinearSegHead, bank: FeatureBank, index: torch.Tensor, cfg: ProbeConfig
) -> torch.Tensor:
    """Predicted labels ``n,H,W`` (int64) for rows ``index`` of ``bank`` at its target size."""
    device = resolve_device(cfg.device)
    head.to(device).eval()
    patch, _, _ = bank.batch(index, device=device)
    size = bank.target_size if bank.targets is not None else tuple(patch.shape[-2:])
    return head.predict(patch, size).argmax(1).cpu()


@torch.no_grad()
def predict_depth(
    head: BinnedDepthHead, bank: FeatureBank, index: torch.Tensor, cfg: ProbeConfig
) -> torch.Tensor:
    """Predicted depth ``n,H,W`` (metres, clamped to the bins' range) for rows ``index``, target size."""
    device = resolve_device(cfg.device)
    head.to(device).eval()
    patch, cls, _ = bank.batch(index, device=device)
    size = bank.target_size if bank.targets is not None else tuple(patch.shape[-2:])
    return head.predict(patch, cls, size)[:, 0].cpu()


def evaluate_seg_probe(
    head: LinearSegHead,
    bank: FeatureBank,
    num_classes: int,
    cfg: ProbeConfig,
    class_names: list[str] | None = None,
) -> dict[str, Any]:
    """mIoU / mAcc / aAcc (fractions in [0, 1]) over the whole bank, plus per-class IoU and accuracy
    (``null`` for classes absent from both prediction and ground truth)."""
    _check_bank(bank, "segmentation probe evaluation")
    cm = ConfusionMatrix(num_classes, ignore_index=255)
    bar = tqdm(total=len(bank), desc="seg eval", disable=not cfg.progress, dynamic_ncols=True)
    for idx in _eval_batches(bank, cfg.eval_batch_size):
        cm.update(predict_seg(head, bank, idx, cfg), bank.targets[idx].long())
        bar.update(len(idx))
    bar.close()
    res = cm.compute()
    names = class_names if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise Tune3DError(f"{len(names)} class names given for {num_classes} classes")

    def per_class(t: torch.Tensor) -> dict[str, float | None]:
        return {n: (None if math.isnan(v) else v) for n, v in zip(names, t.tolist())}

    return {
        "mIoU": res["mIoU"],
        "mAcc": res["mAcc"],
        "aAcc": res["aAcc"],
        "per_class_iou": per_class(res["iou"]),
        "per_class_acc": per_class(res["acc"]),
        "num_images": len(bank),
    }


def evaluate_depth_probe(
    head: BinnedDepthHead, bank: FeatureBank, cfg: ProbeConfig, eval_mask: Callable | None = None
) -> dict[str, Any]:
    """Depth metrics of :mod:`tune3d.metrics.depth` (per image over ``min_depth <= gt <= max_depth``,
    averaged over images, no alignment): abs_rel, sq_rel, rmse, rmse_log, log10, delta1-3, silog.

    ``eval_mask(gt H,W numpy) -> bool H,W`` further restricts the pixels (e.g. the Eigen crop)."""
    _check_bank(bank, "depth probe evaluation")
    acc = DepthMetricAccumulator(min_depth=cfg.min_depth, max_depth=cfg.max_depth, align="none")
    bar = tqdm(total=len(bank), desc="depth eval", disable=not cfg.progress, dynamic_ncols=True)
    for idx in _eval_batches(bank, cfg.eval_batch_size):
        gt = bank.targets[idx].float()
        mask = None
        if eval_mask is not None:
            mask = torch.stack([torch.from_numpy(np.asarray(eval_mask(g.numpy()), dtype=bool)) for g in gt])
        acc.update(predict_depth(head, bank, idx, cfg), gt, mask)
        bar.update(len(idx))
    bar.close()
    return {**acc.compute(), "num_images": acc.count}
