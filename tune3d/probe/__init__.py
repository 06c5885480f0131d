"""Linear probes (DINOv2 protocol, as used by FiT3D): segmentation and binned depth on frozen features."""

from tune3d.probe.bank import FeatureBank
from tune3d.probe.config import TASKS, ProbeConfig
from tune3d.probe.data import SceneSamples
from tune3d.probe.heads import BinnedDepthHead, LinearSegHead
from tune3d.probe.losses import depth_probe_loss, gradient_loss, sig_loss
from tune3d.probe.run import run_probe
from tune3d.probe.train import (
    evaluate_depth_probe,
    evaluate_seg_probe,
    predict_depth,
    predict_seg,
    train_depth_probe,
    train_seg_probe,
)

__all__ = [
    "TASKS",
    "BinnedDepthHead",
    "FeatureBank",
    "LinearSegHead",
    "ProbeConfig",
    "SceneSamples",
    "depth_probe_loss",
    "evaluate_depth_probe",
    "evaluate_seg_probe",
    "gradient_loss",
    "predict_depth",
    "predict_seg",
    "run_probe",
    "sig_loss",
    "train_depth_probe",
    "train_seg_probe",
]
