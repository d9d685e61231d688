"""Stream plumbing of the grid: fixed delay lines, join FIFOs and the convolver's alignment FIFO.

Every block here moves words on ``amaranth.lib.stream`` interfaces and honours ``ready``: no word is
lost, duplicated or reordered whatever the back-pressure. Inside the grid nothing is ever
back-pressured (``docs/architecture.md`` §13 item 4), so the behaviour the timing contract fixes is
the one with ``ready`` always 1; each block's docstring gives it in cycles: "a word accepted on
cycle ``t`` is valid on the output on cycle ``t + latency``" (latency 0 is a combinational
pass-through on the same cycle).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["DelayLine", "BypassFifo", "AlignDelay"]


def _check_shape(shape) -> None:
    # Shape.cast raises a clear TypeError for anything that is not shape-like
    Shape.cast(shape)


class DelayLine(wiring.Component):
    """A fixed pipeline of ``cycles`` register stages (router hops, write latency, ...).

    Without back-pressure a word accepted on cycle ``t`` is valid on ``o`` on cycle
    ``t + cycles`` exactly; ``cycles == 0`` is a combinational wire-through (``o`` is ``i``). Under
    back-pressure a stage holds its word while the stage after it is full and blocked; empty stages
    (bubbles) keep filling, so the line holds up to ``cycles`` words and never loses, duplicates or
    reorders one. ``i.ready`` depends combinationally on ``o.ready`` (through the stages' valid
    bits); no valid depends on a ready.

    Parameters
    ----------
    shape : ShapeLike
        Payload shape of the words (``signed(word_bits)`` in the grid; any shape or layout works).
    cycles : int
        Latency in cycles, ``>= 0``.

    Attributes
    ----------
    i : In(stream.Signature(shape))
        Words in. Accepted on a cycle with ``i.valid & i.ready``.
    o : Out(stream.Signature(shape))
        Words out, ``cycles`` cycles after they were accepted when ``o.ready`` stays 1.
    """

    def __init__(self, shape, cycles: int):
        _check_shape(shape)
        if not isinstance(cycles, int) or cycles < 0:
            raise TypeError(f"Delay line cycles must be a non-negative integer, not {cycles!r}")
        self._shape = shape
        self._cycles = cycles
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    @property
    def cycles(self) -> int:
        return self._cycles

    def elaborate(self, platform):
        m = Module()
        n = self._cycles
        if n == 0:
            wiring.connect(m, wiring.flipped(self.i), wiring.flipped(self.o))
            return m

        valid = [Signal(name=f"valid{k}") for k in range(n)]
        data = [Signal(self._shape, name=f"data{k}") for k in range(n)]
        # advance[k]: stage k takes the word of stage k - 1 (or of the input) at the next edge
        advance = [Signal(name=f"advance{k}") for k in range(n)]
        m.d.comb += advance[n - 1].eq(~valid[n - 1] | self.o.ready)
        for k in range(n - 2, -1, -1):
            m.d.comb += advance[k].eq(~valid[k] | advance[k + 1])
        m.d.comb += [
            self.i.ready.eq(advance[0]),
            self.o.valid.eq(valid[n - 1]),
            self.o.payload.eq(data[n - 1]),
        ]
        for k in range(n):
            src_valid = self.i.valid if k == 0 else valid[k - 1]
            src_data = self.i.payload if k == 0 else data[k - 1]
            with m.If(advance[k]):
                m.d.sync += [valid[k].eq(src_valid), data[k].eq(src_data)]
        return m


class BypassFifo(wiring.Component):
    """A FIFO of ``depth`` words whose output is its input while it is empty (the join FIFO).

    Latency 0: when the FIFO is empty a word offered on ``i`` is offered on ``o`` on the same cycle
    and, if taken, never stored; otherwise the head of the FIFO is offered and the new word is
    stored. A word can be accepted while the FIFO is full if one leaves on the same cycle, so
    ``level`` never exceeds ``depth``. ``i.ready`` depends combinationally on ``o.ready``; ``o.valid``
    depends on ``i.valid`` (never on a ready).

    Parameters
    ----------
    shape : ShapeLike
        Payload shape.
    depth : int
        Words the FIFO holds, ``>= 1``.

    Attributes
    ----------
    i : In(stream.Signature(shape))
        Words in.
    o : Out(stream.Signature(shape))
        Words out, in order: the stored head, or the input word on a cycle the FIFO is empty.
    level : Out(range(depth + 1))
        Words stored (registered; the word passing through on a bypass cycle is not counted).
    clear : In(1)
        Empties the FIFO and resets ``error`` at the next edge; no word moves on a ``clear`` cycle
        (``i.ready`` and ``o.valid`` are 0).
    error : Out(1)
        Sticky until ``clear``: a word was offered on ``i`` while the FIFO was full and nothing left
        (the word is refused, not lost: ``i.ready`` was 0). Inside the grid this means the program
        broke the FIFO depth rule of the timing contract.
    """

    def __init__(self, shape, depth: int):
        _check_shape(shape)
        if not isinstance(depth, int) or depth < 1:
            raise TypeError(f"FIFO depth must be a positive integer, not {depth!r}")
        self._shape = shape
        self._depth = depth
        super().__init__(
            {
                "i": In(stream.Signature(shape)),
                "o": Out(stream.Signature(shape)),
                "level": Out(range(depth + 1)),
                "clear": In(1),
                "error": Out(1),
            }
        )

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        depth = self._depth
        m.submodules.storage = storage = Memory(shape=self._shape, depth=depth, init=[])
        wr = storage.write_port()
        rd = storage.read_port(domain="comb")
        produce = Signal(range(depth))
        consume = Signal(range(depth))

        empty = self.level == 0
        pop = Signal()
        accept = Signal()
        m.d.comb += [
            self.o.valid.eq(~self.clear & (~empty | self.i.valid)),
            pop.eq(self.o.valid & self.o.ready),
            self.i.ready.eq(~self.clear & ((self.level != depth) | pop)),
            accept.eq(self.i.valid & self.i.ready),
            rd.addr.eq(consume),
        ]
        with m.If(empty):
            m.d.comb += self.o.payload.eq(self.i.payload)
        with m.Else():
            m.d.comb += self.o.payload.eq(rd.data)

        store = accept & ~(pop & empty)  # a word that bypasses an empty FIFO is not stored
        unstore = pop & ~empty
        m.d.comb += [wr.addr.eq(produce), wr.data.eq(self.i.payload), wr.en.eq(store)]

        def incr(ptr):
            return Mux(ptr == depth - 1, 0, ptr + 1)

        with m.If(self.clear):
            m.d.sync += [self.level.eq(0), produce.eq(0), consume.eq(0), self.error.eq(0)]
        with m.Else():
            with m.If(store):
                m.d.sync += produce.eq(incr(produce))
            with m.If(unstore):
                m.d.sync += consume.eq(incr(consume))
            m.d.sync += self.level.eq(self.level + store - unstore)
            with m.If(self.i.valid & ~self.i.ready):
                m.d.sync += self.error.eq(1)
        return m


class AlignDelay(wiring.Component):
    """The convolver's alignment FIFO: a run-time delay of ``delay`` cycles, ``0 <= delay <= depth``.

    Without back-pressure a word accepted on cycle ``t`` is valid on ``o`` on cycle
    ``t + delay`` exactly (``delay == 0``: combinational, on the same cycle). Under back-pressure a
    word leaves no earlier than ``t + delay``, in order, none lost or duplicated. It never holds
    more than ``depth`` words: a :class:`BypassFifo` of ``depth`` words whose head may only leave
    once it has *matured*; a ``depth``-bit shift register of arrival bits, tapped at ``delay``,
    marks the cycle each word matures (the oldest unmatured word, at most one a cycle), and a
    counter holds the matured words not yet sent.
    Words arrive at most one per cycle, so with ``o.ready`` always 1 it holds at most ``delay``
    words and never refuses one.

    ``delay`` is configuration: hold it constant from the ``clear`` pulse to the end of the pass.

    Parameters
    ----------
    shape : ShapeLike
        Payload shape.
    depth : int
        Words the FIFO holds and the largest delay, ``>= 1`` (``tile.fifo_depth``).

    Attributes
    ----------
    i : In(stream.Signature(shape))
        Words in.
    o : Out(stream.Signature(shape))
        Words out, ``delay`` cycles after they were accepted when ``o.ready`` stays 1.
    delay : In(range(depth + 1))
        The delay in cycles (configuration, CONV_LINK).
    clear : In(1)
        One-cycle pulse at pass start: empties the FIFO, forgets arrivals, resets ``error``. No word
        moves on a ``clear`` cycle.
    error : Out(1)
        Sticky until ``clear``: a word was offered while the FIFO was full (it is refused, not
        lost). Cannot happen without back-pressure on ``o``.
    """

    def __init__(self, shape, depth: int):
        _check_shape(shape)
        if not isinstance(depth, int) or depth < 1:
            raise TypeError(f"Alignment FIFO depth must be a positive integer, not {depth!r}")
        self._shape = shape
        self._depth = depth
        super().__init__(
            {
                "i": In(stream.Signature(shape)),
                "o": Out(stream.Signature(shape)),
                "delay": In(range(depth + 1)),
                "clear": In(1),
                "error": Out(1),
            }
        )

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        depth = self._depth
        m.submodules.fifo = fifo = BypassFifo(self._shape, depth)

        arrivals = Signal(depth)  # arrivals[k]: a word was accepted k + 1 cycles ago
        matured = Signal(range(depth + 1))  # stored words old enough to leave, before this cycle
        tap = Signal(range(depth))
        instant = self.delay == 0
        ripe = Signal()  # delay > 0 and the word accepted ``delay`` cycles ago matures this cycle
        may_leave = instant | (matured != 0) | ripe
        accept = self.i.valid & self.i.ready
        sent = self.o.valid & self.o.ready
        m.d.comb += [
            fifo.clear.eq(self.clear),
            fifo.i.payload.eq(self.i.payload),
            fifo.i.valid.eq(self.i.valid),
            self.i.ready.eq(fifo.i.ready),
            self.o.payload.eq(fifo.o.payload),
            self.o.valid.eq(fifo.o.valid & may_leave),
            fifo.o.ready.eq(self.o.ready & may_leave),
            self.error.eq(fifo.error),
            tap.eq(self.delay - 1),
            ripe.eq(~instant & arrivals.bit_select(tap, 1)),
        ]
        matures = Mux(instant, accept, ripe)
        with m.If(self.clear):
            m.d.sync += [arrivals.eq(0), matured.eq(0)]
        with m.Else():
            m.d.sync += [
                arrivals.eq(Cat(accept, arrivals[:-1])),
                matured.eq(matured + matures - sent),
            ]
        return m
