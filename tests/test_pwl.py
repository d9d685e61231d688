"""The mapper fitter: bit-exact piecewise-linear activations, error bounds of smooth ones."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

from nfc.compiler.pwl import SLOPE_BITS, FitResult, _fit_line, _minimax_line, fit_function, fit_pwl
from nfc.numerics import PWL, QFormat, apply_pwl, dequantize, quantize

Q8_8 = QFormat(16, 8)
Q4_12 = QFormat(16, 12)
Q3_13 = QFormat(16, 13)
Q1_15 = QFormat(16, 15)
Q5_11 = QFormat(16, 11)

Fn = Callable[[np.ndarray], np.ndarray]


def words_of(fmt: QFormat) -> np.ndarray:
    return np.arange(fmt.lo, fmt.hi + 1, dtype=np.int64)


def measured_error(pwl: PWL, fn: Fn) -> float:
    """Worst |mapper - fn clamped to the output range| over every input word, measured here."""
    w = words_of(pwl.in_fmt)
    y, _ = apply_pwl(pwl, w)
    ideal = np.clip(fn(dequantize(w, pwl.in_fmt)), pwl.out_fmt.min_real, pwl.out_fmt.max_real)
    return float(np.abs(dequantize(y, pwl.out_fmt) - ideal).max())


def check_structure(result: FitResult, segments: int, in_fmt: QFormat, out_fmt: QFormat) -> None:
    pwl = result.pwl
    assert (pwl.in_fmt, pwl.out_fmt) == (in_fmt, out_fmt)
    assert 1 <= pwl.segments <= segments
    t = list(pwl.thresholds)
    assert all(a < b for a, b in itertools.pairwise(t)), t  # strictly increasing
    assert all(in_fmt.lo < x <= in_fmt.hi for x in t)
    assert all(isinstance(v, int) for v in (*pwl.thresholds, *pwl.slopes, *pwl.offsets))
    lim = 1 << (SLOPE_BITS - 1)
    assert all(-lim <= a < lim for a in pwl.slopes)
    assert all(out_fmt.lo <= c <= out_fmt.hi for c in pwl.offsets)
    assert result.max_error_lsb == pytest.approx(result.max_error / out_fmt.step, rel=1e-12)


# -- bit-exact piecewise-linear functions ---------------------------------------------------------------

EXACT = [
    ("relu", {}, lambda x: np.maximum(x, 0)),
    ("clip", {"min": 0.0, "max": 6.0}, lambda x: np.clip(x, 0, 6)),  # ReLU6
    ("clip", {"min": -1.0, "max": 1.0}, lambda x: np.clip(x, -1, 1)),  # HardTanh
    ("clip", {"min": 0.3, "max": float("inf")}, lambda x: np.maximum(x, 0.3)),  # off-grid level
    ("clip", {"min": float("-inf"), "max": 2.5}, lambda x: np.minimum(x, 2.5)),
    # levels half way between Q8.8 words: the offset word must round half up like quantize()
    ("clip", {"min": 1 / 512, "max": float("inf")}, lambda x: np.maximum(x, 1 / 512)),
    ("clip", {"min": -5 / 512, "max": 2.5 + 3 / 512}, lambda x: np.clip(x, -5 / 512, 2.5 + 3 / 512)),
    ("abs", {}, np.abs),
    ("leaky_relu", {"alpha": 0.125}, lambda x: np.where(x >= 0, x, 0.125 * x)),
    ("leaky_relu", {"alpha": 0.25}, lambda x: np.where(x >= 0, x, 0.25 * x)),
    ("hard_sigmoid", {"alpha": 0.25, "beta": 0.5}, lambda x: np.clip(0.25 * x + 0.5, 0, 1)),
    ("hard_sigmoid", {"alpha": 0.125, "beta": 0.5}, lambda x: np.clip(0.125 * x + 0.5, 0, 1)),
    ("hard_sigmoid", {"alpha": 0.5, "beta": 0.25}, lambda x: np.clip(0.5 * x + 0.25, 0, 1)),
    ("hard_sigmoid", {"alpha": 2.0, "beta": 0.5}, lambda x: np.clip(2 * x + 0.5, 0, 1)),  # steep
]
FORMATS = [(Q8_8, Q8_8), (Q4_12, Q8_8), (Q8_8, Q4_12), (Q4_12, Q1_15), (Q1_15, Q8_8)]


@pytest.mark.parametrize(("in_fmt", "out_fmt"), FORMATS, ids=lambda f: str(f))
@pytest.mark.parametrize(("kind", "params", "fn"), EXACT, ids=lambda v: v if isinstance(v, str) else "")
def test_piecewise_linear_functions_are_bit_exact(
    kind: str, params: dict, fn: Fn, in_fmt: QFormat, out_fmt: QFormat
) -> None:
    """mapper(x) == quantize(f(dequantize(x))) for every input word, saturation included."""
    w = words_of(in_fmt)
    expected, _ = quantize(fn(dequantize(w, in_fmt)), out_fmt)
    for segments in (4, 8):
        result = fit_function(kind, params, in_fmt, out_fmt, segments)
        check_structure(result, segments, in_fmt, out_fmt)
        y, _ = apply_pwl(result.pwl, w)
        assert np.array_equal(y, expected), f"{np.count_nonzero(y != expected)} words differ"
        assert result.max_error <= out_fmt.step / 2
        assert result.max_error == measured_error(result.pwl, fn)


def test_relu_into_a_narrower_format_saturates_exactly() -> None:
    result = fit_function("relu", {}, Q8_8, Q4_12, 4)
    w = words_of(Q8_8)
    y, sats = apply_pwl(result.pwl, w)
    x = dequantize(w, Q8_8)
    assert np.all(y[x >= 8] == Q4_12.hi)
    assert np.all(y[x < 0] == 0)
    assert np.array_equal(y[(x >= 0) & (x < 8)], w[(x >= 0) & (x < 8)] * 16)
    assert sats == np.count_nonzero(x >= 8)
    assert result.max_error == 0


@pytest.mark.parametrize("v", [3.0, -1.5, 0.1])
def test_max_with_a_constant_is_bit_exact(v: float) -> None:
    fn = lambda x: np.maximum(x, v)  # noqa: E731
    result = fit_pwl(fn, Q4_12, Q8_8, 4, (v,), "max")
    w = words_of(Q4_12)
    expected, _ = quantize(fn(dequantize(w, Q4_12)), Q8_8)
    assert np.array_equal(apply_pwl(result.pwl, w)[0], expected)
    assert result.name == "max"


# -- LeakyReLU with a slope that is not a dyadic fraction --------------------------------------------


@pytest.mark.parametrize("alpha", [0.01, 0.1, 0.2, -0.3, 1 / 3])
@pytest.mark.parametrize(("in_fmt", "out_fmt"), [(Q8_8, Q8_8), (Q3_13, Q1_15), (Q5_11, Q8_8), (Q4_12, Q8_8)])
def test_leaky_relu_error_bound(alpha: float, in_fmt: QFormat, out_fmt: QFormat) -> None:
    """Within half an output step plus the slope word's rounding error times the largest |x|."""
    fn = lambda x: np.where(x >= 0, x, alpha * x)  # noqa: E731
    result = fit_function("leaky_relu", {"alpha": alpha}, in_fmt, out_fmt, 8)
    check_structure(result, 8, in_fmt, out_fmt)
    # the steepest slope is 1: slope words carry 16 fraction bits (1.0 = 2**16 fits 18 bits)
    slope_frac = SLOPE_BITS - 2
    slope_error = abs(alpha - round(alpha * 2**slope_frac) / 2**slope_frac)
    bound = out_fmt.step / 2 + slope_error * abs(in_fmt.min_real)
    assert result.max_error <= bound + 1e-12
    assert result.max_error == measured_error(result.pwl, fn)
    assert result.pwl.segments <= 8


