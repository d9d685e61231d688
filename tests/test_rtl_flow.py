"""FPGA flow files (`nfc rtl --flow`): the pin wrapper, ISE and Vivado scripts, constraints and the
FuseSoC core, checked for Tcl syntax, for consistency with the target and the Verilog, and by
FuseSoC's own parser and edalize's project setup. No vendor tool runs here."""

import contextlib
import dataclasses
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nfc.arch import load_target
from nfc.cli import main
from nfc.fpga import PARTS, FpgaConfig
from nfc.rtl.flow import flow_files, pin_wrapper

MICRO = Path(__file__).parent / "targets" / "micro.toml"


@pytest.fixture(scope="module")
def micro_rtl(tmp_path_factory) -> Path:
    """``nfc rtl`` of the micro target with every flow's files: the output directory."""
    out = tmp_path_factory.mktemp("flow") / "micro"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["rtl", "-t", str(MICRO), "-o", str(out), "--flow", "ise"]) == 0
    arch = load_target(MICRO)
    man = json.loads((out / "manifest.json").read_text())
    for flow, part in (("vivado", "xc7z020clg400-1"), ("fusesoc", None)):
        a = dataclasses.replace(arch, fpga=FpgaConfig(part)) if part else arch
        for f in flow_files(flow, a, man):
            (out / f.name).write_text(f.text)
    return out


def _tcl():
    tkinter = pytest.importorskip("tkinter", reason="Python's Tcl interpreter (tkinter) checks the Tcl files")
    return tkinter.Tcl()


def _run_tcl(path: Path, commands: list[str]) -> list[list[str]]:
    """Source ``path`` in a Tcl interpreter where each of ``commands`` only records its arguments."""
    tcl = _tcl()
    calls: list[list[str]] = []

    def recorder(name):
        def record(*args):
            calls.append([name, *args])
            return "ports" if name == "get_ports" else ""

        return record

    for name in commands:
        tcl.createcommand(name, recorder(name))
    tcl.eval(f"source {{{path}}}")
    return calls


def _ports(verilog: str, module: str) -> dict[str, str]:
    body = re.search(rf"module {module} \((.*?)\);", verilog, re.S).group(1)
    return {m.group(2): m.group(1) for m in re.finditer(r"(input|output) wire (?:\[\d+:0\] )?(\w+)", body)}


def test_pin_wrapper_connects_every_core_port_once(micro_rtl):
    man = json.loads((micro_rtl / "manifest.json").read_text())
    text = (micro_rtl / "nfc_micro_pins.v").read_text()
    assert _ports(text, "nfc_micro_pins") == {
        "clk": "input",
        "rst": "input",
        "si": "input",
        "load": "input",
        "so": "output",
    }
    core = {p["name"]: p for p in man["modules"][0]["ports"]}
    connected = dict(re.findall(r"^\s+\.(\w+)\((.*?)\)", text, re.M))
    assert set(connected) == set(core)
    ins = [p for p in core.values() if p["direction"] == "input" and p["name"] not in ("clk", "rst")]
    outs = [p for p in core.values() if p["direction"] == "output"]
    # Each input a distinct slice of the shift register, each output a distinct slice of the capture.
    for group, reg in ((ins, "shift_in"), (outs, "outputs")):
        bits = set()
        for p in group:
            hi, lo = map(int, re.fullmatch(rf"{reg}\[(\d+):(\d+)\]", connected[p["name"]]).groups())
            assert hi - lo + 1 == p["width"], p["name"]
            assert not bits & set(range(lo, hi + 1))
            bits |= set(range(lo, hi + 1))
        assert bits == set(range(sum(p["width"] for p in group)))
    assert f"Adds {sum(p['width'] for p in ins)} + {sum(p['width'] for p in outs)} flip-flops" in text
    assert pin_wrapper(man) == text  # deterministic


