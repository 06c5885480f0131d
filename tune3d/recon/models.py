"""Imports every model family so that its configurations register themselves (see ``registry``)."""

import tune3d.recon.croco.cut3r  # noqa: F401
import tune3d.recon.croco.dust3r  # noqa: F401
import tune3d.recon.croco.mast3r  # noqa: F401
import tune3d.recon.vggt  # noqa: F401
