"""The per-cycle reference model of a pass's timing: registers and handshakes, stepped once per cycle.

``docs/architecture.md`` §13 defines when every word of a pass moves. ``sim/cycle.py`` computes
those cycles as closed-form max-plus vectors; this module reaches the same numbers the way the
hardware does, knowing nothing of the formulas: it clocks a model of the grid one cycle at a time.

* a configuration counter takes the pass's words, ``cycles_per_word`` cycles each;
* a beat generator is an accumulator register: it gains ``P`` every cycle and fires a beat (losing
  ``Q``) on a cycle it holds at least ``Q``;
* every read stream is a DMA with a word counter; a data DMA requests one word per beat, a
  partial-sum DMA watches the requests of the data DMA of the convolver it feeds through its own
  line-buffer counters and requests a word whenever a requested data word completes a window;
* every request travels through delay lines: the memory (``L`` cycles), then one line of ``h``
  cycles per router hop;
* a convolver takes its input through the alignment FIFO (a delay line of ``delay`` cycles), counts
  rows and columns of its input like a line buffer filling up to recognise the word that completes
  a window, joins each window with its partial sum (one FIFO per input, firing when every head is
  present; a FIFO entry that waits more than ``tile.fifo_depth`` cycles, or a FIFO holding more than
  ``tile.fifo_depth`` entries, breaks the contract) and sends the result down an output pipeline;
  a *packed* convolver (``tile.lanes = 2``) has a third FIFO, lane 1's partial sums (from its own
  partial-sum DMA, or from the lane-1 output of the chain's previous convolver), joins the window
  with both partial sums, and sends its lane-1 output out on the cycle its lane-0 output leaves,
  through a mapper and a pooling unit of its own where lane 0 has them;
* mappers, ALUs and copies, chain links (``h`` cycles), pooling units (counters over the tile's
  output recognising the word that completes a window, then ``POOL_LATENCY``), and write ports
  whose words count as written when they leave a delay line of ``hops x h + WRITE_LATENCY`` cycles
  (a write stream of lane 1 takes the lane-1 output of its tile's packed convolver, or of lane 1's
  pooling unit).

A convolver taking its partial sums from its tile's accumulation buffer (``tile.acc_words``) has
them at once, as a bias start does; one storing its outputs there sends them down a delay line of
``ACC_LATENCY`` cycles into a counter, which counts as a write.

The pass ends when every write stream and accumulation buffer has written all its words; it takes
one cycle more than the cycle of its last write. Values are not modelled, only when words move. Speed is not a goal: the
tests use it on small programs to hold ``sim/cycle.py`` to the contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nfc.arch import ArchConfig
from nfc.compiler.binary import LoadedPass
from nfc.compiler.decode import DecodedConv, DecodedPass, DecodedPool, DecodedStream
from nfc.compiler.timing import (
    ACC_LATENCY,
    ALU_LATENCY,
    CONV_LATENCY,
    MAP_LATENCY,
    POOL_LATENCY,
    WRITE_LATENCY,
)
from nfc.sim.cycle import ContractError

__all__ = ["NaiveTiming", "naive_pass"]


@dataclass(frozen=True)
class NaiveTiming:
    """What the per-cycle model saw of one pass.

    ``cycles``: cycle of the last memory write + 1. ``config_cycles``: cycles the configuration
    counter ran. ``stream_cycles``: cycles the beat generator ran (first cycle after configuration to
    the last beat inclusive). ``memory_stall_cycles``: those of them on which no beat fired.
    ``beats``: beats fired. ``busy``: words each operator accepted (``conv:<tile>``, ``map:<tile>``,
    ``alu:<tile>``). ``fifo_peak``: the most entries any join FIFO of a convolver held at the end of
    a cycle (``conv:<tile>``, convolvers with a partial-sum input only). ``macs``: configured taps of
    every window that went into a convolver's output pipeline, both lanes of a packed convolver
    (the cycle model's ``events.macs``). ``last_writes``: per write stream, in stream order, the
    cycle of its last memory write.
    """

    index: int
    kind: str
    cycles: int
    config_cycles: int
    stream_cycles: int
    memory_stall_cycles: int
    beats: int
    busy: dict[str, int] = field(default_factory=dict)
    fifo_peak: dict[str, int] = field(default_factory=dict)
    macs: int = 0
    last_writes: tuple[int, ...] = ()


# ---------------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------------
class _Line:
    """A delay line of ``length`` cycles: a token pushed on a cycle can be taken ``length`` cycles
    later (on the same cycle for length 0, by a consumer clocked after the producer). Each entry
    is a down-counter of the cycles it still has to travel."""

    def __init__(self, length: int):
        if length < 0:
            raise ContractError(f"a delay line of {length} cycles")
        self.length = length
        self.entries: list[int] = []

    def push(self, n: int = 1) -> None:
        self.entries.extend([self.length] * n)

    def take(self) -> int:
        """Tokens at the end of the line this cycle (removed)."""
        n = 0
        while self.entries and self.entries[0] == 0:
            self.entries.pop(0)
            n += 1
        return n

    def tick(self) -> None:
        """End of a cycle: every token moves one stage on."""
        for i, left in enumerate(self.entries):
            if left == 0:
                raise AssertionError("a token was not taken off the end of its delay line")
            self.entries[i] = left - 1


class _Path:
    """Delay lines in series (memory, then one per router hop; or a link; or a write port)."""

    def __init__(self, clock: _Clock, lengths: list[int]):
        self.lines = [clock.line(n) for n in lengths] or [clock.line(0)]

    def push(self, n: int = 1) -> None:
        if n:
            self.lines[0].push(n)

    def take(self) -> int:
        n = 0
        for line in self.lines:
            line.push(n)
            n = line.take()
        return n


class _Clock:
    """Every register that ticks: delay lines and FIFOs (their entries age once per cycle)."""

    def __init__(self) -> None:
        self.lines: list[_Line] = []
        self.fifos: list[_Fifo] = []

    def line(self, length: int) -> _Line:
        line = _Line(length)
        self.lines.append(line)
        return line

    def fifo(self, name: str) -> _Fifo:
        f = _Fifo(name)
        self.fifos.append(f)
        return f

    def tick(self) -> None:
        for line in self.lines:
            line.tick()
        for f in self.fifos:
            f.tick()

    def idle(self) -> bool:
        return not any(line.entries for line in self.lines)


class _Fifo:
    """A join FIFO; each entry carries a counter of the cycles it has waited."""

    def __init__(self, name: str):
        self.name = name
        self.ages: list[int] = []
        self.peak = 0

    def push(self, n: int = 1) -> None:
        self.ages.extend([0] * n)

    def pop(self) -> int:
        return self.ages.pop(0)

    def tick(self) -> None:
        self.peak = max(self.peak, len(self.ages))
        self.ages = [a + 1 for a in self.ages]


class _LineBuffer:
    """Row and column counters over a ``rows x cols`` input, like a line buffer filling up: they
    say whether the word now arriving completes a window (``geometry``: block, stride and dilation;
    :func:`_geometry` of a convolver, ``size x size`` windows of stride ``size`` for a pooling unit).

    ``want_r``/``want_c`` are the row and column of the bottom-right corner of the next window in
    the current window row: they start at the window's span and move on by the stride each time a
    window completes."""

    def __init__(self, geometry: tuple[tuple[int, int], ...], rows: int, cols: int):
        (bh, bw), (sh, sw), (dh, dw) = geometry  # block, stride, dilation
        self.span_w = 1
        for _ in range(bw - 1):
            self.span_w += dw
        span_h = 1
        for _ in range(bh - 1):
            span_h += dh
        self.rows, self.cols, self.sh, self.sw = rows, cols, sh, sw
        self.r = self.c = 0
        self.want_r, self.want_c = span_h - 1, self.span_w - 1

    def word(self) -> bool:
        if self.r >= self.rows:
            raise ContractError(f"more than {self.rows}x{self.cols} words reach a convolver")
        done = self.r == self.want_r and self.c == self.want_c
        if done:
            self.want_c += self.sw
        self.c += 1
        if self.c == self.cols:
            self.c = 0
            self.want_c = self.span_w - 1
            if self.r == self.want_r:
                self.want_r += self.sh
            self.r += 1
        return done


def _geometry(u: DecodedConv) -> tuple[tuple[int, int], ...]:
    return u.block, u.stride, u.dilation


def _output_shape(u: DecodedConv, rows: int, cols: int) -> tuple[int, int]:
    """(rows, cols) of a convolver's outputs: its line-buffer counters run over one whole input."""
    lb = _LineBuffer(_geometry(u), rows, cols)
    out_rows = out_cols = 0
    for _ in range(rows):
        in_row = 0
        for _ in range(cols):
            in_row += lb.word()
        if in_row:
            out_rows += 1
            out_cols = in_row
    if not out_rows:
        raise ContractError(f"convolver on tile {u.tile}: a {rows}x{cols} input has no window")
    return out_rows, out_cols


# ---------------------------------------------------------------------------------------------------
# units
# ---------------------------------------------------------------------------------------------------
class _Unit:
    """Something whose outputs leave it: they are pushed into the paths of its subscribers."""

    def __init__(self) -> None:
        self.subscribers: list[_Path] = []
        self.emitted = 0

    def emit(self, n: int) -> None:
        self.emitted += n
        for path in self.subscribers:
            path.push(n)


class _ReadDma:
    """A read stream: a word counter; requests enter the path memory -> routers -> tile."""

    def __init__(self, s: DecodedStream, path: _Path):
        self.s = s
        self.path = path
        self.taps: list[_Path] = []  # paths to the tiles taking the stream on its way
        self.words = s.rows * s.cols
        self.sent = 0
        self.watchers: list[_PsumDma] = []

    def beat(self) -> None:
        if self.sent < self.words:
            self.sent += 1
            self.path.push()
            for tap in self.taps:
                tap.push()
            for w in self.watchers:
                w.data_requested()


class _PsumDma:
    """An output-synchronous read stream: its own line-buffer counters follow the data DMA of the
    convolver it feeds, and it requests a word whenever that DMA requests a window's last word."""

    def __init__(self, s: DecodedStream, path: _Path, index: int):
        self.s = s
        self.path = path
        self.lb: _LineBuffer | None = None  # set when its convolver is wired up
        self.words = s.rows * s.cols
        self.sent = 0
        self.index = index

    def data_requested(self) -> None:
        assert self.lb is not None
        if self.lb.word():
            if self.sent >= self.words:
                raise ContractError(
                    f"pass {self.index}: tile {self.s.tile} partial sums do not match its windows "
                    f"(a {self.words}-word partial-sum stream)"
                )
            self.sent += 1
            self.path.push()


class _Conv(_Unit):
    """A convolver: alignment FIFO, line-buffer counters, the join with its partial sums, and the
    output pipeline (``CONV_LATENCY``, then ``MAP_LATENCY`` through a mapper at a chain's end).

    A packed convolver (``u.packed``) has a second partial-sum input and FIFO (lane 1) and a second
    output, :attr:`lane1`: both lanes' results of a window leave on the same cycle."""

    def __init__(self, u: DecodedConv, clock: _Clock, arch: ArchConfig, index: int):
        super().__init__()
        self.u = u
        self.index = index
        self.fifo_depth = arch.tile.fifo_depth
        if u.delay > self.fifo_depth:  # the alignment FIFO holds one word per cycle of delay
            raise ContractError(
                f"convolver on tile {u.tile}: an alignment delay of {u.delay} cycles does not fit its "
                f"{self.fifo_depth}-word FIFO"
            )
        self.input: _Path | None = None  # words arriving at the tile (stream or chain link)
        self.align = clock.line(u.delay)  # the alignment FIFO
        self.psum: _Path | None = None  # partial sums arriving (port stream or chain link)
        self.psum1: _Path | None = None  # lane 1's partial sums (packed convolvers)
        self.windows = clock.fifo(f"conv:{u.tile} window")
        self.sums = clock.fifo(f"conv:{u.tile} psum")
        self.sums1 = clock.fifo(f"conv:{u.tile} psum lane 1") if u.packed else None
        self.lane1 = _Unit() if u.packed else None  # lane 1's output: leaves with lane 0's
        self.conv_pipe = clock.line(CONV_LATENCY)
        self.map_pipe = clock.line(MAP_LATENCY) if u.act_tile >= 0 else None
        # a packed convolver's lane 1 goes through a mapper of its own
        self.map_pipe1 = clock.line(MAP_LATENCY) if u.act_tile >= 0 and u.packed else None
        self.lb: _LineBuffer | None = None
        self.accepted = 0
        self.mapped = 0
        self.mapped1 = 0
        self.macs = 0

    def joins(self) -> list[_Fifo]:
        """The FIFOs a window waits in for its partial sums (the window's first)."""
        if self.psum is None:
            return [self.windows]
        if self.sums1 is None:
            return [self.windows, self.sums]
        return [self.windows, self.sums, self.sums1]

    def step(self) -> None:
        assert self.input is not None and self.lb is not None
        self.align.push(self.input.take())
        for _ in range(self.align.take()):
            self.accepted += 1
            if self.lb.word():
                self.windows.push()
        fired = False
        if self.psum is None:  # bias start or pooling: a window goes on as soon as it is complete
            if self.windows.ages:
                self.windows.pop()
                fired = True
        else:
            self.sums.push(self.psum.take())
            if self.sums1 is not None:
                assert self.psum1 is not None
                self.sums1.push(self.psum1.take())
            heads = self.joins()
            if all(f.ages for f in heads):
                ages = [f.pop() for f in heads]
                apart = max(ages) - min(ages)
                if apart > self.fifo_depth:
                    raise ContractError(
                        f"pass {self.index}: tile {self.u.tile}: data and partial sum are {apart} "
                        f"cycles apart, more than the {self.fifo_depth}-word FIFO holds"
                    )
                fired = True
            for f in heads:
                if len(f.ages) > self.fifo_depth:
                    raise ContractError(
                        f"pass {self.index}: tile {self.u.tile}: {len(f.ages)} words wait in the "
                        f"{self.fifo_depth}-word FIFO ({f.name})"
                    )
        if fired:
            self.conv_pipe.push()
            self.macs += self.u.block[0] * self.u.block[1] * (2 if self.u.packed else 1)
        n = n1 = self.conv_pipe.take()
        if self.map_pipe is not None:
            self.mapped += n
            self.map_pipe.push(n)
            n = self.map_pipe.take()
        self.emit(n)
        if self.lane1 is not None:
            if self.map_pipe1 is not None:
                self.mapped1 += n1
                self.map_pipe1.push(n1)
                n1 = self.map_pipe1.take()
            self.lane1.emit(n1)


class _Mapper(_Unit):
    def __init__(self, tile: int, clock: _Clock):
        super().__init__()
        self.tile = tile
        self.input: _Path | None = None
        self.pipe = clock.line(MAP_LATENCY)
        self.accepted = 0

    def step(self) -> None:
        assert self.input is not None
        n = self.input.take()
        self.accepted += n
        self.pipe.push(n)
        self.emit(self.pipe.take())


class _Alu(_Unit):
    def __init__(self, tile: int, clock: _Clock):
        super().__init__()
        self.tile = tile
        self.inputs: list[_Path] = []
        self.heads = [clock.fifo(f"alu:{tile} a"), clock.fifo(f"alu:{tile} b")]
        self.pipe = clock.line(ALU_LATENCY)
        self.fired = 0

    def step(self) -> None:
        for path, f in zip(self.inputs, self.heads, strict=True):
            f.push(path.take())
        if all(f.ages for f in self.heads):
            for f in self.heads:
                f.pop()
            self.fired += 1
            self.pipe.push()
        self.emit(self.pipe.take())


class _Copy(_Unit):
    """A read stream sent on unchanged to the write stream of its tile."""

    def __init__(self) -> None:
        super().__init__()
        self.input: _Path | None = None

    def step(self) -> None:
        assert self.input is not None
        self.emit(self.input.take())


class _Pool(_Unit):
    """A pooling unit: window counters over its tile's output, then ``POOL_LATENCY``."""

    def __init__(self, q: DecodedPool, clock: _Clock):
        super().__init__()
        self.q = q
        self.input: _Path | None = None
        self.lb = _LineBuffer(((q.size, q.size), (q.size, q.size), (1, 1)), q.rows, q.cols)
        self.pipe = clock.line(POOL_LATENCY)
        self.accepted = 0

    def step(self) -> None:
        assert self.input is not None
        for _ in range(self.input.take()):
            self.accepted += 1
            if self.lb.word():
                self.pipe.push()
        self.emit(self.pipe.take())


class _Sink:
    """Words arriving for nobody (a stream no unit reads) leave the grid here."""

    def __init__(self, path: _Path):
        self.path = path

    def step(self) -> None:
        self.path.take()


class _WritePort:
    """A write DMA, or (``s`` None) a lane's accumulation buffer storing ``words`` outputs."""

    def __init__(self, s: DecodedStream | None, path: _Path, words: int = 0):
        self.s = s
        self.path = path
        self.words = s.words if s is not None else words
        self.written = 0
        self.last = -1

    def step(self, now: int) -> None:
        n = self.path.take()
        if n:
            self.written += n
            self.last = now


def _tile_of(ref: str) -> int | None:
    return int(ref.split(":")[1]) if ref.startswith("tile:") else None


# ---------------------------------------------------------------------------------------------------
# the pass
# ---------------------------------------------------------------------------------------------------
def naive_pass(lp: LoadedPass, arch: ArchConfig) -> NaiveTiming:
    """Clock one pass cycle by cycle from cycle 0 until nothing moves any more."""
    p: DecodedPass = lp.decoded
    h = arch.tile.router_latency
    lat = arch.memory.latency_cycles
    P, Q = p.rate
    if not 0 < P <= Q:
        raise ContractError(f"pass {p.index}: beat rate {P}/{Q} is not in (0, 1]")
    clock = _Clock()

    # -- read streams -------------------------------------------------------------------------------
    dmas: list[_ReadDma] = []
    psum_dmas: dict[int, _PsumDma] = {}
    psum_dmas1: dict[int, _PsumDma] = {}  # lane 1 of packed convolvers
    free_data: dict[int, list[_ReadDma]] = {}  # tile -> its data streams no unit took yet
    for s in p.streams:
        if s.direction != "read":
            continue
        path = _Path(clock, [lat] + [h] * (len(s.route) - 1))
        if s.role == "psum":
            (psum_dmas1 if s.lane else psum_dmas)[s.tile] = _PsumDma(s, path, p.index)
        else:
            dma = _ReadDma(s, path)
            dmas.append(dma)
            free_data.setdefault(s.tile, []).append(dma)
            for t in s.taps:  # the same words, taken on the way at tile t
                tap = _ReadDma(s, _Path(clock, [lat] + [h] * s.route.index(t)))
                dma.taps.append(tap.path)
                free_data.setdefault(t, []).append(tap)

    # -- units and their inputs ---------------------------------------------------------------------
    producers: dict[int, _Unit] = {}  # tile -> the unit whose outputs leave that tile
    writes: list[_WritePort] = []  # write DMAs and accumulation buffers being stored
    convs = {u.tile: _Conv(u, clock, arch, p.index) for u in p.convs}
    feeders: dict[int, int] = {}  # pooling tile -> tile of the convolver feeding it
    for u in p.convs:
        dst = _tile_of(u.to)
        if dst is not None and dst in convs and convs[dst].u.psum_from != f"tile:{u.tile}":
            feeders[dst] = u.tile
    shapes: dict[int, tuple[int, int]] = {}  # tile -> (rows, cols) of a convolver's outputs
    order: list[_Conv] = []  # clock order: every convolver after those it takes words from
    pending = list(p.convs)
    while pending:
        placed = False
        for u in list(pending):
            src, feeder = _tile_of(u.psum_from), feeders.get(u.tile)
            if (src is not None and src not in shapes) or (feeder is not None and feeder not in shapes):
                continue
            cv = convs[u.tile]
            dma: _ReadDma | None = None
            if feeder is not None:
                rows, cols = shapes[feeder]
                cv.input = _Path(clock, [h])
                convs[feeder].subscribers.append(cv.input)
            else:
                if not free_data.get(u.tile):
                    raise ContractError(f"pass {p.index}: the convolver on tile {u.tile} has no data stream")
                dma = free_data[u.tile].pop(0)
                rows, cols = dma.s.rows, dma.s.cols
                cv.input = dma.path
            cv.lb = _LineBuffer(_geometry(u), rows, cols)
            shapes[u.tile] = _output_shape(u, rows, cols)
            if src is not None:
                if src not in convs:
                    raise ContractError(f"pass {p.index}: tile {u.tile} takes partial sums from no convolver")
                cv.psum = _Path(clock, [h])
                convs[src].subscribers.append(cv.psum)
                if u.packed:  # lane 1's partial sums: the source's lane-1 output, over a link of its own
                    lane1 = convs[src].lane1
                    if lane1 is None:
                        raise ContractError(
                            f"pass {p.index}: tile {u.tile} lane 1 takes partial sums from tile {src}, "
                            "which packs no second kernel"
                        )
                    cv.psum1 = _Path(clock, [h])
                    lane1.subscribers.append(cv.psum1)
            elif u.psum_from == "port":
                for lane, dmas_of_lane in enumerate((psum_dmas, psum_dmas1)[: 2 if u.packed else 1]):
                    if u.tile not in dmas_of_lane or dma is None:
                        which = " for lane 1" if lane else ""
                        raise ContractError(f"pass {p.index}: tile {u.tile} has no partial-sum stream{which}")
                    pd = dmas_of_lane[u.tile]
                    pd.lb = _LineBuffer(_geometry(u), rows, cols)
                    dma.watchers.append(pd)
                    if lane:
                        cv.psum1 = pd.path
                    else:
                        cv.psum = pd.path
            # the tile's accumulation buffer: a partial sum there when its window completes (as a bias
            # start, no input to wait for); outputs stored into it
            if "acc" in (u.psum_from, u.to) and shapes[u.tile][0] * shapes[u.tile][1] > arch.tile.acc_words:
                raise ContractError(
                    f"pass {p.index}: tile {u.tile} uses more words than its accumulation buffer holds"
                )
            if u.to == "acc":  # into the tile's accumulation buffer(s), ACC_LATENCY after leaving
                for unit in (cv, cv.lane1) if cv.lane1 is not None else (cv,):
                    writer = _WritePort(None, _Path(clock, [ACC_LATENCY]), u.acc_words)
                    unit.subscribers.append(writer.path)
                    writes.append(writer)
            else:
                producers[u.tile] = cv
            order.append(cv)
            pending.remove(u)
            placed = True
        if not placed:
            raise ContractError(f"pass {p.index}: a convolver waits for data it never gets")
    units: list = list(order)
    mappers: list[_Mapper] = []
    for m in p.maps:
        if any(u.act_tile == m.tile for u in p.convs):
            continue
        mp = _Mapper(m.tile, clock)
        if not free_data.get(m.tile):
            raise ContractError(f"pass {p.index}: the mapper on tile {m.tile} has no data stream")
        mp.input = free_data[m.tile].pop(0).path
        producers[m.tile] = mp
        mappers.append(mp)
        units.append(mp)
    alus: list[_Alu] = []
    for a in p.alus:
        alu = _Alu(a.tile, clock)
        if len(free_data.get(a.tile, [])) < 2:
            raise ContractError(f"pass {p.index}: the ALU on tile {a.tile} lacks an input stream")
        alu.inputs = [free_data[a.tile].pop(0).path, free_data[a.tile].pop(0).path]
        producers[a.tile] = alu
        alus.append(alu)
        units.append(alu)
    pools: list[_Pool] = []
    pools1: list[_Pool] = []  # lane 1's pooling units
    # tile -> the unit whose lane-1 outputs leave that tile (a packed convolver, or lane 1's pooling unit)
    producers1: dict[int, _Unit] = {
        t: cv.lane1 for t, cv in convs.items() if cv.lane1 is not None and cv.u.to != "acc"
    }
    for q in p.pools:
        if q.tile not in producers or shapes.get(q.tile, (q.rows, q.cols)) != (q.rows, q.cols):
            raise ContractError(
                f"pass {p.index}: the pooling unit on tile {q.tile} does not get the {q.rows}x{q.cols} map "
                "it is configured for"
            )
        # lane 0's pooling unit, and a packed convolver's lane 1's own, configured alike
        for outputs, made in ((producers, pools), (producers1, pools1)):
            if q.tile in outputs:
                pool = _Pool(q, clock)
                pool.input = _Path(clock, [])
                outputs[q.tile].subscribers.append(pool.input)
                outputs[q.tile] = pool
                made.append(pool)
                units.append(pool)
    for s in p.streams:
        if s.direction != "write":
            continue
        wp = _WritePort(s, _Path(clock, [h] * (len(s.route) - 1) + [WRITE_LATENCY]))
        if s.lane:  # the lane-1 output of the tile's packed convolver
            lane1 = producers1.get(s.tile)
            if lane1 is None:
                raise ContractError(
                    f"pass {p.index}: write stream from lane 1 of tile {s.tile} has nothing to write"
                )
            lane1.subscribers.append(wp.path)
        elif s.tile in producers:
            producers[s.tile].subscribers.append(wp.path)
        elif free_data.get(s.tile):
            copy = _Copy()
            copy.input = free_data[s.tile].pop(0).path
            copy.subscribers.append(wp.path)
            units.append(copy)
        else:
            raise ContractError(f"pass {p.index}: write stream from tile {s.tile} has nothing to write")
        writes.append(wp)
    for left in free_data.values():
        units += [_Sink(d.path) for d in left]

    # -- the clock ----------------------------------------------------------------------------------
    n_words, per_word = len(lp.words), arch.config_bus.cycles_per_word
    words_in = sub = 0  # configuration counter: words received, cycles into the current word
    configuring = True
    config_cycles = stream_cycles = stalls = beats = acc = 0
    now = 0
    while True:
        if configuring:
            config_cycles += 1
            sub += 1
            if sub == per_word:
                sub = 0
                words_in += 1
                configuring = words_in < n_words
        else:
            if beats < p.beats:
                stream_cycles += 1
                acc += P
                if acc >= Q:
                    acc -= Q
                    beats += 1
                    for dma in dmas:
                        dma.beat()
                else:
                    stalls += 1
            for unit in units:
                unit.step()
            for wp in writes:
                wp.step(now)
            if beats == p.beats and clock.idle():
                break
        clock.tick()
        now += 1

    # -- what must have happened --------------------------------------------------------------------
    for dma in dmas:
        if dma.sent != dma.words:
            raise ContractError(
                f"pass {p.index}: a read stream of {dma.words} words in a pass of {p.beats} beats"
            )
    for pd in [*psum_dmas.values(), *psum_dmas1.values()]:
        if pd.sent != pd.words:
            lane = f" lane {pd.s.lane}" if pd.s.lane else ""
            raise ContractError(
                f"pass {p.index}: tile {pd.s.tile}{lane} partial sums do not match its windows"
            )
    for cv in order:
        if any(f.ages for f in cv.joins()):
            raise ContractError(f"pass {p.index}: tile {cv.u.tile}: windows and partial sums do not pair up")
    for wp in writes:
        if wp.written != wp.words:
            what = "write stream" if wp.s is not None else "accumulation buffer"
            raise ContractError(f"pass {p.index}: {what} of {wp.words} words gets {wp.written}")
    last_write = max((wp.last for wp in writes), default=-1)
    busy: dict[str, int] = {}
    peaks: dict[str, int] = {}
    for cv in order:
        busy[f"conv:{cv.u.tile}"] = busy.get(f"conv:{cv.u.tile}", 0) + cv.accepted
        if cv.u.act_tile >= 0:
            key = f"map:{cv.u.act_tile}"
            busy[key] = busy.get(key, 0) + cv.mapped
            if cv.map_pipe1 is not None:
                busy[f"map1:{cv.u.act_tile}"] = cv.mapped1
        if cv.psum is not None:
            peaks[f"conv:{cv.u.tile}"] = max(f.peak for f in cv.joins())
    for mp in mappers:
        busy[f"map:{mp.tile}"] = busy.get(f"map:{mp.tile}", 0) + mp.accepted
    for alu in alus:
        busy[f"alu:{alu.tile}"] = busy.get(f"alu:{alu.tile}", 0) + alu.fired
    for pool in pools:
        busy[f"pool:{pool.q.tile}"] = pool.accepted
    for pool in pools1:
        busy[f"pool1:{pool.q.tile}"] = pool.accepted
    return NaiveTiming(
        index=p.index,
        kind=p.kind,
        cycles=last_write + 1 if last_write >= 0 else config_cycles,
        config_cycles=config_cycles,
        stream_cycles=stream_cycles,
        memory_stall_cycles=stalls,
        beats=beats,
        busy=busy,
        fifo_peak=peaks,
        macs=sum(cv.macs for cv in order),
        last_writes=tuple(wp.last for wp in writes if wp.s is not None),
    )
