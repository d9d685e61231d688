"""The dataflow IR: small immutable nodes with typed tensors, and the graph that orders them.

Tensors are unbatched: a feature map is ``(C, H, W)``, a vector ``(N,)``. Every node produces
exactly one tensor, named after the node. A :class:`Graph` keeps its nodes in topological order;
passes build new graphs (``dataclasses.replace``) and never mutate their input.

Ops and their attributes (``attrs``) and parameters (``params``, read-only numpy arrays):

========================  ======================================================================
``INPUT``                 graph input; attrs ``onnx_shape``
``CONV``                  attrs ``stride, dilation`` (h, w), ``pads`` (top, left, bottom, right),
                          ``groups``; params ``weight`` (O, I/groups, kh, kw), ``bias`` (O,)
``LINEAR``                input (I,); params ``weight`` (O, I), ``bias`` (O,)
``MAXPOOL``/``AVGPOOL``   attrs ``kernel, stride, pads, count_include_pad`` (avg only)
``GLOBAL_AVGPOOL/MAXPOOL``  (C, H, W) -> (C, 1, 1)
``ACT``                   attrs ``kind`` (see :data:`ACT_KINDS`) and its constants; PReLU has
                          param ``slope`` broadcastable to the input
``AFFINE``                per-channel ``x * scale[c] + shift[c]`` (params ``scale, shift``)
``BINARY``                two tensors, attrs ``kind`` in :data:`BINARY_KINDS`, numpy broadcasting
``CONST_BINARY``          tensor with a constant param ``const`` (broadcast to the input shape);
                          attrs ``kind`` and ``reverse`` (constant on the left: ``c - x``)
``CONCAT``                attrs ``axis``
``PAD``                   constant padding of H and W: attrs ``pads`` (t, l, b, r), ``value``
``RESIZE``                nearest-neighbour upsampling by integer ``scale`` (h, w)
``RESHAPE``               attrs ``shape``; data order unchanged (a relabelling)
``SOFTMAX``               host op; attrs ``axes`` normalised over
``LRN``                   host op; attrs ``size, alpha, beta, bias`` (across channels)
========================  ======================================================================
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

__all__ = [
    "Op",
    "ElemFormat",
    "FLOAT32",
    "TensorType",
    "Node",
    "Graph",
    "GraphOutput",
    "make_node",
    "ACT_KINDS",
    "BINARY_KINDS",
    "HOST_OPS",
    "LAYOUT_OPS",
    "IRError",
]


class IRError(ValueError):
    """An IR graph or node is malformed (a compiler bug, not a user error)."""


class Op(enum.Enum):
    INPUT = "input"
    CONV = "conv"
    LINEAR = "linear"
    MAXPOOL = "maxpool"
    AVGPOOL = "avgpool"
    GLOBAL_AVGPOOL = "global_avgpool"
    GLOBAL_MAXPOOL = "global_maxpool"
    ACT = "act"
    AFFINE = "affine"
    BINARY = "binary"
    CONST_BINARY = "const_binary"
    CONCAT = "concat"
    PAD = "pad"
    RESIZE = "resize"
    RESHAPE = "reshape"
    SOFTMAX = "softmax"
    LRN = "lrn"


#: Ops the accelerator cannot run: executed on the host in numpy and shown as such in reports.
HOST_OPS = frozenset({Op.SOFTMAX, Op.LRN})
#: Ops that only relabel or place data in memory: no arithmetic.
LAYOUT_OPS = frozenset({Op.RESHAPE, Op.CONCAT, Op.PAD, Op.INPUT})

#: Activation kinds and the attrs each takes.
ACT_KINDS: Mapping[str, tuple[str, ...]] = {
    "relu": (),
    "leaky_relu": ("alpha",),
    "prelu": (),  # param "slope"
    "tanh": (),
    "sigmoid": (),
    "hard_sigmoid": ("alpha", "beta"),
    "hard_swish": (),
    "clip": ("min", "max"),
    "abs": (),
}
BINARY_KINDS = ("add", "sub", "mul", "div", "max", "min")


@dataclass(frozen=True, slots=True)
class ElemFormat:
    """Element format of a tensor: 32-bit float, or signed fixed point with ``frac`` fraction bits."""

    kind: str = "float"
    bits: int = 32
    frac: int = 0

    def __str__(self) -> str:
        if self.kind == "float":
            return f"f{self.bits}"
        return f"q{self.bits - self.frac}.{self.frac}"


FLOAT32 = ElemFormat()


@dataclass(frozen=True, slots=True)
class TensorType:
    """Shape (unbatched) and element format of a tensor."""

    shape: tuple[int, ...]
    fmt: ElemFormat = FLOAT32

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __str__(self) -> str:
        return f"{'x'.join(map(str, self.shape))}:{self.fmt}"


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def _readonly(a: Any) -> np.ndarray:
    arr = np.array(a, dtype=np.float32 if np.asarray(a).dtype.kind == "f" else None, copy=True)
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    """One operation. Build with :func:`make_node`; edit with ``dataclasses.replace``."""

    name: str
    op: Op
    inputs: tuple[str, ...]
    type: TensorType
    attrs: tuple[tuple[str, Any], ...] = ()
    params: tuple[tuple[str, np.ndarray], ...] = ()
    source: str = ""

    def attr(self, key: str, default: Any = ...) -> Any:
        for k, v in self.attrs:
            if k == key:
                return v
        if default is ...:
            raise IRError(f"node {self.name!r} ({self.op.value}) has no attribute {key!r}")
        return default

    def param(self, key: str) -> np.ndarray:
        for k, v in self.params:
            if k == key:
                return v
        raise IRError(f"node {self.name!r} ({self.op.value}) has no parameter {key!r}")

    def has_param(self, key: str) -> bool:
        return any(k == key for k, _ in self.params)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def on_host(self) -> bool:
        return self.op in HOST_OPS

    def describe(self) -> str:
        """One line: name, op, kind, inputs and type (used by the dump and by error messages)."""
        kind = self.attr("kind", None)
        op = f"{self.op.value}.{kind}" if kind else self.op.value
        return f"%{self.name} = {op}({', '.join('%' + i for i in self.inputs)}) : {self.type}"


def make_node(
    name: str,
    op: Op,
    inputs: Iterable[str],
    shape: Iterable[int],
    attrs: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    fmt: ElemFormat = FLOAT32,
    source: str = "",
) -> Node:
    """Build a :class:`Node` with frozen attrs (sorted by key) and read-only parameter arrays."""
    return Node(
        name=name,
        op=op,
        inputs=tuple(inputs),
        type=TensorType(tuple(int(d) for d in shape), fmt),
        attrs=tuple(sorted((k, _freeze(v)) for k, v in (attrs or {}).items())),
        params=tuple(sorted((k, _readonly(v)) for k, v in (params or {}).items())),
        source=source,
    )


@dataclass(frozen=True, slots=True)
class GraphOutput:
    """A network output: its ONNX name, the node producing it, and its ONNX (batched) shape."""

    name: str
    node: str
    onnx_shape: tuple[int, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Graph:
    """A network in the IR: nodes in topological order and the outputs."""

    name: str
    nodes: tuple[Node, ...]
    outputs: tuple[GraphOutput, ...]
    _index: dict[str, Node] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {n.name: n for n in self.nodes})

    def node(self, name: str) -> Node:
        try:
            return self._index[name]
        except KeyError:
            raise IRError(f"graph {self.name!r} has no node {name!r}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._index

    @property
    def inputs(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.op is Op.INPUT)

    def consumers(self, name: str) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if name in n.inputs)

    def to_networkx(self) -> nx.DiGraph:
        """The data dependences as a networkx DiGraph (node attribute ``node`` holds the Node)."""
        g = nx.DiGraph()
        for n in self.nodes:
            g.add_node(n.name, node=n)
            for i in n.inputs:
                g.add_edge(i, n.name)
        return g

    def with_nodes(self, nodes: Iterable[Node], outputs: Iterable[GraphOutput] | None = None) -> Graph:
        """A new graph with these nodes, re-sorted topologically (stable: ties keep their order)."""
        nodes = tuple(nodes)
        order = {n.name: i for i, n in enumerate(nodes)}
        g = nx.DiGraph()
        for n in nodes:
            g.add_node(n.name)
            for i in n.inputs:
                if i in order:
                    g.add_edge(i, n.name)
        try:
            names = list(nx.lexicographical_topological_sort(g, key=lambda s: order[s]))
        except nx.NetworkXUnfeasible:
            raise IRError(f"graph {self.name!r} has a cycle") from None
        by_name = {n.name: n for n in nodes}
        return Graph(self.name, tuple(by_name[s] for s in names), tuple(outputs or self.outputs))

    def dump(self) -> str:
        """A readable text listing, one node per line, then the outputs."""
        lines = [f"graph {self.name} {{"]
        for n in self.nodes:
            extra = [f"{k}={v}" for k, v in n.attrs if k != "kind"]
            extra += [f"{k}<{'x'.join(map(str, v.shape))}>" for k, v in n.params]
            where = "  [host]" if n.on_host else ""
            lines.append(f"  {n.describe()}" + (f"  {{{', '.join(extra)}}}" if extra else "") + where)
        for o in self.outputs:
            lines.append(f"  output {o.name} = %{o.node} : {'x'.join(map(str, o.onnx_shape))}")
        lines.append("}")
        return "\n".join(lines) + "\n"
