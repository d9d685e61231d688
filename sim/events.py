"""Event counts of a simulated run: what the power model charges energy for.

The cycle model (``sim/cycle.py``) counts these per pass; a run's counts are the sum over its
passes. Every field is an exact integer count, never an estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["Events"]


@dataclass(frozen=True, slots=True)
class Events:
    """Counts of the events of one pass, a layer or a whole run.

    Attributes
    ----------
    cycles : grid cycles (configuration, streaming and pipeline fill/drain).
    macs : multiply-accumulates the convolvers performed: configured taps (block ``kh x kw``, zero
        weights included) times windows computed. Idle positions of a ``K x K`` array whose block
        is smaller are clock-gated and not counted. Max-mode taps count as MACs (a compare each).
    mapper_ops : words through a piecewise-linear mapper.
    alu_ops : words out of a streaming ALU.
    fifo_words : words pushed into a convolver's alignment FIFO (a non-zero ``delay``).
    router_hops : word-hops: every word crossing one router link counts once per link.
    dram_bytes_read, dram_bytes_written : bytes moved by the DMA to and from external memory
        (words of the virtual border are made by the DMA and move no memory byte).
    config_words : configuration words sent over the configuration bus.
    """

    cycles: int = 0
    macs: int = 0
    mapper_ops: int = 0
    alu_ops: int = 0
    fifo_words: int = 0
    router_hops: int = 0
    dram_bytes_read: int = 0
    dram_bytes_written: int = 0
    config_words: int = 0

    def __add__(self, other: Events) -> Events:
        return Events(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
