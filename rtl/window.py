"""The window counter: which input word completes a convolution window.

A convolver's input arrives row-major, one word at a time. :class:`WindowCounter` counts rows and
columns like a line buffer filling up and says, for the word arriving now, whether it is the
bottom-right corner of the next window (block, stride and dilation). Windows complete in row-major
order. It is the hardware form of ``_LineBuffer.word()`` in ``sim/naive.py`` and of item 4 of the
timing contract (``docs/architecture.md`` section 13): window ``k`` (output row ``y``, column
``x``) is completed by input word ``(y sh + span_h - 1) cols + x sw + span_w - 1``, where
``span = (block - 1) dilation + 1``.

It is used inside the convolver and, standalone, wherever another stream must follow a
convolver's windows (the partial-sum DMA requests a word whenever its data stream completes a
window).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nfc.arch import ArchConfig

__all__ = ["WindowCounter"]

#: Bits of the row and column counters: one more than the ``rows``/``cols`` ports, and room for the
#: "next window" positions, which run past the input by up to a stride.
_COUNT_BITS = 18


class WindowCounter(wiring.Component):
    """Row and column counters over a ``rows x cols`` input that flag window-completing words.

    Parameters
    ----------
    arch : ArchConfig
        The target. The ports do not depend on it (the configuration fields have fixed widths);
        it is taken so that every RTL block is built the same way.

    Attributes
    ----------
    rows, cols : In(16)
        Configuration: the size of the input, in words. Held for the whole pass.
    block_h, block_w : In(4)
        Configuration: the window's taps (rows, columns), at least 1.
    stride_h, stride_w : In(4)
        Configuration: the distance between windows, at least 1.
    dil_h, dil_w : In(4)
        Configuration: the distance between a window's taps, at least 1.
        ``span = (block - 1) * dil + 1`` input words are covered in each direction.
    clear : In(1)
        One-cycle pulse at pass start: counters back to the first word of the input and
        ``overrun`` cleared. A ``step`` on the clear cycle is ignored. The counters reset to
        constants, so the configuration may still change on the clear cycle (it is committed then).
    step : In(1)
        An input word arrives this cycle.
    done : Out(1)
        Combinational (latency 0): ``step`` is high and the word arriving completes the next
        window. Exactly the value ``_LineBuffer.word()`` of ``sim/naive.py`` returns for that word.
    overrun : Out(1)
        Sticky until ``clear``: a word arrived after all ``rows * cols`` words of the input (from
        the cycle after that word). Such words complete no window.
    """

    rows: In(16)
    cols: In(16)
    block_h: In(4)
    block_w: In(4)
    stride_h: In(4)
    stride_w: In(4)
    dil_h: In(4)
    dil_w: In(4)
    clear: In(1)
    step: In(1)
    done: Out(1)
    overrun: Out(1)

    def __init__(self, arch: ArchConfig):
        self._arch = arch
        super().__init__()

    def elaborate(self, platform) -> Module:
        m = Module()
        r = Signal(_COUNT_BITS)  # row of the word arriving next
        c = Signal(_COUNT_BITS)  # its column
        # the next window's bottom row and right column, as offsets from the first window's: the
        # counters reset to constants, and the configuration may change up to the clear cycle
        off_r = Signal(_COUNT_BITS)
        off_c = Signal(_COUNT_BITS)
        span_h1 = Signal(8)  # span - 1: the bottom-right tap of the first window
        span_w1 = Signal(8)
        m.d.comb += [
            span_h1.eq((self.block_h - 1) * self.dil_h),
            span_w1.eq((self.block_w - 1) * self.dil_w),
        ]
        want_r = span_h1 + off_r
        want_c = span_w1 + off_c
        ended = r >= self.rows
        match = (r == want_r) & (c == want_c)
        m.d.comb += self.done.eq(self.step & ~self.clear & ~ended & match)

        with m.If(self.clear):
            m.d.sync += [r.eq(0), c.eq(0), off_r.eq(0), off_c.eq(0), self.overrun.eq(0)]
        with m.Elif(self.step & ended):
            m.d.sync += self.overrun.eq(1)
        with m.Elif(self.step):
            with m.If(match):
                m.d.sync += off_c.eq(off_c + self.stride_w)
            with m.If(c == self.cols - 1):  # last word of a row (later assignments win)
                m.d.sync += [c.eq(0), off_c.eq(0), r.eq(r + 1)]
                with m.If(r == want_r):
                    m.d.sync += off_r.eq(off_r + self.stride_h)
            with m.Else():
                m.d.sync += c.eq(c + 1)
        return m
