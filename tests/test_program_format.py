"""The program format: configuration words decode back to the scheduled units, and the program file
(``compiler/binary.py``) round-trips, is deterministic, and refuses bad input with one clear line."""

from __future__ import annotations

import json
import re
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers_programs import map_info
from onnx import helper
from onnx_builders import make_model, rng, weights

from nfc import NfcError, import_onnx, load_target
from nfc.compiler.binary import (
    FILES,
    LoadedPass,
    disasm_text,
    parse_program,
    program_bytes,
    read_program,
    write_program,
)
from nfc.compiler.decode import (
    DecodedAlu,
    DecodedConv,
    DecodedMap,
    DecodedStream,
    decode_pass,
    format_word,
    word_fields,
)
from nfc.compiler.encode import OPCODES, encode_pass, word
from nfc.compiler.grid import Lowered
from nfc.compiler.lower import lower
from nfc.compiler.passes import run_pipeline
from nfc.compiler.program import (
    PROGRAM_VERSION,
    AluUnit,
    ConvUnit,
    HostStep,
    MapUnit,
    Pass,
    PoolUnit,
    Program,
    Region,
    Stream,
)
from nfc.compiler.quantize import default_formats
from nfc.compiler.schedule import schedule


# ---------------------------------------------------------------------------------------------------
# small networks
# ---------------------------------------------------------------------------------------------------
def net_classifier():
    """conv + relu + maxpool + conv + linear (+ softmax: a host step)."""
    g = rng(1)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[2, 2, 2, 2]),
        helper.make_node("Flatten", ["c2"], ["f"]),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["g"], transB=1),
        helper.make_node("Softmax", ["g"], ["y"], axis=1),
    ]
    inits = {
        "w1": weights(g, 4, 3, 3, 3),
        "b1": weights(g, 4),
        "w2": weights(g, 5, 4, 5, 5),
        "b2": weights(g, 5),
        "w3": weights(g, 7, 5 * 4 * 5),
        "b3": weights(g, 7),
    }
    return make_model(nodes, {"x": (1, 3, 8, 10)}, inits=inits, name="classifier")


def net_residual():
    """A depthwise conv (stride 2, dilation 2) and a 1x1 conv added together."""
    g = rng(2)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node(
            "Conv", ["c1", "wd", "bd"], ["d1"], pads=[2, 2, 2, 2], group=4, dilations=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Conv", ["c1", "we", "be"], ["e1"], strides=[2, 2]),
        helper.make_node("Add", ["d1", "e1"], ["y"]),
    ]
    inits = {
        "w1": weights(g, 4, 3, 3, 3),
        "b1": weights(g, 4),
        "wd": weights(g, 4, 1, 3, 3),
        "bd": weights(g, 4),
        "we": weights(g, 4, 4, 1, 1),
        "be": weights(g, 4),
    }
    return make_model(nodes, {"x": (1, 3, 9, 11)}, inits=inits, name="residual")


def net_upsample():
    """A PReLU on its own (a mapper pass) and a nearest 2x upsample (strided copy passes)."""
    g = rng(3)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"]),
        helper.make_node("Add", ["c1", "c1"], ["a1"]),
        helper.make_node("PRelu", ["a1", "slope"], ["p1"]),
        helper.make_node("Resize", ["p1", "", "scales"], ["u1"], mode="nearest"),
        helper.make_node("Conv", ["u1", "w2", "b2"], ["y"]),
    ]
    inits = {
        "w1": weights(g, 3, 2, 3, 3),
        "b1": weights(g, 3),
        "slope": np.array([0.1, 0.25, 0.5], np.float32).reshape(3, 1, 1),
        "scales": np.array([1, 1, 2, 2], np.float32),
        "w2": weights(g, 2, 3, 3, 3),
        "b2": weights(g, 2),
    }
    return make_model(nodes, {"x": (1, 2, 6, 7)}, inits=inits, name="upsample")


NETS = {"classifier": net_classifier, "residual": net_residual, "upsample": net_upsample}
# asic45 mostly runs the luaflow policy: its "nfc" schedules of the residual and upsample networks run out
# of router links on the 2x2 grid (a scheduler limitation, not the program format's)
CONFIGS = [("tiny", "nfc"), ("virtex6", "nfc"), ("asic45", "luaflow"), ("tiny", "luaflow")]
CASES = [(t, p, n) for t, p in CONFIGS for n in NETS] + [("asic45", "nfc", "classifier")]


@pytest.fixture(scope="module")
def graphs():
    return {name: run_pipeline(import_onnx(build())) for name, build in NETS.items()}


