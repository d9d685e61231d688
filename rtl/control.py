"""Pass control: paces the configuration bus, commits a pass's configuration, starts the beats, and
ends the pass on its last write.

The timing is docs/architecture.md §13 item 1. A pass's ``n`` configuration words take
``cycles_per_word`` cycles each. The words go into the decoder's second register bank, so they may
arrive while the previous pass still streams: the bus takes words from the cycle after the
previous pass's ``GO``. The pass is *committed* (the decoder's registers copied to the bank the
units read, every unit cleared) on the cycle its ``GO`` is taken if no pass is streaming, else on
the cycle the streaming pass ends; it streams from the next cycle. Between a ``GO`` taken behind a
streaming pass and that pass's end, the bus takes no word.

A pass's cycle count runs from the cycle after the previous pass ended (or from its first word,
if the bus was idle) to its last write, inclusive: with ``C`` configuration cycles and a previous
pass that streamed ``S`` cycles, ``max(0, C - S)`` of them show.
"""

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nfc.arch import ArchConfig

__all__ = ["PassControl"]


class PassControl(wiring.Component):
    """The pass state machine and its cycle counter.

    Attributes
    ----------
    word_valid : In(1)
        A configuration word is offered on the bus this cycle.
    accept : Out(1)
        Take the offered word this cycle: high on the last cycle of each word's ``cycles_per_word``
        slot, except while a committed-to-be pass waits for the streaming one to end.
    go : In(1)
        The word taken this cycle is ``GO``.
    last_write : In(1)
        This cycle's memory writes complete every write stream of the pass.
    commit : Out(1)
        The configuration decoder's registers become the pass's on the next edge (the cycle a
        ``GO`` is taken with no pass streaming, or the last cycle of the streaming pass when the next
        ``GO`` has been taken).
    start : Out(1)
        The first streaming cycle (the beat generator starts on it): the cycle after ``commit``.
    clear : Out(1)
        Same as ``commit``: units reset their counters and drop every word still in flight.
    streaming : Out(1)
        From ``start`` to the last write.
    waiting : Out(1)
        The next pass's ``GO`` has been taken and the streaming pass has not ended.
    cycle : Out(32)
        Cycles of the current pass before this one.
    done : Out(1)
        The pass ends this cycle (its last write).
    pass_cycles : Out(32)
        Cycles of the last finished pass (valid from the cycle after ``done``).
    passes : Out(32)
        Passes finished.
    """

    word_valid: In(1)
    accept: Out(1)
    go: In(1)
    last_write: In(1)
    commit: Out(1)
    start: Out(1)
    clear: Out(1)
    streaming: Out(1)
    waiting: Out(1)
    cycle: Out(32)
    done: Out(1)
    pass_cycles: Out(32)
    passes: Out(32)

    def __init__(self, arch: ArchConfig):
        self.cycles_per_word = arch.config_bus.cycles_per_word
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        per_word = self.cycles_per_word
        sub = Signal(range(max(per_word, 2)))
        started = Signal()  # the first streaming cycle comes next
        m.d.sync += started.eq(self.commit)
        m.d.comb += [self.start.eq(started), self.clear.eq(self.commit)]

        # the bus: one word per cycles_per_word cycles, held while a taken GO waits
        with m.If(self.word_valid & ~self.waiting):
            with m.If(sub == per_word - 1):
                m.d.comb += self.accept.eq(1)
                m.d.sync += sub.eq(0)
            with m.Else():
                m.d.sync += sub.eq(sub + 1)

        with m.FSM():
            with m.State("CONFIG"):
                with m.If(self.word_valid):
                    m.d.sync += self.cycle.eq(self.cycle + 1)
                with m.If(self.go):
                    m.d.comb += self.commit.eq(1)
                    m.next = "STREAM"
            with m.State("STREAM"):
                m.d.comb += self.streaming.eq(1)
                m.d.sync += self.cycle.eq(self.cycle + 1)
                with m.If(self.go):
                    m.d.sync += self.waiting.eq(1)
                with m.If(self.last_write):
                    m.d.comb += self.done.eq(1)
                    m.d.sync += [
                        self.pass_cycles.eq(self.cycle + 1),
                        self.passes.eq(self.passes + 1),
                        self.cycle.eq(0),
                    ]
                    with m.If(self.waiting | self.go):
                        m.d.comb += self.commit.eq(1)
                        m.d.sync += self.waiting.eq(0)
                    with m.Else():
                        m.next = "CONFIG"
        return m
