"""Dataclass configs with YAML in/out. Every run writes its resolved config as ``config.yaml``."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tune3d.errors import Tune3DError
from tune3d.io import write_yaml

T = TypeVar("T")


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write a dataclass (or dict) config as YAML, atomically."""
    write_yaml(path, cfg)


def load_config(cls: type[T], path: str | os.PathLike) -> T:
    """Read a YAML file into dataclass ``cls``; unknown keys are an error."""
    path = Path(path)
    if not path.is_file():
        raise Tune3DError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise Tune3DError(f"{path}: malformed YAML ({e})") from None
    return from_dict(cls, data, source=str(path))


def from_dict(cls: type[T], data: dict, source: str = "config") -> T:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise Tune3DError(f"{source}: unknown config keys {unknown} for {cls.__name__}")
    return cls(**data)
