"""Quantisation: choose the fixed-point format of every tensor and every layer's weights.

* Default (no calibration): every tensor and every weight in the target's default format (Q8.8
  on the shipped targets), as NeuFlow did.
* ``calibrate(graph, arch, samples)``: run the float executor on sample inputs and give each
  tensor the most fraction bits that still hold its largest observed magnitude (with a margin),
  and each layer's weights the most fraction bits that hold its largest weight. Saturation is still
  possible on inputs unlike the samples; the fixed-point executor counts every event.

The result is a :class:`Formats` table, keyed by IR node name, that lowering reads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from nfc.arch import ArchConfig
from nfc.compiler.executor import run_float
from nfc.compiler.ir import Graph, Op
from nfc.numerics import QFormat

__all__ = ["Formats", "default_formats", "calibrate", "frac_for"]

#: Calibrated ranges are widened by this factor before choosing fraction bits.
MARGIN = 1.25


@dataclass(frozen=True)
class Formats:
    """Word formats: ``tensors[name]`` for each IR tensor, ``weights[name]`` for each weighted layer."""

    word: QFormat
    tensors: Mapping[str, QFormat] = field(default_factory=dict)
    weights: Mapping[str, QFormat] = field(default_factory=dict)
    calibrated: bool = False

    def of(self, name: str) -> QFormat:
        return self.tensors.get(name, self.word)

    def weight(self, name: str) -> QFormat:
        return self.weights.get(name, self.word)


def frac_for(max_abs: float, bits: int) -> int:
    """Most fraction bits such that ``max_abs`` fits a ``bits``-bit signed word."""
    if max_abs <= 0 or not math.isfinite(max_abs):
        return bits - 1
    int_bits = max(0, math.floor(math.log2(max_abs)) + 1)  # bits left of the point, sign excluded
    frac = int(min(bits - 1, max(0, bits - 1 - int_bits)))
    # just below a power of two (0.99999 in Q0.15), rounding to the nearest word passes the top word
    while frac > 0 and math.floor(max_abs * 2.0**frac + 0.5) > (1 << (bits - 1)) - 1:
        frac -= 1
    return frac


def default_formats(arch: ArchConfig) -> Formats:
    """The target's default word format for everything."""
    return Formats(QFormat(arch.numerics.word_bits, arch.numerics.frac_bits))


def calibrate(graph: Graph, arch: ArchConfig, samples: Iterable[Mapping[str, np.ndarray]]) -> Formats:
    """Per-tensor and per-layer weight formats from the ranges seen on ``samples``."""
    bits = arch.numerics.word_bits
    peak: dict[str, float] = {}
    count = 0
    for feeds in samples:
        values = run_float(graph, feeds, keep=True)
        for node in graph.nodes:
            v = values.get(node.name)
            if v is None:
                continue
            peak[node.name] = max(peak.get(node.name, 0.0), float(np.abs(v).max()))
        count += 1
    if count == 0:
        raise ValueError("calibration needs at least one sample input")
    tensors = {name: QFormat(bits, frac_for(m * MARGIN, bits)) for name, m in peak.items()}
    weights = {}
    for node in graph.nodes:
        if node.op in (Op.CONV, Op.LINEAR):
            w = float(np.abs(node.param("weight")).max())
            weights[node.name] = QFormat(bits, frac_for(w, bits))
    return Formats(QFormat(bits, arch.numerics.frac_bits), tensors, weights, calibrated=True)
