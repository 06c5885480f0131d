"""`tune3d benchmark fin3r-table1` .. `fin3r-table6` end to end on official-layout fixtures, tiny models."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from fin3r_eval_fixtures import write_moge_suite, write_seven_scenes_flat


def _adapter(tmp_path: Path, model: str) -> Path:
    from tune3d.fin3r.adapters import add_adapters, save_adapters
    from tune3d.recon import create_model

    net = create_model(model, allow_random_init=True)
    add_adapters(net)
    with torch.no_grad():
        for n, p in net.named_parameters():
            if ".lora_B." in n:
                p.normal_(0, 0.05)  # a non-zero adapter, so adapter cells differ from base cells
    path = tmp_path / f"{model}_adapter.safetensors"
    save_adapters(net, path)
    return path


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_fin3r_table1_mono_depth_base_and_adapter(cli, tmp_path):
    # 640x480 viewports (MoGe's for both): ETH3D's 2048x1365 would only make the test slow
    root = write_moge_suite(tmp_path / "moge", datasets=("NYUv2", "iBims-1"), n=1)
    out = tmp_path / "t1"
    args = ["benchmark", "fin3r-table1", "--model", "vggt_tiny", "--allow-random-init", "--size", "28"]
    args += ["--adapter", _adapter(tmp_path, "vggt_tiny"), "--data", f"moge={root}", "--out", out]
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    rows = _rows(out)
    assert list(rows[0]) == ["suite", "dataset", "task", "mode", "metric", "value", "paper"]
    got = {(x["dataset"], x["mode"], x["metric"]): x for x in rows}
    for ds in ("NYUv2", "iBims-1", "avg"):
        for mode in ("base", "adapter"):
            for metric in ("rel", "delta1"):
                assert got[(ds, mode, metric)]["value"] != ""
    assert got[("NYUv2", "base", "rel")]["paper"] == "3.14"  # VGGT family, Table 1
    # two of the paper's seven datasets: the paper's seven-dataset average would not be comparable
    assert got[("avg", "adapter", "delta1")]["paper"] == ""
    avg = (
        float(got[("NYUv2", "base", "rel")]["value"]) + float(got[("iBims-1", "base", "rel")]["value"])
    ) / 2
    assert float(got[("avg", "base", "rel")]["value"]) == __import__("pytest").approx(avg, rel=1e-4)
    assert got[("NYUv2", "base", "rel")]["value"] != got[("NYUv2", "adapter", "rel")]["value"]
    # resumable per cell: a rerun skips the finished cells and reports the same numbers
    stamp = (out / "cells" / "NYUv2__base" / "result.json").stat().st_mtime_ns
    assert cli(*args).returncode == 0
    assert (out / "cells" / "NYUv2__base" / "result.json").stat().st_mtime_ns == stamp
    assert _rows(out) == rows


def test_fin3r_table1_bad_dataset_fails_alone(cli, tmp_path):
    root = write_moge_suite(tmp_path / "moge", datasets=("KITTI", "NYUv2"), n=1)
    bad = root / "KITTI" / "scene" / "0000" / "depth.png"
    from PIL import Image

    Image.fromarray(torch.zeros(24, 32, dtype=torch.int32).numpy().astype("uint16")).save(bad)  # no near/far
    from benchmark_fixtures import write_nyu_depth

    nyu = write_nyu_depth(tmp_path / "nyu", n_train=1, n_test=2, size=(48, 64))
    out = tmp_path / "t1bad"
    r = cli(
        "benchmark",
        "fin3r-table1",
        "--model",
        "vggt_tiny",
        "--allow-random-init",
        "--size",
        "28",
        "--data",
        f"moge={root}",
        "--data",
        f"nyuv2-depth={nyu}",
        "--out",
        out,
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "depth.png: not MoGe's depth encoding" in r.stderr
    got = {(x["dataset"], x["metric"]): x["value"] for x in _rows(out)}
    assert got[("NYUv2", "rel")] != "" and got[("KITTI", "rel")] == ""
    assert got[("nyuv2-depth", "rel")] != "" and got[("nyuv2-depth", "delta1")] != ""  # toolbox layout


def test_fin3r_table1_seven_scenes_flat_folder(cli, tmp_path):
    root = write_seven_scenes_flat(tmp_path / "redkitchen", n=6)
    moge = write_moge_suite(tmp_path / "moge", datasets=("NYUv2",), n=1)
    out = tmp_path / "t1_7s"
    args = ["benchmark", "fin3r-table1", "--model", "vggt_tiny", "--allow-random-init", "--size", "28"]
    args += ["--adapter", _adapter(tmp_path, "vggt_tiny"), "--data", f"7scenes={root}"]
    r = cli(*args, "--data", f"moge={moge}", "--kf-every", "2", "--out", out)
    assert r.returncode == 0, r.stderr
    got = {(x["dataset"], x["mode"], x["metric"]): x for x in _rows(out)}
    for mode in ("base", "adapter"):
        rel, d1 = (float(got[("7scenes", mode, m)]["value"]) for m in ("rel", "delta1"))
        assert 0 <= rel and 0 <= d1 <= 100
        assert got[("7scenes", mode, "rel")]["paper"] == ""  # not a column of the paper's Table 1
        avg = (rel + float(got[("NYUv2", mode, "rel")]["value"])) / 2
        assert float(got[("avg", mode, "rel")]["value"]) == __import__("pytest").approx(avg, rel=1e-4)
    res = __import__("json").loads((out / "cells" / "7scenes__base" / "result.json").read_text())
    assert res["metrics"]["n_images"] == 3  # keyframes 0, 2, 4 of the flat folder
    (tmp_path / "empty").mkdir()  # a root in the wrong layout: one line, exit 2
    r = cli(*args[:-2], "--data", f"7scenes={tmp_path / 'empty'}", "--out", tmp_path / "t1_bad")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "empty: no 7-Scenes frames or TestSplit.txt" in r.stderr


def test_fin3r_table5_seven_scenes_flat_folder(cli, tmp_path):
    root = write_seven_scenes_flat(tmp_path / "redkitchen", n=6)
    out = tmp_path / "t5"
    r = cli(
        "benchmark",
        "fin3r-table5",
        "--model",
        "dust3r_tiny",
        "--allow-random-init",
        "--size",
        "64",
        "--adapter",
        _adapter(tmp_path, "dust3r_tiny"),
        "--data",
        f"7scenes={root}",
        "--kf-every",
        "2",
        "--niter",
        "10",
        "--out",
        out,
    )
    assert r.returncode == 0, r.stderr
    got = {(x["dataset"], x["mode"], x["metric"]): x for x in _rows(out)}
    for mode in ("base", "adapter"):
        for metric in ("acc", "acc_med", "comp", "comp_med", "nc", "nc_med"):
            v = float(got[("7scenes", mode, metric)]["value"])
            assert v >= 0 and (v <= 1 or "nc" not in metric)
    assert got[("7scenes", "base", "acc")]["paper"] == "0.026"  # DUSt3R family, Table 5


def test_fin3r_bad_invocations(cli, tmp_path):
    r = cli(
        "benchmark",
        "fin3r-table3",
        "--model",
        "vggt_tiny",
        "--allow-random-init",
        "--data",
        f"re10k={tmp_path}",
        "--out",
        tmp_path / "t3",
    )
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "no camera files" in r.stderr
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "000000.torch").write_bytes(b"\x80\x04")  # pixelSplat chunk: never unpickled
    r = cli(
        *["benchmark", "fin3r-table3", "--model", "vggt_tiny", "--allow-random-init"],
        *["--data", f"re10k={tmp_path}", "--out", tmp_path / "t3b"],
    )
    assert r.returncode == 2 and "000000.torch: pixelSplat .torch chunks are pickles" in r.stderr
    r = cli(
        "benchmark",
        "fin3r-table5",
        "--model",
        "vggt_tiny",
        "--allow-random-init",
        "--data",
        f"scannet={tmp_path}",
        "--out",
        tmp_path / "t5",
    )
    assert r.returncode == 2 and "unknown dataset 'scannet'" in r.stderr
    r = cli(
        "benchmark",
        "fin3r-table2",
        "--model",
        "vggt_tiny",
        "--allow-random-init",
        "--data",
        f"scannet1500={tmp_path}",
        "--out",
        tmp_path / "t2",
    )
    assert r.returncode == 2 and "test.npz: file not found" in r.stderr
    r = cli("benchmark", "--list")
    assert all(f"fin3r-table{i}" in r.stdout for i in range(1, 7))


def test_fin3r_table2_scannet1500_camera_head_and_procrustes(cli, tmp_path):
    from fin3r_eval_fixtures import write_scannet1500

    root = write_scannet1500(tmp_path / "sn")
    for model, size in (("vggt_tiny", "56"), ("dust3r_tiny", "64")):
        out = tmp_path / f"t2_{model}"
        r = cli(
            "benchmark",
            "fin3r-table2",
            "--model",
            model,
            "--allow-random-init",
            "--size",
            size,
            "--data",
            f"scannet1500={root}",
            "--out",
            out,
        )
        assert r.returncode == 0, r.stderr
        got = {x["metric"]: x for x in _rows(out)}
        assert set(got) == {"auc@5", "auc@10", "auc@20"}
        vals = [float(got[m]["value"]) for m in ("auc@5", "auc@10", "auc@20")]
        assert 0 <= vals[0] <= vals[1] <= vals[2] <= 100  # AUC grows with the threshold
    assert got["auc@5"]["paper"] == "31.61"  # DUSt3R family, Table 2


def test_fin3r_table4_bonn_video_depth(cli, tmp_path):
    from fin3r_eval_fixtures import write_bonn

    root = write_bonn(tmp_path / "bonn", n=3)
    out = tmp_path / "t4"
    r = cli(
        "benchmark",
        "fin3r-table4",
        "--model",
        "vggt_tiny",
        "--allow-random-init",
        "--size",
        "28",
        "--limit",
        "2",
        "--data",
        f"bonn={root}",
        "--out",
        out,
    )
    assert r.returncode == 0, r.stderr
    got = {x["metric"]: x for x in _rows(out)}
    assert set(got) == {"rel", "delta1", "rel_ss", "delta1_ss", "rel_metric", "delta1_metric"}
    assert 0 <= float(got["rel_ss"]["value"]) and 0 <= float(got["delta1"]["value"]) <= 100


def test_fin3r_table4_robustmvd_eth3d_and_tanks_and_temples(cli, tmp_path):
    from fin3r_eval_fixtures import write_robustmvd

    eth = write_robustmvd(tmp_path / "eth3d", "eth3d", n_keys=2, views=3)
    tnt = write_robustmvd(tmp_path / "tnt", "tanks_and_temples", scenes=("Barn",), n_keys=1, views=3)
    out = tmp_path / "t4m"
    args = ["benchmark", "fin3r-table4", "--model", "vggt_tiny", "--allow-random-init", "--size", "28"]
    args += ["--adapter", _adapter(tmp_path, "vggt_tiny")]
    args += ["--data", f"eth3d={eth}", "--data", f"tanks_and_temples={tnt}", "--out", out]
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    got = {(x["dataset"], x["mode"], x["metric"]): x for x in _rows(out)}
    for ds in ("eth3d", "tanks_and_temples"):
        for mode in ("base", "adapter"):
            assert 0 <= float(got[(ds, mode, "rel")]["value"]) and 0 <= float(
                got[(ds, mode, "rel_ss")]["value"]
            )
            assert 0 <= float(got[(ds, mode, "delta1")]["value"]) <= 100
    assert got[("eth3d", "base", "rel")]["paper"] == "0.044"  # VGGT family, Table 4
    assert got[("tanks_and_temples", "adapter", "rel")]["paper"] == "0.115"
    assert got[("eth3d", "base", "rel")]["value"] != got[("eth3d", "adapter", "rel")]["value"]
    res = __import__("json").loads((out / "cells" / "eth3d__base" / "result.json").read_text())
    assert res["metrics"]["n_samples"] == 2
    # a frame named by the sample list is missing: one line naming it, exit 2, the other dataset still scored
    (eth / "courtyard" / "images" / "dslr_images" / "DSC_0201.JPG").unlink()
    r = cli(
        *args[: args.index("--adapter")],
        "--data",
        f"eth3d={eth}",
        "--data",
        f"tanks_and_temples={tnt}",
        "--out",
        tmp_path / "t4m_bad",
    )
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "DSC_0201.JPG: file not found (named by eth3d.robustmvd.mvd.pickle" in r.stderr
    bad = {(x["dataset"], x["metric"]): x["value"] for x in _rows(tmp_path / "t4m_bad")}
    assert bad[("eth3d", "rel")] == "" and bad[("tanks_and_temples", "rel")] != ""


def test_fin3r_table3_re10k_multi_view_pose(cli, tmp_path):
    from fin3r_eval_fixtures import write_re10k

    root = write_re10k(tmp_path / "re10k", n=6)
    for model, size in (("vggt_tiny", "28"), ("dust3r_tiny", "32")):
        out = tmp_path / f"t3_{model}"
        args = ["benchmark", "fin3r-table3", "--model", model, "--allow-random-init", "--size", size]
        args += ["--niter", "5", "--data", f"re10k={root}", "--out", out]
        if model == "vggt_tiny":
            args += ["--adapter", _adapter(tmp_path, model)]
        r = cli(*args)
        assert r.returncode == 0, r.stderr
        got = {(x["mode"], x["metric"]): x for x in _rows(out)}
        modes = ("base", "adapter") if model == "vggt_tiny" else ("base",)
        assert set(got) == {(m, k) for m in modes for k in ("rra@5", "rta@5", "auc@30")}
        assert all(0 <= float(x["value"]) <= 100 for x in got.values())
    assert got[("base", "auc@30")]["paper"] == "62.4"  # DUSt3R family, Table 3
    cell = __import__("json").loads((out / "cells" / "re10k__base" / "result.json").read_text())
    assert cell["metrics"]["n_pairs"] == 2 * 15 and cell["metrics"]["n_sequences"] == 2  # 6 frames: 15 pairs


def test_fin3r_table6_dtu_eth3d_pointmaps(cli, tmp_path):
    from fin3r_eval_fixtures import write_dtu_scan, write_eth3d_scene

    dtu = write_dtu_scan(tmp_path / "dtu", "scan1", n=6)
    eth = write_eth3d_scene(tmp_path / "eth3d", "courtyard", n=6)
    out = tmp_path / "t6"
    args = ["benchmark", "fin3r-table6", "--model", "vggt_tiny", "--allow-random-init", "--size", "28"]
    args += ["--adapter", _adapter(tmp_path, "vggt_tiny"), "--data", f"dtu={dtu}", "--data", f"eth3d={eth}"]
    r = cli(*args, "--out", out)
    assert r.returncode == 0, r.stderr
    got = {(x["dataset"], x["mode"], x["metric"]): x for x in _rows(out)}
    assert set(got) == {
        (d, m, k) for d in ("dtu", "eth3d") for m in ("base", "adapter") for k in ("acc", "comp", "nc")
    }
    for key, row in got.items():
        v = float(row["value"])
        assert v >= 0 and (v <= 1 or key[2] != "nc")
    assert (
        got[("dtu", "base", "acc")]["paper"] == "1.187"
        and got[("eth3d", "adapter", "comp")]["paper"] == "0.17"
    )


def test_fin3r_table6_bad_eth3d_cell_fails_alone(cli, tmp_path):
    from fin3r_eval_fixtures import write_dtu_scan, write_eth3d_scene

    dtu = write_dtu_scan(tmp_path / "dtu", "scan1", n=6)
    eth = write_eth3d_scene(tmp_path / "eth3d", "courtyard", n=6)
    bad = eth / "courtyard" / "ground_truth_depth" / "custom_undistorted" / "DSC_0005.JPG"
    bad.write_bytes(b"\0" * 12)  # 3 floats for a 48x64 image
    out = tmp_path / "t6bad"
    args = ["benchmark", "fin3r-table6", "--model", "vggt_tiny", "--allow-random-init", "--size", "28"]
    r = cli(*args, "--data", f"dtu={dtu}", "--data", f"eth3d={eth}", "--out", out)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "DSC_0005.JPG: 3 float32 values; expected 48x64" in r.stderr
    got = {(x["dataset"], x["metric"]): x["value"] for x in _rows(out)}
    assert got[("dtu", "acc")] != "" and got[("eth3d", "acc")] == ""
