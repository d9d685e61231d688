"""cocotb side of the co-simulation: runs ``nfc.rtl.cosim.drive_program`` on the emitted Verilog.

The pytest side (``tests/test_rtl_cosim.py``) pickles the job (target, loaded program, memory image,
lowered graph for host steps, passes to run) into the file named by ``NFC_COSIM_JOB`` and reads the
result back from ``NFC_COSIM_RESULT``.

Inputs are driven and outputs sampled between clock edges: on each falling edge the bench sets the
memory responses and the configuration word, waits 1 ns for the logic to settle (cocotb applies
writes at the end of a time step), reads the requests and handshakes, and the next rising edge takes
them: the cycle semantics of the Amaranth bench.
"""

from __future__ import annotations

import os
import pickle
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Timer

from nfc.rtl.cosim import drive_program, signal_names
from nfc.sim.functional import RunState, run_pass


class _Bus:
    def __init__(self, dut, arch):
        self.handles = {k: getattr(dut, v) for k, v in signal_names(arch).items()}
        self.clk = dut.clk

    def get(self, name: str) -> int:
        value = self.handles[name].value
        if not value.is_resolvable:
            raise AssertionError(f"{name} is {value} (unknown or high-impedance bits)")
        return int(value)

    def set(self, name: str, value: int) -> None:
        self.handles[name].value = value

    async def settle(self) -> None:
        await Timer(1, "ns")  # cocotb applies writes at the end of the time step; let them propagate

    async def tick(self) -> None:
        await FallingEdge(self.clk)


@cocotb.test()
async def run_program(dut):
    with open(os.environ["NFC_COSIM_JOB"], "rb") as f:
        job = pickle.load(f)
    arch, prog, memory, lowered, max_passes = (
        job["arch"],
        job["prog"],
        job["memory"],
        job["lowered"],
        job["max_passes"],
    )
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    bus = _Bus(dut, arch)
    for name in bus.handles:
        if name.endswith("resp_valid") or name.endswith("resp_data") or name.startswith("config_"):
            if name not in ("config_ready",):
                bus.set(name, 0)
    dut.rst.value = 1
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0

    def host(mem, step):
        run_pass(RunState(prog, lowered, mem), step)

    t0 = time.perf_counter()
    result = await drive_program(
        bus, arch, prog, memory, host, max_passes=max_passes, keep_images=job.get("keep_images", True)
    )
    result.wall_s = time.perf_counter() - t0
    with open(os.environ["NFC_COSIM_RESULT"], "wb") as f:
        pickle.dump(result, f)
