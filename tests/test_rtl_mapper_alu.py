# amaranth: UnusedElaboratable=no
"""RTL mapper and ALU (``nfc.rtl.mapper``, ``nfc.rtl.alu``) against naive golden models.

The golden models below are written out on Python integers, one word at a time, straight from the
contract of ``nfc.numerics`` (and checked against it where numpy's ``int64`` is wide enough). The
blocks run on thousands of random words, extremes included, with random gaps in ``valid`` and
random ``ready`` on the output; without back-pressure the latencies (``MAP_LATENCY``,
``ALU_LATENCY``) are checked to the cycle.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest
from amaranth.back import rtlil, verilog
from amaranth.hdl import Module
from amaranth.sim import Simulator
from rtl_streams import run_streams, simulate

from nfc.arch import load_target
from nfc.compiler.encode import ALU_OPS
from nfc.compiler.pwl import SLOPE_BITS, fit_function
from nfc.compiler.timing import ALU_LATENCY, MAP_LATENCY
from nfc.numerics import QFormat, alu_shifts, alu_words, map_words
from nfc.rtl.alu import Alu
from nfc.rtl.mapper import Mapper

TARGETS = ["tiny", "virtex6"]

# -- golden models ----------------------------------------------------------------------------------


def ref_round_shift(v: int, shift: int) -> int:
    if shift > 0:
        return (v + (1 << (shift - 1))) >> shift
    return v << -shift


def ref_saturate(v: int, bits: int) -> int:
    return max(-(1 << (bits - 1)), min((1 << (bits - 1)) - 1, v))


@dataclass
class MapConfig:
    segments: int
    thresholds: list[int]  # all S entries; [0] and [segments:] are junk the mapper must ignore
    offsets: list[int]
    slopes: list[int]
    shift: int


def ref_map(cfg: MapConfig, x: int, bits: int) -> int:
    seg = 0
    for k in range(1, cfg.segments):
        if cfg.thresholds[k] <= x:
            seg += 1
    return ref_saturate(ref_round_shift(cfg.slopes[seg] * x, cfg.shift) + cfg.offsets[seg], bits)


@dataclass
class AluConfig:
    op: str
    shift_a: int
    shift_b: int
    shift_out: int


def ref_alu(cfg: AluConfig, a: int, b: int, bits: int) -> int:
    if cfg.op == "mul":
        r = a * b
    else:
        x, y = ref_round_shift(a, cfg.shift_a), ref_round_shift(b, cfg.shift_b)
        r = {"add": x + y, "sub": x - y, "max": max(x, y), "min": min(x, y)}[cfg.op]
    return ref_saturate(ref_round_shift(r, cfg.shift_out), bits)


# -- stimulus ---------------------------------------------------------------------------------------


def random_words(rng: random.Random, n: int, bits: int, special: tuple[int, ...] = ()) -> list[int]:
    """Mostly uniform words; one in five from the extremes, small values and ``special``."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    pool = [lo, lo + 1, -2, -1, 0, 1, 2, hi - 1, hi, *special]
    return [rng.choice(pool) if rng.random() < 0.2 else rng.randint(lo, hi) for _ in range(n)]


