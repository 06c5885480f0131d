"""Cached frozen-backbone features for probe training: run the backbone once, iterate over tensors after."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from tqdm.auto import tqdm

from tune3d.errors import Tune3DError
from tune3d.io import load_safetensors, save_safetensors_atomic

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def image_to_tensor(image: Any) -> torch.Tensor:
    """HxWx3 uint8 array/tensor or 3xHxW float tensor in [0,1] -> float32 ``3,H,W`` in [0,1]."""
    t = (
        image if isinstance(image, torch.Tensor) else torch.tensor(np.asarray(image))
    )  # copy: may be read-only
    if t.dim() != 3:
        raise Tune3DError(f"expected an image HxWx3 (uint8) or 3xHxW (float), got shape {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        if t.shape[-1] != 3:
            raise Tune3DError(f"expected a uint8 image HxWx3, got shape {tuple(t.shape)}")
        return t.permute(2, 0, 1).float() / 255.0
    if t.shape[0] != 3:
        raise Tune3DError(f"expected a float image 3xHxW, got shape {tuple(t.shape)}")
    return t.float()


def _target_to_tensor(target: Any) -> torch.Tensor:
    t = target if isinstance(target, torch.Tensor) else torch.tensor(np.asarray(target))
    if t.dim() == 3 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 2:
        raise Tune3DError(f"expected a label/depth map HxW, got shape {tuple(t.shape)}")
    return t


@dataclass
class FeatureBank:
    """Frozen features of a dataset, with their targets.

    ``patch``: ``N,C,h,w`` (storage dtype of the build); ``cls``: ``N,Cc`` or None; ``targets``: ``N,H,W``,
    int labels (stored as uint8 when all values fit; 255 = ignore) or float32 depth in metres (0 = invalid);
    ``images``: the first few input images ``n,3,H,W`` uint8 kept for visualisation; ``meta``: strings that
    identify how the features were made (checked before a cached bank is reused).
    """

    patch: torch.Tensor
    cls: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    images: torch.Tensor | None = None
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.patch.shape[0]
        for name in ("cls", "targets"):
            t = getattr(self, name)
            if t is not None and t.shape[0] != n:
                raise Tune3DError(f"feature bank: {name} has {t.shape[0]} rows, patch has {n}")

    def __len__(self) -> int:
        return self.patch.shape[0]

    @property
    def width(self) -> int:
        return self.patch.shape[1]

    @property
    def cls_width(self) -> int:
        return 0 if self.cls is None else self.cls.shape[1]

    @property
    def target_size(self) -> tuple[int, int]:
        if self.targets is None:
            raise Tune3DError("feature bank has no targets")
        return tuple(self.targets.shape[-2:])

    def batch(
        self,
        index: torch.Tensor,
        flip: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Rows ``index`` as float32 ``patch``, ``cls`` and targets (int64 labels / float32 depth).

        ``flip`` (bool per row) mirrors the feature map and the target horizontally; the CLS token is kept.
        """
        patch = self.patch[index].to(device=device, dtype=torch.float32)
        cls = None if self.cls is None else self.cls[index].to(device=device, dtype=torch.float32)
        tgt = None
        if self.targets is not None:
            tgt = self.targets[index].to(device)
            tgt = tgt.long() if not tgt.is_floating_point() else tgt.float()
        if flip is not None and bool(flip.any()):
            f = flip.to(device)
            patch = torch.where(f[:, None, None, None], patch.flip(-1), patch)
            if tgt is not None:
                tgt = torch.where(f[:, None, None], tgt.flip(-1), tgt)
        return patch, cls, tgt

    # -- building ---------------------------------------------------------------------------------------

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        backbone: Any,
        samples: Iterable[tuple[Any, Any]],
        norm: bool = True,
        batch_size: int = 4,
        device: torch.device | str = "cpu",
        image_size: list[int] | tuple[int, int] | None = None,
        resize: str = "resize",
        feature_dtype: str = "float32",
        keep_images: int = 0,
        progress: bool = True,
        meta: dict[str, str] | None = None,
    ) -> FeatureBank:
        """Run ``backbone.forward_features(images, norm=norm, resize=resize)`` once over ``samples``.

        ``samples`` yields ``(image, target)``: image HxWx3 uint8 or 3xHxW float in [0,1]; target HxW
        (labels int, 255 ignore; or depth float metres, 0 invalid; None for none). With ``image_size=(H, W)``
        images are resized bilinearly (antialiased) and targets by nearest neighbour; otherwise all samples
        must share one size.
        """
        dtype = _DTYPES[feature_dtype]
        total = len(samples) if hasattr(samples, "__len__") else None
        bar = tqdm(total=total, desc="caching features", unit="img", disable=not progress)
        patches, clss, targets, kept = [], [], [], []
        buf_img: list[torch.Tensor] = []
        size = tuple(image_size) if image_size is not None else None

        def flush() -> None:
            x = torch.stack(buf_img).to(device)
            out = backbone.forward_features(x, norm=norm, resize=resize)
            patches.append(out.patch.detach().to("cpu", dtype))
            if getattr(out, "cls", None) is not None:
                clss.append(out.cls.detach().to("cpu", dtype))
            bar.update(len(buf_img))
            buf_img.clear()

        for i, (image, target) in enumerate(samples):
            img = image_to_tensor(image)
            if image_size is not None and tuple(img.shape[-2:]) != size:
                img = F.interpolate(
                    img[None], size=size, mode="bilinear", align_corners=False, antialias=True
                )
                img = img[0]
            elif size is None:
                size = tuple(img.shape[-2:])
            elif tuple(img.shape[-2:]) != size:
                raise Tune3DError(
                    f"sample {i}: image size {tuple(img.shape[-2:])} != {size}; set image_size to resize"
                )
            if target is not None:
                t = _target_to_tensor(target)
                if tuple(t.shape) != size:
                    if image_size is None:
                        raise Tune3DError(f"sample {i}: target is {tuple(t.shape)} but the image is {size}")
                    t = F.interpolate(t[None, None].double(), size=size, mode="nearest")[0, 0].to(t.dtype)
                targets.append(t)
            if len(kept) < keep_images:
                kept.append((img.clamp(0, 1) * 255).round().to(torch.uint8))
            buf_img.append(img.clamp(0, 1))
            if len(buf_img) == batch_size:
                flush()
        if buf_img:
            flush()
        bar.close()
        if not patches:
            raise Tune3DError("no samples to cache features from")
        if targets and len(targets) != sum(p.shape[0] for p in patches):
            raise Tune3DError("some samples have a target and some do not")
        tgt = torch.stack(targets) if targets else None
        if tgt is not None and not tgt.is_floating_point():
            # uint8 storage when the labels fit (ignore 255 included): 8x less memory than int64.
            tgt = tgt.to(torch.uint8) if tgt.min() >= 0 and tgt.max() <= 255 else tgt.long()
        elif tgt is not None:
            tgt = tgt.float()
        info = {
            "norm": str(bool(norm)),
            "resize": resize,
            "image_size": f"{size[0]}x{size[1]}",
            **(meta or {}),
        }
        return cls(
            patch=torch.cat(patches),
            cls=torch.cat(clss) if clss else None,
            targets=tgt,
            images=torch.stack(kept) if kept else None,
            meta=info,
        )

    # -- disk cache ---------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the bank as one safetensors file (metadata kept in the header)."""
        tensors = {"patch": self.patch}
        for name in ("cls", "targets", "images"):
            if getattr(self, name) is not None:
                tensors[name] = getattr(self, name)
        save_safetensors_atomic(tensors, path, metadata={str(k): str(v) for k, v in self.meta.items()})

    @classmethod
    def load(cls, path: str | os.PathLike) -> FeatureBank:
        tensors = load_safetensors(path)
        if "patch" not in tensors:
            raise Tune3DError(f"{path}: not a feature bank (no 'patch' tensor)")
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        return cls(
            patch=tensors["patch"],
            cls=tensors.get("cls"),
            targets=tensors.get("targets"),
            images=tensors.get("images"),
            meta=meta,
        )
