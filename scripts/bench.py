"""`make bench`: compiled quality of every benchmark network, both policies side by side, and the
simulator's speed.

Writes ``bench/results.json`` and prints two tables. Cycles come from the cycle model
(``sim/cycle.py``, timing only: a statically scheduled grid takes the same cycles for any data),
with the compiler's analytical estimate beside them; power from ``sim/power.py``. Compile time is
the median of several runs. Simulator speed: the full simulation (numbers and timing) of the
scene-parsing network on virtex6, median of several runs, and the cycle model against the
per-cycle reference model (``sim/naive.py``) on the same passes.

Compile time and peak memory (``--big`` adds ResNet-18 and MobileNetV2, minutes each): one
compile per network in a fresh process on virtex6 with the nfc policy, wall time and the
process's peak resident memory.

Usage: python scripts/bench.py [--models DIR] [--runs N] [--only name,name] [--big] [--out bench/results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from nfc.arch import load_target
from nfc.benchmarks import build_models
from nfc.compiler.analysis import layer_stats, totals
from nfc.compiler.binary import LoadedPass, as_loaded
from nfc.compiler.bounds import cycle_bounds
from nfc.compiler.driver import compile_graph
from nfc.files import atomic_write
from nfc.frontends.onnx import import_onnx
from nfc.sim.cycle import simulate, time_pass, time_program
from nfc.sim.events import Events
from nfc.sim.naive import naive_pass
from nfc.sim.power import PowerModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_goals import COMPILE_GOALS, compile_times, goals, goals_table  # noqa: E402

#: Networks measured, in table order.
NETWORKS = [
    "digits",
    "lenet5",
    "face_detector",
    "neuflow_test",
    "scene_parsing",
    "scene_parsing_pyramid",
    "alexnet_small",
    "vgg16_small",
]
#: Measured only with ``--big`` (minutes per compile with today's mapping), on virtex6 only: the
#: utilisation goal and the compile-time goal need them; ``make test-long`` compiles them for every
#: target and policy.
DEFERRED = {
    "resnet18": "about 350k passes on virtex6 (1.4M chain terms, at most 4 per pass); minutes to compile",
    "mobilenet_v2": "about 72k passes on virtex6; minutes to compile",
}
TARGETS = ["virtex6", "asic45"]
#: Networks also measured on a target beyond NeuFlow (issue 7, goal 2: the ML605's 400 MACs and memory)
EXTRA_TARGETS = {"scene_parsing": ["virtex6_packed"], "scene_parsing_pyramid": ["virtex6_packed"]}
POLICIES = ["luaflow", "nfc"]


def measure(name: str, graph, arch, policy: str, runs: int) -> dict:
    """Compile ``graph`` ``runs`` times (median time) and time the program on the cycle model."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = compile_graph(graph, arch, policy)
        times.append(time.perf_counter() - t0)
    timings = time_program(result.program, arch)
    events = sum((t.events for t in timings), Events())
    net = totals(layer_stats(result.graph))
    power = PowerModel(arch).summary(events, net["grid_ops"])
    cycles = events.cycles
    bounds = cycle_bounds(result.lowered, arch)
    row = {
        "network": name,
        "target": arch.name,
        "policy": policy,
        "passes": len(timings),
        "cycles": cycles,
        "estimate_cycles": sum(t.estimate for t in timings),
        "frames_per_s": arch.clock_hz / cycles,
        "useful_gops": power["gops"],
        # the network's MACs (zero kernels skipped), as nfc simulate reports it
        "mac_utilisation": net["macs"] / (cycles * arch.macs),
        "network_macs": net["macs"],
        "dram_bytes": events.dram_bytes_read + events.dram_bytes_written,
        "config_cycles": sum(t.config_cycles for t in timings),
        "memory_stall_cycles": sum(t.memory_stall_cycles for t in timings),
        "watts": power["watts"],
        "gops_per_w": power["gops_per_w"],
        "compile_s_median": statistics.median(times),
        "compile_runs": len(times),
        "bounds": bounds.to_dict(),
        "bound_frames_per_s": arch.clock_hz / bounds.bound,
    }
    print(
        f"bench: {name:14s} {arch.name:8s} {policy:8s} {row['frames_per_s']:10.2f} fps  "
        f"compile {row['compile_s_median']:.2f} s",
        file=sys.stderr,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="build/models")
    ap.add_argument("--runs", type=int, default=3, help="compile runs per case (median reported)")
    ap.add_argument("--only", default="", help="comma-separated network names")
    ap.add_argument("--out", default="bench/results.json")
    ap.add_argument(
        "--big", action="store_true", help="also measure compile time and memory of ResNet-18 and MobileNetV2"
    )
    ap.add_argument(
        "--goal-runs", type=int, default=5, help="compiles per network for the compile-time goals (median)"
    )
    ap.add_argument(
        "--no-rtl", action="store_true", help="leave out the cycle model vs RTL-on-Verilator speed comparison"
    )
    args = ap.parse_args(argv)
    models = Path(args.models)
    names = [n for n in NETWORKS if not args.only or n in args.only.split(",")]
    wanted = names + (list(DEFERRED) if args.big else [])
    missing = [n for n in wanted if not (models / f"{n}.onnx").exists()]
    if missing:
        print(f"bench: building {', '.join(missing)} into {models}", file=sys.stderr)
        build_models(models, only=missing, progress=lambda m: print(f"bench: {m}", file=sys.stderr))
    rows = []
    for name in names:
        graph = import_onnx(models / f"{name}.onnx")
        for target in TARGETS + EXTRA_TARGETS.get(name, []):
            for policy in POLICIES:
                rows.append(measure(name, graph, load_target(target), policy, args.runs))
    if args.big:
        for name in DEFERRED:
            graph = import_onnx(models / f"{name}.onnx")
            for policy in POLICIES:
                rows.append(measure(name, graph, load_target("virtex6"), policy, 1))
    for r in rows:
        if r["policy"] == "nfc":
            base = next(
                b
                for b in rows
                if b["network"] == r["network"] and b["target"] == r["target"] and b["policy"] == "luaflow"
            )
            r["speedup_vs_luaflow"] = r["frames_per_s"] / base["frames_per_s"]
            r["utilisation_ratio_vs_luaflow"] = r["mac_utilisation"] / base["mac_utilisation"]
    speed = sim_speed(models, args.runs) if not args.only or "scene_parsing" in args.only.split(",") else None
    rtl = rtl_speed(models, args.runs) if not args.no_rtl else None
    memory = [compile_memory(models, name) for name in names + (list(DEFERRED) if args.big else [])]
    timed = [n for n in COMPILE_GOALS if n in names or (args.big and n in DEFERRED)]
    compiled = compile_times(models, args.goal_runs, timed)
    goal_lines = goals(rows, compiled)
    doc = {
        "source": "cycle model (sim/cycle.py); estimate = compiler's analytical estimate",
        "compile_memory": memory,
        "cpus": os.cpu_count(),
        "rows": rows,
        "simulator_speed": speed,
        "rtl_speed": rtl,
        "deferred": DEFERRED,
        "compile_goal_times": compiled,
        "goals": goal_lines,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, json.dumps(doc, indent=2) + "\n")
    print(table(rows))
    if speed is not None:
        print()
        print(speed_table(speed))
    if rtl is not None:
        print()
        print(rtl_speed_table(rtl))
    print()
    print(memory_table(memory))
    for name, why in DEFERRED.items():
        print(
            f"not in the quality table: {name}: {why}"
            + (" (compile time and memory above)" if args.big else "")
        )
    print()
    print(goals_table(goal_lines))
    print(f"\nwrote {out}")
    return 0


