"""Co-simulation: compiled programs on the RTL (``nfc.rtl.top.Accelerator``) against the cycle model.

Every pass must leave the memory image bit-identical to the functional executor's and take exactly
the cycle model's cycle count (``sim/cycle.py``), as the RTL's pass control counts it and as the
testbench counts it from the first configuration word to the last write. No tolerance.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from cocotb_support import assert_passed, cache_dir, run_cocotb
from helpers_nets import build_net

from nfc.arch import load_target
from nfc.compiler.binary import as_loaded
from nfc.compiler.driver import compile_graph
from nfc.rtl.cosim import compare, cosim_amaranth, format_table
from nfc.rtl.emit import emit_verilog
from nfc.rtl.top import Accelerator
from nfc.sim.functional import RunState, run_pass, start_run

_VERILOG: dict[str, str] = {}


def _inputs(graph, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n.name: rng.uniform(-1, 1, n.attr("onnx_shape")).astype(np.float32) for n in graph.inputs}


def run_cosim(
    net: str,
    target: str,
    policy: str,
    folder,
    seed: int = 0,
    max_passes: int | None = None,
    simulator: str = "amaranth",
):
    """Compile ``net`` for ``target``, run it on the RTL in ``simulator`` (amaranth, icarus or
    verilator) and compare every pass with the cycle model; print the table."""
    arch = load_target(target)
    graph = build_net(net, folder)
    result = compile_graph(graph, arch, policy)
    prog = as_loaded(result.program)
    inputs = _inputs(graph, seed)
    memory = start_run(prog, result.lowered, inputs).mem.copy()
    if simulator == "amaranth":

        def host(mem, step):
            run_pass(RunState(prog, result.lowered, mem), step)

        res = cosim_amaranth(arch, prog, memory, host, max_passes=max_passes)
    else:
        res = _cosim_cocotb(arch, prog, memory, result.lowered, max_passes, simulator, Path(folder))
    rows = compare(arch, prog, res, result.lowered, inputs)
    print(format_table(f"{net} on {target} ({policy}, {simulator})", rows))
    return res, rows


def _cosim_cocotb(arch, prog, memory, lowered, max_passes, simulator: str, folder: Path):
    """The same testbench (``nfc.rtl.cosim.drive_program``) under cocotb on the emitted Verilog."""
    top = f"nfc_{arch.name}"
    if arch.name not in _VERILOG:
        _VERILOG[arch.name] = emit_verilog(Accelerator(arch), top)
    text = _VERILOG[arch.name]
    build = cache_dir(text, simulator, f"cosim-{arch.name}")
    build.mkdir(parents=True, exist_ok=True)
    verilog = build / f"{top}.v"
    if not verilog.is_file() or verilog.read_text() != text:
        verilog.write_text(text)
    job, out = folder / "cosim_job.pkl", folder / "cosim_result.pkl"
    with open(job, "wb") as f:
        pickle.dump(
            {"arch": arch, "prog": prog, "memory": memory, "lowered": lowered, "max_passes": max_passes}, f
        )
    outcomes = run_cocotb(
        verilog,
        top,
        "cocotb_benches.cosim",
        simulator,
        build,
        extra_env={"NFC_COSIM_JOB": str(job), "NFC_COSIM_RESULT": str(out)},
    )
    assert_passed(outcomes, {"run_program"})
    with open(out, "rb") as f:
        return pickle.load(f)


def _check(res, rows) -> None:
    assert rows, "no pass ran"
    for rec in res.passes:
        assert not rec.error, f"pass {rec.index}: the RTL raised its error flag"
        assert rec.rtl_cycles == rec.counted_cycles, (
            f"pass {rec.index}: the RTL counted {rec.rtl_cycles} cycles, the testbench {rec.counted_cycles}"
        )
    bad = [(r.index, r.model_cycles, r.rtl_cycles, r.mismatching_words) for r in rows]
    bad = [b for b in bad if b[1] != b[2] or b[3]]
    assert not bad, f"(pass, model cycles, RTL cycles, mismatching words): {bad}"


@pytest.mark.parametrize("net", ["conv_pool_linear"])
def test_cosim_amaranth_first_passes(tmp_path, net):
    res, rows = run_cosim(net, "tiny", "nfc", tmp_path, max_passes=3)
    _check(res, rows)


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_cosim_cocotb_first_passes(tmp_path, simulator):
    res, rows = run_cosim("conv_pool_linear", "tiny", "nfc", tmp_path, max_passes=2, simulator=simulator)
    _check(res, rows)
