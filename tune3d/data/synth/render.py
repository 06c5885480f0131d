"""Ray-cast rendering of procedural rooms: RGB, z-depth, semantic labels, world normals.

Shading is Lambertian and view-independent (ambient + point lights + a sun term + soft contact
shadows under furniture + corner darkening), so a surface point has the same colour in every view
and in the sampled point cloud, as multi-view methods expect of a static scene.
"""

from __future__ import annotations

import numpy as np

from tune3d.data.synth.primitives import Prim, room_hit
from tune3d.data.synth.room import CLS, Room
from tune3d.data.synth.textures import TEXTURES

NEAR = 0.05


def camera_rays(c2w: np.ndarray, K: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, 3) world ray directions with camera-space z = 1 (so ray parameter = z-depth)."""
    u = (np.arange(width) + 0.5 - K[0, 2]) / K[0, 0]
    v = (np.arange(height) + 0.5 - K[1, 2]) / K[1, 1]
    dirs = np.empty((height, width, 3))
    dirs[..., 0] = u[None, :]
    dirs[..., 1] = v[:, None]
    dirs[..., 2] = 1.0
    return dirs @ c2w[:3, :3].T


def _screen_rect(
    prim: Prim, viewmat: np.ndarray, K: np.ndarray, H: int, W: int
) -> tuple[int, int, int, int] | None:
    """Pixel rectangle (v0, v1, u0, u1) covering the primitive's bounding box, None if off screen."""
    c = prim.corners() @ viewmat[:3, :3].T + viewmat[:3, 3]
    z = c[:, 2]
    if (z < NEAR).all():
        return None
    if (z < NEAR).any():
        return 0, H, 0, W  # straddles the camera plane: test everything
    u = K[0, 0] * c[:, 0] / z + K[0, 2]
    v = K[1, 1] * c[:, 1] / z + K[1, 2]
    u0, u1 = int(np.floor(u.min())) - 1, int(np.ceil(u.max())) + 1
    v0, v1 = int(np.floor(v.min())) - 1, int(np.ceil(v.max())) + 1
    u0, v0, u1, v1 = max(u0, 0), max(v0, 0), min(u1, W), min(v1, H)
    if u0 >= u1 or v0 >= v1:
        return None
    return v0, v1, u0, u1


