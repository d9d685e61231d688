"""Packed convolvers (``tile.lanes = 2``) in the per-cycle reference model (``sim/naive.py``) against
the cycle model (``sim/cycle.py``) and against cycles worked out by hand.

A packed convolver applies two kernels to one input window and makes two output maps (lanes 0 and
1). Both lanes' outputs of window ``k`` leave ``CONV_LATENCY`` after the last of the word completing
the window, lane 0's partial sum ``k`` and lane 1's partial sum ``k`` arrives
(``docs/architecture.md`` §13 item 4); each input waits at most
``tile.fifo_depth`` cycles for that join. The passes here are built by hand as :class:`Pass`
objects, encoded with ``encode_pass`` and decoded as the program file holds them, on the test
target ``tests/targets/packed.toml`` (2x2 grid, K = 5 so m = 3, FIFO 16, h = 1, L = 4, one cycle
per configuration word).
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
from nfc.compiler.program import ConvUnit, MapUnit, Pass, PoolUnit, Region, Stream
from nfc.compiler.timing import CONV_LATENCY, MAP_LATENCY, POOL_LATENCY, WRITE_LATENCY
from nfc.numerics import round_shift
from nfc.sim.cycle import ContractError, time_pass
from nfc.sim.functional import _run_pass
from nfc.sim.naive import NaiveTiming, naive_pass

TARGET = Path(__file__).parent / "targets" / "packed.toml"
ROWS, COLS = 6, 7  # every input map
OUT = (4, 5)  # 3 x 3 windows, stride 1, over 6 x 7
LAST = ROWS * COLS - 1  # the word (and beat) completing the last window


def _arch(h: int | None = None) -> ArchConfig:
    arch = load_target(TARGET)
    assert (arch.tile.lanes, arch.tile.convolver_size, arch.packed_size) == (2, 5, 3)
    assert (arch.tile.fifo_depth, arch.tile.router_latency, arch.memory.latency_cycles) == (16, 1, 4)
    assert arch.config_bus.cycles_per_word == 1
    if h is None:
        return arch
    return replace(arch, tile=replace(arch.tile, router_latency=h))


def _read(port: int, role: str, tile: int, route: tuple[int, ...], lane: int = 0, shape=None) -> Stream:
    """A read stream of a whole map (``ROWS x COLS`` data, ``OUT`` partial sums unless ``shape``)
    into ``tile``."""
    rows, cols = shape or ((ROWS, COLS) if role == "data" else OUT)
    region = Region(f"in{port}", lane, 0, 0, rows, cols)
    return Stream(port, "read", role, region, tile, route, rows * cols, sync=role == "psum", lane=lane)


def _write(port: int, tile: int, route: tuple[int, ...], lane: int = 0) -> Stream:
    return Stream(
        port, "write", "out", Region(f"out{port}", lane, 0, 0, *OUT), tile, route, OUT[0] * OUT[1], lane=lane
    )


def _conv(tile: int, psum: str = "bias", to: str = "port", delay: int = 0, packed: bool = True) -> ConvUnit:
    """A 3 x 3 convolver; packed: a second 3 x 3 kernel (lane 1, output map 1) with its own bias."""
    return ConvUnit(
        tile, "l", 0, 0, "mac", 0, (0, 0), (3, 3), (1, 1), (1, 1), tuple(range(-4, 5)), 2, 17, psum, to,
        delay=delay, out_channel1=1 if packed else -1, kernel1=tuple(range(9, 0, -1)) if packed else (),
        bias1=-23 if packed else 0,
    )  # fmt: skip


def _pass(streams: list[Stream], convs: list[ConvUnit], rate: tuple[int, int] = (1, 1)) -> LoadedPass:
    """The pass encoded as the scheduler would (``encode_pass``), then decoded as the program file
    holds it."""
    p = Pass(0, "conv", ("hand",), convs=tuple(convs), streams=tuple(streams), rate=rate, beats=ROWS * COLS)
    regions = {(s.region.buffer, s.region.channel): s.region for s in streams}
    addresses = {key: 100 * i for i, key in enumerate(regions)}
    shapes = {r.buffer: (r.rows, r.cols) for r in regions.values()}
    words = encode_pass(p, addresses, shapes)
    return LoadedPass(0, "conv", ("hand",), 0, {}, words, decode_pass(words))


def _both(lp: LoadedPass, arch: ArchConfig) -> NaiveTiming:
    """Both models on ``lp``: cycles, configuration, stream, stall, beats, busy and MACs equal."""
    fast, naive = time_pass(lp, arch), naive_pass(lp, arch)
    a = (fast.cycles, fast.config_cycles, fast.stream_cycles, fast.memory_stall_cycles, fast.beats)
    b = (naive.cycles, naive.config_cycles, naive.stream_cycles, naive.memory_stall_cycles, naive.beats)
    assert a == b, f"cycle.py {a}, naive {b}"
    assert fast.busy == naive.busy, f"busy {fast.busy} vs {naive.busy}"
    assert fast.events.macs == naive.macs, f"MACs {fast.events.macs} vs {naive.macs}"
    return naive


def _refused_by_both(lp: LoadedPass, arch: ArchConfig, match: str | None = None) -> None:
    for model in (time_pass, naive_pass):
        with pytest.raises(ContractError, match=match):
            model(lp, arch)


def _words(n_streams_hops: list[int], convs: int, packed: int) -> int:
    """Configuration words: PASS; 6 + hops per stream; CONV, CONV_LINK, CONV_SHIFT and 5 CONV_W
    (nine weights) per convolver, CONV_PACK and 5 more CONV_W per packed one; RATE, GO."""
    return 1 + sum(6 + n for n in n_streams_hops) + 8 * convs + 6 * packed + 2


# ---------------------------------------------------------------------------------------------------
# (a) one packed convolver with a bias, writing both lanes
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("h", [1, 3])
@pytest.mark.parametrize("rate", [(1, 1), (2, 3)])
def test_one_packed_convolver_with_a_bias(h: int, rate: tuple[int, int]):
    """Tile 0: data from its own port; lane 0 written over one hop (0 -> 1), lane 1 at tile 0. Both
    lanes of the last window leave C + beat(41) + L + CONV_LATENCY; lane 0's write lands h cycles
    after lane 1's."""
    arch = _arch(h)
    lp = _pass(
        [_read(0, "data", 0, (0,)), _write(1, 0, (0, 1)), _write(4, 0, (0,), lane=1)],
        [_conv(0)],
        rate,
    )
    (u,) = lp.decoded.convs
    assert (u.packed, u.kernel1, u.bias1) == (True, tuple(range(9, 0, -1)), -23)
    assert [s.lane for s in lp.decoded.streams] == [0, 0, 1]
    C = _words([0, 1, 0], 1, 1)
    assert len(lp.words) == C
    p, q = rate
    beat = C + -(-(LAST + 1) * q // p) - 1  # the last beat
    leave = beat + 4 + CONV_LATENCY
    naive = _both(lp, arch)
    assert naive.last_writes == (leave + h + WRITE_LATENCY, leave + WRITE_LATENCY)
    assert naive.cycles == leave + h + WRITE_LATENCY + 1
    assert naive.macs == 2 * 9 * OUT[0] * OUT[1]  # both lanes' taps
    assert naive.busy == {"conv:0": ROWS * COLS}


def test_lane_one_written_alone_and_lane_zero_alone():
    """A packed convolver whose lane 0 nobody writes still makes its lane 1 (and the reverse)."""
    arch = _arch()
    for writes in ([_write(4, 0, (0,), lane=1)], [_write(4, 0, (0,))]):
        lp = _pass([_read(0, "data", 0, (0,)), *writes], [_conv(0)])
        C = _words([0, 0], 1, 1)
        naive = _both(lp, arch)
        assert naive.cycles == C + LAST + 4 + CONV_LATENCY + WRITE_LATENCY + 1


# ---------------------------------------------------------------------------------------------------
# (b) partial sums for both lanes from two ports, routes of different lengths
# ---------------------------------------------------------------------------------------------------
ROUTES = {  # lane 0's partial-sum stream, lane 1's: (port, route to tile 1)
    "lane 1 two hops longer": ((0, (0, 1)), (3, (2, 3, 1))),
    "lane 0 longer": ((3, (2, 3, 1)), (5, (1,))),
    "lane 1 one hop longer": ((5, (1,)), (0, (0, 1))),
}


def _port_pass(routes: str, delay: int) -> LoadedPass:
    """Tile 1: data from its own port (alignment delay ``delay``), lane 0's and lane 1's partial
    sums over the routes of ``ROUTES[routes]``; lane 0 written at tile 1 if that port is free, else
    over 1 -> 3; lane 1 over 1 -> 0."""
    (p0, r0), (p1, r1) = ROUTES[routes]
    w0 = (5, (1,)) if 5 not in (p0, p1) else (2, (1, 3))
    return _pass(
        [
            _read(1, "data", 1, (1,)),
            _read(p0, "psum", 1, r0),
            _read(p1, "psum", 1, r1, lane=1),
            _write(w0[0], 1, w0[1]),
            _write(4, 1, (1, 0), lane=1),
        ],
        [_conv(1, psum="port", delay=delay)],
    )


@pytest.mark.parametrize("h", [1, 2])
@pytest.mark.parametrize("delay", [0, 1, 2, 4, 6])
@pytest.mark.parametrize("routes", sorted(ROUTES))
def test_partial_sums_of_both_lanes_from_two_ports(routes: str, delay: int, h: int):
    """Partial sum k of each lane is requested on the beat of the data word completing window k and
    arrives L + hops x h later; the data arrive L + delay after their beat. The window joins the
    later of all three, both lanes leave CONV_LATENCY after."""
    arch = _arch(h)
    lp = _port_pass(routes, delay)
    d = lp.decoded
    assert [(s.role, s.lane, s.sync) for s in d.streams if s.direction == "read"] == [
        ("data", 0, False),
        ("psum", 0, True),
        ("psum", 1, True),
    ]
    hops = [len(s.route) - 1 for s in d.streams]
    C = _words(hops, 1, 1)
    assert len(lp.words) == C
    join = C + LAST + 4 + max(delay, hops[1] * h, hops[2] * h)
    leave = join + CONV_LATENCY
    naive = _both(lp, arch)
    assert naive.last_writes == (leave + hops[3] * h + WRITE_LATENCY, leave + hops[4] * h + WRITE_LATENCY)
    assert naive.cycles == max(naive.last_writes) + 1
    assert naive.fifo_peak["conv:1"] >= 1  # some input always waits: the routes differ


@pytest.mark.parametrize("late", [0, 1])
def test_partial_sums_of_the_lanes_skewed_beyond_the_fifo(late: int):
    """One lane's partial sums cross one hop more than the other's: with h = 16 they arrive 16
    cycles after the other lane's (the data wait the same 16 cycles in the alignment FIFO): the
    early ones wait 16 cycles, accepted; with h = 17, 17 cycles, refused by both models, whatever
    the data's delay."""
    streams = [_read(1, "data", 1, (1,)), _write(4, 1, (1, 0)), _write(2, 1, (1, 3), lane=1)]
    far, near = _read(0, "psum", 1, (0, 1), lane=late), _read(5, "psum", 1, (1,), lane=1 - late)
    streams += [near, far] if late else [far, near]

    def make(delay: int) -> LoadedPass:
        return _pass(streams, [_conv(1, psum="port", delay=delay)])

    C = _words([0, 1, 1, 0, 1], 1, 1)
    naive = _both(make(16), _arch(16))
    # join L + 16 after the last beat; both writes cross one hop of 16
    assert naive.last_writes == (C + LAST + 4 + 16 + CONV_LATENCY + 16 + WRITE_LATENCY,) * 2
    assert naive.cycles == C + LAST + 4 + 16 + CONV_LATENCY + 16 + WRITE_LATENCY + 1
    for delay in (0, 16):
        _refused_by_both(make(delay), _arch(17), "FIFO")


def test_data_skewed_beyond_the_fifo_from_both_lanes_partial_sums():
    """h = 1, lane 0's partial sums at their tile, lane 1's two hops away: with the alignment delay
    16 the data arrive 16 cycles after lane 0's partial sums and 14 after lane 1's (accepted); the
    FIFO bound on the delay itself refuses 17."""
    arch = _arch()
    streams = [
        _read(1, "data", 1, (1,)),
        _read(5, "psum", 1, (1,)),
        _read(3, "psum", 1, (2, 3, 1), lane=1),
        _write(2, 1, (1, 3)),
        _write(4, 1, (1, 0), lane=1),
    ]
    lp = _pass(streams, [_conv(1, psum="port", delay=16)])
    C = _words([0, 0, 2, 1, 1], 1, 1)
    assert _both(lp, arch).cycles == C + LAST + 4 + 16 + CONV_LATENCY + 1 + WRITE_LATENCY + 1
    _refused_by_both(_pass(streams, [_conv(1, psum="port", delay=17)]), arch, "FIFO")


def test_lane_one_partial_sums_that_do_not_match_the_windows_are_refused():
    arch = _arch()
    base = [_read(1, "data", 1, (1,)), _read(5, "psum", 1, (1,)), _write(0, 1, (1, 0))]
    conv = [_conv(1, psum="port")]
    for shape in ((OUT[0], OUT[1] - 1), (OUT[0] + 1, OUT[1])):  # one window short, one row too many
        lane1 = _read(3, "psum", 1, (2, 3, 1), lane=1, shape=shape)
        _refused_by_both(_pass([*base, lane1], conv), arch, "partial sums do not match")
    _refused_by_both(_pass(base, conv), arch, "lane 1")  # no lane-1 partial sums at all


def test_a_lane_one_write_from_an_unpacked_convolver_is_refused():
    arch = _arch()
    lp = _pass(
        [_read(0, "data", 0, (0,)), _write(1, 0, (0, 1)), _write(4, 0, (0,), lane=1)],
        [_conv(0, packed=False)],
    )
    _refused_by_both(lp, arch, "lane 1 of tile 0 has nothing to write")


# ---------------------------------------------------------------------------------------------------
# (c) a chain of two packed convolvers
# ---------------------------------------------------------------------------------------------------
def _chain(delay: int, packed_first: bool = True) -> LoadedPass:
    """Tile 0 (bias) -> tile 1 (its partial sums: tile 0's lanes, one link each); both tiles read
    their data at their own port; tile 1's lane 0 written at tile 1, lane 1 over 1 -> 3."""
    return _pass(
        [
            _read(0, "data", 0, (0,)),
            _read(1, "data", 1, (1,)),
            _write(5, 1, (1,)),
            _write(2, 1, (1, 3), lane=1),
        ],
        [_conv(0, to="tile:1", packed=packed_first), _conv(1, psum="tile:0", delay=delay)],
    )


@pytest.mark.parametrize("h", [1, 2, 5])
@pytest.mark.parametrize("delay", [0, 3, 4, 5, 9, 16])
def test_a_chain_of_two_packed_convolvers(delay: int, h: int):
    """Tile 0's lanes leave L + CONV_LATENCY after their beat and reach tile 1 h later; tile 1's
    data are ready L + delay after their beat. Tile 1 joins the later, both its lanes leave
    CONV_LATENCY after."""
    arch = _arch(h)
    lp = _chain(delay)
    assert [(u.tile, u.packed, u.psum_from) for u in lp.decoded.convs] == [
        (0, True, "bias"),
        (1, True, "tile:0"),
    ]
    C = _words([0, 0, 0, 1], 2, 2)
    assert len(lp.words) == C
    join = C + LAST + 4 + max(delay, CONV_LATENCY + h)
    leave = join + CONV_LATENCY
    naive = _both(lp, arch)
    assert naive.last_writes == (leave + WRITE_LATENCY, leave + h + WRITE_LATENCY)
    assert naive.cycles == leave + h + WRITE_LATENCY + 1
    assert naive.macs == 2 * 2 * 9 * OUT[0] * OUT[1]


def test_a_chain_skewed_beyond_the_fifo_is_refused():
    """h = 20: tile 0's lanes reach tile 1 L + CONV_LATENCY + 20 = L + 23 after the beat; the data
    ready L + delay after: 16 cycles apart with delay 7 (accepted), 17 with delay 6 (refused by both
    models: both lanes' partial sums wait too long)."""
    arch = _arch(20)
    _both(_chain(7), arch)
    _refused_by_both(_chain(6), arch, "FIFO")


def test_a_packed_convolver_chained_after_an_unpacked_one_is_refused_by_the_naive_model():
    """Lane 1's partial sums come from the source tile's lane-1 output: an unpacked source has none.
    (The cycle model takes the source's only output for both lanes; see the report.)"""
    with pytest.raises(ContractError, match="packs no second kernel"):
        naive_pass(_chain(4, packed_first=False), _arch())


# ---------------------------------------------------------------------------------------------------
# (d) both lanes through their mappers and pooling units
# ---------------------------------------------------------------------------------------------------
POOLED = (OUT[0] // 2, OUT[1] // 2)  # 2 x 2 max pooling of the 4 x 5 outputs: 2 x 2, a column dropped


def _mapped_pooled_pass(h_write: bool) -> LoadedPass:
    """Tile 0: a packed convolver whose lanes both go through the tile's mapper configuration (ReLU
    as one slope-0 and one slope-1 segment) and its 2 x 2 max pooling; lane 0 written at tile 0,
    lane 1 at tile 0 or over one hop (0 -> 1)."""
    relu = MapUnit(0, "l", 0, (0,), (0, 256), (0, 0), 8)  # threshold 0; slopes 0 and 1.0 (Q.8)
    pool = PoolUnit(0, "l", 0, "max", 2, *OUT, 0, 0, 0, 0)
    region = Region("out", 0, 0, 0, *POOLED)
    writes = [
        Stream(4, "write", "out", region, 0, (0,), POOLED[0] * POOLED[1]),
        Stream(
            1 if h_write else 5, "write", "out", replace(region, channel=1), 0, (0, 1) if h_write else (0,),
            POOLED[0] * POOLED[1], lane=1,
        ),
    ]  # fmt: skip
    conv = replace(_conv(0), act_tile=0)
    p = Pass(
        0, "conv", ("hand",), convs=(conv,), streams=(_read(0, "data", 0, (0,)), *writes), maps=(relu,),
        pools=(pool,), rate=(1, 1), beats=ROWS * COLS,
    )  # fmt: skip
    regions = {(s.region.buffer, s.region.channel): s.region for s in p.streams}
    addresses = {key: 100 * i for i, key in enumerate(regions)}
    shapes = {r.buffer: (r.rows, r.cols) for r in regions.values()}
    words = encode_pass(p, addresses, shapes)
    return LoadedPass(0, "conv", ("hand",), 0, {}, words, decode_pass(words))


@pytest.mark.parametrize("h_write", [False, True])
def test_both_lanes_through_their_mappers_and_pooling_units(h_write: bool):
    """The last pooled word of both lanes completes with output (3, 3), window 18, whose last input
    word is (5, 5) = 40: it leaves CONV_LATENCY + MAP_LATENCY + POOL_LATENCY after that word arrives
    (L = 4 after its beat). Lane 1's mapper and pooling unit count as operators of their own."""
    arch = _arch()
    lp = _mapped_pooled_pass(h_write)
    (u,) = lp.decoded.convs
    assert (u.packed, u.act_tile) == (True, 0)
    C = len(lp.words)
    leave = C + 5 * COLS + 5 + 4 + CONV_LATENCY + MAP_LATENCY + POOL_LATENCY
    naive = _both(lp, arch)
    assert naive.last_writes == (leave + WRITE_LATENCY, leave + h_write + WRITE_LATENCY)
    n_out = OUT[0] * OUT[1]
    assert naive.busy == {
        "conv:0": ROWS * COLS,
        "map:0": n_out,
        "map1:0": n_out,
        "pool:0": n_out,
        "pool1:0": n_out,
    }


def test_both_lanes_mapped_and_pooled_values():
    """The functional executor: each lane's map is its own kernel's, then the shared ReLU and 2 x 2
    max pooling, bit for bit as numpy computes them here."""
    lp = _mapped_pooled_pass(True)
    mem = np.zeros(1000, dtype=np.int64)
    rng = np.random.default_rng(3)
    x = rng.integers(-300, 300, (ROWS, COLS))
    mem[0 : ROWS * COLS] = x.reshape(-1)  # the read region "in0" sits at address 0
    _run_pass(mem, lp.decoded)
    (u,) = lp.decoded.convs
    for lane, (kernel, bias, address) in enumerate(((u.kernel, u.bias, 100), (u.kernel1, u.bias1, 200))):
        k = np.array(kernel).reshape(3, 3)
        acc = np.array([[np.sum(x[i : i + 3, j : j + 3] * k) for j in range(OUT[1])] for i in range(OUT[0])])
        raw = np.clip(bias + round_shift(acc, u.shift), -(1 << 15), (1 << 15) - 1)
        relu = np.maximum(raw, 0)
        pooled = relu[:4, :4].reshape(2, 2, 2, 2).max(axis=(1, 3))
        got = mem[address : address + 4].reshape(2, 2)
        assert np.array_equal(got, pooled), f"lane {lane}: {got} vs {pooled}"
