"""Pass control: paces the configuration bus, starts the beats, and ends the pass on its last write.

The timing is docs/architecture.md §13: a pass's ``n`` configuration words take ``cycles_per_word``
cycles each (cycles ``0 .. C-1``), streaming starts on cycle ``C``, and the pass takes one cycle more
than the cycle of its last memory write; the next pass's configuration may start on the next cycle.
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
        slot while configuring.
    go : In(1)
        The word taken this cycle is ``GO``.
    last_write : In(1)
        This cycle's memory writes complete every write stream of the pass.
    start : Out(1)
        The first streaming cycle ``C`` (the beat generator starts on it).
    clear : Out(1)
        The cycle ``GO`` is taken: units reset their counters (their configuration is complete).
    streaming : Out(1)
        Between ``GO`` and the last write.
    cycle : Out(32)
        Cycles of the current pass before this one (0 on its first configuration cycle).
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
    start: Out(1)
    clear: Out(1)
    streaming: Out(1)
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
        m.d.sync += started.eq(0)
        m.d.comb += [self.start.eq(started), self.clear.eq(self.go)]
        with m.FSM():
            with m.State("CONFIG"):
                with m.If(self.word_valid):
                    m.d.sync += self.cycle.eq(self.cycle + 1)
                    with m.If(sub == per_word - 1):
                        m.d.comb += self.accept.eq(1)
                        m.d.sync += sub.eq(0)
                    with m.Else():
                        m.d.sync += sub.eq(sub + 1)
                with m.If(self.go):
                    m.d.sync += started.eq(1)
                    m.next = "STREAM"
            with m.State("STREAM"):
                m.d.comb += self.streaming.eq(1)
                m.d.sync += self.cycle.eq(self.cycle + 1)
                with m.If(self.last_write):
                    m.d.comb += self.done.eq(1)
                    m.d.sync += [
                        self.pass_cycles.eq(self.cycle + 1),
                        self.passes.eq(self.passes + 1),
                        self.cycle.eq(0),
                    ]
                    m.next = "CONFIG"
        return m
