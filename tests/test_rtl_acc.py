"""Accumulation buffers (``tile.acc_words``) in the configuration decoder and the tile.

The decoder (``nfc.rtl.config.ConfigDecoder``) takes ``CONV_LINK`` source 3 and ``CONV_ACC`` words into
``psum_src``, ``acc_out`` and ``acc_count``, as ``compiler/decode.py`` reads the same words, and flags
the words that break the rules (on a target without buffers, both). A tile (``nfc.rtl.tile.Tile``)
driven directly runs a chain's passes: a bias start storing its raw outputs in the buffers, a middle
term adding to them in place, a last term reading them back as partial sums; the values against a
numpy model of ``nfc.numerics``, and every cycle against docs/architecture.md §13: output ``k`` at
``t + CONV_LATENCY`` after the data word completing window ``k`` (partial sums from the buffer are
there on that cycle), its buffer write ``ACC_LATENCY`` after it leaves the convolver, ``acc_last``
on the last write and ``acc_done`` from the cycle after. The buffers outlive ``clear``, and a write on
the cycle of the next pass's commit is kept. The top level (``Accelerator``) runs two hand-made
passes through a tile's buffers in the co-simulation testbench: a pass whose only writes are buffer
writes ends on the last of them. (Co-simulation of compiled programs against the cycle model:
tests elsewhere.)
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Elaboratable
from amaranth.sim import Simulator
from test_rtl_packing_config import _decode, _pass

from nfc.arch import load_target
from nfc.compiler.decode import decode_pass
from nfc.compiler.encode import acc_word, conv_head, lane_weight_words, weight_words, word
from nfc.compiler.program import ConvUnit
from nfc.compiler.timing import ACC_LATENCY, CONV_LATENCY, WRITE_LATENCY
from nfc.numerics import round_shift, saturate
from nfc.rtl.config import conv_layout
from nfc.rtl.convolver import Convolver, lane_cells, tap_order
from nfc.rtl.tile import Tile

TARGETS = Path(__file__).parent / "targets"


def _acc():
    return load_target(TARGETS / "acc.toml")


def _packed():
    return load_target(TARGETS / "packed.toml")


def _members(component) -> set[str]:
    """The names of a component's ports (the component is only looked at, never elaborated)."""
    component._MustUse__used = True
    return set(component.signature.members)


# ---------------------------------------------------------------------------------------------------
# the decoder
# ---------------------------------------------------------------------------------------------------
def _unit(tile: int, psum_from: str, to: str, acc_words: int = 0, packed: bool = True, **kw) -> ConvUnit:
    """A 2x3 mac convolver on ``tile`` (packed unless told)."""
    fields = dict(
        tile=tile,
        layer="l",
        out_channel=0,
        term=0,
        mode="mac",
        in_channel=0,
        offset=(0, 0),
        block=(2, 3),
        stride=(1, 2),
        dilation=(1, 1),
        kernel=(1, -2, 3, -4, 5, -6),
        shift=3,
        bias=-17,
        psum_from=psum_from,
        to=to,
        acc_words=acc_words,
        out_channel1=1 if packed else -1,
        kernel1=(7, 8, -9, 10, 11, 12) if packed else (),
        bias1=33 if packed else 0,
    )
    fields.update(kw)
    return ConvUnit(**fields)


def _conv_group(u: ConvUnit) -> list[int]:
    return [*conv_head(u), *weight_words(u.tile, u.kernel), *lane_weight_words(u)]


def test_acc_members_only_on_a_target_with_buffers():
    acc, packed = _acc(), _packed()
    assert (acc.tile.acc_words, acc.tile.lanes, packed.tile.acc_words) == (64, 2, 0)
    assert {"acc_out", "acc_count"} <= set(conv_layout(acc).members)
    assert not {"acc_out", "acc_count"} & set(conv_layout(packed).members)
    assert "window_done" in _members(Convolver(acc)) and "window_done" not in _members(Convolver(packed))
    assert {"acc_last", "acc_done"} <= _members(Tile(acc))
    assert not {"acc_last", "acc_done"} & _members(Tile(packed))


