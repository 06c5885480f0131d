import numpy as np

from tune3d.viz.points import render_points


def test_nearest_point_wins_and_background_elsewhere():
    # Two points on the viewing axis (no yaw/pitch): the nearer (blue) hides the farther (red).
    xyz = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 0.5], [1.0, 1.0, 1.0], [-1.0, -1.0, 1.0]])
    rgb = np.array([[255, 0, 0], [0, 0, 255], [0, 255, 0], [0, 255, 0]], np.uint8)
    img = render_points(xyz, rgb, height=64, width=64, yaw_deg=0, pitch_deg=0, radius=0)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    centre = img[31:33, 31:33].reshape(-1, 3)
    assert any((c == [0, 0, 255]).all() for c in centre)
    assert not any((c == [255, 0, 0]).all() for c in img.reshape(-1, 3))
    assert (img[0, 0] == 255).all()  # background


def test_empty_cloud_is_background():
    img = render_points(np.zeros((0, 3)), np.zeros((0, 3), np.uint8), height=8, width=8)
    assert (img == 255).all()
