"""The fixed-point golden executor.

(a) ``conv_layer_words`` (vectorised, with a cumulative-sum fast path) against a naive Python
    re-implementation of a ConvLayer chain written straight from the numerics contract, word for
    word, on small lowered convolutions where saturation happens in the middle of chains;
(b) the digits classifier: fixed point against onnxruntime over the whole test split;
(c) the scene parser on real photos: output SNR against onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from nfc.arch import load_target
from nfc.compiler import Graph, GraphOutput, Op, make_node
from nfc.compiler.fixed import conv_layer_words, run_fixed
from nfc.compiler.grid import ConvLayer
from nfc.compiler.lower import lower
from nfc.compiler.passes import run_pipeline
from nfc.compiler.quantize import Formats, calibrate
from nfc.frontends.onnx import import_onnx
from nfc.numerics import PWL, QFormat, quantize

# -- (a) a naive ConvLayer --------------------------------------------------------------------------


def _round_shift(v: int, s: int) -> int:
    """Round half up when dropping ``s`` bits (floor of ``v / 2**s + 1/2``); exact left shift else."""
    return (v + (1 << (s - 1))) >> s if s > 0 else v << -s


def _sat(v: int, bits: int) -> tuple[int, bool]:
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return min(max(v, lo), hi), not lo <= v <= hi


def _mapper(pwl: PWL, x: int) -> tuple[int, bool]:
    seg = sum(1 for t in pwl.thresholds if t <= x)
    shift = pwl.in_fmt.frac + pwl.slope_frac - pwl.out_fmt.frac
    return _sat(_round_shift(pwl.slopes[seg] * x, shift) + pwl.offsets[seg], pwl.out_fmt.bits)


def naive_conv_layer(layer: ConvLayer, x: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Loop over output map, position and term: ``psum = sat(psum + round(window_sum))`` (mac) or
    ``max(psum, window_max)`` (max), from the bias; then the mapper or the narrowing.

    Returns (words, saturations, positions whose chain end differs from the chain without
    saturation, clamped: the chain saturated on the way and came back).
    """
    C, H, W = x.shape
    pt, pl, _, _ = layer.pads
    sh, sw = layer.stride
    dh, dw = layer.dilation
    bh, bw = layer.block
    O, OH, OW = layer.out_shape
    psum_bits = layer.psum_fmt.bits
    shift = layer.in_fmt.frac + layer.wfmt.frac - layer.psum_fmt.frac

    def read(c: int, r: int, q: int) -> int:  # the DMA's virtual border
        r, q = r - pt, q - pl
        return int(x[c, r, q]) if 0 <= r < H and 0 <= q < W else layer.pad_value

    out = np.zeros((O, OH, OW), np.int64)
    sats = mid_chain = 0
    for o in range(O):
        terms = [t for t in range(layer.channels.shape[1]) if layer.channels[o, t] >= 0]
        for i in range(OH):
            for j in range(OW):
                psum = free = int(layer.bias[o])
                for t in terms:
                    c = int(layer.channels[o, t])
                    du, dv = (int(v) for v in layer.offsets[o, t])
                    taps = [
                        (
                            read(c, i * sh + (du + a) * dh, j * sw + (dv + b) * dw),
                            int(layer.kernels[o, t, a, b]),
                        )
                        for a in range(bh)
                        for b in range(bw)
                    ]
                    if layer.mode == "max":
                        psum = max([psum] + [v for v, _ in taps])
                        continue
                    contrib = _round_shift(sum(v * k for v, k in taps), shift)
                    psum, hit = _sat(psum + contrib, psum_bits)
                    free += contrib
                    sats += hit
                mid_chain += psum != _sat(free, psum_bits)[0]
                if layer.act:
                    word, hit = _mapper(layer.act[o], psum)
                else:
                    word, hit = _sat(
                        _round_shift(psum, layer.psum_fmt.frac - layer.out_fmt.frac), layer.out_fmt.bits
                    )
                out[o, i, j] = word
                sats += hit
    return out, sats, mid_chain


