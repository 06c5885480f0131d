"""Shared pieces of the Fin3R protocols: building the (adapted) model and resizing frames for it."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from tune3d.data.sources import resize_array
from tune3d.fin3r.adapters import load_adapters
from tune3d.recon import create_model
from tune3d.recon.inference import model_input_size
from tune3d.recon.interface import ReconModel


def build_model(
    name: str,
    weights: str | None,
    adapter: str | None,
    allow_random_init: bool,
    device: str = "cpu",
    seed: int = 0,
) -> ReconModel:
    """Registered model ``name`` with its weights, plus the Fin3R adapter file when given (eval mode).

    A random-init model is seeded with ``seed`` so that base and adapter cells share the same base."""
    torch.manual_seed(seed)
    model = create_model(name, weights=weights, allow_random_init=allow_random_init, device=device)
    if adapter is not None:
        load_adapters(model, adapter)
        model.to(device)
    return model.eval()


def model_device(model: ReconModel) -> torch.device:
    return next(model.parameters()).device


def resize_for_model(image: np.ndarray, model: ReconModel, size: int | None = None) -> Tensor:
    """``H,W,3`` uint8 -> ``3,h,w`` float in [0, 1], resized (no crop) to the model's input size."""
    h, w = model_input_size(model, image.shape[0], image.shape[1], size)
    im = Image.fromarray(image).resize((w, h), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def resize_depth_nearest(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a depth map (keeps 0 = invalid exact)."""
    return resize_array(depth, height, width, "depth")
