"""User-facing errors.

Raise :class:`Tune3DError` for anything the user can fix (bad paths, malformed files, wrong shapes,
unknown names). The CLI prints its message as one line and exits non-zero without a traceback.
Messages should name the offending file and the problem, e.g. ``"frame-000003.pose.txt: pose has NaN"``.
"""

from __future__ import annotations


class Tune3DError(Exception):
    """An error caused by user input; printed as one line by the CLI (exit code 2)."""


class WeightsUnavailableError(Tune3DError):
    """Pretrained weights could not be found locally or fetched from a hub."""
