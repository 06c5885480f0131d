"""Fin3R: fine-tune a feed-forward reconstruction model's encoder by monocular distillation.

Building blocks: re-normalisation LoRA adapters (:mod:`.adapters`), monocular teachers (:mod:`.teachers`),
confidence-weighted losses (:mod:`.losses`) and replay mixing of labelled multi-view data (:mod:`.sampling`).
A run flows data (:mod:`.data`) -> targets and the batch loss (:mod:`.targets`) -> the step
(:mod:`.distill`), configured by :class:`DistillConfig` (:mod:`.config`) and checked by
:mod:`.diagnostics`. The training entry point is ``tune3d.fin3r.distill.distill`` (not re-exported: it
would shadow its module). Teachers are imported from :mod:`tune3d.fin3r.teachers` explicitly (their
backends load lazily).
"""

from __future__ import annotations

from tune3d.fin3r.adapters import (
    FORMS,
    adapter_state_dict,
    add_adapters,
    load_adapters,
    merge_adapters,
    save_adapters,
)
from tune3d.fin3r.config import DistillConfig
from tune3d.fin3r.diagnostics import feature_norm_report
from tune3d.fin3r.distill import train_adapters
from tune3d.fin3r.losses import avg_dis_normalize, conf_distill_loss
from tune3d.fin3r.sampling import ReplayMixDataset, ReplaySampler, replay_collate

__all__ = [
    "FORMS",
    "DistillConfig",
    "ReplayMixDataset",
    "ReplaySampler",
    "adapter_state_dict",
    "add_adapters",
    "avg_dis_normalize",
    "conf_distill_loss",
    "feature_norm_report",
    "load_adapters",
    "merge_adapters",
    "replay_collate",
    "save_adapters",
    "train_adapters",
]
