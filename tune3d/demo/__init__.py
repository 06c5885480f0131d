"""``tune3d demo``: FiT3D and Fin3R end to end on data generated on the fly, with a self-contained report.

Stages write into sub-folders of the output folder and are skipped on a rerun once their ``metrics.json``
exists, so an interrupted demo resumes where it stopped::

    OUT/data/{train,heldout,mono}/   synthetic scenes (tune3d format)
    OUT/lift/<scene>/                FiT3D stage I per training scene
    OUT/finetune/                    FiT3D stage II (backbone.safetensors)
    OUT/probe/<task>/<mode>/         linear probes on held-out scenes
    OUT/recon/                       Fin3R base model trained with train-recon
    OUT/distill/{plain,renorm}/      Fin3R distillation with plain and re-normalised LoRA
    OUT/eval/                        Fin3R before/after evaluation on held-out scenes
    OUT/report.json, OUT/report.html, OUT/stages.json (per-stage seconds and notes)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tune3d.demo.common import DEFAULT_TEACHER, METHODS, DemoConfig, StageLog, check_inputs

# Library imports stay inside the functions: the CLI imports this module at start-up (cli/demo.py).

__all__ = ["DEFAULT_TEACHER", "METHODS", "DemoConfig", "StageLog", "check_inputs", "run_demo"]


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run the demo; returns the report dict also written to ``OUT/report.json`` (plus ``report.html``)."""
    from tune3d.engine import seed_everything
    from tune3d.io import write_json, write_yaml

    check_inputs(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_yaml(out / "config.yaml", cfg.to_dict())
    seed_everything(cfg.seed)
    log = StageLog.open(out / "stages.json")
    report: dict[str, Any] = {}
    figures: dict[str, list[tuple[str, Path]]] = {}
    tables: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    if cfg.method in ("fit3d", "all"):
        from tune3d.demo.fit3d import run_fit3d

        report["fit3d"], figures["fit3d"], tables["fit3d"] = run_fit3d(cfg, out, log)
        write_json(out / "report.json", report)  # partial report as soon as a part finishes
    if cfg.method in ("fin3r", "all"):
        from tune3d.demo.fin3r import run_fin3r

        report["fin3r"], figures["fin3r"], tables["fin3r"] = run_fin3r(cfg, out, log)
    write_json(out / "report.json", report)
    log.save()
    from tune3d.viz.report import demo_report_html, write_html

    write_html(
        out / "report.html", demo_report_html(report, figures, log.stages, log.notes, cfg.to_dict(), tables)
    )
    log.say(
        f"all done in {time.perf_counter() - t0:.1f} s; wrote {out / 'report.json'} and {out / 'report.html'}"
    )
    return report
