"""``tune3d benchmark``: a small YAML suite end to end on fixtures with a tiny backbone; resume; isolation."""

from __future__ import annotations

import csv
from pathlib import Path

from benchmark_fixtures import write_mmseg_seg, write_nyu_depth


def _suite(tmp_path: Path) -> Path:
    seg = write_mmseg_seg(tmp_path / "nyu_seg", 13, n_train=3, n_val=2, size=(28, 42))
    dep = write_nyu_depth(tmp_path / "nyu_depth", n_train=2, n_test=2, size=(28, 42))
    y = tmp_path / "suite.yaml"
    y.write_text(
        f"""name: tiny
backbone: dinov2_vits14_tiny
iters: 8
allow_random_init: true
roots: {{nyuv2-seg13: {seg}, nyuv2-depth: {dep}}}
cells:
  - {{dataset: nyuv2-seg13, task: semseg, mode: original}}
  - {{dataset: nyuv2-seg13, task: semseg, mode: assembled}}
  - {{dataset: nyuv2-depth, task: depth, mode: duplicated}}
"""
    )
    return y


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_benchmark_list(cli):
    r = cli("benchmark", "--list")
    assert r.returncode == 0
    for n in ("fit3d-table1", "fit3d-table2", "fit3d-table3", "fit3d-table4"):
        assert n in r.stdout


def test_benchmark_yaml_suite_resume_and_failed_cell(cli, tmp_path):
    suite, out = _suite(tmp_path), tmp_path / "out"
    # 'assembled' has no fine-tuned weights: that cell fails, the other two finish
    r = cli("benchmark", suite, "--out", out)
    assert r.returncode == 1, r.stderr
    assert "2/3 cells done" in r.stdout and "needs fine-tuned weights" in r.stdout
    header = (out / "results.csv").read_text().splitlines()[0]
    assert header == "suite,dataset,task,mode,metric,value,paper"
    rows = _rows(out)
    seg = {r["metric"]: r for r in rows if r["mode"] == "original"}
    assert set(seg) == {"macc", "miou", "aacc"} and 0.0 <= float(seg["miou"]["value"]) <= 100.0
    assert seg["miou"]["paper"] == ""  # the tiny backbone has no paper value
    dep = {r["metric"]: r for r in rows if r["task"] == "depth"}
    assert float(dep["rmse"]["value"]) > 0 and dep["rmse"]["suite"] == "tiny"
    assert all(r["value"] == "" for r in rows if r["mode"] == "assembled")
    md = (out / "results.md").read_text()
    assert "| nyuv2-seg13 | semseg | dinov2_vits14_tiny | original | miou |" in md and "Failed cells" in md
    assert "<table>" in (out / "results.html").read_text()

    # rerun: finished cells are skipped (their result files untouched), only the failed one runs again
    done = out / "cells" / "nyuv2-seg13__semseg__original__dinov2_vits14_tiny" / "result.json"
    stamp = done.stat().st_mtime_ns
    r2 = cli("benchmark", suite, "--out", out)
    assert r2.returncode == 1 and done.stat().st_mtime_ns == stamp
    assert _rows(out) == rows


def test_paper_numbers_ship_with_the_package():
    from tune3d.benchmark import named_suites, paper_value

    assert paper_value("nyuv2-seg13", "semseg", "dinov2_vits14", "assembled", "miou") == 67.50
    assert paper_value("kitti-eigen", "depth", "dinov2_vits14", "original", "rmse") == 3.0322
    assert paper_value("nyuv2-seg13", "semseg", "dinov2_vits14", "original", "delta1") is None
    t4 = named_suites()["fit3d-table4"]
    assert {c.backbone for c in t4.cells} == {
        "dinov2_vits14_reg",
        "clip_vitb16",
        "mae_vitb16",
        "deit3_vitb16",
    }


def test_benchmark_bad_suite(cli, tmp_path):
    r = cli("benchmark", "fit3d-table9", "--out", tmp_path / "o")
    assert r.returncode == 2 and "neither a suite name" in r.stderr
    y = tmp_path / "bad.yaml"
    y.write_text("cells:\n  - {dataset: nyuv2-seg13, task: semseg, mode: fused}\n")
    r = cli("benchmark", y, "--out", tmp_path / "o")
    assert r.returncode == 2 and "mode 'fused'" in r.stderr and not (tmp_path / "o").exists()
