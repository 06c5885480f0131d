"""Paper-protocol pieces on hand-computed cases: sliding window, flip TTA, augmentations, a tiny run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tune3d.probe import augment as A
from tune3d.probe.heads import BinnedDepthHead
from tune3d.probe.sliding import flip_average, slide_logits, slide_windows


def test_slide_windows_hand_computed():
    # 600x900, crop 512, stride 341: rows (600-512+340)//341+1 = 2, cols (900-512+340)//341+1 = 3
    boxes = slide_windows(600, 900, (512, 512), (341, 341))
    assert boxes == [
        (0, 512, 0, 512), (0, 512, 341, 853), (0, 512, 388, 900),
        (88, 600, 0, 512), (88, 600, 341, 853), (88, 600, 388, 900),
    ]  # fmt: skip
    assert slide_windows(20, 30, (512, 512), (341, 341)) == [(0, 20, 0, 30)]


def test_slide_equals_full_pass_when_crop_covers_image():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 5, padding=2), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3, padding=1)
    )
    img = torch.rand(1, 3, 20, 30)
    with torch.no_grad():
        full = net(img)
    np.testing.assert_array_equal(slide_logits(net, img, 4, (32, 32), (21, 21)).numpy(), full.numpy())
    # overlapping windows average a pointwise function back to the full pass too; a 5x5 conv differs
    pointwise = torch.nn.Conv2d(3, 4, 1)
    with torch.no_grad():
        torch.testing.assert_close(slide_logits(pointwise, img, 4, (12, 12), (8, 8)), pointwise(img))
        assert not torch.allclose(slide_logits(net, img, 4, (12, 12), (8, 8)), full, atol=1e-4)


def test_flip_tta_of_symmetric_input_equals_plain_pass():
    torch.manual_seed(0)
    head = BinnedDepthHead(3, 0, num_bins=16, max_depth=10.0, upsample=2)
    with torch.no_grad():
        head.conv_depth.weight.normal_(0, 1.0)

    def fn(img: torch.Tensor) -> torch.Tensor:  # flip-equivariant "backbone": 2x2 average pooling
        return head.predict(F.avg_pool2d(img, 2), None, tuple(img.shape[-2:]))

    half = torch.rand(1, 3, 8, 6)
    sym = torch.cat([half, half.flip(-1)], dim=-1)  # left-right symmetric 8x12 image
    torch.testing.assert_close(flip_average(fn, sym), fn(sym))
    # a position-dependent model (like a ViT's position embedding) is not flip-equivariant: TTA changes it
    ramp = torch.linspace(0, 1, 12).view(1, 1, 1, 12)

    def fn_pos(img: torch.Tensor) -> torch.Tensor:
        return fn(img + ramp)

    tta = flip_average(fn_pos, sym)
    torch.testing.assert_close(tta, 0.5 * (fn_pos(sym) + fn_pos(sym.flip(-1)).flip(-1)))
    assert not torch.allclose(tta, fn_pos(sym))
    torch.testing.assert_close(tta, tta.flip(-1))  # the averaged prediction of a symmetric input is symmetric


def test_rescale_size_and_random_resize():
    assert A.rescale_size((480, 640), (2048, 512)) == (512, 683)
    assert A.rescale_size((100, 1000), (2048, 512)) == (205, 2048)
    rng = np.random.default_rng(0)
    img, lab = np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.int64)
    img2, lab2 = A.random_resize(img, lab, rng, (128, 32), (0.5, 2.0))
    assert img2.shape[:2] == lab2.shape and lab2.dtype == np.int64
    r = np.random.default_rng(0).uniform(0.5, 2.0)
    assert img2.shape[:2] == A.rescale_size((48, 64), (int(128 * r), int(32 * r)))


def test_random_crop_cat_max_ratio():
    lab = np.zeros((64, 64), np.int64)
    lab[:, 48:] = 1  # class 0 covers 75% of the image; crops of class 0 only are rejected
    img = np.zeros((64, 64, 3), np.uint8)
    for seed in range(5):
        _, c = A.random_crop(img, lab, np.random.default_rng(seed), (32, 32), cat_max_ratio=0.75)
        vals, cnt = np.unique(c, return_counts=True)
        assert len(vals) == 2 and cnt.max() / cnt.sum() < 0.75
    small_img, small_lab = A.random_crop(img[:20], lab[:20], np.random.default_rng(0), (32, 32))
    assert small_img.shape[:2] == (20, 32)
    pi, pl = A.pad_to(small_img, small_lab, (32, 32), 255)
    assert pi.shape == (32, 32, 3) and np.all(pl[20:] == 255) and np.all(pi[20:] == 0)


def test_nyu_train_crop():
    img, dep = np.zeros((480, 640, 3), np.uint8), np.arange(480 * 640, dtype=np.float32).reshape(480, 640)
    ci, cd = A.nyu_train_crop(img, dep)
    assert ci.shape == (427, 565, 3) and cd[0, 0] == dep[45, 43] and cd[-1, -1] == dep[471, 607]


def test_photometric_and_color_aug_are_seeded():
    img = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    a = A.photometric_distortion(img, np.random.default_rng(3))
    b = A.photometric_distortion(img, np.random.default_rng(3))
    assert a.dtype == np.uint8 and a.shape == img.shape and np.array_equal(a, b)
    outs = [A.photometric_distortion(img, np.random.default_rng(s)) for s in range(8)]
    assert any(not np.array_equal(o, img) for o in outs)
    c = A.color_aug(img, np.random.default_rng(0), p=1.0)
    assert c.shape == img.shape and not np.array_equal(c, img)
    r_img, r_dep = A.random_rotate(
        img, np.ones((16, 16), np.float32), np.random.default_rng(0), degree=20, p=1.0
    )
    assert (
        r_img.shape == img.shape and r_dep.dtype == np.float32 and (r_dep == 0).any()
    )  # zero-filled corners


@pytest.mark.parametrize("task", ["semseg", "depth"])
def test_paper_probe_tiny_run(tmp_path, task):
    from benchmark_fixtures import write_mmseg_seg, write_nyu_depth

    from tune3d.data.benchmarks import open_dataset
    from tune3d.fit3d.assembly import build_assembled
    from tune3d.probe import ProbeConfig
    from tune3d.probe.paper import PaperOptions, run_paper_probe

    if task == "semseg":
        root, name = write_mmseg_seg(tmp_path / "d", 13, n_train=2, n_val=1, size=(28, 42)), "nyuv2-seg13"
    else:
        root, name = write_nyu_depth(tmp_path / "d", n_train=2, n_test=1, size=(28, 42)), "nyuv2-depth"
    train, test = open_dataset(name, root, "train"), open_dataset(name, root, "val")
    model = build_assembled("dinov2_vits14_tiny", mode="duplicated", allow_random_init=True, device="cpu")
    opts = PaperOptions(batch_size=2, effective_batch=4, seg_scale=(64, 32), seg_crop=(28, 28),
                        slide_stride=(19, 19), depth_crop=(28, 28))  # fmt: skip
    cfg = ProbeConfig(iters=3, device="cpu", progress=False)
    m = run_paper_probe(task, model, train, test, cfg, tmp_path / "out", opts, num_classes=train.num_classes,
                        eval_mask=test.eval_mask if task == "depth" else None)  # fmt: skip
    assert (tmp_path / "out" / "metrics.json").is_file() and m["protocol"] == "paper"
    if task == "semseg":
        assert 0.0 <= m["miou"] <= 1.0 and len(m["per_class_iou"]) == 13
    else:
        assert np.isfinite(m["rmse"]) and m["num_images"] == 1


def test_augmented_draws_same_for_any_worker_count(tmp_path):
    from benchmark_fixtures import write_mmseg_seg
    from torch.utils.data import DataLoader

    from tune3d.data.benchmarks import open_dataset
    from tune3d.probe.paper import AugmentedDraws, PaperOptions

    root = write_mmseg_seg(tmp_path / "d", 13, n_train=3, n_val=1, size=(28, 42))
    ds = open_dataset("nyuv2-seg13", root, "train")
    opts = PaperOptions(seg_scale=(64, 32), seg_crop=(24, 24))
    draws = AugmentedDraws(ds, "semseg", opts, (24, 24), total=4, seed=5)
    a = [b for b in DataLoader(draws, batch_size=2, num_workers=0)]
    b = [b for b in DataLoader(draws, batch_size=2, num_workers=2)]
    for (ia, ta), (ib, tb) in zip(a, b):
        assert torch.equal(ia, ib) and torch.equal(ta, tb)
    assert a[0][0].shape == (2, 3, 24, 24) and a[0][1].dtype == torch.int64


def test_rank_draws_split_a_step_the_same_way_for_any_world_size():
    from tune3d.probe.paper import rank_draws

    one = rank_draws(iters=3, accum=4, world=1, rank=0, batch=2)  # 8 draws per step
    assert one == list(range(24))
    two = [rank_draws(3, 2, 2, r, 2) for r in range(2)]  # 2 processes x accum 2 x batch 2
    for s in range(3):
        step = sorted(two[0][4 * s : 4 * s + 4] + two[1][4 * s : 4 * s + 4])
        assert step == one[8 * s : 8 * s + 8]


def test_paper_probe_bad_label_writes_nothing(tmp_path):
    from benchmark_fixtures import write_mmseg_seg
    from PIL import Image

    from tune3d.data.benchmarks import open_dataset
    from tune3d.errors import Tune3DError
    from tune3d.fit3d.assembly import build_assembled
    from tune3d.probe import ProbeConfig
    from tune3d.probe.paper import PaperOptions, run_paper_probe

    root = write_mmseg_seg(tmp_path / "d", 13, n_train=1, n_val=1, size=(28, 42))
    Image.fromarray(np.full((28, 42), 99, np.uint8)).save(root / "annotations" / "training" / "00000.png")
    train, test = open_dataset("nyuv2-seg13", root, "train"), open_dataset("nyuv2-seg13", root, "val")
    model = build_assembled("dinov2_vits14_tiny", mode="original", allow_random_init=True, device="cpu")
    opts = PaperOptions(batch_size=1, effective_batch=1, seg_scale=(64, 32), seg_crop=(28, 28))
    with pytest.raises(Tune3DError, match=r"00000\.png: label value 99 is outside the 13 classes"):
        run_paper_probe("semseg", model, train, test, ProbeConfig(iters=2, device="cpu", progress=False),
                        tmp_path / "out", opts, num_classes=13)  # fmt: skip
    assert not (tmp_path / "out").exists()
