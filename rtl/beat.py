"""The beat generator: the pass's share ``P/Q`` of the memory bandwidth as one beat pulse per request slot.

``docs/architecture.md`` §13 item 2: from the first streaming cycle ``C`` an accumulator gains ``P``
every cycle; on a cycle it reaches ``Q`` a beat fires and ``Q`` is taken off. Beat ``i`` (0-based)
therefore fires on cycle ``C + ceil((i + 1) Q / P) - 1``, and the generator stops after the pass's
``beats`` beats. Every data read stream of the pass requests its next word on a beat.
"""

# no `from __future__ import annotations`: wiring.Component reads the port annotations as values
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["BeatGenerator"]


class BeatGenerator(wiring.Component):
    """Beat accumulator of a pass (rate ``P/Q``, ``beats`` beats).

    The generator is idle until ``start``; the ``start`` cycle is the first cycle of the accumulator
    (``C`` of the timing contract) and may already carry a beat (when ``P == Q``). A ``start`` pulse
    while running restarts the generator from scratch. The outputs are combinational (from the
    accumulator registers, ``start`` and the configuration), so beat ``i`` is visible on ``beat`` on
    the very cycle ``C + ceil((i + 1) Q / P) - 1`` (latency 0).

    Attributes
    ----------
    P : In(7)
        Accumulator increment (configuration, held for the pass). ``0 < P <= Q``.
    Q : In(7)
        Accumulator threshold (configuration). ``Q <= 64``, so at most one beat fires per cycle.
    beats : In(32)
        Beats of the pass (configuration). With ``beats == 0`` a ``start`` does nothing.
    start : In(1)
        One-cycle pulse on the first streaming cycle ``C``; it counts as a cycle of the accumulator.
    beat : Out(1)
        A beat fires this cycle (combinational).
    running : Out(1)
        The accumulator runs this cycle: from ``C`` (the ``start`` cycle) to the cycle of the last
        beat inclusive (combinational).
    count : Out(32)
        Beats fired before this cycle; on a beat cycle, the 0-based index of the beat that fires.
        After the last beat it holds ``beats`` until the next ``start``.
    stall : Out(1)
        A running cycle without a beat (the "memory stall" statistic of §13): ``running & ~beat``.
    """

    P: In(7)
    Q: In(7)
    beats: In(32)
    start: In(1)
    beat: Out(1)
    running: Out(1)
    count: Out(32)
    stall: Out(1)

    def elaborate(self, platform):
        m = Module()

        acc = Signal(7)  # remainder after the last cycle: < P <= 64
        fired = Signal(32)  # beats fired so far
        active = Signal()  # running on cycles after the start cycle

        acc_now = Mux(self.start, 0, acc)
        fired_now = Mux(self.start, 0, fired)
        total = Signal(8)
        m.d.comb += [
            total.eq(acc_now + self.P),
            self.running.eq(Mux(self.start, self.beats != 0, active)),
            self.beat.eq(self.running & (total >= self.Q)),
            self.stall.eq(self.running & ~self.beat),
            self.count.eq(fired_now),
        ]

        with m.If(self.start):
            m.d.sync += [acc.eq(0), fired.eq(0), active.eq(0)]
        with m.If(self.running):
            m.d.sync += [
                acc.eq(Mux(self.beat, total - self.Q, total)),
                fired.eq(fired_now + self.beat),
                active.eq(~(self.beat & (fired_now + 1 == self.beats))),
            ]
        return m
