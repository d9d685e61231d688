"""The lowered graph: operations the grid (or the host) executes, on buffers in external memory.

Lowering (``compiler/lower.py``) turns the float IR into a :class:`Lowered` graph whose numbers are
words (``nfc.numerics``). Its fixed-point meaning (``compiler/fixed.py``) is the golden model: the
scheduler only decides *where and when* each piece runs, never *what* is computed, so every
schedule of a lowered graph produces the same bits.

Buffers hold tensors in external memory as ``C`` planes of ``H x W`` words, row-major (vectors are
``(N, 1, 1)``). A buffer may be a channel slice of another one (concatenation writes its inputs in
place).

The one arithmetic workhorse is :class:`ConvLayer`: for every output map ``o`` a *chain* of terms,
each term one 2-D window operation of at most ``K x K`` taps on one input map (a convolver pass
contribution). The chain starts from the bias; each term adds its window sum and rounds once
(``mac`` mode), or takes the maximum (``max`` mode); the chain's end goes through the mapper (an
activation) or is re-formatted. Convolutions, connection tables, grouped and depthwise
convolution, kernels larger than ``K`` (several blocks), fully connected layers (the input vector
viewed as a ``rows x K`` map), average pooling (a constant kernel), max pooling and per-channel
affine maps are all ConvLayers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nfc.compiler.ir import Node
from nfc.numerics import PWL, QFormat

__all__ = ["Buffer", "ConvLayer", "MapLayer", "EltwiseLayer", "CopyLayer", "HostLayer", "Layer", "Lowered"]


@dataclass(frozen=True, slots=True)
class Buffer:
    """A tensor in external memory: ``shape`` (C, H, W) words of format ``fmt``.

    ``parent``/``offset``: this buffer lives inside buffer ``parent``, starting ``offset`` words in
    (a channel slice written by a concatenation's input, or a reshaped view at offset 0).
    """

    name: str
    shape: tuple[int, int, int]
    fmt: QFormat
    parent: str | None = None
    offset: int = 0

    @property
    def words(self) -> int:
        c, h, w = self.shape
        return c * h * w


@dataclass(frozen=True, eq=False, repr=False)
class ConvLayer:
    """Chains of window operations; see the module docstring.

    Attributes
    ----------
    src, dst : buffer names.
    view : (H, W) of each input map as the convolver sees it (the source's own H, W, or
        ``(rows, K)`` for a vector viewed as a map; words beyond the source's end read as zero).
    pads, pad_value : virtual border (top, left, bottom, right) the DMA adds around each input map,
        and the word it reads there (0, or the lowest word for max mode).
    stride, dilation : of the window, (h, w).
    block : (kh, kw) taps of every term, at most K x K.
    channels : int array (O, T): input map of term t of output o; -1 = no term.
    offsets : int array (O, T, 2): kernel-index offset (du, dv) of the term's block.
    kernels : int array (O, T, kh, kw): weight words (format ``wfmt``); unused in max mode.
    bias : int array (O,): the chain's starting value, in ``psum_fmt``.
    mode : "mac" or "max".
    act : per output map, a mapper configuration or None (then the chain end is re-formatted to
        ``out_fmt``).
    """

    name: str
    source: str
    src: str
    dst: str
    view: tuple[int, int]
    pads: tuple[int, int, int, int]
    pad_value: int
    stride: tuple[int, int]
    dilation: tuple[int, int]
    block: tuple[int, int]
    channels: np.ndarray
    offsets: np.ndarray
    kernels: np.ndarray
    bias: np.ndarray
    in_fmt: QFormat
    wfmt: QFormat
    psum_fmt: QFormat
    out_fmt: QFormat
    out_shape: tuple[int, int, int]
    mode: str = "mac"
    act: tuple[PWL | None, ...] = ()
    act_kind: str = ""
    kind: str = "conv"  # what the layer came from: conv, linear, avgpool, maxpool, affine, ...
    useful_macs: int = 0

    def __repr__(self) -> str:
        return f"ConvLayer({self.name!r}, {self.kind}, {self.src!r} -> {self.dst!r}, out {self.out_shape})"

    @property
    def terms(self) -> int:
        """Number of (output map, term) pairs that exist."""
        return int(np.count_nonzero(self.channels >= 0))


@dataclass(frozen=True, eq=False)
class MapLayer:
    """Every word of ``src`` through the mapper (per channel configuration ``pwl[c]``)."""

    name: str
    source: str
    src: str
    dst: str
    pwl: tuple[PWL, ...]
    act_kind: str = ""


@dataclass(frozen=True, eq=False)
class EltwiseLayer:
    """``dst = kind(a, b)`` word by word on the ALU: add, sub, mul, max, min."""

    name: str
    source: str
    a: str
    b: str
    dst: str
    kind: str


@dataclass(frozen=True, eq=False)
class CopyLayer:
    """Copy ``src`` into ``dst[:, r0::step_h, c0::step_w]`` through the DMA, with a virtual border.

    Used for explicit padding (border ``pads`` of ``pad_value``) and for nearest-neighbour
    upsampling (one copy per output phase).
    """

    name: str
    source: str
    src: str
    dst: str
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    pad_value: int = 0
    step: tuple[int, int] = (1, 1)
    start: tuple[int, int] = (0, 0)


@dataclass(frozen=True, eq=False)
class HostLayer:
    """An IR node the grid cannot run: executed in float64 numpy on the host between passes."""

    name: str
    source: str
    node: Node
    srcs: tuple[str, ...]
    dst: str
    in_shapes: tuple[tuple[int, ...], ...] = ()  # IR shapes of the inputs
    why: str = ""


Layer = ConvLayer | MapLayer | EltwiseLayer | CopyLayer | HostLayer


@dataclass(frozen=True, eq=False)
class Lowered:
    """A lowered network: buffers, layers in execution order, inputs and outputs."""

    name: str
    buffers: dict[str, Buffer]
    layers: tuple[Layer, ...]
    inputs: tuple[tuple[str, str, tuple[int, ...]], ...]  # (onnx name, buffer, onnx shape)
    outputs: tuple[tuple[str, str, tuple[int, ...]], ...]
    notes: tuple[str, ...] = field(default=())

    def root(self, name: str) -> tuple[Buffer, int]:
        """The buffer that owns the memory of ``name`` and the word offset within it."""
        buf = self.buffers[name]
        offset = 0
        while buf.parent is not None:
            offset += buf.offset
            buf = self.buffers[buf.parent]
        return buf, offset
