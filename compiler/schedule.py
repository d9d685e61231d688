"""The scheduler: a lowered graph -> a :class:`~nfc.compiler.program.Program` of passes.

Work of a layer is cut into passes, each pass is placed on the tile grid (convolvers in the grid's
snake order), its streams get ports and routes (shortest free paths on the router mesh, at most one
stream per directed link, networkx), FIFO delays line partial sums up with data, the memory
bandwidth sets the beat rate, and buffers get addresses (dead buffers' memory is reused).

Two policies:

``luaflow`` (NeuFlow's published strategy, the baseline)
    one output map per pass, built from up to ``min(convolvers, read ports - 1)`` of its terms; a
    longer chain goes over several passes with the partial sum written to memory and read back;
    the mapper runs at the end of the chain; pooling runs in separate passes, one map per pass.
``nfc`` (default)
    as many chains per pass as the write ports allow, every convolver used; pooling that follows
    a convolution is fused into its final pass (a second convolver in pooling mode reads the
    mapper's output on the grid, so the un-pooled map never goes to memory); pooling and
    elementwise layers run several maps per pass.

Feature maps wider than a convolver's line buffers are cut into column strips (each strip its own
passes, the report counts them); a kernel too wide even for one output column is an error naming
the layer and the limit.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import NamedTuple

import networkx as nx
import numpy as np

from nfc.arch import ArchConfig
from nfc.compiler.analysis import node_ops
from nfc.compiler.encode import (
    conv_head,
    conv_head_words,
    map_words,
    origin_word,
    pass_word,
    pass_words,
    stream_words,
    tail_words,
    weight_bodies,
    weight_head,
    word,
)
from nfc.compiler.grid import ConvLayer, CopyLayer, EltwiseLayer, HostLayer, Lowered, MapLayer
from nfc.compiler.program import (
    PROGRAM_VERSION,
    AluUnit,
    BufferInfo,
    ConvUnit,
    HostStep,
    LazyPass,
    MapUnit,
    Pass,
    PoolUnit,
    Program,
    Region,
    Stream,
)
from nfc.compiler.timing import ALU_LATENCY, CONV_LATENCY, MAP_LATENCY, POOL_LATENCY, WRITE_LATENCY
from nfc.errors import NfcError
from nfc.numerics import PWL, alu_shifts

__all__ = ["schedule", "SchedulingError", "POLICIES", "Geometry", "pool_unit_fits"]

POLICIES = ("nfc", "luaflow")
#: Largest denominator of a beat rate P/Q.
RATE_DENOMINATOR = 64


class SchedulingError(NfcError):
    """The program cannot be scheduled on the target; the message names the layer and the limit."""


# ---------------------------------------------------------------------------------------------------
# grid geometry and routing
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Geometry:
    rows: int
    cols: int
    snake: tuple[int, ...]  # tiles in chain order
    port_tile: tuple[int, ...]
    mesh: nx.DiGraph

    @classmethod
    def of(cls, arch: ArchConfig) -> Geometry:
        rows, cols = arch.grid.rows, arch.grid.cols
        snake = []
        for r in range(rows):
            order = range(cols) if r % 2 == 0 else range(cols - 1, -1, -1)
            snake += [r * cols + c for c in order]
        if rows == 1 or cols == 1:
            perimeter = list(range(rows * cols))
        else:
            perimeter = [c for c in range(cols)]
            perimeter += [r * cols + cols - 1 for r in range(1, rows)]
            perimeter += [(rows - 1) * cols + c for c in range(cols - 2, -1, -1)]
            perimeter += [r * cols for r in range(rows - 2, 0, -1)]
        port_tile = tuple(perimeter[p % len(perimeter)] for p in range(arch.io.ports))
        mesh = nx.DiGraph()
        mesh.add_nodes_from(range(rows * cols))
        for r in range(rows):
            for c in range(cols):
                t = r * cols + c
                for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0)):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < rows and 0 <= cc < cols:
                        mesh.add_edge(t, rr * cols + cc)
        return cls(rows, cols, tuple(snake), port_tile, mesh)


class _Router:
    """Links and ports in use during one pass."""

    def __init__(self, geo: Geometry, arch: ArchConfig):
        self.geo = geo
        self.arch = arch
        self.used: set[tuple[int, int]] = set()
        self.ports: dict[int, str] = {}

    def path(self, a: int, b: int) -> tuple[int, ...] | None:
        if a == b:
            return (a,)
        free = nx.subgraph_view(self.geo.mesh, filter_edge=lambda u, v: (u, v) not in self.used)
        try:
            return tuple(nx.shortest_path(free, a, b))
        except nx.NetworkXNoPath:
            return None

    def take(self, path: tuple[int, ...]) -> None:
        for u, v in zip(path, path[1:], strict=False):
            self.used.add((u, v))

    def port(self, direction: str, tile: int) -> tuple[int, tuple[int, ...]] | None:
        """A free port for a stream to (read) or from (write) ``tile``, and the route; prefers short routes."""
        used_dir = sum(1 for d in self.ports.values() if d == direction)
        limit = self.arch.io.max_read_ports if direction == "read" else self.arch.io.max_write_ports
        if used_dir >= limit:
            return None
        best = None
        for p, pt in enumerate(self.geo.port_tile):
            if p in self.ports:
                continue
            route = self.path(pt, tile) if direction == "read" else self.path(tile, pt)
            if route is not None and (best is None or len(route) < len(best[1])):
                best = (p, route)
        if best is not None:
            self.ports[best[0]] = direction
            self.take(best[1])
        return best


# ---------------------------------------------------------------------------------------------------
# work items
# ---------------------------------------------------------------------------------------------------
class _Segment(NamedTuple):
    """Terms ``slots`` of the chain of output map ``o`` of ``layer``, in one pass, on strip ``strip``.
    (A named tuple: a large network has hundreds of thousands, and it makes them fastest.)"""

    layer: ConvLayer
    o: int
    slots: tuple[int, ...]
    psum_in: bool
    final: bool
    strip: tuple[int, int]  # output columns [x0, x1)
    pool: ConvLayer | None = None
    shared: bool = False  # its one term reads the previous segment's input stream (taken on the way)
    o1: int = -1  # packed (tile.lanes = 2): the output map of the second kernel, over the same terms
    # accumulation buffers (tile.acc_words): the chain's partial sums come from / go to the buffer of
    # the segment's one tile, `tile` (the same tile for every segment of the chain)
    acc_in: bool = False
    acc_out: bool = False
    tile: int = -1  # the tile the segment must run on (-1: the next free one)


#: Makes a :class:`_Segment` from a tuple of all its fields, without the named tuple's Python-level
#: ``__new__`` (for the planner's hot loop).
_new_segment = tuple.__new__
#: The fields after ``strip`` of a segment without fused pooling, sharing, packing or buffers.
_PLAIN_TAIL = (None, False, -1, False, False, -1)


def _same_input(prev: _Segment, layer: ConvLayer, o: int, slot: int, strip: tuple[int, int]) -> bool:
    """Whether a one-term chain (output ``o``, term ``slot``) reads exactly what ``prev`` reads."""
    if prev.layer is not layer or len(prev.slots) != 1 or prev.psum_in or prev.strip != strip:
        return False
    a, b = (prev.o, prev.slots[0]), (o, slot)
    return layer.channels[a] == layer.channels[b] and np.array_equal(layer.offsets[a], layer.offsets[b])


@dataclass
class _Ctx:
    arch: ArchConfig
    low: Lowered
    geo: Geometry
    policy: str
    psum_buffers: dict[str, str] = field(default_factory=dict)
    addresses: dict[tuple[str, int], int] = field(default_factory=dict)
    layouts: dict[tuple, tuple[list, tuple]] = field(default_factory=dict)
    fused: dict[str, ConvLayer] = field(default_factory=dict)  # conv layer -> pooling fused into it
    pool_units: set[str] = field(default_factory=set)  # conv layers whose fused pooling uses the pooling unit
    pooled: dict[str, str] = field(default_factory=dict)  # such a layer -> buffer of the pooled maps before
    # the pooling's own mapper (which runs in map passes of its own)
    map_shapes: dict[str, tuple[int, int]] = field(default_factory=dict)
    extra_buffers: dict[str, tuple[tuple[int, int, int], int, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    viewed: dict[str, ConvLayer] = field(default_factory=dict)  # layer -> the layer reading its @view
    # Per-layer memo tables (emptied by begin_layer). The passes of one layer repeat the same
    # regions and streams many times over (ResNet: every output map reads the same input maps, in
    # the same pass positions), so each Region and Stream is built once and shared by the passes
    # (they are frozen), and so are a stream's configuration words; a conv layer's per-term numbers
    # are taken out of its numpy arrays once (_Terms).
    regions: dict[tuple, Region] = field(default_factory=dict)
    streams: dict[tuple, Stream] = field(default_factory=dict)
    stream_words: dict[tuple[int, int], tuple[Stream, list[int]]] = field(default_factory=dict)
    terms: dict[str, _Terms] = field(default_factory=dict)
    rates: dict[tuple[int, int, int], tuple[int, int]] = field(default_factory=dict)  # see rate()

    def begin_layer(self) -> None:
        """Forget the previous layer's memo tables (they only ever hit within a layer)."""
        self.regions.clear()
        self.streams.clear()
        self.stream_words.clear()
        self.terms.clear()

    def region(self, *fields) -> Region:
        """``Region(*fields)``, one shared object per distinct region of the current layer."""
        r = self.regions.get(fields)
        if r is None:
            r = self.regions[fields] = Region(*fields)
        return r

    def words_of_stream(self, i: int, s: Stream) -> list[int]:
        """The configuration words of ``s`` as stream ``i`` of its pass (memoised per stream
        object: addresses and map shapes are fixed while passes are built)."""
        hit = self.stream_words.get((i, id(s)))
        if hit is not None and hit[0] is s:
            return hit[1]
        r = s.region
        words = stream_words(i, s, self.addresses[(r.buffer, r.channel)], self.map_shapes[r.buffer])
        self.stream_words[(i, id(s))] = (s, words)
        return words

    def rate(self, beats: int, reads: list[int], writes: list[int]) -> tuple[int, int]:
        """The beat rate of a pass (:func:`_rate_of`; ``reads``/``writes``: the words of each stream),
        memoised here: ``_rate_of``'s own cache hashes the whole ArchConfig on every call."""
        key = (beats, sum(reads), sum(writes))
        rate = self.rates.get(key)
        if rate is None:
            rate = self.rates[key] = _rate_of(self.arch, *key)
        return rate

    def terms_of(self, layer: ConvLayer) -> _Terms:
        t = self.terms.get(layer.name)
        if t is None:
            t = self.terms[layer.name] = _Terms(layer)
        return t


