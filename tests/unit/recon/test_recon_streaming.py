"""Streaming CUT3R gives the same per-frame outputs as the all-frames forward."""

from __future__ import annotations

import torch

from tune3d.recon import create_model
from tune3d.recon.streaming import stream_cut3r, stream_output


def test_streaming_matches_forward():
    torch.manual_seed(0)
    model = create_model("cut3r_tiny", allow_random_init=True)
    images = torch.rand(4, 3, 32, 48)
    with torch.no_grad():
        ref = model(images[None])
    out = stream_output(model, images)
    for a, b in ((out.pts3d, ref.pts3d), (out.pts3d_conf, ref.pts3d_conf), (out.pts3d_self, ref.pts3d_self),
                 (out.c2w, ref.c2w), (out.extras["rgb"], ref.extras["rgb"])):  # fmt: skip
        torch.testing.assert_close(a, b.cpu(), atol=1e-5, rtol=1e-4)
    # a generator: frames are consumed lazily, one output per frame
    gen = stream_cut3r(model, iter(images))
    first = next(gen)
    assert first["pts3d"].shape == (32, 48, 3) and first["conf"].shape == (32, 48)
    assert len(list(gen)) == 3
