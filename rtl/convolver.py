"""The convolver: line buffers, a K x K window of multipliers (or comparators), and the join with
the partial sums.

What it computes (``sim/functional.py``, ``_window`` and ``_run_pass``): for window ``k`` of its
``rows x cols`` input (row-major, see :mod:`nfc.rtl.window`),

* mac: ``acc`` = the exact sum of weight x word over the window's taps (``accumulator_bits``
  wide); ``out = sat(p + round_shift(acc, shift))`` with ``p`` = partial-sum word ``k`` if
  ``use_psum`` else ``bias``;
* max: ``out = max(p, window maximum)`` with ``p`` = partial-sum word ``k`` if ``use_psum``, else
  the most negative word;
* then, if ``apply_out_shift``: ``out = sat(round_shift(out, out_shift))`` (a chain's last
  convolver writing to a port; both modes, as ``sim/functional.py`` does).

``round_shift`` and ``sat`` are those of :mod:`nfc.numerics` (round half up; clamp to a word).

Packing (``tile.lanes = 2``, ``packed`` set; mac mode, blocks of at most ``m x m``,
``m = arch.packed_size``): two kernels over one shared window, each with its own output. Lane 0
is the unpacked convolver on the top-left ``m x m`` cells; lane 1's tap ``t = q' * m + n'`` uses the
multiplier and kernel slot of cell ``lane_cells(K, m)[t]`` (a 2:1 mux picks that cell's word; the
array keeps its K x K multipliers). Lane 1: the same formula with its own bias (``bias1``) or
partial sums (``psum1``); shift, out_shift and use_psum are shared.

When (``docs/architecture.md`` section 13, item 4): with ``o.ready`` high, output ``k`` is valid on
``o`` on cycle ``max(accept of data word j(k), accept of partial-sum word k) + CONV_LATENCY``
(``accept of j(k) + CONV_LATENCY`` without partial sums; ``CONV_LATENCY`` = 3, defined in
``nfc.compiler.timing``), ``j(k)`` being the word that completes window ``k``. The pipeline:

* cycle ``t``: word accepted; its column of the window is complete at once: the word itself and
  the words above it, read from the line buffer on the cycle before (a read port per tap row,
  addressed with the word expected next); products (or masked taps) registered;
* ``t + 1``: adder tree (or maximum), rounded and clamped, written into the window FIFO;
* ``t + 2`` or later: the join: the window's value and its partial sum (from a FIFO the partial
  sum entered on cycle ``t_p``; readable from ``t_p + 2``) are combined, rounded and saturated
  into the output register;
* ``max(t, t_p) + 3``: the output is valid.

Packed, both outputs of window ``k`` are valid on the same cycle, ``max(accept of j(k), accept of
psum word k, accept of psum1 word k) + CONV_LATENCY`` (the partial sums only with ``use_psum``).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from nfc.arch import ArchConfig
from nfc.rtl.window import WindowCounter

__all__ = ["Convolver", "PIPELINE_SLACK", "lane_cells", "tap_order"]

#: Entries each join FIFO holds beyond ``tile.fifo_depth``: the words the pipeline keeps around a
#: join (the contract's join is instantaneous; the hardware's takes these cycles). With this slack
#: no valid schedule ever stalls an input.
PIPELINE_SLACK = 3


def _clamp(v: Value, bits: int) -> Value:
    """``v`` clamped to the ``bits``-bit signed range."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(v > hi, hi, Mux(v < lo, lo, v))


def _round_shift_clamp(m: Module, v: Value, shift: Value, bits: int, name: str) -> Signal:
    """``clamp(round_shift(v, shift), bits)`` (:func:`nfc.numerics.round_shift`) for a signed
    ``v`` and a signed ``shift``: round half up when dropping bits, exact left shifts otherwise."""
    n = len(v)
    out = Signal(signed(bits), name=name)
    # right, shift s >= 1: round_shift(v, s) = ((v >> (s - 1)) + 1) >> 1; 0 for every s >= n
    right_by = Signal(range(n), name=f"{name}_right_by")  # s - 1, at most n - 1
    m.d.comb += right_by.eq(Mux(shift > n, n, shift) - 1)
    right = ((v >> right_by) + 1) >> 1
    # left, shift -k: a value beyond the result's range stays beyond it, so clamp first and move
    # at most `bits` places (any non-zero word moved that far leaves the range)
    pre = Signal(signed(bits), name=f"{name}_pre")
    left_by = Signal(range(bits + 1), name=f"{name}_left_by")
    m.d.comb += [pre.eq(_clamp(v, bits)), left_by.eq(Mux(-shift > bits, bits, -shift))]
    left = pre << left_by
    with m.If(shift > 0):
        m.d.comb += out.eq(_clamp(right, bits))
    with m.Elif(shift < 0):
        m.d.comb += out.eq(_clamp(left, bits))
    with m.Else():
        m.d.comb += out.eq(_clamp(v, bits))
    return out


