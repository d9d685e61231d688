"""Fixed-point arithmetic of the accelerator, defined once.

The compiler's fixed-point executor, the cycle model, the RTL's golden models and the reports all
use these functions; the RTL implements exactly the same operations. Integers are held in numpy
``int64`` arrays.

The contract
------------
* **Word**: ``bits``-bit two's-complement signed integer (16 on the shipped targets). A tensor's
  *format* ``Q(bits-frac).frac`` says how many fraction bits its words carry; the real value of
  word ``q`` is ``q / 2**frac``.
* **Products** are exact: a ``bits x bits`` product has ``2 * bits`` bits and ``fa + fb`` fraction
  bits.
* **Accumulator**: ``accumulator_bits`` wide, sums exact products. The compiler proves for every
  layer that the accumulator cannot overflow (the sum of absolute weights times the largest input
  word fits), so the order of summation never matters and no accumulator saturation exists.
* **Rounding**: *round half up*: to drop ``s`` fraction bits, add ``2**(s-1)`` and shift right
  arithmetically (floor). Ties go towards +infinity (``-2.5 -> -2``, ``2.5 -> 3``). One adder and
  a shift in hardware.
* **Saturation** on every narrowing to a word: values above ``2**(bits-1) - 1`` become that value,
  below ``-2**(bits-1)`` become that value. Saturation events are counted by the executors.
* **Mapper** (piecewise linear, ``S`` segments): thresholds ``t_1 < ... < t_{S-1}`` (words in the
  input format), segment ``i`` = number of thresholds ``<= x``; per segment a slope word ``a_i``
  with ``slope_frac`` fraction bits and an offset word ``c_i`` in the output format:
  ``y = sat(round(a_i * x, fx + slope_frac - fy) + c_i)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "QFormat",
    "round_shift",
    "saturate",
    "narrow",
    "quantize",
    "dequantize",
    "PWL",
    "apply_pwl",
    "map_words",
    "alu_shifts",
    "alu_words",
]


@dataclass(frozen=True, slots=True)
class QFormat:
    """A signed fixed-point word format: ``bits`` wide, ``frac`` fraction bits."""

    bits: int = 16
    frac: int = 8

    @property
    def lo(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def hi(self) -> int:
        return (1 << (self.bits - 1)) - 1

    @property
    def step(self) -> float:
        return 2.0**-self.frac

    @property
    def max_real(self) -> float:
        return self.hi * self.step

    @property
    def min_real(self) -> float:
        return self.lo * self.step

    def __str__(self) -> str:
        return f"Q{self.bits - self.frac}.{self.frac}"


def round_shift(v: np.ndarray | int, shift: int) -> np.ndarray:
    """Change the scale of integers by ``2**-shift`` with round-half-up (``shift > 0`` drops bits)."""
    v = np.asarray(v, dtype=np.int64)
    if shift > 0:
        return (v + (1 << (shift - 1))) >> shift
    if shift < 0:
        return v << (-shift)
    return v


def saturate(v: np.ndarray, bits: int) -> tuple[np.ndarray, int]:
    """Clamp to the ``bits``-bit signed range; also return how many values were clamped."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    v = np.asarray(v, dtype=np.int64)
    count = int(np.count_nonzero((v < lo) | (v > hi)))
    # a new array either way (callers may write into it); np.clip is slow on small arrays
    return (np.minimum(np.maximum(v, lo), hi) if count else v.copy()), count


def narrow(v: np.ndarray, from_frac: int, fmt: QFormat) -> tuple[np.ndarray, int]:
    """Round ``v`` (with ``from_frac`` fraction bits) to words of ``fmt``; return (words, saturations)."""
    return saturate(round_shift(v, from_frac - fmt.frac), fmt.bits)


def quantize(x: np.ndarray, fmt: QFormat) -> tuple[np.ndarray, int]:
    """Real values to words of ``fmt`` (round half up, saturate); return (words, saturations)."""
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all() and np.isnan(x).any():
        raise ValueError("cannot quantise NaN")
    scaled = np.floor(x * (1 << fmt.frac) + 0.5)
    scaled = np.clip(scaled, -(2.0**62), 2.0**62)
    return saturate(scaled.astype(np.int64), fmt.bits)


def dequantize(q: np.ndarray, fmt: QFormat) -> np.ndarray:
    """Words of ``fmt`` to real values (float64)."""
    return np.asarray(q, dtype=np.float64) * fmt.step


@dataclass(frozen=True, slots=True)
class PWL:
    """A piecewise-linear mapper configuration in words.

    ``thresholds`` has one element fewer than ``slopes`` and ``offsets``; all are Python ints.
    """

    in_fmt: QFormat
    out_fmt: QFormat
    slope_frac: int
    thresholds: tuple[int, ...]
    slopes: tuple[int, ...]
    offsets: tuple[int, ...]

    def __post_init__(self) -> None:
        n = len(self.slopes)
        if len(self.offsets) != n or len(self.thresholds) != n - 1:
            raise ValueError(f"a PWL of {n} segments needs {n - 1} thresholds and {n} offsets")
        if any(a >= b for a, b in zip(self.thresholds, self.thresholds[1:], strict=False)):
            raise ValueError(f"PWL thresholds must be strictly increasing, not {self.thresholds}")

    @property
    def segments(self) -> int:
        return len(self.slopes)

    @property
    def shift(self) -> int:
        """Fraction bits dropped from ``slope * x``: input frac + slope frac - output frac."""
        return self.in_fmt.frac + self.slope_frac - self.out_fmt.frac


def map_words(x: np.ndarray, thresholds, slopes, offsets, shift: int, bits: int) -> tuple[np.ndarray, int]:
    """The mapper on words ``x`` from its configuration words; return (words, saturations)."""
    x = np.asarray(x, dtype=np.int64)
    seg = np.searchsorted(np.asarray(thresholds, dtype=np.int64), x, side="right")
    a = np.asarray(slopes, dtype=np.int64)[seg]
    c = np.asarray(offsets, dtype=np.int64)[seg]
    return saturate(round_shift(a * x, shift) + c, bits)


def apply_pwl(pwl: PWL, x: np.ndarray) -> tuple[np.ndarray, int]:
    """Run the mapper on words ``x``; return (words, saturations)."""
    return map_words(x, pwl.thresholds, pwl.slopes, pwl.offsets, pwl.shift, pwl.out_fmt.bits)


def alu_shifts(op: str, fa: int, fb: int, fo: int) -> tuple[int, int, int]:
    """ALU alignment: (shift_a, shift_b, shift_out) for operands of ``fa``/``fb`` fraction bits and a
    result of ``fo``. Add/sub/max/min align both operands to the larger fraction (exact left
    shifts); mul keeps the exact product (``fa + fb``)."""
    if op == "mul":
        return 0, 0, fa + fb - fo
    top = max(fa, fb)
    return fa - top, fb - top, top - fo


_ALU_OPS = {"add": np.add, "sub": np.subtract, "max": np.maximum, "min": np.minimum}


def alu_words(
    op: str, a: np.ndarray, b: np.ndarray, shift_a: int, shift_b: int, shift_out: int, bits: int
) -> tuple[np.ndarray, int]:
    """The streaming ALU on words ``a`` and ``b``; return (words, saturations)."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    r = a * b if op == "mul" else _ALU_OPS[op](round_shift(a, shift_a), round_shift(b, shift_b))
    return saturate(round_shift(r, shift_out), bits)
