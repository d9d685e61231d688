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

On a target with accumulation buffers (``tile.acc_words > 0``) the tile holds one buffer of
``acc_words`` words per lane, kept across passes (nothing clears it). A convolver with partial-sum
source 3 takes partial sum ``k`` from word ``k`` of its lane's buffer, offered on the cycle its data
word completes window ``k``; one with ``acc_out`` writes its raw output ``k`` into word ``k``,
``ACC_LATENCY`` (1) cycle after it leaves the convolver (docs/architecture.md §13).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, Value, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
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
    acc_last : Out(1)
        ``tile.acc_words > 0`` only: the convolver's outputs go to the buffers (``acc_out``) and the
        last of its ``acc_count`` words is written this cycle.
    acc_done : Out(1)
        ``tile.acc_words > 0`` only: ``acc_count`` words have been written since ``clear`` (from the
        cycle after ``acc_last``; a register compare).
    error : Out(1)
        An operator saw its contract broken (a FIFO overflow, a refused configuration); with
        accumulation buffers also, sticky until ``clear``, a window read past the buffer or an output
        beyond ``acc_count`` (not written).
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
                **({"acc_last": Out(1), "acc_done": Out(1)} if arch.tile.acc_words else {}),
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
        # rounding into the output format, at a chain's end without a mapper (not into a buffer)
        out_shift = ~u.act & ~u.to_tile
        if arch.tile.acc_words:
            out_shift = out_shift & ~u.acc_out
        m.d.comb += [
            cv.rows.eq(self.rows),
            cv.cols.eq(self.cols),
            cv.use_psum.eq(u.psum_src != 0),
            cv.apply_out_shift.eq(out_shift),
            cv.clear.eq(self.clear),
        ]
        for i in range(k * k):
            m.d.comb += cv.kernel[i].eq(u.kernel[i])
        from_chain = u.psum_src == 2
        # each lane's accumulation buffer: the word it offers as this window's partial sum
        acc, acc_failed = self._acc_buffers(m, cv) if arch.tile.acc_words else (None, None)

        def psum_in(chain: stream.Interface, port: stream.Interface, lane: int):
            """A lane's partial sum (valid, payload): over the chain link, from the port stream, or
            (source 3) from the lane's accumulation buffer on the cycle its window completes."""
            valid = Mux(from_chain, chain.valid, port.valid)
            payload = Mux(from_chain, chain.payload, port.payload)
            if acc is not None:
                from_acc = u.psum_src == 3
                valid = Mux(from_acc, cv.window_done, valid)
                payload = Mux(from_acc, acc[lane], payload)
            return valid, payload

        valid, payload = psum_in(self.chain, self.psum, 0)
        feed(cv.psum, u.active & (u.psum_src != 0) & valid, payload)
        if lanes == 2:
            # packed: lane 1's partial sums chain the way lane 0's do, its output is the tile's o1
            packed = Signal(name="packed")
            m.d.comb += [packed.eq(u.active & u.packed), cv.packed.eq(u.packed), cv.bias1.eq(u.bias1)]
            valid, payload = psum_in(self.chain1, self.psum1, 1)
            feed(cv.psum1, packed & (u.psum_src != 0) & valid, payload)
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
        error = (align.error & u.active) | (cv.error & u.active) | (alu.error & al.active)
        if acc_failed is not None:
            error = error | acc_failed
        m.d.comb += self.error.eq(error)
        return m

    def _acc_buffers(self, m: Module, cv: Convolver) -> tuple[list[Value], Signal]:
        """The tile's accumulation buffers, one ``Memory`` of ``acc_words`` words per lane, and their
        counters. Returns each lane's read data (the word offered as its partial sum, when
        ``psum_src`` is 3, on a cycle of ``cv.window_done``) and the sticky error."""
        arch = self.arch
        u = self.conv
        n = arch.tile.acc_words
        lanes = arch.tile.lanes
        word = self.o.payload.shape()
        bufs = []
        for lane in range(lanes):
            # no init and no reset: the contents outlive the pass that wrote them
            m.submodules[f"acc{lane}"] = buf = Memory(shape=word, depth=n, init=[])
            bufs.append(buf)

        # reading: word rd on the cycle the window completes (a synchronous port addressed one cycle
        # ahead with the count as it will stand); window k's word is read before any write to it in
        # the same pass can happen (that write follows the window's output), so no bypass is needed
        reading = u.active & (u.psum_src == 3)
        take = Signal()
        rd = Signal(range(n + 1))  # words read since clear
        rd_next = Signal(range(n + 1))
        m.d.comb += [
            take.eq(reading & cv.window_done),
            rd_next.eq(Mux(self.clear, 0, rd + (take & (rd < n)))),
        ]
        m.d.sync += rd.eq(rd_next)
        data = []
        for buf in bufs:
            rp = buf.read_port()
            m.d.comb += rp.addr.eq(rd_next)
            data.append(rp.data)

        # writing: the convolver's outputs, held one cycle (ACC_LATENCY), into word wr
        writing = u.active & u.acc_out
        held = Signal()
        held_data = [Signal(word, name=f"acc_held{lane}") for lane in range(lanes)]
        outs = [cv.o, cv.o1] if lanes == 2 else [cv.o]
        with m.If(self.clear):
            m.d.sync += held.eq(0)
        with m.Else():
            m.d.sync += held.eq(writing & cv.o.valid)
        m.d.sync += [r.eq(o.payload) for r, o in zip(held_data, outs, strict=True)]
        wr = Signal(16)  # words written since clear
        write = Signal()
        # from registers only, clear or not: the last write may fall on the cycle the next pass is
        # committed (the pass ends on it), and acc_last must not depend on that commit
        m.d.comb += write.eq(held & (wr < u.acc_count))
        for lane, buf in enumerate(bufs):
            wp = buf.write_port()
            # lane 1's buffer takes lane 1's output, of a packed convolver only
            m.d.comb += [
                wp.addr.eq(wr),
                wp.data.eq(held_data[lane]),
                wp.en.eq(write if lane == 0 else write & u.packed),
            ]
        with m.If(self.clear):
            m.d.sync += wr.eq(0)
        with m.Elif(write):
            m.d.sync += wr.eq(wr + 1)
        m.d.comb += [
            self.acc_last.eq(write & (wr + 1 == u.acc_count)),
            self.acc_done.eq(wr == u.acc_count),
        ]

        # a window past the buffer, or an output beyond acc_count: the contract broken
        failed = Signal()
        with m.If(self.clear):
            m.d.sync += failed.eq(0)
        with m.Elif((take & (rd == n)) | (held & (wr >= u.acc_count))):
            m.d.sync += failed.eq(1)
        return data, failed
