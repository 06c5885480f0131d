"""Fin3R run configuration: :class:`DistillConfig`, the hyper-parameters every Fin3R piece reads."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tune3d.errors import Tune3DError
from tune3d.fin3r.adapters import FORMS


@dataclass
class DistillConfig:
    """Hyper-parameters of one Fin3R run (the paper's defaults where it states them).

    ``resolution``: ``(H, W)``, multiples of the model's patch size; ``None`` = 224x224 rounded down to
    the patch size. ``replay_views``: views per replayed tuple (pairwise models always use 2).
    ``lam``: the ``−λ log β`` confidence regulariser; ``squared``: squared instead of plain Euclidean error.
    """

    form: str = "renorm"
    rank: int = 8
    alpha: float = 8.0
    lr: float = 1e-4
    weight_decay: float = 0.0
    schedule: str = "cosine"  # "cosine" | "constant"
    warmup_steps: int = 0
    grad_clip: float = 1.0
    lam: float = 0.2
    squared: bool = False
    replay_ratio: float = 0.1
    replay_views: int = 2
    replay_stride: int = 1
    steps: int = 1000
    batch_size: int = 4
    resolution: tuple[int, int] | None = None
    seed: int = 0
    save_every: int = 500
    log_every: int = 10
    device: str = "auto"
    mixed_precision: str = "auto"
    num_workers: int = 0
    teacher_cache: str | None = None  # default: <out>/teacher_cache for model teachers, none for "sensor"
    grad_checkpointing: bool = False
    diag_images: int = 4
    eval_images: int = 8
    progress: bool = True

    def validate(self) -> None:
        if self.form not in FORMS:
            raise Tune3DError(f"unknown adapter form {self.form!r}; choose one of {', '.join(FORMS)}")
        for name in (
            "rank",
            "steps",
            "batch_size",
            "replay_views",
            "replay_stride",
            "save_every",
            "log_every",
        ):
            if getattr(self, name) < 1:
                raise Tune3DError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.replay_ratio <= 1.0:
            raise Tune3DError(f"--replay-ratio must be in [0, 1], got {self.replay_ratio}")
        if self.lr <= 0 or not math.isfinite(self.lr):
            raise Tune3DError(f"--lr must be positive, got {self.lr}")
        if self.schedule not in ("cosine", "constant"):
            raise Tune3DError(f"--schedule must be 'cosine' or 'constant', got {self.schedule!r}")
