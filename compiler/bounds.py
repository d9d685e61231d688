"""Lower bounds on the cycles of any schedule of a lowered network on a target.

``make bench`` prints them beside the measured cycles, so that a goal the hardware cannot reach
shows the arithmetic that rules it out, and a schedule shows how close it gets. Every bound counts
grid work only (host steps are not timed on the grid) and leaves configuration out (it could in
principle overlap streaming), so each is a true lower bound for the timing contract of
``docs/architecture.md`` §13:

``mac_peak``
    every MAC of every convolver busy on every cycle: useful MACs / (convolvers x K x K).
``kernel_fill``
    one window position per convolver per cycle: each term of a chain (one kernel block on one
    input map) occupies a whole convolver for every *output* position, whatever its size; a 7x7
    kernel fills 49% of a 10x10 array. Sum of terms x output positions / convolvers. Pooling on a
    convolver counts the same way (one term per pooled map); pooling the tiles' pooling units can
    do (``tile.poolers``, non-overlapping windows) costs the convolvers nothing.
``streaming``
    the convolver as NeuFlow built it: one *input* word per cycle, so a term takes as many cycles
    as its input region has words, border and the rows and columns around the valid windows
    included (for a 7x7 valid convolution of a 75x55 map: 4125 cycles for 3381 outputs).

    A convolver that packs kernels (``tile.lanes = 2``) applies two kernels of at most
    ``packed_size`` taps a side to one window: in ``kernel_fill`` and ``streaming`` such a layer's
    terms count half (whether or not its chains pair up and whatever ports their outputs need).
``bandwidth``
    every grid layer reads each input map it uses once and writes its output once, at the
    memory's sustained rate (shared or separate read and write bandwidth); a map read only by a
    pooling layer may stay on the grid (fused pooling) and costs nothing.

``bound`` is the largest of ``streaming`` and ``bandwidth`` (``streaming`` >= ``kernel_fill`` >=
``mac_peak``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from nfc.arch import ArchConfig
from nfc.compiler.grid import ConvLayer, CopyLayer, EltwiseLayer, HostLayer, Lowered, MapLayer
from nfc.compiler.schedule import pool_unit_fits

__all__ = ["Bounds", "cycle_bounds"]


@dataclass(frozen=True)
class Bounds:
    """Lower bounds in grid cycles (see the module docstring)."""

    mac_peak: float
    kernel_fill: float
    streaming: float
    bandwidth: float

    @property
    def bound(self) -> float:
        return max(self.streaming, self.bandwidth)

    def to_dict(self) -> dict:
        return {**asdict(self), "bound": self.bound}


def _sources(layer) -> list[str]:
    """Buffers a grid layer reads (host layers run off the grid: not counted)."""
    if isinstance(layer, ConvLayer | MapLayer | CopyLayer):
        return [layer.src]
    if isinstance(layer, EltwiseLayer):
        return [layer.a, layer.b]
    return []


def _used_words(low: Lowered, layer, src: str) -> int:
    """Words of ``src`` the layer needs: a convolution reads only the maps its chains use."""
    if isinstance(layer, ConvLayer):
        h, w = layer.view
        return int(np.unique(layer.channels[layer.channels >= 0]).size) * h * w
    return low.buffers[src].words


def _region_words(layer: ConvLayer, oh: int, ow: int) -> int:
    """Words of the input region one term streams for ``oh x ow`` outputs: every row and column
    their windows touch."""
    (bh, bw), (dh, dw), (sh, sw) = layer.block, layer.dilation, layer.stride
    rows = (oh - 1) * sh + (bh - 1) * dh + 1
    cols = (ow - 1) * sw + (bw - 1) * dw + 1
    return rows * cols


def cycle_bounds(low: Lowered, arch: ArchConfig) -> Bounds:
    """The bounds of :class:`Bounds` for ``low`` on ``arch``."""
    n_conv = arch.convolvers
    macs = fill = stream = 0
    # a map that only a pooling layer reads can stay on the grid (pooling fused into the convolution
    # pass): neither written nor read back
    readers: dict[str, int] = {}
    for layer in low.layers:
        for src in _sources(layer):
            readers[src] = readers.get(src, 0) + 1
    on_grid = {
        layer.src
        for layer in low.layers
        if isinstance(layer, ConvLayer) and layer.kind in ("maxpool", "avgpool") and readers[layer.src] == 1
    }
    # outputs a pooling unit drops (rows and columns that fill no window) need not be computed
    used_shape: dict[str, tuple[int, int]] = {}
    for layer in low.layers:
        if isinstance(layer, ConvLayer) and layer.src in on_grid and pool_unit_fits(arch, layer):
            _, ph, pw = layer.out_shape
            used_shape[layer.src] = (ph * layer.block[0], pw * layer.block[1])
    read_words = write_words = 0
    for layer in low.layers:
        if isinstance(layer, ConvLayer):
            if layer.kind in ("maxpool", "avgpool") and pool_unit_fits(arch, layer):
                pass  # a pooling unit can do it after the convolution that feeds it
            else:
                terms = layer.terms
                oh, ow = used_shape.get(layer.dst, layer.out_shape[1:])
                packs = layer.mode == "mac" and max(layer.block) <= arch.packed_size
                lanes = arch.tile.lanes if packs else 1
                macs += layer.useful_macs
                fill += terms * oh * ow / lanes
                stream += terms * _region_words(layer, oh, ow) / lanes
        for src in _sources(layer):
            if src not in on_grid:
                read_words += _used_words(low, layer, src)
        dst = getattr(layer, "dst", None)
        if dst is not None and dst not in on_grid and not isinstance(layer, HostLayer):
            write_words += low.buffers[dst].words
    per_cycle = arch.word_bytes * arch.grid.clock_mhz * 1e6 / 1e9  # GB/s of one word per cycle
    mem = arch.memory
    if mem.shared:
        bandwidth = (read_words + write_words) * per_cycle / mem.read_gbytes_per_s
    else:
        bandwidth = max(
            read_words * per_cycle / mem.read_gbytes_per_s, write_words * per_cycle / mem.write_gbytes_per_s
        )
    k2 = arch.tile.convolver_size**2
    return Bounds(
        mac_peak=macs / (n_conv * k2) if n_conv else 0.0,
        kernel_fill=fill / n_conv if n_conv else 0.0,
        streaming=stream / n_conv if n_conv else 0.0,
        bandwidth=bandwidth,
    )
