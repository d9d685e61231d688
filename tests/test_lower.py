"""Lowering rules, each checked by execution: the float IR (``run_float``) against the fixed-point
golden executor on the lowered graph (``run_fixed``), on the same random inputs, on ``tiny`` (K=3,
4 mapper segments) and ``virtex6`` (K=10, 8 segments).

Formats are calibrated, and the float reference is fed the *quantised* inputs, so the only error
left is what the lowered arithmetic adds; every test asserts a bound derived from the formats:

* a ConvLayer (mac): per output map with ``T`` terms of ``bh x bw`` taps, weight rounding
  ``sum|w - wq| * max|x|`` (at most ``T*bh*bw * wstep/2 * max|x|`` where the weights are not IR
  parameters), one rounding per term plus the bias ``(T+1) * psum_step/2``, the chain end's
  narrowing ``out_step/2`` (when the formats differ), plus ``sum|w| * e_in`` for an input that
  already carries an error ``e_in``;
* a fused activation or MapLayer: the PWL fitter's reported worst error (the mapper is re-fitted
  here and must be the one lowering chose) plus the activation's Lipschitz constant times the
  error of its input;
* max mode, copies, the ALU, host layers: half an output step (one narrowing).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pytest

from nfc.arch import ArchConfig, load_target
from nfc.compiler import Graph, GraphOutput, Node, Op, make_node, run_float
from nfc.compiler.executor import activation, eval_node
from nfc.compiler.fixed import FixedResult, run_fixed
from nfc.compiler.grid import ConvLayer, CopyLayer, EltwiseLayer, HostLayer, Lowered, MapLayer
from nfc.compiler.lower import LoweringError, lower
from nfc.compiler.pwl import fit_function, fit_pwl
from nfc.compiler.quantize import Formats, calibrate, default_formats
from nfc.numerics import QFormat, dequantize, quantize

TARGETS = ("tiny", "virtex6")

# -- building IR graphs ------------------------------------------------------------------------------


def inp(name: str = "x", shape: tuple[int, ...] = (4, 9, 11)) -> Node:
    return make_node(name, Op.INPUT, (), shape, {"onnx_shape": (1, *shape)})


def _out_len(size: int, k: int, stride: int, dilation: int, pad: int) -> int:
    return (size + pad - dilation * (k - 1) - 1) // stride + 1


def conv(
    name: str,
    src: Node,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int = 1,
    dilation: int = 1,
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    groups: int = 1,
) -> Node:
    O, _, kh, kw = weight.shape
    _, H, W = src.shape
    oh = _out_len(H, kh, stride, dilation, pads[0] + pads[2])
    ow = _out_len(W, kw, stride, dilation, pads[1] + pads[3])
    attrs = {"stride": (stride, stride), "dilation": (dilation, dilation), "pads": pads, "groups": groups}
    bias = np.zeros(O) if bias is None else bias
    return make_node(name, Op.CONV, (src.name,), (O, oh, ow), attrs, {"weight": weight, "bias": bias})


def pool(name: str, op: Op, src: Node, k: int, stride: int, pads=(0, 0, 0, 0), include_pad: int = 1) -> Node:
    C, H, W = src.shape
    shape = (C, _out_len(H, k, stride, 1, pads[0] + pads[2]), _out_len(W, k, stride, 1, pads[1] + pads[3]))
    attrs = {"kernel": (k, k), "stride": (stride, stride), "pads": pads}
    if op is Op.AVGPOOL:
        attrs["count_include_pad"] = include_pad
    return make_node(name, op, (src.name,), shape, attrs)


def act(name: str, src: Node, kind: str, params: Mapping | None = None, **attrs) -> Node:
    return make_node(name, Op.ACT, (src.name,), src.shape, {"kind": kind, **attrs}, params)


def binary(name: str, a: Node, b: Node, kind: str) -> Node:
    return make_node(name, Op.BINARY, (a.name, b.name), a.shape, {"kind": kind})


def graph(*nodes: Node, outputs: tuple[Node, ...] | None = None) -> Graph:
    outs = outputs or (nodes[-1],)
    return Graph(
        "t", tuple(nodes), tuple(GraphOutput(f"out{i}", n.name, (1, *n.shape)) for i, n in enumerate(outs))
    )


def randw(gen: np.random.Generator, *shape: int, scale: float = 0.4) -> np.ndarray:
    return gen.standard_normal(shape) * scale


# -- running both executors ----------------------------------------------------------------------------


@dataclass
class Run:
    arch: ArchConfig
    graph: Graph
    formats: Formats
    low: Lowered
    ref: dict[str, np.ndarray]  # float64 reference of every IR tensor (unbatched), on exact inputs
    res: FixedResult

    def layer(self, name: str):
        (found,) = [la for la in self.low.layers if la.name == name]
        return found

    def layers(self, cls) -> list:
        return [la for la in self.low.layers if isinstance(la, cls)]

    def got(self, node: str) -> np.ndarray:
        """Fixed-point value of IR tensor ``node`` as real numbers, IR-shaped."""
        buf = self.low.buffers[node]
        words = self.res.memory.view(node)
        return dequantize(words, buf.fmt).reshape(self.graph.node(node).shape)

    def err(self, node: str) -> float:
        return float(np.abs(self.got(node) - self.ref[node]).max())

    def step(self, node: str) -> float:
        return self.low.buffers[node].fmt.step

    def absmax(self, node: str) -> float:
        """Largest magnitude of the fixed-point words of ``node`` (what the next layer reads)."""
        return float(np.abs(self.got(node)).max())

    def weight(self, node: str) -> np.ndarray:
        return self.graph.node(node).param("weight").astype(np.float64)

    def sats(self) -> int:
        return sum(self.res.saturations.values())


def run_both(
    g: Graph,
    target: str,
    seed: int = 0,
    make: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray] | None = None,
    formats: Formats | None = None,
) -> Run:
    """Calibrate on three random inputs, lower, run the first input through both executors."""
    arch = load_target(target)
    gen = np.random.default_rng(seed)
    make = make or (lambda gen, shape: gen.standard_normal(shape))
    samples = [{n.name: make(gen, n.attr("onnx_shape")) for n in g.inputs} for _ in range(3)]
    formats = formats or calibrate(g, arch, samples)
    low = lower(g, arch, formats)
    feeds = samples[0]
    exact = {k: dequantize(quantize(v, formats.of(k))[0], formats.of(k)) for k, v in feeds.items()}
    ref = float64_values(g, exact)
    res = run_fixed(low, feeds, keep_memory=True)
    return Run(arch, g, formats, low, ref, res)


def float64_values(g: Graph, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every IR tensor in float64 (``run_float`` rounds its outputs to float32)."""
    values = {n.name: np.asarray(feeds[n.name], np.float64).reshape(n.shape) for n in g.inputs}
    for node in g.nodes:
        if node.op is not Op.INPUT:
            values[node.name] = eval_node(node, [values[i] for i in node.inputs])
    out = run_float(g, feeds)
    for o in g.outputs:  # the float executor proper agrees (to float32)
        np.testing.assert_allclose(out[o.name], values[o.node].reshape(o.onnx_shape), rtol=1e-6, atol=1e-6)
    return values


