"""The program: what the compiler emits and the cycle model and the RTL execute.

A :class:`Program` is a memory map (every buffer's word address) and a sequence of steps: grid
:class:`Pass` es and :class:`HostStep` s. A pass is a configuration (the units below, encoded
into 64-bit configuration words by ``compiler/encode.py``) followed by streaming.

Grid geometry: tiles are addressed ``(row, col)``; tile number ``row * cols + col``. Global I/O
port ``p`` attaches to the router of perimeter tile ``perimeter[p % len(perimeter)]``, the
perimeter walked clockwise from ``(0, 0)``. Inside a pass every directed link between neighbouring
routers carries at most one stream, and every port is either read or written (or idle).

A :class:`Region` is a 2-D window of a buffer in *padded* coordinates: the DMA streams ``rows x
cols`` words, row by row; position ``(r, c)`` reads ``map[r0 + r - pad_top, c0 + c - pad_left]``
of map ``channel`` when that lies inside the map, and ``pad_value`` otherwise. Writes use the
same description without a border, with ``step`` for strided (phase) writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

__all__ = [
    "Region",
    "Stream",
    "ConvUnit",
    "MapUnit",
    "AluUnit",
    "PoolUnit",
    "Pass",
    "LazyPass",
    "HostStep",
    "BufferInfo",
    "Program",
    "PROGRAM_VERSION",
]

#: Version of the program format (words: ``compiler/encode.py``, file: ``compiler/binary.py``); bump on any change.
PROGRAM_VERSION = 1


@dataclass(frozen=True, slots=True)
class Region:
    """A 2-D window of one map of a buffer, in the coordinates of the map padded by ``pads``."""

    buffer: str
    channel: int
    r0: int
    c0: int
    rows: int
    cols: int
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    pad_value: int = 0
    step: tuple[int, int] = (1, 1)  # write only: rows/cols advance by this in the map

    @property
    def words(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True, slots=True)
class Stream:
    """A DMA stream through global port ``port``: ``read`` brings ``region`` into the grid and
    delivers it to ``tile``; ``write`` takes the stream leaving ``tile`` to ``region``.

    ``role``: ``data`` (convolver/mapper/ALU input), ``psum`` (a partial sum read back), ``out``
    (a result written). ``route``: the tiles the stream crosses, from the port's tile to ``tile``
    (reads) or from ``tile`` to the port's tile (writes). ``sync``: a read that delivers one word
    per *output* position of the unit it feeds (partial sums) rather than one per input word.
    ``lane``: 1 for the partial sums read for, or the output written from, lane 1 of a packed
    convolver (``ConvUnit.out_channel1``).
    ``taps``: tiles on the route before ``tile`` that take the read data stream too (as their next
    data stream, in route order, after ``tile`` has its): one memory read feeds several tiles.
    """

    port: int
    direction: str  # "read" | "write"
    role: str  # "data" | "psum" | "out"
    region: Region
    tile: int
    route: tuple[int, ...]
    words: int
    sync: bool = False
    taps: tuple[int, ...] = ()
    lane: int = 0  # psum read / out write of a packed convolver's lane 1


@dataclass(frozen=True, slots=True)
class ConvUnit:
    """One convolver's work in a pass: one term of a chain (or a fused pooling stage).

    ``psum_from``: ``"bias"`` (chain start; ``bias`` word), ``"port"`` (a partial sum read stream),
    ``"tile:N"`` (the output of the convolver on tile N) or ``"acc"`` (the tile's accumulation
    buffer, as an earlier pass left it; targets with ``tile.acc_words``). ``to``: ``"port"``
    (written), ``"tile:N"``, or ``"acc"``: the raw outputs are stored in the tile's accumulation
    buffer (``acc_words`` of them, the unit's windows) and nothing leaves the tile. ``act_tile``: the tile whose mapper the output passes through first (or -1).
    ``delay``: FIFO words inserted on the data input to line it up with the partial sum.
    ``out_shift``: at the end of a chain written without a mapper, the partial sum is rounded into the
    output format by this many fraction bits (then saturated).

    A *packed* unit (``out_channel1 >= 0``, targets with ``tile.lanes = 2``) applies a second kernel
    (``kernel1``, ``bias1``) of output map ``out_channel1`` to the same input window: lane 1, with
    its own partial sums (from the same kind of source as lane 0's) and its own output, through a
    mapper and pooling unit of its own configured as lane 0's (the pass's MapUnit and PoolUnit of
    the tile, made for ``out_channel``). Its ``macs`` count both lanes.
    """

    tile: int
    layer: str
    out_channel: int
    term: int  # index of the term in the chain; -1 for a fused pooling stage
    mode: str
    in_channel: int
    offset: tuple[int, int]
    block: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    kernel: tuple[int, ...]  # weight words, row-major (empty in max mode)
    shift: int  # fraction bits dropped when rounding the window sum into the partial sum
    bias: int
    psum_from: str
    to: str
    act_tile: int = -1
    delay: int = 0
    macs: int = 0
    out_shift: int = 0  # chain end without a mapper: fraction bits dropped into the output format
    out_channel1: int = -1  # packed (tile.lanes = 2): lane 1's output map; -1 when not packed
    kernel1: tuple[int, ...] = ()  # lane 1's weight words, row-major
    bias1: int = 0  # lane 1's bias (chain start)
    acc_words: int = 0  # to == "acc": the outputs stored in the accumulation buffer (its windows)


@dataclass(frozen=True, slots=True)
class MapUnit:
    """A mapper configuration: ``thresholds``, ``slopes``, ``offsets`` words, ``slope_frac``,
    ``shift`` (= in frac + slope frac - out frac)."""

    tile: int
    layer: str
    channel: int
    thresholds: tuple[int, ...]
    slopes: tuple[int, ...]
    offsets: tuple[int, ...]
    shift: int


@dataclass(frozen=True, slots=True)
class AluUnit:
    """An ALU: ``op`` on two aligned streams; ``shift_a``/``shift_b`` align them, ``shift_out``
    rounds the result into the output format."""

    tile: int
    layer: str
    channel: int
    op: str
    shift_a: int
    shift_b: int
    shift_out: int


@dataclass(frozen=True, slots=True)
class PoolUnit:
    """A tile's pooling unit: non-overlapping ``size x size`` windows (stride ``size``) of the tile's
    output, a ``rows x cols`` map, into a ``rows // size x cols // size`` one.

    ``mode`` ``max``: the window's maximum; ``mac`` (average pooling): ``sat(bias + round_shift(weight
    x window sum, shift))``, the bits of a convolver whose weights all equal ``weight``. Then
    ``sat(round_shift(v, out_shift))`` into the output format.
    """

    tile: int
    layer: str
    channel: int
    mode: str  # mac | max
    size: int
    rows: int
    cols: int
    weight: int
    shift: int
    bias: int
    out_shift: int


@dataclass(frozen=True, slots=True)
class Pass:
    """One grid pass: configuration, then streaming.

    ``estimate`` holds the compiler's analytical cycle estimate, broken down: ``config`` (the
    configuration cycles that show), ``hidden`` (those spent while the previous pass streamed),
    ``latency``, ``stream``, ``total``; ``rate`` is the beat rate (words per cycle per stream).
    """

    index: int
    kind: str  # conv | pool | map | eltwise | copy
    layers: tuple[str, ...]
    convs: tuple[ConvUnit, ...] = ()
    maps: tuple[MapUnit, ...] = ()
    alus: tuple[AluUnit, ...] = ()
    streams: tuple[Stream, ...] = ()
    links: tuple[tuple[int, int], ...] = ()  # directed router links in use
    routes: tuple[tuple[int, ...], ...] = ()  # on-grid unit-to-unit routes (chain links), tile paths
    config_words: tuple[int, ...] = ()
    rate: tuple[int, int] = (1, 1)
    beats: int = 0  # words each input stream carries
    macs: int = 0  # useful MACs of the network computed in this pass
    estimate: dict = field(default_factory=dict)
    pools: tuple[PoolUnit, ...] = ()


#: The fields of a :class:`LazyPass` that ``build()`` makes.
_BUILT = ("convs", "maps", "alus", "streams", "routes", "pools")
_WORDS = Pass.__dict__["config_words"]  # the slot holding a pass's configuration words


def _built(name: str) -> property:
    """A property over :class:`Pass`'s slot ``name`` that builds the pass's units when the slot is
    still empty; its setter fills the slot (``Pass.__init__``, ``dataclasses.replace``, unpickling)."""
    slot = Pass.__dict__[name]

    def get(self: LazyPass):
        try:
            return slot.__get__(self)
        except AttributeError:  # not built yet
            self._build_units()
            return slot.__get__(self)

    return property(get, slot.__set__, doc=f"``Pass.{name}``, built when first read.")


def _config_words(self: LazyPass) -> tuple[int, ...]:
    """``LazyPass.config_words``: the tuple, made from the array when first read."""
    try:
        return _WORDS.__get__(self)
    except AttributeError:  # still only the array
        words = tuple(self._words.tolist())
        _WORDS.__set__(self, words)
        return words


class LazyPass(Pass):
    """A :class:`Pass` made in bulk, whose big fields are made when first read: its units, streams
    and chain routes (``convs``, ``maps``, ``alus``, ``streams``, ``routes``, ``pools``) by
    ``build(index, source)``, which returns the same pass as a plain :class:`Pass`, and the tuple of
    its ``config_words`` from the int64 numpy array ``words``. The other fields are set at once.

    The scheduler emits these for the bulk of a large network's passes: the program file (see
    :meth:`packed_words`), the cycle model (which reads the file's words) and the compile's
    estimate need none of the big fields, and making millions of frozen units and word objects
    nobody reads cost most of a large compile. It equals the plain pass it stands for.
    """

    __slots__ = ("_build", "_source", "_words")

    @staticmethod
    def of(
        build: Callable[[int, object], Pass],
        source: object,
        words,
        index: int,
        kind: str,
        layers: tuple[str, ...],
        links: tuple[tuple[int, int], ...],
        rate: tuple[int, int],
        beats: int,
        macs: int,
        estimate: dict,
    ) -> LazyPass:
        """A lazy pass; ``build(index, source)`` makes it as a plain pass (one ``build`` serves many
        passes); ``words``: its configuration words, a 1-D int64 numpy array (non-negative)."""
        # the slots are set through their descriptors, as the frozen dataclass's object.__setattr__
        # would, in half the time (a large network has hundreds of thousands of these)
        p = _new(LazyPass)
        _set_build(p, build)
        _set_source(p, source)
        _set_words(p, words)
        _set_index(p, index)
        _set_kind(p, kind)
        _set_layers(p, layers)
        _set_links(p, links)
        _set_rate(p, rate)
        _set_beats(p, beats)
        _set_macs(p, macs)
        _set_estimate(p, estimate)
        return p

    def _build_units(self) -> None:
        built = self._build(self.index, self._source)
        for name in _BUILT:
            object.__setattr__(self, name, getattr(built, name))
        object.__setattr__(self, "_build", None)
        object.__setattr__(self, "_source", None)

    def packed_words(self) -> bytes | None:
        """The configuration words as little-endian unsigned 64-bit integers, straight from the
        array (the program writer's fast path); None once ``config_words`` is a tuple (read or set)."""
        try:
            _WORDS.__get__(self)
            return None
        except AttributeError:
            return self._words.astype("<u8").tobytes()

    def __eq__(self, other: object) -> bool:
        # the dataclass's __eq__ wants the same class; a lazy pass equals the plain pass it stands for
        if not isinstance(other, Pass):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in fields(Pass))

    __hash__ = Pass.__hash__


for _name in _BUILT:
    setattr(LazyPass, _name, _built(_name))
del _name
_new = object.__new__
_set_build, _set_source, _set_words = (
    LazyPass.__dict__[name].__set__ for name in ("_build", "_source", "_words")
)
_set_index, _set_kind, _set_layers, _set_links, _set_rate, _set_beats, _set_macs, _set_estimate = (
    Pass.__dict__[name].__set__
    for name in ("index", "kind", "layers", "links", "rate", "beats", "macs", "estimate")
)
LazyPass.config_words = property(
    _config_words, _WORDS.__set__, doc="``Pass.config_words``, made when first read."
)


@dataclass(frozen=True, slots=True)
class HostStep:
    """An op run on the host between passes: reads ``srcs`` buffers, writes ``dst``."""

    index: int
    layer: str
    op: str
    srcs: tuple[str, ...]
    dst: str
    ops: int = 0


@dataclass(frozen=True, slots=True)
class BufferInfo:
    """Where a buffer lives: word ``address`` of its first word, ``shape``, format fraction bits."""

    name: str
    address: int
    shape: tuple[int, int, int]
    frac: int
    bits: int
    kind: str  # input | output | temp | view
    root: str = ""  # the buffer owning the memory (views and slices); "" = itself


@dataclass(frozen=True)
class Program:
    """A compiled network for one target."""

    version: int
    target: str
    model: str
    policy: str
    buffers: tuple[BufferInfo, ...]
    inputs: tuple[tuple[str, str, tuple[int, ...]], ...]
    outputs: tuple[tuple[str, str, tuple[int, ...]], ...]
    steps: tuple[Pass | HostStep, ...]
    memory_words: int = 0

    @property
    def passes(self) -> tuple[Pass, ...]:
        return tuple(s for s in self.steps if isinstance(s, Pass))

    def buffer(self, name: str) -> BufferInfo:
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(name)
