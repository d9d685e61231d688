"""Co-simulation: a compiled program run on the RTL, held to the cycle model word for word and cycle for cycle.

:func:`drive_program` is the testbench, written once against a tiny *bus* interface (``get(name)``,
``set(name, value)``, ``await tick()``) so that Amaranth's simulator (:func:`cosim_amaranth`) and
cocotb on Icarus or Verilator (``tests/cocotb_benches/cosim.py``) run the same code. It

* sends every pass's configuration words over the configuration bus back to back, the next pass's
  from the cycle after the current pass's ``GO`` (the RTL takes them while the current pass
  streams, as the contract assumes), except across a host step: the words of the pass after one go
  out once the host step is done;
* is the memory: it answers every read request exactly ``memory.latency_cycles`` cycles later from
  its memory image and performs every write on the cycle it is requested;
* runs host steps on its memory image between passes (they take no grid cycles);
* records each pass's cycle count as the RTL reports it (``pass_cycles``) and checks it against
  the cycles it counted itself from the end of the previous pass (or the first configuration word
  after a host step) to the last write.

:func:`compare` then sets the RTL's results beside the cycle model's (``sim/cycle.py``) and the
functional executor's memory image after every pass: per pass the model cycles, the RTL cycles and
the number of memory words that differ.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from nfc.arch import ArchConfig
from nfc.compiler.binary import LoadedPass, LoadedProgram
from nfc.compiler.program import HostStep
from nfc.errors import NfcError

__all__ = [
    "PassRecord",
    "CosimResult",
    "drive_program",
    "cosim_amaranth",
    "compare",
    "format_table",
    "signal_names",
]


@dataclass
class PassRecord:
    """What the RTL did in one pass."""

    index: int
    kind: str
    rtl_cycles: int  # as the RTL's pass control counted them
    counted_cycles: int  # as the testbench counted them (end of the pass before .. last write + 1)
    memory_stalls: int
    error: bool


@dataclass
class CosimResult:
    """Every pass's record, the memory image after every step (index of the step -> copy), the final
    memory image."""

    passes: list[PassRecord] = field(default_factory=list)
    images: dict[int, np.ndarray] = field(default_factory=dict)
    memory: np.ndarray | None = None
    wall_s: float = 0.0  # wall seconds of the testbench loop (set by whoever times it)


def signal_names(arch: ArchConfig) -> dict[str, str]:
    """Logical name -> port name of the emitted top level (Amaranth's flattening of ``Accelerator``)."""
    names = {
        "config_valid": "config__valid",
        "config_ready": "config__ready",
        "config_payload": "config__payload",
        "pass_done": "pass_done",
        "pass_cycles": "pass_cycles",
        "stall_cycles": "stall_cycles",
        "error": "error",
    }
    for p in range(arch.io.ports):
        for f in ("req_valid", "req_write", "req_addr", "req_data", "resp_valid", "resp_data"):
            names[f"mem{p}_{f}"] = f"mem__{p}__{f}"
    return names


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


async def drive_program(
    bus,
    arch: ArchConfig,
    prog: LoadedProgram,
    memory: np.ndarray,
    host: Callable[[np.ndarray, HostStep], None],
    max_passes: int | None = None,
    keep_images: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> CosimResult:
    """Run ``prog`` on the RTL behind ``bus`` with ``memory`` (a word image, changed in place).

    ``bus.get(name)``/``bus.set(name, value)`` take the logical names of :func:`signal_names`;
    ``await bus.settle()`` lets the logic respond to what was set before anything is read (the
    simulator may defer writes), ``await bus.tick()`` ends the cycle; inputs are set only when they
    change (they hold their value). ``host(memory, step)`` executes a host step.
    """
    latency = arch.memory.latency_cycles
    n_ports = arch.io.ports
    bits = arch.numerics.word_bits
    result = CosimResult()
    pending: deque[tuple[int, int, int]] = deque()  # (cycle due, port, value)
    now = 0
    steps = prog.steps if max_passes is None else _first_passes(prog.steps, max_passes)
    total = sum(1 for s in steps if isinstance(s, LoadedPass))
    done_passes = 0
    driven: dict[str, int] = {}  # what each input is driven with: a simulator access only on a change

    def drive(name: str, value: int) -> None:
        if driven.get(name) != value:
            driven[name] = value
            bus.set(name, value)

    async def cycle() -> tuple[bool, bool]:
        """One clock cycle of memory service; returns (config word taken, pass done)."""
        nonlocal now
        due = [None] * n_ports
        while pending and pending[0][0] == now:
            _, p, v = pending.popleft()
            due[p] = v
        for p in range(n_ports):
            drive(f"mem{p}_resp_valid", int(due[p] is not None))
            if due[p] is not None:
                drive(f"mem{p}_resp_data", due[p])
        await bus.settle()
        for p in range(n_ports):
            if bus.get(f"mem{p}_req_valid"):
                addr = bus.get(f"mem{p}_req_addr")
                if not 0 <= addr < memory.size:
                    raise NfcError(f"cycle {now}: port {p} addresses word {addr} outside the memory")
                if bus.get(f"mem{p}_req_write"):
                    memory[addr] = _signed(bus.get(f"mem{p}_req_data"), bits)
                else:
                    pending.append((now + latency, p, int(memory[addr])))
        taken = bool(driven.get("config_valid") and bus.get("config_ready"))
        finished = bool(bus.get("pass_done"))
        await bus.tick()
        now += 1
        return taken, finished

    i = 0
    while i < len(steps):
        if isinstance(steps[i], HostStep):
            host(memory, steps[i])
            if keep_images:
                result.images[i] = memory.copy()
            i += 1
            continue
        # a run of passes with no host step between them: their words go out back to back, each
        # pass's behind the one before (the RTL holds the bus while a configured pass waits)
        run = []
        while i < len(steps) and not isinstance(steps[i], HostStep):
            run.append((i, steps[i]))
            i += 1
        words = [(k, word) for k, (_, step) in enumerate(run) for word in step.words]
        w = 0
        for k, (at, step) in enumerate(run):
            start = now
            limit = 64 * (step.estimate.get("total", 0) or 0) + 100_000
            finished = False
            while not finished:
                if w < len(words) and words[w][0] <= k + 1:
                    drive("config_valid", 1)
                    drive("config_payload", words[w][1])
                else:
                    drive("config_valid", 0)
                taken, finished = await cycle()
                w += taken
                if now - start > limit:
                    raise NfcError(f"pass {step.index}: the RTL did not finish within {limit} cycles")
            rtl_cycles = bus.get("pass_cycles")
            result.passes.append(
                PassRecord(
                    index=step.index,
                    kind=step.kind,
                    rtl_cycles=rtl_cycles,
                    counted_cycles=now - start,
                    memory_stalls=bus.get("stall_cycles"),
                    error=bool(bus.get("error")),
                )
            )
            if keep_images:
                result.images[at] = memory.copy()
            done_passes += 1
            if progress is not None:
                progress(done_passes, total)
        drive("config_valid", 0)
    result.memory = memory
    return result


def _first_passes(steps, n: int):
    out, passes = [], 0
    for s in steps:
        if isinstance(s, LoadedPass):
            if passes == n:
                break
            passes += 1
        out.append(s)
    return tuple(out)


class _AmaranthBus:
    def __init__(self, ctx, dut, arch: ArchConfig):
        self.ctx = ctx
        self.map = {
            "config_valid": dut.config.valid,
            "config_ready": dut.config.ready,
            "config_payload": dut.config.payload,
            "pass_done": dut.pass_done,
            "pass_cycles": dut.pass_cycles,
            "stall_cycles": dut.stall_cycles,
            "error": dut.error,
        }
        for p in range(arch.io.ports):
            for f in ("req_valid", "req_write", "req_addr", "req_data", "resp_valid", "resp_data"):
                self.map[f"mem{p}_{f}"] = getattr(dut.mem[p], f)

    def get(self, name: str) -> int:
        v = self.ctx.get(self.map[name])
        return int(v)

    def set(self, name: str, value: int) -> None:
        self.ctx.set(self.map[name], value)

    async def settle(self) -> None:
        """Nothing to wait for: ``ctx.get`` sees the effect of every ``ctx.set`` before it."""

    async def tick(self) -> None:
        await self.ctx.tick()


def cosim_amaranth(
    arch: ArchConfig,
    prog: LoadedProgram,
    memory: np.ndarray,
    host: Callable[[np.ndarray, HostStep], None],
    max_passes: int | None = None,
) -> CosimResult:
    """Run ``prog`` on ``Accelerator(arch)`` in Amaranth's own simulator."""
    from amaranth.sim import Simulator

    from nfc.rtl.top import Accelerator

    dut = Accelerator(arch)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    out: list[CosimResult] = []

    async def bench(ctx):
        out.append(await drive_program(_AmaranthBus(ctx, dut, arch), arch, prog, memory, host, max_passes))

    sim.add_testbench(bench)
    sim.run()
    return out[0]


@dataclass(frozen=True)
class Row:
    index: int
    kind: str
    model_cycles: int
    rtl_cycles: int
    mismatching_words: int


def compare(
    arch: ArchConfig,
    prog: LoadedProgram,
    result: CosimResult,
    lowered,
    inputs: Mapping[str, np.ndarray],
) -> list[Row]:
    """The RTL's cycles and memory image after every pass beside the cycle model's and the functional
    executor's."""
    from nfc.sim.cycle import time_steps
    from nfc.sim.functional import run_pass, start_run

    state = start_run(prog, lowered, inputs)
    rows = []
    records = iter(result.passes)
    # the steps the RTL ran are a prefix of the program (their images are kept by step index)
    timings = iter(time_steps(prog.steps[: len(result.images)], arch))
    for i, step in enumerate(prog.steps):
        if i not in result.images:
            break
        run_pass(state, step)
        if isinstance(step, HostStep):
            continue
        rec = next(records)
        model = next(timings).cycles
        image = result.images[i]
        n = min(image.size, state.mem.size)
        rows.append(
            Row(
                step.index,
                step.kind,
                model,
                rec.rtl_cycles,
                int(np.count_nonzero(image[:n] != state.mem[:n])),
            )
        )
    return rows


def format_table(title: str, rows: list[Row]) -> str:
    from nfc.text import table

    body = [
        [str(r.index), r.kind, str(r.model_cycles), str(r.rtl_cycles), str(r.mismatching_words)] for r in rows
    ]
    head = ["pass", "kind", "model cycles", "RTL cycles", "mismatching words"]
    return "\n".join([title, *table(head, body, right={0, 2, 3, 4})])
