"""Bad input to the ONNX frontend: every way a model file can be wrong gives exit code 2 and one clear
message naming what is wrong (every offending node, with a hint), never a traceback."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_builders import make_model, rng, weights

from nfc.cli import main
from nfc.errors import ModelError
from nfc.frontends.onnx import SUPPORTED_OPS, import_onnx

PROBLEMS_1 = "cannot import the model; 1 problem:"


def node(op: str, inputs, outputs=("y",), name: str | None = None, **attrs):
    return helper.make_node(op, list(inputs), list(outputs), name=name or op.lower(), **attrs)


def vi(name: str, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def raw_model(nodes, inputs, outputs, opset=13, inits=(), opsets=None) -> onnx.ModelProto:
    """A model exactly as given (no shape filling), for models that are wrong on purpose."""
    graph = helper.make_graph(list(nodes), "bad", list(inputs), list(outputs), list(inits))
    return helper.make_model(graph, opset_imports=opsets or [helper.make_opsetid("", opset)])


def relu_model(shape, opset=13) -> onnx.ModelProto:
    return raw_model([node("Relu", ["x"], name="relu")], [vi("x", shape)], [vi("y", shape)], opset)


def good_model() -> onnx.ModelProto:
    gen = rng(0)
    nodes = [
        node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        node("Relu", ["c"], name="relu"),
    ]
    return make_model(nodes, inits={"w": weights(gen, 4, 3, 3, 3), "b": weights(gen, 4)}, opset=13)


@pytest.fixture
def inspect(capsys):
    """Run ``nfc inspect PATH``; check exit code 2, an empty stdout and one stderr message, and
    return that message without its ``nfc: error: `` prefix and final newline."""

    def run(path) -> str:
        code = main(["inspect", str(path)])
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        assert code == 2, err
        assert out == ""
        assert err.startswith("nfc: error: ") and err.endswith("\n")
        return err[len("nfc: error: ") : -1]

    return run


def save(tmp_path, model: onnx.ModelProto, name: str = "model.onnx"):
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def import_error(model) -> str:
    with pytest.raises(ModelError) as info:
        import_onnx(model)
    return str(info.value)


# -- the file itself -------------------------------------------------------------------------------------
def test_good_model_inspects(tmp_path, capsys):
    """The control: the model the truncation tests cut up is fine as a whole."""
    assert main(["inspect", str(save(tmp_path, good_model()))]) == 0
    out, err = capsys.readouterr()
    assert "conv" in out and err == ""


def test_directory_is_not_a_file(tmp_path, inspect):
    assert inspect(tmp_path) == f"{tmp_path}: not a file; give the path of an .onnx model"


def test_missing_file(tmp_path, inspect):
    path = tmp_path / "nope.onnx"
    assert inspect(path) == f"{path}: no such file; give the path of an .onnx model"


def test_empty_file(tmp_path, inspect):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    assert inspect(path) == (
        f"{path}: the file is empty; give an ONNX model exported with torch.onnx.export or similar"
    )


@pytest.mark.parametrize(
    "content",
    [b"hello, this is a text file\nnot a model\n", b'{"model": "json"}', b"\x89PNG\r\n\x1a\n" + bytes(64)],
    ids=["text", "json", "png"],
)
def test_not_onnx(tmp_path, inspect, content):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    assert inspect(path) == (
        f"{path}: not an ONNX model (the protobuf does not parse); the file may be truncated or of another format"
    )


def test_truncated_in_half(tmp_path, inspect):
    data = good_model().SerializeToString()
    path = tmp_path / "half.onnx"
    path.write_bytes(data[: len(data) // 2])
    assert inspect(path) == (
        f"{path}: not an ONNX model (the protobuf does not parse); the file may be truncated or of another format"
    )


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99])
def test_truncated_through_the_cli(tmp_path, inspect, fraction):
    data = good_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: max(1, int(len(data) * fraction))])
    message = inspect(path)
    assert message.startswith(f"{path}: ")
    assert "truncated" in message or "the ONNX checker rejects the model" in message


def test_truncated_at_every_byte(tmp_path):
    """Every cut of a valid model is refused with a ModelError naming the file (most do not parse;
    a cut at a field boundary may parse and then fails the structure checks or the checker)."""
    data = good_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    kinds = set()
    for cut in range(1, len(data)):
        path.write_bytes(data[:cut])
        message = import_error(path)
        assert message.startswith(f"{path}: "), (cut, message)
        tail = message[len(f"{path}: ") :]
        if tail.startswith("not an ONNX model (the protobuf does not parse)"):
            kinds.add("parse")
        elif tail.startswith("not an ONNX model (no IR version or no graph nodes)"):
            kinds.add("structure")
        else:
            assert tail.startswith("the ONNX checker rejects the model: "), (cut, message)
            kinds.add("checker")
    assert "parse" in kinds


# -- the model's structure -----------------------------------------------------------------------------------
def test_checker_rejects_undefined_input(tmp_path, inspect):
    model = raw_model([node("Relu", ["nope"], name="relu")], [vi("x", [1, 3, 4, 4])], [vi("y", [1, 3, 4, 4])])
    path = save(tmp_path, model)
    assert inspect(path) == (
        f"{path}: the ONNX checker rejects the model: Nodes in a graph must be topologically sorted, however "
        "input 'nope' of node: name: relu OpType: Relu is not output of any previous nodes."
    )


def test_checker_rejects_model_proto():
    model = raw_model([node("Relu", ["nope"], name="relu")], [vi("x", [1, 3, 4, 4])], [vi("y", [1, 3, 4, 4])])
    assert import_error(model).startswith("bad: the ONNX checker rejects the model: ")


def test_shape_inference_failure_names_the_node(tmp_path, inspect):
    model = raw_model([node("Relu", ["x"], name="relu")], [vi("x", [1, 3, 4, 4])], [vi("y", [1, 3, 4, 5])])
    path = save(tmp_path, model)
    assert inspect(path) == (
        f"{path}: ONNX shape inference fails: [ShapeInferenceError] Inference error(s): (op_type:Relu, node name: "
        "relu): [ShapeInferenceError] Inferred shape and existing shape differ in dimension 3: (4) vs (5)"
    )


@pytest.mark.parametrize(
    "shape, problem",
    [
        (
            ["N", 3, 8, 8],
            "input 'x' has a dynamic dimension 'N' at axis 0; nfc compiles static shapes (hint: export "
            "with a fixed input shape and no dynamic_axes)",
        ),
        (
            [1, 3, "height", 8],
            "input 'x' has a dynamic dimension 'height' at axis 2; nfc compiles static shapes "
            "(hint: export with a fixed input shape and no dynamic_axes)",
        ),
        (
            [4, 3, 8, 8],
            "input 'x' has batch size 4; the accelerator runs batch 1 (hint: export with an input of "
            "shape (1, C, H, W))",
        ),
        (
            [12],
            "input 'x' has shape [12] without a batch dimension; the accelerator runs batch 1 (hint: export "
            "with an input of shape (1, C, H, W))",
        ),
        (
            [0, 3, 8, 8],
            "input 'x' has an empty dimension (0) at axis 0; every dimension must be at least 1 "
            "(hint: export with a real input shape)",
        ),
    ],
    ids=["dynamic_batch", "dynamic_height", "batch4", "no_batch", "empty"],
)
def test_bad_input_shapes(tmp_path, inspect, shape, problem):
    path = save(tmp_path, relu_model(shape))
    assert inspect(path) == f"{path}: {PROBLEMS_1}\n  - {problem}"


def test_non_float_input(tmp_path, inspect):
    model = raw_model(
        [node("Cast", ["x"], name="cast", to=TensorProto.FLOAT)],
        [vi("x", [1, 3, 4, 4], TensorProto.INT32)],
        [vi("y", [1, 3, 4, 4])],
    )
    path = save(tmp_path, model)
    assert inspect(path) == (
        f"{path}: {PROBLEMS_1}\n  - input 'x' has element type INT32; nfc takes float inputs (hint: cast on the "
        "host before the model)"
    )


@pytest.mark.parametrize("opset", [5, 6, 24, 25])
def test_opset_out_of_range(tmp_path, inspect, opset):
    model = relu_model([1, 3, 8, 8], opset)
    onnx.checker.check_model(model)  # onnx itself accepts the model: nfc's opset check is what fires
    path = save(tmp_path, model)
    assert inspect(path) == (
        f"{path}: opset {opset} is not supported; nfc reads ONNX opsets 7 to 23 (re-export with e.g. "
        "opset_version=17, or convert with onnx.version_converter)"
    )


def test_no_default_opset(tmp_path, inspect):
    model = raw_model(
        [node("MyOp", ["x"], name="my_op", domain="com.example")],
        [vi("x", [1, 3, 8, 8])],
        [vi("y", [1, 3, 8, 8])],
        opsets=[helper.make_opsetid("com.example", 1)],
    )
    path = save(tmp_path, model)
    assert inspect(path) == (
        f"{path}: the model imports no default-domain opset; it is not a standard ONNX model"
    )


def test_custom_domain_op(tmp_path, inspect):
    nodes = [node("Relu", ["x"], ["r"], name="relu"), node("MyOp", ["r"], name="my_op", domain="com.example")]
    model = raw_model(
        nodes,
        [vi("x", [1, 3, 8, 8])],
        [vi("y", [1, 3, 8, 8])],
        opsets=[helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)],
    )
    path = save(tmp_path, model)
    assert inspect(path) == (
        f"{path}: {PROBLEMS_1}\n  - node 'my_op' (MyOp): custom domain 'com.example' is not supported (hint: "
        "export with standard ONNX ops only)"
    )


# -- unsupported nodes: every one is listed ------------------------------------------------------------------
def test_every_unsupported_node_is_listed(tmp_path, inspect):
    """Two unsupported op types, an unsupported attribute value, and an unsupported op downstream of
    an unsupported one: all four named, in graph order; supported nodes downstream stay quiet."""
    nodes = [
        node("Relu", ["x"], ["r"], name="relu"),
        node("Einsum", ["r", "r"], ["e"], name="the_einsum", equation="nchw,nchw->nchw"),
        node("GridSample", ["r", "grid"], ["g"], name="the_grid_sample"),
        node("Pad", ["r", "pads"], ["p"], name="the_pad", mode="reflect"),
        node("Add", ["e", "g"], ["a"], name="add_after"),
        node("Relu", ["a"], ["y"], name="relu_after"),
        node("SpaceToDepth", ["p"], ["z"], name="s2d_after", blocksize=2),
    ]
    inits = {"grid": np.zeros((1, 8, 8, 2), np.float32), "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}
    model = make_model(
        nodes,
        inputs={"x": (1, 3, 8, 8)},
        inits=inits,
        opset=16,
        outputs={"y": [1, 3, 8, 8], "z": [1, 12, 5, 5]},
    )
    onnx.checker.check_model(model, full_check=True)
    path = save(tmp_path, model)
    assert inspect(path) == (
        f"{path}: cannot import the model; 4 problems:\n"
        f"  - node 'the_einsum' (Einsum): op type Einsum is not supported (hint: supported ops: "
        f"{', '.join(sorted(SUPPORTED_OPS))})\n"
        "  - node 'the_grid_sample' (GridSample): op type GridSample is not supported (hint: see the supported "
        "ops listed above)\n"
        "  - node 'the_pad' (Pad): mode must be 'constant', not 'reflect' (hint: the grid pads with a constant "
        "value; export with constant (zero or value) padding)\n"
        "  - node 's2d_after' (SpaceToDepth): op type SpaceToDepth is not supported (hint: see the supported ops "
        "listed above)"
    )


def test_issues_are_kept_on_the_error():
    nodes = [
        node("Einsum", ["x", "x"], ["e"], name="a", equation="nchw,nchw->nchw"),
        node("Einsum", ["x", "x"], ["y"], name="b", equation="nchw,nchw->nchw"),
    ]
    with pytest.raises(ModelError) as info:
        import_onnx(make_model(nodes, outputs={"y": [1, 3, 9, 11]}, opset=13))
    assert [i.split(":")[0] for i in info.value.issues] == ["node 'a' (Einsum)", "node 'b' (Einsum)"]


def test_unnamed_nodes_are_named_by_op_and_index():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Einsum", ["r", "r"], ["y"], equation="nchw,nchw->nchw"),
    ]
    message = import_error(make_model(nodes, outputs={"y": [1, 3, 9, 11]}, opset=13))
    assert message.startswith(
        f"tiny: {PROBLEMS_1}\n  - node 'Einsum_1' (Einsum): op type Einsum is not supported"
    )


def _m(nodes, **kw):
    return lambda: make_model(nodes, **kw)


UNSUPPORTED = {
    "pad_channels": (
        _m([node("Pad", ["x", "p"])], inits={"p": np.array([0, 1, 1, 1, 0, 0, 1, 1], np.int64)}),
        "node 'pad' (Pad): pads [0, 1, 1, 1, 0, 0, 1, 1] touch the batch or channel axis (hint: pad only H and W)",
    ),
    "pad_negative": (
        _m([node("Pad", ["x", "p"])], inits={"p": np.array([0, 0, -1, 1, 0, 0, 1, 1], np.int64)}),
        "node 'pad' (Pad): pads must be >= 0, not [0, 0, -1, 1, 0, 0, 1, 1] (hint: cropping (negative pads) is "
        "not supported)",
    ),
    "conv1d": (
        _m([node("Conv", ["x", "w"])], inputs={"x": (1, 3, 9)}, inits={"w": np.ones((2, 3, 3), np.float32)}),
        "node 'conv' (Conv): input must be an N=1 NCHW feature map, not of shape [1, 3, 9] (hint: only 2-D "
        "images with batch 1 run on the grid)",
    ),
    "conv_weight_not_constant": (
        _m(
            [
                node("Relu", ["x"], ["w"], name="relu"),
                node("Reshape", ["w", "s"], ["w2"], name="reshape"),
                node("Conv", ["x", "w2"]),
            ],
            inputs={"x": (1, 3, 3, 3)},
            inits={"s": np.array([3, 3, 3, 1], np.int64)},
            outputs={"y": [1, 3, 1, 3]},
        ),
        "node 'conv' (Conv): the weight must be a constant (an initializer or folded from constants) (hint: "
        "export with the weights as initializers (do_constant_folding=True))",
    ),
    "conv_channels": (
        _m(
            [node("Conv", ["x", "w"])],
            inits={"w": np.ones((2, 4, 3, 3), np.float32)},
            outputs={"y": [1, 2, 7, 9]},
        ),
        "node 'conv' (Conv): the input must have 4 channels (weight [2, 4, 3, 3], group 1), not 3 (hint: the "
        "model is malformed; re-export it)",
    ),
    "gemm_transA": (
        _m(
            [node("Flatten", ["x"], ["f"]), node("Gemm", ["f", "w"], transA=1)],
            inputs={"x": (1, 3, 2, 2)},
            inits={"w": np.ones((1, 5), np.float32)},
        ),
        "node 'gemm' (Gemm): transA=1 is not supported (hint: export the layer as x @ W^T (torch.nn.Linear))",
    ),
    "transpose_reorders": (
        _m([node("Transpose", ["x"], perm=[0, 2, 3, 1])]),
        "node 'transpose' (Transpose): Transpose with perm [0, 2, 3, 1] reorders data of shape [1, 3, 9, 11] "
        "(hint: only transposes that move size-1 axes (pure reshapes) are supported)",
    ),
    "resize_linear": (
        _m([node("Resize", ["x", "", "s"], mode="linear")], inits={"s": np.array([1, 1, 2, 2], np.float32)}),
        "node 'resize' (Resize): mode 'linear' is not supported (hint: use nearest-neighbour upsampling)",
    ),
    "resize_fraction": (
        _m([node("Resize", ["x", "", "s"])], inits={"s": np.array([1, 1, 1.5, 2], np.float32)}),
        "node 'resize' (Resize): scales [1.0, 1.0, 1.5, 2.0] are not supported (hint: only integer upsampling of "
        "H and W)",
    ),
    "resize_coordinates": (
        _m(
            [
                node(
                    "Resize",
                    ["x", "", "s"],
                    coordinate_transformation_mode="asymmetric",
                    nearest_mode="round_prefer_floor",
                )
            ],
            inits={"s": np.array([1, 1, 3, 3], np.float32)},
        ),
        "node 'resize' (Resize): coordinate_transformation_mode='asymmetric' with "
        "nearest_mode='round_prefer_floor' does not repeat each pixel 3 times along axis 2 (hint: export with the "
        "default half_pixel/round_prefer_floor or asymmetric/floor)",
    ),
    "softmax_batch": (
        _m([node("Softmax", ["x"], axis=0)]),
        "node 'softmax' (Softmax): softmax over the batch axis is not supported (hint: normalise over channels "
        "or classes)",
    ),
    "maxpool_indices": (
        _m([node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2])]),
        "node 'maxpool' (MaxPool): the Indices output is not supported (hint: use MaxPool without "
        "return_indices)",
    ),
    "maxpool_dilated": (
        _m([node("MaxPool", ["x"], kernel_shape=[2, 2], dilations=[2, 2])]),
        "node 'maxpool' (MaxPool): dilated pooling is not supported (hint: use dilations=1)",
    ),
    "concat_batch": (
        _m([node("Concat", ["x", "x"], axis=0)]),
        "node 'concat' (Concat): concatenation along axis 0 of shapes [[1, 3, 9, 11], [1, 3, 9, 11]] is not "
        "supported (hint: only concatenation of batch-1 tensors along a non-batch axis (channels) is supported)",
    ),
    "cast_to_int": (
        _m(
            [
                node("Cast", ["x"], ["c"], to=TensorProto.INT32),
                node("Cast", ["c"], name="cast2", to=TensorProto.FLOAT),
            ]
        ),
        "node 'cast' (Cast): cast of a feature map to INT32 (hint: the grid computes in fixed point; keep "
        "activations float in the model)",
    ),
    "reduce_channels": (
        _m([node("ReduceMean", ["x"], axes=[1])]),
        "node 'reducemean' (ReduceMean): reduction over axes [1] is not supported (hint: only reductions over H "
        "and W (axes 2, 3))",
    ),
    "dropout_training": (
        _m(
            [node("Dropout", ["x", "r", "t"], ["y"])],
            inits={"r": np.array(0.5, np.float32), "t": np.array(True)},
        ),
        "node 'dropout' (Dropout): training_mode must be false, not true (hint: export the model in eval() mode)",
    ),
    "prelu_channel_vector": (
        _m(
            [node("PRelu", ["x", "s"])],
            inits={"s": np.ones(3, np.float32)},
            opset=9,
            outputs={"y": [1, 3, 9, 11]},
        ),
        "node 'prelu' (PRelu): constant of shape [3] does not broadcast to the input's [1, 3, 9, 11] without "
        "enlarging it (hint: give a per-channel constant the shape (C, 1, 1))",
    ),
    "gather_feature_map": (
        _m([node("Gather", ["x", "i"], axis=1)], inits={"i": np.array([0, 2], np.int64)}),
        "node 'gather' (Gather): op type Gather is only supported on constant inputs (it is folded) (hint: fold "
        "this computation on constants before export)",
    ),
    "constant_output": (
        _m(
            [node("Relu", ["x"], ["r"]), node("Identity", ["c"], name="identity")],
            inits={"c": np.ones(3, np.float32)},
            outputs=["r", "y"],
        ),
        "output 'y' is a constant; nfc needs outputs computed from the input",
    ),
    "ceil_window_in_padding": (
        _m(
            [node("MaxPool", ["x"], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 0, 1, 0], ceil_mode=1)],
            opset=17,
        ),
        "node 'maxpool' (MaxPool): ceil_mode=1 makes the last window along axis 2 start in the right padding; "
        "ONNX opset 17 keeps that window and onnxruntime drops it (hint: re-export with opset 22 or later, or "
        "change the pads so that ceil_mode=0 gives the size you want)",
    ),
}


@pytest.mark.parametrize("case", UNSUPPORTED)
def test_unsupported_attribute_or_input(case):
    build, problem = UNSUPPORTED[case]
    model = build()
    onnx.checker.check_model(model)
    assert import_error(model) == f"tiny: {PROBLEMS_1}\n  - {problem}"


def test_unsupported_through_the_cli(tmp_path, inspect):
    build, problem = UNSUPPORTED["transpose_reorders"]
    path = save(tmp_path, build())
    assert inspect(path) == f"{path}: {PROBLEMS_1}\n  - {problem}"
