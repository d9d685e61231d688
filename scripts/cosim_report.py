"""Co-simulation summary for BENCHMARKS.md: compiled programs on the RTL against the cycle model.

Runs every small test network (``tests/helpers_nets.py``, random inputs and weights) with both
policies on the ``tiny`` target, the packing test network on ``tests/targets/packed.toml``
(convolvers packing two kernels), the accumulation-buffer test network on ``tests/targets/acc.toml``
(partial sums kept on the tiles), and the digits classifier on real test digits on the ``mid``
target, on the RTL under a cocotb simulator (the testbench of ``nfc.rtl.cosim``), and prints one
markdown row per program: passes, the cycle model's and the RTL's total cycles, passes whose cycle
counts differ, memory words that differ after some pass, and the wall time of the run.

    python scripts/cosim_report.py [--simulator verilator|icarus] [--models build/models] [--digits 3]
                                   [--only tiny,packed,acc,digits]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from helpers_nets import NETS, build_net  # noqa: E402
from test_rtl_cosim import _inputs, cosim  # noqa: E402

from nfc.arch import load_target  # noqa: E402
from nfc.benchmarks import build_models  # noqa: E402
from nfc.frontends.onnx import import_onnx  # noqa: E402


def row(title: str, target: str, res, rows, wall: float) -> str:
    model = sum(r.model_cycles for r in rows)
    rtl = sum(r.rtl_cycles for r in rows)
    differ = sum(r.model_cycles != r.rtl_cycles for r in rows)
    words = sum(r.mismatching_words for r in rows)
    errors = sum(p.error for p in res.passes)
    return f"| {title} | {target} | {len(rows)} | {model:,} | {rtl:,} | {differ} | {words} | {errors} | {wall:.1f} |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"])
    ap.add_argument("--models", default="build/models")
    ap.add_argument("--digits", type=int, default=3, help="test digits to run on the mid target")
    ap.add_argument(
        "--only", default="tiny,packed,acc,digits", help="which groups of programs to run (comma-separated)"
    )
    args = ap.parse_args(argv)
    groups = set(args.only.split(","))
    if not groups <= {"tiny", "packed", "acc", "digits"}:
        ap.error(f"--only takes tiny, packed, acc and digits, not {args.only!r}")
    print(
        "| program | target | passes | model cycles | RTL cycles | passes differing | words differing | "
        "error flags | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    tiny = load_target("tiny")
    with tempfile.TemporaryDirectory() as tmp:
        for net in sorted(NETS) if "tiny" in groups else []:
            for policy in ("nfc", "luaflow"):
                graph = build_net(net, tmp)
                t0 = time.perf_counter()
                res, rows, _ = cosim(graph, tiny, policy, _inputs(graph, 2), tmp, args.simulator, title=net)
                print(row(f"{net} ({policy})", "tiny", res, rows, time.perf_counter() - t0), flush=True)
        for name in [g for g in ("packed", "acc") if g in groups]:  # test targets, each with its network
            target = load_target(
                Path(__file__).resolve().parent.parent / "tests" / "targets" / f"{name}.toml"
            )
            for policy in ("nfc", "luaflow"):
                graph = build_net(name, tmp)
                t0 = time.perf_counter()
                res, rows, _ = cosim(
                    graph, target, policy, _inputs(graph, 2), tmp, args.simulator, title=name
                )
                print(row(f"{name} ({policy})", name, res, rows, time.perf_counter() - t0), flush=True)
        if "digits" not in groups:
            return 0
        models = Path(args.models)
        if not (models / "digits.onnx").exists():
            build_models(models, only=["digits"])
        data = np.load(models / "digits_test.npz")
        graph = import_onnx(models / "digits.onnx")
        mid = load_target("mid")
        for k in range(args.digits):
            x = data["X_test"][k : k + 1].astype(np.float32)
            t0 = time.perf_counter()
            res, rows, _ = cosim(graph, mid, "nfc", {graph.inputs[0].name: x}, tmp, args.simulator)
            label = int(data["y_test"][k])
            print(
                row(f"digits, test digit {k} (a {label})", "mid", res, rows, time.perf_counter() - t0),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
