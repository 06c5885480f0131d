"""Global alignment of pairwise pointmaps (DUSt3R's dense ``PointCloudOptimizer``, re-implemented).

Inputs are the predictions of a pairwise model over the edges ``(i, j)`` of a pair graph
(:mod:`tune3d.recon.graph`): ``pts_i[e]`` is view ``i`` in its own camera frame and ``pts_j[e]`` view
``j`` in view ``i``'s frame, each with a confidence (>= 1 for the CroCo family). The unknowns are, per
view, a log z-depth map, a camera-to-world pose (unit quaternion + signed-log translation), a focal
(stored as ``20 * log f`` so that one learning rate suits all parameters) and optionally a principal
point; per edge, a similarity (quaternion, translation, log scale) that places the pair's pointmaps in
the world. The loss is the confidence-weighted (``log conf``) Euclidean distance between each view's
unprojected depth and every edge's placed pointmap of that view, averaged over pixels. The edge scales'
geometric mean is pinned to ``base_scale`` (0.5) unless poses are known, removing the global scale
freedom.

Initialisation (``init="mst"``): the maximum spanning tree of the pair graph under the edge score
``mean(conf_i) * mean(conf_j)`` is walked from its strongest edge, chaining each new view by a
confidence-weighted Sim(3) fit on the shared view. Each view's camera then comes from a Sim(3) fit of
its own-frame pointmap (its most confident edge ``(v, .)``) to its chained world points, and its focal
from the Weiszfeld fit of DUSt3R. Optimisation: Adam (betas 0.9, 0.9), ``lr=0.01`` decayed to ``1e-6``
over ``niter=300`` steps by a cosine (or linear) schedule, as in DUSt3R's README and demo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from tune3d.errors import Tune3DError
from tune3d.geometry.align import umeyama_sim3
from tune3d.geometry.cameras import invert_rigid, pixel_grid
from tune3d.geometry.pose import estimate_focal_from_pointmap, mat_to_quat, quat_to_mat
from tune3d.recon.graph import DisjointSets, check_connected

FOCAL_BREAK = 20.0  # focal parameter = FOCAL_BREAK * log(f)
PP_BREAK = 10.0  # principal point = image centre + PP_BREAK * parameter

__all__ = ["GlobalAlignment", "global_alignment", "max_spanning_tree"]


@dataclass
class GlobalAlignment:
    """Result for ``S`` views at ``H x W``: world pointmaps ``pts3d`` ``S,H,W,3``, z-depth ``depth``
    ``S,H,W``, OpenCV camera-to-world ``c2w`` ``S,4,4``, pixel intrinsics ``K`` ``S,3,3`` (pixel centres
    at ``+0.5``), per-view confidence ``conf`` ``S,H,W`` (max over the edges showing the view), the
    loss before and after optimisation and the spanning-tree edges used for the initialisation."""

    pts3d: Tensor
    depth: Tensor
    c2w: Tensor
    K: Tensor
    conf: Tensor
    init_loss: float
    loss: float
    tree: list[tuple[int, int]]


def _signed_log1p(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def _signed_expm1(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


def _sim3_matrix(s: Tensor, R: Tensor, t: Tensor) -> Tensor:
    T = torch.eye(4, dtype=R.dtype, device=R.device)
    T[:3, :3] = s * R
    T[:3, 3] = t
    return T


def _apply(T: Tensor, pts: Tensor) -> Tensor:
    """One transform ``4,4`` on points ``...,3``, or one per map ``N,4,4`` on pointmaps ``N,H,W,3``."""
    if T.ndim == 2:
        return pts @ T[:3, :3].T + T[:3, 3]
    return torch.einsum("nij,nhwj->nhwi", T[:, :3, :3], pts) + T[:, None, None, :3, 3]


def _fit(src: Tensor, dst: Tensor, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    s, R, t = umeyama_sim3(src.reshape(-1, 3), dst.reshape(-1, 3), w.reshape(-1))
    return s, R, t


def edge_scores(conf_i: Tensor, conf_j: Tensor) -> Tensor:
    """DUSt3R's edge score ``mean(conf_i) * mean(conf_j)`` per edge ``E``."""
    return conf_i.flatten(1).mean(1) * conf_j.flatten(1).mean(1)