@pytest.fixture(scope="module")
def compiled(graphs) -> dict[tuple[str, str, str], tuple[Program, Lowered]]:
    out = {}
    for target, policy, net in CASES:
        arch = load_target(target)
        low = lower(graphs[net], arch, default_formats(arch))
        out[(target, policy, net)] = (schedule(low, arch, policy), low)
    return out


# ---------------------------------------------------------------------------------------------------
# decoding against the scheduled units
# ---------------------------------------------------------------------------------------------------


STREAM = "port direction role sync tile words route lane".split()
REGION = "rows cols r0 c0 pads pad_value step".split()
CONV = "tile mode block stride dilation kernel shift bias psum_from to act_tile delay kernel1 bias1".split()
MAP = "tile thresholds slopes offsets shift".split()
ALU = "tile op shift_a shift_b shift_out".split()
POOL = "tile mode size rows cols weight shift bias out_shift".split()


def attrs(obj, names: list[str]) -> tuple:
    return tuple(getattr(obj, n) for n in names)


def check_units(p: Pass, d) -> None:
    """Every field the words carry, decoded, equals the scheduled unit's (streams' memory aside)."""
    assert (d.index, d.kind, d.rate, d.beats) == (p.index, p.kind, p.rate, p.beats)
    assert [attrs(ds, STREAM) + attrs(ds, REGION) for ds in d.streams] == [
        attrs(s, STREAM) + attrs(s.region, REGION) for s in p.streams
    ]
    assert [attrs(dc, CONV) for dc in d.convs] == [attrs(u, CONV) for u in p.convs]
    assert [dc.packed for dc in d.convs] == [u.out_channel1 >= 0 for u in p.convs]
    assert [attrs(dm, MAP) for dm in d.maps] == [attrs(m, MAP) for m in p.maps]
    assert [attrs(da, ALU) for da in d.alus] == [attrs(a, ALU) for a in p.alus]
    assert [attrs(dq, POOL) for dq in d.pools] == [attrs(q, POOL) for q in p.pools]
    assert all(isinstance(u, DecodedConv) for u in d.convs) and all(isinstance(m, DecodedMap) for m in d.maps)
    assert all(isinstance(u, DecodedAlu) for u in d.alus) and all(
        isinstance(s, DecodedStream) for s in d.streams
    )


def check_pass(p: Pass, d, program: Program, low: Lowered) -> None:
    check_units(p, d)
    for ds, s in zip(d.streams, p.streams, strict=True):
        base, (h, w) = map_info(program, low, s.region.buffer)
        assert (ds.address, ds.map_shape) == (base + s.region.channel * h * w, (h, w))
        assert set(zip(s.route, s.route[1:], strict=False)) <= set(p.links)


@pytest.mark.parametrize(("target", "policy", "net"), CASES)
def test_decode_recovers_every_scheduled_field(compiled, target, policy, net):
    program, low = compiled[(target, policy, net)]
    assert program.passes
    for p in program.passes:
        check_pass(p, decode_pass(p.config_words), program, low)


def test_small_networks_cover_every_pass_kind_and_field(compiled):
    kinds, modes, sources, alu_ops = set(), set(), set(), set()
    sync = strided = padded = act = False
    pool_modes = set()
    for program, _ in compiled.values():
        for p in program.passes:
            kinds.add(p.kind)
            modes |= {u.mode for u in p.convs}
            sources |= {u.psum_from.split(":")[0] for u in p.convs}
            alu_ops |= {a.op for a in p.alus}
            pool_modes |= {q.mode for q in p.pools}
            act |= any(u.act_tile >= 0 for u in p.convs)
            sync |= any(s.sync for s in p.streams)
            strided |= any(s.region.step != (1, 1) for s in p.streams)
            padded |= any(s.region.pad_value < 0 for s in p.streams)
    assert kinds == {"conv", "pool", "map", "eltwise", "copy"}
    assert modes == {"mac", "max"} and sources == {"bias", "port", "tile"} and alu_ops == {"add"}
    assert sync and strided and padded and act
    assert "max" in pool_modes  # pooling units (average pooling: test_pool_words_round_trip)
    assert any(isinstance(s, HostStep) for program, _ in compiled.values() for s in program.steps)


def test_shared_read_stream_round_trip():
    """A read stream taken by the tiles on its way (ROUTE c = 1) decodes with its taps; c = 1 on a
    write stream is refused."""
    shared = Stream(2, "read", "data", Region("x", 0, 0, 0, 4, 5), 2, (0, 1, 3, 2), 20, taps=(0, 1, 3))
    out = Stream(0, "write", "out", Region("y", 0, 0, 0, 2, 2), 0, (0,), 4)
    p = Pass(0, "conv", ("l",), streams=(shared, out))
    words = encode_pass(p, {("x", 0): 100, ("y", 0): 200}, {"x": (4, 5), "y": (2, 2)})
    d = decode_pass(words)
    assert [(s.tile, s.route, s.taps) for s in d.streams] == [(2, (0, 1, 3, 2), (0, 1, 3)), (0, (0,), ())]
    assert "ROUTE      stream=0 0->1 tap" in [format_word(w) for w in words]
    bad = list(words)
    route = next(i for i, w in enumerate(bad) if w >> 56 == OPCODES["ROUTE"])
    bad[route] |= 2 << 32  # c = 3
    with pytest.raises(ValueError, match="ROUTE field c = 3"):
        decode_pass(bad)