_COMPILE_ONE = """
import json, resource, sys, time
from nfc.arch import load_target
from nfc.compiler.driver import compile_graph
from nfc.frontends.onnx import import_onnx
t0 = time.perf_counter()
result = compile_graph(import_onnx(sys.argv[1]), load_target("virtex6"), "nfc")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # survives exec: the parent's too
try:  # Linux: this process's own high-water mark
    peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
except (OSError, StopIteration):
    pass
print(json.dumps({"seconds": time.perf_counter() - t0, "passes": len(result.program.passes), "peak_mb": peak}))
"""


def compile_memory(models: Path, name: str) -> dict:
    """One compile of ``name`` (virtex6, nfc) in a fresh process: wall seconds, passes, peak MB."""
    import subprocess

    print(f"bench: compile time and memory of {name}", file=sys.stderr)
    out = subprocess.run(
        [sys.executable, "-c", _COMPILE_ONE, str(models / f"{name}.onnx")],
        check=True,
        capture_output=True,
        text=True,
    )
    return {"network": name, **json.loads(out.stdout.strip().splitlines()[-1])}


def memory_table(rows: list[dict]) -> str:
    lines = [
        "| network (virtex6, nfc) | passes | compile s (one run, fresh process) | peak MB |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['network']} | {r['passes']} | {r['seconds']:.2f} | {r['peak_mb']:.0f} |" for r in rows]
    return "\n".join(lines)


