"""The DMA engines (``rtl/dma.py``) and the beat generator (``rtl/beat.py``) against naive models.

* ``BeatGenerator``: beat ``i`` on cycle ``C + ceil((i + 1) Q / P) - 1`` for many rates, the beat
  index on ``count``, ``running`` from ``C`` to the last beat, ``stall`` on the other running cycles.
* ``ReadDma``: random regions (borders on every side, steps 1..3, the origin anywhere) read through a
  memory model that answers exactly ``L`` cycles after a request, for several ``L``; every word is
  compared with a naive per-word model (itself checked against ``sim/functional.py`` ``_read``):
  which cycles carry a request and to which address, the cycle (``advance`` + ``L``) and value of
  every output word, pad words, ``done``; and the error flag for each contract break.
* ``WriteDma``: random regions and input gaps; every write request one cycle after its word, at the
  address of a naive model (the memory image checked against ``_write``), ``last``, ``done``,
  ``error``.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator

from nfc.arch import ArchConfig, load_target
from nfc.compiler.decode import DecodedStream
from nfc.rtl.beat import BeatGenerator
from nfc.rtl.dma import WRITE_LATENCY, ReadDma, WriteDma
from nfc.sim.cycle import beat_times
from nfc.sim.functional import _read, _write

WORD_MIN, WORD_MAX = -(2**15), 2**15 - 1


def arch_with_latency(latency: int) -> ArchConfig:
    arch = load_target("tiny")
    return dataclasses.replace(arch, memory=dataclasses.replace(arch.memory, latency_cycles=latency))


def run(dut, bench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


# ---------------------------------------------------------------------------------------------------
# the beat generator
# ---------------------------------------------------------------------------------------------------
def naive_beats(start: int, beats: int, p: int, q: int) -> list[int]:
    """Beat cycles straight from the contract's formula."""
    return [start + math.ceil((i + 1) * q / p) - 1 for i in range(beats)]


def test_naive_beats_agree_with_the_cycle_model():
    for p, q, b in [(1, 1, 5), (3, 7, 9), (1, 64, 4), (63, 64, 70), (5, 5, 3)]:
        assert naive_beats(11, b, p, q) == beat_times(11, b, (p, q)).tolist()


@dataclass
class BeatRun:
    p: int
    q: int
    beats: int
    idle_before: int
    cut_after: int | None = None  # restart the generator this many cycles after start
    trace: list[tuple[int, int, int, int]] = field(default_factory=list)  # beat, running, count, stall


def run_beats(runs: list[BeatRun]) -> None:
    dut = BeatGenerator()

    async def bench(ctx):
        for r in runs:
            ctx.set(dut.P, r.p)
            ctx.set(dut.Q, r.q)
            ctx.set(dut.beats, r.beats)
            for _ in range(r.idle_before):
                assert (ctx.get(dut.beat), ctx.get(dut.running), ctx.get(dut.stall)) == (0, 0, 0)
                await ctx.tick()
            end = r.cut_after if r.cut_after is not None else math.ceil(r.beats * r.q / r.p) + 3
            for t in range(end):
                ctx.set(dut.start, t == 0)
                r.trace.append(
                    (ctx.get(dut.beat), ctx.get(dut.running), ctx.get(dut.count), ctx.get(dut.stall))
                )
                await ctx.tick()
            ctx.set(dut.start, 0)

    run(dut, bench)


def check_beats(r: BeatRun) -> None:
    want = naive_beats(0, r.beats, r.p, r.q)
    beats = [t for t, (b, _, _, _) in enumerate(r.trace) if b]
    assert beats == want, (r.p, r.q, r.beats)
    last = want[-1] if want else -1
    for t, (b, running, count, stall) in enumerate(r.trace):
        assert running == (t <= last), (r.p, r.q, t)
        assert stall == (running and not b), (r.p, r.q, t)
        assert count == sum(1 for w in want if w < t), (r.p, r.q, t)
    stream = last + 1
    assert sum(s for _, _, _, s in r.trace) == stream - r.beats  # memory stall = stream - B


