"""Driving RTL blocks' streams in Amaranth's simulator, shared by the unit tests.

:func:`run_streams` offers words on a block's input streams with random gaps, takes its output
``o`` with random ``ready``, checks the stream rule on every cycle (an offered output word stays
offered, unchanged, until taken) and records when every word was offered, accepted and output.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from amaranth.hdl import ClockDomain, Module, Value
from amaranth.sim import Simulator


@dataclass
class Run:
    """Per input: cycles each word was first offered and accepted; output words with cycles."""

    offered: dict[str, list[int]] = field(default_factory=dict)
    accepted: dict[str, list[int]] = field(default_factory=dict)
    out: list[tuple[int, int]] = field(default_factory=list)
    error: bool = False

    @property
    def out_words(self) -> list[int]:
        return [w for _, w in self.out]

    @property
    def out_cycles(self) -> list[int]:
        return [c for c, _ in self.out]


def run_streams(
    dut,
    inputs: dict[str, list[int]],
    *,
    gap: float,
    ready: float,
    seed: int,
    config: list[tuple] = (),
    ahead: int | None = None,
    probe: Callable | None = None,
    tail: int = 30,
    patience: int = 100,
) -> Run:
    """Drive the input streams ``inputs`` (attribute name -> words; each gets a gap before a word with
    probability ``gap``) and take ``dut.o`` (``ready`` with probability ``ready``) until every word
    came out, then ``tail`` cycles with ``ready`` high in which nothing may come out. With ``ahead``,
    an input does not offer its word ``n`` before every other input accepted word ``n - ahead``
    (partners at most ``ahead`` words apart). Checks every cycle that an offered output word stays
    offered, unchanged, until taken. ``dut.error`` (if any) is sampled at the end.
    ``probe(ctx, cycle, holding, offered, out_ready)`` runs every cycle after the inputs are set
    (``holding``: input name -> a word is offered; ``offered``: input name -> that word or None), for
    lockstep models. The run fails if the block stops moving words for ``patience`` cycles a word."""
    rng = random.Random(seed)
    names = list(inputs)
    expected = min(len(w) for w in inputs.values())
    run = Run({k: [] for k in names}, {k: [] for k in names})
    payloads = {k: Value.cast(getattr(dut, k).payload) for k in names}  # struct payloads too
    o_payload = Value.cast(dut.o.payload)

    async def bench(ctx):
        for port, value in config:
            ctx.set(port, value)
        cycle, held, done_at = 0, None, None
        holding = dict.fromkeys(names, False)
        while done_at is None or cycle < done_at + tail:
            assert cycle < patience * expected + 1000, "the block stopped moving words"
            for k in names:
                n = len(run.accepted[k])
                lagging = min(len(run.accepted[j]) for j in names)
                if not holding[k] and n < len(inputs[k]) and rng.random() >= gap:
                    if ahead is None or n < lagging + ahead:
                        holding[k] = True
                        ctx.set(payloads[k], inputs[k][n])
                        run.offered[k].append(cycle)
                ctx.set(getattr(dut, k).valid, holding[k])
            out_ready = done_at is not None or rng.random() < ready
            ctx.set(dut.o.ready, out_ready)
            if probe is not None:
                offered = {k: inputs[k][len(run.accepted[k])] if holding[k] else None for k in names}
                probe(ctx, cycle, dict(holding), offered, out_ready)
            o_valid, o_word = ctx.get(dut.o.valid), ctx.get(o_payload)
            if held is not None:
                assert o_valid and o_word == held, f"cycle {cycle}: an offered output word was withdrawn"
            held = None
            for k in names:
                if holding[k] and ctx.get(getattr(dut, k).ready):
                    run.accepted[k].append(cycle)
                    holding[k] = False
            if o_valid:
                if out_ready:
                    assert done_at is None, f"cycle {cycle}: an extra word {o_word} came out"
                    run.out.append((cycle, o_word))
                else:
                    held = o_word
            await ctx.tick()
            cycle += 1
            if done_at is None and len(run.out) == expected:
                done_at = cycle
        if hasattr(dut, "error"):
            run.error = bool(ctx.get(dut.error))

    simulate(dut, bench)
    return run


def simulate(dut, bench) -> None:
    """Run ``bench`` on ``dut`` with a 1 MHz clock (the ``sync`` domain exists even when ``dut`` is
    purely combinational, so the testbench can count cycles)."""
    top = Module()
    top.domains.sync = ClockDomain()
    top.submodules.dut = dut
    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
