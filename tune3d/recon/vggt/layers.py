"""Transformer building blocks of VGGT: patch embedding, 2D RoPE, attention with QK-norm, pre-norm block.

Module and parameter names follow the official VGGT code (facebookresearch/vggt) so that released
state dicts load with ``strict=True``. ``Mlp`` and ``LayerScale`` come from timm: their parameter
names (``fc1``/``fc2``, ``gamma``) and numerics are the ones the checkpoints were trained with.
Attention and the block are written here because timm's versions take no rotary position argument.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import LayerScale, Mlp
from torch import Tensor, nn

__all__ = ["Attention", "Block", "LayerScale", "Mlp", "PatchEmbed", "RoPE2D", "patch_positions"]


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` convolution: ``B,3,H,W -> B,(H/p)*(W/p),D`` (row-major tokens)."""

    def __init__(self, patch_size: int = 14, in_chans: int = 3, embed_dim: int = 1024) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        H, W = x.shape[-2:]
        if H % self.patch_size or W % self.patch_size:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {self.patch_size}")
        return self.proj(x).flatten(2).transpose(1, 2)


def patch_positions(batch: int, grid_h: int, grid_w: int, device=None) -> Tensor:
    """Integer ``(y, x)`` positions of a row-major ``grid_h x grid_w`` grid: ``batch, grid_h*grid_w, 2``."""
    ys = torch.arange(grid_h, device=device)
    xs = torch.arange(grid_w, device=device)
    pos = torch.cartesian_prod(ys, xs)
    return pos.unsqueeze(0).expand(batch, -1, -1)


class RoPE2D(nn.Module):
    """2D rotary position embedding (RoPE): the first half of each head's channels rotates with the
    token's row ``y``, the second half with its column ``x``, each with the rotate-half convention
    and inverse frequencies ``frequency ** (-2i/d)``. Positions are integers (``B, N, 2``)."""

    def __init__(self, frequency: float = 100.0) -> None:
        super().__init__()
        self.frequency = frequency

    def _rotate_1d(self, x: Tensor, pos: Tensor) -> Tensor:
        dim = x.shape[-1]
        inv_freq = 1.0 / self.frequency ** (torch.arange(0, dim, 2, device=x.device).float() / dim)
        angles = pos.float()[..., None] * inv_freq  # B, N, dim/2
        angles = torch.cat([angles, angles], dim=-1).to(x.dtype)[:, None]  # B, 1, N, dim (broadcast heads)
        x1, x2 = x.chunk(2, dim=-1)
        rotated = torch.cat([-x2, x1], dim=-1)
        return x * angles.cos() + rotated * angles.sin()

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        """``x``: ``B, heads, N, head_dim`` (head_dim divisible by 4); ``pos``: ``B, N, 2`` as (y, x)."""
        if x.shape[-1] % 4:
            raise ValueError(f"2D RoPE needs a head dimension divisible by 4, got {x.shape[-1]}")
        xy, xx = x.chunk(2, dim=-1)
        return torch.cat([self._rotate_1d(xy, pos[..., 0]), self._rotate_1d(xx, pos[..., 1])], dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention with optional per-head LayerNorm on q/k and optional 2D RoPE."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        qk_norm: bool = False,
        norm_eps: float = 1e-5,
        rope: RoPE2D | None = None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.rope = rope

    def forward(self, x: Tensor, pos: Tensor | None = None) -> Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None and pos is not None:
            q, k = self.rope(q, pos), self.rope(k, pos)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale: ``x + ls1(attn(norm1(x))) -> x + ls2(mlp(norm2(x)))``.

    ``norm_eps`` is 1e-6 in the DINOv2 encoder and PyTorch's default 1e-5 in the aggregator and heads,
    exactly as in the official code; the q/k norms always use 1e-5 (the official block does not pass
    its norm layer on to the attention).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        ffn_bias: bool = True,
        init_values: float | None = None,
        qk_norm: bool = False,
        norm_eps: float = 1e-5,
        rope: RoPE2D | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, proj_bias, qk_norm=qk_norm, rope=rope)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), bias=ffn_bias)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: Tensor, pos: Tensor | None = None) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), pos=pos))
        return x + self.ls2(self.mlp(self.norm2(x)))