def max_spanning_tree(n: int, edges: list[tuple[int, int]], scores: Tensor) -> list[int]:
    """Indices into ``edges`` of a maximum spanning tree (Kruskal), strongest edge first."""
    sets = DisjointSets(n)
    order = sorted(range(len(edges)), key=lambda k: -float(scores[k]))
    return [e for e in order if sets.union(*edges[e])]  # kept when it joins two trees


class _Scene(nn.Module):
    """Parameters and loss of the alignment (see the module docstring)."""

    def __init__(self, n: int, H: int, W: int, edges, pred_i, pred_j, w_i, w_j, base_scale: float):
        super().__init__()
        E = len(edges)
        dev = pred_i.device
        self.H, self.W, self.base_scale = H, W, base_scale
        self.log_depth = nn.Parameter(torch.zeros(n, H, W, device=dev))
        self.quat = nn.Parameter(torch.tensor([0.0, 0.0, 0.0, 1.0], device=dev).repeat(n, 1))
        self.trans = nn.Parameter(torch.zeros(n, 3, device=dev))
        self.focal = nn.Parameter(torch.full((n,), FOCAL_BREAK * math.log(max(H, W)), device=dev))
        self.pp = nn.Parameter(torch.zeros(n, 2, device=dev))
        self.pw_quat = nn.Parameter(torch.tensor([0.0, 0.0, 0.0, 1.0], device=dev).repeat(E, 1))
        self.pw_trans = nn.Parameter(torch.zeros(E, 3, device=dev))
        self.pw_log_scale = nn.Parameter(torch.zeros(E, device=dev))
        self.norm_pw_scale = True
        self.register_buffer("ei", torch.tensor([i for i, _ in edges], device=dev))
        self.register_buffer("ej", torch.tensor([j for _, j in edges], device=dev))
        self.register_buffer("pred_i", pred_i)
        self.register_buffer("pred_j", pred_j)
        self.register_buffer("w_i", w_i)
        self.register_buffer("w_j", w_j)
        self.register_buffer("grid", pixel_grid(H, W, device=dev))
        self.register_buffer("centre", torch.tensor([W / 2, H / 2], device=dev))

    # --- cameras
    def focals(self) -> Tensor:
        return (self.focal / FOCAL_BREAK).exp()

    def principal_points(self) -> Tensor:
        return self.centre + PP_BREAK * self.pp

    def intrinsics(self) -> Tensor:
        n = self.focal.shape[0]
        K = torch.zeros(n, 3, 3, dtype=self.focal.dtype, device=self.focal.device)
        K[:, 0, 0] = K[:, 1, 1] = self.focals()
        K[:, :2, 2] = self.principal_points()
        K[:, 2, 2] = 1
        return K

    def c2w(self) -> Tensor:
        n = self.quat.shape[0]
        T = torch.eye(4, dtype=self.quat.dtype, device=self.quat.device).repeat(n, 1, 1)
        T[:, :3, :3] = quat_to_mat(self.quat)
        T[:, :3, 3] = _signed_expm1(self.trans)
        return T

    def set_camera(self, v: int, c2w: Tensor) -> None:
        self.quat.data[v] = mat_to_quat(c2w[:3, :3].to(self.quat))
        self.trans.data[v] = _signed_log1p(c2w[:3, 3].to(self.trans))

    # --- edges
    def pw_scale(self) -> Tensor:
        scale = self.pw_log_scale.exp()
        if self.norm_pw_scale:
            scale = scale * (math.log(self.base_scale) - self.pw_log_scale.mean()).exp()
        return scale

    def pw_transforms(self) -> Tensor:
        """Per edge ``E,4,4``: ``p -> scale * (R p + t)``."""
        E = self.pw_quat.shape[0]
        T = torch.eye(4, dtype=self.pw_quat.dtype, device=self.pw_quat.device).repeat(E, 1, 1)
        T[:, :3, :3] = quat_to_mat(self.pw_quat)
        T[:, :3, 3] = _signed_expm1(self.pw_trans)
        T[:, :3] *= self.pw_scale()[:, None, None]
        return T

    def set_edge(self, e: int, s: Tensor, R: Tensor, t: Tensor) -> None:
        self.pw_quat.data[e] = mat_to_quat(R.to(self.pw_quat))
        self.pw_trans.data[e] = _signed_log1p((t / s).to(self.pw_trans))
        self.pw_log_scale.data[e] = torch.log(s).to(self.pw_log_scale)

    # --- geometry and loss
    def depth(self) -> Tensor:
        return self.log_depth.exp()

    def world_points(self) -> Tensor:
        d = self.depth()[..., None]
        ray = (self.grid - self.principal_points()[:, None, None]) / self.focals()[:, None, None, None]
        cam = torch.cat([ray * d, d], dim=-1)
        return _apply(self.c2w(), cam)

    def forward(self) -> Tensor:
        world = self.world_points()
        T = self.pw_transforms()
        li = ((world[self.ei] - _apply(T, self.pred_i)).norm(dim=-1) * self.w_i).mean()
        lj = ((world[self.ej] - _apply(T, self.pred_j)).norm(dim=-1) * self.w_j).mean()
        return li + lj


