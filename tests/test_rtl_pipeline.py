# amaranth: UnusedElaboratable=no
"""RTL delay line, join FIFO and alignment FIFO (``nfc.rtl.pipeline``) against naive models.

Each block runs on random words with random gaps in ``valid`` and random ``ready`` on the output;
every cycle the testbench checks the stream rules (an offered output word stays offered, unchanged,
until taken) and, for the FIFOs, a cycle-by-cycle naive model (a Python list of words with the
cycle each was accepted). Without back-pressure the latencies are checked to the cycle.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from amaranth.back import rtlil
from amaranth.hdl import signed
from amaranth.lib import data
from rtl_streams import run_streams, simulate

from nfc.arch import load_target
from nfc.rtl.pipeline import AlignDelay, BypassFifo, DelayLine

WORD = signed(16)
LO, HI = -(1 << 15), (1 << 15) - 1


@dataclass
class Run:
    """What a single-stream run saw: the cycle each word was offered first and accepted; the output
    words with their cycles."""

    offered: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    out: list[tuple[int, int]] = field(default_factory=list)

    @property
    def out_words(self) -> list[int]:
        return [w for _, w in self.out]

    @property
    def out_cycles(self) -> list[int]:
        return [c for c, _ in self.out]


def run_stream(
    dut,
    words: list[int],
    *,
    gap: float,
    ready: float,
    seed: int,
    config: list[tuple] = (),
    probe: Callable | None = None,
    tail: int = 40,
) -> Run:
    """:func:`rtl_streams.run_streams` on the block's one input ``i``;
    ``probe(ctx, cycle, in_valid, in_word, out_ready)`` runs every cycle (for lockstep models)."""
    both = run_streams(
        dut,
        {"i": words},
        gap=gap,
        ready=ready,
        seed=seed,
        config=config,
        probe=None
        if probe is None
        else (lambda ctx, c, held, word, rdy: probe(ctx, c, held["i"], word["i"], rdy)),
        tail=tail,
        patience=200,
    )
    return Run(both.offered["i"], both.accepted["i"], both.out)


def random_words(rng: random.Random, n: int) -> list[int]:
    """Mostly uniform words, with the extremes and small values sprinkled in."""
    special = [LO, LO + 1, -1, 0, 1, HI - 1, HI]
    return [rng.choice(special) if rng.random() < 0.1 else rng.randint(LO, HI) for _ in range(n)]


# -- DelayLine --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cycles", [0, 1, 2, 5])
@pytest.mark.parametrize("gap", [0.0, 0.4])
def test_delay_line_exact_latency(cycles: int, gap: float) -> None:
    words = random_words(random.Random(cycles), 300)
    run = run_stream(DelayLine(WORD, cycles), words, gap=gap, ready=1.0, seed=10 + cycles)
    assert run.out_words == words
    assert run.accepted == run.offered  # never refuses a word without back-pressure
    assert run.out_cycles == [t + cycles for t in run.accepted]
    if gap == 0.0:
        assert run.accepted == list(range(len(words)))  # a word every cycle


@pytest.mark.parametrize("cycles", [0, 1, 3, 6])
def test_delay_line_back_pressure(cycles: int) -> None:
    words = random_words(random.Random(100 + cycles), 600)
    run = run_stream(DelayLine(WORD, cycles), words, gap=0.3, ready=0.5, seed=cycles)
    assert run.out_words == words
    assert all(o >= a + cycles for o, a in zip(run.out_cycles, run.accepted, strict=True))
    # at most ``cycles`` words inside: word n leaves no later than word n + cycles is accepted
    for k in range(len(words) - max(cycles, 1)):
        assert run.out_cycles[k] <= run.accepted[k + max(cycles, 1)]


def test_delay_line_struct_payload() -> None:
    layout = data.StructLayout({"word": WORD, "last": 1})
    rng = random.Random(5)
    words = [rng.randrange(1 << 17) for _ in range(200)]
    run = run_stream(DelayLine(layout, 2), words, gap=0.2, ready=0.7, seed=5)
    assert run.out_words == words


def test_delay_line_rejects_bad_cycles() -> None:
    with pytest.raises(TypeError, match=r"^Delay line cycles must be a non-negative integer, not -1$"):
        DelayLine(WORD, -1)


# -- BypassFifo and AlignDelay: a naive cycle model --------------------------------------------------


class FifoModel:
    """A naive alignment FIFO, one call per cycle: a list of (word, cycle accepted); the head may
    leave once ``delay`` cycles old; on an empty FIFO with ``delay == 0`` the input passes through.
    A :class:`BypassFifo` is the same with ``delay == 0``."""

    def __init__(self, depth: int, delay: int):
        self.depth, self.delay = depth, delay
        self.queue: list[tuple[int, int]] = []
        self.error = False

    def cycle(self, now: int, in_valid: bool, in_word, out_ready: bool) -> tuple[bool, bool, int | None]:
        """(i.ready, o.valid, o.payload when valid) of this cycle; then the registers update."""
        if self.queue:
            o_valid, o_word = now >= self.queue[0][1] + self.delay, self.queue[0][0]
        else:
            o_valid, o_word = in_valid and self.delay == 0, in_word
        pop = o_valid and out_ready
        i_ready = len(self.queue) < self.depth or pop
        if in_valid and i_ready:
            self.queue.append((in_word, now))
        elif in_valid:
            self.error = True
        if pop:
            self.queue.pop(0)
        return i_ready, o_valid, o_word if o_valid else None


def lockstep(dut, model: FifoModel, levels: list[int]):
    """A probe comparing ``dut`` with ``model`` on every cycle."""

    def probe(ctx, cycle, in_valid, in_word, out_ready):
        assert bool(ctx.get(dut.error)) == model.error, f"cycle {cycle}: error flag"
        i_ready, o_valid, o_word = model.cycle(cycle, in_valid, in_word, out_ready)
        got = (bool(ctx.get(dut.i.ready)), bool(ctx.get(dut.o.valid)))
        assert got == (i_ready, o_valid), (
            f"cycle {cycle}: (i.ready, o.valid) {got}, model {(i_ready, o_valid)}"
        )
        if o_valid:
            assert ctx.get(dut.o.payload) == o_word, f"cycle {cycle}: wrong word out"
        levels.append(len(model.queue))

    return probe


@pytest.mark.parametrize("depth", [1, 2, 5, 16])
@pytest.mark.parametrize(("gap", "ready"), [(0.0, 1.0), (0.3, 0.6), (0.1, 0.3), (0.6, 0.9)])
def test_bypass_fifo_against_model(depth: int, gap: float, ready: float) -> None:
    words = random_words(random.Random(depth), 400)
    dut, model, levels = BypassFifo(WORD, depth), FifoModel(depth, 0), []
    run = run_stream(
        dut, words, gap=gap, ready=ready, seed=depth + int(gap * 10), probe=lockstep(dut, model, levels)
    )
    assert run.out_words == words
    assert max(levels) <= depth
    if ready == 1.0:
        assert run.out_cycles == run.accepted  # latency 0: a word passes on the cycle it arrives
    elif ready <= 0.6:
        assert max(levels) == depth  # the test reached a full FIFO (and refused words: error)
        assert model.error


def test_bypass_fifo_rejects_bad_depth() -> None:
    with pytest.raises(TypeError, match=r"^FIFO depth must be a positive integer, not 0$"):
        BypassFifo(WORD, 0)


def align_delays(depth: int) -> list[int]:
    return sorted({0, 1, 2, depth // 2, depth - 1, depth})


@pytest.mark.parametrize("target", ["tiny", "virtex6"])
@pytest.mark.parametrize("gap", [0.0, 0.5])
def test_align_delay_exact_latency(target: str, gap: float) -> None:
    depth = load_target(target).tile.fifo_depth
    for delay in align_delays(depth):
        words = random_words(random.Random(delay), 250)
        dut, model, levels = AlignDelay(WORD, depth), FifoModel(depth, delay), []
        run = run_stream(
            dut,
            words,
            gap=gap,
            ready=1.0,
            seed=delay,
            config=[(dut.delay, delay)],
            probe=lockstep(dut, model, levels),
        )
        assert run.out_words == words, f"delay {delay}"
        assert run.accepted == run.offered, f"delay {delay}: refused a word without back-pressure"
        assert run.out_cycles == [t + delay for t in run.accepted], f"delay {delay}"
        assert max(levels) <= delay
        if gap == 0.0:
            assert max(levels) == delay  # a word every cycle: the FIFO is exactly ``delay`` long


@pytest.mark.parametrize("target", ["tiny", "virtex6"])
@pytest.mark.parametrize(("gap", "ready"), [(0.3, 0.6), (0.05, 0.2), (0.5, 0.9)])
def test_align_delay_back_pressure(target: str, gap: float, ready: float) -> None:
    depth = load_target(target).tile.fifo_depth
    for delay in align_delays(depth):
        words = random_words(random.Random(1000 + delay), 200)
        dut, model, levels = AlignDelay(WORD, depth), FifoModel(depth, delay), []
        run = run_stream(
            dut,
            words,
            gap=gap,
            ready=ready,
            seed=delay + 7,
            config=[(dut.delay, delay)],
            probe=lockstep(dut, model, levels),
        )
        assert run.out_words == words, f"delay {delay}"
        assert all(o >= a + delay for o, a in zip(run.out_cycles, run.accepted, strict=True))
        assert max(levels) <= depth


def test_align_delay_overflow_and_clear() -> None:
    depth, delay = 4, 2
    dut = AlignDelay(WORD, depth)

    async def bench(ctx):
        ctx.set(dut.delay, delay)
        ctx.set(dut.o.ready, 0)
        for n in range(depth):  # fill the FIFO: every word accepted
            ctx.set(dut.i.payload, 100 + n)
            ctx.set(dut.i.valid, 1)
            assert ctx.get(dut.i.ready)
            await ctx.tick()
        ctx.set(dut.i.payload, 999)
        assert not ctx.get(dut.i.ready)  # full: the fifth word is refused...
        assert not ctx.get(dut.error)
        await ctx.tick()
        assert ctx.get(dut.error)  # ...and flagged, sticky
        ctx.set(dut.i.valid, 0)
        await ctx.tick().repeat(3)
        assert ctx.get(dut.error)
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 100
        ctx.set(dut.clear, 1)
        assert not ctx.get(dut.o.valid) and not ctx.get(dut.i.ready)  # nothing moves on a clear cycle
        await ctx.tick()
        ctx.set(dut.clear, 0)
        assert not ctx.get(dut.error)
        assert not ctx.get(dut.o.valid)  # emptied
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.payload, 7)
        ctx.set(dut.i.valid, 1)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        seen = []
        for _ in range(delay + 3):
            seen.append((ctx.get(dut.o.valid), ctx.get(dut.o.payload)))
            await ctx.tick()
        assert [s[0] for s in seen] == [0] * (delay - 1) + [1] + [0] * 3
        assert seen[delay - 1][1] == 7

    simulate(dut, bench)


def test_align_delay_rejects_bad_depth() -> None:
    with pytest.raises(TypeError, match=r"^Alignment FIFO depth must be a positive integer, not 0$"):
        AlignDelay(WORD, 0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: DelayLine(WORD, 0),
        lambda: DelayLine(WORD, 4),
        lambda: BypassFifo(WORD, 1),
        lambda: AlignDelay(WORD, 1),
    ],
)
def test_pipeline_blocks_elaborate(make) -> None:
    assert "module" in rtlil.convert(make())