def test_packed_convolver_round_trip():
    """CONV_PACK, the second kernel's CONV_W words (index 128 + i) and the PORT lane bit carry a packed
    convolver (tile.lanes = 2): its second kernel, bias and lane-1 streams decode as scheduled."""
    u = ConvUnit(
        1, "l", 3, 0, "mac", 0, (0, 0), (3, 3), (1, 1), (1, 1), tuple(range(-4, 5)), 2, -7, "port", "port",
        out_channel1=5, kernel1=tuple(range(100, 109)), bias1=-300,
    )  # fmt: skip
    psum1 = Stream(2, "read", "psum", Region("p", 5, 0, 0, 2, 2), 1, (1,), 4, sync=True, lane=1)
    out1 = Stream(3, "write", "out", Region("y", 5, 0, 0, 2, 2), 1, (1,), 4, lane=1)
    p = Pass(0, "conv", ("l",), convs=(u,), streams=(psum1, out1))
    words = encode_pass(p, {("p", 5): 10, ("y", 5): 20}, {"p": (2, 2), "y": (2, 2)})
    d = decode_pass(words)
    (dc,) = d.convs
    assert (dc.packed, dc.kernel1, dc.bias1, dc.kernel) == (True, u.kernel1, -300, u.kernel)
    assert [(s.role, s.lane, s.sync) for s in d.streams] == [("psum", 1, True), ("out", 1, False)]
    listing = [format_word(w) for w in words]
    assert "CONV_PACK  tile=1 bias1=-300" in listing
    assert "CONV_W     tile=1 w1[0]=100 w1[1]=101" in listing
    # an unpacked unit has neither
    plain = decode_pass(encode_pass(Pass(0, "conv", ("l",), convs=(replace(u, out_channel1=-1),)), {}, {}))
    assert (plain.convs[0].packed, plain.convs[0].kernel1) == (False, ())


def test_accumulation_buffer_round_trip():
    """CONV_LINK source 3 (the tile's accumulation buffer) and CONV_ACC (outputs into it, with their
    number) carry psum_from and to "acc" (tile.acc_words); CONV_ACC comes after CONV_PACK."""
    u = ConvUnit(
        2, "l", 3, 0, "mac", 0, (0, 0), (3, 3), (1, 1), (1, 1), tuple(range(-4, 5)), 2, 0, "acc", "acc",
        out_channel1=5, kernel1=tuple(range(100, 109)), acc_words=1234,
    )  # fmt: skip
    words = encode_pass(Pass(0, "conv", ("l",), convs=(u,)), {}, {})
    (dc,) = decode_pass(words).convs
    assert (dc.psum_from, dc.to, dc.acc_words, dc.packed) == ("acc", "acc", 1234, True)
    listing = [format_word(w) for w in words]
    assert "CONV_LINK  tile=2 psum=acc to=port delay=0" in listing
    pack = listing.index("CONV_PACK  tile=2 bias1=0")
    assert listing[pack + 1] == "CONV_ACC   tile=2 words=1234"
    # partial sums from the buffer, written out
    out = decode_pass(
        encode_pass(Pass(0, "conv", ("l",), convs=(replace(u, to="port", acc_words=0),)), {}, {})
    )
    assert (out.convs[0].psum_from, out.convs[0].to, out.convs[0].acc_words) == ("acc", "port", 0)
    # a buffer takes raw outputs: no mapper; and at least one word
    acc = pack + 1
    with pytest.raises(ValueError, match=r"raw outputs"):
        decode_pass(encode_pass(Pass(0, "conv", ("l",), convs=(replace(u, act_tile=2),)), {}, {}))
    with pytest.raises(ValueError, match=r"words 0 do not fit"):
        decode_pass([*words[:acc], words[acc] & ~0xFFFFFFFF, *words[acc + 1 :]])
    with pytest.raises(ValueError, match=r"1 to 65535"):
        encode_pass(Pass(0, "conv", ("l",), convs=(replace(u, acc_words=0),)), {}, {})


