"""Piecewise-linear fitter for the mapper.

Given a real function, the input and output word formats and the number of segments the target's
mapper has, produce a :class:`~nfc.numerics.PWL` whose worst-case error over **every** input word
is as small as we can make it, and report that error.

* Functions that are themselves piecewise linear with few enough pieces (ReLU, LeakyReLU, Clip,
  HardTanh, Abs, ...) are fitted with breakpoints on their kinks, so the only error left is the
  rounding of slope and output words (at most half an output step when the slope is a power of
  two or otherwise exactly representable).
* Smooth functions (tanh, sigmoid, HardSwish's quadratic part, ...) are fitted by a minimax
  search: for a target error ``E`` greedily grow segments from the left while the best line
  through the segment stays within ``E``; bisect on ``E`` until the segments fit the mapper.
  The best line for a segment is the Chebyshev (minimax) line, found by ternary search over the
  slope (the error is convex in the slope). Coefficients are then rounded to words and the
  achieved error is measured exactly on all input words.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nfc.numerics import PWL, QFormat, apply_pwl, dequantize

__all__ = ["FitResult", "fit_pwl", "fit_function", "SLOPE_BITS"]

#: Width of a slope word: 18 bits, so that a 16-bit word times a slope fits one 25x18 DSP multiplier.
SLOPE_BITS = 18


@dataclass(frozen=True, slots=True)
class FitResult:
    """A fitted mapper and its achieved worst-case error (real units, and in output steps)."""

    pwl: PWL
    max_error: float
    max_error_lsb: float
    name: str = ""


def _minimax_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(slope, intercept, error) of the line minimising max |a*x + c - y| over the points."""
    if x.size == 1 or x[0] == x[-1]:
        return 0.0, float(y.mean()), float((y.max() - y.min()) / 2)

    def err(a: float) -> tuple[float, float]:
        r = y - a * x
        hi, lo = r.max(), r.min()
        return (hi - lo) / 2, (hi + lo) / 2

    span = x[-1] - x[0]
    guess = (y[-1] - y[0]) / span
    steep = np.abs(np.diff(y) / np.maximum(np.diff(x), 1e-300)).max(initial=0.0)
    lo, hi = guess - steep - 1.0, guess + steep + 1.0
    for _ in range(60):
        m1, m2 = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        if err(m1)[0] <= err(m2)[0]:
            hi = m2
        else:
            lo = m1
    a = (lo + hi) / 2
    e, c = err(a)
    return float(a), float(c), float(e)


def _greedy(x: np.ndarray, y: np.ndarray, limit: float, max_segments: int) -> list[int] | None:
    """Segment start indices covering all points with minimax error <= limit, or None if too many."""
    starts = [0]
    n = x.size
    i = 0
    while True:
        lo, hi = i + 1, n  # find the largest end (exclusive) with error <= limit
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if _minimax_line(x[i:mid], y[i:mid])[2] <= limit:
                lo = mid
            else:
                hi = mid - 1
        end = max(lo, i + 1)
        if end >= n:
            return starts
        if len(starts) == max_segments:
            return None
        starts.append(end)
        i = end


