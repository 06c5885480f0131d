"""Fin3R's evaluation protocols (paper Tables 1-6) and the ``fin3r-table*`` benchmark suites.

``mono_depth`` (Table 1), ``two_view`` (Table 2, ScanNet-1500), ``video_depth`` (Table 4, Sintel / Bonn /
KITTI), ``pointmaps`` (Table 5, 7-Scenes / NRGBD), ``suites`` (the suite definitions, paper numbers and
the resumable runner), ``cli`` (the ``tune3d benchmark fin3r-*`` entry). Tables 3 and 6 are not
implemented.
"""

from tune3d.fin3r.evaluation.suites import FIN3R_SUITES, Fin3rSettings, run_fin3r_suite

__all__ = ["FIN3R_SUITES", "Fin3rSettings", "run_fin3r_suite"]
