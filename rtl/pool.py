"""The pooling unit: non-overlapping ``p x p`` maximum or average pooling (stride ``p``) on a stream.

What it computes, for a ``rows x cols`` input arriving row-major: ``rows // p`` by ``cols // p``
outputs, row-major over the windows ``(I, J)``; window ``(I, J)`` covers the input words
``(I p + a, J p + b)``, ``0 <= a, b < p``. The trailing rows and columns that do not fill a window
arrive and are dropped.

* max (``mode`` 1): ``v`` = the largest of the window's ``p * p`` words;
* sum (``mode`` 0, average pooling): ``s`` = the exact sum of the window's words,
  ``v = sat(bias + round_shift(s * weight, shift))`` (the same word as a convolver whose weights
  all equal ``weight``);
* then, in both modes, ``out = sat(round_shift(v, out_shift))`` if ``apply_out_shift``, else ``v``.

``round_shift`` and ``sat`` are those of :mod:`nfc.numerics` (round half up, negative shift = exact
left shift; clamp to a word), built by :func:`nfc.rtl.alu.round_shift` and
:func:`nfc.rtl.alu.saturate`.

When: the output of window ``(I, J)`` is valid on ``o`` exactly ``POOL_LATENCY`` (1) cycle after
the cycle on which its completing word ``(I p + p - 1, J p + p - 1)`` was accepted, and ``o.valid``
is low on every other cycle.

How: a register holds the running maximum or sum of the current row's group of ``p`` columns; a
row buffer (one entry per window column ``J``) holds the partial of the window rows seen so far.
The row buffer's synchronous read port is addressed by ``J`` for the whole group, so the entry is
ready by the group's last word (which comes at least a cycle after its first). On a group's last
word the group's partial joins the buffered one: written back on a window's first and middle rows,
turned into the output on its last row (one combinational stage into the output register). Whether
a group of columns (rows) fills a window is decided when it starts (``c + p <= cols``), so there is
no divider.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from nfc.arch import ArchConfig
from nfc.compiler.timing import POOL_LATENCY as _CONTRACT_POOL_LATENCY
from nfc.rtl.alu import round_shift, saturate

__all__ = ["Pooler", "POOL_LATENCY"]

#: Cycles from the acceptance of the word completing a window to its output on ``o``.
POOL_LATENCY = _CONTRACT_POOL_LATENCY  # the contract's figure (nfc.compiler.timing)

#: Largest window side (the ``size`` port is 4 bits wide).
_MAX_SIZE = 15


class Pooler(wiring.Component):
    """Non-overlapping ``p x p`` max or average pooling of a row-major stream of words.

    Parameters
    ----------
    arch : ArchConfig
        Word width (``numerics.word_bits``, W), accumulator width (``numerics.accumulator_bits``)
        and row length (``tile.line_buffer_words``): the row buffer holds
        ``line_buffer_words // 2`` window columns (enough for any row of up to
        ``line_buffer_words`` words).

    Attributes
    ----------
    mode : In(1)
        Configuration: 0 sum (average pooling), 1 maximum.
    size : In(4)
        Configuration: ``p``, the window's side and stride, 2 to 15 (1 also works: every word is
        its own window). 0 produces nothing.
    weight : In(signed(W))
        Configuration, sum mode: the factor of the window's sum.
    shift : In(signed(8))
        Configuration, sum mode: fraction bits dropped from ``sum * weight`` (negative: exact left
        shift).
    bias : In(signed(W))
        Configuration, sum mode: added to the rounded product before saturation.
    out_shift : In(signed(8)), apply_out_shift : In(1)
        Configuration: a final ``sat(round_shift(v, out_shift))`` when ``apply_out_shift`` (both
        modes).
    rows, cols : In(16)
        Configuration: the size of the input map, in words, at least 1 each. ``cols // p`` must not
        exceed the row buffer (``line_buffer_words // 2`` windows).
    clear : In(1)
        One-cycle pulse at pass start: counters and the output register back to the start of a
        pass. A word offered on that cycle is ignored. The configuration ports are read from the
        cycle after ``clear`` on (they may change up to and including the ``clear`` cycle).
        Needed once before the first pass.
    i : In(stream.Signature(signed(W)))
        The input map, row-major, at most one word per cycle. ``i.ready`` is always 1. Words past
        the ``rows * cols`` of the map produce nothing.
    o : Out(stream.Signature(signed(W)))
        The pooled words, row-major over the windows, registered. ``o.ready`` is ignored: an output
        is valid for exactly one cycle.
    """

    def __init__(self, arch: ArchConfig):
        self._bits = arch.numerics.word_bits
        self._acc_bits = arch.numerics.accumulator_bits
        self._depth = max(1, arch.tile.line_buffer_words // 2)
        word = signed(self._bits)
        super().__init__(
            {
                "mode": In(1),
                "size": In(4),
                "weight": In(word),
                "shift": In(signed(8)),
                "bias": In(word),
                "out_shift": In(signed(8)),
                "apply_out_shift": In(1),
                "rows": In(16),
                "cols": In(16),
                "clear": In(1),
                "i": In(stream.Signature(word)),
                "o": Out(stream.Signature(word)),
            }
        )

    @property
    def buffer_depth(self) -> int:
        """Entries of the row buffer (window columns): ``tile.line_buffer_words // 2``."""
        return self._depth

    def elaborate(self, platform) -> Module:
        m = Module()
        W, D = self._bits, self._depth
        p = self.size
        # a partial (sum or maximum) of up to p * p <= 225 words: W + 8 bits
        PW = W + (_MAX_SIZE * _MAX_SIZE).bit_length()
        # the exact product of a window's sum and the weight
        AW = max(self._acc_bits, PW + W)

        x = self.i.payload
        take = Signal()  # a word is taken this cycle
        m.d.comb += [self.i.ready.eq(1), take.eq(self.i.valid & ~self.clear)]

        # -- position of the word arriving now ------------------------------------------------------
        c = Signal(16)  # its column
        r = Signal(16)  # its row (stops at rows: the words after the map complete nothing)
        cpos = Signal(4)  # its place in its group of p columns
        rpos = Signal(4)  # its row's place in its group of p rows
        j = Signal(range(D))  # the window column of its group
        cols_ok = Signal()  # its group of columns is complete (decided at the group's first word)
        rows_ok = Signal()  # its group of rows is complete (decided at the group's first word)
        cols_ok_now = Signal()
        rows_ok_now = Signal()
        m.d.comb += [
            cols_ok_now.eq(Mux(cpos == 0, c + p <= self.cols, cols_ok)),
            rows_ok_now.eq(Mux((c == 0) & (rpos == 0), r + p <= self.rows, rows_ok)),
        ]
        last_col = cpos == p - 1  # the group's last word
        last_row = rpos == p - 1  # the window's last row
        in_window = cols_ok_now & rows_ok_now & (p != 0)

        with m.If(self.clear):
            m.d.sync += [c.eq(0), r.eq(0), cpos.eq(0), rpos.eq(0), j.eq(0)]
        with m.Elif(take):
            m.d.sync += [cols_ok.eq(cols_ok_now), rows_ok.eq(rows_ok_now)]
            with m.If(c + 1 >= self.cols):  # the row's last word
                m.d.sync += [c.eq(0), cpos.eq(0), j.eq(0), rpos.eq(Mux(last_row, 0, rpos + 1))]
                with m.If(r < self.rows):
                    m.d.sync += r.eq(r + 1)
            with m.Else():
                m.d.sync += [c.eq(c + 1), cpos.eq(Mux(last_col, 0, cpos + 1))]
                with m.If(last_col & cols_ok_now):
                    m.d.sync += j.eq(j + 1)

        def combine(a, b):
            return Mux(self.mode, Mux(a > b, a, b), a + b)

        # -- the row's group of p columns ---------------------------------------------------------
        part = Signal(signed(PW))  # the group's words so far
        group = Signal(signed(PW))  # ... and the word arriving now
        m.d.comb += group.eq(Mux(cpos == 0, x, combine(part, x)))
        with m.If(take):
            m.d.sync += part.eq(group)

        # -- the row buffer: one partial per window column ----------------------------------------
        m.submodules.rowbuf = rowbuf = Memory(shape=signed(PW), depth=D, init=[])
        wp = rowbuf.write_port()
        rp = rowbuf.read_port()  # addressed by j for the whole group: ready by its last word
        window = Signal(signed(PW))  # the window's rows so far, this row's group included
        m.d.comb += [
            window.eq(Mux(rpos == 0, group, combine(rp.data, group))),
            rp.addr.eq(j),
            wp.addr.eq(j),
            wp.data.eq(window),
            wp.en.eq(take & in_window & last_col & ~last_row),
        ]

        # -- the window's value, into the output register ------------------------------------------
        acc = Signal(signed(AW))
        v_sum = Signal(signed(W))
        v = Signal(signed(W))
        out = Signal(signed(W))
        # a non-zero value shifted left by W + 1 bits is beyond the reach of any bias: saturated
        m.d.comb += [
            acc.eq(window * self.weight),
            v_sum.eq(saturate(self.bias + round_shift(acc, self.shift, max_left=W + 1), W)),
            v.eq(Mux(self.mode, window[:W].as_signed(), v_sum)),
            out.eq(Mux(self.apply_out_shift, saturate(round_shift(v, self.out_shift, max_left=W), W), v)),
        ]
        fire = take & in_window & last_col & last_row
        m.d.sync += self.o.valid.eq(fire)
        with m.If(fire):
            m.d.sync += self.o.payload.eq(out)
        return m
