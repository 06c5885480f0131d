"""VGGT (Wang et al., CVPR 2025) as a :class:`~tune3d.recon.interface.ReconModel`.

The module tree mirrors facebookresearch/vggt, so ``facebook/VGGT-1B`` (``model.safetensors`` or
``model.pt``) loads with ``strict=True``. The model can be built on the meta device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from tune3d.geometry import depth_to_pointmap
from tune3d.recon.interface import ReconModel, ReconOutput
from tune3d.recon.vggt.aggregator import Aggregator
from tune3d.recon.vggt.camera_head import CameraHead
from tune3d.recon.vggt.dpt_head import DPTHead
from tune3d.recon.vggt.pose_encoding import decode_pose, extrinsics_to_c2w
from tune3d.recon.vggt.track_head import TrackHead


@dataclass(frozen=True)
class VGGTConfig:
    """Architecture of a VGGT model; the defaults are the released VGGT-1B."""

    img_size: int = 518
    patch_size: int = 14
    embed_dim: int = 1024
    depth: int = 24  # alternating frame/global steps
    num_heads: int = 16
    encoder_depth: int = 24  # DINOv2 encoder blocks (its width is ``embed_dim``)
    encoder_num_heads: int = 16
    num_register_tokens: int = 4
    rope_freq: float = 100.0
    camera_trunk_depth: int = 4
    camera_num_heads: int = 16
    dpt_features: int = 256
    dpt_out_channels: tuple[int, ...] = (256, 512, 1024, 1024)
    dpt_layers: tuple[int, ...] = (4, 11, 17, 23)
    track_features: int = 128
    track_hidden_size: int = 384
    track_corr_levels: int = 7
    track_corr_radius: int = 4
    track_depth: int = 6
    track_virtual_tracks: int = 64
    enable_track: bool = True


_HALF_PIXEL = torch.tensor([[0.0, 0.0, 0.5], [0.0, 0.0, 0.5], [0.0, 0.0, 0.0]])


class VGGT(ReconModel):
    """Images ``B, S, 3, H, W`` in [0, 1] (H, W multiples of 14; 518 wide is the trained setting) ->
    point map in the first camera's frame, per-view depth, cameras.

    Outputs (:class:`ReconOutput`):
      - ``pts3d`` ``B,S,H,W,3`` / ``pts3d_conf``: point head (official ``world_points``), first-camera frame.
      - ``depth`` ``B,S,H,W`` / ``depth_conf``: depth head (z-depth, up to the scene scale).
      - ``c2w`` ``B,S,4,4``: OpenCV camera-to-world (world = first camera), from the camera head.
      - ``K`` ``B,S,3,3``: pixel intrinsics from the predicted fields of view, principal point at the centre.
      - ``pts3d_self`` / ``pts3d_self_conf``: the depth map unprojected with ``K`` (each camera's frame)
        as the official ``depth_to_cam_coords_points`` does it: integer pixel coordinates ``u, v`` with
        ``cx = W/2``, ``cy = H/2`` (tune3d's own geometry puts pixel centres at ``u + 0.5``; here the
        released code defines the output, so it is matched).
      - ``extras``: ``pose_enc`` ``B,S,9``, ``pose_enc_iters`` ``iters,B,S,9``, ``w2c`` ``B,S,3,4``.
    """

    family = "vggt"
    encoder_qkv_pattern = r"aggregator\.patch_embed\.blocks\.\d+\.attn\.qkv"
    encoder_prefixes = ("aggregator.patch_embed",)
    per_view_head = "depth"
    metric = False
    num_views = 0
    patch_size = 14

    def __init__(self, config: VGGTConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = VGGTConfig(**{**asdict(config or VGGTConfig()), **overrides})
        self.config = cfg
        self.patch_size = cfg.patch_size
        dim2 = 2 * cfg.embed_dim
        self.aggregator = Aggregator(
            img_size=cfg.img_size,
            patch_size=cfg.patch_size,
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            num_register_tokens=cfg.num_register_tokens,
            rope_freq=cfg.rope_freq,
            encoder_depth=cfg.encoder_depth,
            encoder_num_heads=cfg.encoder_num_heads,
        )
        self.camera_head = CameraHead(dim2, cfg.camera_trunk_depth, cfg.camera_num_heads)
        dpt = dict(
            patch_size=cfg.patch_size,
            features=cfg.dpt_features,
            out_channels=cfg.dpt_out_channels,
            layer_idx=cfg.dpt_layers,
        )
        self.point_head = DPTHead(dim2, output_dim=4, activation="inv_log", conf_activation="expp1", **dpt)
        self.depth_head = DPTHead(dim2, output_dim=2, activation="exp", conf_activation="expp1", **dpt)
        self.track_head = (
            TrackHead(
                dim2,
                cfg.patch_size,
                features=cfg.track_features,
                corr_levels=cfg.track_corr_levels,
                corr_radius=cfg.track_corr_radius,
                hidden_size=cfg.track_hidden_size,
                out_channels=cfg.dpt_out_channels,
                layer_idx=cfg.dpt_layers,
                tracker_depth=cfg.track_depth,
                num_virtual_tracks=cfg.track_virtual_tracks,
            )
            if cfg.enable_track
            else None
        )

    # -- helpers -------------------------------------------------------------------------------

    def reset_non_persistent_buffers(self) -> None:
        """Refill buffers that are not in the state dict (call after ``to_empty()`` from the meta device)."""
        self.aggregator.reset_non_persistent_buffers()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.aggregator.grad_checkpointing = enable
        self.aggregator.patch_embed.grad_checkpointing = enable

    @staticmethod
    def _as_views(images: Tensor) -> Tensor:
        if images.ndim == 4:  # one sequence without batch dimension, as the official forward allows
            images = images.unsqueeze(0)
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"expected images B,S,3,H,W in [0, 1], got shape {tuple(images.shape)}")
        return images

    def _aggregate(self, images: Tensor) -> tuple[list[Tensor | None], int]:
        keep = {self.config.depth - 1, *self.config.dpt_layers}
        return self.aggregator(images, keep_layers=keep)

    # -- ReconModel ----------------------------------------------------------------------------

    def forward(self, images: Tensor, camera_iterations: int = 4) -> ReconOutput:
        images = self._as_views(images)
        B, S, _, H, W = images.shape
        layers, start = self._aggregate(images)
        # The heads run in float32 even under autocast, as in the official model.
        with torch.autocast(device_type=images.device.type, enabled=False):
            pose_iters = self.camera_head(layers, num_iterations=camera_iterations)
            pose_enc = pose_iters[-1]
            depth, depth_conf = self.depth_head(layers, (H, W), start)
            pts3d, pts3d_conf = self.point_head(layers, (H, W), start)
            w2c, K = decode_pose(pose_enc, (H, W))
            depth = depth[..., 0]
            # depth_to_pointmap samples pixel centres (u + 0.5); shifting the principal point by the same
            # half pixel gives the official (u - cx) with integer u.
            pts3d_self = depth_to_pointmap(depth, K + _HALF_PIXEL.to(K))
        return ReconOutput(
            pts3d=pts3d,
            pts3d_conf=pts3d_conf,
            pts3d_self=pts3d_self,
            pts3d_self_conf=depth_conf,
            depth=depth,
            depth_conf=depth_conf,
            c2w=extrinsics_to_c2w(w2c),
            K=K,
            extras={"pose_enc": pose_enc, "pose_enc_iters": torch.stack(pose_iters), "w2c": w2c},
        )

    def encoder_tokens(self, images: Tensor) -> Tensor:
        """DINOv2 output patch tokens, after its final norm, ``B*S, N, C`` of ``B,S,3,H,W`` or ``B,3,H,W``."""
        if images.ndim == 4:
            images = images.unsqueeze(1)
        return self.aggregator.encode(images)

    def track(
        self, images: Tensor, query_points: Tensor, iters: int | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Track ``query_points`` ``B, N, 2`` (pixels of frame 0, tune3d convention: pixel (u, v) has its
        centre at (u + 0.5, v + 0.5)) through all frames -> (tracks ``B,S,N,2``, visibility ``B,S,N``,
        confidence ``B,S,N``), tracks in the same pixel convention."""
        if self.track_head is None:
            raise RuntimeError("this VGGT was built with enable_track=False")
        images = self._as_views(images)
        H, W = images.shape[-2:]
        layers, start = self._aggregate(images)
        with torch.autocast(device_type=images.device.type, enabled=False):
            # The official tracker puts pixel centres at integer coordinates.
            tracks, vis, conf = self.track_head(layers, (H, W), start, query_points.float() - 0.5, iters)
        return tracks[-1] + 0.5, vis, conf
