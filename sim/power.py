"""The power model: event counts of a run (:class:`~nfc.sim.events.Events`) -> energy and power.

Energy of a run = ``static_w`` x run time + sum over event kinds of count x energy per event, with
the coefficients of the target's ``[power]`` section (:class:`nfc.arch.PowerConfig`). Run time is
``cycles / clock_hz``. The model is linear: the energy of a sum of event counts is the sum of the
energies, so passes, layers and runs add up.

The coefficients are relative energies from published figures (and stated model assumptions),
scaled so that each target reproduces its published operating point at the **calibration
workload** defined exactly by :func:`calibration_events`:

============  ==========================  ======================
target        published                   reproduced at
============  ==========================  ======================
``virtex6``   10 W at 147 GOPS sustained  duty 147 / 163.2
``asic45``    0.6 W at about 300 GOPS     duty 300 / 326.4
============  ==========================  ======================

The derivation (provenance of every coefficient, the workload, the arithmetic) is in
``docs/power.md``.
"""

from __future__ import annotations

import math
from typing import Any

from nfc.arch import ArchConfig
from nfc.sim.events import Events

__all__ = [
    "PowerModel",
    "calibration_events",
    "calibration_duty",
    "calibration_streams",
    "calibration_config_words",
    "DEFAULT_DUTY",
    "PUBLISHED",
    "COMPONENTS",
    "CALIBRATION_SECONDS",
    "CALIBRATION_PASS_CYCLES",
]

#: Energy components reported by :meth:`PowerModel.energy` (plus ``total``), each with the
#: :class:`Events` field it charges and the ``[power]`` coefficient (pJ per event) it uses.
COMPONENTS: dict[str, tuple[str, str]] = {
    "mac": ("macs", "pj_per_mac"),
    "mapper": ("mapper_ops", "pj_per_mapper_op"),
    "alu": ("alu_ops", "pj_per_alu_op"),
    "fifo": ("fifo_words", "pj_per_fifo_word"),
    "router": ("router_hops", "pj_per_router_hop"),
    "dram": ("dram_bytes", "pj_per_dram_byte"),
    "config": ("config_words", "pj_per_config_word"),
}

#: Published operating points the shipped targets are calibrated to: (sustained GOPS, watts).
#: virtex6: Farabet et al., CVPR Workshops 2011 (NeuFlow on the ML605); asic45: Pham et al.,
#: MWSCAS 2012 (NeuFlow SoC, IBM 45 nm).
PUBLISHED: dict[str, tuple[float, float]] = {
    "virtex6": (147.0, 10.0),
    "asic45": (300.0, 0.6),
}

#: Duty of the calibration workload on targets without a published point: virtex6's 147 / 163.2.
DEFAULT_DUTY = 147.0 / 163.2

#: Length of the calibration workload.
CALIBRATION_SECONDS = 1.0
#: The calibration workload reconfigures the grid once per this many cycles (one pass streaming a
#: 256 x 256 map at one word per cycle; the compiled benchmark passes stream 28 k to 77 k words).
CALIBRATION_PASS_CYCLES = 65536


class PowerModel:
    """Energy and power of event counts on one target: ``PowerModel(arch).summary(events, ops)``."""

    def __init__(self, arch: ArchConfig) -> None:
        self.arch = arch
        self.power = arch.power
        self.clock_hz = arch.clock_hz

    def seconds(self, events: Events) -> float:
        """Run time of the events: their cycles at the grid clock."""
        return events.cycles / self.clock_hz

    def energy(self, events: Events) -> dict[str, float]:
        """Joules per component: ``static``, ``mac``, ``mapper``, ``alu``, ``fifo``, ``router``,
        ``dram`` (reads and writes), ``config``, and their sum ``total``."""
        p = self.power
        out = {"static": p.static_w * self.seconds(events)}
        for comp, (count_name, coeff_name) in COMPONENTS.items():
            if count_name == "dram_bytes":
                count = events.dram_bytes_read + events.dram_bytes_written
            else:
                count = getattr(events, count_name)
            out[comp] = count * getattr(p, coeff_name) * 1e-12
        out["total"] = math.fsum(out.values())
        return out

    def summary(self, events: Events, useful_ops: float) -> dict[str, Any]:
        """Run time, energy, average power and efficiency of a run, as plain floats for JSON.

        ``useful_ops`` counts the network's operations the run performed (2 per useful MAC, as in
        the GOPS figures of the papers); padded or zero-weight MACs the hardware also performed
        cost energy but are not useful operations. Keys: ``seconds``, ``joules``, ``watts``
        (total energy / run time), ``gops`` (useful ops / run time / 1e9), ``gops_per_w``,
        ``energy_j`` (the breakdown of :meth:`energy`) and ``watts_by_component``.
        A run of zero cycles reports zero seconds, watts and GOPS.
        """
        e = self.energy(events)
        seconds = self.seconds(events)
        watts = e["total"] / seconds if seconds > 0 else 0.0
        gops = useful_ops / seconds / 1e9 if seconds > 0 else 0.0
        return {
            "seconds": float(seconds),
            "joules": float(e["total"]),
            "watts": float(watts),
            "gops": float(gops),
            "gops_per_w": float(gops / watts) if watts > 0 else 0.0,
            "energy_j": {k: float(v) for k, v in e.items()},
            "watts_by_component": {k: float(v / seconds) if seconds > 0 else 0.0 for k, v in e.items()},
        }


