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
from helpers_nets import NETS, build_net

from nfc.arch import load_target
from nfc.compiler.binary import as_loaded
from nfc.compiler.driver import compile_graph
from nfc.frontends.onnx import import_onnx
from nfc.rtl.cosim import compare, cosim_amaranth, format_table
from nfc.rtl.emit import emit_verilog
from nfc.rtl.top import Accelerator
from nfc.sim.functional import RunState, run_pass, start_run

_VERILOG: dict[str, str] = {}


def _inputs(graph, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n.name: rng.uniform(-1, 1, n.attr("onnx_shape")).astype(np.float32) for n in graph.inputs}


def cosim(graph, arch, policy: str, inputs, folder, simulator: str, max_passes: int | None = None, title=""):
    """Compile ``graph`` for ``arch``, run it on the RTL in ``simulator`` (amaranth, icarus or
    verilator) with ``inputs`` and compare every pass with the cycle model; print the table.
    Returns (CosimResult, rows, compile result)."""
    result = compile_graph(graph, arch, policy)
    prog = as_loaded(result.program)
    memory = start_run(prog, result.lowered, inputs).mem.copy()
    if simulator == "amaranth":

        def host(mem, step):
            run_pass(RunState(prog, result.lowered, mem), step)

        res = cosim_amaranth(arch, prog, memory, host, max_passes=max_passes)
    else:
        res = _cosim_cocotb(arch, prog, memory, result.lowered, max_passes, simulator, Path(folder))
    rows = compare(arch, prog, res, result.lowered, inputs)
    print(format_table(f"{title or graph.name} on {arch.name} ({policy}, {simulator})", rows))
    return res, rows, result


def run_cosim(
    net: str,
    target: str,
    policy: str,
    folder,
    seed: int = 0,
    max_passes: int | None = None,
    simulator: str = "amaranth",
):
    """A network of ``tests/helpers_nets.py`` with random inputs through :func:`cosim`."""
    graph = build_net(net, folder)
    res, rows, _ = cosim(
        graph, load_target(target), policy, _inputs(graph, seed), folder, simulator, max_passes, title=net
    )
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


def test_cosim_amaranth_first_passes(tmp_path):
    """Amaranth's own simulator (slow: a few passes)."""
    res, rows = run_cosim("conv_pool_linear", "tiny", "nfc", tmp_path, max_passes=3)
    _check(res, rows)


def test_cosim_icarus_whole_program(tmp_path):
    """Every pass of a small network on Icarus Verilog."""
    res, rows = run_cosim("conv_pool_linear", "tiny", "nfc", tmp_path, simulator="icarus")
    _check(res, rows)
    assert len(rows) > 100


@pytest.mark.parametrize("net,policy", [("residual", "nfc"), ("upsample_pad", "luaflow")])
def test_cosim_verilator_whole_program(tmp_path, net, policy):
    """Every pass of small networks (chains, partial sums, ALU, copies, borders, strided writes)
    on Verilator."""
    res, rows = run_cosim(net, "tiny", policy, tmp_path, seed=1, simulator="verilator")
    _check(res, rows)


TINY_RW = Path(__file__).parent / "targets" / "tiny_rw.toml"


@pytest.mark.parametrize("net,mode", [("pool_act", "mac"), ("conv_pool_linear", "max")])
def test_cosim_pooling_units(tmp_path, net, mode):
    """Pooling fused on the tiles' pooling units (average, then a map pass for the mapper after it;
    maximum), every pass on Verilator."""
    prog = compile_graph(build_net(net, tmp_path), load_target("tiny"), "nfc").program
    assert {q.mode for p in prog.passes for q in p.pools} == {mode}
    res, rows = run_cosim(net, "tiny", "nfc", tmp_path, seed=4, simulator="verilator")
    _check(res, rows)


def test_cosim_shared_read_streams(tmp_path):
    """One read stream delivered to several tiles (taken on its way, Stream.taps), with pooling units,
    every pass on Verilator."""
    prog = compile_graph(build_net("shared_input", tmp_path), load_target(TINY_RW), "nfc").program
    assert max(len(s.taps) for p in prog.passes for s in p.streams) == 2  # one stream, three tiles
    res, rows = run_cosim("shared_input", str(TINY_RW), "nfc", tmp_path, seed=5, simulator="verilator")
    _check(res, rows)