# -- error bounds ---------------------------------------------------------------------------------------

#: Float noise of the reference (it runs in float64 on values up to a few hundred).
EPS = 1e-9


def mac_bound(layer: ConvLayer, xmax: float, e_in: float = 0.0, weight: np.ndarray | None = None) -> float:
    """Worst error at a mac ConvLayer's chain end (after the narrowing, before any mapper).

    ``xmax``: the largest input magnitude; ``e_in``: the error the input already carries.
    ``weight``: the IR's real weights (O, ...), when there are any: the weight rounding
    is then summed exactly per output map instead of bounded by half a weight step per tap.
    """
    assert layer.mode == "mac"
    bh, bw = layer.block
    terms = (layer.channels >= 0).sum(axis=1)
    if weight is None:
        wround = terms * bh * bw * layer.wfmt.step / 2
    else:
        wq, _ = quantize(weight, layer.wfmt)
        wround = np.abs(dequantize(wq, layer.wfmt) - weight).reshape(len(weight), -1).sum(axis=1)
    own = wround * xmax + (terms + 1) * layer.psum_fmt.step / 2
    gain = np.abs(layer.kernels).sum(axis=(1, 2, 3)) * layer.wfmt.step
    bound = float((own + gain * e_in).max())
    if not layer.act and layer.out_fmt != layer.psum_fmt:
        bound += layer.out_fmt.step / 2
    return bound + EPS


#: Lipschitz constants of activations (clamping to the output range only lowers them); relu, tanh,
#: abs, leaky_relu with |alpha| <= 1 and clip are 1-Lipschitz, hard_sigmoid's is its alpha.
LIPSCHITZ = {"sigmoid": 0.25, "hard_swish": 1.5, "clip": 1.0, "leaky_relu": 1.0}


def fitted(kind: str, params: dict, in_fmt: QFormat, out_fmt: QFormat, arch: ArchConfig):
    """The fitter's result for ``kind`` (``a+b`` = composition), as lowering should have used it."""
    segments = arch.tile.mapper_segments
    if "+" not in kind:
        return fit_function(kind, params, in_fmt, out_fmt, segments)

    def composed(x: np.ndarray) -> np.ndarray:
        for k in kind.split("+"):
            x = activation(k, x)
        return x

    return fit_pwl(composed, in_fmt, out_fmt, segments, None, kind)


# -- convolutions -----------------------------------------------------------------------------------