def test_decoder_takes_source_3_and_conv_acc_as_the_software_decoder_does():
    arch = _acc()
    # tile 1: bias start into its buffers; tile 2: from its buffers back into them (a middle term);
    # tile 3: from its buffers to the port (last term, unpacked); then a pass with none of it
    units = [
        _unit(1, "bias", "acc", 20),
        _unit(2, "acc", "acc", 64),
        _unit(3, "acc", "port", packed=False, out_shift=2),
    ]
    first = _pass(*[_conv_group(u) for u in units])
    second = _pass(_conv_group(_unit(2, "port", "port")), index=1)
    got = _decode(arch, [first, second])
    assert got[0]["error"] == 0 and got[1]["error"] == 0
    decoded = decode_pass(first).convs
    for u, d in zip(units, decoded, strict=True):
        c = got[0]["convs"][u.tile]
        assert (d.psum_from, d.to, d.acc_words) == (u.psum_from, u.to, u.acc_words)
        assert c["active"] == 1 and c["packed"] == d.packed
        assert c["psum_src"] == {"bias": 0, "port": 1, "acc": 3}[d.psum_from]
        assert (c["acc_out"], c["acc_count"]) == (int(d.to == "acc"), d.acc_words)
        assert (c["to_tile"], c["dest"], c["act"], c["out_shift"]) == (0, 0, 0, d.out_shift)
        assert (c["shift"], c["bias"], c["bias1"]) == (d.shift, d.bias, d.bias1)
        assert c["kernel"] == _kernel_regs(arch, d.block, d.kernel, d.kernel1 if d.packed else None)
    assert got[0]["convs"][0]["active"] == 0 and got[0]["convs"][0]["acc_out"] == 0
    # the next pass starts cleared: no buffer source or destination left over
    for t in range(4):
        c = got[1]["convs"][t]
        assert (c["acc_out"], c["acc_count"]) == (0, 0)
        assert c["psum_src"] == (1 if t == 2 else 0)


def _bad_words() -> dict[str, tuple[list[int], bool]]:
    """Passes the decoder must refuse, and whether ``compiler/decode.py`` refuses them too (it does not
    know the target's ``acc_words``)."""
    base = _unit(1, "bias", "acc", 10)
    head = list(conv_head(base))  # CONV, CONV_LINK, CONV_SHIFT, CONV_PACK, CONV_ACC
    body = weight_words(1, base.kernel) + lane_weight_words(base)
    return {
        "words 0": (head[:4] + [word("CONV_ACC", 1, arg=0)] + body, True),
        "words above acc_words": (head[:4] + [acc_word(1, 65)] + body, False),
        # tile 2's convolver is configured, but the group being read is tile 1's
        "another tile": (_conv_group(_unit(2, "bias", "port")) + head[:4] + [acc_word(2, 10)] + body, True),
        "no convolver": ([acc_word(1, 10)], True),
        "reserved b": (head[:4] + [word("CONV_ACC", 1, 1, 0, 10)] + body, True),
        "source tile with source 3": ([head[0], word("CONV_LINK", 1, 3, 2, 0), *head[2:], *body], True),
        "output shift": (
            list(conv_head(_unit(1, "bias", "port", out_shift=1)))[:4] + [acc_word(1, 10)] + body,
            True,
        ),
        "output to a tile": (
            list(conv_head(_unit(1, "bias", "tile:3")))[:4] + [acc_word(1, 10)] + body,
            True,
        ),
    }


@pytest.mark.parametrize("case", list(_bad_words()))
def test_decoder_refuses_bad_acc_words(case):
    words, software_refuses = _bad_words()[case]
    arch = _acc()
    good = _pass(_conv_group(_unit(1, "bias", "acc", 10)))
    bad = _pass(words, index=1)
    got = _decode(arch, [good, bad, good])
    assert [g["error"] for g in got] == [0, 1, 0], case  # sticky until the next PASS
    if software_refuses:
        with pytest.raises(ValueError):
            decode_pass(bad)
    else:
        decode_pass(bad)


