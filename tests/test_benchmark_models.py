"""Tests of the benchmark networks (nfc.benchmarks) and their ONNX exports.

All models are built once per module into a temporary folder (about 25-30 s on two cores).
torch is a development dependency that is always installed for the tests, so it is imported
plainly: a missing torch must fail loudly, not skip.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from nfc.benchmarks import MODELS, build_model, build_models, connection_table

REPO = Path(__file__).resolve().parents[1]
SCENE_PARSING_USEFUL_MACS = 57.6e6 + 420.5e6 + 1357e6  # = 1.835 GMAC (ARCHITECTURE.md, section 1)


@pytest.fixture(scope="module")
def built(benchmark_build: tuple[Path, list[Path], list[str]]) -> tuple[Path, list[Path], list[str]]:
    """All benchmark models, built once per test session (conftest): (folder, paths, progress lines)."""
    return benchmark_build


@pytest.fixture(scope="module")
def model_dir(built: tuple[Path, list[Path], list[str]]) -> Path:
    return built[0]


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _static_shape(value: onnx.ValueInfoProto) -> tuple[int, ...]:
    dims = value.type.tensor_type.shape.dim
    assert all(d.HasField("dim_value") for d in dims), f"{value.name} has a symbolic dimension"
    return tuple(d.dim_value for d in dims)


def _default_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _conv_kernel_stats(path: Path) -> list[tuple[np.ndarray, tuple[int, ...]]]:
    """For each Conv node in order: (weights, output shape), shapes from onnx shape inference."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True)
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    shapes = {v.name: _static_shape(v) for v in [*model.graph.value_info, *model.graph.output]}
    return [(weights[n.input[1]], shapes[n.output[0]]) for n in model.graph.node if n.op_type == "Conv"]


def _useful_macs(weight: np.ndarray, out_shape: tuple[int, ...]) -> int:
    """MACs of one (ungrouped) Conv counting only (output, input) kernel pairs that are not all zero."""
    nonzero_pairs = int(np.count_nonzero(np.any(weight != 0, axis=(2, 3))))
    kh, kw = weight.shape[2:]
    return nonzero_pairs * kh * kw * out_shape[2] * out_shape[3]


def _fan_ins(weight: np.ndarray) -> set[int]:
    """The distinct numbers of input maps with a non-zero kernel, over the output maps."""
    return set(np.count_nonzero(np.any(weight != 0, axis=(2, 3)), axis=1).tolist())


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


def test_registry_entries() -> None:
    expected = {
        "lenet5", "lenet5_dynamo", "face_detector", "neuflow_test", "scene_parsing", "scene_parsing_pyramid",
        "digits",
        "resnet18", "mobilenet_v2", "mobilenet_v2_dynamo", "alexnet_small", "vgg16_small",
    }  # fmt: skip
    assert set(MODELS) == expected
    for name, spec in MODELS.items():
        assert spec.name == name
        assert spec.input_shape[0] == 1 and len(spec.input_shape) == 4
        assert spec.exporter in ("torchscript", "dynamo")
        assert (spec.exporter == "dynamo") == name.endswith("_dynamo")
        assert spec.description
    assert {s.opset for s in MODELS.values() if s.exporter == "torchscript"} >= {11, 13, 17}
    with pytest.raises(dataclasses.FrozenInstanceError):
        MODELS["lenet5"].opset = 9  # type: ignore[misc]


def test_connection_table() -> None:
    table = connection_table(8, 32, 4)
    assert len(table) == 32 and all(len(set(t)) == 4 for t in table)
    uses = np.bincount([i for t in table for i in t], minlength=8)
    assert set(uses.tolist()) == {16}
    with pytest.raises(ValueError):
        connection_table(3, 4, 4)


def test_unknown_model_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="no_such_net"):
        build_models(tmp_path, only=["no_such_net"], progress=None)
    assert not list(tmp_path.iterdir())


def test_import_does_not_need_torch() -> None:
    code = "import sys; sys.modules['torch'] = None; import nfc.benchmarks as b; print(len(b.MODELS))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(MODELS))


# ---------------------------------------------------------------------------------------------
# The exported files
# ---------------------------------------------------------------------------------------------


def test_build_writes_every_file(built: tuple[Path, list[Path], list[str]]) -> None:
    out, paths, lines = built
    expected: list[str] = []
    for name in MODELS:
        expected += [f"{name}.onnx", *(["digits_test.npz"] if name == "digits" else [])]
    assert [p.name for p in paths] == expected
    assert all(p.parent == out for p in paths)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths), "temporary files left over"
    assert len(lines) == len(MODELS) + 1 and "built" in lines[-1]


@pytest.mark.parametrize("name", list(MODELS))
def test_onnx_checker_and_interface(model_dir: Path, name: str) -> None:
    spec = MODELS[name]
    path = model_dir / spec.filename
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    assert _default_opset(model) == spec.opset
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == list(spec.outputs)
    assert _static_shape(model.graph.input[0]) == spec.input_shape
    assert _static_shape(model.graph.output[0])[0] == 1
    for tensor in model.graph.initializer:
        assert tensor.data_location == onnx.TensorProto.DEFAULT, f"{tensor.name} stored outside the file"


@pytest.mark.parametrize("name", list(MODELS))
def test_onnxruntime_matches_torch(model_dir: Path, name: str) -> None:
    """onnxruntime runs each file on random input; outputs are finite, O(1) and match PyTorch."""
    spec = MODELS[name]
    x = np.random.default_rng(1).standard_normal(spec.input_shape).astype(np.float32)
    ys = _session(model_dir / spec.filename).run(None, {"input": x})
    with torch.no_grad():
        references = build_model(name)(torch.from_numpy(x))
    if isinstance(references, torch.Tensor):
        references = (references,)
    assert len(ys) == len(references) == len(spec.outputs)
    for y, reference in zip(ys, (r.numpy() for r in references), strict=True):
        assert np.all(np.isfinite(y))
        assert 0.01 < float(np.abs(y).max()) < 100.0, "activations collapsed or exploded"
        assert y.shape == reference.shape
        np.testing.assert_allclose(y, reference, rtol=1e-4, atol=1e-4 * float(np.abs(reference).max()))