def _conf_weight(conf: Tensor, mode: str) -> Tensor:
    if mode == "log":
        return conf.clamp_min(1.0).log()
    if mode == "sqrt":
        return conf.clamp_min(0.0).sqrt()
    if mode == "m1":
        return (conf - 1).clamp_min(0.0)
    if mode == "id":
        return conf
    raise ValueError(f"unknown confidence transform {mode!r}; expected log, sqrt, m1 or id")


def _align_to_known_poses(c2w: Tensor, known: Tensor) -> Tensor:
    """Sim(3) ``T`` with ``T @ c2w ≈ known`` from camera centres and points one step along each z axis."""

    def anchors(P: Tensor) -> Tensor:
        centres = P[:, :3, 3]
        d = torch.cdist(centres, centres)
        step = d[d > 0].median() / 100 if (d > 0).any() else torch.tensor(1e-2, dtype=P.dtype)
        return torch.cat([centres, centres + step * P[:, :3, 2]])

    s, R, t = umeyama_sim3(anchors(c2w), anchors(known))
    return _sim3_matrix(s, R, t)


@torch.no_grad()
def _init_mst(
    scene: _Scene,
    n: int,
    edges: list[tuple[int, int]],
    pred_i: Tensor,
    pred_j: Tensor,
    conf_i: Tensor,
    conf_j: Tensor,
    known_K: Tensor | None,
    known_c2w: Tensor | None,
) -> list[tuple[int, int]]:
    pi, pj, ci, cj = pred_i.double(), pred_j.double(), conf_i.double(), conf_j.double()
    scores = edge_scores(ci, cj)
    tree = max_spanning_tree(n, edges, scores)
    pts: list[Tensor | None] = [None] * n
    first = tree[0]
    i, j = edges[first]
    pts[i], pts[j] = pi[first].clone(), pj[first].clone()
    todo = tree[1:]
    while todo:  # a tree: some remaining edge always touches a placed view
        for k, e in enumerate(todo):
            i, j = edges[e]
            if pts[i] is not None and pts[j] is None:
                T = _sim3_matrix(*_fit(pi[e], pts[i], ci[e]))
                pts[j] = _apply(T, pj[e])
            elif pts[j] is not None and pts[i] is None:
                T = _sim3_matrix(*_fit(pj[e], pts[j], cj[e]))
                pts[i] = _apply(T, pi[e])
            else:
                continue
            todo.pop(k)
            break
    world = torch.stack(pts)  # n,H,W,3

    # Cameras: own-frame pointmap of each view's most confident edge (v, .) fitted to its world points.
    c2w = torch.eye(4, dtype=torch.float64, device=world.device).repeat(n, 1, 1)
    own = torch.empty_like(world)
    own_conf = torch.empty(world.shape[:3], dtype=torch.float64, device=world.device)
    for v in range(n):
        cand = [e for e, (a, _) in enumerate(edges) if a == v]
        if not cand:  # not symmetrised: fall back to the chained points themselves
            cand_j = [e for e, (_, b) in enumerate(edges) if b == v]
            e = max(cand_j, key=lambda k: float(scores[k]))
            own[v], own_conf[v] = pj[e], cj[e]
        else:
            e = max(cand, key=lambda k: float(ci[k].mean()))
            own[v], own_conf[v] = pi[e], ci[e]
        s, R, t = _fit(own[v], world[v], own_conf[v])
        c2w[v, :3, :3], c2w[v, :3, 3] = R, t
    if known_c2w is not None:
        T = _align_to_known_poses(c2w, known_c2w)
        s = torch.linalg.det(T[:3, :3]).abs() ** (1 / 3)
        world = _apply(T, world)
        c2w = T @ c2w
        c2w[:, :3, :3] /= s
        c2w = known_c2w.clone()
        scene.norm_pw_scale = False

    for e, (i, _) in enumerate(edges):
        scene.set_edge(e, *_fit(pi[e], world[i], ci[e]))
    if scene.norm_pw_scale:
        factor = float(torch.exp(math.log(scene.base_scale) - scene.pw_log_scale.double().mean()))
        world = world * factor
        c2w[:, :3, 3] *= factor

    H, W = world.shape[1:3]
    if known_K is not None:
        f = known_K[:, [0, 1], [0, 1]].mean(-1)
        pp = known_K[:, :2, 2]
    else:
        f = estimate_focal_from_pointmap(own, own_conf >= own_conf.flatten(1).median(1).values[:, None, None])
        fallback = torch.full_like(f, max(H, W) / (2 * math.tan(math.radians(30))))
        f = torch.where(torch.isfinite(f) & (f > 0), f, fallback)
        pp = torch.tensor([W / 2, H / 2], dtype=torch.float64).repeat(n, 1)
    scene.focal.data[:] = (FOCAL_BREAK * f.log()).to(scene.focal)
    scene.pp.data[:] = ((pp.to(scene.pp) - scene.centre) / PP_BREAK).to(scene.pp)
    for v in range(n):
        scene.set_camera(v, c2w[v])
        z = _apply(invert_rigid(c2w[v]), world[v])[..., 2]
        pos = z[z > 0]
        floor = float(pos.median()) * 1e-3 if pos.numel() else 1e-3
        scene.log_depth.data[v] = z.clamp_min(floor).log().to(scene.log_depth)
    return [edges[e] for e in tree]


