"""cocotb test for a streaming RTL unit (mapper, ALU, convolver): constant configuration ports, any
number of input streams, one output stream ``o``, optionally ``clear`` and ``error``.

Driven by ``tests/test_rtl_cocotb_units.py`` through the environment: ``NFC_UNITS_SPEC`` names a JSON
file ``{"scenarios": [...], "out": PATH}``. Each scenario is

``config``
    ``{port: value}`` held for the whole scenario: an integer (signed or unsigned, checked against
    the port's width), or a list of integers for an ``ArrayLayout`` port (Amaranth flattens it into
    one port, element 0 in the low bits; the element width is the port's width over the length).
``clear``
    Pulse ``clear`` for one cycle after the reset (the units that have it need one before a pass).
``inputs``
    ``[{"stream", "words", "p_valid", "seed", "at"}]``: a :class:`~cocotb_benches.streams.StreamDriver`
    with random valid gaps (``at`` null), or a :class:`ScheduledDriver` that offers word ``n`` from
    cycle ``at[n]`` on. A stream with no words stays idle (its checker still watches it).
``output``
    ``{"count", "p_ready", "seed"}``: a :class:`~cocotb_benches.streams.StreamSink` on ``o`` until
    ``count`` words came out.
``tail``, ``max_cycles``
    Cycles run after the last expected output (the sink still draws ``ready``; any extra word is
    recorded), and the limit of cycles before that.

``unit_scenarios`` runs each scenario from reset with a :class:`~cocotb_benches.streams.StreamChecker`
on every stream and writes, per scenario, ``{"sent": {stream: [[cycle, word], ...]}, "received":
[[cycle, word], ...], "stalls": {stream: cycles with valid & ~ready}, "error": 0/1 or null}`` to
``out``; the pytest side compares them with the golden models. Cycle 0 is the first cycle after
the reset (and the ``clear`` pulse).
"""

from __future__ import annotations

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from cocotb_benches.streams import StreamChecker, StreamDriver, StreamSink

RESET_CYCLES = 2


def _spec() -> dict:
    with open(os.environ["NFC_UNITS_SPEC"]) as f:
        return json.load(f)


def _bit(handle, what: str) -> int:
    text = str(handle.value)
    if text not in ("0", "1"):
        raise AssertionError(f"{what} is {text!r}, not 0 or 1")
    return int(text)


def _bits(handle, name: str, value: int | list[int]) -> int:
    """``value`` as the bit pattern of port ``name`` (``handle``); a list fills an array port."""
    width = len(handle)
    elements = value if isinstance(value, list) else [value]
    if width % len(elements):
        raise ValueError(f"port {name} is {width} bits wide, not a multiple of {len(elements)} elements")
    w = width // len(elements)
    packed = 0
    for i, v in enumerate(elements):
        if not -(1 << (w - 1)) <= v < (1 << w):
            raise ValueError(f"{name}[{i}] = {v} does not fit in {w} bits")
        packed |= (v & ((1 << w) - 1)) << (i * w)
    return packed


class ScheduledDriver(StreamDriver):
    """A :class:`~cocotb_benches.streams.StreamDriver` that offers word ``n`` from cycle ``at[n]`` on
    (and holds it until it is taken), instead of after random gaps. ``sent`` as for the driver."""

    def __init__(self, dut, stream: str, clk, at: list[int]):
        super().__init__(dut, stream, clk)
        self.at = list(at)

    async def _run(self) -> None:
        cycle, n = 0, 0
        while True:
            if self._pending is None and self.queue and self.at[n] <= cycle:
                self._pending = self.queue.popleft()
            if self._pending is not None:
                self.payload.value = self._pending & self._mask
            self.valid.value = int(self._pending is not None)
            await ReadOnly()
            if self._pending is not None and _bit(self.ready, f"{self.name}__ready"):
                self.sent.append((cycle, self._pending))
                self._pending = None
                n += 1
            await RisingEdge(self.clk)
            cycle += 1


async def _reset(dut, sc: dict) -> None:
    """Configuration on, streams idle, ``rst`` for :data:`RESET_CYCLES` edges, then the ``clear``
    pulse if asked; returns just after the last of those edges (cycle 0 follows it)."""
    for name, value in sc["config"].items():
        handle = getattr(dut, name)
        handle.value = _bits(handle, name, value)
    for s in sc["inputs"]:
        getattr(dut, f"{s['stream']}__valid").value = 0
    dut.o__ready.value = 0
    if sc["clear"]:
        dut.clear.value = 0
    dut.rst.value = 1
    for _ in range(RESET_CYCLES):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    if sc["clear"]:
        dut.clear.value = 1
        await RisingEdge(dut.clk)
        dut.clear.value = 0


async def _scenario(dut, sc: dict) -> dict:
    await _reset(dut, sc)
    drivers = {}
    for s in sc["inputs"]:
        if s.get("at") is not None:
            drivers[s["stream"]] = ScheduledDriver(dut, s["stream"], dut.clk, s["at"])
        else:
            drivers[s["stream"]] = StreamDriver(
                dut, s["stream"], dut.clk, p_valid=s["p_valid"], seed=s["seed"]
            )
        drivers[s["stream"]].put(s["words"])
    out = sc["output"]
    sink = StreamSink(dut, "o", dut.clk, p_ready=out["p_ready"], seed=out["seed"])
    checkers = {name: StreamChecker(dut, name, dut.clk) for name in [*drivers, "o"]}
    tasks = [h.start() for h in [*drivers.values(), sink, *checkers.values()]]
    cycles = 0
    while len(sink.received) < out["count"] or not all(d.idle for d in drivers.values()):
        assert cycles < sc["max_cycles"], (
            f"only {len(sink.received)} of {out['count']} words out after {cycles} cycles "
            f"(inputs sent: { {k: len(d.sent) for k, d in drivers.items()} })"
        )
        await RisingEdge(dut.clk)
        cycles += 1
    for _ in range(sc["tail"]):
        await RisingEdge(dut.clk)
    await ReadOnly()
    error = _bit(dut.error, "error") if hasattr(dut, "error") else None
    for t in tasks:
        t.cancel()
    for name, d in drivers.items():
        assert checkers[name].transfers == d.sent, f"the checker and the driver of {name} disagree"
    assert checkers["o"].transfers == sink.received, "the checker and the sink disagree on o"
    await RisingEdge(dut.clk)
    return {
        "sent": {name: d.sent for name, d in drivers.items()},
        "received": sink.received,
        "stalls": {name: c.stalls for name, c in checkers.items()},
        "error": error,
    }


@cocotb.test()
async def unit_scenarios(dut):
    """Every scenario of the spec, each from reset, every stream under a protocol checker."""
    spec = _spec()
    Clock(dut.clk, 10, unit="ns").start()
    await RisingEdge(dut.clk)
    results = [await _scenario(dut, sc) for sc in spec["scenarios"]]
    with open(spec["out"], "w") as f:
        json.dump({"scenarios": results}, f)