def _tree(values: list[Value], op) -> Value:
    """Reduce ``values`` pairwise (a balanced tree of ``op``)."""
    while len(values) > 1:
        values = [
            op(values[i], values[i + 1]) if i + 1 < len(values) else values[i]
            for i in range(0, len(values), 2)
        ]
    return values[0]


def lane_cells(k: int, m: int) -> list[int]:
    """The flat cell indexes ``q * k + n`` of a ``k x k`` array outside its top-left ``m x m``
    square (``q >= m`` or ``n >= m``), in row-major order: in packed mode, lane 1's tap
    ``t = q' * m + n'`` uses the multiplier (and the kernel register slot) of cell
    ``lane_cells(k, m)[t]``."""
    return [q * k + n for q in range(k) for n in range(k) if q >= m or n >= m]


def tap_order(kernel, block: tuple[int, int], k: int) -> list[int]:
    """A block's row-major kernel (``block_h x block_w`` weights) as the K x K tap-order array the
    convolver takes: window row ``i``, column ``j`` goes to ``(block_h - 1 - i) * K + block_w - 1 - j``."""
    bh, bw = block
    out = [0] * (k * k)
    if not len(kernel):  # max mode: no weights
        return out
    for i in range(bh):
        for j in range(bw):
            out[(bh - 1 - i) * k + (bw - 1 - j)] = int(kernel[i * bw + j])
    return out


