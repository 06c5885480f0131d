"""Test-time feature assembly (FiT3D Sec. 3.3): combine the frozen original and the 3D-aware fine-tuned model.

Modes, all returning the last-layer patch map ``B,C',h,w`` plus a CLS token ``B,C``:

- ``original``   the original model alone (``C' = C``);
- ``finetuned``  the fine-tuned model alone (``C' = C``; its own CLS token);
- ``assembled``  ``cat([original, finetuned], dim=1)`` (``C' = 2C``), the paper's reported setting;
- ``duplicated`` ``cat([original, original], dim=1)`` (``C' = 2C``), the paper's "DINOv2 x2" control for the
  doubled probe width (Tab. 13).

The CLS token always comes from the original model in the two-model modes: FiT3D's depth probe appends the
original model's (un-normed) CLS token to the concatenated map. Depth probing asks for ``norm=False``,
segmentation for ``norm=True``; the flag is passed to both models.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import nn

from tune3d.backbones import create_backbone
from tune3d.errors import Tune3DError

ASSEMBLY_MODES = ("original", "finetuned", "assembled", "duplicated")


def _freeze(model: Any) -> None:
    if isinstance(model, nn.Module):
        model.eval()
        model.requires_grad_(False)
    for attr in ("timm_model", "model"):  # wrappers that are not Modules themselves
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module):
            inner.eval()
            inner.requires_grad_(False)


def _combine(f0: Any, f1: Any) -> Any:
    """``f0`` (the original model's output) with patch maps concatenated along channels with ``f1``'s.

    Copying the original's output keeps every other field (input size, ...) and its CLS token; per-layer
    maps (``.layers``, when present) are concatenated like the last layer.
    """
    patch = torch.cat([f0.patch, f1.patch], dim=1)
    changes: dict[str, Any] = {"patch": patch}
    layers0, layers1 = getattr(f0, "layers", None), getattr(f1, "layers", None)
    if isinstance(layers0, dict) and isinstance(layers1, dict) and layers0.keys() == layers1.keys():
        changes["layers"] = {k: torch.cat([layers0[k], layers1[k]], dim=1) for k in layers0}
    if dataclasses.is_dataclass(f0) and not isinstance(f0, type):
        return dataclasses.replace(f0, **changes)
    out = copy.copy(f0)
    for k, v in changes.items():
        setattr(out, k, v)
    return out


class AssembledBackbone(nn.Module):
    """Frozen feature extractor over an original and (optionally) a fine-tuned backbone.

    Both backbones must expose ``forward_features(images, layers=None, norm=True, resize=...)`` returning an
    object with ``.patch`` (B,C,h,w) and ``.cls`` (B,C), plus ``.width`` and ``.patch_size``.
    Images are float32 RGB in [0, 1], ``B,3,H,W``.
    """

    def __init__(self, original: Any, finetuned: Any | None = None, mode: str = "assembled") -> None:
        super().__init__()
        if mode not in ASSEMBLY_MODES:
            raise Tune3DError(f"unknown assembly mode {mode!r}; choose one of {', '.join(ASSEMBLY_MODES)}")
        if mode in ("finetuned", "assembled") and finetuned is None:
            raise Tune3DError(f"assembly mode {mode!r} needs fine-tuned weights (--finetuned FILE)")
        if finetuned is not None and mode in ("finetuned", "assembled"):
            if int(finetuned.width) != int(original.width) or int(finetuned.patch_size) != int(
                original.patch_size
            ):
                raise Tune3DError(
                    f"fine-tuned backbone (width {finetuned.width}, patch {finetuned.patch_size}) "
                    f"does not match the original (width {original.width}, patch {original.patch_size})"
                )
        self.mode = mode
        # Plain attributes when the backbones are not Modules; registered submodules otherwise.
        self.original = original
        self.finetuned = finetuned if mode in ("finetuned", "assembled") else None
        _freeze(self.original)
        if self.finetuned is not None:
            _freeze(self.finetuned)

    @property
    def backbone_width(self) -> int:
        """Channels of one backbone's patch map (and of the CLS token)."""
        return int(self.original.width)

    @property
    def width(self) -> int:
        """Channels of the assembled patch map."""
        return self.backbone_width * (2 if self.mode in ("assembled", "duplicated") else 1)

    @property
    def cls_width(self) -> int:
        return self.backbone_width

    @property
    def patch_size(self) -> int:
        return int(self.original.patch_size)

    @property
    def name(self) -> str:
        return f"{getattr(self.original, 'name', 'backbone')}[{self.mode}]"

    def train(self, mode: bool = True) -> AssembledBackbone:
        # Always frozen: BatchNorm/Dropout inside a backbone must never switch to training behaviour.
        return super().train(False)

    @torch.no_grad()
    def forward_features(self, images: torch.Tensor, norm: bool = True, **kwargs: Any) -> Any:
        """Assembled last-layer features of ``images`` (B,3,H,W in [0,1]).

        Returns the original model's feature container with ``.patch`` (B,width,h,w) replaced according to
        the mode and ``.cls`` (B,cls_width) from the original model (from the fine-tuned one in mode
        ``finetuned``). ``norm`` selects the final LayerNorm (False for depth); other keyword arguments
        (``layers``, ``resize``) go to both backbones.
        """
        if self.mode == "finetuned":
            return self.finetuned.forward_features(images, norm=norm, **kwargs)
        f0 = self.original.forward_features(images, norm=norm, **kwargs)
        if self.mode == "original":
            return f0
        if self.mode == "duplicated":
            return _combine(f0, f0)
        f1 = self.finetuned.forward_features(images, norm=norm, **kwargs)
        if f1.patch.shape != f0.patch.shape:
            raise Tune3DError(
                f"original and fine-tuned feature maps differ in shape: {tuple(f0.patch.shape)} vs "
                f"{tuple(f1.patch.shape)}"
            )
        return _combine(f0, f1)

    def forward(self, images: torch.Tensor, norm: bool = True, **kwargs: Any) -> Any:
        return self.forward_features(images, norm=norm, **kwargs)


def build_assembled(
    name: str,
    weights: str | None = None,
    finetuned: str | None = None,
    mode: str = "assembled",
    allow_random_init: bool = False,
    device: str | torch.device | None = None,
) -> AssembledBackbone:
    """Create the original backbone ``name`` (``weights``: hub default or a local file) and, for modes that
    need it, a second copy loaded from the fine-tuned checkpoint ``finetuned`` (a timm state dict, as the
    released FiT3D ``*_finetuned.pth`` files are), then assemble them.
    """
    if mode not in ASSEMBLY_MODES:
        raise Tune3DError(f"unknown assembly mode {mode!r}; choose one of {', '.join(ASSEMBLY_MODES)}")
    original = create_backbone(name, weights=weights, allow_random_init=allow_random_init, device=device)
    tuned = None
    if mode in ("finetuned", "assembled"):
        if finetuned is None:
            raise Tune3DError(f"assembly mode {mode!r} needs fine-tuned weights (--finetuned FILE)")
        tuned = create_backbone(name, weights=finetuned, device=device)
    return AssembledBackbone(original, tuned, mode=mode)
