"""Small networks that together use every kind of grid layer and pass (not a test module).

``build_net(name, folder)`` writes ``<name>.onnx`` with onnx.helper and returns the imported IR.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nfc.compiler.ir import Graph
from nfc.frontends.onnx import import_onnx


def _w(rng: np.random.Generator, *shape: int) -> np.ndarray:
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)


def _model(nodes, x_shape, y_name, inits, opset=13):
    g = helper.make_graph(
        nodes,
        "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info(y_name, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    inferred = onnx.shape_inference.infer_shapes(m)
    m.graph.output[0].CopyFrom(inferred.graph.output[0])
    return m


def _conv_pool_linear(rng):
    inits = {
        "w1": _w(rng, 6, 3, 3, 3),
        "b1": _w(rng, 6),
        "w2": _w(rng, 8, 6, 5, 5),
        "b2": _w(rng, 8),
        "wf": _w(rng, 10, 8 * 2 * 3),
        "bf": _w(rng, 10),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], strides=[2, 2], pads=[2, 2, 2, 2]),
        helper.make_node("Tanh", ["c2"], ["t2"]),
        helper.make_node("Flatten", ["t2"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1),
    ]
    return _model(nodes, (1, 3, 8, 12), "y", inits)


def _residual(rng):
    c = 4
    inits = {
        "w1": _w(rng, c, c, 3, 3),
        "w2": _w(rng, c, c, 3, 3),
        "s": np.abs(_w(rng, c)) + 0.5,
        "bb": _w(rng, c),
        "m": _w(rng, c) * 0.1,
        "v": np.abs(_w(rng, c)) + 0.5,
        "wf": _w(rng, 5, c),
        "bf": _w(rng, 5),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "s", "bb", "m", "v"], ["n1"]),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "x"], ["a"]),
        helper.make_node("Relu", ["a"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1),
    ]
    return _model(nodes, (1, c, 7, 9), "y", inits)


def _depthwise(rng):
    inits = {
        "w1": _w(rng, 8, 3, 1, 1),
        "wd": _w(rng, 8, 1, 3, 3),
        "w3": _w(rng, 4, 8, 3, 3),
        "lo": np.array(0, np.float32),
        "hi": np.array(6, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"]),
        helper.make_node("Conv", ["c1", "wd"], ["d"], group=8, pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["d", "lo", "hi"], ["r6"]),
        helper.make_node(
            "AveragePool",
            ["r6"],
            ["ap"],
            kernel_shape=[2, 2],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
            count_include_pad=1,
        ),
        helper.make_node("Conv", ["ap", "w3"], ["y"], dilations=[2, 2], pads=[2, 2, 2, 2]),
    ]
    return _model(nodes, (1, 3, 10, 12), "y", inits)


def _big_kernel(rng):
    inits = {"w1": _w(rng, 3, 2, 11, 11), "w2": _w(rng, 2, 2, 3, 3)}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[5, 5, 5, 5]),
        helper.make_node("Abs", ["c1"], ["a1"]),
        helper.make_node("Conv", ["x", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Concat", ["a1", "c2"], ["cat"], axis=1),
        helper.make_node("LeakyRelu", ["cat"], ["y"], alpha=0.125),
    ]
    return _model(nodes, (1, 2, 13, 12), "y", inits)


def _upsample_pad(rng):
    inits = {
        "w1": _w(rng, 3, 2, 3, 3),
        "w2": _w(rng, 4, 3, 3, 3),
        "sl": (np.abs(_w(rng, 4, 1, 1)) * 0.3),
        "sc": np.array([1, 1, 2, 2], np.float32),
        "pads": np.array([0, 0, 1, 2, 0, 0, 1, 0], np.int64),
        "pv": np.array(0.5, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Resize", ["c1", "", "sc"], ["u"], mode="nearest"),
        helper.make_node("Pad", ["u", "pads", "pv"], ["pd"], mode="constant"),
        helper.make_node("Conv", ["pd", "w2"], ["c2"]),
        helper.make_node("PRelu", ["c2", "sl"], ["pr"]),
        helper.make_node("Softmax", ["pr"], ["y"], axis=1),
    ]
    return _model(nodes, (1, 2, 5, 6), "y", inits)


def _wide(rng):
    """A map wider than the tiny target's 64-word line buffers: column strips."""
    inits = {"w1": _w(rng, 2, 1, 3, 3), "w2": _w(rng, 2, 2, 3, 3)}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c1"], ["s1"]),
        helper.make_node("MaxPool", ["s1"], ["p"], kernel_shape=[3, 3], strides=[1, 1]),
        helper.make_node("Conv", ["p", "w2"], ["y"], strides=[1, 2]),
    ]
    return _model(nodes, (1, 1, 7, 150), "y", inits)


