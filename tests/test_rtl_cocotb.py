"""The cocotb infrastructure end to end, on Icarus Verilog and on Verilator.

The device under test is a small Amaranth component defined here (a ``SyncFIFOBuffered`` between two
signed 16-bit streams), emitted with :func:`nfc.rtl.emit.emit_verilog`. The cocotb bench
(``cocotb_benches/stream_bench.py``) drives it with the stream driver, sink and protocol checker of
``cocotb_benches/streams.py`` under random valid gaps and ready back-pressure. Checked here:

- the words come out in order (golden model: a FIFO is the identity on the word sequence);
- the Verilog simulation agrees *cycle for cycle* with Amaranth's own simulator replaying the same
  seeded valid/ready patterns (every transfer on the same cycle, the same stall counts);
- without back-pressure, every word leaves exactly ``FIFO_LATENCY`` cycles after it entered;
- the checker fails a test whose driver changes a stalled payload, or drops valid, with its message.

Builds are cached under ``build/cocotb`` keyed by the Verilog's hash (Verilator's first build takes
10-30 s; later sessions reuse it).
"""

import json
import random
from collections import deque
from pathlib import Path

import pytest
from amaranth import Module, signed
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from cocotb_support import SIMULATORS, cache_dir, run_cocotb

from nfc.files import atomic_write
from nfc.rtl.emit import emit_verilog

TOP = "stream_fifo"
BENCH = "cocotb_benches.stream_bench"
#: Cycles from a word's input transfer to its output transfer when nothing stalls: one to write the
#: FIFO's storage, one for its registered read port.
FIFO_LATENCY = 2

SCENARIOS = [
    # back-pressure on both sides: valid gaps and a slow consumer
    {"n": 300, "p_valid": 0.7, "p_ready": 0.45, "seed_valid": 11, "seed_ready": 12},
    # a slow producer and a mostly ready consumer
    {"n": 120, "p_valid": 0.25, "p_ready": 0.85, "seed_valid": 21, "seed_ready": 22},
    # nothing stalls: the exact-latency case
    {"n": 60, "p_valid": 1.0, "p_ready": 1.0, "seed_valid": 31, "seed_ready": 32},
]


class StreamFIFO(wiring.Component):
    """The device under test: a ``SyncFIFOBuffered`` between two streams of signed words.

    Parameters
    ----------
    depth : int
        FIFO depth in words.

    Attributes
    ----------
    i : In(stream.Signature(signed(16)))
        Words in.
    o : Out(stream.Signature(signed(16)))
        The same words, in order, ``FIFO_LATENCY`` cycles later when nothing stalls.
    """

    i: In(stream.Signature(signed(16)))
    o: Out(stream.Signature(signed(16)))

    def __init__(self, depth: int = 4):
        self.depth = depth
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = f = fifo.SyncFIFOBuffered(width=16, depth=self.depth)
        wiring.connect(m, wiring.flipped(self.i), f.w_stream)
        wiring.connect(m, f.r_stream, wiring.flipped(self.o))
        return m


def _scenario(sc: dict) -> dict:
    rng = random.Random(sc["seed_valid"] * 1000 + sc["seed_ready"])
    words = [rng.randrange(-(1 << 15), 1 << 15) for _ in range(sc["n"])]
    return {k: v for k, v in sc.items() if k != "n"} | {"words": words, "max_cycles": 40 * sc["n"] + 100}


def amaranth_trace(sc: dict) -> dict:
    """The same scenario on Amaranth's simulator: the driver and sink of ``cocotb_benches.streams``
    replayed draw for draw (one draw of each generator per cycle)."""
    dut = StreamFIFO()
    out: dict = {"sent": [], "received": [], "stalls_in": 0, "stalls_out": 0}

    async def bench(ctx):
        drv, snk = random.Random(sc["seed_valid"]), random.Random(sc["seed_ready"])
        queue, pending, cycle = deque(sc["words"]), None, 0
        while len(out["received"]) < len(sc["words"]):
            assert cycle < sc["max_cycles"]
            draw = drv.random()
            if pending is None and queue and draw < sc["p_valid"]:
                pending = queue.popleft()
            ready = int(snk.random() < sc["p_ready"])
            ctx.set(dut.i.valid, pending is not None)
            if pending is not None:
                ctx.set(dut.i.payload, pending)
            ctx.set(dut.o.ready, ready)
            if pending is not None:
                if ctx.get(dut.i.ready):
                    out["sent"].append([cycle, pending])
                    pending = None
                else:
                    out["stalls_in"] += 1
            if ctx.get(dut.o.valid):
                if ready:
                    out["received"].append([cycle, ctx.get(dut.o.payload)])
                else:
                    out["stalls_out"] += 1
            await ctx.tick()
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out


