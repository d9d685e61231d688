"""`nfc compile` and `nfc disasm` end to end, including bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nfc.cli import main


@pytest.fixture(scope="module")
def digits(benchmark_dir: Path) -> Path:
    return benchmark_dir / "digits.onnx"


def test_compile_writes_program_and_report(digits: Path, tmp_path: Path, capsys):
    out = tmp_path / "build"
    assert main(["compile", str(digits), "--target", "tiny", "-o", str(out), "--passes", "3"]) == 0
    text = capsys.readouterr()
    assert "digits on tiny (nfc policy" in text.out
    assert "frames/s" in text.out and "host ops: output" in text.out
    assert "nfc: scheduling (nfc policy)" in text.err
    for name in ("program.nfcp", "program.json", "program.lst", "report.txt", "report.json"):
        assert (out / name).is_file()
    assert not list(out.glob("*.tmp"))
    report = json.loads((out / "report.json").read_text())
    assert report["target"] == "tiny" and report["policy"] == "nfc"
    assert report["totals"]["passes"] == len(report["passes"]) > 0
    assert report["totals"]["host_layers"] == ["output"]
    assert any(lr["where"] == "host" for lr in report["layers"])
    listing = json.loads((out / "program.json").read_text())
    assert listing["target"] == "tiny"


def test_compile_is_deterministic(digits: Path, tmp_path: Path, capsys):
    for d in ("a", "b"):
        assert (
            main(
                [
                    "compile",
                    str(digits),
                    "-t",
                    "virtex6",
                    "-o",
                    str(tmp_path / d),
                    "-q",
                    "--policy",
                    "luaflow",
                ]
            )
            == 0
        )
    capsys.readouterr()
    for name in ("program.nfcp", "program.json", "program.lst", "report.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_compile_json_calibrate_and_disasm(digits: Path, tmp_path: Path, capsys):
    samples = tmp_path / "samples.npy"
    np.save(samples, np.random.default_rng(0).uniform(0, 1, (4, 1, 8, 8)).astype(np.float32))
    out = tmp_path / "cal"
    assert main(["compile", str(digits), "-o", str(out), "--json", "--calibrate", str(samples)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["calibrated"] is True
    assert report["totals"]["saturations"] is not None
    assert report["totals"]["mapper_max_error"] == 0.0  # ReLU is exact on the mapper
    assert main(["disasm", str(out)]) == 0
    listing = capsys.readouterr().out
    assert listing.startswith("nfc program (format version 1)")
    assert "CONV_W" in listing and "GO" in listing


def test_dump_and_verify_each(digits: Path, tmp_path: Path, capsys):
    assert (
        main(
            [
                "compile",
                str(digits),
                "-o",
                str(tmp_path / "d"),
                "-q",
                "--verify-each",
                "--dump-ir-after",
                "lower",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "--- after lower ---" in err and "lowered digits {" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--target", "nope"], "nfc: error: unknown target 'nope'"),
        (["--calibrate", "missing.npy"], "nfc: error: --calibrate missing.npy: no such file"),
        (
            ["--calibrate", "random:x"],
            "nfc: error: --calibrate random:N needs a whole number N, not 'random:x'",
        ),
    ],
)
def test_bad_options(digits: Path, tmp_path: Path, capsys, argv, message):
    assert main(["compile", str(digits), "-o", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and "Traceback" not in err
    assert not (tmp_path / "o" / "program.nfcp").exists()


def test_bad_model_and_output(tmp_path: Path, digits: Path, capsys):
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model")
    assert main(["compile", str(junk), "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith(f"nfc: error: {junk}: not an ONNX model")
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["compile", str(digits), "-o", str(afile), "-q"]) == 2
    assert capsys.readouterr().err == f"nfc: error: -o {afile}: exists and is not a directory\n"
    assert main(["disasm", str(tmp_path)]) == 2
    assert "nfc: error:" in capsys.readouterr().err


def test_listings_none_writes_only_the_binary_and_removes_stale_listings(
    digits: Path, tmp_path: Path, capsys
):
    out = tmp_path / "o"
    assert main(["compile", str(digits), "-o", str(out), "-q"]) == 0
    assert (out / "program.lst").exists()
    assert main(["compile", str(digits), "-o", str(out), "-q", "--listings", "none"]) == 0
    capsys.readouterr()
    assert (out / "program.nfcp").exists()
    assert not (out / "program.lst").exists() and not (out / "program.json").exists()
    assert main(["disasm", str(out)]) == 0
    assert capsys.readouterr().out.startswith("nfc program (format version 1)")
