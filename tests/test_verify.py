"""The verifier names the offending node, its op and inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_ir import small_graph

from nfc.compiler import Graph, GraphOutput, IRError, Op, TensorType, make_node, verify


def test_valid_graph_passes():
    g = small_graph()
    assert verify(g) is g


def test_wrong_declared_shape():
    g = small_graph()
    bad = dataclasses.replace(g.node("t"), type=TensorType((3, 4, 4)))
    with pytest.raises(IRError) as err:
        verify(Graph(g.name, (g.node("x"), g.node("c"), bad, g.node("a")), g.outputs))
    assert str(err.value) == (
        "node 't' (act, inputs ['c']) declares shape (3, 4, 4) but its op computes (3, 3, 3)"
    )


def test_use_before_definition_and_undefined():
    g = small_graph()
    with pytest.raises(IRError) as err:
        verify(Graph(g.name, (g.node("x"), g.node("t"), g.node("c"), g.node("a")), g.outputs))
    assert str(err.value) == "node 't' (act, inputs ['c']) reads 'c', which is defined later"
    ghost = make_node("t", Op.ACT, ("ghost",), (3, 3, 3), {"kind": "tanh"})
    with pytest.raises(
        IRError, match=r"node 't' \(act, inputs \['ghost'\]\) reads 'ghost', which is defined nowhere"
    ):
        verify(Graph(g.name, (g.node("x"), g.node("c"), ghost, g.node("a")), g.outputs))


def test_duplicate_names_and_bad_outputs():
    g = small_graph()
    with pytest.raises(IRError, match=r"node 'c' \(conv\) is defined twice"):
        verify(Graph(g.name, g.nodes + (g.node("c"),), g.outputs))
    with pytest.raises(IRError, match="output 'y' names node 'zz', which does not exist"):
        verify(Graph(g.name, g.nodes, (GraphOutput("y", "zz", (1, 3, 3, 3)),)))
    with pytest.raises(IRError, match="output 'y' has 9 elements but node 'a' has 27"):
        verify(Graph(g.name, g.nodes, (GraphOutput("y", "a", (1, 9)),)))


def test_conv_channel_mismatch_and_nonfinite_params():
    g = small_graph()
    conv = g.node("c")
    bad = make_node(
        "c",
        Op.CONV,
        ("x",),
        (3, 3, 3),
        dict(conv.attrs),
        {"weight": np.zeros((3, 4, 3, 3)), "bias": np.zeros(3)},
    )
    with pytest.raises(
        IRError, match=r"node 'c' \(conv, inputs \['x'\]\): input channels 2 != weight 4 x groups 1"
    ):
        verify(Graph(g.name, (g.node("x"), bad, g.node("t"), g.node("a")), g.outputs))
    w = np.array(conv.param("weight"))
    w[0, 0, 0, 0] = np.nan
    nan = make_node(
        "c", Op.CONV, ("x",), (3, 3, 3), dict(conv.attrs), {"weight": w, "bias": conv.param("bias")}
    )
    with pytest.raises(IRError, match=r"node 'c' \(conv\): parameter 'weight' is not finite"):
        verify(Graph(g.name, (g.node("x"), nan, g.node("t"), g.node("a")), g.outputs))
