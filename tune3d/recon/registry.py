"""Registry of feed-forward reconstruction models (timm-style ``create_model`` by short name)."""

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


def _ensure_loaded() -> None:
    # Family modules register themselves on import.
    import tune3d.recon.models  # noqa: F401


def list_models() -> list[ModelEntry]:
    _ensure_loaded()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise Tune3DError(f"unknown reconstruction model {name!r}; known: {known}")
    return _REGISTRY[name]
