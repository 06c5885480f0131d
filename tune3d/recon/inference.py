"""Image loading, resizing and running a reconstruction model on a set of images.

Each family gets its images the way its official demo prepares them:

- CroCo family (DUSt3R / MASt3R / CUT3R, dust3r ``load_images``): ``size=512`` resizes the long side to
  512 (LANCZOS when shrinking, BICUBIC when enlarging), then centre-crops each side to a multiple of the
  patch size (16); a square image is cropped to 4:3 (``square_ok=False``). ``size=224`` resizes the
  short side to 224 and centre-crops a 224x224 square. Any other ``size`` behaves like 512.
- VGGT (``load_and_preprocess_images``): ``mode="crop"`` resizes to width ``size`` (518 for VGGT-1B;
  the model's ``img_size`` by default) with the height rounded to a multiple of 14, then centre-crops a
  taller-than-square height to ``size``; ``mode="pad"`` fits the long side to ``size`` and pads to a
  ``size x size`` square with white (1.0). Images of different shapes are padded to a common shape
  with white.

Images are read as each official loader reads them (:func:`_to_rgb`): the CroCo family applies EXIF
orientation and drops alpha (the colour under transparent pixels is kept); VGGT ignores EXIF orientation
and composites RGBA onto white.

:func:`reconstruct` runs the model: one forward over all images for VGGT, CUT3R streamed frame by frame
through its recurrent state (:mod:`tune3d.recon.streaming`, same arithmetic, flat memory). For
pairwise models (DUSt3R, MASt3R) ``align="global"`` (default) runs every pair of a pair graph
(:mod:`tune3d.recon.graph`) in batches and fuses them by :func:`tune3d.recon.global_alignment`;
``align="none"`` pairs every image ``i > 1`` with image 1 (``(1, i)``) so all pointmaps are reported in
image 1's frame (image 1's own prediction comes from the first pair). Each image's own-frame depth
comes from a head where the model has one: VGGT's depth head, CUT3R's self-view head, for pairwise
models the self-view head of the pair ``(i, 1)`` or the aligned depth map.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from tqdm.auto import tqdm

from tune3d.errors import Tune3DError
from tune3d.geometry.cameras import invert_rigid
from tune3d.geometry.pose import estimate_focal_from_pointmap, pose_from_pointmaps
from tune3d.recon.croco.cut3r_rays import cut3r_ray_maps
from tune3d.recon.global_alignment import global_alignment
from tune3d.recon.graph import check_connected, make_pairs
from tune3d.recon.interface import ReconModel
from tune3d.recon.streaming import stream_output


@dataclass
class Prepared:
    """Images ready for a model: ``images`` ``S,3,H,W`` in [0, 1] plus how each was obtained.

    ``transforms[i]`` = ``(sx, sy, left, top)``: pixel ``(u, v)`` of the original image maps to
    ``(u * sx - left, v * sy - top)`` in the model input (pixel-centre convention for the scale; use
    :func:`tune3d.geometry.scale_K` then :func:`tune3d.geometry.crop_K` to carry intrinsics along).
    ``valid`` ``S,H,W`` is False on padding.
    """

    images: Tensor
    names: list[str]
    original_sizes: list[tuple[int, int]]  # (H, W)
    transforms: list[tuple[float, float, float, float]]
    valid: Tensor
    colors: np.ndarray = field(repr=False, default=None)  # S,H,W,3 uint8 (for coloured exports)


def model_family(model: ReconModel) -> str:
    return getattr(model, "family", "") or ("vggt" if model.patch_size == 14 else "dust3r")


def default_size(model: ReconModel) -> int:
    """The size the model's weights were trained at where it is known (``trained_input_size``, set from
    the ``model.json`` beside ``train-recon`` weights), else the resolution the official demo uses: 512
    for the CroCo family, ``img_size`` (518) for VGGT."""
    trained = getattr(model, "trained_input_size", None)
    if trained:
        return int(trained)
    if model_family(model) == "vggt":
        return int(getattr(getattr(model, "config", None), "img_size", 518))
    return 512


def _to_rgb(img: Image.Image, family: str = "dust3r") -> Image.Image:
    """RGB the way each family's official loader gets it from ``PIL.Image.open``.

    CroCo family (dust3r ``load_images``): ``exif_transpose(img).convert("RGB")``, so EXIF orientation is
    applied and alpha is dropped (transparent pixels keep the colour stored under them). VGGT
    (``load_and_preprocess_images``): no EXIF orientation; an ``RGBA`` image is composited onto white,
    any other mode is converted to RGB as is.
    """
    if family == "vggt":
        if img.mode == "RGBA":
            bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
            return Image.alpha_composite(bg, img).convert("RGB")
        return img.convert("RGB")
    return ImageOps.exif_transpose(img).convert("RGB")


def read_image(path: str | os.PathLike, family: str = "dust3r") -> Image.Image:
    """An RGB PIL image prepared as ``family``'s official loader does (see :func:`_to_rgb`); a missing or
    unreadable file is a user error."""
    path = Path(path)
    if not path.is_file():
        raise Tune3DError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            im.load()
            return _to_rgb(im, family)
    except (OSError, ValueError, SyntaxError) as e:
        raise Tune3DError(f"{path}: cannot read image ({e})") from None


def _resize_long_side(img: Image.Image, long_side: int) -> tuple[Image.Image, float, float]:
    W, H = img.size
    S = max(W, H)
    new = tuple(int(round(x * long_side / S)) for x in (W, H))
    interp = Image.Resampling.LANCZOS if S > long_side else Image.Resampling.BICUBIC
    return img.resize(new, interp), new[0] / W, new[1] / H


def croco_preprocess(
    img: Image.Image, size: int = 512, patch_size: int = 16, square_ok: bool = False
) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """dust3r ``load_images`` for one image -> (cropped image, ``(sx, sy, left, top)``)."""
    W1, H1 = img.size
    if size == 224:
        img, sx, sy = _resize_long_side(img, round(size * max(W1 / H1, H1 / W1)))
    else:
        img, sx, sy = _resize_long_side(img, size)
    W, H = img.size
    cx, cy = W // 2, H // 2
    if size == 224:
        half = min(cx, cy)
        box = (cx - half, cy - half, cx + half, cy + half)
    else:
        hp = patch_size // 2
        halfw, halfh = ((2 * cx) // patch_size) * hp, ((2 * cy) // patch_size) * hp
        if not square_ok and W == H:
            halfh = (3 * halfw // 4) // hp * hp  # official 3/4, kept on the patch grid
        box = (cx - halfw, cy - halfh, cx + halfw, cy + halfh)
    if box[2] - box[0] < patch_size or box[3] - box[1] < patch_size:
        raise Tune3DError(f"image of {W1}x{H1} is too small for size {size}")
    return img.crop(box), (sx, sy, float(box[0]), float(box[1]))


def vggt_preprocess(
    img: Image.Image, size: int = 518, patch_size: int = 14, mode: str = "crop"
) -> tuple[Tensor, tuple[float, float, float, float], Tensor]:
    """vggt ``load_and_preprocess_images`` for one image -> (``3,H,W`` tensor, transform, valid ``H,W``)."""
    if mode not in ("crop", "pad"):
        raise Tune3DError(f"VGGT preprocessing mode must be 'crop' or 'pad', got {mode!r}")
    W, H = img.size
    if mode == "pad" and H > W:
        new_h, new_w = size, round(W * (size / H) / patch_size) * patch_size
    else:
        new_w, new_h = size, round(H * (size / W) / patch_size) * patch_size
    new_w, new_h = max(new_w, patch_size), max(new_h, patch_size)
    img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
    left = top = 0.0
    valid = torch.ones(new_h, new_w, dtype=torch.bool)
    if mode == "crop" and new_h > size:
        top = (new_h - size) // 2
        x, valid = x[:, top : top + size], valid[top : top + size]
    if mode == "pad":
        ph, pw = size - x.shape[1], size - x.shape[2]
        if ph > 0 or pw > 0:
            t, lft = ph // 2, pw // 2
            x = torch.nn.functional.pad(x, (lft, pw - lft, t, ph - t), value=1.0)
            valid = torch.nn.functional.pad(valid, (lft, pw - lft, t, ph - t), value=False)
            left, top = -float(lft), -float(t)
    return x, (new_w / W, new_h / H, float(left), float(top)), valid


def _pad_to(x: Tensor, valid: Tensor, H: int, W: int) -> tuple[Tensor, Tensor, int, int]:
    ph, pw = H - x.shape[1], W - x.shape[2]
    t, lft = ph // 2, pw // 2
    pad = (lft, pw - lft, t, ph - t)
    return (
        torch.nn.functional.pad(x, pad, value=1.0),
        torch.nn.functional.pad(valid, pad, value=False),
        lft,
        t,
    )


def prepare_images(
    images: Sequence[str | os.PathLike | Image.Image | np.ndarray],
    model: ReconModel,
    size: int | None = None,
    mode: str = "crop",
) -> Prepared:
    """Load and preprocess images for ``model`` (see the module docstring). Inputs are paths, PIL images
    or ``H,W,3`` uint8 arrays."""
    if not images:
        raise Tune3DError("no input images given")
    size = size or default_size(model)
    family = model_family(model)
    tensors, valids, names, sizes, transforms, labels = [], [], [], [], [], []
    for k, item in enumerate(images):
        if isinstance(item, Image.Image):
            img, name = _to_rgb(item, family), f"image_{k:03d}"
        elif isinstance(item, np.ndarray):
            img = _to_rgb(Image.fromarray(np.ascontiguousarray(item, dtype=np.uint8)), family)
            name = f"image_{k:03d}"
        else:
            img, name = read_image(item, family), Path(item).stem
        names.append(name)
        labels.append(str(item) if isinstance(item, (str, os.PathLike)) else f"input image {k}")
        sizes.append((img.size[1], img.size[0]))
        if family == "vggt":
            x, tf, valid = vggt_preprocess(img, size, model.patch_size, mode)
        else:
            crop, tf = croco_preprocess(img, size, model.patch_size)
            x = torch.from_numpy(np.asarray(crop, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
            valid = torch.ones(x.shape[1:], dtype=torch.bool)
        tensors.append(x)
        valids.append(valid)
        transforms.append(tf)
    H = max(t.shape[1] for t in tensors)
    W = max(t.shape[2] for t in tensors)
    if any(t.shape[1:] != (H, W) for t in tensors):
        if family != "vggt":
            k = next(k for k, t in enumerate(tensors) if t.shape[1:] != tensors[0].shape[1:])
            (h0, w0), (h, w) = sizes[0], sizes[k]
            (H0, W0), (Hk, Wk) = tensors[0].shape[1:], tensors[k].shape[1:]
            raise Tune3DError(
                f"{labels[k]}: {w}x{h} gives a {Wk}x{Hk} model input but {labels[0]} ({w0}x{h0}) gives "
                f"{W0}x{H0}; {family} needs images of one aspect ratio (VGGT pads mixed sizes)"
            )
        for k, (t, v) in enumerate(zip(tensors, valids)):
            tensors[k], valids[k], lft, top = _pad_to(t, v, H, W)
            sx, sy, left0, top0 = transforms[k]
            transforms[k] = (sx, sy, left0 - lft, top0 - top)
    batch = torch.stack(tensors)
    colors = (batch.permute(0, 2, 3, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
    return Prepared(batch, names, sizes, transforms, torch.stack(valids), colors)


def model_input_size(model: ReconModel, height: int, width: int, size: int | None = None) -> tuple[int, int]:
    """``(H, W)`` a ``height x width`` frame is *resized* to (no crop) for training/evaluation.

    Long side (CroCo) or width (VGGT) to ``size`` with the other side rounded to a patch multiple, the
    aspect ratio kept up to that rounding (intrinsics follow with ``Frame.resized``).
    """
    size = size or default_size(model)
    p = model.patch_size
    if model_family(model) == "vggt":
        return max(p, round(height * size / width / p) * p), size
    s = size / max(height, width)
    return max(p, round(height * s / p) * p), max(p, round(width * s / p) * p)


def default_conf_threshold(model: ReconModel, conf: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Point-cloud confidence threshold of the official demos: 3 for the CroCo family (DUSt3R's
    ``min_conf_thr``); for VGGT the median confidence, i.e. the lowest 50% dropped (its ``conf_thres=50``)."""
    if model_family(model) == "vggt":
        c = conf[valid.astype(bool)] if valid is not None else conf.reshape(-1)
        return float(np.median(c)) if c.size else 0.0
    return 3.0


