"""``tune3d benchmark fin3r-tableN ...``: argument checks and the run summary (called by tune3d/cli)."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from tune3d.errors import Tune3DError
from tune3d.fin3r.evaluation.suites import Fin3rSettings, check_suite, run_fin3r_suite
from tune3d.recon import get_entry
from tune3d.recon.hub_weights import resolve_weights


def _data_pairs(values: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values or []:
        key, sep, root = v.partition("=")
        if not sep or not key.strip() or not root.strip():
            raise Tune3DError(f"--data {v!r}: expected DATASET=ROOT")
        out[key.strip()] = root.strip()
    return out


def run_fin3r_cli(
    suite: str,
    out: Path | None,
    model: str | None,
    weights: list[str] | None,
    allow_random_init: bool,
    adapter: Path | None,
    data: list[str] | None,
    device: str,
    limit: int | None,
    max_points: int | None,
    kf_every: int,
    niter: int,
    size: int | None = None,
) -> None:
    """Validate the options (nothing is written on a bad one), run the suite and print one line."""
    pairs = _data_pairs(data)
    check_suite(suite, pairs)
    if model is None:
        raise Tune3DError(f"{suite}: give --model NAME (see tune3d recon models)")
    get_entry(model)
    if out is None:
        raise Tune3DError(f"{suite}: give --out DIR")
    if weights and len(weights) > 1:
        raise Tune3DError(f"{suite}: give one --weights FILE (the model's weights)")
    w = weights[0].partition("=")[2] if weights and "=" in weights[0] else (weights[0] if weights else None)
    if w is not None:
        w = str(resolve_weights(w))  # a local path, or a Hugging Face id through its cache / the hub
    if w is None and not allow_random_init:
        raise Tune3DError(f"{suite}: give --weights FILE or --allow-random-init")
    if adapter is not None and not adapter.is_file():
        raise Tune3DError(f"{adapter}: adapter file not found")
    for key, root in pairs.items():
        if not Path(root).is_dir():
            raise Tune3DError(f"{root}: dataset root for {key} not found")
    dev = "cuda" if device == "auto" and _cuda() else ("cpu" if device == "auto" else device)
    settings = Fin3rSettings(
        model=model,
        data=pairs,
        weights=w,
        adapter=str(adapter) if adapter else None,
        allow_random_init=allow_random_init,
        device=dev,
        limit=limit,
        max_points=max_points,
        kf_every=kf_every,
        niter=niter,
        size=size,
    )
    rows = run_fin3r_suite(suite, out, settings)
    done = sum(r["status"] == "done" for r in rows)
    typer.echo(f"benchmark {suite}: {done}/{len(rows)} values; wrote {Path(out) / 'results.csv'}")


def _cuda() -> bool:
    return torch.cuda.is_available()