class _Terms:
    """A conv layer's per-term numbers as Python values, taken out of its numpy arrays once: reading
    numpy arrays element by element cost more than the rest of building a pass.

    ``channels[o][t]``, ``offsets[o][t]`` (a pair), ``bias[o]``, and in ``mac`` mode ``kernels[o][t]``
    (the flattened kernel, a list), ``nonzero[o][t]`` (its non-zero weights) and ``bodies[o][t]``
    (its CONV_W words without the tile's head, see ``encode.weight_bodies``; ``None`` when some
    weight of the layer does not fit a word, and then the kernels are encoded one by one).
    ``offset_free``: every term's offset is (0, 0). The ``*_array`` attributes are the same as
    int64 arrays (``None`` where the list is), for the pass templates (:class:`_ConvTemplate`); the
    lists of kernels, non-zero counts and bodies are made per output map when first read
    (:class:`_Rows`).
    """

    def __init__(self, layer: ConvLayer):
        self.channel_array = _ints(layer.channels)
        self.channels = self.channel_array.tolist()
        self.bias = _ints(layer.bias).tolist()
        offsets = self.offset_array = _ints(layer.offsets)
        self.offset_free = not offsets.any()
        if not self.offset_free:
            self.offsets = [[(a, b) for a, b in row] for row in offsets.tolist()]
        else:  # one shared (0, 0) (most layers: kernels that fit one block)
            zero = (0, 0)
            self.offsets = [[zero] * offsets.shape[1]] * offsets.shape[0]
        self.kernels = self.nonzero = self.bodies = None
        self.nonzero_array = self.body_array = None
        if layer.mode == "mac":
            k = layer.kernels
            flat = k.reshape(k.shape[0], k.shape[1], math.prod(k.shape[2:]))
            self.kernels = _Rows(flat)
            self.nonzero_array = np.count_nonzero(flat, axis=2).astype(np.int64)
            self.nonzero = _Rows(self.nonzero_array)
            if np.issubdtype(flat.dtype, np.integer):
                self.body_array = weight_bodies(flat)
                self.bodies = _Rows(self.body_array) if self.body_array is not None else None


class _Rows:
    """``array[o].tolist()`` for each ``o`` asked for, made once: the lists of a whole layer cost more
    than the passes built one by one read, most passes of a layer being made from templates."""

    __slots__ = ("array", "rows")

    def __init__(self, array: np.ndarray):
        self.array = array
        self.rows: dict[int, list] = {}

    def __getitem__(self, o: int) -> list:
        row = self.rows.get(o)
        if row is None:
            row = self.rows[o] = self.array[o].tolist()
        return row


def _ints(a: np.ndarray) -> np.ndarray:
    """``a`` as int64, whose ``tolist()`` gives what ``int()`` of each element gives."""
    return a if a.dtype == np.int64 else np.asarray(a).astype(np.int64)


def _slots(layer: ConvLayer, o: int) -> tuple[int, ...]:
    return tuple(np.flatnonzero(layer.channels[o] >= 0).tolist())


def _span(layer: ConvLayer) -> tuple[int, int]:
    (bh, bw), (dh, dw) = layer.block, layer.dilation
    return (bh - 1) * dh + 1, (bw - 1) * dw + 1