class Convolver(wiring.Component):
    """A K x K convolver (``K = arch.tile.convolver_size``) with its line buffers and join.

    Parameters
    ----------
    arch : ArchConfig
        The target: ``tile.convolver_size`` (K), ``tile.line_buffer_words``, ``tile.fifo_depth``,
        ``tile.lanes`` (2: the packing members below), ``numerics.word_bits`` (W) and
        ``numerics.accumulator_bits``.
    max_dilation : int
        Largest horizontal dilation the register window supports (1 to 15); it holds
        ``(K - 1) * max_dilation`` columns behind the newest. Vertical dilation is limited only by
        the line buffer's size.

    Attributes
    ----------
    mode : In(1)
        Configuration: 0 multiply-accumulate, 1 maximum (pooling).
    rows, cols, block_h, block_w, stride_h, stride_w, dil_h, dil_w
        Configuration of the input's size and the window, as on
        :class:`~nfc.rtl.window.WindowCounter`. ``block`` is at most K.
    kernel : In(data.ArrayLayout(signed(W), K * K))
        Configuration: weights in *tap order*: ``kernel[q * K + n]`` multiplies the word
        ``q * dil_h`` rows above and ``n * dil_w`` columns left of the one completing the window,
        i.e. window row ``block_h - 1 - q``, column ``block_w - 1 - n`` (:func:`tap_order` turns a
        block's row-major kernel into this; the configuration decoder does the same in hardware).
        Taps outside the block are ignored. Unused in max mode. Packed: lane 0's weights in the
        ``m x m`` square as above, lane 1's tap ``q' * m + n'`` in slot ``lane_cells(K, m)[q' * m +
        n']``; the other slots are ignored.
    shift : In(signed(8))
        Configuration: fraction bits dropped from the accumulator (negative: exact left shift).
    bias : In(signed(W))
        Configuration: ``p`` of every window in mac mode without partial sums.
    use_psum : In(1)
        Configuration: window ``k`` is joined with word ``k`` of ``psum``. When 0, ``psum`` is
        not read (``psum.ready`` stays low).
    out_shift : In(signed(8)), apply_out_shift : In(1)
        Configuration: a final ``sat(round_shift(out, out_shift))`` when ``apply_out_shift``.
    clear : In(1)
        One-cycle pulse at pass start: window counters, line-buffer pointers, FIFOs, pipeline and
        ``error`` back to empty (anything in flight is dropped). No word is accepted on that
        cycle. Needed once before the first pass.
    data : In(stream.Signature(signed(W)))
        The input map, row-major, ``rows x cols`` words, at most one per cycle.
        ``data.ready`` is low only while the window FIFO could not take one more window.
    psum : In(stream.Signature(signed(W)))
        Partial sums, one per window, in window order (only with ``use_psum``).
    o : Out(stream.Signature(signed(W)))
        The outputs, one per window, in window order. Registered. Packed: lane 0's.
    packed : In(1)
        Only with ``tile.lanes == 2``. Configuration: two kernels of at most ``m x m``
        (``m = arch.packed_size``) over the shared window. When 0 the convolver is exactly the
        unpacked one (``o1`` never valid, ``psum1.ready`` low).
    bias1 : In(signed(W))
        Only with ``tile.lanes == 2``. Configuration: lane 1's ``p`` without partial sums.
    psum1 : In(stream.Signature(signed(W)))
        Only with ``tile.lanes == 2``. Lane 1's partial sums, one per window (only when packed with
        ``use_psum``; ``psum1.ready`` stays low otherwise); a FIFO as deep as ``psum``'s.
    o1 : Out(stream.Signature(signed(W)))
        Only with ``tile.lanes == 2``. Lane 1's outputs (packed only), valid on the same cycle as
        ``o``'s word of the same window; a window joins only when both ``o`` and ``o1`` can take it.
    window_done : Out(1)
        Only with ``tile.acc_words > 0``. Combinational: the data word accepted this cycle completes
        the next window (its window counter's ``done``), so that the tile can offer that window's
        partial sums from its accumulation buffers on the same cycle.
    error : Out(1)
        High when: the configuration is refused (``block`` 0 or above K, a stride or dilation of
        0, ``dil_w`` above ``max_dilation``, ``rows`` or ``cols`` 0, a window needing more
        than the line buffer's ``(K - 1) * line_buffer_words`` words: ``(span_h - 1) * cols``
        words of previous rows, or packed with max mode or a block side above ``m``); or, sticky
        until ``clear``, more than ``rows * cols`` data words arrived (overrun), or a word offered
        on ``data``, ``psum`` or (packed) ``psum1`` had to wait because its FIFO was full (the
        grid's "nothing waits" contract broken; the word is kept, not lost).

    Latency: ``CONV_LATENCY`` (3) cycles from the later of a window's completing data word and its
    partial sum to its output, with ``o.ready`` high (packed: from the latest of the completing
    data word and both partial sums, ``o`` and ``o1`` on the same cycle, both ready high). Each
    join FIFO holds ``tile.fifo_depth + PIPELINE_SLACK`` words, so that each input of a join at
    most ``tile.fifo_depth`` cycles ahead of the join (and at most ``tile.fifo_depth`` windows or
    partial sums waiting, as ``sim/naive.py`` checks) never makes an input wait.
    """

    def __init__(self, arch: ArchConfig, max_dilation: int = 4):
        if not isinstance(max_dilation, int) or not 1 <= max_dilation <= 15:
            raise ValueError(f"max_dilation must be an integer from 1 to 15, not {max_dilation!r}")
        self._arch = arch
        self._max_dilation = max_dilation
        self._K = arch.tile.convolver_size
        self._W = arch.numerics.word_bits
        self._lanes = arch.tile.lanes
        self._m = arch.packed_size
        word = signed(self._W)
        members = {
            "mode": In(1),
            "rows": In(16),
            "cols": In(16),
            "block_h": In(4),
            "block_w": In(4),
            "stride_h": In(4),
            "stride_w": In(4),
            "dil_h": In(4),
            "dil_w": In(4),
            "kernel": In(data.ArrayLayout(word, self._K * self._K)),
            "shift": In(signed(8)),
            "bias": In(word),
            "use_psum": In(1),
            "out_shift": In(signed(8)),
            "apply_out_shift": In(1),
            "clear": In(1),
            "data": In(stream.Signature(word)),
            "psum": In(stream.Signature(word)),
            "o": Out(stream.Signature(word)),
            "error": Out(1),
        }
        if self._lanes == 2:
            members.update(
                {
                    "packed": In(1),
                    "bias1": In(word),
                    "psum1": In(stream.Signature(word)),
                    "o1": Out(stream.Signature(word)),
                }
            )
        if arch.tile.acc_words:
            members["window_done"] = Out(1)
        super().__init__(members)

    @property
    def line_buffer_depth(self) -> int:
        """Words of the line-buffer memory: ``(K - 1) * tile.line_buffer_words``."""
        return (self._K - 1) * self._arch.tile.line_buffer_words

    @property
    def fifo_entries(self) -> int:
        """Entries of each join FIFO: ``tile.fifo_depth + PIPELINE_SLACK``."""
        return self._arch.tile.fifo_depth + PIPELINE_SLACK

    def elaborate(self, platform) -> Module:
        m = Module()
        K, W, N = self._K, self._W, (self._K - 1) * self._max_dilation
        A = self._arch.numerics.accumulator_bits
        # a window's value in the FIFO, rounded and clamped to W + 1 bits: beyond that range p + v
        # saturates whatever the word p, and the clamped value saturates it the same way
        VW = W + 1
        lo_word = -(1 << (W - 1))
        two = self._lanes == 2
        S = self._m  # packed_size: the side of each packed kernel
        packed = self.packed if two else None

        # -- configuration checks ------------------------------------------------------------------
        cfg_bad = Signal()
        row_step = Signal(20)  # words between a word and the one dil_h rows above it
        length = Signal(24)  # words of previous rows a window needs: (span_h - 1) * cols
        m.d.comb += [
            row_step.eq(self.dil_h * self.cols),
            length.eq((self.block_h - 1) * row_step),
        ]
        depth = self.line_buffer_depth
        bad = [
            self.block_h == 0,
            self.block_h > K,
            self.block_w == 0,
            self.block_w > K,
            self.stride_h == 0,
            self.stride_w == 0,
            self.dil_h == 0,
            self.dil_w == 0,
            self.dil_w > self._max_dilation,
            self.rows == 0,
            self.cols == 0,
            length > depth,
        ]
        if two:  # packed: mac mode and blocks of at most S x S only
            bad.append(self.packed & (self.mode | (self.block_h > S) | (self.block_w > S)))
        m.d.comb += cfg_bad.eq(_tree(bad, lambda a, b: a | b))

        # -- window counter and input handshake ----------------------------------------------------
        m.submodules.counter = wc = WindowCounter(self._arch)
        for name in ("rows", "cols", "block_h", "block_w", "stride_h", "stride_w", "dil_h", "dil_w"):
            m.d.comb += getattr(wc, name).eq(getattr(self, name))
        accept = Signal()
        m.d.comb += [
            accept.eq(self.data.valid & self.data.ready),
            wc.clear.eq(self.clear),
            wc.step.eq(accept),
        ]
        if self._arch.tile.acc_words:
            m.d.comb += self.window_done.eq(wc.done)

        win_fifo = SyncFIFO(width=2 * VW if two else VW, depth=self.fifo_entries)
        psum_fifo = SyncFIFOBuffered(width=W, depth=self.fifo_entries)
        m.submodules.win_fifo = ResetInserter(self.clear)(win_fifo)
        m.submodules.psum_fifo = ResetInserter(self.clear)(psum_fifo)
        s1_valid = Signal()  # a window's products wait in stage 1
        m.d.comb += [
            # one window more may enter only if the FIFO has room for it after those in flight
            self.data.ready.eq(~self.clear & (win_fifo.level + s1_valid < self.fifo_entries)),
            self.psum.ready.eq(~self.clear & self.use_psum & psum_fifo.w_stream.ready),
            psum_fifo.w_stream.payload.eq(self.psum.payload),
            psum_fifo.w_stream.valid.eq(self.psum.valid & self.psum.ready),
        ]
        if two:  # lane 1's partial sums: a FIFO of their own
            psum1_fifo = SyncFIFOBuffered(width=W, depth=self.fifo_entries)
            m.submodules.psum1_fifo = ResetInserter(self.clear)(psum1_fifo)
            m.d.comb += [
                self.psum1.ready.eq(~self.clear & self.use_psum & packed & psum1_fifo.w_stream.ready),
                psum1_fifo.w_stream.payload.eq(self.psum1.payload),
                psum1_fifo.w_stream.valid.eq(self.psum1.valid & self.psum1.ready),
            ]

        # -- line buffer: the words above the arriving one, read one cycle ahead ------------------
        column = [self.data.payload]  # column[q]: the word q * dil_h rows above (q = 0: this word)
        if K > 1:
            m.submodules.lines = lines = Memory(shape=signed(W), depth=depth, init=[])
            wp = lines.write_port()
            in_use = Signal()
            m.d.comb += in_use.eq((length != 0) & (length <= depth))
            ptr = Signal(range(depth))  # where the next word is written
            ptr_next = Signal(range(depth))  # the same, one cycle on
            with m.If(self.clear):
                m.d.comb += ptr_next.eq(0)
            with m.Elif(accept):
                m.d.comb += ptr_next.eq(Mux(ptr + 1 >= length, 0, ptr + 1))
            with m.Else():
                m.d.comb += ptr_next.eq(ptr)
            m.d.sync += ptr.eq(ptr_next)
            m.d.comb += [wp.addr.eq(ptr), wp.data.eq(self.data.payload), wp.en.eq(accept & in_use)]
            for q in range(1, K):
                # the word q * dil_h rows above the next one: q * row_step words back, circularly;
                # transparent, for a word read on the cycle it is written (one row of one word)
                rp = lines.read_port(transparent_for=(wp,))
                back = Signal(signed(26), name=f"back{q}")
                m.d.comb += back.eq(ptr_next - q * row_step)
                addr = Mux(back < 0, back + length, back)
                m.d.comb += rp.addr.eq(Mux(in_use & (q < self.block_h), addr, 0))
                column.append(rp.data)

        # -- register window: the columns behind the newest, for the horizontal taps -------------
        behind = [[Signal(signed(W), name=f"col{i}_{q}") for q in range(K)] for i in range(N)]
        with m.If(accept):
            for i in range(N):
                for q in range(K):
                    m.d.sync += behind[i][q].eq(column[q] if i == 0 else behind[i - 1][q])

        def tap(q: int, n: int) -> Value:
            """The word ``q * dil_h`` rows above and ``n * dil_w`` columns left of the newest."""
            if n == 0:
                return column[q]
            # n * dil_w columns back takes one of max_dilation registers: a small mux, not an index
            word = behind[n - 1][q]
            for d in range(2, self._max_dilation + 1):
                word = Mux(self.dil_w == d, behind[n * d - 1][q], word)
            return word

        # -- stage 1: products (mac) or masked taps (max), registered -----------------------------
        s1 = [Signal(signed(2 * W), name=f"s1_{q}_{n}") for q in range(K) for n in range(K)]
        m.d.sync += s1_valid.eq(accept & wc.done)
        # packed: lane 1's tap t = (q', n') = divmod(t, S) goes to cell lane_cells(K, S)[t] (a 2:1
        # mux in front of that cell's multiplier; no multiplier more)
        lane_of = {c: t for t, c in enumerate(lane_cells(K, S)[: S * S])} if two else {}
        staged = []
        for q in range(K):
            for n in range(K):
                used = (q < self.block_h) & (n < self.block_w)
                x = tap(q, n)
                if q * K + n in lane_of:
                    q1, n1 = divmod(lane_of[q * K + n], S)
                    used = Mux(packed, (q1 < self.block_h) & (n1 < self.block_w), used)
                    x = Mux(packed, tap(q1, n1), x)
                product = Mux(used, self.kernel[q * K + n], 0) * x
                staged.append(Mux(self.mode, Mux(used, x, lo_word), product))
        with m.If(accept & wc.done):
            m.d.sync += [reg.eq(value) for reg, value in zip(s1, staged, strict=True)]

        # -- stage 2: sum or maximum, into the window FIFO ----------------------------------------
        acc = Signal(signed(A))  # the accumulator: the exact sum (the compiler proves it fits)
        if two:
            # lane 0: the S x S square, plus (unpacked) the other cells; lane 1: its cells (packed)
            square = [s1[q * K + n] for q in range(S) for n in range(S)]
            lane1 = [s1[c] for c in lane_cells(K, S)[: S * S]]
            rest = [s1[c] for c in lane_cells(K, S)[S * S :]]
            acc1 = Signal(signed(A))
            outside = _tree(lane1, lambda a, b: a + b)
            if rest:
                outside = outside + _tree(rest, lambda a, b: a + b)
            m.d.comb += [
                acc1.eq(_tree(lane1, lambda a, b: a + b)),
                acc.eq(_tree(square, lambda a, b: a + b) + Mux(packed, 0, outside)),
            ]
            v_mac1 = _round_shift_clamp(m, acc1, self.shift, VW, "v_mac1")
        else:
            m.d.comb += acc.eq(_tree(list(s1), lambda a, b: a + b))
        v_mac = _round_shift_clamp(m, acc, self.shift, VW, "v_mac")
        v_max = _tree(list(s1), lambda a, b: Mux(a > b, a, b))
        v0 = Mux(self.mode, v_max, v_mac)
        m.d.comb += [
            win_fifo.w_stream.payload.eq(Cat(v0.as_signed()[:VW], v_mac1) if two else v0),
            win_fifo.w_stream.valid.eq(s1_valid),
        ]

        # -- stage 3: the join, into the output register -----------------------------------------
        v = win_fifo.r_stream.payload[:VW].as_signed()
        p = Mux(self.use_psum, psum_fifo.r_stream.payload.as_signed(), Mux(self.mode, lo_word, self.bias))
        joined = Signal(signed(W))
        m.d.comb += joined.eq(Mux(self.mode, Mux(p > v, p, v), _clamp(p + v, W)))
        shifted = _round_shift_clamp(m, joined, self.out_shift, W, "shifted")
        fire = Signal()
        have = win_fifo.r_stream.valid & (~self.use_psum | psum_fifo.r_stream.valid)
        room = ~self.o.valid | self.o.ready
        if two:  # packed: lane 1 joins on the same cycle, with its own partial sum or bias1
            have = have & ~(self.use_psum & packed & ~psum1_fifo.r_stream.valid)
            room = room & ~(packed & self.o1.valid & ~self.o1.ready)
            v1 = win_fifo.r_stream.payload[VW:].as_signed()
            p1 = Mux(self.use_psum, psum1_fifo.r_stream.payload.as_signed(), self.bias1)
            joined1 = Signal(signed(W))
            m.d.comb += [
                joined1.eq(_clamp(p1 + v1, W)),
                psum1_fifo.r_stream.ready.eq(fire & self.use_psum & packed),
            ]
            shifted1 = _round_shift_clamp(m, joined1, self.out_shift, W, "shifted1")
            with m.If(self.clear):
                m.d.sync += self.o1.valid.eq(0)
            with m.Elif(fire):
                m.d.sync += [
                    self.o1.valid.eq(packed),
                    self.o1.payload.eq(Mux(self.apply_out_shift, shifted1, joined1)),
                ]
            with m.Elif(self.o1.ready):
                m.d.sync += self.o1.valid.eq(0)
        m.d.comb += [
            fire.eq(have & room),
            win_fifo.r_stream.ready.eq(fire),
            psum_fifo.r_stream.ready.eq(fire & self.use_psum),
        ]
        with m.If(self.clear):
            m.d.sync += self.o.valid.eq(0)
        with m.Elif(fire):
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.payload.eq(Mux(self.apply_out_shift, shifted, joined)),
            ]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        # -- errors ---------------------------------------------------------------------------------
        waited = Signal()
        stalled = (self.data.valid & ~self.data.ready) | (self.use_psum & self.psum.valid & ~self.psum.ready)
        if two:
            stalled = stalled | (self.use_psum & packed & self.psum1.valid & ~self.psum1.ready)
        with m.If(self.clear):
            m.d.sync += waited.eq(0)
        with m.Elif(stalled):
            m.d.sync += waited.eq(1)
        m.d.comb += self.error.eq(cfg_bad | wc.overrun | waited)
        return m