def test_pool_words_round_trip():
    """POOL, POOL_W and POOL_MAP carry every field of a pooling unit, signed ones included."""
    pools = (
        PoolUnit(2, "p", 0, "mac", 4, 143, 191, 16, -5, -7, 3),
        PoolUnit(0, "q", 1, "max", 2, 9, 11, 0, 0, 0, -2),
        PoolUnit(3, "r", 2, "mac", 15, 65535, 1, -32768, 127, 32767, -128),
    )
    words = encode_pass(Pass(0, "conv", ("p",), pools=pools), {}, {})
    d = decode_pass(words)
    assert [attrs(dq, POOL) for dq in d.pools] == [attrs(q, POOL) for q in pools]
    assert "POOL       tile=2 mode=mac size=4 shift=-5 bias=-7 out_shift=3" in [format_word(w) for w in words]
    with pytest.raises(ValueError, match="window size 1"):
        encode_pass(Pass(0, "conv", ("p",), pools=(PoolUnit(0, "p", 0, "max", 1, 4, 4, 0, 0, 0, 0),)), {}, {})


def _conv(tile: int, mode: str, *rest) -> ConvUnit:
    """A convolver with dummy bookkeeping fields; ``rest``: block, stride, dilation, kernel, shift, bias,
    psum_from, to, act_tile, delay."""
    return ConvUnit(tile, "l", 0, 0, mode, 0, (0, 0), *rest)


def _edge_pass() -> tuple[Pass, dict, dict]:
    """A hand-made pass with fields at their edges: signed extremes, odd and empty kernels, long routes."""
    bordered = Region("a", 1, -5, 32767, 65535, 1, (255, 0, 7, 65535), -32768)
    streams = (
        Stream(3, "read", "data", bordered, 5, (1, 2, 5), 65535),
        Stream(0, "read", "psum", Region("p", 0, 0, -32768, 2, 3), 0, (0,), 6, sync=True),
        Stream(63, "write", "out", Region("o", 2, 1, 2, 3, 4, step=(255, 3)), 7, (7, 6, 2, 1, 0), 2**32 - 1),
    )
    lowest = tuple(range(-32768, -32759))
    convs = (
        _conv(5, "mac", (3, 3), (15, 1), (1, 15), lowest, -128, -32768, "bias", "tile:6", -1, 65535),
        _conv(6, "mac", (2, 2), (1, 1), (1, 1), (32767, -1, 0, 1), 127, 0, "tile:5", "tile:32767", 254, 0),
        _conv(7, "max", (15, 15), (2, 2), (1, 1), (), 0, 32767, "port", "port", -1, 0),
    )
    maps = (
        MapUnit(6, "l", 0, (-32768, 0, 32767), (-(2**31), 2**31 - 1, 0, 1), (-32768, 32767, 0, -1), -(2**31)),
        MapUnit(2, "l", 0, (), (256,), (3,), 2**31 - 1),
    )
    ops = ("add", "sub", "mul", "max", "min")
    alus = tuple(AluUnit(t, "l", 0, op, -32768 + t, 32767 - t, t - 128) for t, op in enumerate(ops))
    p = Pass(2**32 - 1, "eltwise", ("l",), convs, maps, alus, streams, rate=(65535, 65535), beats=2**32 - 1)
    addresses = {("a", 1): 2**32 - 1, ("p", 0): 0, ("o", 2): 12345}
    shapes = {"a": (65535, 0), "p": (1, 65535), "o": (7, 9)}
    return p, addresses, shapes


def test_decode_edge_values_exactly():
    p, addresses, shapes = _edge_pass()
    d = decode_pass(encode_pass(p, addresses, shapes))
    check_units(p, d)
    assert (d.index, d.rate, d.beats) == (2**32 - 1, (65535, 65535), 2**32 - 1)
    assert [(s.address, s.map_shape) for s in d.streams] == [
        (addresses[(s.region.buffer, s.region.channel)], shapes[s.region.buffer]) for s in p.streams
    ]
    assert d.convs[0].kernel == tuple(range(-32768, -32759)) and d.convs[2].kernel == ()
    assert d.streams[0].pad_value == -32768 and d.streams[1].c0 == -32768 and d.streams[0].r0 == -5