def _conv_graph(gen: np.random.Generator, cin: int, cout: int, k: int, act: str | None, **attrs) -> Graph:
    H, W = 7, 8
    stride, dilation, pads = attrs.get("stride", 1), attrs.get("dilation", 1), attrs.get("pads", (0, 0, 0, 0))
    oh = (H + pads[0] + pads[2] - dilation * (k - 1) - 1) // stride + 1
    ow = (W + pads[1] + pads[3] - dilation * (k - 1) - 1) // stride + 1
    # inputs of channel c have sign (-1)**c: consecutive terms pull the partial sum up and down, so
    # it saturates on the way and comes back in range at the chain's end
    w = np.abs(gen.standard_normal((cout, cin, k, k))) * 0.6
    w *= gen.random((cout, cin, 1, 1)) < 0.85  # a few kernels are not terms (connection table)
    w[:, 0] += 0.05
    nodes = [make_node("x", Op.INPUT, (), (cin, H, W), {"onnx_shape": (1, cin, H, W)})]
    conv_attrs = {"stride": (stride, stride), "dilation": (dilation, dilation), "pads": pads, "groups": 1}
    params = {"weight": w, "bias": gen.standard_normal(cout)}
    nodes.append(make_node("c", Op.CONV, ("x",), (cout, oh, ow), conv_attrs, params))
    if act:
        nodes.append(make_node("a", Op.ACT, ("c",), (cout, oh, ow), {"kind": act}))
    return Graph("c", tuple(nodes), (GraphOutput("y", nodes[-1].name, (1, cout, oh, ow)),))


def _pool_graph(k: int, stride: int, pads: tuple[int, int, int, int]) -> Graph:
    C, H, W = 3, 9, 10
    oh = (H + pads[0] + pads[2] - k) // stride + 1
    ow = (W + pads[1] + pads[3] - k) // stride + 1
    x = make_node("x", Op.INPUT, (), (C, H, W), {"onnx_shape": (1, C, H, W)})
    attrs = {"kernel": (k, k), "stride": (stride, stride), "pads": pads}
    p = make_node("p", Op.MAXPOOL, ("x",), (C, oh, ow), attrs)
    return Graph("p", (x, p), (GraphOutput("y", "p", (1, C, oh, ow)),))


#: Q5.10 inputs, Q1.14 weights and a Q4.11 chain (range +-16): chains of 3x3 windows on inputs of
#: magnitude ~2 leave the range on the way.
FORMATS = Formats(
    QFormat(16, 8),
    tensors={"x": QFormat(16, 10), "c": QFormat(16, 11), "a": QFormat(16, 14), "p": QFormat(16, 9)},
    weights={"c": QFormat(16, 14)},
)

CONV_CASES = {
    "plain": dict(cin=4, cout=3, k=3, act=None),
    "stride_pad": dict(cin=4, cout=3, k=3, act=None, stride=2, pads=(1, 1, 1, 1)),
    "dilation": dict(cin=3, cout=2, k=3, act="relu", dilation=2, pads=(2, 1, 2, 1)),
    "big_kernel": dict(cin=3, cout=2, k=5, act="tanh", pads=(2, 2, 2, 2)),  # 4 blocks per map on K=3
    "kernel7": dict(cin=2, cout=2, k=7, act=None, pads=(3, 3, 3, 3), stride=2),
}


@pytest.mark.parametrize("target", ["tiny", "virtex6"])
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv_layer_words_matches_the_naive_chain(case: str, target: str) -> None:
    arch = load_target(target)
    mid_chain = 0
    for seed in range(3):
        gen = np.random.default_rng(100 * seed + list(CONV_CASES).index(case))
        g = _conv_graph(gen, **CONV_CASES[case])
        (layer,) = lower(g, arch, FORMATS).layers
        cin, H, W = g.node("x").shape
        signs = (-1) ** np.arange(cin)[:, None, None]
        xr = (np.abs(gen.standard_normal((cin, H, W))) * 2.5 + 0.5) * signs
        x, _ = quantize(xr, layer.in_fmt)
        want, want_sats, early = naive_conv_layer(layer, x)
        got, got_sats = conv_layer_words(layer, x)
        np.testing.assert_array_equal(got, want)
        assert got_sats == want_sats
        mid_chain += early
    assert mid_chain > 0  # saturation on the way changed some results: the fast path fell back


