"""The configuration-bus decoder (``nfc.rtl.config.ConfigDecoder``) against its software twin.

Every pass of compiled programs is sent word by word (with random gaps) into the decoder in
Amaranth's simulator; after ``GO`` its registers must say exactly what ``compiler/decode.py`` reads
from the same words, and its routing registers must follow every stream's route.
"""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator
from helpers_nets import build_net

from nfc.arch import load_target
from nfc.compiler.binary import LoadedPass, as_loaded
from nfc.compiler.driver import compile_graph
from nfc.compiler.encode import ALU_OPS, word
from nfc.rtl.config import SRC_TILE, ConfigDecoder, neighbour, port_tiles, src_link, src_port
from nfc.rtl.convolver import tap_order


def _direction(arch, a: int, b: int) -> int:
    return next(d for d in range(4) if neighbour(arch, a, d) == b)


def _expected_codes(arch, s) -> tuple[dict[tuple[int, int], int], int]:
    """The link selections a stream's route makes, and the source code it ends with."""
    code = SRC_TILE if s.direction == "write" else src_port(s.port)
    links = {}
    for a, b in zip(s.route, s.route[1:], strict=False):
        links[(a, _direction(arch, a, b))] = code
        code = src_link(arch, _direction(arch, b, a))
    return links, code


def _run(arch, passes: list[LoadedPass], seed: int = 0):
    """Send every pass's words with random gaps on the bus and commit it, on the cycle its GO is
    taken (even passes) or a few cycles later (odd passes, as behind a streaming pass). Returns per
    pass the outputs just before its commit (still the previous pass's) and just after."""
    dut = ConfigDecoder(arch)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    rng = random.Random(seed)
    seen = []

    async def bench(ctx):
        for k, lp in enumerate(passes):
            at_go = k % 2 == 0
            for i, w in enumerate(lp.words):
                while rng.random() < 0.3:  # a gap on the bus
                    ctx.set(dut.word.valid, 0)
                    ctx.set(dut.accept, 1)
                    await ctx.tick()
                ctx.set(dut.word.payload, w)
                ctx.set(dut.word.valid, 1)
                ctx.set(dut.accept, 1)
                last = i == len(lp.words) - 1
                if last:
                    before = _snapshot(ctx, dut, arch)
                ctx.set(dut.commit, int(last and at_go))
                await ctx.tick()
            ctx.set(dut.word.valid, 0)
            ctx.set(dut.commit, 0)
            if not at_go:
                for _ in range(rng.randrange(1, 4)):
                    await ctx.tick()
                before = _snapshot(ctx, dut, arch)
                ctx.set(dut.commit, 1)
                await ctx.tick()
                ctx.set(dut.commit, 0)
            seen.append((before, _snapshot(ctx, dut, arch)))

    sim.add_testbench(bench)
    sim.run()
    return seen


def _snapshot(ctx, dut, arch):
    tiles = arch.grid.rows * arch.grid.cols
    ports = [ctx.get(dut.ports[p]) for p in range(arch.io.ports)]
    return {
        "ports": [{f: _plain(getattr(v, f)) for f in dut.ports[0].shape().members} for v in ports],
        "convs": [_plain(ctx.get(dut.convs[t])) for t in range(tiles)],
        "maps": [_plain(ctx.get(dut.maps[t])) for t in range(tiles)],
        "alus": [_plain(ctx.get(dut.alus[t])) for t in range(tiles)],
        "links": [[int(ctx.get(dut.links[t][d])) for d in range(4)] for t in range(tiles)],
        "rate": (ctx.get(dut.rate_p), ctx.get(dut.rate_q)),
        "beats": ctx.get(dut.beats),
        "error": ctx.get(dut.error),
    }


def _plain(v):
    """A simulator value (struct, array or number) as nested dicts/lists/ints."""
    if isinstance(v, int):
        return v
    shape = v.shape()
    if hasattr(shape, "members"):
        return {name: _plain(getattr(v, name)) for name in shape.members}
    if hasattr(shape, "length"):
        return [_plain(v[i]) for i in range(shape.length)]
    return int(v)