def test_word_fields_and_format_word():
    w = word("CONV", 3, 0, 0x77, 0x1111)
    assert word_fields(w) == ("CONV", 3, 0, 0x77, 0x1111)
    assert format_word(w) == "CONV       tile=3 mode=mac k=7x7 stride=1x1 dil=1x1"
    assert format_word(word("PORT", 0, 0, 0, 2)) == "PORT       port=0 read data tile=2"
    assert format_word(word("PORT", 5, 1, 0x81, 9)) == "PORT       port=5 write psum sync tile=9"
    assert format_word(word("PORT_ORG", arg=0xFFFF0002)) == "PORT_ORG   r0=-1 c0=2"
    assert format_word(word("CONV_SHIFT", 1, -3, 0, 0xFFFB)) == "CONV_SHIFT tile=1 shift=-3 act=none bias=-5"
    assert format_word(word("CONV_LINK", 2, 2, 1, (1 << 31) | (3 << 16) | 4)) == (
        "CONV_LINK  tile=2 psum=tile:1 to=tile:3 delay=4"
    )
    assert format_word(word("ALU", 0, 1, -2, 0xFFFE0001)) == (
        "ALU        tile=0 op=sub shift_a=-2 shift_b=1 shift_out=-2"
    )
    assert format_word(word("MAP_SEG", 1, 0, 0, 7)) == "MAP_SEG    tile=1 seg=0 threshold=- offset=7"
    assert format_word(word("RATE", arg=(43 << 16) | 64)) == "RATE       P/Q=43/64"
    assert format_word(0x99 << 56) == ".word      0x9900000000000000  ; unknown opcode 0x99"
    with pytest.raises(ValueError, match=r"unknown opcode 0x99"):
        word_fields(0x99 << 56)
    with pytest.raises(ValueError, match="not a 64-bit configuration word"):
        word_fields(1 << 64)
    # every opcode has a formatter that names it first
    for name, code in OPCODES.items():
        assert format_word(code << 56).split()[0] == name


@pytest.mark.parametrize(
    "change",
    [
        {"stride": (16, 1)},  # would spill into the next nibble (or a reserved bit) and decode wrongly
        {"dilation": (1, 16)},
        {"block": (3, 16), "kernel": (0,) * 48},
        {"delay": 65536, "to": "tile:1"},
        {"bias": 40000},  # would decode as -25536
        {"shift": 200},
    ],
)
def test_encode_refuses_values_its_fields_cannot_hold(change):
    unit = _conv(0, "mac", (3, 3), (1, 1), (1, 1), (0,) * 9, 0, 0, "bias", "port", -1, 0)
    with pytest.raises(ValueError, match="does not fit"):
        encode_pass(Pass(0, "conv", ("l",), convs=(replace(unit, **change),)), {}, {})
    stream = Stream(0, "read", "data", Region("a", 0, 40000, 0, 1, 1), 0, (0,), 1)
    with pytest.raises(ValueError, match="does not fit a signed 16-bit"):
        encode_pass(Pass(0, "conv", ("l",), streams=(stream,)), {("a", 0): 0}, {"a": (1, 1)})


def _minimal() -> list[int]:
    return [word("PASS", 0, arg=4), word("RATE", arg=0x00010001), word("GO", arg=1)]


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ([], "no configuration words"),
        (
            _minimal()[:1] + [0x99 << 56 | 5] + _minimal()[1:],
            r"configuration word 1 \(0x9900000000000005\): unknown opcode 0x99",
        ),
        (_minimal()[1:], r"configuration word 0 \(RATE\): a pass must start with PASS"),
        (_minimal()[:2], r"configuration word 1 \(RATE\): a pass must end with GO"),
        (_minimal()[:1] + _minimal()[2:], r"configuration word 1 \(GO\): no RATE word before GO"),
        (
            _minimal()[:1] + [word("PORT", 0, 0, 0, 1), word("CONV", 1)] + _minimal()[1:],
            r"configuration word 2 \(CONV\): expected PORT_ADDR after PORT",
        ),
        (
            _minimal()[:1] + [word("CONV_W", 1)] + _minimal()[1:],
            r"configuration word 1 \(CONV_W\): does not start a group",
        ),
        ([word("PASS", 9)] + _minimal()[1:], r"configuration word 0 \(PASS\): unknown pass kind code 9"),
        (_minimal() + _minimal()[2:], r"configuration word 2 \(GO\): GO before the end of the pass"),
        ([-1], r"configuration word 0: not a 64-bit configuration word: -1"),
    ],
)
def test_decode_rejects_malformed_words(words, message):
    with pytest.raises(ValueError, match=message):
        decode_pass(words)


