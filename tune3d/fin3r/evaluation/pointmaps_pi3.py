"""Table 6: DTU / ETH3D pointmaps with Pi3's multi-view reconstruction protocol.

Per sequence (every 5th frame; DTU depth masked by the eroded object mask): all frames are reconstructed
at once (global alignment for pairwise models), the predicted points on the valid ground-truth pixels are
aligned by Umeyama Sim(3) (with scale for every model, as Pi3) and refined by point-to-point ICP (100 mm on
DTU, 0.1 m on ETH3D); Acc / Comp are mean nearest-neighbour distances in the dataset's units and NC the
mean ``|n_pred . n_gt|`` of both directions, averaged over sequences. One difference from Pi3's script:
normals come from each pointmap's pixel grid instead of Open3D's k-nearest-neighbour estimate.
"""

from __future__ import annotations

from collections.abc import Sequence

from tune3d.data.benchmarks.pi3_pointmaps import Pi3Sequence, load_pi3_frame
from tune3d.fin3r.evaluation.pointmaps import mean_metrics, reconstruct_sequences, reconstruction_metrics
from tune3d.recon.interface import ReconModel


def evaluate_pi3_pointmaps(
    model: ReconModel,
    sequences: Sequence[Pi3Sequence],
    max_points: int | None = None,
    niter: int = 300,
    size: int | None = None,
) -> dict[str, float]:
    """Mean over ``sequences`` of Acc / Comp / NC (and medians), plus ``n_sequences``."""
    rows = []
    for seq, pred, gt, valid in reconstruct_sequences(model, sequences, niter, size, loader=load_pi3_frame):
        row = reconstruction_metrics(
            pred, gt, valid, metric=False, icp_threshold=seq.icp_threshold, max_points=max_points
        )
        rows.append(row)
    return mean_metrics(rows)
