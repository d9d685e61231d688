"""Output shape of every IR op, defined once: the frontend builds nodes with it, the verifier checks
declared shapes against it."""

from __future__ import annotations

import math

import numpy as np

from nfc.compiler.ir import ACT_KINDS, BINARY_KINDS, IRError, Node, Op

__all__ = ["infer_shape", "window_out"]


def window_out(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int, dilation: int = 1) -> int:
    """Output length of a sliding window (convolution or pooling, floor mode)."""
    span = dilation * (kernel - 1) + 1
    return (size + pad_lo + pad_hi - span) // stride + 1


def _need(cond: bool, node: Node, what: str) -> None:
    if not cond:
        raise IRError(f"node {node.name!r} ({node.op.value}, inputs {list(node.inputs)}): {what}")


def _windowed(
    node: Node, shape: tuple[int, ...], kernel: tuple[int, int], dilation=(1, 1)
) -> tuple[int, int]:
    _need(len(shape) == 3, node, f"input must be a (C, H, W) feature map, not {shape}")
    sh, sw = node.attr("stride")
    pt, pl, pb, pr = node.attr("pads")
    _need(min(sh, sw) >= 1 and min(pt, pl, pb, pr) >= 0, node, "strides must be >= 1 and pads >= 0")
    oh = window_out(shape[1], kernel[0], sh, pt, pb, dilation[0])
    ow = window_out(shape[2], kernel[1], sw, pl, pr, dilation[1])
    _need(oh >= 1 and ow >= 1, node, f"window {kernel} does not fit the padded input {shape}")
    return oh, ow


def infer_shape(node: Node, in_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The shape ``node`` must produce from inputs of ``in_shapes``; raises IRError if ill-formed."""
    op = node.op
    arity = {
        Op.INPUT: 0,
        Op.BINARY: 2,
    }.get(op, None if op is Op.CONCAT else 1)
    if arity is not None:
        _need(len(in_shapes) == arity, node, f"takes {arity} input(s), not {len(in_shapes)}")
    if op is Op.INPUT:
        return node.shape
    x = in_shapes[0]
    if op is Op.CONV:
        w = node.param("weight")
        groups = node.attr("groups")
        _need(w.ndim == 4, node, f"weight must be (O, I/groups, kh, kw), not {w.shape}")
        _need(
            len(x) == 3 and x[0] == w.shape[1] * groups,
            node,
            f"input channels {x[0] if x else '?'} != weight {w.shape[1]} x groups {groups}",
        )
        _need(w.shape[0] % groups == 0, node, f"output channels {w.shape[0]} not divisible by {groups}")
        _need(node.param("bias").shape == (w.shape[0],), node, "bias must be (O,)")
        oh, ow = _windowed(node, x, w.shape[2:], node.attr("dilation"))
        return (w.shape[0], oh, ow)
    if op is Op.LINEAR:
        w = node.param("weight")
        _need(
            len(x) == 1 and w.ndim == 2 and w.shape[1] == x[0],
            node,
            f"input {x} does not match weight {w.shape}",
        )
        _need(node.param("bias").shape == (w.shape[0],), node, "bias must be (O,)")
        return (w.shape[0],)
    if op in (Op.MAXPOOL, Op.AVGPOOL):
        oh, ow = _windowed(node, x, node.attr("kernel"))
        return (x[0], oh, ow)
    if op in (Op.GLOBAL_AVGPOOL, Op.GLOBAL_MAXPOOL):
        _need(len(x) == 3, node, f"input must be (C, H, W), not {x}")
        return (x[0], 1, 1)
    if op is Op.ACT:
        kind = node.attr("kind")
        _need(kind in ACT_KINDS, node, f"unknown activation {kind!r}")
        if kind == "prelu":
            _need(
                np.broadcast_shapes(node.param("slope").shape, x) == x, node, "slope must broadcast to input"
            )
        return x
    if op is Op.AFFINE:
        _need(
            len(x) >= 1 and node.param("scale").shape == (x[0],) == node.param("shift").shape,
            node,
            "scale and shift must be (C,)",
        )
        return x
    if op is Op.BINARY:
        _need(node.attr("kind") in BINARY_KINDS, node, f"unknown binary kind {node.attr('kind')!r}")
        try:
            return tuple(np.broadcast_shapes(x, in_shapes[1]))
        except ValueError:
            raise IRError(
                f"node {node.name!r} (binary): shapes {x} and {in_shapes[1]} do not broadcast"
            ) from None
    if op is Op.CONST_BINARY:
        _need(node.attr("kind") in BINARY_KINDS, node, f"unknown binary kind {node.attr('kind')!r}")
        c = node.param("const").shape
        _need(
            len(c) <= len(x) and np.broadcast_shapes(c, x) == x,
            node,
            f"constant {c} must broadcast to the input {x}",
        )
        return x
    if op is Op.CONCAT:
        axis = node.attr("axis")
        _need(len(in_shapes) >= 1, node, "needs at least one input")
        rank = len(x)
        _need(0 <= axis < rank, node, f"axis {axis} out of range for rank {rank}")
        for s in in_shapes[1:]:
            _need(
                len(s) == rank and all(s[d] == x[d] for d in range(rank) if d != axis),
                node,
                f"inputs {in_shapes} differ outside axis {axis}",
            )
        return tuple(sum(s[axis] for s in in_shapes) if d == axis else x[d] for d in range(rank))
    if op is Op.PAD:
        _need(len(x) == 3, node, f"input must be (C, H, W), not {x}")
        pt, pl, pb, pr = node.attr("pads")
        _need(min(pt, pl, pb, pr) >= 0, node, "pads must be >= 0")
        return (x[0], x[1] + pt + pb, x[2] + pl + pr)
    if op is Op.RESIZE:
        _need(len(x) == 3, node, f"input must be (C, H, W), not {x}")
        sh, sw = node.attr("scale")
        _need(sh >= 1 and sw >= 1, node, "scale must be integers >= 1")
        return (x[0], x[1] * sh, x[2] * sw)
    if op is Op.RESHAPE:
        shape = tuple(node.attr("shape"))
        _need(math.prod(shape) == math.prod(x), node, f"cannot reshape {x} to {shape}")
        return shape
    if op is Op.SOFTMAX:
        axes = node.attr("axes")
        _need(all(0 <= a < len(x) for a in axes), node, f"axes {axes} out of range for {x}")
        return x
    if op is Op.LRN:
        _need(len(x) == 3, node, f"input must be (C, H, W), not {x}")
        return x
    raise IRError(f"node {node.name!r}: no shape rule for op {op}")
