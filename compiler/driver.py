"""The compile pipeline, top to bottom, as one explicit list of named steps.

``fold_affine`` (IR -> IR), ``quantize`` (choose word formats), ``lower`` (IR -> grid layers),
``schedule`` (grid layers -> program). ``--dump-ir-after NAME`` prints the IR (or, after
``lower``/``schedule``, the lowered layers or the pass list) after that step; ``--verify-each``
runs the IR verifier after every IR pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from nfc.arch import ArchConfig
from nfc.compiler.grid import ConvLayer, Lowered
from nfc.compiler.ir import Graph
from nfc.compiler.lower import lower
from nfc.compiler.passes import FRONT_PASSES, run_pipeline
from nfc.compiler.program import Pass, Program
from nfc.compiler.quantize import Formats, calibrate, default_formats
from nfc.compiler.schedule import schedule
from nfc.errors import NfcError

__all__ = ["STEPS", "CompileResult", "compile_graph", "lowered_listing"]

#: Every step of the pipeline, in order (the names ``--dump-ir-after`` accepts).
STEPS = tuple(name for name, _ in FRONT_PASSES) + ("quantize", "lower", "schedule")


@dataclass(frozen=True)
class CompileResult:
    graph: Graph
    formats: Formats
    lowered: Lowered
    program: Program


def lowered_listing(low: Lowered) -> str:
    """A text listing of the lowered layers (for ``--dump-ir-after lower``)."""
    lines = [f"lowered {low.name} {{"]
    for layer in low.layers:
        kind = type(layer).__name__.replace("Layer", "").lower()
        if isinstance(layer, ConvLayer):
            lines.append(
                f"  {layer.name} = {layer.kind}[{layer.mode}] {layer.src} -> {layer.dst} "
                f"out {'x'.join(map(str, layer.out_shape))} block {layer.block[0]}x{layer.block[1]} "
                f"terms {layer.terms} act {layer.act_kind or '-'} formats in {layer.in_fmt} w {layer.wfmt} "
                f"psum {layer.psum_fmt} out {layer.out_fmt}"
            )
        else:
            lines.append(f"  {layer.name} = {kind} -> {layer.dst}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def compile_graph(
    graph: Graph,
    arch: ArchConfig,
    policy: str = "nfc",
    samples: Iterable[Mapping[str, np.ndarray]] | None = None,
    verify_each: bool = False,
    dump_after: str | None = None,
    dump: Callable[[str, str], None] | None = None,
    progress: Callable[[str], None] | None = None,
) -> CompileResult:
    """Run the whole pipeline. ``samples``: calibration inputs (ONNX-shaped), or None for the
    target's default format everywhere."""
    if dump_after is not None and dump_after not in STEPS:
        raise NfcError(f"unknown step {dump_after!r} for --dump-ir-after; the steps are: {', '.join(STEPS)}")

    def say(msg: str) -> None:
        if progress is not None:
            progress(msg)

    say("passes over the IR")
    graph = run_pipeline(
        graph,
        arch,
        FRONT_PASSES,
        verify_each=verify_each,
        dump_after=dump_after if dump_after in dict(FRONT_PASSES) else None,
        dump=(lambda name, g: dump(name, g.dump())) if dump is not None else None,
    )
    say("quantising" + (" (calibrating on sample inputs)" if samples is not None else ""))
    formats = calibrate(graph, arch, samples) if samples is not None else default_formats(arch)
    if dump is not None and dump_after == "quantize":
        dump("quantize", "\n".join(f"{k}: {v}" for k, v in sorted(formats.tensors.items())) + "\n")
    say("lowering")
    low = lower(graph, arch, formats)
    if dump is not None and dump_after == "lower":
        dump("lower", lowered_listing(low))
    say(f"scheduling ({policy} policy)")
    program = schedule(low, arch, policy, progress)
    if dump is not None and dump_after == "schedule":
        lines = []
        for step in program.steps:
            what = f"{step.kind} {', '.join(step.layers)}" if isinstance(step, Pass) else f"host {step.layer}"
            lines.append(f"{step.index}: {what}\n")
        dump("schedule", "".join(lines))
    return CompileResult(graph, formats, low, program)
