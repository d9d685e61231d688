"""Accumulation buffers (``tile.acc_words``) in the simulators: a chain's partial sums kept on the
tile between passes (docs/architecture.md §13 item 4b).

Hand-built passes on ``tests/targets/acc.toml`` (2x2 grid, K = 5 packing two 3x3 kernels, 64-word
buffers per lane, FIFO 16, h = 1, L = 4, one cycle per configuration word), encoded as the scheduler
would and decoded as the program file holds them. The per-cycle reference (``sim/naive.py``) and the
cycle model (``sim/cycle.py``) must agree with each other and with cycles worked out by hand; the
functional executor (``sim/functional.py``) with numpy.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nfc.arch import ArchConfig, load_target
from nfc.compiler.binary import LoadedPass
from nfc.compiler.decode import decode_pass
from nfc.compiler.encode import encode_pass
from nfc.compiler.program import ConvUnit, Pass, Region, Stream
from nfc.compiler.timing import ACC_LATENCY, CONV_LATENCY, WRITE_LATENCY
from nfc.errors import NfcError
from nfc.numerics import round_shift, saturate
from nfc.sim.cycle import ContractError, time_pass
from nfc.sim.functional import _run_pass
from nfc.sim.naive import naive_pass

TARGETS = Path(__file__).parent / "targets"
ROWS, COLS = 6, 7  # every input map
OUT = (4, 5)  # 3 x 3 windows over 6 x 7
LAST = ROWS * COLS - 1  # the word (and beat) completing the last window
L = 4  # memory latency


def _arch(name: str = "acc") -> ArchConfig:
    arch = load_target(TARGETS / f"{name}.toml")
    assert (arch.tile.lanes, arch.tile.fifo_depth, arch.memory.latency_cycles) == (2, 16, L)
    assert arch.config_bus.cycles_per_word == 1
    return arch


def _conv(tile: int, psum: str, to: str, channel: int, packed: bool = True) -> ConvUnit:
    """A 3 x 3 convolver on input map ``channel``; packed: a second kernel (lane 1)."""
    k0 = tuple(int(v) for v in np.arange(-4, 5) + channel)
    k1 = tuple(int(v) for v in np.arange(9, 0, -1) - channel)
    return ConvUnit(
        tile, "l", 0, channel, "mac", channel, (0, 0), (3, 3), (1, 1), (1, 1), k0, 2, 17 if psum == "bias" else 0,
        psum, to, out_channel1=1 if packed else -1, kernel1=k1 if packed else (),
        bias1=-23 if packed and psum == "bias" else 0, acc_words=OUT[0] * OUT[1] if to == "acc" else 0,
    )  # fmt: skip


def _pass(channel: int, psum: str, to: str, packed: bool = True, tile: int = 0) -> LoadedPass:
    """Tile ``tile`` reads input map ``channel`` from port 0 (over 0 -> tile when tile 1); with ``to``
    "port" both lanes are written at the tile (ports 4 and 5)."""
    route = (0,) if tile == 0 else (0, 1)
    streams = [Stream(0, "read", "data", Region("in", channel, 0, 0, ROWS, COLS), tile, route, ROWS * COLS)]
    if to == "port":
        for lane in range(2 if packed else 1):
            region = Region("out", lane, 0, 0, *OUT)
            streams.append(
                Stream(4 + lane, "write", "out", region, tile, (tile,), OUT[0] * OUT[1], lane=lane)
            )
    p = Pass(
        0, "conv", ("hand",), convs=(_conv(tile, psum, to, channel, packed),), streams=tuple(streams),
        rate=(1, 1), beats=ROWS * COLS,
    )  # fmt: skip
    addresses = {("in", c): 100 * c for c in range(3)} | {("out", 0): 400, ("out", 1): 500}
    words = encode_pass(p, addresses, {"in": (ROWS, COLS), "out": OUT})
    return LoadedPass(0, "conv", ("hand",), 0, {}, words, decode_pass(words))


def _both(lp: LoadedPass, arch: ArchConfig):
    fast, naive = time_pass(lp, arch), naive_pass(lp, arch)
    a = (fast.cycles, fast.config_cycles, fast.stream_cycles, fast.memory_stall_cycles, fast.beats)
    b = (naive.cycles, naive.config_cycles, naive.stream_cycles, naive.memory_stall_cycles, naive.beats)
    assert a == b, f"cycle.py {a}, naive {b}"
    assert fast.busy == naive.busy and fast.events.macs == naive.macs
    return fast, naive


@pytest.mark.parametrize("packed", [True, False])
def test_outputs_stored_in_the_buffer_end_the_pass(packed: bool):
    """A bias start storing its outputs: no memory write; the pass ends one cycle after the last word
    is stored, ACC_LATENCY after it leaves (C + beat + L + CONV_LATENCY)."""
    lp = _pass(0, "bias", "acc", packed)
    (u,) = lp.decoded.convs
    assert (u.to, u.acc_words, u.packed) == ("acc", OUT[0] * OUT[1], packed)
    C = len(lp.words)
    fast, naive = _both(lp, _arch())
    assert naive.cycles == C + LAST + L + CONV_LATENCY + ACC_LATENCY + 1
    assert naive.last_writes == ()  # no write stream
    assert fast.events.dram_bytes_written == 0
    assert fast.events.fifo_words == OUT[0] * OUT[1] * (2 if packed else 1)  # the words stored


@pytest.mark.parametrize("packed", [True, False])
def test_partial_sums_from_the_buffer_wait_for_nothing(packed: bool):
    """Partial sums from the buffer are there when each window completes: the outputs leave
    CONV_LATENCY after the completing word, as a bias start's, and are written WRITE_LATENCY later."""
    lp = _pass(1, "acc", "port", packed)
    (u,) = lp.decoded.convs
    assert u.psum_from == "acc"
    C = len(lp.words)
    fast, naive = _both(lp, _arch())
    leave = C + LAST + L + CONV_LATENCY
    assert naive.last_writes == (leave + WRITE_LATENCY,) * (2 if packed else 1)
    assert naive.cycles == leave + WRITE_LATENCY + 1
    assert fast.events.dram_bytes_read == ROWS * COLS * 2  # the data only


