"""Latencies of the grid's operators, in grid cycles, as the compiler's estimate uses them.

These are the figures the cycle model and the RTL implement; they are defined here once.
"""

from __future__ import annotations

#: From the word that completes a window to the rounded partial sum leaving the convolver.
CONV_LATENCY = 3
#: Mapper: segment select, multiply, round and add.
MAP_LATENCY = 2
#: ALU: align, operate, round.
ALU_LATENCY = 1
#: A write port: from the word entering the port to the memory request.
WRITE_LATENCY = 1
#: Pooling unit: from the word completing a window to the pooled word.
POOL_LATENCY = 1
#: Accumulation buffer (``tile.acc_words``): from the output leaving the convolver to its write.
ACC_LATENCY = 1

__all__ = ["CONV_LATENCY", "MAP_LATENCY", "ALU_LATENCY", "WRITE_LATENCY", "POOL_LATENCY", "ACC_LATENCY"]
