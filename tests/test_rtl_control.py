"""Pass control (``nfc.rtl.control.PassControl``): configuration pacing and the cycle count of a pass.

Held to docs/architecture.md §13 items 1 and 7: ``n`` words take ``n x cycles_per_word`` cycles,
streaming starts on the next cycle, and a pass takes one cycle more than the cycle of its last write.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from amaranth.sim import Simulator

from nfc.arch import load_target
from nfc.rtl.control import PassControl


@pytest.mark.parametrize("per_word", [1, 2, 3])
@pytest.mark.parametrize("n_words,last_write", [(2, 0), (5, 7), (9, 30)])
def test_pass_cycles(per_word, n_words, last_write):
    arch = load_target("tiny")
    arch = replace(arch, config_bus=replace(arch.config_bus, cycles_per_word=per_word))
    dut = PassControl(arch)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    seen = {}

    async def bench(ctx):
        for rep in range(2):  # two passes back to back: the second starts the cycle after the first ends
            cycle = 0
            taken = 0
            start = None
            while True:
                ctx.set(dut.word_valid, int(taken < n_words))
                accept = ctx.get(dut.accept)
                ctx.set(dut.go, int(accept and taken == n_words - 1))
                if accept:
                    assert cycle == (taken + 1) * per_word - 1, (
                        "a word is taken on the last cycle of its slot"
                    )
                    taken += 1
                if ctx.get(dut.start):
                    start = cycle
                streaming = start is not None
                ctx.set(dut.last_write, int(streaming and cycle == start + last_write))
                done = ctx.get(dut.done)
                await ctx.tick()
                cycle += 1
                if done:
                    break
            ctx.set(dut.last_write, 0)
            seen[rep] = (start, ctx.get(dut.pass_cycles), cycle, ctx.get(dut.passes))

    sim.add_testbench(bench)
    sim.run()
    C = n_words * per_word
    for rep in range(2):
        start, cycles, counted, passes = seen[rep]
        assert start == C
        assert cycles == counted == C + last_write + 1
        assert passes == rep + 1
