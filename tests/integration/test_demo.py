"""``tune3d demo`` end to end at the smallest sizes: report.json layout, report.html validity, resuming."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from html.parser import HTMLParser

import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
# the FiT3D part's steps at their smallest
FIT3D_TINY = ["--lift-iters", "5", "--lift-points", "300", "--finetune-steps", "2", "--probe-iters", "5"]
TINY = [
    "--backbone",
    "dinov2_vits14_tiny",
    "--scenes",
    "1",
    "--heldout-scenes",
    "1",
    "--mono-scenes",
    "0",
    "--views",
    "8",
    "--resolution",
    "32x48",
    *FIT3D_TINY,
    "--recon-steps",
    "2",
    "--distill-steps",
    "2",
    "--eval-pairs",
    "2",
    "--teacher",
    "sensor",
]
MODES = {"original", "finetuned", "assembled", "duplicated"}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tune3d", *args], capture_output=True, text=True, env=ENV)


class _Collector(HTMLParser):
    """Tags, unclosed-element check and every image source of a document."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.srcs: list[str] = []
        self.errors: list[str] = []
        self.tables: list[list[list[tuple[str, str]]]] = []  # table -> row -> (cell class, text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.tables[-1][-1].append((dict(attrs).get("class") or "", ""))
        if tag == "img":
            self.srcs.append(dict(attrs).get("src", ""))
        for k, v in attrs:
            if k in ("href", "src") and v and not v.startswith("data:"):
                self.errors.append(f"external reference {v}")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_data(self, data):
        if self.stack and self.stack[-1] in ("td", "th"):
            cls, text = self.tables[-1][-1][-1]
            self.tables[-1][-1][-1] = (cls, text + data)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unbalanced </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    r = run("demo", "--out", str(out), *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


def test_report_json_layout(demo):
    out, r = demo
    report = json.loads((out / "report.json").read_text())
    assert set(report) == {"fit3d", "fin3r"}
    fit, fin = report["fit3d"], report["fin3r"]
    assert set(fit) == {"backbone", "weights", "data", "depth", "semseg", "seconds"}
    assert fit["backbone"] == "dinov2_vits14_tiny" and fit["weights"] == "random-init"
    assert set(fit["depth"]) == MODES and set(fit["semseg"]) == MODES
    width = fit["depth"]["original"]["feature_width"]
    assert (
        fit["depth"]["assembled"]["feature_width"] == fit["depth"]["duplicated"]["feature_width"] == 2 * width
    )
    for mode in MODES:
        stage = json.loads((out / "probe" / "depth" / mode / "metrics.json").read_text())
        assert fit["depth"][mode]["rmse"] == stage["rmse"] and 0 <= fit["depth"][mode]["delta1"] <= 1
        assert 0 <= fit["semseg"][mode]["mIoU"] <= 1
    assert set(fin) == {"base_model", "teacher", "mono_depth", "multiview", "feature_norm", "seconds"}
    assert fin["teacher"] == "sensor" and fin["base_model"] == "dust3r_tiny"
    for part, key in (("mono_depth", "abs_rel"), ("mono_depth", "delta1"), ("multiview", "accuracy")):
        assert set(fin[part]) == {"before", "after"}
        assert fin[part]["before"][key] >= 0 and fin[part]["after"][key] >= 0
    assert set(fin["feature_norm"]) == {"base", "plain", "renorm"}
    assert all(v > 0 for v in fin["feature_norm"].values())
    assert fit["seconds"] > 0 and fin["seconds"] > 0
    for sub in ("lift/scene_000", "finetune", "recon", "distill/plain", "distill/renorm", "eval"):
        assert (out / sub / "metrics.json").is_file(), sub
    # the summary table on stdout, progress on stderr
    assert "assembled" in r.stdout and "feature norm" in r.stdout
    assert "[demo] lift/scene_000" in r.stderr and "RANDOM weights" in r.stderr


def test_report_html_is_self_contained_and_valid(demo):
    out, _ = demo
    text = (out / "report.html").read_text()
    p = _Collector()
    p.feed(text)
    p.close()
    assert not p.errors, p.errors[:5]
    assert p.stack == [], p.stack
    assert p.tags.count("table") >= 6  # depth, seg, mono, multi-view, norms, timings (+ config)
    assert p.srcs and all(s.startswith("data:image/png;base64,") for s in p.srcs)
    assert len(p.srcs) >= 4  # PCA, probe predictions, Fin3R depth, norm heatmaps
    assert "random weights" in text.lower()
    # the depth table (the first one) marks exactly the lowest rmse of report.json
    report = json.loads((out / "report.json").read_text())
    header, *rows = p.tables[0]
    col = [h for _, h in header].index("rmse ↓")
    marked = {r[0][1] for r in rows if "best" in r[col][0]}
    depth = report["fit3d"]["depth"]
    lowest = min(m["rmse"] for m in depth.values())
    assert marked == {mode for mode, m in depth.items() if m["rmse"] == lowest}
    assert "<link" not in text and "<script" not in text


def test_rerun_skips_finished_stages(demo):
    out, _ = demo
    before = json.loads((out / "report.json").read_text())
    r = run("demo", "--out", str(out), *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "finished in" not in r.stderr  # every stage was found done
    assert r.stderr.count("done earlier, skipping") >= 15
    after = json.loads((out / "report.json").read_text())
    assert after["fit3d"]["depth"] == before["fit3d"]["depth"]
    assert after["fin3r"]["mono_depth"] == before["fin3r"]["mono_depth"]


def test_fit3d_part_on_7scenes_frames(seven_scenes, tmp_path):
    """``--data`` runs the FiT3D part on a real RGB-D scene; without labels only depth is probed."""
    out = tmp_path / "real"
    r = run(
        "demo",
        "--method",
        "fit3d",
        "--out",
        str(out),
        "--data",
        str(seven_scenes),
        "--train-frames",
        "0:40:10",
        "--test-frames",
        "800:840:10",
        "--backbone",
        "dinov2_vits14_tiny",
        "--resolution",
        "48x64",
        *FIT3D_TINY,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert set(report) == {"fit3d"}
    fit = report["fit3d"]
    assert set(fit["depth"]) == MODES and fit["semseg"] == {}
    assert "4 frames (0:40:10)" in fit["data"] and "800:840:10" in fit["data"]
    assert "no semantic labels" in r.stderr
    lift = json.loads((out / "lift" / "7scenes-redkitchen" / "metrics.json").read_text())
    assert lift["num_train_views"] + lift["num_eval_views"] == 4
