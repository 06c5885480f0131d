"""The safe pickle parser: rmvd-like sample lists parse to inert values, numpy arrays decode, nothing runs."""

from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import pytest

from tune3d.data.benchmarks.safe_pickle import PickledGlobal, PickledObject, parse_pickle, parse_pickle_bytes
from tune3d.errors import Tune3DError


def _rmvd_module(monkeypatch) -> types.ModuleType:
    """Stand-ins for rmvd.data.eth3d's classes (same names and attributes), importable for pickle.dumps."""
    mod = types.ModuleType("rmvd.data.eth3d")

    class ETH3DImage:
        def __init__(self, path):
            self.path = path

    class ETH3DDepth:
        def __init__(self, path):
            self.path = path

    class ETH3DSample:
        def __init__(self, base, name):
            self.base = base
            self.name = name
            self.data = {}

    for c in (ETH3DImage, ETH3DDepth, ETH3DSample):
        c.__module__ = mod.__name__
        c.__qualname__ = c.__name__
        setattr(mod, c.__name__, c)
    for name in ("rmvd", "rmvd.data"):  # pickle imports the module by name; parents must resolve
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return mod


def test_rmvd_like_sample_list_parses_inertly(monkeypatch, tmp_path):
    mod = _rmvd_module(monkeypatch)
    rng = np.random.default_rng(0)
    poses = [rng.standard_normal((4, 4)).astype(np.float32) for _ in range(3)]
    intr = [np.array([[50.0, 0, 16], [0, 51.0, 12], [0, 0, 1]], np.float32) for _ in range(3)]
    s = mod.ETH3DSample("courtyard", "courtyard/key000001")
    s.data = {
        "images": [mod.ETH3DImage(f"images/dslr_images/DSC_{i:04d}.JPG") for i in range(3)],
        "depth": mod.ETH3DDepth("ground_truth_depth/dslr_images/DSC_0000.JPG"),
        "poses": poses,
        "intrinsics": intr,
        "keyview_idx": 0,
    }
    path = tmp_path / "eth3d.robustmvd.mvd.pickle"
    path.write_bytes(pickle.dumps([s, s], protocol=4))  # rmvd's files are protocol 4, memo-shared classes
    out = parse_pickle(path)
    assert isinstance(out, list) and len(out) == 2 and out[0] is out[1]
    rec = out[0]
    assert isinstance(rec, PickledObject) and (rec.module, rec.name) == ("rmvd.data.eth3d", "ETH3DSample")
    assert rec.state["base"] == "courtyard" and rec.state["name"] == "courtyard/key000001"
    d = rec.state["data"]
    assert [im.state["path"] for im in d["images"]] == [
        f"images/dslr_images/DSC_{i:04d}.JPG" for i in range(3)
    ]
    assert d["images"][0].name == "ETH3DImage" and d["depth"].name == "ETH3DDepth"
    assert d["keyview_idx"] == 0
    for got, want in zip(d["poses"] + d["intrinsics"], poses + intr):
        assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.flags.writeable
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(12, dtype=np.int64).reshape(3, 4),
        np.arange(6, dtype=np.uint8),
        np.array([True, False, True]),
        np.linspace(0, 1, 6).reshape(2, 3).astype(">f8"),  # big-endian
        np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)),
        np.zeros((0, 3), np.float32),
        np.float32(2.5),  # numpy scalar
        np.int64(7),
    ],
)
def test_numpy_arrays_and_scalars_decode(arr):
    got = parse_pickle_bytes(pickle.dumps({"a": arr}, protocol=4))["a"]
    assert got.dtype == arr.dtype and np.shape(got) == np.shape(arr)
    np.testing.assert_array_equal(got, arr)


def test_protocol2_arrays_decode():  # protocol 2 spells bytes as _codecs.encode(text, "latin1")
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = parse_pickle_bytes(pickle.dumps([arr, b"\x00\xff"], protocol=2))
    np.testing.assert_array_equal(got[0], arr)
    assert got[0].dtype == np.float32 and got[1] == b"\x00\xff"


def test_object_array_stays_inert():
    got = parse_pickle_bytes(pickle.dumps(np.array([{"x": 1}], dtype=object), protocol=4))
    assert isinstance(got, PickledObject) and got.name == "_reconstruct"


def test_malicious_reduce_is_not_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    for data in (
        pickle.dumps({"x": Evil()}, protocol=4),
        pickle.dumps([Evil()], protocol=2),
        f"cos\nsystem\n(V touch {marker}\ntR.".encode(),  # protocol 0 GLOBAL + REDUCE
    ):
        out = parse_pickle_bytes(data)
        rec = out["x"] if isinstance(out, dict) else out[0] if isinstance(out, list) else out
        assert isinstance(rec, PickledObject) and rec.name == "system"
        assert rec.module in ("os", "posix") and str(marker) in rec.args[0]
    assert not marker.exists()
    g = parse_pickle_bytes(pickle.dumps(os.system, protocol=4))
    assert g == PickledGlobal(os.system.__module__, "system")


@pytest.mark.parametrize(
    "data,what",
    [
        (b"\x80\x02\x82\x01.", "EXT1"),  # extension registry
        (b"\x80\x02K\x01Q.", "BINPERSID"),  # persistent id
        (b"(ios\nsystem\nV x\n.", "INST"),  # protocol-0 instance creation
    ],
)
def test_unhandled_opcodes_are_refused_in_one_line(tmp_path, data, what):
    p = tmp_path / "bad.pickle"
    p.write_bytes(data)
    with pytest.raises(Tune3DError) as e:
        parse_pickle(p)
    msg = str(e.value)
    assert msg.startswith(str(p)) and what in msg and "\n" not in msg


def test_truncated_pickle_is_one_line_error(tmp_path):
    p = tmp_path / "cut.pickle"
    p.write_bytes(pickle.dumps({"a": [1, 2, 3]}, protocol=4)[:-5])
    with pytest.raises(Tune3DError, match="cut.pickle: malformed pickle"):
        parse_pickle(p)
