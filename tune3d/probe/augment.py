"""Training augmentations of the DINOv2 / FiT3D probe protocol (mmseg / depth-toolbox semantics).

Images are ``H,W,3`` uint8 numpy arrays, labels ``H,W`` int64 (255 ignore), depth ``H,W`` float32 metres
(0 invalid); every function takes a ``numpy.random.Generator`` so a draw is reproducible.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

IGNORE = 255


def _resize(arr: np.ndarray, size_hw: tuple[int, int], nearest: bool) -> np.ndarray:
    h, w = size_hw
    if arr.shape[:2] == (h, w):
        return arr
    if arr.ndim == 3:
        return np.array(Image.fromarray(arr).resize((w, h), Image.NEAREST if nearest else Image.BILINEAR))
    mode = "I" if arr.dtype.kind in "iu" else "F"
    im = Image.fromarray(arr.astype(np.int32 if mode == "I" else np.float32), mode=mode)
    out = np.array(im.resize((w, h), Image.NEAREST if nearest else Image.BILINEAR))
    return out.astype(arr.dtype)


def rescale_size(hw: tuple[int, int], scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv ``imrescale`` size: the largest ``(H, W)`` with the aspect kept whose long / short sides fit
    ``max(scale)`` / ``min(scale)`` (``scale = (2048, 512)`` in the protocol)."""
    h, w = hw
    f = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(h * f + 0.5), int(w * f + 0.5)


def random_resize(
    image: np.ndarray,
    label: np.ndarray,
    rng: np.random.Generator,
    scale: tuple[int, int] = (2048, 512),
    ratio_range: tuple[float, float] = (0.5, 2.0),
) -> tuple[np.ndarray, np.ndarray]:
    """mmseg ``Resize(img_scale=scale, ratio_range=...)``: ``scale * U(ratio_range)``, aspect kept."""
    r = rng.uniform(*ratio_range)
    size = rescale_size(image.shape[:2], (int(scale[0] * r), int(scale[1] * r)))
    return _resize(image, size, nearest=False), _resize(label, size, nearest=True)


def _crop_box(
    hw: tuple[int, int], crop: tuple[int, int], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    mh, mw = max(hw[0] - crop[0], 0), max(hw[1] - crop[1], 0)
    y, x = int(rng.integers(0, mh + 1)), int(rng.integers(0, mw + 1))
    return y, x, min(y + crop[0], hw[0]), min(x + crop[1], hw[1])


def random_crop(
    image: np.ndarray,
    target: np.ndarray,
    rng: np.random.Generator,
    crop: tuple[int, int] = (512, 512),
    cat_max_ratio: float = 1.0,
    ignore: int = IGNORE,
) -> tuple[np.ndarray, np.ndarray]:
    """mmseg ``RandomCrop``: a random ``crop`` window; with ``cat_max_ratio < 1`` up to 10 draws until no
    class (ignore excluded) covers ``cat_max_ratio`` of the window and at least two classes are present."""
    box = _crop_box(image.shape[:2], crop, rng)
    if cat_max_ratio < 1.0:
        for _ in range(10):
            y0, x0, y1, x1 = box
            vals, cnt = np.unique(target[y0:y1, x0:x1], return_counts=True)
            cnt = cnt[vals != ignore]
            if len(cnt) > 1 and cnt.max() / cnt.sum() < cat_max_ratio:
                break
            box = _crop_box(image.shape[:2], crop, rng)
    y0, x0, y1, x1 = box
    return image[y0:y1, x0:x1], target[y0:y1, x0:x1]


def pad_to(image: np.ndarray, target: np.ndarray, size: tuple[int, int], target_pad: float) -> tuple:
    """Pad bottom/right to ``size`` (image 0, target ``target_pad``: 255 labels / 0 depth), as mmseg Pad."""
    h, w = image.shape[:2]
    ph, pw = max(size[0] - h, 0), max(size[1] - w, 0)
    if ph == 0 and pw == 0:
        return image, target
    image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
    target = np.pad(target, ((0, ph), (0, pw)), constant_values=target_pad)
    return image, target


def nyu_train_crop(image: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The depth toolbox's ``NYUCrop`` for training: rows 45:472, columns 43:608 of the 480x640 frame
    (scaled to other sizes), removing the border without Kinect depth."""
    H, W = depth.shape[:2]
    y0, y1, x0, x1 = int(45 * H / 480), int(472 * H / 480), int(43 * W / 640), int(608 * W / 640)
    return image[y0:y1, x0:x1], depth[y0:y1, x0:x1]


def random_flip(image: np.ndarray, target: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> tuple:
    if rng.random() < p:
        return image[:, ::-1], target[:, ::-1]
    return image, target


def photometric_distortion(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """mmseg ``PhotoMetricDistortion``: each with p=0.5, brightness +-32, contrast x[0.5, 1.5] (before or
    after the colour steps), saturation x[0.5, 1.5] and hue +-18 (OpenCV's 0-180 hue) in HSV."""
    img = image.astype(np.float32)
    if rng.integers(2):
        img = np.clip(img + rng.uniform(-32, 32), 0, 255)
    contrast_first = bool(rng.integers(2))
    if contrast_first and rng.integers(2):
        img = np.clip(img * rng.uniform(0.5, 1.5), 0, 255)
    do_sat, do_hue = bool(rng.integers(2)), bool(rng.integers(2))
    sat = rng.uniform(0.5, 1.5) if do_sat else 1.0
    hue = int(rng.integers(-18, 19)) if do_hue else 0
    if do_sat or do_hue:
        hsv = np.array(Image.fromarray(img.round().astype(np.uint8)).convert("HSV")).astype(np.float32)
        hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0, 255)
        hsv[..., 0] = (hsv[..., 0] + hue * 256.0 / 180.0) % 256.0  # PIL hue is 0-255 for 0-360 degrees
        img = np.array(Image.fromarray(hsv.round().clip(0, 255).astype(np.uint8), mode="HSV").convert("RGB"))
        img = img.astype(np.float32)
    if not contrast_first and rng.integers(2):
        img = np.clip(img * rng.uniform(0.5, 1.5), 0, 255)
    return img.round().astype(np.uint8)


def random_rotate(
    image: np.ndarray, depth: np.ndarray, rng: np.random.Generator, degree: float = 2.5, p: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Toolbox ``RandomRotate``: with probability ``p`` rotate by ``U(-degree, degree)`` about the centre
    (image bilinear, depth nearest, zero fill: rotated-in depth is invalid)."""
    if rng.random() >= p:
        return image, depth
    angle = float(rng.uniform(-degree, degree))
    img = np.array(Image.fromarray(image).rotate(angle, resample=Image.BILINEAR))
    dep = np.array(Image.fromarray(depth.astype(np.float32), mode="F").rotate(angle, resample=Image.NEAREST))
    return img, dep.astype(np.float32)


def color_aug(
    image: np.ndarray,
    rng: np.random.Generator,
    p: float = 0.5,
    gamma: tuple[float, float] = (0.9, 1.1),
    brightness: tuple[float, float] = (0.75, 1.25),
    color: tuple[float, float] = (0.9, 1.1),
) -> np.ndarray:
    """Toolbox / BTS ``ColorAug``: with probability ``p``, ``((x ** g) * b * c_rgb)`` on ``x`` in [0, 1]."""
    if rng.random() >= p:
        return image
    x = image.astype(np.float32) / 255.0
    x = x ** rng.uniform(*gamma) * rng.uniform(*brightness) * rng.uniform(*color, size=3).astype(np.float32)
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)
