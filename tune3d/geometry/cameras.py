"""Camera conventions and projection.

Conventions (see ``design.md``): OpenCV camera axes (x right, y down, z forward); poses are
camera-to-world ``c2w`` (4x4); renderers take world-to-camera ``viewmats``; pixel intrinsics ``K``
(3x3) with pixel centres at ``(u + 0.5, v + 0.5)``; metres. All functions are torch-first, accept
leading batch dimensions and keep the input dtype/device.
"""

from __future__ import annotations

import torch
from torch import Tensor

# OpenGL/Blender/nerfstudio camera axes are (x right, y up, z backward); flipping y and z gives OpenCV.
_GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


def make_K(fx: float, fy: float, cx: float, cy: float, dtype: torch.dtype = torch.float64) -> Tensor:
    """Pinhole intrinsics as a 3x3 tensor."""
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=dtype)


def scale_K(K: Tensor, sx: float, sy: float | None = None) -> Tensor:
    """Intrinsics for an image resized by (sx, sy). Exact under the pixel-centre convention."""
    sy = sx if sy is None else sy
    S = torch.tensor([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], dtype=K.dtype, device=K.device)
    return S @ K


def crop_K(K: Tensor, left: float, top: float) -> Tensor:
    """Intrinsics after cropping ``left``/``top`` pixels (negative values = padding)."""
    K = K.clone()
    K[..., 0, 2] -= left
    K[..., 1, 2] -= top
    return K


def invert_rigid(T: Tensor) -> Tensor:
    """Inverse of rigid 4x4 transforms (..., 4, 4) using R^T, without a general matrix inverse."""
    R = T[..., :3, :3]
    t = T[..., :3, 3:]
    out = torch.zeros_like(T)
    Rt = R.transpose(-1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -Rt @ t
    out[..., 3, 3] = 1
    return out


def c2w_to_viewmat(c2w: Tensor) -> Tensor:
    """Camera-to-world (..., 4, 4) -> world-to-camera viewmat (..., 4, 4)."""
    return invert_rigid(c2w)


def viewmat_to_c2w(viewmat: Tensor) -> Tensor:
    return invert_rigid(viewmat)


def opengl_to_opencv(c2w: Tensor) -> Tensor:
    """Convert a camera-to-world pose with OpenGL camera axes to OpenCV camera axes."""
    return c2w @ _GL_TO_CV.to(dtype=c2w.dtype, device=c2w.device)


opencv_to_opengl = opengl_to_opencv  # the flip is its own inverse


def is_rigid(T: Tensor, atol: float = 1e-3) -> bool:
    """True if every (..., 4, 4) transform has an orthonormal right-handed rotation and [0,0,0,1] last row."""
    if not torch.isfinite(T).all():
        return False
    R = T[..., :3, :3].double()
    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    ortho = (R @ R.transpose(-1, -2) - eye).abs().amax() <= atol
    det = (torch.linalg.det(R) - 1).abs().amax() <= atol
    last = torch.tensor([0, 0, 0, 1], dtype=T.dtype, device=T.device)
    bottom = (T[..., 3, :] - last).abs().amax() <= atol
    return bool(ortho and det and bottom)


def transform_points(T: Tensor, points: Tensor) -> Tensor:
    """Apply 4x4 transforms (..., 4, 4) to points (..., N, 3)."""
    return points @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]


def pixel_grid(height: int, width: int, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """(H, W, 2) pixel-centre coordinates (u + 0.5, v + 0.5)."""
    v, u = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device) + 0.5,
        torch.arange(width, dtype=dtype, device=device) + 0.5,
        indexing="ij",
    )
    return torch.stack([u, v], dim=-1)


