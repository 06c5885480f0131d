"""Fin3R's evaluation protocols (paper Tables 1-6) and the ``fin3r-table*`` benchmark suites.

``mono_depth`` (Table 1), ``two_view`` (Table 2, ScanNet-1500), ``multi_view_pose`` (Table 3,
RealEstate10K), ``video_depth`` (Table 4, Sintel / Bonn / KITTI), ``pointmaps`` (Table 5, 7-Scenes /
NRGBD), ``pointmaps_pi3`` (Table 6, DTU / ETH3D), ``suites`` (the suite definitions, paper numbers and the
resumable runner), ``cli`` (the ``tune3d benchmark fin3r-*`` entry).
"""

from tune3d.fin3r.evaluation.suites import FIN3R_SUITES, Fin3rSettings, run_fin3r_suite

__all__ = ["FIN3R_SUITES", "Fin3rSettings", "run_fin3r_suite"]
