# amaranth: UnusedElaboratable=no
"""RTL window counter and convolver (``nfc.rtl.window``, ``nfc.rtl.convolver``) against naive models.

* :class:`~nfc.rtl.window.WindowCounter` against ``_LineBuffer`` of ``sim/naive.py`` (the per-cycle
  reference of the timing contract) on random geometries, with gaps between words, a restart in the
  middle of an input and words past the end (overrun).
* :class:`~nfc.rtl.convolver.Convolver` against :func:`golden`, the formulas of the brief written
  out window by window in plain Python with :mod:`nfc.numerics`: mac and max, blocks 1..K, strides
  1..3, dilations 1..4, saturating sums, negative shifts, partial sums arriving up to
  ``fifo_depth`` cycles before or after their window. Without back-pressure every output's cycle
  is checked: ``max(accept of j(k), accept of partial sum k) + CONV_LATENCY``; with random gaps and
  random ``ready`` on the output, the words and the stream rules; ``error`` against what the
  testbench saw (a word that had to wait, an overrun, a refused configuration).

One simulator per target runs many cases in a row, each started by a ``clear`` pulse.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Value
from amaranth.sim import Simulator

from nfc.arch import ArchConfig, load_target
from nfc.compiler.timing import CONV_LATENCY
from nfc.numerics import round_shift, saturate
from nfc.rtl.convolver import PIPELINE_SLACK, Convolver, tap_order
from nfc.rtl.window import WindowCounter
from nfc.sim.cycle import ContractError
from nfc.sim.naive import _LineBuffer

TINY = load_target("tiny")
W = TINY.numerics.word_bits
LO, HI = -(1 << (W - 1)), (1 << (W - 1)) - 1


def k1_arch() -> ArchConfig:
    """A 1x1 convolver: no line buffer, no register window."""
    return dataclasses.replace(TINY, name="k1", tile=dataclasses.replace(TINY.tile, convolver_size=1))


def k5_arch() -> ArchConfig:
    """A 5x5 convolver with short line buffers and FIFOs (every limit close)."""
    tile = dataclasses.replace(TINY.tile, convolver_size=5, line_buffer_words=16, fifo_depth=4)
    return dataclasses.replace(TINY, name="k5", tile=tile)


# ---------------------------------------------------------------------------------------------------
# the window counter
# ---------------------------------------------------------------------------------------------------
GEOMETRY = ("rows", "cols", "block_h", "block_w", "stride_h", "stride_w", "dil_h", "dil_w")


def test_window_counter_matches_line_buffer():
    rng = random.Random(1)
    dut = WindowCounter(TINY)
    cases = []
    for _ in range(100):
        g = dict(
            rows=rng.randint(1, 14),
            cols=rng.randint(1, 14),
            block_h=rng.randint(1, 4),
            block_w=rng.randint(1, 4),
            stride_h=rng.randint(1, 3),
            stride_w=rng.randint(1, 3),
            dil_h=rng.randint(1, 3),
            dil_w=rng.randint(1, 3),
        )
        # most cases run a whole input and two words more; some stop half-way (the next clear restarts)
        words = g["rows"] * g["cols"] + 2 if rng.random() < 0.8 else rng.randint(0, g["rows"] * g["cols"])
        cases.append((g, words))
    seen_windows = seen_overruns = 0

    async def bench(ctx):
        nonlocal seen_windows, seen_overruns
        for g, words in cases:
            for name, value in g.items():
                ctx.set(getattr(dut, name), value)
            u = SimpleNamespace(
                block=(g["block_h"], g["block_w"]),
                stride=(g["stride_h"], g["stride_w"]),
                dilation=(g["dil_h"], g["dil_w"]),
            )
            lb = _LineBuffer((u.block, u.stride, u.dilation), g["rows"], g["cols"])
            ctx.set(dut.clear, 1)
            ctx.set(dut.step, 1)  # ignored on the clear cycle
            assert not ctx.get(dut.done)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            assert not ctx.get(dut.overrun)
            sent, overrun = 0, False
            while sent < words:
                step = rng.random() < 0.7
                ctx.set(dut.step, step)
                if step:
                    try:
                        want = lb.word()
                    except ContractError:
                        want, overrun = False, True
                    assert ctx.get(dut.done) == want, f"{g}: word {sent}"
                    seen_windows += want
                    sent += 1
                else:
                    assert not ctx.get(dut.done)
                await ctx.tick()
                assert ctx.get(dut.overrun) == overrun, f"{g}: overrun after word {sent}"
            seen_overruns += overrun
            ctx.set(dut.step, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen_windows > 500 and seen_overruns > 50, (
        seen_windows,
        seen_overruns,
    )  # the cases did exercise both


# ---------------------------------------------------------------------------------------------------
# the convolver: golden model
# ---------------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One pass of a convolver: configuration, input map, partial sums, and how they are driven."""

    mode: int  # 0 mac, 1 max
    rows: int
    cols: int
    block: tuple[int, int]
    stride: tuple[int, int]
    dil: tuple[int, int]
    kernel: list[int]  # row-major over the block (bh * bw weights)
    shift: int
    bias: int
    use_psum: bool
    out_shift: int
    apply_out_shift: bool
    x: list[list[int]]
    psum: list[int] = field(default_factory=list)
    # driving
    data_at: list[int] | None = None  # exact runs: the cycle each data word is offered
    psum_at: list[int] | None = None  # exact runs: the cycle each partial sum is offered
    extra_words: int = 0  # words sent past rows x cols (overrun)
    data_delay: int = 0  # other runs: no data word offered before this cycle
    psum_delay: int = 0  # other runs: no partial sum offered before this cycle

    @property
    def span(self) -> tuple[int, int]:
        return (self.block[0] - 1) * self.dil[0] + 1, (self.block[1] - 1) * self.dil[1] + 1

    @property
    def out_shape(self) -> tuple[int, int]:
        (sh, sw), (span_h, span_w) = self.stride, self.span
        return (self.rows - span_h) // sh + 1, (self.cols - span_w) // sw + 1

    def completing(self) -> list[int]:
        """j(k): the index of the input word that completes window k (the timing contract)."""
        (sh, sw), (span_h, span_w) = self.stride, self.span
        oh, ow = self.out_shape
        return [(y * sh + span_h - 1) * self.cols + x * sw + span_w - 1 for y in range(oh) for x in range(ow)]

    def words(self) -> list[int]:
        flat = [w for row in self.x for w in row]
        return flat + flat[: self.extra_words]


