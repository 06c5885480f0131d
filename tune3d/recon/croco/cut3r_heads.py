"""CUT3R prediction heads (CUT3R ``src/dust3r/heads``: ``DPTPts3dPose``, ``LinearPts3dPose``) and pose maths.

A head receives ``[enc_out, dec_a[:, 1:], dec_b[:, 1:], dec_L]`` where ``dec_L`` still starts with the pose
token. It predicts, per frame:

- ``pose``: 7-d encoding (translation, quaternion wxyz) of the camera-to-world pose from the pose token
  (``pose_head``); translation ``t * expm1(|t|) / |t|``, quaternion normalised with non-negative real part;
- ``pts3d_self``/``conf_self``: points in the frame's own camera (``dpt_self`` / ``proj``);
- ``pts3d``/``conf``: points in the world frame (first camera), from tokens modulated by the pose token
  (``final_transform``, two adaLN blocks) and ``dpt_cross`` / ``cross_proj``;
- ``rgb``: the reconstructed image in [-1, 1] (``dpt_rgb`` / ``rgb_proj``), as the official code returns it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tune3d.geometry.pose import quat_to_mat
from tune3d.recon.croco.dpt import DPTAdapter
from tune3d.recon.croco.heads import pixel_shuffle_tokens, postprocess
from tune3d.recon.croco.layers import ConditionModulationBlock, Mlp, RoPE2D


def postprocess_pose(raw: Tensor) -> Tensor:
    """Raw ``...,7`` pose -> (translation, unit quaternion wxyz, w >= 0); mode ``('exp', -inf, inf)``."""
    trans, quat = raw[..., :3], raw[..., 3:7]
    d = trans.norm(dim=-1, keepdim=True)
    trans = trans * (torch.expm1(d) / d.clip(min=1e-8))
    quat = F.normalize(quat, p=2, dim=-1)
    quat = torch.where(quat[..., :1] < 0, -quat, quat)
    return torch.cat([trans, quat], dim=-1)


def pose_encoding_to_c2w(enc: Tensor) -> Tensor:
    """Pose encodings ``...,7`` (t, q wxyz) -> camera-to-world matrices ``...,4,4`` (OpenCV axes)."""
    c2w = torch.zeros(enc.shape[:-1] + (4, 4), dtype=enc.dtype, device=enc.device)
    c2w[..., :3, :3] = quat_to_mat(enc[..., 3:7], scalar_first=True)
    c2w[..., :3, 3] = enc[..., :3]
    c2w[..., 3, 3] = 1.0
    return c2w


def postprocess_rgb(raw: Tensor, eps: float = 1e-6) -> Tensor:
    """Raw ``B,3,H,W`` -> ``B,H,W,3`` in [-1, 1] (sigmoid squeezed by ``eps``, then ``(x - 0.5) * 2``)."""
    rgb = torch.sigmoid(raw.permute(0, 2, 3, 1)) * (1 - 2 * eps) + eps
    return (rgb - 0.5) * 2


class PoseDecoder(nn.Module):
    """``mlp`` from the pose token to the raw 7-d pose encoding (absolute T, quaternion R)."""

    def __init__(self, hidden_size: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), 7)

    def forward(self, pose_token: Tensor) -> Tensor:
        return self.mlp(pose_token)


class _PoseConditioned(nn.Module):
    """Shared part of both CUT3R heads: pose decoding and the pose-modulated cross-view tokens."""

    def __init__(self, dec_dim: int, dec_num_heads: int, rope: RoPE2D) -> None:
        super().__init__()
        self.pose_head = PoseDecoder(dec_dim)
        self.final_transform = nn.ModuleList(
            [ConditionModulationBlock(dec_dim, dec_num_heads, 4.0, rope=rope) for _ in range(2)]
        )

    def split(self, tokens: Sequence[Tensor], pos: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """-> (pose encoding ``B,7``, self-view token list, world-view token list) without the pose token."""
        pose_token, last = tokens[-1][:, 0], tokens[-1][:, 1:]
        cross = last
        for blk in self.final_transform:
            cross = blk(cross, pose_token, pos)
        pose = postprocess_pose(self.pose_head(pose_token))
        return pose, [*tokens[:-1], last], [*tokens[:-1], cross]


class CUT3RDPTHead(_PoseConditioned):
    """CUT3R ``dpt`` head: ``dpt_self``, ``dpt_cross`` (4 channels: xyz + conf), ``dpt_rgb`` (3 channels)."""

    def __init__(
        self, enc_dim: int, dec_dim: int, dec_num_heads: int, rope: RoPE2D, patch_size: int, **dpt_kw
    ):
        super().__init__(dec_dim, dec_num_heads, rope)
        dims = [enc_dim, dec_dim, dec_dim, dec_dim]
        self.dpt_self = DPTAdapter(4, dims, patch_size, **dpt_kw)
        self.dpt_cross = DPTAdapter(4, dims, patch_size, **dpt_kw)
        self.dpt_rgb = DPTAdapter(3, dims, patch_size, **dpt_kw)

    def forward(
        self, tokens: Sequence[Tensor], image_size: tuple[int, int], pos: Tensor
    ) -> dict[str, Tensor]:
        pose, x_self, x_cross = self.split(tokens, pos)
        own = postprocess(self.dpt_self(x_self, image_size))
        world = postprocess(self.dpt_cross(x_cross, image_size))
        return {
            "pts3d_self": own["pts3d"],
            "conf_self": own["conf"],
            "pts3d": world["pts3d"],
            "conf": world["conf"],
            "rgb": postprocess_rgb(self.dpt_rgb(x_self, image_size)),
            "pose": pose,
        }


class CUT3RLinearHead(_PoseConditioned):
    """CUT3R ``linear`` head: per-token MLPs ``proj`` / ``cross_proj`` / ``rgb_proj`` + pixel shuffle."""

    def __init__(self, dec_dim: int, dec_num_heads: int, rope: RoPE2D, patch_size: int) -> None:
        super().__init__(dec_dim, dec_num_heads, rope)
        self.patch_size = patch_size
        p2 = patch_size**2
        self.proj = Mlp(dec_dim, 4 * dec_dim, 4 * p2)
        self.rgb_proj = Mlp(dec_dim, 4 * dec_dim, 3 * p2)
        self.cross_proj = Mlp(dec_dim, 4 * dec_dim, 4 * p2)

    def forward(
        self, tokens: Sequence[Tensor], image_size: tuple[int, int], pos: Tensor
    ) -> dict[str, Tensor]:
        pose, x_self, x_cross = self.split(tokens, pos)
        p = self.patch_size
        own = postprocess(pixel_shuffle_tokens(self.proj(x_self[-1]), image_size, p), pos_z=True)
        world = postprocess(pixel_shuffle_tokens(self.cross_proj(x_cross[-1]), image_size, p))
        rgb = pixel_shuffle_tokens(self.rgb_proj(x_self[-1]), image_size, p)
        return {
            "pts3d_self": own["pts3d"],
            "conf_self": own["conf"],
            "pts3d": world["pts3d"],
            "conf": world["conf"],
            "rgb": postprocess_rgb(rgb),
            "pose": pose,
        }
