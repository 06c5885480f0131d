"""VGGT family: official-checkpoint-compatible VGGT-1B and a tiny test configuration.

Registered names: ``vggt_1b`` (weights: Hugging Face ``facebook/VGGT-1B``, ``model.safetensors`` or
``model.pt``) and ``vggt_tiny`` (random weights, for tests and demos).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from tune3d.recon._registry import register_model
from tune3d.recon.vggt.model import VGGT, VGGTConfig
from tune3d.recon.vggt.pose_encoding import c2w_to_extrinsics, decode_pose, encode_pose, extrinsics_to_c2w

__all__ = [
    "VGGT",
    "VGGTConfig",
    "VGGT_1B",
    "VGGT_TINY",
    "c2w_to_extrinsics",
    "decode_pose",
    "encode_pose",
    "extrinsics_to_c2w",
    "vggt_1b",
    "vggt_tiny",
]

VGGT_1B = VGGTConfig()

VGGT_TINY = VGGTConfig(
    img_size=56,
    embed_dim=64,
    depth=4,
    num_heads=2,
    encoder_depth=2,
    encoder_num_heads=2,
    camera_trunk_depth=1,
    camera_num_heads=2,
    dpt_features=16,
    dpt_out_channels=(8, 16, 32, 32),
    dpt_layers=(0, 1, 2, 3),
    track_features=16,
    track_hidden_size=32,
    track_corr_levels=2,
    track_corr_radius=1,
    track_depth=1,
    track_virtual_tracks=4,
)


def _build(config: VGGTConfig, device: torch.device | str | None, **overrides) -> VGGT:
    # Under the meta device nothing is allocated; load weights with ``load_state_dict(..., assign=True)``
    # or ``to_empty()`` + ``load_state_dict`` and then call ``reset_non_persistent_buffers()``.
    with torch.device(device) if device is not None else nullcontext():
        return VGGT(config, **overrides)


@register_model(
    "vggt_1b",
    family="vggt",
    official=True,
    description="VGGT-1B: DINOv2 ViT-L/14-reg encoder, 24 frame/global attention pairs, four heads",
    weights_hint="facebook/VGGT-1B (model.safetensors or model.pt)",
)
def vggt_1b(device: torch.device | str | None = None, **overrides) -> VGGT:
    return _build(VGGT_1B, device, **overrides)


@register_model(
    "vggt_tiny",
    family="vggt",
    official=False,
    description="Tiny random VGGT (embed 64, 4 steps, 56 px) for tests and demos",
)
def vggt_tiny(device: torch.device | str | None = None, **overrides) -> VGGT:
    return _build(VGGT_TINY, device, **overrides)