CONVS = {
    # name: (input shape, weight shape, conv kwargs)
    "stride2": ((4, 9, 11), (6, 4, 3, 3), {"stride": 2, "pads": (1, 1, 1, 1)}),
    "padding": ((3, 8, 9), (5, 3, 3, 3), {"pads": (1, 2, 0, 1)}),
    "dilation2": ((3, 11, 12), (4, 3, 3, 3), {"dilation": 2, "pads": (2, 2, 2, 2)}),
    "groups2": ((4, 8, 9), (6, 2, 3, 3), {"groups": 2, "pads": (1, 1, 1, 1)}),
    "depthwise": ((4, 8, 9), (4, 1, 3, 3), {"groups": 4, "pads": (1, 1, 1, 1)}),
    "depthwise_x2": ((3, 8, 9), (6, 1, 3, 3), {"groups": 3, "stride": 2}),
    "kernel7": ((3, 13, 14), (4, 3, 7, 7), {"pads": (3, 3, 3, 3)}),
    "kernel11": ((2, 17, 19), (3, 2, 11, 11), {"pads": (5, 5, 5, 5), "stride": 2}),
    "kernel5x3": ((3, 9, 10), (4, 3, 5, 3), {"pads": (2, 1, 2, 1)}),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", list(CONVS))
def test_conv(case: str, target: str) -> None:
    shape, wshape, kw = CONVS[case]
    gen = np.random.default_rng(list(CONVS).index(case))
    x = inp("x", shape)
    w = randw(gen, *wshape)
    c = conv("c", x, w, randw(gen, wshape[0]), **kw)
    r = run_both(graph(x, c), target)
    (layer,) = r.low.layers
    assert isinstance(layer, ConvLayer) and layer.kind == "conv" and layer.mode == "mac"
    K = r.arch.tile.convolver_size
    O, ipg, kh, kwid = wshape
    nb_h, nb_w = math.ceil(kh / K), math.ceil(kwid / K)
    assert layer.block == (math.ceil(kh / nb_h), math.ceil(kwid / nb_w))
    assert max(layer.block) <= K
    # random weights: every block of every kernel is a term, and each reads its own group's maps
    assert layer.terms == O * ipg * nb_h * nb_w
    groups = kw.get("groups", 1)
    for o in range(O):
        g = o // (O // groups)
        assert set(layer.channels[o]) == set(range(g * ipg, (g + 1) * ipg))
    assert r.sats() == 0
    assert r.err("c") <= mac_bound(layer, r.absmax("x"), weight=w)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("peak", [0.99999, -0.99999, 1.0, 127.999])
def test_calibrated_weight_format_holds_the_largest_weight(target: str, peak: float) -> None:
    """A weight just below a power of two must not round up past the top word of its format."""
    gen = np.random.default_rng(15)
    w = randw(gen, 2, 2, 3, 3, scale=0.1)
    w[1, 1, 1, 1] = peak
    x = inp("x", (2, 5, 5))
    r = run_both(graph(x, conv("c", x, w)), target)
    (layer,) = r.low.layers
    t = list(layer.channels[1]).index(1)
    assert abs(float(dequantize(layer.kernels[1, t, 1, 1], layer.wfmt)) - peak) <= layer.wfmt.step / 2
    assert r.err("c") <= mac_bound(layer, r.absmax("x"), weight=w)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("k", [3, 7])
def test_connection_table(target: str, k: int) -> None:
    """Kernels zeroed outside a connection table are not terms at all."""
    gen = np.random.default_rng(k)
    table = [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (1,)]
    w = randw(gen, 6, 4, k, k)
    mask = np.zeros((6, 4), bool)
    for o, ins in enumerate(table):
        mask[o, list(ins)] = True
    w *= mask[:, :, None, None]
    x = inp("x", (4, 10, 11))
    c = conv("c", x, w, randw(gen, 6), pads=(1, 1, 1, 1))
    r = run_both(graph(x, c), target)
    (layer,) = r.low.layers
    K = r.arch.tile.convolver_size
    blocks = math.ceil(k / K) ** 2
    assert layer.terms == int(mask.sum()) * blocks
    assert layer.channels.shape[1] == 2 * blocks  # the longest chain
    assert (layer.channels[5, blocks:] == -1).all()  # map 5 has one input: the rest are no terms
    for o, ins in enumerate(table):
        used = layer.channels[o][layer.channels[o] >= 0]
        assert sorted(set(used)) == sorted(ins)
    assert r.err("c") <= mac_bound(layer, r.absmax("x"), weight=w)


@pytest.mark.parametrize("target", TARGETS)
def test_conv_relu_is_fused(target: str) -> None:
    gen = np.random.default_rng(5)
    x = inp("x", (3, 8, 9))
    c = conv("c", x, randw(gen, 5, 3, 3, 3), randw(gen, 5), pads=(1, 1, 1, 1))
    a = act("a", c, "relu")
    r = run_both(graph(x, c, a), target)
    assert not r.layers(MapLayer)
    (layer,) = r.low.layers
    assert isinstance(layer, ConvLayer) and layer.name == "a" and layer.act_kind == "relu"
    fit = fitted("relu", {}, layer.psum_fmt, layer.out_fmt, r.arch)
    assert layer.act == (fit.pwl,) * 5
    assert fit.max_error <= layer.out_fmt.step / 2  # relu is bit-exact
    assert r.err("a") <= fit.max_error + mac_bound(layer, r.absmax("x"), weight=r.weight("c"))
    assert r.sats() == 0


@pytest.mark.parametrize("target", TARGETS)
def test_conv_tanh_abs_is_one_composed_mapper(target: str) -> None:
    gen = np.random.default_rng(6)
    x = inp("x", (3, 8, 9))
    c = conv("c", x, randw(gen, 4, 3, 3, 3), randw(gen, 4), pads=(1, 1, 1, 1))
    t = act("t", c, "tanh")
    a = act("a", t, "abs")
    r = run_both(graph(x, c, t, a), target)
    (layer,) = r.low.layers
    assert isinstance(layer, ConvLayer) and layer.name == "a" and layer.act_kind == "tanh+abs"
    fit = fitted("tanh+abs", {}, layer.psum_fmt, layer.out_fmt, r.arch)
    assert layer.act == (fit.pwl,) * 4
    assert r.err("a") <= fit.max_error + mac_bound(layer, r.absmax("x"), weight=r.weight("c"))
    if target == "virtex6":  # 8 segments: the composed fit is good to about 1%
        assert fit.max_error < 0.03


# -- fully connected -------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_linear_after_flatten(target: str) -> None:
    gen = np.random.default_rng(7)
    x = inp("x", (3, 4, 4))
    f = make_node("f", Op.RESHAPE, ("x",), (48,), {"shape": (48,)})
    fc = make_node(
        "fc", Op.LINEAR, ("f",), (10,), params={"weight": randw(gen, 10, 48), "bias": randw(gen, 10)}
    )
    r = run_both(graph(x, f, fc), target)
    (layer,) = r.low.layers
    K = r.arch.tile.convolver_size
    assert layer.kind == "linear" and layer.view == (math.ceil(48 / K), K)
    assert r.low.buffers["f"].parent == "x"  # flatten is a view
    assert r.err("fc") <= mac_bound(layer, r.absmax("x"), weight=r.weight("fc"))
    assert r.sats() == 0


@pytest.mark.parametrize("target", TARGETS)
def test_linear_after_global_average_pooling(target: str) -> None:
    gen = np.random.default_rng(8)
    x = inp("x", (6, 5, 7))
    gap = make_node("gap", Op.GLOBAL_AVGPOOL, ("x",), (6, 1, 1))
    f = make_node("f", Op.RESHAPE, ("gap",), (6,), {"shape": (6,)})
    fc = make_node("fc", Op.LINEAR, ("f",), (4,), params={"weight": randw(gen, 4, 6), "bias": randw(gen, 4)})
    r = run_both(graph(x, gap, f, fc), target, make=lambda g, s: g.standard_normal(s) + 0.5)
    pool_layer, fc_layer = r.low.layers
    assert pool_layer.kind == "avgpool" and fc_layer.kind == "linear"
    e_gap = mac_bound(pool_layer, r.absmax("x"))
    assert r.err("gap") <= e_gap
    assert r.err("fc") <= mac_bound(fc_layer, r.absmax("gap"), e_in=e_gap, weight=r.weight("fc"))
    assert r.sats() == 0


# -- pooling -------------------------------------------------------------------------------------------


def negative(gen: np.random.Generator, shape) -> np.ndarray:
    """All below zero: a border read as 0 instead of the lowest word would win every max."""
    return -np.abs(gen.standard_normal(shape)) - 0.25


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(
    "k, stride, pads", [(3, 2, (1, 1, 1, 1)), (2, 2, (0, 0, 1, 1)), (5, 1, (2, 2, 2, 2))]
)
def test_maxpool_border_reads_the_lowest_word(target: str, k: int, stride: int, pads) -> None:
    x = inp("x", (3, 9, 11))
    p = pool("p", Op.MAXPOOL, x, k, stride, pads)
    r = run_both(graph(x, p), target, make=negative)
    (layer,) = r.low.layers
    assert layer.mode == "max" and layer.pad_value == layer.in_fmt.lo
    assert (r.got("p") < 0).all()
    assert r.err("p") <= r.step("p") / 2 + EPS  # max is exact; at most one narrowing


@pytest.mark.parametrize("target", TARGETS)
def test_global_max_pool(target: str) -> None:
    x = inp("x", (4, 9, 11))
    p = make_node("p", Op.GLOBAL_MAXPOOL, ("x",), (4, 1, 1))
    r = run_both(graph(x, p), target, make=negative)
    (layer,) = r.low.layers
    assert layer.mode == "max" and max(layer.block) <= r.arch.tile.convolver_size
    assert r.err("p") <= r.step("p") / 2 + EPS


@pytest.mark.parametrize("target", TARGETS)
def test_global_average_pool(target: str) -> None:
    x = inp("x", (4, 9, 11))
    p = make_node("p", Op.GLOBAL_AVGPOOL, ("x",), (4, 1, 1))
    r = run_both(graph(x, p), target, make=lambda g, s: g.standard_normal(s) + 1.0)
    (layer,) = r.low.layers
    assert layer.kind == "avgpool" and layer.terms == 4 * math.ceil(
        9 / r.arch.tile.convolver_size
    ) * math.ceil(11 / r.arch.tile.convolver_size)
    assert r.err("p") <= mac_bound(layer, r.absmax("x"))


def test_a_big_global_average_keeps_its_precision() -> None:
    """56x56 = 3136 positions: 1/3136 as a Q0.15 word (10) would be 4% off; with the extra fraction
    bits the accumulator allows, the weight is within 0.1% and the mean within the rounding bound."""
    x = inp("x", (2, 56, 56))
    p = make_node("p", Op.GLOBAL_AVGPOOL, ("x",), (2, 1, 1))
    r = run_both(graph(x, p), "virtex6", make=lambda g, s: g.uniform(0.5, 1.5, s))
    (layer,) = r.low.layers
    w = float(dequantize(layer.kernels[0, 0, 0, 0], layer.wfmt))
    assert layer.wfmt.frac > 15 and abs(w * 3136 - 1) < 1e-3
    assert abs(round(2**15 / 3136) / 2**15 * 3136 - 1) > 0.04  # what a Q0.15 weight would give
    assert r.err("p") <= mac_bound(layer, r.absmax("x"))


@pytest.mark.parametrize("target", TARGETS)
def test_global_average_pool_of_a_single_position(target: str) -> None:
    """The constant kernel is 1.0: it must be a weight word that holds 1.0 exactly."""
    x = inp("x", (4, 1, 1))
    p = make_node("p", Op.GLOBAL_AVGPOOL, ("x",), (4, 1, 1))
    r = run_both(graph(x, p), target, make=lambda g, s: g.standard_normal(s) * 3)
    (layer,) = r.low.layers
    assert dequantize(layer.kernels[:, 0, 0, 0], layer.wfmt).tolist() == [1.0] * 4
    assert r.err("p") <= r.step("p") / 2 + EPS


@pytest.mark.parametrize("target", TARGETS)
def test_avgpool_counting_the_padding_is_a_constant_kernel(target: str) -> None:
    x = inp("x", (3, 9, 11))
    p = pool("p", Op.AVGPOOL, x, 3, 2, (1, 1, 1, 1), include_pad=1)
    r = run_both(graph(x, p), target)
    (layer,) = r.low.layers
    assert isinstance(layer, ConvLayer) and layer.kind == "avgpool" and layer.pad_value == 0
    assert r.err("p") <= mac_bound(layer, r.absmax("x"))
    assert r.sats() == 0


@pytest.mark.parametrize("target", TARGETS)
def test_avgpool_excluding_the_padding_runs_on_the_host(target: str) -> None:
    x = inp("x", (3, 9, 11))
    p = pool("p", Op.AVGPOOL, x, 3, 2, (1, 1, 1, 1), include_pad=0)
    r = run_both(graph(x, p), target)
    (layer,) = r.low.layers
    assert isinstance(layer, HostLayer)
    assert r.err("p") <= r.step("p") / 2 + EPS


# -- per-channel maps ---------------------------------------------------------------------------------


def _add_graph(shape=(4, 6, 7)) -> tuple[Node, Node, Node]:
    x, y = inp("x", shape), inp("y", shape)
    return x, y, binary("s", x, y, "add")


@pytest.mark.parametrize("target", TARGETS)
def test_batchnorm_not_after_a_conv_is_a_depthwise_1x1(target: str) -> None:
    gen = np.random.default_rng(9)
    x, y, s = _add_graph()
    scale, shift = gen.uniform(0.3, 2.0, 4) * np.array([1, -1, 1, -1]), gen.standard_normal(4)
    bn = make_node("bn", Op.AFFINE, ("s",), s.shape, params={"scale": scale, "shift": shift})
    r = run_both(graph(x, y, s, bn), target)
    add, layer = r.low.layers
    assert isinstance(add, EltwiseLayer)
    assert isinstance(layer, ConvLayer) and layer.kind == "affine" and layer.block == (1, 1)
    assert (layer.channels[:, 0] == np.arange(4)).all()
    e_add = r.step("s") / 2
    assert r.err("s") <= e_add + EPS
    assert r.err("bn") <= mac_bound(layer, r.absmax("s"), e_in=e_add)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("kind", ["add", "sub", "mul", "max", "min"])
def test_binary_of_two_tensors_is_an_alu_op(target: str, kind: str) -> None:
    x, y = inp("x", (3, 5, 6)), inp("y", (3, 5, 6))
    b = binary("b", x, y, kind)
    r = run_both(graph(x, y, b), target)
    (layer,) = r.low.layers
    assert isinstance(layer, EltwiseLayer) and layer.kind == kind
    assert r.err("b") <= r.step("b") / 2 + EPS


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(
    "kind, reverse", [("add", 0), ("sub", 0), ("sub", 1), ("mul", 0), ("div", 0), ("add", 1), ("mul", 1)]
)
def test_per_channel_constant_is_a_depthwise_1x1(target: str, kind: str, reverse: int) -> None:
    gen = np.random.default_rng(10)
    const = gen.uniform(0.5, 2.0, (4, 1, 1)) * np.array([1, -1, 1, -1])[:, None, None]
    x = inp("x", (4, 6, 7))
    n = make_node("n", Op.CONST_BINARY, ("x",), x.shape, {"kind": kind, "reverse": reverse}, {"const": const})
    r = run_both(graph(x, n), target)
    (layer,) = r.low.layers
    assert isinstance(layer, ConvLayer) and layer.block == (1, 1) and layer.terms == 4
    assert r.err("n") <= mac_bound(layer, r.absmax("x"))
    assert r.sats() == 0


@pytest.mark.parametrize("target", TARGETS)
def test_constant_varying_along_width_is_not_per_channel(target: str) -> None:
    """A (C,) constant broadcasts along W (numpy rules), even when W happens to equal C."""
    x = inp("x", (4, 5, 4))
    const = np.array([0.5, -1.0, 2.0, 1.5])
    n = make_node("n", Op.CONST_BINARY, ("x",), x.shape, {"kind": "mul", "reverse": 0}, {"const": const})
    r = run_both(graph(x, n), target)
    assert r.err("n") <= 2 * r.step("n")


@pytest.mark.parametrize("target", TARGETS)
def test_per_element_constant_on_a_vector(target: str) -> None:
    gen = np.random.default_rng(14)
    x = inp("x", (6,))
    const = gen.uniform(-2, 2, 6)
    n = make_node("n", Op.CONST_BINARY, ("x",), (6,), {"kind": "sub", "reverse": 1}, {"const": const})
    r = run_both(graph(x, n), target)
    (layer,) = r.low.layers
    assert isinstance(layer, ConvLayer) and layer.out_shape == (6, 1, 1) and layer.terms == 6
    assert r.err("n") <= mac_bound(layer, r.absmax("x"))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("kind, v", [("max", 0.3), ("max", -0.7), ("min", 0.45)])
def test_max_with_a_scalar_is_an_exact_map(target: str, kind: str, v: float) -> None:
    x = inp("x", (3, 6, 7))
    n = make_node("n", Op.CONST_BINARY, ("x",), x.shape, {"kind": kind, "reverse": 0}, {"const": np.array(v)})
    r = run_both(graph(x, n), target)
    (layer,) = r.low.layers
    assert isinstance(layer, MapLayer)
    words = r.res.memory.view("n")
    want, _ = quantize(r.ref["n"], r.low.buffers["n"].fmt)
    np.testing.assert_array_equal(words, want)  # bit-exact: quantize(max(x, v))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("kind", ["max", "min"])
def test_max_with_a_per_channel_constant_is_an_exact_map_per_channel(target: str, kind: str) -> None:
    x = inp("x", (3, 6, 7))
    const = np.array([0.3, -0.7, 0.45]).reshape(3, 1, 1)
    n = make_node("n", Op.CONST_BINARY, ("x",), x.shape, {"kind": kind, "reverse": 0}, {"const": const})
    r = run_both(graph(x, n), target)
    (layer,) = r.low.layers
    assert isinstance(layer, MapLayer) and len(set(layer.pwl)) == 3
    want, _ = quantize(r.ref["n"], r.low.buffers["n"].fmt)
    np.testing.assert_array_equal(r.res.memory.view("n"), want)  # bit-exact per channel


# -- layout ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_concat_producers_write_into_slices(target: str) -> None:
    gen = np.random.default_rng(11)
    x = inp("x", (3, 7, 8))
    c1 = conv("c1", x, randw(gen, 4, 3, 3, 3, scale=0.2), randw(gen, 4), pads=(1, 1, 1, 1))
    c2 = conv("c2", x, randw(gen, 2, 3, 3, 3, scale=1.5), randw(gen, 2), pads=(1, 1, 1, 1))
    a2 = act("a2", c2, "relu")
    cat = make_node("cat", Op.CONCAT, ("c1", "a2"), (6, 7, 8), {"axis": 0})
    r = run_both(graph(x, c1, c2, a2, cat), target)
    assert not r.layers(CopyLayer)
    l1, l2 = r.low.layers
    assert r.low.buffers["c1"].parent == "cat" and r.low.buffers["a2"].parent == "cat"
    assert r.low.buffers["a2"].offset == 4 * 7 * 8
    assert l1.out_fmt == l2.out_fmt == r.low.buffers["cat"].fmt  # words land in the concat's format
    fit = fitted("relu", {}, l2.psum_fmt, l2.out_fmt, r.arch)
    assert r.err("cat")  # the concat's reference exists
    got = r.got("cat")
    e1 = mac_bound(l1, r.absmax("x"), weight=r.weight("c1"))
    e2 = fit.max_error + mac_bound(l2, r.absmax("x"), weight=r.weight("c2"))
    assert np.abs(got[:4] - r.ref["c1"]).max() <= e1
    assert np.abs(got[4:] - r.ref["a2"]).max() <= e2
    assert r.sats() == 0


@pytest.mark.parametrize("target", TARGETS)
def test_concat_slices_of_every_layer_kind_use_the_concat_format(target: str) -> None:
    """A map, an ALU op, a copy and a host op write into slices of a concatenation whose range
    (and so format) is wider than theirs: each must produce words of the concatenation's format."""
    x, y, s = _add_graph((2, 5, 6))
    big = make_node(
        "big", Op.CONST_BINARY, ("x",), x.shape, {"kind": "mul", "reverse": 0}, {"const": np.array(40.0)}
    )
    sig = act("sig", s, "sigmoid")
    mx = binary("mx", x, y, "max")
    pad = make_node("pad", Op.PAD, ("y",), (2, 5, 6), {"pads": (0, 0, 0, 0), "value": 0.0})
    sm = make_node("sm", Op.SOFTMAX, ("s",), s.shape, {"axes": (0,)})
    pos = make_node(
        "pos", Op.CONST_BINARY, ("y",), y.shape, {"kind": "max", "reverse": 0}, {"const": np.array(0.5)}
    )
    parts = (big, sig, mx, pad, sm, pos)
    cat = make_node("cat", Op.CONCAT, tuple(p.name for p in parts), (12, 5, 6), {"axis": 0})
    r = run_both(graph(x, y, s, *parts, cat), target)
    assert not [la for la in r.layers(CopyLayer) if la.dst.startswith("cat.")]  # no copies needed
    for p in parts:
        assert r.low.buffers[p.name].parent == "cat"
    fmt = r.low.buffers["cat"].fmt
    assert fmt.frac < r.formats.of("sig").frac  # the concat is coarser than its parts
    got, ref = r.got("cat"), r.ref["cat"]
    fit = fitted("sigmoid", {}, r.low.buffers["s"].fmt, fmt, r.arch)
    e_add = r.step("s") / 2
    bounds = {
        "big": mac_bound(r.layer("big"), r.absmax("x")),
        "sig": fit.max_error + LIPSCHITZ["sigmoid"] * e_add,
        "mx": fmt.step / 2,
        "pad": fmt.step / 2,
        "sm": fmt.step / 2 + 0.5 * e_add,
        "pos": fmt.step / 2,
    }
    for i, p in enumerate(parts):
        err = np.abs(got[2 * i : 2 * i + 2] - ref[2 * i : 2 * i + 2]).max()
        assert err <= bounds[p.name] + EPS, p.name


@pytest.mark.parametrize("target", TARGETS)
def test_concat_of_a_tensor_used_twice_copies(target: str) -> None:
    gen = np.random.default_rng(12)
    x = inp("x", (3, 5, 6))
    c = conv("c", x, randw(gen, 2, 3, 1, 1), randw(gen, 2))
    cat = make_node("cat", Op.CONCAT, ("c", "x", "c"), (7, 5, 6), {"axis": 0})
    r = run_both(graph(x, c, cat), target)
    copies = r.layers(CopyLayer)
    assert len(copies) == 3  # neither x (an input) nor c (used twice) can write in place
    assert [r.low.buffers[cp.dst].offset for cp in copies] == [0, 2 * 30, 5 * 30]
    got, ref = r.got("cat"), r.ref["cat"]
    bound = mac_bound(r.layer("c"), r.absmax("x"), weight=r.weight("c")) + r.step("cat") / 2
    assert np.abs(got - ref).max() <= bound


@pytest.mark.parametrize("target", TARGETS)
def test_pad_with_a_value(target: str) -> None:
    x = inp("x", (3, 5, 6))
    p = make_node("p", Op.PAD, ("x",), (3, 8, 8), {"pads": (1, 2, 2, 0), "value": -1.3})
    r = run_both(graph(x, p), target)
    (layer,) = r.low.layers
    assert isinstance(layer, CopyLayer)
    assert r.err("p") <= r.step("p") / 2 + EPS
    assert np.abs(r.got("p")[:, 0, :] + 1.3).max() <= r.step("p") / 2 + EPS


@pytest.mark.parametrize("target", TARGETS)
def test_resize_nearest_x2(target: str) -> None:
    x = inp("x", (3, 5, 6))
    u = make_node("u", Op.RESIZE, ("x",), (3, 10, 12), {"scale": (2, 2)})
    r = run_both(graph(x, u), target)
    assert len(r.layers(CopyLayer)) == 4 and len(r.low.layers) == 4
    assert r.err("u") <= r.step("u") / 2 + EPS


# -- activations --------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_prelu_per_channel_slopes(target: str) -> None:
    slope = np.array([0.25, -0.5, 0.1, 1.5]).reshape(4, 1, 1)
    x, y, s = _add_graph()
    p = act("p", s, "prelu", {"slope": slope})
    r = run_both(graph(x, y, s, p), target)
    _, layer = r.low.layers
    assert isinstance(layer, MapLayer)
    fits = [
        fitted("leaky_relu", {"alpha": float(a)}, layer.pwl[0].in_fmt, r.low.buffers["p"].fmt, r.arch)
        for a in slope.ravel()
    ]
    assert layer.pwl == tuple(f.pwl for f in fits)
    e_in = r.step("s") / 2
    for c, f in enumerate(fits):
        err = np.abs(r.got("p")[c] - r.ref["p"][c]).max()
        assert err <= f.max_error + max(1.0, abs(slope.ravel()[c])) * e_in + EPS


@pytest.mark.parametrize("target", TARGETS)
def test_prelu_fused_after_a_conv(target: str) -> None:
    gen = np.random.default_rng(13)
    slope = np.array([0.25, 0.125, 0.5]).reshape(3, 1, 1)
    x = inp("x", (2, 6, 7))
    c = conv("c", x, randw(gen, 3, 2, 3, 3), randw(gen, 3))
    p = act("p", c, "prelu", {"slope": slope})
    r = run_both(graph(x, c, p), target)
    (layer,) = r.low.layers
    assert layer.act_kind == "prelu" and len(set(layer.act)) == 3
    fits = [
        fitted("leaky_relu", {"alpha": float(a)}, layer.psum_fmt, layer.out_fmt, r.arch)
        for a in slope.ravel()
    ]
    assert layer.act == tuple(f.pwl for f in fits)
    e_conv = mac_bound(layer, r.absmax("x"), weight=r.weight("c"))
    assert r.err("p") <= max(f.max_error for f in fits) + e_conv


@pytest.mark.parametrize("target", TARGETS)
def test_prelu_slopes_along_the_width_are_not_per_channel(target: str) -> None:
    """A (C,) slope lines up with W (numpy broadcasting), even when W equals C."""
    x = inp("x", (3, 4, 3))
    p = act("p", x, "prelu", {"slope": np.array([0.1, 0.2, 0.3])})
    with pytest.raises(LoweringError, match="PReLU slopes of shape \\(3,\\)"):
        run_both(graph(x, p), target)


STANDALONE = [
    ("sigmoid", {}),
    ("hard_sigmoid", {"alpha": 0.2, "beta": 0.5}),
    ("hard_swish", {}),
    ("leaky_relu", {"alpha": 0.1}),
    ("clip", {"min": -0.5, "max": 1.25}),
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("kind, attrs", STANDALONE, ids=[k for k, _ in STANDALONE])
def test_activation_after_an_add_is_a_map_layer(target: str, kind: str, attrs: dict) -> None:
    x, y, s = _add_graph()
    a = act("a", s, kind, **attrs)
    r = run_both(graph(x, y, s, a), target)
    add, layer = r.low.layers
    assert isinstance(add, EltwiseLayer) and isinstance(layer, MapLayer) and layer.act_kind == kind
    fit = fitted(kind, attrs, r.low.buffers["s"].fmt, r.low.buffers["a"].fmt, r.arch)
    assert layer.pwl == (fit.pwl,) * 4
    lip = attrs["alpha"] if kind == "hard_sigmoid" else LIPSCHITZ[kind]
    assert r.err("a") <= fit.max_error + lip * r.step("s") / 2 + EPS
    if kind != "sigmoid" and kind != "hard_swish":  # piecewise linear with dyadic-enough constants
        assert fit.max_error <= 2 * r.step("a")


# -- host ops --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_softmax_and_lrn_run_on_the_host(target: str) -> None:
    x = inp("x", (5, 4, 6))
    lrn = make_node("lrn", Op.LRN, ("x",), x.shape, {"size": 3, "alpha": 1e-2, "beta": 0.75, "bias": 1.0})
    sm = make_node("sm", Op.SOFTMAX, ("lrn",), x.shape, {"axes": (0,)})
    r = run_both(graph(x, lrn, sm), target)
    assert [type(la) for la in r.low.layers] == [HostLayer, HostLayer]
    e_lrn = r.step("lrn") / 2
    assert r.err("lrn") <= e_lrn + EPS
    # softmax is 1/2-Lipschitz in the max norm: row i of its Jacobian sums to 2 p_i (1 - p_i)
    assert r.err("sm") <= r.step("sm") / 2 + 0.5 * e_lrn + EPS


# -- saturation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_saturation_is_counted_and_clamps(target: str) -> None:
    """In the default Q8.8, a conv summing 36 inputs of 10 gives 360: beyond 127.996."""
    arch = load_target(target)
    x = inp("x", (4, 6, 8))
    c = conv("c", x, np.ones((2, 4, 3, 3)))
    g = graph(x, c)
    formats = default_formats(arch)
    low = lower(g, arch, formats)
    xv = np.full((1, 4, 6, 8), 0.25)
    xv[..., :4] = 10.0  # the left half saturates, the right half (0.25 * 36 = 9) does not
    res = run_fixed(low, {"x": xv})
    out = res.outputs["out0"][0]
    q88 = QFormat(16, 8)
    assert res.saturations["c"] > 0
    np.testing.assert_array_equal(out[:, :, :2], q88.max_real)
    np.testing.assert_array_equal(out[:, :, 4:], 9.0)
    ref = run_float(g, {"x": xv})["out0"][0]
    assert (ref[:, :, :2] > q88.max_real).all()


@pytest.mark.parametrize("target", ["virtex6", "asic45"])
def test_pointwise_conv_uses_column_windows_over_channels(target: str) -> None:
    """A 1x1 convolution whose map fits the line buffers sees its input as one C x (H*W) map:
    each term is a K x 1 column over K channels, so there are about K times fewer terms."""
    gen = np.random.default_rng(21)
    x = inp("x", (23, 4, 5))
    n = conv("n", x, gen.standard_normal((6, 23, 1, 1)) / 5, gen.standard_normal(6) / 5)
    r = run_both(graph(x, n), target)
    (layer,) = r.low.layers
    K = r.arch.tile.convolver_size
    assert layer.kind == "conv1x1" and layer.view == (23, 20) and layer.out_shape == (6, 1, 20)
    assert layer.terms == 6 * -(-23 // K)
    assert r.low.buffers[layer.dst].shape == (6, 4, 5)
    assert r.err("n") <= mac_bound(layer, r.absmax("x"))