def rshift(v: int, shift: int) -> int:
    """:func:`nfc.numerics.round_shift` on Python integers (exact for any shift of a signed 8-bit
    field; numpy's int64 would overflow for the extreme ones)."""
    if shift > 0:
        return (v + (1 << (shift - 1))) >> shift
    return v << -shift


def sat(v: int) -> int:
    """:func:`nfc.numerics.saturate` to a word, on a Python integer."""
    return min(max(v, LO), HI)


def golden(c: Case) -> list[int]:
    """The outputs, window by window, straight from the formulas (plain Python ints)."""
    (bh, bw), (sh, sw), (dh, dw) = c.block, c.stride, c.dil
    oh, ow = c.out_shape
    out = []
    for k in range(oh * ow):
        y, x = divmod(k, ow)
        taps = [[c.x[y * sh + i * dh][x * sw + j * dw] for j in range(bw)] for i in range(bh)]
        if c.mode == 0:
            acc = sum(c.kernel[i * bw + j] * taps[i][j] for i in range(bh) for j in range(bw))
            p = c.psum[k] if c.use_psum else c.bias
            v = sat(p + rshift(acc, c.shift))
        else:
            p = c.psum[k] if c.use_psum else LO
            v = max(p, max(max(row) for row in taps))
        if c.apply_out_shift:
            v = sat(rshift(v, c.out_shift))
        out.append(v)
    return out


def random_words(rng: random.Random, n: int, big: bool) -> list[int]:
    """Words: full range (with the extremes sprinkled in) or small."""
    if not big:
        return [rng.randint(-40, 40) for _ in range(n)]
    special = [LO, LO + 1, -1, 0, 1, HI - 1, HI]
    return [rng.choice(special) if rng.random() < 0.1 else rng.randint(LO, HI) for _ in range(n)]


