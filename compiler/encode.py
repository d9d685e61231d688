"""Configuration words: the 64-bit words the control CPU sends over the configuration bus.

Word layout (the NeuFlow format): ``opcode[63:56] a[55:48] b[47:40] c[39:32] arg[31:0]``.
Every pass starts with ``PASS`` and ends with ``GO``; in between, one group of words per port,
route, convolver, pooling unit, mapper and ALU it uses. Signed 16-bit values are stored two's complement in
16-bit fields; two of them share one ``arg`` (high half first).

======  ===========  ====================================================================================
opcode  name         fields
======  ===========  ====================================================================================
0x01    PASS         arg = pass index; a = kind code
0x10    PORT         a = port, b = 0 read / 1 write, c = role (0 data, 1 psum, 2 out) | lane << 6 | sync << 7
                     (lane 1: the partial sums or output of a packed convolver's second kernel);
                     arg = tile the stream is delivered to / taken from
0x11    PORT_ADDR    arg = word address of map row 0, column 0 of the region's channel
0x12    PORT_MAP     arg = map height << 16 | map width
0x13    PORT_WIN     arg = rows << 16 | cols
0x14    PORT_ORG     arg = r0 << 16 | c0 (signed 16-bit each)
0x15    PORT_PAD     a = top, b = left, c = bottom; arg = right << 16 | pad value
0x16    PORT_STEP    a = row step, b = column step; arg = words in the stream
0x20    ROUTE        a = from tile, b = to tile (neighbours); c = 1: tile a takes the stream too (a read data
                     stream delivered to several tiles); arg = stream number in this pass
0x30    CONV         a = tile, b = mode (0 mac, 1 max), c = kh << 4 | kw; arg = stride/dilation nibbles
                     sh << 12 | sw << 8 | dh << 4 | dw
0x31    CONV_LINK    a = tile, b = psum source (0 bias, 1 port, 2 tile, 3 the tile's accumulation
                     buffer), c = source tile; arg = output (0 port, 1 tile) << 31 | destination
                     tile << 16 | delay
0x32    CONV_SHIFT   a = tile, b = shift (signed 8-bit), c = act tile + 1 (0 = none);
                     arg = out_shift (signed 8-bit) << 16 | bias (16-bit); out_shift rounds the chain
                     end into the output format when no mapper follows
0x33    CONV_W       a = tile, b = index of the first of two weights (row-major in the block; 128 + index
                     for the second kernel of a packed convolver); arg = w[i] << 16 | w[i+1]
0x34    POOL         a = tile, b = mode (0 mac, 1 max), c = window size p;
                     arg = out_shift (signed 8-bit) << 24 | shift (signed 8-bit) << 16 | bias (16-bit)
0x35    POOL_W       a = tile; arg = weight (signed 16-bit; 0 in max mode)
0x36    POOL_MAP     a = tile; arg = rows << 16 | cols of the map the pooling unit takes
0x37    CONV_PACK    a = tile; arg = bias of the second kernel (signed 16-bit): the convolver packs two kernels
                     over one window (tile.lanes = 2); comes after CONV_SHIFT, before CONV_W
0x38    CONV_ACC     a = tile; arg = words: the convolver's outputs (raw) go to the tile's accumulation
                     buffer (tile.acc_words), not out of the tile; CONV_LINK's output is then 0 (port,
                     destination 0); comes after CONV_SHIFT and CONV_PACK, before CONV_W
0x40    MAP          a = tile, b = segments; arg = shift (input frac + slope frac - output frac)
0x41    MAP_SEG      a = tile, b = segment; arg = threshold << 16 | offset (threshold of segment 0 unused)
0x42    MAP_SLOPE    a = tile, b = segment; arg = slope (signed 32-bit)
0x50    ALU          a = tile, b = op (0 add, 1 sub, 2 mul, 3 max, 4 min), c = shift_out (signed);
                     arg = shift_a << 16 | shift_b (signed 16-bit each)
0x60    RATE         arg = P << 16 | Q: streams advance one word on P of every Q cycles
0x7F    GO           arg = beats (words per input stream)
======  ===========  ====================================================================================
"""

