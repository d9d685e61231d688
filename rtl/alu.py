"""The streaming ALU, and the fixed-point rounding and saturation every arithmetic block uses.

:func:`round_shift` and :func:`saturate` build the combinational hardware of
``nfc.numerics.round_shift`` and ``nfc.numerics.saturate`` (round half up, clamp to a word); the
mapper and the ALU use them, and so can any other block that narrows a wide value to a word.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, Value, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from nfc.arch import ArchConfig
from nfc.compiler.encode import ALU_OPS
from nfc.rtl.pipeline import BypassFifo

__all__ = ["round_shift", "saturate", "Alu"]


def round_shift(value, shift, *, max_left: int) -> Value:
    """``value * 2**-shift`` with round half up, as ``nfc.numerics.round_shift`` (combinational).

    ``shift > 0`` drops ``shift`` fraction bits: add ``2**(shift-1)``, shift right arithmetically
    (built as ``((value >> (shift-1)) + 1) >> 1``, which is the same integer). ``shift < 0`` is an
    exact left shift. Right shifts of ``len(value)`` bits or more all give 0 (exact: the rounding
    constant then outweighs every value), so the shifter is no wider than ``value``.

    Parameters
    ----------
    value : signed Value
        The integer to rescale.
    shift : signed Value
        The run-time shift amount.
    max_left : int
        Left shifts longer than this are done as ``max_left``. Choose it so that any non-zero value
        shifted by ``max_left`` saturates the word it is narrowed to afterwards; then the clamp does
        not change the saturated result and the block stays exact for every ``shift``.

    Returns
    -------
    Value
        A signed value wide enough for the exact result (``len(value) + 2**bits(max_left) - 1``).
    """
    value = Value.cast(value)
    shift = Value.cast(shift)
    if not value.shape().signed or not shift.shape().signed:
        raise TypeError(f"round_shift needs a signed value and a signed shift, not {value!r}, {shift!r}")
    if max_left < 0:
        raise ValueError(f"max_left must be non-negative, not {max_left}")
    n = len(value)
    right_bits = max(1, (n - 1).bit_length())
    left_bits = max(1, max_left.bit_length())
    # shift - 1 for 1 <= shift <= n, else n - 1 (as good as any longer shift)
    right = Mux(shift >= n, n - 1, shift - 1)[:right_bits]
    left = Mux(-shift >= max_left, max_left, -shift)[:left_bits]
    rounded = ((value >> right) + 1) >> 1
    return Mux(shift > 0, rounded, Mux(shift < 0, value << left, value))


def saturate(value, bits: int) -> Value:
    """Clamp a signed value to the ``bits``-bit signed range, as ``nfc.numerics.saturate``.

    Returns a ``signed(bits)`` value (combinational).
    """
    value = Value.cast(value)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(value > hi, hi, Mux(value < lo, lo, value))[:bits].as_signed()


class Alu(wiring.Component):
    """The streaming ALU: joins word ``n`` of ``a`` with word ``n`` of ``b`` and sends ``a op b``.

    The result is exactly ``nfc.numerics.alu_words``: ``mul`` is the exact product rounded by
    ``shift_out``; ``add``, ``sub``, ``max`` and ``min`` first round each operand by its own shift,
    then operate exactly, then round by ``shift_out``; the result saturates to a word. Exact for
    every ``shift_out`` and for operand shifts ``shift_a, shift_b >= -word_bits`` (left shifts of at
    most a word's width; ``nfc.numerics.alu_shifts`` never asks for more than ``word_bits - 1``);
    longer left shifts of the operands are done as ``word_bits``. Opcodes 5, 6 and 7 give 0.

    **Latency 1**: without back-pressure output ``n`` is valid on cycle
    ``max(acceptance of a_n, acceptance of b_n) + 1``. Each input has a :class:`BypassFifo` of
    ``arch.tile.fifo_depth`` words holding the words that arrived before their partner; the two
    heads meet in one combinational stage (align, operate, round, saturate) and the result is
    registered. With ``o.ready`` always 1 nothing is ever refused as long as partner words arrive
    at most ``fifo_depth`` cycles apart (§13 item 4).

    Parameters
    ----------
    arch : ArchConfig
        Word width (``numerics.word_bits``) and FIFO depth (``tile.fifo_depth``).

    Attributes
    ----------
    op : In(3)
        Operation (configuration): 0 add, 1 sub (``a - b``), 2 mul, 3 max, 4 min
        (``nfc.compiler.encode.ALU_OPS``).
    shift_a, shift_b : In(signed(8))
        Operand rescaling (configuration): fraction bits dropped from ``a`` / ``b`` (negative:
        exact left shift). Unused by ``mul``.
    shift_out : In(signed(8))
        Fraction bits dropped from the result before saturation (negative: exact left shift).
    a, b : In(stream.Signature(signed(word_bits)))
        Operand words.
    o : Out(stream.Signature(signed(word_bits)))
        Result words, registered.
    clear : In(1)
        One-cycle pulse at pass start: empties both FIFOs and the output register and resets
        ``error`` at the next edge. ``a`` and ``b`` accept nothing on a ``clear`` cycle (a result
        already in the output register is still offered on it).
    error : Out(1)
        Sticky until ``clear``: a word was offered on ``a`` or ``b`` while its FIFO was full (it is
        refused, not lost). Without back-pressure on ``o`` this means partner words arrived more
        than ``fifo_depth`` cycles apart.
    """

    def __init__(self, arch: ArchConfig):
        self._bits = arch.numerics.word_bits
        self._depth = arch.tile.fifo_depth
        word = signed(self._bits)
        super().__init__(
            {
                "op": In(3),
                "shift_a": In(signed(8)),
                "shift_b": In(signed(8)),
                "shift_out": In(signed(8)),
                "a": In(stream.Signature(word)),
                "b": In(stream.Signature(word)),
                "o": Out(stream.Signature(word)),
                "clear": In(1),
                "error": Out(1),
            }
        )

    def elaborate(self, platform):
        m = Module()
        bits = self._bits
        word = signed(bits)
        m.submodules.fifo_a = fifo_a = BypassFifo(word, self._depth)
        m.submodules.fifo_b = fifo_b = BypassFifo(word, self._depth)
        wiring.connect(m, wiring.flipped(self.a), fifo_a.i)
        wiring.connect(m, wiring.flipped(self.b), fifo_b.i)

        x, y = fifo_a.o.payload, fifo_b.o.payload
        xa = Signal(signed(2 * bits))  # operands aligned: at most ``bits`` bits of left shift
        yb = Signal(signed(2 * bits))
        r = Signal(signed(2 * bits + 1))  # the exact result before the output rounding
        m.d.comb += [
            xa.eq(round_shift(x, self.shift_a, max_left=bits)),
            yb.eq(round_shift(y, self.shift_b, max_left=bits)),
        ]
        with m.Switch(self.op):
            with m.Case(ALU_OPS["add"]):
                m.d.comb += r.eq(xa + yb)
            with m.Case(ALU_OPS["sub"]):
                m.d.comb += r.eq(xa - yb)
            with m.Case(ALU_OPS["mul"]):
                m.d.comb += r.eq(x * y)
            with m.Case(ALU_OPS["max"]):
                m.d.comb += r.eq(Mux(xa > yb, xa, yb))
            with m.Case(ALU_OPS["min"]):
                m.d.comb += r.eq(Mux(xa < yb, xa, yb))
        # a non-zero result shifted left by ``bits`` is at least 2**bits: saturated either way
        result = saturate(round_shift(r, self.shift_out, max_left=bits), bits)

        advance = ~self.o.valid | self.o.ready
        fire = Signal()
        m.d.comb += [
            fire.eq(fifo_a.o.valid & fifo_b.o.valid & advance),
            fifo_a.o.ready.eq(fire),
            fifo_b.o.ready.eq(fire),
            fifo_a.clear.eq(self.clear),
            fifo_b.clear.eq(self.clear),
            self.error.eq(fifo_a.error | fifo_b.error),
        ]
        with m.If(self.clear):
            m.d.sync += self.o.valid.eq(0)
        with m.Elif(fire):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(result)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