def random_case(rng: random.Random, arch: ArchConfig, *, max_dil_w: int = 2, grow: int = 5) -> Case:
    """A random configuration that the convolver accepts, with its input (up to ``grow`` rows and
    ``grow + 3`` columns more than a window spans) and partial sums."""
    K, lbw = arch.tile.convolver_size, arch.tile.line_buffer_words
    while True:
        block = (rng.randint(1, K), rng.randint(1, K))
        stride = (rng.randint(1, 3), rng.randint(1, 3))
        dil = (rng.randint(1, 2), rng.randint(1, max_dil_w))
        span_h, span_w = (block[0] - 1) * dil[0] + 1, (block[1] - 1) * dil[1] + 1
        rows = span_h + rng.randint(0, grow)
        cols = span_w + rng.randint(0, grow + 3)
        if (span_h - 1) * cols <= (K - 1) * lbw:
            break
    mode = int(rng.random() < 0.3)
    big = rng.random() < 0.5
    x = [random_words(rng, cols, big) for _ in range(rows)]
    kernel = random_words(rng, block[0] * block[1], rng.random() < 0.5)
    # big inputs and weights with small shifts saturate; small ones with negative shifts do too;
    # now and then a shift at the ends of its field
    shift = rng.randint(0, 24) if big else rng.randint(-6, 6)
    out_shift = rng.randint(-3, 6)
    if rng.random() < 0.15:
        shift = rng.choice([-128, -40, -20, -16, -15, -14, 35, 38, 39, 40, 41, 127])
    if rng.random() < 0.15:
        out_shift = rng.choice([-128, -17, -16, -15, -14, 14, 15, 16, 17, 127])
    case = Case(
        mode=mode,
        rows=rows,
        cols=cols,
        block=block,
        stride=stride,
        dil=dil,
        kernel=kernel,
        shift=shift,
        bias=rng.choice([0, rng.randint(LO, HI), rng.randint(-100, 100)]),
        use_psum=rng.random() < 0.6,
        out_shift=out_shift,
        apply_out_shift=rng.random() < 0.5,
        x=x,
    )
    oh, ow = case.out_shape
    case.psum = random_words(rng, oh * ow, rng.random() < 0.5)
    return case


def regeometry(rng: random.Random, c: Case, **geometry) -> Case:
    """``c`` with another geometry (``block``, ``stride``, ``dil``, ``rows``, ``cols``) and a new
    kernel, input and partial sums to match."""
    c = dataclasses.replace(c, **geometry)
    big = rng.random() < 0.5
    c.kernel = random_words(rng, c.block[0] * c.block[1], big)
    c.x = [random_words(rng, c.cols, big) for _ in range(c.rows)]
    c.psum = random_words(rng, len(c.completing()), True)
    return c


# ---------------------------------------------------------------------------------------------------
# the convolver: schedules
# ---------------------------------------------------------------------------------------------------
def within_contract(tj: list[int], tp: list[int], depth: int) -> bool:
    """What ``sim/naive.py`` checks of a join: data and partial sum of a window at most ``depth``
    cycles apart, and at most ``depth`` windows or partial sums waiting at the end of any cycle."""
    if any(abs(a - b) > depth for a, b in zip(tj, tp, strict=True)):
        return False
    joined = [max(a, b) for a, b in zip(tj, tp, strict=True)]
    for t in sorted(set(tj) | set(tp)):
        for arrivals in (tj, tp):
            if sum(1 for a, j in zip(arrivals, joined, strict=True) if a <= t < j) > depth:
                return False
    return True


def schedule(rng: random.Random, case: Case, depth: int, *, gap: float, lateness: str = "random") -> None:
    """Offer cycles for an exact run: data words with random gaps; partial sums early, late or
    random (a random walk of offsets within ``depth``), within the contract."""
    n = len(case.words())
    start = depth + 2  # room for partial sums ahead of their windows
    for _ in range(200):
        data_at, t = [], start
        for _ in range(n):
            while rng.random() < gap:
                t += 1
            data_at.append(t)
            t += 1
        tj = [data_at[j] for j in case.completing()]
        if not case.use_psum:
            case.data_at, case.psum_at = data_at, None
            return
        off = {"early": -depth, "late": depth}.get(lateness, rng.randint(-depth, depth))
        tp, last = [], -1
        for j in tj:
            if lateness == "random":
                off = max(-depth, min(depth, off + rng.randint(-2, 2)))
            last = max(last + 1, j + off)
            tp.append(last)
        if within_contract(tj, tp, depth):
            case.data_at, case.psum_at = data_at, tp
            return
    raise AssertionError("no schedule within the contract found")


