"""Per-layer workload figures of an IR graph: parameters, MACs and operations, and where each layer runs.

Counting rules (used by ``nfc inspect`` and, later, by the reports' "useful GOPS"):

* convolution and linear layers: 2 ops per useful MAC. A convolution's useful MACs skip kernels
  that are entirely zero (connection tables), so a fan-in-4 layer counts only its 4 inputs per
  output; ``dense_macs`` counts every kernel.
* activations, per-channel affine and elementwise ops: 1 op per output element;
* pooling: one op per window element per output (compare or add); global pooling: one op per
  input element;
* layout ops (reshape, concat, pad, input): no arithmetic, they only place data in memory;
* host ops (softmax, LRN) run in numpy on the host: softmax 4 ops per element (max, subtract/exp,
  sum, divide), LRN ``size + 3`` per element. They are counted apart from the grid's work.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from nfc.compiler.ir import HOST_OPS, LAYOUT_OPS, Graph, Node, Op

__all__ = ["LayerStats", "layer_stats", "totals", "useful_conv_macs", "node_ops"]


@dataclass(frozen=True, slots=True)
class LayerStats:
    index: int
    name: str
    op: str
    where: str  # "grid", "host" or "memory"
    inputs: tuple[tuple[int, ...], ...]
    output: tuple[int, ...]
    params: int
    macs: int
    dense_macs: int
    ops: int
    source: str

    def to_dict(self) -> dict:
        d = asdict(self)
        d["inputs"] = [list(s) for s in self.inputs]
        d["output"] = list(self.output)
        return d


def useful_conv_macs(node: Node) -> tuple[int, int]:
    """(useful, dense) MACs of a convolution: useful skips all-zero kernels."""
    w = node.param("weight")
    o, i, kh, kw = w.shape
    _, oh, ow = node.shape
    nonzero = int(np.count_nonzero(np.any(w.reshape(o, i, kh * kw) != 0, axis=2)))
    per_kernel = kh * kw * oh * ow
    return nonzero * per_kernel, o * i * per_kernel


def _work(node: Node, ins: tuple[tuple[int, ...], ...]) -> tuple[int, int, int]:
    """(useful MACs, dense MACs, ops) of ``node`` with inputs of shapes ``ins``, by the rules above."""
    out_elems = node.type.size
    op = node.op
    if op is Op.CONV:
        macs, dense = useful_conv_macs(node)
        return macs, dense, 2 * macs
    if op is Op.LINEAR:
        macs = int(node.param("weight").size)
        return macs, macs, 2 * macs
    if op in (Op.MAXPOOL, Op.AVGPOOL):
        return 0, 0, out_elems * math.prod(node.attr("kernel"))
    if op in (Op.GLOBAL_AVGPOOL, Op.GLOBAL_MAXPOOL):
        return 0, 0, math.prod(ins[0])
    if op is Op.SOFTMAX:
        return 0, 0, 4 * out_elems
    if op is Op.LRN:
        return 0, 0, (node.attr("size") + 3) * out_elems
    if op in LAYOUT_OPS or op is Op.RESIZE:
        return 0, 0, 0
    return 0, 0, out_elems


def node_ops(node: Node, ins: tuple[tuple[int, ...], ...]) -> int:
    """The operations ``node`` counts for (e.g. a host step's share of the work)."""
    return _work(node, ins)[2]


def _layer(index: int, node: Node, graph: Graph) -> LayerStats:
    ins = tuple(graph.node(i).shape for i in node.inputs)
    params = sum(int(v.size) for _, v in node.params)
    macs, dense, ops = _work(node, ins)
    op = node.op
    where = "host" if op in HOST_OPS else "memory" if (op in LAYOUT_OPS or op is Op.RESIZE) else "grid"
    kind = node.attr("kind", None)
    label = f"{op.value}.{kind}" if kind else op.value
    return LayerStats(index, node.name, label, where, ins, node.shape, params, macs, dense, ops, node.source)


def layer_stats(graph: Graph) -> list[LayerStats]:
    """One :class:`LayerStats` per non-input node, in graph order."""
    return [_layer(i, n, graph) for i, n in enumerate(n for n in graph.nodes if n.op is not Op.INPUT)]


def totals(stats: list[LayerStats]) -> dict:
    """Whole-network figures: parameters, MACs, GOP per inference, and the host's share."""
    ops = sum(s.ops for s in stats)
    host_ops = sum(s.ops for s in stats if s.where == "host")
    return {
        "layers": len(stats),
        "params": sum(s.params for s in stats),
        "macs": sum(s.macs for s in stats),
        "dense_macs": sum(s.dense_macs for s in stats),
        "ops": ops,
        "gop": ops / 1e9,
        "grid_ops": ops - host_ops,
        "host_ops": host_ops,
        "host_layers": [s.name for s in stats if s.where == "host"],
        "host_op_share": host_ops / ops if ops else 0.0,
    }
