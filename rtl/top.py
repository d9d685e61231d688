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
* **Routers.** Each directed link between neighbouring tiles is a :class:`~nfc.rtl.pipeline.DelayLine`
  of ``tile.router_latency`` cycles fed by the source the configuration chose (the tile's output, a
  port at this router, or an incoming link). A tile's operators take their inputs from the sources
  where their streams arrive, in stream order (``slot``), with no further delay.
* **Tiles.** One convolver (behind its alignment delay), one mapper, one ALU. A convolver's partial
  sum or a pooling convolver's input may come from another tile's output over a chain link (one hop).
  The tile's output is its ALU's, else its stand-alone mapper's, else its convolver's (through the
  mapper when ``act``), else a copy of its next read stream.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from nfc.arch import ArchConfig
from nfc.errors import NfcError
from nfc.rtl.alu import Alu
from nfc.rtl.beat import BeatGenerator
from nfc.rtl.config import DIRECTIONS, SRC_TILE, ConfigDecoder, neighbour, port_tiles, src_link, src_port
from nfc.rtl.control import PassControl
from nfc.rtl.convolver import Convolver
from nfc.rtl.dma import ReadDma, WriteDma
from nfc.rtl.mapper import Mapper
from nfc.rtl.pipeline import AlignDelay, DelayLine
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


class _Source:
    """A (valid, payload) pair offered to a router or an operator."""

    def __init__(self, valid, payload):
        self.valid, self.payload = valid, payload


def _select(m: Module, code, sources: dict[int, _Source], word, name: str) -> _Source:
    """The source whose code is ``code`` (nothing for any other code)."""
    out = _Source(Signal(name=f"{name}_valid"), Signal(word, name=f"{name}_payload"))
    with m.Switch(code):
        for c, s in sources.items():
            with m.Case(c):
                m.d.comb += [out.valid.eq(s.valid), out.payload.eq(s.payload)]
    return out


def _feed(m: Module, port: stream.Interface, src: _Source, enable=1) -> None:
    """Drive an input stream from a source (the consumer side is always ready in the grid)."""
    m.d.comb += [port.valid.eq(src.valid & enable), port.payload.eq(src.payload)]


