"""Streaming CUT3R: frames go through the recurrent state one at a time.

``CUT3R.forward`` encodes every frame before decoding, so its activations grow with the sequence.
:func:`stream_cut3r` encodes, decodes and reads out one frame at a time: on the model's device only the
state tokens, the pose memory and one frame's activations are alive, and each frame's outputs are moved
to the CPU as soon as they exist. The arithmetic is the same as ``forward`` (same ``step`` per frame).
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
def stream_cut3r(model, frames: Iterable[Tensor]) -> Iterator[dict[str, Tensor]]:
    """Yield per-frame CPU outputs (``pts3d``/``pts3d_self`` ``H,W,3``, ``conf``/``conf_self`` ``H,W``,
    ``pose`` encoding, ``rgb``) for frames ``3,H,W`` in [0, 1], in order (batch of one)."""
    device = next(model.parameters()).device
    state = None
    for i, frame in enumerate(frames):
        x = frame.to(device)[None, None]
        model._check_images(x)
        H, W = x.shape[-2:]
        feat, pos = model.encode(x[:, 0])
        if state is None:
            state = model.init_state(1, device)
        res, state = model.step(feat, pos, state, first=i == 0, image_size=(H, W))
        yield {k: res[k][0].detach().float().cpu() for k in OUTPUT_KEYS if k in res}


def stream_output(model, images: Tensor, progress: bool = False) -> ReconOutput:
    """Run :func:`stream_cut3r` over images ``S,3,H,W`` and assemble a ``ReconOutput`` (batch of one,
    on the CPU) like ``model(images[None])``."""
    frames = tqdm(images, desc="frames", unit="frame", disable=not progress, leave=False)
    # stream_cut3r drops the batch dim per frame; frames_to_output stacks views on dim 1 of B = 1.
    return frames_to_output([{k: v[None] for k, v in r.items()} for r in stream_cut3r(model, frames)])