# -- the calibration workload -----------------------------------------------------------------------
def calibration_duty(arch: ArchConfig) -> float:
    """Fraction of cycles the operators are busy at the calibration point.

    For a target with a published operating point (:data:`PUBLISHED`) it is published GOPS / peak
    GOPS (virtex6: 147 / 163.2 = 0.9007; asic45: 300 / 326.4 = 0.9191). Any other target uses the
    virtex6 fraction, :data:`DEFAULT_DUTY` = 147 / 163.2.
    """
    if arch.name not in PUBLISHED:
        return DEFAULT_DUTY
    return min(1.0, PUBLISHED[arch.name][0] / arch.peak_gops)


def calibration_streams(arch: ArchConfig) -> tuple[int, int]:
    """(read, write) DMA streams of the calibration workload: luaFlow's pass shape, one input map
    per convolver plus the partial sum read back, one output written (virtex6: 5 + 1), within the
    target's port limits."""
    reads = min(arch.convolvers + 1, arch.io.max_read_ports, arch.io.ports - 1)
    return max(1, reads), 1


def calibration_config_words(arch: ArchConfig) -> int:
    """Configuration words of one pass of the calibration workload, counted with the encoder's
    word groups (``compiler/encode.py``): ``PASS``, ``RATE``, ``GO``; per convolver ``CONV``,
    ``CONV_LINK``, ``CONV_SHIFT`` and ``ceil(K*K/2)`` ``CONV_W``; per mapper ``MAP`` and two words
    per segment; per ALU one word; per stream seven ``PORT*`` words and one ``ROUTE`` per hop."""
    reads, writes = calibration_streams(arch)
    t = arch.tile
    hops = _stream_hops(arch)
    return (
        3
        + arch.convolvers * (3 + math.ceil(t.convolver_size**2 / 2))
        + arch.mappers * (1 + 2 * t.mapper_segments)
        + arch.alus
        + (reads + writes) * (7 + math.ceil(hops))
    )


def _stream_hops(arch: ArchConfig) -> float:
    """Router links an I/O stream word crosses at the calibration point: (rows + cols) / 2, the
    mean port-to-tile distance of a small grid (2 on a 2x2 grid). A model assumption."""
    return (arch.grid.rows + arch.grid.cols) / 2


def calibration_events(arch: ArchConfig, duty: float | None = None) -> tuple[Events, float]:
    """The calibration workload: one second of steady-state streaming on ``arch``.

    Returns ``(events, useful_ops)``. With ``d = duty`` (default :func:`calibration_duty`) and
    ``A = round(d * cycles)`` busy cycles out of ``cycles = round(clock_hz * 1 s)``:

    * every convolver computes a full ``K x K`` window per busy cycle: ``macs = MACs * A``;
    * every mapper and every ALU takes one word per busy cycle: ``mapper_ops = mappers * A``,
      ``alu_ops = alus * A``;
    * every convolver pushes one word per busy cycle into its alignment FIFO (chained
      convolvers line their data up with the partial sum): ``fifo_words = convolvers * A``;
    * the DMA streams ``R`` read and ``W`` write words per busy cycle (:func:`calibration_streams`:
      one input per convolver plus the partial sum, one output), ``word_bytes`` each, cut down to
      the target's memory bandwidth over the second (a shared bus scales both directions by the
      same factor);
    * router hops: each of the ``R + W`` stream words crosses ``(rows + cols) / 2`` links and each
      of the ``convolvers - 1`` chain links carries one word per busy cycle;
    * configuration: one pass per :data:`CALIBRATION_PASS_CYCLES` cycles, each of
      :func:`calibration_config_words` words.

    ``useful_ops = 2 * (macs + mapper_ops + alu_ops)`` (luaFlow's peak formula at duty ``d``), so
    ``useful_ops / 1 s = d * peak_gops * 1e9``.
    """
    d = calibration_duty(arch) if duty is None else duty
    if not 0 <= d <= 1:
        raise ValueError(f"duty must be between 0 and 1, not {d!r}")
    cycles = round(arch.clock_hz * CALIBRATION_SECONDS)
    busy = round(d * cycles)
    reads, writes = calibration_streams(arch)
    rd = reads * arch.word_bytes * busy
    wr = writes * arch.word_bytes * busy
    m = arch.memory
    if m.shared:
        scale = min(1.0, m.read_gbytes_per_s * 1e9 * CALIBRATION_SECONDS / (rd + wr))
        rd, wr = rd * scale, wr * scale
    else:
        rd = min(rd, m.read_gbytes_per_s * 1e9 * CALIBRATION_SECONDS)
        wr = min(wr, m.write_gbytes_per_s * 1e9 * CALIBRATION_SECONDS)
    hops_per_cycle = (reads + writes) * _stream_hops(arch) + (arch.convolvers - 1)
    events = Events(
        cycles=cycles,
        macs=arch.macs * busy,
        mapper_ops=arch.mappers * busy,
        alu_ops=arch.alus * busy,
        fifo_words=arch.convolvers * busy,
        router_hops=round(hops_per_cycle * busy),
        dram_bytes_read=round(rd),
        dram_bytes_written=round(wr),
        config_words=calibration_config_words(arch) * math.ceil(cycles / CALIBRATION_PASS_CYCLES),
    )
    useful_ops = 2.0 * (events.macs + events.mapper_ops + events.alu_ops)
    return events, useful_ops
