"""``Backbone``: a thin wrapper around a plain timm ViT that turns images into dense patch features.

Images are float ``B,3,H,W`` RGB in [0, 1]. The wrapper normalises them with the model's mean/std,
brings them to a multiple of the patch size, runs timm's ``forward_intermediates`` (position
embeddings are interpolated to any aspect ratio by ``dynamic_img_size=True``) and returns patch
features ``B,C,h,w`` with every prefix token (CLS, registers) split off.

Size handling (``resize=``):

- ``"resize"`` (default): bilinear resize to the *nearest* multiple of the patch size per side
  (480x640 -> 476x644 for /14, grid 34x46);
- ``"floor"``: bilinear resize to the largest multiple not above the size, as FiT3D does
  (876x584 -> 868x574);
- ``"pad"``: centre-pad the normalised image with zeros (the mean colour) up to the next multiple
  (480x640 -> 490x644, grid 35x46); the border tokens then see part padding.

SAM (``spec.fixed_canvas``): the image encoder was trained on one 1024x1024 canvas (absolute position
embedding of 64x64 patches, relative-position tables sized for 14x14 windows and the 64x64 global
blocks). After the usual resize to a patch multiple, the normalised image is placed in the top-left
corner of that canvas and the rest is zero (the mean colour), exactly as SAM's own preprocessing pads;
the encoder runs at its native size (no position interpolation) and the features are cropped back to the
image's ``h x w`` tokens. Dense features are the last requested block's 768-d tokens: SAM's neck
(conv 1x1 -> LayerNorm2d -> conv 3x3 -> LayerNorm2d, 256-d, the mask decoder's input) is loaded and
exported with the weights but not used, because its 3x3 conv mixes the canvas padding into the border
tokens and it has another width. SAM has no CLS token (``cls`` is ``None``) and no final LayerNorm
(``norm`` has no effect). SAM scales images so the longest side is 1024: pass such a resolution (e.g.
768x1024 for 4:3) to match it. A side longer than the canvas enlarges the canvas to that side, and timm
then resamples the position embedding and the global blocks' relative-position tables.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from typing import Literal

import timm
import torch
import torch.nn.functional as F
from torch import nn

from tune3d.backbones.registry import BackboneSpec, get_spec
from tune3d.backbones.weights import WeightsInfo, project_config, resolve_weights, resolve_weights_path
from tune3d.errors import Tune3DError

ResizeMode = Literal["resize", "floor", "pad"]
RESIZE_MODES = ("resize", "floor", "pad")
Precision = Literal["auto", "fp32", "bf16", "fp16"]


@dataclass
class DenseFeatures:
    """Output of :meth:`Backbone.forward_features`.

    ``patch``: ``B,C,h,w`` patch tokens of the last requested layer. ``cls``: ``B,C`` class token of the
    same layer (``None`` for models without one). ``layers``: block index -> ``B,C,h,w`` for every
    requested layer. ``input_size``: the ``(H, W)`` the network saw after resizing/padding (SAM: the image's
    part of its canvas).
    """

    patch: torch.Tensor
    cls: torch.Tensor | None
    layers: dict[int, torch.Tensor] = field(default_factory=dict)
    input_size: tuple[int, int] = (0, 0)

    @property
    def grid_size(self) -> tuple[int, int]:
        return tuple(self.patch.shape[-2:])


def network_input_size(height: int, width: int, patch_size: int, resize: str = "resize") -> tuple[int, int]:
    """The ``(H, W)`` an image of ``height x width`` is brought to before patchifying."""
    if resize == "resize":
        f = lambda s: max(1, int(math.floor(s / patch_size + 0.5))) * patch_size  # noqa: E731
    elif resize == "floor":
        f = lambda s: max(1, s // patch_size) * patch_size  # noqa: E731
    elif resize == "pad":
        f = lambda s: math.ceil(s / patch_size) * patch_size  # noqa: E731
    else:
        raise Tune3DError(f"unknown resize mode {resize!r}; choose one of {', '.join(RESIZE_MODES)}")
    return f(height), f(width)


class Backbone(nn.Module):
    """Dense-feature wrapper around one timm model (``.timm_model``; fine-tune and export that module).

    ``forward_features`` runs under ``torch.no_grad`` unless ``grad=True``; ``forward`` follows the
    ambient grad mode (use it for training). On CUDA, ``precision="auto"`` runs under bf16 autocast
    (fp16 where bf16 is unsupported); features are returned as float32.
    """

    def __init__(
        self, spec: BackboneSpec, timm_model: nn.Module, weights: WeightsInfo, precision: Precision = "auto"
    ):
        super().__init__()
        self.spec = spec
        self.timm_model = timm_model
        self.weights_info = weights
        self.precision = precision
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ description
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def patch_size(self) -> int:
        return self.spec.patch_size

    @property
    def width(self) -> int:
        return self.spec.width

    @property
    def cls_width(self) -> int:
        """Width of the class token :meth:`forward_features` returns as ``cls`` (0 when the model has
        none, e.g. SAM); the depth probe concatenates it to every patch feature."""
        return self.width if getattr(self.timm_model, "cls_token", None) is not None else 0

    @property
    def depth(self) -> int:
        return len(self.timm_model.blocks)

    @property
    def weights(self) -> str:
        """Digest of the weights file, ``"hub"`` or ``"random-init"``."""
        return self.weights_info.label

    @property
    def final_norm(self) -> nn.Module:
        """The LayerNorm applied with ``norm=True`` (``norm``; ``fc_norm`` for EVA-02 MIM weights;
        identity for SAM, whose encoder has none)."""
        if self.spec.final_norm is None:
            return nn.Identity()
        return getattr(self.timm_model, self.spec.final_norm)

    @property
    def num_prefix_tokens(self) -> int:
        return self.timm_model.num_prefix_tokens

    def extra_repr(self) -> str:
        return f"name={self.name}, weights={self.weights}, patch_size={self.patch_size}, width={self.width}"

    # ------------------------------------------------------------------ preprocessing
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``B,3,H,W`` RGB in [0, 1] -> normalised with the model's mean/std."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise Tune3DError(f"expected images B,3,H,W, got shape {tuple(images.shape)}")
        return (images.to(self.mean.dtype) - self.mean) / self.std

    def prepare(self, images: torch.Tensor, resize: str = "resize") -> torch.Tensor:
        """Normalise and bring ``B,3,H,W`` images to a multiple of the patch size (see module doc)."""
        x = self.normalize(images)
        H, W = x.shape[-2:]
        Ht, Wt = network_input_size(H, W, self.patch_size, resize)
        if (Ht, Wt) == (H, W):
            return x
        if resize == "pad":
            top, left = (Ht - H) // 2, (Wt - W) // 2
            return F.pad(x, (left, Wt - W - left, top, Ht - H - top), value=0.0)
        return F.interpolate(
            x, size=(Ht, Wt), mode="bilinear", align_corners=False, antialias=Ht < H or Wt < W
        )

    def grid_size(self, height: int, width: int, resize: str = "resize") -> tuple[int, int]:
        Ht, Wt = network_input_size(height, width, self.patch_size, resize)
        return Ht // self.patch_size, Wt // self.patch_size

    # ------------------------------------------------------------------ features
    def layer_indices(self, layers: int | list[int] | tuple[int, ...] | None) -> list[int]:
        if layers is None:
            return [self.depth - 1]
        layers = [layers] if isinstance(layers, int) else list(layers)
        out = []
        for i in layers:
            j = i + self.depth if i < 0 else i
            if not 0 <= j < self.depth:
                raise Tune3DError(f"{self.name}: layer {i} out of range (model has {self.depth} blocks)")
            out.append(j)
        return sorted(set(out))

    def _autocast(self, device: torch.device):
        if device.type != "cuda" or self.precision == "fp32":
            return contextlib.nullcontext()
        if self.precision == "fp16" or (self.precision == "auto" and not torch.cuda.is_bf16_supported()):
            return torch.autocast("cuda", dtype=torch.float16)
        return torch.autocast("cuda", dtype=torch.bfloat16)

    def forward(
        self,
        images: torch.Tensor,
        layers: int | list[int] | None = None,
        norm: bool = True,
        resize: str = "resize",
    ) -> DenseFeatures:
        """Dense features following the ambient grad mode (for training). See :meth:`forward_features`."""
        x = self.prepare(images.to(self.mean.device), resize)
        idx = self.layer_indices(layers)
        if self.spec.fixed_canvas:
            return self._forward_canvas(x, idx, norm)
        with self._autocast(x.device):
            tokens = self.timm_model.forward_intermediates(
                x,
                indices=idx,
                return_prefix_tokens=True,
                norm=False,
                stop_early=True,
                output_fmt="NLC",
                intermediates_only=True,
            )
        B, h, w = x.shape[0], x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        out: dict[int, torch.Tensor] = {}
        cls = None
        for i, item in zip(idx, tokens):
            patch, prefix = item if isinstance(item, tuple) else (item, None)
            if norm:
                # LayerNorm is per token, so normalising patch and prefix tokens apart equals timm's norm
                patch = self.final_norm(patch)
                prefix = self.final_norm(prefix) if prefix is not None else None
            out[i] = patch.float().reshape(B, h, w, -1).permute(0, 3, 1, 2).contiguous()
            cls = prefix[:, 0].float() if prefix is not None and prefix.shape[1] > 0 else None
        return DenseFeatures(patch=out[idx[-1]], cls=cls, layers=out, input_size=(x.shape[-2], x.shape[-1]))

    def _forward_canvas(self, x: torch.Tensor, idx: list[int], norm: bool) -> DenseFeatures:
        """SAM: run on the fixed canvas with ``x`` (normalised, patch multiple) top-left, crop back."""
        H, W = x.shape[-2:]
        canvas_h, canvas_w = self.timm_model.patch_embed.img_size
        Hc, Wc = max(H, canvas_h), max(W, canvas_w)
        canvas = F.pad(x, (0, Wc - W, 0, Hc - H), value=0.0)
        with self._autocast(x.device):
            maps = self.timm_model.forward_intermediates(
                canvas, indices=idx, norm=False, stop_early=True, output_fmt="NCHW", intermediates_only=True
            )
        h, w = H // self.patch_size, W // self.patch_size
        out: dict[int, torch.Tensor] = {}
        for i, fmap in zip(idx, maps):
            patch = fmap[..., :h, :w].permute(0, 2, 3, 1)
            if norm:
                patch = self.final_norm(patch)
            out[i] = patch.float().permute(0, 3, 1, 2).contiguous()
        return DenseFeatures(patch=out[idx[-1]], cls=None, layers=out, input_size=(H, W))

    def forward_features(
        self,
        images: torch.Tensor,
        layers: int | list[int] | None = None,
        norm: bool = True,
        resize: str = "resize",
        grad: bool = False,
    ) -> DenseFeatures:
        """``B,3,H,W`` images in [0, 1] -> :class:`DenseFeatures` (patch ``B,C,h,w``, cls ``B,C``, layers).

        ``layers``: block indices (negative counts from the end; default the last block); ``norm``: apply
        the final LayerNorm (FiT3D uses it for segmentation, not for depth); ``resize``: ``"resize"``,
        ``"floor"`` or ``"pad"`` (module doc). Runs without autograd unless ``grad=True``.
        """
        with torch.set_grad_enabled(grad):
            return self.forward(images, layers=layers, norm=norm, resize=resize)


def build_timm_model(spec: BackboneSpec, device: str | torch.device | None = "cpu") -> nn.Module:
    """The spec's timm model with random weights (``num_classes=0``, ``dynamic_img_size`` where taken)."""
    extra = {"dynamic_img_size": True} if spec.dynamic_img_size else {}
    with torch.device(device) if device is not None else contextlib.nullcontext():
        return timm.create_model(
            spec.timm_name, pretrained=False, num_classes=0, **extra, **spec.model_kwargs
        )