def test_pin_wrapper_shifts_in_and_out_on_icarus(micro_rtl, tmp_path):
    """The wrapper in simulation: bits go in on si, the core's error and busy outputs (0 after reset)
    are captured on load and come out on so; an X or Z on so would fail."""
    bench = tmp_path / "bench.v"
    bench.write_text(
        """
module bench;
  reg clk = 0, rst = 1, si = 0, load = 0;
  wire so;
  integer i, ones = 0;
  nfc_micro_pins dut(.clk(clk), .rst(rst), .si(si), .load(load), .so(so));
  always #5 clk = ~clk;
  initial begin
    repeat (3) @(posedge clk);
    rst = 0;
    for (i = 0; i < 200; i = i + 1) begin si = i[0]; @(posedge clk); end
    #1 if (dut.shift_in[0] !== 1'b1 || dut.shift_in[1] !== 1'b0) $display("FAIL shift_in");
    load = 1; @(posedge clk); #1 load = 0;
    for (i = 0; i < 400; i = i + 1) begin
      if (so !== 1'b0 && so !== 1'b1) $display("FAIL so=%b", so);
      ones = ones + so; @(posedge clk); #1;
    end
    $display("DONE ones=%0d", ones);
    $finish;
  end
endmodule
"""
    )
    build = subprocess.run(
        ["iverilog", "-g2005", "-o", str(tmp_path / "b.vvp"), str(bench), "nfc_micro.v", "nfc_micro_pins.v"],
        cwd=micro_rtl,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    run = subprocess.run(["vvp", "-n", str(tmp_path / "b.vvp")], capture_output=True, text=True, timeout=300)
    assert "FAIL" not in run.stdout and "DONE ones=" in run.stdout, run.stdout


def test_ise_script_and_ucf_match_the_target(micro_rtl, tmp_path):
    p = PARTS["xc6vlx240t-1ff1156"]
    calls = _run_tcl(micro_rtl / "nfc_micro_ise.tcl", ["project", "xfile", "process"])
    settings = {c[2]: c[3] for c in calls if c[:2] == ["project", "set"]}
    assert settings["family"] == p.vendor_family == "Virtex6"
    assert (settings["device"], settings["package"], settings["speed"]) == ("xc6vlx240t", "ff1156", "-1")
    assert settings["top"] == "nfc_micro_pins"
    added = [c[2] for c in calls if c[:2] == ["xfile", "add"]]
    assert added == ["nfc_micro.v", "nfc_micro_pins.v", "nfc_micro.ucf"]
    assert all((micro_rtl / f).is_file() for f in added)
    assert ["process", "run", "Implement Design"] in calls and calls[-1] == ["project", "close"]
    assert calls[0] == ["project", "new", "nfc_micro.xise"]
    ucf = [
        line for line in (micro_rtl / "nfc_micro.ucf").read_text().splitlines() if not line.startswith("#")
    ]
    assert ucf == ['NET "clk" TNM_NET = "clk";', 'TIMESPEC "TS_clk" = PERIOD "clk" 10.000 ns HIGH 50 %;']
    verilog = (micro_rtl / "nfc_micro_pins.v").read_text()
    assert "input wire clk" in verilog  # the constrained net is a port of the top


def test_vivado_script_and_xdc_match_the_part(micro_rtl):
    commands = [
        "read_verilog",
        "read_xdc",
        "synth_design",
        "report_utilization",
        "opt_design",
        "place_design",
        "route_design",
        "report_timing_summary",
        "write_checkpoint",
    ]
    calls = _run_tcl(micro_rtl / "nfc_micro_vivado.tcl", commands)
    assert [c[0] for c in calls] == [
        "read_verilog",
        "read_xdc",
        "synth_design",
        "report_utilization",
        "opt_design",
        "place_design",
        "route_design",
        "report_utilization",
        "report_timing_summary",
        "write_checkpoint",
    ]
    sources = calls[0][1].split()
    assert [Path(s).name for s in sources] == ["nfc_micro.v", "nfc_micro_pins.v"]
    assert all(Path(s).is_file() for s in sources) and Path(calls[1][1]).is_file()
    assert calls[2][1:] == ["-top", "nfc_micro_pins", "-part", "xc7z020clg400-1"]
    clocks = _run_tcl(micro_rtl / "nfc_micro.xdc", ["create_clock", "get_ports"])
    assert clocks == [["get_ports", "clk"], ["create_clock", "-name", "clk", "-period", "10.000", "ports"]]
    shutil.rmtree(micro_rtl / "vivado")  # the script's report folder


def test_fusesoc_parses_the_core_and_edalize_sets_up_each_tool(micro_rtl, tmp_path):
    """FuseSoC reads the generated core; edalize writes the ISE, Vivado and Icarus projects from it."""
    man = json.loads((micro_rtl / "manifest.json").read_text())
    arch = load_target(MICRO)
    cases = [("sim", None, "icarus"), ("synth", "xc6vlx240t-1ff1156", "ise")]
    cases += [("synth", "xc7z020clg400-1", "vivado"), ("synth", "lfe5u-85f-6bg381c", "trellis")]
    for target, part, tool in cases:
        lib = tmp_path / f"{tool}-lib"
        shutil.copytree(micro_rtl, lib, ignore=shutil.ignore_patterns("*.core", "synth"))
        a = dataclasses.replace(arch, fpga=FpgaConfig(part)) if part else arch
        core = next(f for f in flow_files("fusesoc", a, man) if f.name.endswith(".core"))
        (lib / core.name).write_text(core.text)
        build = tmp_path / f"{tool}-build"
        cmd = [sys.executable, "-m", "fusesoc.main", "--cores-root", str(lib), "run", "--setup"]
        cmd += ["--build-root", str(build), "--target", target, "nfc:accelerator:micro"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        work = build / "nfc_accelerator_micro_0.1.0" / f"{target}-{tool}"
        text = "\n".join(f.read_text(errors="replace") for f in work.iterdir() if f.is_file())
        assert "nfc_micro" in text
        if tool == "ise":
            assert 'project set family "Virtex6"' in text and "project set device xc6vlx240t" in text
            assert "nfc_micro_pins" in text and "nfc_micro.ucf" in text
        if tool == "vivado":
            assert "xc7z020clg400-1" in text and "nfc_micro.xdc" in text
        if tool == "trellis":
            assert "--85k" in text and "CABGA381" in text
        if tool == "icarus":
            assert "-g2005" in text


def test_flow_errors_are_clear(tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["rtl", "-t", "tiny", "-o", str(out), "--flow", "ise"]) == 2
    assert capsys.readouterr().err == (
        "nfc: error: target tiny names no FPGA part ([fpga] part in its target file), so there is no ise "
        "project to write; use a target with one (virtex6 for ISE, zynq7020 for Vivado) or --flow fusesoc\n"
    )
    assert main(["rtl", "-t", "virtex6", "-o", str(out), "--flow", "vivado"]) == 2
    assert capsys.readouterr().err == (
        "nfc: error: target virtex6 is built for xc6vlx240t-1ff1156 (virtex6), which vivado does not "
        "support; use --flow ise\n"
    )
    assert main(["rtl", "-t", "tiny", "-o", str(out), "--synth"]) == 2
    assert "give one with --part" in capsys.readouterr().err
    assert main(["rtl", "-t", "tiny", "-o", str(out), "--part", "xc9000"]) == 2
    assert capsys.readouterr().err.startswith("nfc: error: unknown FPGA part 'xc9000'; nfc knows: xc6vlx240t")
    assert not out.exists()  # every check runs before anything is written
