"""The ``fin3r-table1`` .. ``fin3r-table6`` suites: cells of (dataset, task, mode), resumable, reported
beside the paper's numbers (``paper_numbers.csv``).

A suite runs one model (``--model NAME``) as ``base`` and, with ``--adapter FILE``, as ``adapter`` (base +
Fin3R adapter). Each cell writes ``OUT/cells/<id>/result.json``; a finished cell is skipped on a rerun,
a failing cell records its one-line error and the others still run. ``OUT/results.csv`` has the columns
``suite,dataset,task,mode,metric,value,paper``; ``results.md`` / ``results.html`` show the same table.
"""

from __future__ import annotations

import csv
import html
import io
import logging
import math
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from tune3d.data.benchmarks import get_dataset_info, open_dataset
from tune3d.data.benchmarks.moge import list_moge_instances, load_moge_instance, moge_dataset_folders
from tune3d.data.benchmarks.moge_viewport import MOGE_VIEWPORTS
from tune3d.data.benchmarks.pi3_pointmaps import dtu_sequences, eth3d_sequences
from tune3d.data.benchmarks.pointmap_eval import (
    nrgbd_sequences,
    seven_scenes_mono_samples,
    seven_scenes_sequences,
)
from tune3d.data.benchmarks.re10k import re10k_sequences
from tune3d.data.benchmarks.robustmvd import robustmvd_samples
from tune3d.data.benchmarks.scannet1500 import read_scannet1500
from tune3d.data.benchmarks.video_depth import video_depth_sequences
from tune3d.errors import Tune3DError
from tune3d.fin3r.evaluation.common import build_model
from tune3d.fin3r.evaluation.mono_depth import evaluate_mono_depth
from tune3d.fin3r.evaluation.multi_view_pose import evaluate_multi_view_pose
from tune3d.fin3r.evaluation.mvd_depth import evaluate_mvd_depth
from tune3d.fin3r.evaluation.pointmaps import evaluate_pointmaps
from tune3d.fin3r.evaluation.pointmaps_pi3 import evaluate_pi3_pointmaps
from tune3d.fin3r.evaluation.two_view import evaluate_two_view
from tune3d.fin3r.evaluation.video_depth import evaluate_video_depth
from tune3d.io import read_json, write_json, write_text_atomic
from tune3d.recon import get_entry

log = logging.getLogger(__name__)

PAPER_CSV = Path(__file__).with_name("paper_numbers.csv")
CSV_COLUMNS = ("suite", "dataset", "task", "mode", "metric", "value", "paper")
# Table 1's "seven benchmarks" as MoGe suite folder names (fin3r.md §2.1: inferred from MoGe's suite)
PAPER_TABLE1_DATASETS = ("NYUv2", "KITTI", "ETH3D", "iBims-1", "DDAD", "DIODE", "HAMMER")


@dataclass(frozen=True)
class Fin3rSuite:
    """A paper table: its task, the ``--data`` keys it reads (key -> layout hint) and reported metrics.

    ``missing``: why the suite cannot run yet (its readers / protocol are not written); None when it runs.
    """

    name: str
    title: str
    task: str
    datasets: dict[str, str]
    metrics: tuple[str, ...]
    missing: str | None = None


