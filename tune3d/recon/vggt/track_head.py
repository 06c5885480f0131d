"""VGGT's track head: a feature-only DPT plus a CoTracker/VGGSfM-style iterative point tracker.

Names and numerics follow the official ``TrackHead``/``BaseTrackerPredictor`` (including the
``virual_tracks`` spelling, which is a checkpoint key). Coordinates inside this module use the
official convention: ``(x, y)`` pixels with integer values at pixel centres.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tune3d.recon.vggt.dpt_head import DPTHead
from tune3d.recon.vggt.layers import Mlp


def sample_bilinear(x: Tensor, coords: Tensor, padding_mode: str = "border") -> Tensor:
    """``grid_sample`` at pixel coordinates ``coords`` (``B, Ho, Wo, 2`` as (x, y), integers = pixel
    centres, ``align_corners=True``): ``B, C, H, W -> B, C, Ho, Wo``."""
    H, W = x.shape[-2:]
    scale = torch.tensor([2 / max(W - 1, 1), 2 / max(H - 1, 1)], dtype=x.dtype, device=x.device)
    grid = coords.detach().to(x.dtype) * scale - 1
    return F.grid_sample(x, grid, align_corners=True, padding_mode=padding_mode)


def sample_points(x: Tensor, points: Tensor) -> Tensor:
    """Features ``B, C, H, W`` at points ``B, N, 2`` -> ``B, N, C``."""
    return sample_bilinear(x, points[:, :, None]).squeeze(-1).transpose(1, 2)


def sincos_grid_embed(dim: int, height: int, width: int) -> Tensor:
    """Fixed 2D sin-cos embedding ``1, dim, height, width``: first half encodes x, second half y."""
    ys, xs = torch.meshgrid(torch.arange(height).float(), torch.arange(width).float(), indexing="ij")

    def embed_1d(pos: Tensor, d: int) -> Tensor:
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2.0))
        angles = pos.reshape(-1).double()[:, None] * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1).float()

    emb = torch.cat([embed_1d(xs, dim // 2), embed_1d(ys, dim // 2)], dim=1)
    return emb.reshape(1, height, width, dim).permute(0, 3, 1, 2)


def flow_embed(xy: Tensor, channels: int) -> Tensor:
    """Interleaved sin/cos embedding of 2D offsets ``..., 2 -> ..., 2*channels`` (x block, then y block)."""
    freqs = torch.arange(0, channels, 2, device=xy.device, dtype=torch.float32) * (1000.0 / channels)
    out = []
    for c in (xy[..., 0:1], xy[..., 1:2]):
        ang = c * freqs
        out.append(torch.stack([ang.sin(), ang.cos()], dim=-1).flatten(-2))
    return torch.cat(out, dim=-1)


class CorrPyramid:
    """Correlations between track features and an average-pooled pyramid of feature maps, sampled in a
    ``(2r+1)^2`` window around each track (computed level by level to bound memory)."""

    def __init__(self, fmaps: Tensor, num_levels: int, radius: int) -> None:
        self.radius = radius
        self.levels = [fmaps]
        for _ in range(num_levels - 1):
            B, S, C, H, W = self.levels[-1].shape
            pooled = F.avg_pool2d(self.levels[-1].reshape(B * S, C, H, W), kernel_size=2, stride=2)
            self.levels.append(pooled.reshape(B, S, C, *pooled.shape[-2:]))
        r = torch.linspace(-radius, radius, 2 * radius + 1, device=fmaps.device, dtype=fmaps.dtype)
        # As in the official code, window row i offsets x by r[i] and column j offsets y by r[j].
        self.delta = torch.stack(torch.meshgrid(r, r, indexing="ij"), dim=-1)

    def sample(self, targets: Tensor, coords: Tensor) -> Tensor:
        """``targets B,S,N,C``, ``coords B,S,N,2`` (level-0 pixels) -> ``B,S,N,levels*(2r+1)^2``."""
        B, S, N, C = targets.shape
        k = 2 * self.radius + 1
        out = []
        for i, fmaps in enumerate(self.levels):
            H, W = fmaps.shape[-2:]
            corr = targets @ fmaps.reshape(B, S, C, H * W) / math.sqrt(C)
            centre = coords.reshape(B * S * N, 1, 1, 2) / 2**i
            window = centre + self.delta.to(coords.dtype).view(1, k, k, 2)
            sampled = sample_bilinear(corr.reshape(B * S * N, 1, H, W), window, padding_mode="zeros")
            out.append(sampled.reshape(B, S, N, -1))
        return torch.cat(out, dim=-1)


class AttnBlock(nn.Module):
    """Tracker self-attention block (the residual adds the *normalised* input, as the official one does)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm1(x)
        # Default need_weights=True keeps PyTorch off its fused fast path, matching the official
        # numerics bit for bit (the iterative tracker amplifies tiny differences).
        x = x + self.attn(x, x, x)[0]
        return x + self.mlp(self.norm2(x))


class CrossAttnBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        x = self.norm1(x)
        context = self.norm_context(context)
        x = x + self.cross_attn(x, context, context)[0]
        return x + self.mlp(self.norm2(x))


class UpdateFormer(nn.Module):
    """Alternates attention over time (per track) with attention across tracks routed through
    ``num_virtual_tracks`` learned virtual tracks. Input ``B, N, S, input_dim`` -> ``B, N, S, output_dim``."""

    def __init__(
        self,
        depth: int = 6,
        input_dim: int = 388,
        hidden_size: int = 384,
        num_heads: int = 8,
        output_dim: int = 130,
        mlp_ratio: float = 4.0,
        num_virtual_tracks: int = 64,
    ) -> None:
        super().__init__()
        self.num_virtual_tracks = num_virtual_tracks
        self.input_norm = nn.LayerNorm(input_dim)
        self.input_transform = nn.Linear(input_dim, hidden_size)
        self.output_norm = nn.LayerNorm(hidden_size)
        self.flow_head = nn.Linear(hidden_size, output_dim)
        self.virual_tracks = nn.Parameter(torch.randn(1, num_virtual_tracks, 1, hidden_size))
        self.time_blocks = nn.ModuleList([AttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.space_virtual_blocks = nn.ModuleList(
            [AttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)]
        )
        self.space_point2virtual_blocks = nn.ModuleList(
            [CrossAttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)]
        )
        self.space_virtual2point_blocks = nn.ModuleList(
            [CrossAttnBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)]
        )

    def forward(self, x: Tensor) -> Tensor:
        init = tokens = self.input_transform(self.input_norm(x))
        B, N, T, C = tokens.shape
        V = self.num_virtual_tracks
        tokens = torch.cat([tokens, self.virual_tracks.repeat(B, 1, T, 1).to(tokens.dtype)], dim=1)
        for i, time_block in enumerate(self.time_blocks):
            tokens = time_block(tokens.reshape(B * (N + V), T, C)).reshape(B, N + V, T, C)
            # Equal time and space depths: one space step after every time step.
            space = tokens.permute(0, 2, 1, 3).reshape(B * T, N + V, C)
            points, virtual = space[:, :N], space[:, N:]
            virtual = self.space_virtual2point_blocks[i](virtual, points)
            virtual = self.space_virtual_blocks[i](virtual)
            points = self.space_point2virtual_blocks[i](points, virtual)
            tokens = torch.cat([points, virtual], dim=1).reshape(B, T, N + V, C).permute(0, 2, 1, 3)
        return self.flow_head(self.output_norm(tokens[:, :N] + init))