def test_leaky_relu_001_on_q8_8_is_within_the_stated_bound() -> None:
    result = fit_function("leaky_relu", {"alpha": 0.01}, Q8_8, Q8_8, 8)
    # 0.01 * 2**16 = 655.36 -> 655: 0.36 * 2**-16 * 128 = 0.18 steps on top of the half step
    assert result.max_error_lsb <= 0.5 + 0.36 * 2**-16 * 128 * 256 + 1e-9
    assert result.pwl.segments == 2
    assert result.pwl.thresholds == (0,)


# -- smooth functions ---------------------------------------------------------------------------------------


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(x / 2))


def hard_swish(x: np.ndarray) -> np.ndarray:
    return x * np.clip(x / 6 + 0.5, 0, 1)


SMOOTH = {"tanh": np.tanh, "sigmoid": sigmoid, "hard_swish": hard_swish}

#: (kind, in, out, segments) -> the worst error the fitter must reach (real units)
BOUNDS = [
    ("tanh", Q8_8, Q8_8, 8, 0.02),
    ("tanh", Q8_8, Q8_8, 4, 0.075),
    ("tanh", Q3_13, Q1_15, 8, 0.012),
    ("tanh", Q5_11, Q8_8, 8, 0.018),
    ("sigmoid", Q8_8, Q8_8, 8, 0.012),
    ("sigmoid", Q3_13, Q1_15, 8, 0.0037),
    ("sigmoid", Q5_11, Q8_8, 4, 0.035),
    ("hard_swish", Q8_8, Q8_8, 8, 0.025),
    ("hard_swish", Q5_11, Q8_8, 8, 0.025),
    # HardSwish reaches 4 but Q1.15 stops at 1: the segment lines' offsets must stay in range
    ("hard_swish", Q3_13, Q1_15, 8, 0.015),
    ("hard_swish", Q3_13, Q1_15, 4, 0.072),
]


