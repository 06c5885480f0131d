"""DPT dense-prediction adapter as used by DUSt3R/MASt3R/CUT3R (croco ``models/dpt_block.py`` +
dust3r ``DPTOutputAdapter_fix``).

Takes four token maps (one encoder layer and three decoder layers), reassembles them at strides 4, 8, 16
and 32 (``act_postprocess``), projects them to ``feature_dim`` (``scratch.layer{1..4}_rn``), fuses them
coarse-to-fine (``scratch.refinenet{4..1}``) and regresses ``num_channels`` maps at full resolution
(``head``). As in the official code, ``scratch.layer_rn`` is a ``ModuleList`` holding the same four convs,
so their weights appear under both names in the state dict.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


class ResidualConvUnit(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))`` (DPT ``ResidualConvUnit_custom`` without batch norm)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FeatureFusionBlock(nn.Module):
    """Adds the refined skip input, refines, upsamples x2 (bilinear, align_corners) and projects 1x1."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTAdapter(nn.Module):
    """DPT output adapter: 4 token maps ``B,N,C_i`` -> ``B,num_channels,H,W``.

    ``dim_tokens``: channels of the four inputs (official: ``[enc_dim, dec_dim, dec_dim, dec_dim]``).
    """

    def __init__(
        self,
        num_channels: int,
        dim_tokens: Sequence[int],
        patch_size: int = 16,
        layer_dims: Sequence[int] = (96, 192, 384, 768),
        feature_dim: int = 256,
        last_dim: int = 128,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        d = layer_dims
        self.scratch = nn.Module()
        for i in range(4):
            conv = nn.Conv2d(d[i], feature_dim, kernel_size=3, padding=1, bias=False)
            setattr(self.scratch, f"layer{i + 1}_rn", conv)
        # Same four convs registered a second time, as the official make_scratch does.
        self.scratch.layer_rn = nn.ModuleList([getattr(self.scratch, f"layer{i + 1}_rn") for i in range(4)])
        for i in range(4):
            setattr(self.scratch, f"refinenet{i + 1}", FeatureFusionBlock(feature_dim))
        self.head = nn.Sequential(
            nn.Conv2d(feature_dim, feature_dim // 2, kernel_size=3, padding=1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(feature_dim // 2, last_dim, kernel_size=3, padding=1),
            nn.ReLU(True),
            nn.Conv2d(last_dim, num_channels, kernel_size=1),
        )
        t = list(dim_tokens)
        self.act_postprocess = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(t[0], d[0], 1), nn.ConvTranspose2d(d[0], d[0], kernel_size=4, stride=4)
                ),
                nn.Sequential(
                    nn.Conv2d(t[1], d[1], 1), nn.ConvTranspose2d(d[1], d[1], kernel_size=2, stride=2)
                ),
                nn.Sequential(nn.Conv2d(t[2], d[2], 1)),
                nn.Sequential(
                    nn.Conv2d(t[3], d[3], 1), nn.Conv2d(d[3], d[3], kernel_size=3, stride=2, padding=1)
                ),
            ]
        )

    def forward(self, layers: Sequence[Tensor], image_size: tuple[int, int]) -> Tensor:
        H, W = image_size
        h, w = H // self.patch_size, W // self.patch_size
        maps = []
        for i, tokens in enumerate(layers):
            x = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)
            maps.append(self.scratch.layer_rn[i](self.act_postprocess[i](x)))
        s = self.scratch
        path = s.refinenet4(maps[3])[:, :, : maps[2].shape[2], : maps[2].shape[3]]
        path = s.refinenet3(path, maps[2])
        path = s.refinenet2(path, maps[1])
        path = s.refinenet1(path, maps[0])
        return self.head(path)
