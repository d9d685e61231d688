"""Kernel packing (``tile.lanes = 2``) in the configuration decoder, the router, the tile and the top.

The decoder (``nfc.rtl.config.ConfigDecoder``) takes hand-made passes in Amaranth's simulator:
``CONV_PACK`` makes a convolver packed with lane 1's bias, ``PASS`` clears both, lane 1's ``CONV_W``
words (``b >= 128``) land in the kernel slots of ``lane_cells``, ``PORT`` carries the lane bit, and a
write stream of lane 1 starts its route at the tile's lane-1 output (``src_tile1``). The router
delivers the lane-1 sources; a packed tile sends its two lanes to ``o`` and ``o1`` with the partial
sums of each lane from its port stream or its chain link. A one-lane target has none of the new
members, and the packed test target builds into Verilog. (End-to-end co-simulation of packed programs
is the compiler's: tests elsewhere.)
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator
from test_rtl_config import _plain

from nfc.arch import load_target
from nfc.compiler.encode import pack_word, weight_words, word
from nfc.rtl.config import (
    DIRECTIONS,
    SRC_NONE,
    SRC_TILE,
    ConfigDecoder,
    conv_layout,
    neighbour,
    port_layout,
    port_tiles,
    source_bits,
    src_link,
    src_port,
    src_tile1,
)
from nfc.rtl.convolver import lane_cells, tap_order
from nfc.rtl.router import Router, input_slots
from nfc.rtl.tile import Tile
from nfc.rtl.top import Accelerator

PACKED = Path(__file__).parent / "targets" / "packed.toml"


def _packed():
    return load_target(PACKED)


def _members(component) -> set[str]:
    """The names of a component's ports (the component is only looked at, never elaborated)."""
    component._MustUse__used = True
    return set(component.signature.members)


def _pair(hi: int, lo: int) -> int:
    return ((hi & 0xFFFF) << 16) | (lo & 0xFFFF)


def _conv_words(tile: int, block, kernel0, kernel1=None, bias=3, bias1=-5, psum_src=0) -> list[int]:
    """A convolver's group: CONV, CONV_LINK, CONV_SHIFT, (CONV_PACK), CONV_W of lane 0 then lane 1."""
    bh, bw = block
    words = [
        word("CONV", tile, 0, bh << 4 | bw, 0x1111),
        word("CONV_LINK", tile, psum_src, 0, 0),
        word("CONV_SHIFT", tile, 2, 0, bias & 0xFFFF),
    ]
    if kernel1 is not None:
        words.append(pack_word(tile, bias1))
    words += weight_words(tile, kernel0)
    if kernel1 is not None:
        words += weight_words(tile, kernel1, lane=1)
    return words


def _pass(*groups: list[int], index: int = 0) -> list[int]:
    words = [word("PASS", 0, 0, 0, index)]
    for g in groups:
        words += g
    return words + [word("RATE", arg=_pair(1, 1)), word("GO", arg=10)]


def _decode(arch, passes: list[list[int]]) -> list[dict]:
    """Send each pass's words (with random gaps) and commit it on its GO; the outputs after each."""
    dut = ConfigDecoder(arch)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    rng = random.Random(1)
    tiles = arch.grid.rows * arch.grid.cols
    seen = []

    async def bench(ctx):
        for words in passes:
            for i, w in enumerate(words):
                while rng.random() < 0.3:
                    ctx.set(dut.word.valid, 0)
                    ctx.set(dut.accept, 1)
                    await ctx.tick()
                ctx.set(dut.word.payload, w)
                ctx.set(dut.word.valid, 1)
                ctx.set(dut.accept, 1)
                ctx.set(dut.commit, int(i == len(words) - 1))
                await ctx.tick()
            ctx.set(dut.word.valid, 0)
            ctx.set(dut.commit, 0)
            seen.append(
                {
                    "convs": [_plain(ctx.get(dut.convs[t])) for t in range(tiles)],
                    "ports": [_plain(ctx.get(dut.ports[p])) for p in range(arch.io.ports)],
                    "links": [[int(ctx.get(dut.links[t][d])) for d in range(4)] for t in range(tiles)],
                    "error": ctx.get(dut.error),
                }
            )

    sim.add_testbench(bench)
    sim.run()
    return seen


