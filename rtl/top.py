"""The accelerator: configuration bus, pass control, DMA ports, routers and tiles, built from an ArchConfig.

``Accelerator(arch)`` is the top level that ``nfc rtl`` emits and the co-simulation runs. It takes
configuration words on ``config`` and talks to memory through one request/response port per I/O
port (``mem[p]``): a request presented on a cycle is a read (answered ``memory.latency_cycles``
later with ``resp_valid``) or a write; the memory never refuses one.

Inside, everything follows docs/architecture.md §13, and nothing is back-pressured: every consumer
is always ready, which the compiler's FIFO bounds guarantee (a unit that would have to drop a word
raises ``error`` instead).

* **Ports.** Port ``p`` sits at the router of perimeter tile ``p mod len(perimeter)`` (the
  compiler's ``Geometry``). It holds a :class:`~nfc.rtl.dma.ReadDma` and a
  :class:`~nfc.rtl.dma.WriteDma`; its stream's direction picks which one drives the memory port.
  A data read stream requests one word per beat; a partial-sum stream requests a word when the data
  stream of its tile's convolver requests the word that completes a window (its own
  :class:`~nfc.rtl.window.WindowCounter` follows that stream).
* **Routers** (:class:`~nfc.rtl.router.Router`, one per tile). Each directed link between
  neighbouring tiles is a hop of ``tile.router_latency`` cycles carrying the source the configuration
  chose (the tile's output, a port at this router, or an incoming link). A tile's operators take
  their inputs where their streams arrive, in stream order (``slot``), with no further delay.
* **Tiles** (:class:`~nfc.rtl.tile.Tile`). One convolver (behind its alignment delay), one mapper,
  one ALU. A convolver's partial sum, or a pooling convolver's input, may come from another tile's
  output over a chain link (one hop, ``tile.router_latency`` cycles).
* **Packing** (targets with ``tile.lanes = 2`` only). A packed convolver's second output (lane 1)
  enters its router as source :func:`~nfc.rtl.config.src_tile1` (for a write stream of lane 1)
  and has its own chain link; a convolver chaining from another tile takes lane 1's partial sums
  from that tile's lane-1 link, and a partial-sum stream of lane 1 goes to the tile's ``psum1``
  (its window counter follows the tile's data stream like lane 0's).
* **Accumulation buffers** (targets with ``tile.acc_words`` only). Each tile keeps its convolver's
  partial sums between passes in buffers of its own (:class:`~nfc.rtl.tile.Tile`); a pass also ends
  on the cycle on which the last convolver writing them has written its last word.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from nfc.arch import ArchConfig
from nfc.errors import NfcError
from nfc.rtl.beat import BeatGenerator
from nfc.rtl.config import DIRECTIONS, ConfigDecoder, neighbour, port_tiles
from nfc.rtl.control import PassControl
from nfc.rtl.dma import ReadDma, WriteDma
from nfc.rtl.pipeline import DelayLine
from nfc.rtl.router import Router, input_slots
from nfc.rtl.tile import Tile
from nfc.rtl.window import WindowCounter

__all__ = ["Accelerator", "memory_signature", "port_tiles"]


def memory_signature(arch: ArchConfig) -> wiring.Signature:
    """One I/O port's memory interface, seen from the accelerator."""
    word = signed(arch.numerics.word_bits)
    return wiring.Signature(
        {
            "req_valid": Out(1),
            "req_write": Out(1),
            "req_addr": Out(32),
            "req_data": Out(word),
            "resp_valid": In(1),
            "resp_data": In(word),
        }
    )


def check_buildable(arch: ArchConfig) -> None:
    """Raise NfcError for a target this RTL cannot build."""
    t = arch.tile
    if (t.convolvers, t.mappers, t.alus) != (1, 1, 1):
        raise NfcError(
            f"target {arch.name!r}: the RTL builds tiles of one convolver, one mapper and one ALU; this "
            f"target asks for {t.convolvers}, {t.mappers} and {t.alus} (tile.convolvers/mappers/alus)"
        )
    if arch.tile.router_latency < 1:
        raise NfcError(
            f"target {arch.name!r}: the RTL registers every router hop; tile.router_latency must be at "
            f"least 1, not {arch.tile.router_latency}"
        )
    if arch.numerics.word_bits != 16:
        raise NfcError(
            f"target {arch.name!r}: the RTL's configuration fields hold 16-bit words; "
            f"numerics.word_bits must be 16, not {arch.numerics.word_bits}"
        )


