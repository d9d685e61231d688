"""Lowering: the float IR plus word formats -> a :class:`~nfc.compiler.grid.Lowered` graph.

What each IR op becomes (K = the target's convolver size):

============================  ========================================================================
CONV (any groups, stride,     ConvLayer: per output map a chain over its input maps; kernels larger
dilation, padding)            than K x K split into equal blocks of at most K x K (zero-padded);
                              all-zero blocks (connection tables) are not terms at all; padding is
                              a virtual border the DMA reads as zeros
CONV -> ACT (single use)      the activation runs on the chain's mapper (fused)
LINEAR                        ConvLayer on the input vector viewed as a ``rows x K`` map
MAXPOOL, GLOBAL_MAXPOOL       ConvLayer in max mode (depthwise); border reads the lowest word
AVGPOOL, GLOBAL_AVGPOOL       depthwise ConvLayer with the constant kernel 1/(kh*kw) (luaFlow's way)
                              when padding counts or there is none; otherwise a host op
AFFINE, per-channel or        depthwise 1x1 ConvLayer (weight = scale, bias = shift)
scalar CONST_BINARY add/sub/
mul/div
ACT                           MapLayer (the mapper, piecewise linear, fitted per format)
CONST_BINARY max/min scalar   MapLayer (exact piecewise-linear map)
BINARY add/sub/mul/max/min    EltwiseLayer (ALU) when both shapes are equal
CONCAT on channels            producers write into slices of one buffer (copies where they cannot)
PAD                           CopyLayer with a virtual border of the pad value
RESIZE (nearest, integer)     one CopyLayer per output phase, written with a strided DMA region
RESHAPE                       a view of the same memory
SOFTMAX, LRN, the rest        HostLayer: float64 numpy on the host, words converted at both ends
============================  ========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from nfc.arch import ArchConfig
from nfc.compiler.analysis import useful_conv_macs
from nfc.compiler.executor import activation
from nfc.compiler.grid import Buffer, ConvLayer, CopyLayer, EltwiseLayer, HostLayer, Layer, Lowered, MapLayer
from nfc.compiler.ir import Graph, Node, Op
from nfc.compiler.pwl import fit_function, fit_pwl
from nfc.compiler.quantize import Formats, frac_for
from nfc.errors import NfcError
from nfc.numerics import PWL, QFormat, quantize

__all__ = ["lower", "LoweringError", "mapper_error"]


def avg_weight_frac(n: int, bits: int, acc_bits: int) -> int:
    """Fraction bits of the constant ``1/n`` kernel of an ``n``-tap average: the most that keep the
    weight word within ``bits`` and a window sum of ``n`` full-scale words within the accumulator
    (1/49 gets 20 bits, not the 15 of a Q0.15 weight, so big averages keep their precision)."""
    frac = 0
    while True:
        w = math.floor(2.0 ** (frac + 1) / n + 0.5)
        if w > (1 << (bits - 1)) - 1 or n * w * (1 << (bits - 1)) >= 1 << (acc_bits - 1) or frac >= 62:
            return frac
        frac += 1


class LoweringError(NfcError):
    """A layer cannot be mapped onto the target (names the layer and the limit)."""


_FIT_CACHE: dict[tuple, PWL] = {}


#: The fitter's measured worst-case error (real units) of every mapper configuration made here.
_FIT_ERRORS: dict[PWL, float] = {}


def mapper_error(pwl: PWL) -> float:
    """The achieved maximum error of a mapper configuration lowering produced (for reports)."""
    return _FIT_ERRORS[pwl]


def _remember(result) -> PWL:
    _FIT_ERRORS[result.pwl] = max(_FIT_ERRORS.get(result.pwl, 0.0), result.max_error)
    return result.pwl


def _fit(kind: str, params: dict, in_fmt: QFormat, out_fmt: QFormat, segments: int) -> PWL:
    key = (kind, tuple(sorted(params.items())), in_fmt, out_fmt, segments)
    if key not in _FIT_CACHE:
        _FIT_CACHE[key] = _remember(fit_function(kind, params, in_fmt, out_fmt, segments))
    return _FIT_CACHE[key]


def _act_params(node: Node) -> dict:
    kind = node.attr("kind")
    if kind == "leaky_relu":
        return {"alpha": node.attr("alpha")}
    if kind == "hard_sigmoid":
        return {"alpha": node.attr("alpha"), "beta": node.attr("beta")}
    if kind == "clip":
        return {"min": node.attr("min"), "max": node.attr("max")}
    return {}


def _per_channel(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """The value of each channel of ``value`` broadcast (numpy rules) to a tensor of ``shape``, or
    None when it varies over positions. A tensor that is not ``(C, H, W)`` is lowered as
    ``(size, 1, 1)``: each element is a channel. A ``(C,)`` value against ``(C, H, W)`` lines up
    with W, not with the channels."""
    value = np.asarray(value, np.float64)
    if np.broadcast_shapes(value.shape, shape) != tuple(shape):
        return None
    full = np.broadcast_to(value, shape)
    full = full.reshape(shape[0], -1) if len(shape) == 3 else full.reshape(-1, 1)
    if not (full == full[:, :1]).all():
        return None
    return full[:, 0].copy()


def _blocks(size: int, k: int) -> tuple[int, int]:
    """(number of blocks, block length) splitting ``size`` taps into equal blocks of at most ``k``."""
    n = math.ceil(size / k)
    return n, math.ceil(size / n)


class _Lowerer:
    def __init__(self, graph: Graph, arch: ArchConfig, formats: Formats):
        self.graph = graph
        self.arch = arch
        self.formats = formats
        self.K = arch.tile.convolver_size
        self.segments = arch.tile.mapper_segments
        self.buffers: dict[str, Buffer] = {}
        self.layers: list[Layer] = []
        self.tensor_buffer: dict[str, str] = {}  # IR tensor -> buffer name
        self.fused: set[str] = set()
        self.slices: dict[str, tuple[str, int]] = {}  # IR tensor -> (concat node, channel offset)
        self.outputs = {o.node for o in graph.outputs}

    # -- buffers ----------------------------------------------------------------------------------
    def fmt(self, name: str) -> QFormat:
        """Format of the buffer of IR tensor ``name``: a slice of a concatenation has its format."""
        if name in self.slices:
            return self.formats.of(self.slices[name][0])
        return self.formats.of(name)

    def new_buffer(self, name: str, shape: tuple[int, ...], fmt: QFormat) -> str:
        shape3 = tuple(shape) if len(shape) == 3 else (math.prod(shape), 1, 1)
        parent, offset = None, 0
        if name in self.slices:
            concat, ch0 = self.slices[name]
            parent = self._ensure_concat_buffer(concat)
            offset = ch0 * shape3[1] * shape3[2]
            fmt = self.buffers[parent].fmt
        self.buffers[name] = Buffer(name, shape3, fmt, parent, offset)
        self.tensor_buffer[name] = name
        return name

    def _ensure_concat_buffer(self, concat: str) -> str:
        if concat not in self.buffers:
            node = self.graph.node(concat)
            self.buffers[concat] = Buffer(concat, tuple(node.shape), self.fmt(concat))
            self.tensor_buffer[concat] = concat
        return concat

    def buf(self, tensor: str) -> str:
        return self.tensor_buffer[tensor]

    # -- the walk ---------------------------------------------------------------------------------
    def run(self) -> Lowered:
        self._plan_concats()
        self._plan_fusion()
        for node in self.graph.nodes:
            if node.name in self.fused:
                continue
            handler = _LOWER.get(node.op)
            handler(self, node)
        inputs = tuple((n.name, self.buf(n.name), tuple(n.attr("onnx_shape"))) for n in self.graph.inputs)
        outputs = tuple((o.name, self.buf(o.node), o.onnx_shape) for o in self.graph.outputs)
        return Lowered(self.graph.name, dict(self.buffers), tuple(self.layers), inputs, outputs)

    def _plan_concats(self) -> None:
        """Producers that only feed one channel concatenation write straight into its buffer."""
        for node in self.graph.nodes:
            if node.op is not Op.CONCAT or node.attr("axis") != 0 or len(node.shape) != 3:
                continue
            ch = 0
            for i in node.inputs:
                producer = self.graph.node(i)
                if (
                    producer.op not in (Op.INPUT, Op.RESHAPE, Op.CONCAT)
                    and i not in self.slices
                    and i not in self.outputs
                    and len(self.graph.consumers(i)) == 1
                    and node.inputs.count(i) == 1
                ):
                    self.slices[i] = (node.name, ch)
                ch += self.graph.node(i).shape[0]

    def _fusable_source(self, node: Node) -> bool:
        """Whether ``node`` lowers to a ConvLayer whose chain end can feed the mapper."""
        if node.op in (Op.CONV, Op.LINEAR, Op.MAXPOOL, Op.GLOBAL_MAXPOOL, Op.GLOBAL_AVGPOOL, Op.AFFINE):
            return True
        return node.op is Op.AVGPOOL and (not any(node.attr("pads")) or bool(node.attr("count_include_pad")))

    def _single_use(self, node: Node) -> Node | None:
        users = self.graph.consumers(node.name)
        if node.name in self.outputs or node.name in self.slices or len(users) != 1:
            return None
        return users[0]

    def _plan_fusion(self) -> None:
        """Activations right after a ConvLayer-op run on its chain's mapper; a run of activations
        (tanh then abs, ...) becomes one mapper whose function is their composition."""
        self.act_chains: dict[str, list[Node]] = {}
        for node in self.graph.nodes:
            if not self._fusable_source(node):
                continue
            chain: list[Node] = []
            cur = node
            while True:
                nxt = self._single_use(cur)
                if nxt is None or nxt.op is not Op.ACT:
                    break
                if nxt.attr("kind") == "prelu" and chain or chain and chain[0].attr("kind") == "prelu":
                    break  # per-channel slopes are not composed
                chain.append(nxt)
                cur = nxt
            if chain:
                self.act_chains[node.name] = chain
                self.fused.update(a.name for a in chain)
        # standalone activation runs (an activation after an add, ...) also become one mapper
        for node in self.graph.nodes:
            if node.op is not Op.ACT or node.name in self.fused or node.attr("kind") == "prelu":
                continue
            chain, cur = [node], node
            while True:
                nxt = self._single_use(cur)
                if nxt is None or nxt.op is not Op.ACT or nxt.attr("kind") == "prelu":
                    break
                chain.append(nxt)
                cur = nxt
            if len(chain) > 1:
                self.act_chains[node.name] = chain[1:]
                self.fused.update(a.name for a in chain[1:])

    def fused_act(self, node: Node) -> list[Node]:
        return self.act_chains.get(node.name, [])

    def host(self, node: Node, why: str) -> None:
        dst = self.new_buffer(node.name, node.shape, self.fmt(node.name))
        srcs = tuple(self.buf(i) for i in node.inputs)
        shapes = tuple(tuple(self.graph.node(i).shape) for i in node.inputs)
        self.layers.append(HostLayer(node.name, node.source, node, srcs, dst, shapes, why))

    # -- the workhorse ----------------------------------------------------------------------------
    def conv_layer(
        self,
        node: Node,
        kind: str,
        src: str,
        view: tuple[int, int],
        weight: np.ndarray,  # float (O, I/groups, KH, KW); ignored in max mode except its shape
        bias: np.ndarray,  # float (O,)
        groups: int,
        stride: tuple[int, int],
        dilation: tuple[int, int],
        pads: tuple[int, int, int, int],
        out_shape: tuple[int, int, int],
        mode: str = "mac",
        wfmt: QFormat | None = None,
        useful_macs: int = 0,
        buffer_shape: tuple[int, int, int] | None = None,
    ) -> None:
        acts_after = self.fused_act(node)
        name = acts_after[-1].name if acts_after else node.name
        in_fmt = self.buffers[src].fmt
        psum_fmt = self.formats.of(node.name) if mode == "mac" else in_fmt  # the chain's own range
        out_fmt = self.fmt(name)
        O, ipg, KH, KW = weight.shape
        for what, (a, b) in (("stride", stride), ("dilation", dilation)):
            if max(a, b) > 15:
                raise LoweringError(
                    f"layer {node.name!r}: {what} {a}x{b} does not fit the convolver's 4-bit {what} field "
                    f"(at most 15); re-export the model with a smaller {what}"
                )
        nb_h, bh = _blocks(KH, self.K)
        nb_w, bw = _blocks(KW, self.K)
        wfmt = wfmt or self.formats.weight(node.name)
        if mode == "mac":
            wq, _ = quantize(weight, wfmt)
            padded = np.zeros((O, ipg, nb_h * bh, nb_w * bw), np.int64)
            padded[:, :, :KH, :KW] = wq
            blocks = padded.reshape(O, ipg, nb_h, bh, nb_w, bw).transpose(0, 1, 2, 4, 3, 5)
            nonzero = blocks.any(axis=(4, 5))  # (O, ipg, nb_h, nb_w)
            off_h = np.arange(nb_h) * bh
            off_w = np.arange(nb_w) * bw
        else:  # max: overlapping blocks that end exactly at the kernel's edge (max is idempotent)
            blocks = np.zeros((O, ipg, nb_h, nb_w, bh, bw), np.int64)
            nonzero = np.ones((O, ipg, nb_h, nb_w), bool)
            off_h = np.minimum(np.arange(nb_h) * bh, KH - bh)
            off_w = np.minimum(np.arange(nb_w) * bw, KW - bw)
        counts = nonzero.reshape(O, -1).sum(axis=1)
        T = max(int(counts.max()), 1)
        channels = np.full((O, T), -1, np.int64)
        offsets = np.zeros((O, T, 2), np.int64)
        kernels = np.zeros((O, T, bh, bw), np.int64)
        opg = O // groups
        for o in range(O):
            i, p, q = np.nonzero(nonzero[o])
            n = i.size
            channels[o, :n] = (o // opg) * ipg + i
            offsets[o, :n, 0] = off_h[p]
            offsets[o, :n, 1] = off_w[q]
            kernels[o, :n] = blocks[o, i, p, q]
        # the DMA must be able to read every tap of every (zero-padded) block: widen the border
        dh, dw = dilation
        sh, sw = stride
        _, OH, OW = out_shape
        need_h = (OH - 1) * sh + dh * (nb_h * bh - 1) + 1
        need_w = (OW - 1) * sw + dw * (nb_w * bw - 1) + 1
        pt, pl, pb, pr = pads
        pb += max(0, need_h - (view[0] + pt + pb))
        pr += max(0, need_w - (view[1] + pl + pr))
        if mode == "mac":
            bias_q, _ = quantize(bias, psum_fmt)
            pad_value = 0
        else:
            bias_q = np.full(O, psum_fmt.lo, np.int64)
            pad_value = in_fmt.lo
        acts: tuple = ()
        act_kind = ""
        if acts_after:
            act_kind = "+".join(a.attr("kind") for a in acts_after)
            acts = self.mapper_configs(acts_after, O, psum_fmt, out_fmt)
        self._check_accumulator(node, kernels, channels, in_fmt, wfmt, psum_fmt, mode)
        dst = self.new_buffer(name, buffer_shape or out_shape, out_fmt)
        self.layers.append(
            ConvLayer(
                name=name,
                source="+".join([node.source] + [a.source for a in acts_after]),
                src=src,
                dst=dst,
                view=view,
                pads=(pt, pl, pb, pr),
                pad_value=pad_value,
                stride=stride,
                dilation=dilation,
                block=(bh, bw),
                channels=channels,
                offsets=offsets,
                kernels=kernels,
                bias=bias_q,
                in_fmt=in_fmt,
                wfmt=wfmt,
                psum_fmt=psum_fmt,
                out_fmt=out_fmt,
                out_shape=out_shape,
                mode=mode,
                act=acts,
                act_kind=act_kind,
                kind=kind,
                useful_macs=useful_macs,
            )
        )

    def mapper_configs(
        self, acts: list[Node], channels: int, in_fmt: QFormat, out_fmt: QFormat
    ) -> tuple[PWL, ...]:
        """Mapper configurations (one per channel) for the activation(s) ``acts`` applied in order."""
        first = acts[0]
        if first.attr("kind") == "prelu":
            per = _per_channel(first.param("slope"), first.shape)
            if per is None or per.size != channels:
                raise LoweringError(
                    f"layer {first.name!r}: PReLU slopes of shape {first.param('slope').shape} "
                    f"do not give one slope per channel ({channels})"
                )
            return tuple(_fit("leaky_relu", {"alpha": float(a)}, in_fmt, out_fmt, self.segments) for a in per)
        if len(acts) == 1:
            pwl = _fit(first.attr("kind"), _act_params(first), in_fmt, out_fmt, self.segments)
            return (pwl,) * channels
        key = ("chain",) + tuple((a.attr("kind"), tuple(sorted(_act_params(a).items()))) for a in acts)
        cache_key = (key, in_fmt, out_fmt, self.segments)
        if cache_key not in _FIT_CACHE:

            def composed(x: np.ndarray) -> np.ndarray:
                for a in acts:
                    x = activation(a.attr("kind"), x, a)
                return x

            name = "+".join(a.attr("kind") for a in acts)
            _FIT_CACHE[cache_key] = _remember(fit_pwl(composed, in_fmt, out_fmt, self.segments, None, name))
        return (_FIT_CACHE[cache_key],) * channels

    def _check_accumulator(self, node, kernels, channels, in_fmt, wfmt, psum_fmt, mode) -> None:
        """Prove the accumulator cannot overflow: sum|w| * max|x| + the aligned partial sum fits."""
        if mode != "mac":
            return
        bits = self.arch.numerics.accumulator_bits
        f_acc = in_fmt.frac + wfmt.frac
        big = int(np.abs(kernels).sum(axis=(2, 3)).max(initial=0)) * (1 << (in_fmt.bits - 1))
        psum = (1 << (psum_fmt.bits - 1)) << max(0, f_acc - psum_fmt.frac)
        if big + psum >= 1 << (bits - 1):
            raise LoweringError(
                f"layer {node.name!r}: the {bits}-bit accumulator could overflow (weights in {wfmt}, inputs "
                f"in {in_fmt}); use fewer weight fraction bits or a target with wider accumulator_bits"
            )


# ---------------------------------------------------------------------------------------------------
_LOWER: dict[Op, Callable[[_Lowerer, Node], None]] = {}


def _on(*ops: Op):
    def deco(fn):
        for op in ops:
            _LOWER[op] = fn
        return fn

    return deco


@_on(Op.INPUT)
def _input(lw: _Lowerer, node: Node) -> None:
    lw.new_buffer(node.name, node.shape, lw.fmt(node.name))


@_on(Op.CONV)
def _conv(lw: _Lowerer, node: Node) -> None:
    src = lw.buf(node.inputs[0])
    weight = np.asarray(node.param("weight"), np.float64)
    C, H, W = lw.graph.node(node.inputs[0]).shape
    O = weight.shape[0]
    if (
        weight.shape[2:] == (1, 1)
        and node.attr("stride") == (1, 1)
        and not any(node.attr("pads"))
        and node.attr("groups") == 1
        and C > 1
        and H * W <= lw.arch.tile.line_buffer_words
    ):
        # a pointwise convolution: the input seen as one C x (H*W) map, each output a K x 1 column
        # window over K channels, instead of one 1-tap term per channel
        lw.conv_layer(
            node,
            "conv1x1",
            src,
            (C, H * W),
            weight.reshape(O, 1, C, 1),
            np.asarray(node.param("bias"), np.float64),
            1,
            (1, 1),
            (1, 1),
            (0, 0, 0, 0),
            (O, 1, H * W),
            useful_macs=useful_conv_macs(node)[0],
            buffer_shape=tuple(node.shape),
        )
        return
    lw.conv_layer(
        node,
        "conv",
        src,
        (H, W),
        weight,
        np.asarray(node.param("bias"), np.float64),
        node.attr("groups"),
        node.attr("stride"),
        node.attr("dilation"),
        node.attr("pads"),
        tuple(node.shape),
        useful_macs=useful_conv_macs(node)[0],
    )


@_on(Op.LINEAR)
def _linear(lw: _Lowerer, node: Node) -> None:
    w = np.asarray(node.param("weight"), np.float64)
    O, n_in = w.shape
    cols = min(lw.K, n_in)
    rows = math.ceil(n_in / cols)
    padded = np.zeros((O, rows * cols))
    padded[:, :n_in] = w
    lw.conv_layer(
        node,
        "linear",
        lw.buf(node.inputs[0]),
        (rows, cols),
        padded.reshape(O, 1, rows, cols),
        np.asarray(node.param("bias"), np.float64),
        1,
        (1, 1),
        (1, 1),
        (0, 0, 0, 0),
        (O, 1, 1),
        useful_macs=O * n_in,
    )


def _depthwise(
    lw: _Lowerer,
    node: Node,
    kind: str,
    kernel: tuple[int, int],
    weight_value,
    bias,
    stride,
    pads,
    mode: str = "mac",
    wfmt: QFormat | None = None,
) -> None:
    x = lw.graph.node(node.inputs[0])
    C = x.shape[0] if len(x.shape) == 3 else x.type.size
    view = tuple(x.shape[1:]) if len(x.shape) == 3 else (1, 1)
    out_shape = tuple(node.shape) if len(node.shape) == 3 else (node.type.size, 1, 1)
    w = np.broadcast_to(np.asarray(weight_value, np.float64).reshape(-1, 1, 1, 1), (C, 1) + kernel).copy()
    b = np.broadcast_to(np.asarray(bias, np.float64).reshape(-1), (C,)).copy()
    macs = C * out_shape[1] * out_shape[2] * kernel[0] * kernel[1] if mode == "mac" else 0
    lw.conv_layer(
        node,
        kind,
        lw.buf(node.inputs[0]),
        view,
        w,
        b,
        C,
        stride,
        (1, 1),
        pads,
        out_shape,
        mode=mode,
        wfmt=wfmt,
        useful_macs=macs,
    )


def _pool_window(
    lw: _Lowerer, node: Node
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int, int, int]]:
    """(kernel, stride, pads) of a pooling node; a global pool is a window over the whole map."""
    if node.op in (Op.GLOBAL_MAXPOOL, Op.GLOBAL_AVGPOOL):
        return tuple(lw.graph.node(node.inputs[0]).shape[1:]), (1, 1), (0, 0, 0, 0)
    return node.attr("kernel"), node.attr("stride"), node.attr("pads")


@_on(Op.MAXPOOL, Op.GLOBAL_MAXPOOL)
def _maxpool(lw: _Lowerer, node: Node) -> None:
    kernel, stride, pads = _pool_window(lw, node)
    _depthwise(lw, node, "maxpool", kernel, 0.0, 0.0, stride, pads, mode="max")


@_on(Op.AVGPOOL, Op.GLOBAL_AVGPOOL)
def _avgpool(lw: _Lowerer, node: Node) -> None:
    kernel, stride, pads = _pool_window(lw, node)
    if any(pads) and not node.attr("count_include_pad"):
        lw.host(node, "average pooling that excludes the padding divides by a count that varies per position")
        return
    n = kernel[0] * kernel[1]
    bits = lw.arch.numerics.word_bits
    wfmt = QFormat(bits, avg_weight_frac(n, bits, lw.arch.numerics.accumulator_bits))
    _depthwise(lw, node, "avgpool", kernel, 1.0 / n, 0.0, stride, pads, wfmt=wfmt)


@_on(Op.AFFINE)
def _affine(lw: _Lowerer, node: Node) -> None:
    scale = np.asarray(node.param("scale"), np.float64)
    wfmt = QFormat(
        lw.arch.numerics.word_bits, frac_for(float(np.abs(scale).max()), lw.arch.numerics.word_bits)
    )
    _depthwise(lw, node, "affine", (1, 1), scale, node.param("shift"), (1, 1), (0, 0, 0, 0), wfmt=wfmt)


@_on(Op.CONST_BINARY)
def _const_binary(lw: _Lowerer, node: Node) -> None:
    x = lw.graph.node(node.inputs[0])
    c = np.asarray(node.param("const"), np.float64)
    channels = x.shape[0] if len(x.shape) == 3 else x.type.size
    per = _per_channel(c, tuple(x.shape))
    per_channel = per is not None
    kind, reverse = node.attr("kind"), node.attr("reverse")
    bits = lw.arch.numerics.word_bits
    if per_channel and kind in ("add", "sub", "mul") or (per_channel and kind == "div" and not reverse):
        c = per
        if kind == "add":
            w, b = np.ones_like(c), c
        elif kind == "sub":
            w, b = (-np.ones_like(c), c) if reverse else (np.ones_like(c), -c)
        elif kind == "mul":
            w, b = c, np.zeros_like(c)
        else:
            if np.any(c == 0):
                lw.host(node, "division by a zero constant")
                return
            w, b = 1.0 / c, np.zeros_like(c)
        wfmt = QFormat(bits, frac_for(float(np.abs(w).max()), bits))
        _depthwise(lw, node, "scale", (1, 1), w, b, (1, 1), (0, 0, 0, 0), wfmt=wfmt)
        return
    if per_channel and kind in ("max", "min"):
        # one exact two-segment map per channel (the mapper is configured per channel)
        in_fmt = lw.buffers[lw.buf(node.inputs[0])].fmt
        pwls = []
        for v in np.broadcast_to(np.asarray(per, np.float64).reshape(-1), (channels,)):
            v = float(v)
            fn = (lambda t, v=v: np.maximum(t, v)) if kind == "max" else (lambda t, v=v: np.minimum(t, v))
            pwls.append(_remember(fit_pwl(fn, in_fmt, lw.fmt(node.name), lw.segments, (v,), kind)))
        dst = lw.new_buffer(node.name, node.shape, lw.fmt(node.name))
        lw.layers.append(MapLayer(node.name, node.source, lw.buf(node.inputs[0]), dst, tuple(pwls), kind))
        return
    lw.host(node, f"{kind} with a constant that varies over positions (or divided by the input)")


@_on(Op.ACT)
def _act(lw: _Lowerer, node: Node) -> None:
    src = lw.buf(node.inputs[0])
    x = lw.graph.node(node.inputs[0])
    channels = x.shape[0] if len(x.shape) == 3 else x.type.size
    acts = [node] + lw.fused_act(node)
    last = acts[-1]
    pwls = lw.mapper_configs(acts, channels, lw.buffers[src].fmt, lw.fmt(last.name))
    dst = lw.new_buffer(last.name, last.shape, lw.fmt(last.name))
    kind = "+".join(a.attr("kind") for a in acts)
    lw.layers.append(MapLayer(last.name, "+".join(a.source for a in acts), src, dst, pwls, kind))


@_on(Op.BINARY)
def _binary(lw: _Lowerer, node: Node) -> None:
    a, b = (lw.graph.node(i) for i in node.inputs)
    kind = node.attr("kind")
    if a.shape != b.shape or kind == "div":
        lw.host(node, "division of two tensors" if kind == "div" else "broadcasting between two tensors")
        return
    dst = lw.new_buffer(node.name, node.shape, lw.fmt(node.name))
    lw.layers.append(EltwiseLayer(node.name, node.source, lw.buf(a.name), lw.buf(b.name), dst, kind))


@_on(Op.CONCAT)
def _concat(lw: _Lowerer, node: Node) -> None:
    if node.attr("axis") != 0 or len(node.shape) != 3:
        lw.host(node, "concatenation along an axis other than channels")
        return
    dst = lw._ensure_concat_buffer(node.name)
    ch = 0
    for i in node.inputs:
        shape = lw.graph.node(i).shape
        if lw.slices.get(i, (None,))[0] != node.name:
            # the producer could not write in place: copy it into its slice
            slice_name = f"{node.name}.in{ch}"
            lw.buffers[slice_name] = Buffer(
                slice_name, tuple(shape), lw.buffers[dst].fmt, dst, ch * shape[1] * shape[2]
            )
            lw.layers.append(CopyLayer(slice_name, node.source, lw.buf(i), slice_name))
        ch += shape[0]


@_on(Op.PAD)
def _pad(lw: _Lowerer, node: Node) -> None:
    src = lw.buf(node.inputs[0])
    value, _ = quantize(np.array(node.attr("value")), lw.fmt(node.name))
    dst = lw.new_buffer(node.name, node.shape, lw.fmt(node.name))
    lw.layers.append(CopyLayer(node.name, node.source, src, dst, tuple(node.attr("pads")), int(value)))


@_on(Op.RESIZE)
def _resize(lw: _Lowerer, node: Node) -> None:
    src = lw.buf(node.inputs[0])
    sh, sw = node.attr("scale")
    dst = lw.new_buffer(node.name, node.shape, lw.fmt(node.name))
    for a in range(sh):
        for b in range(sw):
            lw.layers.append(
                CopyLayer(f"{node.name}.phase{a}{b}", node.source, src, dst, step=(sh, sw), start=(a, b))
            )


@_on(Op.RESHAPE)
def _reshape(lw: _Lowerer, node: Node) -> None:
    src = lw.buf(node.inputs[0])
    shape = tuple(node.shape) if len(node.shape) == 3 else (node.type.size, 1, 1)
    lw.buffers[node.name] = Buffer(node.name, shape, lw.buffers[src].fmt, src, 0)
    lw.tensor_buffer[node.name] = node.name


@_on(Op.SOFTMAX, Op.LRN)
def _host(lw: _Lowerer, node: Node) -> None:
    lw.host(node, f"{node.op.value} is a host op")


def lower(graph: Graph, arch: ArchConfig, formats: Formats) -> Lowered:
    """Lower ``graph`` for ``arch`` with word ``formats``. Raises :class:`LoweringError` when a
    layer cannot be mapped (it names the layer and the limit)."""
    return _Lowerer(graph, arch, formats).run()
