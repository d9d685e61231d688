"""The timing contract (``docs/architecture.md`` §13): the closed-form cycle model against the
per-cycle reference model, and both against cycle counts derived by hand.

``nfc.sim.cycle.time_pass`` computes every word's cycle from max-plus formulas;
``nfc.sim.naive.naive_pass`` clocks registers and handshakes once per cycle. They must agree on
every pass of every small network for every target and policy, and both must give the numbers
worked out here from the contract's text.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path

import pytest
from helpers_nets import NETS, build_net

from nfc.arch import ArchConfig, load_target
from nfc.compiler.binary import LoadedPass, as_loaded
from nfc.compiler.decode import decode_pass
from nfc.compiler.driver import compile_graph
from nfc.compiler.encode import ALU_OPS, word
from nfc.compiler.timing import ALU_LATENCY, CONV_LATENCY, MAP_LATENCY, WRITE_LATENCY
from nfc.sim.cycle import ContractError, time_pass
from nfc.sim.naive import naive_pass

TARGETS = ["tiny", "virtex6", "asic45"]
POLICIES = ["nfc", "luaflow"]

_PROGRAMS: dict[tuple[str, str, str], list[LoadedPass]] = {}


def _passes(net: str, target: str, policy: str, folder: Path) -> list[LoadedPass]:
    """The passes of ``net`` compiled for ``target`` with ``policy``, as the program file holds them."""
    key = (net, target, policy)
    if key not in _PROGRAMS:
        result = compile_graph(build_net(net, folder), load_target(target), policy)
        prog = as_loaded(result.program)
        _PROGRAMS[key] = [s for s in prog.steps if isinstance(s, LoadedPass)]
    return _PROGRAMS[key]


def _both(lp: LoadedPass, arch: ArchConfig) -> tuple:
    """(cycles, config, stream, memory stall, beats, busy) from both models; they must be equal."""
    fast, naive = time_pass(lp, arch), naive_pass(lp, arch)
    a = (fast.cycles, fast.config_cycles, fast.stream_cycles, fast.memory_stall_cycles, fast.beats, fast.busy)
    b = (naive.cycles, naive.config_cycles, naive.stream_cycles, naive.memory_stall_cycles, naive.beats)
    assert a[:5] == b, f"pass {lp.index} ({lp.kind} {', '.join(lp.layers)}): cycle.py {a[:5]}, naive {b}"
    assert fast.busy == naive.busy, f"pass {lp.index}: busy {fast.busy} vs {naive.busy}"
    return a


# ---------------------------------------------------------------------------------------------------
# 1. the two models agree on every pass of compiled programs
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("net", sorted(NETS))
def test_models_agree_on_every_pass(
    tmp_path_factory: pytest.TempPathFactory, net: str, target: str, policy: str
):
    arch = load_target(target)
    passes = _passes(net, target, policy, tmp_path_factory.mktemp(net))
    assert passes
    for lp in passes:
        _, config, stream, stall, beats, _ = _both(lp, arch)
        assert config == len(lp.words) * arch.config_bus.cycles_per_word
        assert beats == lp.decoded.beats and stall == stream - beats


def test_the_programs_cover_every_kind_of_pass(tmp_path_factory: pytest.TempPathFactory):
    """The agreement above means something only if the programs use every feature of the contract."""
    seen: set[str] = set()
    for net in sorted(NETS):
        for target in TARGETS:
            for policy in POLICIES:
                for lp in _passes(net, target, policy, tmp_path_factory.mktemp(net)):
                    p = lp.decoded
                    seen.add(p.kind)
                    tiles = {u.tile for u in p.convs}
                    for u in p.convs:
                        if u.to.startswith("tile:"):
                            dst = int(u.to.split(":")[1])
                            if dst in tiles and all(v.psum_from != f"tile:{u.tile}" for v in p.convs):
                                seen.add(f"fused pooling ({policy})")
                        if u.psum_from.startswith("tile:"):
                            seen.add("chain")
                        if u.act_tile >= 0:
                            seen.add("mapper at a chain's end")
                    if any(s.role == "psum" for s in p.streams):
                        seen.add(f"partial sums from a port ({policy})")
                    if p.rate[0] < p.rate[1]:
                        seen.add("rate below 1")
                    if any(s.direction == "read" and len(s.route) > 1 for s in p.streams):
                        seen.add("read over router hops")
                    if any(s.direction == "write" and len(s.route) > 1 for s in p.streams):
                        seen.add("write over router hops")
                    if net == "wide" and target == "tiny":
                        seen |= {"strips" for s in p.streams if s.direction == "write" and s.c0 > 0}
    for feature in [
        "conv",
        "pool",
        "map",
        "eltwise",
        "copy",
        "fused pooling (nfc)",
        "chain",
        "mapper at a chain's end",
        "partial sums from a port (luaflow)",
        "rate below 1",
        "read over router hops",
        "write over router hops",
        "strips",
    ]:
        assert feature in seen, feature


# ---------------------------------------------------------------------------------------------------
# 2. hand-derived cycle counts
# ---------------------------------------------------------------------------------------------------
def _stream(
    n: int, port: int, direction: str, role: str, tile: int, rows: int, cols: int, route: tuple
) -> list:
    """The words of stream number ``n`` (PORT .. PORT_STEP and ROUTE: 6 + hops words)."""
    sync = 0x80 if role == "psum" else 0
    code = {"data": 0, "psum": 1, "out": 2}[role] | sync
    words = [
        word("PORT", port, 0 if direction == "read" else 1, code, tile),
        word("PORT_ADDR", arg=0),
        word("PORT_MAP", arg=(rows << 16) | cols),
        word("PORT_WIN", arg=(rows << 16) | cols),
        word("PORT_ORG", arg=0),
        word("PORT_STEP", 1, 1, 0, rows * cols),
    ]
    return words + [word("ROUTE", a, b, 0, n) for a, b in zip(route, route[1:], strict=False)]


def _conv(
    tile: int,
    block=(3, 3),
    stride=(1, 1),
    dilation=(1, 1),
    mode="mac",
    psum="bias",
    to="port",
    act=-1,
    delay=0,
):
    """CONV, CONV_LINK, CONV_SHIFT and the CONV_W words (ceil(taps / 2); none in max mode)."""
    src = {"bias": 0, "port": 1}.get(psum, 2)
    src_tile = int(psum.split(":")[1]) if psum.startswith("tile:") else 0
    link = (1 << 31 | int(to.split(":")[1]) << 16 if to.startswith("tile:") else 0) | delay
    (kh, kw), (sh, sw), (dh, dw) = block, stride, dilation
    words = [
        word("CONV", tile, 0 if mode == "mac" else 1, kh << 4 | kw, sh << 12 | sw << 8 | dh << 4 | dw),
        word("CONV_LINK", tile, src, src_tile, link),
        word("CONV_SHIFT", tile, 0, act + 1, 0),
    ]
    if mode == "mac":
        taps = kh * kw  # two weights a word, a zero after an odd last one
        words += [word("CONV_W", tile, i, 0, 1 << 16 | (i + 1 < taps)) for i in range(0, taps, 2)]
    return words


def _map(tile: int) -> list:
    """MAP and one segment (MAP_SEG, MAP_SLOPE): 3 words."""
    return [word("MAP", tile, 1, 0, 0), word("MAP_SEG", tile, 0, 0, 0), word("MAP_SLOPE", tile, 0, 0, 1)]


def _pass(kind: str, groups: list[list], rate: tuple[int, int], beats: int) -> LoadedPass:
    """PASS, the groups, RATE, GO: decoded as the program file would be."""
    words = [word("PASS", {"conv": 0, "pool": 1, "map": 2, "eltwise": 3, "copy": 4}[kind], arg=0)]
    for g in groups:
        words += g
    words += [word("RATE", arg=rate[0] << 16 | rate[1]), word("GO", arg=beats)]
    return LoadedPass(0, kind, ("hand",), 0, {}, tuple(words), decode_pass(words))


def _arch(target: str, h: int) -> ArchConfig:
    arch = load_target(target)
    return replace(arch, tile=replace(arch.tile, router_latency=h))


def _cycles(lp: LoadedPass, arch: ArchConfig) -> tuple[int, int, int]:
    """(cycles, stream cycles, memory stall cycles), the same from both models."""
    cycles, _, stream, stall, _, _ = _both(lp, arch)
    return cycles, stream, stall


# one convolver: (block, stride, dilation, mode, output rows x cols, index of the input word that
# completes the last window) over a 6 x 7 input
SINGLE = [
    ((3, 3), (1, 1), (1, 1), "mac", (4, 5), 5 * 7 + 6),  # the last word
    ((3, 3), (2, 2), (1, 1), "mac", (2, 3), 4 * 7 + 6),  # windows end on rows 2, 4 and columns 2, 4, 6
    ((3, 3), (1, 1), (2, 2), "mac", (2, 3), 5 * 7 + 6),  # span 5
    ((2, 2), (2, 2), (1, 1), "max", (3, 3), 5 * 7 + 5),  # columns 1, 3, 5: word 41 completes nothing
    ((2, 3), (3, 2), (2, 1), "mac", (2, 3), 5 * 7 + 6),  # span 3 x 3: rows 2, 5; columns 2, 4, 6
    ((1, 4), (1, 3), (1, 1), "mac", (6, 2), 5 * 7 + 6),  # columns 3, 6
]


@pytest.mark.parametrize(("block", "stride", "dilation", "mode", "out", "last"), SINGLE)
def test_a_single_convolver(block, stride, dilation, mode, out, last):
    """virtex6 (L = 24, 2 cycles per configuration word) with h = 2: the read stream crosses 2
    hops (0 -> 1 -> 3), the alignment delay is 5, the write crosses 2 hops (3 -> 2 -> 0)."""
    arch = _arch("virtex6", 2)
    lp = _pass(
        "conv",
        [
            _stream(0, 0, "read", "data", 3, 6, 7, (0, 1, 3)),
            _stream(1, 1, "write", "out", 3, out[0], out[1], (3, 2, 0)),
            _conv(3, block, stride, dilation, mode, delay=5),
        ],
        (1, 1),
        42,
    )
    taps = block[0] * block[1]
    weight_words = (taps + 1) // 2 if mode == "mac" else 0
    n = 1 + (6 + 2) + (6 + 2) + (3 + weight_words) + 2
    assert len(lp.words) == n
    C = n * 2
    # beat `last` at C + last; + L + 2 hops x h; + delay; + CONV_LATENCY; + 2 hops x h + WRITE_LATENCY; + 1
    expected = C + last + 24 + 2 * 2 + 5 + CONV_LATENCY + 2 * 2 + WRITE_LATENCY + 1
    assert _cycles(lp, arch) == (expected, 42, 0)


def test_a_single_convolver_in_numbers():
    """The first case of the table above with every figure written out: 27 words x 2 cycles of
    configuration, 42 beats (the last window completes with the last word) at rate 1."""
    arch = _arch("virtex6", 2)
    lp = _pass(
        "conv",
        [
            _stream(0, 0, "read", "data", 3, 6, 7, (0, 1, 3)),
            _stream(1, 1, "write", "out", 3, 4, 5, (3, 2, 0)),
            _conv(3, delay=5),
        ],
        (1, 1),
        42,
    )
    # C + B + L + hops x h + delay + CONV_LATENCY + write hops x h + WRITE_LATENCY
    assert _cycles(lp, arch) == (27 * 2 + 42 + 24 + 2 * 2 + 5 + 3 + 2 * 2 + 1, 42, 0) == (137, 42, 0)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_a_chain_of_convolvers(n: int):
    """n convolvers in snake order (tiles 0, 1, 3, 2), one hop apart, on tiny (L = 4, 1 cycle per
    word) with h = 2; every data stream enters at its own tile; the scheduler's delays
    i x (CONV_LATENCY + h) line the data up with the partial sum of the previous convolver, so each
    convolver adds CONV_LATENCY + h; the last one's output goes through a mapper and crosses one hop
    to the write port."""
    arch = _arch("tiny", 2)
    h, tiles = 2, [0, 1, 3, 2][:n]
    out_hop = {0: 1, 1: 0, 3: 1, 2: 0}[tiles[-1]]
    groups = [_stream(i, i, "read", "data", t, 6, 7, (t,)) for i, t in enumerate(tiles)]
    groups.append(_stream(n, n, "write", "out", tiles[-1], 4, 5, (tiles[-1], out_hop)))
    for i, t in enumerate(tiles):
        last = i == n - 1
        groups.append(
            _conv(
                t,
                psum="bias" if i == 0 else f"tile:{tiles[i - 1]}",
                to="port" if last else f"tile:{tiles[i + 1]}",
                act=t if last else -1,
                delay=i * (CONV_LATENCY + h),
            )
        )
    groups.append(_map(tiles[-1]))
    lp = _pass("conv", groups, (1, 1), 42)
    words = 1 + 6 * n + (6 + 1) + n * (3 + 5) + 3 + 2
    assert len(lp.words) == words
    # beat 41 completes the last window of every convolver
    expected = words + 41 + 4 + (n - 1) * (CONV_LATENCY + h) + CONV_LATENCY + MAP_LATENCY
    expected += h + WRITE_LATENCY + 1
    assert _cycles(lp, arch) == (expected, 42, 0)


def test_a_chain_whose_data_arrive_late_and_fused_pooling():
    """tiny with h = 2. Tile 0 starts the chain (data at its own tile); tile 1's data cross 3 hops
    (0 -> 2 -> 3 -> 1), so with no alignment delay they arrive 3h = 6 cycles after their beat, one
    cycle after the partial sum (CONV_LATENCY + h = 5): the join waits for the data. Tile 1's output
    (through a mapper) feeds a 2 x 2 / 2 max-pooling convolver on tile 3 one hop away, which writes
    through its own router."""
    arch = _arch("tiny", 2)
    h = 2
    lp = _pass(
        "conv",
        [
            _stream(0, 0, "read", "data", 0, 6, 7, (0,)),
            _stream(1, 1, "read", "data", 1, 6, 7, (0, 2, 3, 1)),
            _stream(2, 2, "write", "out", 3, 2, 2, (3,)),
            _conv(0, to="tile:1"),
            _conv(1, psum="tile:0", to="tile:3", act=1, delay=0),
            _conv(3, (2, 2), (2, 2), mode="max", to="port"),
            _map(1),
        ],
        (1, 1),
        42,
    )
    words = 1 + 6 + (6 + 3) + 6 + 8 + 8 + 3 + 3 + 2
    assert len(lp.words) == words
    # pooling window (1, 1) completes with output 3 x 5 + 3 = 18 of the 4 x 5 convolution, whose
    # window completes with input word (3 + 2) x 7 + 3 + 2 = 40: beat 40
    data_1 = 4 + 3 * h  # tile 1's word arrives L + 3 hops after its beat
    psum_1 = 4 + CONV_LATENCY + h  # tile 0's output, one link on
    assert data_1 == psum_1 + 1
    expected = words + 40 + data_1 + CONV_LATENCY + MAP_LATENCY + h + CONV_LATENCY + WRITE_LATENCY + 1
    assert _cycles(lp, arch) == (expected, 42, 0)


def test_a_bandwidth_bound_eltwise_pass():
    """Two read ports and a write port at rate 3/8 (tiny, h = 1): beat i fires on
    C + ceil((i + 1) 8 / 3) - 1, so the last of 20 beats on C + ceil(20 x 8 / 3) - 1 = C + 53.
    Operand a arrives at its own tile, operand b crosses 2 hops; the write crosses 1."""
    arch = load_target("tiny")
    lp = _pass(
        "eltwise",
        [
            _stream(0, 0, "read", "data", 3, 4, 5, (3,)),
            _stream(1, 1, "read", "data", 3, 4, 5, (0, 1, 3)),
            _stream(2, 2, "write", "out", 3, 4, 5, (3, 2)),
            [word("ALU", 3, ALU_OPS["add"], 0, 0)],
        ],
        (3, 8),
        20,
    )
    C = 1 + 6 + 8 + 7 + 1 + 2
    assert len(lp.words) == C
    last_beat = C + -(-20 * 8 // 3) - 1
    assert last_beat == C + 53
    expected = last_beat + 4 + 2 * 1 + ALU_LATENCY + 1 * 1 + WRITE_LATENCY + 1
    # stream: C .. C + 53 (54 cycles) for 20 beats: 34 cycles without a beat
    assert _cycles(lp, arch) == (expected, 54, 54 - 20)


def test_a_bandwidth_bound_pass_with_partial_sums():
    """A convolver adding partial sums from a port at rate 5/7 (virtex6, h = 1): the partial sum of
    a window is requested on the beat of the data word that completes it and crosses 2 hops; the
    data arrive at their own tile and wait 2h in the alignment FIFO. The last window completes
    with word 41, the last of 42 beats: C + ceil(42 x 7 / 5) - 1 = C + 58."""
    arch = load_target("virtex6")
    lp = _pass(
        "conv",
        [
            _stream(0, 0, "read", "data", 1, 6, 7, (1,)),
            _stream(1, 1, "read", "psum", 1, 4, 5, (2, 0, 1)),
            _stream(2, 2, "write", "out", 1, 4, 5, (1, 3)),
            _conv(1, psum="port", act=1, delay=2),
            _map(1),
        ],
        (5, 7),
        42,
    )
    n = 1 + 6 + 8 + 7 + 8 + 3 + 2
    assert len(lp.words) == n
    C = n * 2
    last_beat = C + -(-42 * 7 // 5) - 1
    assert last_beat == C + 58
    expected = last_beat + 24 + 2 * 1 + CONV_LATENCY + MAP_LATENCY + 1 * 1 + WRITE_LATENCY + 1
    assert _cycles(lp, arch) == (expected, 59, 59 - 42)


@pytest.mark.parametrize("kind", ["map", "copy"])
def test_a_mapper_pass_and_a_copy(kind: str):
    """asic45 (L = 32, 2 cycles per word), h = 3: a read over 1 hop, a mapper (MAP_LATENCY) or a
    copy (no latency), a write over 2 hops."""
    arch = _arch("asic45", 3)
    groups = [
        _stream(0, 0, "read", "data", 1, 3, 4, (0, 1)),
        _stream(1, 1, "write", "out", 1, 3, 4, (1, 3, 2)),
    ]
    if kind == "map":
        groups.append(_map(1))
    lp = _pass(kind, groups, (1, 1), 12)
    n = 1 + 7 + 8 + (3 if kind == "map" else 0) + 2
    assert len(lp.words) == n
    expected = n * 2 + 11 + 32 + 3 + (MAP_LATENCY if kind == "map" else 0) + 2 * 3 + WRITE_LATENCY + 1
    assert _cycles(lp, arch) == (expected, 12, 0)


# ---------------------------------------------------------------------------------------------------
# 3. an alignment delay that breaks the FIFO bound is refused
# ---------------------------------------------------------------------------------------------------
def _with_delay(lp: LoadedPass, tile: int, delay: int) -> LoadedPass:
    """``lp`` with the delay field of tile ``tile``'s CONV_LINK word replaced."""
    words = list(lp.words)
    i = next(i for i, w in enumerate(words) if w >> 56 == 0x31 and (w >> 48) & 0xFF == tile)
    words[i] = (words[i] & ~0xFFFF) | delay
    return replace(lp, words=tuple(words), decoded=decode_pass(words))


