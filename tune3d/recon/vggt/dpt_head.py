"""VGGT's DPT head (depth, point map, and the track head's feature extractor).

Layout and numerics follow the official ``DPTHead``: four aggregator layers are normalised,
projected, resampled to strides 4/8/16/32 of the patch grid, fused by RefineNet blocks, upsampled
to the input size and decoded; a sinusoidal UV embedding (weight 0.1) is added after the
projections and after the final upsampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# F.interpolate rejects outputs with more elements than this; larger inputs are split along the batch.
_INTERP_MAX_ELEMENTS = 1_610_612_736


def interpolate(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize with ``align_corners=True`` that tolerates very large batches."""
    numel = size[0] * size[1] * x.shape[0] * x.shape[1]
    if numel <= _INTERP_MAX_ELEMENTS:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    chunks = x.chunk(numel // _INTERP_MAX_ELEMENTS + 1, dim=0)
    return torch.cat([F.interpolate(c, size=size, mode="bilinear", align_corners=True) for c in chunks])


def uv_grid(width: int, height: int, aspect_ratio: float, dtype=None, device=None) -> Tensor:
    """``height, width, 2`` pixel-centre (u, v) coordinates spanning the image, scaled so the
    half-diagonal of the full image plane has length 1 (aspect ``aspect_ratio`` = W/H)."""
    diag = (aspect_ratio**2 + 1.0) ** 0.5
    span_x, span_y = aspect_ratio / diag, 1.0 / diag
    xs = torch.linspace(
        -span_x * (width - 1) / width, span_x * (width - 1) / width, width, dtype=dtype, device=device
    )
    ys = torch.linspace(
        -span_y * (height - 1) / height, span_y * (height - 1) / height, height, dtype=dtype, device=device
    )
    u, v = torch.meshgrid(xs, ys, indexing="xy")
    return torch.stack([u, v], dim=-1)


def sincos_embed_1d(pos: Tensor, dim: int, omega_0: float = 100.0) -> Tensor:
    """``M`` positions -> ``M, dim``: ``[sin(p * w_i), cos(p * w_i)]``, ``w_i = omega_0 ** (-2i/dim)``."""
    # float64 like the official code (float32 on MPS, which has no float64).
    dtype = torch.float32 if pos.device.type == "mps" else torch.float64
    omega = torch.arange(dim // 2, dtype=dtype, device=pos.device) / (dim / 2.0)
    omega = 1.0 / omega_0**omega
    angles = pos.reshape(-1).to(dtype)[:, None] * omega[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def uv_embedding(width: int, height: int, channels: int, aspect_ratio: float, dtype, device) -> Tensor:
    """Sinusoidal embedding ``channels, height, width`` of the UV grid (u: first half, v: second)."""
    uv = uv_grid(width, height, aspect_ratio, dtype=dtype, device=device).reshape(-1, 2)
    emb = torch.cat(
        [sincos_embed_1d(uv[:, 0], channels // 2), sincos_embed_1d(uv[:, 1], channels // 2)], dim=-1
    )
    return emb.reshape(height, width, channels).permute(2, 0, 1)


class ResidualConvUnit(nn.Module):
    """``relu(x) + conv2(relu(conv1(relu(x))))``.

    The skip adds the *rectified* input: the official DPT applies an in-place ReLU to ``x`` first,
    so the released weights were trained with this form.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(x)
        return x + self.conv2(F.relu(self.conv1(x)))


class FeatureFusionBlock(nn.Module):
    """RefineNet fusion: ``out_conv(upsample(rcu2(x + rcu1(skip))))`` (no skip in the deepest block)."""

    def __init__(self, features: int, has_residual: bool = True) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        if has_residual:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.has_residual = has_residual
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: Tensor, skip: Tensor | None = None, size: tuple[int, int] | None = None) -> Tensor:
        if self.has_residual:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            size = (int(x.shape[-2] * 2), int(x.shape[-1] * 2))
        return self.out_conv(interpolate(x, size))


class DPTHead(nn.Module):
    """Dense head on aggregator layers ``layer_idx``.

    ``forward`` returns ``(values B,S,H,W,C-1, conf B,S,H,W)`` after the output activations, or
    feature maps ``B,S,features,H/down,W/down`` when ``feature_only``.
    """

    def __init__(
        self,
        dim_in: int,
        patch_size: int = 14,
        output_dim: int = 4,
        activation: str = "inv_log",
        conf_activation: str = "expp1",
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        layer_idx: Sequence[int] = (4, 11, 17, 23),
        pos_embed: bool = True,
        feature_only: bool = False,
        down_ratio: int = 1,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.activation = activation
        self.conf_activation = conf_activation
        self.pos_embed = pos_embed
        self.feature_only = feature_only
        self.down_ratio = down_ratio
        self.layer_idx = tuple(layer_idx)

        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList([nn.Conv2d(dim_in, oc, 1) for oc in out_channels])
        c = out_channels
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(c[0], c[0], kernel_size=4, stride=4),
                nn.ConvTranspose2d(c[1], c[1], kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(c[3], c[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        # ``scratch`` is a plain container so the parameter names match the official checkpoints.
        self.scratch = nn.Module()
        for i, oc in enumerate(out_channels, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(oc, features, 3, padding=1, bias=False))
        self.scratch.refinenet1 = FeatureFusionBlock(features)
        self.scratch.refinenet2 = FeatureFusionBlock(features)
        self.scratch.refinenet3 = FeatureFusionBlock(features)
        self.scratch.refinenet4 = FeatureFusionBlock(features, has_residual=False)
        if feature_only:
            self.scratch.output_conv1 = nn.Conv2d(features, features, 3, padding=1)
        else:
            self.scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
            self.scratch.output_conv2 = nn.Sequential(
                nn.Conv2d(features // 2, 32, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(32, output_dim, 1),
            )

    def _add_pos_embed(self, x: Tensor, width: int, height: int) -> Tensor:
        emb = uv_embedding(x.shape[-1], x.shape[-2], x.shape[1], width / height, x.dtype, x.device)
        return x + 0.1 * emb.to(x.dtype)[None]

    def _fuse(self, feats: list[Tensor]) -> Tensor:
        l1, l2, l3, l4 = (getattr(self.scratch, f"layer{i}_rn")(f) for i, f in enumerate(feats, start=1))
        out = self.scratch.refinenet4(l4, size=l3.shape[-2:])
        out = self.scratch.refinenet3(out, l3, size=l2.shape[-2:])
        out = self.scratch.refinenet2(out, l2, size=l1.shape[-2:])
        out = self.scratch.refinenet1(out, l1)
        return self.scratch.output_conv1(out)

    def _forward_frames(self, layers: Sequence[Tensor], image_hw: tuple[int, int], start: int, end: int):
        H, W = image_hw
        gh, gw = H // self.patch_size, W // self.patch_size
        feats = []
        for proj, resize, idx in zip(self.projects, self.resize_layers, self.layer_idx):
            x = layers[idx][:, start:end].float()
            B, S = x.shape[:2]
            x = self.norm(x.reshape(B * S, -1, x.shape[-1]))
            x = x.permute(0, 2, 1).reshape(B * S, -1, gh, gw)
            x = proj(x)
            if self.pos_embed:
                x = self._add_pos_embed(x, W, H)
            feats.append(resize(x))
        out = self._fuse(feats)
        out = interpolate(
            out, (int(gh * self.patch_size / self.down_ratio), int(gw * self.patch_size / self.down_ratio))
        )
        if self.pos_embed:
            out = self._add_pos_embed(out, W, H)
        if self.feature_only:
            return out.reshape(B, S, *out.shape[1:])
        out = self.scratch.output_conv2(out).permute(0, 2, 3, 1)
        values = activate(out[..., :-1], self.activation)
        conf = activate(out[..., -1], self.conf_activation)
        return values.reshape(B, S, *values.shape[1:]), conf.reshape(B, S, *conf.shape[1:])

    def forward(
        self,
        layers: Sequence[Tensor],
        image_hw: tuple[int, int],
        patch_start_idx: int,
        frames_chunk_size: int | None = 8,
    ):
        """``layers``: aggregator outputs (``B, S, P, 2C``); runs ``frames_chunk_size`` frames at a time
        (numerically identical, bounds peak memory)."""
        patch_layers = {i: layers[i][:, :, patch_start_idx:] for i in self.layer_idx}
        S = patch_layers[self.layer_idx[0]].shape[1]
        step = S if not frames_chunk_size or frames_chunk_size >= S else frames_chunk_size
        outs = [self._forward_frames(patch_layers, image_hw, s, min(s + step, S)) for s in range(0, S, step)]
        if self.feature_only:
            return torch.cat(outs, dim=1)
        return torch.cat([o[0] for o in outs], dim=1), torch.cat([o[1] for o in outs], dim=1)


def inverse_log(x: Tensor) -> Tensor:
    """``sign(x) * (exp(|x|) - 1)``."""
    return torch.sign(x) * torch.expm1(x.abs())


def activate(x: Tensor, kind: str) -> Tensor:
    """Output activations of the official heads."""
    if kind == "linear":
        return x
    if kind == "exp":
        return torch.exp(x)
    if kind == "expp1":
        return 1 + torch.exp(x)
    if kind == "expp0":
        return torch.exp(x)
    if kind == "inv_log":
        return inverse_log(x)
    if kind == "relu":
        return F.relu(x)
    if kind == "sigmoid":
        return torch.sigmoid(x)
    raise ValueError(f"unknown activation {kind!r}")
