"""Iteration-based learning-rate schedules with linear warm-up, matching mmcv's ``LrUpdaterHook`` semantics.

Written here because torch's schedulers compose warm-up differently: mmcv multiplies the *scheduled* lr
of step ``t`` by a warm-up factor ``1 - (1 - t/W)(1 - r)``, so warm-up and decay overlap.
"""

from __future__ import annotations

import math

import torch


def lr_factor(
    step: int,
    total: int,
    schedule: str,
    warmup_iters: int = 0,
    warmup_ratio: float = 1e-6,
    min_lr_ratio: float = 0.0,
    power: float = 1.0,
) -> float:
    """Multiplier of the base lr at 0-based ``step`` of ``total``.

    ``poly``: ``(1 - t/T)^power`` (mmcv poly, ``min_lr=0``); ``cosine``: from 1 to ``min_lr_ratio`` along a
    half cosine. During the first ``warmup_iters`` steps the factor is scaled linearly from ``warmup_ratio``.
    """
    t = min(max(step, 0), total) / max(total, 1)
    if schedule == "poly":
        f = (1.0 - t) ** power
    elif schedule == "cosine":
        f = min_lr_ratio + 0.5 * (1.0 - min_lr_ratio) * (1.0 + math.cos(math.pi * t))
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    if warmup_iters > 0 and step < warmup_iters:
        f *= 1.0 - (1.0 - step / warmup_iters) * (1.0 - warmup_ratio)
    return f


def make_scheduler(
    optimizer: torch.optim.Optimizer, total: int, schedule: str, **kwargs
) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` applying :func:`lr_factor`; call ``.step()`` once after every optimiser step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, schedule, **kwargs))