def test_decode_checks_groups():
    p, addresses, shapes = _edge_pass()
    words = list(encode_pass(p, addresses, shapes))
    route = next(i for i, w in enumerate(words) if w >> 56 == OPCODES["ROUTE"])  # stream 0: 1->2, 2->5
    with pytest.raises(
        ValueError, match=rf"word {route + 1} \(ROUTE\): .*ends at tile 4, not at the stream's tile 5"
    ):
        decode_pass(words[: route + 1] + [word("ROUTE", 2, 4, 0, 0)] + words[route + 2 :])
    with pytest.raises(
        ValueError, match=rf"word {route + 1} \(ROUTE\): route hop 2->5 does not continue from tile 3"
    ):
        decode_pass(words[:route] + [word("ROUTE", 1, 3, 0, 0)] + words[route + 1 :])
    with pytest.raises(ValueError, match=r"route of stream 1 inside the group of stream 0"):
        decode_pass(words[:route] + [word("ROUTE", 1, 2, 0, 1)] + words[route + 1 :])
    first_w = next(i for i, w in enumerate(words) if w >> 56 == OPCODES["CONV_W"])  # conv 0: 3x3, 5 words
    with pytest.raises(ValueError, match=rf"word {first_w} \(CONV_W\): weight index 2, expected 0"):
        decode_pass(words[:first_w] + words[first_w + 1 :])
    with pytest.raises(ValueError, match=r"8 weights for a mac convolver of block 3x3 \(expected 10\)"):
        decode_pass(words[: first_w + 4] + words[first_w + 5 :])
    link = first_w - 2
    assert words[link] >> 56 == OPCODES["CONV_LINK"]
    with pytest.raises(ValueError, match=rf"word {link} \(CONV_LINK\): unknown partial-sum source code 4"):
        decode_pass(words[:link] + [(words[link] & ~(0xFF << 40)) | (4 << 40)] + words[link + 1 :])


# ---------------------------------------------------------------------------------------------------
# the program file
# ---------------------------------------------------------------------------------------------------
HEADER = "version target model policy memory_words".split()
STEP = "index kind layers macs estimate".split()


def check_loaded(loaded, program: Program) -> None:
    assert attrs(loaded, HEADER) == attrs(program, HEADER)
    assert loaded.buffers == program.buffers
    assert loaded.inputs == program.inputs and loaded.outputs == program.outputs
    assert len(loaded.steps) == len(program.steps)
    for got, want in zip(loaded.steps, program.steps, strict=True):
        if isinstance(want, HostStep):
            assert got == want
            continue
        assert isinstance(got, LoadedPass)
        assert attrs(got, STEP) + (got.words,) == attrs(want, STEP) + (want.config_words,)
        assert got.decoded == decode_pass(want.config_words)


@pytest.mark.parametrize(("target", "policy", "net"), CASES)
def test_write_read_round_trip(compiled, tmp_path, target, policy, net):
    program, low = compiled[(target, policy, net)]
    paths = write_program(program, tmp_path / "out")
    assert paths == {key: tmp_path / "out" / name for key, name in FILES.items()}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(FILES.values())  # no temp files
    for where in (paths["nfcp"], tmp_path / "out", str(tmp_path / "out")):
        loaded = read_program(where)
        check_loaded(loaded, program)
    for lp, p in zip(loaded.passes, program.passes, strict=True):
        check_pass(p, lp.decoded, program, low)
    # the JSON listing says the same
    doc = json.loads(paths["json"].read_text())
    assert doc["format"] == "nfc-program"
    assert tuple(doc[k] for k in HEADER) == attrs(program, HEADER)
    assert doc["buffers"] == [
        {"name": b.name, "address": b.address, "shape": list(b.shape), "frac": b.frac, "bits": b.bits,
         "kind": b.kind, "root": b.root}
        for b in program.buffers
    ]  # fmt: skip
    for key in ("inputs", "outputs"):
        want_io = [{"name": n, "buffer": b, "shape": list(d)} for n, b, d in getattr(program, key)]
        assert doc[key] == want_io
    for step, want in zip(doc["steps"], program.steps, strict=True):
        if isinstance(want, HostStep):
            want_host = {"type": "host", "index": want.index, "layer": want.layer, "op": want.op,
                         "srcs": list(want.srcs), "dst": want.dst, "ops": want.ops}  # fmt: skip
            assert step == want_host
            continue
        assert step["type"] == "pass"
        assert all(re.fullmatch(r"0x[0-9a-f]{16}", w) for w in step["words"])
        assert [int(w, 16) for w in step["words"]] == list(want.config_words)
        assert tuple(step[k] for k in STEP) == (
            want.index,
            want.kind,
            list(want.layers),
            want.macs,
            want.estimate,
        )
        d = decode_pass(want.config_words)
        assert (step["rate"], step["beats"]) == (list(d.rate), d.beats)
        for key, fields in (("streams", STREAM + REGION + ["address"]), ("convs", CONV), ("maps", MAP),
                            ("alus", ALU)):  # fmt: skip
            got = [tuple(json.dumps(u[f]) for f in fields) for u in step[key]]
            assert got == [tuple(json.dumps(x) for x in attrs(u, fields)) for u in getattr(d, key)], key


