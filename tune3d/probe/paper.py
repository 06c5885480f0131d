"""The ``paper`` probe protocol (DINOv2 linear probes as run by FiT3D), backbone on the fly.

Segmentation: random resize of the (2048, 512) scale by 0.5-2.0, 512x512 random crop (cat_max_ratio
0.75), flip, photometric distortion, pad; BN + 1x1 conv head on the last-layer (normed) patch map of the
centre-padded crop; cross-entropy summed over labelled pixels / all pixels (mmseg 0.x ``mean``); AdamW,
poly schedule with linear warm-up. Test: resize to the (2048, 512) scale, sliding window (crop 512,
stride 341), logits resized to the label size.
Depth: (NYU: NYUCrop) +-2.5 deg rotation, flip, random crop (416x544 indoor, 352x704 KITTI), colour; binned
head on the un-normed patch map + CLS; SigLoss + 0.5 GradientLoss; AdamW, cosine with warm-up, clip 35.
Test: whole image, flip-averaged, metrics inside the dataset's evaluation mask.
Each optimiser step sees ``effective_batch`` crops: ``batch_size`` per forward and process, over every
process of an ``accelerate launch`` / ``torchrun`` run (DDP head; SyncBN on GPUs), gradients accumulated.
The crops of a step are the same for any split into processes x accumulation x batch.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from tune3d.engine.devices import make_accelerator
from tune3d.engine.seed import seed_everything
from tune3d.errors import Tune3DError
from tune3d.io import save_safetensors_atomic, write_json, write_yaml
from tune3d.metrics.depth import DepthMetricAccumulator
from tune3d.metrics.segmentation import ConfusionMatrix
from tune3d.probe import augment as A
from tune3d.probe.config import ProbeConfig
from tune3d.probe.heads import BinnedDepthHead, LinearSegHead
from tune3d.probe.losses import depth_probe_loss
from tune3d.probe.schedule import make_scheduler
from tune3d.probe.sliding import flip_average, resize_to, slide_logits

log = logging.getLogger(__name__)

PAPER_ITERS = {"semseg": 40000, "depth": 38400}


@dataclass
class PaperOptions:
    """Protocol constants (fit3d.md section 3); tests shrink the sizes."""

    batch_size: int = 2  # crops per backbone forward
    effective_batch: int = 16  # crops per optimiser step (2 per GPU x 8 GPUs in the paper)
    num_workers: int = 0  # DataLoader workers for loading + augmentation
    amp: str = "none"  # none | fp16 | bf16: backbone forward precision on GPU
    seg_scale: tuple[int, int] = (2048, 512)
    seg_ratio_range: tuple[float, float] = (0.5, 2.0)
    seg_crop: tuple[int, int] = (512, 512)
    cat_max_ratio: float = 0.75
    slide_stride: tuple[int, int] = (341, 341)
    depth_crop: tuple[int, int] | None = None  # None: 352x704 for KITTI (max depth > 20 m), else 416x544
    rotate_degree: float = 2.5

    def crop_for_depth(self, max_depth: float) -> tuple[int, int]:
        if self.depth_crop is not None:
            return tuple(self.depth_crop)
        return (352, 704) if max_depth > 20 else (416, 544)


class AugmentedDraws(Dataset):
    """Draw ``k`` of the training stream: sample ``order[k]`` of ``samples``, augmented with the seed
    ``(seed, k)``; identical for any number of DataLoader workers. Returns ``(image 3,h,w float in [0,1],
    target h,w)`` at the crop size (padded)."""

    def __init__(
        self, samples: Any, task: str, opts: PaperOptions, crop: tuple[int, int], total: int, seed: int
    ):
        self.samples, self.task, self.opts, self.crop, self.seed = samples, task, opts, crop, seed
        g = torch.Generator().manual_seed(seed)
        self.order = torch.randint(len(samples), (total,), generator=g).tolist()

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, k])
        image, target = self.samples[self.order[k]]
        o = self.opts
        if self.task == "semseg":
            image, target = A.random_resize(image, target, rng, o.seg_scale, o.seg_ratio_range)
            image, target = A.random_crop(image, target, rng, self.crop, o.cat_max_ratio)
            image, target = A.random_flip(image, target, rng)
            image = A.photometric_distortion(np.ascontiguousarray(image), rng)
            image, target = A.pad_to(image, target, self.crop, A.IGNORE)
            t = torch.from_numpy(np.ascontiguousarray(target)).long()
        else:
            if getattr(getattr(self.samples, "info", None), "train_crop", None) == "nyu":
                image, target = A.nyu_train_crop(image, target)
            image, target = A.random_rotate(image, target.astype(np.float32), rng, o.rotate_degree)
            image, target = A.random_flip(image, target, rng)
            image, target = A.random_crop(image, target, rng, self.crop)
            image = A.color_aug(np.ascontiguousarray(image), rng)
            image, target = A.pad_to(image, target, self.crop, 0.0)
            t = torch.from_numpy(np.ascontiguousarray(target)).float()
        img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
        return img, t


def rank_draws(iters: int, accum: int, world: int, rank: int, batch: int) -> list[int]:
    """Draw indices of process ``rank``, in loading order: micro-step ``a`` of step ``s`` takes draws
    ``((s * accum + a) * world + rank) * batch + [0, batch)``, so the draws of a step do not depend on how
    ``accum x world x batch`` is split."""
    return [
        ((s * accum + a) * world + rank) * batch + b
        for s in range(iters)
        for a in range(accum)
        for b in range(batch)
    ]


def _autocast(device: torch.device, amp: str):
    if amp == "none" or device.type != "cuda":
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type="cuda", dtype=torch.float16 if amp == "fp16" else torch.bfloat16)


def _features(backbone: Any, images: torch.Tensor, task: str, device: torch.device, amp: str):
    with torch.no_grad(), _autocast(device, amp):
        f = backbone.forward_features(images.to(device), norm=(task == "semseg"), resize="pad")
    cls = getattr(f, "cls", None)
    return f.patch.float(), None if cls is None else cls.float()


def run_paper_probe(
    task: str,
    backbone: Any,
    train: Any,
    test: Any,
    cfg: ProbeConfig,
    out_dir: str | os.PathLike,
    opts: PaperOptions | None = None,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    eval_mask: Any = None,
    run_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train a probe with the paper protocol on ``train`` and evaluate on ``test`` (sequences of
    ``(image H,W,3 uint8, target H,W)``); writes ``metrics.json``, ``config.yaml``, ``head.safetensors``,
    ``history.json`` to ``out_dir`` and returns the metrics (``cfg.iters`` optimiser steps)."""
    opts = opts or PaperOptions()
    cfg = cfg.resolve(task)
    if task == "semseg" and not num_classes:
        raise Tune3DError("paper protocol: segmentation needs the dataset's number of classes")
    out = Path(out_dir)
    seed_everything(cfg.seed)
    acc = make_accelerator(cfg.device, "no")
    device, world, rank = acc.device, acc.num_processes, acc.process_index
    accum = max(1, math.ceil(opts.effective_batch / (opts.batch_size * world)))
    crop = tuple(opts.seg_crop) if task == "semseg" else opts.crop_for_depth(cfg.max_depth)
    draws = AugmentedDraws(train, task, opts, crop, cfg.iters * accum * opts.batch_size * world, cfg.seed)
    mine = Subset(draws, rank_draws(cfg.iters, accum, world, rank, opts.batch_size))
    loader = DataLoader(mine, batch_size=opts.batch_size, shuffle=False, num_workers=opts.num_workers)
    if hasattr(backbone, "to"):
        backbone.to(device)
    width, cls_width = int(backbone.width), int(getattr(backbone, "cls_width", 0) or 0)
    torch.manual_seed(cfg.seed)  # the same initial head on every process
    if task == "semseg":
        head = LinearSegHead(width, num_classes)
    else:
        head = BinnedDepthHead(
            width, cls_width, cfg.num_bins, cfg.min_depth, cfg.max_depth, upsample=cfg.upsample
        )
    if world > 1 and device.type == "cuda":
        head = torch.nn.SyncBatchNorm.convert_sync_batchnorm(head)  # the paper's SyncBN
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.999))
    head, opt = acc.prepare(head, opt)
    bare = acc.unwrap_model(head)
    head.train()
    sched = make_scheduler(
        opt, cfg.iters, cfg.schedule, warmup_iters=cfg.warmup_iters, warmup_ratio=cfg.warmup_ratio,
        min_lr_ratio=cfg.min_lr_ratio,
    )  # fmt: skip
    global_batch = opts.batch_size * world * accum
    config = {
        "task": task, "protocol": "paper", "feature_width": width, "cls_width": cls_width,
        "num_classes": num_classes, "num_train": len(train), "num_test": len(test), "accumulation": accum,
        "num_processes": world, "global_batch": global_batch, "crop": list(crop), "probe": cfg,
        "paper": dataclasses.asdict(opts), **(run_info or {}),
    }  # fmt: skip
    history: list[dict[str, float]] = []
    every = max(1, cfg.iters // 100)
    it = iter(loader)
    t0 = time.perf_counter()
    t_backbone = 0.0
    bar = tqdm(range(cfg.iters), desc=f"paper {task} probe", disable=not cfg.progress, dynamic_ncols=True)
    for step in bar:
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for a in range(accum):
            images, tgt = next(it)
            tb = time.perf_counter()
            patch, cls = _features(backbone, images, task, device, opts.amp)
            t_backbone += time.perf_counter() - tb
            tgt = tgt.to(device)
            # gradients are all-reduced on the last micro-step only; the head runs through DDP's forward
            with acc.no_sync(head) if a < accum - 1 else contextlib.nullcontext():
                if task == "semseg":
                    logits = resize_to(head(patch), tuple(tgt.shape[-2:]))
                    loss = F.cross_entropy(logits, tgt, ignore_index=255, reduction="sum") / tgt.numel()
                else:
                    pred = resize_to(head(patch, cls), tuple(tgt.shape[-2:]))
                    loss, _ = depth_probe_loss(
                        pred, tgt, max_depth=cfg.max_depth, grad_weight=cfg.grad_loss_weight,
                        sig_warmup=step < cfg.sig_warmup_iters,
                    )  # fmt: skip
                acc.backward(loss / accum)
            total += float(loss.detach()) / accum
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(head.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        if not math.isfinite(total):
            raise Tune3DError(
                f"paper {task} probe: loss became {total} at step {step}; lower the learning rate"
            )
        if step % every == 0 or step == cfg.iters - 1:
            history.append({"step": step, "loss": total, "lr": opt.param_groups[0]["lr"]})
            bar.set_postfix(loss=f"{total:.4f}")
    t_train = time.perf_counter() - t0
    head.eval()
    acc.wait_for_everyone()
    if not acc.is_main_process:  # the main process evaluates and writes the run folder
        return {}
    if device.type == "cuda" and world > 1:
        bare = _plain_bn(bare)  # evaluate with plain eval-mode BN (SyncBN needs every process)
    t1 = time.perf_counter()
    # the run folder is written only once training and evaluation succeeded (no half-written results)
    if task == "semseg":
        metrics = evaluate_seg_paper(
            backbone, bare, test, num_classes, opts, device, class_names, cfg.progress
        )
    else:
        metrics = evaluate_depth_paper(backbone, bare, test, cfg, opts, device, eval_mask, cfg.progress)
    out.mkdir(parents=True, exist_ok=True)
    save_safetensors_atomic(
        bare.state_dict(), out / "head.safetensors", metadata={"task": task, "protocol": "paper"}
    )
    write_yaml(out / "config.yaml", config)
    write_json(out / "history.json", history)
    metrics = {
        **metrics,
        "task": task,
        "protocol": "paper",
        "num_processes": world,
        "global_batch": global_batch,
        "final_train_loss": history[-1]["loss"] if history else None,
        "time_train_s": round(t_train, 3),
        "time_backbone_s": round(t_backbone, 3),
        "time_eval_s": round(time.perf_counter() - t1, 3),
        "time_per_step_s": round(t_train / cfg.iters, 5),
    }
    write_json(out / "metrics.json", metrics)
    return metrics


def _plain_bn(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module`` with every SyncBatchNorm replaced by an equivalent BatchNorm2d."""
    module = copy.deepcopy(module)
    for name, child in list(module.named_children()):
        if isinstance(child, torch.nn.SyncBatchNorm):
            bn = torch.nn.BatchNorm2d(child.num_features, child.eps, child.momentum, child.affine)
            bn.load_state_dict(child.state_dict())
            setattr(module, name, bn.to(child.weight.device).eval())
        else:
            setattr(module, name, _plain_bn(child))
    return module


@torch.no_grad()
def evaluate_seg_paper(
    backbone: Any,
    head: LinearSegHead,
    test: Any,
    num_classes: int,
    opts: PaperOptions,
    device: torch.device,
    class_names: list[str] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """mIoU / mAcc / aAcc (fractions) with the sliding-window test at the (2048, 512) scale."""
    cm = ConfusionMatrix(num_classes, ignore_index=255)

    def fn(crop: torch.Tensor) -> torch.Tensor:
        patch, _ = _features(backbone, crop, "semseg", device, opts.amp)
        return head.predict(patch, tuple(crop.shape[-2:]))

    for image, label in tqdm(test, desc="seg eval", disable=not progress, total=len(test)):
        size = A.rescale_size(image.shape[:2], opts.seg_scale)
        img = torch.from_numpy(np.ascontiguousarray(A._resize(image, size, nearest=False)))
        img = img.permute(2, 0, 1)[None].float().div(255.0).to(device)
        logits = slide_logits(fn, img, num_classes, tuple(opts.seg_crop), tuple(opts.slide_stride))
        pred = resize_to(logits, tuple(label.shape)).argmax(1).cpu()
        cm.update(pred, torch.as_tensor(label)[None].long())
    res = cm.compute()
    names = class_names or [str(i) for i in range(num_classes)]

    def per_class(t: torch.Tensor) -> dict[str, float | None]:
        return {n: (None if math.isnan(v) else v) for n, v in zip(names, t.tolist())}

    return {
        "miou": res["mIoU"], "macc": res["mAcc"], "aacc": res["aAcc"],
        "mIoU": res["mIoU"], "mAcc": res["mAcc"], "aAcc": res["aAcc"],
        "per_class_iou": per_class(res["iou"]), "per_class_acc": per_class(res["acc"]),
        "num_images": len(test),
    }  # fmt: skip


@torch.no_grad()
def evaluate_depth_paper(
    backbone: Any,
    head: BinnedDepthHead,
    test: Any,
    cfg: ProbeConfig,
    opts: PaperOptions,
    device: torch.device,
    eval_mask: Any = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Depth metrics of the whole-image, flip-averaged prediction inside ``eval_mask(gt)``."""
    acc = DepthMetricAccumulator(min_depth=cfg.min_depth, max_depth=cfg.max_depth, align="none")

    def fn(img: torch.Tensor) -> torch.Tensor:
        patch, cls = _features(backbone, img, "depth", device, opts.amp)
        return head.predict(patch, cls, tuple(img.shape[-2:]))

    for image, depth in tqdm(test, desc="depth eval", disable=not progress, total=len(test)):
        img = (
            torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div(255.0).to(device)
        )
        pred = resize_to(flip_average(fn, img), tuple(depth.shape)).cpu()
        gt = torch.as_tensor(np.asarray(depth, dtype=np.float32))[None]
        mask = None if eval_mask is None else torch.from_numpy(np.asarray(eval_mask(depth), dtype=bool))[None]
        acc.update(pred[:, 0], gt, mask)
    return {**acc.compute(), "num_images": acc.count}
