"""`nfc rtl --synth`: Yosys resource estimates against the part, the fit check, nextpnr Fmax on ECP5
and the resource-based power beside the event-based one.

`make test` synthesizes the micro target (1x1 grid, 2x2 convolver) for the Virtex-6; the shipped
targets and the ECP5 place and route are under `make test-long` (tens of minutes each)."""

import contextlib
import dataclasses
import io
import json
from pathlib import Path

import pytest

from nfc.arch import load_target
from nfc.cli import main
from nfc.errors import NfcError
from nfc.fpga import PARTS, RESOURCES, resource_power
from nfc.rtl.synth import check_fit, count_resources, fit_problems, format_report

MICRO = Path(__file__).parent / "targets" / "micro.toml"


def _rtl(args: list[str]) -> tuple[dict, str]:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["rtl", *args, "--json"]) == 0
    doc = json.loads(stdout.getvalue())
    return doc, stdout.getvalue()


@pytest.fixture(scope="module")
def micro_synth(tmp_path_factory) -> tuple[Path, dict]:
    """``nfc rtl --target micro.toml --flow ise --synth --json``: (output directory, JSON document)."""
    out = tmp_path_factory.mktemp("synth") / "micro"
    doc, _ = _rtl(["-t", str(MICRO), "-o", str(out), "--flow", "ise", "--synth"])
    return out, doc


def test_micro_synthesizes_for_virtex6_and_fits(micro_synth):
    out, doc = micro_synth
    report = json.loads((out / "resources.json").read_text())
    assert doc["resources"] == report
    assert doc["files"]["resources"] == str(out / "resources.json")
    assert (report["target"], report["part"], report["family"], report["top"]) == (
        "micro",
        "xc6vlx240t-1ff1156",
        "virtex6",
        "nfc_micro",
    )
    res = report["resources"]
    assert list(res) == list(RESOURCES)
    # 2x2 convolver: 4 MACs of 16x16 bits, each one DSP48E1; the mapper's and ALU's multipliers too.
    arch = load_target(MICRO)
    assert res["dsp"]["used"] >= arch.macs + arch.mappers + arch.alus
    assert res["lut"]["used"] > 1000 and res["ff"]["used"] > 500
    for r in RESOURCES:
        assert res[r]["available"] == PARTS["xc6vlx240t-1ff1156"].capacity[r]
        assert res[r]["percent"] == round(100 * res[r]["used"] / res[r]["available"], 1)
        assert res[r]["source"] == "yosys"
    # The counts are the weighted sums of Yosys' own cell counts.
    stat = json.loads((out / "synth" / "stat.json").read_text())["design"]["num_cells_by_type"]
    modules = {m.lstrip("\\") for m in json.loads((out / "synth" / "stat.json").read_text())["modules"]}
    assert report["cells"] == {
        k.lstrip("\\"): v for k, v in sorted(stat.items()) if k[0] != "$" and k.lstrip("\\") not in modules
    }
    assert not set(report["cells"]) & modules and "DSP48E1" in report["cells"]
    assert count_resources(report["cells"], PARTS["xc6vlx240t-1ff1156"])["used"] == {
        r: res[r]["used"] for r in RESOURCES
    }
    assert report["fmax_mhz"] is None and report["meets_clock"] is None  # no open P&R for Virtex-6
    assert "Executing" in (out / "synth" / "yosys.log").read_text()
    assert (out / "nfc_micro_ise.tcl").is_file() and (out / "nfc_micro.ucf").is_file()


def test_power_cross_check_is_the_documented_formula(micro_synth):
    from nfc.sim.power import PowerModel, calibration_events

    _, doc = micro_synth
    report = doc["resources"]
    p = PARTS[report["part"]]
    used = {r: report["resources"][r]["used"] for r in RESOURCES}
    pw = report["power"]
    expected = resource_power(p, used, report["clock_mhz"], pw["duty"])
    dynamic = sum(used[r] * p.uw_per_mhz[r] for r in RESOURCES) * report["clock_mhz"] * 1e-6 * pw["duty"]
    assert expected["total_w"] == pytest.approx(p.static_w + dynamic)
    rb = pw["resource_based"]
    assert rb["total_w"] == pytest.approx(expected["total_w"], abs=1e-3)
    assert rb["dynamic_w"] == pytest.approx(dynamic, abs=1e-3) and rb["static_w"] == p.static_w
    # The event-based side is sim/power.py's model of the calibration workload at the same duty.
    watts = PowerModel(load_target(MICRO)).summary(*calibration_events(load_target(MICRO), pw["duty"]))
    eb = pw["event_based"]
    assert eb["total_w"] == pytest.approx(watts["watts"], abs=1e-3)
    on_chip = sum(
        watts["watts_by_component"][c] for c in ("mac", "mapper", "alu", "fifo", "router", "config")
    )
    assert eb["on_chip_dynamic_w"] == pytest.approx(on_chip, abs=1e-3)
    assert pw["on_chip_dynamic_ratio"] == pytest.approx(dynamic / on_chip, rel=1e-3)


def test_report_text(micro_synth):
    _, doc = micro_synth
    lines = format_report(doc["resources"])
    assert lines[0] == "nfc_micro on xc6vlx240t-1ff1156 (virtex6):"
    assert any(line.startswith("dsp       DSP48E1") for line in lines)
    assert "Fmax: not known (no open place and route for virtex6); target clock 100 MHz" in lines


