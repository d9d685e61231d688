"""Helpers for the ONNX frontend tests: build tiny models with ``onnx.helper`` and hold nfc's float
reference executor to onnxruntime on them.

Not a test module (no ``test_`` prefix): ``tests/test_onnx_*.py`` import it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from nfc.compiler import Graph, run_float, verify
from nfc.frontends.onnx import import_onnx

__all__ = [
    "TOL",
    "X_SHAPE",
    "check_against_ort",
    "const_node",
    "make_model",
    "rel_err",
    "rng",
    "run_ort",
    "weights",
]

#: Largest relative error allowed between nfc's float executor and onnxruntime.
TOL = 1e-4
#: The default input: one small, odd-sized image with 3 channels.
X_SHAPE = (1, 3, 9, 11)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def weights(gen: np.random.Generator, *shape: int, scale: float = 0.5) -> np.ndarray:
    """Random float32 weights of ``shape``."""
    return (gen.standard_normal(shape) * scale).astype(np.float32)


def const_node(name: str, value: np.ndarray) -> onnx.NodeProto:
    """A ``Constant`` node producing ``value`` as tensor ``name``."""
    return helper.make_node(
        "Constant", [], [name], name=f"const_{name}", value=numpy_helper.from_array(np.asarray(value), name)
    )


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Mapping[str, Sequence[int | str]] | None = None,
    outputs: Iterable[str] | Mapping[str, Sequence[int | str]] = ("y",),
    inits: Mapping[str, np.ndarray] | None = None,
    opset: int = 13,
    extra_opsets: Mapping[str, int] | None = None,
    name: str = "tiny",
) -> onnx.ModelProto:
    """A model of ``nodes`` with float inputs ``{name: shape}`` (default ``x`` of :data:`X_SHAPE`),
    float outputs (``{name: shape}``, or names whose shapes onnx or onnxruntime infer), initializers ``{name: array}`` and one default-domain opset.

    The IR version is the lowest one the opset allows, as exporters of the time wrote it; before
    IR version 4 the initializers are graph inputs as well.
    """
    inputs = {"x": X_SHAPE} if inputs is None else inputs
    shapes = dict(outputs) if isinstance(outputs, Mapping) else dict.fromkeys(outputs)
    graph = helper.make_graph(
        list(nodes),
        name,
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(s)) for k, s in inputs.items()],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, shapes.get(o)) for o in shapes],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()],
    )
    opsets = [helper.make_opsetid("", opset)]
    opsets += [helper.make_opsetid(d, v) for d, v in (extra_opsets or {}).items()]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="nfc-tests")
    model.ir_version = helper.find_min_ir_version_for(opsets[:1])
    if model.ir_version < 4:  # old models list their initializers among the graph inputs too
        graph.input.extend(
            helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in graph.initializer
        )
        model.graph.CopyFrom(graph)
    if isinstance(outputs, Mapping):
        return model
    # the checker wants every graph output to have a shape: let onnx fill them in, or else
    # onnxruntime (onnx does not infer through shape arithmetic on initializers)
    shaped = onnx.shape_inference.infer_shapes(model, data_prop=True)
    for out, inferred in zip(model.graph.output, shaped.graph.output, strict=True):
        out.CopyFrom(inferred)
    if not all(o.type.tensor_type.HasField("shape") for o in model.graph.output):
        results = run_ort(model, random_feeds(model))
        for out in model.graph.output:
            out.CopyFrom(helper.make_tensor_value_info(out.name, TensorProto.FLOAT, results[out.name].shape))
    return model


def run_ort(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``model`` with onnxruntime on the CPU, graph optimisations off (a plain reference)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, dict(feeds)), strict=True))


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """``max|a - b| / max(max|b|, 1e-6)``: the error of ``a`` relative to the reference ``b``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-6))


def random_feeds(model: onnx.ModelProto, seed: int = 1) -> dict[str, np.ndarray]:
    gen = rng(seed)
    init_names = {i.name for i in model.graph.initializer}
    feeds = {}
    for inp in model.graph.input:
        if inp.name in init_names:
            continue
        shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        feeds[inp.name] = gen.standard_normal(shape).astype(np.float32)
    return feeds


def check_against_ort(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray] | None = None,
    seed: int = 1,
    reference: Mapping[str, np.ndarray] | None = None,
) -> Graph:
    """Import ``model``, verify the IR, run it in float and compare every output with onnxruntime
    (or with ``reference`` when given): shapes equal and relative error at most :data:`TOL`.

    Returns the imported graph for further checks.
    """
    onnx.checker.check_model(model, full_check=True)
    graph = import_onnx(model)
    verify(graph)
    feeds = random_feeds(model, seed) if feeds is None else dict(feeds)
    want = run_ort(model, feeds) if reference is None else dict(reference)
    got = run_float(graph, feeds)
    assert set(got) == set(want), f"outputs {sorted(got)} != onnxruntime's {sorted(want)}"
    for name, ref in want.items():
        assert got[name].shape == ref.shape, f"output {name!r}: shape {got[name].shape} != {ref.shape}"
        assert got[name].dtype == np.float32
        err = rel_err(got[name], ref)
        assert err <= TOL, f"output {name!r}: relative error {err:.3g} > {TOL}"
    return graph
