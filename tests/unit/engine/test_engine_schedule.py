import math

import pytest

from tune3d.engine.schedule import warmup_decay


def test_warmup_then_cosine_to_zero():
    f = [warmup_decay(s, total=10, warmup=2) for s in range(11)]
    assert f[0] == pytest.approx(0.5) and f[1] == pytest.approx(1.0)
    assert f[2] == pytest.approx(1.0) and f[10] == pytest.approx(0.0, abs=1e-12)
    assert f[6] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(f[1:], f[2:], strict=False))
    assert warmup_decay(50, total=10, warmup=2) == pytest.approx(0.0, abs=1e-12)  # clamped past the end


def test_constant_and_unknown():
    assert [warmup_decay(s, 8, 4, "constant") for s in (0, 3, 4, 7)] == [0.25, 1.0, 1.0, 1.0]
    assert warmup_decay(0, 8, 0, "constant") == 1.0
    with pytest.raises(ValueError, match="unknown schedule"):
        warmup_decay(5, 8, 0, "linear")


def test_the_three_trainers_share_it():
    from tune3d.fin3r.distill import DistillConfig, lr_factor
    from tune3d.fit3d.finetune import FinetuneConfig, lr_at
    from tune3d.recon.train import _lr_lambda

    dcfg = DistillConfig(steps=20, warmup_steps=3)
    fcfg = FinetuneConfig(lr=2e-5, warmup_steps=3, lr_schedule="cosine")
    rec = _lr_lambda(3, 20)
    for s in range(20):
        ref = warmup_decay(s, 20, 3)
        assert lr_factor(s, dcfg) == ref and rec(s) == ref and lr_at(fcfg, s, 20) == pytest.approx(2e-5 * ref)
