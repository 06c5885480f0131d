"""CUT3R's ray-map input for known cameras: the map itself, and how the model and the stream feed it."""

from __future__ import annotations

import math

import pytest
import torch

from tune3d.recon import create_model
from tune3d.recon.croco.cut3r_rays import cut3r_ray_maps
from tune3d.recon.streaming import stream_output


def _rigid(R, t) -> torch.Tensor:
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3], T[:3, 3] = torch.as_tensor(R, dtype=torch.float64), torch.as_tensor(t, dtype=torch.float64)
    return T


def test_ray_map_of_known_cameras_matches_hand_computed():
    c = math.cos(0.3)
    s = math.sin(0.3)
    world0 = _rigid([[c, -s, 0], [s, c, 0], [0, 0, 1]], [3.0, -2.0, 0.5])  # arbitrary first camera
    turn = [[0, 0, 1], [0, 1, 0], [-1, 0, 0]]  # camera z -> x of the first camera
    c2w = torch.stack([world0, world0 @ _rigid(torch.eye(3), [1, 0, 0]), world0 @ _rigid(turn, [0, 2, 0])])
    # tune3d K (pixel centres at +0.5): pixel (1, 1) is on the axis, as dust3r's K with cx = cy = 1
    K = torch.tensor([[2.0, 0, 1.5], [0, 2, 1.5], [0, 0, 1]], dtype=torch.float64).expand(3, 3, 3)
    rm = cut3r_ray_maps(c2w, K, 3, 4)
    assert rm.shape == (3, 6, 3, 4) and rm.dtype == torch.float32

    def at(view, u, v):
        return rm[view, :, v, u].double()

    r2 = 2**-0.5
    # view 0 is the identity: origin 0, directions normalise(inv(K) [u + 0.5, v + 0.5, 1])
    torch.testing.assert_close(at(0, 1, 1), torch.tensor([0, 0, 0, 0, 0, 1.0], dtype=torch.float64))
    d = torch.tensor([-0.5, -0.5, 1.0], dtype=torch.float64)
    torch.testing.assert_close(at(0, 0, 0)[3:], d / d.norm(), atol=1e-6, rtol=0)
    # view 1 one unit along x: the depth-1 point (0, 0, 1) + t = (1, 0, 1), origin (1, 0, 0)
    torch.testing.assert_close(at(1, 1, 1), torch.tensor([1, 0, 0, r2, 0, r2], dtype=torch.float64))
    d = torch.tensor([0.5 + 1, 0, 1.0], dtype=torch.float64)  # pixel (2, 1): inv(K) -> (0.5, 0, 1)
    torch.testing.assert_close(at(1, 2, 1)[3:], d / d.norm(), atol=1e-6, rtol=0)
    # view 2 turned: centre pixel -> R (0, 0, 1) = (1, 0, 0), plus t = (0, 2, 0)
    d = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(
        at(2, 1, 1), torch.cat([torch.tensor([0, 2.0, 0], dtype=torch.float64), d / 5**0.5])
    )
    # only the first camera's frame matters: moving the whole rig leaves the maps unchanged
    moved = _rigid(turn, [5, 5, 5]) @ c2w
    torch.testing.assert_close(cut3r_ray_maps(moved, K, 3, 4), rm, atol=1e-6, rtol=0)


def _cameras(S: int, H: int, W: int):
    g = torch.Generator().manual_seed(3)
    c2w = torch.eye(4, dtype=torch.float64).repeat(S, 1, 1)
    for i in range(S):
        a = 0.2 * i
        c2w[i] = _rigid([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]],
                        torch.randn(3, generator=g, dtype=torch.float64))  # fmt: skip
    K = torch.tensor([[40.0, 0, W / 2], [0, 40.0, H / 2], [0, 0, 1]], dtype=torch.float64).expand(S, 3, 3)
    return c2w, K


