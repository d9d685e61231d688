"""The fixed-point contract of ``nfc.numerics`` against naive models in Python integers."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest

from nfc.numerics import PWL, QFormat, apply_pwl, dequantize, narrow, quantize, round_shift, saturate

Q8_8 = QFormat(16, 8)
Q1_15 = QFormat(16, 15)


def naive_round_shift(v: int, shift: int) -> int:
    """``v * 2**-shift`` rounded half up (ties towards +infinity), in Python integers.

    ``floor(v / 2**s + 1/2) == floor((2*v + 2**s) / 2**(s+1))``; a negative shift multiplies.
    """
    if shift < 0:
        return v * 2**-shift
    return (2 * v + 2**shift) // 2 ** (shift + 1)


def test_naive_model_agrees_with_rationals() -> None:
    for shift in range(-3, 8):
        for v in range(-300, 301):
            exact = math.floor(Fraction(v) * Fraction(2) ** -shift + Fraction(1, 2))
            assert naive_round_shift(v, shift) == exact


def naive_saturate(v: int, bits: int) -> int:
    return max(-(2 ** (bits - 1)), min(2 ** (bits - 1) - 1, v))


# -- round_shift ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("v", "shift", "expected"),
    [
        (-5, 1, -2),  # -2.5 -> -2
        (5, 1, 3),  # 2.5 -> 3
        (-3, 1, -1),  # -1.5 -> -1
        (3, 1, 2),  # 1.5 -> 2
        (-1, 1, 0),  # -0.5 -> 0
        (1, 1, 1),  # 0.5 -> 1
        (-6, 2, -1),  # -1.5 -> -1
        (-7, 2, -2),  # -1.75 -> -2
        (6, 2, 2),  # 1.5 -> 2
        (0, 5, 0),
    ],
)
def test_round_shift_ties_go_up(v: int, shift: int, expected: int) -> None:
    assert int(round_shift(v, shift)) == expected


def test_round_shift_exhaustive_against_model() -> None:
    v = np.arange(-4100, 4101, dtype=np.int64)
    for shift in range(0, 15):
        got = round_shift(v, shift)
        assert got.dtype == np.int64
        assert got.tolist() == [naive_round_shift(int(k), shift) for k in v]


def test_round_shift_large_values() -> None:
    rng = np.random.default_rng(1)
    v = rng.integers(-(2**40), 2**40, size=2000, dtype=np.int64)
    for shift in (1, 7, 16, 23, 31):
        assert round_shift(v, shift).tolist() == [naive_round_shift(int(k), shift) for k in v]


def test_round_shift_negative_shift_is_exact_left_shift() -> None:
    v = np.arange(-300, 301, dtype=np.int64)
    for shift in range(1, 9):
        assert round_shift(v, -shift).tolist() == [int(k) * 2**shift for k in v]


def test_round_shift_zero_shift_is_identity_and_accepts_ints() -> None:
    v = np.array([-7, 0, 9], dtype=np.int64)
    assert round_shift(v, 0).tolist() == [-7, 0, 9]
    assert int(round_shift(3, 1)) == 2
    assert int(round_shift(-3, 1)) == -1


# -- saturate / narrow ------------------------------------------------------------------------------


def test_saturate_clamps_and_counts() -> None:
    v = np.array([-40000, -32769, -32768, -1, 0, 32767, 32768, 10**12], dtype=np.int64)
    out, count = saturate(v, 16)
    assert out.tolist() == [-32768, -32768, -32768, -1, 0, 32767, 32767, 32767]
    assert count == 4
    assert out.dtype == np.int64


@pytest.mark.parametrize("bits", [2, 8, 12, 16, 24, 32])
def test_saturate_against_model(bits: int) -> None:
    lim = 2 ** (bits - 1)
    edges = np.arange(-lim - 50, -lim + 50, dtype=np.int64)
    v = np.concatenate([edges, np.arange(-50, 50), -edges - 1])  # both ends, and around 0
    out, count = saturate(v, bits)
    expected = [naive_saturate(int(k), bits) for k in v]
    assert out.tolist() == expected
    assert count == sum(e != k for e, k in zip(expected, v.tolist(), strict=True))
    if bits >= 8:
        assert count == 100  # 50 below the range, 50 above


def test_saturate_nothing_to_clamp() -> None:
    out, count = saturate(np.arange(-128, 128), 8)
    assert count == 0
    assert out.tolist() == list(range(-128, 128))


def test_narrow_rounds_then_saturates() -> None:
    # 24 fraction bits -> Q8.8 drops 16 bits
    fmt = Q8_8
    v = np.array([0, 1 << 15, -(1 << 15), 3 << 15, -(3 << 15), 200 << 24, -(200 << 24)], dtype=np.int64)
    out, count = narrow(v, 24, fmt)
    assert out.tolist() == [0, 1, 0, 2, -1, 32767, -32768]
    assert count == 2


def test_narrow_exhaustive_against_model() -> None:
    fmt = QFormat(12, 6)
    v = np.arange(-(2**16), 2**16, 29, dtype=np.int64)
    for from_frac in (2, 6, 9, 14):
        out, count = narrow(v, from_frac, fmt)
        expected = [naive_round_shift(int(k), from_frac - fmt.frac) for k in v]
        assert out.tolist() == [naive_saturate(e, fmt.bits) for e in expected]
        assert count == sum(e != naive_saturate(e, fmt.bits) for e in expected)


# -- quantize / dequantize --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [Q8_8, Q1_15], ids=str)
def test_quantize_dequantize_round_trip_every_word(fmt: QFormat) -> None:
    words = np.arange(fmt.lo, fmt.hi + 1, dtype=np.int64)
    real = dequantize(words, fmt)
    assert real.dtype == np.float64
    assert np.array_equal(real * 2**fmt.frac, words.astype(np.float64))
    back, count = quantize(real, fmt)
    assert count == 0
    assert np.array_equal(back, words)
    # anything within (-step/2, step/2) of a word comes back to that word; +step/2 goes up
    for delta, shift in ((0.49, 0), (-0.49, 0), (0.5, 1), (-0.5, 0)):
        moved, _ = quantize(real + delta * fmt.step, fmt)
        assert np.array_equal(moved, np.minimum(words + shift, fmt.hi))


@pytest.mark.parametrize("fmt", [Q8_8, Q1_15], ids=str)
def test_quantize_saturates_and_counts(fmt: QFormat) -> None:
    x = np.array([fmt.max_real, fmt.max_real + fmt.step / 2, 1e9, np.inf, fmt.min_real, -1e9, -np.inf])
    q, count = quantize(x, fmt)
    assert q.tolist() == [fmt.hi, fmt.hi, fmt.hi, fmt.hi, fmt.lo, fmt.lo, fmt.lo]
    assert count == 5


def test_quantize_ties_go_up() -> None:
    q, _ = quantize(np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]) / 256, Q8_8)
    assert q.tolist() == [-2, -1, 0, 1, 2, 3]


def test_quantize_matches_rational_model() -> None:
    rng = np.random.default_rng(2)
    x = rng.uniform(-140, 140, size=3000)
    q, count = quantize(x, Q8_8)
    expected = [math.floor(Fraction(float(v)) * 256 + Fraction(1, 2)) for v in x]
    assert q.tolist() == [naive_saturate(e, 16) for e in expected]
    assert count == sum(e != naive_saturate(e, 16) for e in expected)


# -- QFormat ------------------------------------------------------------------------------------------


def test_qformat_properties() -> None:
    f = QFormat()
    assert (f.bits, f.frac) == (16, 8)
    assert (f.lo, f.hi) == (-32768, 32767)
    assert f.step == 1 / 256
    assert f.max_real == 32767 / 256
    assert f.min_real == -128.0
    assert str(f) == "Q8.8"
    g = QFormat(16, 15)
    assert str(g) == "Q1.15"
    assert (g.min_real, g.max_real) == (-1.0, 32767 / 32768)
    h = QFormat(8, 2)
    assert (h.lo, h.hi, h.step, str(h)) == (-128, 127, 0.25, "Q6.2")
    assert QFormat(16, 8) == Q8_8 and hash(QFormat(16, 8)) == hash(Q8_8)
    with pytest.raises(AttributeError):
        f.frac = 3  # type: ignore[misc]


# -- PWL ------------------------------------------------------------------------------------------------


def test_pwl_validation() -> None:
    ok = PWL(Q8_8, Q8_8, 16, (0, 10), (0, 1, 2), (0, 0, 0))
    assert ok.segments == 3
    with pytest.raises(ValueError, match="thresholds"):
        PWL(Q8_8, Q8_8, 16, (0,), (0, 1, 2), (0, 0, 0))
    with pytest.raises(ValueError, match="offsets"):
        PWL(Q8_8, Q8_8, 16, (0, 1), (0, 1, 2), (0, 0))
    with pytest.raises(ValueError, match="increasing"):
        PWL(Q8_8, Q8_8, 16, (10, 0), (0, 1, 2), (0, 0, 0))
    single = PWL(Q8_8, Q8_8, 16, (), (65536,), (0,))
    assert single.segments == 1


def naive_pwl(pwl: PWL, words: range) -> tuple[list[int], int]:
    """The mapper word by word in Python integers (floor division does the half-up rounding)."""
    shift = pwl.in_fmt.frac + pwl.slope_frac - pwl.out_fmt.frac
    out, sats = [], 0
    for x in words:
        seg = sum(1 for t in pwl.thresholds if t <= x)
        p = pwl.slopes[seg] * x
        r = (2 * p + 2**shift) // 2 ** (shift + 1) if shift > 0 else p * 2**-shift
        y = r + pwl.offsets[seg]
        s = naive_saturate(y, pwl.out_fmt.bits)
        sats += s != y
        out.append(s)
    return out, sats


def random_pwl(rng: random.Random, in_fmt: QFormat, out_fmt: QFormat, slope_frac: int) -> PWL:
    n = rng.randint(1, 6)
    thresholds = tuple(sorted(rng.sample(range(in_fmt.lo + 1, in_fmt.hi), n - 1)))
    slopes = tuple(rng.randint(-(2**17), 2**17 - 1) for _ in range(n))
    offsets = tuple(rng.randint(out_fmt.lo, out_fmt.hi) for _ in range(n))
    return PWL(in_fmt, out_fmt, slope_frac, thresholds, slopes, offsets)


@pytest.mark.parametrize(
    ("in_fmt", "out_fmt", "slope_frac", "seed"),
    [
        (Q8_8, Q8_8, 16, 1),
        (QFormat(16, 13), Q1_15, 17, 2),
        (QFormat(16, 11), Q8_8, 12, 3),
        (Q1_15, QFormat(16, 4), 2, 4),  # shift 13
        (QFormat(16, 2), QFormat(16, 14), 4, 5),  # negative shift: an exact left shift
        (QFormat(16, 6), QFormat(16, 6), 0, 6),  # shift 0
    ],
)
def test_apply_pwl_against_naive_model_every_word(
    in_fmt: QFormat, out_fmt: QFormat, slope_frac: int, seed: int
) -> None:
    rng = random.Random(seed)
    pwl = random_pwl(rng, in_fmt, out_fmt, slope_frac)
    words = range(in_fmt.lo, in_fmt.hi + 1)
    got, sats = apply_pwl(pwl, np.arange(in_fmt.lo, in_fmt.hi + 1, dtype=np.int64))
    expected, expected_sats = naive_pwl(pwl, words)
    assert got.dtype == np.int64
    assert got.tolist() == expected
    assert sats == expected_sats
    if in_fmt == Q8_8:
        assert sats > 0  # random 18-bit slopes on Q8.8 do saturate: the count is exercised


def test_apply_pwl_segment_boundaries() -> None:
    # segment i = number of thresholds <= x: a threshold word belongs to the segment on its right
    pwl = PWL(Q8_8, Q8_8, 16, (-5, 7), (0, 0, 0), (100, 200, 300))
    y, sats = apply_pwl(pwl, np.array([-32768, -6, -5, 6, 7, 32767]))
    assert y.tolist() == [100, 100, 200, 200, 300, 300]
    assert sats == 0


def test_apply_pwl_identity_and_saturation() -> None:
    ident = PWL(Q8_8, Q8_8, 16, (), (1 << 16,), (0,))
    words = np.arange(-32768, 32768, dtype=np.int64)
    y, sats = apply_pwl(ident, words)
    assert np.array_equal(y, words) and sats == 0
    shifted = PWL(Q8_8, Q8_8, 16, (), (1 << 16,), (256,))
    y, sats = apply_pwl(shifted, words)
    assert np.array_equal(y, np.minimum(words + 256, 32767))
    assert sats == 256
