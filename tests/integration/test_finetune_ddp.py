"""Two CPU processes (`accelerate launch`, gloo) match one process with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
NAME = "dinov2_vits14_tiny"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(out) -> list[float]:
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["train_loss"] for r in rows if "train_loss" in r]


def test_two_process_cpu_run_matches_one_process(tmp_path):
    from tune3d.data import write_scene
    from tune3d.data.synth import generate_scene
    from tune3d.fit3d.lifted import write_random_lifted

    dirs = []
    for i in range(2):
        write_scene(
            generate_scene(i, num_views=4, height=42, width=56, num_points=1000), tmp_path / f"scene{i}"
        )
        dirs += ["--lifted", str(write_random_lifted(tmp_path / f"scene{i}", tmp_path / f"l{i}", 32, seed=i))]
    common = [
        *dirs,
        "-b",
        NAME,
        "--allow-random-init",
        "--lr",
        "1e-3",
        "--log-every",
        "1",
        "--no-progress",
        "--val-lifted",
        str(tmp_path / "l1"),
        "--val-max-views",
        "3",
    ]
    one = subprocess.run(
        [
            sys.executable,
            "-m",
            "tune3d",
            "finetune",
            *common,
            "--batch-size",
            "2",
            "--out",
            str(tmp_path / "one"),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=180,
    )
    assert one.returncode == 0, one.stderr
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
    ]
    two = subprocess.run(
        [*launch, "-m", "tune3d", "finetune", *common, "--batch-size", "1", "--out", str(tmp_path / "two")],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=240,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert m2["num_processes"] == 2 and m2["global_batch"] == m1["global_batch"] == 2
    l1, l2 = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(l1) == len(l2) == 4
    # same samples, flips and normalisation: only float summation order differs between the runs
    assert max(abs(a - b) for a, b in zip(l1, l2)) < 1e-4, (l1, l2)
    assert abs(m1["val_loss_after"] - m2["val_loss_after"]) < 1e-4  # validation sharded over ranks
