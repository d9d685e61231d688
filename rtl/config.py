"""The configuration-bus decoder: 64-bit configuration words in, the pass's configuration registers out.

The control CPU sends a pass as configuration words (``compiler/encode.py`` documents the format;
``compiler/decode.py`` is the software twin of this decoder). Every word updates registers: one
:data:`port_layout` per I/O port, one :data:`conv_layout`/:data:`map_layout`/:data:`alu_layout` per
tile, one router selection per directed link, the beat rate and the beat count. ``PASS`` clears
them all; ``GO`` ends the configuration. The words build a pass in one bank of registers while the
units read the other (the outputs): ``commit`` copies the first into the second, so a pass can be
configured while the one before it streams.

Routing is resolved here as the words arrive, the way a router configuration chain would: every
stream carries a *source code* saying where its words enter the router it has reached so far (the
tile's output, an I/O port, or the link from a neighbour). A ``ROUTE a b`` word points the link
``a -> b`` at that source and moves the stream on to ``b``. After its route, a read stream's code
says where its words enter its destination tile, a write stream's where they enter its port's tile.

Source codes (the same at every router): ``0`` none, ``1`` the tile's output, ``2 + p`` I/O port
``p``, ``2 + ports + d`` the link arriving from the neighbour in direction ``d`` (0 north, 1 east,
2 south, 3 west), and, on a target whose convolvers pack two kernels (``tile.lanes = 2``),
``2 + ports + 4`` the tile's lane-1 output (:func:`src_tile1`; a write stream of lane 1 starts its
route there).

Kernel packing (``tile.lanes = 2`` only; with one lane none of this exists): ``CONV_PACK`` makes a
tile's convolver packed (``conv_layout`` ``packed``, ``bias1``); ``CONV_W`` words of a packed
convolver with ``b >= 128`` carry lane 1's weights (row-major index ``b - 128`` into its block,
stored in the kernel slots of :func:`nfc.rtl.convolver.lane_cells`); ``PORT`` ``c`` bit 6 is the
stream's lane (``port_layout`` ``lane``).

Accumulation buffers (``tile.acc_words > 0`` only; without them none of this exists and both words
below are errors): ``CONV_LINK`` source 3 takes a convolver's partial sums from its tile's buffers
(``conv_layout`` ``psum_src`` 3); ``CONV_ACC`` sends its raw outputs into them (``acc_out``) and says
how many (``acc_count``).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nfc.arch import ArchConfig
from nfc.compiler.encode import OPCODES
from nfc.rtl.convolver import lane_cells

__all__ = [
    "port_layout",
    "conv_layout",
    "map_layout",
    "alu_layout",
    "pool_layout",
    "tap_layout",
    "source_bits",
    "SRC_NONE",
    "SRC_TILE",
    "src_tile1",
    "src_port",
    "src_link",
    "DIRECTIONS",
    "neighbour",
    "port_tiles",
    "ConfigDecoder",
]

#: Directions of a router's links, in the order of their source codes.
DIRECTIONS = ("north", "east", "south", "west")
SRC_NONE = 0
SRC_TILE = 1


def src_port(port: int) -> int:
    """Source code of I/O port ``port``."""
    return 2 + port


def src_link(arch: ArchConfig, direction: int) -> int:
    """Source code of the link arriving from the neighbour in ``direction`` (index into DIRECTIONS)."""
    return 2 + arch.io.ports + direction


def src_tile1(arch: ArchConfig) -> int:
    """Source code of the tile's lane-1 output (a packed convolver's second kernel; ``tile.lanes = 2``
    only)."""
    assert arch.tile.lanes == 2, "only a target with tile.lanes = 2 has a lane-1 output"
    return 2 + arch.io.ports + len(DIRECTIONS)


def source_bits(arch: ArchConfig) -> int:
    # the bits of the number of codes (one more than any code: on a one-lane target the largest is
    # the last link's, 2 + ports + 3; with two lanes src_tile1, 2 + ports + 4)
    return (2 + arch.io.ports + len(DIRECTIONS) + (arch.tile.lanes == 2)).bit_length()


def neighbour(arch: ArchConfig, tile: int, direction: int) -> int | None:
    """The tile next to ``tile`` in ``direction``, or None at the edge of the grid."""
    rows, cols = arch.grid.rows, arch.grid.cols
    r, c = divmod(tile, cols)
    dr, dc = ((-1, 0), (0, 1), (1, 0), (0, -1))[direction]
    r, c = r + dr, c + dc
    return r * cols + c if 0 <= r < rows and 0 <= c < cols else None


def port_tiles(arch: ArchConfig) -> tuple[int, ...]:
    """The tile whose router each I/O port attaches to (the compiler's perimeter walk)."""
    from nfc.compiler.schedule import Geometry

    return Geometry.of(arch).port_tile


def tile_bits(arch: ArchConfig) -> int:
    return max(1, (arch.grid.rows * arch.grid.cols - 1).bit_length())


def port_layout(arch: ArchConfig) -> data.StructLayout:
    """One I/O port's stream (``PORT`` .. ``PORT_STEP`` and its route), as its DMA engine takes it."""
    word = signed(arch.numerics.word_bits)
    return data.StructLayout(
        {
            "active": 1,
            "write": 1,
            "role": 2,  # 0 data, 1 partial sum, 2 output
            **({"lane": 1} if arch.tile.lanes == 2 else {}),  # psum / out of a packed convolver's lane 1
            "tile": 8,  # tile the stream is delivered to / taken from
            "slot": 4,  # read data streams: order among the tile's data streams
            "src": source_bits(arch),  # where the stream's words enter the router it has reached
            "address": 32,
            "map_h": 16,
            "map_w": 16,
            "rows": 16,
            "cols": 16,
            "r0": signed(16),
            "c0": signed(16),
            "pad_top": 8,
            "pad_left": 8,
            "pad_value": word,
            "step_r": 8,
            "step_c": 8,
            "words": 32,
        }
    )


def conv_layout(arch: ArchConfig) -> data.StructLayout:
    """One tile's convolver (``CONV``, ``CONV_LINK``, ``CONV_SHIFT``, ``CONV_W``; ``CONV_PACK`` with
    ``tile.lanes = 2``: ``packed`` and lane 1's ``bias1``, lane 1's weights in the kernel slots of
    :func:`nfc.rtl.convolver.lane_cells`; ``CONV_ACC`` with ``tile.acc_words``: ``acc_out`` and
    ``acc_count``)."""
    k = arch.tile.convolver_size
    word = signed(arch.numerics.word_bits)
    return data.StructLayout(
        {
            "active": 1,
            "mode": 1,  # 0 mac, 1 max
            "block_h": 4,
            "block_w": 4,
            "stride_h": 4,
            "stride_w": 4,
            "dil_h": 4,
            "dil_w": 4,
            "psum_src": 2,  # 0 bias, 1 port, 2 tile, 3 the tile's accumulation buffers
            "psum_tile": 8,
            "to_tile": 1,  # output goes to another tile (else to a port)
            "dest": 15,
            "delay": 16,
            "shift": signed(8),
            "act": 1,  # output through the tile's mapper
            "act_tile": 8,
            "out_shift": signed(8),
            "bias": word,
            **({"packed": 1, "bias1": word} if arch.tile.lanes == 2 else {}),
            # CONV_ACC: the outputs (raw) go to the tile's accumulation buffers, acc_count of them
            **({"acc_out": 1, "acc_count": 16} if arch.tile.acc_words else {}),
            "kernel": data.ArrayLayout(word, k * k),  # tap order (nfc.rtl.convolver.tap_order)
        }
    )


def map_layout(arch: ArchConfig) -> data.StructLayout:
    s = arch.tile.mapper_segments
    word = signed(arch.numerics.word_bits)
    return data.StructLayout(
        {
            "active": 1,
            "segments": 8,
            "shift": signed(8),
            "thresholds": data.ArrayLayout(word, s),
            "offsets": data.ArrayLayout(word, s),
            "slopes": data.ArrayLayout(signed(32), s),
        }
    )


def alu_layout(arch: ArchConfig) -> data.StructLayout:
    return data.StructLayout(
        {"active": 1, "op": 3, "shift_a": signed(8), "shift_b": signed(8), "shift_out": signed(8)}
    )


def pool_layout(arch: ArchConfig) -> data.StructLayout:
    """One tile's pooling unit (``POOL``, ``POOL_W``, ``POOL_MAP``)."""
    word = signed(arch.numerics.word_bits)
    return data.StructLayout(
        {
            "active": 1,
            "mode": 1,  # 0 mac (average), 1 max
            "size": 4,
            "shift": signed(8),
            "bias": word,
            "out_shift": signed(8),
            "weight": word,
            "rows": 16,
            "cols": 16,
        }
    )


def tap_layout(arch: ArchConfig) -> data.StructLayout:
    """A read data stream taken at a tile on its way (ROUTE with c = 1): the tile's slot for it and the
    source code of where it enters that tile's router."""
    return data.StructLayout({"active": 1, "slot": 4, "src": source_bits(arch)})


class ConfigDecoder(wiring.Component):
    """Decodes configuration words into the registers of a pass.

    Parameters
    ----------
    arch : ArchConfig
        The target: sizes of every register array.

    Attributes
    ----------
    word : In(stream.Signature(64))
        Configuration words. A word is taken on a cycle ``valid & accept``; ``ready`` is ``accept``.
    accept : In(1)
        The pass control's pacing: high on the last cycle of each word's ``cycles_per_word`` slot.
    commit : In(1)
        Copy the registers the words build into the bank the outputs show, at the next edge (pass
        control: the pass starts streaming on the next cycle). The words of the next pass may
        arrive while the outputs hold the current one.
    go : Out(1)
        The word taken this cycle is ``GO`` (the registers hold the whole pass from the next cycle).
    first : Out(1)
        The word taken this cycle is ``PASS``.
    ports : Out(ArrayLayout(port_layout, io.ports))
    convs, maps, alus : Out(ArrayLayout(..., tiles))
    taps : Out(ArrayLayout(ArrayLayout(tap_layout, tiles), io.ports))
        ``taps[p][t]``: the read data stream of port ``p`` is also delivered to tile ``t``.
    pools : Out(ArrayLayout(pool_layout, tiles))
        Only on a target with pooling units (``tile.poolers``); elsewhere ``POOL`` words are errors.
    links : Out(ArrayLayout(ArrayLayout(source code, 4), tiles))
        ``links[a][d]``: the source router ``a`` sends over its link in direction ``d``.
    rate_p, rate_q : Out(7)
    beats : Out(32)
    error : Out(1)
        Sticky until ``PASS``: an unknown opcode, a route between tiles that are not neighbours, a
        mapper after a convolver on another tile, a field out of range (with ``tile.lanes = 2`` also
        a ``PORT`` of lane 1 with role data), a ``CONV_LINK`` of partial-sum source 3 on a target
        without accumulation buffers; with ``tile.acc_words`` also a ``CONV_ACC`` word that breaks
        the rules below.

    With ``tile.lanes = 2``: ``CONV_PACK`` (``a`` tile, ``arg[15:0]`` lane 1's bias) sets the tile's
    ``packed`` and ``bias1``; a ``CONV_W`` word of a packed convolver with ``b >= 128`` writes lane 1's
    weights ``b - 128`` and ``b - 127`` (row-major in its ``block_h x block_w`` block; row ``r``,
    column ``c`` is tap ``(block_h - 1 - r) * m + block_w - 1 - c``, ``m = arch.packed_size``, held in
    kernel slot ``lane_cells(K, m)[tap]``); ``PORT`` takes ``lane = c[6]``. Lane 1's weights are
    dropped when the block is larger than ``m`` (the convolver refuses that configuration). A write
    stream of lane 1 starts its route at :func:`src_tile1`.

    With ``tile.acc_words``: ``CONV_LINK`` source 3 (its ``c`` 0) sets ``psum_src`` 3; ``CONV_ACC``
    (``a`` tile, ``b = c = 0``, ``arg`` words) sets the tile's ``acc_out`` and ``acc_count``. It is an
    error when its tile is not that of the convolver being configured (the last ``CONV`` word), when
    ``arg`` is 0 or above ``acc_words``, or when that convolver's output is not raw and to the port
    (``CONV_LINK`` output 0 and destination 0, ``CONV_SHIFT`` act 0 and out_shift 0).
    """

    def __init__(self, arch: ArchConfig):
        self.arch = arch
        tiles = arch.grid.rows * arch.grid.cols
        super().__init__(
            {
                "word": In(stream.Signature(64)),
                "accept": In(1),
                "commit": In(1),
                "go": Out(1),
                "first": Out(1),
                "ports": Out(data.ArrayLayout(port_layout(arch), arch.io.ports)),
                "convs": Out(data.ArrayLayout(conv_layout(arch), tiles)),
                "maps": Out(data.ArrayLayout(map_layout(arch), tiles)),
                "alus": Out(data.ArrayLayout(alu_layout(arch), tiles)),
                **({"pools": Out(data.ArrayLayout(pool_layout(arch), tiles))} if arch.tile.poolers else {}),
                "links": Out(data.ArrayLayout(data.ArrayLayout(source_bits(arch), 4), tiles)),
                "taps": Out(data.ArrayLayout(data.ArrayLayout(tap_layout(arch), tiles), arch.io.ports)),
                "rate_p": Out(7),
                "rate_q": Out(7),
                "beats": Out(32),
                "error": Out(1),
            }
        )

    def elaborate(self, platform):
        arch = self.arch
        m = Module()
        n_ports = arch.io.ports
        tiles = arch.grid.rows * arch.grid.cols
        cols = arch.grid.cols
        k = arch.tile.convolver_size
        lanes = arch.tile.lanes
        acc_words = arch.tile.acc_words

        ports = Signal.like(self.ports)
        convs = Signal.like(self.convs)
        maps = Signal.like(self.maps)
        alus = Signal.like(self.alus)
        pools = Signal.like(self.pools) if arch.tile.poolers else None
        links = Signal.like(self.links)
        taps = Signal.like(self.taps)
        rate_p, rate_q, beats = Signal(7), Signal(7), Signal(32)
        error = Signal()
        # which port carries stream i of the pass (streams are numbered in PORT order)
        stream_port = Signal(data.ArrayLayout(8, n_ports))
        n_streams = Signal(range(n_ports + 1))
        cur_port = Signal(8)  # the port whose PORT group is being read
        data_slots = Signal(data.ArrayLayout(4, tiles))  # read data streams given to each tile so far
        cur_conv = Signal(8) if acc_words else None  # the tile of the convolver being configured
        m.d.comb += self.error.eq(error)

        w = self.word.payload
        op, fa, fb, fc, arg = w[56:64], w[48:56], w[40:48], w[32:40], w[0:32]
        hi, lo = arg[16:32], arg[0:16]
        take = Signal()
        m.d.comb += [take.eq(self.word.valid & self.accept), self.word.ready.eq(self.accept)]
        m.d.comb += [
            self.go.eq(take & (op == OPCODES["GO"])),
            self.first.eq(take & (op == OPCODES["PASS"])),
        ]
        # the second bank: what the units read, the registers above as they stand at commit (GO,
        # the last word of a pass, only sets the beat count: take it from the word if it is here)
        with m.If(self.commit):
            m.d.sync += [
                self.ports.eq(ports),
                self.convs.eq(convs),
                self.maps.eq(maps),
                self.alus.eq(alus),
                self.links.eq(links),
                self.taps.eq(taps),
                *([self.pools.eq(pools)] if pools is not None else []),
                self.rate_p.eq(rate_p),
                self.rate_q.eq(rate_q),
                self.beats.eq(Mux(self.go, arg, beats)),
            ]

        def tile_ok(value):
            return value < tiles

        with m.If(take):
            with m.Switch(op):
                with m.Case(OPCODES["PASS"]):
                    m.d.sync += [
                        ports.eq(0),
                        convs.eq(0),
                        maps.eq(0),
                        alus.eq(0),
                        links.eq(0),
                        taps.eq(0),
                        *([pools.eq(0)] if pools is not None else []),
                        n_streams.eq(0),
                        data_slots.eq(0),
                        error.eq(0),
                    ]
                with m.Case(OPCODES["PORT"]):
                    p = ports[fa]
                    read_data = (fb == 0) & (fc[0:2] == 0)
                    # c = role | lane << 6 | sync << 7; a write of lane 1 takes the tile's lane-1 output
                    tile_src = Mux(fc[6], src_tile1(arch), SRC_TILE) if lanes == 2 else SRC_TILE
                    m.d.sync += [
                        cur_port.eq(fa),
                        p.active.eq(1),
                        p.write.eq(fb[0]),
                        p.role.eq(fc[0:2]),
                        p.tile.eq(arg),
                        p.slot.eq(Mux(read_data, data_slots[arg], 0)),
                        p.src.eq(Mux(fb[0], tile_src, 2 + fa)),
                        stream_port[n_streams].eq(fa),
                        n_streams.eq(n_streams + 1),
                    ]
                    if lanes == 2:
                        m.d.sync += p.lane.eq(fc[6])
                    with m.If(read_data):
                        m.d.sync += data_slots[arg].eq(data_slots[arg] + 1)
                    bad_port = (fa >= n_ports) | ~tile_ok(arg) | (n_streams == n_ports)
                    if lanes == 2:
                        bad_port |= fc[6] & (fc[0:2] == 0)  # lane 1: partial sums or output only
                    with m.If(bad_port):
                        m.d.sync += error.eq(1)
                with m.Case(OPCODES["PORT_ADDR"]):
                    m.d.sync += ports[cur_port].address.eq(arg)
                with m.Case(OPCODES["PORT_MAP"]):
                    m.d.sync += [ports[cur_port].map_h.eq(hi), ports[cur_port].map_w.eq(lo)]
                with m.Case(OPCODES["PORT_WIN"]):
                    m.d.sync += [ports[cur_port].rows.eq(hi), ports[cur_port].cols.eq(lo)]
                with m.Case(OPCODES["PORT_ORG"]):
                    m.d.sync += [ports[cur_port].r0.eq(hi), ports[cur_port].c0.eq(lo)]
                with m.Case(OPCODES["PORT_PAD"]):
                    m.d.sync += [
                        ports[cur_port].pad_top.eq(fa),
                        ports[cur_port].pad_left.eq(fb),
                        ports[cur_port].pad_value.eq(lo),
                    ]
                with m.Case(OPCODES["PORT_STEP"]):
                    m.d.sync += [
                        ports[cur_port].step_r.eq(fa),
                        ports[cur_port].step_c.eq(fb),
                        ports[cur_port].words.eq(arg),
                    ]
                with m.Case(OPCODES["ROUTE"]):
                    p = ports[stream_port[arg[0:8]]]
                    # direction of b seen from a, and of a seen from b
                    out_dir, in_dir, ok = Signal(2), Signal(2), Signal()
                    with m.If((fb + cols == fa) & tile_ok(fa)):
                        m.d.comb += [out_dir.eq(0), in_dir.eq(2), ok.eq(1)]
                    with m.Elif((fb == fa + 1) & (fa % cols != cols - 1) & tile_ok(fb)):
                        m.d.comb += [out_dir.eq(1), in_dir.eq(3), ok.eq(1)]
                    with m.Elif((fb == fa + cols) & tile_ok(fb)):
                        m.d.comb += [out_dir.eq(2), in_dir.eq(0), ok.eq(1)]
                    with m.Elif((fb + 1 == fa) & (fa % cols != 0) & tile_ok(fa)):
                        m.d.comb += [out_dir.eq(3), in_dir.eq(1), ok.eq(1)]
                    m.d.sync += [
                        links[fa][out_dir].eq(p.src),
                        p.src.eq(2 + n_ports + in_dir),
                    ]
                    with m.If(fc[0]):  # tile a takes the stream too, as its next data stream
                        tap = taps[stream_port[arg[0:8]]][fa]
                        m.d.sync += [
                            tap.active.eq(1),
                            tap.slot.eq(data_slots[fa]),
                            tap.src.eq(p.src),
                            data_slots[fa].eq(data_slots[fa] + 1),
                        ]
                    read_data = ~p.write & (p.role == 0)
                    with m.If(~ok | (arg >= n_streams) | (fc[1:] != 0) | (fc[0] & ~read_data)):
                        m.d.sync += error.eq(1)
                with m.Case(OPCODES["CONV"]):
                    u = convs[fa]
                    m.d.sync += [
                        u.active.eq(1),
                        u.mode.eq(fb[0]),
                        u.block_h.eq(fc[4:8]),
                        u.block_w.eq(fc[0:4]),
                        u.stride_h.eq(arg[12:16]),
                        u.stride_w.eq(arg[8:12]),
                        u.dil_h.eq(arg[4:8]),
                        u.dil_w.eq(arg[0:4]),
                    ]
                    if cur_conv is not None:
                        m.d.sync += cur_conv.eq(fa)
                    with m.If(~tile_ok(fa)):
                        m.d.sync += error.eq(1)
                with m.Case(OPCODES["CONV_LINK"]):
                    u = convs[fa]
                    m.d.sync += [
                        u.psum_src.eq(fb),
                        u.psum_tile.eq(fc),
                        u.to_tile.eq(arg[31]),
                        u.dest.eq(arg[16:31]),
                        u.delay.eq(arg[0:16]),
                    ]
                    # source 3, the tile's accumulation buffers: only on a target that has them
                    bad_src = (fb == 3) & (fc != 0) if acc_words else fb == 3
                    with m.If(bad_src):
                        m.d.sync += error.eq(1)
                with m.Case(OPCODES["CONV_SHIFT"]):
                    u = convs[fa]
                    m.d.sync += [
                        u.shift.eq(fb),
                        u.act.eq(fc != 0),
                        u.act_tile.eq(fc - 1),
                        u.out_shift.eq(arg[16:24]),
                        u.bias.eq(lo),
                    ]
                    with m.If((fc != 0) & (fc - 1 != fa)):  # the mapper after a convolver is its tile's
                        m.d.sync += error.eq(1)
                with m.Case(OPCODES["CONV_W"]):
                    # weights b and b + 1 of the block's row-major kernel, stored in tap order (see
                    # nfc.rtl.convolver.tap_order): row r = b // bw, column c = b % bw goes to tap
                    # (bh - 1 - r, bw - 1 - c); a padding weight past the block is dropped
                    u = convs[fa]
                    bw = Mux(u.block_w == 0, 1, u.block_w)

                    def lane0_weights(u=u, bw=bw):
                        for index, value in ((fb, hi), (fb + 1, lo)):
                            row, col = Signal(8), Signal(8)
                            m.d.comb += [row.eq(index // bw), col.eq(index % bw)]
                            tap = (u.block_h - 1 - row) * k + (u.block_w - 1 - col)
                            with m.If(index < u.block_h * u.block_w):
                                m.d.sync += u.kernel[tap[: (k * k - 1).bit_length()]].eq(value)

                    if lanes == 2:
                        # a packed convolver's lane 1 (b >= 128, after CONV_PACK): row-major index
                        # b - 128 of its block; tap (q', n') = (bh - 1 - r, bw - 1 - c) is held in the
                        # kernel slot of cell lane_cells(K, m)[q' * m + n']; dropped past the block,
                        # or when the block is larger than m (the convolver refuses that)
                        pm = arch.packed_size
                        cells = lane_cells(k, pm)[: pm * pm]
                        fits = (u.block_h <= pm) & (u.block_w <= pm)
                        with m.If(u.packed & fb[7]):
                            for index, value in ((fb[0:7], hi), (fb[0:7] + 1, lo)):
                                row, col, tap1 = Signal(8), Signal(8), Signal(8)
                                m.d.comb += [
                                    row.eq(index // bw),
                                    col.eq(index % bw),
                                    tap1.eq((u.block_h - 1 - row) * pm + (u.block_w - 1 - col)),
                                ]
                                with m.If(fits & (index < u.block_h * u.block_w)):
                                    with m.Switch(tap1):
                                        for t, cell in enumerate(cells):
                                            with m.Case(t):
                                                m.d.sync += u.kernel[cell].eq(value)
                        with m.Else():
                            lane0_weights()
                    else:
                        lane0_weights()
                if lanes == 2:
                    with m.Case(OPCODES["CONV_PACK"]):
                        # a = tile; arg[15:0] = lane 1's bias: the convolver packs two kernels
                        m.d.sync += [convs[fa].packed.eq(1), convs[fa].bias1.eq(lo)]
                        with m.If(~tile_ok(fa)):
                            m.d.sync += error.eq(1)
                if acc_words:
                    with m.Case(OPCODES["CONV_ACC"]):
                        # a = tile; arg = words: the convolver's raw outputs go to its tile's buffers
                        u = convs[fa]
                        m.d.sync += [u.acc_out.eq(1), u.acc_count.eq(arg[0:16])]
                        refused = [
                            ~tile_ok(fa),
                            fa != cur_conv,  # only the convolver whose group this is
                            ~u.active,  # no CONV word for it in this pass
                            fb != 0,
                            fc != 0,
                            arg == 0,
                            arg > acc_words,
                            # its outputs are raw and leave the tile for nowhere else
                            u.to_tile,
                            u.dest != 0,
                            u.act,
                            u.out_shift != 0,
                        ]
                        with m.If(Cat(*refused).any()):
                            m.d.sync += error.eq(1)
                if pools is not None:
                    with m.Case(OPCODES["POOL"]):
                        q = pools[fa]
                        m.d.sync += [
                            q.active.eq(1),
                            q.mode.eq(fb[0]),
                            q.size.eq(fc[0:4]),
                            q.out_shift.eq(arg[24:32]),
                            q.shift.eq(arg[16:24]),
                            q.bias.eq(lo),
                        ]
                        with m.If(~tile_ok(fa) | (fc < 2) | (fc > 15) | (fb > 1)):
                            m.d.sync += error.eq(1)
                    with m.Case(OPCODES["POOL_W"]):
                        m.d.sync += pools[fa].weight.eq(lo)
                    with m.Case(OPCODES["POOL_MAP"]):
                        m.d.sync += [pools[fa].rows.eq(hi), pools[fa].cols.eq(lo)]
                with m.Case(OPCODES["MAP"]):
                    m.d.sync += [maps[fa].active.eq(1), maps[fa].segments.eq(fb), maps[fa].shift.eq(arg[0:8])]
                with m.Case(OPCODES["MAP_SEG"]):
                    m.d.sync += [maps[fa].thresholds[fb].eq(hi), maps[fa].offsets[fb].eq(lo)]
                with m.Case(OPCODES["MAP_SLOPE"]):
                    m.d.sync += maps[fa].slopes[fb].eq(arg)
                with m.Case(OPCODES["ALU"]):
                    m.d.sync += [
                        alus[fa].active.eq(1),
                        alus[fa].op.eq(fb),
                        alus[fa].shift_out.eq(fc),
                        alus[fa].shift_a.eq(hi[0:8]),
                        alus[fa].shift_b.eq(lo[0:8]),
                    ]
                with m.Case(OPCODES["RATE"]):
                    m.d.sync += [rate_p.eq(hi), rate_q.eq(lo)]
                with m.Case(OPCODES["GO"]):
                    m.d.sync += beats.eq(arg)
                with m.Default():
                    m.d.sync += error.eq(1)
        return m