class Accelerator(wiring.Component):
    """The whole accelerator for one target.

    Parameters
    ----------
    arch : ArchConfig
        The target; :func:`check_buildable` says which targets the RTL supports.

    Attributes
    ----------
    config : In(stream.Signature(64))
        Configuration words, taken one per ``config_bus.cycles_per_word`` cycles while configuring.
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
        k = arch.tile.convolver_size
        at = port_tiles(arch)
        errors = []

        # -- configuration and pass control ---------------------------------------------------------
        m.submodules.decoder = dec = ConfigDecoder(arch)
        m.submodules.control = ctl = PassControl(arch)
        m.submodules.beat = beat = BeatGenerator()
        wiring.connect(m, wiring.flipped(self.config), dec.word)
        m.d.comb += [
            ctl.word_valid.eq(self.config.valid),
            dec.accept.eq(ctl.accept),
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
            m.d.comb += rd.o.ready.eq(1)
            errors += [rd.error & cfg.active & ~cfg.write, wr.error & cfg.active & cfg.write]
            reads.append(rd)
            writes.append(wr)

        # data streams request one word per beat; each port also follows, for a partial-sum stream,
        # the data stream of its tile's convolver with a window counter
        data_req = [Signal(name=f"data_req{p}") for p in range(n_ports)]
        for p in range(n_ports):
            cfg = ports[p]
            m.d.comb += data_req[p].eq(beat.beat & cfg.active & ~cfg.write & (cfg.role == 0) & ~reads[p].done)
        for p in range(n_ports):
            cfg = ports[p]
            m.submodules[f"psum_windows{p}"] = wc = WindowCounter(arch)
            watched = Signal(name=f"psum_watch{p}")
            rows, cols = Signal(16), Signal(16)
            for q in range(n_ports):
                other = ports[q]
                with m.If(
                    other.active
                    & ~other.write
                    & (other.role == 0)
                    & (other.tile == cfg.tile)
                    & (other.slot == 0)
                ):
                    m.d.comb += [watched.eq(data_req[q]), rows.eq(other.rows), cols.eq(other.cols)]
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

        # -- tiles: operator outputs (filled in below, used by routers and chain links) ---------------
        tile_out = [
            _Source(Signal(name=f"tile{t}_out_valid"), Signal(word, name=f"tile{t}_out"))
            for t in range(tiles)
        ]
        # chain links: every tile's output, one hop later, for the convolvers that take it
        chain = []
        for t in range(tiles):
            m.submodules[f"chain{t}"] = line = DelayLine(word, h)
            _feed(m, line.i, tile_out[t])
            m.d.comb += line.o.ready.eq(1)
            chain.append(_Source(line.o.valid, line.o.payload))

        # -- routers ----------------------------------------------------------------------------------
        # sources[t]: code -> what enters router t under that code
        sources: list[dict[int, _Source]] = [{SRC_TILE: tile_out[t]} for t in range(tiles)]
        for p in range(n_ports):
            sources[at[p]][src_port(p)] = _Source(reads[p].o.valid, reads[p].o.payload)
        link_out: dict[tuple[int, int], _Source] = {}
        for t in range(tiles):
            for d in range(len(DIRECTIONS)):
                if neighbour(arch, t, d) is None:
                    continue
                m.submodules[f"link{t}_{DIRECTIONS[d]}"] = line = DelayLine(word, h)
                link_out[(t, d)] = _Source(line.o.valid, line.o.payload)
                m.d.comb += line.o.ready.eq(1)
        for (t, d), out in link_out.items():
            # what tile n = neighbour(t, d) receives from t arrives from direction opposite d
            n = neighbour(arch, t, d)
            sources[n][src_link(arch, (d + 2) % 4)] = out
        for (t, d), _ in link_out.items():
            line = m.submodules[f"link{t}_{DIRECTIONS[d]}"]
            _feed(m, line.i, _select(m, dec.links[t][d], sources[t], word, f"route{t}_{DIRECTIONS[d]}"))

        # write ports take the source their stream's route ends on at the port's router
        for p in range(n_ports):
            cfg = ports[p]
            src = _select(m, cfg.src, sources[at[p]], word, f"wport{p}")
            _feed(m, writes[p].i, src, cfg.active & cfg.write)

        # -- tiles --------------------------------------------------------------------------------------
        max_slots = arch.io.max_read_ports + 1
        for t in range(tiles):
            u, mp, al = convs[t], maps[t], alus[t]
            # the read streams delivered to this tile, in stream order, and its partial-sum stream
            slot_code = [
                Signal(range(1 << len(ports[0].src)), name=f"tile{t}_slot{n}") for n in range(max_slots)
            ]
            slot_rows, slot_cols = Signal(16), Signal(16)
            psum_code = Signal(len(ports[0].src), name=f"tile{t}_psum_code")
            for p in range(n_ports):
                cfg = ports[p]
                mine = cfg.active & ~cfg.write & (cfg.tile == t)
                for n in range(max_slots):
                    with m.If(mine & (cfg.role == 0) & (cfg.slot == n)):
                        m.d.comb += slot_code[n].eq(cfg.src)
                        if n == 0:
                            m.d.comb += [slot_rows.eq(cfg.rows), slot_cols.eq(cfg.cols)]
                with m.If(mine & (cfg.role == 1)):
                    m.d.comb += psum_code.eq(cfg.src)
            # a tile's operators never read the tile's own output (no loop through the router)
            inputs = {code: src for code, src in sources[t].items() if code != SRC_TILE}
            slots = [_select(m, slot_code[n], inputs, word, f"tile{t}_in{n}") for n in range(max_slots)]
            psum_in = _select(m, psum_code, inputs, word, f"tile{t}_psum")

            # a convolver on another tile whose output is this convolver's input (pooling after a chain)
            feeder = Signal(8, name=f"tile{t}_feeder")
            fed = Signal(name=f"tile{t}_fed")
            f_rows, f_cols = Signal(16), Signal(16)
            for f in range(tiles):
                uf = convs[f]
                is_feeder = (
                    uf.active & uf.to_tile & (uf.dest == t) & ~((u.psum_src == 2) & (u.psum_tile == f))
                )
                with m.If(is_feeder):
                    m.d.comb += [feeder.eq(f), fed.eq(1)]
            chain_in = _select(
                m, Mux(u.psum_src == 2, u.psum_tile, feeder), dict(enumerate(chain)), word, f"tile{t}_chain"
            )

            # the convolver's input shape: its data stream's region, or its feeder's output
            feeder_shape = self._output_shapes(m, convs, t, tiles, ports, n_ports)
            m.d.comb += [f_rows.eq(feeder_shape[0]), f_cols.eq(feeder_shape[1])]

            m.submodules[f"align{t}"] = align = AlignDelay(word, arch.tile.fifo_depth)
            m.submodules[f"conv{t}"] = cv = Convolver(arch)
            m.submodules[f"map{t}"] = mapper = Mapper(arch)
            m.submodules[f"alu{t}"] = alu = Alu(arch)
            conv_in = _Source(
                Mux(fed, chain_in.valid, slots[0].valid), Mux(fed, chain_in.payload, slots[0].payload)
            )
            _feed(m, align.i, conv_in, u.active)
            m.d.comb += [align.delay.eq(u.delay), align.clear.eq(ctl.clear)]
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
                cv.rows.eq(Mux(fed, f_rows, slot_rows)),
                cv.cols.eq(Mux(fed, f_cols, slot_cols)),
                cv.use_psum.eq(u.psum_src != 0),
                cv.apply_out_shift.eq(~u.act & ~u.to_tile),
                cv.clear.eq(ctl.clear),
            ]
            for i in range(k * k):
                m.d.comb += cv.kernel[i].eq(u.kernel[i])
            psum = _Source(
                Mux(u.psum_src == 2, chain_in.valid, psum_in.valid),
                Mux(u.psum_src == 2, chain_in.payload, psum_in.payload),
            )
            _feed(m, cv.psum, psum, u.active & (u.psum_src != 0))

            # the mapper: after the convolver, or on the tile's next read stream
            conv_slot = u.active & ~fed
            standalone_map = mp.active & ~(u.active & u.act)
            map_src = _select(m, conv_slot, {0: slots[0], 1: slots[1]}, word, f"tile{t}_map_slot")
            with m.If(u.active & u.act):
                m.d.comb += [mapper.i.valid.eq(cv.o.valid), mapper.i.payload.eq(cv.o.payload)]
            with m.Else():
                _feed(m, mapper.i, map_src, standalone_map)
            m.d.comb += [mapper.segments.eq(mp.segments), mapper.shift.eq(mp.shift)]
            for i in range(arch.tile.mapper_segments):
                m.d.comb += [
                    mapper.thresholds[i].eq(mp.thresholds[i]),
                    mapper.offsets[i].eq(mp.offsets[i]),
                    mapper.slopes[i].eq(mp.slopes[i]),
                ]

            # the ALU: the next two read streams
            alu_slot = Signal(range(max_slots), name=f"tile{t}_alu_slot")
            m.d.comb += alu_slot.eq(conv_slot + standalone_map)
            a_src = _select(m, alu_slot, dict(enumerate(slots)), word, f"tile{t}_alu_a")
            b_src = _select(m, alu_slot + 1, dict(enumerate(slots)), word, f"tile{t}_alu_b")
            _feed(m, alu.a, a_src, al.active)
            _feed(m, alu.b, b_src, al.active)
            for f in ("op", "shift_a", "shift_b", "shift_out"):
                m.d.comb += getattr(alu, f).eq(getattr(al, f))
            m.d.comb += alu.clear.eq(ctl.clear)

            # the tile's output
            copy_slot = Signal(range(max_slots + 2), name=f"tile{t}_copy_slot")
            m.d.comb += copy_slot.eq(conv_slot + standalone_map + Mux(al.active, 2, 0))
            copy_src = _select(m, copy_slot, dict(enumerate(slots)), word, f"tile{t}_copy")
            out = tile_out[t]
            m.d.comb += [cv.o.ready.eq(1), mapper.o.ready.eq(1), alu.o.ready.eq(1)]
            with m.If(al.active):
                m.d.comb += [out.valid.eq(alu.o.valid), out.payload.eq(alu.o.payload)]
            with m.Elif(mp.active):
                m.d.comb += [out.valid.eq(mapper.o.valid), out.payload.eq(mapper.o.payload)]
            with m.Elif(u.active):
                m.d.comb += [out.valid.eq(cv.o.valid), out.payload.eq(cv.o.payload)]
            with m.Else():
                m.d.comb += [out.valid.eq(copy_src.valid), out.payload.eq(copy_src.payload)]
            errors += [align.error & u.active, cv.error & u.active, alu.error & al.active]

        # -- end of the pass: the cycle on which every write stream has written its last word ---------
        any_last = []
        every = []
        for p in range(n_ports):
            cfg = ports[p]
            is_write = cfg.active & cfg.write
            any_last.append(is_write & writes[p].last)
            every.append(~is_write | writes[p].done | writes[p].last)
        m.d.comb += ctl.last_write.eq(ctl.streaming & Cat(*any_last).any() & Cat(*every).all())
        sticky = Signal()
        with m.If(dec.first):
            m.d.sync += sticky.eq(0)
        with m.Elif(Cat(*errors[1:]).any()):
            m.d.sync += sticky.eq(1)
        m.d.comb += self.error.eq(sticky | dec.error)
        return m

    def _output_shapes(self, m, convs, t, tiles, ports, n_ports):
        """(rows, cols) of the output of the convolver feeding tile ``t`` (from its data stream's
        region and its geometry): ``(n - span) // stride + 1`` per dimension."""
        out_rows, out_cols = Signal(16, name=f"tile{t}_fed_rows"), Signal(16, name=f"tile{t}_fed_cols")
        for f in range(tiles):
            uf = convs[f]
            with m.If(uf.active & uf.to_tile & (uf.dest == t)):
                for p in range(n_ports):
                    cfg = ports[p]
                    with m.If(cfg.active & ~cfg.write & (cfg.role == 0) & (cfg.tile == f) & (cfg.slot == 0)):
                        span_h = (uf.block_h - 1) * uf.dil_h + 1
                        span_w = (uf.block_w - 1) * uf.dil_w + 1
                        # (an inactive convolver's stride is 0: keep the divider defined)
                        sh = Mux(uf.stride_h == 0, 1, uf.stride_h)
                        sw = Mux(uf.stride_w == 0, 1, uf.stride_w)
                        m.d.comb += [
                            out_rows.eq((cfg.rows - span_h) // sh + 1),
                            out_cols.eq((cfg.cols - span_w) // sw + 1),
                        ]
        return out_rows, out_cols
