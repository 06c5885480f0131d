"""Pair graphs and global alignment of pairwise pointmaps made from ground-truth geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tune3d.errors import Tune3DError
from tune3d.geometry.align import umeyama_sim3
from tune3d.geometry.cameras import depth_to_pointmap, invert_rigid, look_at, make_K, transform_points
from tune3d.geometry.pose import rotation_error_deg
from tune3d.recon import global_alignment
from tune3d.recon.graph import connected_components, make_pairs


def test_make_pairs_follows_dust3r_graphs():
    assert len(make_pairs(5, "complete")) == 5 * 4
    und = make_pairs(5, "complete", symmetrize=False)
    assert und == [(i, j) for i in range(5) for j in range(i + 1, 5)]
    assert set(make_pairs(5, "swin-1", symmetrize=False)) == {(0, 1), (1, 2), (2, 3), (3, 4), (0, 4)}
    assert set(make_pairs(5, "swin-1-noncyclic", symmetrize=False)) == {(0, 1), (1, 2), (2, 3), (3, 4)}
    # logwin-2: offsets 1 and 2 both ways, wrapping around
    assert set(make_pairs(6, "logwin-2", symmetrize=False)) == {
        (i, j) for i in range(6) for j in range(i + 1, 6) if min(j - i, 6 - (j - i)) in (1, 2)
    }
    assert set(make_pairs(4, "oneref-2", symmetrize=False)) == {(0, 2), (1, 2), (2, 3)}
    sym = make_pairs(4, "swin-2")
    assert len(sym) == len(set(sym)) and all((j, i) in sym for i, j in sym)
    for bad in ("full", "swin-0", "swin-x", "oneref-9"):
        with pytest.raises(Tune3DError):
            make_pairs(4, bad)
    with pytest.raises(Tune3DError, match="at least two"):
        make_pairs(1)


def _scene(n: int = 5, H: int = 16, W: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    K = make_K(22.0, 22.0, W / 2, H / 2).repeat(n, 1, 1)
    c2w = []
    for k in range(n):
        a = 0.5 * k / n
        eye = torch.tensor([2 * math.sin(a), 0.3 * k / n, -2 * math.cos(a)], dtype=torch.float64)
        c2w.append(look_at(eye, torch.tensor([0.0, 0.1, 0.0], dtype=torch.float64)))
    c2w = torch.stack(c2w)
    depth = 1.8 + 0.4 * torch.rand(n, H, W, generator=g, dtype=torch.float64)
    return K, c2w, depth


def _pairwise(edges, K, c2w, depth, noise: float = 0.0, seed: int = 0):
    """Exact pairwise pointmaps (each pair at its own random scale), optionally with multiplicative noise."""
    g = torch.Generator().manual_seed(seed)
    world = depth_to_pointmap(depth, K, c2w)
    n, H, W, _ = world.shape
    pi, pj = [], []
    for i, j in edges:
        s = 0.5 + 2 * float(torch.rand(1, generator=g))
        w2i = invert_rigid(c2w[i])
        for out, v in ((pi, i), (pj, j)):
            p = s * transform_points(w2i, world[v].reshape(-1, 3)).reshape(H, W, 3)
            out.append(p * (1 + noise * torch.randn(p.shape, generator=g, dtype=p.dtype)))
    conf = torch.full((len(edges), H, W), 5.0)
    return torch.stack(pi).float(), torch.stack(pj).float(), conf, conf.clone()


def _pose_errors(c2w_est: torch.Tensor, c2w_gt: torch.Tensor) -> tuple[float, float]:
    """Max relative-rotation error over view pairs (deg, gauge free) and max camera-centre error relative
    to the camera spread after a Sim(3) fit of the centres."""
    est, gt = c2w_est.double(), c2w_gt.double()
    rel_est = est[:, None, :3, :3].transpose(-1, -2) @ est[None, :, :3, :3]
    rel_gt = gt[:, None, :3, :3].transpose(-1, -2) @ gt[None, :, :3, :3]
    rot = rotation_error_deg(rel_est, rel_gt).max()
    s, R, t = umeyama_sim3(est[:, :3, 3], gt[:, :3, 3])
    centres = s * est[:, :3, 3] @ R.T + t
    spread = (gt[:, :3, 3] - gt[:, :3, 3].mean(0)).norm(dim=-1).max()
    return float(rot), float((centres - gt[:, :3, 3]).norm(dim=-1).max() / spread)


def test_exact_pointmaps_recover_poses_focal_and_points():
    K, c2w, depth = _scene()
    edges = make_pairs(len(c2w), "complete")
    pi, pj, ci, cj = _pairwise(edges, K, c2w, depth)
    init = global_alignment(edges, pi, pj, ci, cj, niter=0)
    rot, cen = _pose_errors(init.c2w, c2w)
    assert rot < 1e-3 and cen < 1e-4  # the spanning-tree initialisation is exact on exact input
    torch.testing.assert_close(init.K.double(), K, atol=1e-3, rtol=1e-4)
    res = global_alignment(edges, pi, pj, ci, cj)  # the published 300 steps
    rot, cen = _pose_errors(res.c2w, c2w)
    assert rot < 0.1 and cen < 0.01, (rot, cen)
    assert res.pts3d.shape == (5, 16, 24, 3) and res.K.shape == (5, 3, 3) and res.conf.shape == (5, 16, 24)
    # world points match ground truth up to one similarity
    gt = depth_to_pointmap(depth, K, c2w).reshape(-1, 3)
    s, R, t = umeyama_sim3(res.pts3d.double().reshape(-1, 3), gt)
    err = (s * res.pts3d.double().reshape(-1, 3) @ R.T + t - gt).norm(dim=-1)
    assert float(err.median()) < 0.01 * float(depth.mean())


def test_spanning_tree_skips_low_confidence_wrong_pairs():
    """DUSt3R's init walks the maximum spanning tree of ``mean(conf_i) * mean(conf_j)``: wrong pairs with low
    confidence stay out of it, so the initialisation is still exact; with their confidence raised above
    the others they enter the tree and break it."""
    K, c2w, depth = _scene(n=5, seed=4)
    edges = make_pairs(5, "complete")
    pi, pj, ci, cj = _pairwise(edges, K, c2w, depth)
    a = math.radians(25)
    turn = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    bad = [e for e, (i, j) in enumerate(edges) if {i, j} in ({0, 2}, {1, 3}, {2, 4})]
    for e in bad:
        pj[e] = pj[e] @ turn.T  # view j rotated in view i's frame: a wrong relative pose
        ci[e], cj[e] = 1.5, 1.5
    init = global_alignment(edges, pi, pj, ci, cj, niter=0)
    assert not {frozenset(t) for t in init.tree} & {frozenset(edges[e]) for e in bad}
    assert _pose_errors(init.c2w, c2w)[0] < 1e-3
    for e in bad:
        ci[e], cj[e] = 9.0, 9.0
    trusted = global_alignment(edges, pi, pj, ci, cj, niter=0)
    assert _pose_errors(trusted.c2w, c2w)[0] > 10


def test_noise_degrades_gracefully_and_sparse_graph_works():
    K, c2w, depth = _scene(n=6, seed=1)
    errors = []
    for noise in (0.0, 0.02, 0.08):
        edges = make_pairs(6, "swin-2")
        pi, pj, ci, cj = _pairwise(edges, K, c2w, depth, noise=noise, seed=2)
        res = global_alignment(edges, pi, pj, ci, cj, niter=100)
        assert torch.isfinite(res.pts3d).all()
        errors.append(_pose_errors(res.c2w, c2w))
    rots, cens = [e[0] for e in errors], [e[1] for e in errors]
    assert rots[0] < 0.5 and rots[1] < 2.0 and rots[2] < 6.0, errors
    assert cens[0] < 0.03 and cens[2] < 0.2 and rots[0] < rots[2], errors


def test_known_cameras_are_kept_and_fix_the_scale():
    K, c2w, depth = _scene(n=4, seed=3)
    edges = make_pairs(4, "oneref-0")
    pi, pj, ci, cj = _pairwise(edges, K, c2w, depth)
    res = global_alignment(edges, pi, pj, ci, cj, known_K=K, known_c2w=c2w.numpy(), niter=60)
    torch.testing.assert_close(res.c2w, c2w)
    torch.testing.assert_close(res.K, K)
    gt = depth_to_pointmap(depth, K, c2w)  # metric: no similarity needed once the poses are fixed
    assert float((res.pts3d.double() - gt).norm(dim=-1).median()) < 0.02 * float(depth.mean())
    only_k = global_alignment(edges, pi, pj, ci, cj, known_K=K, niter=60)
    torch.testing.assert_close(only_k.K, K)
    assert _pose_errors(only_k.c2w, c2w)[0] < 0.5
    with pytest.raises(Tune3DError, match="known poses"):
        global_alignment(edges, pi, pj, ci, cj, known_c2w=c2w[:3], niter=0)


def test_disconnected_graph_is_a_clear_error():
    edges = [(0, 1), (1, 0), (2, 3), (3, 2)]
    assert connected_components(4, edges) == [[0, 1], [2, 3]]
    pts = torch.rand(4, 4, 4, 3) + torch.tensor([0.0, 0.0, 1.0])
    conf = torch.full((4, 4, 4), 2.0)
    with pytest.raises(Tune3DError, match="disconnected"):
        global_alignment(edges, pts, pts, conf, conf)


def test_seven_scenes_frames_from_depth_and_poses(seven_scenes):
    from tune3d.data import load_scene

    scene = load_scene(seven_scenes)
    frames = [scene[k].resized(24, 32) for k in range(0, 100, 20)]
    depth = torch.from_numpy(np.stack([f.depth() for f in frames])).double()
    K = torch.from_numpy(np.stack([f.K for f in frames])).double()
    c2w = torch.from_numpy(np.stack([f.c2w for f in frames])).double()
    valid = depth > 0
    depth = torch.where(valid, depth, depth[valid].median())  # holes: any finite value at confidence 1
    edges = make_pairs(len(frames), "complete")
    pi, pj, ci, cj = _pairwise(edges, K, c2w, depth)
    ei, ej = [i for i, _ in edges], [j for _, j in edges]
    ci, cj = torch.where(valid[ei], ci, 1.0), torch.where(valid[ej], cj, 1.0)
    init = global_alignment(edges, pi, pj, ci, cj, niter=0)
    assert _pose_errors(init.c2w, c2w)[0] < 1e-2
    res = global_alignment(edges, pi, pj, ci, cj, niter=100)
    rot, cen = _pose_errors(res.c2w, c2w)
    assert rot < 0.5 and cen < 0.02, (rot, cen)
    noisy = global_alignment(edges, *_pairwise(edges, K, c2w, depth, noise=0.03)[:2], ci, cj, niter=100)
    assert _pose_errors(noisy.c2w, c2w)[0] < 5.0
