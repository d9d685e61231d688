"""The fixed-point executor of a lowered graph: the golden model.

It computes, with the arithmetic of ``nfc.numerics``, exactly the words the accelerator must
produce. Integer arithmetic is done in float64 where it is exact (every window sum is below 2**53)
and in int64 everywhere else. Saturation events are counted per layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from nfc.compiler.executor import eval_node
from nfc.compiler.grid import ConvLayer, CopyLayer, EltwiseLayer, HostLayer, Lowered, MapLayer
from nfc.errors import NfcError
from nfc.numerics import (
    QFormat,
    alu_shifts,
    alu_words,
    apply_pwl,
    dequantize,
    narrow,
    quantize,
    round_shift,
    saturate,
)

__all__ = ["Memory", "FixedResult", "run_fixed", "conv_layer_words"]


class Memory:
    """External memory as the lowered graph sees it: one flat int64 array per root buffer."""

    def __init__(self, low: Lowered):
        self.low = low
        self.arrays: dict[str, np.ndarray] = {}
        for buf in low.buffers.values():
            if buf.parent is None:
                self.arrays[buf.name] = np.zeros(buf.words, np.int64)

    def view(self, name: str) -> np.ndarray:
        """The (C, H, W) words of buffer ``name`` (a view: writes go to memory)."""
        buf = self.low.buffers[name]
        root, offset = self.low.root(name)
        return self.arrays[root.name][offset : offset + buf.words].reshape(buf.shape)

    def flat(self, name: str) -> np.ndarray:
        buf = self.low.buffers[name]
        root, offset = self.low.root(name)
        return self.arrays[root.name][offset : offset + buf.words]


@dataclass
class FixedResult:
    outputs: dict[str, np.ndarray]  # ONNX name -> dequantized float32, ONNX shape
    words: dict[str, np.ndarray]  # ONNX name -> output words (C, H, W)
    saturations: dict[str, int] = field(default_factory=dict)  # layer -> count
    memory: Memory | None = None


def _input_maps(layer: ConvLayer, mem: Memory) -> np.ndarray:
    """The source as ``(C, view_h, view_w)`` words; a vector view reads zeros past its end."""
    vh, vw = layer.view
    buf = mem.low.buffers[layer.src]
    if (buf.shape[1], buf.shape[2]) == (vh, vw):
        return mem.view(layer.src)
    flat = mem.flat(layer.src)
    out = np.zeros(vh * vw, np.int64)
    n = min(flat.size, out.size)
    out[:n] = flat[:n]
    return out.reshape(1, vh, vw)


def _offset_windows(layer: ConvLayer, xp: np.ndarray, du: int, dv: int) -> np.ndarray:
    """(C, OH*OW, kh*kw) input windows of every map for term block offset (du, dv) (a view)."""
    _, OH, OW = layer.out_shape
    bh, bw = layer.block
    dh, dw = layer.dilation
    sh, sw = layer.stride
    sub = xp[:, du * dh :, dv * dw :]
    span = ((bh - 1) * dh + 1, (bw - 1) * dw + 1)
    win = sliding_window_view(sub, span, axis=(1, 2))[:, ::sh, ::sw][:, :OH, :OW, ::dh, ::dw]
    if win.shape[1:3] != (OH, OW):
        raise NfcError(f"layer {layer.name!r}: a term's window leaves the padded input (internal error)")
    return win


#: Output maps per chunk of the vectorised chain evaluation (bounds memory to about 100 MB).
_CHUNK_ELEMS = 4_000_000


def conv_layer_words(layer: ConvLayer, x: np.ndarray) -> tuple[np.ndarray, int]:
    """Run a ConvLayer on input words ``x`` (C, view_h, view_w); return (output words, saturations).

    A chain stage is ``psum = sat(psum + round(window_sum))`` (``mac``) or ``max(psum, window_max)``
    (``max``). Without saturation the stages commute into a cumulative sum, which is evaluated for
    all terms at once; positions whose running sum leaves the word range are re-run stage by stage.
    """
    pt, pl, pb, pr = layer.pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr)), constant_values=layer.pad_value).astype(np.float64)
    O, T = layer.channels.shape
    _, OH, OW = layer.out_shape
    P = OH * OW
    fmt = layer.psum_fmt
    shift = layer.in_fmt.frac + layer.wfmt.frac - fmt.frac
    out = np.empty((O, P), np.int64)
    sats = 0
    chunk = max(1, _CHUNK_ELEMS // max(1, T * P))
    for o0 in range(0, O, chunk):
        o1 = min(O, o0 + chunk)
        chans = layer.channels[o0:o1]
        oi, ti = np.nonzero(chans >= 0)
        du = layer.offsets[o0:o1][oi, ti, 0]
        dv = layer.offsets[o0:o1][oi, ti, 1]
        if layer.mode == "mac":
            acc = np.zeros((o1 - o0, T, P), np.float64)
        else:
            acc = np.full((o1 - o0, T, P), fmt.lo, np.float64)
        kern = layer.kernels[o0:o1]
        okey = du * (1 << 20) + dv
        for key in np.unique(okey):
            at = np.flatnonzero(okey == key)
            win = _offset_windows(layer, xp, int(du[at[0]]), int(dv[at[0]]))
            c = chans[oi[at], ti[at]]
            uch, cinv = np.unique(c, return_inverse=True)
            if layer.mode == "max":
                maxima = win[uch].max(axis=(3, 4)).reshape(uch.size, P)
                acc[oi[at], ti[at]] = maxima[cinv]
                continue
            ker = kern[oi[at], ti[at]].reshape(at.size, -1).astype(np.float64)
            if uch.size * 4 <= at.size:  # many terms share each map: one product per map
                for j, m in enumerate(uch):
                    sel = np.flatnonzero(cinv == j)
                    acc[oi[at[sel]], ti[at[sel]]] = ker[sel] @ win[m].reshape(P, -1).T
            else:  # about one term per map (depthwise, connection tables): batched
                w = win[uch].reshape(uch.size, P, -1)
                acc[oi[at], ti[at]] = np.einsum("npk,nk->np", w[cinv], ker, optimize=True)
        bias = layer.bias[o0:o1].astype(np.int64)[:, None]
        if layer.mode == "max":
            out[o0:o1] = np.maximum(bias, acc.max(axis=1).astype(np.int64))
            continue
        contrib = round_shift(acc.astype(np.int64), shift)
        running = bias[:, None, :] + np.cumsum(contrib, axis=1)
        bad = ((running < fmt.lo) | (running > fmt.hi)).any(axis=1)  # (o, p) that saturated on the way
        result = running[:, -1, :]
        if bad.any():
            bo, bp = np.nonzero(bad)
            psum = bias[bo, 0].copy()
            for t in range(T):
                psum, n = saturate(psum + contrib[bo, t, bp], fmt.bits)
                sats += n
            result[bo, bp] = psum
        out[o0:o1] = result
    out = out.reshape(O, OH, OW)
    if layer.act:
        mapped = np.empty_like(out)
        for o in range(O):
            mapped[o], n = apply_pwl(layer.act[o], out[o])
            sats += n
        return mapped, sats
    res, n = narrow(out, fmt.frac, layer.out_fmt)
    return res, sats + n


def _reformat(words: np.ndarray, src: QFormat, dst: QFormat) -> tuple[np.ndarray, int]:
    if src == dst:
        return words, 0
    return narrow(words, src.frac, dst)


def run_layer(layer, mem: Memory) -> int:
    """Execute one lowered layer on ``mem``; return its saturation count."""
    bufs = mem.low.buffers
    if isinstance(layer, ConvLayer):
        out, sats = conv_layer_words(layer, _input_maps(layer, mem))
        dst = mem.view(layer.dst)
        dst[...] = out.reshape(dst.shape)  # a pointwise layer computes (O, 1, H*W) for an (O, H, W) buffer
        return sats
    if isinstance(layer, MapLayer):
        x = mem.view(layer.src)
        out = np.empty_like(x)
        sats = 0
        for c in range(x.shape[0]):
            out[c], n = apply_pwl(layer.pwl[c], x[c])
            sats += n
        mem.view(layer.dst)[...] = out
        return sats
    if isinstance(layer, EltwiseLayer):
        fo = bufs[layer.dst].fmt
        shifts = alu_shifts(layer.kind, bufs[layer.a].fmt.frac, bufs[layer.b].fmt.frac, fo.frac)
        out, sats = alu_words(layer.kind, mem.view(layer.a), mem.view(layer.b), *shifts, fo.bits)
        mem.view(layer.dst)[...] = out
        return sats
    if isinstance(layer, CopyLayer):
        x = mem.view(layer.src)
        pt, pl, pb, pr = layer.pads
        x, sats = _reformat(x, bufs[layer.src].fmt, bufs[layer.dst].fmt)
        x = np.pad(x, ((0, 0), (pt, pb), (pl, pr)), constant_values=layer.pad_value)
        (a, b), (sh, sw) = layer.start, layer.step
        mem.view(layer.dst)[:, a::sh, b::sw] = x
        return sats
    if isinstance(layer, HostLayer):
        args = [
            dequantize(mem.flat(name), bufs[name].fmt).reshape(shape)
            for name, shape in zip(layer.srcs, layer.in_shapes, strict=True)
        ]
        result = eval_node(layer.node, args)
        words, sats = quantize(result, bufs[layer.dst].fmt)
        mem.flat(layer.dst)[...] = words.reshape(-1)
        return sats
    raise NfcError(f"unknown layer type {type(layer).__name__}")


def run_fixed(low: Lowered, inputs: Mapping[str, np.ndarray], keep_memory: bool = False) -> FixedResult:
    """Quantise ``inputs`` (ONNX-shaped float arrays by input name), run every layer, return outputs."""
    mem = Memory(low)
    sats: dict[str, int] = {}
    for onnx_name, buf, shape in low.inputs:
        if onnx_name not in inputs:
            raise NfcError(f"missing input {onnx_name!r}")
        arr = np.asarray(inputs[onnx_name], np.float64)
        if arr.shape != shape:
            raise NfcError(f"input {onnx_name!r} must have shape {shape}, not {arr.shape}")
        words, n = quantize(arr, low.buffers[buf].fmt)
        mem.flat(buf)[...] = words.reshape(-1)
        sats["<input>"] = sats.get("<input>", 0) + n
    for layer in low.layers:
        sats[layer.name] = run_layer(layer, mem)
    outputs, words = {}, {}
    for onnx_name, buf, shape in low.outputs:
        w = mem.flat(buf).copy()
        words[onnx_name] = w.reshape(low.buffers[buf].shape)
        outputs[onnx_name] = dequantize(w, low.buffers[buf].fmt).reshape(shape).astype(np.float32)
    return FixedResult(outputs, words, sats, mem if keep_memory else None)