def test_a_design_that_does_not_fit_is_refused_naming_the_resource(micro_synth):
    out, doc = micro_synth
    report = doc["resources"]
    p = PARTS[report["part"]]
    small = dataclasses.replace(p, capacity={**p.capacity, "dsp": 2, "lut": 1000})
    used = {r: report["resources"][r]["used"] for r in RESOURCES}
    problems = fit_problems(used, small)
    assert [line.split(" ")[0] for line in problems] == ["lut", "dsp"]
    assert problems[1] == f"dsp (DSP48E1): {used['dsp']} used of 2 available ({100 * used['dsp'] / 2:.0f}%)"
    with pytest.raises(NfcError, match=r"nfc_micro does not fit xc6vlx240t-1ff1156:\n  - lut \(LUT6\)"):
        check_fit(report, small, out / "resources.json")
    check_fit(report, p, out / "resources.json")  # the real part: no error


def test_cell_weights():
    p6, ecp5 = PARTS["xc6vlx240t-1ff1156"], PARTS["lfe5u-85f-6bg381c"]
    cells = {"LUT6": 10, "LUT2": 5, "RAM64M": 2, "SRLC32E": 3, "FDRE": 7, "FDSE": 1, "DSP48E1": 4}
    cells |= {"RAMB36E1": 2, "RAMB18E1": 3, "IBUF": 9, "OBUF": 4, "CARRY4": 8, "MUXF7": 2}
    got = count_resources(cells, p6)
    assert got["used"] == {"lut": 10 + 5 + 8 + 3, "ff": 8, "dsp": 4, "bram": 3.5} and got["io"] == 13
    got = count_resources({"LUT4": 100, "CCU2C": 10, "TRELLIS_FF": 50, "MULT18X18D": 6, "DP16KD": 2}, ecp5)
    assert got["used"] == {"lut": 120, "ff": 50, "dsp": 6, "bram": 2}


def test_resource_power_rejects_a_bad_duty():
    with pytest.raises(ValueError, match="duty must be between 0 and 1"):
        resource_power(PARTS["xc7z020clg400-1"], {}, 100.0, 1.5)


@pytest.mark.slow
def test_micro_places_and_routes_on_ecp5_with_a_real_fmax(tmp_path):
    out = tmp_path / "ecp5"
    doc, _ = _rtl(["-t", str(MICRO), "-o", str(out), "--part", "lfe5u-85f-6bg381c", "--synth"])
    report = doc["resources"]
    assert report["top"] == "nfc_micro_pins" and report["family"] == "ecp5"
    assert report["fmax_mhz"] > 10 and report["meets_clock"] == (report["fmax_mhz"] >= 100.0)
    assert all(report["resources"][r]["source"] == "nextpnr" for r in RESOURCES)
    assert report["resources"]["dsp"]["used"] >= 4 and report["harness_flip_flops"] > 0
    pnr = json.loads((out / "synth" / "nextpnr.json").read_text())
    assert min(c["achieved"] for c in pnr["fmax"].values()) == pytest.approx(report["fmax_mhz"], abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["virtex6", "zynq7020", "ecp5"])
def test_shipped_fpga_targets_fit_their_parts(tmp_path, target):
    """The resource-aware targets: each shipped FPGA target fits its part by the Yosys estimate (and,
    for ECP5, by nextpnr's placement, at its clock). virtex6: the ML605's LX240T."""
    arch = load_target(target)
    flow = {"virtex6": "ise", "zynq7020": "vivado", "ecp5": "fusesoc"}[target]
    doc, _ = _rtl(["-t", target, "-o", str(tmp_path / target), "--flow", flow, "--synth"])
    report = doc["resources"]
    assert report["part"] == arch.fpga.part
    for r in RESOURCES:
        assert 0 < report["resources"][r]["used"] <= report["resources"][r]["available"] or r == "bram"
    if target == "ecp5":
        assert report["fmax_mhz"] is not None and report["meets_clock"] is True


def test_simulate_reports_resource_power_beside_the_event_power(micro_synth, tmp_path, capsys):
    """`nfc simulate --resources`: the resource-based power of the run at its streaming duty."""
    from helpers_nets import build_net

    out, doc = micro_synth
    build_net("conv_pool_linear", tmp_path)
    model = str(tmp_path / "conv_pool_linear.onnx")
    args = ["simulate", model, "-t", str(MICRO), "-i", "random", "--no-compare", "--resources", str(out)]
    assert main([*args, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    rb, t = rep["power"]["resource_based"], rep["totals"]
    assert rb["duty"] == round(t["stream_cycles"] / t["cycles"], 4) and 0 < rb["duty"] < 1
    used = {r: doc["resources"]["resources"][r]["used"] for r in RESOURCES}
    expected = resource_power(PARTS["xc6vlx240t-1ff1156"], used, 100.0, t["stream_cycles"] / t["cycles"])
    assert rb["total_w"] == pytest.approx(expected["total_w"]) and rb["part"] == "xc6vlx240t-1ff1156"
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"resource-based power (xc6vlx240t-1ff1156, at duty {rb['duty']:.3f}): {rb['total_w']:.3g} W "
        f"(static {rb['static_w']:.3g} W + dynamic {rb['dynamic_w']:.3g} W) against "
        f"{rep['power']['watts']:.3g} W event-based"
    )
    # A report of another target is refused before simulating.
    assert (
        main(["simulate", model, "-t", "tiny", "-i", "random", "--no-compare", "--resources", str(out)]) == 2
    )
    assert "the report is for target 'micro', not 'tiny'" in capsys.readouterr().err
    assert main([*args[:-1], str(tmp_path / "none.json")]) == 2
    assert "no such file; run nfc rtl --synth -o DIR and give DIR" in capsys.readouterr().err
