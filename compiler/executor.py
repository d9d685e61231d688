"""The float reference executor of the IR, in numpy (float64 internally).

It defines what every op means; each later pass is checked by running the graph before and after
it on the same input. ``run_float`` takes and returns ONNX-shaped (batched) arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from nfc.compiler.ir import Graph, Node, Op
from nfc.errors import NfcError

__all__ = ["run_float", "eval_node", "activation", "BINARY_NUMPY"]


def _pad_hw(x: np.ndarray, pads: tuple[int, int, int, int], value: float = 0.0) -> np.ndarray:
    pt, pl, pb, pr = pads
    if not (pt or pl or pb or pr):
        return x
    return np.pad(x, ((0, 0), (pt, pb), (pl, pr)), constant_values=value)


def _windows(x: np.ndarray, kernel, stride, dilation=(1, 1)) -> np.ndarray:
    """(C, H, W) -> (C, OH, OW, kh, kw) view of the sliding windows."""
    kh, kw = kernel
    dh, dw = dilation
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    v = sliding_window_view(x, (span_h, span_w), axis=(1, 2))
    return v[:, :: stride[0], :: stride[1], ::dh, ::dw]


def _conv(node: Node, x: np.ndarray) -> np.ndarray:
    w = node.param("weight").astype(np.float64)
    b = node.param("bias").astype(np.float64)
    groups = node.attr("groups")
    xw = _windows(_pad_hw(x, node.attr("pads")), w.shape[2:], node.attr("stride"), node.attr("dilation"))
    out_per_group, in_per_group = w.shape[0] // groups, w.shape[1]
    outs = []
    for g in range(groups):
        xg = xw[g * in_per_group : (g + 1) * in_per_group]
        wg = w[g * out_per_group : (g + 1) * out_per_group]
        outs.append(np.einsum("chwij,ocij->ohw", xg, wg, optimize=True))
    return np.concatenate(outs, axis=0) + b[:, None, None]


def _pool(node: Node, x: np.ndarray) -> np.ndarray:
    kernel, stride, pads = node.attr("kernel"), node.attr("stride"), node.attr("pads")
    if node.op is Op.MAXPOOL:
        return _windows(_pad_hw(x, pads, -np.inf), kernel, stride).max(axis=(3, 4))
    sums = _windows(_pad_hw(x, pads), kernel, stride).sum(axis=(3, 4))
    if node.attr("count_include_pad"):
        return sums / (kernel[0] * kernel[1])
    ones = np.ones((1,) + x.shape[1:])
    counts = _windows(_pad_hw(ones, pads), kernel, stride).sum(axis=(3, 4))
    return sums / counts


def activation(kind: str, x: np.ndarray, node: Node | None = None) -> np.ndarray:
    """The activation ``kind`` applied to ``x`` (constants read from ``node``)."""
    if kind == "relu":
        return np.maximum(x, 0)
    if kind == "leaky_relu":
        return np.where(x >= 0, x, x * node.attr("alpha"))
    if kind == "prelu":
        return np.where(x >= 0, x, x * node.param("slope").astype(np.float64))
    if kind == "tanh":
        return np.tanh(x)
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if kind == "hard_sigmoid":
        return np.clip(node.attr("alpha") * x + node.attr("beta"), 0.0, 1.0)
    if kind == "hard_swish":
        return x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)
    if kind == "clip":
        return np.clip(x, node.attr("min"), node.attr("max"))
    if kind == "abs":
        return np.abs(x)
    raise NfcError(f"unknown activation {kind!r}")


BINARY_NUMPY: Mapping[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "max": np.maximum,
    "min": np.minimum,
}


def _lrn(node: Node, x: np.ndarray) -> np.ndarray:
    size, alpha, beta, bias = (node.attr(k) for k in ("size", "alpha", "beta", "bias"))
    front = (size - 1) // 2  # channels c - floor((size-1)/2) .. c + ceil((size-1)/2), as ONNX says
    sq = np.pad(x * x, ((front, size - 1 - front), (0, 0), (0, 0)))
    acc = sliding_window_view(sq, size, axis=0).sum(axis=-1)
    return x / (bias + alpha / size * acc) ** beta


def _softmax(node: Node, x: np.ndarray) -> np.ndarray:
    axes = tuple(node.attr("axes"))
    e = np.exp(x - x.max(axis=axes, keepdims=True))
    return e / e.sum(axis=axes, keepdims=True)


def eval_node(node: Node, args: list[np.ndarray]) -> np.ndarray:
    """Evaluate one non-input node on float64 arguments.

    Arithmetic is IEEE as in ONNX runtimes: overflow gives inf, division by zero inf or nan,
    silently (numpy would warn, and the test suite turns warnings into errors).
    """
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return _eval(node, args)


def _eval(node: Node, args: list[np.ndarray]) -> np.ndarray:
    op = node.op
    x = args[0] if args else None
    if op is Op.CONV:
        return _conv(node, x)
    if op is Op.LINEAR:
        return node.param("weight").astype(np.float64) @ x + node.param("bias")
    if op in (Op.MAXPOOL, Op.AVGPOOL):
        return _pool(node, x)
    if op is Op.GLOBAL_AVGPOOL:
        return x.mean(axis=(1, 2), keepdims=True)
    if op is Op.GLOBAL_MAXPOOL:
        return x.max(axis=(1, 2), keepdims=True)
    if op is Op.ACT:
        return activation(node.attr("kind"), x, node)
    if op is Op.AFFINE:
        extra = (None,) * (x.ndim - 1)
        scale = node.param("scale").astype(np.float64)[(slice(None),) + extra]
        return x * scale + node.param("shift").astype(np.float64)[(slice(None),) + extra]
    if op is Op.BINARY:
        return BINARY_NUMPY[node.attr("kind")](x, args[1])
    if op is Op.CONST_BINARY:
        c = node.param("const").astype(np.float64)
        fn = BINARY_NUMPY[node.attr("kind")]
        return fn(c, x) if node.attr("reverse") else fn(x, c)
    if op is Op.CONCAT:
        return np.concatenate(args, axis=node.attr("axis"))
    if op is Op.PAD:
        return _pad_hw(x, node.attr("pads"), node.attr("value"))
    if op is Op.RESIZE:
        sh, sw = node.attr("scale")
        return x.repeat(sh, axis=1).repeat(sw, axis=2)
    if op is Op.RESHAPE:
        return x.reshape(node.shape)
    if op is Op.SOFTMAX:
        return _softmax(node, x)
    if op is Op.LRN:
        return _lrn(node, x)
    raise NfcError(f"the float executor has no rule for op {op.value!r} (node {node.name!r})")


def run_float(graph: Graph, inputs: Mapping[str, np.ndarray], keep: bool = False) -> dict[str, np.ndarray]:
    """Run ``graph`` on ONNX-shaped ``inputs`` (by input name) and return ONNX-shaped float32 outputs.

    With ``keep=True`` the result also holds every intermediate tensor (unbatched, float64), keyed
    by node name.
    """
    values: dict[str, np.ndarray] = {}
    for node in graph.inputs:
        if node.name not in inputs:
            raise NfcError(
                f"missing input {node.name!r}; the graph's inputs are "
                f"{', '.join(n.name for n in graph.inputs)}"
            )
        arr = np.asarray(inputs[node.name], dtype=np.float64)
        expected = tuple(node.attr("onnx_shape"))
        if arr.shape != expected:
            raise NfcError(f"input {node.name!r} must have shape {expected}, not {arr.shape}")
        values[node.name] = arr.reshape(node.shape)
    for node in graph.nodes:
        if node.op is Op.INPUT:
            continue
        values[node.name] = eval_node(node, [values[i] for i in node.inputs])
    with np.errstate(over="ignore"):  # beyond float32's range is inf, as in float32 runtimes
        result = {o.name: values[o.node].reshape(o.onnx_shape).astype(np.float32) for o in graph.outputs}
    if keep:
        result.update({k: v for k, v in values.items() if k not in result})
    return result
