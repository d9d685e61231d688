"""fold_affine: executing the graph before and after the pass gives the same outputs."""

from __future__ import annotations

import numpy as np

from nfc.compiler import Graph, GraphOutput, Op, make_node, run_float, verify
from nfc.compiler.passes import FRONT_PASSES, run_pipeline
from nfc.compiler.passes.fold_affine import fold_affine


def _graph(extra_consumer: bool) -> Graph:
    rng = np.random.default_rng(3)
    x = make_node("x", Op.INPUT, (), (3, 6, 6), {"onnx_shape": (1, 3, 6, 6)})
    c = make_node(
        "c",
        Op.CONV,
        ("x",),
        (4, 6, 6),
        {"stride": (1, 1), "dilation": (1, 1), "pads": (1, 1, 1, 1), "groups": 1},
        {"weight": rng.standard_normal((4, 3, 3, 3)), "bias": rng.standard_normal(4)},
    )
    bn = make_node(
        "bn",
        Op.AFFINE,
        ("c",),
        (4, 6, 6),
        {},
        {"scale": rng.uniform(0.5, 2, 4), "shift": rng.standard_normal(4)},
    )
    r = make_node("r", Op.ACT, ("bn",), (4, 6, 6), {"kind": "relu"})
    nodes = [x, c, bn, r]
    outputs = [GraphOutput("y", "r", (1, 4, 6, 6))]
    if extra_consumer:
        nodes.append(make_node("t", Op.ACT, ("c",), (4, 6, 6), {"kind": "tanh"}))
        outputs.append(GraphOutput("z", "t", (1, 4, 6, 6)))
    return Graph("g", tuple(nodes), tuple(outputs))


def test_fold_into_conv_preserves_outputs():
    g = _graph(extra_consumer=False)
    folded = verify(fold_affine(g))
    assert [n.op for n in folded.nodes] == [Op.INPUT, Op.CONV, Op.ACT]
    assert folded.node("bn").op is Op.CONV  # the folded layer keeps the affine node's name
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 6))
    np.testing.assert_allclose(
        run_float(folded, {"x": x})["y"], run_float(g, {"x": x})["y"], rtol=1e-5, atol=1e-5
    )
    assert [n.op for n in g.nodes] == [Op.INPUT, Op.CONV, Op.AFFINE, Op.ACT]  # input untouched


def test_no_fold_when_conv_has_other_consumers():
    g = _graph(extra_consumer=True)
    assert fold_affine(g) is g


def test_pipeline_verify_each_and_dump():
    g = _graph(extra_consumer=False)
    seen = []
    out = run_pipeline(
        g,
        None,
        FRONT_PASSES,
        verify_each=True,
        dump_after="fold_affine",
        dump=lambda name, graph: seen.append((name, graph.dump())),
    )
    assert seen and seen[0][0] == "fold_affine" and "affine" not in seen[0][1]
    assert out.node("bn").op is Op.CONV
