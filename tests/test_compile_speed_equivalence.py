"""The compiler's fast paths against the plain definitions they stand in for.

The scheduler assembles each pass's configuration words from memoised pieces (shared regions and
streams and their words, a layer's weight words computed at once with numpy, cached unit words),
makes most conv passes in bulk from a template pass of their shape (``LazyPass``: words from a
numpy array, units built on demand), and the program writer encodes passes through a fast path;
all must give exactly what ``encode_pass``, the pass builder and the checked writer give.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers_programs import map_info

from nfc.arch import load_target
from nfc.compiler import binary, schedule
from nfc.compiler.binary import program_bytes
from nfc.compiler.driver import compile_graph
from nfc.compiler.encode import encode_pass, weight_bodies, weight_head, weight_words
from nfc.compiler.program import LazyPass
from nfc.frontends.onnx import import_onnx

NETS = ["digits", "lenet5", "face_detector", "neuflow_test"]


@pytest.mark.parametrize("policy", ["nfc", "luaflow"])
@pytest.mark.parametrize("target", ["virtex6", "tiny", "asic45"])
def test_pass_words_equal_encode_pass(benchmark_dir: Path, monkeypatch, target: str, policy: str):
    arch = load_target(target)
    for net in NETS:
        result = compile_graph(import_onnx(benchmark_dir / f"{net}.onnx"), arch, policy)
        program, low = result.program, result.lowered
        addresses: dict[tuple[str, int], int] = {}
        shapes: dict[str, tuple[int, int]] = {}
        for p in program.passes:
            for s in p.streams:
                base, (h, w) = map_info(program, low, s.region.buffer)
                addresses[(s.region.buffer, s.region.channel)] = base + s.region.channel * h * w
                shapes[s.region.buffer] = (h, w)
            assert p.config_words == encode_pass(p, addresses, shapes), f"{net}: pass {p.index}"
        # the fast pass writer against the checked writer alone
        fast = program_bytes(program)
        monkeypatch.setattr(binary._FastPasses, "bytes", lambda self, step: None)
        assert program_bytes(program) == fast, net
        monkeypatch.undo()


@pytest.mark.parametrize("n", [1, 2, 9, 25, 100])
def test_weight_bodies_match_weight_words(n: int):
    rng = np.random.default_rng(n)
    kernels = rng.integers(-(1 << 15), 1 << 15, size=(3, 4, n), dtype=np.int64)
    kernels[0, 0, 0] = -(1 << 15)
    kernels[0, 0, -1] = (1 << 15) - 1
    bodies = weight_bodies(kernels).tolist()
    for tile in (0, 3, 255):
        for o in range(3):
            for t in range(4):
                kernel = tuple(kernels[o, t].tolist())
                assert [weight_head(tile) | b for b in bodies[o][t]] == weight_words(tile, kernel)


def test_weight_bodies_refuse_weights_that_do_not_fit():
    assert weight_bodies(np.array([[[1 << 15, 0]]])) is None
    assert weight_bodies(np.array([[[-(1 << 15) - 1]]])) is None
    with pytest.raises(ValueError, match="16-bit"):
        weight_words(0, (1 << 15,))


def _built_one_by_one(self, steps: list, group: list) -> None:
    """``_ConvLayerPasses.add`` without templates: every conv pass built by ``_conv_pass``."""
    steps += schedule._split_build(self.ctx, len(steps), schedule._conv_pass, group, self.layer)


@pytest.mark.parametrize("policy", ["nfc", "luaflow"])
@pytest.mark.parametrize("target", ["virtex6", "tiny", "asic45"])
def test_template_passes_equal_built_passes(benchmark_dir: Path, monkeypatch, target: str, policy: str):
    arch = load_target(target)
    lazy = 0
    for net in NETS:
        graph = import_onnx(benchmark_dir / f"{net}.onnx")
        fast = compile_graph(graph, arch, policy).program
        fast_bytes = program_bytes(fast)  # before any field of a lazy pass is read: from its words array
        with monkeypatch.context() as m:
            m.setattr(schedule._ConvLayerPasses, "add", _built_one_by_one)
            plain = compile_graph(graph, arch, policy).program
        assert not any(isinstance(p, LazyPass) for p in plain.passes)
        lazy += sum(isinstance(p, LazyPass) for p in fast.passes)
        assert fast_bytes == program_bytes(plain), net
        # every field, the units built on demand and the words tuple made from the array
        assert fast == plain, net
        assert program_bytes(fast) == fast_bytes, net
    assert lazy > 0
