"""`nfc rtl` end to end: the accelerator's Verilog, manifest and file list for a target, and bad input."""

import contextlib
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from nfc.arch import list_targets, load_target
from nfc.cli import main

FILES = ["files.f", "manifest.json", "nfc_tiny.v"]


@pytest.fixture(scope="module")
def tiny_rtl(tmp_path_factory) -> tuple[Path, str]:
    """``nfc rtl --target tiny`` run once: (output directory, stdout)."""
    out = tmp_path_factory.mktemp("rtl") / "tiny"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["rtl", "--target", "tiny", "-o", str(out)]) == 0
    return out, stdout.getvalue()


def test_rtl_writes_verilog_manifest_and_file_list(tiny_rtl):
    out, stdout = tiny_rtl
    assert sorted(p.name for p in out.iterdir()) == FILES  # no temporary files left behind
    assert stdout.startswith("nfc_tiny for target tiny: ")
    assert f"wrote {out / 'nfc_tiny.v'}, {out / 'files.f'}, {out / 'manifest.json'}" in stdout
    text = (out / "nfc_tiny.v").read_text()
    assert "(*" not in text and "module nfc_tiny(" in text
    man = json.loads((out / "manifest.json").read_text())
    assert man["format"] == "nfc-rtl-manifest" and man["target"] == "tiny" and man["top"] == "nfc_tiny"
    assert man["verilog"] == {
        "file": "nfc_tiny.v",
        "lines": text.count("\n"),
        "sha256": man["verilog"]["sha256"],
    }
    assert man["modules"][0]["name"] == "nfc_tiny"
    top_ports = {p["name"]: p for p in man["modules"][0]["ports"]}
    assert top_ports["clk"]["direction"] == top_ports["rst"]["direction"] == "input"
    assert f"{len(man['modules'])} modules" in stdout and f"{man['verilog']['lines']} lines" in stdout
    assert (out / "files.f").read_text() == "nfc_tiny.v\n"


def test_rtl_file_list_compiles_with_icarus(tiny_rtl, tmp_path):
    out, _ = tiny_rtl
    work = tmp_path / "sim"
    shutil.copytree(out, work)
    subprocess.run(
        ["iverilog", "-g2012", "-s", "nfc_tiny", "-o", "sim.vvp", "-f", "files.f"],
        cwd=work,
        check=True,
        capture_output=True,
        timeout=300,
    )


def test_rtl_is_deterministic_takes_a_target_file_and_prints_json(tiny_rtl, tmp_path, capsys):
    from importlib import resources

    out, _ = tiny_rtl
    target = tmp_path / "tiny-copy.toml"  # the same target, given by path
    target.write_text(resources.files("nfc").joinpath("targets", "tiny.toml").read_text())
    again = tmp_path / "again"
    assert main(["rtl", "-t", str(target), "-o", str(again), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    for name in FILES:
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    assert doc["files"] == {
        "verilog": str(again / "nfc_tiny.v"),
        "manifest": str(again / "manifest.json"),
        "filelist": str(again / "files.f"),
    }
    assert doc["manifest"] == json.loads((out / "manifest.json").read_text())


def test_rtl_errors_are_clear(tmp_path, capsys):
    assert main(["rtl", "--target", "nope", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err == (
        "nfc: error: unknown target 'nope': give one of virtex6, asic45, tiny, mid, zynq7020, ecp5, virtex6_packed or the path of a target .toml file\n"
    )
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["rtl", "-t", "tiny", "-o", str(blocker)]) == 2
    assert capsys.readouterr().err == f"nfc: error: -o {blocker}: exists and is not a directory\n"
    assert main(["rtl", "-t", "tiny", "-o", str(blocker / "sub")]) == 2
    assert capsys.readouterr().err == (
        f"nfc: error: -o {blocker / 'sub'}: cannot create the directory (Not a directory)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.slow
@pytest.mark.parametrize("target", [t for t in list_targets() if t != "tiny"])
def test_rtl_for_every_shipped_target(tmp_path, target):
    """The other shipped targets: the same three files, the top module named after the target and
    every I/O port's memory interface in the manifest (virtex6/asic45 take minutes: 10x10 convolvers)."""
    out = tmp_path / target
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["rtl", "--target", target, "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["files.f", "manifest.json", f"nfc_{target}.v"]
    man = json.loads((out / "manifest.json").read_text())
    assert man["target"] == target and man["top"] == f"nfc_{target}"
    names = {p["name"] for p in man["modules"][0]["ports"]}
    for p in range(load_target(target).io.ports):
        assert {f"mem__{p}__req_valid", f"mem__{p}__resp_data"} <= names