def test_beat_generator_matches_the_closed_form():
    rng = np.random.default_rng(1)
    runs = [BeatRun(1, 1, 6, 0), BeatRun(64, 64, 3, 2), BeatRun(1, 64, 3, 1), BeatRun(63, 64, 130, 0)]
    runs += [BeatRun(7, 9, 1, 3), BeatRun(5, 12, 0, 1), BeatRun(32, 64, 17, 0), BeatRun(2, 3, 40, 5)]
    for _ in range(40):
        q = int(rng.integers(1, 65))
        p = int(rng.integers(1, q + 1))
        runs.append(BeatRun(p, q, int(rng.integers(1, 25)), int(rng.integers(0, 4))))
    run_beats(runs)
    for r in runs:
        check_beats(r)


def test_beat_generator_restarts_on_start():
    # a run cut short by a new start (same and different rate) does not leak into the next one
    first, second, third = BeatRun(3, 7, 50, 1, cut_after=20), BeatRun(3, 7, 6, 0), BeatRun(5, 11, 9, 0)
    cut = BeatRun(2, 9, 30, 0, cut_after=13)
    runs = [first, second, cut, third]
    run_beats(runs)
    for r in (second, third):
        check_beats(r)
    for r in (first, cut):  # the cut runs follow the formula as far as they got
        beats = [t for t, (b, _, _, _) in enumerate(r.trace) if b]
        assert beats == [t for t in naive_beats(0, r.beats, r.p, r.q) if t < len(r.trace)]
        assert all(running for _, running, _, _ in r.trace)


# ---------------------------------------------------------------------------------------------------
# the memory model
# ---------------------------------------------------------------------------------------------------
class MemoryModel:
    """A word array that takes one request per cycle and answers a read exactly ``latency`` cycles
    after its request (on the same cycle for latency 0); ``drop`` lists reads (0-based) whose answer
    it leaves out."""

    def __init__(self, words: np.ndarray | SparseMemory, latency: int, drop: frozenset[int] = frozenset()):
        self.words = words.copy()
        self.latency = latency
        self.drop = drop
        self.reads = 0
        self.pending: deque[tuple[int, int | None]] = deque()
        self.writes: list[tuple[int, int, int]] = []  # cycle, address, word

    def serve(self, t: int, valid: int, write: int, addr: int, data: int) -> tuple[int, int]:
        if valid and write:
            self.words[addr] = data
            self.writes.append((t, addr, data))
        elif valid:
            word = None if self.reads in self.drop else int(self.words[addr])
            self.pending.append((t + self.latency, word))
            self.reads += 1
        if self.pending and self.pending[0][0] == t:
            _, word = self.pending.popleft()
            if word is not None:
                return 1, word
        assert not self.pending or self.pending[0][0] > t
        return 0, 0


class SparseMemory(dict):
    """A 2**32-word memory image stored sparsely: an unwritten word holds a fixed hash of its address."""

    def __missing__(self, addr: int) -> int:
        return (addr * 2654435761 >> 7) % 65536 - 32768

    def copy(self) -> SparseMemory:
        return SparseMemory(self)


# ---------------------------------------------------------------------------------------------------
# the read DMA
# ---------------------------------------------------------------------------------------------------
def read_words(mem: np.ndarray, s: DecodedStream) -> list[tuple[int | None, int]]:
    """Naive model: per word of the region in order, (address or None for a border word, value)."""
    H, W = s.map_shape
    out = []
    for i in range(s.rows):
        for j in range(s.cols):
            r = s.r0 - s.pads[0] + i * s.step[0]
            c = s.c0 - s.pads[1] + j * s.step[1]
            if 0 <= r < H and 0 <= c < W:
                addr = s.address + r * W + c
                out.append((addr, int(mem[addr])))
            else:
                out.append((None, s.pad_value))
    return out