def _expected_kernel(arch, block, kernel0, kernel1) -> list[int]:
    """The K x K kernel registers: lane 0 in tap order, lane 1's tap (q', n') in the slot of cell
    lane_cells(K, m)[q' m + n'] (row r, column c of its block is tap (bh - 1 - r, bw - 1 - c))."""
    k, m = arch.tile.convolver_size, arch.packed_size
    out = tap_order(kernel0, block, k)
    cells = lane_cells(k, m)
    bh, bw = block
    for i, w in enumerate(kernel1):
        r, c = divmod(i, bw)
        out[cells[(bh - 1 - r) * m + (bw - 1 - c)]] = w
    return out


# ---------------------------------------------------------------------------------------------------
# the decoder
# ---------------------------------------------------------------------------------------------------
def test_packed_target_shapes():
    arch = _packed()
    assert (arch.tile.lanes, arch.tile.convolver_size, arch.packed_size, arch.io.ports) == (2, 5, 3, 6)
    assert "packed" in conv_layout(arch).members and "bias1" in conv_layout(arch).members
    assert "lane" in port_layout(arch).members
    assert src_tile1(arch) == 2 + arch.io.ports + len(DIRECTIONS) == 12
    assert source_bits(arch) == 4 and src_tile1(arch) < 1 << source_bits(arch)
    # lane 1's cells: outside the top-left 3x3 square of the 5x5 array, row-major
    assert lane_cells(5, 3)[:9] == [3, 4, 8, 9, 13, 14, 15, 16, 17]


def test_conv_pack_sets_packed_and_bias1_and_pass_clears_them():
    arch = _packed()
    k0 = [1, -2, 3, 4, 5, -6, 7, 8, 9]
    k1 = [-11, 12, 13, 14, -15, 16, 17, 18, -19]
    first = _pass(_conv_words(1, (3, 3), k0, k1, bias=7, bias1=-300))
    second = _pass(_conv_words(1, (3, 3), k0), index=1)  # the same tile, not packed
    got = _decode(arch, [first, second])
    c = got[0]["convs"][1]
    assert got[0]["error"] == 0
    assert (c["active"], c["packed"], c["bias"], c["bias1"]) == (1, 1, 7, -300)
    assert c["kernel"] == _expected_kernel(arch, (3, 3), k0, k1)
    for t in (0, 2, 3):
        assert got[0]["convs"][t]["packed"] == 0
    c = got[1]["convs"][1]
    assert got[1]["error"] == 0
    assert (c["active"], c["packed"], c["bias1"]) == (1, 0, 0)
    assert c["kernel"] == tap_order(k0, (3, 3), arch.tile.convolver_size)