def sim_speed(models: Path, runs: int) -> dict:
    """Wall time of simulating scene parsing on virtex6 (median of ``runs``), and the cycle model
    against the per-cycle reference model on the passes of a small program."""
    import numpy as np

    arch = load_target("virtex6")
    graph = import_onnx(models / "scene_parsing.onnx")
    result = compile_graph(graph, arch, "nfc")
    prog = as_loaded(result.program)
    rng = np.random.default_rng(0)
    x = {n.name: rng.uniform(-1, 1, n.attr("onnx_shape")).astype(np.float32) for n in graph.inputs}
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sim = simulate(prog, result.lowered, x, arch)
        walls.append(time.perf_counter() - t0)
    wall = statistics.median(walls)
    cycles = sum(p.cycles for p in sim.passes)
    macs = sum(p.useful_macs for p in sim.passes)
    # the two timing models side by side on the same passes (lenet5 on tiny: small enough for the naive one)
    tiny = load_target("tiny")
    small = as_loaded(compile_graph(import_onnx(models / "lenet5.onnx"), tiny, "nfc").program)
    passes = [s for s in small.steps if isinstance(s, LoadedPass)]
    fast, slow = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        a = [time_pass(p, tiny).cycles for p in passes]
        fast.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b = [naive_pass(p, tiny).cycles for p in passes]
        slow.append(time.perf_counter() - t0)
    if a != b:
        raise SystemExit("bench: the cycle model and the per-cycle reference model disagree")
    small_cycles = sum(a)
    return {
        "network": "scene_parsing",
        "target": "virtex6",
        "passes": len(sim.passes),
        "simulated_cycles": cycles,
        "wall_s_median": wall,
        "wall_s_runs": walls,
        "cycles_per_s": cycles / wall,
        "macs_per_s": macs / wall,
        "goal_wall_s": 10.0,
        "reference": {
            "program": "lenet5 on tiny (nfc)",
            "passes": len(passes),
            "cycles": small_cycles,
            "cycle_model_s_median": statistics.median(fast),
            "naive_model_s_median": statistics.median(slow),
            "speedup": statistics.median(slow) / statistics.median(fast),
        },
    }


def rtl_speed(models: Path, runs: int) -> dict:
    """The cycle model against the RTL on Verilator, on the same program (lenet5 on tiny): simulated
    cycles per wall second for both, Verilator's build time apart. The RTL run is also checked: every
    pass takes the cycle model's cycles and the final memory image is the functional executor's."""
    import pickle
    import tempfile

    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from cocotb_support import assert_passed, run_cocotb

    from nfc.rtl.emit import emit_verilog
    from nfc.rtl.top import Accelerator
    from nfc.sim.functional import start_run

    arch = load_target("tiny")
    graph = import_onnx(models / "lenet5.onnx")
    result = compile_graph(graph, arch, "nfc")
    prog = as_loaded(result.program)
    rng = np.random.default_rng(0)
    x = {n.name: rng.uniform(-1, 1, n.attr("onnx_shape")).astype(np.float32) for n in graph.inputs}
    model_walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sim = simulate(prog, result.lowered, x, arch)
        model_walls.append(time.perf_counter() - t0)
    cycles = [p.cycles for p in sim.passes]

    t0 = time.perf_counter()
    text = emit_verilog(Accelerator(arch), "nfc_tiny")
    emit_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        build = Path(tmp) / "verilator"
        build.mkdir()
        verilog = build / "nfc_tiny.v"
        verilog.write_text(text)
        t0 = time.perf_counter()
        run_cocotb(verilog, "nfc_tiny", "cocotb_benches.cosim", "verilator", build, build_only=True)
        build_s = time.perf_counter() - t0
        memory = start_run(prog, result.lowered, x).mem
        job, out = Path(tmp) / "job.pkl", Path(tmp) / "result.pkl"
        job.write_bytes(
            pickle.dumps(
                {
                    "arch": arch,
                    "prog": prog,
                    "memory": memory,
                    "lowered": result.lowered,
                    "max_passes": None,
                    "keep_images": False,
                }
            )
        )
        rtl_walls, loop_walls = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            outcomes = run_cocotb(
                verilog,
                "nfc_tiny",
                "cocotb_benches.cosim",
                "verilator",
                build,
                extra_env={"NFC_COSIM_JOB": str(job), "NFC_COSIM_RESULT": str(out)},
            )
            rtl_walls.append(time.perf_counter() - t0)
            assert_passed(outcomes, {"run_program"})
            res = pickle.loads(out.read_bytes())
            loop_walls.append(res.wall_s)
            rtl_cycles = [p.rtl_cycles for p in res.passes]
            if rtl_cycles != cycles:
                raise SystemExit("bench: the RTL's pass cycles differ from the cycle model's")
            n = sim.run.memory.size
            if not np.array_equal(res.memory[:n], sim.run.memory[:n]):
                raise SystemExit("bench: the RTL's final memory image differs from the functional executor's")
    total = sum(cycles)
    model = statistics.median(model_walls)
    rtl = statistics.median(loop_walls)
    return {
        "program": "lenet5 on tiny (nfc)",
        "passes": len(cycles),
        "cycles": total,
        "cycle_model_s_median": model,
        "rtl_testbench_s_median": rtl,
        "rtl_process_s_median": statistics.median(rtl_walls),
        "verilog_emit_s": emit_s,
        "verilator_build_s": build_s,
        "cycle_model_cycles_per_s": total / model,
        "rtl_cycles_per_s": total / rtl,
        "ratio": (total / model) / (total / rtl),
        "runs": runs,
    }