FIN3R_SUITES: dict[str, Fin3rSuite] = {
    s.name: s
    for s in (
        Fin3rSuite(
            "fin3r-table1",
            "Fin3R Table 1: monocular depth (Rel = AbsRel x 100, delta1 in %)",
            "mono-depth",
            {
                "moge": "MoGe evaluation suite root (NYUv2/, KITTI/, ETH3D/, ... each with .index.txt)",
                "nyuv2-depth": "NYUv2 toolbox layout (nyu_test.txt)",
                "kitti-eigen": "KITTI Eigen toolbox layout (kitti_eigen_test.txt)",
                "7scenes": "7-Scenes root, one scene with TestSplit.txt, or one flat sequence folder "
                "(keyframes every --kf-every, as fin3r-table5)",
            },
            ("rel", "delta1"),
        ),
        Fin3rSuite(
            "fin3r-table2",
            "Fin3R Table 2: ScanNet-1500 two-view pose (AUC in %)",
            "two-view-pose",
            {"scannet1500": "LoFTR layout (test.npz, intrinsics.npz, scannet_test_1500/)"},
            ("auc@5", "auc@10", "auc@20"),
        ),
        Fin3rSuite(
            "fin3r-table3",
            "Fin3R Table 3: RealEstate10K multi-view pose (RRA@5, RTA@5, AUC@30 in %)",
            "multi-view-pose",
            {"re10k": "RealEstate10K camera txt files + frames (metadata/test/<seq>.txt, <seq>/images/)"},
            ("rra@5", "rta@5", "auc@30"),
        ),
        Fin3rSuite(
            "fin3r-table4",
            "Fin3R Table 4: video / multi-view depth (rel = Abs Rel, delta1 in %; per-sequence (per-sample "
            "on ETH3D / T&T) scale, _ss scale+shift)",
            "video-depth",
            {
                "sintel": "MPI-Sintel training/{final,depth}",
                "bonn": "Bonn RGB-D rgbd_bonn_<seq>/{rgb_110,depth_110}",
                "kitti": "KITTI depth_selection/val_selection_cropped",
                "eth3d": "RobustMVD ETH3D: <scene>/{images,ground_truth_depth}/dslr_images + "
                "eth3d.robustmvd.mvd.pickle (rmvd's sample list; key view + 10 source views)",
                "tanks_and_temples": "RobustMVD T&T: <scene>/{images,depth} + "
                "tanks_and_temples.robustmvd.mvd.pickle (rmvd's sample list)",
            },
            ("rel", "delta1", "rel_ss", "delta1_ss", "rel_metric", "delta1_metric"),
        ),
        Fin3rSuite(
            "fin3r-table5",
            "Fin3R Table 5: pointmaps on 7-Scenes / NRGBD (Acc/Comp in m, NC)",
            "pointmap",
            {
                "7scenes": "7-Scenes root, one scene with TestSplit.txt, or one flat sequence folder",
                "nrgbd": "Neural RGB-D root or one scene (images/, depth/, poses.txt)",
            },
            ("acc", "acc_med", "comp", "comp_med", "nc", "nc_med"),
        ),
        Fin3rSuite(
            "fin3r-table6",
            "Fin3R Table 6: DTU / ETH3D pointmaps (Pi3 protocol; Acc/Comp in mm on DTU, m on ETH3D)",
            "pointmap-pi3",
            {
                "dtu": "DTU test scans scanN/{images,depths,binary_masks,cams}",
                "eth3d": "ETH3D scenes <scene>/{images,ground_truth_depth}/custom_undistorted",
            },
            ("acc", "comp", "nc"),
        ),
    )
}


@dataclass
class Fin3rSettings:
    """How to run a suite. ``limit``: first N samples / pairs / sequences per dataset (quick runs);
    ``max_points``: subsample clouds for Acc/Comp/NC; ``kf_every``: keyframe step of Table 5."""

    model: str
    data: dict[str, str]
    weights: str | None = None
    adapter: str | None = None
    allow_random_init: bool = False
    device: str = "cpu"
    limit: int | None = None
    max_points: int | None = None
    kf_every: int = 20
    niter: int = 300
    size: int | None = None  # model input long side (CroCo) / width (VGGT); None = the model's own


@dataclass(frozen=True)
class Cell:
    dataset: str  # row name (e.g. NYUv2 for a MoGe folder)
    key: str  # --data key
    root: str
    mode: str

    @property
    def id(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.dataset}__{self.mode}")


@lru_cache(maxsize=1)
def _paper_rows() -> tuple[tuple[str, ...], ...]:
    with open(PAPER_CSV, newline="") as f:
        rows = [ln for ln in f if not ln.startswith("#")]
    return tuple(
        (r["suite"], r["dataset"], r["family"], r["mode"], r["metric"], r["value"])
        for r in csv.DictReader(rows)
    )


def paper_value(suite: str, dataset: str, family: str, mode: str, metric: str) -> float | None:
    """The paper's number for a cell of ``family`` (dust3r | mast3r | cut3r | vggt), or None."""
    for s, d, fam, m, met, v in _paper_rows():
        if (s, d, fam, m, met) == (suite, dataset, family, mode, metric):
            return float(v)
    return None


def _cells(suite: Fin3rSuite, settings: Fin3rSettings) -> list[Cell]:
    modes = ["base"] + (["adapter"] if settings.adapter else [])
    cells = []
    for key, root in settings.data.items():
        names = [key]
        if key == "moge":
            try:
                names = list(moge_dataset_folders(root))
            except Tune3DError as e:
                log.warning("%s", e)
                names = ["moge"]  # recorded as one failed cell below
        for mode in modes:
            cells.extend(Cell(n, key, root, mode) for n in names)
    return cells


def _mono_samples(cell: Cell, settings: Fin3rSettings):
    if cell.key == "moge":
        folder = moge_dataset_folders(cell.root)[cell.dataset]
        viewport = MOGE_VIEWPORTS.get(cell.dataset)  # a dataset MoGe does not configure keeps its frames
        for inst in list_moge_instances(folder, cell.dataset)[: settings.limit]:
            yield load_moge_instance(inst, viewport)
        return
    if cell.key == "7scenes":  # Table 5's test sequences and keyframes, each keyframe scored alone
        yield from seven_scenes_mono_samples(cell.root, settings.kf_every, settings.limit)
        return
    ds = open_dataset(cell.key, cell.root, "test", "depth")
    n = len(ds) if settings.limit is None else min(settings.limit, len(ds))
    for i in range(n):
        image, depth = ds[i]
        depth = np.asarray(depth, dtype=np.float32)
        yield {"image": np.asarray(image, dtype=np.uint8), "depth": depth, "mask": ds.eval_mask(depth)}


