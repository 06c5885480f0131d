"""VGGT's camera head: iterative refinement of a 9-d pose encoding from the camera tokens."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tune3d.recon.vggt.layers import Block, Mlp


class CameraHead(nn.Module):
    """Camera tokens of the last aggregator layer -> pose encodings ``[T (3), quat xyzw (4), FoV h/w (2)]``.

    Each iteration embeds the current (detached) estimate, modulates the normalised camera tokens
    with it (adaLN: shift, scale and gate), runs the ``trunk`` and adds the predicted delta. The
    activations are identity for translation and quaternion and ReLU for the fields of view.
    """

    target_dim = 9

    def __init__(
        self,
        dim_in: int = 2048,
        trunk_depth: int = 4,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        init_values: float = 0.01,
    ) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            *[Block(dim_in, num_heads, mlp_ratio, init_values=init_values) for _ in range(trunk_depth)]
        )
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, self.target_dim))
        self.embed_pose = nn.Linear(self.target_dim, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim_in, dim_in // 2, self.target_dim)

    def forward(self, layers: Sequence[Tensor], num_iterations: int = 4) -> list[Tensor]:
        """``layers[-1]``: ``B, S, P, 2C`` -> list of ``num_iterations`` activated encodings ``B, S, 9``."""
        tokens = self.token_norm(layers[-1][:, :, 0].float())
        B, S, _ = tokens.shape
        raw = None
        outputs = []
        for _ in range(num_iterations):
            if raw is None:
                cond = self.embed_pose(self.empty_pose_tokens.expand(B, S, -1))
            else:
                # The official head stops gradients between iterations.
                cond = self.embed_pose(raw.detach())
            shift, scale, gate = self.poseLN_modulation(cond).chunk(3, dim=-1)
            x = gate * (self.adaln_norm(tokens) * (1 + scale) + shift) + tokens
            delta = self.pose_branch(self.trunk_norm(self.trunk(x)))
            raw = delta if raw is None else raw + delta
            outputs.append(activate_pose(raw))
        return outputs


def activate_pose(raw: Tensor) -> Tensor:
    """Identity on translation and quaternion, ReLU on the two fields of view."""
    return torch.cat([raw[..., :7], F.relu(raw[..., 7:])], dim=-1)
