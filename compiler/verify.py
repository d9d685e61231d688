"""The IR verifier: run after every pass in tests and behind ``--verify-each``."""

from __future__ import annotations

from nfc.compiler.ir import Graph, IRError, Op
from nfc.compiler.shapes import infer_shape

__all__ = ["verify"]


def verify(graph: Graph) -> Graph:
    """Check ``graph`` and return it unchanged; raise :class:`IRError` naming the offending node.

    Guarantees on success: node names are unique; every input is produced by an earlier node
    (topological order, no cycles); each node's declared shape is the one its op computes from its
    inputs; parameters are finite; every output names an existing node with a matching size.
    """
    seen: dict[str, tuple[int, ...]] = {}
    for node in graph.nodes:
        if node.name in seen:
            raise IRError(f"node {node.name!r} ({node.op.value}) is defined twice")
        for i in node.inputs:
            if i not in seen:
                where = "later" if i in graph else "nowhere"
                raise IRError(
                    f"node {node.name!r} ({node.op.value}, inputs {list(node.inputs)}) reads {i!r}, "
                    f"which is defined {where}"
                )
        shape = infer_shape(node, [seen[i] for i in node.inputs])
        if shape != node.shape:
            raise IRError(
                f"node {node.name!r} ({node.op.value}, inputs {list(node.inputs)}) declares shape "
                f"{node.shape} but its op computes {shape}"
            )
        for key, value in node.params:
            if value.dtype.kind == "f" and not value.size == 0 and not bool(abs(value).max() < float("inf")):
                raise IRError(f"node {node.name!r} ({node.op.value}): parameter {key!r} is not finite")
        seen[node.name] = node.shape
    if not graph.outputs:
        raise IRError(f"graph {graph.name!r} has no outputs")
    for out in graph.outputs:
        if out.node not in seen:
            raise IRError(f"output {out.name!r} names node {out.node!r}, which does not exist")
        size = 1
        for d in out.onnx_shape:
            size *= d
        node_size = graph.node(out.node).type.size
        if size != node_size:
            raise IRError(f"output {out.name!r} has {size} elements but node {out.node!r} has {node_size}")
    if not any(n.op is Op.INPUT for n in graph.nodes):
        raise IRError(f"graph {graph.name!r} has no inputs")
    return graph
