"""The learning-rate schedule every tune3d training loop shares: linear warm-up, then constant or cosine.

(The probes follow mmcv's overlapping warm-up instead, to match the DINOv2 / FiT3D protocol: see
``tune3d.probe.schedule``.)
"""

from __future__ import annotations

import math

SCHEDULES = ("cosine", "constant")


def warmup_decay(step: int, total: int, warmup: int = 0, schedule: str = "cosine") -> float:
    """Multiplier of the base learning rate at 0-based optimiser step ``step`` of ``total``.

    Steps ``0 .. warmup-1`` ramp linearly as ``(step + 1) / warmup``; after that the factor is 1
    (``constant``) or follows a half cosine from 1 at ``step == warmup`` to 0 at ``step == total``.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
