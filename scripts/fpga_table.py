"""Print BENCHMARKS.md's FPGA resource table from the resources.json of `nfc rtl --synth` runs.

    nfc rtl --target virtex6 -o build/fpga/virtex6 --flow ise --synth
    nfc rtl --target ecp5 -o build/fpga/ecp5 --flow fusesoc --synth
    python scripts/fpga_table.py build/fpga/virtex6 build/fpga/ecp5

Each argument is an output directory of `nfc rtl --synth` (or its resources.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESOURCES = ("lut", "ff", "dsp", "bram")


def _cell(v: dict) -> str:
    used = v["used"]
    text = f"{used:,.1f}" if isinstance(used, float) and not float(used).is_integer() else f"{int(used):,}"
    return f"{text} / {v['available']:,} ({v['percent']:.1f}%)"


def rows(reports: list[dict]) -> list[str]:
    head = "| target | part | top | LUT | FF | DSP | BRAM | clock MHz | Fmax MHz | synth s | P&R s |"
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in reports:
        res = r["resources"]
        fmax = (
            "not known"
            if r["fmax_mhz"] is None
            else f"{r['fmax_mhz']:.2f}" + ("" if r["meets_clock"] else " (misses the clock)")
        )
        pnr = r.get("place_and_route_seconds")
        out.append(
            f"| {r['target']} | {r['part']} | {r['top']} | "
            + " | ".join(_cell(res[k]) for k in RESOURCES)
            + f" | {r['clock_mhz']:g} | {fmax} | {r['synthesis_seconds']:.0f} | {'-' if pnr is None else f'{pnr:.0f}'} |"
        )
    return out


def power_rows(reports: list[dict]) -> list[str]:
    out = [
        "| target | duty | resource-based W (static + dynamic) | event-based W (static, DRAM, on-chip dynamic) "
        "| on-chip dynamic, resource / event |",
        "|---|---|---|---|---|",
    ]
    for r in reports:
        pw = r["power"]
        rb, eb = pw["resource_based"], pw["event_based"]
        out.append(
            f"| {r['target']} | {pw['duty']:.3f} | {rb['total_w']:.2f} ({rb['static_w']:.2f} + {rb['dynamic_w']:.2f}) | "
            f"{eb['total_w']:.2f} ({eb['static_w']:.2f}, {eb['dram_w']:.2f}, {eb['on_chip_dynamic_w']:.2f}) | "
            f"{pw['on_chip_dynamic_ratio']:.2f} |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="output directories of nfc rtl --synth, or their resources.json")
    args = ap.parse_args(argv)
    reports = []
    for run in args.runs:
        path = Path(run)
        path = path / "resources.json" if path.is_dir() else path
        if not path.is_file():
            print(f"fpga_table: {path}: no such file; run nfc rtl --synth -o DIR first", file=sys.stderr)
            return 2
        reports.append(json.loads(path.read_text()))
    print("\n".join(rows(reports)))
    print()
    print("\n".join(power_rows(reports)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