from __future__ import annotations

import functools

import numpy as np

from nfc.compiler.program import AluUnit, ConvUnit, MapUnit, Pass, PoolUnit, Stream

__all__ = [
    "OPCODES",
    "word",
    "encode_pass",
    "KIND_CODES",
    "ALU_OPS",
    "ROLE_CODES",
    "stream_words",
    "origin_word",
    "conv_head",
    "conv_head_words",
    "weight_words",
    "pack_word",
    "acc_word",
    "lane_weight_words",
    "weight_head",
    "weight_bodies",
    "map_words",
    "alu_word",
    "pool_words",
    "pass_word",
    "pass_words",
    "tail_words",
]

OPCODES = {
    "PASS": 0x01,
    "PORT": 0x10,
    "PORT_ADDR": 0x11,
    "PORT_MAP": 0x12,
    "PORT_WIN": 0x13,
    "PORT_ORG": 0x14,
    "PORT_PAD": 0x15,
    "PORT_STEP": 0x16,
    "ROUTE": 0x20,
    "CONV": 0x30,
    "CONV_LINK": 0x31,
    "CONV_SHIFT": 0x32,
    "CONV_W": 0x33,
    "CONV_PACK": 0x37,
    "CONV_ACC": 0x38,
    "POOL": 0x34,
    "POOL_W": 0x35,
    "POOL_MAP": 0x36,
    "MAP": 0x40,
    "MAP_SEG": 0x41,
    "MAP_SLOPE": 0x42,
    "ALU": 0x50,
    "RATE": 0x60,
    "GO": 0x7F,
}
KIND_CODES = {"conv": 0, "pool": 1, "map": 2, "eltwise": 3, "copy": 4}
ALU_OPS = {"add": 0, "sub": 1, "mul": 2, "max": 3, "min": 4}
ROLE_CODES = {"data": 0, "psum": 1, "out": 2}


def _u(value: int, bits: int) -> int:
    """Two's complement of ``value`` in ``bits`` bits (raises if it does not fit)."""
    lo, hi = -(1 << (bits - 1)), (1 << bits) - 1
    if not lo <= value <= hi:
        raise ValueError(f"value {value} does not fit a {bits}-bit configuration field")
    return value & ((1 << bits) - 1)


def word(op: str, a: int = 0, b: int = 0, c: int = 0, arg: int = 0) -> int:
    """One 64-bit configuration word (fields are 8-bit signed or unsigned, ``arg`` 32-bit)."""
    if not (-128 <= a < 256 and -128 <= b < 256 and -128 <= c < 256 and -(1 << 31) <= arg < (1 << 32)):
        raise ValueError(f"configuration word {op} fields a={a} b={b} c={c} arg={arg} do not fit")
    return (
        (OPCODES[op] << 56)
        | ((a & 0xFF) << 48)
        | ((b & 0xFF) << 40)
        | ((c & 0xFF) << 32)
        | (arg & 0xFFFFFFFF)
    )


def _i(value: int, bits: int) -> int:
    """Two's complement of a *signed* ``value`` in ``bits`` bits (raises if it does not fit)."""
    if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
        raise ValueError(f"value {value} does not fit a signed {bits}-bit configuration field")
    return value & ((1 << bits) - 1)


def _pair(hi: int, lo: int) -> int:
    return (_u(hi, 16) << 16) | _u(lo, 16)


def _spair(hi: int, lo: int) -> int:
    """Two signed 16-bit values in one ``arg`` (the decoder sign-extends both)."""
    return (_i(hi, 16) << 16) | _i(lo, 16)


def _nibbles(what: str, *values: int) -> int:
    """``values`` packed into 4-bit fields, first value highest (raises if one exceeds 15)."""
    out = 0
    for v in values:
        if not 0 <= v < 16:
            raise ValueError(f"{what} {values}: {v} does not fit a 4-bit configuration field (at most 15)")
        out = (out << 4) | v
    return out


