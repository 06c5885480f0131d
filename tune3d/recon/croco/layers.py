"""CroCo transformer building blocks (naver/croco ``models/blocks.py``, CUT3R ``src/dust3r/blocks.py``).

Module and parameter names equal the official ones so released state dicts load with ``strict=True``:
``Block`` = ``norm1, attn.{qkv,proj}, norm2, mlp.{fc1,fc2}``; ``DecoderBlock`` adds
``cross_attn.{projq,projk,projv,proj}``, ``norm3`` and ``norm_y``. Tokens are ``B,N,C``; token positions are
integer ``B,N,2`` tensors holding (row, column) patch indices, as CroCo's ``PositionGetter`` makes them.

Why not timm's ``Block``: RoPE is applied to q and k inside the attention and the decoder needs a
cross-attention with its own norm, neither of which timm's blocks expose with these parameter names.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LN_EPS = 1e-6  # CroCo's norm_layer = partial(nn.LayerNorm, eps=1e-6)


class RoPE2D(nn.Module):
    """2D rotary position embedding (CroCo ``RoPE2D``/``cuRoPE2D``, e.g. ``RoPE100`` -> ``freq=100``).

    The head dimension ``D`` is split in halves: the first half is rotated by the row position, the second
    by the column position. Within a half of size ``D/2`` channel ``j < D/4`` pairs with ``j + D/4`` and is
    rotated by angle ``pos * freq**(-j / (D/4))``. Angles are computed from the positions directly (like the
    CUDA kernel), so negative positions such as CUT3R's pose token at (-1, -1) are valid.
    Holds no parameters or buffers.
    """

    def __init__(self, freq: float = 100.0) -> None:
        super().__init__()
        self.freq = float(freq)

    def extra_repr(self) -> str:
        return f"freq={self.freq}"

    def _rotate(self, t: Tensor, pos: Tensor) -> Tensor:
        q = t.shape[-1] // 2
        inv_freq = self.freq ** (-torch.arange(q, device=t.device, dtype=torch.float32) / q)
        angle = pos.to(torch.float32)[:, None, :, None] * inv_freq  # B,1,N,q
        cos, sin = angle.cos(), angle.sin()
        t1, t2 = t[..., :q].float(), t[..., q:].float()
        return torch.cat((t1 * cos - t2 * sin, t2 * cos + t1 * sin), dim=-1).to(t.dtype)

    def forward(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """``tokens`` ``B,heads,N,D`` (``D % 4 == 0``), ``positions`` ``B,N,2`` -> rotated tokens."""
        if tokens.shape[-1] % 4:
            raise ValueError(f"RoPE2D needs a head dimension divisible by 4, got {tokens.shape[-1]}")
        y, x = tokens.chunk(2, dim=-1)
        return torch.cat((self._rotate(y, positions[..., 0]), self._rotate(x, positions[..., 1])), dim=-1)


def patch_positions(batch: int, h: int, w: int, device: torch.device | str | None = None) -> Tensor:
    """Integer (row, col) positions ``batch, h*w, 2`` of an ``h x w`` patch grid, row-major."""
    ys = torch.arange(h, device=device)
    xs = torch.arange(w, device=device)
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(1, h * w, 2)
    return grid.expand(batch, -1, -1)


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection ``B,C,H,W -> (B,N,D tokens, B,N,2 positions)`` (``proj`` conv)."""

    def __init__(self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def reset_parameters(self) -> None:
        w = self.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # CroCo: xavier on the flattened kernel

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        B, _, H, W = x.shape
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {p}")
        x = self.proj(x)
        pos = patch_positions(B, x.shape[2], x.shape[3], x.device)
        return x.flatten(2).transpose(1, 2), pos


class Mlp(nn.Module):
    """``fc1 -> GELU -> fc2`` (timm/CroCo ``Mlp`` without dropout)."""

    def __init__(self, in_features: int, hidden_features: int | None = None, out_features: int | None = None):
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _heads(x: Tensor, num_heads: int) -> Tensor:
    B, N, C = x.shape
    return x.reshape(B, N, num_heads, C // num_heads).transpose(1, 2)  # B,h,N,d


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection and optional RoPE on q and k.

    ``rope_fp16``: round q and k to float16 around the rotation, as CUT3R's vendored CroCo encoder does
    (its checkpoints were trained that way); off for DUSt3R/MASt3R.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        rope: RoPE2D | None = None,
        qkv_bias: bool = True,
        rope_fp16: bool = False,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope
        self.rope_fp16 = rope_fp16

    def forward(self, x: Tensor, xpos: Tensor | None) -> Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        if self.rope is not None and xpos is not None:
            if self.rope_fp16:
                dtype = q.dtype
                q = self.rope(q.half(), xpos).to(dtype)
                k = self.rope(k.half(), xpos).to(dtype)
            else:
                q, k = self.rope(q, xpos), self.rope(k, xpos)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class CrossAttention(nn.Module):
    """Multi-head cross-attention with separate ``projq/projk/projv`` and optional RoPE."""

    def __init__(self, dim: int, num_heads: int, rope: RoPE2D | None = None, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.projq = nn.Linear(dim, dim, bias=qkv_bias)
        self.projk = nn.Linear(dim, dim, bias=qkv_bias)
        self.projv = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.rope = rope

    def forward(self, query: Tensor, key: Tensor, value: Tensor, qpos: Tensor | None, kpos: Tensor | None):
        B, Nq, C = query.shape
        q = _heads(self.projq(query), self.num_heads)
        k = _heads(self.projk(key), self.num_heads)
        v = _heads(self.projv(value), self.num_heads)
        if self.rope is not None:
            if qpos is not None:
                q = self.rope(q, qpos)
            if kpos is not None:
                k = self.rope(k, kpos)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, Nq, C))


class Block(nn.Module):
    """Pre-norm ViT block: ``x + attn(norm1(x))``, ``x + mlp(norm2(x))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        rope: RoPE2D | None = None,
        rope_fp16: bool = False,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads, rope=rope, rope_fp16=rope_fp16)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, xpos: Tensor | None) -> Tensor:
        x = x + self.attn(self.norm1(x), xpos)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """CroCo decoder block: self-attention, cross-attention to the (normalised) other stream, MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, rope: RoPE2D | None = None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads, rope=rope)
        self.cross_attn = CrossAttention(dim, num_heads, rope=rope)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.norm3 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_y = nn.LayerNorm(dim, eps=LN_EPS)

    def forward(self, x: Tensor, y: Tensor, xpos: Tensor | None, ypos: Tensor | None) -> Tensor:
        x = x + self.attn(self.norm1(x), xpos)
        y = self.norm_y(y)
        x = x + self.cross_attn(self.norm2(x), y, y, xpos, ypos)
        return x + self.mlp(self.norm3(x))


class ModLN(nn.Module):
    """adaLN (DiT): ``norm(x) * (1 + scale) + shift`` with ``(shift, scale) = mlp(mod)`` (CUT3R ``ModLN``)."""

    def __init__(self, dim: int, mod_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(mod_dim, dim * 2))

    def forward(self, x: Tensor, mod: Tensor) -> Tensor:
        shift, scale = self.mlp(mod).chunk(2, dim=-1)  # mod: B,C
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None]


class ConditionModulationBlock(nn.Module):
    """ViT block whose norms are modulated by a conditioning vector (CUT3R's pose-conditioned transform)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, rope: RoPE2D | None = None) -> None:
        super().__init__()
        self.norm1 = ModLN(dim, dim)
        self.attn = Attention(dim, num_heads, rope=rope)
        self.norm2 = ModLN(dim, dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, mod: Tensor, xpos: Tensor | None) -> Tensor:
        x = x + self.attn(self.norm1(x, mod), xpos)
        return x + self.mlp(self.norm2(x, mod))


def init_croco_weights(module: nn.Module) -> None:
    """CroCo's initialisation: xavier-uniform ``nn.Linear`` weights with zero bias, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, PatchEmbed):
            m.reset_parameters()
