"""The run folder every command writes into: checked before any work, resumable only with the same config.

One object owns what each stage used to repeat:

* :func:`check_out_dir` — ``--out`` must be a folder we can create or write (not a file, not read-only),
  checked before any model is built or any frame is read, so a bad ``--out`` is one line, exit 2;
* :meth:`RunFolder.check_resume` — an existing run may be continued only with the same settings (keys
  listed in ``free`` may change: step counts, logging knobs); the changed keys are named in the error;
* :meth:`RunFolder.check_checkpoint` — the same for a checkpoint that carries the
  :meth:`RunFolder.fingerprint` of the settings it was written with;
* :meth:`RunFolder.is_finished` — the final file (``metrics.json``) exists and the settings match;
* :meth:`RunFolder.clean_stale` — hidden ``.*.tmp`` files and ``checkpoints/.step_*`` folders left by a
  killed process (SIGKILL skips every ``finally``) are removed at start.

Writes go through :mod:`tune3d.io` (atomic, 0644, deterministic safetensors).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from tune3d.errors import Tune3DError
from tune3d.io import _plain

CONFIG_FILE = "config.yaml"
FINISHED_FILE = "metrics.json"
# Fields: ``where`` (the file that holds the other settings), ``out`` (the folder), ``changed`` (keys).
REFUSAL = "{where}: existing run has a different config ({changed}); use a new --out or --no-resume"

Compare = Callable[[dict[str, Any], dict[str, Any]], list[str]]


def check_out_dir(out: str | os.PathLike) -> Path:
    """Raise :class:`Tune3DError` unless ``out`` is (or can be created as) a writable folder.

    Creates nothing: the nearest existing ancestor must be a folder we may write into.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise Tune3DError(f"{out}: --out exists and is not a folder")
    probe = out
    while not probe.exists():
        parent = probe.parent
        if parent == probe:
            break
        probe = parent
    if probe.exists() and not probe.is_dir():
        raise Tune3DError(f"{out}: --out cannot be created ({probe} is a file)")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise Tune3DError(f"{out}: --out is not writable ({probe} is read-only)")
    return out


def plain(obj: Any) -> Any:
    """YAML/JSON-safe builtins (tuples -> lists, paths -> str, dataclasses -> dicts)."""
    return yaml.safe_load(yaml.safe_dump(_plain(obj), sort_keys=True))


def fingerprint(record: dict[str, Any], free: Iterable[str] = ()) -> str:
    """16-hex digest of ``record`` without the ``free`` keys (key order does not matter; paths and other
    non-JSON values count by their ``str``)."""
    free = set(free)
    key = {k: v for k, v in record.items() if k not in free}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RunFolder:
    """One command's output folder. ``free``: config keys that may differ between a run and its resume."""

    def __init__(
        self,
        out: str | os.PathLike,
        free: Iterable[str] = (),
        config_file: str = CONFIG_FILE,
        compare: Compare | None = None,
        refusal: str = REFUSAL,
    ):
        """``compare(saved, record)``: a stage's own list of changed settings (e.g. lift's, which matches a
        scene by content, not path, and ignores its nested run-only fields) used instead of key-by-key
        equality outside ``free``. ``refusal``: the error text, a :data:`REFUSAL`-style template."""
        self.path = check_out_dir(out)
        self.free = frozenset(free)
        self.config_path = self.path / config_file
        self.compare = compare
        self.refusal = refusal

    def fingerprint(self, record: dict[str, Any]) -> str:
        """:func:`fingerprint` of ``record`` without this folder's ``free`` keys (stored in checkpoints)."""
        return fingerprint(record, self.free)

    def saved_config(self) -> dict[str, Any] | None:
        """The saved settings; None when there are none, ``{}`` when the file holds no mapping."""
        if not self.config_path.is_file():
            return None
        try:
            old = yaml.safe_load(self.config_path.read_text())
        except yaml.YAMLError as e:
            raise Tune3DError(f"{self.config_path}: malformed YAML ({str(e).splitlines()[0]})") from None
        return old if isinstance(old, dict) else {}

    def changed_keys(self, record: dict[str, Any]) -> list[str]:
        """Keys (outside ``free``) whose saved value differs from ``record``; [] when nothing is saved."""
        old = self.saved_config()
        return [] if old is None else self._diff(old, record)

    def _diff(self, old: dict[str, Any], record: dict[str, Any]) -> list[str]:
        if self.compare is not None:
            return self.compare(old, record)
        new = plain(record)
        return sorted(k for k in set(old) | set(new) if k not in self.free and old.get(k) != new.get(k))

    def _refuse(self, where: str | os.PathLike, changed: list[str]) -> Tune3DError:
        return Tune3DError(self.refusal.format(where=where, out=self.path, changed=", ".join(changed)))

    def check_resume(self, record: dict[str, Any]) -> None:
        """Refuse to continue a run made with other settings (names the changed keys)."""
        diff = self.changed_keys(record)
        if diff:
            raise self._refuse(self.config_path, diff)

    def check_checkpoint(
        self, where: str | os.PathLike, state: dict[str, Any], record: dict[str, Any]
    ) -> None:
        """Refuse to resume checkpoint ``where`` unless its ``state["fingerprint"]`` is ``record``'s."""
        if state.get("fingerprint") != self.fingerprint(record):
            raise self._refuse(where, ["fingerprint"])

    def is_finished(self, record: dict[str, Any], finished_file: str = FINISHED_FILE) -> bool:
        """True when the final file exists and the saved settings match ``record``."""
        if not (self.path / finished_file).is_file():
            return False
        try:
            old = self.saved_config()
        except Tune3DError:  # unreadable config: not a finished run of these settings
            return False
        return old is not None and not self._diff(old, record)

    def clean_stale(self) -> list[Path]:
        """Remove temporary files/folders a killed process left (``.*.tmp`` anywhere up to two levels
        deep, ``checkpoints/.step_*``). Returns what was removed."""
        removed: list[Path] = []
        if not self.path.is_dir():
            return removed
        candidates = [*self.path.glob(".*.tmp"), *self.path.glob("*/.*.tmp"), *self.path.glob("*/*/.*.tmp")]
        candidates += list((self.path / "checkpoints").glob(".step_*"))
        for p in candidates:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
        return removed

    def prepare(self) -> RunFolder:
        """Create the folder and clean stale temporaries; call once the inputs are validated."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.clean_stale()
        return self
