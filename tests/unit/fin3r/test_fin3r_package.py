"""``tune3d.fin3r`` exports its building blocks lazily (so the CLI can read DistillConfig without peft)."""

from __future__ import annotations

import importlib

import pytest


def test_fin3r_names_load_on_first_use():
    import tune3d.fin3r as fin3r

    assert sorted(fin3r.__all__) == sorted(fin3r._EXPORTS)
    for name, module in fin3r._EXPORTS.items():
        assert getattr(fin3r, name) is getattr(importlib.import_module(f"tune3d.fin3r.{module}"), name)
    assert fin3r.FORMS == ("renorm", "renorm-weight", "plain")
    with pytest.raises(AttributeError, match="no_such_name"):
        fin3r.no_such_name  # noqa: B018