def random_map_config(rng: random.Random, s: int, bits: int, wild: bool) -> MapConfig:
    """Sorted distinct thresholds, slopes of the compiler's ``SLOPE_BITS``-bit words and shifts it
    can make (``wild``: full 32-bit slopes and any 8-bit shift instead)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    segments = rng.randint(2, s)
    ts = sorted(rng.sample(range(lo, hi + 1), segments - 1))
    if rng.random() < 0.3:  # thresholds at the ends of the range
        ts[0] = lo if rng.random() < 0.5 else ts[0]
        ts[-1] = hi if ts[-1] != lo else ts[-1]
        ts = sorted(set(ts))
        segments = len(ts) + 1
    junk = [rng.randint(lo, hi) for _ in range(s)]
    thresholds = [junk[0], *ts, *junk[segments:]]
    offsets = [rng.choice([lo, hi, 0]) if rng.random() < 0.2 else rng.randint(lo, hi) for _ in range(s)]
    if wild:
        slopes = [
            rng.choice([-(1 << 31), (1 << 31) - 1, rng.randint(-(1 << 31), (1 << 31) - 1)]) for _ in range(s)
        ]
        shift = rng.choice([-128, -127, -40, -18, -17, -16, -1, 0, 1, 46, 47, 48, 49, 50, 126, 127])
    else:
        limit = 1 << (SLOPE_BITS - 1)
        slopes = [rng.randint(-limit, limit - 1) for _ in range(s)]
        shift = rng.randint(0, bits - 1) + rng.randint(0, 24) - rng.randint(0, bits - 1)
    return MapConfig(segments, thresholds, offsets, slopes, shift)


def fitted_map_config(kind: str, s: int, bits: int) -> MapConfig:
    """A mapper configuration as the compiler makes it, for ``kind`` from Q7.8 to Q3.12."""
    pwl = fit_function(kind, {}, QFormat(bits, 8), QFormat(bits, 12), s).pwl
    n = pwl.segments
    return MapConfig(
        n,
        [0, *pwl.thresholds, *[0] * (s - n)],
        [*pwl.offsets, *[0] * (s - n)],
        [*pwl.slopes, *[0] * (s - n)],
        pwl.shift,
    )


# -- golden models against nfc.numerics -------------------------------------------------------------


def test_golden_models_match_numerics() -> None:
    rng = random.Random(1)
    bits = 16
    for _ in range(40):
        cfg = random_map_config(rng, 8, bits, wild=False)
        xs = random_words(rng, 300, bits, tuple(cfg.thresholds))
        want, _ = map_words(
            np.array(xs),
            cfg.thresholds[1 : cfg.segments],
            cfg.slopes[: cfg.segments],
            cfg.offsets[: cfg.segments],
            cfg.shift,
            bits,
        )
        assert [ref_map(cfg, x, bits) for x in xs] == want.tolist()
    for op in ALU_OPS:
        for _ in range(20):
            cfg = AluConfig(op, *alu_shifts(op, *(rng.randint(0, bits - 1) for _ in range(3))))
            a, b = random_words(rng, 300, bits), random_words(rng, 300, bits)
            want, _ = alu_words(op, np.array(a), np.array(b), cfg.shift_a, cfg.shift_b, cfg.shift_out, bits)
            assert [ref_alu(cfg, x, y, bits) for x, y in zip(a, b, strict=True)] == want.tolist()


# -- Mapper -----------------------------------------------------------------------------------------


def mapper_configs(target: str) -> list[MapConfig]:
    arch = load_target(target)
    s, bits = arch.tile.mapper_segments, arch.numerics.word_bits
    rng = random.Random(target)
    return [
        fitted_map_config("tanh", s, bits),
        fitted_map_config("sigmoid", s, bits),
        *(random_map_config(rng, s, bits, wild=False) for _ in range(5)),
        *(random_map_config(rng, s, bits, wild=True) for _ in range(3)),
    ]


def mapper_run(target: str, cfg: MapConfig, n: int, *, gap: float, ready: float, seed: int):
    arch = load_target(target)
    bits = arch.numerics.word_bits
    dut = Mapper(arch)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    edges = tuple(t + d for t in cfg.thresholds for d in (-1, 0, 1) if lo <= t + d <= hi)
    words = random_words(random.Random(seed), n, bits, edges)
    config = [
        (dut.segments, cfg.segments),
        (dut.thresholds, cfg.thresholds),
        (dut.offsets, cfg.offsets),
        (dut.slopes, cfg.slopes),
        (dut.shift, cfg.shift),
    ]
    run = run_streams(dut, {"i": words}, gap=gap, ready=ready, seed=seed, config=config)
    return words, [ref_map(cfg, x, bits) for x in words], run


@pytest.mark.parametrize("target", TARGETS)
def test_mapper_exact_latency(target: str) -> None:
    for k, cfg in enumerate(mapper_configs(target)):
        words, want, run = mapper_run(target, cfg, 300, gap=0.0 if k % 2 else 0.3, ready=1.0, seed=k)
        assert run.out_words == want, f"config {k}: {cfg}"
        assert run.accepted["i"] == run.offered["i"], "refused a word without back-pressure"
        assert run.out_cycles == [t + MAP_LATENCY for t in run.accepted["i"]], f"config {k}"


@pytest.mark.parametrize("target", TARGETS)
def test_mapper_back_pressure(target: str) -> None:
    for k, cfg in enumerate(mapper_configs(target)):
        words, want, run = mapper_run(target, cfg, 300, gap=0.3, ready=0.5, seed=100 + k)
        assert run.out_words == want, f"config {k}: {cfg}"
        accepted = run.accepted["i"]
        assert all(o >= a + MAP_LATENCY for o, a in zip(run.out_cycles, accepted, strict=True))
        # at most MAP_LATENCY words inside: word n leaves no later than word n + 2 is accepted
        assert all(run.out_cycles[j] <= accepted[j + MAP_LATENCY] for j in range(len(words) - MAP_LATENCY))


def test_mapper_saturates_and_ignores_unused_entries() -> None:
    """Hand-made: two segments in use of four, junk thresholds beyond them, both saturation ends."""
    cfg = MapConfig(2, [30000, 0, -5, -7], [100, -50, 32767, 32767], [3, 1 << 20, 0, 0], 4)
    words = [-32768, -1, 0, 1, 2000, 32767]
    # segment 0 (x < 0): round(3x / 16) + 100; segment 1: round(x * 2**16) - 50, saturated
    want = [-6044, 100, -50, 32767, 32767, 32767]
    assert [ref_map(cfg, x, 16) for x in words] == want
    arch = load_target("tiny")
    dut = Mapper(arch)
    config = [
        (dut.segments, 2),
        (dut.thresholds, cfg.thresholds),
        (dut.offsets, cfg.offsets),
        (dut.slopes, cfg.slopes),
        (dut.shift, cfg.shift),
    ]
    run = run_streams(dut, {"i": words}, gap=0.0, ready=1.0, seed=0, config=config)
    assert run.out_words == want


def test_mapper_shift_extremes() -> None:
    """Every end of the shifter: left shifts around and far past the word width (small products
    that only just saturate, or not), right shifts around the product width, with offsets that
    pull back into range. Each configuration streams its words back to back; outputs at +2."""
    arch = load_target("tiny")
    bits = arch.numerics.word_bits
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    dut = Mapper(arch)
    words = [-2, -1, 0, 1, 2, 3, lo, hi]
    shifts = [-128, -bits - 2, -bits - 1, -bits, -bits + 1, -1, 0, 1, 46, 47, 48, 49, 127]
    slopes = [1, -1, 3, -(1 << 31), (1 << 31) - 1]
    offsets = [lo, -100, -2, 0, 1, hi]
    checked = []

    async def bench(ctx):
        ctx.set(dut.segments, 1)
        ctx.set(dut.o.ready, 1)
        for shift in shifts:
            for slope in slopes:
                for offset in offsets:
                    cfg = MapConfig(1, [0] * 4, [offset] * 4, [slope] * 4, shift)
                    ctx.set(dut.shift, shift)
                    ctx.set(dut.slopes, cfg.slopes)
                    ctx.set(dut.offsets, cfg.offsets)
                    got = []
                    for x in [*words, None, None]:
                        ctx.set(dut.i.valid, x is not None)
                        ctx.set(dut.i.payload, x or 0)
                        if ctx.get(dut.o.valid):
                            got.append(ctx.get(dut.o.payload))
                        await ctx.tick()
                    assert got == [ref_map(cfg, x, bits) for x in words], (
                        f"shift {shift} slope {slope} offset {offset}"
                    )
                    checked.append(len(got))

    simulate(dut, bench)
    assert sum(checked) == len(shifts) * len(slopes) * len(offsets) * len(words)


def test_round_shift_and_saturate() -> None:
    """The rounding and saturation helpers on their own, for every 8-bit shift: exact wherever the
    left shift is at most ``max_left``, clamped to ``max_left`` beyond."""
    from amaranth.hdl import Signal, signed

    from nfc.rtl.alu import round_shift, saturate

    top = Module()
    v, s = Signal(signed(20)), Signal(signed(8))
    r, y = Signal(signed(64)), Signal(signed(8))
    top.d.comb += [r.eq(round_shift(v, s, max_left=9)), y.eq(saturate(r, 8))]
    rng = random.Random(3)
    values = [-(1 << 19), -(1 << 19) + 1, -(1 << 18), -3, -2, -1, 0, 1, 2, 3, 5, 6, 7, (1 << 19) - 1]
    values += [rng.randint(-(1 << 19), (1 << 19) - 1) for _ in range(10)]

    async def bench(ctx):
        for shift in range(-128, 128):
            ctx.set(s, shift)
            for value in values:
                ctx.set(v, value)
                want = ref_round_shift(value, max(shift, -9))
                assert ctx.get(r) == want, f"round_shift({value}, {shift})"
                assert ctx.get(y) == ref_saturate(want, 8)

    sim = Simulator(top)
    sim.add_testbench(bench)
    sim.run()


# -- ALU --------------------------------------------------------------------------------------------


def alu_configs(rng: random.Random, bits: int) -> list[AluConfig]:
    """Per op: two configurations from ``alu_shifts`` and one at the edges of the supported range."""
    configs = []
    for op in ALU_OPS:
        for _ in range(2):
            configs.append(AluConfig(op, *alu_shifts(op, *(rng.randint(0, bits - 1) for _ in range(3)))))
        configs.append(
            AluConfig(
                op,
                rng.choice([-bits, -bits + 1, 0, 1, bits, bits + 1, 100]),
                rng.choice([-bits, -3, 2, bits - 1, 127]),
                rng.choice([-128, -bits - 1, -bits, -1, 2 * bits, 2 * bits + 1, 2 * bits + 2, 127]),
            )
        )
    return configs


def alu_run(arch, cfg: AluConfig, n: int, *, gap: float, ready: float, seed: int, ahead: int | None):
    bits = arch.numerics.word_bits
    rng = random.Random(seed)
    a, b = random_words(rng, n, bits), random_words(rng, n, bits)
    dut = Alu(arch)
    config = [
        (dut.op, ALU_OPS[cfg.op]),
        (dut.shift_a, cfg.shift_a),
        (dut.shift_b, cfg.shift_b),
        (dut.shift_out, cfg.shift_out),
    ]
    run = run_streams(dut, {"a": a, "b": b}, gap=gap, ready=ready, seed=seed, config=config, ahead=ahead)
    return [ref_alu(cfg, x, y, bits) for x, y in zip(a, b, strict=True)], run


@pytest.mark.parametrize("target", TARGETS)
def test_alu_exact_latency(target: str) -> None:
    arch = load_target(target)
    depth = arch.tile.fifo_depth
    for k, cfg in enumerate(alu_configs(random.Random(target), arch.numerics.word_bits)):
        want, run = alu_run(arch, cfg, 120, gap=0.4, ready=1.0, seed=k, ahead=depth)
        assert run.out_words == want, f"config {k}: {cfg}"
        for s in "ab":
            assert run.accepted[s] == run.offered[s], f"config {k}: refused a word without back-pressure"
        later = [max(x, y) for x, y in zip(run.accepted["a"], run.accepted["b"], strict=True)]
        assert run.out_cycles == [t + ALU_LATENCY for t in later], f"config {k}"
        assert not run.error


@pytest.mark.parametrize("target", TARGETS)
def test_alu_back_pressure(target: str) -> None:
    arch = load_target(target)
    for k, cfg in enumerate(alu_configs(random.Random(target + "bp"), arch.numerics.word_bits)):
        want, run = alu_run(arch, cfg, 120, gap=0.3, ready=0.5, seed=50 + k, ahead=None)
        assert run.out_words == want, f"config {k}: {cfg}"
        later = [max(x, y) for x, y in zip(run.accepted["a"], run.accepted["b"], strict=True)]
        assert all(o >= t + ALU_LATENCY for o, t in zip(run.out_cycles, later, strict=True))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("first", ["a", "b"])
def test_alu_fifo_depth(target: str, first: str) -> None:
    """One input runs exactly ``fifo_depth`` cycles ahead of the other: nothing is refused and the
    FIFO reaches its depth. One cycle more overflows it: ``error`` rises, stays until ``clear``."""
    arch = load_target(target)
    depth, bits = arch.tile.fifo_depth, arch.numerics.word_bits
    second = "b" if first == "a" else "a"
    rng = random.Random(depth)
    words = {s: random_words(rng, 3 * depth, bits) for s in "ab"}
    cfg = AluConfig("sub", 0, 0, 0)
    want = [ref_alu(cfg, x, y, bits) for x, y in zip(words["a"], words["b"], strict=True)]
    dut = Alu(arch)

    async def bench(ctx):
        ctx.set(dut.op, ALU_OPS["sub"])
        ctx.set(dut.o.ready, 1)
        for skew, overflow in ((depth, False), (depth + 1, True)):
            out, refused = [], 0
            for cycle in range(3 * depth + skew):
                n = {first: cycle, second: cycle - skew}
                for s in "ab":
                    ok = 0 <= n[s] < 3 * depth
                    ctx.set(getattr(dut, s).valid, ok)
                    if ok:
                        ctx.set(getattr(dut, s).payload, words[s][n[s]])
                refused += ctx.get(getattr(dut, first).valid) and not ctx.get(getattr(dut, first).ready)
                if ctx.get(dut.o.valid):
                    out.append((cycle, ctx.get(dut.o.payload)))
                await ctx.tick()
            assert bool(ctx.get(dut.error)) == overflow
            if not overflow:
                assert refused == 0
                assert out == [(skew + j + ALU_LATENCY, w) for j, w in enumerate(want)][: len(out)]
                assert len(out) == 3 * depth - 1  # the last one is valid on the next cycle
            else:
                assert refused > 0
            ctx.set(dut.a.valid, 0)
            ctx.set(dut.b.valid, 0)
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            assert not ctx.get(dut.error) and not ctx.get(dut.o.valid)

    simulate(dut, bench)


def test_alu_clear_empties_fifos() -> None:
    """Words waiting for a partner are dropped by ``clear``: the next pass starts paired afresh."""
    arch = load_target("tiny")
    dut = Alu(arch)

    async def bench(ctx):
        ctx.set(dut.op, ALU_OPS["add"])
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.a.valid, 1)
        for w in (5, 6, 7):  # three words of a, no partner
            ctx.set(dut.a.payload, w)
            await ctx.tick()
        ctx.set(dut.a.valid, 0)
        assert not ctx.get(dut.o.valid)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        ctx.set(dut.a.valid, 1)
        ctx.set(dut.a.payload, 100)
        ctx.set(dut.b.valid, 1)
        ctx.set(dut.b.payload, 1)
        await ctx.tick()
        ctx.set(dut.a.valid, 0)
        ctx.set(dut.b.valid, 0)
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 101
        await ctx.tick()
        assert not ctx.get(dut.o.valid)

    simulate(dut, bench)


# -- both -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_mapper_and_alu_convert_to_verilog(target: str) -> None:
    arch = load_target(target)
    assert "module" in rtlil.convert(Mapper(arch))
    assert "module" in verilog.convert(Alu(arch))
