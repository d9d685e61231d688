"""Every benchmark model imports, inspects, and its IR runs like onnxruntime (max rel. error <= 1e-4)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from nfc.benchmarks import MODELS
from nfc.cli import main
from nfc.compiler import Op, run_float, verify
from nfc.compiler.analysis import layer_stats, totals
from nfc.compiler.passes import FRONT_PASSES, run_pipeline
from nfc.frontends.onnx import import_onnx

NAMES = sorted(MODELS)


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / max(np.abs(b).max(), 1e-6))


@pytest.mark.parametrize("name", NAMES)
def test_ir_matches_onnxruntime(benchmark_dir: Path, name: str):
    path = benchmark_dir / f"{name}.onnx"
    graph = import_onnx(path)
    folded = run_pipeline(graph, None, FRONT_PASSES, verify_each=True)
    assert not any(n.op is Op.AFFINE for n in folded.nodes), "BatchNorm must fold into its conv"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    for trial in range(2):
        feeds = {i.name: rng.standard_normal(i.shape).astype(np.float32) for i in session.get_inputs()}
        want = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))
        for g in (graph, folded):
            got = run_float(g, feeds)
            for out, ref in want.items():
                assert got[out].shape == ref.shape
                assert _rel_err(got[out], ref) <= 1e-4, (name, trial, out)


def test_host_ops_are_explicit(benchmark_dir: Path):
    alex = import_onnx(benchmark_dir / "alexnet_small.onnx")
    lrn = [n for n in alex.nodes if n.op is Op.LRN]
    assert len(lrn) == 2 and all(n.on_host for n in lrn)
    digits = import_onnx(benchmark_dir / "digits.onnx")
    stats = layer_stats(digits)
    assert [s.where for s in stats if s.op == "softmax"] == ["host"]
    assert "[host]" in digits.dump()


def test_scene_parsing_macs(benchmark_dir: Path):
    tot = totals(layer_stats(import_onnx(benchmark_dir / "scene_parsing.onnx")))
    assert tot["macs"] == pytest.approx(1.835e9, rel=1e-3)
    assert tot["dense_macs"] > 2 * tot["macs"]  # connection tables: most kernels are zero


@pytest.mark.parametrize("name", ["digits", "scene_parsing", "resnet18", "mobilenet_v2_dynamo"])
def test_inspect_cli(benchmark_dir: Path, name: str, capsys):
    path = benchmark_dir / f"{name}.onnx"
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"model {path}: inputs input 1x")
    assert "GOP per inference" in text
    assert main(["inspect", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["totals"]["layers"] == len(doc["layers"]) > 0
    assert {layer["where"] for layer in doc["layers"]} <= {"grid", "host", "memory"}
    assert doc["totals"]["gop"] == pytest.approx(sum(layer["ops"] for layer in doc["layers"]) / 1e9)


def test_imports_are_deterministic(benchmark_dir: Path):
    a = import_onnx(benchmark_dir / "mobilenet_v2.onnx").dump()
    b = import_onnx(benchmark_dir / "mobilenet_v2.onnx").dump()
    assert a == b
    verify(import_onnx(benchmark_dir / "mobilenet_v2.onnx"))
