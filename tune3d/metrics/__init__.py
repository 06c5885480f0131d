"""Evaluation metrics: depth, segmentation, pointmap/reconstruction, pose, feature-norm statistics."""

from tune3d.metrics.depth import (
    DEPTH_METRIC_KEYS,
    DepthMetricAccumulator,
    depth_metrics,
    depth_metrics_per_image,
)
from tune3d.metrics.features import feature_drift, norm_summary, token_norms
from tune3d.metrics.pointmap import (
    POINTMAP_ALIGN_MODES,
    POINTMAP_METRIC_KEYS,
    accuracy,
    align_pointmaps,
    completeness,
    delta1_point,
    nearest_neighbors,
    normal_consistency,
    pointmap_metrics,
    rel_point,
)
from tune3d.metrics.pose import pose_auc, pose_metrics, relative_pose_errors, rra_rta
from tune3d.metrics.segmentation import ConfusionMatrix

__all__ = [
    "DEPTH_METRIC_KEYS",
    "POINTMAP_ALIGN_MODES",
    "POINTMAP_METRIC_KEYS",
    "ConfusionMatrix",
    "DepthMetricAccumulator",
    "accuracy",
    "align_pointmaps",
    "completeness",
    "delta1_point",
    "depth_metrics",
    "depth_metrics_per_image",
    "feature_drift",
    "nearest_neighbors",
    "norm_summary",
    "normal_consistency",
    "pointmap_metrics",
    "pose_auc",
    "pose_metrics",
    "rel_point",
    "relative_pose_errors",
    "rra_rta",
    "token_norms",
]