@pytest.mark.parametrize(("kind", "in_fmt", "out_fmt", "segments", "bound"), BOUNDS, ids=str)
def test_smooth_function_error_bounds(
    kind: str, in_fmt: QFormat, out_fmt: QFormat, segments: int, bound: float
) -> None:
    result = fit_function(kind, {}, in_fmt, out_fmt, segments)
    check_structure(result, segments, in_fmt, out_fmt)
    assert result.name == kind
    assert result.max_error <= bound
    # the reported error is exactly what an independent measurement over every word finds
    assert result.max_error == pytest.approx(measured_error(result.pwl, SMOOTH[kind]), abs=1e-12)


def test_more_segments_never_hurt() -> None:
    errors = [fit_function("tanh", {}, Q8_8, Q8_8, s).max_error for s in (2, 3, 4, 6, 8, 12)]
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < errors[0] / 10


@pytest.mark.parametrize("segments", [2, 3, 5, 8])
@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("tanh", {}),
        ("sigmoid", {}),
        ("hard_swish", {}),
        ("hard_sigmoid", {"alpha": 0.2, "beta": 0.5}),  # 3 pieces: 2 segments must approximate
        ("clip", {"min": -1.0, "max": 1.0}),
        ("leaky_relu", {"alpha": 0.01}),
    ],
)
def test_segment_count_never_exceeds_the_request(kind: str, params: dict, segments: int) -> None:
    result = fit_function(kind, params, Q5_11, Q8_8, segments)
    check_structure(result, segments, Q5_11, Q8_8)


def test_fewer_segments_than_kinks_falls_back_to_the_minimax_search() -> None:
    fn = lambda x: np.clip(x, -1, 1)  # noqa: E731
    result = fit_function("clip", {"min": -1.0, "max": 1.0}, Q8_8, Q8_8, 2)
    assert result.pwl.segments <= 2
    assert result.max_error == measured_error(result.pwl, fn)
    assert result.max_error < 0.6  # far better than one line through the whole range


# -- saturation -----------------------------------------------------------------------------------------------


def test_output_beyond_the_format_saturates() -> None:
    """3*tanh into Q1.15: the fit follows the clamped function; beyond +-1 come the extreme words."""
    fn = lambda x: 3 * np.tanh(x)  # noqa: E731
    result = fit_pwl(fn, Q3_13, Q1_15, 8, None, "3tanh")
    check_structure(result, 8, Q3_13, Q1_15)
    assert result.max_error == measured_error(result.pwl, fn)  # against the clamped function
    assert result.max_error < 0.002
    w = words_of(Q3_13)
    x = dequantize(w, Q3_13)
    y, _ = apply_pwl(result.pwl, w)
    near = int(np.ceil(result.max_error_lsb))
    assert np.all(y[x >= 0.5] >= Q1_15.hi - near)
    assert np.all(y[x <= -0.5] <= Q1_15.lo + near)
    assert y[-1] == Q1_15.hi and y[0] == Q1_15.lo  # no wrap-around at the ends


