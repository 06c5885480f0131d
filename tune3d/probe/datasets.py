"""Probe runs on a benchmark dataset (``tune3d.data.benchmarks``): the ``fast`` and ``paper`` protocols.

``fast``: today's cached-feature protocol. Images (and targets, nearest) are resized to one size,
``cfg.image_size`` or by default the first training sample's size, the backbone runs once, the head
trains on the cached features. Depth is evaluated inside the dataset's evaluation mask (Eigen / Garg crop,
``min < d < max``). ``paper``: :mod:`tune3d.probe.paper` (backbone on the fly on augmented crops).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from tune3d.data.benchmarks import open_dataset
from tune3d.errors import Tune3DError
from tune3d.probe.config import ProbeConfig
from tune3d.probe.paper import run_paper_probe
from tune3d.probe.run import run_probe

PROTOCOLS = ("fast", "paper")


def run_dataset_probe(
    dataset: str,
    root: str | os.PathLike,
    task: str,
    backbone: Any,
    cfg: ProbeConfig,
    out_dir: str | os.PathLike,
    split_train: str = "train",
    split_test: str = "val",
    protocol: str = "fast",
    run_info: dict[str, Any] | None = None,
    max_depth_set: bool = False,
    paper_options: Any = None,
) -> dict[str, Any]:
    """Train a probe on ``split_train`` of ``dataset`` under ``root`` and evaluate it on ``split_test``.

    ``cfg.max_depth`` takes the dataset's value (10 m indoor, 80 m KITTI) unless ``max_depth_set``.
    ``paper_options``: :class:`~tune3d.probe.paper.PaperOptions` of the ``paper`` protocol.
    Returns the metrics dict written to ``out_dir/metrics.json``.
    """
    if protocol not in PROTOCOLS:
        raise Tune3DError(f"--protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    train = open_dataset(dataset, root, split_train, task)
    test = open_dataset(dataset, root, split_test, task)
    cfg = dataclasses.replace(cfg)
    if task == "depth" and not max_depth_set:
        cfg.max_depth = train.max_depth
    info = {
        "dataset": dataset,
        "root": str(root),
        "split_train": split_train,
        "split_test": split_test,
        "protocol": protocol,
        **(run_info or {}),
    }
    shared = dict(  # what both protocols are told about the data and the run
        num_classes=train.num_classes,
        class_names=train.class_names,
        eval_mask=test.eval_mask if task == "depth" else None,
        run_info=info,
    )
    if protocol == "paper":
        return run_paper_probe(task, backbone, train, test, cfg, out_dir, paper_options, **shared)
    if cfg.image_size is None:
        cfg.image_size = list(train[0][0].shape[:2])
    return run_probe(task, backbone, train, test, cfg, out_dir, **shared)