def test_an_alignment_delay_beyond_the_fifo_is_refused(tmp_path: Path):
    """The first pass of conv_pool_linear on virtex6 (nfc): a chain 0 -> 1 -> 3 with every data
    stream at its own tile, delays 0, 4, 8 (CONV_LATENCY + h = 4), then fused pooling on tile 2.
    Tile 1's data and partial sums arrive |delay - 4| cycles apart; a later delay pushes tile 3's
    partial sums back by as much. The FIFO holds 64: delay 64 is the last one accepted (the
    alignment FIFO itself holds a word per cycle of delay). virtex6 without its pooling units, so
    that the pooling takes a convolver of its own."""
    text = (resources.files("nfc") / "targets" / "virtex6.toml").read_text()
    no_pool = tmp_path / "virtex6_conv_pooling.toml"
    no_pool.write_text(text.replace("poolers = 1", "poolers = 0"))
    arch = load_target(no_pool)
    lp = _passes("conv_pool_linear", str(no_pool), "nfc", tmp_path)[0]
    p = lp.decoded
    assert [(u.tile, u.psum_from, u.delay) for u in p.convs[:3]] == [
        (0, "bias", 0),
        (1, "tile:0", 4),
        (3, "tile:1", 8),
    ]
    assert all(len(s.route) == 1 for s in p.streams if s.direction == "read")
    fifo = arch.tile.fifo_depth
    assert fifo == 64
    base = _both(lp, arch)[0]
    for delay in (0, fifo):
        cycles = _both(_with_delay(lp, 1, delay), arch)[0]
        assert cycles == base + max(delay - 4, 0)
    bad = _with_delay(lp, 1, fifo + 1)
    with pytest.raises(ContractError, match="FIFO"):
        time_pass(bad, arch)
    with pytest.raises(ContractError, match="FIFO"):
        naive_pass(bad, arch)


