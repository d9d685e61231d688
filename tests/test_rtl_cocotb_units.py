"""The emitted Verilog of the mapper, the ALU and the convolver, in cocotb on Icarus and Verilator.

Each unit of the tiny target is emitted with :func:`nfc.rtl.emit.emit_verilog` and driven by
``cocotb_benches/units.py``: configuration ports held constant (an ``ArrayLayout`` port is one wide
Verilog port, element 0 in the low bits), input streams with random valid gaps (or offered on
scheduled cycles), random ``ready`` on the output, and the protocol checker of
``cocotb_benches/streams.py`` on every stream. The traces come back here and are held to:

- the mapper: ``nfc.numerics.map_words`` on thousands of words (extremes and the words around each
  threshold included), compiler-fitted and random configurations; with ``ready`` high every word
  leaves exactly ``MAP_LATENCY`` (2) cycles after it was taken;
- the ALU: every op, ``nfc.numerics.alu_words`` for the compiler's shifts and the naive
  ``ref_alu`` for shifts at the ends of their fields; independent gaps on ``a`` and ``b``;
  without back-pressure output ``n`` leaves ``ALU_LATENCY`` (1) cycle after the later of its
  operands; ``error`` exactly when an input had to wait;
- the convolver: a 3x3 multiply-accumulate with stride 1 and partial sums, and a 2x2 max pooling
  with stride 2, against the golden model of ``test_rtl_convolver.py``; on a schedule within the
  timing contract every output on cycle ``max(data word j(k), partial sum k) + CONV_LATENCY``;
  under random back-pressure the same words; ``error`` exactly when an input had to wait.

Builds are cached under ``build/cocotb`` keyed by the Verilog's hash; each simulator runs each unit
once (all its scenarios in a row, each from reset).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
from pathlib import Path

import numpy as np
import pytest
from cocotb_support import SIMULATORS, assert_passed, cache_dir, run_cocotb
from test_rtl_convolver import Case, golden
from test_rtl_convolver import random_words as conv_words
from test_rtl_convolver import schedule as conv_schedule
from test_rtl_mapper_alu import (
    AluConfig,
    MapConfig,
    fitted_map_config,
    random_map_config,
    random_words,
    ref_alu,
)

from nfc.arch import load_target
from nfc.compiler.encode import ALU_OPS
from nfc.compiler.timing import ALU_LATENCY, CONV_LATENCY, MAP_LATENCY
from nfc.files import atomic_write
from nfc.numerics import alu_shifts, alu_words, map_words
from nfc.rtl.alu import Alu
from nfc.rtl.convolver import Convolver, tap_order
from nfc.rtl.emit import emit_verilog
from nfc.rtl.mapper import Mapper

BENCH = "cocotb_benches.units"
ARCH = load_target("tiny")
BITS = ARCH.numerics.word_bits
LO, HI = -(1 << (BITS - 1)), (1 << (BITS - 1)) - 1
K = ARCH.tile.convolver_size
TAIL = 12  # cycles after the last expected output in which nothing more may come out


@functools.cache
def _verilog(unit: type, top: str) -> Path:
    """The Verilog of ``unit(ARCH)`` as top module ``top``, in a folder named by its hash."""
    text = emit_verilog(unit(ARCH), top)
    path = cache_dir(text, "src", top) / f"{top}.v"
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text)
    return path


def _stream(stream: str, words: list[int], p_valid: float = 1.0, seed: int = 0, at=None) -> dict:
    return {"stream": stream, "words": words, "p_valid": p_valid, "seed": seed, "at": at}


def _scenario(config: dict, inputs: list[dict], count: int, p_ready: float, seed: int, clear: bool) -> dict:
    n = max(len(s["words"]) for s in inputs)
    return {
        "config": config,
        "clear": clear,
        "inputs": inputs,
        "output": {"count": count, "p_ready": p_ready, "seed": seed},
        "tail": TAIL,
        "max_cycles": 40 * n + 200,
    }


def _simulate(path: Path, top: str, simulator: str, scenarios: list[dict], work: Path) -> list[dict]:
    """Run every scenario on one build; the traces (after checking that the cocotb test passed)."""
    spec, out = work / "spec.json", work / "traces.json"
    spec.write_text(json.dumps({"scenarios": scenarios, "out": str(out)}))
    text = path.read_text()
    outcomes = run_cocotb(
        path, top, BENCH, simulator, cache_dir(text, simulator, top), {"NFC_UNITS_SPEC": str(spec)}
    )
    assert_passed(outcomes, {"unit_scenarios"})
    return json.loads(out.read_text())["scenarios"]


def _words(trace: list) -> list[int]:
    return [w for _, w in trace]


def _cycles(trace: list) -> list[int]:
    return [c for c, _ in trace]


# -- Mapper ---------------------------------------------------------------------------------------------
S = ARCH.tile.mapper_segments


def mapper_cases() -> list[tuple[MapConfig, list[int], float, float]]:
    """(configuration, words, p_valid, p_ready): back-pressure on both sides over several
    configurations, then the latency cases (``ready`` high; with and without gaps)."""
    rng = random.Random(2024)
    configs = [
        fitted_map_config("tanh", S, BITS),
        fitted_map_config("sigmoid", S, BITS),
        *(random_map_config(rng, S, BITS, wild=False) for _ in range(3)),
    ]
    # small slopes and shifts: outputs mostly in range and many exact halves (round half up shows)
    configs.append(
        dataclasses.replace(
            random_map_config(rng, S, BITS, wild=False),
            slopes=[rng.randint(-5, 5) for _ in range(S)],
            offsets=[rng.randint(-1000, 1000) for _ in range(S)],
            shift=rng.randint(2, 4),
        )
    )
    cases = []
    for k, cfg in enumerate(configs):
        edges = tuple(t + d for t in cfg.thresholds for d in (-1, 0, 1) if LO <= t + d <= HI)
        cases.append((cfg, random_words(rng, 700, BITS, edges), 0.6 + 0.1 * (k % 3), 0.5))
    cases.append((configs[0], random_words(rng, 300, BITS), 1.0, 1.0))
    cases.append((configs[-1], random_words(rng, 300, BITS), 0.6, 1.0))
    return cases


def map_golden(cfg: MapConfig, words: list[int]) -> list[int]:
    n = cfg.segments
    out, _ = map_words(np.array(words), cfg.thresholds[1:n], cfg.slopes[:n], cfg.offsets[:n], cfg.shift, BITS)
    return out.tolist()


@pytest.fixture(scope="module", params=SIMULATORS)
def mapper_run(request, tmp_path_factory):
    """(simulator, cases, traces) of one simulation of every mapper case."""
    simulator = request.param
    cases = mapper_cases()
    scenarios = []
    for k, (cfg, words, p_valid, p_ready) in enumerate(cases):
        config = {
            "segments": cfg.segments,
            "thresholds": cfg.thresholds,
            "offsets": cfg.offsets,
            "slopes": cfg.slopes,
            "shift": cfg.shift,
        }
        scenarios.append(
            _scenario(
                config, [_stream("i", words, p_valid, 10 + k)], len(words), p_ready, 20 + k, clear=False
            )
        )
    path = _verilog(Mapper, "unit_mapper")
    traces = _simulate(
        path, "unit_mapper", simulator, scenarios, tmp_path_factory.mktemp(f"mapper-{simulator}")
    )
    return simulator, cases, traces


def test_mapper_words_match_numerics(mapper_run):
    simulator, cases, traces = mapper_run
    assert sum(len(words) for _, words, _, _ in cases) >= 4000
    for k, ((cfg, words, _, _), tr) in enumerate(zip(cases, traces, strict=True)):
        assert _words(tr["sent"]["i"]) == words, f"{simulator}, case {k}"
        assert _words(tr["received"]) == map_golden(cfg, words), f"{simulator}, case {k}: {cfg}"


def test_mapper_back_pressure_happened(mapper_run):
    _, cases, traces = mapper_run
    for (_, words, _, p_ready), tr in zip(cases, traces, strict=True):
        if p_ready < 1:
            assert tr["stalls"]["i"] > 50 and tr["stalls"]["o"] > 100, tr["stalls"]
            # at most MAP_LATENCY words inside: word n leaves no later than word n + 2 is taken
            ins, outs = _cycles(tr["sent"]["i"]), _cycles(tr["received"])
            assert all(outs[j] <= ins[j + MAP_LATENCY] for j in range(len(words) - MAP_LATENCY))


def test_mapper_exact_latency(mapper_run):
    _, cases, traces = mapper_run
    latency_cases = [(c, tr) for c, tr in zip(cases, traces, strict=True) if c[3] == 1.0]
    assert len(latency_cases) == 2
    for (_, words, p_valid, _), tr in latency_cases:
        ins = _cycles(tr["sent"]["i"])
        if p_valid == 1.0:
            assert ins == list(range(len(words)))  # one word a cycle, none refused
        assert tr["stalls"] == {"i": 0, "o": 0}
        assert _cycles(tr["received"]) == [t + MAP_LATENCY for t in ins]
        assert MAP_LATENCY == 2


# -- ALU ------------------------------------------------------------------------------------------------
def alu_cases() -> list[dict]:
    """Per op: two configurations from ``alu_shifts`` under independent gaps on ``a`` and ``b`` and
    random ``ready``; one with shifts at the ends of their fields (some beyond numpy's int64: held to the
    naive ``ref_alu``); two latency runs with ``ready`` high (no gaps; the same gaps on both)."""
    rng = random.Random(77)
    cases = []

    def compiler_cfg(op: str) -> AluConfig:
        return AluConfig(op, *alu_shifts(op, *(rng.randint(0, BITS - 1) for _ in range(3))))

    for op in ALU_OPS:
        for _ in range(2):
            cases.append(
                dict(cfg=compiler_cfg(op), numerics=True, n=300, p=(0.75, 0.55), seeds=None, p_ready=0.5)
            )
        edge = AluConfig(
            op,
            rng.choice([-BITS, -BITS + 1, 1, BITS + 1, 100]),
            rng.choice([-BITS, -3, 2, BITS - 1, 127]),
            rng.choice([-128, -BITS - 1, -1, 2 * BITS + 1, 127]),
        )
        cases.append(dict(cfg=edge, numerics=False, n=200, p=(0.5, 0.8), seeds=None, p_ready=0.6))
        cfg = compiler_cfg(op)
        cases.append(dict(cfg=cfg, numerics=True, n=100, p=(1.0, 1.0), seeds=None, p_ready=1.0))
        seed = rng.randrange(1 << 30)
        cases.append(dict(cfg=cfg, numerics=True, n=100, p=(0.6, 0.6), seeds=(seed, seed), p_ready=1.0))
    for c in cases:
        c["seeds"] = c["seeds"] or (rng.randrange(1 << 30), rng.randrange(1 << 30))
        c["ready_seed"] = rng.randrange(1 << 30)
        c["a"], c["b"] = random_words(rng, c["n"], BITS), random_words(rng, c["n"], BITS)
    return cases


def alu_golden(c: dict) -> list[int]:
    cfg = c["cfg"]
    if c["numerics"]:
        out, _ = alu_words(
            cfg.op, np.array(c["a"]), np.array(c["b"]), cfg.shift_a, cfg.shift_b, cfg.shift_out, BITS
        )
        return out.tolist()
    return [ref_alu(cfg, x, y, BITS) for x, y in zip(c["a"], c["b"], strict=True)]


@pytest.fixture(scope="module", params=SIMULATORS)
def alu_run(request, tmp_path_factory):
    """(simulator, cases, traces) of one simulation of every ALU case."""
    simulator = request.param
    cases = alu_cases()
    scenarios = []
    for c in cases:
        cfg = c["cfg"]
        config = {
            "op": ALU_OPS[cfg.op],
            "shift_a": cfg.shift_a,
            "shift_b": cfg.shift_b,
            "shift_out": cfg.shift_out,
        }
        inputs = [_stream(s, c[s], p, seed) for s, p, seed in zip("ab", c["p"], c["seeds"], strict=True)]
        scenarios.append(_scenario(config, inputs, c["n"], c["p_ready"], c["ready_seed"], clear=True))
    path = _verilog(Alu, "unit_alu")
    traces = _simulate(path, "unit_alu", simulator, scenarios, tmp_path_factory.mktemp(f"alu-{simulator}"))
    return simulator, cases, traces


def test_alu_words_match_numerics(alu_run):
    simulator, cases, traces = alu_run
    assert {c["cfg"].op for c in cases} == set(ALU_OPS)
    for k, (c, tr) in enumerate(zip(cases, traces, strict=True)):
        assert _words(tr["sent"]["a"]) == c["a"] and _words(tr["sent"]["b"]) == c["b"]
        assert _words(tr["received"]) == alu_golden(c), f"{simulator}, case {k}: {c['cfg']}"


def test_alu_back_pressure_and_error(alu_run):
    """Under back-pressure every result still leaves after both operands; ``error`` is high exactly
    when an input had to wait (its FIFO was full)."""
    _, cases, traces = alu_run
    stalls = {"a": 0, "b": 0, "o": 0}
    for c, tr in zip(cases, traces, strict=True):
        later = [max(x, y) for x, y in zip(_cycles(tr["sent"]["a"]), _cycles(tr["sent"]["b"]), strict=True)]
        assert all(o >= t + ALU_LATENCY for o, t in zip(_cycles(tr["received"]), later, strict=True))
        assert tr["error"] == int(tr["stalls"]["a"] + tr["stalls"]["b"] > 0), tr["stalls"]
        if c["p_ready"] < 1:
            for s in stalls:
                stalls[s] += tr["stalls"][s]
    assert min(stalls.values()) > 100, stalls


def test_alu_exact_latency(alu_run):
    _, cases, traces = alu_run
    latency_cases = [(c, tr) for c, tr in zip(cases, traces, strict=True) if c["p_ready"] == 1.0]
    assert len(latency_cases) == 2 * len(ALU_OPS)
    for c, tr in latency_cases:
        ins_a, ins_b = _cycles(tr["sent"]["a"]), _cycles(tr["sent"]["b"])
        if c["p"] == (1.0, 1.0):
            assert ins_a == ins_b == list(range(c["n"]))
        assert tr["stalls"] == {"a": 0, "b": 0, "o": 0} and tr["error"] == 0
        later = [max(x, y) for x, y in zip(ins_a, ins_b, strict=True)]
        assert _cycles(tr["received"]) == [t + ALU_LATENCY for t in later]
    assert ALU_LATENCY == 1


# -- Convolver ------------------------------------------------------------------------------------------
D = ARCH.tile.fifo_depth


def conv_case(rng: random.Random, kind: str, big: bool) -> Case:
    """``mac``: 3x3 multiply-accumulate, stride 1, with partial sums and the output shift; ``max``:
    2x2 max pooling, stride 2, no partial sums."""
    if kind == "mac":
        rows, cols, block, stride = 10, 14, (K, K), (1, 1)
    else:
        rows, cols, block, stride = 12, 14, (2, 2), (2, 2)
    c = Case(
        mode=int(kind == "max"),
        rows=rows,
        cols=cols,
        block=block,
        stride=stride,
        dil=(1, 1),
        kernel=conv_words(rng, block[0] * block[1], big) if kind == "mac" else [],
        shift=rng.randint(14, 20) if big else rng.randint(-3, 2),
        bias=rng.randint(LO, HI),
        use_psum=kind == "mac",
        out_shift=rng.randint(-2, 3),
        apply_out_shift=kind == "mac" or rng.random() < 0.5,
        x=[conv_words(rng, cols, big) for _ in range(rows)],
    )
    c.psum = conv_words(rng, len(c.completing()), big) if c.use_psum else []
    return c


def conv_cases() -> list[tuple[Case, bool]]:
    """(case, exact): each geometry on a schedule within the timing contract (``ready`` high) and
    under random gaps and random ``ready``."""
    rng = random.Random(5)
    cases = []
    for kind, big in (("mac", True), ("mac", False), ("max", True), ("max", False)):
        for gap in (0.0, 0.25):
            exact = conv_case(rng, kind, big)
            conv_schedule(rng, exact, D, gap=gap)
            cases += [(exact, True), (conv_case(rng, kind, big), False)]
    return cases


def conv_config(c: Case) -> dict:
    return {
        "mode": c.mode,
        "rows": c.rows,
        "cols": c.cols,
        "block_h": c.block[0],
        "block_w": c.block[1],
        "stride_h": c.stride[0],
        "stride_w": c.stride[1],
        "dil_h": c.dil[0],
        "dil_w": c.dil[1],
        "kernel": tap_order(c.kernel, c.block, K),
        "shift": c.shift,
        "bias": c.bias,
        "use_psum": int(c.use_psum),
        "out_shift": c.out_shift,
        "apply_out_shift": int(c.apply_out_shift),
    }


@pytest.fixture(scope="module", params=SIMULATORS)
def conv_run(request, tmp_path_factory):
    """(simulator, cases, traces) of one simulation of every convolver case."""
    simulator = request.param
    cases = conv_cases()
    rng = random.Random(6)
    scenarios = []
    for c, exact in cases:
        if exact:
            inputs = [_stream("data", c.words(), at=c.data_at), _stream("psum", c.psum, at=c.psum_at or [])]
            p_ready = 1.0
        else:
            inputs = [
                _stream("data", c.words(), 0.7, rng.randrange(1 << 30)),
                _stream("psum", c.psum, 0.6, rng.randrange(1 << 30)),
            ]
            p_ready = 0.35
        scenarios.append(
            _scenario(conv_config(c), inputs, len(golden(c)), p_ready, rng.randrange(1 << 30), clear=True)
        )
    path = _verilog(Convolver, "unit_convolver")
    traces = _simulate(
        path, "unit_convolver", simulator, scenarios, tmp_path_factory.mktemp(f"conv-{simulator}")
    )
    return simulator, cases, traces


def test_convolver_words_match_golden(conv_run):
    simulator, cases, traces = conv_run
    for k, ((c, _), tr) in enumerate(zip(cases, traces, strict=True)):
        assert _words(tr["sent"]["data"]) == c.words()
        assert _words(tr["sent"]["psum"]) == c.psum
        assert _words(tr["received"]) == golden(c), f"{simulator}, case {k}: {c}"


def test_convolver_exact_cycles(conv_run):
    """On a schedule within the contract: every word taken when offered, every output on
    ``max(accept of data word j(k), accept of partial sum k) + CONV_LATENCY``, no error."""
    _, cases, traces = conv_run
    for c, tr in [(c, tr) for (c, exact), tr in zip(cases, traces, strict=True) if exact]:
        data, psum = _cycles(tr["sent"]["data"]), _cycles(tr["sent"]["psum"])
        assert data == c.data_at and psum == (c.psum_at or [])
        assert tr["stalls"] == {"data": 0, "psum": 0, "o": 0} and tr["error"] == 0
        tj = [data[j] for j in c.completing()]
        tp = psum if c.use_psum else tj
        want = [max(a, b) + CONV_LATENCY for a, b in zip(tj, tp, strict=True)]
        assert _cycles(tr["received"]) == want, c
    assert CONV_LATENCY == 3


def test_convolver_back_pressure_and_error(conv_run):
    """Random gaps and ``ready``: the words above, back-pressure on every stream, ``error`` exactly
    when an input had to wait."""
    _, cases, traces = conv_run
    stalls = {"data": 0, "psum": 0, "o": 0}
    for (_, exact), tr in zip(cases, traces, strict=True):
        assert tr["error"] == int(tr["stalls"]["data"] + tr["stalls"]["psum"] > 0), tr["stalls"]
        if not exact:
            for s in stalls:
                stalls[s] += tr["stalls"][s]
    assert stalls["o"] > 100 and stalls["data"] > 10 and stalls["psum"] > 10, stalls