def create_backbone(
    name: str | None,
    weights: str | os.PathLike | None = None,
    allow_random_init: bool = False,
    device: str | torch.device | None = None,
    precision: Precision = "auto",
    seed: int = 0,
) -> Backbone:
    """Build a registered backbone and load its weights.

    ``name``: registry name (``dinov2_vits14``, ``clip_vitb16``, ``dinov2_vits14_tiny``...); may be ``None``
    when ``weights`` is a tune3d checkpoint (``backbone.safetensors`` + ``backbone.json``), whose config
    names the backbone. ``weights``: an official ``.pth``, a timm/HF ``.safetensors`` or a tune3d
    checkpoint; without it the Hugging Face hub is tried once. Random initialisation (seeded by ``seed``)
    happens only with ``allow_random_init=True``; the result then reports ``weights == "random-init"``.
    The module is returned in eval mode on ``device`` (default: CUDA if available, else CPU).
    """
    if name is None:
        if weights is None:
            raise Tune3DError("create_backbone needs a backbone name or a tune3d checkpoint (--weights)")
        path = resolve_weights_path(weights)
        cfg = project_config(path)
        if cfg is None:
            raise Tune3DError(f"{path}: no backbone.json beside it; pass the backbone name")
        name = cfg["name"]
    spec = get_spec(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # random init is reproducible (and cacheable) for a given seed
        model = build_timm_model(spec)
    info = resolve_weights(model, spec, weights, allow_random_init, seed=seed)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return Backbone(spec, model, info, precision=precision).to(device).eval()