@pytest.mark.parametrize("block", [(3, 3), (2, 3), (3, 2), (1, 3), (3, 1), (2, 2), (1, 1)])
def test_lane1_weights_land_in_lane_cells(block):
    arch = _packed()
    rng = random.Random(hash(block) & 0xFFFF)
    n = block[0] * block[1]
    k0 = [rng.randrange(-(1 << 15), 1 << 15) for _ in range(n)]
    k1 = [rng.randrange(-(1 << 15), 1 << 15) for _ in range(n)]
    got = _decode(arch, [_pass(_conv_words(2, block, k0, k1, bias1=-1))])[0]
    assert got["error"] == 0
    c = got["convs"][2]
    assert c["packed"] == 1 and c["bias1"] == -1
    assert c["kernel"] == _expected_kernel(arch, block, k0, k1), f"block {block}"
    # the two lanes use disjoint slots: lane 0 inside the m x m square, lane 1 outside it
    k, m = arch.tile.convolver_size, arch.packed_size
    bh, bw = block
    used0 = {(bh - 1 - r) * k + bw - 1 - cc for r in range(bh) for cc in range(bw)}
    used1 = {lane_cells(k, m)[(bh - 1 - r) * m + bw - 1 - cc] for r in range(bh) for cc in range(bw)}
    assert len(used1) == n and not used0 & used1
    assert all(i // k >= m or i % k >= m for i in used1)


def test_lane1_words_need_conv_pack_and_a_block_that_fits():
    arch = _packed()
    k, m = arch.tile.convolver_size, arch.packed_size
    k0 = list(range(1, 10))
    # b >= 128 without CONV_PACK: a lane-0 index past the block, dropped as lane 0 drops it
    loose = _pass(_conv_words(0, (3, 3), k0) + weight_words(0, [50, 51], lane=1))
    # packed, but the block (4x4) is larger than m = 3: lane 1's weights are dropped (the convolver
    # refuses the configuration)
    k4 = list(range(1, 17))
    big = _pass(_conv_words(0, (4, 4), k4, [60 + i for i in range(16)]), index=1)
    got = _decode(arch, [loose, big])
    assert got[0]["convs"][0]["kernel"] == tap_order(k0, (3, 3), k)
    assert got[0]["convs"][0]["packed"] == 0
    assert got[1]["convs"][0]["packed"] == 1
    assert got[1]["convs"][0]["kernel"] == tap_order(k4, (4, 4), k)
    assert m == 3


def _port(p: int, write: int, role: int, lane: int, tile: int, sync: int = 0) -> list[int]:
    return [
        word("PORT", p, write, role | lane << 6 | sync << 7, tile),
        word("PORT_ADDR", arg=100 * p),
        word("PORT_MAP", arg=_pair(4, 4)),
        word("PORT_WIN", arg=_pair(4, 4)),
        word("PORT_ORG", arg=0),
        word("PORT_STEP", 1, 1, 0, 16),
    ]


def _direction(arch, a: int, b: int) -> int:
    return next(d for d in range(4) if neighbour(arch, a, d) == b)


def test_port_lane_bit_and_the_lane1_write_source():
    arch = _packed()
    pt = port_tiles(arch)
    # a write of lane 1 from a neighbour of port 1's tile, routed to it; a write of lane 0 from
    # port 2's own tile; lane 0 and lane 1 partial-sum reads; a data read
    t1 = next(t for t in range(4) if _is_neighbour(arch, t, pt[1]))
    route = [word("ROUTE", t1, pt[1], 0, 0)]
    passes = _pass(
        _port(1, 1, 2, 1, t1) + route,
        _port(2, 1, 2, 0, pt[2]),
        _port(3, 0, 1, 1, pt[3], sync=1),
        _port(4, 0, 1, 0, pt[4], sync=1),
        _port(0, 0, 0, 0, pt[0]),
    )
    got = _decode(arch, [passes])[0]
    assert got["error"] == 0
    ports = got["ports"]
    assert [(ports[p]["role"], ports[p]["lane"], ports[p]["write"]) for p in (1, 2, 3, 4, 0)] == [
        (2, 1, 1),
        (2, 0, 1),
        (1, 1, 0),
        (1, 0, 0),
        (0, 0, 0),
    ]
    # lane 1's write: the link t1 -> pt[1] carries the tile's lane-1 output, the port takes the link
    assert got["links"][t1][_direction(arch, t1, pt[1])] == src_tile1(arch)
    assert ports[1]["src"] == src_link(arch, _direction(arch, pt[1], t1))
    assert ports[2]["src"] == SRC_TILE
    assert ports[3]["src"] == src_port(3) and ports[4]["src"] == src_port(4)
    assert ports[5]["active"] == 0


def _is_neighbour(arch, a: int, b: int) -> bool:
    return any(neighbour(arch, a, d) == b for d in range(4))


def test_lane1_write_at_its_port_tile_and_lane1_data_is_refused():
    arch = _packed()
    pt = port_tiles(arch)
    ok = _pass(_port(5, 1, 2, 1, pt[5]))
    bad = _pass(_port(0, 0, 0, 1, pt[0]), index=1)  # lane 1 is for partial sums and outputs only
    got = _decode(arch, [ok, bad])
    assert got[0]["error"] == 0
    assert got[0]["ports"][5]["src"] == src_tile1(arch) and got[0]["ports"][5]["lane"] == 1
    assert got[1]["error"] == 1


# ---------------------------------------------------------------------------------------------------
# one lane: nothing new
# ---------------------------------------------------------------------------------------------------
def test_one_lane_target_has_no_packing_members():
    arch = load_target("tiny")
    assert arch.tile.lanes == 1
    assert not {"packed", "bias1"} & set(conv_layout(arch).members)
    assert "lane" not in port_layout(arch).members
    assert source_bits(arch) == (2 + arch.io.ports + len(DIRECTIONS)).bit_length()
    with pytest.raises(AssertionError):
        src_tile1(arch)
    assert not {"tile_out1", "psum1", "psum1_sel"} & _members(Router(arch, 0))
    assert not {"psum1", "chain1", "o1"} & _members(Tile(arch))
    # CONV_PACK is no opcode of a one-lane decoder: an error, as any unknown opcode
    got = _decode(arch, [_pass(_conv_words(1, (3, 3), list(range(9))) + [pack_word(1, 5)])])
    assert got[0]["error"] == 1


def test_packed_target_has_the_packing_members():
    arch = _packed()
    assert {"tile_out1", "psum1", "psum1_sel"} <= _members(Router(arch, 0))
    assert {"psum1", "chain1", "o1"} <= _members(Tile(arch))


# ---------------------------------------------------------------------------------------------------
# the router's lane-1 sources and outputs
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tile", [0, 3])
def test_router_lane1_sources(tile):
    arch = _packed()
    dut = Router(arch, tile)
    sources = {SRC_TILE: "tile_out", src_tile1(arch): "tile_out1"}
    for p in dut.ports_here:
        sources[src_port(p)] = f"port_{p}"
    for d in dut.directions:
        sources[src_link(arch, d)] = f"from_{DIRECTIONS[d]}"
    codes = sorted(sources)
    inputs = [c for c in codes if c not in (SRC_TILE, src_tile1(arch))]
    rng = random.Random(tile)
    h = arch.tile.router_latency
    # lane 1's output on every link and write DMA; psum and psum1 from two different inputs
    link_sel = {d: src_tile1(arch) if i % 2 == 0 else SRC_TILE for i, d in enumerate(dut.directions)}
    write_sel = {p: src_tile1(arch) for p in dut.ports_here}
    psum_sel, psum1_sel = rng.sample(inputs, 2)
    cycles = 30
    stimulus = [
        {name: (rng.random() < 0.6, rng.randrange(-(1 << 15), 1 << 15)) for name in sources.values()}
        for _ in range(cycles)
    ]
    seen = []

    async def bench(ctx):
        for d, c in link_sel.items():
            ctx.set(dut.link_sel[d], c)
        for p, c in write_sel.items():
            ctx.set(getattr(dut, f"write_sel_{p}"), c)
        ctx.set(dut.psum_sel, psum_sel)
        ctx.set(dut.psum1_sel, psum1_sel)
        for n in range(input_slots(arch)):
            ctx.set(dut.slot_sel[n], SRC_NONE)
        for d in dut.directions:
            ctx.set(getattr(dut, f"to_{DIRECTIONS[d]}").ready, 1)
        for now in range(cycles):
            for name, (valid, payload) in stimulus[now].items():
                port = getattr(dut, name)
                ctx.set(port.valid, valid)
                ctx.set(port.payload, payload)
                assert ctx.get(port.ready) == 1
            outs = {f"to_{DIRECTIONS[d]}": getattr(dut, f"to_{DIRECTIONS[d]}") for d in dut.directions}
            outs |= {"psum": dut.psum, "psum1": dut.psum1}
            outs |= {f"write_{p}": getattr(dut, f"write_{p}") for p in dut.ports_here}
            seen.append({k: (ctx.get(v.valid), ctx.get(v.payload)) for k, v in outs.items()})
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()

    def expect(code: int, now: int):
        if now < 0:
            return None
        valid, payload = stimulus[now][sources[code]]
        return (1, payload) if valid else None

    def check(got, want):
        assert (got[0] == 1) == (want is not None)
        if want is not None:
            assert got == want

    for now in range(h, cycles):
        got = seen[now]
        for d, c in link_sel.items():
            check(got[f"to_{DIRECTIONS[d]}"], expect(c, now - h))
        for p, c in write_sel.items():
            check(got[f"write_{p}"], expect(c, now))
        check(got["psum"], expect(psum_sel, now))
        check(got["psum1"], expect(psum1_sel, now))


# ---------------------------------------------------------------------------------------------------
# a packed tile: lane 0 on o, lane 1 on o1, each lane's partial sums from its port or its chain link
# ---------------------------------------------------------------------------------------------------
def _sat(v: int) -> int:
    return max(-(1 << 15), min((1 << 15) - 1, v))


@pytest.mark.parametrize("psum_src", [0, 1, 2])
@pytest.mark.parametrize("packed", [1, 0])
def test_packed_tile_lanes_and_partial_sums(psum_src, packed):
    arch = _packed()
    k, m = arch.tile.convolver_size, arch.packed_size
    dut = Tile(arch)
    rows = cols = 4
    n = rows * cols
    rng = random.Random(10 * psum_src + packed)
    w0, w1, bias, bias1 = 3, -5, 100, -200
    x = [rng.randrange(-500, 500) for _ in range(n)]
    streams = {
        name: [rng.randrange(-3000, 3000) for _ in range(n)] for name in ("psum", "psum1", "chain", "chain1")
    }
    # lane l's partial sums: the bias, the port streams, or the chain links (the others carry noise)
    p0 = {0: [bias] * n, 1: streams["psum"], 2: streams["chain"]}[psum_src]
    p1 = {0: [bias1] * n, 1: streams["psum1"], 2: streams["chain1"]}[psum_src]
    want0 = [_sat(p + w0 * v) for p, v in zip(p0, x, strict=True)]
    want1 = [_sat(p + w1 * v) for p, v in zip(p1, x, strict=True)]
    got0, got1, cycles0, cycles1 = [], [], [], []

    async def bench(ctx):
        u = dut.conv
        for f, v in {
            "active": 1,
            "mode": 0,
            "block_h": 1,
            "block_w": 1,
            "stride_h": 1,
            "stride_w": 1,
            "dil_h": 1,
            "dil_w": 1,
            "psum_src": psum_src,
            "psum_tile": 1,
            "shift": 0,
            "out_shift": 0,
            "bias": bias,
            "packed": packed,
            "bias1": bias1,
        }.items():
            ctx.set(getattr(u, f), v)
        ctx.set(u.kernel[0], w0)
        ctx.set(u.kernel[lane_cells(k, m)[0]], w1)  # lane 1's tap (0, 0)
        ctx.set(dut.rows, rows)
        ctx.set(dut.cols, cols)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        for now in range(n + 12):
            i = now
            live = i < n
            ctx.set(dut.slots[0].valid, live)
            ctx.set(dut.slots[0].payload, x[i] if live else 0)
            for name in ("psum", "psum1", "chain", "chain1"):
                port = getattr(dut, name)
                ctx.set(port.valid, live)
                ctx.set(port.payload, streams[name][i] if live else 0)
            if ctx.get(dut.o.valid):
                got0.append(ctx.get(dut.o.payload))
                cycles0.append(now)
            if ctx.get(dut.o1.valid):
                got1.append(ctx.get(dut.o1.payload))
                cycles1.append(now)
            assert ctx.get(dut.error) == 0
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    if packed:
        assert got0 == want0 and got1 == want1
        assert cycles0 == cycles1  # both lanes of a window leave on the same cycle
        assert cycles0 == [i + 3 for i in range(n)]  # CONV_LATENCY after the data and partial sums
    else:
        # unpacked: the plain convolver (lane 1's cell is outside the 1x1 block), no word on o1
        assert got0 == want0 and got1 == []


def test_packed_accelerator_converts_to_verilog():
    arch = _packed()
    text = verilog.convert(Accelerator(arch), name="nfc_packed")
    assert "module nfc_packed" in text
    for name in ("chain1_0", "tile_out1", "psum1_sel"):
        assert name in text, name
