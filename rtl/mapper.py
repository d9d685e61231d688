"""The piecewise-linear mapper: ``y = sat(round(a_i * x, shift) + c_i)`` on a stream of words."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nfc.arch import ArchConfig
from nfc.rtl.alu import round_shift, saturate

__all__ = ["Mapper", "SLOPE_BITS"]

#: Width of the mapper's slope registers (the configuration word MAP_SLOPE carries 32 bits; the
#: compiler's slopes use 18 of them, ``nfc.compiler.pwl.SLOPE_BITS``).
SLOPE_BITS = 32


class Mapper(wiring.Component):
    """Piecewise-linear mapper of ``S = arch.tile.mapper_segments`` segments, exactly
    ``nfc.numerics.map_words``.

    Word ``x`` falls in segment ``i`` = the number of ``thresholds[1 .. segments-1]`` that are
    ``<= x`` (with the thresholds strictly increasing, as the compiler writes them, that is
    ``searchsorted(..., side="right")``); the output is
    ``saturate(round_shift(slopes[i] * x, shift) + offsets[i])``: the exact ``word x 32``-bit
    product, rounded half up by ``shift`` fraction bits (negative: exact left shift), plus the
    offset, saturated to a word. Exact for every value of every configuration port.

    **Latency 2**: a word accepted on cycle ``t`` is valid on ``o`` on cycle ``t + 2`` when ``o.ready``
    stays 1 (``MAP_LATENCY``). Stage 1 selects the segment and multiplies; stage 2 rounds, adds
    and saturates into the output register. Under back-pressure a stage holds while the next one is
    full (an empty stage still fills), so the mapper holds up to 2 words and loses none.

    Parameters
    ----------
    arch : ArchConfig
        Word width (``numerics.word_bits``) and segments (``tile.mapper_segments``).

    Attributes
    ----------
    segments : In(range(S + 1))
        Segments in use (configuration); 0 and 1 both mean one segment.
    thresholds : In(data.ArrayLayout(signed(word_bits), S))
        ``thresholds[i]`` is the first input word of segment ``i >= 1`` (configuration, input
        format); element 0 and elements ``>= segments`` are ignored.
    offsets : In(data.ArrayLayout(signed(word_bits), S))
        Offset word of each segment, in the output format (configuration).
    slopes : In(data.ArrayLayout(signed(32), S))
        Slope word of each segment (configuration).
    shift : In(signed(8))
        Fraction bits dropped from ``slope * x``: input frac + slope frac - output frac
        (configuration). Negative: exact left shift.
    i : In(stream.Signature(signed(word_bits)))
        Input words.
    o : Out(stream.Signature(signed(word_bits)))
        Mapped words, registered.
    """

    def __init__(self, arch: ArchConfig):
        self._bits = arch.numerics.word_bits
        self._segments = arch.tile.mapper_segments
        word = signed(self._bits)
        s = self._segments
        super().__init__(
            {
                "segments": In(range(s + 1)),
                "thresholds": In(data.ArrayLayout(word, s)),
                "offsets": In(data.ArrayLayout(word, s)),
                "slopes": In(data.ArrayLayout(signed(SLOPE_BITS), s)),
                "shift": In(signed(8)),
                "i": In(stream.Signature(word)),
                "o": Out(stream.Signature(word)),
            }
        )

    def elaborate(self, platform):
        m = Module()
        bits, s = self._bits, self._segments
        word = signed(bits)
        x = self.i.payload

        # stage 1: segment select and product
        seg = Signal(range(s))
        m.d.comb += seg.eq(sum((k < self.segments) & (self.thresholds[k] <= x) for k in range(1, s)))
        valid1 = Signal()
        product1 = Signal(signed(bits + SLOPE_BITS))
        offset1 = Signal(word)

        # stage 2: round, add the offset, saturate. A non-zero product shifted left by ``bits + 1``
        # is at least 2**(bits+1), beyond any offset's reach: saturated whether or not clamped.
        y = saturate(round_shift(product1, self.shift, max_left=bits + 1) + offset1, bits)

        advance2 = ~self.o.valid | self.o.ready
        advance1 = ~valid1 | advance2
        m.d.comb += self.i.ready.eq(advance1)
        with m.If(advance1):
            m.d.sync += [
                valid1.eq(self.i.valid),
                product1.eq(self.slopes[seg] * x),
                offset1.eq(self.offsets[seg]),
            ]
        with m.If(advance2):
            m.d.sync += [self.o.valid.eq(valid1), self.o.payload.eq(y)]
        return m
