"""Dataclass configs with YAML in/out. Every run writes its resolved config as ``config.yaml``.

Every training/eval command resolves its settings the same way (:func:`resolve_config`): the command's
own defaults, then the ``--config`` YAML file, then the flags given on the command line (they win).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from tune3d.errors import Tune3DError

T = TypeVar("T")


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write a dataclass (or dict) config as YAML, atomically."""
    from tune3d.io import write_yaml  # here and below: the CLI imports this module at start-up, yaml not

    write_yaml(path, cfg)


def option(
    default: Any,
    help: str | None = None,
    *,
    flag: str | None = None,
    min: float | None = None,
    path: bool = False,
) -> Any:
    """A dataclass field that also describes its command-line option (see
    :func:`tune3d.cli._args.config_options`): ``help`` text, ``flag`` (default ``--field-name``), lower
    bound ``min``, and ``path`` for a text field holding a file or folder name."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag, "min": min, "path": path})


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML file holding one mapping; anything else (missing, malformed, a list) is a user error."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise Tune3DError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:  # includes unknown tags such as !!python/object
        raise Tune3DError(f"{path}: malformed YAML ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise Tune3DError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def load_config(cls: type[T], path: str | os.PathLike) -> T:
    """Read a YAML file into dataclass ``cls``; unknown keys and wrong types are errors."""
    return from_dict(cls, read_config_file(path), source=str(path))


def from_dict(cls: type[T], data: dict, source: str = "config") -> T:
    """Build ``cls`` from ``data`` after checking every key is a field and every value has its type."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names), key=str)
    if unknown:
        raise Tune3DError(f"{source}: unknown config key {unknown[0]!r} (not a {cls.__name__} field)")
    values = {}
    for key, value in data.items():
        ok, value = _coerce(value, hints.get(key, Any))
        if not ok:
            raise Tune3DError(
                f"{source}: config key {key!r} expects {_type_name(hints[key])}, got {type(value).__name__} "
                f"{value!r}"
            )
        values[key] = value
    return cls(**values)


def resolve_config(
    cls: type[T],
    path: str | os.PathLike | None,
    values: dict[str, Any],
    given: Iterable[str],
    *,
    section: str | None = None,
    ignore: Iterable[str] = (),
) -> T:
    """The settings of one run: ``values`` (the command's options, defaults included), overridden by the
    YAML file ``path``, overridden again by the ``given`` keys of ``values`` (flags typed by the user).

    A run's own ``config.yaml`` is accepted back: ``section`` names the mapping that holds the fields when
    the run nests them (lift writes ``{scene, backbone, lift}``), and ``ignore`` lists the keys it records
    beside them (inputs given as required options, e.g. ``model``). Any other key, or a value of the wrong
    type, ends in one error line naming the file and the key.
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = read_config_file(path)
        if section is not None and isinstance(data.get(section), dict):
            outer = sorted(set(data) - {section} - set(ignore), key=str)
            if outer:
                raise Tune3DError(f"{path}: unknown config key {outer[0]!r} (beside {section!r})")
            data = data[section]
        data = {k: v for k, v in data.items() if k not in set(ignore)}
        from_dict(cls, data, source=str(path))  # the file alone must be valid: errors name the file
    given = set(given)
    merged = {**values, **data, **{k: v for k, v in values.items() if k in given}}
    return from_dict(cls, merged, source=str(path) if path is not None else "options")


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits annotation ``tp``; YAML lists become tuples where a tuple is expected."""
    if tp is Any:
        return True, value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            ok, out = _coerce(value, arg)
            if ok:
                return True, out
        return False, value
    if tp is type(None) or tp is None:
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    if origin is typing.Literal:
        return value in args, value
    if origin in (tuple, list) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False, value
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                return False, value
            items = [_coerce(v, a) for v, a in zip(value, args, strict=True)]
        else:
            items = [_coerce(v, args[0] if args else Any) for v in value]
        if not all(ok for ok, _ in items):
            return False, value
        out = [v for _, v in items]
        return True, tuple(out) if (origin or tp) is tuple else out
    if origin is dict or tp is dict:
        return isinstance(value, dict), value
    if isinstance(tp, type):
        return isinstance(value, tp), value
    return True, value  # annotations this checker does not model are trusted


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