@pytest.fixture(scope="module")
def fifo_verilog() -> tuple[Path, str]:
    text = emit_verilog(StreamFIFO(), TOP)
    path = cache_dir(text, "src", TOP) / f"{TOP}.v"
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text)
    return path, text


@pytest.fixture(scope="module", params=SIMULATORS)
def bench_run(request, fifo_verilog, tmp_path_factory) -> tuple[str, dict, list[dict], list[dict]]:
    """One simulation per simulator: (simulator, cocotb outcomes, scenarios, their traces)."""
    path, text = fifo_verilog
    simulator = request.param
    work = tmp_path_factory.mktemp(f"cocotb-{simulator}")
    scenarios = [_scenario(sc) for sc in SCENARIOS]
    spec = work / "spec.json"
    spec.write_text(json.dumps({"scenarios": scenarios, "out": str(work / "traces.json")}))
    outcomes = run_cocotb(
        path, TOP, BENCH, simulator, cache_dir(text, simulator, TOP), {"NFC_BENCH_SPEC": str(spec)}
    )
    traces = (
        json.loads((work / "traces.json").read_text())["scenarios"]
        if (work / "traces.json").is_file()
        else []
    )
    return simulator, outcomes, scenarios, traces


def test_bench_runs_every_cocotb_test(bench_run):
    _, outcomes, _, _ = bench_run
    assert set(outcomes) == {"stream_scenarios", "payload_change_is_caught", "valid_drop_is_caught"}
    assert outcomes["stream_scenarios"].passed, outcomes["stream_scenarios"].message


def test_words_come_out_in_order(bench_run):
    _, outcomes, scenarios, traces = bench_run
    assert outcomes["stream_scenarios"].passed, outcomes["stream_scenarios"].message
    assert len(traces) == len(scenarios)
    for sc, tr in zip(scenarios, traces, strict=True):
        assert [w for _, w in tr["sent"]] == sc["words"]
        assert [w for _, w in tr["received"]] == sc["words"]  # the golden FIFO: same words, same order


def test_backpressure_really_happened(bench_run):
    _, _, _, traces = bench_run
    assert traces[0]["stalls_in"] > 20 and traces[0]["stalls_out"] > 20, traces[0]
    assert traces[2]["stalls_in"] == traces[2]["stalls_out"] == 0


def test_verilog_matches_amaranth_cycle_for_cycle(bench_run):
    simulator, _, scenarios, traces = bench_run
    for k, (sc, tr) in enumerate(zip(scenarios, traces, strict=True)):
        assert tr == amaranth_trace(sc), f"{simulator}, scenario {k}"


def test_exact_latency_without_backpressure(bench_run):
    _, _, scenarios, traces = bench_run
    sent, received = traces[2]["sent"], traces[2]["received"]
    assert [c for c, _ in sent] == list(range(len(scenarios[2]["words"])))  # one word per cycle
    assert [co - ci for (ci, _), (co, _) in zip(sent, received, strict=True)] == [FIFO_LATENCY] * len(sent)


@pytest.mark.parametrize(
    ("test", "message"),
    [
        ("payload_change_is_caught", "stream i: payload changed while stalled on cycle"),
        ("valid_drop_is_caught", "stream i: valid dropped while stalled on cycle"),
    ],
)
def test_checker_fails_a_broken_driver(bench_run, test, message):
    _, outcomes, _, _ = bench_run
    assert not outcomes[test].passed
    assert message in outcomes[test].message


def test_build_is_reused_until_the_verilog_changes(fifo_verilog, tmp_path):
    _, text = fifo_verilog
    src, build = tmp_path / "dut.v", tmp_path / "build"
    src.write_text(text)

    def run():
        outcomes = run_cocotb(src, TOP, BENCH, "icarus", build, testcase="payload_change_is_caught")
        assert (
            set(outcomes) == {"payload_change_is_caught"} and not outcomes["payload_change_is_caught"].passed
        )
        return (build / "sim.vvp").stat().st_mtime_ns

    first = run()
    assert run() == first
    src.write_text(emit_verilog(StreamFIFO(depth=2), TOP))
    assert run() != first


def test_run_cocotb_rejects_unknown_simulators(fifo_verilog, tmp_path):
    with pytest.raises(ValueError, match=r"^simulator must be one of icarus, verilator, not 'vcs'$"):
        run_cocotb(fifo_verilog[0], TOP, BENCH, "vcs", tmp_path)