def _albedo(room: Room, prim_id: np.ndarray, points: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """(N, 3) albedo of hits on ``prim_id`` (-1 = room surface; ``axis`` 0/1 wall, 2 floor/ceiling)."""
    out = np.zeros((len(points), 3), np.float32)
    order = np.argsort(prim_id, kind="stable")
    ids, starts = np.unique(prim_id[order], return_index=True)
    bounds = list(starts[1:]) + [len(order)]
    for pid, s, e in zip(ids, starts, bounds):
        idx = order[s:e]
        p = points[idx]
        if pid < 0:
            is_floor = (axis[idx] == 2) & (p[:, 2] < room.size[2] / 2)
            is_ceil = (axis[idx] == 2) & ~is_floor
            for mask, key in ((is_floor, "floor"), (is_ceil, "ceiling"), (axis[idx] != 2, "wall")):
                if mask.any():
                    m = room.surfaces[key]
                    q = p[mask]
                    if key == "wall":  # wall textures use (along-wall, height): vertical stripes
                        q = np.stack([q[:, 0] + q[:, 1], np.zeros(len(q)), q[:, 2]], 1)
                    out[idx[mask]] = TEXTURES[m.texture](q.astype(np.float32), m.c1, m.c2, m.seed)
            continue
        prim = room.prims[pid]
        q = prim.to_local(p).astype(np.float32)
        out[idx] = TEXTURES[prim.texture](q, prim.c1, prim.c2, prim.seed)
    return np.clip(out, 0, 1)


def _footprints(room: Room) -> np.ndarray:
    """(M, 5) ground footprints (x0, x1, y0, y1, top z) of floor-standing primitives, for contact shadows."""
    fps = []
    for p in room.prims:
        bottom = p.center[2] - p.size[2]
        if bottom < 0.05 and p.label not in (CLS["rug"], CLS["door"]):
            fps.append((*p.footprint(), p.center[2] + p.size[2]))
    return np.array(fps, np.float64).reshape(-1, 5)


def _floor_occlusion(room: Room, cell: float = 0.02) -> tuple[np.ndarray, float]:
    """Cached (X, Y) grid of floor light attenuation from contact shadows of floor-standing objects."""
    cached = getattr(room, "_floor_ao", None)
    if cached is not None:
        return cached
    fp = _footprints(room)
    xs = (np.arange(int(np.ceil(room.size[0] / cell))) + 0.5) * cell
    ys = (np.arange(int(np.ceil(room.size[1] / cell))) + 0.5) * cell
    grid = np.ones((len(xs), len(ys)), np.float32)
    for x0, x1, y0, y1, top in fp:
        reach = 0.08 + 0.12 * min(max(top, 0.0), 1.5)
        strength = min(0.25 + 0.5 * top, 0.6)
        dx = np.maximum(np.maximum(x0 - xs, xs - x1), 0)
        dy = np.maximum(np.maximum(y0 - ys, ys - y1), 0)
        d = np.sqrt(dx[:, None] ** 2 + dy[None, :] ** 2)
        grid *= (1 - np.clip(1 - d / reach, 0, 1) ** 2 * strength).astype(np.float32)
    room._floor_ao = (grid, cell)
    return room._floor_ao


def shade(
    room: Room, points: np.ndarray, normals: np.ndarray, albedo: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """Lambertian shading (view-independent) -> (N, 3) float32 RGB in [0, 1]."""
    light = np.full(len(points), 0.38)
    light += 0.25 * np.clip(normals @ room.sun, 0, None)
    for pos, power in room.lights:
        v = pos - points
        dist2 = (v * v).sum(1)
        ndl = np.clip((normals * v).sum(1) / np.sqrt(dist2 + 1e-9), 0, None)
        light += power * ndl / (1.0 + 0.35 * dist2)
    # Soft contact shadows on the floor under furniture (an ambient-occlusion stand-in for shadow rays).
    floor = labels == CLS["floor"]
    if floor.any():
        grid, cell = _floor_occlusion(room)
        q = points[floor]
        ix = np.clip((q[:, 0] / cell).astype(np.int64), 0, grid.shape[0] - 1)
        iy = np.clip((q[:, 1] / cell).astype(np.int64), 0, grid.shape[1] - 1)
        light[floor] *= grid[ix, iy]
    # Darken room corners and edges (distance to the two nearest room faces).
    dist = np.concatenate([points, room.size - points], axis=1)
    two = np.sort(dist, axis=1)[:, 1]
    light *= 0.75 + 0.25 * np.clip(two / 0.5, 0, 1)
    rgb = albedo * light[:, None].astype(np.float32)
    return np.clip(rgb, 0, 1) ** (1 / 1.15)  # mild tone curve


def render_view(room: Room, c2w: np.ndarray, K: np.ndarray, height: int, width: int) -> dict[str, np.ndarray]:
    """Ray-cast one view. Returns image (H,W,3) uint8, depth (H,W) float32 z-depth in metres,
    semantics (H,W) int64, normals (H,W,3) float32 world-space unit normals."""
    H, W = int(height), int(width)
    o = c2w[:3, 3].astype(np.float64)
    d = camera_rays(c2w, K, H, W).astype(np.float32)
    flat = d.reshape(-1, 3)
    t, n, axis = room_hit(o, flat, room.size)
    t = t.reshape(H, W)
    normals = n.reshape(H, W, 3)
    axis = axis.reshape(H, W)
    pid = np.full((H, W), -1, np.int64)
    viewmat = np.linalg.inv(c2w)
    for k, prim in enumerate(room.prims):
        rect = _screen_rect(prim, viewmat, K, H, W)
        if rect is None:
            continue
        v0, v1, u0, u1 = rect
        tk = prim.intersect(o, d[v0:v1, u0:u1].reshape(-1, 3)).reshape(v1 - v0, u1 - u0)
        tb = t[v0:v1, u0:u1]
        closer = tk < tb
        if closer.any():
            tb[closer] = tk[closer]
            pid[v0:v1, u0:u1][closer] = k
    points = o + t[..., None] * d
    labels = np.array([p.label for p in room.prims] + [0], np.int64)[pid]  # pid -1 -> placeholder
    room_px = pid < 0
    is_floor = room_px & (axis == 2) & (points[..., 2] < room.size[2] / 2)
    labels[room_px] = CLS["wall"]
    labels[room_px & (axis == 2)] = CLS["ceiling"]
    labels[is_floor] = CLS["floor"]
    P, N, L = points.reshape(-1, 3), normals.reshape(-1, 3), labels.reshape(-1)
    flat_pid = pid.reshape(-1)
    order = np.argsort(flat_pid, kind="stable")
    ids, starts = np.unique(flat_pid[order], return_index=True)
    for k, s, e in zip(ids, starts, list(starts[1:]) + [len(order)]):
        if k >= 0:
            idx = order[s:e]
            N[idx] = room.prims[k].normals_at(P[idx])
    albedo = _albedo(room, pid.reshape(-1), P, axis.reshape(-1))
    rgb = shade(room, P, N, albedo, L)
    image = np.round(rgb.reshape(H, W, 3) * 255).astype(np.uint8)
    return {
        "image": image,
        "depth": t.astype(np.float32),
        "semantics": labels,
        "normals": normals.astype(np.float32),
    }


def sample_points(
    room: Room, num_points: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-uniform coloured surface samples of the room and its objects (hidden samples dropped).

    Returns points (N, 3) float32, colours (N, 3) uint8, labels (N,) int64.
    """
    Lx, Ly, Hz = room.size
    faces = [  # (axis, value, inward normal sign, area)
        (2, 0.0, 1.0, Lx * Ly), (2, Hz, -1.0, Lx * Ly),
        (0, 0.0, 1.0, Ly * Hz), (0, Lx, -1.0, Ly * Hz),
        (1, 0.0, 1.0, Lx * Hz), (1, Ly, -1.0, Lx * Hz),
    ]  # fmt: skip
    areas = np.array([f[3] for f in faces] + [p.area() for p in room.prims])
    counts = rng.multinomial(num_points, areas / areas.sum())
    pts, nrm, pid, ax = [], [], [], []
    for (a, val, sign, _), c in zip(faces, counts[:6]):
        q = rng.uniform(0, 1, (c, 3)) * room.size
        q[:, a] = val
        nn = np.zeros((c, 3))
        nn[:, a] = sign
        pts.append(q), nrm.append(nn), pid.append(np.full(c, -1)), ax.append(np.full(c, a))
    for k, (prim, c) in enumerate(zip(room.prims, counts[6:])):
        q, nn = prim.sample_surface(int(c), rng)
        pts.append(q), nrm.append(nn), pid.append(np.full(int(c), k)), ax.append(np.full(int(c), -1))
    P, N = np.concatenate(pts), np.concatenate(nrm)
    pid, ax = np.concatenate(pid).astype(np.int64), np.concatenate(ax)
    keep = np.ones(len(P), bool)
    for k, prim in enumerate(room.prims):  # drop samples buried inside other objects or under them
        keep &= ~(prim.contains(P, margin=1e-4) & (pid != k))
    keep &= (P >= -1e-6).all(1) & (P <= room.size + 1e-6).all(1)
    P, N, pid, ax = P[keep], N[keep], pid[keep], ax[keep]
    labels = np.array([p.label for p in room.prims] + [0], np.int64)[pid]
    labels[(pid < 0) & (ax != 2)] = CLS["wall"]
    labels[(pid < 0) & (ax == 2)] = CLS["ceiling"]
    labels[(pid < 0) & (ax == 2) & (P[:, 2] < Hz / 2)] = CLS["floor"]
    albedo = _albedo(room, pid, P, np.where(ax < 0, 0, ax))
    rgb = shade(room, P, N, albedo, labels)
    return P.astype(np.float32), np.round(rgb * 255).astype(np.uint8), labels
