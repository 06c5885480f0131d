"""Camera pose helpers: relative poses, angular errors, pose, focal and z-shift from pointmaps."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tune3d.geometry.align import umeyama_sim3
from tune3d.geometry.cameras import invert_rigid, pixel_grid, pixel_rays


def relative_pose(c2w_i: Tensor, c2w_j: Tensor) -> Tensor:
    """Transform taking camera-``i`` coordinates to camera-``j`` coordinates: ``inv(c2w_j) @ c2w_i``."""
    return invert_rigid(c2w_j) @ c2w_i


def quat_to_mat(quat: Tensor, scalar_first: bool = False) -> Tensor:
    """Quaternions ``..., 4`` (x, y, z, w; w, x, y, z with ``scalar_first``; need not be unit) -> rotation
    matrices ``..., 3, 3``. VGGT stores the scalar last, CUT3R (and pytorch3d) first."""
    if scalar_first:
        w, x, y, z = quat.unbind(-1)
    else:
        x, y, z, w = quat.unbind(-1)
    s = 2.0 / (quat * quat).sum(-1)
    rows = (
        1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
        s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
        s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
    )  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(*quat.shape[:-1], 3, 3)


def mat_to_quat(R: Tensor, scalar_first: bool = False) -> Tensor:
    """Rotation matrices ``..., 3, 3`` -> unit quaternions ``..., 4`` (x, y, z, w; w, x, y, z with
    ``scalar_first``) with ``w >= 0``.

    Uses the best-conditioned of the four closed-form candidates (largest ``|q_i|``), which is
    stable for every rotation, including 180-degree turns.
    """
    m = R.reshape(*R.shape[:-2], 9)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m.unbind(-1)
    # 4 * q_i^2 for i in (w, x, y, z)
    four_sq = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1
    )
    # sqrt of the positive part with a zero (not infinite) gradient at 0
    pos = four_sq > 0
    q_abs = torch.where(pos, torch.sqrt(torch.where(pos, four_sq, torch.ones_like(four_sq))), 0.0)
    sq = q_abs**2
    # Row i is (w, x, y, z) scaled by 4 * q_i (up to the sign of q_i).
    cands = torch.stack(
        [
            torch.stack([sq[..., 0], m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, sq[..., 1], m10 + m01, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m10 + m01, sq[..., 2], m12 + m21], dim=-1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, sq[..., 3]], dim=-1),
        ],
        dim=-2,
    )
    cands = cands / (2.0 * q_abs.clamp(min=0.1))[..., None]
    best = q_abs.argmax(dim=-1)
    wxyz = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    if scalar_first:
        return torch.where(wxyz[..., :1] < 0, -wxyz, wxyz)
    xyzw = wxyz[..., [1, 2, 3, 0]]
    return torch.where(xyzw[..., 3:] < 0, -xyzw, xyzw)


def rotation_angle_deg(R: Tensor) -> Tensor:
    """Rotation angle (degrees) of rotation matrices (..., 3, 3).

    Uses ``atan2(|axis-vector|, (tr - 1) / 2)``, which stays accurate near 0° and 180° where ``acos``
    loses precision.
    """
    cos = (R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2] - 1) / 2
    vee = torch.stack(
        [R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1
    )
    return torch.rad2deg(torch.atan2(vee.norm(dim=-1) / 2, cos))


def rotation_error_deg(R_pred: Tensor, R_gt: Tensor) -> Tensor:
    """Geodesic angle (degrees) between rotations (..., 3, 3): angle of ``R_pred^T R_gt``."""
    return rotation_angle_deg(R_pred.transpose(-1, -2) @ R_gt)


def translation_angle_deg(
    t_pred: Tensor, t_gt: Tensor, sign_invariant: bool = False, eps: float = 1e-12
) -> Tensor:
    """Angle (degrees) between translation directions (..., 3).

    ``sign_invariant=True`` returns ``min(err, 180 - err)`` (LoFTR / VGGT protocol, where two-view geometry
    fixes the direction only up to sign). Degenerate cases follow LoFTR: a (near-)zero ground-truth
    translation has no direction and scores 0; a zero predicted translation with a non-zero ground truth
    scores 90° (no information).
    """
    cross = torch.linalg.cross(t_pred, t_gt).norm(dim=-1)
    dot = (t_pred * t_gt).sum(-1)
    err = torch.rad2deg(torch.atan2(cross, dot))
    if sign_invariant:
        err = torch.minimum(err, 180.0 - err)
    gt_zero = t_gt.norm(dim=-1) <= eps
    pred_zero = t_pred.norm(dim=-1) <= eps
    err = torch.where(pred_zero, torch.full_like(err, 90.0), err)
    return torch.where(gt_zero, torch.zeros_like(err), err)


def pose_from_pointmaps(
    pts_ref: Tensor, pts_cam: Tensor, mask: Tensor | None = None, with_scale: bool = False
) -> Tensor:
    """Camera-to-reference pose from corresponding pointmaps, by Procrustes/Kabsch (no PnP).

    ``pts_ref`` (B, H, W, 3) are a view's points in the reference (world) frame, ``pts_cam`` (B, H, W, 3)
    the same pixels in the view's own camera frame; ``mask`` (B, H, W). Solves
    ``pts_ref ≈ R pts_cam + t`` and returns ``c2w`` (B, 4, 4). With ``with_scale=True`` R and t come from
    a Sim(3) fit (robust when the two pointmaps disagree on scale) and the scale is dropped.
    """
    B = pts_ref.shape[0]
    src = pts_cam.reshape(B, -1, 3)
    dst = pts_ref.reshape(B, -1, 3)
    w = None if mask is None else mask.reshape(B, -1)
    _, R, t = umeyama_sim3(src, dst, w, with_scale=with_scale)
    c2w = torch.zeros(B, 4, 4, dtype=R.dtype, device=R.device)
    c2w[:, :3, :3] = R
    c2w[:, :3, 3] = t
    c2w[:, 3, 3] = 1
    return c2w


def estimate_focal_from_pointmap(
    pts_cam: Tensor,
    mask: Tensor | None = None,
    pp: tuple[float, float] | Tensor | None = None,
    method: str = "weiszfeld",
    n_iter: int = 10,
    min_depth: float = 1e-6,
) -> Tensor:
    """Single focal length (pixels) of camera-frame pointmaps (B, H, W, 3), like DUSt3R's focal estimation.

    Fits ``(u - cx, v - cy) ≈ f (x/z, y/z)`` over valid pixels (``mask`` and ``z > min_depth``), with pixel
    centres at ``+0.5`` and ``pp`` defaulting to the image centre ``(W/2, H/2)``. ``method="lstsq"``
    is the closed-form least-squares solution; ``"weiszfeld"`` refines it with ``n_iter`` iteratively
    reweighted steps towards the L1 (robust) solution. Returns ``f`` (B,) in ``pts_cam``'s dtype.
    """
    if method not in ("lstsq", "weiszfeld"):
        raise ValueError(f"unknown focal estimation method {method!r}; expected 'lstsq' or 'weiszfeld'")
    B, H, W, _ = pts_cam.shape
    p = pts_cam.double()
    uv = pixel_grid(H, W, dtype=torch.float64, device=p.device)
    pp_t = torch.tensor([W / 2, H / 2], dtype=torch.float64) if pp is None else torch.as_tensor(pp).double()
    centred = (uv - pp_t.to(p.device)).reshape(1, -1, 2)
    z = p[..., 2].reshape(B, -1)
    valid = torch.isfinite(p).all(-1).reshape(B, -1) & (z > min_depth)
    if mask is not None:
        valid &= mask.reshape(B, -1).bool()
    xy = p[..., :2].reshape(B, -1, 2) / torch.where(valid, z, torch.ones_like(z))[..., None]
    xy = torch.where(valid[..., None], xy, torch.zeros_like(xy))
    w = valid.double()

    def solve(w: Tensor) -> Tensor:
        num = (w * (xy * centred).sum(-1)).sum(1)
        den = (w * (xy * xy).sum(-1)).sum(1)
        return num / den.clamp_min(1e-300)

    f = solve(w)
    if method == "weiszfeld":
        for _ in range(n_iter):
            res = (f[:, None, None] * xy - centred).norm(dim=-1)
            f = solve(w / res.clamp_min(1e-8))
    f = torch.where(w.sum(1) > 0, f, torch.full_like(f, math.nan))
    return f.to(pts_cam.dtype)


def recover_z_shift(points: Tensor, mask: Tensor, K: Tensor | None = None) -> Tensor:
    """Z-shift ``s`` (``B,``) that makes an affine-invariant pointmap projective: ``(x, y) ≈ (ũ, ṽ)·(z + s)``.

    ``points``: ``B,H,W,3``; ``K``: ``B,3,3`` pixel intrinsics. With ``K`` the shift is the closed-form least
    squares solution of ``x − ũ(z + s) = 0``, ``y − ṽ(z + s) = 0`` over valid pixels. Without ``K`` an unknown
    shared focal ``f`` (principal point at the image centre) is solved jointly from the bilinear-free form
    ``f·x − u'(z + s) = 0`` (2x2 normal equations). This is the algebraic (cross-multiplied) residual, not
    MoGe's reprojection-error solve, which weights pixels differently; MoGe's own ``infer`` does that solve.
    """
    B, H, W, _ = points.shape
    P = points.double()
    m = mask.to(P.dtype)
    x, y, z = P.unbind(-1)
    if K is not None:
        ut, vt = pixel_rays(H, W, K.double().to(P.device).expand(B, 3, 3))
        num = (m * (ut * (x - ut * z) + vt * (y - vt * z))).sum(dim=(1, 2))
        den = (m * (ut * ut + vt * vt)).sum(dim=(1, 2)).clamp_min(1e-12)
        return (num / den).to(points.dtype)
    uv = pixel_grid(H, W, dtype=P.dtype, device=P.device)
    u, v = uv[..., 0] - W / 2, uv[..., 1] - H / 2
    # Unknowns theta = (f, s); rows: [x, -u] theta = u z and [y, -v] theta = v z.
    a11 = (m * (x * x + y * y)).sum(dim=(1, 2))
    a12 = -(m * (x * u + y * v)).sum(dim=(1, 2))
    a22 = (m * (u * u + v * v)).expand(B, H, W).sum(dim=(1, 2))
    b1 = (m * (x * u * z + y * v * z)).sum(dim=(1, 2))
    b2 = -(m * (u * u * z + v * v * z)).sum(dim=(1, 2))
    A = torch.stack([torch.stack([a11, a12], -1), torch.stack([a12, a22], -1)], -2)
    b = torch.stack([b1, b2], -1)
    theta = torch.linalg.solve(A + 1e-12 * torch.eye(2, dtype=P.dtype, device=P.device), b)
    return theta[:, 1].to(points.dtype)