def _quantize_segments(
    words: np.ndarray, target: np.ndarray, starts: list[int], in_fmt: QFormat, out_fmt: QFormat
) -> PWL:
    """Round each segment's minimax line to words, choosing the slope shift for the steepest slope."""
    xs = dequantize(words, in_fmt)
    bounds = starts + [words.size]
    lines = [_minimax_line(xs[a:b], target[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    steepest = max(abs(a) for a, _, _ in lines)
    # the largest slope_frac such that every slope fits a SLOPE_BITS-bit word
    slope_frac = SLOPE_BITS - 1
    while slope_frac > 0 and round(steepest * 2**slope_frac) > (1 << (SLOPE_BITS - 1)) - 1:
        slope_frac -= 1
    slope_frac = min(slope_frac + 8, 24) if steepest == 0 else slope_frac
    # real y = a*x + c with x = q*step_in: slope word A = round(a * 2^slope_frac) applies to q with
    # fraction fx + slope_frac; offset word C = round(c * 2^fy)
    slopes, offsets = [], []
    for a, c, _ in lines:
        limit = 1 << (SLOPE_BITS - 1)
        slopes.append(int(np.clip(round(a * 2**slope_frac), -limit, limit - 1)))
        offsets.append(int(np.clip(round(c * 2**out_fmt.frac), out_fmt.lo, out_fmt.hi)))
    thresholds = tuple(int(words[s]) for s in starts[1:])
    return PWL(in_fmt, out_fmt, slope_frac, thresholds, tuple(slopes), tuple(offsets))


def _refine_offsets(pwl: PWL, words: np.ndarray, target: np.ndarray) -> PWL:
    """Re-centre each segment's offset word on its actual rounded error band (fixes rounding bias)."""
    offsets = list(pwl.offsets)
    seg = np.searchsorted(np.asarray(pwl.thresholds, dtype=np.int64), words, side="right")
    y, _ = apply_pwl(pwl, words)
    err = dequantize(y, pwl.out_fmt) - target
    for s in range(pwl.segments):
        m = seg == s
        if not m.any():
            continue
        centre = (err[m].max() + err[m].min()) / 2
        offsets[s] = int(
            np.clip(offsets[s] - round(centre * 2**pwl.out_fmt.frac), pwl.out_fmt.lo, pwl.out_fmt.hi)
        )
    return PWL(pwl.in_fmt, pwl.out_fmt, pwl.slope_frac, pwl.thresholds, pwl.slopes, tuple(offsets))


def _measure(pwl: PWL, words: np.ndarray, target: np.ndarray) -> float:
    y, _ = apply_pwl(pwl, words)
    ideal = np.clip(target, pwl.out_fmt.min_real, pwl.out_fmt.max_real)
    return float(np.abs(dequantize(y, pwl.out_fmt) - ideal).max())


def fit_pwl(
    fn: Callable[[np.ndarray], np.ndarray],
    in_fmt: QFormat,
    out_fmt: QFormat,
    segments: int,
    kinks: tuple[float, ...] | None = None,
    name: str = "",
) -> FitResult:
    """Fit ``fn`` (real -> real, vectorised) with at most ``segments`` segments over every input word.

    ``kinks``: the breakpoints of a piecewise-linear ``fn``; when given and they fit, the segments
    start exactly there.
    """
    words = np.arange(in_fmt.lo, in_fmt.hi + 1, dtype=np.int64)
    xs = dequantize(words, in_fmt)
    target = np.asarray(fn(xs), dtype=np.float64)
    # outputs beyond the output format saturate anyway: fit the clamped function
    clamped = np.clip(target, out_fmt.min_real, out_fmt.max_real)
    results = []
    if kinks is not None and len(kinks) + 1 <= segments:
        starts = [0] + [int(np.searchsorted(xs, k, side="left")) for k in sorted(kinks)]
        starts = sorted(set(s for s in starts if s < words.size))
        pwl = _refine_offsets(_quantize_segments(words, target, starts, in_fmt, out_fmt), words, clamped)
        results.append((_measure(pwl, words, target), pwl))
    if not results or results[0][0] > out_fmt.step / 2:
        # search on the words where the rounded function changes (plus a coarse grid): that is
        # where breakpoints matter; coefficients are then fitted and measured on every word
        levels = np.floor(clamped / out_fmt.step + 0.5)
        changes = np.flatnonzero(np.diff(levels))
        pick = np.unique(
            np.concatenate(
                [
                    changes,
                    changes + 1,
                    np.linspace(0, words.size - 1, min(words.size, 513)).round().astype(np.int64),
                ]
            )
        )
        if pick.size > 8193:
            pick = pick[np.linspace(0, pick.size - 1, 8193).round().astype(np.int64)]
        sx, sy = xs[pick], clamped[pick]
        lo, hi = 0.0, float(clamped.max() - clamped.min()) / 2 + 1e-9
        best = _greedy(sx, sy, hi, segments) or [0]
        while hi - lo > out_fmt.step / 16:
            mid = (lo + hi) / 2
            found = _greedy(sx, sy, mid, segments)
            if found is None:
                lo = mid
            else:
                hi, best = mid, found
        starts = [int(pick[i]) for i in best]
        pwl = _refine_offsets(_quantize_segments(words, clamped, starts, in_fmt, out_fmt), words, clamped)
        results.append((_measure(pwl, words, target), pwl))
    err, pwl = min(results, key=lambda r: r[0])
    return FitResult(pwl, err, err / out_fmt.step, name)


#: Real definitions of the activations the mapper runs, with kinks for the piecewise-linear ones.
def fit_function(kind: str, params: dict, in_fmt: QFormat, out_fmt: QFormat, segments: int) -> FitResult:
    """Fit an IR activation ``kind`` (see :data:`nfc.compiler.ir.ACT_KINDS`) for the mapper."""
    inf = float("inf")
    if kind == "relu":
        return fit_pwl(lambda x: np.maximum(x, 0), in_fmt, out_fmt, segments, (0.0,), kind)
    if kind == "leaky_relu":
        alpha = params["alpha"]
        return fit_pwl(lambda x: np.where(x >= 0, x, alpha * x), in_fmt, out_fmt, segments, (0.0,), kind)
    if kind == "abs":
        return fit_pwl(np.abs, in_fmt, out_fmt, segments, (0.0,), kind)
    if kind == "clip":
        lo, hi = params["min"], params["max"]
        kinks = tuple(k for k in (lo, hi) if abs(k) != inf)
        return fit_pwl(lambda x: np.clip(x, lo, hi), in_fmt, out_fmt, segments, kinks, kind)
    if kind == "hard_sigmoid":
        a, b = params["alpha"], params["beta"]
        kinks = ((0 - b) / a, (1 - b) / a)
        return fit_pwl(
            lambda x: np.clip(a * x + b, 0, 1), in_fmt, out_fmt, segments, tuple(sorted(kinks)), kind
        )
    if kind == "tanh":
        return fit_pwl(np.tanh, in_fmt, out_fmt, segments, None, kind)
    if kind == "sigmoid":
        return fit_pwl(lambda x: 1 / (1 + np.exp(-x)), in_fmt, out_fmt, segments, None, kind)
    if kind == "hard_swish":
        return fit_pwl(lambda x: x * np.clip(x / 6 + 0.5, 0, 1), in_fmt, out_fmt, segments, None, kind)
    raise ValueError(f"the mapper has no fit for activation {kind!r}")