def test_a_chain_through_the_buffer_adds_up():
    """Three passes of one tile: term 0 (bias) stored, term 1 added to it and stored, term 2 added and
    written. Both lanes equal the three-term chain computed with numpy, rounding and saturating
    after each term as the golden model does."""
    rng = np.random.default_rng(7)
    x = rng.integers(-900, 900, (3, ROWS, COLS))
    mem = np.zeros(600, dtype=np.int64)
    for c in range(3):
        mem[100 * c : 100 * c + ROWS * COLS] = x[c].reshape(-1)
    acc: dict = {}
    passes = [_pass(0, "bias", "acc"), _pass(1, "acc", "acc"), _pass(2, "acc", "port")]
    for lp in passes:
        _run_pass(mem, lp.decoded, acc)
    for lane in range(2):
        p = np.full(OUT, passes[0].decoded.convs[0].bias1 if lane else passes[0].decoded.convs[0].bias)
        for c, lp in enumerate(passes):
            (u,) = lp.decoded.convs
            k = np.array(u.kernel1 if lane else u.kernel).reshape(3, 3)
            s = np.array(
                [[np.sum(x[c, i : i + 3, j : j + 3] * k) for j in range(OUT[1])] for i in range(OUT[0])]
            )
            p = saturate(p + round_shift(s, u.shift), 16)[0]
        got = mem[400 + 100 * lane : 400 + 100 * lane + OUT[0] * OUT[1]].reshape(OUT)
        assert np.array_equal(got, p), f"lane {lane}"


def test_reading_a_buffer_no_pass_stored_is_a_program_error():
    with pytest.raises(NfcError, match="no pass has stored"):
        _run_pass(np.zeros(600, dtype=np.int64), _pass(1, "acc", "port").decoded, {})


def test_a_target_without_buffers_refuses_them():
    """packed.toml has no accumulation buffers: both models refuse a pass that uses one."""
    arch = _arch("packed")
    for lp in (_pass(0, "bias", "acc"), _pass(1, "acc", "port")):
        for model in (time_pass, naive_pass):
            with pytest.raises(ContractError, match="accumulation buffer"):
                model(lp, arch)


def test_a_store_of_the_wrong_size_is_refused():
    """CONV_ACC says how many outputs the buffer takes; the convolver's windows must be as many."""
    lp = _pass(0, "bias", "acc")
    (u,) = lp.decoded.convs
    bad = replace(lp, decoded=replace(lp.decoded, convs=(replace(u, acc_words=OUT[0] * OUT[1] - 1),)))
    for model in (time_pass, naive_pass):
        with pytest.raises(ContractError):
            model(bad, _arch())