# ---------------------------------------------------------------------------------------------------
# the convolver: testbench
# ---------------------------------------------------------------------------------------------------
@dataclass
class Seen:
    """What one case's run saw."""

    out: list[tuple[int, int]] = field(default_factory=list)  # (cycle, word)
    data_acc: list[int] = field(default_factory=list)  # accept cycle of each data word
    psum_acc: list[int] = field(default_factory=list)
    waited: bool = False  # a word was offered and not taken
    error: bool = False


def set_config(ctx, dut: Convolver, c: Case) -> None:
    values = dict(
        mode=c.mode,
        rows=c.rows,
        cols=c.cols,
        block_h=c.block[0],
        block_w=c.block[1],
        stride_h=c.stride[0],
        stride_w=c.stride[1],
        dil_h=c.dil[0],
        dil_w=c.dil[1],
        shift=c.shift,
        bias=c.bias,
        use_psum=c.use_psum,
        out_shift=c.out_shift,
        apply_out_shift=c.apply_out_shift,
    )
    for name, value in values.items():
        ctx.set(getattr(dut, name), value)
    k = round(dut.kernel.shape().length ** 0.5)
    kernel = tap_order(c.kernel, c.block, k)
    for i, w in enumerate(kernel):
        ctx.set(dut.kernel[i], w)


