"""Assertions on a failed ``tune3d`` run, shared by the CLI tests."""

from __future__ import annotations


def one_error_line(r, *needles: str, only_line: bool = True) -> str:
    """Check that run ``r`` failed with exit 2 and exactly one ``tune3d: error:`` line containing every
    needle, and no traceback; return that line. ``only_line=False`` lets progress output precede it (the
    error is then the last line of stderr)."""
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    errors = [ln for ln in lines if ln.startswith("tune3d: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], r.stderr
    if only_line:
        assert len(lines) == 1, r.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]