@pytest.mark.parametrize("target", ["tiny", "virtex6"])
@pytest.mark.parametrize(
    "k, stride, pads", [(2, 2, (0, 0, 1, 1)), (3, 2, (1, 1, 1, 1)), (5, 1, (2, 1, 2, 1))]
)
def test_conv_layer_words_max_mode_matches_the_naive_chain(target: str, k: int, stride: int, pads) -> None:
    arch = load_target(target)
    g = _pool_graph(k, stride, pads)
    (layer,) = lower(g, arch, FORMATS).layers
    assert layer.mode == "max"
    gen = np.random.default_rng(k)
    x, _ = quantize(-np.abs(gen.standard_normal(g.node("x").shape)) * 4, layer.in_fmt)
    want, want_sats, _ = naive_conv_layer(layer, x)
    got, got_sats = conv_layer_words(layer, x)
    np.testing.assert_array_equal(got, want)
    assert got_sats == want_sats


# -- (b) the digits classifier ------------------------------------------------------------------------


def _ort_session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_test, y_test) as ``nfc.benchmarks`` splits them: first 1437 train."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images.astype(np.float32) / 16.0)[:, None, :, :]
    return x[:1437], data.target[:1437], x[1437:], data.target[1437:]


@pytest.mark.parametrize("target", ["tiny", "virtex6"])
def test_digits_fixed_point_agrees_with_float(benchmark_dir: Path, target: str) -> None:
    path = benchmark_dir / "digits.onnx"
    g = run_pipeline(import_onnx(onnx.load(path)))
    (inp,) = g.inputs
    x_train, _, x_test, y_test = digits_split()
    assert len(x_test) == 360
    arch = load_target(target)
    formats = calibrate(g, arch, [{inp.name: x_train[i : i + 1]} for i in range(64)])
    low = lower(g, arch, formats)
    sess = _ort_session(path)
    (out,) = (o.name for o in g.outputs)
    ref = np.concatenate([sess.run([out], {inp.name: x_test[i : i + 1]})[0] for i in range(len(x_test))])
    got = np.concatenate(
        [run_fixed(low, {inp.name: x_test[i : i + 1]}).outputs[out] for i in range(len(x_test))]
    )
    agree = float(np.mean(ref.argmax(1) == got.argmax(1)))
    acc_float = float(np.mean(ref.argmax(1) == y_test))
    acc_fixed = float(np.mean(got.argmax(1) == y_test))
    assert agree >= 0.995, f"top-1 agreement {agree:.4f}"
    assert abs(acc_fixed - acc_float) <= 0.005, f"accuracy {acc_fixed:.4f} fixed vs {acc_float:.4f} float"
    assert acc_float >= 0.9


# -- (c) the scene parser on photos ---------------------------------------------------------------------


def scene_input(photo: np.ndarray) -> np.ndarray:
    """An RGB photo as the scene parser's input: 240x320, YUV, each channel zero mean and unit std,
    shape (1, 3, 240, 320) float32."""
    from skimage.color import rgb2yuv
    from skimage.transform import resize

    rgb = resize(photo, (240, 320), anti_aliasing=True)
    yuv = rgb2yuv(rgb[..., :3])
    yuv = (yuv - yuv.mean(axis=(0, 1))) / yuv.std(axis=(0, 1))
    return np.ascontiguousarray(yuv.transpose(2, 0, 1)[None], dtype=np.float32)


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    return float(10 * np.log10(np.sum(ref**2) / np.sum((got - ref) ** 2)))


def test_scene_parsing_on_photos(benchmark_dir: Path) -> None:
    """Calibrated on one photo, the fixed-point scene parser (virtex6: 8-segment tanh mappers)
    stays within 30 dB of onnxruntime on others."""
    import skimage.data

    path = benchmark_dir / "scene_parsing.onnx"
    g = run_pipeline(import_onnx(onnx.load(path)))
    (inp,) = g.inputs
    (out,) = (o.name for o in g.outputs)
    arch = load_target("virtex6")
    calib = skimage.data.rocket() if hasattr(skimage.data, "rocket") else skimage.data.astronaut()
    low = lower(g, arch, calibrate(g, arch, [{inp.name: scene_input(calib)}]))
    sess = _ort_session(path)
    for name in ("astronaut", "coffee", "chelsea"):
        x = scene_input(getattr(skimage.data, name)())
        ref = sess.run([out], {inp.name: x})[0]
        res = run_fixed(low, {inp.name: x})
        assert sum(res.saturations.values()) == 0, name
        snr = snr_db(ref, res.outputs[out])
        assert snr >= 30.0, f"{name}: SNR {snr:.1f} dB"
