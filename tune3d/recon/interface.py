"""The shared encoder -> decoder -> heads interface every reconstruction model implements.

Fin3R addresses models only through this interface: which modules form the image encoder (adapted),
which are frozen (decoder, heads), and which output is the per-view geometry to distil.

Tensor conventions (``design.md``): images ``B,S,3,H,W`` float in [0, 1] (each model normalises
internally as its official code expects); pointmaps ``B,S,H,W,3``; confidences ``B,S,H,W``;
depth ``B,S,H,W``; cameras as OpenCV camera-to-world ``B,S,4,4`` and pixel intrinsics ``B,S,3,3``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class ReconOutput:
    """Outputs of one forward pass over ``S`` views (``B`` batches).

    ``pts3d``: every view's pointmap in the first view's camera frame (DUSt3R ``pts3d`` /
    ``pts3d_in_other_view``; VGGT's point head; CUT3R's world points), with ``pts3d_conf``.
    ``pts3d_self``: each view's pointmap in its own camera frame where the model predicts one
    (CUT3R self-view head, DUSt3R view 1), with ``pts3d_self_conf``.
    ``depth``: per-view z-depth where a head predicts it (VGGT depth head), with ``depth_conf``.
    ``c2w``/``K``: predicted cameras where the model has a camera/pose head.
    ``extras``: anything family-specific (MASt3R descriptors, CUT3R rgb, raw pose encodings, ...).
    """

    pts3d: Tensor
    pts3d_conf: Tensor
    pts3d_self: Tensor | None = None
    pts3d_self_conf: Tensor | None = None
    depth: Tensor | None = None
    depth_conf: Tensor | None = None
    c2w: Tensor | None = None
    K: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    def per_view_depth(self, head: str) -> tuple[Tensor, Tensor]:
        """Per-view z-depth ``B,S,H,W`` and confidence from ``head`` ("depth" or "pts3d_self")."""
        if head == "depth":
            if self.depth is None:
                raise ValueError("this model has no depth head")
            return self.depth, self.depth_conf
        if head == "pts3d_self":
            if self.pts3d_self is None:
                raise ValueError("this model has no self-view pointmap head")
            return self.pts3d_self[..., 2], self.pts3d_self_conf
        raise ValueError(f"unknown head {head!r}")


class ReconModel(nn.Module):
    """Base class: encoder -> decoder -> heads.

    Subclasses set the class attributes and implement :meth:`forward`.
    """

    family: str = ""
    #: Regex matching the encoder's qkv ``nn.Linear`` module names (Fin3R LoRA targets).
    encoder_qkv_pattern: str = ""
    #: Module-name prefixes forming the image encoder (trainable under Fin3R); everything else is frozen.
    encoder_prefixes: tuple[str, ...] = ()
    #: Name of the output used as the per-view geometry Fin3R distils ("pts3d_self" or "depth").
    per_view_head: str = "pts3d_self"
    #: Whether the pointmaps are metric (MASt3R) or up to scale (DUSt3R, VGGT, CUT3R).
    metric: bool = False
    #: Views per forward pass: 2 for pairwise models (DUSt3R/MASt3R), 0 for any number (CUT3R, VGGT).
    num_views: int = 0
    #: Patch size of the encoder; input H and W must be multiples of it.
    patch_size: int = 16

    def forward(self, images: Tensor) -> ReconOutput:  # images: B,S,3,H,W in [0, 1]
        raise NotImplementedError

    def forward_mono(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Per-view prediction for single images ``B,3,H,W`` -> (depth ``B,H,W``, confidence ``B,H,W``).

        Pairwise models run the self-pair (image, image) and read view 1; others run ``S = 1``.
        """
        views = images.unsqueeze(1)
        if self.num_views == 2:
            views = torch.cat([views, views], dim=1)
        out = self.forward(views)
        depth, conf = out.per_view_depth(self.per_view_head)
        return depth[:, 0], conf[:, 0]

    def encoder_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if n.startswith(self.encoder_prefixes)]

    def encoder_tokens(self, images: Tensor) -> Tensor:
        """Encoder output patch tokens ``B*S, N, C`` (for Fin3R's feature-norm diagnostics)."""
        raise NotImplementedError
