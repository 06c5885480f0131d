"""DINOv2 ViT with register tokens, laid out as VGGT's ``aggregator.patch_embed``.

Parameter names match the DINOv2 torch.hub models (``cls_token``, ``pos_embed``, ``register_tokens``,
``mask_token``, ``patch_embed.proj``, ``blocks.N``, ``norm``), which VGGT embeds unchanged. timm's
DINOv2 port uses different names and a different position-embedding layout, so the encoder is
written here. Stochastic depth is left out: it is zero for every released model, and its schedule
is what stops the official code from being built on the meta device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from tune3d.recon.vggt.layers import Block, PatchEmbed


class DinoV2Encoder(nn.Module):
    """ViT encoder: ``B,3,H,W`` (already ImageNet-normalised) -> normalised patch tokens ``B, N, D``.

    The learned position embedding covers an ``img_size // patch_size`` square grid plus the class
    token; other input sizes resample it with bicubic interpolation to the exact output grid (with
    anti-aliasing and no size offset, as the ``*_reg`` DINOv2 models and VGGT configure it).
    """

    def __init__(
        self,
        img_size: int = 518,
        patch_size: int = 14,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_register_tokens: int = 4,
        init_values: float = 1.0,
        interpolate_antialias: bool = True,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.num_register_tokens = num_register_tokens
        self.interpolate_antialias = interpolate_antialias
        grid = img_size // patch_size

        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, embed_dim))
        self.register_tokens = (
            nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim)) if num_register_tokens else None
        )
        self.blocks = nn.ModuleList(
            [
                Block(embed_dim, num_heads, mlp_ratio, init_values=init_values, norm_eps=1e-6)
                for _ in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        # Used by DINOv2's masked-image pre-training only; kept so the released weights load strictly.
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim), requires_grad=False)
        self.grad_checkpointing = False
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def interpolate_pos_encoding(
        self, num_patches: int, height: int, width: int, dtype: torch.dtype
    ) -> Tensor:
        """Position embedding ``1, 1 + h*w, D`` for an ``height x width`` input (resampled in float32)."""
        n_stored = self.pos_embed.shape[1] - 1
        if num_patches == n_stored and height == width:
            return self.pos_embed
        pos = self.pos_embed.float()
        side = int(math.sqrt(n_stored))
        grid = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        h, w = height // self.patch_size, width // self.patch_size
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", antialias=self.interpolate_antialias)
        grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)
        return torch.cat([pos[:, :1], grid], dim=1).to(dtype)

    def prepare_tokens(self, x: Tensor) -> Tensor:
        """Tokens ``[class, registers, patches]``; position embedding on class and patch tokens only."""
        H, W = x.shape[-2:]
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.interpolate_pos_encoding(x.shape[1] - 1, H, W, x.dtype)
        if self.register_tokens is not None:
            x = torch.cat([x[:, :1], self.register_tokens.expand(x.shape[0], -1, -1), x[:, 1:]], dim=1)
        return x

    def forward_features(self, x: Tensor) -> Tensor:
        """All tokens after the final norm: ``B, 1 + R + N, D`` (class, registers, patches)."""
        x = self.prepare_tokens(x)
        for blk in self.blocks:
            if self.grad_checkpointing and self.training:
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return self.norm(x)

    def forward(self, x: Tensor) -> Tensor:
        """Normalised patch tokens ``B, (H/p)*(W/p), D`` (DINOv2's ``x_norm_patchtokens``)."""
        return self.forward_features(x)[:, 1 + self.num_register_tokens :]
