"""Piecewise-linear fitter for the mapper.

Given a real function, the input and output word formats and the number of segments the target's
mapper has, produce a :class:`~nfc.numerics.PWL` whose worst-case error over **every** input word
is as small as we can make it, and report that error (measured on every input word against the
real function clamped to the output range, so a perfect mapper reports at most half an output
step).

* Functions that are themselves piecewise linear with few enough pieces (ReLU, LeakyReLU, Clip,
  HardTanh, Abs, HardSigmoid, ...) are fitted with breakpoints on their kinks (a piece starts at
  the first input word at or after its kink). When every piece's slope is a multiple of
  ``2**-slope_frac`` (dyadic: 1, 0.25, 0.125, ...) and its offset ``c`` a multiple of the output
  step inside the output range (a constant piece may sit at any level in range), the mapper is
  **bit-exact**: its output equals ``quantize(f(dequantize(x)))`` for every input word ``x``,
  saturation included, because the mapper rounds ``a*x`` half up exactly as
  :func:`~nfc.numerics.quantize` rounds ``a*x + c`` when ``c`` is a whole number of output steps
  (and a constant piece's offset word is ``c`` rounded half up). Otherwise (LeakyReLU with
  ``alpha = 0.01``, ...) the worst error of a piece is at most
  ``step/2 + |c - C*step| + |a - A*2**-slope_frac| * max|x|`` over the piece's input words
  (rounding of the product, of the offset word ``C`` and of the slope word ``A``); for LeakyReLU
  (``c = 0``) that is ``step/2 + |alpha - A*2**-slope_frac| * max|x|``, with ``slope_frac = 16``
  for ``|alpha| <= 1`` (1.0 must fit the slope word). The minimax search below may still replace
  such a fit by a better one.
* Smooth functions (tanh, sigmoid, HardSwish's quadratic part, ...) are fitted by a minimax
  search: for a target error ``E`` greedily grow segments from the left while the best line
  through the segment stays within ``E``; bisect on ``E`` until the segments fit the mapper.
  Greedy growth is optimal for a fixed ``E`` (a segment's best error can only grow when points are
  added), so the bisection finds the smallest ``E`` on the searched words to within ``step/16``.
  The search runs on the input words where the rounded function changes plus a coarse grid (at
  most 8193 words); the lines are then refitted on every word of their segment.
* The best line of a segment is the exact Chebyshev (minimax) line, found by the exchange
  (Remez) algorithm for degree 1: a reference of three points with alternating errors, swapped
  for the worst point until no point is worse than the reference (a few vectorised passes). The
  offset word of the mapper is an output word, so a line is only usable when its offset lies in
  the output range; when the unconstrained line's offset does not, the offset is held at the
  nearest end of the range and the slope is the minimax slope for that offset.
* Coefficients are rounded to words, each segment's offset word is re-centred on its actual
  error band, and the achieved error is measured exactly on all input words. When fitting on the
  kinks is not within half an output step, the minimax search is run as well and the better of
  the two mappers is kept.

The fit is deterministic: the same function, formats and segment count give the same
:class:`~nfc.numerics.PWL`, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nfc.numerics import PWL, QFormat, apply_pwl, dequantize

__all__ = ["FitResult", "fit_pwl", "fit_function", "SLOPE_BITS"]

#: Width of a slope word: 18 bits, so that a 16-bit word times a slope fits one 25x18 DSP multiplier.
SLOPE_BITS = 18

#: Most reference exchanges of one minimax line (a handful are needed; this only bounds a float
#: pathology).
_MAX_EXCHANGES = 64


@dataclass(frozen=True, slots=True)
class FitResult:
    """A fitted mapper and its achieved worst-case error (real units, and in output steps)."""

    pwl: PWL
    max_error: float
    max_error_lsb: float
    name: str = ""


def _tolerance(y: np.ndarray) -> float:
    """Float noise allowed when comparing errors of lines through values like ``y``."""
    return 1e-12 * (1.0 + float(np.abs(y).max()))


def _minimax_line(
    x: np.ndarray, y: np.ndarray, limit: float | None = None
) -> tuple[float, float, float, bool]:
    """The Chebyshev line of the points: ``(slope, intercept, error, optimal)``.

    ``x`` strictly increasing. ``error`` is the line's actual ``max |a*x + c - y|``. With
    ``limit``, the exchange stops as soon as the answer to "is the best error ``<= limit``?" is
    known: either a line within ``limit`` was found or a reference of three points proves every
    line worse than ``limit`` (its error is then above ``limit`` too); in both cases the current
    line is returned with ``optimal`` False. Otherwise the returned line is optimal up to float
    rounding.
    """
    n = x.size
    if n == 1:
        return 0.0, float(y[0]), 0.0, True
    if n == 2:
        a = float((y[1] - y[0]) / (x[1] - x[0]))
        return a, float(y[0] - a * x[0]), 0.0, True
    tol = _tolerance(y)
    # reference p < q < r with errors +h, -h, +h: the line is parallel to the chord p-r, half
    # way between it and q
    p, r = 0, n - 1
    a = float((y[r] - y[p]) / (x[r] - x[p]))
    d = y - a * x
    q = int(np.argmax(np.abs(d - d[p])))
    if q in (p, r):
        return a, float(d[p]), float(np.abs(d - d[p]).max()), True
    best_h = -1.0
    for _ in range(_MAX_EXCHANGES):
        a = float((y[r] - y[p]) / (x[r] - x[p]))
        dpr = float((y[p] - a * x[p] + y[r] - a * x[r]) / 2)
        dq = float(y[q] - a * x[q])
        h, c = (dpr - dq) / 2, (dpr + dq) / 2
        e = y - (a * x + c)
        m = int(np.argmax(np.abs(e)))
        emax = float(abs(e[m]))
        if emax <= abs(h) + tol or abs(h) <= best_h or m in (p, q, r):
            return a, c, emax, True
        if limit is not None:
            if emax <= limit:
                return a, c, emax, False
            if abs(h) > limit:
                return a, c, emax, False
        best_h = abs(h)
        # single exchange keeping the signs alternating (p and r carry sign(h), q the other)
        same = (e[m] > 0) == (h > 0)
        if m < p:
            p, q, r = (m, q, r) if same else (m, p, q)
        elif m < q:
            p, q, r = (m, q, r) if same else (p, m, r)
        elif m < r:
            p, q, r = (p, q, m) if same else (p, m, r)
        else:
            p, q, r = (p, q, m) if same else (q, r, m)
    return a, c, emax, True


def _slope_for_offset(x: np.ndarray, z: np.ndarray) -> tuple[float, float]:
    """``(slope, error)`` of the line ``a*x`` through the origin minimising ``max |a*x - z|``.

    The error is convex and piecewise linear in ``a`` (the upper envelope of the lines
    ``+-(a*x_k - z_k)``): a bracketing cutting-plane search intersects the envelope lines active
    at both ends of the bracket until the intersection is on the envelope.
    """

    def envelope(a: float) -> tuple[float, float, float]:
        """(value, slope, intercept) of the envelope line active at ``a``."""
        r = a * x - z
        k = int(np.argmax(np.abs(r)))
        s = 1.0 if r[k] >= 0 else -1.0
        return float(abs(r[k])), float(s * x[k]), float(-s * z[k])

    if not np.any(x):
        return 0.0, float(np.abs(z).max())
    tol = _tolerance(z)
    a0 = float(np.dot(x, z) / np.dot(x, x))
    v0, s0, b0 = envelope(a0)
    if s0 == 0:
        return a0, v0
    lines = {s0 > 0: (s0, b0)}
    best = (v0, a0)
    step = 1.0 + abs(a0)
    a1 = a0
    while len(lines) < 2:  # walk away from a0 until the envelope slopes the other way
        a1 = a1 - step if s0 > 0 else a1 + step
        step *= 2
        v1, s1, b1 = envelope(a1)
        best = min(best, (v1, a1))
        if s1 == 0 or not np.isfinite(a1):
            return best[1], best[0]
        lines[s1 > 0] = (s1, b1)
    for _ in range(_MAX_EXCHANGES):
        (sl, bl), (sr, br) = lines[False], lines[True]
        a = (bl - br) / (sr - sl)
        bound = sr * a + br
        v, s, b = envelope(a)
        best = min(best, (v, a))
        if v <= bound + tol or s == 0:
            break
        lines[s > 0] = (s, b)
    return best[1], best[0]


def _fit_line(x: np.ndarray, y: np.ndarray, crange: tuple[float, float]) -> tuple[float, float, float]:
    """``(slope, intercept, error)`` of the minimax line with the intercept in ``crange``."""
    a, c, e, _ = _minimax_line(x, y)
    if crange[0] <= c <= crange[1]:
        return a, c, e
    # the best error for a fixed intercept is convex in it: hold it at the nearest bound
    c = min(max(c, crange[0]), crange[1])
    a, e = _slope_for_offset(x, y - c)
    return a, c, e


def _fits(x: np.ndarray, y: np.ndarray, limit: float, crange: tuple[float, float]) -> bool:
    """Is there a line with intercept in ``crange`` within ``limit`` of every point?"""
    _, c, e, optimal = _minimax_line(x, y, limit)
    if e > limit:
        return False  # the best line, or a reference proving every line worse
    if crange[0] <= c <= crange[1]:
        return True
    if not optimal:  # a line fits, but its offset is out of range: is the best line's?
        _, c, e, _ = _minimax_line(x, y)
        if crange[0] <= c <= crange[1]:
            return e <= limit
    # the best error for a fixed intercept is convex in it: hold it at the nearest bound
    c = min(max(c, crange[0]), crange[1])
    return _slope_for_offset(x, y - c)[1] <= limit


def _greedy(
    x: np.ndarray, y: np.ndarray, limit: float, max_segments: int, crange: tuple[float, float]
) -> list[int] | None:
    """Segment start indices covering all points with minimax error <= limit, or None if too many."""
    starts = [0]
    n = x.size
    i = 0
    while True:
        lo, hi = i + 1, n  # find the largest end (exclusive) with error <= limit
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if _fits(x[i:mid], y[i:mid], limit, crange):
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
    crange = (out_fmt.min_real, out_fmt.max_real)
    lines = [_fit_line(xs[a:b], target[a:b], crange) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    steepest = max(abs(a) for a, _, _ in lines)
    # the largest slope_frac such that every slope fits a SLOPE_BITS-bit word
    slope_frac = SLOPE_BITS - 1
    while slope_frac > 0 and round(steepest * 2**slope_frac) > (1 << (SLOPE_BITS - 1)) - 1:
        slope_frac -= 1
    slope_frac = min(slope_frac + 8, 24) if steepest == 0 else slope_frac
    # real y = a*x + c with x = q*step_in: slope word A = round(a * 2^slope_frac) applies to q with
    # fraction fx + slope_frac; offset word C = c * 2^fy rounded half up like quantize(), so that a
    # constant piece gives exactly quantize(c)
    slopes, offsets = [], []
    for a, c, _ in lines:
        limit = 1 << (SLOPE_BITS - 1)
        slopes.append(int(np.clip(round(a * 2**slope_frac), -limit, limit - 1)))
        offsets.append(int(np.clip(math.floor(c * 2**out_fmt.frac + 0.5), out_fmt.lo, out_fmt.hi)))
    thresholds = tuple(int(words[s]) for s in starts[1:])
    return PWL(in_fmt, out_fmt, slope_frac, thresholds, tuple(slopes), tuple(offsets))


def _refine_offsets(pwl: PWL, words: np.ndarray, target: np.ndarray) -> PWL:
    """Re-centre each segment's offset word on its actual rounded error band (fixes rounding bias).

    The offset moves by the centre of the band rounded to whole output steps, ties towards zero
    (a tie would not lower the worst error, and a bit-exact segment's band can be a tie); such a
    move never makes the segment's worst error larger.
    """
    offsets = list(pwl.offsets)
    y, _ = apply_pwl(pwl, words)
    err = dequantize(y, pwl.out_fmt) - target
    # words are sorted: each segment is a contiguous run
    bounds = np.searchsorted(words, np.asarray(pwl.thresholds, dtype=np.int64), side="left")
    edges = [0, *(int(b) for b in bounds), words.size]
    for s in range(pwl.segments):
        band = err[edges[s] : edges[s + 1]]
        if band.size == 0:
            continue
        centre = float(band.max() + band.min()) / 2 * 2**pwl.out_fmt.frac
        move = math.ceil(centre - 0.5) if centre > 0 else math.floor(centre + 0.5)
        offsets[s] = int(np.clip(offsets[s] - move, pwl.out_fmt.lo, pwl.out_fmt.hi))
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
    start exactly there (see the module docstring for when that is bit-exact). ``max_error`` is the
    worst ``|mapper(x) - clamp(fn(x))|`` over every input word, ``clamp`` to the output range.
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
        crange = (out_fmt.min_real, out_fmt.max_real)
        lo, hi = 0.0, float(clamped.max() - clamped.min()) / 2 + 1e-9
        best = _greedy(sx, sy, hi, segments, crange) or [0]
        while hi - lo > out_fmt.step / 16:
            mid = (lo + hi) / 2
            found = _greedy(sx, sy, mid, segments, crange)
            if found is None:
                lo = mid
            else:
                hi, best = mid, found
        starts = [int(pick[i]) for i in best]
        pwl = _refine_offsets(_quantize_segments(words, clamped, starts, in_fmt, out_fmt), words, clamped)
        results.append((_measure(pwl, words, target), pwl))
    err, pwl = min(results, key=lambda r: r[0])
    return FitResult(pwl, err, err / out_fmt.step, name)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(-x) overflows to inf for x << 0: the result is then 0
        return 1 / (1 + np.exp(-x))


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
        return fit_pwl(_sigmoid, in_fmt, out_fmt, segments, None, kind)
    if kind == "hard_swish":
        return fit_pwl(lambda x: x * np.clip(x / 6 + 0.5, 0, 1), in_fmt, out_fmt, segments, None, kind)
    raise ValueError(f"the mapper has no fit for activation {kind!r}")
