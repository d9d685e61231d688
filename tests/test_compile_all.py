"""Every benchmark network compiles for every shipped target with both policies (issue: the
compiler succeeds on every benchmark model for virtex6, asic45 and tiny).

The small networks are covered, with the same property checks, by ``test_schedule.py`` in
``make test``; the big ones here take minutes each (ResNet-18 on ``tiny`` with the ``luaflow``
policy is about 730,000 passes) and run under ``make test-long``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_schedule import POLICIES, SMALL, TARGETS, check_program

from nfc.arch import load_target
from nfc.benchmarks import MODELS
from nfc.compiler.binary import program_bytes
from nfc.compiler.driver import compile_graph
from nfc.frontends.onnx import import_onnx

BIG = [name for name in MODELS if name not in SMALL]


@pytest.mark.slow
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", BIG)
def test_big_network_compiles(benchmark_dir: Path, name: str, target: str, policy: str):
    arch = load_target(target)
    result = compile_graph(import_onnx(benchmark_dir / f"{name}.onnx"), arch, policy)
    check_program(arch, result)
    assert program_bytes(result.program)[:4] == b"NFCP"