def run_cases(
    dut: Convolver, cases: list[Case], *, seed: int, gap: float = 0.0, ready: float = 1.0
) -> list[Seen]:
    """Run every case on one simulator. Cases with ``data_at`` are driven exactly on those cycles
    (every word must be taken when offered); the others with a gap before each word with
    probability ``gap``, holding it until taken. ``o.ready`` is high with probability ``ready``.
    Cycles are counted from the cycle after the case's ``clear``."""
    rng = random.Random(seed)
    seen = [Seen() for _ in cases]
    data_payload, psum_payload = Value.cast(dut.data.payload), Value.cast(dut.psum.payload)
    o_payload = Value.cast(dut.o.payload)

    async def bench(ctx):
        for c, s in zip(cases, seen, strict=True):
            set_config(ctx, dut, c)
            ctx.set(dut.clear, 1)
            for port in (dut.data.valid, dut.psum.valid):
                ctx.set(port, 0)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            words, psums, n_out = c.words(), c.psum if c.use_psum else [], len(golden(c))
            exact = c.data_at is not None
            nd = npx = 0  # words taken
            d_hold = p_hold = False
            held = None  # an output word offered and not taken
            cycle, done_at = 0, None
            while done_at is None or cycle < done_at + 8:
                assert cycle < 100 * (len(words) + 20), "the convolver stopped moving words"
                # offer
                if exact:
                    d_hold = nd < len(words) and c.data_at[nd] == cycle
                    p_hold = npx < len(psums) and c.psum_at[npx] == cycle
                else:
                    d_hold = d_hold or (nd < len(words) and cycle >= c.data_delay and rng.random() >= gap)
                    p_hold = p_hold or (npx < len(psums) and cycle >= c.psum_delay and rng.random() >= gap)
                if d_hold:
                    ctx.set(data_payload, words[nd])
                if p_hold:
                    ctx.set(psum_payload, psums[npx])
                ctx.set(dut.data.valid, d_hold)
                ctx.set(dut.psum.valid, p_hold)
                o_ready = done_at is not None or rng.random() < ready
                ctx.set(dut.o.ready, o_ready)
                # observe
                o_valid, o_word = ctx.get(dut.o.valid), ctx.get(o_payload)
                if held is not None:
                    assert o_valid and o_word == held, f"cycle {cycle}: an offered output word was withdrawn"
                held = None
                if o_valid:
                    if o_ready:
                        assert done_at is None, f"cycle {cycle}: an extra output {o_word}"
                        s.out.append((cycle, o_word))
                    else:
                        held = o_word
                if d_hold:
                    if ctx.get(dut.data.ready):
                        s.data_acc.append(cycle)
                        nd, d_hold = nd + 1, False
                    else:
                        s.waited = True
                        assert not exact, f"cycle {cycle}: data word {nd} refused"
                if p_hold:
                    if ctx.get(dut.psum.ready):
                        s.psum_acc.append(cycle)
                        npx, p_hold = npx + 1, False
                    else:
                        s.waited = True
                        assert not exact, f"cycle {cycle}: partial sum {npx} refused"
                await ctx.tick()
                cycle += 1
                if done_at is None and len(s.out) == n_out and nd == len(words) and npx == len(psums):
                    done_at = cycle
            s.error = bool(ctx.get(dut.error))
        ctx.set(dut.data.valid, 0)
        ctx.set(dut.psum.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


def check(c: Case, s: Seen, *, exact: bool) -> None:
    want = golden(c)
    assert [w for _, w in s.out] == want, c
    assert s.error == (s.waited or c.extra_words > 0), c
    if exact:
        assert not s.waited
        tj = [s.data_acc[j] for j in c.completing()]
        tp = s.psum_acc if c.use_psum else tj
        assert [t for t, _ in s.out] == [max(a, b) + CONV_LATENCY for a, b in zip(tj, tp, strict=True)], c


# ---------------------------------------------------------------------------------------------------
# the convolver: tests
# ---------------------------------------------------------------------------------------------------
def test_golden_model_agrees_with_functional_window():
    """The golden model's windows against ``sim/functional.py``'s ``_window`` (numpy views)."""
    import numpy as np

    from nfc.sim.functional import _window

    rng = random.Random(7)
    for _ in range(40):
        c = random_case(rng, TINY, max_dil_w=3)
        c.use_psum, c.apply_out_shift, c.shift, c.bias = False, False, 0, 0
        u = SimpleNamespace(
            block=c.block, stride=c.stride, dilation=c.dil, mode="max" if c.mode else "mac", kernel=c.kernel
        )
        sums = _window(u, np.asarray(c.x, dtype=np.int64)).reshape(-1)
        assert golden(c) == [int(v) for v in saturate(sums, W)[0]]
    for _ in range(2000):  # the Python-integer rounding is numerics' where int64 does not overflow
        v, shift = rng.randint(-(1 << 40), 1 << 40), rng.randint(-20, 60)
        assert rshift(v, shift) == int(round_shift(v, shift))
        assert sat(v) == int(saturate(v, W)[0])


@pytest.mark.parametrize("arch", [TINY, k5_arch(), k1_arch()], ids=["tiny-K3", "K5", "K1"])
def test_convolver_exact_cycles(arch: ArchConfig):
    """ready high: every output on the contract's cycle, every word taken when offered, no error;
    partial sums early, late (by up to fifo_depth, at the edge too) and wandering."""
    rng = random.Random(11 + arch.tile.convolver_size)
    D, K, lbw = arch.tile.fifo_depth, arch.tile.convolver_size, arch.tile.line_buffer_words
    cases = []
    for i in range(28):
        c = random_case(rng, arch, max_dil_w=4 if i % 4 == 0 else 2)
        schedule(rng, c, D, gap=rng.choice([0.0, 0.3]), lateness="random")
        cases.append(c)
    for lateness in ("early", "late"):  # every word completes a window: the FIFOs fill to fifo_depth
        c = regeometry(
            rng, random_case(rng, arch), block=(1, 1), stride=(1, 1), dil=(1, 1), rows=3, cols=max(D, 12)
        )
        c.use_psum = True
        schedule(rng, c, D, gap=0.0, lateness=lateness)
        cases.append(c)
    # tiny words moved far left: the shifts saturate only from some distance on
    for shift, out_shift in ((-14, 0), (-16, 0), (0, -14), (0, -15), (-3, -12), (-20, 2)):
        c = random_case(rng, arch)
        c.mode, c.shift, c.out_shift, c.apply_out_shift = 0, shift, out_shift, True
        c.bias = rng.randint(-2, 2)
        c.kernel = [rng.randint(-1, 1) for _ in c.kernel]
        c.x = [[rng.randint(-2, 2) for _ in row] for row in c.x]
        c.psum = [rng.randint(-2, 2) for _ in c.psum]
        schedule(rng, c, D, gap=0.2)
        cases.append(c)
    # max mode, no partial sums, windows of the most negative word only: p is the most negative word
    c = regeometry(
        rng, random_case(rng, arch), block=(min(K, 2),) * 2, stride=(1, 1), dil=(1, 1), rows=3, cols=4
    )
    c.mode, c.use_psum, c.apply_out_shift = 1, False, False
    c.x = [[LO] * 4, [LO] * 4, [LO, LO, 5, LO]]
    schedule(rng, c, D, gap=0.0)
    cases.append(c)
    # the widest input the line buffer holds: (span_h - 1) x cols = (K - 1) x line_buffer_words
    c = regeometry(
        rng, random_case(rng, arch), block=(K, min(K, 2)), stride=(1, 2), dil=(1, 1), rows=K + 1, cols=lbw
    )
    schedule(rng, c, D, gap=0.1)
    cases.append(c)
    dut = Convolver(arch)
    for c, s in zip(cases, run_cases(dut, cases, seed=3), strict=True):
        check(c, s, exact=True)


SHALLOW = dataclasses.replace(TINY, name="shallow", tile=dataclasses.replace(TINY.tile, fifo_depth=2))


@pytest.mark.parametrize("arch", [TINY, SHALLOW, k5_arch()], ids=["tiny-K3", "fifo2-K3", "K5"])
def test_convolver_back_pressure(arch: ArchConfig):
    """Random gaps on both inputs and random ready on the output: the same words, in order, and
    the stream rules; error exactly when a word had to wait."""
    rng = random.Random(23 + arch.tile.convolver_size)
    cases = [random_case(rng, arch, max_dil_w=4 if i % 3 == 0 else 2, grow=8) for i in range(20)]
    dut = Convolver(arch)
    seen = run_cases(dut, cases, seed=5, gap=0.3, ready=0.2)
    for c, s in zip(cases, seen, strict=True):
        check(c, s, exact=False)
    assert sum(s.waited for s in seen) >= 2, [s.waited for s in seen]  # back-pressure reached the inputs


def test_convolver_contract_broken_and_overrun():
    """Partial sums starting far more than fifo_depth cycles after the data (or the data after the
    partial sums): the early input has to wait (error), nothing is lost; words past rows x cols:
    error, the outputs unchanged."""
    rng = random.Random(31)
    far = TINY.tile.fifo_depth + PIPELINE_SLACK + 5
    cases = []
    for data_delay, psum_delay in ((0, far), (far, 0)):
        c = regeometry(rng, random_case(rng, TINY), block=(1, 1), stride=(1, 1), dil=(1, 1), rows=5, cols=12)
        c.use_psum = True
        c.data_delay, c.psum_delay = data_delay, psum_delay
        cases.append(c)
    over = random_case(rng, TINY)
    over.extra_words = 3
    cases.append(over)
    seen = run_cases(Convolver(TINY), cases, seed=2, gap=0.0, ready=1.0)
    for c, s in zip(cases, seen, strict=True):
        check(c, s, exact=False)
        assert s.error
    assert seen[0].waited and seen[1].waited and not seen[2].waited


def error_after_configs(dut: Convolver, configs: list[dict]) -> list[bool]:
    """``error`` after each configuration (its fields set, then a ``clear`` pulse), in a row."""
    results = []

    async def bench(ctx):
        for g in configs:
            for name, value in g.items():
                ctx.set(getattr(dut, name), value)
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            await ctx.tick()
            results.append(bool(ctx.get(dut.error)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


def test_convolver_refuses_configurations():
    """error is high for configurations the hardware cannot run, low for the largest it can."""
    arch = TINY
    K, lbw = arch.tile.convolver_size, arch.tile.line_buffer_words
    dut = Convolver(arch, max_dilation=4)
    good = dict(rows=8, cols=lbw, block_h=K, block_w=K, stride_h=1, stride_w=1, dil_h=1, dil_w=4)
    bad = [
        dict(good, cols=lbw + 1),  # (K - 1) rows of lbw + 1 words
        dict(good, cols=lbw // 2 + 1, dil_h=2),  # 2 (K - 1) rows of more than lbw / 2 words
        dict(good, dil_w=5),
        dict(good, block_h=K + 1),
        dict(good, block_w=0),
        dict(good, stride_h=0),
        dict(good, dil_h=0),
        dict(good, rows=0),
        dict(good, cols=0),
    ]
    also_good = [dict(good, cols=lbw // 2, dil_h=2), dict(good, block_h=1, cols=60000)]
    results = error_after_configs(dut, [good, *also_good, *bad])
    assert results == [False] * (1 + len(also_good)) + [True] * len(bad)


def test_convolver_parameters():
    with pytest.raises(ValueError, match=r"^max_dilation must be an integer from 1 to 15, not 0$"):
        Convolver(TINY, max_dilation=0)
    dut = Convolver(TINY)
    assert dut.line_buffer_depth == 2 * 64 and dut.fifo_entries == 16 + PIPELINE_SLACK
    rtlil.convert(Convolver(k5_arch(), max_dilation=2))  # elaborates to netlist form
