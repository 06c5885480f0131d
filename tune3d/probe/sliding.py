"""Test-time procedures of the probe protocol: sliding-window segmentation and flip-averaged depth."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def slide_windows(height: int, width: int, crop: tuple[int, int], stride: tuple[int, int]) -> list[tuple]:
    """mmseg ``slide_inference`` windows ``(y0, y1, x0, x1)``: a ``stride`` grid of ``crop`` windows, the
    last row/column shifted back inside the image (windows are smaller when the image is)."""
    ch, cw = crop
    sh, sw = stride
    rows = max(height - ch + sh - 1, 0) // sh + 1
    cols = max(width - cw + sw - 1, 0) // sw + 1
    boxes = []
    for r in range(rows):
        for c in range(cols):
            y1, x1 = min(r * sh + ch, height), min(c * sw + cw, width)
            y0, x0 = max(y1 - ch, 0), max(x1 - cw, 0)
            boxes.append((y0, y1, x0, x1))
    return boxes


@torch.no_grad()
def slide_logits(
    fn: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    num_classes: int,
    crop: tuple[int, int] = (512, 512),
    stride: tuple[int, int] = (341, 341),
) -> torch.Tensor:
    """Average of ``fn`` over sliding windows: ``image 1,3,H,W -> logits 1,K,H,W``.

    ``fn(crop 1,3,h,w) -> 1,K,h,w`` logits at the crop's size; overlapping windows are averaged.
    """
    _, _, H, W = image.shape
    out = image.new_zeros((1, num_classes, H, W))
    count = image.new_zeros((1, 1, H, W))
    for y0, y1, x0, x1 in slide_windows(H, W, crop, stride):
        out[:, :, y0:y1, x0:x1] += fn(image[:, :, y0:y1, x0:x1])
        count[:, :, y0:y1, x0:x1] += 1
    return out / count


@torch.no_grad()
def flip_average(fn: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor) -> torch.Tensor:
    """Flip test-time augmentation: ``(fn(x) + flip(fn(flip(x)))) / 2`` (flips along width)."""
    return 0.5 * (fn(image) + fn(image.flip(-1)).flip(-1))


def resize_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``B,C,h,w`` to ``size`` (no-op when equal)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
