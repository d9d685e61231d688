"""ONNX -> IR import.

Order of work: read and parse the file, run onnx's checker and strict shape inference, check the
opset (7 to 23) and the inputs (static, batch 1, float), then walk the nodes in order:

* nodes whose inputs are all constant (initializers, ``Constant``, ``Shape`` of a static tensor,
  and whatever folds from those) are evaluated at import time with onnx's reference evaluator;
* ``Identity``, ``Dropout`` and float ``Cast`` become aliases (removed);
* every other node becomes one or two IR nodes, or an *issue*.

Issues are collected for the whole model and reported together in one :class:`ModelError`, one
line per offending node with a hint, so a user sees everything to fix at once.

Tensors lose their batch dimension in the IR: an ONNX value of shape ``(1, C, H, W)`` is the IR
tensor ``(C, H, W)``. An ONNX value whose rank is at least 2 and whose first dimension is 1 is
taken as batched; anything else (a rank-1 tensor after a full flatten) keeps its shape.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from nfc.compiler.executor import BINARY_NUMPY
from nfc.compiler.ir import FLOAT32, Graph, GraphOutput, IRError, Node, Op, TensorType, make_node
from nfc.compiler.shapes import infer_shape, window_out
from nfc.compiler.verify import verify
from nfc.errors import ModelError

__all__ = ["import_onnx", "load_model", "MIN_OPSET", "MAX_OPSET", "SUPPORTED_OPS"]

MIN_OPSET = 7
MAX_OPSET = 23

_FLOAT_TYPES = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.BFLOAT16,
}
# Ops that are never folded at import time even when all inputs are constant.
_NO_FOLD = {
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
}


class _Issue(Exception):
    """Raised inside a handler: what is unsupported about this node, and a hint."""

    def __init__(self, what: str, hint: str = ""):
        super().__init__(what)
        self.what = what
        self.hint = hint


@dataclass(frozen=True)
class _Val:
    """An ONNX value that lives on the accelerator path: the IR node computing it and its ONNX shape."""

    node: str
    onnx_shape: tuple[int, ...]

    @property
    def batched(self) -> bool:
        return len(self.onnx_shape) >= 2 and self.onnx_shape[0] == 1

    @property
    def ir_shape(self) -> tuple[int, ...]:
        return self.onnx_shape[1:] if self.batched else self.onnx_shape


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Read, parse and check an ONNX file; raise ModelError with one clear message on failure."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: no such file; give the path of an .onnx model")
    if not p.is_file():
        raise ModelError(f"{p}: not a file; give the path of an .onnx model")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelError(f"{p}: cannot read: {exc.strerror}") from None
    if not data:
        raise ModelError(
            f"{p}: the file is empty; give an ONNX model exported with torch.onnx.export or similar"
        )
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:  # protobuf raises DecodeError or RuntimeError depending on backend; its text
        # ("Wire format was corrupt") tells a user no more than this does
        raise ModelError(
            f"{p}: not an ONNX model (the protobuf does not parse); the file may be truncated "
            "or of another format"
        ) from None
    if model.ir_version == 0 or not model.HasField("graph") or not model.graph.node:
        raise ModelError(
            f"{p}: not an ONNX model (no IR version or no graph nodes); the file may be truncated "
            "or of another format"
        )
    check_model(model, str(p))
    return model


def check_model(model: onnx.ModelProto, label: str) -> None:
    """onnx's checker, with its verdict turned into a ModelError."""
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"{label}: the ONNX checker rejects the model: {_one_line(exc)}") from None


def _one_line(exc: Exception, limit: int = 400) -> str:
    """An exception's text on one line (onnx's messages span lines and dump nodes), cut at ``limit``."""
    text = " ".join(str(exc).split()) or repr(exc)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _opset(model: onnx.ModelProto, label: str) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            v = int(imp.version)
            if not MIN_OPSET <= v <= MAX_OPSET:
                raise ModelError(
                    f"{label}: opset {v} is not supported; nfc reads ONNX opsets {MIN_OPSET} to {MAX_OPSET} "
                    "(re-export with e.g. opset_version=17, or convert with onnx.version_converter)"
                )
            return v
    raise ModelError(f"{label}: the model imports no default-domain opset; it is not a standard ONNX model")


def _infer_shapes(model: onnx.ModelProto, label: str) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise ModelError(f"{label}: ONNX shape inference fails: {_one_line(exc)}") from None