class TrackPredictor(nn.Module):
    """Iteratively refines tracks of query points (given in frame 0) through all frames."""

    def __init__(
        self,
        latent_dim: int = 128,
        stride: int = 2,
        corr_levels: int = 7,
        corr_radius: int = 4,
        hidden_size: int = 384,
        depth: int = 6,
        num_heads: int = 8,
        num_virtual_tracks: int = 64,
        max_scale: float = 518.0,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.latent_dim = latent_dim
        self.corr_levels = corr_levels
        self.corr_radius = corr_radius
        self.max_scale = max_scale
        self.corr_mlp = Mlp(corr_levels * (2 * corr_radius + 1) ** 2, hidden_size, latent_dim)
        self.transformer_dim = 3 * latent_dim + 4
        self.query_ref_token = nn.Parameter(torch.randn(1, 2, self.transformer_dim))
        self.updateformer = UpdateFormer(
            depth, self.transformer_dim, hidden_size, num_heads, latent_dim + 2, 4.0, num_virtual_tracks
        )
        self.fmap_norm = nn.LayerNorm(latent_dim)
        self.ffeat_norm = nn.GroupNorm(1, latent_dim)
        self.ffeat_updater = nn.Sequential(nn.Linear(latent_dim, latent_dim), nn.GELU())
        self.vis_predictor = nn.Sequential(nn.Linear(latent_dim, 1))
        self.conf_predictor = nn.Sequential(nn.Linear(latent_dim, 1))

    def forward(
        self, query_points: Tensor, fmaps: Tensor, iters: int = 4
    ) -> tuple[list[Tensor], Tensor, Tensor]:
        """``query_points B,N,2`` (image pixels), ``fmaps B,S,C,h,w`` (stride ``self.stride``) ->
        (per-iteration tracks ``B,S,N,2`` in image pixels, visibility ``B,S,N``, confidence ``B,S,N``)."""
        B, N, _ = query_points.shape
        S, C, h, w = fmaps.shape[1:]
        fmaps = self.fmap_norm(fmaps.permute(0, 1, 3, 4, 2)).permute(0, 1, 4, 2, 3)
        coords = (query_points / float(self.stride))[:, None].repeat(1, S, 1, 1)
        query = coords[:, 0].clone()
        track_feats = sample_points(fmaps[:, 0], query)[:, None].repeat(1, S, 1, 1)  # B,S,N,C
        corr = CorrPyramid(fmaps, self.corr_levels, self.corr_radius)
        pos = sample_points(
            sincos_grid_embed(self.transformer_dim, h, w).to(fmaps).expand(B, -1, -1, -1), query
        )
        pos = pos.reshape(B * N, 1, -1)
        ref = torch.cat(
            [self.query_ref_token[:, :1], self.query_ref_token[:, 1:].expand(-1, S - 1, -1)], dim=1
        )

        preds = []
        for _ in range(iters):
            coords = coords.detach()
            corrs = corr.sample(track_feats, coords).permute(0, 2, 1, 3).reshape(B * N, S, -1)
            flows = (coords - coords[:, :1]).permute(0, 2, 1, 3).reshape(B * N, S, 2)
            flows_emb = torch.cat(
                [flow_embed(flows, self.latent_dim // 2), flows / self.max_scale, flows / self.max_scale],
                dim=-1,
            )
            feats = track_feats.permute(0, 2, 1, 3).reshape(B * N, S, C)
            x = torch.cat([flows_emb, self.corr_mlp(corrs), feats], dim=-1) + pos + ref.to(feats.dtype)
            delta = self.updateformer(x.reshape(B, N, S, -1)).reshape(B * N * S, -1)
            feats = self.ffeat_updater(self.ffeat_norm(delta[:, 2:])) + feats.reshape(B * N * S, C)
            track_feats = feats.reshape(B, N, S, C).permute(0, 2, 1, 3)
            coords = coords + delta[:, :2].reshape(B, N, S, 2).permute(0, 2, 1, 3)
            coords = torch.cat([query[:, None], coords[:, 1:]], dim=1)  # frame 0 stays at the query
            preds.append(coords * self.stride)

        flat = track_feats.reshape(B * S * N, C)
        vis = torch.sigmoid(self.vis_predictor(flat).reshape(B, S, N))
        conf = torch.sigmoid(self.conf_predictor(flat).reshape(B, S, N))
        return preds, vis, conf


class TrackHead(nn.Module):
    """Feature-only DPT at half resolution followed by :class:`TrackPredictor`."""

    def __init__(
        self,
        dim_in: int,
        patch_size: int = 14,
        features: int = 128,
        iters: int = 4,
        stride: int = 2,
        corr_levels: int = 7,
        corr_radius: int = 4,
        hidden_size: int = 384,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        layer_idx: Sequence[int] = (4, 11, 17, 23),
        tracker_depth: int = 6,
        num_virtual_tracks: int = 64,
    ) -> None:
        super().__init__()
        self.iters = iters
        self.feature_extractor = DPTHead(
            dim_in,
            patch_size,
            features=features,
            out_channels=out_channels,
            layer_idx=layer_idx,
            pos_embed=False,
            feature_only=True,
            down_ratio=2,
        )
        self.tracker = TrackPredictor(
            features, stride, corr_levels, corr_radius, hidden_size, tracker_depth, 8, num_virtual_tracks
        )

    def forward(
        self,
        layers: Sequence[Tensor],
        image_hw: tuple[int, int],
        patch_start_idx: int,
        query_points: Tensor,
        iters: int | None = None,
    ) -> tuple[list[Tensor], Tensor, Tensor]:
        fmaps = self.feature_extractor(layers, image_hw, patch_start_idx)
        return self.tracker(query_points, fmaps, self.iters if iters is None else iters)
