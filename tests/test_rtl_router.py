"""The router (``nfc.rtl.router.Router``) against a naive model: every output carries the source its
selection names, a link ``tile.router_latency`` cycles later, the tile's own inputs at once."""

import random

import pytest
from amaranth.sim import Simulator

from nfc.arch import load_target
from nfc.rtl.config import DIRECTIONS, SRC_NONE, SRC_TILE, src_link, src_port
from nfc.rtl.router import Router, input_slots


def _sources(arch, r: Router) -> dict[int, str]:
    """Source code -> the name of the input port carrying it."""
    out = {SRC_TILE: "tile_out"}
    for p in r.ports_here:
        out[src_port(p)] = f"port_{p}"
    for d in r.directions:
        out[src_link(arch, d)] = f"from_{DIRECTIONS[d]}"
    return out


@pytest.mark.parametrize("target,tile", [("tiny", 0), ("tiny", 3), ("mid", 1), ("mid", 4)])
def test_router_delivers_the_selected_sources(target, tile):
    arch = load_target(target)
    dut = Router(arch, tile)
    sources = _sources(arch, dut)
    codes = sorted(sources)
    rng = random.Random(tile)
    h = arch.tile.router_latency
    # a selection per output: links may carry anything, the tile's inputs never its own output
    link_sel = {d: rng.choice(codes + [SRC_NONE]) for d in dut.directions}
    inputs = [c for c in codes if c != SRC_TILE] + [SRC_NONE]
    slot_sel = [rng.choice(inputs) for _ in range(input_slots(arch))]
    psum_sel = rng.choice(inputs)
    write_sel = {p: rng.choice(codes + [SRC_NONE]) for p in dut.ports_here}
    cycles = 60
    stimulus = [
        {name: (rng.random() < 0.6, rng.randrange(-(1 << 15), 1 << 15)) for name in sources.values()}
        for _ in range(cycles)
    ]
    seen: list[dict[str, tuple[int, int]]] = []

    async def bench(ctx):
        for d, c in link_sel.items():
            ctx.set(dut.link_sel[d], c)
        for n, c in enumerate(slot_sel):
            ctx.set(dut.slot_sel[n], c)
        ctx.set(dut.psum_sel, psum_sel)
        for p, c in write_sel.items():
            ctx.set(getattr(dut, f"write_sel_{p}"), c)
        for d in dut.directions:
            ctx.set(getattr(dut, f"to_{DIRECTIONS[d]}").ready, 1)
        for now in range(cycles):
            for name, (valid, payload) in stimulus[now].items():
                port = getattr(dut, name)
                ctx.set(port.valid, valid)
                ctx.set(port.payload, payload)
                assert ctx.get(port.ready) == 1  # nothing waits in the grid
            outs = {f"to_{DIRECTIONS[d]}": getattr(dut, f"to_{DIRECTIONS[d]}") for d in dut.directions}
            outs |= {f"slot{n}": dut.slots[n] for n in range(input_slots(arch))}
            outs |= {"psum": dut.psum} | {f"write_{p}": getattr(dut, f"write_{p}") for p in dut.ports_here}
            seen.append({k: (ctx.get(v.valid), ctx.get(v.payload)) for k, v in outs.items()})
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()

    def expect(code: int, now: int) -> tuple[int, int] | None:
        """(valid, payload) of the source named ``code`` on cycle ``now``; None: nothing (no word)."""
        if code == SRC_NONE or now < 0:
            return None
        valid, payload = stimulus[now][sources[code]]
        return (1, payload) if valid else None

    for now in range(cycles):
        got = seen[now]
        checks = {f"to_{DIRECTIONS[d]}": expect(c, now - h) for d, c in link_sel.items()}
        checks |= {f"slot{n}": expect(c, now) for n, c in enumerate(slot_sel)}
        checks |= {"psum": expect(psum_sel, now)} | {
            f"write_{p}": expect(c, now) for p, c in write_sel.items()
        }
        for name, want in checks.items():
            if want is None:
                assert got[name][0] == 0, f"cycle {now}: {name} carries a word nobody sent"
            else:
                assert got[name] == want, f"cycle {now}: {name} = {got[name]}, expected {want}"