def test_output_is_byte_identical(compiled, graphs, tmp_path):
    program, _ = compiled[("tiny", "nfc", "classifier")]
    a = write_program(program, tmp_path / "a")
    b = write_program(program, tmp_path / "deeper" / "b")
    again = write_program(program, tmp_path / "a")  # over an existing program
    # a program compiled again from the same model
    arch = load_target("tiny")
    fresh = schedule(lower(graphs["classifier"], arch, default_formats(arch)), arch, "nfc")
    c = write_program(fresh, tmp_path / "c")
    for key in FILES:
        data = a[key].read_bytes()
        assert data == b[key].read_bytes() == again[key].read_bytes() == c[key].read_bytes(), key
        assert str(tmp_path).encode() not in data
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(FILES.values())


def test_interrupted_write_leaves_the_old_program(compiled, tmp_path, monkeypatch):
    old, _ = compiled[("tiny", "nfc", "upsample")]
    new, _ = compiled[("tiny", "nfc", "residual")]
    paths = write_program(old, tmp_path)
    before = {key: p.read_bytes() for key, p in paths.items()}
    import nfc.compiler.binary as binary

    real_replace = binary.os.replace

    def interrupted(src, dst):
        if Path(dst).name == FILES["nfcp"]:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(binary.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_program(new, tmp_path)
    assert paths["nfcp"].read_bytes() == before["nfcp"]
    check_loaded(read_program(tmp_path), old)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES.values())  # temp file removed


def test_disassembly_listing(compiled):
    program, _ = compiled[("tiny", "nfc", "classifier")]
    loaded = parse_program(program_bytes(program))
    text = disasm_text(loaded)
    lines = text.splitlines()
    assert lines[0] == f"nfc program (format version {PROGRAM_VERSION})"
    assert f"model:   {program.model}" in lines and "target:  tiny" in lines and "policy:  nfc" in lines
    assert f"memory:  {program.memory_words} words" in lines
    for b in program.buffers:  # the buffer table gives every address
        assert any(
            re.fullmatch(rf"  {re.escape(b.name)} +{b.address} +\d+ +.* {b.kind}( of {b.root})?", line)
            for line in lines
        )
    word_lines = [line for line in lines if re.match(r"  \d{4}  ", line)]
    assert len(word_lines) == sum(len(p.config_words) for p in program.passes)
    pat = re.compile(
        r"  (\d{4})  ([0-9a-f]{2}) ([0-9a-f]{2}) ([0-9a-f]{2}) ([0-9a-f]{2}) ([0-9a-f]{8})  (\S+)"
    )
    words = [w for p in program.passes for w in p.config_words]
    for line, w in zip(word_lines, words, strict=True):
        m = pat.match(line)
        assert m, line
        assert int("".join(m.groups()[1:6]), 16) == w
        assert line.endswith(format_word(w))
    headers = [line for line in lines if line.startswith(("pass ", "host "))]
    assert len(headers) == len(program.steps)
    for line, step in zip(headers, program.steps, strict=True):
        if isinstance(step, HostStep):
            assert line.startswith(f"host {step.index}: softmax {step.dst} <- {', '.join(step.srcs)}")
        else:
            assert re.fullmatch(
                rf"pass {step.index} \({step.kind}\) layers: .*  cycles~{step.estimate['total']}", line
            )