def _check_pass(arch, lp: LoadedPass, got) -> None:
    p = lp.decoded
    assert got["error"] == 0
    assert got["rate"] == p.rate and got["beats"] == p.beats
    expected_links = [[0] * 4 for _ in range(arch.grid.rows * arch.grid.cols)]
    used = {s.port for s in p.streams}
    slots: dict[int, int] = {}
    for s in p.streams:
        r = got["ports"][s.port]
        assert r["active"] == 1 and r["write"] == (s.direction == "write")
        assert r["role"] == {"data": 0, "psum": 1, "out": 2}[s.role]
        assert (r["tile"], r["address"], r["map_h"], r["map_w"]) == (s.tile, s.address, *s.map_shape)
        assert (r["rows"], r["cols"], r["r0"], r["c0"]) == (s.rows, s.cols, s.r0, s.c0)
        assert (r["pad_top"], r["pad_left"], r["pad_value"]) == (s.pads[0], s.pads[1], s.pad_value)
        assert (r["step_r"], r["step_c"], r["words"]) == (*s.step, s.words)
        links, code = _expected_codes(arch, s)
        for (a, d), c in links.items():
            expected_links[a][d] = c
        assert r["src"] == code, f"port {s.port}: source code {r['src']}, route {s.route} ends on {code}"
        if s.direction == "read" and s.role == "data":
            assert r["slot"] == slots.get(s.tile, 0)
            slots[s.tile] = slots.get(s.tile, 0) + 1
    for q in range(arch.io.ports):
        if q not in used:
            assert got["ports"][q]["active"] == 0
    assert got["links"] == expected_links
    for u in p.convs:
        c = got["convs"][u.tile]
        assert c["active"] == 1 and c["mode"] == (u.mode == "max")
        assert (c["block_h"], c["block_w"], c["stride_h"], c["stride_w"]) == (*u.block, *u.stride)
        assert (c["dil_h"], c["dil_w"], c["delay"], c["shift"], c["bias"]) == (
            *u.dilation,
            u.delay,
            u.shift,
            u.bias,
        )
        assert c["out_shift"] == u.out_shift and c["act"] == (u.act_tile >= 0)
        src = {"bias": 0, "port": 1}.get(u.psum_from, 2)
        assert c["psum_src"] == src
        if src == 2:
            assert c["psum_tile"] == int(u.psum_from.split(":")[1])
        assert c["to_tile"] == u.to.startswith("tile:")
        if u.to.startswith("tile:"):
            assert c["dest"] == int(u.to.split(":")[1])
        assert c["kernel"] == tap_order(u.kernel, u.block, arch.tile.convolver_size)
    for mp in p.maps:
        g = got["maps"][mp.tile]
        n = len(mp.slopes)
        assert g["active"] == 1 and g["segments"] == n and g["shift"] == mp.shift
        assert g["thresholds"][1:n] == list(mp.thresholds)
        assert g["offsets"][:n] == list(mp.offsets) and g["slopes"][:n] == list(mp.slopes)
    for a in p.alus:
        g = got["alus"][a.tile]
        assert (g["active"], g["op"]) == (1, ALU_OPS[a.op])
        assert (g["shift_a"], g["shift_b"], g["shift_out"]) == (a.shift_a, a.shift_b, a.shift_out)


@pytest.mark.parametrize("net", ["conv_pool_linear", "residual", "upsample_pad"])
def test_decoder_matches_software_decoder(tmp_path, net):
    arch = load_target("tiny")
    prog = as_loaded(compile_graph(build_net(net, tmp_path), arch, "nfc").program)
    passes = [s for s in prog.steps if isinstance(s, LoadedPass)]
    assert passes
    seen = _run(arch, passes)
    for k, (lp, (before, got)) in enumerate(zip(passes, seen, strict=True)):
        _check_pass(arch, lp, got)
        # the next pass's words never show before its commit: the outputs hold the pass before
        if k:
            held = {f: v for f, v in before.items() if f != "error"}  # error: the words being decoded
            assert held == {f: v for f, v in seen[k - 1][1].items() if f != "error"}, (
                f"pass {lp.index}: the outputs changed before its commit"
            )


def test_decoder_flags_bad_words(tmp_path):
    arch = load_target("tiny")
    prog = as_loaded(compile_graph(build_net("conv_pool_linear", tmp_path), arch, "nfc").program)
    lp = next(s for s in prog.steps if isinstance(s, LoadedPass))
    # a route between tiles 0 and 3 of a 2x2 grid: not neighbours
    bad = list(lp.words[:-1]) + [word("ROUTE", 0, 3, 0, 0), lp.words[-1]]
    lp_bad = LoadedPass(lp.index, lp.kind, lp.layers, lp.macs, lp.estimate, tuple(bad), lp.decoded)
    assert _run(arch, [lp_bad])[0][1]["error"] == 1
    assert port_tiles(arch) == (0, 1, 3, 2)