@dataclass
class Reconstruction:
    """Per-image predictions (numpy, for export). ``S`` images at ``H x W``.

    ``pts3d`` ``S,H,W,3`` in image 1's camera frame with ``conf`` ``S,H,W``; ``depth`` ``S,H,W`` (own
    frame z) with ``depth_conf`` where available; ``c2w`` ``S,4,4``/``K`` ``S,3,3`` (image 1 = identity)
    where the model predicts cameras, else estimated from the pointmaps (``camera_source``).
    """

    pts3d: np.ndarray
    conf: np.ndarray
    depth: np.ndarray | None
    depth_conf: np.ndarray | None
    c2w: np.ndarray | None
    K: np.ndarray | None
    camera_source: str
    pairs: list[tuple[int, int]]


def _first_frame_normalised_c2w(c2w: Tensor) -> Tensor:
    return invert_rigid(c2w[:1]) @ c2w


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def list_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Image paths from files and folders (a folder gives its image files sorted by name)."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise Tune3DError(f"{p}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
            paths.extend(found)
        else:
            paths.append(p)
    return paths


@torch.no_grad()
def pairwise_predictions(
    model: ReconModel,
    images: Tensor,
    edges: Sequence[tuple[int, int]],
    batch_pairs: int = 4,
    progress: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Run a pairwise model on ``edges`` of images ``S,3,H,W`` in batches of ``batch_pairs``.

    Returns ``pts_i``, ``pts_j`` ``E,H,W,3`` (views ``i`` and ``j`` in view ``i``'s frame) and
    ``conf_i``, ``conf_j`` ``E,H,W``, on the CPU in float32.
    """
    device = next(model.parameters()).device
    x = images.to(device)
    pi, pj, ci, cj = [], [], [], []
    bar = tqdm(total=len(edges), desc="pairs", unit="pair", disable=not progress, leave=False)
    for k in range(0, len(edges), batch_pairs):
        chunk = edges[k : k + batch_pairs]
        out = model(torch.stack([torch.stack([x[i], x[j]]) for i, j in chunk]))
        pi.append(out.pts3d[:, 0].float().cpu())
        pj.append(out.pts3d[:, 1].float().cpu())
        ci.append(out.pts3d_conf[:, 0].float().cpu())
        cj.append(out.pts3d_conf[:, 1].float().cpu())
        bar.update(len(chunk))
    bar.close()
    return torch.cat(pi), torch.cat(pj), torch.cat(ci), torch.cat(cj)


def _global_route(
    model: ReconModel,
    x: Tensor,
    graph: str,
    batch_pairs: int,
    known_K: Tensor | None,
    known_c2w: Tensor | None,
    niter: int,
    progress: bool,
) -> Reconstruction:
    S = x.shape[0]
    edges = make_pairs(S, graph)
    check_connected(S, edges, f"pair graph {graph!r}")
    pi, pj, ci, cj = pairwise_predictions(model, x, edges, batch_pairs, progress)
    ga = global_alignment(
        edges,
        pi,
        pj,
        ci,
        cj,
        n_views=S,
        known_K=known_K,
        known_c2w=known_c2w,
        niter=niter,
        device=x.device,
        progress=progress,
    )
    c2w, pts = ga.c2w.double().cpu(), ga.pts3d.double().cpu()
    if known_c2w is None:  # report in image 1's camera frame, like the other routes
        T = invert_rigid(c2w[0])
        c2w = T @ c2w
        pts = pts @ T[:3, :3].T + T[:3, 3]
    return Reconstruction(
        pts3d=pts.float().numpy(),
        conf=ga.conf.float().cpu().numpy(),
        depth=ga.depth.float().cpu().numpy(),
        depth_conf=ga.conf.float().cpu().numpy(),
        c2w=c2w.numpy(),
        K=ga.K.double().cpu().numpy(),
        camera_source="global_alignment",
        pairs=[tuple(e) for e in edges],
    )


def _cut3r_known_ray_maps(known_c2w, known_K, H: int, W: int) -> Tensor:
    """CUT3R's ray maps ``S,6,H,W`` from known ``c2w`` ``S,4,4`` and ``K`` ``S,3,3`` (both needed)."""
    if known_c2w is None or known_K is None:
        raise Tune3DError("CUT3R's ray-map input needs both camera poses and intrinsics")
    c2w = torch.as_tensor(known_c2w, dtype=torch.float64).cpu()
    return cut3r_ray_maps(c2w, torch.as_tensor(known_K, dtype=torch.float64).cpu(), H, W)


ALIGN_MODES = ("global", "none")


@torch.no_grad()
def reconstruct(
    model: ReconModel,
    images: Tensor,
    batch_pairs: int = 4,
    align: str = "global",
    graph: str = "complete",
    known_K: Tensor | np.ndarray | None = None,
    known_c2w: Tensor | np.ndarray | None = None,
    niter: int = 300,
    progress: bool = False,
) -> Reconstruction:
    """Run ``model`` on images ``S,3,H,W`` of one scene; collect per-image outputs (see the module doc).

    ``align``/``graph``/``known_K`` (``S,3,3`` at the model input)/``known_c2w`` (``S,4,4``)/``niter``
    apply to pairwise models; N-view models always run one forward over all images. CUT3R takes known
    cameras (both ``known_c2w`` and ``known_K``) as its ray-map input; its points are then reported in the
    poses' world (view 1's output frame placed at ``known_c2w[0]``) with the given cameras.
    """
    if align not in ALIGN_MODES:
        raise Tune3DError(f"--align {align!r}: expected one of {', '.join(ALIGN_MODES)}")
    device = next(model.parameters()).device
    x = images.to(device)
    S, _, H, W = x.shape
    if model.num_views == 2 and align == "global" and S >= 2:
        with torch.enable_grad():
            return _global_route(model, x, graph, batch_pairs, known_K, known_c2w, niter, progress)
    if model.num_views == 2:
        if S == 1:
            pairs = [(0, 0)]
        else:
            pairs = [(0, i) for i in range(1, S)]
        reverse = [(i, 0) for i in range(1, S)]
        todo = pairs + reverse
        outs = []
        for k in range(0, len(todo), batch_pairs):
            chunk = todo[k : k + batch_pairs]
            batch = torch.stack([torch.stack([x[i], x[j]]) for i, j in chunk])
            outs.append(model(batch))
        pts3d = torch.cat([o.pts3d for o in outs])  # P,2,H,W,3
        conf = torch.cat([o.pts3d_conf for o in outs])
        self_pts = torch.cat([o.pts3d_self[:, 0] for o in outs])  # P,H,W,3
        self_conf = torch.cat([o.pts3d_self_conf[:, 0] for o in outs])
        n = len(pairs)
        world = [pts3d[0, 0]] + [pts3d[k, 1] for k in range(n)][: S - 1]
        wconf = [conf[0, 0]] + [conf[k, 1] for k in range(n)][: S - 1]
        own = [self_pts[0]] + [self_pts[n + k] for k in range(S - 1)]
        own_conf = [self_conf[0]] + [self_conf[n + k] for k in range(S - 1)]
        P, C = torch.stack(world), torch.stack(wconf)
        own_t, own_c = torch.stack(own), torch.stack(own_conf)
        # Procrustes on the more confident half of each image's pixels (both pointmaps must agree there).
        mask = (own_c >= own_c.flatten(1).median(1).values[:, None, None]) & (
            C >= C.flatten(1).median(1).values[:, None, None]
        )
        c2w = pose_from_pointmaps(P.double(), own_t.double(), mask, with_scale=True)
        c2w = _first_frame_normalised_c2w(c2w)
        f = estimate_focal_from_pointmap(own_t.double(), mask)
        K = torch.zeros(S, 3, 3, dtype=torch.float64)
        K[:, 0, 0] = K[:, 1, 1] = f.cpu()
        K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = W / 2, H / 2, 1
        return Reconstruction(
            pts3d=P.float().cpu().numpy(),
            conf=C.float().cpu().numpy(),
            depth=own_t[..., 2].float().cpu().numpy(),
            depth_conf=own_c.float().cpu().numpy(),
            c2w=c2w.cpu().numpy(),
            K=K.numpy(),
            camera_source="procrustes+focal",
            pairs=pairs,
        )
    family, ray_maps = model_family(model), None
    if known_c2w is not None or known_K is not None:
        if family != "cut3r":
            raise Tune3DError(f"{family}: known cameras are not an input of this model")
        ray_maps = _cut3r_known_ray_maps(known_c2w, known_K, H, W)
    if family == "cut3r":  # one frame at a time through the recurrent state
        out = stream_output(model, x, progress, ray_maps)
    else:
        out = model(x[None])
    if out.depth is not None:
        depth, dconf = out.depth[0], out.depth_conf[0]
    elif out.pts3d_self is not None and out.pts3d_self.shape[1] == S:
        depth, dconf = out.pts3d_self[0, ..., 2], out.pts3d_self_conf[0]
    else:
        depth = dconf = None
    c2w = K = None
    source = "none"
    if out.c2w is not None:
        c2w = _first_frame_normalised_c2w(out.c2w[0].double()).cpu().numpy()
        source = "camera_head"
    if out.K is not None:
        K = out.K[0].double().cpu().numpy()
    elif out.pts3d_self is not None and out.pts3d_self.shape[1] == S:
        f = estimate_focal_from_pointmap(out.pts3d_self[0].double())
        Kt = torch.zeros(S, 3, 3, dtype=torch.float64)
        Kt[:, 0, 0] = Kt[:, 1, 1] = f.cpu()
        Kt[:, 0, 2], Kt[:, 1, 2], Kt[:, 2, 2] = W / 2, H / 2, 1
        K = Kt.numpy()
    pts3d = out.pts3d[0].float().cpu().numpy()
    if ray_maps is not None:  # the given cameras; outputs (in view 1's frame) go to the poses' world
        world = torch.as_tensor(known_c2w, dtype=torch.float64).cpu()
        pts3d = (out.pts3d[0].double().cpu() @ world[0, :3, :3].T + world[0, :3, 3]).float().numpy()
        c2w, K = world.numpy(), torch.as_tensor(known_K, dtype=torch.float64).cpu().numpy()
        source = "known"
    return Reconstruction(
        pts3d=pts3d,
        conf=out.pts3d_conf[0].float().cpu().numpy(),
        depth=None if depth is None else depth.float().cpu().numpy(),
        depth_conf=None if dconf is None else dconf.float().cpu().numpy(),
        c2w=c2w,
        K=K,
        camera_source=source,
        pairs=[],
    )
