"""CUT3R's ray-map input: known cameras -> the 6-channel map its ray encoder takes.

The convention is the one CUT3R's training data uses (``BaseMultiViewDataset``'s ``get_ray_map``):

- frame: every camera is expressed relative to the **first view of the sequence**
  (``rel_i = inv(c2w_0) @ c2w_i``, so view 0 sits at the identity), in the poses' own (metric) units;
  no normalisation of translations or scale;
- pixels: CUT3R samples integer coordinates ``(u, v)`` = ``(column, row)`` with dust3r's OpenCV ``K``, whose
  top-left pixel centre is ``(0, 0)``; tune3d's ``K`` puts it at ``(0.5, 0.5)``, so the map is sampled at
  ``(u + 0.5, v + 0.5)``: the same rays;
- channels ``0:3`` = ray origin ``t_rel`` (the same for every pixel); channels ``3:6`` = the unit vector
  ``normalise(R_rel @ inv(K) @ [u, v, 1] + t_rel)`` (dust3r's ``K``, integer ``u, v``). The official code
  maps the depth-1 point of the pixel as a *point* (rotation and translation) before normalising, so for
  views other than the first this is the direction from the first camera's centre to that point, not the
  ray direction itself; this is kept because the released weights were trained on it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tune3d.geometry.cameras import pixel_rays


def cut3r_ray_maps(c2w: Tensor, K: Tensor, height: int, width: int) -> Tensor:
    """Ray maps ``S,6,H,W`` (float32) for cameras ``c2w`` ``S,4,4`` (OpenCV camera-to-world) and ``K``
    ``S,3,3`` (tune3d's pixel-centre convention, at the model-input size ``H x W``), relative to the first
    camera (see the module doc)."""
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or K.shape != (c2w.shape[0], 3, 3):
        raise ValueError(f"expected c2w S,4,4 and K S,3,3, got {tuple(c2w.shape)} and {tuple(K.shape)}")
    c2w, K = c2w.double(), K.to(device=c2w.device, dtype=torch.float64)
    rel = torch.linalg.inv(c2w[:1]) @ c2w  # S,4,4
    x, y = pixel_rays(height, width, K)  # S,H,W: inv(K) @ [u, v, 1] at tune3d's pixel centres
    cam = torch.stack([x, y, torch.ones_like(x)], dim=-1).flatten(1, 2)  # S,H*W,3
    t = rel[:, None, :3, 3]
    pts = torch.einsum("sij,snj->sni", rel[:, :3, :3], cam) + t
    d = pts / pts.norm(dim=-1, keepdim=True)
    o = t.expand_as(d)
    out = torch.cat([o, d], dim=-1).reshape(-1, height, width, 6).permute(0, 3, 1, 2)
    return out.float().contiguous()