def random_read_stream(rng: np.random.Generator, n: int = 0) -> tuple[DecodedStream, np.ndarray]:
    """A random read region; its steps are ``(1 + n // 3 % 3, 1 + n % 3)``."""
    H, W = (int(x) for x in rng.integers(1, 9, 2))
    rows, cols = (int(x) for x in rng.integers(1, 7, 2))
    rs, cs = 1 + n // 3 % 3, 1 + n % 3
    pt, pl = (int(x) for x in rng.integers(0, 4, 2))
    r0, c0 = int(rng.integers(-2, H + 2)), int(rng.integers(-2, W + 2))
    pb = max(0, r0 - pt + (rows - 1) * rs - (H - 1))
    pr = max(0, c0 - pl + (cols - 1) * cs - (W - 1))
    address = int(rng.integers(0, 300))
    s = DecodedStream(
        port=0,
        direction="read",
        role="data",
        sync=False,
        tile=0,
        address=address,
        map_shape=(H, W),
        rows=rows,
        cols=cols,
        r0=r0,
        c0=c0,
        pads=(pt, pl, pb, pr),
        pad_value=int(rng.integers(WORD_MIN, WORD_MAX + 1)),
        step=(rs, cs),
        words=rows * cols,
        route=(0,),
    )
    mem = rng.integers(WORD_MIN, WORD_MAX + 1, address + H * W + int(rng.integers(0, 5))).astype(np.int64)
    return s, mem


@dataclass
class ReadCase:
    s: DecodedStream
    mem: np.ndarray | SparseMemory
    advance: list[bool]  # per cycle after clear; then idle until drained
    ready: list[bool] | None = None  # per cycle; None: always ready
    drop: frozenset[int] = frozenset()
    late_config: bool = False  # configuration set on the cycle after clear, not before
    drain: bool = True  # run until every word is out (else the next clear comes with words in flight)
    trace: list[dict[str, int]] = field(default_factory=list)


def advance_pattern(rng: np.random.Generator, words: int, p: float) -> list[bool]:
    pattern: list[bool] = []
    while sum(pattern) < words:
        pattern.append(bool(rng.random() < p))
    return pattern


def run_read(latency: int, cases: list[ReadCase]) -> None:
    dut = ReadDma(arch_with_latency(latency))
    assert dut.latency == latency

    def configure(ctx, s: DecodedStream) -> None:
        H, W = s.map_shape
        for name, value in [
            ("address", s.address),
            ("map_h", H),
            ("map_w", W),
            ("rows", s.rows),
            ("cols", s.cols),
            ("r0", s.r0),
            ("c0", s.c0),
            ("pad_top", s.pads[0]),
            ("pad_left", s.pads[1]),
            ("pad_value", s.pad_value),
            ("step_r", s.step[0]),
            ("step_c", s.step[1]),
            ("words", s.words),
        ]:
            ctx.set(getattr(dut, name), value)

    async def bench(ctx):
        for case in cases:
            memory = MemoryModel(case.mem, latency, case.drop)
            if not case.late_config:
                configure(ctx, case.s)
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            if case.late_config:
                configure(ctx, case.s)
            assert ctx.get(dut.error) == 0
            for t in range(len(case.advance) + (latency + 2 if case.drain else 0)):
                adv = case.advance[t] if t < len(case.advance) else False
                ready = case.ready[t] if case.ready is not None and t < len(case.ready) else True
                ctx.set(dut.advance, adv)
                ctx.set(dut.o.ready, ready)
                req = [ctx.get(x) for x in (dut.req_valid, dut.req_write, dut.req_addr, dut.req_data)]
                resp_valid, resp_data = memory.serve(t, *req)
                ctx.set(dut.resp_valid, resp_valid)
                ctx.set(dut.resp_data, resp_data)
                row = dict(zip(("req_valid", "req_write", "req_addr", "req_data"), req, strict=True))
                row.update(
                    advance=adv,
                    ready=ready,
                    o_valid=ctx.get(dut.o.valid),
                    o_payload=ctx.get(dut.o.payload),
                    done=ctx.get(dut.done),
                    error=ctx.get(dut.error),
                )
                case.trace.append(row)
                await ctx.tick()
            ctx.set(dut.advance, 0)

    run(dut, bench)


