"""Linear-probe configuration (DINOv2 protocol as used by FiT3D, scaled to configurable iteration counts)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tune3d.errors import Tune3DError

TASKS = ("semseg", "depth")

# Protocol values from the FiT3D/DINOv2 mmseg configs (fit3d.md §3). Warm-ups are stored as fractions of the
# schedule so a short run keeps the protocol's shape: seg 1500/40000 iters, depth 12800/38400 iters,
# SigLoss warm-up 100/38400 iters.
_TASK_DEFAULTS = {
    "semseg": dict(
        lr=1e-3,
        weight_decay=1e-4,
        schedule="poly",
        warmup_frac=1500 / 40000,
        warmup_ratio=1e-6,
        grad_clip=None,
    ),
    "depth": dict(
        lr=1e-4,
        weight_decay=0.01,
        schedule="cosine",
        warmup_frac=12800 / 38400,
        warmup_ratio=1e-3,
        grad_clip=35.0,
    ),
}
_SIG_WARMUP_FRAC = 100 / 38400


@dataclass
class ProbeConfig:
    """Settings of one probe run. ``None`` fields take the task's protocol value in :meth:`resolve`.

    The official runs use 40k (seg) / 38.4k (depth) iterations at 16 images per step on full-size crops;
    probes here train on cached features, so the defaults are smaller and every count is configurable.
    """

    iters: int = 4000
    batch_size: int = 8
    lr: float | None = None  # seg 1e-3, depth 1e-4
    weight_decay: float | None = None  # seg 1e-4, depth 0.01
    warmup_iters: int | None = None  # linear warm-up; None: protocol fraction of ``iters``
    warmup_ratio: float | None = None  # lr factor at step 0 (mmcv ``warmup_ratio``): seg 1e-6, depth 1e-3
    schedule: str | None = None  # "poly" (power 1, seg) or "cosine" (depth)
    min_lr_ratio: float = 1e-8  # cosine floor (mmcv ``min_lr_ratio``); poly decays to 0
    grad_clip: float | None = None  # max grad-norm; seg none, depth 35
    flip_aug: bool = True  # random horizontal flip of cached features and targets
    # depth head
    min_depth: float = 1e-3
    max_depth: float = 10.0
    num_bins: int = 256
    upsample: int = 4
    grad_loss_weight: float = 0.5
    sig_warmup_iters: int | None = None  # SigLoss mean-only warm-up; None: protocol fraction of ``iters``
    # features
    image_size: list[int] | None = None  # (H, W) images (and labels) are resized to before the backbone
    resize: str = "resize"  # how the backbone fits H, W to the patch grid: "resize" | "floor" | "pad"
    feature_dtype: str = "float32"  # storage dtype of cached features: float32 | float16 | bfloat16
    feature_batch_size: int = 4  # images per backbone forward while caching
    cache_features: bool = False  # keep cached features as safetensors under <out>/cache (reused on rerun)
    # run
    eval_batch_size: int = 8
    num_vis: int = 4  # prediction PNGs written by run_probe
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def resolve(self, task: str) -> ProbeConfig:
        """A copy with every ``None`` replaced by ``task``'s protocol value, validated."""
        if task not in TASKS:
            raise Tune3DError(f"unknown probe task {task!r}; choose one of {', '.join(TASKS)}")
        d = _TASK_DEFAULTS[task]
        cfg = dataclasses.replace(self)
        for key in ("lr", "weight_decay", "warmup_ratio", "schedule"):
            if getattr(cfg, key) is None:
                setattr(cfg, key, d[key])
        if cfg.grad_clip is None:
            cfg.grad_clip = d["grad_clip"]
        if cfg.warmup_iters is None:
            cfg.warmup_iters = int(round(d["warmup_frac"] * cfg.iters))
        if cfg.sig_warmup_iters is None:
            cfg.sig_warmup_iters = int(round(_SIG_WARMUP_FRAC * cfg.iters)) if task == "depth" else 0
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.iters < 1 or self.batch_size < 1 or self.eval_batch_size < 1 or self.feature_batch_size < 1:
            raise Tune3DError("probe config: iters and batch sizes must be positive")
        if self.schedule not in (None, "poly", "cosine"):
            raise Tune3DError(f"probe config: unknown schedule {self.schedule!r} (poly or cosine)")
        if not 0 < self.min_depth < self.max_depth:
            raise Tune3DError(
                f"probe config: need 0 < min_depth < max_depth, got {self.min_depth}, {self.max_depth}"
            )
        if self.num_bins < 2 or self.upsample < 1:
            raise Tune3DError("probe config: num_bins must be >= 2 and upsample >= 1")
        if self.resize not in ("resize", "floor", "pad"):
            raise Tune3DError(f"probe config: resize must be resize, floor or pad, got {self.resize!r}")
        if self.feature_dtype not in ("float32", "float16", "bfloat16"):
            raise Tune3DError(f"probe config: unknown feature_dtype {self.feature_dtype!r}")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 1):
            raise Tune3DError(f"probe config: image_size must be [H, W], got {self.image_size}")
