"""Configuration words -> what the hardware is told: the inverse of ``compiler/encode.py``.

:func:`decode_pass` reads the 64-bit configuration words of one pass (as :func:`encode_pass`
wrote them) back into frozen dataclasses: the pass index and kind, every stream (port, direction,
role, sync, tile, word address, map shape, window, origin, border, steps, words and route), every
convolver, mapper and ALU, the beat rate and the beats. It recovers everything the words carry,
and nothing more. Names of layers and buffers, channels, term indices and MAC counts are compiler
bookkeeping (in :class:`~nfc.compiler.program.Pass` and the program file's side fields). The
routes of convolver-to-convolver links (``Pass.routes``) are not in the words either: ``CONV_LINK``
names only the two tiles, which the scheduler has so far always placed on neighbouring routers.

Signed fields are sign-extended exactly as ``encode.py`` stores them (two's complement):

* 16-bit halves of ``arg``: ``PORT_ORG`` r0/c0, ``PORT_PAD`` pad value, ``CONV_SHIFT`` bias,
  ``CONV_W`` weights, ``MAP_SEG`` threshold/offset, ``ALU`` shift_a/shift_b;
* 32-bit ``arg``: ``MAP`` shift, ``MAP_SLOPE`` slope;
* 8-bit fields: ``CONV_SHIFT`` shift (b), ``ALU`` shift_out (c).

Everything else is unsigned. The decoder checks the structure (``PASS`` first, ``GO`` last, every
group complete and in the order ``encode.py`` writes it, ``ROUTE`` words continuous, reserved
fields zero) and raises ``ValueError`` naming the word index and what is wrong.

:func:`word_fields` splits one word into ``(opcode name, a, b, c, arg)``; :func:`format_word` gives
one line of assembly-like text for the disassembler (``compiler/binary.py``).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from nfc.compiler.encode import ALU_OPS, KIND_CODES, OPCODES, ROLE_CODES

__all__ = [
    "DecodedStream",
    "DecodedConv",
    "DecodedMap",
    "DecodedAlu",
    "DecodedPool",
    "DecodedPass",
    "decode_pass",
    "conv_order",
    "word_fields",
    "format_word",
    "format_fields",
    "split_word",
    "OPCODE_NAMES",
]

#: opcode -> name (the inverse of ``encode.OPCODES``).
OPCODE_NAMES = {code: name for name, code in OPCODES.items()}
_KIND_NAMES = {code: name for name, code in KIND_CODES.items()}
_ALU_NAMES = {code: name for name, code in ALU_OPS.items()}
_ROLE_NAMES = {code: name for name, code in ROLE_CODES.items()}
_DIRECTIONS = ("read", "write")
_MODES = ("mac", "max")
_PSUM_SOURCES = ("bias", "port", "tile", "acc")
_NAME_WIDTH = max(len(n) for n in OPCODES)
_WORD_LIMIT = 1 << 64
_STREAM_HEAD = ("PORT", "PORT_ADDR", "PORT_MAP", "PORT_WIN", "PORT_ORG")
_NAME_TABLE = np.array([OPCODE_NAMES.get(code) for code in range(256)], dtype=object)


@dataclass(frozen=True, slots=True)
class DecodedStream:
    """One DMA stream as its ``PORT`` group configures it.

    ``route``: the tiles the stream crosses (from the port's tile to ``tile`` for reads, from
    ``tile`` to the port's tile for writes); ``(tile,)`` when the port sits at ``tile``.
    """

    port: int
    direction: str  # read | write
    role: str  # data | psum | out
    sync: bool
    tile: int
    address: int  # word address of row 0, column 0 of the map
    map_shape: tuple[int, int]  # (H, W) the DMA addresses the map with
    rows: int
    cols: int
    r0: int
    c0: int
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    pad_value: int
    step: tuple[int, int]
    words: int
    route: tuple[int, ...]
    taps: tuple[int, ...] = ()  # tiles on the route that take a read data stream too (ROUTE c = 1)
    lane: int = 0  # 1: the partial sums or output of a packed convolver's second kernel (PORT c bit 6)


@dataclass(frozen=True, slots=True)
class DecodedConv:
    """One convolver: ``psum_from`` is ``bias``, ``port``, ``tile:N`` or ``acc`` (the tile's
    accumulation buffer); ``to`` is ``port``, ``tile:N`` or ``acc`` (``acc_words`` outputs into the
    buffer); ``act_tile`` -1 when the output does not pass through a mapper."""

    tile: int
    mode: str  # mac | max
    block: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    kernel: tuple[int, ...]  # row-major weight words; empty in max mode
    shift: int
    bias: int
    psum_from: str
    to: str
    act_tile: int
    delay: int
    out_shift: int = 0
    packed: bool = False  # CONV_PACK: a second kernel over the same window (tile.lanes = 2)
    kernel1: tuple[int, ...] = ()  # its row-major weight words
    bias1: int = 0
    acc_words: int = 0  # CONV_ACC: the outputs go to the tile's accumulation buffer (to == "acc")


@dataclass(frozen=True, slots=True)
class DecodedMap:
    """One mapper: ``len(slopes)`` segments, ``thresholds`` of segments 1.. (segment 0 has none)."""

    tile: int
    thresholds: tuple[int, ...]
    slopes: tuple[int, ...]
    offsets: tuple[int, ...]
    shift: int


@dataclass(frozen=True, slots=True)
class DecodedAlu:
    tile: int
    op: str
    shift_a: int
    shift_b: int
    shift_out: int


@dataclass(frozen=True, slots=True)
class DecodedPool:
    """One pooling unit (``compiler/program.py`` ``PoolUnit``): ``size x size`` windows of the tile's
    ``rows x cols`` output."""

    tile: int
    mode: str  # mac | max
    size: int
    rows: int
    cols: int
    weight: int
    shift: int
    bias: int
    out_shift: int


@dataclass(frozen=True, slots=True)
class DecodedPass:
    """Everything the configuration words of one pass say."""

    index: int
    kind: str
    streams: tuple[DecodedStream, ...]
    convs: tuple[DecodedConv, ...]
    maps: tuple[DecodedMap, ...]
    alus: tuple[DecodedAlu, ...]
    rate: tuple[int, int]
    beats: int
    pools: tuple[DecodedPool, ...] = ()


# ---------------------------------------------------------------------------------------------------
# fields
# ---------------------------------------------------------------------------------------------------
def _s(value: int, bits: int) -> int:
    """Sign-extend the low ``bits`` bits of ``value``."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _hi(arg: int) -> int:
    return arg >> 16


def _lo(arg: int) -> int:
    return arg & 0xFFFF


def _check_int(w: object) -> int:
    """``w`` as a Python int (numpy integers accepted), or ``ValueError`` if it is not a 64-bit word."""
    if isinstance(w, bool):
        raise ValueError(f"not a 64-bit configuration word: {w!r}")
    try:
        value = operator.index(w)
    except TypeError:
        raise ValueError(f"not a 64-bit configuration word: {w!r}") from None
    if not 0 <= value < 1 << 64:
        raise ValueError(f"not a 64-bit configuration word: {w!r}")
    return value


def split_word(w: int) -> tuple[str | None, int, int, int, int]:
    """:func:`word_fields` without checks: ``w`` must be an int in [0, 2**64); the name is None for an
    unknown opcode."""
    return OPCODE_NAMES.get(w >> 56), (w >> 48) & 0xFF, (w >> 40) & 0xFF, (w >> 32) & 0xFF, w & 0xFFFFFFFF


def word_fields(w: int) -> tuple[str, int, int, int, int]:
    """``(opcode name, a, b, c, arg)`` of word ``w``, all fields unsigned.

    Raises ``ValueError`` for an unknown opcode or a value that is not a 64-bit word.
    """
    w = _check_int(w)
    fields = split_word(w)
    if fields[0] is None:
        raise ValueError(f"unknown opcode 0x{w >> 56:02x}")
    return fields  # type: ignore[return-value]


def _name(table: dict[int, str], code: int) -> str:
    return table.get(code, f"?{code}")


def _tile_ref(kind: int, tile: int, names: tuple[str, ...]) -> str:
    name = names[kind] if kind < len(names) else f"?{kind}"
    return f"tile:{tile}" if name == "tile" else name


def format_word(w: int) -> str:
    """One line of assembly-like text for word ``w`` (context free: every field as the word has it),
    e.g. ``CONV       tile=3 mode=mac k=7x7 stride=1x1 dil=1x1``.

    An unknown opcode gives ``.word 0x...`` with a note rather than an error.
    """
    w = _check_int(w)
    return format_fields(*split_word(w), word=w)


def format_fields(name: str | None, a: int, b: int, c: int, arg: int, word: int = 0) -> str:
    """:func:`format_word` of a word already split by :func:`word_fields` (``name`` None: unknown)."""
    if name is None:
        return f"{'.word':<{_NAME_WIDTH}} 0x{word:016x}  ; unknown opcode 0x{word >> 56:02x}"
    return f"{name:<{_NAME_WIDTH}} {_FORMATTERS[name](a, b, c, arg)}"


def _fmt_port(a: int, b: int, c: int, arg: int) -> str:
    direction = _DIRECTIONS[b] if b < 2 else f"?{b}"
    sync = " sync" if c & 0x80 else ""
    lane = " lane=1" if c & 0x40 else ""
    return f"port={a} {direction} {_name(_ROLE_NAMES, c & 0x3F)}{lane}{sync} tile={arg}"


def _fmt_conv(a: int, b: int, c: int, arg: int) -> str:
    mode = _MODES[b] if b < 2 else f"?{b}"
    sh, sw, dh, dw = (arg >> 12) & 0xF, (arg >> 8) & 0xF, (arg >> 4) & 0xF, arg & 0xF
    return f"tile={a} mode={mode} k={c >> 4}x{c & 0xF} stride={sh}x{sw} dil={dh}x{dw}"


def _fmt_link(a: int, b: int, c: int, arg: int) -> str:
    to = f"tile:{(arg >> 16) & 0x7FFF}" if arg >> 31 else "port"
    return f"tile={a} psum={_tile_ref(b, c, _PSUM_SOURCES)} to={to} delay={arg & 0xFFFF}"


def _fmt_shift(a: int, b: int, c: int, arg: int) -> str:
    act = f"tile:{c - 1}" if c else "none"
    return f"tile={a} shift={_s(b, 8)} act={act} bias={_s(arg, 16)}"


def _fmt_seg(a: int, b: int, c: int, arg: int) -> str:
    threshold = "-" if b == 0 else str(_s(_hi(arg), 16))
    return f"tile={a} seg={b} threshold={threshold} offset={_s(_lo(arg), 16)}"


_FORMATTERS = {
    "PASS": lambda a, b, c, arg: f"index={arg} kind={_name(_KIND_NAMES, a)}",
    "PORT": _fmt_port,
    "PORT_ADDR": lambda a, b, c, arg: f"address={arg}",
    "PORT_MAP": lambda a, b, c, arg: f"map={_hi(arg)}x{_lo(arg)}",
    "PORT_WIN": lambda a, b, c, arg: f"window={_hi(arg)}x{_lo(arg)}",
    "PORT_ORG": lambda a, b, c, arg: f"r0={_s(_hi(arg), 16)} c0={_s(_lo(arg), 16)}",
    "PORT_PAD": lambda a, b, c, arg: f"pads={a},{b},{c},{_hi(arg)} value={_s(_lo(arg), 16)}",
    "PORT_STEP": lambda a, b, c, arg: f"step={a}x{b} words={arg}",
    "ROUTE": lambda a, b, c, arg: f"stream={arg} {a}->{b}" + (" tap" if c == 1 else f" c={c}" if c else ""),
    "CONV": _fmt_conv,
    "CONV_LINK": _fmt_link,
    "CONV_SHIFT": _fmt_shift,
    "CONV_W": lambda a, b, c, arg: (
        f"tile={a} {'w1' if b >= 128 else 'w'}[{b & 0x7F}]={_s(_hi(arg), 16)} "
        f"{'w1' if b >= 128 else 'w'}[{(b & 0x7F) + 1}]={_s(_lo(arg), 16)}"
    ),
    "CONV_PACK": lambda a, b, c, arg: f"tile={a} bias1={_s(arg, 16)}",
    "CONV_ACC": lambda a, b, c, arg: f"tile={a} words={arg}",
    "POOL": lambda a, b, c, arg: (
        f"tile={a} mode={_MODES[b] if b < 2 else f'?{b}'} size={c} shift={_s((arg >> 16) & 0xFF, 8)} "
        f"bias={_s(arg, 16)} out_shift={_s(arg >> 24, 8)}"
    ),
    "POOL_W": lambda a, b, c, arg: f"tile={a} weight={_s(arg, 16)}",
    "POOL_MAP": lambda a, b, c, arg: f"tile={a} map={_hi(arg)}x{_lo(arg)}",
    "MAP": lambda a, b, c, arg: f"tile={a} segments={b} shift={_s(arg, 32)}",
    "MAP_SEG": _fmt_seg,
    "MAP_SLOPE": lambda a, b, c, arg: f"tile={a} seg={b} slope={_s(arg, 32)}",
    "ALU": lambda a, b, c, arg: (
        f"tile={a} op={_name(_ALU_NAMES, b)} shift_a={_s(_hi(arg), 16)} shift_b={_s(_lo(arg), 16)} "
        f"shift_out={_s(c, 8)}"
    ),
    "RATE": lambda a, b, c, arg: f"P/Q={_hi(arg)}/{_lo(arg)}",
    "GO": lambda a, b, c, arg: f"beats={arg}",
}


# ---------------------------------------------------------------------------------------------------
# decoding a pass
# ---------------------------------------------------------------------------------------------------
class _Words:
    """A cursor over the split words of one pass; errors name the word index."""

    def __init__(self, words: tuple[int, ...]):
        self.columns: tuple[list[int], ...] | None = None
        self.i = 0
        if words and set(map(type, words)) == {int}:
            try:
                arr = np.array(words, dtype=np.uint64)  # refuses negative and too large values
            except OverflowError:
                arr = None
            if arr is not None:
                ops = (arr >> np.uint64(56)).astype(np.int64)
                names = _NAME_TABLE[ops]
                if None in names:
                    i = int(np.flatnonzero(names == None)[0])  # noqa: E711 (object array)
                    raise ValueError(
                        f"configuration word {i} (0x{words[i]:016x}): unknown opcode 0x{ops[i]:02x}"
                    )
                a = ((arr >> np.uint64(48)) & np.uint64(0xFF)).astype(np.int64)
                b = ((arr >> np.uint64(40)) & np.uint64(0xFF)).astype(np.int64)
                c = ((arr >> np.uint64(32)) & np.uint64(0xFF)).astype(np.int64)
                arg = (arr & np.uint64(0xFFFFFFFF)).astype(np.int64)
                hi, lo = arg >> 16, arg & 0xFFFF  # the two signed halves of arg (weights come in pairs)
                self.names = names.tolist()
                self.columns = (
                    a.tolist(),
                    b.tolist(),
                    c.tolist(),
                    arg.tolist(),
                    (hi - ((hi >> 15) << 16)).tolist(),
                    (lo - ((lo >> 15) << 16)).tolist(),
                )
                self.fields = list(zip(self.names, *self.columns[:4], strict=True))
                return
        self.fields: list[tuple[str, int, int, int, int]] = []
        for i, w in enumerate(words):
            if type(w) is not int or not 0 <= w < _WORD_LIMIT:
                try:
                    w = _check_int(w)
                except ValueError as exc:
                    raise ValueError(f"configuration word {i}: {exc}") from None
            fields = split_word(w)
            if fields[0] is None:
                raise ValueError(f"configuration word {i} (0x{w:016x}): unknown opcode 0x{w >> 56:02x}")
            self.fields.append(fields)  # type: ignore[arg-type]

    def weights(self, tile: int) -> list[int] | None:
        """The weights of the run of well-formed CONV_W words of ``tile`` at the cursor, taken at once
        (None when the run has a malformed word: the caller then decodes word by word for the error)."""
        if self.columns is None:
            return None
        i = j = self.i
        names = self.names
        while j < len(names) and names[j] == "CONV_W":
            j += 1
        n = j - i
        a, b, c, _, hi, lo = self.columns
        if a[i:j] != [tile] * n or c[i:j] != [0] * n or b[i:j] != list(range(0, 2 * n, 2)):
            return None
        out = [0] * (2 * n)
        out[0::2] = hi[i:j]
        out[1::2] = lo[i:j]
        self.i = j
        return out

    def plain_stream(self) -> bool:
        """The next five words are PORT .. PORT_ORG with their reserved fields zero (the common case
        :func:`_stream` decodes without checking field by field)."""
        i = self.i
        if self.columns is None or tuple(self.names[i : i + 5]) != _STREAM_HEAD:
            return False
        a, b, c = self.columns[:3]
        return a[i + 1 : i + 5] == b[i + 1 : i + 5] == c[i + 1 : i + 5] == [0, 0, 0, 0]

    def error(self, message: str, i: int | None = None) -> ValueError:
        i = self.i if i is None else i
        name = self.fields[i][0] if i < len(self.fields) else "end"
        return ValueError(f"configuration word {i} ({name}): {message}")

    def peek(self) -> str | None:
        return self.fields[self.i][0] if self.i < len(self.fields) else None

    def take(self, name: str, after: str) -> tuple[int, int, int, int]:
        if self.i >= len(self.fields):
            raise ValueError(f"configuration word {self.i}: the pass ends where {name} should follow {after}")
        got, a, b, c, arg = self.fields[self.i]
        if got != name:
            raise self.error(f"expected {name} after {after}")
        self.i += 1
        return a, b, c, arg

    def reserved(self, **values: int) -> None:
        """The fields of the word just taken that must be zero."""
        bad = [f"{k}={v}" for k, v in values.items() if v]
        if bad:
            raise self.error(f"reserved field(s) not zero: {', '.join(bad)}", self.i - 1)


def _code(ws: _Words, table: dict[int, str] | tuple[str, ...], code: int, what: str) -> str:
    name = table.get(code) if isinstance(table, dict) else (table[code] if code < len(table) else None)
    if name is None:
        raise ws.error(f"unknown {what} code {code}", ws.i - 1)
    return name


def _stream(ws: _Words, number: int) -> DecodedStream:
    if ws.plain_stream():
        i = ws.i
        _, port, d, role_sync, tile = ws.fields[i]
        address, shape, win, org = ws.columns[3][i + 1 : i + 5]
        ws.i += 1
        direction = _code(ws, _DIRECTIONS, d, "direction")
        role = _code(ws, _ROLE_NAMES, role_sync & 0x3F, "stream role")
        ws.i += 4
    else:
        port, d, role_sync, tile = ws.take("PORT", "the previous group")
        direction = _code(ws, _DIRECTIONS, d, "direction")
        role = _code(ws, _ROLE_NAMES, role_sync & 0x3F, "stream role")
        a, b, c, address = ws.take("PORT_ADDR", "PORT")
        ws.reserved(a=a, b=b, c=c)
        a, b, c, shape = ws.take("PORT_MAP", "PORT_ADDR")
        ws.reserved(a=a, b=b, c=c)
        a, b, c, win = ws.take("PORT_WIN", "PORT_MAP")
        ws.reserved(a=a, b=b, c=c)
        a, b, c, org = ws.take("PORT_ORG", "PORT_WIN")
        ws.reserved(a=a, b=b, c=c)
    pads, pad_value = (0, 0, 0, 0), 0
    if ws.peek() == "PORT_PAD":
        top, left, bottom, arg = ws.take("PORT_PAD", "PORT_ORG")
        pads, pad_value = (top, left, bottom, _hi(arg)), _s(_lo(arg), 16)
    rs, cs, c, words = ws.take("PORT_STEP", "PORT_ORG or PORT_PAD")
    ws.reserved(c=c)
    route: list[int] = []
    taps: list[int] = []
    while ws.peek() == "ROUTE":
        a, b, c, arg = ws.take("ROUTE", "a stream")
        if c not in (0, 1) or (c and (direction != "read" or role != "data")):
            raise ws.error(
                f"ROUTE field c = {c}: only a read data stream may be taken at a tile (c = 1)", ws.i - 1
            )
        if c:
            taps.append(a)
        if arg != number:
            raise ws.error(f"route of stream {arg} inside the group of stream {number}", ws.i - 1)
        if route and a != route[-1]:
            raise ws.error(f"route hop {a}->{b} does not continue from tile {route[-1]}", ws.i - 1)
        route += [b] if route else [a, b]
    lane = (role_sync >> 6) & 1
    if lane and role == "data":
        raise ws.error(f"stream {number}: a data stream has no lane (PORT field c bit 6)")
    if not route:
        route = [tile]
    end = route[-1] if direction == "read" else route[0]
    if end != tile:
        raise ws.error(
            f"the route of stream {number} {'ends' if direction == 'read' else 'starts'} at tile "
            f"{end}, not at the stream's tile {tile}",
            ws.i - 1,
        )
    return DecodedStream(
        port=port,
        direction=direction,
        role=role,
        sync=bool(role_sync & 0x80),
        tile=tile,
        address=address,
        map_shape=(_hi(shape), _lo(shape)),
        rows=_hi(win),
        cols=_lo(win),
        r0=_s(_hi(org), 16),
        c0=_s(_lo(org), 16),
        pads=pads,
        pad_value=pad_value,
        step=(rs, cs),
        words=words,
        route=tuple(route),
        taps=tuple(taps),
        lane=lane,
    )


def _conv(ws: _Words) -> DecodedConv:
    tile, m, k, arg = ws.take("CONV", "the previous group")
    mode = _code(ws, _MODES, m, "convolver mode")
    if arg >> 16:
        raise ws.error(f"reserved bits of the stride/dilation argument not zero: 0x{arg:08x}", ws.i - 1)
    block = (k >> 4, k & 0xF)
    stride = ((arg >> 12) & 0xF, (arg >> 8) & 0xF)
    dilation = ((arg >> 4) & 0xF, arg & 0xF)
    t, src, src_tile, link = ws.take("CONV_LINK", "CONV")
    if t != tile:
        raise ws.error(f"tile {t} differs from the CONV word's tile {tile}", ws.i - 1)
    source = _code(ws, _PSUM_SOURCES, src, "partial-sum source")
    if source != "tile" and src_tile:
        raise ws.error(f"source tile {src_tile} given for psum source {source}", ws.i - 1)
    to_tile = (link >> 16) & 0x7FFF
    if not link >> 31 and to_tile:
        raise ws.error(f"destination tile {to_tile} given for an output to the port", ws.i - 1)
    t, shift, act, bias = ws.take("CONV_SHIFT", "CONV_LINK")
    if t != tile:
        raise ws.error(f"tile {t} differs from the CONV word's tile {tile}", ws.i - 1)
    if bias >> 24:
        raise ws.error(f"bias argument 0x{bias:08x}: reserved bits 24-31 not zero", ws.i - 1)
    out_shift = _s((bias >> 16) & 0xFF, 8)
    bias &= 0xFFFF
    packed, bias1 = False, 0
    if ws.peek() == "CONV_PACK":
        t, b, c, arg = ws.take("CONV_PACK", "CONV_SHIFT")
        ws.reserved(b=b, c=c)
        if t != tile or arg >> 16:
            raise ws.error(f"tile {t} or bias argument 0x{arg:08x} does not follow CONV_SHIFT", ws.i - 1)
        if mode != "mac":
            raise ws.error("a convolver in max mode cannot pack a second kernel", ws.i - 1)
        if act and act - 1 != tile:
            raise ws.error(
                f"a packed convolver's lanes go through its own tile's mappers, not tile {act - 1}'s",
                ws.i - 1,
            )
        packed, bias1 = True, _s(arg, 16)
    acc_words = 0
    if ws.peek() == "CONV_ACC":
        t, b, c, acc_words = ws.take("CONV_ACC", "CONV_SHIFT")
        ws.reserved(b=b, c=c)
        if t != tile or not 0 < acc_words < 1 << 16:
            raise ws.error(f"tile {t} or words {acc_words} do not fit the convolver on tile {tile}", ws.i - 1)
        if act or link >> 31 or to_tile or out_shift:
            raise ws.error(
                "a convolver writing its accumulation buffer has raw outputs: no mapper, output shift or "
                "destination (CONV_LINK output 0, CONV_SHIFT act 0 and out_shift 0)",
                ws.i - 1,
            )
    n = block[0] * block[1] if mode == "mac" else 0
    weights = _kernel_words(ws, tile, 0, n, mode, block, packed)
    kernel1 = _kernel_words(ws, tile, 128, n, mode, block, packed) if packed else []
    return DecodedConv(
        tile=tile,
        mode=mode,
        block=block,
        stride=stride,
        dilation=dilation,
        kernel=tuple(weights[:n]),
        shift=_s(shift, 8),
        bias=_s(bias, 16),
        psum_from=f"tile:{src_tile}" if source == "tile" else source,
        to="acc" if acc_words else f"tile:{to_tile}" if link >> 31 else "port",
        act_tile=act - 1,
        delay=link & 0xFFFF,
        out_shift=out_shift,
        packed=packed,
        kernel1=tuple(kernel1[:n]),
        bias1=bias1,
        acc_words=acc_words,
    )


def _kernel_words(
    ws: _Words, tile: int, base: int, n: int, mode: str, block: tuple[int, int], packed: bool
) -> list[int]:
    """The ``n`` weights of the run of CONV_W words of ``tile`` at the cursor whose indexes start at
    ``base`` (0: the kernel; 128: a packed convolver's second kernel, whose words come after the
    first kernel's: of a packed convolver, the first kernel's words are those below 128)."""
    weights = (ws.weights(tile) or []) if base == 0 else []
    while ws.peek() == "CONV_W" and (base or not packed or ws.fields[ws.i][2] < 128):
        t, index, c, arg = ws.take("CONV_W", "CONV_SHIFT")
        ws.reserved(c=c)
        if t != tile:
            raise ws.error(f"tile {t} differs from the CONV word's tile {tile}", ws.i - 1)
        if index != base + len(weights):
            raise ws.error(f"weight index {index}, expected {base + len(weights)}", ws.i - 1)
        weights += [_s(_hi(arg), 16), _s(_lo(arg), 16)]
    which = "second kernel" if base else "weights"
    if len(weights) != n + (n % 2):
        raise ws.error(
            f"{len(weights)} {which} for a {mode} convolver of block {block[0]}x{block[1]} "
            f"(expected {n + n % 2})"
        )
    if n % 2 and weights[-1]:
        raise ws.error("the padding weight after an odd kernel is not zero", ws.i - 1)
    return weights


def _pool(ws: _Words) -> DecodedPool:
    tile, m, size, arg = ws.take("POOL", "the previous group")
    mode = _code(ws, _MODES, m, "pooling mode")
    if not 2 <= size < 16:
        raise ws.error(f"pooling window size {size} is not in 2..15", ws.i - 1)
    t, b, c, weight = ws.take("POOL_W", "POOL")
    ws.reserved(b=b, c=c)
    if t != tile or weight >> 16:
        raise ws.error(f"tile {t} or weight argument 0x{weight:08x} does not follow POOL", ws.i - 1)
    t, b, c, shape = ws.take("POOL_MAP", "POOL_W")
    ws.reserved(b=b, c=c)
    if t != tile:
        raise ws.error(f"tile {t} differs from the POOL word's tile {tile}", ws.i - 1)
    return DecodedPool(
        tile=tile,
        mode=mode,
        size=size,
        rows=_hi(shape),
        cols=_lo(shape),
        weight=_s(weight, 16),
        shift=_s((arg >> 16) & 0xFF, 8),
        bias=_s(arg, 16),
        out_shift=_s(arg >> 24, 8),
    )


def _map(ws: _Words) -> DecodedMap:
    tile, n, c, shift = ws.take("MAP", "the previous group")
    ws.reserved(c=c)
    thresholds, slopes, offsets = [], [], []
    for seg in range(n):
        t, s, c, arg = ws.take("MAP_SEG", "MAP" if seg == 0 else "MAP_SLOPE")
        ws.reserved(c=c)
        if (t, s) != (tile, seg):
            raise ws.error(f"tile {t} segment {s}, expected tile {tile} segment {seg}", ws.i - 1)
        if seg == 0:
            if _hi(arg):
                raise ws.error("the unused threshold of segment 0 is not zero", ws.i - 1)
        else:
            thresholds.append(_s(_hi(arg), 16))
        offsets.append(_s(_lo(arg), 16))
        t, s, c, arg = ws.take("MAP_SLOPE", "MAP_SEG")
        ws.reserved(c=c)
        if (t, s) != (tile, seg):
            raise ws.error(f"tile {t} segment {s}, expected tile {tile} segment {seg}", ws.i - 1)
        slopes.append(_s(arg, 32))
    return DecodedMap(tile, tuple(thresholds), tuple(slopes), tuple(offsets), _s(shift, 32))


def _alu(ws: _Words) -> DecodedAlu:
    tile, op, shift_out, arg = ws.take("ALU", "the previous group")
    name = _code(ws, _ALU_NAMES, op, "ALU op")
    return DecodedAlu(tile, name, _s(_hi(arg), 16), _s(_lo(arg), 16), _s(shift_out, 8))


def decode_pass(words: Iterable[int]) -> DecodedPass:
    """Decode the configuration words of one pass (the inverse of ``encode_pass``).

    Raises ``ValueError`` naming the word index on an unknown opcode or a malformed sequence.
    """
    ws = _Words(tuple(words))
    if not ws.fields:
        raise ValueError("no configuration words: a pass starts with PASS and ends with GO")
    if ws.fields[0][0] != "PASS":
        raise ws.error("a pass must start with PASS", 0)
    if ws.fields[-1][0] != "GO":
        raise ws.error("a pass must end with GO", len(ws.fields) - 1)
    kind_code, b, c, index = ws.take("PASS", "nothing")
    ws.reserved(b=b, c=c)
    kind = _code(ws, _KIND_NAMES, kind_code, "pass kind")
    streams: list[DecodedStream] = []
    convs: list[DecodedConv] = []
    maps: list[DecodedMap] = []
    alus: list[DecodedAlu] = []
    pools: list[DecodedPool] = []
    rate: tuple[int, int] | None = None
    while True:
        name = ws.peek()
        if name == "PORT":
            streams.append(_stream(ws, len(streams)))
        elif name == "CONV":
            convs.append(_conv(ws))
        elif name == "POOL":
            pools.append(_pool(ws))
        elif name == "MAP":
            maps.append(_map(ws))
        elif name == "ALU":
            alus.append(_alu(ws))
        elif name == "RATE":
            if rate is not None:
                raise ws.error("a second RATE")
            a, b, c, arg = ws.take("RATE", "")
            ws.reserved(a=a, b=b, c=c)
            rate = (_hi(arg), _lo(arg))
        elif name == "GO":
            if ws.i != len(ws.fields) - 1:
                raise ws.error("GO before the end of the pass")
            if rate is None:
                raise ws.error("no RATE word before GO")
            a, b, c, beats = ws.take("GO", "")
            ws.reserved(a=a, b=b, c=c)
            return DecodedPass(
                index, kind, tuple(streams), tuple(convs), tuple(maps), tuple(alus), rate, beats, tuple(pools)
            )
        else:
            raise ws.error("does not start a group (PORT, CONV, POOL, MAP, ALU, RATE or GO)")


def _tile_number(ref: str) -> int | None:
    return int(ref.split(":")[1]) if ref.startswith("tile:") else None


def conv_order(p: DecodedPass) -> list[tuple[DecodedConv, int | None, int | None]]:
    """The pass's convolvers in an order in which every one's inputs exist, as
    ``(unit, feeder, psum_tile)``: ``feeder`` is the tile whose output is the unit's input (a
    pooling convolver after a chain; None: the unit reads its tile's next data stream),
    ``psum_tile`` the tile whose output is its partial sum (None: the bias or the port).

    A unit whose ``to`` names another convolver feeds that one's partial sum when that one takes
    it (``psum_from``), else its input. Raises ``ValueError`` when the links allow no order."""
    convs = {u.tile: u for u in p.convs}
    feeders: dict[int, int] = {}
    for u in p.convs:
        dst = _tile_number(u.to)
        if dst is not None and dst in convs and convs[dst].psum_from != f"tile:{u.tile}":
            feeders[dst] = u.tile
    order: list[tuple[DecodedConv, int | None, int | None]] = []
    done: set[int] = set()
    pending = list(p.convs)
    while pending:
        before = len(pending)
        for u in list(pending):
            feeder, src = feeders.get(u.tile), _tile_number(u.psum_from)
            if (src is None or src in done) and (feeder is None or feeder in done):
                order.append((u, feeder, src))
                done.add(u.tile)
                pending.remove(u)
        if len(pending) == before:
            raise ValueError(f"pass {p.index}: a convolver waits for data it never gets")
    return order