def _run_cell(suite: Fin3rSuite, cell: Cell, model, settings: Fin3rSettings) -> dict[str, float]:
    if suite.task == "mono-depth":
        # toolbox layouts: the dataset's depth range, as their probes use (MoGe and 7-Scenes carry their own)
        max_depth = None if cell.key in ("moge", "7scenes") else get_dataset_info(cell.key).max_depth
        return evaluate_mono_depth(
            model, _mono_samples(cell, settings), max_depth=max_depth, size=settings.size
        )
    if suite.task == "two-view-pose":
        return evaluate_two_view(model, read_scannet1500(cell.root, settings.limit), settings.size)
    if suite.task == "pointmap":
        reader = seven_scenes_sequences if cell.key == "7scenes" else nrgbd_sequences
        seqs = reader(cell.root, settings.kf_every)[: settings.limit]
        return evaluate_pointmaps(
            model, seqs, max_points=settings.max_points, niter=settings.niter, size=settings.size
        )
    if suite.task == "video-depth" and cell.key in ("eth3d", "tanks_and_temples"):
        samples = robustmvd_samples(cell.key, cell.root, settings.limit)
        return evaluate_mvd_depth(model, samples, size=settings.size, niter=settings.niter)
    if suite.task == "video-depth":
        seqs = video_depth_sequences(cell.key, cell.root)[: settings.limit]
        return evaluate_video_depth(model, seqs, size=settings.size, niter=settings.niter)
    if suite.task == "multi-view-pose":
        seqs = re10k_sequences(cell.root, limit=settings.limit)
        return evaluate_multi_view_pose(model, seqs, size=settings.size, niter=settings.niter)
    if suite.task == "pointmap-pi3":
        seqs = (dtu_sequences if cell.key == "dtu" else eth3d_sequences)(cell.root)[: settings.limit]
        return evaluate_pi3_pointmaps(
            model, seqs, max_points=settings.max_points, niter=settings.niter, size=settings.size
        )
    raise Tune3DError(f"{suite.name}: {suite.missing or 'no protocol for task ' + suite.task}")


def check_suite(name: str, data: dict[str, str]) -> Fin3rSuite:
    """The suite ``name``, runnable with the ``--data`` keys given (one-line error otherwise)."""
    if name not in FIN3R_SUITES:
        raise Tune3DError(f"unknown suite {name!r}; Fin3R suites: {', '.join(FIN3R_SUITES)}")
    suite = FIN3R_SUITES[name]
    if suite.missing:
        raise Tune3DError(f"{name}: not available: {suite.missing}")
    if not data:
        keys = ", ".join(f"{k} ({v})" for k, v in suite.datasets.items())
        raise Tune3DError(f"{name}: give at least one --data DATASET=ROOT; datasets: {keys}")
    unknown = sorted(set(data) - set(suite.datasets))
    if unknown:
        raise Tune3DError(
            f"{name}: unknown dataset {unknown[0]!r} in --data; expected {', '.join(suite.datasets)}"
        )
    return suite


def _run_key(cell: Cell, settings: Fin3rSettings) -> dict[str, Any]:
    """What a finished cell was computed with; a rerun with other settings recomputes it."""
    return {
        "model": settings.model,
        "weights": settings.weights,
        "adapter": settings.adapter if cell.mode == "adapter" else None,
        "size": settings.size,
        "limit": settings.limit,
        "max_points": settings.max_points,
        "kf_every": settings.kf_every,
        "niter": settings.niter,
    }


