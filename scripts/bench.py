"""`make bench`: compiled quality of every benchmark network, both policies side by side.

Writes ``bench/results.json`` and prints a table. Figures come from the compiler's analytical
estimate (the cycle model replaces it when it lands). Compile time is the median of several runs.

Usage: python scripts/bench.py [--models DIR] [--runs N] [--only name,name] [--out bench/results.json]
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
from nfc.compiler.driver import compile_graph
from nfc.compiler.report import build_report
from nfc.files import atomic_write
from nfc.frontends.onnx import import_onnx

#: Networks measured, in table order.
NETWORKS = [
    "digits",
    "lenet5",
    "face_detector",
    "neuflow_test",
    "scene_parsing",
    "alexnet_small",
    "vgg16_small",
]
#: Not compiled by the bench yet: hundreds of thousands of passes with today's mapping (see BENCHMARKS.md).
DEFERRED = {
    "resnet18": "~349k passes (1.4M terms of at most 4 per pass)",
    "mobilenet_v2": "~522k passes (2.1M terms, mostly 1x1)",
}
TARGETS = ["virtex6", "asic45"]
POLICIES = ["luaflow", "nfc"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="build/models")
    ap.add_argument("--runs", type=int, default=3, help="compile runs per case (median reported)")
    ap.add_argument("--only", default="", help="comma-separated network names")
    ap.add_argument("--out", default="bench/results.json")
    args = ap.parse_args(argv)
    models = Path(args.models)
    names = [n for n in NETWORKS if not args.only or n in args.only.split(",")]
    missing = [n for n in names if not (models / f"{n}.onnx").exists()]
    if missing:
        print(f"bench: building {', '.join(missing)} into {models}", file=sys.stderr)
        build_models(models, only=missing, progress=lambda m: print(f"bench: {m}", file=sys.stderr))
    rows = []
    for name in names:
        graph = import_onnx(models / f"{name}.onnx")
        for target in TARGETS:
            arch = load_target(target)
            for policy in POLICIES:
                times = []
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    result = compile_graph(graph, arch, policy)
                    times.append(time.perf_counter() - t0)
                tot = build_report(result, arch)["totals"]
                rows.append(
                    {
                        "network": name,
                        "target": target,
                        "policy": policy,
                        "passes": tot["passes"],
                        "cycles": tot["cycles"],
                        "frames_per_s": tot["frames_per_s"],
                        "useful_gops": tot["useful_gops"],
                        "mac_utilisation": tot["mac_utilisation"],
                        "dram_bytes": tot["dram_bytes"],
                        "config_cycles": tot["config_cycles"],
                        "compile_s_median": statistics.median(times),
                        "compile_runs": len(times),
                    }
                )
                r = rows[-1]
                print(
                    f"bench: {name:14s} {target:8s} {policy:8s} {r['frames_per_s']:10.2f} fps  "
                    f"compile {r['compile_s_median']:.2f} s",
                    file=sys.stderr,
                )
    for r in rows:
        if r["policy"] == "nfc":
            base = next(
                b
                for b in rows
                if b["network"] == r["network"] and b["target"] == r["target"] and b["policy"] == "luaflow"
            )
            r["speedup_vs_luaflow"] = r["frames_per_s"] / base["frames_per_s"]
            r["utilisation_ratio_vs_luaflow"] = r["mac_utilisation"] / base["mac_utilisation"]
    doc = {
        "source": "compiler analytical estimate",
        "cpus": os.cpu_count(),
        "rows": rows,
        "deferred": DEFERRED,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, json.dumps(doc, indent=2) + "\n")
    print(table(rows))
    for name, why in DEFERRED.items():
        print(f"not compiled by the bench: {name}: {why}")
    print(f"\nwrote {out}")
    return 0


def table(rows: list[dict]) -> str:
    head = "| network | target | policy | passes | cycles/frame | frames/s | useful GOPS | MAC util | DRAM MB/frame | config % | x luaflow | compile s |"
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        ratio = f"{r['speedup_vs_luaflow']:.2f}" if "speedup_vs_luaflow" in r else "1 (base)"
        lines.append(
            f"| {r['network']} | {r['target']} | {r['policy']} | {r['passes']} | {r['cycles']:,} | "
            f"{r['frames_per_s']:.2f} | {r['useful_gops']:.2f} | {100 * r['mac_utilisation']:.1f}% | "
            f"{r['dram_bytes'] / 1e6:.2f} | {100 * r['config_cycles'] / r['cycles']:.1f}% | {ratio} | "
            f"{r['compile_s_median']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
