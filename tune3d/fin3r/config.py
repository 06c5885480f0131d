"""Fin3R run configuration: :class:`DistillConfig`, the hyper-parameters every Fin3R piece reads."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tune3d.config import option
from tune3d.errors import Tune3DError

#: Adapter forms (see :mod:`tune3d.fin3r.adapters`); here so that reading a config needs no torch/peft.
FORMS = ("renorm", "renorm-weight", "plain")


@dataclass
class DistillConfig:
    """Hyper-parameters of one Fin3R run (the paper's defaults where it states them).

    ``resolution``: ``(H, W)``, multiples of the model's patch size; ``None`` = 224x224 rounded down to
    the patch size. ``replay_views``: views per replayed tuple (pairwise models always use 2).
    ``lam``: the ``−λ log β`` confidence regulariser; ``squared``: squared instead of plain Euclidean error.
    Each field is also a ``tune3d distill`` option (:func:`tune3d.config.option` gives its help text).
    """

    form: str = option("renorm", "Adapter: renorm | renorm-weight | plain.")
    rank: int = option(8, min=1)
    alpha: float = 8.0
    lr: float = option(1e-4, "AdamW learning rate.")
    weight_decay: float = 0.0
    schedule: str = option("cosine", "cosine | constant.")
    warmup_steps: int = option(0, min=0)
    grad_clip: float = option(1.0, "Max grad norm, 0 = off.")
    lam: float = option(0.2, "Weight of the -log(confidence) term.", flag="--lambda")
    squared: bool = option(False, "Squared Euclidean error (paper) instead of L2.")
    replay_ratio: float = option(0.1, "Share of multi-view replay samples.")
    replay_views: int = option(2, "Views per replay tuple (non-pairwise).", min=1)
    replay_stride: int = option(1, "Frame stride inside a tuple.", min=1)
    steps: int = option(1000, min=1)
    batch_size: int = option(4, "Samples per step (per process).", min=1)
    resolution: tuple[int, int] | None = option(None, "HxW, multiples of the patch size.")
    seed: int = 0
    save_every: int = option(500, min=1)
    log_every: int = option(10, min=1)
    device: str = option("auto", "auto | cpu | cuda.")
    mixed_precision: str = option("auto", "auto | no | bf16 | fp16.")
    num_workers: int = option(0, min=0)
    # model teachers default to <out>/teacher_cache, "sensor" to none
    teacher_cache: str | None = option(
        None, "Pseudo-label cache folder (default: OUT/teacher_cache).", path=True
    )
    grad_checkpointing: bool = False
    diag_images: int = option(4, "Images for the feature-norm report.", min=1)
    eval_images: int = option(8, "Images for the before/after depth check.", min=0)
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
