"""``tune3d lift`` defaults OpenMP to passive waiting (spinning threads fight on a busy machine)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tune3d.cli.splatting import passive_omp_wait

REPO = Path(__file__).resolve().parents[3]


def test_passive_wait_is_the_default(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    passive_omp_wait()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_a_users_wait_policy_wins(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    passive_omp_wait()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_lift_sets_it_before_torch_is_imported(tmp_path):
    """The policy is read when torch loads OpenMP: the lift command must set it before any torch import."""
    probe = (
        "import os, sys, builtins\n"
        "real = builtins.__import__\n"
        "def spy(name, *a, **k):\n"
        "    if name == 'torch' and 'torch' not in sys.modules:\n"
        "        print('torch-import', os.environ.get('OMP_WAIT_POLICY'), flush=True)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = spy\n"
        "from tune3d.cli import main\n"
        f"main(['lift', {str(tmp_path / 'missing')!r}, '--backbone', 'x', '--out', {str(tmp_path / 'o')!r}])"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | {"PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    first = [line for line in r.stdout.splitlines() if line.startswith("torch-import")]
    assert first and first[0] == "torch-import PASSIVE", (r.stdout, r.stderr[-2000:])