def test_known_cameras_change_the_output_deterministically_and_stream_like_the_batch():
    torch.manual_seed(0)
    model = create_model("cut3r_tiny", allow_random_init=True).eval()
    S, H, W = 3, 32, 48
    images = torch.rand(S, 3, H, W)
    rays = cut3r_ray_maps(*_cameras(S, H, W), H, W)
    with torch.no_grad():
        plain = model(images[None])
        known = model(images[None], rays[None])
        again = model(images[None], rays[None])
    assert (known.pts3d - plain.pts3d).abs().max() > 1e-3
    assert (known.c2w - plain.c2w).abs().max() > 1e-4
    torch.testing.assert_close(known.pts3d, again.pts3d, atol=0, rtol=0)
    torch.testing.assert_close(known.c2w, again.c2w, atol=0, rtol=0)

    streamed = stream_output(model, images, ray_maps=rays)
    for a, b in ((streamed.pts3d, known.pts3d), (streamed.pts3d_conf, known.pts3d_conf),
                 (streamed.pts3d_self, known.pts3d_self), (streamed.c2w, known.c2w)):  # fmt: skip
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)

    # a ray map for some views only: the others get the masked ray token, batched and streamed alike
    mask = torch.tensor([[False, True, False]])
    with torch.no_grad():
        part = model(images[None], rays[None], mask)
    streamed = stream_output(model, images, ray_maps=[None, rays[1], None])
    torch.testing.assert_close(streamed.pts3d, part.pts3d, atol=1e-5, rtol=1e-4)
    assert (part.pts3d[:, 0] - plain.pts3d[:, 0]).abs().max() > 1e-4  # view 0: masked token, not plain


def test_encode_frame_combines_tokens_as_the_official_encoder():
    torch.manual_seed(1)
    model = create_model("cut3r_tiny", allow_random_init=True).eval()
    images = torch.rand(3, 3, 32, 32)
    rays = cut3r_ray_maps(*_cameras(3, 32, 32), 32, 32)
    rays[0] = float("nan")  # a map that is not given is never read
    mask = torch.tensor([False, True, True])
    with torch.no_grad():
        img, pos = model.encode(images)
        ray, ray_pos = model.encode_ray_map(rays[1:])
        feat, fpos = model.encode_frame(images, rays, mask)
        none, _ = model.encode_frame(images, None)  # no view has a ray map: image tokens alone
    torch.testing.assert_close(fpos, pos)
    torch.testing.assert_close(ray_pos, pos[1:])
    torch.testing.assert_close(feat[1:], img[1:] + ray)
    torch.testing.assert_close(feat[0], img[0] + model.masked_ray_map_token)
    torch.testing.assert_close(none, img)
    with pytest.raises(ValueError, match="ray maps must be"):
        model.encode_frame(images, rays[:, :3], mask)


def test_reconstruct_with_known_cameras_reports_them_in_their_world():
    from tune3d.errors import Tune3DError
    from tune3d.recon.inference import reconstruct

    torch.manual_seed(2)
    model = create_model("cut3r_tiny", allow_random_init=True).eval()
    S, H, W = 3, 32, 48
    images = torch.rand(S, 3, H, W)
    c2w, K = _cameras(S, H, W)
    rec = reconstruct(model, images, known_c2w=c2w, known_K=K)
    ref = model(images[None], cut3r_ray_maps(c2w, K, H, W)[None])
    assert rec.camera_source == "known"
    torch.testing.assert_close(torch.from_numpy(rec.c2w), c2w)
    torch.testing.assert_close(torch.from_numpy(rec.K), K)
    world = ref.pts3d[0].double() @ c2w[0, :3, :3].T + c2w[0, :3, 3]
    torch.testing.assert_close(torch.from_numpy(rec.pts3d).double(), world, atol=1e-4, rtol=1e-4)
    with pytest.raises(Tune3DError, match="needs both"):
        reconstruct(model, images, known_c2w=c2w)
