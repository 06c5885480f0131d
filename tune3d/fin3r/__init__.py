"""Fin3R: fine-tune a feed-forward reconstruction model's encoder by monocular distillation.

Building blocks: re-normalisation LoRA adapters (:mod:`.adapters`), monocular teachers (:mod:`.teachers`),
confidence-weighted losses (:mod:`.losses`) and replay mixing of labelled multi-view data (:mod:`.sampling`).
A run flows data (:mod:`.data`) -> targets and the batch loss (:mod:`.targets`) -> the step
(:mod:`.distill`), configured by :class:`DistillConfig` (:mod:`.config`) and checked by
:mod:`.diagnostics`. The training entry point is ``tune3d.fin3r.distill.distill`` (not re-exported: it
would shadow its module). Teachers are imported from :mod:`tune3d.fin3r.teachers` explicitly (their
backends load lazily).

The names below load on first access (PEP 562): importing the package, or only its light
:mod:`.config` (as ``tune3d distill --help`` does to build its options), must not pull in torch and peft.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tune3d.fin3r.adapters import (
        adapter_state_dict,
        add_adapters,
        load_adapters,
        merge_adapters,
        save_adapters,
    )
    from tune3d.fin3r.config import FORMS, DistillConfig
    from tune3d.fin3r.diagnostics import feature_norm_report
    from tune3d.fin3r.distill import train_adapters
    from tune3d.fin3r.losses import avg_dis_normalize, conf_distill_loss
    from tune3d.fin3r.sampling import ReplayMixDataset, ReplaySampler, replay_collate

# public name -> the submodule that defines it (the keys are __all__)
_EXPORTS = {
    "FORMS": "config",
    "DistillConfig": "config",
    "ReplayMixDataset": "sampling",
    "ReplaySampler": "sampling",
    "adapter_state_dict": "adapters",
    "add_adapters": "adapters",
    "avg_dis_normalize": "losses",
    "conf_distill_loss": "losses",
    "feature_norm_report": "diagnostics",
    "load_adapters": "adapters",
    "merge_adapters": "adapters",
    "replay_collate": "sampling",
    "save_adapters": "adapters",
    "train_adapters": "distill",
}

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
