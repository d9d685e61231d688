"""A tile's router: where every stream crossing or entering the tile goes, as the configuration says.

The router of tile ``t`` sees its sources (the tile's output, the read DMAs of the I/O ports attached
to it, the links arriving from its neighbours) under the source codes of :mod:`nfc.rtl.config`, and
sends, per configuration register, one source over each outgoing link, one to each of the tile's
input slots and its partial-sum input, and one to each write DMA attached to it. An outgoing link
is a :class:`~nfc.rtl.pipeline.DelayLine` of ``tile.router_latency`` cycles (a hop); everything
delivered to the tile itself or to a port here passes without delay.

On a target whose convolvers pack two kernels (``tile.lanes = 2``) the router also sees the tile's
lane-1 output (source :func:`~nfc.rtl.config.src_tile1`, for links and write DMAs) and sends one
source to the tile's lane-1 partial-sum input (``psum1``).

Nothing is back-pressured in the grid (docs/architecture.md §13): the router drives ``valid`` and
``payload`` and keeps every input's ``ready`` high.
"""

from __future__ import annotations

from amaranth import Module, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nfc.arch import ArchConfig
from nfc.rtl.config import (
    DIRECTIONS,
    SRC_TILE,
    neighbour,
    port_tiles,
    source_bits,
    src_link,
    src_port,
    src_tile1,
)
from nfc.rtl.pipeline import DelayLine

__all__ = ["Router", "input_slots"]


def input_slots(arch: ArchConfig) -> int:
    """Read data streams a tile can take in one pass (its operators' inputs, in stream order)."""
    return arch.io.max_read_ports + 1


class Router(wiring.Component):
    """The router of one tile.

    Parameters
    ----------
    arch : ArchConfig
    tile : int
        Which tile; its neighbours and the I/O ports attached to it follow from ``arch``.

    Attributes
    ----------
    tile_out : In(stream.Signature(word))
        The tile's output.
    port_<p> : In(stream.Signature(word))
        The read DMA of each I/O port ``p`` attached here.
    from_<direction> : In(stream.Signature(word))
        The link arriving from the neighbour in that direction (only where there is one).
    to_<direction> : Out(stream.Signature(word))
        The link to that neighbour: the selected source, ``tile.router_latency`` cycles later.
    link_sel : In(ArrayLayout(source code, 4))
        Configuration: the source each outgoing link carries (by direction).
    slot_sel : In(ArrayLayout(source code, slots))
        Configuration: the source of each of the tile's input slots. The tile's own output is never
        a source for its inputs.
    psum_sel : In(source code)
        Configuration: the source of the tile's partial-sum input.
    write_sel_<p> : In(source code)
        Configuration: the source of write DMA ``p`` (a port attached here).
    slots : Out(stream.Signature(word)).array(slots)
    psum : Out(stream.Signature(word))
    write_<p> : Out(stream.Signature(word))
    tile_out1 : In(stream.Signature(word))
        ``tile.lanes = 2`` only: the tile's lane-1 output (source ``src_tile1``), for links and write
        DMAs.
    psum1_sel : In(source code)
        ``tile.lanes = 2`` only: the source of the tile's lane-1 partial-sum input.
    psum1 : Out(stream.Signature(word))
        ``tile.lanes = 2`` only.
    """

    def __init__(self, arch: ArchConfig, tile: int):
        self.arch = arch
        self.tile = tile
        word = signed(arch.numerics.word_bits)
        code = source_bits(arch)
        self.ports_here = [p for p, t in enumerate(port_tiles(arch)) if t == tile]
        self.directions = [d for d in range(len(DIRECTIONS)) if neighbour(arch, tile, d) is not None]
        members = {
            "tile_out": In(stream.Signature(word)),
            "link_sel": In(data.ArrayLayout(code, len(DIRECTIONS))),
            "slot_sel": In(data.ArrayLayout(code, input_slots(arch))),
            "psum_sel": In(code),
            "slots": Out(stream.Signature(word)).array(input_slots(arch)),
            "psum": Out(stream.Signature(word)),
        }
        if arch.tile.lanes == 2:
            members |= {
                "tile_out1": In(stream.Signature(word)),
                "psum1_sel": In(code),
                "psum1": Out(stream.Signature(word)),
            }
        for p in self.ports_here:
            members[f"port_{p}"] = In(stream.Signature(word))
            members[f"write_sel_{p}"] = In(code)
            members[f"write_{p}"] = Out(stream.Signature(word))
        for d in self.directions:
            members[f"from_{DIRECTIONS[d]}"] = In(stream.Signature(word))
            members[f"to_{DIRECTIONS[d]}"] = Out(stream.Signature(word))
        super().__init__(members)

    def elaborate(self, platform):
        arch = self.arch
        m = Module()
        sources = {SRC_TILE: self.tile_out}
        if arch.tile.lanes == 2:
            sources[src_tile1(arch)] = self.tile_out1
        for p in self.ports_here:
            sources[src_port(p)] = getattr(self, f"port_{p}")
        for d in self.directions:
            sources[src_link(arch, d)] = getattr(self, f"from_{DIRECTIONS[d]}")
        for s in sources.values():
            m.d.comb += s.ready.eq(1)
        # the tile's operators never read the tile's own output (no loop through the router)
        own = {SRC_TILE, src_tile1(arch)} if arch.tile.lanes == 2 else {SRC_TILE}
        inputs = {c: s for c, s in sources.items() if c not in own}

        def select(out: stream.Interface, code, choices) -> None:
            with m.Switch(code):
                for c, s in choices.items():
                    with m.Case(c):
                        m.d.comb += [out.valid.eq(s.valid), out.payload.eq(s.payload)]

        for d in self.directions:
            m.submodules[f"hop_{DIRECTIONS[d]}"] = hop = DelayLine(
                self.tile_out.payload.shape(), arch.tile.router_latency
            )
            select(hop.i, self.link_sel[d], sources)
            wiring.connect(m, hop.o, wiring.flipped(getattr(self, f"to_{DIRECTIONS[d]}")))
        for n in range(input_slots(arch)):
            select(self.slots[n], self.slot_sel[n], inputs)
        select(self.psum, self.psum_sel, inputs)
        if arch.tile.lanes == 2:
            select(self.psum1, self.psum1_sel, inputs)
        for p in self.ports_here:
            select(getattr(self, f"write_{p}"), getattr(self, f"write_sel_{p}"), sources)
        return m