def test_partial_sums_from_a_port_too_early_are_refused():
    """tiny (FIFO 16, h = 1, L = 4): the partial sums cross no hop, the data wait ``delay`` cycles
    in the alignment FIFO: they arrive ``delay`` cycles apart; 16 is accepted, 17 refused."""
    arch = load_target("tiny")

    def make(delay: int) -> LoadedPass:
        return _pass(
            "conv",
            [
                _stream(0, 0, "read", "data", 1, 6, 7, (1,)),
                _stream(1, 1, "read", "psum", 1, 4, 5, (1,)),
                _stream(2, 2, "write", "out", 1, 4, 5, (1,)),
                _conv(1, psum="port", delay=delay),
            ],
            (1, 1),
            42,
        )

    n = 1 + 6 + 6 + 6 + 8 + 2
    assert _cycles(make(16), arch)[0] == n + 41 + 4 + 16 + CONV_LATENCY + WRITE_LATENCY + 1
    for model in (time_pass, naive_pass):
        with pytest.raises(ContractError, match="FIFO"):
            model(make(17), arch)


def test_a_stream_longer_than_the_pass_is_refused():
    arch = load_target("tiny")
    lp = _pass(
        "copy",
        [_stream(0, 0, "read", "data", 1, 3, 4, (1,)), _stream(1, 1, "write", "out", 1, 3, 4, (1,))],
        (1, 1),
        11,
    )
    for model in (time_pass, naive_pass):
        with pytest.raises(ContractError, match="12 words in a pass of 11 beats"):
            model(lp, arch)