def stream_words(i: int, s: Stream, address: int, map_shape: tuple[int, int]) -> list[int]:
    """The words of stream ``i`` of a pass: PORT, PORT_ADDR (``address``), ..., its ROUTE words."""
    r = s.region
    words = list(
        _stream_words_but_address(
            i, s.port, s.direction, s.role, s.sync, s.tile, s.words, s.route, map_shape,
            r.rows, r.cols, r.r0, r.c0, r.pads, r.pad_value, r.step, s.taps, s.lane,
        )
    )  # fmt: skip
    words[1] = word("PORT_ADDR", arg=address)
    return words


@functools.lru_cache(maxsize=1 << 16)
def _stream_words_but_address(
    i: int,
    port: int,
    direction: str,
    role: str,
    sync: bool,
    tile: int,
    n_words: int,
    route: tuple[int, ...],
    map_shape: tuple[int, int],
    rows: int,
    cols: int,
    r0: int,
    c0: int,
    pads: tuple[int, int, int, int],
    pad_value: int,
    step: tuple[int, int],
    taps: tuple[int, ...] = (),
    lane: int = 0,
) -> tuple[int, ...]:
    """The words of stream ``i`` with 0 in place of the PORT_ADDR word. The streams of a layer's
    passes differ mostly by address and channel, so most calls hit the cache."""
    code = ROLE_CODES[role] | (lane << 6) | (0x80 if sync else 0)
    out = [
        word("PORT", port, 0 if direction == "read" else 1, code, tile),
        0,
        word("PORT_MAP", arg=_pair(map_shape[0], map_shape[1])),
        word("PORT_WIN", arg=_pair(rows, cols)),
        origin_word(r0, c0),
    ]
    if any(pads) or pad_value:
        pad = (_u(pads[3], 16) << 16) | _i(pad_value, 16)
        out.append(word("PORT_PAD", pads[0], pads[1], pads[2], pad))
    out.append(word("PORT_STEP", step[0], step[1], 0, n_words))
    for a, b in zip(route, route[1:], strict=False):
        out.append(word("ROUTE", a, b, 1 if a in taps else 0, i))
    return tuple(out)


def origin_word(r0: int, c0: int) -> int:
    """The PORT_ORG word of a region whose origin is ``(r0, c0)``."""
    return word("PORT_ORG", arg=_spair(r0, c0))


def weight_words(tile: int, kernel: tuple[int, ...], lane: int = 0) -> list[int]:
    """CONV_W words for a kernel: two signed 16-bit weights per word (kernels are the bulk of all
    configuration words; plain integer arithmetic beats numpy on kernels of at most 15x15).
    ``lane`` 1: the second kernel of a packed convolver (index field 128 + index)."""
    if not kernel:
        return []
    if min(kernel) < -(1 << 15) or max(kernel) >= 1 << 15:
        raise ValueError("a weight does not fit a 16-bit configuration field")
    k = tuple(kernel) if all(type(w) is int for w in kernel) else tuple(int(w) for w in kernel)
    if len(k) % 2:
        k += (0,)
    head = weight_head(tile) | (lane << 47)
    # word j holds weights 2j (high half) and 2j + 1 (low half); its index field b is 2j
    return [
        head | (j << 41) | ((a & 0xFFFF) << 16) | (b & 0xFFFF)
        for j, (a, b) in enumerate(zip(k[0::2], k[1::2], strict=True))
    ]


@functools.lru_cache(maxsize=256)
def weight_head(tile: int) -> int:
    """The opcode and tile fields of the CONV_W words of the convolver on ``tile``."""
    return (OPCODES["CONV_W"] << 56) | (_u(tile, 8) << 48)


