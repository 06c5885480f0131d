"""Fin3R data: single images from files or scene frames, at the training resolution."""

from __future__ import annotations

import pytest

from tune3d.fin3r.data import MonoImages


def test_mono_images_from_files_resize_and_report_bad_files(tmp_path):
    from PIL import Image

    from tune3d.errors import Tune3DError
    from tune3d.fin3r.data import load_mono_items

    Image.new("RGB", (80, 60), (200, 10, 10)).save(tmp_path / "a.png")
    Image.new("RGB", (40, 30), (10, 200, 10)).save(tmp_path / "b.jpg")
    items, held, with_depth = load_mono_items(tmp_path)
    assert [p.name for p in items] == ["a.png", "b.jpg"] and not with_depth
    mono = MonoImages(items, (24, 32))
    a, b = mono[0], mono[1]
    assert a["image"].shape == b["image"].shape == (3, 24, 32)
    assert a["image"][0].mean() > 0.7 and b["image"][1].mean() > 0.7  # colours survive the resize
    assert not a["has_depth"] and not a["has_K"] and float(a["depth"].abs().sum()) == 0.0
    (tmp_path / "c.png").write_bytes(b"not an image")
    with pytest.raises(Tune3DError, match="c.png"):
        MonoImages([tmp_path / "c.png"], (24, 32))[0]
