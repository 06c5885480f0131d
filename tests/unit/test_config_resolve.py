"""``tune3d.config.resolve_config``: defaults < --config file < flags typed on the command line."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import yaml

from tune3d.config import resolve_config
from tune3d.errors import Tune3DError


@dataclass
class Cfg:
    steps: int = 10
    lr: float = 1e-4
    name: str = "a"
    resolution: tuple[int, int] | None = None
    quiet: bool = False


def _write(path, data) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_file_overrides_defaults_and_typed_flags_override_file(tmp_path):
    path = _write(tmp_path / "c.yaml", {"steps": 3, "lr": 1, "resolution": [4, 6], "name": "file"})
    options = {"steps": 10, "lr": 1e-4, "name": "flag", "resolution": None}
    cfg = resolve_config(Cfg, path, options, given={"name"})
    assert cfg == Cfg(steps=3, lr=1.0, name="flag", resolution=(4, 6))
    assert isinstance(cfg.lr, float) and isinstance(cfg.resolution, tuple)
    assert resolve_config(Cfg, None, options, given=()) == Cfg(steps=10, name="flag")


def test_run_record_section_and_ignored_inputs(tmp_path):
    path = _write(tmp_path / "c.yaml", {"scene": {"name": "x"}, "model": "m", "cfg": {"steps": 5}})
    cfg = resolve_config(Cfg, path, {}, (), section="cfg", ignore=("scene", "model"))
    assert cfg.steps == 5
    with pytest.raises(Tune3DError, match=r"c\.yaml: unknown config key 'model'"):
        resolve_config(Cfg, path, {}, (), section="cfg", ignore=("scene",))


@pytest.mark.parametrize(
    "data,needle",
    [
        ({"stpes": 3}, "unknown config key 'stpes'"),
        ({"steps": "3"}, "config key 'steps' expects int, got str"),
        ({"steps": 2.5}, "config key 'steps' expects int"),
        ({"lr": True}, "config key 'lr' expects float"),
        ({"quiet": "yes"}, "config key 'quiet' expects bool"),
        ({"resolution": [1, 2, 3]}, "config key 'resolution'"),
        ({"resolution": ["a", "b"]}, "config key 'resolution'"),
    ],
)
def test_bad_file_names_file_and_key(tmp_path, data, needle):
    path = _write(tmp_path / "bad.yaml", data)
    with pytest.raises(Tune3DError) as e:
        resolve_config(Cfg, path, {"steps": 1}, given={"steps"})  # a flag does not hide a bad file
    assert str(e.value).startswith(f"{path}: ") and needle in str(e.value)


@pytest.mark.parametrize("text,needle", [("[1, 2]", "expected a mapping"), ("a: [", "malformed YAML")])
def test_not_a_mapping_or_malformed(tmp_path, text, needle):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(Tune3DError, match=needle):
        resolve_config(Cfg, path, {}, ())
    with pytest.raises(Tune3DError, match="config file not found"):
        resolve_config(Cfg, tmp_path / "missing.yaml", {}, ())