def test_decoder_without_buffers_refuses_source_3_and_conv_acc():
    arch = _packed()
    from_acc = _pass(_conv_group(_unit(1, "acc", "port")))
    to_acc = _pass(_conv_group(_unit(1, "bias", "acc", 10)), index=1)
    plain = _pass(_conv_group(_unit(1, "port", "port")), index=2)
    got = _decode(arch, [from_acc, to_acc, plain])
    assert [g["error"] for g in got] == [1, 1, 0]


# ---------------------------------------------------------------------------------------------------
# a tile: a chain of passes through its buffers
# ---------------------------------------------------------------------------------------------------
class _Exposed(Elaboratable):
    """The tile's own module, with its buffers at hand for the testbench (``acc0``, ``acc1``)."""

    def __init__(self, tile: Tile):
        tile._MustUse__used = True
        self.tile = tile
        self.buffers = None

    def elaborate(self, platform):
        m = self.tile.elaborate(platform)
        self.buffers = [m.submodules[f"acc{lane}"] for lane in range(self.tile.arch.tile.lanes)]
        return m


def _sat(v):
    return saturate(np.asarray(v, dtype=np.int64), 16)[0]


def _windows(x: np.ndarray, kernel, block, stride, dilation) -> np.ndarray:
    """The exact window sums, row-major over the output."""
    (bh, bw), (sh, sw), (dh, dw) = block, stride, dilation
    rows, cols = x.shape
    oh = (rows - (bh - 1) * dh - 1) // sh + 1
    ow = (cols - (bw - 1) * dw - 1) // sw + 1
    out = np.zeros((oh, ow), dtype=np.int64)
    for i in range(bh):
        for j in range(bw):
            out += (
                int(kernel[i * bw + j])
                * x[i * dh : i * dh + (oh - 1) * sh + 1 : sh, j * dw : j * dw + (ow - 1) * sw + 1 : sw]
            )
    return out.reshape(-1)


def _completing(k: int, rows: int, cols: int, block, stride, dilation) -> int:
    """Index of the input word that completes window ``k`` (§13 item 4)."""
    (bh, bw), (sh, sw), (dh, dw) = block, stride, dilation
    ow = (cols - (bw - 1) * dw - 1) // sw + 1
    y, xx = divmod(k, ow)
    return (y * sh + (bh - 1) * dh) * cols + xx * sw + (bw - 1) * dw


def _kernel_regs(arch, block, k0, k1) -> list[int]:
    """The K x K kernel registers: lane 0 in tap order, lane 1's tap (q', n') in the slot of cell
    lane_cells(K, m)[q' m + n'] (as the decoder places them)."""
    k, m = arch.tile.convolver_size, arch.packed_size
    out = tap_order(k0, block, k)
    if k1 is not None:
        bh, bw = block
        for i, w in enumerate(k1):
            r, c = divmod(i, bw)
            out[lane_cells(k, m)[(bh - 1 - r) * m + (bw - 1 - c)]] = w
    return out


GEOMETRIES = {
    "2x2": ((2, 2), (1, 1), (1, 1), 5, 6),  # block, stride, dilation, rows, cols
    "3x2 strided dilated": ((3, 2), (1, 2), (2, 1), 7, 7),
}


