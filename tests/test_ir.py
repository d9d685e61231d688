"""IR nodes and graphs: immutability, the text dump, networkx view, topological rebuild."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nfc.compiler import Graph, GraphOutput, IRError, Op, make_node, run_float


def small_graph() -> Graph:
    rng = np.random.default_rng(1)
    x = make_node("x", Op.INPUT, (), (2, 5, 5), {"onnx_shape": (1, 2, 5, 5)})
    c = make_node(
        "c",
        Op.CONV,
        ("x",),
        (3, 3, 3),
        {"stride": (1, 1), "dilation": (1, 1), "pads": (0, 0, 0, 0), "groups": 1},
        {"weight": rng.standard_normal((3, 2, 3, 3)), "bias": rng.standard_normal(3)},
    )
    t = make_node("t", Op.ACT, ("c",), (3, 3, 3), {"kind": "tanh"})
    a = make_node("a", Op.BINARY, ("t", "c"), (3, 3, 3), {"kind": "add"})
    return Graph("small", (x, c, t, a), (GraphOutput("y", "a", (1, 3, 3, 3)),))


def test_nodes_are_immutable_and_params_read_only():
    g = small_graph()
    conv = g.node("c")
    with pytest.raises(dataclasses.FrozenInstanceError):
        conv.name = "d"  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        conv.param("weight")[0, 0, 0, 0] = 1.0
    assert conv.attr("groups") == 1 and conv.attr("missing", None) is None
    with pytest.raises(IRError, match="node 'c' \\(conv\\) has no attribute 'nope'"):
        conv.attr("nope")
    edited = dataclasses.replace(conv, name="c2")
    assert edited.name == "c2" and conv.name == "c"


def test_dump_is_readable_and_deterministic():
    g = small_graph()
    text = g.dump()
    assert text == small_graph().dump()
    assert text.splitlines()[0] == "graph small {"
    assert "  %t = act.tanh(%c) : 3x3x3:f32" in text
    assert "  %a = binary.add(%t, %c) : 3x3x3:f32" in text
    assert "  output y = %a : 1x3x3x3" in text


def test_networkx_view_and_consumers():
    g = small_graph()
    nxg = g.to_networkx()
    assert set(nxg.edges) == {("x", "c"), ("c", "t"), ("t", "a"), ("c", "a")}
    assert [n.name for n in g.consumers("c")] == ["t", "a"]


def test_with_nodes_sorts_topologically_and_rejects_cycles():
    g = small_graph()
    shuffled = g.with_nodes(reversed(g.nodes))
    assert [n.name for n in shuffled.nodes] == ["x", "c", "t", "a"]
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 5))
    np.testing.assert_array_equal(run_float(g, {"x": x})["y"], run_float(shuffled, {"x": x})["y"])
    loop = make_node("c", Op.ACT, ("a",), (3, 3, 3), {"kind": "relu"})
    with pytest.raises(IRError, match="has a cycle"):
        g.with_nodes([g.node("x"), loop, g.node("t"), g.node("a")])


def test_run_float_checks_inputs():
    g = small_graph()
    from nfc.errors import NfcError

    with pytest.raises(NfcError, match=r"input 'x' must have shape \(1, 2, 5, 5\), not \(1, 2, 5\)"):
        run_float(g, {"x": np.zeros((1, 2, 5))})
    with pytest.raises(NfcError, match="missing input 'x'"):
        run_float(g, {})