def test_steep_function_reaches_the_extremes() -> None:
    fn = lambda x: 40 * x  # noqa: E731
    result = fit_pwl(fn, Q8_8, Q8_8, 4)
    w = words_of(Q8_8)
    y, _ = apply_pwl(result.pwl, w)
    x = dequantize(w, Q8_8)
    assert np.all(y[x >= 4] == Q8_8.hi)
    assert np.all(y[x <= -4] == Q8_8.lo)
    assert result.max_error == measured_error(result.pwl, fn)
    assert result.max_error <= 2 * Q8_8.step


# -- determinism, API ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "params", "in_fmt", "out_fmt"),
    [("tanh", {}, Q3_13, Q1_15), ("hard_swish", {}, Q8_8, Q8_8), ("leaky_relu", {"alpha": 0.01}, Q8_8, Q8_8)],
)
def test_deterministic(kind: str, params: dict, in_fmt: QFormat, out_fmt: QFormat) -> None:
    a = fit_function(kind, params, in_fmt, out_fmt, 8)
    b = fit_function(kind, params, in_fmt, out_fmt, 8)
    assert a == b
    assert (a.pwl.thresholds, a.pwl.slopes, a.pwl.offsets, a.pwl.slope_frac) == (
        b.pwl.thresholds,
        b.pwl.slopes,
        b.pwl.offsets,
        b.pwl.slope_frac,
    )


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="no fit"):
        fit_function("softplus", {}, Q8_8, Q8_8, 8)


def test_sigmoid_of_large_negative_inputs_is_quiet() -> None:
    # exp(-x) overflows for x < -709: no warning (pytest turns warnings into errors), output 0
    result = fit_function("sigmoid", {}, QFormat(16, 4), Q1_15, 8)
    y, _ = apply_pwl(result.pwl, np.array([QFormat(16, 4).lo]))
    assert abs(int(y[0])) <= result.max_error_lsb
    assert result.max_error < 0.01


# -- the minimax line -----------------------------------------------------------------------------------------


def brute_force_minimax(x: np.ndarray, y: np.ndarray) -> float:
    """The best line's error is the largest levelled error of any three points (Chebyshev)."""
    best = 0.0
    for i, j, k in itertools.combinations(range(x.size), 3):
        a = (y[k] - y[i]) / (x[k] - x[i])
        best = max(best, abs((y[i] - a * x[i]) - (y[j] - a * x[j])) / 2)
    return best


def test_minimax_line_is_optimal() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        n = int(rng.integers(3, 12))
        x = np.sort(rng.choice(np.arange(-50, 50), size=n, replace=False)).astype(np.float64) / 8
        y = rng.normal(size=n) * rng.choice([0.01, 1, 100])
        a, c, e, optimal = _minimax_line(x, y)
        assert optimal
        assert e == pytest.approx(float(np.abs(a * x + c - y).max()), abs=1e-12)
        assert e == pytest.approx(brute_force_minimax(x, y), rel=1e-9, abs=1e-12)


def test_minimax_line_of_collinear_points_is_exact() -> None:
    x = np.arange(-100, 200, dtype=np.float64) / 256
    for slope, offset in ((1.0, 0.0), (0.125, 0.5), (-3.0, 0.25), (0.0, 6.0)):
        a, c, e, _ = _minimax_line(x, slope * x + offset)
        assert (a, c, e) == (slope, offset, 0.0)


def test_line_with_the_offset_held_in_range() -> None:
    rng = np.random.default_rng(6)
    x = np.linspace(2, 3, 40)
    y = 1.5 * x - 3.2 + rng.normal(scale=0.01, size=x.size)  # best offset near -3.2
    a, c, e = _fit_line(x, y, (-1.0, 1.0))
    assert c == -1.0
    assert e == pytest.approx(float(np.abs(a * x + c - y).max()), abs=1e-12)
    slopes = np.linspace(a - 0.05, a + 0.05, 2001)  # no slope does better with that offset
    grid = np.abs(slopes[:, None] * x[None, :] - 1.0 - y[None, :]).max(axis=1)
    assert e <= grid.min() + 1e-12
    # unconstrained when the best offset is in range
    a2, c2, e2 = _fit_line(x, y, (-4.0, 4.0))
    assert (a2, c2, e2) == _minimax_line(x, y)[:3]
