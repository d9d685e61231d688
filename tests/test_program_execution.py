"""Compiled programs compute exactly what the lowered graph says.

``nfc.sim.functional.run_program`` executes a program from its configuration words and memory map
alone (read back from the binary file); its outputs must be bit-identical to the golden fixed-point
executor of the lowered graph, for every target and both policies. This checks the scheduler and
the encoder end to end: addresses, regions, strips, chains, partial sums, fused pooling, formats.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers_nets import NETS, build_net

from nfc.arch import load_target
from nfc.compiler.driver import compile_graph
from nfc.compiler.fixed import run_fixed
from nfc.compiler.program import Pass
from nfc.frontends.onnx import import_onnx
from nfc.sim.functional import run_program

TARGETS = ["tiny", "virtex6", "asic45"]
POLICIES = ["nfc", "luaflow"]


def _feeds(graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n.name: rng.uniform(-1, 1, n.attr("onnx_shape")).astype(np.float32) for n in graph.inputs}


def _check(graph, target: str, policy: str) -> None:
    arch = load_target(target)
    x = _feeds(graph)
    result = compile_graph(graph, arch, policy, samples=[x, _feeds(graph, 1)])
    gold = run_fixed(result.lowered, x, keep_memory=True)
    got = run_program(result.program, result.lowered, x)
    for name, words in gold.words.items():
        bad = int(np.count_nonzero(words != got.words[name]))
        assert bad == 0, f"{name}: {bad} of {words.size} words differ ({target}, {policy})"


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("net", sorted(NETS))
def test_small_networks(tmp_path: Path, net: str, target: str, policy: str):
    _check(build_net(net, tmp_path), target, policy)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", ["digits", "lenet5", "face_detector"])
def test_benchmark_networks(benchmark_dir: Path, name: str, target: str, policy: str):
    _check(import_onnx(benchmark_dir / f"{name}.onnx"), target, policy)


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", ["neuflow_test", "scene_parsing"])
def test_big_benchmark_networks(benchmark_dir: Path, name: str, target: str):
    _check(import_onnx(benchmark_dir / f"{name}.onnx"), target, "nfc")


def test_a_corrupted_weight_word_is_detected(tmp_path: Path):
    graph = build_net("conv_pool_linear", tmp_path)
    arch = load_target("virtex6")
    x = _feeds(graph)
    result = compile_graph(graph, arch, "nfc", samples=[x])
    gold = run_fixed(result.lowered, x)
    steps = list(result.program.steps)
    first = next(i for i, s in enumerate(steps) if isinstance(s, Pass) and s.convs)
    words = list(steps[first].config_words)
    w = next(i for i, v in enumerate(words) if v >> 56 == 0x33)  # the first CONV_W word
    words[w] ^= 0x0100  # change one weight
    steps[first] = replace(steps[first], config_words=tuple(words))
    bad = replace(result.program, steps=tuple(steps))
    got = run_program(bad, result.lowered, x)
    assert any(np.any(gold.words[k] != got.words[k]) for k in gold.words)