class Accelerator(wiring.Component):
    """The whole accelerator for one target.

    Parameters
    ----------
    arch : ArchConfig
        The target; :func:`check_buildable` says which targets the RTL supports.

    Attributes
    ----------
    config : In(stream.Signature(64))
        Configuration words, taken one per ``config_bus.cycles_per_word`` cycles, also while the
        previous pass streams (a second register bank), up to the next pass's ``GO``.
    mem : Out(memory_signature).array(io.ports)
        The memory ports.
    pass_done : Out(1)
        A pass ends this cycle (its last write).
    pass_cycles : Out(32)
        Cycles of the last finished pass.
    passes : Out(32)
        Passes finished since reset.
    stall_cycles : Out(32)
        Streaming cycles without a beat in the last finished pass.
    busy : Out(1)
        A pass is streaming.
    error : Out(1)
        A unit saw a program that breaks the contract (sticky until the next ``PASS`` word for the
        decoder, until the next ``GO`` for the units).
    """

    def __init__(self, arch: ArchConfig):
        check_buildable(arch)
        self.arch = arch
        super().__init__(
            {
                "config": In(stream.Signature(64)),
                "mem": Out(memory_signature(arch)).array(arch.io.ports),
                "pass_done": Out(1),
                "pass_cycles": Out(32),
                "passes": Out(32),
                "stall_cycles": Out(32),
                "busy": Out(1),
                "error": Out(1),
            }
        )

    def elaborate(self, platform):
        arch = self.arch
        m = Module()
        word = signed(arch.numerics.word_bits)
        n_ports = arch.io.ports
        tiles = arch.grid.rows * arch.grid.cols
        h = arch.tile.router_latency
        errors = []

        # -- configuration and pass control ---------------------------------------------------------
        m.submodules.decoder = dec = ConfigDecoder(arch)
        m.submodules.control = ctl = PassControl(arch)
        m.submodules.beat = beat = BeatGenerator()
        wiring.connect(m, wiring.flipped(self.config), dec.word)
        m.d.comb += [
            ctl.word_valid.eq(self.config.valid),
            dec.accept.eq(ctl.accept),
            dec.commit.eq(ctl.commit),
            ctl.go.eq(dec.go),
            beat.P.eq(dec.rate_p),
            beat.Q.eq(dec.rate_q),
            beat.beats.eq(dec.beats),
            beat.start.eq(ctl.start),
            self.pass_done.eq(ctl.done),
            self.pass_cycles.eq(ctl.pass_cycles),
            self.passes.eq(ctl.passes),
            self.busy.eq(ctl.streaming),
        ]
        stalls = Signal(32)
        with m.If(ctl.clear):
            m.d.sync += stalls.eq(0)
        with m.Elif(beat.stall):
            m.d.sync += stalls.eq(stalls + 1)
        with m.If(ctl.done):
            m.d.sync += self.stall_cycles.eq(stalls)
        errors.append(dec.error)
        ports, convs, maps, alus = dec.ports, dec.convs, dec.maps, dec.alus

        # -- DMA ports --------------------------------------------------------------------------------
        reads, writes = [], []
        for p in range(n_ports):
            cfg = ports[p]
            rd, wr = ReadDma(arch), WriteDma(arch)
            m.submodules[f"read{p}"], m.submodules[f"write{p}"] = rd, wr
            for dma in (rd, wr):
                for f in ("address", "rows", "cols", "r0", "c0", "step_r", "step_c", "words"):
                    m.d.comb += getattr(dma, f).eq(getattr(cfg, f))
                m.d.comb += [dma.map_w.eq(cfg.map_w), dma.clear.eq(ctl.clear)]
            for f in ("map_h", "pad_top", "pad_left", "pad_value"):
                m.d.comb += getattr(rd, f).eq(getattr(cfg, f))
            mem = self.mem[p]
            m.d.comb += [rd.resp_valid.eq(mem.resp_valid), rd.resp_data.eq(mem.resp_data)]
            with m.If(cfg.active & cfg.write):
                m.d.comb += [
                    mem.req_valid.eq(wr.req_valid),
                    mem.req_write.eq(1),
                    mem.req_addr.eq(wr.req_addr),
                    mem.req_data.eq(wr.req_data),
                ]
            with m.Elif(cfg.active):
                m.d.comb += [mem.req_valid.eq(rd.req_valid), mem.req_addr.eq(rd.req_addr)]
            errors += [rd.error & cfg.active & ~cfg.write, wr.error & cfg.active & cfg.write]
            reads.append(rd)
            writes.append(wr)

        # data streams request one word per beat; each port also follows, for a partial-sum stream,
        # the data stream of its tile's convolver with a window counter
        data_req = [Signal(name=f"data_req{p}") for p in range(n_ports)]
        for p in range(n_ports):
            cfg = ports[p]
            m.d.comb += data_req[p].eq(beat.beat & cfg.active & ~cfg.write & (cfg.role == 0) & ~reads[p].done)
        # each tile's first read data stream (slot 0: its convolver's input): its size and requests,
        # and the size of the convolver's output over it, worked out once per tile
        first_rows = [Signal(16, name=f"tile{t}_in_rows") for t in range(tiles)]
        first_cols = [Signal(16, name=f"tile{t}_in_cols") for t in range(tiles)]
        first_req = [Signal(name=f"tile{t}_in_req") for t in range(tiles)]
        out_rows = [Signal(16, name=f"tile{t}_out_rows") for t in range(tiles)]
        out_cols = [Signal(16, name=f"tile{t}_out_cols") for t in range(tiles)]
        for t in range(tiles):
            for p in range(n_ports):
                cfg = ports[p]
                tap = dec.taps[p][t]
                read_data = cfg.active & ~cfg.write & (cfg.role == 0)
                with m.If(read_data & (((cfg.tile == t) & (cfg.slot == 0)) | (tap.active & (tap.slot == 0)))):
                    m.d.comb += [
                        first_rows[t].eq(cfg.rows),
                        first_cols[t].eq(cfg.cols),
                        first_req[t].eq(data_req[p]),
                    ]
            u = convs[t]
            # (n - span) // stride + 1; an inactive convolver's stride is 0: keep the divider defined
            span_h = (u.block_h - 1) * u.dil_h + 1
            span_w = (u.block_w - 1) * u.dil_w + 1
            m.d.comb += [
                out_rows[t].eq((first_rows[t] - span_h) // Mux(u.stride_h == 0, 1, u.stride_h) + 1),
                out_cols[t].eq((first_cols[t] - span_w) // Mux(u.stride_w == 0, 1, u.stride_w) + 1),
            ]
        for p in range(n_ports):
            cfg = ports[p]
            m.submodules[f"psum_windows{p}"] = wc = WindowCounter(arch)
            watched = Signal(name=f"psum_watch{p}")
            rows, cols = Signal(16), Signal(16)
            with m.Switch(cfg.tile):
                for t in range(tiles):
                    with m.Case(t):
                        m.d.comb += [watched.eq(first_req[t]), rows.eq(first_rows[t]), cols.eq(first_cols[t])]
            u = convs[cfg.tile]
            for f in ("block_h", "block_w", "stride_h", "stride_w", "dil_h", "dil_w"):
                m.d.comb += getattr(wc, f).eq(getattr(u, f))
            is_psum = cfg.active & ~cfg.write & (cfg.role == 1)
            m.d.comb += [
                wc.rows.eq(rows),
                wc.cols.eq(cols),
                wc.clear.eq(ctl.clear),
                wc.step.eq(watched & is_psum),
            ]
            m.d.comb += reads[p].advance.eq(data_req[p] | (is_psum & watched & wc.done & ~reads[p].done))

        # -- tiles and routers -------------------------------------------------------------------------
        n_slots = input_slots(arch)
        tile_units = [Tile(arch) for _ in range(tiles)]
        routers = [Router(arch, t) for t in range(tiles)]
        for t in range(tiles):
            # a pass starts with nothing in flight: whatever the units still hold of the pass before
            # (outputs no write stream takes) is dropped when the next pass is committed
            m.submodules[f"tile{t}"] = ResetInserter(ctl.clear)(tile_units[t])
            m.submodules[f"router{t}"] = ResetInserter(ctl.clear)(routers[t])
        lanes = arch.tile.lanes
        for t, (tl, rt) in enumerate(zip(tile_units, routers, strict=True)):
            wiring.connect(m, tl.o, rt.tile_out)
            if lanes == 2:
                # lane 1's output enters the router too (write streams of lane 1), and its chain link
                wiring.connect(m, tl.o1, rt.tile_out1)
                wiring.connect(m, rt.psum1, tl.psum1)
            for p in rt.ports_here:
                wiring.connect(m, reads[p].o, getattr(rt, f"port_{p}"))
                # a write port takes words only while its pass streams: a word a unit still makes for
                # the previous pass (outputs no write stream takes) cannot reach the next pass's port
                src = getattr(rt, f"write_{p}")
                m.d.comb += [
                    writes[p].i.valid.eq(src.valid & ctl.streaming),
                    writes[p].i.payload.eq(src.payload),
                    src.ready.eq(writes[p].i.ready),
                ]
                m.d.comb += getattr(rt, f"write_sel_{p}").eq(
                    Mux(ports[p].active & ports[p].write, ports[p].src, 0)
                )
            for d in rt.directions:
                n = neighbour(arch, t, d)
                back = DIRECTIONS[(d + 2) % 4]
                wiring.connect(m, getattr(rt, f"to_{DIRECTIONS[d]}"), getattr(routers[n], f"from_{back}"))
                m.d.comb += rt.link_sel[d].eq(dec.links[t][d])
            for n in range(n_slots):
                wiring.connect(m, rt.slots[n], tl.slots[n])
            wiring.connect(m, rt.psum, tl.psum)
            # where this tile's read streams end: their source codes at this router, by slot
            for p in range(n_ports):
                cfg = ports[p]
                mine = cfg.active & ~cfg.write & (cfg.tile == t)
                tap = dec.taps[p][t]
                for n in range(n_slots):
                    with m.If(mine & (cfg.role == 0) & (cfg.slot == n)):
                        m.d.comb += rt.slot_sel[n].eq(cfg.src)
                    # a read data stream taken here on its way to another tile
                    with m.If(cfg.active & ~cfg.write & (cfg.role == 0) & tap.active & (tap.slot == n)):
                        m.d.comb += rt.slot_sel[n].eq(tap.src)
                if lanes == 2:
                    with m.If(mine & (cfg.role == 1) & ~cfg.lane):
                        m.d.comb += rt.psum_sel.eq(cfg.src)
                    with m.If(mine & (cfg.role == 1) & cfg.lane):
                        m.d.comb += rt.psum1_sel.eq(cfg.src)
                else:
                    with m.If(mine & (cfg.role == 1)):
                        m.d.comb += rt.psum_sel.eq(cfg.src)
            m.d.comb += [tl.conv.eq(convs[t]), tl.map.eq(maps[t]), tl.alu.eq(alus[t]), tl.clear.eq(ctl.clear)]
            if arch.tile.poolers:
                m.d.comb += tl.pool.eq(dec.pools[t])
            errors.append(tl.error)

        # chain links: every tile's output, one hop later, for a convolver that chains from it or pools it
        chain = []
        for t in range(tiles):
            line = DelayLine(word, h)
            m.submodules[f"chain{t}"] = ResetInserter(ctl.clear)(line)
            m.d.comb += [line.i.valid.eq(tile_units[t].o.valid), line.i.payload.eq(tile_units[t].o.payload)]
            m.d.comb += line.o.ready.eq(1)
            chain.append(line.o)
        chain1 = []  # lane 1's chain links (tile.lanes = 2): every tile's lane-1 output, one hop later
        if lanes == 2:
            for t in range(tiles):
                line = DelayLine(word, h)
                m.submodules[f"chain1_{t}"] = ResetInserter(ctl.clear)(line)
                m.d.comb += [
                    line.i.valid.eq(tile_units[t].o1.valid),
                    line.i.payload.eq(tile_units[t].o1.payload),
                ]
                m.d.comb += line.o.ready.eq(1)
                chain1.append(line.o)
        for t in range(tiles):
            u, tl = convs[t], tile_units[t]
            feeder, fed = Signal(8, name=f"tile{t}_feeder"), Signal(name=f"tile{t}_fed")
            for f in range(tiles):
                uf = convs[f]
                with m.If(
                    uf.active & uf.to_tile & (uf.dest == t) & ~((u.psum_src == 2) & (u.psum_tile == f))
                ):
                    m.d.comb += [feeder.eq(f), fed.eq(1)]
            source = Mux(u.psum_src == 2, u.psum_tile, feeder)
            with m.Switch(source):
                for f in range(tiles):
                    with m.Case(f):
                        m.d.comb += [tl.chain.valid.eq(chain[f].valid), tl.chain.payload.eq(chain[f].payload)]
                        if lanes == 2:
                            m.d.comb += [
                                tl.chain1.valid.eq(chain1[f].valid),
                                tl.chain1.payload.eq(chain1[f].payload),
                            ]
            # the convolver's input size: its data stream's region, or its feeder's output
            m.d.comb += [tl.fed.eq(fed), tl.rows.eq(first_rows[t]), tl.cols.eq(first_cols[t])]
            with m.If(fed):
                with m.Switch(feeder):
                    for f in range(tiles):
                        with m.Case(f):
                            m.d.comb += [tl.rows.eq(out_rows[f]), tl.cols.eq(out_cols[f])]

        # -- end of the pass: the cycle on which every write stream has written its last word ---------
        # (and every convolver writing its tile's accumulation buffers, ACC_LATENCY after its output)
        any_last = []
        every = []
        for p in range(n_ports):
            cfg = ports[p]
            is_write = cfg.active & cfg.write
            any_last.append(is_write & writes[p].last)
            every.append(~is_write | writes[p].done | writes[p].last)
        if arch.tile.acc_words:
            for t in range(tiles):
                to_acc = convs[t].active & convs[t].acc_out
                any_last.append(to_acc & tile_units[t].acc_last)
                every.append(~to_acc | tile_units[t].acc_done | tile_units[t].acc_last)
        m.d.comb += ctl.last_write.eq(ctl.streaming & Cat(*any_last).any() & Cat(*every).all())
        sticky = Signal()
        with m.If(dec.first):
            m.d.sync += sticky.eq(0)
        with m.Elif(Cat(*errors[1:]).any()):
            m.d.sync += sticky.eq(1)
        m.d.comb += self.error.eq(sticky | dec.error)
        return m