@pytest.mark.parametrize("net", ["depthwise", "upsample_pad"])
def test_cosim_several_writes_per_pass(tmp_path, net):
    """Ports used as read or write as each pass needs (``tiny_rw``: up to 3 writes in a pass): passes
    that finish several maps at once, every pass on Verilator."""
    res, rows = run_cosim(net, str(TINY_RW), "nfc", tmp_path, seed=3, simulator="verilator")
    _check(res, rows)
    prog = compile_graph(build_net(net, tmp_path), load_target(TINY_RW), "nfc").program
    writes = [sum(s.direction == "write" for s in p.streams) for p in prog.steps if hasattr(p, "streams")]
    assert max(writes) >= 2, "the program has no pass with several write streams"


@pytest.mark.slow
@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
@pytest.mark.parametrize("policy", ["nfc", "luaflow"])
@pytest.mark.parametrize("net", sorted(NETS))
def test_cosim_every_small_network(tmp_path, net, policy, simulator):
    res, rows = run_cosim(net, "tiny", policy, tmp_path, seed=2, simulator=simulator)
    _check(res, rows)


@pytest.mark.slow
def test_cosim_digits_on_mid(tmp_path, benchmark_dir):
    """The digits classifier (a real benchmark network) on real digits, on the mid-size target."""
    data = np.load(benchmark_dir / "digits_test.npz")
    graph = import_onnx(benchmark_dir / "digits.onnx")
    arch = load_target("mid")
    name = graph.inputs[0].name
    for k in range(3):
        x = data["X_test"][k : k + 1].astype(np.float32)
        res, rows, result = cosim(graph, arch, "nfc", {name: x}, tmp_path, "verilator", title=f"digits #{k}")
        _check(res, rows)
        # the class the RTL computes is onnxruntime's on the float network
        out_name, buf, shape = as_loaded(result.program).outputs[0]
        b = as_loaded(result.program).buffer(buf)
        words = res.memory[b.address : b.address + int(np.prod(b.shape))]
        session_class = int(np.argmax(_onnx(benchmark_dir / "digits.onnx", name, x)))
        assert int(np.argmax(words)) == session_class, f"digit {k} (label {int(data['y_test'][k])})"


def _onnx(path, name, x):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {name: x})[0]


PACKED = Path(__file__).parent / "targets" / "packed.toml"


@pytest.mark.parametrize(
    "simulator",
    # the first Verilator run, build included, took 549 s here: make test-long
    ["icarus", pytest.param("verilator", marks=pytest.mark.slow)],
)
def test_cosim_packed_convolvers(tmp_path, simulator):
    """Kernel packing (tile.lanes = 2): convolvers making two output maps over one window, their
    chains with both lanes' partial sums over the chain links and from ports, both lanes written;
    every pass bit-identical with the cycle model's cycles."""
    graph = build_net("packed", tmp_path)
    res, rows, result = cosim(graph, load_target(PACKED), "nfc", _inputs(graph, 2), tmp_path, simulator)
    _check(res, rows)
    packed = [p for p in result.program.passes if any(u.out_channel1 >= 0 for u in p.convs)]
    kinds = {(u.psum_from.split(":")[0], u.to.split(":")[0]) for p in packed for u in p.convs}
    assert {("bias", "tile"), ("port", "tile"), ("tile", "port"), ("tile", "tile")} <= kinds
    assert any(s.lane == 1 and s.role == "psum" for p in packed for s in p.streams)


ACC = Path(__file__).parent / "targets" / "acc.toml"


@pytest.mark.parametrize("simulator", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)])
def test_cosim_accumulation_buffers(tmp_path, simulator):
    """Accumulation buffers (tile.acc_words): chains whose partial sums stay in the tiles' buffers
    between passes (stored from a bias, added to and stored again, added to and written through the
    mapper and pooling unit), passes whose only writes are into the buffers, both lanes; every pass
    bit-identical with the cycle model's cycles."""
    graph = build_net("acc", tmp_path)
    res, rows, result = cosim(graph, load_target(ACC), "nfc", _inputs(graph, 3), tmp_path, simulator)
    _check(res, rows)
    kinds = {(u.psum_from, u.to, u.out_channel1 >= 0) for p in result.program.passes for u in p.convs}
    assert {("bias", "acc", True), ("acc", "acc", True), ("acc", "port", True)} <= kinds
    assert any(not any(s.direction == "write" for s in p.streams) for p in result.program.passes)
    assert any(p.pools and any(u.psum_from == "acc" for u in p.convs) for p in result.program.passes)
