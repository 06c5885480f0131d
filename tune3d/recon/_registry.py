"""Registry of feed-forward reconstruction models, by short name (as timm's ``_registry``).

This module imports no model file: each family module registers its configurations with
:func:`register_model` when it is imported, and ``tune3d.recon.models`` imports every family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from tune3d.errors import Tune3DError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str  # "dust3r" | "mast3r" | "cut3r" | "vggt"
    factory: Callable[..., torch.nn.Module]  # factory(**kwargs) -> ReconModel
    official: bool  # True for configurations with a released checkpoint
    description: str = ""
    weights_hint: str = ""  # where users get the official weights (file name / HF id)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, family: str, official: bool, description: str = "", weights_hint: str = ""
) -> Callable[[Callable[..., torch.nn.Module]], Callable[..., torch.nn.Module]]:
    """Decorator registering ``factory`` under ``name``."""

    def deco(factory: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"reconstruction model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, family, factory, official, description, weights_hint)
        return factory

    return deco


def list_models() -> list[ModelEntry]:
    """Every registered configuration, sorted by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_entry(name: str) -> ModelEntry:
    """The entry registered as ``name``; an unknown name is a user error listing the known ones."""
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise Tune3DError(f"unknown reconstruction model {name!r}; known: {known}")
    return _REGISTRY[name]
