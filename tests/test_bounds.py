"""Lower bounds on cycles (compiler/bounds.py): hand arithmetic on scene parsing, and no schedule
beats them."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from nfc.arch import load_target
from nfc.compiler.bounds import cycle_bounds
from nfc.compiler.driver import compile_graph
from nfc.frontends.onnx import import_onnx
from nfc.sim.cycle import time_program


def _without_pool_units(tmp_path: Path) -> Path:
    text = (resources.files("nfc") / "targets" / "virtex6.toml").read_text()
    path = tmp_path / "virtex6_no_pool_units.toml"
    path.write_text(text.replace("poolers = 1", "poolers = 0"))
    return path


@pytest.mark.parametrize("pool_units", [True, False])
def test_scene_parsing_bounds_by_hand(benchmark_dir: Path, tmp_path: Path, pool_units: bool) -> None:
    arch = load_target("virtex6" if pool_units else _without_pool_units(tmp_path))
    low = compile_graph(import_onnx(benchmark_dir / "scene_parsing.onnx"), arch, "nfc").lowered
    b = cycle_bounds(low, arch)
    # terms x input-region words, over 4 convolvers: stage 1 (16 maps of fan-in 1 on 320x240),
    # stage 2 (64 x 8 terms on 157x117), stage 3 (256 x 32 terms on 75x55); without pooling units
    # also the 2x2 max poolings on convolvers (16 maps, region 314x234; 64 maps, region 150x110);
    # with them, stage 2 computes only the 150x110 outputs its pooling uses (region 156x116)
    if pool_units:
        streamed = 16 * 76800 + 512 * 156 * 116 + 8192 * 75 * 55
        filled = 16 * 314 * 234 + 512 * 150 * 110 + 8192 * 69 * 49
    else:
        streamed = 16 * 76800 + 512 * 157 * 117 + 8192 * 75 * 55 + 16 * 314 * 234 + 64 * 150 * 110
        filled = 16 * 314 * 234 + 512 * 151 * 111 + 8192 * 69 * 49 + 16 * 157 * 117 + 64 * 75 * 55
    assert b.streaming == streamed / 4
    # one window position per term per cycle: the output positions instead
    assert b.kernel_fill == filled / 4
    assert b.mac_peak == pytest.approx(1.835e9 / 400, rel=1e-3)  # the network's MACs, all of them
    # bandwidth: the frame, the pooled maps and the output once each way (the un-pooled maps stay on
    # the grid), 2.72 GB/s at 200 MHz
    words = 3 * 76800 + 2 * 16 * 157 * 117 + 2 * 64 * 75 * 55 + 256 * 69 * 49
    assert b.bandwidth == pytest.approx(words / (2.72e9 / 2 / 200e6))
    assert b.bound == b.streaming
    assert arch.clock_hz / b.bound == pytest.approx(18.064 if pool_units else 17.146, abs=1e-3)


@pytest.mark.parametrize("target", ["virtex6", "asic45", "tiny"])
@pytest.mark.parametrize("policy", ["nfc", "luaflow"])
@pytest.mark.parametrize("name", ["lenet5", "face_detector", "neuflow_test"])
def test_no_schedule_beats_the_bound(benchmark_dir: Path, name: str, target: str, policy: str) -> None:
    arch = load_target(target)
    result = compile_graph(import_onnx(benchmark_dir / f"{name}.onnx"), arch, policy)
    cycles = sum(t.cycles for t in time_program(result.program, arch))
    b = cycle_bounds(result.lowered, arch)
    assert b.mac_peak <= b.kernel_fill <= b.streaming <= b.bound <= cycles
    assert b.bandwidth <= cycles