def run_fin3r_suite(name: str, out: str | Path, settings: Fin3rSettings) -> list[dict[str, Any]]:
    """Run every unfinished cell of suite ``name`` into ``out``; returns the report rows (dicts with the
    CSV columns plus ``status`` / ``error``). Raises the first cell's error (one line) after writing the
    reports when any cell failed."""
    suite = check_suite(name, settings.data)
    family = get_entry(settings.model).family
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cells = _cells(suite, settings)
    results: dict[Cell, dict[str, Any]] = {}
    for cell in cells:
        p = out / "cells" / cell.id / "result.json"
        if p.is_file():
            prev = read_json(p)
            if prev.get("status") == "done" and prev.get("run") == _run_key(cell, settings):
                results[cell] = prev
    models: dict[str, Any] = {}

    def model_for(mode: str):
        if mode not in models:
            models.clear()  # one model in memory at a time
            models[mode] = build_model(
                settings.model,
                settings.weights,
                settings.adapter if mode == "adapter" else None,
                settings.allow_random_init,
                settings.device,
            )
        return models[mode]

    for cell in cells:
        if cell in results:
            log.info("cell %s finished earlier; skipped", cell.id)
            continue
        t0 = time.perf_counter()
        try:
            metrics = _run_cell(suite, cell, model_for(cell.mode), settings)
            res = {"status": "done", "metrics": metrics}
        except Tune3DError as e:
            res = {"status": "failed", "error": str(e).splitlines()[0]}
        res.update(
            run=_run_key(cell, settings), cell=cell.__dict__, seconds=round(time.perf_counter() - t0, 3)
        )
        write_json(out / "cells" / cell.id / "result.json", res)
        results[cell] = res
        _write_reports(suite, family, cells, results, out)
    rows = _write_reports(suite, family, cells, results, out)
    failed = [results[c]["error"] for c in cells if results[c]["status"] == "failed"]
    if failed:
        raise Tune3DError(failed[0])
    return rows


def _rows(suite: Fin3rSuite, family: str, cells: list[Cell], results: dict) -> list[dict[str, Any]]:
    rows = []
    for cell in cells:
        res = results.get(cell, {"status": "pending"})
        metrics = res.get("metrics", {})
        for metric in suite.metrics:
            v = metrics.get(metric)
            rows.append(
                {
                    "suite": suite.name,
                    "dataset": cell.dataset,
                    "task": suite.task,
                    "mode": cell.mode,
                    "metric": metric,
                    "value": v if isinstance(v, (int, float)) and math.isfinite(v) else None,
                    "paper": paper_value(suite.name, cell.dataset, family, cell.mode, metric),
                    "status": res["status"],
                    "error": res.get("error", ""),
                }
            )
    if suite.task == "mono-depth":  # Table 1's average over the datasets evaluated
        for mode in dict.fromkeys(c.mode for c in cells):
            done = [
                (c.dataset, results[c]["metrics"])
                for c in cells
                if c.mode == mode and results.get(c, {}).get("status") == "done"
            ]
            for metric in suite.metrics:
                scored = [(d, m[metric]) for d, m in done if math.isfinite(m.get(metric, math.nan))]
                vals = [v for _, v in scored]
                # the paper's average is over its seven datasets; beside any other set it would mislead
                same = sorted(d for d, _ in scored) == sorted(PAPER_TABLE1_DATASETS)
                rows.append(
                    {
                        "suite": suite.name,
                        "dataset": "avg",
                        "task": suite.task,
                        "mode": mode,
                        "metric": metric,
                        "value": sum(vals) / len(vals) if vals else None,
                        "paper": paper_value(suite.name, "avg", family, mode, metric) if same else None,
                        "status": "done" if vals else "pending",
                        "error": "",
                    }
                )
    return rows


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.6g}"


def _write_reports(suite: Fin3rSuite, family: str, cells: list[Cell], results: dict, out: Path) -> list[dict]:
    rows = _rows(suite, family, cells, results)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow(
            [r["suite"], r["dataset"], r["task"], r["mode"], r["metric"], _fmt(r["value"]), _fmt(r["paper"])]
        )
    write_text_atomic(out / "results.csv", buf.getvalue())
    header = ("dataset", "mode", "metric", "value", "paper", "status")
    table = [
        (r["dataset"], r["mode"], r["metric"], _fmt(r["value"]), _fmt(r["paper"]), r["status"]) for r in rows
    ]
    failed = sorted(
        {
            (c.dataset, c.mode, results[c]["error"])
            for c in cells
            if results.get(c, {}).get("status") == "failed"
        }
    )
    md = [f"# {suite.title}", "", f"`paper` = the paper's value for the {family} family.", ""]
    md += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in table]
    if failed:
        md += ["", "## Failed cells", ""] + [f"- {d} / {m}: {e}" for d, m, e in failed]
    write_text_atomic(out / "results.md", "\n".join(md) + "\n")
    esc = html.escape
    body = "\n".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(suite.title)}</title></head><body>"
        f"<h1>{esc(suite.title)}</h1><table border='1'><tr>{''.join(f'<th>{h}</th>' for h in header)}</tr>\n"
        f"{body}\n</table>"
        + (
            "<h2>Failed cells</h2><ul>"
            + "".join(f"<li>{esc(f'{d} / {m}: {e}')}</li>" for d, m, e in failed)
            + "</ul>"
            if failed
            else ""
        )
        + "</body></html>\n"
    )
    write_text_atomic(out / "results.html", page)
    return rows
