"""Streaming CUT3R: frames go through the recurrent state one at a time.

``CUT3R.forward`` encodes every frame before decoding, so its activations grow with the sequence.
:func:`stream_cut3r` encodes, decodes and reads out one frame at a time: on the model's device only the
state tokens, the pose memory and one frame's activations are alive, and each frame's outputs are moved
to the CPU as soon as they exist. The arithmetic is the same as ``forward`` (same ``encode_frame`` and
``step`` per frame), with or without known cameras as ray maps.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor
from tqdm.auto import tqdm

from tune3d.recon.croco.cut3r import frames_to_output
from tune3d.recon.interface import ReconOutput

OUTPUT_KEYS = ("pts3d", "conf", "pts3d_self", "conf_self", "pose", "rgb")


@torch.no_grad()
def stream_cut3r(
    model, frames: Iterable[Tensor], ray_maps: Iterable[Tensor | None] | None = None
) -> Iterator[dict[str, Tensor]]:
    """Yield per-frame CPU outputs (``pts3d``/``pts3d_self`` ``H,W,3``, ``conf``/``conf_self`` ``H,W``,
    ``pose`` encoding, ``rgb``) for frames ``3,H,W`` in [0, 1], in order (batch of one).

    ``ray_maps`` (known cameras, one ``6,H,W`` map or ``None`` per frame, from
    :func:`tune3d.recon.croco.cut3r_rays.cut3r_ray_maps`) makes this a stream "with rays": frames with a
    map add the ray encoder's tokens, frames without one the masked ray token, as the batched forward."""
    device = next(model.parameters()).device
    with_rays = ray_maps is not None
    rays = iter(ray_maps) if with_rays else None
    state = None
    for i, frame in enumerate(frames):
        x = frame.to(device)[None, None]
        model._check_images(x)
        H, W = x.shape[-2:]
        ray = next(rays, None) if with_rays else None
        ray = None if ray is None else ray.to(device)[None]
        feat, pos = model.encode_frame(x[:, 0], ray, with_rays=with_rays)
        if state is None:
            state = model.init_state(1, device)
        res, state = model.step(feat, pos, state, first=i == 0, image_size=(H, W))
        yield {k: res[k][0].detach().float().cpu() for k in OUTPUT_KEYS if k in res}


def stream_output(
    model, images: Tensor, progress: bool = False, ray_maps: Tensor | None = None
) -> ReconOutput:
    """Run :func:`stream_cut3r` over images ``S,3,H,W`` (and optional ray maps ``S,6,H,W``) and assemble
    a ``ReconOutput`` (batch of one, on the CPU) like ``model(images[None], ray_maps[None])``."""
    frames = tqdm(images, desc="frames", unit="frame", disable=not progress, leave=False)
    # stream_cut3r drops the batch dim per frame; frames_to_output stacks views on dim 1 of B = 1.
    out = stream_cut3r(model, frames, None if ray_maps is None else list(ray_maps))
    return frames_to_output([{k: v[None] for k, v in r.items()} for r in out])
