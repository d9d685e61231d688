"""Pass ``fold_affine``: fold per-channel affine nodes (imported BatchNormalization) into the
convolution or linear layer that feeds them."""

from __future__ import annotations

import dataclasses

import numpy as np

from nfc.arch import ArchConfig
from nfc.compiler.ir import Graph, Node, Op

__all__ = ["fold_affine"]


def _foldable(graph: Graph, affine: Node, outputs: set[str]) -> Node | None:
    src = graph.node(affine.inputs[0])
    if src.op not in (Op.CONV, Op.LINEAR) or src.name in outputs:
        return None
    if len(graph.consumers(src.name)) != 1:
        return None
    return src


def fold_affine(graph: Graph, arch: ArchConfig | None = None) -> Graph:
    """Fold ``AFFINE`` nodes into a producing ``CONV``/``LINEAR`` used by nothing else.

    Afterwards: every such affine node is gone; the layer that replaces it keeps the affine node's
    name (so consumers and outputs are untouched), with ``weight * scale[o]`` and
    ``bias * scale + shift``. Affine nodes that cannot be folded stay (they run on an ALU).
    """
    outputs = {o.node for o in graph.outputs}
    replaced: dict[str, Node] = {}
    dropped: set[str] = set()
    for node in graph.nodes:
        if node.op is not Op.AFFINE:
            continue
        src = _foldable(graph, node, outputs)
        if src is None or src.name in dropped:
            continue
        scale = node.param("scale").astype(np.float64)
        shift = node.param("shift").astype(np.float64)
        w = src.param("weight").astype(np.float64)
        w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
        b = src.param("bias").astype(np.float64) * scale + shift
        params = dict(src.params)
        params["weight"], params["bias"] = w.astype(np.float32), b.astype(np.float32)
        for arr in params.values():
            arr.flags.writeable = False
        replaced[node.name] = dataclasses.replace(
            src, name=node.name, params=tuple(sorted(params.items())), source=f"{src.source}+{node.source}"
        )
        dropped.add(src.name)
    if not replaced:
        return graph
    nodes = [replaced.get(n.name, n) for n in graph.nodes if n.name not in dropped]
    return graph.with_nodes(nodes)
