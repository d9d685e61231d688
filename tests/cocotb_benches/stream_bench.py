"""cocotb tests for any DUT with one input stream ``i`` and one output stream ``o`` (``clk``, ``rst``).

Driven by ``tests/test_rtl_cocotb.py`` through the environment: ``NFC_BENCH_SPEC`` names a JSON file
``{"scenarios": [{"words", "p_valid", "p_ready", "seed_valid", "seed_ready", "max_cycles"}, ...],
"out": PATH}``. ``stream_scenarios`` runs each scenario from reset, with the driver, the sink and a
protocol checker on both streams, and writes ``{"scenarios": [{"sent", "received", "stalls_in",
"stalls_out"}]}`` (``sent``/``received``: ``[cycle, word]`` pairs) to ``out`` for the pytest side to
compare with Amaranth's simulator and a golden model. ``payload_change_is_caught`` and
``valid_drop_is_caught`` break the protocol on purpose and must *fail* (the checker's error).
"""

from __future__ import annotations

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from cocotb_benches.streams import StreamChecker, StreamDriver, StreamSink

RESET_CYCLES = 2


def _spec() -> dict:
    with open(os.environ["NFC_BENCH_SPEC"]) as f:
        return json.load(f)


async def _reset(dut) -> None:
    """Hold ``rst`` for :data:`RESET_CYCLES` edges with both streams idle; returns just after the edge
    that ends the reset (cycle 0 follows it)."""
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    for _ in range(RESET_CYCLES):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


async def _start(dut) -> None:
    Clock(dut.clk, 10, unit="ns").start()
    await RisingEdge(dut.clk)


@cocotb.test()
async def stream_scenarios(dut):
    """Every scenario of the spec under its valid gaps and ready back-pressure, both streams checked."""
    spec = _spec()
    await _start(dut)
    results = []
    for sc in spec["scenarios"]:
        await _reset(dut)
        driver = StreamDriver(dut, "i", dut.clk, p_valid=sc["p_valid"], seed=sc["seed_valid"])
        sink = StreamSink(dut, "o", dut.clk, p_ready=sc["p_ready"], seed=sc["seed_ready"])
        check_in = StreamChecker(dut, "i", dut.clk)
        check_out = StreamChecker(dut, "o", dut.clk)
        driver.put(sc["words"])
        tasks = [h.start() for h in (driver, sink, check_in, check_out)]
        cycles = 0
        while len(sink.received) < len(sc["words"]):
            assert cycles < sc["max_cycles"], (
                f"only {len(sink.received)} of {len(sc['words'])} words out after {cycles} cycles"
            )
            await RisingEdge(dut.clk)
            cycles += 1
        for t in tasks:
            t.cancel()
        assert check_in.transfers == driver.sent, "the checker and the driver disagree on the input transfers"
        assert check_out.transfers == sink.received, (
            "the checker and the sink disagree on the output transfers"
        )
        results.append(
            {
                "sent": driver.sent,
                "received": sink.received,
                "stalls_in": check_in.stalls,
                "stalls_out": check_out.stalls,
            }
        )
        await RisingEdge(dut.clk)
    with open(spec["out"], "w") as f:
        json.dump({"scenarios": results}, f)


async def _broken(dut, violate: str) -> None:
    await _start(dut)
    await _reset(dut)
    driver = StreamDriver(dut, "i", dut.clk, p_valid=1.0, seed=3, violate=violate)
    sink = StreamSink(dut, "o", dut.clk, p_ready=0.3, seed=4)
    checker = StreamChecker(dut, "i", dut.clk)
    driver.put(range(1, 200))
    for h in (driver, sink, checker):
        h.start()
    for _ in range(400):
        await RisingEdge(dut.clk)


@cocotb.test()
async def payload_change_is_caught(dut):
    """A driver that changes the payload of a stalled word: the checker must fail this test."""
    await _broken(dut, "payload")


@cocotb.test()
async def valid_drop_is_caught(dut):
    """A driver that drops valid before its word was taken: the checker must fail this test."""
    await _broken(dut, "valid")
