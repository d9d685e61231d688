# amaranth: UnusedElaboratable=no
"""RTL pooling unit (``nfc.rtl.pool``) against a golden model, word by word and cycle by cycle.

:func:`golden` writes the contract out window by window on Python integers with
:mod:`nfc.numerics` (``round_shift`` round half up, saturation to a word): max, or
``sat(bias + round_shift(sum * weight, shift))``, then the optional ``out_shift``. Every case
checks each output word and the exact cycle it is valid on (``POOL_LATENCY`` after the acceptance
of the word completing its window) and that ``o.valid`` is low on every other cycle. Many cases
run in a row on one simulator, each started by a ``clear`` pulse (with a junk word offered on it):
passes aborted half-way, back-to-back passes and configuration changes check that no state leaks.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Shape
from amaranth.sim import Simulator

from nfc.arch import ArchConfig, load_target
from nfc.numerics import round_shift, saturate
from nfc.rtl.pool import POOL_LATENCY, Pooler

TINY = load_target("tiny")
W = TINY.numerics.word_bits
LO, HI = -(1 << (W - 1)), (1 << (W - 1)) - 1


# ---------------------------------------------------------------------------------------------------
# golden model
# ---------------------------------------------------------------------------------------------------
def rshift(v: int, shift: int) -> int:
    """:func:`nfc.numerics.round_shift` of a Python integer. Where numpy's ``int64`` cannot hold the
    result (the extreme shifts of the 8-bit fields) the same formula on Python integers."""
    if -24 <= shift <= 62 and abs(v) < 1 << 38:
        return int(round_shift(v, shift))
    return (v + (1 << (shift - 1))) >> shift if shift > 0 else v << -shift


def sat(v: int) -> int:
    """:func:`nfc.numerics.saturate` to a word (values beyond ``int64`` clamp the same way)."""
    v = min(max(v, LO - 1), HI + 1)
    return int(saturate(v, W)[0])


@dataclass
class Case:
    """One pass of the pooler: configuration, input map and how it is driven."""

    mode: int  # 0 sum, 1 max
    p: int
    x: list[list[int]]  # rows x cols words
    weight: int = 1
    shift: int = 0
    bias: int = 0
    out_shift: int = 0
    apply_out_shift: bool = False
    gap: float = 0.0  # probability of idle cycles before a word
    send: int | None = None  # words sent (None: the whole map; fewer: an aborted pass)
    tail: int = 3  # idle cycles after the last word, before the next case's clear

    @property
    def rows(self) -> int:
        return len(self.x)

    @property
    def cols(self) -> int:
        return len(self.x[0])

    def words(self) -> list[int]:
        flat = [w for row in self.x for w in row]
        return flat if self.send is None else (flat * 2)[: self.send]

    def completing(self) -> list[int]:
        """Index of the input word completing each window, row-major over the windows."""
        p, oh, ow = self.p, self.rows // self.p, self.cols // self.p
        return [(i * p + p - 1) * self.cols + j * p + p - 1 for i in range(oh) for j in range(ow)]


def golden(c: Case) -> list[int]:
    """The output words, window by window, from the formulas of the contract."""
    p, out = c.p, []
    for i in range(c.rows // p):
        for j in range(c.cols // p):
            taps = [c.x[i * p + a][j * p + b] for a in range(p) for b in range(p)]
            if c.mode:
                v = max(taps)
            else:
                v = sat(c.bias + rshift(sum(taps) * c.weight, c.shift))
            if c.apply_out_shift:
                v = sat(rshift(v, c.out_shift))
            out.append(v)
    return out


def test_golden_model():
    # 2x2 average of a 3x5 map: weight 1/4 as 2**14 with 16 fraction bits dropped
    x = [[1, 2, 3, 4, 99], [5, 6, 7, 9, 99], [99] * 5]
    c = Case(mode=0, p=2, x=x, weight=1 << 14, shift=16)
    assert golden(c) == [4, 6]  # 14/4 = 3.5 rounds up to 4; 23/4 = 5.75 -> 6
    assert golden(dataclasses.replace(c, mode=1)) == [6, 9]
    assert golden(dataclasses.replace(c, bias=HI)) == [HI, HI]
    assert golden(dataclasses.replace(c, mode=1, apply_out_shift=True, out_shift=-13)) == [HI, HI]
    assert golden(dataclasses.replace(c, mode=1, apply_out_shift=True, out_shift=2)) == [2, 2]
    assert c.completing() == [6, 8]
    for v in (-(1 << 37), -5, -3, 0, 3, 5, 1 << 37):
        for s in (-128, -24, -1, 0, 1, 2, 40, 62, 63, 127):
            want = (v + (1 << (s - 1))) >> s if s > 0 else v << -s
            assert rshift(v, s) == want


# ---------------------------------------------------------------------------------------------------
# testbench
# ---------------------------------------------------------------------------------------------------
def run_cases(dut: Pooler, cases: list[Case], *, seed: int) -> int:
    """Run every case on one simulator; check every output word and cycle. Returns the number of
    outputs checked."""
    rng = random.Random(seed)
    expected: dict[int, tuple[int, int, int]] = {}  # cycle -> (word, case, window)
    got: dict[int, int] = {}

    async def bench(ctx):
        cycle = 0

        async def step():
            nonlocal cycle
            assert ctx.get(dut.i.ready), f"cycle {cycle}: i.ready low"
            if ctx.get(dut.o.valid):
                got[cycle] = ctx.get(dut.o.payload)
            await ctx.tick()
            cycle += 1

        for n, c in enumerate(cases):
            config = dict(
                mode=c.mode,
                size=c.p,
                weight=c.weight,
                shift=c.shift,
                bias=c.bias,
                out_shift=c.out_shift,
                apply_out_shift=c.apply_out_shift,
                rows=c.rows,
                cols=c.cols,
            )
            for name, value in config.items():
                ctx.set(getattr(dut, name), value)
            ctx.set(dut.clear, 1)
            ctx.set(dut.i.valid, 1)  # a junk word on the clear cycle: ignored
            ctx.set(dut.i.payload, rng.choice([LO, HI, 7]))
            await step()
            ctx.set(dut.clear, 0)
            accepted = []
            for w in c.words():
                if rng.random() < c.gap:
                    ctx.set(dut.i.valid, 0)
                    ctx.set(dut.i.payload, rng.randint(LO, HI))  # junk, not taken
                    for _ in range(rng.choice([1, 1, 1, 2, 3, 9])):
                        await step()
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, w)
                accepted.append(cycle)
                await step()
            ctx.set(dut.i.valid, 0)
            for k, (j, word) in enumerate(zip(c.completing(), golden(c), strict=True)):
                if j < len(accepted):
                    expected[accepted[j] + POOL_LATENCY] = (word, n, k)
            for _ in range(c.tail):
                await step()
        for _ in range(4):
            await step()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for cycle, (word, n, k) in sorted(expected.items()):
        assert cycle in got, f"case {n} ({cases[n].mode=}, {cases[n].p=}): window {k} missing at {cycle}"
        assert got[cycle] == word, f"case {n}: window {k} at cycle {cycle}: {got[cycle]} != {word}"
    extra = sorted(set(got) - set(expected))
    assert not extra, f"o.valid on cycles {extra[:5]} where no window completed"
    return len(expected)


def random_map(rng: random.Random, rows: int, cols: int, big: bool) -> list[list[int]]:
    """Words: the full range with the extremes sprinkled in, or small ones (negative too)."""
    special = [LO, LO + 1, -1, 0, 1, HI - 1, HI]

    def word() -> int:
        if not big:
            return rng.randint(-40, 40)
        return rng.choice(special) if rng.random() < 0.1 else rng.randint(LO, HI)

    return [[word() for _ in range(cols)] for _ in range(rows)]


def random_case(rng: random.Random, *, max_side: int = 12, max_p: int = 4) -> Case:
    p = rng.randint(2, max_p)
    rows, cols = rng.randint(1, max_side), rng.randint(1, max_side)
    big = rng.random() < 0.5
    shift = rng.randint(0, 24) if big else rng.randint(-6, 8)
    out_shift = rng.randint(-3, 6)
    if rng.random() < 0.15:
        shift = rng.choice([-128, -40, -17, -16, 38, 39, 40, 41, 127])
    if rng.random() < 0.15:
        out_shift = rng.choice([-128, -17, -16, -15, 15, 16, 17, 127])
    return Case(
        mode=int(rng.random() < 0.5),
        p=p,
        x=random_map(rng, rows, cols, big),
        weight=rng.choice([rng.randint(LO, HI), rng.randint(-300, 300), (1 << 16) // (p * p)]),
        shift=shift,
        bias=rng.choice([0, rng.randint(LO, HI), rng.randint(-100, 100)]),
        out_shift=out_shift,
        apply_out_shift=rng.random() < 0.5,
        gap=rng.choice([0.0, 0.0, 0.3, 0.7]),
        tail=rng.choice([0, 0, 1, 2, 5]),
    )


# ---------------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------------
def test_pool_directed():
    rng = random.Random(3)
    avg = {2: 1 << 14, 3: 7282, 4: 1 << 12}  # 1 / p**2 with 16 fraction bits
    cases = []
    for mode in (1, 0):
        for p, (rows, cols) in [(2, (7, 9)), (3, (10, 11)), (4, (8, 12)), (2, (6, 6)), (3, (9, 3))]:
            for gap in (0.0, 0.5):
                cases.append(
                    Case(
                        mode=mode, p=p, x=random_map(rng, rows, cols, True), weight=avg[p], shift=16, gap=gap
                    )
                )
    # negative small words, no gaps, sum with a bias and rounding at ties
    neg = [[-rng.randint(1, 9) for _ in range(8)] for _ in range(8)]
    cases += [Case(mode=1, p=2, x=neg), Case(mode=0, p=2, x=neg, weight=1, shift=2, bias=-5)]
    # saturation in sum mode: large weight, both directions
    cases += [
        Case(mode=0, p=3, x=random_map(rng, 6, 6, True), weight=HI, shift=4, gap=0.3),
        Case(mode=0, p=2, x=[[HI] * 4] * 4, weight=HI, shift=0),
        Case(mode=0, p=2, x=[[LO] * 4] * 4, weight=HI, shift=0),
        Case(mode=0, p=2, x=[[LO] * 4] * 4, weight=LO, shift=-20),
    ]
    # long left shifts of small sums that a bias at the other end of the range brings back (or not)
    tiny_sums = [[0, 1, 0, 0, -1, 0], [0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, -2], [0, 0, 0, 0, 0, 0]]
    for shift in (-13, -14, -15, -16, -17, -18, -128):
        cases += [
            Case(mode=0, p=2, x=tiny_sums, weight=1, shift=shift, bias=LO),
            Case(mode=0, p=2, x=tiny_sums, weight=1, shift=shift, bias=HI),
        ]
    # the output shift, both ways, in both modes
    for mode in (0, 1):
        for out_shift in (3, -3, 15, -16, 127, -128):
            cases.append(
                Case(
                    mode=mode,
                    p=2,
                    x=random_map(rng, 5, 5, mode == 1),
                    weight=3,
                    shift=1,
                    out_shift=out_shift,
                    apply_out_shift=True,
                    gap=0.3,
                )
            )
    # extreme windows: all -32768 (max and sum), all 32767; a 15 x 15 window of 225 words
    cases += [
        Case(mode=1, p=4, x=[[LO] * 9] * 9),
        Case(mode=0, p=4, x=[[LO] * 9] * 9, weight=1 << 12, shift=16),
        Case(mode=1, p=15, x=[[LO] * 15] * 15),
        Case(mode=0, p=15, x=[[LO] * 15] * 15, weight=291, shift=16),  # 225 * LO / 225
        Case(mode=0, p=15, x=[[HI] * 16] * 15, weight=1, shift=0, bias=-10),  # saturates
        Case(mode=0, p=15, x=[[HI] * 15] * 16, weight=LO, shift=-1, gap=0.2),
    ]
    # fewer rows or columns than a window: nothing comes out
    cases += [
        Case(mode=1, p=3, x=random_map(rng, 2, 9, True)),
        Case(mode=0, p=3, x=random_map(rng, 9, 2, True)),
    ]
    assert run_cases(Pooler(TINY), cases, seed=4) > 250


def test_pool_state_does_not_leak():
    """Passes aborted half-way (inside a window, a row group and a column group), then a pass with
    another configuration; a complete pass followed at once by the next clear."""
    rng = random.Random(5)
    x = random_map(rng, 9, 9, True)
    cases = [
        Case(mode=1, p=3, x=x, send=9 * 4 + 4, tail=0),  # stops inside window row 1
        Case(mode=0, p=2, x=random_map(rng, 6, 7, True), weight=1 << 14, shift=16, gap=0.3),
        Case(mode=0, p=4, x=x, send=9 * 3 + 5, weight=99, tail=2),
        Case(mode=1, p=2, x=random_map(rng, 4, 4, False), tail=0),  # last output on the next clear
        Case(mode=0, p=3, x=random_map(rng, 7, 8, False), weight=5, shift=-2, bias=17, tail=0),
        Case(mode=1, p=2, x=[[LO] * 5] * 5),
        # words past the map's end complete nothing
        Case(mode=0, p=2, x=random_map(rng, 4, 5, True), weight=1 << 14, shift=16, send=4 * 5 + 12),
        Case(mode=1, p=3, x=random_map(rng, 3, 3, True), send=9 + 9),
    ]
    assert run_cases(Pooler(TINY), cases, seed=6) >= 30


def test_pool_random():
    rng = random.Random(7)
    cases = [random_case(rng) for _ in range(60)]
    for c in rng.sample(cases, 10):
        c.send = rng.randint(0, c.rows * c.cols)  # aborted passes
    assert run_cases(Pooler(TINY), cases, seed=8) > 300


def short_rows_arch(line_buffer_words: int) -> ArchConfig:
    tile = dataclasses.replace(TINY.tile, line_buffer_words=line_buffer_words)
    return dataclasses.replace(TINY, name=f"lb{line_buffer_words}", tile=tile)


@pytest.mark.parametrize("lbw", [8, 6])
def test_pool_full_row_buffer(lbw: int):
    """Rows of ``line_buffer_words`` words use every entry of the row buffer (a power of two deep,
    and not)."""
    rng = random.Random(lbw)
    dut = Pooler(short_rows_arch(lbw))
    assert dut.buffer_depth == lbw // 2
    cases = [
        Case(mode=rng.randint(0, 1), p=2, x=random_map(rng, 7, cols, True), weight=1 << 14, shift=16, gap=g)
        for cols in (lbw, lbw + 1)
        for g in (0.0, 0.4)
    ]
    cases.append(Case(mode=1, p=3, x=random_map(rng, 7, lbw + 1, True)))
    assert run_cases(dut, cases, seed=lbw) >= 40


def test_pool_window_of_one():
    """``size`` 1 (outside the compiler's 2..15): every word is its own window."""
    rng = random.Random(9)
    cases = [
        Case(mode=1, p=1, x=random_map(rng, 3, 5, True), gap=0.3),
        Case(
            mode=0, p=1, x=random_map(rng, 3, 5, True), weight=3, shift=1, out_shift=-1, apply_out_shift=True
        ),
    ]
    assert run_cases(Pooler(TINY), cases, seed=10) == 30


@pytest.mark.parametrize("target", ["tiny", "virtex6"])
def test_pool_ports_and_elaboration(target: str):
    arch = load_target(target)
    dut = Pooler(arch)
    members = dut.signature.members
    want = {
        "mode": 1,
        "size": 4,
        "weight": 16,
        "shift": 8,
        "bias": 16,
        "out_shift": 8,
        "apply_out_shift": 1,
        "rows": 16,
        "cols": 16,
        "clear": 1,
    }
    for name, width in want.items():
        assert members[name].flow.name == "In" and Shape.cast(members[name].shape).width == width, name
    assert members["i"].flow.name == "In" and members["o"].flow.name == "Out"
    assert dut.buffer_depth == arch.tile.line_buffer_words // 2
    assert POOL_LATENCY == 1
    assert "rowbuf" in rtlil.convert(dut, name="pool")


def test_pool_agrees_with_functional_simulator():
    """The golden model, the functional simulator's ``pool_words`` and the cycle model's latency
    (where those exist) describe the same unit."""
    timing = pytest.importorskip("nfc.compiler.timing")
    assert getattr(timing, "POOL_LATENCY", POOL_LATENCY) == POOL_LATENCY
    functional = pytest.importorskip("nfc.sim.functional")
    decode = pytest.importorskip("nfc.compiler.decode")
    if not hasattr(functional, "pool_words") or not hasattr(decode, "DecodedPool"):
        pytest.skip("the functional simulator has no pooling unit")
    rng = random.Random(11)
    for _ in range(40):
        c = random_case(rng)
        c.shift = max(-20, min(40, c.shift))  # numpy int64 in the functional simulator
        c.apply_out_shift = True
        c.out_shift = max(-20, min(40, c.out_shift))
        q = decode.DecodedPool(
            tile=0,
            mode="max" if c.mode else "mac",
            size=c.p,
            rows=c.rows,
            cols=c.cols,
            weight=c.weight,
            shift=c.shift,
            bias=c.bias,
            out_shift=c.out_shift,
        )
        got = functional.pool_words(q, np.array(c.x, dtype=np.int64))
        assert [int(v) for v in np.asarray(got).ravel()] == golden(c), c