@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("packed", [1, 0])
def test_tile_chain_through_its_buffers(packed, geometry):
    arch = _acc()
    block, stride, dilation, rows, cols = GEOMETRIES[geometry]
    n_in = rows * cols
    rng = random.Random(f"{packed} {geometry}")
    lanes = 2 if packed else 1
    n = len(_windows(np.zeros((rows, cols), dtype=np.int64), [0] * 9, block, stride, dilation))
    assert n <= arch.tile.acc_words
    taps = block[0] * block[1]
    # the passes of one chain: (psum_src, acc_out, shift, out_shift, bias, bias1); the first writes its
    # raw outputs although an output shift is configured (a buffer takes raw words)
    passes = [(0, 1, 3, 2, 1500, -900), (3, 1, 2, 0, 0, 0), (3, 0, 4, 1, 0, 0)]
    ends_on_last_write = [False, True, False]  # the middle pass ends on its last write
    noise = [[rng.randrange(-(1 << 15), 1 << 15) for _ in range(arch.tile.acc_words)] for _ in range(2)]
    plan = []
    for _ in passes:
        x = np.array([rng.randrange(-400, 400) for _ in range(n_in)], dtype=np.int64).reshape(rows, cols)
        kernels = [[rng.randrange(-30, 30) for _ in range(taps)] for _ in range(2)]
        # each data word may wait a few cycles: the window-completing cycles are irregular
        gaps = [rng.choice([0, 0, 0, 1, 2]) for _ in range(n_in)]
        plan.append((x, kernels, gaps))

    # the model: each lane's buffer after each pass, and each pass's outputs on o / o1
    buf = [list(noise[0]), list(noise[1])]
    want = []
    for (src, acc_out, shift, out_shift, bias, bias1), (x, kernels, _) in zip(passes, plan, strict=True):
        outs = []
        for lane in range(lanes):
            v = round_shift(_windows(x, kernels[lane], block, stride, dilation), shift)
            p = np.array(buf[lane][:n]) if src == 3 else np.full(n, (bias, bias1)[lane])
            out = _sat(p + v)
            if acc_out:
                buf[lane][:n] = [int(w) for w in out]
            else:
                out = _sat(round_shift(out, out_shift))
            outs.append([int(w) for w in out])
        want.append((outs, [list(b) for b in buf]))

    top = _Exposed(Tile(arch))
    dut = top.tile
    got = []

    async def bench(ctx):
        for lane in range(2):
            for i, w in enumerate(noise[lane]):
                ctx.set(top.buffers[lane].data[i], w)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        for (src, acc_out, shift, out_shift, bias, bias1), (x, kernels, gaps), ends_on_write in zip(
            passes, plan, ends_on_last_write, strict=True
        ):
            # the pass's configuration shows from the cycle after the clear (a commit), as in the grid
            ctx.set(dut.clear, 0)
            u = dut.conv
            for f, v in {
                "active": 1,
                "mode": 0,
                "block_h": block[0],
                "block_w": block[1],
                "stride_h": stride[0],
                "stride_w": stride[1],
                "dil_h": dilation[0],
                "dil_w": dilation[1],
                "psum_src": src,
                "shift": shift,
                "out_shift": out_shift,
                "bias": bias,
                "packed": packed,
                "bias1": bias1,
                "acc_out": acc_out,
                "acc_count": n if acc_out else 0,
            }.items():
                ctx.set(getattr(u, f), v)
            regs = _kernel_regs(arch, block, kernels[0], kernels[1] if packed else None)
            for i, w in enumerate(regs):
                ctx.set(u.kernel[i], w)
            ctx.set(dut.rows, rows)
            ctx.set(dut.cols, cols)
            # a noisy partial-sum port and chain link: source 3 must not take them
            for s in (dut.psum, dut.psum1, dut.chain, dut.chain1):
                ctx.set(s.valid, 1)
                ctx.set(s.payload, rng.randrange(-(1 << 15), 1 << 15))
            seq = []  # per cycle, the data word offered (None: a gap)
            for gap, w in zip(gaps, x.reshape(-1).tolist(), strict=True):
                seq += [None] * gap + [w]
            accepted, out, out1, last, done, changed = [], [], [], [], [], {}
            before = [[ctx.get(top.buffers[lane].data[i]) for i in range(n)] for lane in range(2)]

            def writes(now, before=before, changed=changed):
                """The buffer words that changed: written on the cycle before ``now``."""
                for lane in range(2):
                    for i in range(n):
                        value = ctx.get(top.buffers[lane].data[i])
                        if value != before[lane][i]:
                            changed.setdefault((lane, i), now - 1)
                            before[lane][i] = value

            for now in range(len(seq) + 12):
                writes(now)
                w = seq[now] if now < len(seq) else None
                ctx.set(dut.slots[0].valid, w is not None)
                ctx.set(dut.slots[0].payload, 0 if w is None else w)
                if w is not None:
                    accepted.append(now)
                if ctx.get(dut.o.valid):
                    out.append((now, ctx.get(dut.o.payload)))
                if ctx.get(dut.o1.valid):
                    out1.append((now, ctx.get(dut.o1.payload)))
                if ctx.get(dut.acc_last):
                    last.append(now)
                done.append(ctx.get(dut.acc_done))
                assert ctx.get(dut.error) == 0
                # the pass ends: on its last buffer write (the next pass committed on that very
                # cycle, which must not lose the write), else after some idle cycles
                end = bool(ctx.get(dut.acc_last)) if ends_on_write else now == len(seq) + 11
                ctx.set(dut.clear, int(end))
                await ctx.tick()
                if end:
                    break
            writes(now + 1)
            ctx.set(dut.slots[0].valid, 0)
            buffers = [
                [ctx.get(top.buffers[lane].data[i]) for i in range(len(noise[lane]))] for lane in range(2)
            ]
            got.append((accepted, out, out1, last, done, changed, buffers))

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()

    for p, (conf, (want_out, want_buf), (accepted, out, out1, last, done, changed, buffers)) in enumerate(
        zip(passes, want, got, strict=True)
    ):
        acc_out = conf[1]
        # output k leaves CONV_LATENCY after the data word completing window k (the buffer's partial
        # sum is there on that cycle), on both lanes together
        t = [accepted[_completing(k, rows, cols, block, stride, dilation)] for k in range(n)]
        assert [c for c, _ in out] == [tk + CONV_LATENCY for tk in t], f"pass {p}"
        assert [v for _, v in out] == want_out[0], f"pass {p}"
        if packed:
            assert out1 == [(c, v) for (c, _), v in zip(out, want_out[1], strict=True)], f"pass {p}"
        else:
            assert out1 == []
        # the buffers: what the model says (lane 1's untouched unless packed), and the noise beyond n
        assert buffers[0] == want_buf[0] and buffers[0][n:] == noise[0][n:], f"pass {p}"
        if packed:
            assert buffers[1] == want_buf[1], f"pass {p}"
        else:
            assert buffers[1] == noise[1], f"pass {p}"
        if acc_out:
            # word k written ACC_LATENCY after output k left (where the write changed it)
            for (lane, i), cycle in changed.items():
                assert cycle == out[i][0] + ACC_LATENCY, f"pass {p}, lane {lane}, word {i}"
            assert len(changed) >= n // 2  # random words: nearly every write changes its word
            end = out[-1][0] + ACC_LATENCY
            assert last == [end], f"pass {p}"
            assert done == [0] * (end + 1) + [1] * (len(done) - end - 1), f"pass {p}"
            assert len(done) == end + 1 if ends_on_last_write[p] else len(done) > end + 1
        else:
            assert changed == {} and last == [], f"pass {p}"


