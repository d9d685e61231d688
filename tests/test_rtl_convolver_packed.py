# amaranth: UnusedElaboratable=no
"""Kernel packing in the RTL convolver (``nfc.rtl.convolver``, ``tile.lanes = 2``).

A packed convolver runs two kernels of at most ``m x m`` taps (``m = arch.packed_size``) over one
shared input window: lane 0 on the top-left ``m x m`` cells of the K x K array, lane 1 on the cells
of :func:`~nfc.rtl.convolver.lane_cells`. Checked against the golden model of
``tests/test_rtl_convolver.py`` (plain Python with :mod:`nfc.numerics`), run once per lane with
that lane's kernel, bias and partial sums:

* packed cases on K = 5 (m = 3) and K = 10 (m = 7): blocks 1..m, strides 1..2, dilations 1..2,
  with and without partial sums (the two partial-sum streams arriving at different random times
  within ``fifo_depth`` of their window), saturating values, negative shifts, out_shift on and
  off; every output word of both lanes and its cycle,
  ``max(accept of j(k), accept of psum k, accept of psum1 k) + CONV_LATENCY``;
* random gaps on the inputs and random ``ready`` on both outputs: the same words, the stream
  rules, ``error`` exactly when a word had to wait;
* unpacked mode on a ``lanes = 2`` convolver: the unpacked convolver's words and cycles, ``o1``
  never valid, ``psum1.ready`` low;
* refused configurations (packed with max mode, packed with a block above m).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

from amaranth.hdl import Value
from amaranth.sim import Simulator
from test_rtl_convolver import (
    Case,
    error_after_configs,
    golden,
    random_case,
    random_words,
    regeometry,
    schedule,
    set_config,
)

from nfc.arch import ArchConfig, load_target
from nfc.compiler.timing import CONV_LATENCY
from nfc.rtl.convolver import Convolver, lane_cells, tap_order

TINY = load_target("tiny")


def lanes_arch(k: int) -> ArchConfig:
    """A K x K convolver packing two kernels, with short line buffers and FIFOs."""
    tile = dataclasses.replace(TINY.tile, convolver_size=k, lanes=2, line_buffer_words=16, fifo_depth=4)
    return dataclasses.replace(TINY, name=f"k{k}-lanes2", tile=tile)


K5 = lanes_arch(5)
K10 = lanes_arch(10)


# ---------------------------------------------------------------------------------------------------
# cases, golden model, schedules
# ---------------------------------------------------------------------------------------------------
@dataclass
class PCase(Case):
    """A :class:`Case` with a second lane: kernel, bias and partial sums of lane 1."""

    packed: bool = True
    kernel1: list[int] = field(default_factory=list)  # row-major over the block
    bias1: int = 0
    psum1: list[int] = field(default_factory=list)
    psum1_at: list[int] | None = None
    junk: bool = False  # random weights in the kernel slots neither lane uses
    psum1_delay: int = 0  # other runs: no lane-1 partial sum offered before this cycle


def golden2(c: PCase) -> tuple[list[int], list[int]]:
    """Both lanes' outputs: lane 0 as unpacked, lane 1 the same formulas with its kernel, bias and
    partial sums (nothing when not packed)."""
    lane0 = golden(c)
    if not c.packed:
        return lane0, []
    return lane0, golden(dataclasses.replace(c, kernel=c.kernel1, bias=c.bias1, psum=c.psum1))


def packed_case(rng: random.Random, arch: ArchConfig) -> PCase:
    """A random packed configuration the convolver accepts: blocks 1..m, strides and dilations
    1..2, with its input, both kernels and both partial-sum streams."""
    K, S, lbw = arch.tile.convolver_size, arch.packed_size, arch.tile.line_buffer_words
    base = random_case(rng, arch)
    while True:
        block = (rng.randint(1, S), rng.randint(1, S))
        stride = (rng.randint(1, 2), rng.randint(1, 2))
        dil = (rng.randint(1, 2), rng.randint(1, 2))
        span_h, span_w = (block[0] - 1) * dil[0] + 1, (block[1] - 1) * dil[1] + 1
        rows, cols = span_h + rng.randint(0, 4), span_w + rng.randint(0, 6)
        if (span_h - 1) * cols <= (K - 1) * lbw:
            break
    c = regeometry(rng, base, block=block, stride=stride, dil=dil, rows=rows, cols=cols)
    c = PCase(**{f.name: getattr(c, f.name) for f in dataclasses.fields(Case)})
    c.mode = 0
    n = block[0] * block[1]
    c.kernel1 = random_words(rng, n, rng.random() < 0.5)
    c.bias1 = rng.choice([0, rng.randint(-(1 << 15), (1 << 15) - 1), rng.randint(-100, 100)])
    c.psum1 = random_words(rng, len(c.completing()), rng.random() < 0.5)
    c.junk = rng.random() < 0.5
    return c


def arrivals(rng: random.Random, tj: list[int], depth: int, how: str | int) -> list[int]:
    """Offer cycles of one partial-sum stream: a fixed offset from the window's completing word
    (an integer; ``early``: ``-depth``, ``late``: ``depth``) or a random walk of offsets within
    ``depth``; in order."""
    if isinstance(how, int):
        off = how
    else:
        off = {"early": -depth, "late": depth}.get(how, rng.randint(-depth, depth))
    out, last = [], -1
    for j in tj:
        if how == "random":
            off = max(-depth, min(depth, off + rng.randint(-2, 2)))
        last = max(last + 1, j + off)
        out.append(last)
    return out


def within_contract(streams: list[list[int]], depth: int) -> bool:
    """Each input of a join at most ``depth`` cycles ahead of the join (the latest of them), and at
    most ``depth`` of each waiting at the end of any cycle."""
    joined = [max(ts) for ts in zip(*streams, strict=True)]
    if any(j - a > depth for s in streams for a, j in zip(s, joined, strict=True)):
        return False
    for t in sorted(set().union(*streams)):
        for s in streams:
            if sum(1 for a, j in zip(s, joined, strict=True) if a <= t < j) > depth:
                return False
    return True


def schedule2(rng: random.Random, c: PCase, depth: int, *, gap: float, how=("random", "random")) -> None:
    """Exact offer cycles: data words with random gaps, both partial-sum streams (when used)
    placed independently (``how`` per stream), all within the contract."""
    if not c.packed:
        schedule(rng, c, depth, gap=gap, lateness=how[0])
        return
    n = len(c.words())
    for _ in range(500):
        data_at, t = [], depth + 2
        for _ in range(n):
            while rng.random() < gap:
                t += 1
            data_at.append(t)
            t += 1
        tj = [data_at[j] for j in c.completing()]
        c.data_at = data_at
        if not c.use_psum:
            return
        tp, tp1 = arrivals(rng, tj, depth, how[0]), arrivals(rng, tj, depth, how[1])
        if within_contract([tj, tp, tp1], depth):
            c.psum_at, c.psum1_at = tp, tp1
            return
    raise AssertionError("no schedule within the contract found")


# ---------------------------------------------------------------------------------------------------
# testbench
# ---------------------------------------------------------------------------------------------------
@dataclass
class Seen2:
    out: list[tuple[int, int]] = field(default_factory=list)  # lane 0: (cycle, word)
    out1: list[tuple[int, int]] = field(default_factory=list)  # lane 1
    data_acc: list[int] = field(default_factory=list)
    psum_acc: list[int] = field(default_factory=list)
    psum1_acc: list[int] = field(default_factory=list)
    waited: bool = False
    error: bool = False


def set_config2(ctx, dut: Convolver, c: PCase, rng: random.Random, arch: ArchConfig) -> None:
    """The unpacked configuration, then ``packed``, ``bias1`` and lane 1's weights in the kernel
    slots of :func:`lane_cells` (and, with ``junk``, random weights in the slots no lane uses)."""
    set_config(ctx, dut, c)
    K, S = arch.tile.convolver_size, arch.packed_size
    ctx.set(dut.packed, c.packed)
    ctx.set(dut.bias1, c.bias1)
    if not c.packed:
        return
    cells = lane_cells(K, S)
    for t, w in enumerate(tap_order(c.kernel1, c.block, S)):
        ctx.set(dut.kernel[cells[t]], w)
    if c.junk:
        bh, bw = c.block
        used = {q * K + n for q in range(bh) for n in range(bw)}
        used |= {cells[q * S + n] for q in range(bh) for n in range(bw)}
        for i in range(K * K):
            if i not in used:
                ctx.set(dut.kernel[i], rng.randint(-(1 << 15), (1 << 15) - 1))


def run2(
    dut: Convolver, arch: ArchConfig, cases: list[PCase], *, seed: int, gap: float = 0.0, ready: float = 1.0
) -> list[Seen2]:
    """Run every case on one simulator (as ``run_cases`` of ``tests/test_rtl_convolver.py``, with
    the second partial-sum stream and output). Cases with ``data_at`` are driven exactly on those
    cycles (every word must be taken when offered); the others with random gaps, each word held
    until taken. ``o.ready`` and ``o1.ready`` are high, independently, with probability ``ready``.
    Cycles are counted from the cycle after the case's ``clear``."""
    rng = random.Random(seed)
    seen = [Seen2() for _ in cases]
    d_pay, p_pay, p1_pay = (Value.cast(s.payload) for s in (dut.data, dut.psum, dut.psum1))
    o_pay, o1_pay = Value.cast(dut.o.payload), Value.cast(dut.o1.payload)

    async def bench(ctx):
        for c, s in zip(cases, seen, strict=True):
            set_config2(ctx, dut, c, rng, arch)
            ctx.set(dut.clear, 1)
            for port in (dut.data.valid, dut.psum.valid, dut.psum1.valid):
                ctx.set(port, 0)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            want0, want1 = golden2(c)
            words = c.words()
            psums = c.psum if c.use_psum else []
            psums1 = c.psum1 if c.use_psum and c.packed else []
            exact = c.data_at is not None
            nd = np0 = np1 = 0
            dh = ph = ph1 = False
            held = held1 = None
            cycle, done_at = 0, None
            while done_at is None or cycle < done_at + 8:
                assert cycle < 100 * (len(words) + 20), "the convolver stopped moving words"
                if exact:
                    dh = nd < len(words) and c.data_at[nd] == cycle
                    ph = np0 < len(psums) and c.psum_at[np0] == cycle
                    ph1 = np1 < len(psums1) and c.psum1_at[np1] == cycle
                else:
                    dh = dh or (nd < len(words) and cycle >= c.data_delay and rng.random() >= gap)
                    ph = ph or (np0 < len(psums) and cycle >= c.psum_delay and rng.random() >= gap)
                    ph1 = ph1 or (np1 < len(psums1) and cycle >= c.psum1_delay and rng.random() >= gap)
                if dh:
                    ctx.set(d_pay, words[nd])
                if ph:
                    ctx.set(p_pay, psums[np0])
                if ph1:
                    ctx.set(p1_pay, psums1[np1])
                # psum1 unused: a word offered there is never taken, and never counts
                stray = not (c.packed and c.use_psum) and rng.random() < 0.3
                ctx.set(dut.data.valid, dh)
                ctx.set(dut.psum.valid, ph)
                ctx.set(dut.psum1.valid, ph1 or stray)
                r0 = done_at is not None or rng.random() < ready
                r1 = done_at is not None or rng.random() < ready
                ctx.set(dut.o.ready, r0)
                ctx.set(dut.o1.ready, r1)
                # observe
                for port, pay, ready_, out, name in (
                    (dut.o, o_pay, r0, s.out, "o"),
                    (dut.o1, o1_pay, r1, s.out1, "o1"),
                ):
                    valid, word = ctx.get(port.valid), ctx.get(pay)
                    prev = held if name == "o" else held1
                    if prev is not None:
                        assert valid and word == prev, f"cycle {cycle}: {name} withdrew a word"
                    now = None
                    if valid:
                        if ready_:
                            assert done_at is None, f"cycle {cycle}: an extra {name} word {word}"
                            out.append((cycle, word))
                        else:
                            now = word
                    if name == "o":
                        held = now
                    else:
                        held1 = now
                if not (c.packed and c.use_psum):
                    assert not ctx.get(dut.psum1.ready), f"cycle {cycle}: psum1 ready"
                if dh:
                    if ctx.get(dut.data.ready):
                        s.data_acc.append(cycle)
                        nd, dh = nd + 1, False
                    else:
                        s.waited = True
                        assert not exact, f"cycle {cycle}: data word {nd} refused"
                for which in (0, 1):
                    hold, port = (ph, dut.psum) if which == 0 else (ph1, dut.psum1)
                    if not hold:
                        continue
                    if ctx.get(port.ready):
                        if which == 0:
                            s.psum_acc.append(cycle)
                            np0, ph = np0 + 1, False
                        else:
                            s.psum1_acc.append(cycle)
                            np1, ph1 = np1 + 1, False
                    else:
                        s.waited = True
                        assert not exact, f"cycle {cycle}: partial sum {which} refused"
                await ctx.tick()
                cycle += 1
                if (
                    done_at is None
                    and (len(s.out), len(s.out1)) == (len(want0), len(want1))
                    and (nd, np0, np1) == (len(words), len(psums), len(psums1))
                ):
                    done_at = cycle
            s.error = bool(ctx.get(dut.error))
        for port in (dut.data.valid, dut.psum.valid, dut.psum1.valid):
            ctx.set(port, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


def check2(c: PCase, s: Seen2, *, exact: bool) -> None:
    want0, want1 = golden2(c)
    assert [w for _, w in s.out] == want0, c
    assert [w for _, w in s.out1] == want1, c
    assert s.error == (s.waited or c.extra_words > 0), c
    if not exact:
        return
    assert not s.waited
    tj = [s.data_acc[j] for j in c.completing()]
    if c.use_psum:
        joins = [tj, s.psum_acc] + ([s.psum1_acc] if c.packed else [])
        tj = [max(ts) for ts in zip(*joins, strict=True)]
    want_at = [t + CONV_LATENCY for t in tj]
    assert [t for t, _ in s.out] == want_at, c
    if c.packed:
        assert [t for t, _ in s.out1] == want_at, c


# ---------------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------------
def test_lane_cells():
    for k, m in ((5, 3), (10, 7), (3, 2)):
        cells = lane_cells(k, m)
        assert len(cells) == k * k - m * m >= m * m
        assert cells == sorted(set(cells))
        assert all(0 <= c < k * k and (c // k >= m or c % k >= m) for c in cells)
    assert len(lane_cells(10, 7)) == 51 and len(lane_cells(5, 3)) == 16
    assert lane_cells(5, 3)[:9] == [3, 4, 8, 9, 13, 14, 15, 16, 17]
    assert K5.packed_size == 3 and K10.packed_size == 7


def test_members():
    """lanes == 1: the members of the NeuFlow convolver only; lanes == 2: four more."""
    one = set(
        Convolver(dataclasses.replace(K5, tile=dataclasses.replace(K5.tile, lanes=1))).signature.members
    )
    two = set(Convolver(K5).signature.members)
    assert "packed" not in one and two - one == {"packed", "bias1", "psum1", "o1"}


def test_packed_exact_cycles_k5():
    """ready high: both lanes' words and cycles, every word taken when offered, no error."""
    arch = K5
    rng = random.Random(101)
    D = arch.tile.fifo_depth
    cases = []
    for _ in range(26):
        c = packed_case(rng, arch)
        schedule2(rng, c, D, gap=rng.choice([0.0, 0.3]))
        cases.append(c)
    # every word completes a window: the FIFOs fill to fifo_depth; each of the three inputs of the
    # join the latest by fifo_depth, or all at once
    for how in (("early", 0), (0, "early"), (D, 0), (0, D), ("early", "early"), ("late", "late"), (0, 0)):
        c = packed_case(rng, arch)
        c = regeometry(rng, c, block=(1, 1), stride=(1, 1), dil=(1, 1), rows=3, cols=12)
        c.kernel1 = random_words(rng, 1, True)
        c.psum1 = random_words(rng, len(c.completing()), True)
        c.use_psum = True
        schedule2(rng, c, D, gap=0.0, how=how)
        cases.append(c)
    # tiny words moved far left: saturation from some distance on, in both lanes
    for shift, out_shift in ((-14, 0), (0, -15), (-3, -12)):
        c = packed_case(rng, arch)
        c.shift, c.out_shift, c.apply_out_shift = shift, out_shift, True
        c.bias, c.bias1 = rng.randint(-2, 2), rng.randint(-2, 2)
        c.kernel = [rng.randint(-1, 1) for _ in c.kernel]
        c.kernel1 = [rng.randint(-1, 1) for _ in c.kernel1]
        c.x = [[rng.randint(-2, 2) for _ in row] for row in c.x]
        schedule2(rng, c, D, gap=0.2)
        cases.append(c)
    # the largest block, saturating words
    c = packed_case(rng, arch)
    c = regeometry(rng, c, block=(3, 3), stride=(1, 1), dil=(2, 2), rows=7, cols=8)
    c.kernel, c.kernel1 = random_words(rng, 9, True), random_words(rng, 9, True)
    c.x = [random_words(rng, 8, True) for _ in range(7)]
    c.shift, c.apply_out_shift = 2, False
    schedule2(rng, c, D, gap=0.0)
    cases.append(c)
    assert sum(c.use_psum for c in cases) >= 10 and sum(not c.use_psum for c in cases) >= 5
    for c, s in zip(cases, run2(Convolver(arch), arch, cases, seed=7), strict=True):
        check2(c, s, exact=True)


def test_packed_back_pressure_k5():
    """Random gaps on the three inputs and random ready on each output: the same words, the stream
    rules, error exactly when a word had to wait."""
    arch = K5
    rng = random.Random(202)
    cases = [packed_case(rng, arch) for _ in range(14)]
    seen = run2(Convolver(arch), arch, cases, seed=9, gap=0.3, ready=0.3)
    for c, s in zip(cases, seen, strict=True):
        check2(c, s, exact=False)
    assert sum(s.waited for s in seen) >= 2


def test_unpacked_on_lanes2_matches_unpacked():
    """packed = 0 on a lanes == 2 convolver: the unpacked convolver's words and cycles (blocks up to
    K, mac and max), o1 never valid, psum1 never taken."""
    arch = K5
    rng = random.Random(303)
    D = arch.tile.fifo_depth
    cases = []
    for _ in range(10):
        base = random_case(rng, arch)
        c = PCase(**{f.name: getattr(base, f.name) for f in dataclasses.fields(Case)}, packed=False)
        c.psum1 = random_words(rng, len(c.psum), True)
        schedule(rng, c, D, gap=rng.choice([0.0, 0.3]))
        cases.append(c)
    assert any(c.mode for c in cases) and any(max(c.block) > arch.packed_size for c in cases)
    for c, s in zip(cases, run2(Convolver(arch), arch, cases, seed=11), strict=True):
        check2(c, s, exact=True)
        assert not s.out1


def test_packed_refused_configurations():
    """error: packed with max mode, packed with a block side above m; not for the largest packed
    block or for those configurations unpacked."""
    arch = K5
    S = arch.packed_size
    dut = Convolver(arch)
    good = dict(
        mode=0, packed=1, rows=8, cols=8, block_h=S, block_w=S, stride_h=1, stride_w=1, dil_h=1, dil_w=1
    )
    bad = [dict(good, mode=1), dict(good, block_h=S + 1), dict(good, block_w=S + 1)]
    also_good = [dict(b, packed=0) for b in bad]
    results = error_after_configs(dut, [good, *also_good, *bad])
    assert results == [False] * (1 + len(also_good)) + [True] * len(bad)


def test_packed_psum1_waits_is_error():
    """Lane 1's partial sums far ahead of the data: psum1 has to wait (error), nothing is lost."""
    arch = K5
    rng = random.Random(404)
    c = packed_case(rng, arch)
    c = regeometry(rng, c, block=(1, 1), stride=(1, 1), dil=(1, 1), rows=3, cols=12)
    c.kernel1 = random_words(rng, 1, True)
    c.psum1 = random_words(rng, len(c.completing()), True)
    c.use_psum = True
    c.data_delay = c.psum_delay = arch.tile.fifo_depth + 15
    s = run2(Convolver(arch), arch, [c], seed=13, gap=0.0, ready=1.0)[0]
    check2(c, s, exact=False)
    assert s.waited and s.error


def test_packed_exact_cycles_k10():
    """K = 10, m = 7: a few packed cases, largest block included, with and without partial sums."""
    arch = K10
    rng = random.Random(501)
    D = arch.tile.fifo_depth
    cases = []
    for i in range(3):
        c = packed_case(rng, arch)
        if i == 0:
            c = regeometry(rng, c, block=(7, 7), stride=(1, 2), dil=(1, 1), rows=8, cols=9)
            c.kernel1 = random_words(rng, 49, False)
            c.psum1 = random_words(rng, len(c.completing()), True)
            c.junk = True
        c.use_psum = i != 1
        schedule2(rng, c, D, gap=0.2)
        cases.append(c)
    for c, s in zip(cases, run2(Convolver(arch, max_dilation=2), arch, cases, seed=17), strict=True):
        check2(c, s, exact=True)


def test_verilog_lanes2():
    from amaranth.back import verilog

    text = verilog.convert(Convolver(K5, max_dilation=2), name="conv")
    assert "psum1" in text and "o1" in text