# ---------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_bytes(compiled) -> bytes:
    return program_bytes(compiled[("tiny", "nfc", "upsample")][0])


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _one_line_error(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "program.nfcp"
    path.write_bytes(data)
    with pytest.raises(NfcError) as info:
        read_program(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message[len(f"{path}: ") :]


def test_bad_magic(tmp_path, good_bytes):
    assert _one_line_error(b"ABCD" + good_bytes[4:], tmp_path) == (
        "not an nfc program (bad magic b'ABCD'); compile one with `nfc compile MODEL -o DIR`"
    )
    assert _one_line_error(b"", tmp_path).startswith("empty file, not an nfc program")
    assert "bad magic b'PK\\x03\\x04'" in _one_line_error(b"PK\x03\x04 a zip file", tmp_path)


def test_unsupported_versions_and_flags(tmp_path, good_bytes):
    newer = good_bytes[:4] + struct.pack("<H", 9) + good_bytes[6:]
    assert _one_line_error(newer, tmp_path) == (
        f"program format version 9 is newer than this nfc reads ({PROGRAM_VERSION}); upgrade nfc"
    )
    older = good_bytes[:4] + struct.pack("<H", 0) + good_bytes[6:]
    assert _one_line_error(older, tmp_path).startswith(
        "program format version 0 is older than this nfc reads"
    )
    flagged = _with_crc(good_bytes[:6] + struct.pack("<H", 2) + good_bytes[8:-4])
    assert _one_line_error(flagged, tmp_path).startswith("program uses format flags 0x0002")


def test_missing_program(tmp_path):
    with pytest.raises(NfcError) as info:
        read_program(tmp_path)
    assert (
        str(info.value)
        == f"{tmp_path}: no program.nfcp in this directory; compile one with `nfc compile MODEL -o DIR`"
    )
    with pytest.raises(NfcError, match=r"x\.nfcp: no such file; compile one"):
        read_program(tmp_path / "x.nfcp")


def test_truncation_at_any_offset(tmp_path, good_bytes):
    n = len(good_bytes)
    offsets = sorted({*range(1, 80), *range(80, n, 41), *range(n - 24, n)})
    for cut in offsets:
        with pytest.raises(NfcError, match="truncated") as info:
            parse_program(good_bytes[:cut], "p.nfcp")
        assert "\n" not in str(info.value) and str(info.value).startswith("p.nfcp: truncated")
    message = _one_line_error(good_bytes[: n // 2], tmp_path)
    assert re.fullmatch(
        r"truncated: the file ends inside the .* \(byte \d+ of \d+\) and its checksum does not "
        r"match: it was cut short \(an interrupted write\?\) or damaged; compile the model "
        r"again with `nfc compile MODEL -o DIR`",
        message,
    )


def test_corruption_is_detected(tmp_path, good_bytes, compiled):
    n = len(good_bytes)
    # a flipped bit inside configuration words (the bulk of the file) and inside the checksum
    program = compiled[("tiny", "nfc", "upsample")][0]
    middle = program.passes[len(program.passes) // 2]
    inside = good_bytes.index(struct.pack(f"<{len(middle.config_words)}Q", *middle.config_words))
    for pos in (inside + 3, inside + 8 * len(middle.config_words) - 1, n - 5, n - 1):
        data = bytearray(good_bytes)
        data[pos] ^= 0x10
        assert _one_line_error(bytes(data), tmp_path).startswith("corrupt: checksum 0x")
    # any single corrupted byte anywhere gives a clean NfcError (never a struct or decode traceback)
    for pos in sorted({*range(0, 120), *range(120, n, 13)}):
        data = bytearray(good_bytes)
        data[pos] ^= 0xFF
        with pytest.raises(NfcError):
            parse_program(bytes(data))
    with pytest.raises(NfcError, match="corrupt: checksum"):
        parse_program(good_bytes[:-4] + b"extra" + good_bytes[-4:])


def test_malformed_content_with_a_valid_checksum(good_bytes, compiled):
    body = good_bytes[:-4]
    assert parse_program(_with_crc(body)).passes  # rebuilding the checksum alone changes nothing
    with pytest.raises(NfcError, match=r"4 unexpected bytes after the last step"):
        parse_program(_with_crc(body + b"\0\0\0\0"))
    # an unknown opcode in the last word of the last pass (its GO: the file's last body byte)
    program = compiled[("tiny", "nfc", "upsample")][0]
    last = program.passes[-1]
    assert program.steps[-1] is last and body[-1] == OPCODES["GO"]
    with pytest.raises(NfcError) as info:
        parse_program(_with_crc(body[:-1] + b"\x99"), "p.nfcp")
    assert str(info.value) == (
        f"p.nfcp: malformed program: pass {last.index}: configuration word {len(last.config_words) - 1} "
        f"(0x99{last.config_words[-1] & (2**56 - 1):014x}): unknown opcode 0x99; "
        "compile the model again with `nfc compile MODEL -o DIR`"
    )
    # an unknown step type: the first step's type byte follows the header and the u32 step count
    first_step = len(program_bytes(replace(program, steps=()))) - 4
    assert body[first_step] == 0
    with pytest.raises(NfcError, match=rf"malformed program: step 0 at byte {first_step} has unknown type 7"):
        parse_program(_with_crc(body[:first_step] + b"\x07" + body[first_step + 1 :]))
    # a pass whose PASS word disagrees with the file's pass index
    index_at = first_step + 1
    with pytest.raises(NfcError, match=r"pass 5 \(conv\): its PASS word says pass 0 \(conv\)"):
        parse_program(_with_crc(body[:index_at] + struct.pack("<I", 5) + body[index_at + 4 :]))


def test_writer_refuses_a_program_whose_words_do_not_decode(compiled, tmp_path):
    program, _ = compiled[("tiny", "nfc", "upsample")]
    p = program.passes[0]
    broken = replace(p, config_words=p.config_words[:-1])  # no GO
    steps = tuple(broken if s is p else s for s in program.steps)
    with pytest.raises(
        NfcError, match=r"internal error: the compiled program does not decode .* must end with GO"
    ):
        write_program(replace(program, steps=steps), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_values_that_do_not_fit(compiled):
    program, _ = compiled[("tiny", "nfc", "upsample")]
    with pytest.raises(ValueError, match="format version 3"):
        program_bytes(replace(program, version=3))
    with pytest.raises(ValueError, match="memory_words: -1 does not fit an unsigned 64-bit field"):
        program_bytes(replace(program, memory_words=-1))