def _tile_run(arch, conf: dict, rows: int, cols: int, cycles: int):
    """Drive a tile with a 1x1 convolver over ``rows x cols`` ones, one word per cycle; returns per
    cycle (error, acc_last)."""
    dut = Tile(arch)
    seen = []

    async def bench(ctx):
        u = dut.conv
        base = {"active": 1, "block_h": 1, "block_w": 1, "stride_h": 1, "stride_w": 1, "dil_h": 1, "dil_w": 1}
        for f, v in {**base, **conf}.items():
            ctx.set(getattr(u, f), v)
        ctx.set(u.kernel[0], 1)
        ctx.set(dut.rows, rows)
        ctx.set(dut.cols, cols)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        for now in range(cycles):
            ctx.set(dut.slots[0].valid, now < rows * cols)
            ctx.set(dut.slots[0].payload, 1)
            seen.append((ctx.get(dut.error), ctx.get(dut.acc_last)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


def test_tile_flags_more_outputs_than_acc_count():
    arch = _acc()
    # 12 windows, 10 words: the 10th write is the last; the 11th output is a contract break
    seen = _tile_run(arch, {"acc_out": 1, "acc_count": 10}, 3, 4, 20)
    last = [c for c, (_, a) in enumerate(seen) if a]
    assert last == [9 + CONV_LATENCY + ACC_LATENCY]
    errors = [c for c, (e, _) in enumerate(seen) if e]
    assert errors and errors[0] == 10 + CONV_LATENCY + ACC_LATENCY + 1  # sticky from the cycle after


def test_tile_flags_a_window_past_its_buffer():
    arch = _acc()
    assert arch.tile.acc_words == 64
    seen = _tile_run(arch, {"psum_src": 3}, 5, 13, 70)  # 65 windows from a 64-word buffer
    errors = [c for c, (e, _) in enumerate(seen) if e]
    assert errors and errors[0] == 65  # window 64 completes on cycle 64


# ---------------------------------------------------------------------------------------------------
# the top level: a pass whose only writes are buffer writes ends on the last of them
# ---------------------------------------------------------------------------------------------------
def _stream(p: int, write: int, role: int, address: int, rows: int, cols: int) -> list[int]:
    """A stream of port ``p`` at tile 0 (ports 0 and 4 attach there: no route), over a whole map."""
    return [
        word("PORT", p, write, role, 0),
        word("PORT_ADDR", arg=address),
        word("PORT_MAP", arg=rows << 16 | cols),
        word("PORT_WIN", arg=rows << 16 | cols),
        word("PORT_ORG", arg=0),
        word("PORT_STEP", 1, 1, 0, rows * cols),
    ]


def test_accelerator_chain_through_the_buffers():
    from nfc.compiler.binary import LoadedPass
    from nfc.rtl.config import port_tiles
    from nfc.rtl.cosim import cosim_amaranth

    arch = _acc()
    assert port_tiles(arch)[0] == port_tiles(arch)[4] == 0
    rng = np.random.default_rng(5)
    rows, cols, block = 5, 6, (2, 2)
    oh, ow = rows - 1, cols - 1
    n = oh * ow
    x = [rng.integers(-400, 400, (rows, cols)) for _ in range(2)]
    k = [[int(v) for v in rng.integers(-30, 30, 4)] for _ in range(4)]
    # pass 0: bias start into the buffers (both lanes); pass 1: the buffers' partial sums, lane 0 out
    first = _unit(
        0, "bias", "acc", n, block=block, stride=(1, 1), kernel=k[0], kernel1=k[1], shift=3, bias=1500
    )
    last = _unit(
        0, "acc", "port", block=block, stride=(1, 1), kernel=k[2], kernel1=k[3], shift=2, out_shift=1
    )
    inputs, out = (100, 200), 300
    words = [
        _pass(_stream(0, 0, 0, inputs[0], rows, cols), _conv_group(first)),
        _pass(
            _stream(0, 0, 0, inputs[1], rows, cols), _stream(4, 1, 2, out, oh, ow), _conv_group(last), index=1
        ),
    ]
    for w in words:
        w[-1] = word("GO", arg=rows * cols)
    memory = np.zeros(512, dtype=np.int64)
    for a, m in zip(inputs, x, strict=True):
        memory[a : a + rows * cols] = m.reshape(-1)

    class Program:  # the two passes as the co-simulation testbench reads them
        steps = tuple(
            LoadedPass(i, "conv", (), 0, {"total": 100}, tuple(w), None) for i, w in enumerate(words)
        )

    res = cosim_amaranth(arch, Program(), memory, None)
    partial = _sat(1500 + round_shift(_windows(x[0], k[0], block, (1, 1), (1, 1)), 3))
    want = _sat(round_shift(_sat(partial + round_shift(_windows(x[1], k[2], block, (1, 1), (1, 1)), 2)), 1))
    assert list(res.memory[out : out + n]) == list(want)
    assert not any(r.error for r in res.passes)
    # §13: the first pass's configuration shows (C words), beat i on C + i, its word at the tile L
    # later; the last window's output CONV_LATENCY on and its buffer write ACC_LATENCY after that: the
    # pass's last cycle. The second's words hid behind the first's streaming; it ends on its last
    # memory write, WRITE_LATENCY after its output.
    latency = arch.memory.latency_cycles
    last_word = rows * cols - 1
    first_cycles = len(words[0]) + last_word + latency + CONV_LATENCY + ACC_LATENCY + 1
    streamed = first_cycles - len(words[0])
    second_cycles = max(0, len(words[1]) - streamed) + last_word + latency + CONV_LATENCY + WRITE_LATENCY + 1
    assert [(r.rtl_cycles, r.counted_cycles) for r in res.passes] == [
        (first_cycles, first_cycles),
        (second_cycles, second_cycles),
    ]