def weight_bodies(kernels: np.ndarray) -> np.ndarray | None:
    """The CONV_W words of many kernels at once, without their :func:`weight_head`: ``kernels``
    is an integer array ``(..., n)`` of flattened kernels; the result ``(..., ceil(n / 2))`` holds
    ``index << 41 | w[2j] << 16 | w[2j + 1]`` (16-bit two's complement halves), so that the words
    of one kernel are ``weight_head(tile) | body``, exactly what :func:`weight_words` gives.
    ``None`` when a weight does not fit 16 bits (the caller then encodes kernel by kernel, which
    raises for the kernels that hold such a weight, and only for those)."""
    k = np.asarray(kernels, dtype=np.int64)
    if k.size and (k.min() < -(1 << 15) or k.max() >= 1 << 15):
        return None
    if k.shape[-1] % 2:
        k = np.concatenate([k, np.zeros(k.shape[:-1] + (1,), np.int64)], axis=-1)
    j = np.arange(k.shape[-1] // 2, dtype=np.int64) << 41
    return j | ((k[..., 0::2] & 0xFFFF) << 16) | (k[..., 1::2] & 0xFFFF)


@functools.lru_cache(maxsize=1 << 16)
def conv_head_words(
    tile: int,
    mode: str,
    block: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    psum_from: str,
    to: str,
    delay: int,
    shift: int,
    act_tile: int,
    out_shift: int,
    bias: int,
) -> tuple[int, int, int]:
    """The CONV, CONV_LINK and CONV_SHIFT words of a convolver (its CONV_W words follow them).
    A layer's units share all of these fields but the tile and the bias, so most calls hit the
    cache."""
    (sh, sw), (dh, dw) = stride, dilation
    kh, kw = block
    what = f"convolver on tile {tile}: block, stride and dilation"
    conv = word(
        "CONV", tile, 0 if mode == "mac" else 1, _nibbles(what, kh, kw), _nibbles(what, sh, sw, dh, dw)
    )
    src = {"bias": 0, "port": 1, "acc": 3}.get(psum_from, 2)
    src_tile = int(psum_from.split(":")[1]) if psum_from.startswith("tile:") else 0
    to_tile = int(to.split(":")[1]) if to.startswith("tile:") else 0
    if not (0 <= to_tile < 1 << 15 and 0 <= delay < 1 << 16):
        raise ValueError(
            f"convolver on tile {tile}: destination tile {to_tile} or delay {delay} "
            "does not fit its CONV_LINK field (15 and 16 bits)"
        )
    link = word(
        "CONV_LINK",
        tile,
        src,
        src_tile,
        ((0 if to in ("port", "acc") else 1) << 31) | (to_tile << 16) | delay,
    )
    shifts = word("CONV_SHIFT", tile, _i(shift, 8), act_tile + 1, (_i(out_shift, 8) << 16) | _i(bias, 16))
    return conv, link, shifts


def conv_head(u: ConvUnit) -> tuple[int, ...]:
    """:func:`conv_head_words` of unit ``u``, its CONV_PACK word when it packs two kernels and its
    CONV_ACC word when its outputs go to the accumulation buffer."""
    head = conv_head_words(
        u.tile, u.mode, u.block, u.stride, u.dilation, u.psum_from, u.to,
        u.delay, u.shift, u.act_tile, u.out_shift, u.bias,
    )  # fmt: skip
    if u.out_channel1 >= 0:
        head = (*head, pack_word(u.tile, u.bias1))
    if u.to == "acc":
        head = (*head, acc_word(u.tile, u.acc_words))
    return head


def acc_word(tile: int, words: int) -> int:
    """The CONV_ACC word: the convolver's ``words`` outputs go to its tile's accumulation buffer."""
    if not 0 < words < 1 << 16:
        raise ValueError(
            f"convolver on tile {tile}: {words} words do not fit the CONV_ACC field (1 to 65535)"
        )
    return word("CONV_ACC", tile, arg=words)


def pack_word(tile: int, bias1: int) -> int:
    """The CONV_PACK word of a packed convolver: its second kernel's bias."""
    return word("CONV_PACK", tile, arg=_i(bias1, 16))


def lane_weight_words(u: ConvUnit) -> list[int]:
    """The CONV_W words of a packed convolver's second kernel (none for an unpacked one)."""
    return weight_words(u.tile, u.kernel1, lane=1) if u.out_channel1 >= 0 else []


@functools.lru_cache(maxsize=1 << 12)
def _map_words(
    tile: int, shift: int, thresholds: tuple[int, ...], offsets: tuple[int, ...], slopes: tuple[int, ...]
) -> tuple[int, ...]:
    words = [word("MAP", tile, len(slopes), 0, _i(shift, 32))]
    for i, (t, off, slope) in enumerate(zip((0,) + thresholds, offsets, slopes, strict=True)):
        words.append(word("MAP_SEG", tile, i, 0, _spair(t, off)))
        words.append(word("MAP_SLOPE", tile, i, 0, _i(slope, 32)))
    return tuple(words)


def map_words(m: MapUnit) -> tuple[int, ...]:
    """The MAP, MAP_SEG and MAP_SLOPE words of mapper ``m`` (a layer's mappers mostly share one
    configuration, so the words are cached)."""
    return _map_words(m.tile, m.shift, m.thresholds, m.offsets, m.slopes)


def pool_words(q: PoolUnit) -> tuple[int, int, int]:
    """POOL, POOL_W and POOL_MAP of a pooling unit."""
    if not 2 <= q.size < 16:
        raise ValueError(f"pooling unit on tile {q.tile}: window size {q.size} is not in 2..15")
    arg = (_i(q.out_shift, 8) << 24) | (_i(q.shift, 8) << 16) | _i(q.bias, 16)
    return (
        word("POOL", q.tile, 0 if q.mode == "mac" else 1, q.size, arg),
        word("POOL_W", q.tile, arg=_i(q.weight, 16)),
        word("POOL_MAP", q.tile, arg=_pair(q.rows, q.cols)),
    )


def alu_word(a: AluUnit) -> int:
    """The ALU word of ``a``."""
    return word("ALU", a.tile, ALU_OPS[a.op], _i(a.shift_out, 8), _spair(a.shift_a, a.shift_b))


def pass_word(kind: str, index: int) -> int:
    """The PASS word that opens pass ``index``."""
    return word("PASS", KIND_CODES[kind], arg=index)


@functools.lru_cache(maxsize=1 << 12)
def tail_words(rate: tuple[int, int], beats: int) -> tuple[int, int]:
    """The RATE and GO words that close a pass."""
    return word("RATE", arg=_pair(rate[0], rate[1])), word("GO", arg=beats)


def pass_words(
    kind: str,
    index: int,
    streams: list[list[int]],
    convs,
    bodies,
    pools,
    maps,
    alus,
    rate: tuple[int, int],
    beats: int,
) -> list[int]:
    """The configuration words of a pass from its pieces, in the order the decoder reads them.

    ``streams``: the words of each stream (:func:`stream_words`); ``bodies``: per convolver its CONV_W
    words without the tile's head (:func:`weight_bodies`), or None to encode its kernel here."""
    words = [pass_word(kind, index)]
    for sw in streams:
        words += sw
    for u, body in zip(convs, bodies, strict=True):
        words += conv_head(u)
        if body is None:
            words += weight_words(u.tile, u.kernel)
        else:
            words += map(weight_head(u.tile).__or__, body)
        words += lane_weight_words(u)
    for q in pools:
        words += pool_words(q)
    for m in maps:
        words += map_words(m)
    for a in alus:
        words.append(alu_word(a))
    words += tail_words(rate, beats)
    return words


def encode_pass(
    p: Pass, addresses: dict[tuple[str, int], int], map_shapes: dict[str, tuple[int, int]]
) -> tuple[int, ...]:
    """The configuration words of pass ``p``.

    ``addresses[(buffer, channel)]`` is the word address of that map's first word;
    ``map_shapes[buffer]`` the (H, W) the DMA addresses it with.
    """
    streams = [
        stream_words(i, s, addresses[(s.region.buffer, s.region.channel)], map_shapes[s.region.buffer])
        for i, s in enumerate(p.streams)
    ]
    bodies = [None] * len(p.convs)
    return tuple(
        pass_words(p.kind, p.index, streams, p.convs, bodies, p.pools, p.maps, p.alus, p.rate, p.beats)
    )
