"""Fin3R teachers: HF depth models (tiny local configs), recon/sensor teachers, cache."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import Tensor

from tune3d.errors import Tune3DError, WeightsUnavailableError
from tune3d.fin3r.teachers import (
    CachedTeacher,
    ReconTeacher,
    SensorTeacher,
    Teacher,
    TeacherOutput,
    create_teacher,
)
from tune3d.recon.interface import ReconModel, ReconOutput


def _save_tiny_depth_anything(folder, depth_type: str = "relative") -> None:
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    torch.manual_seed(0)
    backbone = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=56,
        patch_size=14,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
    )
    cfg = DepthAnythingConfig(
        backbone_config=backbone,
        fusion_hidden_size=16,
        neck_hidden_sizes=[8, 16, 32, 32],
        reassemble_hidden_size=32,
        head_hidden_size=8,
        depth_estimation_type=depth_type,
        max_depth=20,
    )
    DepthAnythingForDepthEstimation(cfg).save_pretrained(folder)
    DPTImageProcessor(
        size={"height": 56, "width": 56},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=3,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(folder)


@pytest.fixture(scope="module")
def tiny_da(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-depth-anything")
    _save_tiny_depth_anything(folder)
    return folder


IMAGES = torch.rand(2, 3, 30, 40, generator=torch.Generator().manual_seed(0))


def test_hf_teacher_tiny_relative(tiny_da):
    teacher = create_teacher(f"hf:{tiny_da}")
    assert teacher.kind == "affine_invariant" and teacher.is_disparity
    out = teacher.predict(IMAGES)
    assert not out.is_pointmap and out.is_disparity and out.kind == "affine_invariant"
    assert out.depth.shape == out.mask.shape == (2, 30, 40) and out.mask.dtype == torch.bool
    assert torch.isfinite(out.depth).all() and torch.all(out.depth[~out.mask] == 0)
    override = create_teacher(f"hf:{tiny_da}?kind=scale_invariant&disparity=0")
    assert override.kind == "scale_invariant" and not override.is_disparity


def test_hf_teacher_metric_config(tmp_path):
    _save_tiny_depth_anything(tmp_path, depth_type="metric")
    teacher = create_teacher(f"hf:{tmp_path}")
    assert teacher.kind == "metric" and not teacher.is_disparity
    assert teacher.predict(IMAGES[:1]).depth.shape == (1, 30, 40)


def test_teacher_spec_errors(tmp_path, monkeypatch):
    import huggingface_hub.constants

    with pytest.raises(Tune3DError, match="not found"):
        create_teacher(f"hf:{tmp_path / 'missing'}")
    with pytest.raises(Tune3DError, match="unknown teacher"):
        create_teacher("midas")
    with pytest.raises(Tune3DError, match="unknown option"):
        create_teacher("hf:x/y?colour=red")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsUnavailableError, match="hf:nobody/no-such-depth-model"):
        create_teacher("hf:nobody/no-such-depth-model")


@pytest.mark.skipif(importlib.util.find_spec("moge") is not None, reason="moge installed")
def test_moge_teacher_needs_package():
    with pytest.raises(Tune3DError, match="'moge' package"):
        create_teacher("moge:Ruicheng/moge-vitl")


class TinyRecon(ReconModel):
    family = "test"
    per_view_head = "depth"
    patch_size = 4

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, images: Tensor) -> ReconOutput:
        B, S, _, H, W = images.shape
        depth = self.scale * (1.0 + images.mean(2))
        pts = torch.zeros(B, S, H, W, 3)
        return ReconOutput(
            pts3d=pts, pts3d_conf=torch.ones(B, S, H, W), depth=depth, depth_conf=torch.ones(B, S, H, W)
        )


def test_recon_and_sensor_teachers():
    rt = ReconTeacher(TinyRecon())
    out = rt.predict(IMAGES)  # 30 is not a multiple of 4: resized and brought back
    assert out.kind == "scale_invariant" and out.depth.shape == (2, 30, 40) and out.mask.all()
    assert 2.0 <= float(out.depth.min()) and float(out.depth.max()) <= 4.0
    depth = torch.rand(2, 1, 30, 40)
    depth[:, :, :5] = 0
    s = create_teacher("sensor").predict(IMAGES, depth=depth)
    assert s.kind == "metric" and torch.equal(s.mask, depth[:, 0] > 0) and torch.equal(s.depth, depth[:, 0])
    with pytest.raises(Tune3DError, match="needs a dataset with depth"):
        SensorTeacher().predict(IMAGES)


class CountingTeacher(Teacher):
    spec = "count:v1"

    def __init__(self) -> None:
        self.calls = 0

    def _predict(self, images: Tensor, **batch: Tensor) -> TeacherOutput:
        self.calls += len(images)
        pts = images.permute(0, 2, 3, 1) + 1.0
        return TeacherOutput(mask=pts[..., 0] > 1.2, kind="affine_invariant", points=pts)


def test_cached_teacher(tmp_path):
    inner = CountingTeacher()
    cached = CachedTeacher(inner, tmp_path)
    first = cached.predict(IMAGES)
    assert inner.calls == 2 and len(list(tmp_path.rglob("*.safetensors"))) == 2
    again = CachedTeacher(CountingTeacher(), tmp_path)
    extra = torch.rand(1, 3, 30, 40)
    mixed = again.predict(torch.cat([IMAGES[1:], extra, IMAGES[:1]]))
    assert again.teacher.calls == 1 and (again.hits, again.misses) == (2, 1)
    torch.testing.assert_close(mixed.points[0], first.points[1])
    torch.testing.assert_close(mixed.points[2], first.points[0])
    assert torch.equal(mixed.mask[2], first.mask[0]) and mixed.kind == "affine_invariant"
    other = CountingTeacher()
    other.spec = "count:v2"
    CachedTeacher(other, tmp_path).predict(IMAGES[:1])
    assert other.calls == 1  # different spec -> different key
