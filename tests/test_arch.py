"""Targets: the shipped files load, derived figures are right, broken files get precise errors."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from importlib import resources

import pytest

from nfc.arch import ArchConfig, arch_from_dict, list_targets, load_target
from nfc.cli import main
from nfc.errors import TargetError


def _raw(name: str) -> dict:
    return tomllib.loads(resources.files("nfc").joinpath("targets", f"{name}.toml").read_text())


def test_shipped_targets_load():
    assert list_targets() == ("virtex6", "asic45", "tiny", "mid", "zynq7020", "ecp5", "virtex6_packed")
    for name in list_targets():
        cfg = load_target(name)
        assert isinstance(cfg, ArchConfig)
        assert cfg.name == name


def test_virtex6_is_the_neuflow_ml605_build():
    v = load_target("virtex6")
    assert v.convolvers == 4 and v.tile.convolver_size == 10 and v.macs == 400
    assert v.mappers == 4 and v.tile.mapper_segments == 8 and v.alus == 4
    assert v.tile.fifo_depth == 64
    assert (v.numerics.word_bits, v.numerics.frac_bits) == (16, 8)
    assert v.grid.clock_mhz == 200
    assert v.io.ports == 6 and (v.io.max_read_ports, v.io.max_write_ports) == (5, 5)
    assert v.total_gbytes_per_s == pytest.approx(2.72)
    assert v.peak_gops == pytest.approx(163.2)  # luaFlow's 2*(convs*100+mappers+ALUs)*f


def test_asic45_and_tiny():
    a = load_target("asic45")
    assert a.grid.clock_mhz == 400 and a.io.ports == 7
    assert not a.memory.shared and a.total_gbytes_per_s == pytest.approx(12.8)
    assert a.peak_gops == pytest.approx(326.4)
    t = load_target("tiny")
    assert (t.grid.rows, t.grid.cols, t.tile.convolver_size) == (2, 2, 3)


def test_fpga_sections_name_known_parts():
    """virtex6, zynq7020 and ecp5 are FPGA builds; their parts decide the vendor flow."""
    parts = {name: load_target(name).fpga for name in list_targets()}
    assert {n: (f.part, f.board) for n, f in parts.items() if f} == {
        "virtex6": ("xc6vlx240t-1ff1156", "ML605"),
        "virtex6_packed": ("xc6vlx240t-1ff1156", "ML605"),
        "zynq7020": ("xc7z020clg400-1", "PYNQ-Z1"),
        "ecp5": ("lfe5u-85f-6bg381c", "ULX3S"),
    }
    assert [parts[n].info.flows for n in ("virtex6", "zynq7020", "ecp5")] == [("ise",), ("vivado",), ()]
    assert load_target("virtex6").to_dict()["fpga"] == {"part": "xc6vlx240t-1ff1156", "board": "ML605"}
    assert "fpga" not in load_target("tiny").to_dict()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"board": "X"}, "missing key fpga.part (the FPGA part, one of: xc6vlx240t-1ff1156, "),
        ({"part": "xc9999"}, "fpga.part must be one of xc6vlx240t-1ff1156, xc7z020clg400-1, "),
        ({"part": 5}, "fpga.part must be a string, not 5"),
        (
            {"part": "xc7z020clg400-1", "pins": 3},
            "unknown key fpga.pins; the keys of [fpga] are: part, board",
        ),
        ({"part": "xc7z020clg400-1", "board": 1}, "fpga.board must be a string, not 1"),
    ],
)
def test_bad_fpga_sections(table, message):
    data = _raw("tiny")
    data["fpga"] = table
    with pytest.raises(TargetError) as err:
        arch_from_dict(data, "t.toml")
    assert str(err.value).startswith("t.toml: " + message)


def test_config_is_frozen():
    v = load_target("virtex6")
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.grid.rows = 3  # type: ignore[misc]


def test_user_file_by_path(tmp_path):
    text = resources.files("nfc").joinpath("targets", "tiny.toml").read_text()
    path = tmp_path / "mine.toml"
    path.write_text(
        text.replace('name = "tiny"', 'name = "mine"').replace("clock_mhz = 100.0", "clock_mhz = 150.0")
    )
    cfg = load_target(path)
    assert cfg.name == "mine" and cfg.grid.clock_mhz == 150


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("grid", "rows", 0, "bad.toml: grid.rows must be between 1 and 15 (tile rows), not 0"),
        ("tile", "convolver_size", 2.5, "bad.toml: tile.convolver_size must be an integer, not 2.5"),
        ("tile", "fifo_depth", "deep", "bad.toml: tile.fifo_depth must be a number, not 'deep'"),
        ("memory", "shared", 1, "bad.toml: memory.shared must be true or false, not 1"),
        (
            "numerics",
            "frac_bits",
            16,
            "bad.toml: numerics.frac_bits must be less than numerics.word_bits (16), not 16",
        ),
        ("io", "max_read_ports", 9, "bad.toml: io.max_read_ports must be at most io.ports (6), not 9"),
        (
            "memory",
            "read_gbytes_per_s",
            -1.0,
            "bad.toml: memory.read_gbytes_per_s must be between 0.01 and 1000 "
            "(sustained read bandwidth in GB/s (1e9 bytes/s)), not -1.0",
        ),
    ],
)
def test_bad_values_name_field_value_and_range(section, key, value, message):
    data = _raw("virtex6")
    data[section][key] = value
    with pytest.raises(TargetError) as err:
        arch_from_dict(data, "bad.toml")
    assert str(err.value) == message


def test_unknown_and_missing_keys():
    data = _raw("tiny")
    data["tile"]["convolver"] = 3
    with pytest.raises(
        TargetError, match=r"unknown key tile\.convolver; the keys of \[tile\] are: convolver_size"
    ):
        arch_from_dict(data, "bad.toml")
    data = _raw("tiny")
    del data["memory"]["latency_cycles"]
    with pytest.raises(TargetError) as err:
        arch_from_dict(data, "bad.toml")
    assert (
        str(err.value)
        == "bad.toml: missing key memory.latency_cycles (grid cycles from a read request to its first word)"
    )
    data = _raw("tiny")
    del data["io"]
    with pytest.raises(TargetError, match=r"^bad\.toml: missing section \[io\]$"):
        arch_from_dict(data, "bad.toml")


def test_pooling_units_are_optional():
    """tile.poolers may be left out (0: pooling runs on a convolver); 0 or 1 per tile."""
    data = _raw("virtex6")
    assert arch_from_dict(data, "v.toml").tile.poolers == 1
    del data["tile"]["poolers"]
    assert arch_from_dict(data, "v.toml").tile.poolers == 0
    data["tile"]["poolers"] = 2
    with pytest.raises(
        TargetError, match=r"^bad\.toml: tile\.poolers must be between 0 and 1 \(pooling units"
    ):
        arch_from_dict(data, "bad.toml")


def test_kernel_packing_is_optional():
    """tile.lanes may be left out (1: NeuFlow's convolver); 2 packs two kernels of packed_size."""
    data = _raw("virtex6")
    assert "lanes" not in data["tile"] and arch_from_dict(data, "v.toml").tile.lanes == 1
    assert arch_from_dict(data, "v.toml").packed_size == 10
    data["tile"]["lanes"] = 2
    assert arch_from_dict(data, "v.toml").packed_size == 7  # 2 x 49 taps <= 100 MACs
    assert load_target("asic45").packed_size == 7 and load_target("virtex6_packed").tile.lanes == 2
    data["tile"]["lanes"] = 3
    with pytest.raises(TargetError, match=r"^bad\.toml: tile\.lanes must be between 1 and 2"):
        arch_from_dict(data, "bad.toml")
    data["tile"].update(lanes=2, convolver_size=1, line_buffer_words=4)
    with pytest.raises(TargetError, match=r"packs 2 kernels \(tile\.lanes\) only if"):
        arch_from_dict(data, "bad.toml")


def test_cli_targets_table(capsys):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == [
        "target",
        "grid",
        "convolvers",
        "MACs",
        "MHz",
        "peak",
        "GOPS",
        "memory",
        "GB/s",
        "ports",
        "pooling",
        "units",
        "packing",
        "acc",
        "words",
        "word",
        "FPGA",
        "part",
    ]
    assert any(line.startswith("virtex6") and "163.2" in line and "2.72 shared" in line for line in lines)
    assert any(line.startswith("ecp5") and line.endswith("lfe5u-85f-6bg381c") for line in lines)
    assert any(line.startswith("asic45") and "326.4" in line and "6.4 r + 6.4 w" in line for line in lines)
    assert any(line.startswith("tiny") for line in lines)
    # kernel packing: two kernels of up to 7x7 on a 10x10 convolver; none on NeuFlow's own build
    assert any(line.startswith("asic45 ") and " 2 x 7x7 " in line for line in lines)
    assert any(line.startswith("virtex6 ") and " 2 x 7x7 " not in line for line in lines)
    # accumulation buffers: 4096 words a lane on virtex6_packed only
    assert [line.split()[0] for line in lines if " 4096 " in line] == ["virtex6_packed"]


def test_cli_targets_json(capsys):
    assert main(["targets", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in doc] == [
        "virtex6",
        "asic45",
        "tiny",
        "mid",
        "zynq7020",
        "ecp5",
        "virtex6_packed",
    ]
    assert doc[0]["derived"]["peak_gops"] == 163.2
    assert doc[0]["memory"]["read_gbytes_per_s"] == 2.72


def test_cli_broken_target_file(tmp_path, capsys):
    bad = tmp_path / "broken.toml"
    bad.write_text(
        resources.files("nfc").joinpath("targets", "tiny.toml").read_text().replace("rows = 2", "rows = 99")
    )
    assert main(["targets", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == "nfc: error: broken.toml: grid.rows must be between 1 and 15 (tile rows), not 99\n"
    syntax = tmp_path / "syntax.toml"
    syntax.write_text("name = \n")
    assert main(["targets", str(syntax)]) == 2
    assert capsys.readouterr().err.startswith("nfc: error: syntax.toml: not valid TOML: ")
    assert main(["targets", "no-such-target"]) == 2
    assert capsys.readouterr().err == (
        "nfc: error: unknown target 'no-such-target': give one of virtex6, asic45, tiny, mid, zynq7020, ecp5, virtex6_packed or the path of a "
        "target .toml file\n"
    )


def test_accumulation_buffers_are_optional():
    """tile.acc_words may be left out (0: no buffers, NeuFlow's partial sums go through memory)."""
    data = _raw("virtex6")
    assert "acc_words" not in data["tile"] and arch_from_dict(data, "v.toml").tile.acc_words == 0
    assert load_target("virtex6_packed").tile.acc_words == 4096
    data["tile"]["acc_words"] = 65536
    with pytest.raises(TargetError, match=r"^bad\.toml: tile\.acc_words must be between 0 and 65535"):
        arch_from_dict(data, "bad.toml")