def _static_shape(vi: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    dims = []
    for d in t.shape.dim:
        if not d.HasField("dim_value"):
            return None
        dims.append(int(d.dim_value))
    return tuple(dims)


class _Importer:
    def __init__(self, model: onnx.ModelProto, label: str, name: str):
        self.label = label
        self.opset = _opset(model, label)
        self.model = _infer_shapes(model, label)
        self.graph_name = name
        self.consts: dict[str, np.ndarray] = {}
        self.vals: dict[str, _Val] = {}
        self.nodes: list[Node] = []
        self.issues: list[str] = []
        self.failed: set[str] = set()  # ONNX values not imported because of a reported issue
        self.listed_ops = False  # whether an issue has listed the supported ops yet
        self.inferred: dict[str, tuple[int, ...]] = {}
        g = self.model.graph
        for vi in list(g.value_info) + list(g.output) + list(g.input):
            s = _static_shape(vi)
            if s is not None:
                self.inferred[vi.name] = s

    # -- helpers ----------------------------------------------------------------------------------
    def emit(
        self,
        name: str,
        op: Op,
        inputs: list[_Val],
        attrs=None,
        params=None,
        source: str = "",
        onnx_shape: tuple[int, ...] | None = None,
    ) -> _Val:
        """Append an IR node, computing its shape with the op's shape rule; record the ONNX value."""
        probe = make_node(name, op, [v.node for v in inputs], (), attrs, params, source=source)
        try:
            shape = infer_shape(probe, [v.ir_shape for v in inputs])
        except IRError as exc:  # a malformed node that onnx's shape inference let through
            raise _Issue(f"the node is malformed: {str(exc).split('): ', 1)[-1]}") from None
        node = Node(
            probe.name, op, probe.inputs, TensorType(shape, FLOAT32), probe.attrs, probe.params, source
        )
        if onnx_shape is None:
            batched = bool(inputs) and all(v.batched for v in inputs)
            onnx_shape = ((1,) + shape) if batched else shape
        if math.prod(onnx_shape) != math.prod(shape):
            raise _Issue(f"internal shape mismatch {onnx_shape} vs {shape}")
        self.nodes.append(node)
        return _Val(name, tuple(onnx_shape))

    def const(self, name: str, what: str, hint: str = "") -> np.ndarray:
        if name not in self.consts:
            raise _Issue(
                f"{what} must be a constant (an initializer or folded from constants)",
                hint or "export with the weights as initializers (do_constant_folding=True)",
            )
        return self.consts[name]

    def val(self, name: str, what: str = "input") -> _Val:
        if name in self.vals:
            return self.vals[name]
        if name in self.consts:
            raise _Issue(
                f"{what} {name!r} is a constant where nfc expects a feature map",
                "fold the computation on constants before export",
            )
        raise _Issue(f"{what} {name!r} is not produced by any supported node")

    def fmap(self, name: str, what: str = "input") -> _Val:
        v = self.val(name, what)
        if len(v.onnx_shape) != 4 or not v.batched:
            raise _Issue(
                f"{what} must be an N=1 NCHW feature map, not of shape {list(v.onnx_shape)}",
                "only 2-D images with batch 1 run on the grid",
            )
        return v

    def const_to_ir(self, c: np.ndarray, x: _Val) -> np.ndarray:
        """A constant that broadcasts against ONNX value ``x``, re-expressed against its IR shape."""
        c = np.asarray(c, dtype=np.float32)
        try:
            if np.broadcast_shapes(c.shape, x.onnx_shape) != x.onnx_shape:
                raise ValueError
        except ValueError:
            raise _Issue(
                f"constant of shape {list(c.shape)} does not broadcast to the input's "
                f"{list(x.onnx_shape)} without enlarging it",
                "give a per-channel constant the shape (C, 1, 1)",
            ) from None
        if x.batched and c.ndim == len(x.onnx_shape):
            c = c.reshape(c.shape[1:])
        return c

    # -- the walk ---------------------------------------------------------------------------------
    def run(self) -> Graph:
        g = self.model.graph
        for init in g.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
        self._inputs(g)
        self.failed.update(i.name for i in g.input if i.name not in self.vals and i.name not in self.consts)
        for index, node in enumerate(g.node):
            label = node.name or f"{node.op_type}_{index}"
            try:
                if any(i in self.failed for i in node.input if i):
                    # downstream of a problem already reported: only an unsupported op type is news
                    self.failed.update(o for o in node.output if o)
                    self._check_op_type(node)
                    continue
                self._node(node, label)
            except _Issue as issue:
                hint = f" (hint: {issue.hint})" if issue.hint else ""
                self.issues.append(f"node {label!r} ({node.op_type}): {issue.what}{hint}")
                self.failed.update(o for o in node.output if o)
        outputs = []
        for out in g.output:
            if out.name in self.vals:
                v = self.vals[out.name]
                outputs.append(GraphOutput(out.name, v.node, v.onnx_shape))
            elif out.name in self.consts:
                self.issues.append(
                    f"output {out.name!r} is a constant; nfc needs outputs computed from the input"
                )
            elif out.name not in self.failed:
                self.issues.append(f"output {out.name!r} is not produced by any supported node")
        if self.issues:
            n = len(self.issues)
            raise ModelError(
                f"{self.label}: cannot import the model; {n} problem{'s' if n > 1 else ''}:",
                tuple(self.issues),
            )
        graph = Graph(self.graph_name, tuple(self.nodes), tuple(outputs))
        self._check_against_onnx(graph)
        # drop nodes that feed no output (e.g. a Dropout mask that is never read)
        return verify(_prune(graph))

    def _inputs(self, g: onnx.GraphProto) -> None:
        for inp in g.input:
            if inp.name in self.consts:
                continue  # old-style models list initializers as inputs too
            t = inp.type.tensor_type
            if not inp.type.HasField("tensor_type"):
                self.issues.append(f"input {inp.name!r} is not a tensor")
                continue
            if t.elem_type not in _FLOAT_TYPES:
                self.issues.append(
                    f"input {inp.name!r} has element type {onnx.TensorProto.DataType.Name(t.elem_type)}; "
                    "nfc takes float inputs (hint: cast on the host before the model)"
                )
                continue
            dims = list(t.shape.dim) if t.HasField("shape") else None
            if dims is None:
                self.issues.append(f"input {inp.name!r} has no shape (hint: export with a fixed input shape)")
                continue
            shape = []
            for axis, d in enumerate(dims):
                if d.HasField("dim_value") and d.dim_value > 0:
                    shape.append(int(d.dim_value))
                elif d.HasField("dim_value"):
                    self.issues.append(
                        f"input {inp.name!r} has an empty dimension ({d.dim_value}) at axis {axis}; every "
                        "dimension must be at least 1 (hint: export with a real input shape)"
                    )
                    shape = None
                    break
                else:
                    sym = d.dim_param or "?"
                    self.issues.append(
                        f"input {inp.name!r} has a dynamic dimension {sym!r} at axis {axis}; nfc compiles "
                        "static shapes (hint: export with a fixed input shape and no dynamic_axes)"
                    )
                    shape = None
                    break
            if shape is None:
                continue
            if len(shape) < 2 or shape[0] != 1:
                what = (
                    f"has batch size {shape[0]}"
                    if len(shape) >= 2
                    else f"has shape {shape} without a batch dimension"
                )
                self.issues.append(
                    f"input {inp.name!r} {what}; the accelerator runs batch 1 "
                    "(hint: export with an input of shape (1, C, H, W))"
                )
                continue
            node = make_node(inp.name, Op.INPUT, (), shape[1:], {"onnx_shape": shape}, source=inp.name)
            self.nodes.append(node)
            self.vals[inp.name] = _Val(inp.name, tuple(shape))

    def _check_op_type(self, node: onnx.NodeProto) -> None:
        """Raise an issue if nfc can never import a node of this domain and op type."""
        if node.domain not in ("", "ai.onnx"):
            raise _Issue(
                f"custom domain {node.domain!r} is not supported", "export with standard ONNX ops only"
            )
        if node.op_type not in SUPPORTED_OPS:
            # the list of supported ops once, with the first unsupported op; later ones point to it
            hint = (
                "see the supported ops listed above"
                if self.listed_ops
                else f"supported ops: {', '.join(sorted(SUPPORTED_OPS))}"
            )
            self.listed_ops = True
            raise _Issue(f"op type {node.op_type} is not supported", hint)

    def _node(self, node: onnx.NodeProto, label: str) -> None:
        if node.domain not in ("", "ai.onnx"):
            self._check_op_type(node)
        ins = list(node.input)
        present = [i for i in ins if i]
        if node.op_type == "Shape" and present and present[0] in self.vals:
            self._fold_shape(node)
            return
        if node.op_type == "Size" and present and present[0] in self.vals:
            v = self.vals[present[0]]
            self.consts[node.output[0]] = np.array(math.prod(v.onnx_shape), dtype=np.int64)
            return
        if node.op_type not in _NO_FOLD and all(i in self.consts for i in present):
            self._fold(node)
            return
        handler = _HANDLERS.get(node.op_type)
        if handler is None:
            self._check_op_type(node)
            raise _Issue(
                f"op type {node.op_type} is only supported on constant inputs (it is folded)",
                "fold this computation on constants before export",
            )
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        for k, v in list(attrs.items()):
            if isinstance(v, bytes):
                attrs[k] = v.decode()
        handler(self, node, attrs, label)

    def _fold_shape(self, node: onnx.NodeProto) -> None:
        shape = np.array(self.vals[node.input[0]].onnx_shape, dtype=np.int64)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        start, end = attrs.get("start", 0), attrs.get("end", None)
        self.consts[node.output[0]] = shape[start:end]

    def _fold(self, node: onnx.NodeProto) -> None:
        """Evaluate a node on constant inputs with onnx's reference evaluator."""
        from onnx.reference import ReferenceEvaluator

        feeds = {i: self.consts[i] for i in node.input if i}
        inputs = [
            helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
            for i, a in feeds.items()
        ]
        outputs = [helper.make_empty_tensor_value_info(o) for o in node.output if o]
        graph = helper.make_graph([node], "fold", inputs, outputs)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                results = ReferenceEvaluator(model).run(None, feeds)
        except Exception as exc:
            raise _Issue(f"cannot fold this node on its constant inputs: {_one_line(exc)}") from None
        for name, value in zip([o for o in node.output if o], results, strict=True):
            self.consts[name] = np.asarray(value)

    def _check_against_onnx(self, graph: Graph) -> None:
        """Our shapes must agree with onnx's shape inference wherever it knows a static shape."""
        for onnx_name, v in self.vals.items():
            want = self.inferred.get(onnx_name)
            if want is not None and want != v.onnx_shape:
                raise ModelError(
                    f"{self.label}: internal error: nfc computes shape {list(v.onnx_shape)} for {onnx_name!r} "
                    f"but ONNX shape inference says {list(want)}; please report this model"
                )


def _prune(graph: Graph) -> Graph:
    live = {o.node for o in graph.outputs}
    for node in reversed(graph.nodes):
        if node.name in live:
            live.update(node.inputs)
    kept = [n for n in graph.nodes if n.name in live or n.op is Op.INPUT]
    return Graph(graph.name, tuple(kept), graph.outputs)


# ---------------------------------------------------------------------------------------------------
# op handlers: (importer, node, attrs, label) -> None; they record results in imp.vals / imp.consts
# ---------------------------------------------------------------------------------------------------

_HANDLERS: dict[str, Callable[[_Importer, onnx.NodeProto, dict, str], None]] = {}


def _handles(*ops: str):
    def deco(fn):
        for op in ops:
            _HANDLERS[op] = fn
        return fn

    return deco


def _ints(v, n: int, default: int) -> tuple[int, ...]:
    return tuple(int(x) for x in v) if v is not None else (default,) * n


def _spatial(
    attrs: dict, kernel: tuple[int, int], in_hw: tuple[int, int], what: str, dilation=(1, 1)
) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Strides and (top, left, bottom, right) pads of a 2-D windowed op, resolving ``auto_pad``."""
    strides = _ints(attrs.get("strides"), 2, 1)
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        p = _ints(attrs.get("pads"), 4, 0)
        if len(p) != 4:
            raise _Issue(f"{what} pads {list(p)} are not 2-D", "only 2-D windows are supported")
        pads = (p[0], p[1], p[2], p[3])
    elif auto == "VALID":
        pads = (0, 0, 0, 0)
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        tot = []
        for size, k, s, d in zip(in_hw, kernel, strides, dilation, strict=True):
            out = -(-size // s)
            tot.append(max((out - 1) * s + d * (k - 1) + 1 - size, 0))
        small = [t // 2 for t in tot]
        big = [t - t // 2 for t in tot]
        if auto == "SAME_UPPER":
            pads = (small[0], small[1], big[0], big[1])
        else:
            pads = (big[0], big[1], small[0], small[1])
    else:
        raise _Issue(f"auto_pad {auto!r} is unknown")
    return strides, pads


@_handles("Conv")
def _conv(imp: _Importer, node, attrs, label):
    x = imp.fmap(node.input[0])
    w = np.asarray(imp.const(node.input[1], "the weight"), dtype=np.float32)
    if w.ndim != 4:
        raise _Issue(
            f"only 2-D convolution is supported, not {w.ndim - 2}-D",
            "reshape 1-D/3-D convolutions into 2-D ones before export",
        )
    b = (
        np.asarray(imp.const(node.input[2], "the bias"), dtype=np.float32)
        if len(node.input) > 2 and node.input[2]
        else np.zeros(w.shape[0], np.float32)
    )
    groups = int(attrs.get("group", 1))
    if x.onnx_shape[1] != w.shape[1] * groups or w.shape[0] % groups:
        raise _Issue(
            f"the input must have {w.shape[1] * groups} channels (weight {list(w.shape)}, group {groups}), "
            f"not {x.onnx_shape[1]}"
            if x.onnx_shape[1] != w.shape[1] * groups
            else f"the {w.shape[0]} output channels must be a multiple of group {groups}",
            "the model is malformed; re-export it",
        )
    dil = _ints(attrs.get("dilations"), 2, 1)
    strides, pads = _spatial(attrs, w.shape[2:], x.onnx_shape[2:], "Conv", dil)
    imp.vals[node.output[0]] = imp.emit(
        node.output[0],
        Op.CONV,
        [x],
        {"stride": strides, "dilation": dil, "pads": pads, "groups": groups},
        {"weight": w, "bias": b},
        label,
    )


def _linear(imp: _Importer, node, label, a_name: str, w: np.ndarray, b: np.ndarray) -> None:
    a = imp.val(a_name)
    if len(a.onnx_shape) != 2 or not a.batched:
        raise _Issue(
            f"the data input must be a (1, N) matrix, not of shape {list(a.onnx_shape)}",
            "flatten the feature map first (Flatten axis=1)",
        )
    imp.vals[node.output[0]] = imp.emit(node.output[0], Op.LINEAR, [a], {}, {"weight": w, "bias": b}, label)


@_handles("Gemm")
def _gemm(imp: _Importer, node, attrs, label):
    if attrs.get("transA", 0):
        raise _Issue("transA=1 is not supported", "export the layer as x @ W^T (torch.nn.Linear)")
    bmat = np.asarray(imp.const(node.input[1], "B (the weight)"), dtype=np.float64)
    w = bmat if attrs.get("transB", 0) else bmat.T
    w = w * float(attrs.get("alpha", 1.0))
    if len(node.input) > 2 and node.input[2]:
        c = np.asarray(imp.const(node.input[2], "C (the bias)"), dtype=np.float64) * float(
            attrs.get("beta", 1.0)
        )
        try:
            bias = np.broadcast_to(c, (1, w.shape[0])).reshape(-1)
        except ValueError:
            raise _Issue(f"bias of shape {list(c.shape)} does not broadcast to (1, {w.shape[0]})") from None
    else:
        bias = np.zeros(w.shape[0])
    _linear(imp, node, label, node.input[0], w.astype(np.float32), bias.astype(np.float32))


@_handles("MatMul")
def _matmul(imp: _Importer, node, attrs, label):
    if node.input[1] not in imp.consts:
        raise _Issue(
            "only a feature vector times a constant matrix is supported",
            "products of two activations do not map to the grid",
        )
    bmat = np.asarray(imp.consts[node.input[1]], dtype=np.float32)
    if bmat.ndim != 2:
        raise _Issue(f"the constant matrix must be 2-D, not of shape {list(bmat.shape)}")
    _linear(imp, node, label, node.input[0], bmat.T, np.zeros(bmat.shape[1], np.float32))


def _reshape_to(imp: _Importer, node, label, x: _Val, onnx_shape: tuple[int, ...]) -> None:
    onnx_shape = tuple(int(d) for d in onnx_shape)
    if math.prod(onnx_shape) != math.prod(x.onnx_shape):
        raise _Issue(f"cannot reshape {list(x.onnx_shape)} to {list(onnx_shape)}")
    target = _Val("", onnx_shape)
    if target.ir_shape == x.ir_shape:
        imp.vals[node.output[0]] = _Val(x.node, onnx_shape)
        return
    imp.vals[node.output[0]] = imp.emit(
        node.output[0], Op.RESHAPE, [x], {"shape": target.ir_shape}, None, label, onnx_shape=onnx_shape
    )


@_handles("Flatten")
def _flatten(imp: _Importer, node, attrs, label):
    x = imp.val(node.input[0])
    axis = int(attrs.get("axis", 1))
    if axis < 0:
        axis += len(x.onnx_shape)
    _reshape_to(imp, node, label, x, (math.prod(x.onnx_shape[:axis]), math.prod(x.onnx_shape[axis:])))


@_handles("Reshape")
def _reshape(imp: _Importer, node, attrs, label):
    x = imp.val(node.input[0])
    if "shape" in attrs:  # opset < 5 style (not reached for opset >= 7, kept for clarity)
        spec = list(attrs["shape"])
    else:
        spec = [int(d) for d in imp.const(node.input[1], "the target shape").reshape(-1)]
    allowzero = int(attrs.get("allowzero", 0))
    out = []
    for i, d in enumerate(spec):
        out.append(x.onnx_shape[i] if d == 0 and not allowzero else d)
    if out.count(-1) > 1:
        raise _Issue(f"target shape {spec} has more than one -1")
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        out[out.index(-1)] = math.prod(x.onnx_shape) // known if known else 0
    _reshape_to(imp, node, label, x, tuple(out))


@_handles("Squeeze", "Unsqueeze")
def _squeeze(imp: _Importer, node, attrs, label):
    x = imp.val(node.input[0])
    if "axes" in attrs:
        axes = [int(a) for a in attrs["axes"]]
    elif len(node.input) > 1 and node.input[1]:
        axes = [int(a) for a in imp.const(node.input[1], "axes").reshape(-1)]
    else:
        axes = None
    shape = list(x.onnx_shape)
    if node.op_type == "Squeeze":
        rank = len(shape)
        axes = [a % rank for a in axes] if axes is not None else [i for i, d in enumerate(shape) if d == 1]
        out = [d for i, d in enumerate(shape) if i not in axes]
    else:
        rank = len(shape) + len(axes)
        axes = sorted(a % rank for a in axes)
        out = shape[:]
        for a in axes:
            out.insert(a, 1)
    _reshape_to(imp, node, label, x, tuple(out))


@_handles("Transpose")
def _transpose(imp: _Importer, node, attrs, label):
    x = imp.val(node.input[0])
    perm = list(attrs.get("perm", reversed(range(len(x.onnx_shape)))))
    moved = [p for p in perm if x.onnx_shape[p] != 1]
    if moved != sorted(moved):
        raise _Issue(
            f"Transpose with perm {perm} reorders data of shape {list(x.onnx_shape)}",
            "only transposes that move size-1 axes (pure reshapes) are supported",
        )
    _reshape_to(imp, node, label, x, tuple(x.onnx_shape[p] for p in perm))


@_handles("BatchNormalization")
def _batchnorm(imp: _Importer, node, attrs, label):
    x = imp.val(node.input[0])
    if attrs.get("training_mode", 0):
        raise _Issue("training_mode=1 is not supported", "export the model in eval() mode")
    if not attrs.get("spatial", 1):
        raise _Issue("spatial=0 is not supported")
    if not x.batched:
        raise _Issue(f"input of shape {list(x.onnx_shape)} has no channel axis")
    if len([o for o in node.output if o]) > 1:
        raise _Issue("running statistics outputs are not supported", "export the model in eval() mode")
    s, b, mean, var = (
        np.asarray(imp.const(n, what), np.float64)
        for n, what in zip(node.input[1:5], ("scale", "B", "mean", "var"), strict=True)
    )
    scale = s / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
    shift = b - mean * scale
    imp.vals[node.output[0]] = imp.emit(
        node.output[0],
        Op.AFFINE,
        [x],
        {},
        {"scale": scale.astype(np.float32), "shift": shift.astype(np.float32)},
        label,
    )


def _act(imp: _Importer, node, label, kind: str, attrs: dict | None = None, params: dict | None = None):
    x = imp.val(node.input[0])
    imp.vals[node.output[0]] = imp.emit(
        node.output[0], Op.ACT, [x], {"kind": kind, **(attrs or {})}, params, label
    )


@_handles("Relu", "Tanh", "Sigmoid", "Abs", "HardSwish")
def _simple_act(imp, node, attrs, label):
    kinds = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "Abs": "abs", "HardSwish": "hard_swish"}
    _act(imp, node, label, kinds[node.op_type])


@_handles("LeakyRelu")
def _leaky(imp, node, attrs, label):
    _act(imp, node, label, "leaky_relu", {"alpha": float(attrs.get("alpha", 0.01))})


@_handles("HardSigmoid")
def _hard_sigmoid(imp, node, attrs, label):
    _act(
        imp,
        node,
        label,
        "hard_sigmoid",
        {"alpha": float(attrs.get("alpha", 0.2)), "beta": float(attrs.get("beta", 0.5))},
    )


@_handles("PRelu")
def _prelu(imp, node, attrs, label):
    x = imp.val(node.input[0])
    # Every opset nfc reads (7+) broadcasts the slope numpy-style against X: a (C,) slope lines up
    # with the last axis (W), not with the channels; exporters write per-channel slopes as (C, 1, 1).
    slope = imp.const(node.input[1], "the slope")
    _act(imp, node, label, "prelu", None, {"slope": imp.const_to_ir(slope, x)})


@_handles("Clip")
def _clip(imp, node, attrs, label):
    if imp.opset < 11:
        lo = float(attrs.get("min", -np.inf))
        hi = float(attrs.get("max", np.inf))
    else:
        lo, hi = -np.inf, np.inf
        if len(node.input) > 1 and node.input[1]:
            lo = float(imp.const(node.input[1], "min"))
        if len(node.input) > 2 and node.input[2]:
            hi = float(imp.const(node.input[2], "max"))
    if lo == -np.inf and hi == np.inf:
        imp.vals[node.output[0]] = imp.val(node.input[0])
        return
    _act(imp, node, label, "clip", {"min": lo, "max": hi})


def _pool_common(imp: _Importer, node, attrs, what: str):
    """Input, kernel, strides, pads and ceil_mode's extra bottom/right pads of a 2-D pooling node."""
    x = imp.fmap(node.input[0])
    kernel = tuple(int(k) for k in attrs["kernel_shape"])
    if len(kernel) != 2:
        raise _Issue(f"only 2-D pooling is supported, not {len(kernel)}-D")
    if any(d != 1 for d in attrs.get("dilations", (1, 1))):
        raise _Issue("dilated pooling is not supported", "use dilations=1")
    strides, pads = _spatial(attrs, kernel, x.onnx_shape[2:], what)
    # ceil_mode=1: the extra rows/columns of bottom/right padding that the last window reads
    extra = [0, 0]
    if attrs.get("ceil_mode", 0):
        for d, (size, k, s) in enumerate(zip(x.onnx_shape[2:], kernel, strides, strict=True)):
            lo, hi = pads[d], pads[d + 2]
            floor_out = window_out(size, k, s, lo, hi)
            ceil_out = -(-(size + lo + hi - k) // s) + 1
            if ceil_out > floor_out and (ceil_out - 1) * s >= size + lo:
                # The last window would start in the right padding. Opset 22's shape rule drops it
                # (as torch and onnxruntime do at every opset); the rule of opsets 10 to 21 keeps a
                # window of padding only, whose value the spec leaves undefined. Follow the spec
                # where it is clear and refuse where it is not, rather than guess.
                if imp.opset < 22:
                    raise _Issue(
                        f"ceil_mode=1 makes the last window along axis {d + 2} start in the right padding; "
                        f"ONNX opset {imp.opset} keeps that window and onnxruntime drops it",
                        "re-export with opset 22 or later, or change the pads so that ceil_mode=0 gives the "
                        "size you want",
                    )
                ceil_out -= 1
            if ceil_out > floor_out:
                extra[d] = (ceil_out - 1) * s + k - (size + lo + hi)
    return x, kernel, strides, pads, extra


@_handles("MaxPool")
def _maxpool(imp, node, attrs, label):
    if len([o for o in node.output if o]) > 1:
        raise _Issue("the Indices output is not supported", "use MaxPool without return_indices")
    x, kernel, strides, pads, extra = _pool_common(imp, node, attrs, "MaxPool")
    pads = (pads[0], pads[1], pads[2] + extra[0], pads[3] + extra[1])
    imp.vals[node.output[0]] = imp.emit(
        node.output[0], Op.MAXPOOL, [x], {"kernel": kernel, "stride": strides, "pads": pads}, None, label
    )


@_handles("AveragePool")
def _avgpool(imp, node, attrs, label):
    x, kernel, strides, pads, extra = _pool_common(imp, node, attrs, "AveragePool")
    include = int(attrs.get("count_include_pad", 0))
    if any(extra) and include:
        raise _Issue(
            "ceil_mode=1 with count_include_pad=1 is not supported", "use ceil_mode=0 or count_include_pad=0"
        )
    if any(extra):
        pads = (pads[0], pads[1], pads[2] + extra[0], pads[3] + extra[1])
    imp.vals[node.output[0]] = imp.emit(
        node.output[0],
        Op.AVGPOOL,
        [x],
        {"kernel": kernel, "stride": strides, "pads": pads, "count_include_pad": include},
        None,
        label,
    )


@_handles("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(imp, node, attrs, label):
    x = imp.fmap(node.input[0])
    op = Op.GLOBAL_AVGPOOL if node.op_type == "GlobalAveragePool" else Op.GLOBAL_MAXPOOL
    imp.vals[node.output[0]] = imp.emit(node.output[0], op, [x], {}, None, label)


@_handles("ReduceMean", "ReduceMax")
def _reduce(imp, node, attrs, label):
    x = imp.fmap(node.input[0])
    if "axes" in attrs:
        axes = [int(a) for a in attrs["axes"]]
    elif len(node.input) > 1 and node.input[1]:
        axes = [int(a) for a in imp.const(node.input[1], "axes").reshape(-1)]
    else:
        axes = [0, 1, 2, 3]
    if sorted(a % 4 for a in axes) != [2, 3]:
        raise _Issue(
            f"reduction over axes {axes} is not supported", "only reductions over H and W (axes 2, 3)"
        )
    op = Op.GLOBAL_AVGPOOL if node.op_type == "ReduceMean" else Op.GLOBAL_MAXPOOL
    keep = int(attrs.get("keepdims", 1))
    out = node.output[0]
    pooled = imp.emit(out if keep else out + ".pool", op, [x], {}, None, label)
    if keep:
        imp.vals[out] = pooled
    else:
        c = x.onnx_shape[1]
        imp.vals[out] = imp.emit(out, Op.RESHAPE, [pooled], {"shape": (c,)}, None, label, onnx_shape=(1, c))


_BINARY_OPS = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Max": "max", "Min": "min"}


@_handles(*_BINARY_OPS)
def _binary(imp, node, attrs, label):
    kind = _BINARY_OPS[node.op_type]
    ins = [i for i in node.input if i]
    if len(ins) == 1:  # variadic Max/Min of one input
        imp.vals[node.output[0]] = imp.val(ins[0])
        return
    # variadic Max/Min of three or more inputs: a left-to-right chain of two-input nodes
    acc = ins[0]
    for step, other in enumerate(ins[1:], start=1):
        out = node.output[0] if step == len(ins) - 1 else f"{node.output[0]}.{step}"
        _binary2(imp, kind, acc, other, out, label)
        acc = out


def _binary2(imp: _Importer, kind: str, a_name: str, b_name: str, out: str, label: str) -> None:
    a_const, b_const = a_name in imp.consts, b_name in imp.consts
    if a_const and b_const:  # two constants of a variadic Max/Min: fold them
        imp.consts[out] = BINARY_NUMPY[kind](imp.consts[a_name], imp.consts[b_name])
        return
    if not a_const and not b_const:
        a, b = imp.val(a_name), imp.val(b_name)
        if a.batched != b.batched or len(a.onnx_shape) != len(b.onnx_shape):
            raise _Issue(
                f"shapes {list(a.onnx_shape)} and {list(b.onnx_shape)} are not supported together",
                "both operands must have the same rank with batch 1",
            )
        imp.vals[out] = imp.emit(out, Op.BINARY, [a, b], {"kind": kind}, None, label)
        return
    x = imp.val(b_name if a_const else a_name)
    c = imp.const_to_ir(imp.consts[a_name if a_const else b_name], x)
    imp.vals[out] = imp.emit(
        out, Op.CONST_BINARY, [x], {"kind": kind, "reverse": bool(a_const)}, {"const": c}, label
    )


@_handles("Concat")
def _concat(imp, node, attrs, label):
    vals = [imp.val(i) for i in node.input if i]
    rank = len(vals[0].onnx_shape)
    axis = int(attrs["axis"]) % rank
    if axis == 0 or not all(v.batched and len(v.onnx_shape) == rank for v in vals):
        raise _Issue(
            f"concatenation along axis {axis} of shapes {[list(v.onnx_shape) for v in vals]} "
            "is not supported",
            "only concatenation of batch-1 tensors along a non-batch axis (channels) is supported",
        )
    imp.vals[node.output[0]] = imp.emit(node.output[0], Op.CONCAT, vals, {"axis": axis - 1}, None, label)


@_handles("Pad")
def _pad(imp, node, attrs, label):
    x = imp.fmap(node.input[0])
    mode = attrs.get("mode", "constant")
    if mode != "constant":
        raise _Issue(
            f"mode must be 'constant', not {mode!r}",
            "the grid pads with a constant value; export with constant (zero or value) padding",
        )
    if imp.opset < 11:
        pads = [int(p) for p in attrs["pads"]]
        value = float(attrs.get("value", 0.0))
    else:
        pads = [int(p) for p in imp.const(node.input[1], "pads").reshape(-1)]
        value = (
            float(imp.const(node.input[2], "constant_value"))
            if len(node.input) > 2 and node.input[2]
            else 0.0
        )
        if len(node.input) > 3 and node.input[3]:
            axes = [int(a) % 4 for a in imp.const(node.input[3], "axes").reshape(-1)]
            full = [0] * 8
            for i, a in enumerate(axes):
                full[a], full[a + 4] = pads[i], pads[i + len(axes)]
            pads = full
    if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)):
        raise _Issue(f"pads {pads} touch the batch or channel axis", "pad only H and W")
    if any(p < 0 for p in pads):
        raise _Issue(f"pads must be >= 0, not {pads}", "cropping (negative pads) is not supported")
    imp.vals[node.output[0]] = imp.emit(
        node.output[0],
        Op.PAD,
        [x],
        {"pads": (pads[2], pads[3], pads[6], pads[7]), "value": value},
        None,
        label,
    )


@_handles("Resize", "Upsample")
def _resize(imp, node, attrs, label):
    x = imp.fmap(node.input[0])
    mode = attrs.get("mode", "nearest")
    if mode != "nearest":
        raise _Issue(f"mode {mode!r} is not supported", "use nearest-neighbour upsampling")
    scales = None
    if node.op_type == "Upsample":
        scales = attrs.get("scales") if imp.opset < 9 else imp.const(node.input[1], "scales")
        coord, nearest = "asymmetric", "floor"
    else:
        if imp.opset == 10:
            scales = imp.const(node.input[1], "scales")
            coord, nearest = "asymmetric", "floor"
        else:
            coord = attrs.get("coordinate_transformation_mode", "half_pixel")
            nearest = attrs.get("nearest_mode", "round_prefer_floor")
            scales = _resize_scales(imp, node, attrs, x)
    if scales is None:
        raise _Issue("neither scales nor sizes are given as constants")
    scales = [float(s) for s in np.asarray(scales).reshape(-1)]
    if (
        len(scales) != 4
        or scales[0] != 1
        or scales[1] != 1
        or any(s < 1 or not float(s).is_integer() for s in scales[2:])
    ):
        raise _Issue(f"scales {scales} are not supported", "only integer upsampling of H and W")
    for axis in (2, 3):
        if not _nearest_repeats(coord, nearest, x.onnx_shape[axis], int(scales[axis])):
            raise _Issue(
                f"coordinate_transformation_mode={coord!r} with nearest_mode={nearest!r} does not "
                f"repeat each pixel {int(scales[axis])} times along axis {axis}",
                "export with the default half_pixel/round_prefer_floor or asymmetric/floor",
            )
    imp.vals[node.output[0]] = imp.emit(
        node.output[0], Op.RESIZE, [x], {"scale": (int(scales[2]), int(scales[3]))}, None, label
    )


def _nearest_repeats(coord: str, nearest: str, size: int, scale: int) -> bool:
    """Whether ONNX nearest Resize with these modes maps output index i to input index i // scale
    along an axis of ``size`` (the only upsampling the grid does), computed exactly as the spec says."""
    out = size * scale
    for i in range(out):
        if coord in ("half_pixel", "half_pixel_symmetric"):  # the same for integer scales
            src = Fraction(2 * i + 1, 2 * scale) - Fraction(1, 2)
        elif coord == "pytorch_half_pixel":
            src = Fraction(2 * i + 1, 2 * scale) - Fraction(1, 2) if out > 1 else Fraction(0)
        elif coord == "asymmetric":
            src = Fraction(i, scale)
        elif coord == "tf_half_pixel_for_nn":
            src = Fraction(2 * i + 1, 2 * scale)
        elif coord == "align_corners":
            src = Fraction(i * (size - 1), out - 1) if out > 1 else Fraction(0)
        else:  # tf_crop_and_resize reads a region of interest
            return False
        lo = math.floor(src)
        if nearest == "floor":
            j = lo
        elif nearest == "ceil":
            j = math.ceil(src)
        elif nearest in ("round_prefer_floor", "round_prefer_ceil"):
            frac = src - lo
            j = lo + (frac > Fraction(1, 2) or (frac == Fraction(1, 2) and nearest == "round_prefer_ceil"))
        else:
            return False
        if min(max(j, 0), size - 1) != i // scale:
            return False
    return True


def _resize_scales(imp: _Importer, node, attrs, x: _Val) -> np.ndarray | None:
    """The per-axis scales of a Resize (opset 11+) from its ``scales`` or ``sizes`` input, with the
    opset 18 ``axes`` and ``keep_aspect_ratio_policy`` applied; None when neither input is given."""
    rank = len(x.onnx_shape)
    axes = [int(a) % rank for a in attrs.get("axes", range(rank))]
    in_sizes = np.array([x.onnx_shape[a] for a in axes], dtype=np.float64)
    scales_in = node.input[2] if len(node.input) > 2 else ""
    sizes_in = node.input[3] if len(node.input) > 3 else ""
    # opset 11 needs an input in the scales slot even when sizes are given: an empty tensor
    given = np.asarray(imp.const(scales_in, "scales"), np.float64).reshape(-1) if scales_in else np.zeros(0)
    if given.size:
        what = "scales"
    elif sizes_in:
        what = "sizes"
        given = np.asarray(imp.const(sizes_in, "sizes"), np.float64).reshape(-1) / in_sizes
        policy = attrs.get("keep_aspect_ratio_policy", "stretch")
        if policy == "not_larger":
            given = np.full_like(given, given.min())
        elif policy == "not_smaller":
            given = np.full_like(given, given.max())
        elif policy != "stretch":
            raise _Issue(
                f"keep_aspect_ratio_policy must be stretch, not_larger or not_smaller, not {policy!r}"
            )
    else:
        return None
    if given.size != len(axes):
        raise _Issue(f"{what} must have {len(axes)} values (one per resized axis), not {given.size}")
    full = np.ones(rank)
    full[axes] = given
    return full


@_handles("Identity", "Dropout")
def _alias(imp, node, attrs, label):
    if node.op_type == "Dropout" and len(node.input) > 2 and node.input[2]:
        if bool(np.asarray(imp.const(node.input[2], "training_mode")).reshape(-1)[0]):
            raise _Issue("training_mode must be false, not true", "export the model in eval() mode")
    x = imp.val(node.input[0])
    imp.vals[node.output[0]] = x
    if len(node.output) > 1 and node.output[1]:
        # in inference Dropout keeps everything: the mask is all ones (float before opset 10, then bool)
        imp.consts[node.output[1]] = np.ones(x.onnx_shape, np.float32 if imp.opset < 10 else np.bool_)


@_handles("Cast")
def _cast(imp, node, attrs, label):
    if int(attrs["to"]) not in _FLOAT_TYPES:
        raise _Issue(
            f"cast of a feature map to {onnx.TensorProto.DataType.Name(int(attrs['to']))}",
            "the grid computes in fixed point; keep activations float in the model",
        )
    imp.vals[node.output[0]] = imp.val(node.input[0])


@_handles("LRN")
def _lrn(imp, node, attrs, label):
    x = imp.fmap(node.input[0])
    imp.vals[node.output[0]] = imp.emit(
        node.output[0],
        Op.LRN,
        [x],
        {
            "size": int(attrs["size"]),
            "alpha": float(attrs.get("alpha", 1e-4)),
            "beta": float(attrs.get("beta", 0.75)),
            "bias": float(attrs.get("bias", 1.0)),
        },
        None,
        label,
    )


@_handles("Softmax")
def _softmax(imp, node, attrs, label):
    x = imp.val(node.input[0])
    rank = len(x.onnx_shape)
    axis = int(attrs.get("axis", 1 if imp.opset < 13 else -1)) % rank
    axes = list(range(axis, rank)) if imp.opset < 13 else [axis]
    if x.batched:
        if axis == 0:
            raise _Issue("softmax over the batch axis is not supported", "normalise over channels or classes")
        axes = [a - 1 for a in axes]
    imp.vals[node.output[0]] = imp.emit(node.output[0], Op.SOFTMAX, [x], {"axes": tuple(axes)}, None, label)


#: ONNX op types the importer handles (besides anything that folds to a constant).
SUPPORTED_OPS = frozenset(_HANDLERS) | {"Constant", "Shape", "Size", "ConstantOfShape", "Gather", "Unsqueeze"}


def import_onnx(model: str | os.PathLike | onnx.ModelProto, name: str | None = None) -> Graph:
    """Import an ONNX model (a path or a ModelProto) into a verified IR :class:`Graph`.

    Raises :class:`nfc.errors.ModelError` listing every problem found.
    """
    if isinstance(model, onnx.ModelProto):
        label = name or (model.graph.name or "model")
        check_model(model, label)
    else:
        label = str(model)
        model = load_model(model)
        name = name or Path(label).stem
    return _Importer(model, label, name or label).run()