def _pool_act(rng):
    """Average pooling between two mappers (as the face detector has it): on a target with pooling
    units, the pooling unit pools, then a map pass applies the second activation. Odd map sizes: the
    pooling drops a trailing row and column."""
    inits = {"w1": _w(rng, 3, 2, 3, 3), "b1": _w(rng, 3), "w2": _w(rng, 2, 3, 2, 2)}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"]),
        helper.make_node("Tanh", ["c1"], ["t1"]),
        helper.make_node("AveragePool", ["t1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Tanh", ["p1"], ["t2"]),
        helper.make_node("Conv", ["t2", "w2"], ["y"]),
    ]
    return _model(nodes, (1, 2, 9, 11), "y", inits)


def _shared_input(rng):
    """Four maps from one input map: with several write ports, one read stream feeds several tiles."""
    inits = {"w1": _w(rng, 4, 1, 3, 3), "b1": _w(rng, 4), "w2": _w(rng, 2, 4, 2, 2)}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["y"]),
    ]
    return _model(nodes, (1, 1, 10, 12), "y", inits)


def _packed(rng):
    """For a target whose convolvers pack two kernels (tile.lanes = 2): a layer with a mapper and 2x2
    max pooling, packed to its end (each lane through its own mapper and pooling unit), then a linear
    3x3 layer whose output maps pair up, its chains long enough to need a partial sum."""
    inits = {"w0": _w(rng, 6, 6, 3, 3), "b0": _w(rng, 6), "w1": _w(rng, 4, 6, 3, 3), "b1": _w(rng, 4)}
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"]),
        helper.make_node("MaxPool", ["r0"], ["p0"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p0", "w1", "b1"], ["y"], pads=[1, 1, 1, 1]),
    ]
    return _model(nodes, (1, 6, 10, 12), "y", inits)


def _acc(rng):
    """For a target with accumulation buffers (tile.acc_words, tests/targets/acc.toml: 64 words a
    lane): two packed layers whose chains (6 and 8 terms) keep their partial sums on the tiles, the
    first with a mapper and 2x2 max pooling, maps small enough for the buffers (6x8, then 3x4)."""
    inits = {"w0": _w(rng, 8, 6, 3, 3), "b0": _w(rng, 8), "w1": _w(rng, 8, 8, 3, 3), "b1": _w(rng, 8)}
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"]),
        helper.make_node("MaxPool", ["r0"], ["p0"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p0", "w1", "b1"], ["y"], pads=[1, 1, 1, 1]),
    ]
    return _model(nodes, (1, 6, 6, 8), "y", inits)


#: Networks for particular targets, kept apart from NETS (whose seeds follow their sorted names).
TARGET_NETS = {"packed": _packed, "acc": _acc}

NETS = {
    "conv_pool_linear": _conv_pool_linear,
    "shared_input": _shared_input,
    "pool_act": _pool_act,
    "residual": _residual,
    "depthwise": _depthwise,
    "big_kernel": _big_kernel,
    "upsample_pad": _upsample_pad,
    "wide": _wide,
}


def build_net(name: str, folder: Path) -> Graph:
    """Write network ``name`` as ONNX into ``folder`` and import it."""
    if name in TARGET_NETS:
        model = TARGET_NETS[name](np.random.default_rng(5))
    else:
        model = NETS[name](np.random.default_rng(sorted(NETS).index(name)))
    onnx.checker.check_model(model)
    path = Path(folder) / f"{name}.onnx"
    onnx.save(model, path)
    return import_onnx(path)
