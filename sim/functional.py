"""Functional execution of a compiled program: what its configuration words compute, without timing.

Every grid pass is executed from its *decoded configuration words* and the memory image only:
streams read their 2-D regions (with the DMA's virtual border), convolvers compute window sums and
chain them, mappers and ALUs apply their configuration, write streams store their regions. Host
steps run the lowered graph's host layers. The result must be bit-identical to the golden
fixed-point executor of the lowered graph (``compiler/fixed.py``); that equality checks the whole
scheduler and encoder: addresses, regions, strips, chains, fused pooling, partial sums, formats.

This is the numerical half of the cycle model; timing is added by the cycle model itself.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from nfc.compiler.binary import LoadedPass, LoadedProgram, as_loaded
from nfc.compiler.decode import DecodedConv, DecodedMap, DecodedPass, DecodedPool, DecodedStream, conv_order
from nfc.compiler.executor import eval_node
from nfc.compiler.grid import HostLayer, Lowered
from nfc.compiler.program import HostStep, Program
from nfc.errors import NfcError
from nfc.numerics import QFormat, alu_words, dequantize, map_words, quantize, round_shift, saturate

__all__ = ["run_program", "ProgramRun", "RunState", "start_run", "run_pass"]

WORD_BITS = 16


class ProgramRun:
    """The memory image after running a program, and its outputs."""

    def __init__(self, memory: np.ndarray, outputs: dict[str, np.ndarray], words: dict[str, np.ndarray]):
        self.memory = memory
        self.outputs = outputs
        self.words = words


def _read(mem: np.ndarray, s: DecodedStream) -> np.ndarray:
    """The ``rows x cols`` words a read stream delivers (virtual border outside the map)."""
    H, W = s.map_shape
    pt, pl, _, _ = s.pads
    r0, c0 = s.r0 - pt, s.c0 - pl
    (rs, cs), rows_n, cols_n = s.step, s.rows, s.cols
    r1, c1 = r0 + (rows_n - 1) * rs, c0 + (cols_n - 1) * cs
    if r0 >= 0 and c0 >= 0 and r1 < H and c1 < W and s.address + H * W <= mem.size:  # no border
        plane = mem[s.address : s.address + H * W].reshape(H, W)
        return plane[r0 : r1 + 1 : rs, c0 : c1 + 1 : cs]
    rows = r0 + np.arange(rows_n) * rs
    cols = c0 + np.arange(cols_n) * cs
    inside = (rows[:, None] >= 0) & (rows[:, None] < H) & (cols[None, :] >= 0) & (cols[None, :] < W)
    addr = (
        s.address
        + np.minimum(np.maximum(rows, 0), H - 1)[:, None] * W
        + np.minimum(np.maximum(cols, 0), W - 1)[None, :]
    )
    addr = np.minimum(addr, mem.size - 1)
    return np.where(inside, mem[addr], s.pad_value)


def _write(mem: np.ndarray, s: DecodedStream, values: np.ndarray) -> None:
    if values.shape != (s.rows, s.cols):
        raise NfcError(f"write stream of {s.rows}x{s.cols} words got a {values.shape} result (program error)")
    _, W = s.map_shape
    rows = s.r0 + np.arange(s.rows) * s.step[0]
    cols = s.c0 + np.arange(s.cols) * s.step[1]
    mem[s.address + rows[:, None] * W + cols[None, :]] = values


def _window(u: DecodedConv, x: np.ndarray, kernel: tuple[int, ...] | None = None) -> np.ndarray:
    """Window sums (mac) or maxima (max) of the data map ``x`` for convolver ``u`` (``kernel``: a
    packed convolver's second kernel instead of its first).

    Sums are exact in float64: a window sum of 16-bit words and weights stays far below 2**53."""
    (bh, bw), (sh, sw), (dh, dw) = u.block, u.stride, u.dilation
    span = ((bh - 1) * dh + 1, (bw - 1) * dw + 1)
    if u.mode == "max":
        win = sliding_window_view(x, span)[::sh, ::sw, ::dh, ::dw]
        return win.max(axis=(2, 3)).astype(np.int64)
    win = sliding_window_view(x.astype(np.float64), span)[::sh, ::sw, ::dh, ::dw]
    k = np.asarray(u.kernel if kernel is None else kernel, dtype=np.float64).reshape(bh, bw)
    return np.einsum("hwij,ij->hw", win, k).astype(np.int64)


def _mapper(m: DecodedMap, x: np.ndarray) -> np.ndarray:
    return map_words(x, m.thresholds, m.slopes, m.offsets, m.shift, WORD_BITS)[0]


def pool_words(q: DecodedPool, x: np.ndarray) -> np.ndarray:
    """What pooling unit ``q`` makes of the ``rows x cols`` map ``x`` (its tile's output)."""
    if x.shape != (q.rows, q.cols):
        raise NfcError(
            f"pooling unit on tile {q.tile}: configured for a {q.rows}x{q.cols} map, gets {x.shape} (program error)"
        )
    p = q.size
    oh, ow = q.rows // p, q.cols // p
    win = x[: oh * p, : ow * p].astype(np.int64).reshape(oh, p, ow, p)
    if q.mode == "max":
        v = win.max(axis=(1, 3))
    else:
        v = saturate(q.bias + round_shift(win.sum(axis=(1, 3)) * q.weight, q.shift), WORD_BITS)[0]
    return saturate(round_shift(v, q.out_shift), WORD_BITS)[0]


def _run_pass(
    mem: np.ndarray, p: DecodedPass, buffers: dict[tuple[int, int], np.ndarray] | None = None
) -> None:
    """Execute pass ``p`` on the memory image ``mem``; ``buffers`` holds the tiles' accumulation
    buffers, ``(tile, lane) -> words`` as the last pass that stored them left them (kept across
    passes)."""
    buffers = {} if buffers is None else buffers
    data: dict[int, list[np.ndarray]] = {}
    psum_in: dict[int, np.ndarray] = {}
    psum_in1: dict[int, np.ndarray] = {}  # lane 1 of packed convolvers
    for s in p.streams:
        if s.direction != "read":
            continue
        words = _read(mem, s)
        if s.role == "psum":
            (psum_in1 if s.lane else psum_in)[s.tile] = words
        else:
            for t in (s.tile, *s.taps):  # the stream's tile, then the tiles taking it on its way
                data.setdefault(t, []).append(words)
    maps = {m.tile: m for m in p.maps}
    results: dict[int, np.ndarray] = {}  # tile -> stream leaving the tile
    results1: dict[int, np.ndarray] = {}  # tile -> lane 1 of its packed convolver
    try:
        order = conv_order(p)
    except ValueError as exc:
        raise NfcError(f"{exc} (program error)") from None
    for u, feeder, src in order:
        if feeder is not None:  # a pooling convolver fed by the previous unit's output
            x, psum = results[feeder], None
        elif data.get(u.tile):
            x = data[u.tile].pop(0)
            psum = results[src] if src is not None else psum_in[u.tile] if u.psum_from == "port" else None
            if u.psum_from == "acc":
                psum = _acc_read(buffers, p, u.tile, 0)
        else:
            raise NfcError(
                f"pass {p.index}: the convolver on tile {u.tile} has no data stream (program error)"
            )
        acc = _window(u, x)
        if psum is None:
            psum = np.full(acc.shape, u.bias if u.mode == "mac" else -(1 << (WORD_BITS - 1)), np.int64)
        if psum.shape != acc.shape:
            raise NfcError(
                f"pass {p.index}: tile {u.tile} chain shapes {psum.shape} vs {acc.shape} (program error)"
            )
        if u.mode == "mac":
            out = saturate(psum + round_shift(acc, u.shift), WORD_BITS)[0]
        else:
            out = np.maximum(psum, acc)
        if u.act_tile >= 0:
            out = _mapper(maps[u.act_tile], out)
        elif u.to == "port":
            out = saturate(round_shift(out, u.out_shift), WORD_BITS)[0]
        if u.to == "acc":  # raw, into the tile's buffer; nothing leaves the tile
            _acc_write(buffers, p, u, 0, out)
        else:
            results[u.tile] = out
        if u.packed:  # the second kernel over the same window, with its own partial sums
            psum1 = (
                results1.get(src)
                if src is not None
                else psum_in1.get(u.tile)
                if u.psum_from == "port"
                else _acc_read(buffers, p, u.tile, 1)
                if u.psum_from == "acc"
                else None
            )
            if u.psum_from != "bias" and psum1 is None:
                raise NfcError(f"pass {p.index}: tile {u.tile} lane 1 has no partial sums (program error)")
            if psum1 is None:
                psum1 = np.full(acc.shape, u.bias1, np.int64)
            if psum1.shape != acc.shape:
                raise NfcError(
                    f"pass {p.index}: tile {u.tile} lane 1 does not chain as lane 0 (program error)"
                )
            out1 = saturate(psum1 + round_shift(_window(u, x, u.kernel1), u.shift), WORD_BITS)[0]
            if u.act_tile >= 0:  # lane 1's own mapper, configured as lane 0's
                out1 = _mapper(maps[u.act_tile], out1)
            elif u.to == "port":
                out1 = saturate(round_shift(out1, u.out_shift), WORD_BITS)[0]
            if u.to == "acc":
                _acc_write(buffers, p, u, 1, out1)
            else:
                results1[u.tile] = out1
    for m in p.maps:  # mappers of map passes (not after a convolver)
        if any(u.act_tile == m.tile for u in p.convs):
            continue
        results[m.tile] = _mapper(m, data[m.tile].pop(0))
    for a in p.alus:
        x, y = data[a.tile].pop(0), data[a.tile].pop(0)
        results[a.tile] = alu_words(a.op, x, y, a.shift_a, a.shift_b, a.shift_out, WORD_BITS)[0]
    for q in p.pools:
        if q.tile not in results:
            raise NfcError(f"pass {p.index}: the pooling unit on tile {q.tile} has no input (program error)")
        results[q.tile] = pool_words(q, results[q.tile])
        if q.tile in results1:  # a packed convolver's lane 1 has its own pooling unit, configured alike
            results1[q.tile] = pool_words(q, results1[q.tile])
    for s in p.streams:
        if s.direction != "write":
            continue
        if s.lane:
            if s.tile not in results1:
                raise NfcError(
                    f"pass {p.index}: write stream from lane 1 of tile {s.tile} has nothing to write"
                )
            _write(mem, s, results1[s.tile])
        elif s.tile in results:
            _write(mem, s, results[s.tile])
        elif s.tile in data and data[s.tile]:  # a copy: the read stream goes straight out
            _write(mem, s, data[s.tile].pop(0))
        else:
            raise NfcError(
                f"pass {p.index}: write stream from tile {s.tile} has nothing to write (program error)"
            )


def _acc_read(acc: dict[tuple[int, int], np.ndarray], p: DecodedPass, tile: int, lane: int) -> np.ndarray:
    if (tile, lane) not in acc:
        raise NfcError(
            f"pass {p.index}: tile {tile} lane {lane} reads an accumulation buffer no pass has stored (program error)"
        )
    return acc[(tile, lane)]


def _acc_write(
    acc: dict[tuple[int, int], np.ndarray], p: DecodedPass, u: DecodedConv, lane: int, words: np.ndarray
) -> None:
    if words.size != u.acc_words:
        raise NfcError(
            f"pass {p.index}: tile {u.tile} stores {words.size} outputs, its CONV_ACC word says {u.acc_words} "
            "(program error)"
        )
    acc[(u.tile, lane)] = words


def _host(mem: np.ndarray, prog: LoadedProgram, step: HostStep, layer: HostLayer) -> None:
    args = []
    for name, shape in zip(step.srcs, layer.in_shapes, strict=True):
        b = prog.buffer(name)
        n = int(np.prod(b.shape))
        args.append(dequantize(mem[b.address : b.address + n], QFormat(b.bits, b.frac)).reshape(shape))
    result = eval_node(layer.node, args)
    d = prog.buffer(step.dst)
    words, _ = quantize(result, QFormat(d.bits, d.frac))
    mem[d.address : d.address + words.size] = words.reshape(-1)


class RunState:
    """A program being run: its memory image, step by step (see :func:`start_run`)."""

    def __init__(self, prog: LoadedProgram, lowered: Lowered, mem: np.ndarray):
        self.prog = prog
        self.mem = mem
        self.hosts = {layer.name: layer for layer in lowered.layers if isinstance(layer, HostLayer)}
        # the tiles' accumulation buffers, (tile, lane) -> words: they keep their words between passes
        self.acc: dict[tuple[int, int], np.ndarray] = {}

    def finish(self) -> ProgramRun:
        """The outputs as the memory image holds them now."""
        outputs, words = {}, {}
        for name, buf, shape in self.prog.outputs:
            b = self.prog.buffer(buf)
            n = int(np.prod(b.shape))
            w = self.mem[b.address : b.address + n].copy()
            words[name] = w.reshape(b.shape)
            outputs[name] = dequantize(w, QFormat(b.bits, b.frac)).reshape(shape).astype(np.float32)
        return ProgramRun(self.mem, outputs, words)


def start_run(prog: LoadedProgram, lowered: Lowered, inputs: Mapping[str, np.ndarray]) -> RunState:
    """A fresh memory image holding ``inputs`` (ONNX-shaped floats) quantised into the input buffers."""
    mem = np.zeros(prog.memory_words + 1, dtype=np.int64)
    for name, buf, _shape in prog.inputs:
        if name not in inputs:
            raise NfcError(f"no value given for the network input {name!r}")
        b = prog.buffer(buf)
        words, _ = quantize(np.asarray(inputs[name], np.float64), QFormat(b.bits, b.frac))
        if words.size != int(np.prod(b.shape)):
            raise NfcError(
                f"input {name!r} has {words.size} values; the network takes {int(np.prod(b.shape))} "
                f"(shape {tuple(b.shape)})"
            )
        mem[b.address : b.address + words.size] = words.reshape(-1)
    return RunState(prog, lowered, mem)


def run_pass(state: RunState, step: LoadedPass | HostStep) -> None:
    """Execute one step (a grid pass or a host step) on the state's memory image."""
    if isinstance(step, HostStep):
        _host(state.mem, state.prog, step, state.hosts[step.layer])
    else:
        _run_pass(state.mem, step.decoded, state.acc)


def run_program(
    program: Program | LoadedProgram, lowered: Lowered, inputs: Mapping[str, np.ndarray]
) -> ProgramRun:
    """Run ``program`` on ONNX-shaped float ``inputs``; host steps use ``lowered``'s host layers."""
    prog = as_loaded(program)
    state = start_run(prog, lowered, inputs)
    for step in prog.steps:
        run_pass(state, step)
    return state.finish()
