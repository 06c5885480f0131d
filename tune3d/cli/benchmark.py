"""CLI: ``tune3d datasets`` (benchmark datasets and their layouts) and ``tune3d benchmark`` (suites)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tune3d.errors import Tune3DError


def datasets_cmd(
    as_json: bool = typer.Option(False, "--json", help="One JSON object per dataset."),
) -> None:
    """List the benchmark datasets with their tasks, classes and expected folder layout."""
    from tune3d.data.benchmarks import DATASETS

    for name, d in DATASETS.items():
        if as_json:
            row = {
                "name": name,
                "tasks": list(d.all_tasks),
                "num_classes": d.num_classes,
                "splits": list(d.splits),
                "max_depth": d.max_depth if "depth" in d.all_tasks else None,
                "layout": d.layout,
            }
            typer.echo(json.dumps(row))
            continue
        what = f"{d.num_classes} classes" if d.num_classes else f"depth <= {d.max_depth:g} m"
        typer.echo(f"{name:12s} {'/'.join(d.all_tasks):13s} {what}\n    layout: {d.layout}")


def _pairs(values: list[str] | None, flag: str, allow_plain: bool = False) -> dict[str, str]:
    """``NAME=VALUE`` options as a dict; with ``allow_plain`` a bare ``VALUE`` is stored under ``*``."""
    out: dict[str, str] = {}
    for v in values or []:
        if "=" in v:
            k, _, val = v.partition("=")
            out[k.strip()] = val.strip()
        elif allow_plain:
            out["*"] = v
        else:
            raise Tune3DError(f"{flag} {v!r}: expected NAME=PATH")
    return out


def benchmark_cmd(
    suite: str | None = typer.Argument(
        None, help="fit3d-table1..fit3d-table4, fin3r-table1..fin3r-table6 or a suite YAML file."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output folder (results.csv, .md, .html, cells/)."
    ),
    list_suites: bool = typer.Option(False, "--list", help="List the named suites and exit."),
    root: list[str] | None = typer.Option(None, "--root", help="Dataset root NAME=PATH (repeatable)."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Dataset NAME lives in DATA_DIR/NAME."),
    finetuned: list[str] | None = typer.Option(
        None, "--finetuned", help="Fine-tuned weights BACKBONE=FILE (repeatable) or FILE for every backbone."
    ),
    weights: list[str] | None = typer.Option(None, "--weights", help="Original weights BACKBONE=FILE."),
    protocol: str | None = typer.Option(
        None, "--protocol", help="fast | paper (default: the suite's, else fast)."
    ),
    iters: int | None = typer.Option(None, "--iters", min=1, help="Probe iterations per cell."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Probe batch size."),
    resolution: str | None = typer.Option(None, "--resolution", help="HxW images of the fast protocol."),
    allow_random_init: bool = typer.Option(
        False, "--allow-random-init", help="Random original weights when none can be loaded (tests)."
    ),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    amp: str = typer.Option(
        "none", "--amp", help="paper protocol: backbone precision on GPU (none|fp16|bf16)."
    ),
    workers: int = typer.Option(0, "--workers", min=0, help="paper protocol: data-loading workers."),
    seed: int = typer.Option(0, "--seed"),
    progress: bool = typer.Option(False, "--progress", help="Show progress bars of each probe."),
    model: str | None = typer.Option(None, "--model", help="fin3r suites: reconstruction model name."),
    adapter: Path | None = typer.Option(
        None, "--adapter", help="fin3r suites: Fin3R adapter file; adds the 'adapter' mode cells."
    ),
    data: list[str] | None = typer.Option(
        None, "--data", help="fin3r suites: dataset root DATASET=ROOT (repeatable)."
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="fin3r suites: first N samples per dataset."
    ),
    max_points: int | None = typer.Option(
        None, "--max-points", min=1, help="fin3r-table5/6: subsample clouds for Acc/Comp/NC."
    ),
    kf_every: int = typer.Option(
        20, "--kf-every", min=1, help="fin3r-table5 and fin3r-table1 7scenes: keyframe step."
    ),
    niter: int = typer.Option(300, "--niter", min=0, help="fin3r-table3..6: global alignment iterations."),
    size: int | None = typer.Option(
        None, "--size", min=16, help="fin3r suites: model input long side / width [the model's own]."
    ),
) -> None:
    """Run a suite of dataset x task x mode probe cells and report them beside the paper's numbers.

    Finished cells (OUT/cells/ID/result.json) are skipped on a rerun; a failing cell is recorded and the
    others still run (exit code 1 when any cell failed). Writes OUT/results.csv
    (suite,dataset,task,mode,metric,value,paper), results_full.csv, results.md and results.html.
    """
    from tune3d.benchmark import SuiteSettings, load_suite, named_suites, run_suite
    from tune3d.cli._args import parse_hw
    from tune3d.fin3r.evaluation.suites import FIN3R_SUITES

    if list_suites:
        for name, s in named_suites().items():
            cells = ", ".join(sorted({f"{c.dataset}/{c.task}" for c in s.cells}))
            typer.echo(f"{name}: {len(s.cells)} cells ({cells})")
        for name, fs in FIN3R_SUITES.items():
            note = f" [not available: {fs.missing}]" if fs.missing else ""
            typer.echo(f"{name}: {fs.task} on --data {', '.join(fs.datasets)}{note}")
        return
    if suite is not None and suite.startswith("fin3r-"):
        from tune3d.fin3r.evaluation.cli import run_fin3r_cli

        run_fin3r_cli(
            suite,
            out,
            model,
            weights,
            allow_random_init,
            adapter,
            data,
            device,
            limit,
            max_points,
            kf_every,
            niter,
            size,
        )
        return
    if suite is None or out is None:
        raise Tune3DError("give a SUITE (name or YAML) and --out, or --list")
    if amp not in ("none", "fp16", "bf16"):
        raise Tune3DError(f"--amp {amp!r}: choose none, fp16 or bf16")
    spec = load_suite(suite)
    opts = spec.options
    ft = (
        {str(k): str(v) for k, v in opts.get("finetuned", {}).items()}
        if isinstance(opts.get("finetuned"), dict)
        else ({"*": str(opts["finetuned"])} if opts.get("finetuned") else {})
    )
    ft.update(_pairs(finetuned, "--finetuned", allow_plain=True))
    roots = {str(k): str(v) for k, v in (opts.get("roots") or {}).items()}
    roots.update(_pairs(root, "--root"))
    res = resolution or opts.get("resolution")
    settings = SuiteSettings(
        roots=roots,
        data_dir=str(data_dir) if data_dir else opts.get("data_dir"),
        finetuned=ft,
        weights={
            **{str(k): str(v) for k, v in (opts.get("weights") or {}).items()},
            **_pairs(weights, "--weights"),
        },
        protocol=protocol or opts.get("protocol", "fast"),
        iters=iters if iters is not None else opts.get("iters"),
        batch_size=batch_size if batch_size is not None else opts.get("batch_size"),
        resolution=list(parse_hw(str(res))) if res else None,
        allow_random_init=allow_random_init or bool(opts.get("allow_random_init", False)),
        device=device,
        amp=amp,
        workers=workers,
        seed=seed,
        progress=progress,
    )
    rows = run_suite(spec, out, settings)
    cells = {(r.dataset, r.task, r.mode, r.backbone): r.status for r in rows}
    done = sum(s == "done" for s in cells.values())
    typer.echo(f"benchmark {spec.name}: {done}/{len(cells)} cells done; wrote {out / 'results.csv'}")
    for (d, t, m, b), s in cells.items():
        if s == "failed":
            err = next(r.error for r in rows if (r.dataset, r.task, r.mode, r.backbone) == (d, t, m, b))
            typer.echo(f"  failed: {d}/{t}/{m}/{b}: {err}")
    if done < len(cells):
        raise typer.Exit(1)  # the reports are complete; a rerun retries only the failed cells


def register(app: typer.Typer) -> None:
    """Register this area's commands on the root app."""
    app.command("datasets")(datasets_cmd)
    app.command("benchmark")(benchmark_cmd)