def global_alignment(
    edges: list[tuple[int, int]],
    pts_i: Tensor,
    pts_j: Tensor,
    conf_i: Tensor,
    conf_j: Tensor,
    *,
    n_views: int | None = None,
    known_K: Tensor | np.ndarray | None = None,
    known_c2w: Tensor | np.ndarray | None = None,
    optimize_pp: bool = False,
    niter: int = 300,
    lr: float = 0.01,
    lr_min: float = 1e-6,
    schedule: str = "cosine",
    conf_transform: str = "log",
    base_scale: float = 0.5,
    device: str | torch.device | None = None,
    progress: bool = False,
    dtype: torch.dtype = torch.float32,
) -> GlobalAlignment:
    """Align pairwise pointmaps into one world frame (see the module docstring).

    ``edges``: ``E`` pairs ``(i, j)`` of view indices (both orders recommended, as
    :func:`tune3d.recon.graph.make_pairs` gives). ``pts_i`` ``E,H,W,3``: view ``i`` in its own frame;
    ``pts_j`` ``E,H,W,3``: view ``j`` in view ``i``'s frame; ``conf_i``/``conf_j`` ``E,H,W``.
    ``known_K`` ``S,3,3`` fixes focal (mean of fx, fy) and principal point; ``known_c2w`` ``S,4,4``
    (OpenCV camera-to-world) fixes all poses and with them the scale. ``niter=0`` returns the
    spanning-tree initialisation. The world frame is the initialisation's (the strongest edge's first
    view) unless poses are known.
    """
    if len(edges) == 0:
        raise Tune3DError("global alignment needs at least one pair")
    n = n_views if n_views is not None else max(max(e) for e in edges) + 1
    check_connected(n, edges)
    E, H, W, _ = pts_i.shape
    if (
        pts_j.shape != pts_i.shape
        or conf_i.shape != (E, H, W)
        or conf_j.shape != (E, H, W)
        or E != len(edges)
    ):
        raise ValueError(
            f"pairwise shapes disagree: {len(edges)} edges, pts_i {tuple(pts_i.shape)}, "
            f"pts_j {tuple(pts_j.shape)}, conf_i {tuple(conf_i.shape)}, conf_j {tuple(conf_j.shape)}"
        )
    if schedule not in ("cosine", "linear"):
        raise ValueError(f"unknown schedule {schedule!r}; expected cosine or linear")
    dev = torch.device(device) if device is not None else pts_i.device

    def tensor(x, shape, what):
        if x is None:
            return None
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x, dtype=torch.float64)
        if tuple(x.shape) != shape:
            raise Tune3DError(f"{what} has shape {tuple(x.shape)}, expected {shape} (one per view)")
        return x.to(dev)

    known_K = tensor(known_K, (n, 3, 3), "known intrinsics")
    known_c2w = tensor(known_c2w, (n, 4, 4), "known poses")
    pred_i = pts_i.detach().float().to(dev)
    pred_j = pts_j.detach().float().to(dev)
    ci, cj = conf_i.detach().float().to(dev), conf_j.detach().float().to(dev)
    finite = torch.isfinite(pred_i).all(-1) & torch.isfinite(pred_j).all(-1)
    ci = torch.where(finite & torch.isfinite(ci), ci, torch.ones_like(ci))
    cj = torch.where(finite & torch.isfinite(cj), cj, torch.ones_like(cj))
    pred_i, pred_j = pred_i.nan_to_num(0.0, 0.0, 0.0), pred_j.nan_to_num(0.0, 0.0, 0.0)
    w_i = torch.where(finite, _conf_weight(ci, conf_transform), torch.zeros_like(ci))
    w_j = torch.where(finite, _conf_weight(cj, conf_transform), torch.zeros_like(cj))

    scene = _Scene(n, H, W, edges, pred_i, pred_j, w_i, w_j, base_scale).to(dev, dtype)
    tree = _init_mst(scene, n, edges, pred_i, pred_j, ci, cj, known_K, known_c2w)
    scene.pp.requires_grad_(optimize_pp and known_K is None)
    scene.focal.requires_grad_(known_K is None)
    scene.quat.requires_grad_(known_c2w is None)
    scene.trans.requires_grad_(known_c2w is None)

    with torch.no_grad():
        init_loss = loss = float(scene())
    params = [p for p in scene.parameters() if p.requires_grad]
    if niter > 0:
        opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.9))
        bar = tqdm(
            range(niter), desc="global alignment", disable=not progress, dynamic_ncols=True, leave=False
        )
        for it in bar:
            t = it / niter
            if schedule == "cosine":
                cur = lr_min + (lr - lr_min) * (1 + math.cos(math.pi * t)) / 2
            else:
                cur = lr + (lr_min - lr) * t
            for g in opt.param_groups:
                g["lr"] = cur
            opt.zero_grad(set_to_none=True)
            value = scene()
            value.backward()
            opt.step()
            loss = float(value.detach())
            if progress and it % 10 == 0:
                bar.set_postfix(loss=f"{loss:.4g}")
        with torch.no_grad():
            loss = float(scene())

    with torch.no_grad():
        conf = torch.zeros(n, H, W, device=dev)
        for e, (i, j) in enumerate(edges):
            conf[i] = torch.maximum(conf[i], ci[e])
            conf[j] = torch.maximum(conf[j], cj[e])
        c2w = scene.c2w().double()
        if known_c2w is not None:
            c2w = known_c2w.clone()
        K = scene.intrinsics().double()
        if known_K is not None:
            K = known_K.clone()
        return GlobalAlignment(
            pts3d=scene.world_points().detach(),
            depth=scene.depth().detach(),
            c2w=c2w,
            K=K,
            conf=conf,
            init_loss=init_loss,
            loss=loss,
            tree=tree,
        )