def rtl_speed_table(r: dict) -> str:
    return "\n".join(
        [
            "| simulator (same program, numbers + timing) | passes | simulated cycles | wall s (median) | "
            "simulated cycles/s |",
            "|---|---|---|---|---|",
            f"| cycle model (nfc simulate) | {r['passes']} | {r['cycles']:,} | {r['cycle_model_s_median']:.2f} | "
            f"{r['cycle_model_cycles_per_s'] / 1e3:,.0f}k |",
            f"| RTL on Verilator (cocotb testbench loop) | {r['passes']} | {r['cycles']:,} | "
            f"{r['rtl_testbench_s_median']:.2f} | {r['rtl_cycles_per_s'] / 1e3:,.1f}k |",
            "",
            f"{r['program']}: cycle model / Verilator: {r['ratio']:.1f}x; every pass the same cycles, the same "
            f"final memory image",
            f"apart: Verilog emission {r['verilog_emit_s']:.1f} s, Verilator build {r['verilator_build_s']:.1f} s, "
            f"Verilator process per run (start-up included) {r['rtl_process_s_median']:.1f} s",
        ]
    )


def speed_table(sp: dict) -> str:
    ref = sp["reference"]
    return "\n".join(
        [
            "| simulator run | passes | simulated cycles | wall s (median) | simulated cycles/s | simulated useful MACs/s |",
            "|---|---|---|---|---|---|",
            f"| scene_parsing on virtex6, numbers + timing (goal <= {sp['goal_wall_s']:g} s) | {sp['passes']} | "
            f"{sp['simulated_cycles']:,} | {sp['wall_s_median']:.2f} | {sp['cycles_per_s'] / 1e6:.2f}M | "
            f"{sp['macs_per_s'] / 1e9:.2f}G |",
            f"| {ref['program']}, timing only: cycle model | {ref['passes']} | {ref['cycles']:,} | "
            f"{ref['cycle_model_s_median']:.3f} | {ref['cycles'] / ref['cycle_model_s_median'] / 1e6:.2f}M | - |",
            f"| {ref['program']}, timing only: per-cycle reference | {ref['passes']} | {ref['cycles']:,} | "
            f"{ref['naive_model_s_median']:.3f} | {ref['cycles'] / ref['naive_model_s_median'] / 1e6:.2f}M | - |",
            "",
            f"cycle model / per-cycle reference speed: {ref['speedup']:.1f}x (same cycles on every pass)",
        ]
    )


def table(rows: list[dict]) -> str:
    head = (
        "| network | target | policy | passes | cycles/frame | estimate | frames/s | bound frames/s | useful GOPS | "
        "MAC util | DRAM MB/frame | config % | mem stall % | W | GOPS/W | x luaflow | compile s |"
    )
    lines = [head, "|" + "---|" * 17]
    for r in rows:
        ratio = f"{r['speedup_vs_luaflow']:.2f}" if "speedup_vs_luaflow" in r else "1 (base)"
        lines.append(
            f"| {r['network']} | {r['target']} | {r['policy']} | {r['passes']} | {r['cycles']:,} | "
            f"{r['estimate_cycles'] / r['cycles']:.4f}x | {r['frames_per_s']:.2f} | {r['bound_frames_per_s']:.2f} | "
            f"{r['useful_gops']:.2f} | "
            f"{100 * r['mac_utilisation']:.1f}% | {r['dram_bytes'] / 1e6:.2f} | "
            f"{100 * r['config_cycles'] / r['cycles']:.1f}% | {100 * r['memory_stall_cycles'] / r['cycles']:.1f}% | "
            f"{r['watts']:.2f} | {r['gops_per_w']:.2f} | {ratio} | {r['compile_s_median']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
