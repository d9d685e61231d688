"""The cycle model: a program's timing, pass by pass, exactly as ``docs/architecture.md`` §13 defines it.

Timing is computed *per word* (an event time for every word of every stream, as numpy vectors)
from the decoded configuration words of the pass and the target's latencies, never from the
compiler's estimate. The grid is statically scheduled, so each word's time is a max-plus
function of the times of the words it depends on: a beat generator issues the DMA's words at the
pass's planned rate, words cross routers at a fixed latency, a convolver's output for a window
leaves ``CONV_LATENCY`` cycles after both the word completing the window (after the alignment
FIFO's delay) and its partial sum have arrived, and so on. That is the same number the per-cycle
reference model (``sim/naive.py``) reaches by stepping every register once per cycle; the tests
hold the two equal on every pass of many programs.

Numbers come from ``sim/functional.py`` (bit-exact to the golden executor); this module adds
cycles, stall causes, busy cycles and the event counts of the power model (``sim/events.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from nfc.arch import ArchConfig
from nfc.compiler.binary import LoadedPass, LoadedProgram, as_loaded
from nfc.compiler.decode import DecodedConv, DecodedPass, DecodedStream, conv_order
from nfc.compiler.grid import Lowered
from nfc.compiler.program import HostStep, Program
from nfc.compiler.timing import (
    ACC_LATENCY,
    ALU_LATENCY,
    CONV_LATENCY,
    MAP_LATENCY,
    POOL_LATENCY,
    WRITE_LATENCY,
)
from nfc.errors import NfcError
from nfc.sim.events import Events
from nfc.sim.functional import ProgramRun, run_pass, start_run

__all__ = [
    "ContractError",
    "PassTiming",
    "SimResult",
    "beat_times",
    "time_pass",
    "time_steps",
    "time_program",
    "simulate",
]


class ContractError(NfcError):
    """A program that the hardware cannot run as the timing contract says (a compiler bug)."""


def beat_times(start: int, beats: int, rate: tuple[int, int]) -> np.ndarray:
    """Cycles of beats ``0 .. beats-1``: an accumulator gains ``P`` per cycle from ``start`` and a
    beat fires when it reaches ``Q`` (then loses ``Q``), so beat ``i`` is at
    ``start + ceil((i + 1) Q / P) - 1``."""
    p, q = rate
    i = np.arange(1, beats + 1, dtype=np.int64)
    return start + (i * q + p - 1) // p - 1


@dataclass(frozen=True, slots=True)
class PassTiming:
    """The cycle model's account of one pass.

    ``cycles`` = ``config_cycles`` + ``stream_cycles`` (first to last beat) + ``drain_cycles``
    (pipeline fill and drain after the last beat). ``config_cycles`` is the part of the pass's
    configuration that is not hidden: ``hidden_config_cycles`` of it went over the bus while the
    previous pass streamed (docs/architecture.md §13 item 1), and the two add up to the pass's
    configuration words times ``config_bus.cycles_per_word``. ``memory_stall_cycles``: cycles between the
    first and the last beat on which no beat fired because the pass's memory share (its beat
    rate) was exhausted. ``busy``: per operator (``conv:<tile>``, ``map:<tile>``, ``alu:<tile>``;
    ``map1:<tile>``, ``pool1:<tile>``: a packed convolver's lane-1 mapper and pooling unit),
    cycles on which it accepted a word.
    """

    index: int
    kind: str
    layers: tuple[str, ...]
    cycles: int
    config_cycles: int
    stream_cycles: int
    drain_cycles: int
    memory_stall_cycles: int
    backpressure_stall_cycles: int
    beats: int
    useful_macs: int
    events: Events
    busy: dict[str, int]
    estimate: int  # the compiler's analytical estimate, for comparison only
    hidden_config_cycles: int = 0

    @property
    def streaming_cycles(self) -> int:
        """Cycles from the pass's first streaming cycle to its end: how long the next pass's
        configuration can go over the bus behind it."""
        return self.cycles - self.config_cycles


@dataclass
class SimResult:
    """A simulated run: outputs, memory and per-pass timing (``sim/report.py`` makes the totals)."""

    run: ProgramRun
    passes: list[PassTiming]
    host_steps: list[HostStep]
    arch: ArchConfig

    @property
    def outputs(self) -> dict[str, np.ndarray]:
        return self.run.outputs


def _span_inside(first: int, n: int, step: int, size: int) -> int:
    """How many of ``first + i * step`` (``0 <= i < n``, ``step >= 1``) lie in ``[0, size)``."""
    lo = 0 if first >= 0 else (-first + step - 1) // step  # the first i at or past 0
    hi = min(n - 1, (size - 1 - first) // step) if first < size else -1  # the last i before size
    return max(0, hi - lo + 1)


def _inside(s: DecodedStream) -> int:
    """Words of a read stream that come from memory (not the DMA's virtual border)."""
    H, W = s.map_shape
    pt, pl, _, _ = s.pads
    return _span_inside(s.r0 - pt, s.rows, s.step[0], H) * _span_inside(s.c0 - pl, s.cols, s.step[1], W)


def _windows(u: DecodedConv, rows: int, cols: int) -> tuple[int, int, np.ndarray]:
    """(OH, OW, index of the input word completing each window, row-major over the output)."""
    (bh, bw), (sh, sw), (dh, dw) = u.block, u.stride, u.dilation
    span_h, span_w = (bh - 1) * dh + 1, (bw - 1) * dw + 1
    oh, ow = (rows - span_h) // sh + 1, (cols - span_w) // sw + 1
    if oh < 1 or ow < 1:
        raise ContractError(
            f"convolver on tile {u.tile}: a {rows}x{cols} input has no {span_h}x{span_w} window"
        )
    return oh, ow, _window_ends(oh, ow, cols, (span_h, span_w), (sh, sw))


def _window_ends(oh: int, ow: int, cols: int, span: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """Index of the input word (row-major, ``cols`` per row) completing each of ``oh x ow`` windows."""
    y = np.arange(oh, dtype=np.int64) * stride[0] + span[0] - 1
    x = np.arange(ow, dtype=np.int64) * stride[1] + span[1] - 1
    return (y[:, None] * cols + x[None, :]).reshape(-1)


def time_pass(lp: LoadedPass, arch: ArchConfig, behind: int = 0) -> PassTiming:
    """The timing of one pass (``docs/architecture.md`` §13).

    ``behind``: cycles the previous pass streamed while this pass's configuration words could go
    over the bus (its :attr:`PassTiming.streaming_cycles`; 0 for the first pass of a program and
    after a host step). That much of the configuration is hidden, and every time in the pass moves
    earlier by it; :func:`time_steps` chains the passes of a program."""
    p: DecodedPass = lp.decoded
    h = arch.tile.router_latency
    lat = arch.memory.latency_cycles
    fifo = arch.tile.fifo_depth
    config = len(lp.words) * arch.config_bus.cycles_per_word
    if not 0 < p.rate[0] <= p.rate[1]:
        raise ContractError(f"pass {p.index}: beat rate {p.rate[0]}/{p.rate[1]} is not in (0, 1]")
    for u in p.convs:
        if u.delay > fifo:
            raise ContractError(
                f"pass {p.index}: tile {u.tile}: an alignment delay of {u.delay} cycles needs more than the "
                f"{fifo}-word FIFO"
            )
    beats = beat_times(config, p.beats, p.rate)
    wb = arch.word_bytes
    macs = mapper_ops = alu_ops = fifo_words = hops = read_bytes = write_bytes = 0
    busy: dict[str, int] = {}
    # -- read streams: arrival of every word at its tile ---------------------------------------------
    data: dict[int, list[tuple[DecodedStream, np.ndarray]]] = {}
    psum_streams: dict[int, DecodedStream] = {}
    psum_streams1: dict[int, DecodedStream] = {}  # lane 1 of packed convolvers
    for s in p.streams:
        if s.direction != "read":
            continue
        n_hops = len(s.route) - 1
        read_bytes += _inside(s) * wb
        hops += s.words * n_hops
        if s.role == "psum":
            (psum_streams1 if s.lane else psum_streams)[s.tile] = s
        else:
            n = s.rows * s.cols
            if n > p.beats:
                raise ContractError(
                    f"pass {p.index}: a read stream of {n} words in a pass of {p.beats} beats"
                )
            data.setdefault(s.tile, []).append((s, beats[:n] + lat + n_hops * h))
            for t in s.taps:  # taken on the way, after the hops to that tile
                data.setdefault(t, []).append((s, beats[:n] + lat + s.route.index(t) * h))
    results: dict[int, np.ndarray] = {}  # tile -> time each word of its outgoing stream leaves it
    results1: dict[int, np.ndarray] = {}  # the same for lane 1 of a packed convolver
    shapes: dict[int, tuple[int, int]] = {}  # tile -> (rows, cols) of that outgoing stream
    try:
        order = conv_order(p)
    except ValueError as exc:
        raise ContractError(str(exc)) from None
    acc_end = 0  # 1 + the cycle of the last word stored in an accumulation buffer
    for u, feeder, src in order:
        if feeder is not None:  # a pooling convolver reading the previous unit's output
            rows, cols = shapes[feeder]
            t_in = results[feeder] + h + u.delay
            hops += t_in.size
        elif data.get(u.tile):
            s, t_in = data[u.tile].pop(0)
            rows, cols = s.rows, s.cols
            t_in = t_in + u.delay
            if u.delay:
                fifo_words += t_in.size
        else:
            raise ContractError(f"pass {p.index}: the convolver on tile {u.tile} has no data stream")
        busy[f"conv:{u.tile}"] = busy.get(f"conv:{u.tile}", 0) + t_in.size
        oh, ow, last = _windows(u, rows, cols)
        ready = t_in[last]
        lanes = 2 if u.packed else 1
        if u.psum_from == "acc" or u.to == "acc":
            _check_acc(p, u, oh * ow, arch)
        psums = []  # the arrival of each lane's partial sums
        if src is not None:
            if u.packed and src not in results1:
                raise ContractError(
                    f"pass {p.index}: the packed convolver on tile {u.tile} chains from tile {src}, "
                    "which packs no second kernel"
                )
            psums = [results[src] + h]  # both lanes: a packed convolver's lanes leave together
            hops += psums[0].size * lanes
        elif u.psum_from == "acc":
            # the tile's accumulation buffer: partial sum k is there when window k completes
            fifo_words += oh * ow * lanes
        elif u.psum_from == "port":
            for lane, streams in enumerate((psum_streams, psum_streams1)[:lanes]):
                ps = streams.get(u.tile)
                if ps is None or ps.rows * ps.cols != oh * ow:
                    raise ContractError(
                        f"pass {p.index}: tile {u.tile} lane {lane} partial sums do not match its windows"
                    )
                # output synchronous: partial sum k is requested on the beat of the word completing window k
                psums.append(beats[last] + lat + (len(ps.route) - 1) * h)
        if psums:
            # the window and its partial sums join when the last of them is in; each waits for it
            # in its FIFO
            join = first = ready
            for psum in psums:
                join, first = np.maximum(join, psum), np.minimum(first, psum)
            skew = int((join - first).max()) if join.size else 0
            if skew > fifo:
                raise ContractError(
                    f"pass {p.index}: tile {u.tile}: data and partial sum are {skew} cycles apart, "
                    f"more than the {fifo}-word FIFO holds (the program needs a different alignment delay)"
                )
            ready = join
        out = ready + CONV_LATENCY
        macs += u.block[0] * u.block[1] * oh * ow * lanes
        if u.act_tile >= 0:  # packed: each lane through its own mapper, configured alike
            out = out + MAP_LATENCY
            mapper_ops += out.size * lanes
            busy[f"map:{u.act_tile}"] = busy.get(f"map:{u.act_tile}", 0) + out.size
            if lanes == 2:
                busy[f"map1:{u.act_tile}"] = out.size
        if u.to == "acc":  # stored in the tile's buffer, ACC_LATENCY after leaving; the pass waits for it
            fifo_words += out.size * lanes
            if out.size:
                acc_end = max(acc_end, int(out.max()) + ACC_LATENCY + 1)
            continue
        results[u.tile] = out
        shapes[u.tile] = (oh, ow)
        if u.packed:
            results1[u.tile] = out
    for m in p.maps:
        if any(u.act_tile == m.tile for u in p.convs):
            continue
        s, t_in = data[m.tile].pop(0)
        results[m.tile] = t_in + MAP_LATENCY
        mapper_ops += t_in.size
        busy[f"map:{m.tile}"] = busy.get(f"map:{m.tile}", 0) + t_in.size
    for a in p.alus:
        (_, ta), (_, tb) = data[a.tile].pop(0), data[a.tile].pop(0)
        results[a.tile] = np.maximum(ta, tb) + ALU_LATENCY
        alu_ops += ta.size
        busy[f"alu:{a.tile}"] = busy.get(f"alu:{a.tile}", 0) + ta.size
    for q in p.pools:  # a pooled word leaves POOL_LATENCY after the word completing its window
        if q.tile not in results or shapes.get(q.tile, (q.rows, q.cols)) != (q.rows, q.cols):
            raise ContractError(
                f"pass {p.index}: the pooling unit on tile {q.tile} does not get the {q.rows}x{q.cols} map "
                "it is configured for"
            )
        t_in = results[q.tile]
        oh, ow = q.rows // q.size, q.cols // q.size
        ends = _window_ends(oh, ow, q.cols, (q.size, q.size), (q.size, q.size))
        results[q.tile] = t_in[ends] + POOL_LATENCY
        shapes[q.tile] = (oh, ow)
        # a packed convolver's lane 1 has a pooling unit of its own, configured alike: the same times
        alu_ops += t_in.size  # the power model counts a pooled input word as an ALU operation
        busy[f"pool:{q.tile}"] = t_in.size
        if q.tile in results1:
            results1[q.tile] = results[q.tile]
            alu_ops += t_in.size
            busy[f"pool1:{q.tile}"] = t_in.size
    # -- write streams ---------------------------------------------------------------------------------
    end = max(config, acc_end)  # a pass with no write at all (none exist) ends after its configuration
    for s in p.streams:
        if s.direction != "write":
            continue
        if s.lane:
            if s.tile not in results1:
                raise ContractError(
                    f"pass {p.index}: write stream from lane 1 of tile {s.tile} has nothing to write"
                )
            t_out = results1[s.tile]
        elif s.tile in results:
            t_out = results[s.tile]
        elif data.get(s.tile):
            t_out = data[s.tile].pop(0)[1]  # a copy: the read stream goes straight out
        else:
            raise ContractError(f"pass {p.index}: write stream from tile {s.tile} has nothing to write")
        if t_out.size != s.words:
            raise ContractError(f"pass {p.index}: write stream of {s.words} words gets {t_out.size}")
        n_hops = len(s.route) - 1
        hops += s.words * n_hops
        write_bytes += s.words * wb
        if t_out.size:
            end = max(end, int(t_out.max()) + n_hops * h + WRITE_LATENCY + 1)
    last_beat = int(beats[-1]) if beats.size else config - 1
    stream = last_beat + 1 - config
    hidden = min(config, max(0, behind))
    events = Events(
        cycles=end - hidden,
        macs=macs,
        mapper_ops=mapper_ops,
        alu_ops=alu_ops,
        fifo_words=fifo_words,
        router_hops=hops,
        dram_bytes_read=read_bytes,
        dram_bytes_written=write_bytes,
        config_words=len(lp.words),
    )
    return PassTiming(
        index=p.index,
        kind=p.kind,
        layers=lp.layers,
        cycles=end - hidden,
        config_cycles=config - hidden,
        stream_cycles=stream,
        drain_cycles=end - config - stream,
        memory_stall_cycles=stream - p.beats,
        backpressure_stall_cycles=0,
        beats=p.beats,
        useful_macs=lp.macs,
        events=events,
        busy=busy,
        estimate=int(lp.estimate.get("total", 0)),
        hidden_config_cycles=hidden,
    )


def _check_acc(p: DecodedPass, u: DecodedConv, windows: int, arch: ArchConfig) -> None:
    """A unit that reads or stores its tile's accumulation buffer: the buffer holds its ``windows``
    words (``tile.acc_words`` per lane), and a store (CONV_ACC) is of exactly that many."""
    if windows > arch.tile.acc_words:
        have = f"{arch.tile.acc_words}-word" if arch.tile.acc_words else "no"
        raise ContractError(
            f"pass {p.index}: tile {u.tile} keeps {windows} partial sums in its accumulation buffer; the "
            f"target has {have} buffers (tile.acc_words)"
        )
    if u.to == "acc" and u.acc_words != windows:
        raise ContractError(
            f"pass {p.index}: tile {u.tile} stores {u.acc_words} words in its accumulation buffer "
            f"(CONV_ACC) but makes {windows} outputs"
        )


def time_steps(
    steps, arch: ArchConfig, progress: Callable[[int, int], None] | None = None, run=None
) -> list[PassTiming]:
    """The timing of every pass of ``steps`` (a program's passes and host steps, in order), each pass
    configured behind the one before it unless a host step comes between them (the control
    processor runs the host step first, then sends the next pass). ``run(step)``, if given, is
    called for every step (the functional executor, for :func:`simulate`)."""
    out: list[PassTiming] = []
    behind = 0
    total = len(steps)
    for i, step in enumerate(steps):
        if run is not None:
            run(step)
        if isinstance(step, HostStep):
            behind = 0
        else:
            t = time_pass(step, arch, behind)
            out.append(t)
            behind = t.streaming_cycles
        if progress is not None:
            progress(i + 1, total)
    return out


def time_program(
    program: Program | LoadedProgram, arch: ArchConfig, progress: Callable[[int, int], None] | None = None
) -> list[PassTiming]:
    """The timing of every pass, without computing any number: the grid is statically scheduled, so
    cycles do not depend on the data (``simulate`` gives the same timings with the outputs)."""
    prog = as_loaded(program)
    _check_target(prog, arch)
    return time_steps(prog.steps, arch, progress)


def _check_target(prog: LoadedProgram, arch: ArchConfig) -> None:
    if prog.target != arch.name:
        raise NfcError(
            f"the program was compiled for target {prog.target!r}, not {arch.name!r}; "
            f"simulate it with --target {prog.target} or compile it again"
        )


def simulate(
    program: Program | LoadedProgram,
    lowered: Lowered,
    inputs: Mapping[str, np.ndarray],
    arch: ArchConfig,
    progress: Callable[[int, int], None] | None = None,
) -> SimResult:
    """Run ``program`` on ``inputs`` (ONNX-shaped floats): numbers from the functional executor,
    cycles from :func:`time_pass`. ``progress(done, total)`` is called as steps complete."""
    prog = as_loaded(program)
    _check_target(prog, arch)
    state = start_run(prog, lowered, inputs)
    timings = time_steps(prog.steps, arch, progress, run=lambda step: run_pass(state, step))
    hosts = [s for s in prog.steps if isinstance(s, HostStep)]
    return SimResult(state.finish(), timings, hosts, arch)
