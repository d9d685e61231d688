"""Pass control (``nfc.rtl.control.PassControl``): configuration pacing, the second register bank's
commit, and the cycle count of a pass.

Held to docs/architecture.md §13 item 1: ``n`` words take ``n x cycles_per_word`` cycles, a pass
streams from the cycle after its ``GO`` (or after the end of the streaming pass it was configured
behind), a pass takes one cycle more than the cycle of its last write counted from the end of the
pass before, and the bus takes no word between a waiting ``GO`` and the end of the streaming pass.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from amaranth.sim import Simulator

from nfc.arch import load_target
from nfc.rtl.control import PassControl


def _run(per_word: int, passes: list[tuple[int, int]], gap_after: set[int] = frozenset()):
    """Drive ``passes`` ((configuration words, cycle of the last write after the start) each). The
    bus offers every word as soon as it can, except that the words of pass ``k + 1`` wait for pass
    ``k`` to end when ``k`` is in ``gap_after`` (a host step between them). Returns per pass: the
    cycle it started streaming, the cycle of its last write, the ``pass_cycles`` it reported and the
    cycle it was committed, all in cycles since reset."""
    arch = load_target("tiny")
    arch = replace(arch, config_bus=replace(arch.config_bus, cycles_per_word=per_word))
    dut = PassControl(arch)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    seen: list[dict] = [{} for _ in passes]
    takes: list[int] = []

    async def bench(ctx):
        offered = 0  # pass whose words the bus offers
        taken = 0  # words of that pass taken
        streaming = None  # (pass, start cycle)
        ended = -1  # passes finished
        commits = 0
        cycle = 0
        while ended < len(passes) - 1:
            may_offer = offered < len(passes) and (offered - 1 not in gap_after or ended >= offered - 1)
            ctx.set(dut.word_valid, int(may_offer))
            accept = ctx.get(dut.accept)
            ctx.set(dut.go, int(bool(accept) and taken == passes[offered][0] - 1))
            if accept:
                takes.append(cycle)
                taken += 1
                if taken == passes[offered][0]:
                    offered, taken = offered + 1, 0
            if ctx.get(dut.start):
                k = ended + 1
                streaming = (k, cycle)
                seen[k]["start"] = cycle
            if streaming is not None and streaming[0] > ended:
                k, start = streaming
                ctx.set(dut.last_write, int(cycle == start + passes[k][1]))
            else:
                ctx.set(dut.last_write, 0)
            if ctx.get(dut.commit):
                seen[commits]["commit"] = cycle
                commits += 1
            done = ctx.get(dut.done)
            await ctx.tick()
            if done:
                ended += 1
                seen[ended]["end"] = cycle
                seen[ended]["cycles"] = ctx.get(dut.pass_cycles)
                assert ctx.get(dut.passes) == ended + 1
            cycle += 1

    sim.add_testbench(bench)
    sim.run()
    return seen, takes


def _expected(per_word: int, passes: list[tuple[int, int]], gap_after=frozenset()):
    """The contract's start and end of every pass, computed forward."""
    out = []
    go = -1  # cycle the previous GO was taken
    end = -1  # cycle the previous pass ended
    for k, (n, last) in enumerate(passes):
        first = (end if k - 1 in gap_after else go) + 1  # first cycle a word of this pass can go
        go = first + n * per_word - 1
        start = max(go, end) + 1
        cycles = start + last - end
        end = start + last
        out.append({"start": start, "end": end, "cycles": cycles, "commit": start - 1})
    return out


@pytest.mark.parametrize("per_word", [1, 2, 3])
@pytest.mark.parametrize(
    "passes",
    [
        [(2, 0), (2, 0), (2, 0)],  # configuration longer than streaming: it shows
        [(5, 7), (5, 7)],
        [(9, 30), (9, 30), (3, 2)],  # configuration hidden behind a long pass
        [(4, 7), (4, 7), (4, 7)],  # per_word 2: the next GO is taken on the last write's cycle
    ],
)
def test_passes_configured_behind_each_other(per_word, passes):
    seen, takes = _run(per_word, passes)
    assert seen == _expected(per_word, passes)
    assert takes[0] == per_word - 1, "a word is taken on the last cycle of its slot"
    # the bus never takes a word while a taken GO waits
    for k in range(1, len(passes)):
        first_word_of_next = sum(n for n, _ in passes[: k + 1])
        if first_word_of_next < len(takes):
            assert takes[first_word_of_next] > seen[k]["commit"]


def test_pass_cycles_without_overlap():
    """A host step between passes: the next pass's words start after the pass ends, and the pass
    counts its configuration in full (the contract before the second bank)."""
    per_word, passes = 2, [(5, 7), (5, 7), (9, 30)]
    seen, _ = _run(per_word, passes, gap_after={0, 1})
    assert seen == _expected(per_word, passes, gap_after={0, 1})
    for k, (n, last) in enumerate(passes):
        assert seen[k]["cycles"] == n * per_word + last + 1