def _strips(layer: ConvLayer, arch: ArchConfig) -> list[tuple[int, int]]:
    """Output column ranges whose input windows fit the convolver's line buffers."""
    _, _, OW = layer.out_shape
    span_h, span_w = _span(layer)
    limit = arch.tile.line_buffer_words
    sw = layer.stride[1]
    if span_h == 1:
        return [(0, OW)]  # no line buffer in use
    # the K - 1 rows of line buffer hold span_h - 1 rows of the region: a dilated window's rows
    # are further apart, so its region must be narrower
    rows = arch.tile.convolver_size - 1
    row_limit = min(limit, rows * limit // (span_h - 1))
    if span_w > row_limit:
        if row_limit == limit:
            raise SchedulingError(
                f"layer {layer.name!r}: a window {span_w} words wide does not fit the convolver's line "
                f"buffers ({limit} words, tile.line_buffer_words)"
            )
        raise SchedulingError(
            f"layer {layer.name!r}: a window {span_w} words wide does not fit the convolver's line buffers: "
            f"its {span_h - 1} rows above the newest share {rows} x {limit} words "
            f"(convolver_size - 1 rows of tile.line_buffer_words), at most {row_limit} "
            f"word{'s' if row_limit != 1 else ''} each"
        )
    limit = row_limit
    width = (limit - span_w) // sw + 1
    return [(x, min(OW, x + width)) for x in range(0, OW, width)]


def pool_unit_fits(arch: ArchConfig, pool: ConvLayer) -> bool:
    """Whether the tiles' pooling units can do ``pool``: non-overlapping square windows (stride = size),
    maximum or a uniform kernel (average). A mapper after the pooling (``pool.act``, every map) runs
    in passes of its own over the pooled maps (the unit feeds the write port)."""
    (bh, bw), (sh, sw) = pool.block, pool.stride
    if arch.tile.poolers < 1 or not (bh == bw == sh == sw and 2 <= bh < 16):
        return False
    if pool.dilation != (1, 1) or pool.offsets.any() or any(pool.pads):
        return False
    if pool.act and any(a is None for a in pool.act):
        return False
    if pool.mode == "mac":
        k = pool.kernels[:, 0].reshape(pool.kernels.shape[0], -1)
        if not np.all(k == k[:, :1]):
            return False
    return True


def _fusable_pool(ctx: _Ctx, layer: ConvLayer, consumers: dict[str, list]) -> ConvLayer | None:
    if ctx.policy != "nfc":
        return None
    users = consumers.get(layer.dst, [])
    if len(users) != 1 or not isinstance(users[0], ConvLayer):
        return None
    pool = users[0]
    outputs = {b for _, b, _ in ctx.low.outputs}
    O = layer.out_shape[0]
    if (
        layer.dst in outputs
        or pool.kind not in ("maxpool", "avgpool")
        or pool.channels.shape != (O, 1)
        or not np.array_equal(pool.channels[:, 0], np.arange(O))
        or pool.offsets.any()
        or pool.view != layer.out_shape[1:]
        or any(pool.pads)
        or len(_strips(layer, ctx.arch)) != 1
        or len(_strips(pool, ctx.arch)) != 1
        or ctx.low.buffers[layer.dst].parent is not None
    ):
        return None
    if ctx.arch.convolvers < 2 and not pool_unit_fits(ctx.arch, pool):
        return None
    return pool


def _conv_segments(
    ctx: _Ctx, layer: ConvLayer, pool: ConvLayer | None, unit: bool = False, pack: bool = True
) -> list[list[_Segment]]:
    """Cut the layer's chains into segments and pack segments into passes. A fused ``pool`` takes a
    convolver of its own in the chain's final pass, or none when the pooling unit does it (``unit``)."""
    arch = ctx.arch
    n_conv = arch.convolvers
    reads, writes = arch.io.max_read_ports, arch.io.max_write_ports
    n_ports = arch.io.ports
    passes: list[list[_Segment]] = []
    O = layer.out_shape[0]
    chains = [_slots(layer, o) for o in range(O)]
    longest = max(map(len, chains))
    if n_ports < 2:
        raise SchedulingError(
            f"layer {layer.name!r}: a pass needs a read and a write port; the target has io.ports = {n_ports}"
        )
    if longest > min(n_conv, reads, n_ports - 1) and (reads < 2 or n_ports < 3):
        raise SchedulingError(
            f"layer {layer.name!r}: chains of {longest} terms span several passes, and a pass that continues a "
            f"chain reads data and the partial sum (2 read ports) and writes (1 port); the target allows "
            f"io.max_read_ports = {reads} and io.ports = {n_ports}"
        )
    for strip in _strips(layer, arch):
        if ctx.policy == "luaflow":
            per = max(1, min(n_conv, reads - 1))
            for o, slots in enumerate(chains):
                for j in range(0, len(slots), per):
                    seg = slots[j : j + per]
                    passes.append([_Segment(layer, o, seg, j > 0, j + per >= len(slots), strip)])
            continue
        cur: list[_Segment] = []
        free_c, free_r, free_w, free_p = n_conv, reads, writes, n_ports

        def flush():
            nonlocal cur, free_c, free_r, free_w, free_p
            if cur:
                passes.append(cur)
            cur, free_c, free_r, free_w, free_p = [], n_conv, reads, writes, n_ports

        extra = 1 if pool is not None and not unit else 0
        # A segment that continues a chain from an empty pass takes `run` terms when more than that
        # remain (the partial sum takes a read port and a port); `full_run`: such a pass is then full,
        # and the steps below would flush it at once (not being final, it has no fused pooling).
        run = min(n_conv, reads - 1, n_ports - 2)
        full_run = run >= 1 and writes >= 1 and (n_conv - run < 1 or n_ports - run - 2 < 1 or writes < 2)
        for o, o1, j, end in _chain_items(ctx, layer, pool, unit, chains, pack):
            slots = chains[o]
            n = len(slots)
            lanes = 1 if o1 < 0 else 2  # a packed chain: two partial sums in, two outputs out
            while j < end:
                psum = j > 0
                if lanes == 2:
                    if (
                        n == 1
                        and cur
                        and not extra
                        and min(free_w, free_p) >= lanes
                        and free_c >= 1
                        and _same_input(cur[-1], layer, o, slots[0], strip)
                    ):
                        # the previous segment's read stream goes on to this tile (Stream.taps)
                        cur.append(_Segment(layer, o, slots, False, True, strip, pool, True, o1))
                        free_c, free_w, free_p = free_c - 1, free_w - lanes, free_p - lanes
                        j += 1
                        if free_w < 1 or free_c < 1 or free_p < 2:
                            flush()
                        continue
                    ps = lanes * psum
                    if free_w < lanes or free_r < 1 + ps or free_c < 1 or free_p < 1 + ps + lanes:
                        if not cur:
                            raise SchedulingError(
                                f"layer {layer.name!r}: a packed chain segment needs {1 + ps} read ports and "
                                f"{lanes} write ports; the target allows io.max_read_ports = {reads}, "
                                f"io.max_write_ports = {writes} and io.ports = {n_ports}"
                            )
                        flush()
                        continue
                    k = min(free_c, free_r - ps, free_p - ps - lanes, end - j)
                    final = j + k == n  # then with its mapper and pooling unit on both lanes
                    fused = pool if final else None
                    cur.append(_Segment(layer, o, slots[j : j + k], psum, final, strip, fused, False, o1))
                    free_c -= k
                    free_r -= k + ps
                    free_w -= lanes
                    free_p -= k + ps + lanes
                    j += k
                    if free_w < 1 or free_c < 1 or free_p < 2:
                        flush()
                    continue
                if psum and not cur and full_run:
                    # the chain's middle: while more than `run` terms remain, each pass takes `run` of
                    # them and is full, as the steps below would find (a large network has hundreds
                    # of thousands of these passes)
                    while n - j > run:
                        seg = (layer, o, slots[j : j + run], True, False, strip, *_PLAIN_TAIL)
                        passes.append([_new_segment(_Segment, seg)])
                        j += run
                if (
                    n == 1
                    and cur
                    and not extra
                    and min(free_w, free_c, free_p) >= 1
                    and _same_input(cur[-1], layer, o, slots[0], strip)
                ):
                    # one read stream feeds both: it goes on to this tile, the previous taking it on
                    # the way (Stream.taps); no read port of its own
                    cur.append(_Segment(layer, o, slots, False, True, strip, pool, shared=True))
                    free_c, free_w, free_p = free_c - 1, free_w - 1, free_p - 1
                    j = 1
                    continue
                if free_w < 1 or free_r < 1 + psum or free_c < 1 or free_p < 2 + psum:
                    if not cur:
                        raise SchedulingError(
                            f"layer {layer.name!r}: one chain segment does not fit an empty pass (internal error)"
                        )
                    flush()
                    continue
                k = min(free_c, free_r - psum, free_p - psum - 1, n - j)
                final = j + k == n
                if final and extra and k + 1 > free_c:
                    if k > 1:
                        k -= 1
                        final = False
                    elif cur:
                        flush()
                        continue
                    else:
                        raise SchedulingError(
                            f"layer {layer.name!r}: fusing its pooling needs 2 convolvers in one pass (internal error)"
                        )
                cur.append(_Segment(layer, o, slots[j : j + k], psum, final, strip, pool if final else None))
                free_c -= k + (extra if final else 0)
                free_r -= k + psum
                free_w -= 1
                free_p -= k + psum + 1
                j += k
                if free_w < 1 or free_c < 1 or free_p < 1:
                    flush()  # no segment fits any more, shared or not: what the next step would do
        flush()
    return passes


def _chain_items(
    ctx: _Ctx,
    layer: ConvLayer,
    pool: ConvLayer | None,
    unit: bool,
    chains: list[tuple[int, ...]],
    pack: bool,
) -> list[tuple[int, int, int, int]]:
    """The layer's chains as ``(o, o1, start, end)``: terms ``start:end`` of output map ``o``'s chain,
    and ``o1`` the output map whose chain a packed convolver computes beside it (-1: none).

    A target whose convolvers pack two kernels (``tile.lanes = 2``) makes two output maps over one
    input window; with ``pack``, the ``nfc`` policy pairs output maps whose chains read the same
    input maps with the same offsets (every pair of a dense layer; in a connection table, the maps
    that see the same inputs), in a layer whose kernels fit the packed size. Each lane has its own
    mapper and pooling unit, configured alike: a pair whose maps take different mapper or pooling
    words, or whose pooling takes a convolver of its own, is packed up to its final segments (as many
    terms as a pass continuing a partial sum takes), which follow as two items of their own."""
    O = layer.out_shape[0]
    arch = ctx.arch
    io = arch.io
    if (
        not pack
        or ctx.policy != "nfc"
        or arch.tile.lanes < 2
        or io.max_write_ports < 2
        or io.max_read_ports < 3
        or io.ports < 5
        or layer.mode != "mac"
        or max(layer.block) > arch.packed_size
    ):
        return [(o, -1, 0, len(chains[o])) for o in range(O)]
    terms = ctx.terms_of(layer)
    waiting: dict[bytes, int] = {}
    partner = [-1] * O
    for o in range(O):
        key = terms.channel_array[o].tobytes() + terms.offset_array[o].tobytes()
        other = waiting.pop(key, None)
        if other is None:
            waiting[key] = o
        else:
            partner[other], partner[o] = o, other
    final = 0  # terms kept for the final segments
    extra = 1 if pool is not None and not unit else 0
    if layer.act or pool is not None:
        final = min(arch.convolvers - extra, io.max_read_ports - 1, io.ports - 2)
    items: list[tuple[int, int, int, int]] = []
    for o in range(O):
        o1, n = partner[o], len(chains[o])  # a pair's chains are equally long
        # lane 1 has a mapper and a pooling unit of its own, configured as lane 0's: a pair whose
        # maps take the same mapper and pooling words is packed to its end
        f = 0 if o1 >= 0 and not extra and _lanes_alike(layer, pool, o, o1) else final
        if o1 < 0 or n - f < 1:
            items.append((o, -1, 0, n))
        elif o1 > o:
            items.append((o, o1, 0, n - f))
            if f:  # the final segments, each with its mapper or pooling
                items += [(o, -1, n - f, n), (o1, -1, n - f, n)]
    return items


def _computed_outputs(
    layer: ConvLayer, unit_pool: ConvLayer | None, strip: tuple[int, int]
) -> tuple[int, int]:
    """Rows and end column of the outputs a conv pass of ``strip`` computes. With pooling fused on
    the pooling unit (``unit_pool``), only those the pooling windows use: the rows and columns that
    fill no window are never computed (so no word of the pass is still on its way when it ends)."""
    x0, x1 = strip
    if unit_pool is None:
        return layer.out_shape[1], x1
    size = unit_pool.block[0]
    return unit_pool.out_shape[1] * size, x0 + unit_pool.out_shape[2] * size


def _acc_segments(
    ctx: _Ctx, layer: ConvLayer, pool: ConvLayer | None, unit: bool
) -> list[list[_Segment]] | None:
    """The layer's chains on accumulation buffers (``tile.acc_words``), or None when they do not fit.

    Each convolver takes one chain (a pair of output maps on a packing target) and runs it to its
    end, one term a pass: its partial sums stay in its tile's buffer between passes (the first term
    starts from the bias, the last goes out through the mapper and pooling unit). A pass is one term
    of every convolver's chain: one data read each, and the writes of the chains that end in it. A
    chain whose last term finds no free ports, or whose writes would make a pass that already writes
    slower than the memory allows, waits a pass (so the convolvers' chains end in different passes
    from then on)."""
    arch, io = ctx.arch, ctx.arch.io
    if (
        ctx.policy != "nfc"
        or not arch.tile.acc_words
        or layer.mode != "mac"
        or (pool is not None and not unit)
    ):
        return None
    O = layer.out_shape[0]
    chains = [_slots(layer, o) for o in range(O)]
    if max(map(len, chains)) < 2:
        return None
    items = _chain_items(ctx, layer, pool, unit, chains, True)
    if any(start or end != len(chains[o]) for o, _, start, end in items):
        return None  # a pair split into final segments: lane 1's sums would have to change buffers
    lanes = max(1 + (o1 >= 0) for _, o1, _, _ in items)
    if io.max_write_ports < lanes or io.ports < 1 + lanes:
        return None  # a chain's last term could not go out
    strips = _strips(layer, arch)
    for strip in strips:
        oh, x1 = _computed_outputs(layer, pool if unit else None, strip)
        if oh * (x1 - strip[0]) > arch.tile.acc_words:
            return None
    tiles = list(ctx.geo.snake[: arch.convolvers])
    passes: list[list[_Segment]] = []
    for strip in strips:
        region = _region_in(layer, 0, (0, 0), strip).words
        out = layer.out_shape[1] * (strip[1] - strip[0])  # words a finished map writes (about)
        if pool is not None:
            out = pool.out_shape[1] * pool.out_shape[2]
        queue = list(reversed(items))
        running: list[list | None] = [None] * len(tiles)  # per convolver: [item, next term]
        while queue or any(running):
            group: list[_Segment] = []
            free_r, free_w, free_p = io.max_read_ports, io.max_write_ports, io.ports
            # the pass's data reads: the running chains' and those about to start
            idle = running.count(None)
            reads = (len(tiles) - idle + min(idle, len(queue))) * region
            written = 0
            for i, t in enumerate(tiles):
                if running[i] is None and queue:
                    running[i] = [queue.pop(), 0]
                if running[i] is None:
                    continue
                (o, o1, _, n), j = running[i]
                lanes = 1 if o1 < 0 else 2
                final = j == n - 1
                writes = lanes if final else 0
                slower = (
                    writes and written and _rate_of(arch, region, reads, written + writes * out) != (1, 1)
                )
                if free_r < 1 or free_w < writes or free_p < 1 + writes or slower:
                    continue  # its chain waits a pass
                slots = chains[o]
                fused = pool if final else None
                group.append(
                    _Segment(
                        layer, o, (slots[j],), j > 0, final, strip, fused, False, o1, j > 0, not final, t
                    )
                )
                free_r, free_w, free_p = free_r - 1, free_w - writes, free_p - 1 - writes
                written += writes * out
                running[i] = None if final else [running[i][0], j + 1]
            if not group:
                raise SchedulingError(
                    f"layer {layer.name!r}: a chain's last term finds no pass with its ports (internal error)"
                )
            passes.append(group)
    return passes


def _lanes_alike(layer: ConvLayer, pool: ConvLayer | None, o: int, o1: int) -> bool:
    """Whether output maps ``o`` and ``o1`` take the same mapper words and the same pooling-unit
    words, so that the two lanes of a packed convolver can share one configuration."""
    if layer.act and layer.act[o] != layer.act[o1]:  # (PWL: a frozen dataclass of words and formats)
        return False
    if pool is not None and pool.mode == "mac":
        w = pool.kernels[[o, o1], 0].reshape(2, -1)[:, 0]
        if w[0] != w[1] or pool.bias[o] != pool.bias[o1]:
            return False
    return True


def _plan_cost(ctx: _Ctx, groups: list[list[_Segment]], memory: bool = False) -> float:
    """Rough cycles of a plan, to choose between alternatives: streaming beats plus configuration;
    with ``memory``, a pass streams no faster than its words fit the memory's bandwidth."""
    arch = ctx.arch
    total = 0.0
    for group in groups:
        layer = group[0].layer
        region = _region_in(layer, 0, (0, 0), group[0].strip)
        kk = layer.block[0] * layer.block[1] if layer.mode == "mac" else 0
        # a packed segment's units carry two kernels; it reads two partial sums and writes two maps
        units = sum(len(s.slots) * (1 + (s.o1 >= 0)) + (s.pool is not None) for s in group)
        # (a segment on an accumulation buffer reads and writes no partial sums)
        sums = [(s.psum_in and not s.acc_in, not s.acc_out, 1 + (s.o1 >= 0)) for s in group]
        streams = sum(len(s.slots) for s in group) + sum((a + b) * lanes for a, b, lanes in sums)
        maps = sum(1 for s in group if s.final and (layer.act or (s.pool is not None and s.pool.act)))
        words = 3 + 7 * streams + units * (3 + (kk + 1) // 2) + maps * (1 + 2 * arch.tile.mapper_segments)
        beats = region.words
        if memory:  # at the beat rate the pass's words allow (_rate_of, as the pass builder uses it)
            out = layer.out_shape[1] * (group[0].strip[1] - group[0].strip[0])
            reads = sum(len(s.slots) for s in group if not s.shared) * beats
            reads += sum(a * lanes for a, _, lanes in sums) * out
            p, q = _rate_of(arch, beats, reads, sum(b * lanes for _, b, lanes in sums) * out)
            beats = beats * q / p
        total += beats + words * arch.config_bus.cycles_per_word + arch.memory.latency_cycles
    return total


def _maps_per_pass(arch: ArchConfig, layer: MapLayer | EltwiseLayer | CopyLayer) -> int:
    """How many maps of a mapper, ALU or copy layer one pass can stream (``nfc`` policy)."""
    io = arch.io
    if isinstance(layer, MapLayer):
        return min(arch.mappers, io.max_read_ports, io.max_write_ports, io.ports // 2, arch.tiles)
    if isinstance(layer, EltwiseLayer):
        return min(arch.alus, io.max_read_ports // 2, io.max_write_ports, io.ports // 3, arch.tiles)
    return min(io.max_read_ports, io.max_write_ports, io.ports // 2, arch.tiles)


def _simple_groups(channels: int, per_pass: int) -> list[range]:
    per_pass = max(1, per_pass)
    return [range(c, min(channels, c + per_pass)) for c in range(0, channels, per_pass)]


# ---------------------------------------------------------------------------------------------------
# building passes
# ---------------------------------------------------------------------------------------------------
def _words_per_cycle(arch: ArchConfig, gbytes: float) -> Fraction:
    words = Fraction(gbytes).limit_denominator(10**6) * 10**9 / arch.word_bytes
    return words / Fraction(arch.grid.clock_mhz).limit_denominator(10**6) / 10**6


@functools.lru_cache(maxsize=4096)
def _rate_of(arch: ArchConfig, beats: int, read_words: int, write_words: int) -> tuple[int, int]:
    """The beat rate P/Q: the largest rate <= 1 at which the streams' words fit the memory bandwidth.

    ``read_words``/``write_words``: words of all read/write streams over the pass (``beats`` beats).
    """
    r = Fraction(read_words, beats)
    w = Fraction(write_words, beats)
    m = arch.memory
    limit = Fraction(1)
    if m.shared:
        total = r + w
        if total:
            limit = min(limit, _words_per_cycle(arch, m.read_gbytes_per_s) / total)
    else:
        if r:
            limit = min(limit, _words_per_cycle(arch, m.read_gbytes_per_s) / r)
        if w:
            limit = min(limit, _words_per_cycle(arch, m.write_gbytes_per_s) / w)
    if limit >= 1:
        return (1, 1)
    p = math.floor(limit * RATE_DENOMINATOR)
    if p < 1:
        raise SchedulingError("memory bandwidth too low for a single stream at 1/64 word per cycle")
    g = math.gcd(p, RATE_DENOMINATOR)
    return (p // g, RATE_DENOMINATOR // g)


def _estimate(arch: ArchConfig, n_config: int, beats: int, rate: tuple[int, int], depth: int) -> dict:
    config = n_config * arch.config_bus.cycles_per_word
    stream = math.ceil(beats * rate[1] / rate[0])
    latency = arch.memory.latency_cycles + depth
    return {"config": config, "latency": latency, "stream": stream, "total": config + latency + stream}


class _PassBuilder:
    """Places one pass's units on tiles and routes its streams.

    Placement and routing depend only on the pass's *shape* (``key``: how many units of which kind
    in which order), so the decisions of the first pass of a shape are recorded and replayed for
    every later pass of the same shape.
    """

    __slots__ = (
        "ctx", "index", "kind", "router", "next_tile", "convs", "bodies", "maps", "alus", "pools", "streams",
        "layers", "depth", "macs", "key", "record", "replay", "pos", "links_used", "chain_routes", "sources",
    )  # fmt: skip

    def __init__(self, ctx: _Ctx, index: int, kind: str, key: tuple):
        self.ctx = ctx
        self.index = index
        self.kind = kind
        self.router = None  # made when a decision is first computed (not when replaying)
        self.next_tile = 0
        self.convs: list[ConvUnit] = []
        self.bodies: list[list[int] | None] = []  # per conv unit: its weight words' bodies, or None
        self.maps: list[MapUnit] = []
        self.alus: list[AluUnit] = []
        self.pools: list[PoolUnit] = []
        self.streams: list[Stream] = []
        self.layers: list[str] = []
        self.depth = 0
        self.macs = 0
        self.key = (kind,) + key
        cached = ctx.layouts.get(self.key)
        self.record: list = []
        self.replay = cached[0] if cached is not None else None
        self.pos = 0
        self.links_used = cached[1] if cached is not None else None
        self.chain_routes: list[tuple[int, ...]] = []
        self.sources: list[tuple[int, int]] = []  # per stream: see stream()

    def _router(self) -> _Router:
        if self.router is None:
            self.router = _Router(self.ctx.geo, self.ctx.arch)
        return self.router

    def _replayed(self):
        value = self.replay[self.pos]
        self.pos += 1
        return value

    def tile(self) -> int:
        if self.replay is not None:
            return self._replayed()
        if self.next_tile >= len(self.ctx.geo.snake):
            raise SchedulingError(f"pass {self.index}: more units than tiles (internal error)")
        t = self.ctx.geo.snake[self.next_tile]
        self.next_tile += 1
        self.record.append(t)
        return t

    def stream(
        self,
        direction: str,
        role: str,
        region: Region,
        tile: int,
        words: int,
        sync: bool = False,
        source: tuple[int, int] = (-1, -1),
        lane: int = 0,
    ) -> int:
        """Add a stream; returns its hops. ``source`` (conv passes): the segment of the pass whose
        stream it is and, for a data read, the position of its term in the segment (else -1); the
        pass templates (:class:`_ConvTemplate`) find the stream's channel in another pass by it."""
        self.sources.append(source)
        if self.replay is not None:
            port, path = self._replayed()
        else:
            got = self._router().port(direction, tile)
            if got is None:
                raise SchedulingError(f"pass {self.index}: no free {direction} port or route to tile {tile}")
            self.record.append(got)
            port, path = got
        # one shared Stream per distinct stream of the layer (regions are shared, so their
        # identity stands for their value in the key)
        key = (port, direction, role, id(region), tile, path, words, sync, lane)
        s = self.ctx.streams.get(key)
        if s is None or s.region is not region:
            s = self.ctx.streams[key] = Stream(
                port, direction, role, region, tile, path, words, sync, lane=lane
            )
        self.streams.append(s)
        return len(path) - 1

    def extend(self, k: int, tile: int) -> int:
        """Read stream ``k`` goes on from its tile to the neighbouring ``tile``, its tile taking it on
        the way (``Stream.taps``); returns the hops from the port to ``tile``."""
        s = self.streams[k]
        if self.replay is not None:
            path = self._replayed()
        else:
            router = self._router()
            path = router.path(s.tile, tile)
            if path is None or len(path) != 2:
                raise SchedulingError(
                    f"pass {self.index}: no free link from tile {s.tile} to tile {tile} for a shared input "
                    "stream (internal error)"
                )
            router.take(path)
            self.record.append(path)
        route = s.route + (tile,)
        self.streams[k] = Stream(
            s.port, s.direction, s.role, s.region, tile, route, s.words, s.sync, s.taps + (s.tile,)
        )
        return len(route) - 1

    def link(self, a: int, b: int) -> int:
        if self.replay is not None:
            path = self._replayed()
        else:
            router = self._router()
            path = router.path(a, b)
            if path is None:
                raise SchedulingError(f"pass {self.index}: no free route from tile {a} to tile {b}")
            router.take(path)
            self.record.append(path)
        if len(path) != 2:
            # CONV_LINK words name neighbouring tiles only; snake order makes every chain step one hop
            raise SchedulingError(
                f"pass {self.index}: tiles {a} and {b} of a chain are not neighbours (internal error)"
            )
        self.chain_routes.append(path)
        return len(path) - 1

    def conv(self, unit: ConvUnit, body: list[int] | None) -> None:
        """Add a convolver; ``body``: its CONV_W words without the tile's head (``_Terms.bodies``),
        or None to encode its kernel in :meth:`finish`."""
        self.convs.append(unit)
        self.bodies.append(body)

    def finish(self, beats: int, reads: list[int], writes: list[int]) -> Pass:
        ctx = self.ctx
        arch = ctx.arch
        rate = ctx.rate(beats, reads, writes)
        if self.links_used is None:
            self.links_used = tuple(sorted(self._router().used))
            ctx.layouts[self.key] = (self.record, self.links_used)
        # encode.encode_pass's words, with the memoised stream words and the layer's precomputed
        # weight words (tests/test_compile_speed_equivalence.py checks they are encode_pass's)
        streams = [ctx.words_of_stream(i, s) for i, s in enumerate(self.streams)]
        words = pass_words(
            self.kind,
            self.index,
            streams,
            self.convs,
            self.bodies,
            self.pools,
            self.maps,
            self.alus,
            rate,
            beats,
        )
        return Pass(
            self.index,
            self.kind,
            tuple(dict.fromkeys(self.layers)),
            tuple(self.convs),
            tuple(self.maps),
            tuple(self.alus),
            tuple(self.streams),
            self.links_used,
            tuple(self.chain_routes),
            tuple(words),
            rate,
            beats,
            self.macs,
            _estimate(arch, len(words), beats, rate, self.depth),
            pools=tuple(self.pools),
        )


def _region_in(
    layer: ConvLayer, channel: int, offset: tuple[int, int], strip: tuple[int, int], oh: int | None = None
) -> Region:
    """The input region a term streams for output columns ``strip`` of ``oh`` output rows (default:
    all of them)."""
    (dh, dw), (sh, sw) = layer.dilation, layer.stride
    span_h, span_w = _span(layer)
    OH = layer.out_shape[1] if oh is None else oh
    x0, x1 = strip
    rows = (OH - 1) * sh + span_h
    cols = (x1 - x0 - 1) * sw + span_w
    return Region(
        layer.src, channel, offset[0] * dh, x0 * sw + offset[1] * dw, rows, cols, layer.pads, layer.pad_value
    )


def _map_unit(tile: int, layer: str, channel: int, pwl: PWL) -> MapUnit:
    return MapUnit(tile, layer, channel, pwl.thresholds, pwl.slopes, pwl.offsets, pwl.shift)


def _conv_pass(ctx: _Ctx, index: int, segments: list[_Segment]) -> Pass:
    pb, beats, reads, writes = _conv_builder(ctx, index, segments)
    return pb.finish(beats, reads, writes)


def _conv_builder(
    ctx: _Ctx, index: int, segments: list[_Segment]
) -> tuple[_PassBuilder, int, list[int], list[int]]:
    """The conv pass of ``segments``, placed and routed, and what :meth:`_PassBuilder.finish` takes."""
    arch = ctx.arch
    first = segments[0].layer
    unit = first.name in ctx.pool_units  # fused pooling on the pooling unit of the chain's last tile
    key = tuple(
        (
            len(seg.slots),
            seg.psum_in,
            seg.pool is not None,
            unit,
            seg.shared,
            seg.o1 >= 0,
            seg.tile,
            seg.acc_in,
            seg.acc_out,
        )
        for seg in segments
    )
    pb = _PassBuilder(ctx, index, "conv" if first.kind not in ("maxpool", "avgpool") else "pool", key)
    fifo = arch.tile.fifo_depth
    hop = arch.tile.router_latency
    reads: list[int] = []
    writes: list[int] = []
    beats = 0
    # the read stream a shared segment takes on (the previous segment's); a shared segment that
    # starts a pass (after _split_build halved a group) reads its own
    shared_stream = -1
    # a segment whose read stream the next segment shares routes its write after that stream has
    # gone on to the next tile (the write must not take the link the stream needs)
    pending: list[tuple[Region, int, int, bool, tuple[int, int], int]] = []

    def write(region: Region, tile: int, n_words: int, defer: bool, k: int, lane: int = 0) -> None:
        if defer:
            pending.append((region, tile, n_words, False, (k, -1), lane))
        else:
            pb.stream("write", "out", region, tile, n_words, source=(k, -1), lane=lane)
        writes.append(n_words)

    for k, seg in enumerate(segments):
        defer = k + 1 < len(segments) and segments[k + 1].shared
        layer = seg.layer
        terms = ctx.terms_of(layer)
        o, o1 = seg.o, seg.o1
        pb.layers.append(layer.name)
        x0 = seg.strip[0]
        OH, x1 = _computed_outputs(layer, ctx.fused[layer.name] if unit else None, seg.strip)
        out_words = OH * (x1 - x0)
        mac = layer.mode == "mac"
        shift = layer.in_fmt.frac + layer.wfmt.frac - layer.psum_fmt.frac if mac else 0
        # the input region of every term (what _region_in gives), but for the channel and offset
        (dh, dw), (sh, sw) = layer.dilation, layer.stride
        span_h, span_w = _span(layer)
        rows = (OH - 1) * sh + span_h
        cols = (x1 - x0 - 1) * sw + span_w
        src, pads, pad_value = layer.src, layer.pads, layer.pad_value
        tiles = [seg.tile] if seg.tile >= 0 else [pb.tile() for _ in seg.slots]  # (acc: one term, its tile)
        conv_pool = seg.pool is not None and not unit  # pooling on a convolver of its own
        pool_tile = pb.tile() if conv_pool else -1
        # chain links first (most constrained), then reads, then the write
        hops = [pb.link(a, b) for a, b in zip(tiles, tiles[1:], strict=False)]
        if conv_pool:
            hops.append(pb.link(tiles[-1], pool_tile))
        depth = 0
        channels, offsets = terms.channels[o], terms.offsets[o]
        n = len(tiles)
        for i, (t, slot) in enumerate(zip(tiles, seg.slots, strict=True)):
            ch = channels[slot]
            off = offsets[slot]
            region = ctx.region(src, ch, off[0] * dh, x0 * sw + off[1] * dw, rows, cols, pads, pad_value)
            words = rows * cols
            beats = words
            if seg.shared and shared_stream >= 0:  # the previous segment's stream goes on to this tile
                data_hops = pb.extend(shared_stream, t)
            else:
                data_hops = pb.stream("read", "data", region, t, words, source=(k, i))
                reads.append(words)
                shared_stream = len(pb.streams) - 1
            delay = i * (CONV_LATENCY + (hops[i - 1] * hop if i else 0))
            if delay > fifo:
                raise SchedulingError(
                    f"layer {layer.name!r}: aligning a chain of {n} convolvers needs a {delay}-word FIFO, "
                    f"more than tile.fifo_depth ({fifo})"
                )
            last = i == n - 1
            to = "port"
            if not last:
                to = f"tile:{tiles[i + 1]}"
            elif conv_pool:
                to = f"tile:{pool_tile}"
            elif seg.acc_out:
                to = "acc"
            psum_from = (
                "bias" if i == 0 and not seg.psum_in else ("port" if i == 0 else f"tile:{tiles[i - 1]}")
            )
            if i == 0 and seg.acc_in:
                psum_from = "acc"
            kernel = tuple(terms.kernels[o][slot]) if mac else ()
            macs = terms.nonzero[o][slot] * out_words if mac else 0
            if o1 >= 0:
                macs += terms.nonzero[o1][slot] * out_words
            pb.macs += macs
            # positional arguments, in ConvUnit's field order: keywords cost 2 us a unit, and
            # ResNet-18 has 1.4 million units
            pb.conv(
                ConvUnit(
                    t,  # tile
                    layer.name,  # layer
                    o,  # out_channel
                    slot,  # term
                    layer.mode,  # mode
                    ch,  # in_channel
                    off,  # offset
                    layer.block,  # block
                    layer.stride,  # stride
                    layer.dilation,  # dilation
                    kernel,  # kernel
                    shift,  # shift
                    terms.bias[o] if psum_from == "bias" else 0,  # bias
                    psum_from,  # psum_from
                    to,  # to
                    t if (last and seg.final and layer.act) else -1,  # act_tile
                    delay,  # delay
                    macs,  # macs
                    (layer.psum_fmt.frac - layer.out_fmt.frac)  # out_shift
                    if (last and seg.final and not layer.act and not conv_pool)
                    else 0,
                    o1,  # out_channel1
                    tuple(terms.kernels[o1][slot]) if o1 >= 0 else (),  # kernel1
                    terms.bias[o1] if o1 >= 0 and psum_from == "bias" else 0,  # bias1
                    out_words if to == "acc" else 0,  # acc_words
                ),
                terms.bodies[o][slot] if terms.bodies is not None else None,
            )
            depth = max(depth, data_hops * hop + delay + CONV_LATENCY)
        for *args, lane in pending:
            pb.stream("write", "out", *args, lane=lane)
        pending.clear()
        if seg.psum_in and not seg.acc_in:
            psum_buf = ctx.psum_buffers[layer.name]
            for lane, channel in enumerate((o, o1) if o1 >= 0 else (o,)):
                region = ctx.region(psum_buf, channel, 0, x0, OH, x1 - x0)
                pb.stream("read", "psum", region, tiles[0], out_words, sync=True, source=(k, -1), lane=lane)
                reads.append(out_words)
        if seg.final and layer.act:
            pwl = layer.act[o]
            pb.maps.append(_map_unit(tiles[-1], layer.name, o, pwl))
            depth += MAP_LATENCY
        if seg.pool is not None and unit:
            pool = seg.pool
            pb.layers.append(pool.name)
            _, POH, POW = pool.out_shape
            size = pool.block[0]
            weight = int(pool.kernels[seg.o, 0].reshape(-1)[0]) if pool.mode == "mac" else 0
            pb.pools.append(  # adds and one product per window: no MACs of a convolver
                PoolUnit(
                    tile=tiles[-1],
                    layer=pool.name,
                    channel=seg.o,
                    mode=pool.mode,
                    size=size,
                    rows=OH,
                    cols=x1 - x0,
                    weight=weight,
                    shift=pool.in_fmt.frac + pool.wfmt.frac - pool.psum_fmt.frac if pool.mode == "mac" else 0,
                    bias=int(pool.bias[seg.o]) if pool.mode == "mac" else 0,
                    out_shift=0 if pool.act else pool.psum_fmt.frac - pool.out_fmt.frac,
                )
            )
            for lane, channel in enumerate((o, o1) if o1 >= 0 else (o,)):  # lane 1: its own pooling unit
                out_region = Region(ctx.pooled.get(layer.name, pool.dst), channel, 0, 0, POH, POW)
                write(out_region, tiles[-1], POH * POW, defer, k, lane)
            depth += POOL_LATENCY
        elif seg.pool is not None:
            pool = seg.pool
            pterms = ctx.terms_of(pool)
            pb.layers.append(pool.name)
            _, POH, POW = pool.out_shape
            pmac = pool.mode == "mac"
            kernel = tuple(pterms.kernels[o][0]) if pmac else ()
            pmacs = pterms.nonzero[o][0] * POH * POW if pmac else 0
            pb.macs += pmacs
            pb.conv(
                ConvUnit(
                    tile=pool_tile,
                    layer=pool.name,
                    out_channel=o,
                    term=-1,
                    mode=pool.mode,
                    in_channel=o,
                    offset=(0, 0),
                    block=pool.block,
                    stride=pool.stride,
                    dilation=pool.dilation,
                    kernel=kernel,
                    shift=pool.in_fmt.frac + pool.wfmt.frac - pool.psum_fmt.frac if pmac else 0,
                    bias=pterms.bias[o],
                    psum_from="bias",
                    to="port",
                    act_tile=pool_tile if pool.act else -1,
                    out_shift=0 if pool.act else pool.psum_fmt.frac - pool.out_fmt.frac,
                    macs=pmacs,
                ),
                pterms.bodies[o][0] if pterms.bodies is not None else None,
            )
            if pool.act:
                pwl = pool.act[o]
                pb.maps.append(_map_unit(pool_tile, pool.name, o, pwl))
                depth += MAP_LATENCY
            out_region = ctx.region(pool.dst, o, 0, 0, POH, POW)
            pb.stream("write", "out", out_region, pool_tile, POH * POW, source=(k, -1))
            writes.append(POH * POW)
            depth += CONV_LATENCY + hop * hops[-1]
        elif not seg.acc_out:  # (stored in the tile's accumulation buffer: no write)
            dst = layer.dst if seg.final else ctx.psum_buffers[layer.name]
            for lane, channel in enumerate((o, o1) if o1 >= 0 else (o,)):
                out_region = ctx.region(dst, channel, 0, x0, OH, x1 - x0)
                write(out_region, tiles[-1], out_words, defer, k, lane)
        pb.depth = max(pb.depth, depth + WRITE_LATENCY)
    return pb, beats, reads, writes


class _ConvLayerPasses:
    """The passes of one conv layer, group by group: the first pass of each shape (:meth:`key`) is
    built by :func:`_conv_pass` and becomes the shape's :class:`_ConvTemplate`; the later passes of
    the shape take a place in the step list that :meth:`fill` fills, all at once per shape, with
    :class:`~nfc.compiler.program.LazyPass` es."""

    def __init__(self, ctx: _Ctx, layer: ConvLayer):
        self.ctx = ctx
        self.layer = layer.name
        terms = ctx.terms_of(layer)
        # layers the templates do not cover: kernels without precomputed words
        self.covered = terms.body_array is not None
        self.templates: dict[tuple, _ConvTemplate | None] = {}
        # key of a template -> the step indices and groups of the passes waiting for fill()
        self.waiting: dict[tuple, tuple[list[int], list[list[_Segment]]]] = {}

    @staticmethod
    def key(group: list[_Segment]) -> tuple:
        """What a conv pass of ``group`` shares with every other pass of its layer that has the same
        key: placement, routes, streams but for their channels, units but for their kernels and
        biases (see :class:`_ConvTemplate`); the templates do not cover fused pooling."""
        if len(group) == 1:  # most passes of a large network (a pass full with one chain's segment)
            seg = group[0]
            return (
                (len(seg.slots), seg.psum_in, seg.final, seg.shared, seg.strip, seg.pool is None, seg.o1 < 0),
            )
        return tuple(
            [
                (len(seg.slots), seg.psum_in, seg.final, seg.shared, seg.strip, seg.pool is None, seg.o1 < 0)
                for seg in group
            ]
        )

    def add(self, steps: list, group: list[_Segment]) -> None:
        """Append the steps of ``group`` to ``steps`` (None: a place :meth:`fill` fills)."""
        index = len(steps)
        if not self.covered:
            steps += _split_build(self.ctx, index, _conv_pass, group, self.layer)
            return
        key = self.key(group)
        waiting = self.waiting.get(key)
        if waiting is not None:
            waiting[0].append(index)
            waiting[1].append(group)
            steps.append(None)
            return
        passes = _split_build(self.ctx, index, _conv_pass, group, self.layer)
        if key not in self.templates:
            # a shape whose first pass had to be split keeps being built by _split_build
            # (packed segments, tile.lanes = 2, are built pass by pass)
            # (and so are segments on accumulation buffers, tile.acc_words, whose tiles are fixed)
            plain = len(passes) == 1 and all(
                seg.pool is None and seg.o1 < 0 and seg.tile < 0 for seg in group
            )
            self.templates[key] = _ConvTemplate(self.ctx, index, group) if plain else None
            if plain:
                self.waiting[key] = ([], [])
        steps += passes

    def fill(self, steps: list) -> None:
        for key, (indices, groups) in self.waiting.items():
            if indices:
                for index, p in zip(
                    indices, self.templates[key].passes(self.ctx, indices, groups), strict=True
                ):
                    steps[index] = p


class _ConvTemplate:
    """A conv pass of one shape of a layer (:meth:`_ConvLayerPasses.key`), from which the layer's other
    passes of that shape are made in bulk: their configuration words as rows of one numpy array
    (the mappers' words, whose number may differ by map, are added to each row), their MACs with
    numpy, and their units on demand (:class:`~nfc.compiler.program.LazyPass`).

    Between two passes of a shape only the PASS word's index, each stream's PORT_ADDR (the
    channel it reads or writes), a data read's PORT_ORG when the layer's terms have offsets, each
    convolver's CONV_W words (its kernel), the CONV_SHIFT word of a chain's first convolver (the
    output map's bias) and the mappers' words (the output map's function) differ; the streams' other
    words, the units' placement and links, the rate, beats and pipeline depth are the same. The
    varying words are made as ``encode`` makes them (field ranges checked by its functions), so a
    pass's words are ``encode.pass_words``'s (tests/test_compile_speed_equivalence.py holds the
    passes equal to :func:`_conv_pass`'s).
    """

    def __init__(self, ctx: _Ctx, index: int, group: list[_Segment]):
        pb, beats, reads, writes = _conv_builder(ctx, index, group)
        p = pb.finish(beats, reads, writes)
        layer = group[0].layer
        terms = ctx.terms_of(layer)
        self.kind, self.layers, self.links, self.rate, self.beats = p.kind, p.layers, p.links, p.rate, beats
        self.depth = pb.depth
        # the pass's words before its mappers' in pieces: a constant word, or what makes a column
        # of words per pass: ("index",) the PASS word, ("address", buffer, segment, term or -1 for
        # the segment's output map), ("origin", segment, term, (x0 * sw, dh, dw)) a data read's
        # PORT_ORG, ("bias", segment, the CONV_SHIFT fields but the bias), or the columns of a
        # kernel's CONV_W words ("kernel", segment, term, CONV_W head)
        pieces: list = [("index",)]
        self.out_words = [0] * len(group)  # per segment: the words of its output (its write stream)
        for i, (st, (k, term)) in enumerate(zip(pb.streams, pb.sources, strict=True)):
            words = ctx.words_of_stream(i, st)
            pieces += [words[0], ("address", st.region.buffer, k, term), *words[2:4]]
            if term >= 0 and not terms.offset_free:  # a data read: the region's origin has the term's offset
                origin = (group[k].strip[0] * layer.stride[1], *layer.dilation)
                pieces.append(("origin", k, term, origin))
            else:
                pieces.append(words[4])
            pieces += words[5:]
            if st.direction == "write":
                self.out_words[k] = st.words
        units = iter(pb.convs)
        for k, seg in enumerate(group):
            for i in range(len(seg.slots)):
                u = next(units)
                conv, link, shifts = conv_head(u)
                pieces += [conv, link]
                if u.psum_from == "bias":  # the chain's first convolver: the output map's bias
                    fields = (u.tile, u.mode, u.block, u.stride, u.dilation, u.psum_from, u.to)
                    pieces.append(("bias", k, fields + (u.delay, u.shift, u.act_tile, u.out_shift)))
                else:
                    pieces.append(shifts)
                pieces.append(("kernel", k, i, weight_head(u.tile)))
        # mappers: the segment whose output map's function each one applies, and its tile
        maps = iter(pb.maps)
        self.maps = [(k, next(maps).tile) for k, seg in enumerate(group) if seg.final and seg.layer.act]
        self.tail = list(tail_words(self.rate, self.beats))
        if not self.maps:  # the RATE and GO words end every row
            pieces += self.tail
        # the row of constant words (0 where a piece goes), and the first column of each piece
        row: list[int] = []
        self.varying: list[tuple[int, tuple]] = []
        for piece in pieces:
            if type(piece) is int:
                row.append(piece)
            else:
                self.varying.append((len(row), piece))
                row += [0] * (terms.body_array.shape[-1] if piece[0] == "kernel" else 1)
        self.row = np.array(row, dtype=np.int64)

    def passes(self, ctx: _Ctx, indices: list[int], groups: list[list[_Segment]]) -> list[LazyPass]:
        """The passes of ``groups`` (groups with this template's key) as steps ``indices``."""
        layer = groups[0][0].layer
        terms = ctx.terms_of(layer)
        n, n_segs = len(groups), len(groups[0])
        index = np.array(indices, dtype=np.int64)
        # per segment of the groups: its output map, and its terms
        outs = np.fromiter((seg.o for group in groups for seg in group), np.int64, n * n_segs).reshape(
            n, n_segs
        )
        slots = []
        for k, seg in enumerate(groups[0]):
            t = len(seg.slots)
            # chained in C: a Python generator over every term of a large layer is slower
            terms_k = itertools.chain.from_iterable([group[k].slots for group in groups])
            slots.append(np.fromiter(terms_k, np.int64, n * t).reshape(n, t))
        rows = np.empty((n, len(self.row)), dtype=np.int64)
        rows[:] = self.row
        for j, piece in self.varying:
            if piece[0] == "index":
                pass_word(self.kind, int(index.max()))  # the largest index fits the PASS word
                rows[:, j] = pass_word(self.kind, 0) | index
            elif piece[0] == "address":
                _, buffer, k, term = piece
                channel = terms.channel_array[outs[:, k], slots[k][:, term]] if term >= 0 else outs[:, k]
                rows[:, j] = _each(channel, lambda c, b=buffer: word("PORT_ADDR", arg=ctx.addresses[(b, c)]))
            elif piece[0] == "origin":  # _conv_builder's region origin, r0 = dh * dy, c0 = x0 * sw + dw * dx
                _, k, term, (c0, dh, dw) = piece
                offset = terms.offset_array[outs[:, k], slots[k][:, term]]
                rows[:, j] = _each(
                    offset, lambda dy, dx, c0=c0, dh=dh, dw=dw: origin_word(dy * dh, c0 + dx * dw)
                )
            elif piece[0] == "bias":
                _, k, fields = piece
                rows[:, j] = _each(outs[:, k], lambda o, f=fields: conv_head_words(*f, terms.bias[o])[2])
            else:
                _, k, i, head = piece
                body = terms.body_array[outs[:, k], slots[k][:, i]]
                rows[:, j : j + body.shape[1]] = head | body
        macs = sum(
            self.out_words[k] * terms.nonzero_array[outs[:, k, None], slots[k]].sum(axis=1)
            for k in range(outs.shape[1])
        ).tolist()
        if self.maps:
            rows = [
                np.concatenate((words, np.array(self._map_words(layer, group) + self.tail, dtype=np.int64)))
                for group, words in zip(groups, rows, strict=True)
            ]
        # the estimates, by number of words (shared: _configure_behind makes each pass its own)
        estimates: dict[int, dict] = {}
        for words in rows if self.maps else rows[:1]:
            if len(words) not in estimates:
                estimates[len(words)] = _estimate(ctx.arch, len(words), self.beats, self.rate, self.depth)
        kind, layers, links, rate, beats = self.kind, self.layers, self.links, self.rate, self.beats
        build = functools.partial(_conv_pass, ctx)  # (index, group) -> the pass
        return [
            LazyPass.of(
                build,
                group,
                words,
                i,
                kind,
                layers,
                links,
                rate,
                beats,
                pass_macs,
                estimates[len(words)],
            )
            for i, group, words, pass_macs in zip(indices, groups, rows, macs, strict=True)
        ]

    def _map_words(self, layer: ConvLayer, group: list[_Segment]) -> list[int]:
        """The words of the pass's mappers (the functions of the segments' output maps)."""
        words = []
        for k, tile in self.maps:
            o = group[k].o
            words += map_words(_map_unit(tile, layer.name, o, layer.act[o]))
        return words


def _each(values: np.ndarray, make: Callable[..., int]) -> np.ndarray:
    """``make(v)`` of each of ``values`` (made once per distinct value), as an int64 array;
    ``make(*row)`` of each row when ``values`` is 2-D. 1-D ``values`` are small non-negative
    integers (channels, output maps): a table indexed by value, without np.unique's sort."""
    if values.ndim == 1:
        present = np.zeros(int(values.max()) + 1, dtype=bool)
        present[values] = True
        table = np.zeros(len(present), dtype=np.int64)
        distinct = np.flatnonzero(present)
        table[distinct] = [make(v) for v in distinct.tolist()]
        return table[values]
    distinct, where = np.unique(values, axis=0, return_inverse=True)
    made = [make(*row) for row in distinct.tolist()]
    return np.array(made, dtype=np.int64)[where.reshape(-1)]


def _limits(arch: ArchConfig) -> str:
    io = arch.io
    return (
        f"the target has io.ports = {io.ports}, io.max_read_ports = {io.max_read_ports}, "
        f"io.max_write_ports = {io.max_write_ports} and a {arch.grid.rows}x{arch.grid.cols} grid"
    )


def _split_build(ctx: _Ctx, index: int, build, items, layer: str) -> list[Pass]:
    """``build(ctx, index, items)`` one pass; while its streams cannot all be routed, halve ``items``
    (segments or channels) and build the halves. A group with packed segments (whose convolvers each
    write two maps) is first tried in other orders (which places its segments on other tiles)."""
    try:
        return [build(ctx, index, items)]
    except SchedulingError as exc:
        if len(items) == 1:
            raise SchedulingError(f"layer {layer!r}: {exc} ({_limits(ctx.arch)})") from None
    if isinstance(items[0], _Segment) and any(s.o1 >= 0 for s in items) and all(s.tile < 0 for s in items):
        # rotate the runs (a segment and the shared segments taking its read stream after it)
        runs: list[list[_Segment]] = []
        for s in items:
            if s.shared and runs:
                runs[-1].append(s)
            else:
                runs.append([s])
        for r in range(1, len(runs)):
            order = [s for run in runs[r:] + runs[:r] for s in run]
            try:
                return [build(ctx, index, order)]
            except SchedulingError:
                pass
    half = len(items) // 2
    first = _split_build(ctx, index, build, items[:half], layer)
    return first + _split_build(ctx, index + len(first), build, items[half:], layer)


def _map_pass(ctx: _Ctx, index: int, layer: MapLayer, chans: range) -> Pass:
    pb = _PassBuilder(ctx, index, "map", (len(chans),))
    pb.layers.append(layer.name)
    buf = ctx.low.buffers.get(layer.src)  # or the pooled maps of a pooling unit (ctx.pooled)
    C, H, W = buf.shape if buf is not None else ctx.extra_buffers[layer.src][0]
    for c in chans:
        t = pb.tile()
        h = pb.stream("read", "data", Region(layer.src, c, 0, 0, H, W), t, H * W)
        pwl = layer.pwl[c]
        pb.maps.append(_map_unit(t, layer.name, c, pwl))
        h2 = pb.stream("write", "out", Region(layer.dst, c, 0, 0, H, W), t, H * W)
        pb.depth = max(pb.depth, (h + h2) * ctx.arch.tile.router_latency + MAP_LATENCY + WRITE_LATENCY)
    n = len(chans)
    return pb.finish(H * W, [H * W] * n, [H * W] * n)


def _eltwise_pass(ctx: _Ctx, index: int, layer: EltwiseLayer, chans: range) -> Pass:
    pb = _PassBuilder(ctx, index, "eltwise", (len(chans),))
    pb.layers.append(layer.name)
    bufs = ctx.low.buffers
    C, H, W = bufs[layer.dst].shape
    fa, fb, fo = bufs[layer.a].fmt.frac, bufs[layer.b].fmt.frac, bufs[layer.dst].fmt.frac
    shifts = alu_shifts(layer.kind, fa, fb, fo)
    for c in chans:
        t = pb.tile()
        h1 = pb.stream("read", "data", Region(layer.a, c, 0, 0, H, W), t, H * W)
        h2 = pb.stream("read", "data", Region(layer.b, c, 0, 0, H, W), t, H * W)
        pb.alus.append(AluUnit(t, layer.name, c, layer.kind, *shifts))
        h3 = pb.stream("write", "out", Region(layer.dst, c, 0, 0, H, W), t, H * W)
        pb.depth = max(
            pb.depth, (max(h1, h2) + h3) * ctx.arch.tile.router_latency + ALU_LATENCY + WRITE_LATENCY
        )
    n = len(chans)
    return pb.finish(H * W, [H * W] * (2 * n), [H * W] * n)


def _copy_pass(ctx: _Ctx, index: int, layer: CopyLayer, chans: range) -> Pass:
    pb = _PassBuilder(ctx, index, "copy", (len(chans),))
    pb.layers.append(layer.name)
    C, H, W = ctx.low.buffers[layer.src].shape
    pt, pl, pb_, pr = layer.pads
    rows, cols = H + pt + pb_, W + pl + pr
    for c in chans:
        t = pb.tile()
        h1 = pb.stream(
            "read",
            "data",
            Region(layer.src, c, 0, 0, rows, cols, layer.pads, layer.pad_value),
            t,
            rows * cols,
        )
        h2 = pb.stream(
            "write",
            "out",
            Region(layer.dst, c, layer.start[0], layer.start[1], rows, cols, step=layer.step),
            t,
            rows * cols,
        )
        pb.depth = max(pb.depth, (h1 + h2) * ctx.arch.tile.router_latency + WRITE_LATENCY)
    n = len(chans)
    return pb.finish(rows * cols, [rows * cols] * n, [rows * cols] * n)


# ---------------------------------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------------------------------
def _allocate(ctx: _Ctx, order: list, materialised: set[str]) -> tuple[dict[str, int], int, dict[str, str]]:
    """Word addresses of root buffers (first fit, reusing buffers that are dead), and kinds."""
    low = ctx.low
    roots = {}
    for name in low.buffers:
        root, _ = low.root(name)
        roots[name] = root.name
    sizes: dict[str, int] = {}
    for name in materialised:
        sizes[name] = low.buffers[name].words
    for name, (shape, _, _) in ctx.extra_buffers.items():
        sizes[name] = shape[0] * shape[1] * shape[2]
    # view reads past a buffer's end (a vector seen as rows x K) must stay inside memory
    for step in order:
        if isinstance(step, ConvLayer) and roots.get(step.src) in sizes:
            need = step.view[0] * step.view[1]
            r = roots[step.src]
            _, off = low.root(step.src)
            sizes[r] = max(sizes[r], off + need)
    inputs = {roots[b] for _, b, _ in low.inputs}
    outputs = {roots[b] for _, b, _ in low.outputs}
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, step in enumerate(order):
        for name in _reads(step, ctx):
            r = roots.get(name, name)
            last[r] = i
            first.setdefault(r, i)
        for name in _writes(step, ctx):
            r = roots.get(name, name)
            first.setdefault(r, i)
            last[r] = max(last.get(r, i), i)
    for r in inputs:
        first[r] = -1
    for r in outputs:
        last[r] = len(order)
    live: list[tuple[int, int, str]] = []  # (address, size, name)
    addresses: dict[str, int] = {}
    end = 0
    for name in sorted(sizes, key=lambda n: (first.get(n, 0), n)):
        start = first.get(name, 0)
        live = [(a, s, n) for a, s, n in live if last.get(n, len(order)) >= start]
        size = sizes[name]
        addr = 0
        for a, s, _ in sorted(live):
            if addr + size <= a:
                break
            addr = max(addr, a + s)
        addresses[name] = addr
        live.append((addr, size, name))
        end = max(end, addr + size)
    kinds = {}
    for name in sizes:
        kinds[name] = "input" if name in inputs else "output" if name in outputs else "temp"
    return addresses, end, kinds


def _reads(step, ctx: _Ctx) -> list[str]:
    if isinstance(step, ConvLayer):
        return [step.src] + ([ctx.psum_buffers[step.name]] if step.name in ctx.psum_buffers else [])
    if isinstance(step, MapLayer | CopyLayer):
        return [step.src]
    if isinstance(step, EltwiseLayer):
        return [step.a, step.b]
    if isinstance(step, HostLayer):
        return list(step.srcs)
    return []


def _writes(step, ctx: _Ctx) -> list[str]:
    out = [step.dst]
    if isinstance(step, ConvLayer) and step.name in ctx.fused:
        out.append(ctx.pooled.get(step.name, ctx.fused[step.name].dst))
    if isinstance(step, ConvLayer) and step.name in ctx.psum_buffers:
        out.append(ctx.psum_buffers[step.name])
    return out


# ---------------------------------------------------------------------------------------------------
def schedule(
    low: Lowered, arch: ArchConfig, policy: str = "nfc", progress: Callable[[str], None] | None = None
) -> Program:
    """Schedule ``low`` on ``arch`` with ``policy`` (``nfc`` or ``luaflow``).

    ``progress`` is called with a short message per layer on networks of many passes."""
    with _gc_paused():
        return _schedule(low, arch, policy, progress)


@contextlib.contextmanager
def _gc_paused():
    """Pause Python's cyclic garbage collector: scheduling allocates millions of small objects
    (units, streams, word tuples) that form no reference cycles and all stay alive in the program,
    and the collector's passes over that growing heap took about a third of the scheduling time
    (mobilenet_v2). Reference counting still frees everything as usual; the collector's previous
    state is restored afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _schedule(low: Lowered, arch: ArchConfig, policy: str, progress: Callable[[str], None] | None) -> Program:
    if policy not in POLICIES:
        raise SchedulingError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    ctx = _Ctx(arch, low, Geometry.of(arch), policy)
    consumers: dict[str, list] = {}
    for layer in low.layers:
        for name in _reads(layer, ctx):
            consumers.setdefault(name, []).append(layer)
    # decide fusion and partial-sum buffers
    fused = ctx.fused
    skip: set[str] = set()
    plans: list[tuple[object, list]] = []
    for layer in low.layers:
        if layer.name in skip:
            continue
        if isinstance(layer, ConvLayer):
            pool = _fusable_pool(ctx, layer, consumers)
            unit = pool is not None and pool_unit_fits(ctx.arch, pool)
            segs = _conv_segments(ctx, layer, pool, unit)
            if any(seg.o1 >= 0 for group in segs for seg in group):
                # packed chains (tile.lanes = 2) split a layer with a mapper or pooling into more
                # segments: keep the plan without packing when it costs less
                plain = _conv_segments(ctx, layer, pool, unit, pack=False)
                if _plan_cost(ctx, plain) <= _plan_cost(ctx, segs):
                    segs = plain
            on_grid = _acc_segments(ctx, layer, pool, unit)
            if on_grid is not None and _plan_cost(ctx, on_grid, memory=True) < _plan_cost(
                ctx, segs, memory=True
            ):
                segs = on_grid  # partial sums in the tiles' accumulation buffers, not in memory
            if pool is not None and not unit:
                apart = _conv_segments(ctx, layer, None)
                pool_apart = _conv_segments(ctx, pool, None)
                if _plan_cost(ctx, apart) + _plan_cost(ctx, pool_apart) < _plan_cost(ctx, segs):
                    pool, segs = None, apart  # fusing would cost an extra pass over the big input
            if pool is not None:
                fused[layer.name] = pool
                skip.add(pool.name)
                if unit:
                    ctx.pool_units.add(layer.name)
                    if pool.act:
                        name = f"{pool.name}.pooled"
                        ctx.pooled[layer.name] = name
                        ctx.extra_buffers[name] = (pool.out_shape, pool.psum_fmt.frac, pool.psum_fmt.bits)
            if any(s.psum_in and not s.acc_in for group in segs for s in group):
                name = f"{layer.name}.psum"
                ctx.psum_buffers[layer.name] = name
                ctx.extra_buffers[name] = (layer.out_shape, layer.psum_fmt.frac, layer.psum_fmt.bits)
            plans.append((layer, segs))
            if layer.name in ctx.pooled:  # the pooling's mapper, over the pooled maps
                act = MapLayer(
                    pool.name, pool.source, ctx.pooled[layer.name], pool.dst, pool.act, pool.act_kind
                )
                plans.append((act, _simple_groups(pool.out_shape[0], _maps_per_pass(arch, act))))
        elif isinstance(layer, MapLayer | EltwiseLayer | CopyLayer):
            C = low.buffers[layer.dst if isinstance(layer, EltwiseLayer) else layer.src].shape[0]
            per_pass = 1 if policy == "luaflow" else _maps_per_pass(arch, layer)
            plans.append((layer, _simple_groups(C, per_pass)))
        else:
            plans.append((layer, []))
    # memory: every root buffer except the un-pooled maps of fused layers
    order = [layer for layer, _ in plans]
    not_stored = {pool.src for pool in fused.values()}  # the un-pooled maps of fused convolutions
    materialised = {b.name for b in low.buffers.values() if b.parent is None and b.name not in not_stored}
    addresses, memory_words, kinds = _allocate(ctx, order, materialised)
    all_buffers = dict(low.buffers)
    infos = []
    for name, buf in sorted(all_buffers.items()):
        root, off = low.root(name)
        if root.name not in addresses:
            continue
        base = addresses[root.name] + off
        c, h, w = buf.shape
        for ch in range(c):
            ctx.addresses[(name, ch)] = base + ch * h * w
        ctx.map_shapes[name] = (h, w)
        infos.append(
            BufferInfo(
                name,
                base,
                buf.shape,
                buf.fmt.frac,
                buf.fmt.bits,
                kinds.get(name, "view") if root.name == name else "view",
                "" if root.name == name else root.name,
            )
        )
    for name, (shape, frac, bits) in sorted(ctx.extra_buffers.items()):
        base = addresses[name]
        for ch in range(shape[0]):
            ctx.addresses[(name, ch)] = base + ch * shape[1] * shape[2]
        ctx.map_shapes[name] = (shape[1], shape[2])
        infos.append(BufferInfo(name, base, shape, frac, bits, "temp"))
    # vector views read as rows x K maps
    for layer in order:
        if isinstance(layer, ConvLayer) and ctx.map_shapes.get(layer.src) != layer.view:
            vname = f"{layer.src}@view"
            ctx.map_shapes[vname] = layer.view
    steps: list = []
    total = sum(len(plan) for _, plan in plans)
    done = 0
    for layer, plan in plans:
        ctx.begin_layer()
        done += len(plan)
        if progress is not None and total > 2000 and len(plan) > 200:
            progress(f"scheduling {layer.name}: {len(plan)} passes ({100 * done // total}% of the network)")
        if isinstance(layer, ConvLayer):
            passes = _ConvLayerPasses(ctx, layer)
            viewed = ctx.map_shapes.get(layer.src) != layer.view  # (see _viewed)
            for group in plan:
                if viewed:
                    group = [_viewed(ctx, s) for s in group]
                passes.add(steps, group)
            passes.fill(steps)
        elif isinstance(layer, MapLayer | EltwiseLayer | CopyLayer):
            build = {MapLayer: _map_pass, EltwiseLayer: _eltwise_pass, CopyLayer: _copy_pass}[type(layer)]
            for chans in plan:
                steps += _split_build(
                    ctx, len(steps), lambda c, i, ch, b=build, la=layer: b(c, i, la, ch), chans, layer.name
                )
        elif isinstance(layer, HostLayer):
            steps.append(
                HostStep(
                    len(steps),
                    layer.name,
                    layer.node.op.value,
                    layer.srcs,
                    layer.dst,
                    node_ops(layer.node, layer.in_shapes),
                )
            )
    _configure_behind(steps)
    return Program(
        PROGRAM_VERSION,
        arch.name,
        low.name,
        policy,
        tuple(infos),
        low.inputs,
        low.outputs,
        tuple(steps),
        memory_words,
    )


def _configure_behind(steps: list) -> None:
    """Each pass's configuration goes over the bus while the pass before it streams, unless a host
    step comes between them (docs/architecture.md §13 item 1): in every pass's estimate, ``config``
    becomes the part that shows and ``hidden`` the rest."""
    behind = 0
    # the passes made from one template share their estimate until here, and mostly follow each
    # other: (id of an estimate, behind) -> (that estimate, kept so its id stays its own; the result)
    made: dict[tuple[int, int], tuple[dict, dict]] = {}
    # the last pass's shared estimate and behind, what it became and the next pass's behind: a run
    # of passes from one template needs no look-up (a large network has hundreds of thousands)
    last, last_behind, shown, after = None, 0, None, 0
    for s in steps:
        if isinstance(s, HostStep):
            behind = 0
            continue
        e = s.estimate
        if e is not last or behind != last_behind:
            key = (id(e), behind)
            hit = made.get(key)
            if hit is None:
                hidden = min(e["config"], behind)
                est = dict(e, config=e["config"] - hidden, hidden=hidden, total=e["total"] - hidden)
                hit = made[key] = (e, est)
            last, last_behind, shown, after = e, behind, hit[1], e["latency"] + e["stream"]
        _set_estimate(s, shown.copy())  # each pass its own dict; a Pass is frozen, this is its construction
        behind = after


#: Sets a pass's ``estimate`` slot (as ``object.__setattr__`` does, faster).
_set_estimate = Pass.__dict__["estimate"].__set__


def _viewed(ctx: _Ctx, seg: _Segment) -> _Segment:
    """Segments of layers that read a vector as a rows x K map address it through a view name."""
    layer = seg.layer
    if ctx.map_shapes.get(layer.src) == layer.view:
        return seg
    viewed = ctx.viewed.get(layer.name)
    if viewed is None:
        vname = f"{layer.src}@view"
        if (vname, 0) not in ctx.addresses:
            ctx.addresses[(vname, 0)] = ctx.addresses[(layer.src, 0)]
        viewed = ctx.viewed[layer.name] = replace(layer, src=vname)  # one copy per layer, not per segment
    return seg._replace(layer=viewed)