def test_scene_parsing_pyramid(model_dir: Path) -> None:
    """Three scales of the same network (shared weights): the first is scene_parsing itself, the
    others scene_parsing of the frame averaged over 2x2 and 4x4 blocks."""
    x = np.random.default_rng(2).standard_normal((1, 3, 240, 320)).astype(np.float32)
    pyramid = _session(model_dir / "scene_parsing_pyramid.onnx").run(None, {"input": x})
    (single,) = _session(model_dir / "scene_parsing.onnx").run(None, {"input": x})
    assert [y.shape for y in pyramid] == [(1, 256, 49, 69), (1, 256, 19, 29), (1, 256, 4, 9)]
    np.testing.assert_allclose(pyramid[0], single, rtol=1e-5, atol=1e-5)
    features = build_model("scene_parsing")
    for y, f in zip(pyramid[1:], (2, 4), strict=True):
        scaled = x.reshape(1, 3, 240 // f, f, 320 // f, f).mean(axis=(3, 5))
        with torch.no_grad():
            want = features(torch.from_numpy(scaled)).numpy()
        np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    stages = _conv_kernel_stats(model_dir / "scene_parsing_pyramid.onnx")
    assert len(stages) == 9 and all(np.array_equal(stages[k][0], stages[k % 3][0]) for k in range(9))


def test_scene_parsing_useful_macs(model_dir: Path) -> None:
    stages = _conv_kernel_stats(model_dir / "scene_parsing.onnx")
    assert [w.shape for w, _ in stages] == [(16, 3, 7, 7), (64, 16, 7, 7), (256, 64, 7, 7)]
    assert [_fan_ins(w) for w, _ in stages] == [{1}, {8}, {32}]
    assert [shape[2:] for _, shape in stages] == [(234, 314), (111, 151), (49, 69)]
    macs = [_useful_macs(w, shape) for w, shape in stages]
    for got, want in zip(macs, (57.6e6, 420.5e6, 1357e6), strict=True):
        assert got == pytest.approx(want, rel=1e-3)
    assert sum(macs) == pytest.approx(SCENE_PARSING_USEFUL_MACS, rel=1e-3)
    # stage 1's YUV table: maps 0-7 see Y, 8-11 see U, 12-15 see V
    seen = np.any(stages[0][0] != 0, axis=(2, 3)).argmax(axis=1)
    assert seen.tolist() == [0] * 8 + [1] * 4 + [2] * 4


def test_neuflow_connection_tables(model_dir: Path) -> None:
    face = _conv_kernel_stats(model_dir / "face_detector.onnx")
    assert [w.shape for w, _ in face] == [(8, 1, 5, 5), (32, 8, 7, 7), (2, 32, 1, 1)]
    assert _fan_ins(face[1][0]) == {4}
    assert face[-1][1] == (1, 2, 29, 41)
    test_net = _conv_kernel_stats(model_dir / "neuflow_test.onnx")
    assert [_fan_ins(w) for w, _ in test_net] == [{1}, {4}]


def test_batchnorm_is_exported_with_nontrivial_statistics(model_dir: Path) -> None:
    model = onnx.load(str(model_dir / "resnet18.onnx"))
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    bns = [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    assert len(bns) == 20
    for node in bns:
        scale, bias, mean, var = (weights[i] for i in node.input[1:5])
        assert not np.allclose(scale, 1) and not np.allclose(bias, 0)
        assert not np.allclose(mean, 0) and not np.allclose(var, 1)


def test_digits_accuracy(model_dir: Path) -> None:
    data = np.load(model_dir / "digits_test.npz")
    x, y = data["X_test"], data["y_test"]
    assert x.dtype == np.float32 and x.shape[1:] == (1, 8, 8) and len(x) == len(y) == 360
    assert 0.0 <= x.min() and x.max() <= 1.0
    session = _session(model_dir / "digits.onnx")
    probs = np.concatenate([session.run(None, {"input": x[i : i + 1]})[0] for i in range(len(x))])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)  # the softmax is in the graph
    accuracy = float(np.mean(probs.argmax(axis=1) == y))
    assert accuracy >= 0.9


def test_dynamo_variants(model_dir: Path) -> None:
    for name in ("lenet5", "mobilenet_v2"):
        variant = MODELS[f"{name}_dynamo"]
        assert variant.exporter == "dynamo" and variant.builder == MODELS[name].builder
        model = onnx.load(str(model_dir / variant.filename))
        assert _default_opset(model) >= 18
        assert not list(model_dir.glob(f"{variant.filename}.data")), "external data written"


def test_build_is_deterministic(tmp_path: Path) -> None:
    first = build_models(tmp_path / "a", only=["lenet5"], progress=None)
    second = build_models(tmp_path / "b", only=["lenet5"], progress=None)
    assert [p.name for p in first] == [p.name for p in second] == ["lenet5.onnx"]
    assert first[0].read_bytes() == second[0].read_bytes()


def test_command_line(tmp_path: Path) -> None:
    script = REPO / "scripts" / "make_models.py"
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "--only", "face_detector,lenet5"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face_detector.onnx", "lenet5.onnx"]
    assert "face_detector" in done.stdout
    bad = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "--only", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "nope" in bad.stderr