def check_read(case: ReadCase, latency: int, *, extra_advances_ok: bool = False) -> None:
    """Requests, outputs and ``done`` of a case hold to the naive model (contract kept)."""
    golden = read_words(case.mem, case.s)
    assert [v for _, v in golden] == _read(case.mem, case.s).ravel().tolist()
    adv_cycles = [t for t, row in enumerate(case.trace) if row["advance"]][: case.s.words]
    assert len(adv_cycles) == case.s.words
    want_req = {t: addr for t, (addr, _) in zip(adv_cycles, golden, strict=True) if addr is not None}
    got_req = {t: row["req_addr"] for t, row in enumerate(case.trace) if row["req_valid"]}
    assert got_req == want_req
    assert all(row["req_write"] == 0 and row["req_data"] == 0 for row in case.trace if row["req_valid"])
    want_out = [(t + latency, v) for t, (_, v) in zip(adv_cycles, golden, strict=True)]
    got_out = [(t, row["o_payload"]) for t, row in enumerate(case.trace) if row["o_valid"]]
    assert got_out == want_out
    for t, row in enumerate(case.trace):
        assert row["done"] == (t > adv_cycles[-1]), t
    if not extra_advances_ok:
        assert not any(row["error"] for row in case.trace)


@pytest.mark.parametrize("latency", [0, 1, 4, 24])
def test_read_dma_random_regions(latency):
    rng = np.random.default_rng(100 + latency)
    cases = []
    for n in range(40):
        s, mem = random_read_stream(rng, n)
        p = (1.0, 0.6, 0.3)[n // 9 % 3]
        cases.append(ReadCase(s, mem, advance_pattern(rng, s.words, p), late_config=bool(n % 2)))
    run_read(latency, cases)
    sides = {"top": 0, "left": 0, "bottom": 0, "right": 0, "pad words": 0, "steps": set()}
    for case in cases:
        check_read(case, latency)
        s = case.s
        H, W = s.map_shape
        rows = [s.r0 - s.pads[0] + i * s.step[0] for i in range(s.rows)]
        cols = [s.c0 - s.pads[1] + j * s.step[1] for j in range(s.cols)]
        sides["top"] += min(rows) < 0
        sides["left"] += min(cols) < 0
        sides["bottom"] += max(rows) >= H
        sides["right"] += max(cols) >= W
        sides["pad words"] += sum(addr is None for addr, _ in read_words(case.mem, s))
        sides["steps"] |= {s.step}
    # the random regions do reach every case they are meant to cover
    assert min(v for k, v in sides.items() if k != "steps") > 0, sides
    assert len(sides["steps"]) == 9


def test_read_dma_exact_latency_back_to_back():
    # one word per cycle, no gaps: word k leaves on cycle k + L (a region with and without borders)
    rng = np.random.default_rng(7)
    for latency in (0, 3):
        s, mem = random_read_stream(rng)
        s = dataclasses.replace(
            s, map_shape=(6, 7), r0=0, c0=0, pads=(1, 2, 0, 0), rows=8, cols=9, step=(1, 1)
        )
        s = dataclasses.replace(s, words=s.rows * s.cols)
        inner = dataclasses.replace(s, r0=1, c0=1, pads=(0, 0, 0, 0), rows=3, cols=4, words=12, step=(2, 1))
        mem = rng.integers(WORD_MIN, WORD_MAX + 1, s.address + 42).astype(np.int64)
        cases = [ReadCase(x, mem, [True] * x.words) for x in (s, inner)]
        run_read(latency, cases)
        for case in cases:
            check_read(case, latency)
            outs = [t for t, row in enumerate(case.trace) if row["o_valid"]]
            assert outs == list(range(latency, latency + case.s.words))


def _huge(direction: str, *, H: int, W: int, rows: int, cols: int, r0: int, c0: int, pads=(0, 0), step):
    """A big map ending 7 words below 2**32 (held in a :class:`SparseMemory`)."""
    return DecodedStream(
        port=0,
        direction=direction,
        role="data" if direction == "read" else "out",
        sync=False,
        tile=0,
        address=2**32 - H * W - 7,
        map_shape=(H, W),
        rows=rows,
        cols=cols,
        r0=r0,
        c0=c0,
        pads=(*pads, 0, 0),
        pad_value=-1234,
        step=step,
        words=rows * cols,
        route=(0,),
    )


def huge_reads() -> list[DecodedStream]:
    """Wide rows (a row step of 255 x 60000 words) and far origins (PORT_ORG is signed 16 bits)."""
    return [
        _huge("read", H=700, W=60000, rows=4, cols=9, r0=2, c0=32767, pads=(3, 2), step=(255, 200)),
        _huge("read", H=40000, W=50, rows=14, cols=17, r0=32000, c0=5, pads=(3, 2), step=(255, 3)),
        _huge("read", H=40000, W=50, rows=2, cols=3, r0=-32768, c0=5, pads=(3, 0), step=(1, 1)),
        _huge("read", H=700, W=60000, rows=2, cols=3, r0=5, c0=-32768, pads=(0, 2), step=(1, 1)),
    ]


def huge_writes() -> list[DecodedStream]:
    return [
        _huge("write", H=700, W=60000, rows=2, cols=14, r0=444, c0=32000, step=(255, 200)),
        _huge("write", H=40000, W=50, rows=11, cols=14, r0=32000, c0=5, step=(255, 3)),
    ]


def test_read_dma_huge_maps_and_steps():
    # wide offsets and products, addresses near 2**32
    rng = np.random.default_rng(9)
    cases = [ReadCase(s, SparseMemory(), advance_pattern(rng, s.words, 0.7)) for s in huge_reads()]
    run_read(2, cases)
    for case in cases:
        s = case.s
        golden = read_words(case.mem, s)
        adv = [t for t, row in enumerate(case.trace) if row["advance"]]
        assert {t: row["req_addr"] for t, row in enumerate(case.trace) if row["req_valid"]} == {
            t: a for t, (a, _) in zip(adv, golden, strict=True) if a is not None
        }
        got = [(t, row["o_payload"]) for t, row in enumerate(case.trace) if row["o_valid"]]
        assert got == [(t + 2, v) for t, (_, v) in zip(adv, golden, strict=True)]
        assert not any(row["error"] for row in case.trace)
    first, second, *outside = (read_words(c.mem, c.s) for c in cases)
    for words in outside:  # r0 - pad_top or c0 - pad_left below -2**15 stays outside the map
        assert {a for a, _ in words} == {None}
    assert None in {a for a, _ in first} and None in {a for a, _ in second}
    assert max(a for a, _ in first if a is not None) == cases[0].s.address + 509 * 60000 + 32765 + 8 * 200
    assert max(a for a, _ in second if a is not None) == cases[1].s.address + (31997 + 13 * 255) * 50 + 48


def _small_stream(rng: np.random.Generator) -> tuple[DecodedStream, np.ndarray]:
    s, mem = random_read_stream(rng)
    s = dataclasses.replace(s, map_shape=(3, 3), r0=0, c0=0, pads=(1, 1, 1, 1), rows=3, cols=4, words=12)
    s = dataclasses.replace(s, step=(1, 1))
    mem = rng.integers(WORD_MIN, WORD_MAX + 1, s.address + 9).astype(np.int64)
    return s, mem


def test_read_dma_clear_drops_the_words_in_flight():
    latency = 5
    rng = np.random.default_rng(8)
    s, mem = _small_stream(rng)
    cut = ReadCase(s, mem, [True] * 4, drain=False)
    after = ReadCase(s, mem, [False, True] + [True] * (s.words - 1))
    run_read(latency, [cut, after])
    assert not any(row["o_valid"] for row in cut.trace[:latency])
    check_read(after, latency)  # none of the cut stream's words, and no error


def test_read_dma_advance_after_the_last_word_is_an_error():
    latency = 2
    rng = np.random.default_rng(3)
    s, mem = _small_stream(rng)
    extra = ReadCase(s, mem, [True] * s.words + [False, True, True])
    after = ReadCase(s, mem, [True] * s.words)  # a clear wipes the error
    run_read(latency, [extra, after])
    check_read(extra, latency, extra_advances_ok=True)  # no request and no word for the extra advances
    first_bad = s.words + 1
    assert [row["error"] for row in extra.trace] == [0] * (first_bad + 1) + [1] * (
        len(extra.trace) - first_bad - 1
    )
    check_read(after, latency)


def test_read_dma_back_pressure_is_an_error():
    # the memory cannot wait: a word not taken is a contract break, flagged on the following cycle;
    # the words still come out on time (nothing is held back)
    latency = 4
    rng = np.random.default_rng(4)
    cases = []
    for n in range(12):
        s, mem = random_read_stream(rng, n)
        ready = [bool(rng.random() < (1.0, 0.9, 0.8)[n % 3]) for _ in range(200)]
        cases.append(ReadCase(s, mem, advance_pattern(rng, s.words, (1.0, 0.5)[n % 2]), ready=ready))
    run_read(latency, cases)
    broken = 0
    for case in cases:
        check_read(case, latency, extra_advances_ok=True)
        bad = [t for t, row in enumerate(case.trace) if row["o_valid"] and not row["ready"]]
        errors = [row["error"] for row in case.trace]
        if bad:
            broken += 1
            assert errors == [0] * (bad[0] + 1) + [1] * (len(errors) - bad[0] - 1)
        else:
            assert not any(errors)
    assert 0 < broken < len(cases)


def test_read_dma_missing_memory_answer_is_an_error():
    latency = 3
    rng = np.random.default_rng(5)
    s, mem = _small_stream(rng)
    case = ReadCase(s, mem, [True] * s.words, drop=frozenset({4}))
    run_read(latency, [case])
    dropped_at = [t for t, row in enumerate(case.trace) if row["req_valid"]][4] + latency
    errors = [row["error"] for row in case.trace]
    assert errors == [0] * (dropped_at + 1) + [1] * (len(errors) - dropped_at - 1)


# ---------------------------------------------------------------------------------------------------
# the write DMA
# ---------------------------------------------------------------------------------------------------
def write_addresses(s: DecodedStream) -> list[int]:
    """Naive model: the address of every word of the region in order."""
    _, W = s.map_shape
    return [
        s.address + (s.r0 + i * s.step[0]) * W + s.c0 + j * s.step[1]
        for i in range(s.rows)
        for j in range(s.cols)
    ]


def random_write_stream(rng: np.random.Generator, n: int = 0) -> tuple[DecodedStream, np.ndarray]:
    """A random write region inside its map; its steps are ``(1 + n // 3 % 3, 1 + n % 3)``."""
    rows, cols = (int(x) for x in rng.integers(1, 7, 2))
    rs, cs = 1 + n // 3 % 3, 1 + n % 3
    r0, c0 = (int(x) for x in rng.integers(0, 4, 2))
    H = r0 + (rows - 1) * rs + 1 + int(rng.integers(0, 3))
    W = c0 + (cols - 1) * cs + 1 + int(rng.integers(0, 3))
    address = int(rng.integers(0, 300))
    s = DecodedStream(
        port=1,
        direction="write",
        role="out",
        sync=False,
        tile=0,
        address=address,
        map_shape=(H, W),
        rows=rows,
        cols=cols,
        r0=r0,
        c0=c0,
        pads=(0, 0, 0, 0),
        pad_value=0,
        step=(rs, cs),
        words=rows * cols,
        route=(0,),
    )
    mem = rng.integers(WORD_MIN, WORD_MAX + 1, address + H * W + int(rng.integers(0, 5))).astype(np.int64)
    return s, mem


@dataclass
class WriteCase:
    s: DecodedStream
    mem: np.ndarray | SparseMemory
    values: list[int]  # offered in order (more than ``s.words`` to break the contract)
    valid: list[bool]  # per cycle after clear: a word is offered
    memory: MemoryModel | None = None
    trace: list[dict[str, int]] = field(default_factory=list)


def run_write(cases: list[WriteCase]) -> None:
    dut = WriteDma(arch_with_latency(4))
    assert dut.latency == WRITE_LATENCY == 1

    async def bench(ctx):
        for case in cases:
            s = case.s
            case.memory = memory = MemoryModel(case.mem, 4)
            for name, value in [
                ("address", s.address),
                ("map_w", s.map_shape[1]),
                ("rows", s.rows),
                ("cols", s.cols),
                ("r0", s.r0),
                ("c0", s.c0),
                ("step_r", s.step[0]),
                ("step_c", s.step[1]),
                ("words", s.words),
            ]:
                ctx.set(getattr(dut, name), value)
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            values = iter(case.values)
            for t in range(len(case.valid) + 2):
                offer = case.valid[t] if t < len(case.valid) else False
                ctx.set(dut.i.valid, offer)
                ctx.set(dut.i.payload, next(values) if offer else int(case.mem[0]))
                req = [ctx.get(x) for x in (dut.req_valid, dut.req_write, dut.req_addr, dut.req_data)]
                memory.serve(t, *req)
                row = dict(zip(("req_valid", "req_write", "req_addr", "req_data"), req, strict=True))
                row.update(
                    offer=offer,
                    ready=ctx.get(dut.i.ready),
                    last=ctx.get(dut.last),
                    done=ctx.get(dut.done),
                    error=ctx.get(dut.error),
                )
                case.trace.append(row)
                await ctx.tick()
            ctx.set(dut.i.valid, 0)

    run(dut, bench)


def check_write(case: WriteCase) -> None:
    s, words = case.s, case.s.words
    assert all(row["ready"] for row in case.trace)
    offers = [t for t, row in enumerate(case.trace) if row["offer"]]
    taken = offers[:words]
    addrs = write_addresses(s)
    want = [(t + WRITE_LATENCY, a, v) for t, a, v in zip(taken, addrs, case.values, strict=False)]
    assert case.memory is not None and case.memory.writes == want
    assert all(row["req_write"] for row in case.trace if row["req_valid"])
    assert [t for t, row in enumerate(case.trace) if row["last"]] == [taken[-1] + WRITE_LATENCY]
    for t, row in enumerate(case.trace):
        assert row["done"] == (t >= taken[-1] + WRITE_LATENCY), t
    image = case.mem.copy()
    _write(image, s, np.array(case.values[:words]).reshape(s.rows, s.cols))
    assert (case.memory.words == image).all()
    extra = offers[words:]
    errors = [row["error"] for row in case.trace]
    first = extra[0] + 1 if extra else len(errors)
    assert errors == [0] * first + [1] * (len(errors) - first)


def test_write_dma_random_regions():
    rng = np.random.default_rng(20)
    cases = []
    for n in range(40):
        s, mem = random_write_stream(rng, n)
        p = (1.0, 0.6, 0.3)[n // 9 % 3]
        valid = advance_pattern(rng, s.words, p)
        values = [int(v) for v in rng.integers(WORD_MIN, WORD_MAX + 1, s.words)]
        cases.append(WriteCase(s, mem, values, valid))
    run_write(cases)
    for case in cases:
        check_write(case)
    assert {c.s.step for c in cases} == {(a, b) for a in (1, 2, 3) for b in (1, 2, 3)}


def test_write_dma_exact_latency_and_words_after_the_last():
    rng = np.random.default_rng(21)
    s, mem = random_write_stream(rng)
    values = [int(v) for v in rng.integers(WORD_MIN, WORD_MAX + 1, s.words + 2)]
    back_to_back = WriteCase(s, mem, values[: s.words], [True] * s.words)
    too_many = WriteCase(s, mem, values, [True] * s.words + [False, True, False, True])
    again = WriteCase(s, mem, values[: s.words], [False, True] * s.words)  # clear wiped the error
    run_write([back_to_back, too_many, again])
    for case in (back_to_back, too_many, again):
        check_write(case)
    assert [t for t, row in enumerate(back_to_back.trace) if row["req_valid"]] == list(range(1, s.words + 1))
    assert any(row["error"] for row in too_many.trace)


def test_write_dma_huge_maps_and_steps():
    rng = np.random.default_rng(22)
    cases = []
    for s in huge_writes():
        values = [int(v) for v in rng.integers(WORD_MIN, WORD_MAX + 1, s.words)]
        cases.append(WriteCase(s, SparseMemory(), values, advance_pattern(rng, s.words, 0.7)))
    run_write(cases)
    for case in cases:
        taken = [t for t, row in enumerate(case.trace) if row["offer"]]
        want = [(t + 1, a, v) for t, a, v in zip(taken, write_addresses(case.s), case.values, strict=True)]
        assert case.memory is not None and case.memory.writes == want
        assert not any(row["error"] for row in case.trace)
    assert cases[0].memory.writes[-1][1] == cases[0].s.address + 699 * 60000 + 34600
    assert cases[1].memory.writes[-1][1] == cases[1].s.address + 34550 * 50 + 44


# ---------------------------------------------------------------------------------------------------
# elaboration
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make", [BeatGenerator, lambda: ReadDma(load_target("tiny")), lambda: WriteDma(load_target("tiny"))]
)
def test_components_convert_to_rtlil(make):
    text = rtlil.convert(make())
    assert "module" in text