def pixel_rays(height: int, width: int, K: Tensor) -> tuple[Tensor, Tensor]:
    """Normalised image coordinates ``((u - cx) / fx, (v - cy) / fy)`` at pixel centres, ``B,H,W`` each, for
    intrinsics ``K`` ``B,3,3`` (in ``K``'s dtype and device)."""
    uv = pixel_grid(height, width, dtype=K.dtype, device=K.device)
    fx, fy = K[:, 0, 0, None, None], K[:, 1, 1, None, None]
    cx, cy = K[:, 0, 2, None, None], K[:, 1, 2, None, None]
    return (uv[..., 0] - cx) / fx, (uv[..., 1] - cy) / fy


def project(points_cam: Tensor, K: Tensor, eps: float = 1e-8) -> tuple[Tensor, Tensor]:
    """Project camera points (..., N, 3) with K (..., 3, 3) -> pixels (..., N, 2) and depth z (..., N)."""
    z = points_cam[..., 2]
    uvw = points_cam @ K.transpose(-1, -2)
    uv = uvw[..., :2] / z.clamp(min=eps).unsqueeze(-1)
    return uv, z


def project_world(points: Tensor, K: Tensor, viewmat: Tensor) -> tuple[Tensor, Tensor]:
    """Project world points (..., N, 3) through a world-to-camera viewmat and K."""
    return project(transform_points(viewmat, points), K)


def unproject(uv: Tensor, depth: Tensor, K: Tensor) -> Tensor:
    """Pixels (..., N, 2) with z-depth (..., N) -> camera-space points (..., N, 3)."""
    fx, fy = K[..., 0, 0, None], K[..., 1, 1, None]
    cx, cy = K[..., 0, 2, None], K[..., 1, 2, None]
    x = (uv[..., 0] - cx) / fx * depth
    y = (uv[..., 1] - cy) / fy * depth
    return torch.stack([x, y, depth], dim=-1)


def depth_to_pointmap(depth: Tensor, K: Tensor, c2w: Tensor | None = None) -> Tensor:
    """z-depth (..., H, W) -> pointmap (..., H, W, 3) in camera space, or world space if ``c2w`` is given.

    Invalid depth (0) gives points at the camera centre; keep the mask ``depth > 0`` alongside.
    """
    H, W = depth.shape[-2:]
    uv = pixel_grid(H, W, dtype=depth.dtype, device=depth.device).reshape(-1, 2)
    lead = depth.shape[:-2]
    uv = uv.expand(*lead, H * W, 2)
    pts = unproject(uv, depth.reshape(*lead, H * W), K.to(depth.dtype))
    if c2w is not None:
        pts = transform_points(c2w.to(depth.dtype), pts)
    return pts.reshape(*lead, H, W, 3)


def pointmap_to_depth(pointmap_cam: Tensor) -> Tensor:
    """Camera-space pointmap (..., H, W, 3) -> z-depth (..., H, W)."""
    return pointmap_cam[..., 2]


def focal_to_fov(focal: Tensor | float, size: Tensor | float) -> Tensor:
    """Field of view (radians) from focal length and image size (pixels)."""
    return 2 * torch.atan(torch.as_tensor(size) / (2 * torch.as_tensor(focal)))


def fov_to_focal(fov: Tensor | float, size: Tensor | float) -> Tensor:
    return torch.as_tensor(size) / (2 * torch.tan(torch.as_tensor(fov) / 2))


def look_at(eye: Tensor, target: Tensor, up: Tensor | None = None) -> Tensor:
    """OpenCV camera-to-world pose at ``eye`` looking at ``target`` (z forward, y down, ``up`` = world up)."""
    eye = torch.as_tensor(eye, dtype=torch.float64)
    target = torch.as_tensor(target, dtype=torch.float64)
    up = (
        torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
        if up is None
        else torch.as_tensor(up, dtype=torch.float64)
    )
    z = target - eye
    z = z / z.norm()
    x = torch.linalg.cross(z, up)
    if x.norm() < 1e-8:  # looking straight along up: use the world axis least aligned with the view
        axis = torch.zeros(3, dtype=torch.float64)
        axis[int(z.abs().argmin())] = 1.0
        x = torch.linalg.cross(z, axis)
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
    return c2w
