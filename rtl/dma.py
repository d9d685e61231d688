"""DMA engines of an I/O port: a read stream (with the virtual border) and a write stream.

``docs/architecture.md`` §13 items 3 and 6, ``sim/functional.py`` ``_read``/``_write`` for which
words a stream moves. Both engines walk their ``rows x cols`` region row-major with adders only: the
per-word state is a column counter, the column offset ``j * step_c`` and the row's address offset
``i * step_r * map_w`` (mod 2**32), each moved on by a constant of the pass. The products of the
configuration (``step_r * map_w``, ``r_start * map_w``) are static for the whole pass.

The memory interface of a port is a request/response pair: ``req_valid``, ``req_write``,
``req_addr`` (word address), ``req_data`` out; ``resp_valid``, ``resp_data`` in. The memory never
refuses a request and answers a read presented on cycle ``t`` on cycle ``t + L``
(``L = arch.memory.latency_cycles``; ``L == 0`` answers combinationally on the same cycle).

Configuration ports are plain inputs held by the configuration decoder for the whole pass. The
engines latch nothing from them at ``clear``: they may still change between ``clear`` and the first
word.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from nfc.arch import ArchConfig

__all__ = ["ReadDma", "WriteDma", "WRITE_LATENCY"]

WRITE_LATENCY = 1
"""Cycles from a word accepted by :class:`WriteDma` to its memory write request."""

_OFFSET_BITS = 24  # (65535 - 1) * 255 < 2**24: any row or column offset of a region


class ReadDma(wiring.Component):
    """Read stream: a ``rows x cols`` region of a map, with a virtual border, one word per ``advance``.

    Word ``k = i * cols + j`` (row-major) sits at row ``r = r0 - pad_top + i * step_r`` and column
    ``c = c0 - pad_left + j * step_c`` of the ``map_h x map_w`` map stored row-major from word
    ``address``. On the cycle ``advance`` requests it, a position inside the map presents a memory
    read of ``address + r * map_w + c`` (combinationally, on the same cycle); a position outside
    presents nothing and the word is ``pad_value``. Either way the word is valid on ``o`` exactly
    ``L`` cycles later (``L = arch.memory.latency_cycles``; latency ``L`` cycles, ``0`` = same cycle):
    a delay line of ``L`` stages carries a "word / border word" flag pair alongside the memory.

    Parameters
    ----------
    arch : ArchConfig
        The target: ``arch.numerics.word_bits`` (word shape) and ``arch.memory.latency_cycles``.

    Attributes
    ----------
    address : In(32)
        Word address of row 0, column 0 of the map (configuration).
    map_h, map_w : In(16)
        Rows and columns of the map in memory (configuration).
    rows, cols : In(16)
        Rows and columns of the region, border included (configuration); ``cols >= 1``.
    r0, c0 : In(signed(16))
        Map row and column of the region's first in-map word (PORT_ORG, configuration).
    pad_top, pad_left : In(8)
        Border rows above / columns left of ``(r0, c0)`` that start the region (configuration).
    pad_value : In(signed(word_bits))
        The value of a border word (configuration).
    step_r, step_c : In(8)
        Row and column step of the region in the map (configuration), ``>= 1``.
    words : In(32)
        Words of the stream, ``rows * cols`` (configuration).
    clear : In(1)
        One-cycle pulse at pass start: resets the word counters, empties the delay line (no word
        in flight comes out after the ``clear`` cycle) and clears ``error``. An ``advance`` on the
        ``clear`` cycle is ignored.
    advance : In(1)
        Request the next word of the region on this cycle.
    o : Out(stream.Signature(signed(word_bits)))
        The words, each valid exactly ``L`` cycles after its ``advance``. The memory cannot be
        stalled: ``o.ready`` must be high whenever ``o.valid`` is (otherwise ``error``); the word is
        not held.
    req_valid : Out(1)
        A memory request is presented this cycle (``advance`` of an in-map word).
    req_write : Out(1)
        Always 0 (reads only).
    req_addr : Out(32)
        Word address of the request.
    req_data : Out(signed(word_bits))
        Always 0.
    resp_valid : In(1)
        The memory answers a read this cycle (``L`` cycles after its request).
    resp_data : In(signed(word_bits))
        The word read, valid with ``resp_valid``.
    done : Out(1)
        All ``words`` words have been requested (from the cycle after the last ``advance``).
    error : Out(1)
        Sticky contract break, high from the cycle after the first of: an ``advance`` after all
        words were requested (ignored: no request, no word), ``o.valid`` while ``o.ready`` is low, or
        a memory word due on ``o`` without ``resp_valid``. Cleared by ``clear``.
    """

    def __init__(self, arch: ArchConfig):
        self._word_bits = arch.numerics.word_bits
        self._latency = arch.memory.latency_cycles
        word = signed(self._word_bits)
        super().__init__(
            {
                "address": In(32),
                "map_h": In(16),
                "map_w": In(16),
                "rows": In(16),
                "cols": In(16),
                "r0": In(signed(16)),
                "c0": In(signed(16)),
                "pad_top": In(8),
                "pad_left": In(8),
                "pad_value": In(word),
                "step_r": In(8),
                "step_c": In(8),
                "words": In(32),
                "clear": In(1),
                "advance": In(1),
                "o": Out(stream.Signature(word)),
                "req_valid": Out(1),
                "req_write": Out(1),
                "req_addr": Out(32),
                "req_data": Out(word),
                "resp_valid": In(1),
                "resp_data": In(word),
                "done": Out(1),
                "error": Out(1),
            }
        )

    @property
    def latency(self) -> int:
        """Cycles from ``advance`` to the word on ``o`` (``arch.memory.latency_cycles``)."""
        return self._latency

    def elaborate(self, platform):
        m = Module()

        # -- the walk over the region: counters and offsets, all reset by clear --------------------
        requested = Signal(32)
        j = Signal(16)  # column index of the next word
        row_off = Signal(_OFFSET_BITS)  # i * step_r
        col_off = Signal(_OFFSET_BITS)  # j * step_c
        row_addr = Signal(32)  # i * step_r * map_w, mod 2**32

        # -- static products of the configuration ---------------------------------------------------
        r_start = Signal(signed(18))
        c_start = Signal(signed(18))
        base = Signal(32)  # address + r_start * map_w + c_start, mod 2**32
        row_stride = Signal(_OFFSET_BITS)  # step_r * map_w
        m.d.comb += [
            r_start.eq(self.r0 - self.pad_top),
            c_start.eq(self.c0 - self.pad_left),
            base.eq(self.address + r_start * self.map_w + c_start),
            row_stride.eq(self.step_r * self.map_w),
        ]

        # -- this cycle's word ---------------------------------------------------------------------
        r = Signal(signed(_OFFSET_BITS + 2))
        c = Signal(signed(_OFFSET_BITS + 2))
        inside = Signal()
        take = Signal()
        m.d.comb += [
            self.done.eq(requested == self.words),
            r.eq(r_start + row_off),
            c.eq(c_start + col_off),
            inside.eq((r >= 0) & (r < self.map_h) & (c >= 0) & (c < self.map_w)),
            take.eq(self.advance & ~self.done & ~self.clear),
            self.req_valid.eq(take & inside),
            self.req_write.eq(0),
            self.req_addr.eq(base + row_addr + col_off),
            self.req_data.eq(0),
        ]

        with m.If(self.clear):
            m.d.sync += [requested.eq(0), j.eq(0), row_off.eq(0), col_off.eq(0), row_addr.eq(0)]
        with m.Elif(take):
            m.d.sync += requested.eq(requested + 1)
            with m.If(j + 1 == self.cols):
                m.d.sync += [
                    j.eq(0),
                    col_off.eq(0),
                    row_off.eq(row_off + self.step_r),
                    row_addr.eq(row_addr + row_stride),
                ]
            with m.Else():
                m.d.sync += [j.eq(j + 1), col_off.eq(col_off + self.step_c)]

        # -- delay line of L stages: (a word, a border word) beside the memory's latency ------------
        valid_line = [take]
        border_line = [~inside]
        for stage in range(self._latency):
            v = Signal(name=f"word_d{stage + 1}")
            b = Signal(name=f"border_d{stage + 1}")
            m.d.sync += [v.eq(valid_line[-1] & ~self.clear), b.eq(border_line[-1])]
            valid_line.append(v)
            border_line.append(b)
        out_valid, out_border = valid_line[-1], border_line[-1]
        m.d.comb += [
            self.o.valid.eq(out_valid),
            self.o.payload.eq(Mux(out_border, self.pad_value, self.resp_data)),
        ]

        # -- contract breaks -----------------------------------------------------------------------
        with m.If(self.clear):
            m.d.sync += self.error.eq(0)
        with m.Elif(
            (self.advance & self.done)
            | (out_valid & ~self.o.ready)
            | (out_valid & ~out_border & ~self.resp_valid)
        ):
            m.d.sync += self.error.eq(1)
        return m


class WriteDma(wiring.Component):
    """Write stream: stores its input words row-major over a ``rows x cols`` region of a map.

    Word ``k = i * cols + j`` goes to ``address + (r0 + i * step_r) * map_w + c0 + j * step_c``
    (no border on writes). A word accepted on ``i`` on cycle ``t`` is presented as a memory write
    request on cycle ``t + 1`` (latency ``WRITE_LATENCY`` = 1 cycle); the memory never refuses one,
    so ``i.ready`` is always 1.

    Parameters
    ----------
    arch : ArchConfig
        The target: ``arch.numerics.word_bits`` (word shape).

    Attributes
    ----------
    address : In(32)
        Word address of row 0, column 0 of the map (configuration).
    map_w : In(16)
        Columns of the map in memory (configuration).
    rows, cols : In(16)
        Rows and columns of the region (configuration); ``cols >= 1``.
    r0, c0 : In(signed(16))
        Map row and column of the region's first word (configuration).
    step_r, step_c : In(8)
        Row and column step of the region in the map (configuration), ``>= 1``.
    words : In(32)
        Words of the stream, ``rows * cols`` (configuration).
    clear : In(1)
        One-cycle pulse at pass start: resets the word counter, ``done`` and ``error``. A word
        offered on the ``clear`` cycle is dropped (not written).
    i : In(stream.Signature(signed(word_bits)))
        The words to store, in region order. ``i.ready`` is constantly 1.
    req_valid : Out(1)
        A memory write request is presented this cycle (registered).
    req_write : Out(1)
        1 with every request (equal to ``req_valid``).
    req_addr : Out(32)
        Word address of the request (registered).
    req_data : Out(signed(word_bits))
        The word to write (registered).
    last : Out(1)
        The request presented this cycle is the stream's final word (registered).
    done : Out(1)
        All ``words`` words are written: high from the cycle the final request is presented (the
        cycle of ``last``) until ``clear`` (a register compare, no combinational path from ``i``).
    error : Out(1)
        Sticky, from the cycle after a word is offered once all ``words`` were accepted (that word
        is dropped). Cleared by ``clear``.
    """

    def __init__(self, arch: ArchConfig):
        self._word_bits = arch.numerics.word_bits
        word = signed(self._word_bits)
        super().__init__(
            {
                "address": In(32),
                "map_w": In(16),
                "rows": In(16),
                "cols": In(16),
                "r0": In(signed(16)),
                "c0": In(signed(16)),
                "step_r": In(8),
                "step_c": In(8),
                "words": In(32),
                "clear": In(1),
                "i": In(stream.Signature(word)),
                "req_valid": Out(1),
                "req_write": Out(1),
                "req_addr": Out(32),
                "req_data": Out(word),
                "last": Out(1),
                "done": Out(1),
                "error": Out(1),
            }
        )

    @property
    def latency(self) -> int:
        """Cycles from a word accepted on ``i`` to its write request (``WRITE_LATENCY``)."""
        return WRITE_LATENCY

    def elaborate(self, platform):
        m = Module()

        accepted = Signal(32)
        j = Signal(16)
        col_off = Signal(_OFFSET_BITS)  # j * step_c
        row_addr = Signal(32)  # i * step_r * map_w, mod 2**32

        base = Signal(32)  # address + r0 * map_w + c0, mod 2**32
        row_stride = Signal(_OFFSET_BITS)  # step_r * map_w
        m.d.comb += [
            base.eq(self.address + self.r0 * self.map_w + self.c0),
            row_stride.eq(self.step_r * self.map_w),
        ]

        offered = Signal()
        take = Signal()
        m.d.comb += [
            self.i.ready.eq(1),
            offered.eq(self.i.valid & ~self.clear),
            take.eq(offered & (accepted != self.words)),
            self.done.eq(accepted == self.words),
            self.req_write.eq(self.req_valid),
        ]

        m.d.sync += [
            self.req_valid.eq(take),
            self.req_addr.eq(base + row_addr + col_off),
            self.req_data.eq(self.i.payload),
            self.last.eq(take & (accepted + 1 == self.words)),
        ]
        with m.If(self.clear):
            m.d.sync += [accepted.eq(0), j.eq(0), col_off.eq(0), row_addr.eq(0), self.error.eq(0)]
        with m.Elif(take):
            m.d.sync += accepted.eq(accepted + 1)
            with m.If(j + 1 == self.cols):
                m.d.sync += [j.eq(0), col_off.eq(0), row_addr.eq(row_addr + row_stride)]
            with m.Else():
                m.d.sync += [j.eq(j + 1), col_off.eq(col_off + self.step_c)]
        with m.Elif(offered):  # a word after the last
            m.d.sync += self.error.eq(1)
        return m
