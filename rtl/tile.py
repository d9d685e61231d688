"""A processing tile: one convolver behind its alignment FIFO, one mapper, one ALU, composed per pass.

The configuration decides what the tile does in a pass (docs/architecture.md §13 item 4):

* a **convolver** takes its tile's first read stream (slot 0), or, when it pools the output of a
  convolver on another tile, that tile's output over the chain link (``fed``); its partial sums
  come from the tile's partial-sum stream or over the chain link (``psum_src``); its output goes
  through the mapper when the configuration says so (``act``);
* a stand-alone **mapper** takes the next read stream, the **ALU** the next two;
* the tile's **output** is its ALU's, else its stand-alone mapper's, else its convolver's, else a
  copy of its next read stream (a copy pass); on a target with pooling units (``tile.poolers``),
  an active **pooling unit** (:class:`~nfc.rtl.pool.Pooler`) takes that output and the tile's output
  is the pooled map.

On a target whose convolvers pack two kernels (``tile.lanes = 2``), a **packed** convolver
(``conv.packed``) makes two output maps over one input window: lane 0's is the tile's output ``o``
and lane 1's its second output ``o1``. Lane 0 goes through the tile's mapper and pooling unit as an
unpacked convolver's output does; lane 1 through a second mapper and a second pooling unit that
read the same configuration registers (the two maps of a pair belong to one layer; the compiler
pairs only maps whose mapper and pooling words are equal). No ALU in a packed pass. Lane 1's partial
sums come, like lane 0's, from a partial-sum stream (``psum1``) or over a chain link (``chain1``:
the lane-1 output of the tile lane 0 chains from).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from nfc.arch import ArchConfig
from nfc.rtl.alu import Alu
from nfc.rtl.config import alu_layout, conv_layout, map_layout, pool_layout
from nfc.rtl.convolver import Convolver
from nfc.rtl.mapper import Mapper
from nfc.rtl.pipeline import AlignDelay
from nfc.rtl.pool import Pooler
from nfc.rtl.router import input_slots

__all__ = ["Tile"]


class Tile(wiring.Component):
    """One processing tile of the grid.

    Attributes
    ----------
    slots : In(stream.Signature(word)).array(slots)
        The read data streams delivered to the tile, in stream order.
    psum : In(stream.Signature(word))
        The tile's partial-sum stream (from a port).
    chain : In(stream.Signature(word))
        The output of the convolver this one chains from or pools (one hop away).
    conv, map, alu : In(conv_layout / map_layout / alu_layout)
        Configuration registers of the tile's operators.
    pool : In(pool_layout)
        Configuration of the pooling unit (only on a target with ``tile.poolers``).
    fed : In(1)
        Configuration: the convolver pools another tile's output (input from ``chain``).
    rows, cols : In(16)
        Configuration: the convolver's input size (its stream's region, or its feeder's output).
    clear : In(1)
        Pass start: operators drop their state.
    o : Out(stream.Signature(word))
        The tile's output.
    psum1 : In(stream.Signature(word))
        ``tile.lanes = 2`` only: lane 1's partial-sum stream (from a port).
    chain1 : In(stream.Signature(word))
        ``tile.lanes = 2`` only: the lane-1 output of the convolver this one chains from (one hop).
    o1 : Out(stream.Signature(word))
        ``tile.lanes = 2`` only: a packed convolver's lane-1 output, through lane 1's mapper and
        pooling unit where lane 0's output goes through the tile's (no word when not packed).
    error : Out(1)
        An operator saw its contract broken (a FIFO overflow, a refused configuration).
    """

    def __init__(self, arch: ArchConfig):
        self.arch = arch
        word = signed(arch.numerics.word_bits)
        super().__init__(
            {
                "slots": In(stream.Signature(word)).array(input_slots(arch)),
                "psum": In(stream.Signature(word)),
                "chain": In(stream.Signature(word)),
                "conv": In(conv_layout(arch)),
                "map": In(map_layout(arch)),
                "alu": In(alu_layout(arch)),
                **({"pool": In(pool_layout(arch))} if arch.tile.poolers else {}),
                "fed": In(1),
                "rows": In(16),
                "cols": In(16),
                "clear": In(1),
                "o": Out(stream.Signature(word)),
                "error": Out(1),
                **(
                    {
                        "psum1": In(stream.Signature(word)),
                        "chain1": In(stream.Signature(word)),
                        "o1": Out(stream.Signature(word)),
                    }
                    if arch.tile.lanes == 2
                    else {}
                ),
            }
        )

    def elaborate(self, platform):
        arch = self.arch
        m = Module()
        u, mp, al = self.conv, self.map, self.alu
        k = arch.tile.convolver_size
        n_slots = input_slots(arch)
        m.submodules.align = align = AlignDelay(self.o.payload.shape(), arch.tile.fifo_depth)
        m.submodules.conv = cv = Convolver(arch)
        m.submodules.mapper = mapper = Mapper(arch)
        m.submodules.alu = alu = Alu(arch)
        lanes = arch.tile.lanes
        for s in [*self.slots, self.psum, self.chain, *([self.psum1, self.chain1] if lanes == 2 else [])]:
            m.d.comb += s.ready.eq(1)  # nothing waits in the grid (the compiler's FIFO bounds)

        def feed(port: stream.Interface, valid, payload) -> None:
            m.d.comb += [port.valid.eq(valid), port.payload.eq(payload)]

        def pick(index, choices: list[stream.Interface], name: str) -> tuple[Signal, Signal]:
            """The stream ``choices[index]`` as (valid, payload)."""
            valid, payload = (
                Signal(name=f"{name}_valid"),
                Signal(self.o.payload.shape(), name=f"{name}_payload"),
            )
            with m.Switch(index):
                for i, s in enumerate(choices):
                    with m.Case(i):
                        m.d.comb += [valid.eq(s.valid), payload.eq(s.payload)]
            return valid, payload

        # -- convolver ----------------------------------------------------------------------------
        slot0 = self.slots[0]
        feed(
            align.i,
            u.active & Mux(self.fed, self.chain.valid, slot0.valid),
            Mux(self.fed, self.chain.payload, slot0.payload),
        )
        m.d.comb += [align.delay.eq(u.delay), align.clear.eq(self.clear)]
        wiring.connect(m, align.o, cv.data)
        for f in (
            "mode",
            "block_h",
            "block_w",
            "stride_h",
            "stride_w",
            "dil_h",
            "dil_w",
            "shift",
            "bias",
            "out_shift",
        ):
            m.d.comb += getattr(cv, f).eq(getattr(u, f))
        m.d.comb += [
            cv.rows.eq(self.rows),
            cv.cols.eq(self.cols),
            cv.use_psum.eq(u.psum_src != 0),
            # rounding into the output format, at a chain's end without a mapper
            cv.apply_out_shift.eq(~u.act & ~u.to_tile),
            cv.clear.eq(self.clear),
        ]
        for i in range(k * k):
            m.d.comb += cv.kernel[i].eq(u.kernel[i])
        from_chain = u.psum_src == 2
        feed(
            cv.psum,
            u.active & (u.psum_src != 0) & Mux(from_chain, self.chain.valid, self.psum.valid),
            Mux(from_chain, self.chain.payload, self.psum.payload),
        )
        if lanes == 2:
            # packed: lane 1's partial sums chain the way lane 0's do, its output is the tile's o1
            packed = Signal(name="packed")
            m.d.comb += [packed.eq(u.active & u.packed), cv.packed.eq(u.packed), cv.bias1.eq(u.bias1)]
            feed(
                cv.psum1,
                packed & (u.psum_src != 0) & Mux(from_chain, self.chain1.valid, self.psum1.valid),
                Mux(from_chain, self.chain1.payload, self.psum1.payload),
            )
            m.d.comb += cv.o1.ready.eq(1)
            # lane 1's mapper: the tile's mapper configuration, on lane 1's raw output
            m.submodules.mapper1 = mapper1 = Mapper(arch)
            feed(mapper1.i, packed & u.act & cv.o1.valid, cv.o1.payload)
            m.d.comb += [mapper1.segments.eq(mp.segments), mapper1.shift.eq(mp.shift), mapper1.o.ready.eq(1)]
            for i in range(arch.tile.mapper_segments):
                m.d.comb += [
                    mapper1.thresholds[i].eq(mp.thresholds[i]),
                    mapper1.offsets[i].eq(mp.offsets[i]),
                    mapper1.slopes[i].eq(mp.slopes[i]),
                ]
            out1 = stream.Signature(self.o.payload.shape()).create(path=("tile_out1",))
            with m.If(u.act):
                feed(out1, packed & mapper1.o.valid, mapper1.o.payload)
            with m.Else():
                feed(out1, packed & cv.o1.valid, cv.o1.payload)

        # -- the read streams in stream order: the convolver's, the mapper's, the ALU's two ------------
        conv_slot = u.active & ~self.fed
        standalone_map = mp.active & ~(u.active & u.act)
        map_slot = Signal(range(n_slots), name="map_slot")
        alu_slot = Signal(range(n_slots), name="alu_slot")
        copy_slot = Signal(range(n_slots + 2), name="copy_slot")
        m.d.comb += [
            map_slot.eq(conv_slot),
            alu_slot.eq(conv_slot + standalone_map),
            copy_slot.eq(conv_slot + standalone_map + Mux(al.active, 2, 0)),
        ]

        # -- mapper: after the convolver, or on a read stream ---------------------------------------
        map_valid, map_payload = pick(map_slot, list(self.slots), "map_in")
        with m.If(u.active & u.act):
            feed(mapper.i, cv.o.valid, cv.o.payload)
        with m.Else():
            feed(mapper.i, map_valid & standalone_map, map_payload)
        m.d.comb += [mapper.segments.eq(mp.segments), mapper.shift.eq(mp.shift)]
        for i in range(arch.tile.mapper_segments):
            m.d.comb += [
                mapper.thresholds[i].eq(mp.thresholds[i]),
                mapper.offsets[i].eq(mp.offsets[i]),
                mapper.slopes[i].eq(mp.slopes[i]),
            ]

        # -- ALU -------------------------------------------------------------------------------------
        a_valid, a_payload = pick(alu_slot, list(self.slots), "alu_a")
        b_valid, b_payload = pick(alu_slot + 1, list(self.slots), "alu_b")
        feed(alu.a, a_valid & al.active, a_payload)
        feed(alu.b, b_valid & al.active, b_payload)
        for f in ("op", "shift_a", "shift_b", "shift_out"):
            m.d.comb += getattr(alu, f).eq(getattr(al, f))
        m.d.comb += alu.clear.eq(self.clear)

        # -- the tile's output (then, where configured, pooled) -------------------------------------------
        copy_valid, copy_payload = pick(copy_slot, list(self.slots), "copy")
        m.d.comb += [cv.o.ready.eq(1), mapper.o.ready.eq(1), alu.o.ready.eq(1)]
        out = stream.Signature(self.o.payload.shape()).create(path=("tile_out",))

        def unpacked_output() -> None:
            with m.If(al.active):
                feed(out, alu.o.valid, alu.o.payload)
            with m.Elif(mp.active):
                feed(out, mapper.o.valid, mapper.o.payload)
            with m.Elif(u.active):
                feed(out, cv.o.valid, cv.o.payload)
            with m.Else():
                feed(out, copy_valid, copy_payload)

        unpacked_output()  # a packed convolver's lane 0 too (no ALU in a packed pass)

        def pooled(name: str, o: stream.Interface, src: stream.Interface) -> None:
            """``o`` gets ``src`` through a pooling unit of the tile's configuration when it is active."""
            q = self.pool
            pool = Pooler(arch)
            m.submodules[name] = pool
            for f in ("mode", "size", "weight", "shift", "bias", "out_shift", "rows", "cols"):
                m.d.comb += getattr(pool, f).eq(getattr(q, f))
            m.d.comb += [pool.apply_out_shift.eq(1), pool.clear.eq(self.clear)]
            feed(pool.i, src.valid & q.active, src.payload)
            with m.If(q.active):
                feed(o, pool.o.valid, pool.o.payload)
            with m.Else():
                feed(o, src.valid, src.payload)

        if arch.tile.poolers:
            pooled("pool", self.o, out)
            if lanes == 2:
                pooled("pool1", self.o1, out1)  # lane 1's pooling unit
        else:
            feed(self.o, out.valid, out.payload)
            if lanes == 2:
                feed(self.o1, out1.valid, out1.payload)
        m.d.comb += self.error.eq((align.error & u.active) | (cv.error & u.active) | (alu.error & al.active))
        return m
