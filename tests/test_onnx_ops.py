"""The ONNX frontend, op by op: every op nfc imports, across the opsets where its signature changed,
is held to onnxruntime through the float reference executor (relative error at most 1e-4)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator
from onnx_builders import X_SHAPE, check_against_ort, const_node, make_model, rng, run_ort, weights

from nfc.compiler import Op, run_float
from nfc.errors import ModelError
from nfc.frontends.onnx import import_onnx

C, H, W = X_SHAPE[1:]


def node(op: str, inputs, outputs=("y",), name: str | None = None, **attrs):
    return helper.make_node(op, list(inputs), list(outputs), name=name or f"{op.lower()}_0", **attrs)


def single(op: str, opset: int, extra_inputs=(), inits=None, inputs=None, **attrs):
    """A model of one ``op`` node reading ``x`` (and ``extra_inputs``), writing ``y``."""
    return make_model([node(op, ["x", *extra_inputs], **attrs)], inputs=inputs, inits=inits, opset=opset)


def ops_of(graph) -> list[Op]:
    return [n.op for n in graph.nodes if n.op is not Op.INPUT]


# -- Conv ------------------------------------------------------------------------------------------------
CONV_OPSETS = [7, 11, 23]


@pytest.mark.parametrize("opset", CONV_OPSETS)
@pytest.mark.parametrize(
    "kernel, attrs",
    [
        ((3, 3), {}),
        ((3, 3), {"strides": [2, 2]}),
        ((3, 2), {"strides": [2, 3], "pads": [1, 0, 2, 1]}),
        ((4, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
        ((4, 3), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
        ((2, 5), {"strides": [1, 1], "auto_pad": "SAME_UPPER"}),
        ((2, 5), {"strides": [1, 1], "auto_pad": "SAME_LOWER"}),
        ((3, 3), {"strides": [2, 1], "auto_pad": "VALID"}),
        ((3, 3), {"auto_pad": "NOTSET", "pads": [1, 1, 1, 1]}),
        ((3, 3), {"dilations": [2, 3], "pads": [2, 1, 0, 3]}),
        ((1, 1), {}),
    ],
    ids=[
        "plain",
        "stride",
        "pads",
        "same_upper_s2",
        "same_lower_s2",
        "same_upper",
        "same_lower",
        "valid",
        "notset",
        "dilation",
        "1x1",
    ],
)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_conv(opset, kernel, attrs, bias):
    gen = rng(0)
    inits = {"w": weights(gen, 4, C, *kernel)}
    if bias:
        inits["b"] = weights(gen, 4)
    model = single("Conv", opset, ["w", "b"] if bias else ["w"], inits, **attrs)
    graph = check_against_ort(model)
    assert ops_of(graph) == [Op.CONV]


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("kernel, strides", [((2, 3), (2, 1)), ((3, 2), (1, 3))], ids=str)
def test_conv_dilated_same(auto_pad, kernel, strides):
    """onnxruntime refuses dilations with SAME padding; the ONNX spec defines it (the total pad makes
    the output ``ceil(size / stride)`` with the dilated kernel): hold nfc to onnx's reference."""
    gen = rng(3)
    model = single(
        "Conv",
        13,
        ["w", "b"],
        {"w": weights(gen, 4, C, *kernel), "b": weights(gen, 4)},
        dilations=[2, 2],
        strides=list(strides),
        auto_pad=auto_pad,
    )
    x = rng(4).standard_normal(X_SHAPE).astype(np.float32)
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    assert want.shape == (1, 4, -(-H // strides[0]), -(-W // strides[1]))
    check_against_ort(model, feeds={"x": x}, reference={"y": want})


@pytest.mark.parametrize("opset", CONV_OPSETS)
@pytest.mark.parametrize(
    "cin, cout, group, attrs",
    [
        (4, 6, 2, {"pads": [1, 1, 1, 1]}),
        (6, 6, 3, {"strides": [2, 2]}),
        (4, 4, 4, {"pads": [1, 1, 1, 1]}),  # depthwise
        (4, 8, 4, {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),  # depthwise, multiplier 2
        (3, 3, 3, {"dilations": [2, 2], "pads": [2, 2, 2, 2]}),  # dilated depthwise
    ],
    ids=["g2", "g3", "depthwise", "depthwise_x2", "depthwise_dilated"],
)
def test_conv_groups(opset, cin, cout, group, attrs):
    gen = rng(1)
    inits = {"w": weights(gen, cout, cin // group, 3, 3), "b": weights(gen, cout)}
    model = single("Conv", opset, ["w", "b"], inits, inputs={"x": (1, cin, 8, 10)}, group=group, **attrs)
    graph = check_against_ort(model)
    (conv,) = [n for n in graph.nodes if n.op is Op.CONV]
    assert conv.attr("groups") == group


def test_conv_default_kernel_shape_attribute():
    """``kernel_shape`` given explicitly (torch does) must agree with the weight."""
    gen = rng(2)
    model = single("Conv", 13, ["w"], {"w": weights(gen, 2, C, 3, 3)}, kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    check_against_ort(model)


# -- Gemm, MatMul ----------------------------------------------------------------------------------------
def _flat_then(nodes, opset, inits, n_in=C * H * W):
    flat = node("Flatten", ["x"], ["f"], name="flatten", axis=1)
    return make_model([flat, *nodes], inits=inits, opset=opset)


@pytest.mark.parametrize("opset", [7, 9, 11, 13, 21])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize(
    "bias_shape, alpha, beta",
    [((5,), 1.0, 1.0), ((1, 5), 0.5, 2.0), ((), 1.0, -1.5), ((1,), 1.5, 1.0)],
    ids=["bias_o", "bias_1o", "bias_scalar", "bias_1"],
)
def test_gemm(opset, trans_b, bias_shape, alpha, beta):
    gen = rng(3)
    n = C * H * W
    wt = weights(gen, 5, n, scale=0.1)
    inits = {"w": wt if trans_b else np.ascontiguousarray(wt.T), "c": weights(gen, *bias_shape)}
    gemm = node("Gemm", ["f", "w", "c"], transB=trans_b, alpha=alpha, beta=beta)
    graph = check_against_ort(_flat_then([gemm], opset, inits))
    assert ops_of(graph) == [Op.RESHAPE, Op.LINEAR]


@pytest.mark.parametrize("opset", [11, 13, 23])
def test_gemm_without_bias(opset):
    gen = rng(4)
    gemm = node("Gemm", ["f", "w"], transB=1)
    check_against_ort(_flat_then([gemm], opset, {"w": weights(gen, 7, C * H * W, scale=0.1)}))


@pytest.mark.parametrize("opset", [7, 9, 13, 23])
def test_matmul_with_constant(opset):
    gen = rng(5)
    mm = node("MatMul", ["f", "w"], ["m"])
    add = node("Add", ["m", "b"])
    inits = {"w": weights(gen, C * H * W, 6, scale=0.1), "b": weights(gen, 6)}
    graph = check_against_ort(_flat_then([mm, add], opset, inits))
    assert ops_of(graph) == [Op.RESHAPE, Op.LINEAR, Op.CONST_BINARY]


# -- Flatten, Reshape, Squeeze, Unsqueeze, Transpose ------------------------------------------------------
@pytest.mark.parametrize(
    "opset, axis",
    [(9, 1), (9, 0), (9, 2), (9, 4)] + [(o, a) for o in (11, 13, 23) for a in (1, 0, 2, 3, -1, -3)],
)
def test_flatten(opset, axis):
    check_against_ort(single("Flatten", opset, axis=axis))


@pytest.mark.parametrize("opset", [7, 14, 21])
@pytest.mark.parametrize(
    "shape",
    [[0, -1], [1, -1], [0, 3, -1], [0, 0, 99], [1, 3, 99, 1], [-1], [0, 0, -1, 1, 1], [1, 1, 297]],
    ids=["0,-1", "1,-1", "0,3,-1", "0,0,99", "1,3,99,1", "-1", "0,0,-1,1,1", "1,1,297"],
)
def test_reshape_constant_shape(opset, shape):
    model = single("Reshape", opset, ["s"], {"s": np.array(shape, np.int64)})
    graph = check_against_ort(model)
    assert all(n.op is Op.RESHAPE for n in graph.nodes if n.op is not Op.INPUT)


@pytest.mark.parametrize("opset", [11, 13, 19])
def test_reshape_from_shape_arithmetic(opset):
    """Shape -> Gather -> Unsqueeze -> Concat (what torch exports for ``x.view(x.size(0), -1)``) folds."""
    unsq = (
        node("Unsqueeze", ["n"], ["n1"], name="unsq", axes=[0])
        if opset < 13
        else node("Unsqueeze", ["n", "zero"], ["n1"], name="unsq")
    )
    nodes = [
        node("Relu", ["x"], ["r"], name="relu"),
        node("Shape", ["r"], ["s"], name="shape"),
        node("Gather", ["s", "idx"], ["n"], name="gather", axis=0),
        unsq,
        node("Concat", ["n1", "minus1"], ["target"], name="concat", axis=0),
        node("Reshape", ["r", "target"], ["y"], name="reshape"),
    ]
    inits = {
        "idx": np.array(0, np.int64),
        "minus1": np.array([-1], np.int64),
        "zero": np.array([0], np.int64),
    }
    if opset < 13:
        del inits["zero"]
    graph = check_against_ort(make_model(nodes, inits=inits, opset=opset))
    assert ops_of(graph) == [Op.ACT, Op.RESHAPE]


def test_reshape_from_shape_with_start_and_mul():
    """Shape(start=1) -> ReduceProd-free arithmetic: Mul of gathered dims, Cast, Concat (opset 15+)."""
    nodes = [
        node("Shape", ["x"], ["s"], name="shape", start=2),
        node("Gather", ["s", "i0"], ["h"], name="gh", axis=0),
        node("Gather", ["s", "i1"], ["w"], name="gw", axis=0),
        node("Mul", ["h", "w"], ["hw"], name="mul"),
        node("Cast", ["hw"], ["hwf"], name="cast", to=TensorProto.FLOAT),
        node("Cast", ["hwf"], ["hwi"], name="cast_back", to=TensorProto.INT64),
        node("Unsqueeze", ["hwi", "zero"], ["hw1"], name="unsq"),
        node("Concat", ["one_c", "hw1"], ["target"], name="concat", axis=0),
        node("Reshape", ["x", "target"], ["y"], name="reshape"),
    ]
    inits = {
        "i0": np.array(0, np.int64),
        "i1": np.array(1, np.int64),
        "zero": np.array([0], np.int64),
        "one_c": np.array([1, C], np.int64),
    }
    graph = check_against_ort(make_model(nodes, inits=inits, opset=17))
    assert ops_of(graph) == [Op.RESHAPE]
    assert graph.node(graph.outputs[0].node).shape == (C, H * W)


@pytest.mark.parametrize("opset", [11, 13, 21])
def test_squeeze_unsqueeze(opset):
    """GlobalAveragePool -> Squeeze(2, 3) -> Gemm -> Unsqueeze(2, 3): the classifier-head idiom."""
    gen = rng(6)
    if opset < 13:
        sq = node("Squeeze", ["p"], ["s"], name="squeeze", axes=[2, 3])
        unsq = node("Unsqueeze", ["g"], ["u"], name="unsqueeze", axes=[-1, 2])
    else:
        sq = node("Squeeze", ["p", "axes"], ["s"], name="squeeze")
        unsq = node("Unsqueeze", ["g", "axes_neg"], ["u"], name="unsqueeze")
    nodes = [
        node("GlobalAveragePool", ["x"], ["p"], name="gap"),
        sq,
        node("Gemm", ["s", "w", "b"], ["g"], name="fc", transB=1),
        unsq,
        node("Squeeze", ["u"], ["y"], name="squeeze_all"),  # no axes: every size-1 axis, batch too
    ]
    inits = {
        "w": weights(gen, 5, C),
        "b": weights(gen, 5),
        "axes": np.array([2, 3], np.int64),
        "axes_neg": np.array([-1, 2], np.int64),
    }
    check_against_ort(make_model(nodes, inits=inits, opset=opset))


@pytest.mark.parametrize("opset", [9, 13, 23])
@pytest.mark.parametrize(
    "shape, perm",
    [
        ((1, C, 1, 1), [0, 2, 3, 1]),
        ((1, C, 1, 1), [2, 0, 1, 3]),
        ((1, 1, H, W), [1, 0, 2, 3]),
        ((1, C, 1, W), [0, 2, 1, 3]),
    ],
    ids=["c_last", "batch_moves", "swap_1_1", "h1_swap"],
)
def test_transpose_of_size1_axes(opset, shape, perm):
    model = single("Transpose", opset, inputs={"x": shape}, perm=perm)
    graph = check_against_ort(model)
    assert ops_of(graph) in ([], [Op.RESHAPE])


# -- BatchNormalization -----------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [7, 9, 14, 15])
@pytest.mark.parametrize("epsilon", [1e-5, 1e-3])
def test_batchnorm_is_folded_to_affine(opset, epsilon):
    gen = rng(7)
    inits = {
        "s": weights(gen, C),
        "b": weights(gen, C),
        "m": weights(gen, C),
        "v": np.abs(weights(gen, C)) + 0.1,
    }
    model = single("BatchNormalization", opset, ["s", "b", "m", "v"], inits, epsilon=epsilon)
    graph = check_against_ort(model)
    assert ops_of(graph) == [Op.AFFINE]


def test_batchnorm_after_conv():
    gen = rng(8)
    nodes = [
        node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        node("BatchNormalization", ["c", "s", "b", "m", "v"], name="bn"),
    ]
    inits = {
        "w": weights(gen, 4, C, 3, 3),
        "s": weights(gen, 4),
        "b": weights(gen, 4),
        "m": weights(gen, 4),
        "v": np.abs(weights(gen, 4)) + 0.1,
    }
    check_against_ort(make_model(nodes, inits=inits, opset=15))


@pytest.mark.parametrize("opset", [11, 15])
def test_batchnorm_of_a_vector(opset):
    """BatchNorm1d after a linear layer: the per-channel affine of a (1, C) vector."""
    gen = rng(27)
    nodes = [
        node("Flatten", ["x"], ["f"], name="flatten"),
        node("Gemm", ["f", "w"], ["g"], name="fc", transB=1),
        node("BatchNormalization", ["g", "s", "b", "m", "v"], name="bn"),
    ]
    inits = {
        "w": weights(gen, 6, C * H * W, scale=0.1),
        "s": weights(gen, 6),
        "b": weights(gen, 6),
        "m": weights(gen, 6),
        "v": np.abs(weights(gen, 6)) + 0.1,
    }
    graph = check_against_ort(make_model(nodes, inits=inits, opset=opset))
    assert ops_of(graph) == [Op.RESHAPE, Op.LINEAR, Op.AFFINE]


# -- activations -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [7, 13, 14, 23])
@pytest.mark.parametrize(
    "op, attrs",
    [
        ("Relu", {}),
        ("LeakyRelu", {}),
        ("LeakyRelu", {"alpha": 0.3}),
        ("Tanh", {}),
        ("Sigmoid", {}),
        ("HardSigmoid", {}),
        ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}),
        ("Abs", {}),
    ],
    ids=["relu", "leaky_default", "leaky_0.3", "tanh", "sigmoid", "hsig_default", "hsig_custom", "abs"],
)
def test_activation(opset, op, attrs):
    graph = check_against_ort(
        single(op, opset, **attrs), feeds={"x": 3 * rng(9).standard_normal(X_SHAPE, np.float32)}
    )
    assert ops_of(graph) == [Op.ACT]


@pytest.mark.parametrize("opset", [14, 22, 23])
def test_hard_swish(opset):
    x = (4 * rng(10).standard_normal(X_SHAPE)).astype(np.float32)
    graph = check_against_ort(single("HardSwish", opset), feeds={"x": x})
    assert ops_of(graph) == [Op.ACT]


@pytest.mark.parametrize("opset", [7, 9, 16])
@pytest.mark.parametrize("slope_shape", [(C, 1, 1), (1,), (), (1, C, 1, 1), (W,)], ids=str)
def test_prelu(opset, slope_shape):
    slope = weights(rng(11), *slope_shape)
    graph = check_against_ort(single("PRelu", opset, ["slope"], {"slope": slope}))
    assert ops_of(graph) == [Op.ACT]


@pytest.mark.parametrize(
    "opset, attrs, bounds",
    [
        (7, {"min": 0.0, "max": 6.0}, None),
        (10, {"min": -0.5, "max": 0.75}, None),
        (7, {"max": 1.0}, None),
        (10, {"min": -1.0}, None),
        (11, {}, (0.0, 6.0)),
        (12, {}, (-0.5, 0.75)),
        (13, {}, ("", 1.0)),
        (13, {}, (-1.0, None)),
        (23, {}, (0.0, 6.0)),
    ],
    ids=[
        "relu6_attr7",
        "attr10",
        "only_max_attr",
        "only_min_attr",
        "relu6_in11",
        "in12",
        "only_max_in",
        "only_min_in",
        "relu6_in23",
    ],
)
def test_clip(opset, attrs, bounds):
    extra, inits = [], {}
    if bounds is not None:
        for name, b in zip(("lo", "hi"), bounds, strict=True):
            if b is None:
                continue
            if b == "":
                extra.append("")
                continue
            extra.append(name)
            inits[name] = np.array(b, np.float32)
    x = (4 * rng(12).standard_normal(X_SHAPE)).astype(np.float32)
    graph = check_against_ort(single("Clip", opset, extra, inits, **attrs), feeds={"x": x})
    assert ops_of(graph) == [Op.ACT]


def test_clip_without_bounds_is_removed():
    graph = check_against_ort(
        make_model([node("Relu", ["x"], ["r"], name="relu"), node("Clip", ["r"])], opset=13)
    )
    assert ops_of(graph) == [Op.ACT]


def test_clip_bounds_from_constant_nodes():
    nodes = [
        const_node("lo", np.array(0.0, np.float32)),
        const_node("hi", np.array(6.0, np.float32)),
        node("Clip", ["x", "lo", "hi"]),
    ]
    check_against_ort(
        make_model(nodes, opset=13), feeds={"x": 8 * rng(13).standard_normal(X_SHAPE, np.float32)}
    )


# -- pooling ---------------------------------------------------------------------------------------------
POOL_CASES = [
    ((2, 2), {"strides": [2, 2]}),
    ((3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((3, 2), {"strides": [1, 2], "pads": [0, 1, 2, 0]}),
    ((3, 3), {}),
    ((3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((2, 3), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((3, 3), {"strides": [2, 3], "auto_pad": "VALID"}),
]
POOL_IDS = ["2x2s2", "3x3s2p1", "asym_pads", "3x3s1", "same_upper", "same_lower", "valid"]
# Input sizes where ceil_mode=1 changes the output size.
CEIL_CASES = [
    ((9, 11), (2, 2), {"strides": [2, 2]}),
    ((10, 12), (3, 3), {"strides": [2, 2]}),
    ((10, 12), (3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((10, 7), (3, 2), {"strides": [3, 2], "pads": [1, 0, 1, 0]}),
    ((9, 9), (2, 2), {"strides": [2, 2], "pads": [1, 0, 1, 0]}),  # a last window along H starts in the
]  # right padding and is dropped
CEIL_IDS = ["2x2s2", "3x3s2", "3x3s2p1", "s3", "window_in_pad"]
CEIL_OPSETS = [10, 12, 19, 22, 23]


def _ceil_case(op, opset, hw, kernel, attrs, **more):
    return single(
        op, opset, inputs={"x": (1, C, *hw)}, kernel_shape=list(kernel), ceil_mode=1, **attrs, **more
    )


def _expect_window_in_pad_error(model, op, opset):
    with pytest.raises(ModelError) as info:
        import_onnx(model)
    assert str(info.value) == (
        f"tiny: cannot import the model; 1 problem:\n"
        f"  - node '{op.lower()}_0' ({op}): ceil_mode=1 makes the last window along axis 2 start in the right "
        f"padding; ONNX opset {opset} keeps that window and onnxruntime drops it (hint: re-export with opset 22 "
        "or later, or change the pads so that ceil_mode=0 gives the size you want)"
    )


@pytest.mark.parametrize("opset", [8, 10, 12, 22])
@pytest.mark.parametrize("kernel, attrs", POOL_CASES, ids=POOL_IDS)
def test_maxpool(opset, kernel, attrs):
    graph = check_against_ort(single("MaxPool", opset, kernel_shape=list(kernel), **attrs))
    assert ops_of(graph) == [Op.MAXPOOL]


@pytest.mark.parametrize("opset", CEIL_OPSETS)
@pytest.mark.parametrize("hw, kernel, attrs", CEIL_CASES, ids=CEIL_IDS)
def test_maxpool_ceil_mode(opset, hw, kernel, attrs):
    model = _ceil_case("MaxPool", opset, hw, kernel, attrs)
    if opset < 22 and hw == (9, 9):
        _expect_window_in_pad_error(model, "MaxPool", opset)
        return
    graph = check_against_ort(model)
    floor_model = single("MaxPool", opset, inputs={"x": (1, C, *hw)}, kernel_shape=list(kernel), **attrs)
    assert graph.outputs[0].onnx_shape != import_onnx(floor_model).outputs[0].onnx_shape  # ceil_mode matters


@pytest.mark.parametrize("opset", [7, 10, 11, 19])
@pytest.mark.parametrize("include", [0, 1])
@pytest.mark.parametrize("kernel, attrs", POOL_CASES, ids=POOL_IDS)
def test_avgpool(opset, include, kernel, attrs):
    model = single("AveragePool", opset, kernel_shape=list(kernel), count_include_pad=include, **attrs)
    graph = check_against_ort(model)
    assert ops_of(graph) == [Op.AVGPOOL]


@pytest.mark.parametrize("opset", CEIL_OPSETS)
@pytest.mark.parametrize("hw, kernel, attrs", CEIL_CASES, ids=CEIL_IDS)
def test_avgpool_ceil_mode(opset, hw, kernel, attrs):
    model = _ceil_case("AveragePool", opset, hw, kernel, attrs, count_include_pad=0)
    if opset < 22 and hw == (9, 9):
        _expect_window_in_pad_error(model, "AveragePool", opset)
        return
    check_against_ort(model)


def test_avgpool_ceil_mode_counting_pads_is_refused():
    model = _ceil_case("AveragePool", 13, (9, 11), (2, 2), {"strides": [2, 2]}, count_include_pad=1)
    with pytest.raises(ModelError) as info:
        import_onnx(model)
    assert str(info.value) == (
        "tiny: cannot import the model; 1 problem:\n"
        "  - node 'averagepool_0' (AveragePool): ceil_mode=1 with count_include_pad=1 is not supported "
        "(hint: use ceil_mode=0 or count_include_pad=0)"
    )


@pytest.mark.parametrize("opset", [7, 13, 23])
@pytest.mark.parametrize(
    "op, ir_op", [("GlobalAveragePool", Op.GLOBAL_AVGPOOL), ("GlobalMaxPool", Op.GLOBAL_MAXPOOL)]
)
def test_global_pool(opset, op, ir_op):
    graph = check_against_ort(single(op, opset))
    assert ops_of(graph) == [ir_op]


@pytest.mark.parametrize("opset", [11, 13, 18, 23])
@pytest.mark.parametrize("axes", [[2, 3], [-1, -2]], ids=["2,3", "-1,-2"])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("op, ir_op", [("ReduceMean", Op.GLOBAL_AVGPOOL), ("ReduceMax", Op.GLOBAL_MAXPOOL)])
def test_reduce_over_hw(opset, axes, keepdims, op, ir_op):
    if opset < 18:
        model = single(op, opset, axes=axes, keepdims=keepdims)
    else:
        model = single(op, opset, ["axes"], {"axes": np.array(axes, np.int64)}, keepdims=keepdims)
    graph = check_against_ort(model)
    assert ops_of(graph)[0] is ir_op
    assert graph.outputs[0].onnx_shape == ((1, C, 1, 1) if keepdims else (1, C))


# -- elementwise binary ops, Concat ---------------------------------------------------------------------
BINARY = ["Add", "Sub", "Mul", "Div", "Max", "Min"]


def _positive(shape, seed):
    return (np.abs(rng(seed).standard_normal(shape)) + 0.5).astype(np.float32)


@pytest.mark.parametrize("opset", [7, 13, 14])
@pytest.mark.parametrize("op", BINARY)
def test_binary_two_tensors(opset, op):
    model = make_model([node(op, ["x", "z"])], inputs={"x": X_SHAPE, "z": X_SHAPE}, opset=opset)
    feeds = {"x": rng(14).standard_normal(X_SHAPE, np.float32), "z": _positive(X_SHAPE, 15)}
    graph = check_against_ort(model, feeds=feeds)
    assert ops_of(graph) == [Op.BINARY]


@pytest.mark.parametrize("op", BINARY)
def test_binary_tensor_with_broadcast_tensor(op):
    """A feature map against a per-channel tensor computed from it (squeeze-and-excitation)."""
    nodes = [
        node("GlobalAveragePool", ["x"], ["g"], name="gap"),
        node("Sigmoid", ["g"], ["s"], name="sig"),
        node(op, ["x", "s"], ["a"], name="left"),
        node(op, ["s", "a"], name="right"),
    ]
    check_against_ort(make_model(nodes, opset=13))


@pytest.mark.parametrize("opset", [8, 13])
@pytest.mark.parametrize("op", BINARY)
@pytest.mark.parametrize("const_shape", [(C, 1, 1), (1, C, 1, 1), (), (1,), (W,), (H, 1)], ids=str)
@pytest.mark.parametrize("const_first", [False, True], ids=["x_op_c", "c_op_x"])
def test_binary_with_constant(opset, op, const_shape, const_first):
    c = _positive(const_shape, 16)
    ins = ["c", "x"] if const_first else ["x", "c"]
    model = make_model([node(op, ins)], inits={"c": c}, opset=opset)
    feeds = {
        "x": _positive(X_SHAPE, 17)
        if const_first and op == "Div"
        else rng(17).standard_normal(X_SHAPE, np.float32)
    }
    graph = check_against_ort(model, feeds=feeds)
    assert ops_of(graph) == [Op.CONST_BINARY]


@pytest.mark.parametrize("op", ["Add", "Mul", "Sub", "Div"])
def test_binary_with_constant_opset7(op):
    c = _positive((C, 1, 1), 18)
    check_against_ort(make_model([node(op, ["x", "c"])], inits={"c": c}, opset=7))


@pytest.mark.parametrize("op", ["Max", "Min"])
@pytest.mark.parametrize("n", [1, 3])
def test_variadic_max_min(op, n):
    names = ["x", "z", "u"][:n]
    model = make_model([node(op, names)], inputs=dict.fromkeys(names, X_SHAPE), opset=13)
    check_against_ort(model)


@pytest.mark.parametrize("op", ["Max", "Min"])
@pytest.mark.parametrize("order", [["c", "d", "x"], ["x", "c", "d"], ["c", "x", "d", "z"]], ids=str)
def test_variadic_max_min_with_constants(op, order):
    """Constants next to each other fold; the rest becomes a chain of two-input nodes."""
    gen = rng(26)
    inits = {"c": weights(gen, C, 1, 1), "d": weights(gen, 1, 1, W)}
    inputs = {k: X_SHAPE for k in order if k not in inits}
    check_against_ort(make_model([node(op, order)], inputs=inputs, inits=inits, opset=13))


@pytest.mark.parametrize("opset", [7, 11, 13, 23])
@pytest.mark.parametrize("n", [2, 3])
def test_concat_channels(opset, n):
    gen = rng(19)
    convs = [node("Conv", ["x", f"w{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]) for i in range(n)]
    inits = {f"w{i}": weights(gen, 2 + i, C, 3, 3) for i in range(n)}
    axis = -3 if opset >= 11 else 1
    nodes = [
        *convs,
        node("Concat", [f"c{i}" for i in range(n)], axis=axis),
    ]
    graph = check_against_ort(make_model(nodes, inits=inits, opset=opset))
    assert graph.node(graph.outputs[0].node).shape == (sum(2 + i for i in range(n)), H, W)


def test_concat_of_the_input_with_itself():
    check_against_ort(make_model([node("Concat", ["x", "x"], axis=1)], opset=13))


# -- Pad -------------------------------------------------------------------------------------------------
PADS = [[0, 0, 1, 2, 0, 0, 3, 0], [0, 0, 0, 0, 0, 0, 1, 1], [0, 0, 2, 2, 0, 0, 2, 2]]


@pytest.mark.parametrize("opset", [7, 11, 13, 18, 19, 21, 23])
@pytest.mark.parametrize("pads", PADS, ids=["asym", "bottom_right", "sym"])
@pytest.mark.parametrize("value", [None, 0.0, -1.5])
def test_pad_constant(opset, pads, value):
    if opset < 11:
        attrs = {"pads": pads} | ({} if value is None else {"value": value})
        model = single("Pad", opset, **attrs)
    else:
        extra = ["pads"] + ([] if value is None else ["v"])
        inits = {"pads": np.array(pads, np.int64)} | (
            {} if value is None else {"v": np.array(value, np.float32)}
        )
        model = single("Pad", opset, extra, inits, mode="constant")
    graph = check_against_ort(model)
    assert ops_of(graph) == [Op.PAD]


@pytest.mark.parametrize("opset", [18, 19, 21, 23])
@pytest.mark.parametrize(
    "axes, pads", [([2, 3], [1, 2, 3, 0]), ([-1], [2, 1]), ([3, 2], [0, 1, 2, 3])], ids=["hw", "w_neg", "wh"]
)
def test_pad_with_axes_input(opset, axes, pads):
    inits = {
        "pads": np.array(pads, np.int64),
        "v": np.array(0.25, np.float32),
        "axes": np.array(axes, np.int64),
    }
    model = single("Pad", opset, ["pads", "v", "axes"], inits)
    check_against_ort(model)


def test_pad_with_empty_value_input_then_axes():
    inits = {"pads": np.array([1, 1, 1, 1], np.int64), "axes": np.array([2, 3], np.int64)}
    check_against_ort(single("Pad", 18, ["pads", "", "axes"], inits))


# -- Resize, Upsample ------------------------------------------------------------------------------------
RESIZE_MODES = [
    ("asymmetric", "floor"),
    ("half_pixel", "round_prefer_floor"),
    ("half_pixel", "round_prefer_ceil"),
    ("pytorch_half_pixel", "round_prefer_floor"),
]


@pytest.mark.parametrize("scales", [(2, 2), (3, 2), (1, 3)], ids=str)
def test_resize_opset10(scales):
    s = np.array([1, 1, *scales], np.float32)
    graph = check_against_ort(single("Resize", 10, ["s"], {"s": s}, mode="nearest"))
    assert ops_of(graph) == [Op.RESIZE]


@pytest.mark.parametrize("opset", [11, 13, 18, 19, 23])
@pytest.mark.parametrize("coord, nearest", RESIZE_MODES, ids=["asym_floor", "hp_floor", "hp_ceil", "pt_hp"])
@pytest.mark.parametrize("scales", [(2, 2), (3, 2)], ids=str)
@pytest.mark.parametrize("by", ["scales", "sizes"])
def test_resize(opset, coord, nearest, scales, by):
    attrs = {"mode": "nearest", "coordinate_transformation_mode": coord, "nearest_mode": nearest}
    empty = np.zeros(0, np.float32)
    if by == "scales":
        inits = {"roi": empty, "s": np.array([1, 1, *scales], np.float32)}
        extra = ["roi", "s"] if opset == 11 else ["", "s"]
    else:
        inits = {"roi": empty, "empty": empty, "n": np.array([1, C, H * scales[0], W * scales[1]], np.int64)}
        extra = ["roi", "empty", "n"] if opset == 11 else ["", "", "n"]
    graph = check_against_ort(single("Resize", opset, extra, inits, **attrs))
    assert ops_of(graph) == [Op.RESIZE]


@pytest.mark.parametrize(
    "coord",
    [
        "half_pixel",
        "half_pixel_symmetric",
        "pytorch_half_pixel",
        "asymmetric",
        "tf_half_pixel_for_nn",
        "align_corners",
    ],
)
@pytest.mark.parametrize("nearest", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
@pytest.mark.parametrize("scale", [2, 3])
def test_resize_mode_is_imported_exactly_when_it_repeats_pixels(coord, nearest, scale):
    """Every mode pair is imported when, at this size and scale, it repeats each pixel ``scale``
    times (onnxruntime agrees), and refused with a clear message when it does not."""
    inits = {"s": np.array([1, 1, scale, scale], np.float32)}
    model = single(
        "Resize",
        19,
        ["", "s"],
        inits,
        mode="nearest",
        coordinate_transformation_mode=coord,
        nearest_mode=nearest,
    )
    x = rng(25).standard_normal(X_SHAPE).astype(np.float32)
    want = run_ort(model, {"x": x})["y"]
    repeats = np.array_equal(want, x.repeat(scale, axis=2).repeat(scale, axis=3))
    if repeats:
        check_against_ort(model, feeds={"x": x}, reference={"y": want})
        return
    with pytest.raises(ModelError) as info:
        import_onnx(model)
    assert str(info.value) == (
        "tiny: cannot import the model; 1 problem:\n"
        f"  - node 'resize_0' (Resize): coordinate_transformation_mode={coord!r} with nearest_mode={nearest!r} "
        f"does not repeat each pixel {scale} times along axis 2 (hint: export with the default "
        "half_pixel/round_prefer_floor or asymmetric/floor)"
    )


@pytest.mark.parametrize("opset", [18, 19, 23])
@pytest.mark.parametrize("by", ["scales", "sizes"])
def test_resize_with_axes(opset, by):
    if by == "scales":
        inits, extra = {"s": np.array([3, 2], np.float32)}, ["", "s"]
    else:
        inits, extra = {"n": np.array([H * 3, W * 2], np.int64)}, ["", "", "n"]
    model = single(
        "Resize",
        opset,
        extra,
        inits,
        mode="nearest",
        axes=[2, 3],
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    graph = check_against_ort(model)
    assert graph.outputs[0].onnx_shape == (1, C, 3 * H, 2 * W)


@pytest.mark.parametrize("opset", [18, 23])
@pytest.mark.parametrize("policy", ["not_larger", "not_smaller"])
def test_resize_sizes_keep_aspect_ratio(opset, policy):
    # sizes ask for (2H, 3W); keeping the aspect ratio scales both axes by 2 or by 3
    inits = {"n": np.array([2 * H, 3 * W], np.int64)}
    model = single(
        "Resize", opset, ["", "", "n"], inits, mode="nearest", axes=[2, 3], keep_aspect_ratio_policy=policy
    )
    graph = check_against_ort(model)
    k = 2 if policy == "not_larger" else 3
    assert graph.outputs[0].onnx_shape == (1, C, k * H, k * W)


def test_upsample_opset7_attribute():
    graph = check_against_ort(single("Upsample", 7, mode="nearest", scales=[1.0, 1.0, 2.0, 3.0]))
    assert ops_of(graph) == [Op.RESIZE]


def test_upsample_opset9_input():
    model = single("Upsample", 9, ["s"], {"s": np.array([1, 1, 2, 2], np.float32)}, mode="nearest")
    graph = check_against_ort(model)
    assert ops_of(graph) == [Op.RESIZE]


# -- removed and folded nodes ----------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [7, 10, 12, 13, 22])
def test_dropout_and_identity_are_removed(opset):
    drop_in = ["i"] if opset < 12 else ["i", "ratio"]
    inits = {} if opset < 12 else {"ratio": np.array(0.5, np.float32)}
    nodes = [
        node("Relu", ["x"], ["r"], name="relu"),
        node("Identity", ["r"], ["i"], name="the_identity"),
        node("Dropout", drop_in, ["d"], name="the_dropout"),
        node("Sigmoid", ["d"], name="sig"),
    ]
    graph = check_against_ort(make_model(nodes, inits=inits, opset=opset))
    assert ops_of(graph) == [Op.ACT, Op.ACT]
    assert not {n.source for n in graph.nodes} & {"the_identity", "the_dropout"}


@pytest.mark.parametrize("opset", [7, 10, 13, 22])
def test_dropout_with_mask_output_is_removed(opset):
    """Dropout's optional mask output is all ones in inference: a constant, never computed."""
    attrs = {"ratio": 0.3} if opset < 12 else {}
    nodes = [node("Dropout", ["x"], ["d", "mask"], name="drop", **attrs), node("Relu", ["d"], name="relu")]
    graph = check_against_ort(make_model(nodes, opset=opset))
    assert ops_of(graph) == [Op.ACT]


def test_identity_output_is_the_input():
    graph = check_against_ort(make_model([node("Identity", ["x"])], opset=13))
    assert ops_of(graph) == []


@pytest.mark.parametrize("opset", [9, 12, 13, 23])
def test_constant_node(opset):
    gen = rng(20)
    nodes = [
        const_node("c", weights(gen, C, 1, 1)),
        const_node("w", weights(gen, 4, C, 1, 1)),
        node("Mul", ["x", "c"], ["m"], name="scale"),
        node("Conv", ["m", "w"], name="conv"),
    ]
    if opset >= 12:
        nodes += [
            helper.make_node("Constant", [], ["k"], name="const_k", value_float=0.5),
            node("Add", ["y", "k"], ["z"], name="add_k"),
        ]
        model = make_model(nodes, outputs=["z"], opset=opset)
    else:
        model = make_model(nodes, opset=opset)
    graph = check_against_ort(model)
    assert ops_of(graph)[:2] == [Op.CONST_BINARY, Op.CONV]


def test_constant_arithmetic_is_folded():
    """Weights computed from constants (Mul, Add, Transpose, Reshape) fold before the Conv reads them."""
    gen = rng(21)
    nodes = [
        node("Transpose", ["wt"], ["w0"], name="tw", perm=[1, 0, 2, 3]),
        node("Mul", ["w0", "two"], ["w1"], name="mw"),
        node("Add", ["b0", "two"], ["b1"], name="ab"),
        node("Conv", ["x", "w1", "b1"], name="conv", pads=[1, 1, 1, 1]),
    ]
    inits = {"wt": weights(gen, C, 4, 3, 3), "two": np.array(2.0, np.float32), "b0": weights(gen, 4)}
    graph = check_against_ort(make_model(nodes, inits=inits, opset=13))
    assert ops_of(graph) == [Op.CONV]


@pytest.mark.parametrize("opset", [7, 13, 19, 23])
@pytest.mark.parametrize("to", [TensorProto.FLOAT, TensorProto.DOUBLE])
def test_cast_to_float_is_removed(opset, to):
    nodes = [
        node("Cast", ["x"], ["c"], name="cast", to=to),
        node("Cast", ["c"], ["y"], name="cast_back", to=TensorProto.FLOAT),
    ]
    graph = check_against_ort(make_model(nodes, opset=opset))
    assert ops_of(graph) == []


# -- host ops: LRN, Softmax ------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [7, 13, 23])
@pytest.mark.parametrize(
    "size, attrs",
    [(5, {}), (3, {"alpha": 1e-2, "beta": 0.5, "bias": 2.0}), (1, {})],
    ids=["alexnet", "custom", "size1"],
)
def test_lrn_is_a_host_op(opset, size, attrs):
    model = single("LRN", opset, inputs={"x": (1, 7, 5, 6)}, size=size, **attrs)
    feeds = {"x": 3 * rng(22).standard_normal((1, 7, 5, 6), np.float32)}
    graph = check_against_ort(model, feeds=feeds)
    (lrn,) = [n for n in graph.nodes if n.op is not Op.INPUT]
    assert lrn.op is Op.LRN and lrn.on_host


@pytest.mark.parametrize("size", [2, 4])
def test_lrn_even_size_follows_the_spec(size):
    """An even ``size`` sums channels ``c - floor((size-1)/2) .. c + ceil((size-1)/2)`` (ONNX spec)."""
    model = single("LRN", 13, inputs={"x": (1, 6, 4, 5)}, size=size, alpha=0.5, beta=0.75, bias=1.0)
    x = rng(23).standard_normal((1, 6, 4, 5)).astype(np.float32)
    sq = np.pad(x.astype(np.float64) ** 2, ((0, 0), ((size - 1) // 2, size // 2), (0, 0), (0, 0)))
    acc = sum(sq[:, i : i + 6] for i in range(size))
    want = (x / (1.0 + 0.5 / size * acc) ** 0.75).astype(np.float32)
    check_against_ort(model, feeds={"x": x}, reference={"y": want})


@pytest.mark.parametrize(
    "opset, axis, shape, axes",
    [
        (11, 1, X_SHAPE, (0, 1, 2)),  # coerced to 2-D: one softmax over C*H*W
        (11, 2, X_SHAPE, (1, 2)),
        (11, -1, X_SHAPE, (2,)),
        (11, None, (1, 10), (0,)),
        (13, -1, X_SHAPE, (2,)),
        (13, 1, X_SHAPE, (0,)),
        (13, None, (1, 10), (0,)),
        (7, 1, (1, 10), (0,)),
        (23, 1, X_SHAPE, (0,)),
    ],
    ids=[
        "11_axis1",
        "11_axis2",
        "11_axis-1",
        "11_vector",
        "13_axis-1",
        "13_axis1",
        "13_vector",
        "7_vector",
        "23_axis1",
    ],
)
def test_softmax_is_a_host_op(opset, axis, shape, axes):
    attrs = {} if axis is None else {"axis": axis}
    graph = check_against_ort(single("Softmax", opset, inputs={"x": shape}, **attrs))
    (sm,) = [n for n in graph.nodes if n.op is not Op.INPUT]
    assert sm.op is Op.SOFTMAX and sm.on_host and sm.attr("axes") == axes


# -- a small network ------------------------------------------------------------------------------------
@pytest.mark.parametrize("opset", [11, 13, 17, 23])
def test_small_network(opset):
    """Many ops chained as in a real convnet, checked end to end."""
    gen = rng(24)
    cin, hw = 3, (16, 18)
    t = {}

    def p(name, *shape, scale=0.3):
        t[name] = weights(gen, *shape, scale=scale)
        return name

    axes13 = opset >= 13
    if axes13:
        t["axes_hw"] = np.array([2, 3], np.int64)
    nodes = [
        node("Conv", ["x", p("w1", 8, cin, 3, 3), p("b1", 8)], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        node("BatchNormalization", ["c1", p("s1", 8), p("o1", 8), p("mean1", 8), "v1"], ["bn1"], name="bn1"),
        node("Relu", ["bn1"], ["r1"], name="relu1"),
        node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),  # 8x9
        node("Conv", ["p1", p("dw", 8, 1, 3, 3)], ["d1"], name="dwconv", group=8, pads=[1, 1, 1, 1]),
        node("Clip", ["d1", "zero", "six"], ["d2"], name="relu6"),
        node("Conv", ["d2", p("pw", 6, 8, 1, 1), p("pb", 6)], ["e1"], name="pwconv"),
        node("PRelu", ["e1", p("slope", 6, 1, 1)], ["e2"], name="prelu"),
        node("HardSwish", ["e2"], ["e3"], name="hswish")
        if opset >= 14
        else node("HardSigmoid", ["e2"], ["e3"], name="hsig"),
        node(
            "AveragePool",
            ["e3"],
            ["a1"],
            name="avg",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            count_include_pad=0,
        ),
        node(
            "Resize",
            ["a1", "", "scales"] if opset >= 13 else ["a1", "roi", "scales"],
            ["u1"],
            name="up",
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        ),  # 16x18
        node("Pad", ["u1", "pads", "pad_value"], ["u2"], name="pad"),  # 18x20
        node("Conv", ["u2", p("w3", 6, 6, 3, 3)], ["u3"], name="conv3"),  # 16x18
        node("Concat", ["u3", "x", "c1"], ["cat"], name="concat", axis=1),  # 6 + 3 + 8 = 17 channels
        node("Tanh", ["cat"], ["t1"], name="tanh"),
        node("LRN", ["t1"], ["l1"], name="lrn", size=3),
        node("Mul", ["l1", p("cscale", 17, 1, 1)], ["m1"], name="chan_scale"),
        node("Sub", ["m1", "x_mean"], ["m2"], name="sub_mean"),
        node(
            "ReduceMean",
            ["m2", "axes_hw"] if opset >= 18 else ["m2"],
            ["g1"],
            name="gap",
            keepdims=1,
            **({} if opset >= 18 else {"axes": [2, 3]}),
        ),
        node(
            "Squeeze",
            ["g1", "axes_hw"] if axes13 else ["g1"],
            ["g2"],
            name="squeeze",
            **({} if axes13 else {"axes": [2, 3]}),
        ),
        node("Gemm", ["g2", p("fw", 10, 17), p("fb", 10)], ["fc"], name="fc", transB=1),
        node("Dropout", ["fc"], ["fd"], name="dropout"),
        node("Softmax", ["fd"], ["y"], name="softmax", axis=1),
        node("Sigmoid", ["fd"], ["z"], name="aux_sigmoid"),
    ]
    t["v1"] = np.abs(weights(gen, 8)) + 0.5
    t["zero"], t["six"] = np.array(0.0, np.float32), np.array(6.0, np.float32)
    t["scales"] = np.array([1, 1, 2, 2], np.float32)
    t["roi"] = np.zeros(0, np.float32)
    t["pads"] = np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)
    t["pad_value"] = np.array(0.5, np.float32)
    t["x_mean"] = np.array(0.1, np.float32)
    model = make_model(nodes, inputs={"x": (1, cin, *hw)}, outputs=["y", "z"], inits=t, opset=opset)
    graph = check_against_ort(model)
    host = [n.source for n in graph.nodes if n.on_host]
    assert host == ["lrn", "softmax"]
    assert "dropout" not in {n.source for n in graph.nodes}


# -- extreme values ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Softmax"])
def test_extreme_inputs_give_ieee_results_without_warnings(op):
    """Huge activations saturate as in onnxruntime, with no numpy overflow warning (an error here)."""
    x = (1000 * rng(28).standard_normal(X_SHAPE)).astype(np.float32)
    check_against_ort(single(op, 14), feeds={"x": x})


def test_division_by_zero_gives_inf_and_nan_like_onnxruntime():
    model = make_model([node("Relu", ["x"], ["r"], name="relu"), node("Div", ["x", "r"])], opset=13)
    x = rng(29).standard_normal(X_SHAPE).astype(np.float32)
    x[0, 0, 0, :3] = 0.0
    got = run_float(import_onnx(model), {"x": x})["y"]
    want = run_ort(model, {"x": x})["y"]
    assert np.isinf(want).any() and np.isnan(want).any()
    np.testing.assert_array_equal(got, want)
