"""``create_model``: build a registered reconstruction model and load its weights (as timm's ``_factory``)."""

from __future__ import annotations

import itertools
import os

import torch

from tune3d.errors import Tune3DError
from tune3d.recon._registry import get_entry
from tune3d.recon.checkpoint import load_weights
from tune3d.recon.interface import ReconModel


def _has_meta_tensors(model: torch.nn.Module) -> bool:
    return any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers()))


def create_model(
    name: str,
    weights: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    allow_random_init: bool = False,
    **overrides,
) -> ReconModel:
    """Build the registered model ``name`` and load ``weights`` (official ``.pth``, ``.safetensors`` or a
    Hugging Face folder) with ``strict=True``. Returns the model in eval mode on ``device`` (default CPU).

    Without ``weights`` a randomly initialised model is returned only if ``allow_random_init`` is set.
    ``device="meta"`` builds the architecture without allocating or initialising weights (shape checks).
    ``overrides`` replace fields of the family's config (e.g. for ablations); they must keep the
    checkpoint's shapes when ``weights`` is given.
    """
    entry = get_entry(name)
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "meta":
        with torch.device("meta"):
            return entry.factory(**overrides)
    if weights is None:
        if not allow_random_init:
            hint = f" ({entry.weights_hint})" if entry.weights_hint else ""
            raise Tune3DError(
                f"no weights given for {name}; pass --weights FILE{hint} or --allow-random-init"
            )
        with torch.device(device):
            model = entry.factory(**overrides)
        return model.eval()
    # Build on the meta device and adopt the checkpoint's tensors: no time spent on random init.
    model = None
    try:
        with torch.device("meta"):
            model = entry.factory(**overrides)
    except (NotImplementedError, RuntimeError):
        model = None  # a family whose construction needs real tensors (data-dependent init)
    if model is not None:
        load_weights(model, weights, name=name, assign=True)
        if _has_meta_tensors(model):  # non-persistent buffers cannot come from the file
            model = None
    if model is None:
        model = entry.factory(**overrides)
        load_weights(model, weights, name=name)
    return model.to(device).eval()
